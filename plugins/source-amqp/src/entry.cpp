// SPDX-License-Identifier: Apache-2.0
// source-amqp: consumes a RabbitMQ (AMQP 0-9-1) queue and emits each message as a record on
// one stream. A message is acknowledged to the broker only once every subscriber of the stream
// has delivered its record (the host's delivered mark), so a crash or a stop loses nothing: the
// broker delivers again what was not acknowledged. With a master whose cluster slot subscribes
// to the stream, this is how a fleet's reports published by sink-amqp are merged (README).
#include <memory>
#include <mp/amqp_config.hpp>
#include <mp/sdk.hpp>

#include "consumer.hpp"

namespace {

// clang-format off
const mp_property kProps[] = {
    MP_AMQP_BROKER_PROPERTIES,
    {"queue", MP_PROP_STRING, MP_PROP_REQUIRED, nullptr, "queue to consume (several nodes consuming one queue share its messages)", 0, 0, nullptr},
    {"declare", MP_PROP_STRING, 0, "declare", "declare the queue (durable), check that it exists (passive), or neither", 0, 0, "declare|passive|none"},
    {"exchange", MP_PROP_STRING, 0, "", "bind the queue to this exchange (declared durable when declare is 'declare'; empty: no binding)", 0, 0, nullptr},
    {"exchange_type", MP_PROP_STRING, 0, "topic", "type of the exchange when declared", 0, 0, "topic|direct|fanout|headers"},
    {"binding_keys", MP_PROP_STRING_LIST, 0, "#", "binding keys of the queue to the exchange", 0, 0, nullptr},
    {"stream", MP_PROP_STRING, 0, "amqp.messages", "stream of the records (mysqlprobe.report for a master merging a fleet's reports)", 0, 0, nullptr},
    {"prefetch", MP_PROP_INT, 0, "1000", "messages taken and not yet acknowledged, at most (basic.qos)", 1, 65535, nullptr},
    {"drain_ms", MP_PROP_INT, 0, "1000", "at stop, time given to the subscribers to deliver what was taken (then it goes back to the queue)", 0, 60000, nullptr},
    {nullptr, 0, 0, nullptr, nullptr, 0, 0, nullptr},
};
// clang-format on

mp::amqp::ConsumerOptions options(const mp::Config& cfg) {
    mp::amqp::ConsumerOptions o;
    o.endpoint = mp::amqp::endpointFrom(cfg);
    o.queue = cfg.str("queue");
    if (o.queue.empty() || o.queue.size() > 255) {
        throw mp::Error("queue: 1 to 255 bytes");
    }
    std::string declare = cfg.str("declare");
    o.declareQueue = declare == "passive" ? mp::amqp::ConsumerOptions::Declare::Passive
                     : declare == "none"  ? mp::amqp::ConsumerOptions::Declare::None
                                          : mp::amqp::ConsumerOptions::Declare::Declare;
    o.exchange = cfg.str("exchange");
    o.exchangeType = cfg.str("exchange_type");
    o.declareExchange = declare == "declare";
    o.bindingKeys = cfg.list("binding_keys");
    if (!o.exchange.empty() && o.bindingKeys.empty()) {
        throw mp::Error("binding_keys: at least one key to bind the queue to '" + o.exchange + "'");
    }
    o.prefetch = static_cast<uint16_t>(cfg.i64("prefetch"));
    o.reconnectMaxMs = static_cast<int>(cfg.i64("reconnect_max_ms"));
    return o;
}

class AmqpSource : public mp::Plugin, public mp::RecordProducer {
  public:
    AmqpSource(mp::Host host, const mp::Config& cfg)
        : Plugin(host),
          stream_(cfg.str("stream")),
          drain_(cfg.i64("drain_ms")),
          consumed_(host.counter("consumed_total", "messages taken from the queue")),
          redelivered_(host.counter("redelivered_total",
                                    "messages the broker had delivered before (taken again)")),
          acked_(host.counter("acked_total", "messages acknowledged to the broker (delivered)")),
          rejected_(host.counter("rejected_total",
                                 "messages refused (record refused by the host: too large)")),
          reconnects_(host.counter("reconnects_total", "connections made after the first")),
          failures_(host.counter("failures_total", "failed connection attempts, broken links")),
          connected_(host.counter("connected", "1 while consuming", MP_GAUGE)),
          unacked_(host.counter("unacked", "messages taken, not yet acknowledged", MP_GAUGE)) {
        host.set("records.backpressure", "wait");  // a full record buffer pauses the queue
        consumer_ = std::make_unique<mp::amqp::Consumer>(
            options(cfg), [this](int level, const std::string& line) { log(level, line); },
            [this](mp::amqp::Delivery& d, uint64_t handle) { return take(d, handle); });
    }

    ~AmqpSource() override { consumer_.reset(); }

    void start() override {
        consumer_->start();
        timer_.start(host(), 250'000'000, 250'000'000, [this] { publishStats(); });
    }
    void stop() override {
        consumer_->stop(drain_);
        timer_.stop();
        publishStats();
    }

    void onDelivered(uint64_t seq) override { consumer_->ack(seq); }

  private:
    // The record's seq is the message's handle: both only grow, and the delivered mark says up
    // to which handle the broker may be told.
    mp::amqp::Consumer::Verdict take(mp::amqp::Delivery& d, uint64_t handle) {
        uint64_t ts = d.timestampS != 0 ? d.timestampS * 1000000000ull : host().nowNs();
        mp_status st = host().emitRecord(
            stream_, d.body, handle, ts, d.routingKey.substr(0, 255), d.messageId.substr(0, 255),
            d.contentType.empty() ? "application/octet-stream"
                                  : std::string_view(d.contentType).substr(0, 255));
        if (st == MP_OK) {
            return mp::amqp::Consumer::Verdict::Taken;
        }
        if (st == MP_ECLOSED) {
            return mp::amqp::Consumer::Verdict::Stop;
        }
        host().warn("message " + (d.messageId.empty() ? std::string("(no id)") : d.messageId) +
                    " of " + std::to_string(d.body.size()) + " bytes refused by the host (status " +
                    std::to_string(st) + "): rejected without requeue");
        return mp::amqp::Consumer::Verdict::Reject;
    }

    void log(int level, const std::string& line) { host().log(level, line); }

    void publishStats() {
        const auto& s = consumer_->stats();
        consumed_.set(static_cast<int64_t>(s.consumed.load()));
        redelivered_.set(static_cast<int64_t>(s.redelivered.load()));
        acked_.set(static_cast<int64_t>(s.acked.load()));
        rejected_.set(static_cast<int64_t>(s.rejected.load()));
        reconnects_.set(static_cast<int64_t>(s.reconnects.load()));
        failures_.set(static_cast<int64_t>(s.failures.load()));
        connected_.set(s.connected.load());
        unacked_.set(s.unacked.load());
    }

    std::string stream_;
    std::chrono::milliseconds drain_;
    mp::Counter consumed_, redelivered_, acked_, rejected_, reconnects_, failures_, connected_,
        unacked_;
    std::unique_ptr<mp::amqp::Consumer> consumer_;
    mp::Timer timer_;
};

}  // namespace

MP_DECLARE_PLUGIN(AmqpSource, MP_KIND_SOURCE, "source-amqp", "0.1.0",
                  "Consumes a RabbitMQ queue into records, acknowledged once delivered downstream",
                  kProps, 0)

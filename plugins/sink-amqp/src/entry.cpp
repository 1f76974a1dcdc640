// SPDX-License-Identifier: Apache-2.0
// sink-amqp: publishes every report to a RabbitMQ (AMQP 0-9-1) exchange, persistent, with
// publisher confirms. What the broker has not confirmed is kept (bounded in bytes) and
// published again, with the same message id, after a broken connection; see publisher.hpp.
#include <memory>
#include <mp/amqp_config.hpp>
#include <mp/report_merge.hpp>
#include <mp/sdk.hpp>

#include "publisher.hpp"
#include "routing.hpp"

namespace {

// clang-format off
const mp_property kProps[] = {
    MP_AMQP_BROKER_PROPERTIES,
    {"exchange", MP_PROP_STRING, 0, "mysqlprobe", "exchange to publish to", 0, 0, nullptr},
    {"exchange_type", MP_PROP_STRING, 0, "topic", "type of the exchange when declared", 0, 0, "topic|direct|fanout|headers"},
    {"declare", MP_PROP_STRING, 0, "declare", "declare the exchange (durable), check that it exists (passive), or neither", 0, 0, "declare|passive|none"},
    {"routing_key", MP_PROP_STRING, 0, "mysqlprobe.report.{node}", "routing key of reports; {node}, {type} and {seq} are replaced", 0, 0, nullptr},
    {"record_routing_key", MP_PROP_STRING, 0, "{stream}", "routing key of records (the slot's records: list); {stream}, {key}, {producer}, {node}, {seq} are replaced", 0, 0, nullptr},
    {"persistent", MP_PROP_BOOL, 0, "true", "persistent messages (delivery mode 2)", 0, 0, nullptr},
    {"mandatory", MP_PROP_BOOL, 0, "true", "ask the broker to return messages no queue takes (counted)", 0, 0, nullptr},
    {"unroutable", MP_PROP_STRING, 0, "count", "a record no queue takes: counted and given up (count), or held and published again until a queue takes it (retry; needs mandatory)", 0, 0, "count|retry"},
    {"max_in_flight", MP_PROP_INT, 0, "1000", "messages published and not yet confirmed, at most", 1, 1000000, nullptr},
    {"max_buffer_mb", MP_PROP_INT, 0, "64", "bytes of messages kept until the broker confirms them; beyond, the oldest waiting is dropped (counted)", 1, 65536, nullptr},
    {"drain_ms", MP_PROP_INT, 0, "3000", "at stop, time given to publish and confirm what is kept", 0, 4000, nullptr},
    {nullptr, 0, 0, nullptr, nullptr, 0, 0, nullptr},
};
// clang-format on

mp::amqp::Options options(const mp::Config& cfg) {
    mp::amqp::Options o;
    o.endpoint = mp::amqp::endpointFrom(cfg);
    o.exchange = cfg.str("exchange");
    o.exchangeType = cfg.str("exchange_type");
    std::string declare = cfg.str("declare");
    o.declare = declare == "passive" ? mp::amqp::Options::Declare::Passive
                : declare == "none"  ? mp::amqp::Options::Declare::None
                                     : mp::amqp::Options::Declare::Declare;
    if (o.exchange.empty() && o.declare != mp::amqp::Options::Declare::None) {
        throw mp::Error(
            "exchange: the default exchange (\"\") cannot be declared: set declare: none");
    }
    o.persistent = cfg.boolean("persistent");
    o.mandatory = cfg.boolean("mandatory");
    o.retryUnroutable = cfg.str("unroutable") == "retry";
    if (o.retryUnroutable && !o.mandatory) {
        throw mp::Error(
            "unroutable: retry needs mandatory: true (the broker returns nothing "
            "otherwise)");
    }
    o.maxInFlight = static_cast<size_t>(cfg.i64("max_in_flight"));
    o.maxQueuedBytes = static_cast<size_t>(cfg.i64("max_buffer_mb")) << 20;
    o.reconnectMaxMs = static_cast<int>(cfg.i64("reconnect_max_ms"));
    return o;
}

mp::amqp::RoutingTemplate parseTemplate(const mp::Config& cfg, const char* key) {
    std::string why;
    auto t = mp::amqp::RoutingTemplate::parse(cfg.str(key), why);
    if (!t) {
        throw mp::Error(std::string(key) + ": " + why);
    }
    return *t;
}

class AmqpSink : public mp::Plugin, public mp::RecordSink {
  public:
    AmqpSink(mp::Host host, const mp::Config& cfg)
        : Plugin(host),
          routingKey_(parseTemplate(cfg, "routing_key")),
          recordKey_(parseTemplate(cfg, "record_routing_key")),
          drainMs_(cfg.i64("drain_ms")),
          node_(host.get("node.name").value_or("")),
          published_(host.counter("published_total", "messages published (first time)")),
          resent_(host.counter("resent_total",
                               "messages published again after a nack or a broken connection")),
          confirmed_(host.counter("confirmed_total", "messages the broker confirmed")),
          nacked_(host.counter("nacked_total", "messages the broker refused (published again)")),
          returned_(host.counter("returned_total",
                                 "messages returned unroutable (no queue bound for them)")),
          dropped_(host.counter("dropped_total",
                                "messages never confirmed: buffer full, or left at stop")),
          reconnects_(host.counter("reconnects_total", "connections made after the first")),
          failures_(host.counter("failures_total",
                                 "connection attempts that failed and connections broken")),
          connected_(host.counter("connected", "1 while connected with confirms on", MP_GAUGE)),
          inFlight_(host.counter("in_flight", "messages published, not yet confirmed", MP_GAUGE)),
          buffered_(host.counter("buffered_bytes", "bytes kept until confirmed", MP_GAUGE)),
          held_(host.counter("held", "records returned unroutable, to be published again",
                             MP_GAUGE)) {
        mp::amqp::Options o = options(cfg);
        o.done = [h = host](uint64_t token, bool delivered) {
            h.recordDone(token, delivered ? MP_OK : MP_ERROR);
        };
        publisher_ = std::make_unique<mp::amqp::Publisher>(
            std::move(o), [h = host](int level, const std::string& line) { h.log(level, line); });
    }

    void start() override {
        publisher_->start();
        timer_.start(host(), 250'000'000, 250'000'000, [this] { refresh(); });
    }

    void stop() override {
        timer_.stop();
        publisher_->stop(std::chrono::milliseconds(drainMs_));
        refresh();
    }

    mp_status onEvent(const mp_event& ev) override {
        if (ev.type != MP_EVENT_REPORT) {
            return MP_OK;
        }
        mp::amqp::Message m;
        m.body.assign(reinterpret_cast<const char*>(ev.payload.data), ev.payload.len);
        mp::report::Identity id;
        if (!mp::report::reportIdentity(m.body, id)) {
            id.node = node_;
            id.seq = ev.seq;
        }
        // (node, run, seq) names a report everywhere: a consumer drops what it has seen.
        m.messageId = id.node + "/" + std::to_string(id.started) + "/" + std::to_string(id.seq);
        m.type = "report";
        m.contentType =
            ev.content_type.len != 0 ? std::string(mp::view(ev.content_type)) : "application/json";
        m.timestampS = ev.ts_ns / 1'000'000'000;
        mp::amqp::Values v{};
        std::string seq = std::to_string(id.seq);
        v[static_cast<size_t>(mp::amqp::Var::Node)] = id.node;
        v[static_cast<size_t>(mp::amqp::Var::Type)] = "report";
        v[static_cast<size_t>(mp::amqp::Var::Seq)] = seq;
        m.routingKey = routingKey_.render(v);
        if (!publisher_->publish(std::move(m))) {
            host().warn("a report larger than max_buffer_mb was not published");
        }
        refresh();
        return MP_OK;
    }

    // A record of a subscribed stream: published with back-pressure (MP_EAGAIN while the buffer
    // is full, nothing dropped); delivered once the broker confirms it.
    mp_status onRecord(const mp_record& rec, uint64_t token) override {
        mp::amqp::Message m;
        std::string stream(mp::view(rec.stream));
        std::string producer(mp::view(rec.producer));
        std::string seq = std::to_string(rec.seq);
        m.body.assign(reinterpret_cast<const char*>(rec.payload.data), rec.payload.len);
        m.messageId =
            rec.id.len != 0 ? std::string(mp::view(rec.id)) : node_ + "/" + producer + "/" + seq;
        m.type = stream;
        m.contentType = rec.content_type.len != 0 ? std::string(mp::view(rec.content_type))
                                                  : "application/octet-stream";
        m.timestampS = rec.ts_ns / 1'000'000'000;
        mp::amqp::Values v{};
        v[static_cast<size_t>(mp::amqp::Var::Node)] = node_;
        v[static_cast<size_t>(mp::amqp::Var::Type)] = stream;
        v[static_cast<size_t>(mp::amqp::Var::Seq)] = seq;
        v[static_cast<size_t>(mp::amqp::Var::Stream)] = stream;
        v[static_cast<size_t>(mp::amqp::Var::Key)] = mp::view(rec.key);
        v[static_cast<size_t>(mp::amqp::Var::Producer)] = producer;
        m.routingKey = recordKey_.render(v);
        m.tracked = true;
        m.token = token;
        return publisher_->tryPublish(m) ? MP_OK : MP_EAGAIN;
    }

  private:
    void refresh() {
        const mp::amqp::Stats& s = publisher_->stats();
        published_.set(static_cast<int64_t>(s.published.load()));
        resent_.set(static_cast<int64_t>(s.resent.load()));
        confirmed_.set(static_cast<int64_t>(s.confirmed.load()));
        nacked_.set(static_cast<int64_t>(s.nacked.load()));
        returned_.set(static_cast<int64_t>(s.returned.load()));
        dropped_.set(static_cast<int64_t>(s.dropped.load()));
        reconnects_.set(static_cast<int64_t>(s.reconnects.load()));
        failures_.set(static_cast<int64_t>(s.failures.load()));
        connected_.set(s.connected.load());
        inFlight_.set(s.inFlight.load());
        buffered_.set(s.queuedBytes.load());
        held_.set(s.held.load());
    }

    mp::amqp::RoutingTemplate routingKey_;
    mp::amqp::RoutingTemplate recordKey_;
    int64_t drainMs_;
    std::string node_;
    mp::Counter published_, resent_, confirmed_, nacked_, returned_, dropped_, reconnects_,
        failures_, connected_, inFlight_, buffered_, held_;
    std::unique_ptr<mp::amqp::Publisher> publisher_;
    mp::Timer timer_;
};

}  // namespace

MP_DECLARE_PLUGIN(AmqpSink, MP_KIND_SINK, "sink-amqp", "0.2.0",
                  "Publishes reports and records to a RabbitMQ exchange with publisher confirms",
                  kProps, 0)

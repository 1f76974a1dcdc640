// SPDX-License-Identifier: Apache-2.0
#include "consumer.hpp"

#include <amqp.h>
#include <amqp_framing.h>
#include <sys/time.h>

#include <utility>

namespace mp::amqp {

namespace {

constexpr uint16_t kChannel = Connection::kChannel;

std::string property(const amqp_basic_properties_t& p, amqp_flags_t flag, amqp_bytes_t v) {
    return (p._flags & flag) != 0 ? text(v) : std::string();
}

}  // namespace

Consumer::Consumer(ConsumerOptions options, Log log, Handler handler)
    : opt_(std::move(options)),
      log_(std::move(log)),
      handler_(std::move(handler)),
      retry_(opt_.endpoint.address() + " queue " + opt_.queue, opt_.reconnectMinMs,
             opt_.reconnectMaxMs, log_) {}

Consumer::~Consumer() { stop(std::chrono::milliseconds(0)); }

void Consumer::start() {
    owner_.start([this] { run(); });
}

void Consumer::stop(std::chrono::milliseconds drain) { owner_.stop(drain); }

void Consumer::ack(uint64_t handle) {
    std::lock_guard<std::mutex> lock(owner_.mu);
    ackUpTo_ = std::max(ackUpTo_, handle);
}

bool Consumer::connect(std::string& why) {
    if (!conn_.open(opt_.endpoint, why)) {
        return false;
    }
    amqp_connection_state_t st = conn_.state();
    if (!opt_.exchange.empty() && opt_.declareExchange) {
        amqp_exchange_declare(st, kChannel, bytes(opt_.exchange), bytes(opt_.exchangeType), 0, 1, 0,
                              0, amqp_empty_table);
        if (std::string e = conn_.rpcError(); !e.empty()) {
            why = "cannot declare exchange '" + opt_.exchange + "': " + e;
            return false;
        }
    }
    if (opt_.declareQueue != ConsumerOptions::Declare::None) {
        bool passive = opt_.declareQueue == ConsumerOptions::Declare::Passive;
        amqp_queue_declare(st, kChannel, bytes(opt_.queue), passive ? 1 : 0, 1, 0, 0,
                           amqp_empty_table);
        if (std::string e = conn_.rpcError(); !e.empty()) {
            why = (passive ? "queue '" + opt_.queue + "' (passive) not usable: "
                           : "cannot declare queue '" + opt_.queue + "': ") +
                  e;
            return false;
        }
    }
    if (!opt_.exchange.empty()) {
        for (const auto& key : opt_.bindingKeys) {
            amqp_queue_bind(st, kChannel, bytes(opt_.queue), bytes(opt_.exchange), bytes(key),
                            amqp_empty_table);
            if (std::string e = conn_.rpcError(); !e.empty()) {
                why = "cannot bind queue '" + opt_.queue + "' to exchange '" + opt_.exchange +
                      "' with key '" + key + "': " + e;
                return false;
            }
        }
    }
    amqp_basic_qos(st, kChannel, 0, opt_.prefetch, 0);
    if (std::string e = conn_.rpcError(); !e.empty()) {
        why = "prefetch refused: " + e;
        return false;
    }
    amqp_basic_consume_ok_t* ok = amqp_basic_consume(st, kChannel, bytes(opt_.queue),
                                                     amqp_empty_bytes, 0, 0, 0, amqp_empty_table);
    if (std::string e = conn_.rpcError(); !e.empty() || ok == nullptr) {
        why = "cannot consume from queue '" + opt_.queue + "': " + (e.empty() ? "no answer" : e);
        return false;
    }
    std::lock_guard<std::mutex> lock(owner_.mu);
    taking_ = !owner_.stopping;
    return true;
}

bool Consumer::sendAcks(std::string& why) {
    uint64_t tag = 0;
    uint64_t n = 0;
    {
        std::lock_guard<std::mutex> lock(owner_.mu);
        while (!unacked_.empty() && unacked_.front().first <= ackUpTo_) {
            tag = unacked_.front().second;
            unacked_.pop_front();
            ++n;
        }
    }
    if (n == 0) {
        return true;
    }
    // One acknowledgement covers every earlier delivery of this channel (multiple): the ones
    // handed over before it were covered by ack() too, and rejected ones are settled already.
    int st = amqp_basic_ack(conn_.state(), kChannel, tag, 1);
    if (st != AMQP_STATUS_OK) {
        why = std::string("acknowledgement failed: ") + amqp_error_string2(st);
        conn_.broken();
        return false;
    }
    stats_.acked += n;
    stats_.unacked -= static_cast<int64_t>(n);
    return true;
}

bool Consumer::consumeOne(std::string& why) {
    amqp_connection_state_t st = conn_.state();
    amqp_maybe_release_buffers(st);
    timeval tv{0, 100 * 1000};  // idle: wake up for acknowledgements, heartbeats and stop
    amqp_envelope_t env{};
    amqp_rpc_reply_t r = amqp_consume_message(st, &env, &tv, 0);
    if (r.reply_type == AMQP_RESPONSE_NORMAL) {
        Delivery d;
        const amqp_basic_properties_t& p = env.message.properties;
        d.exchange = text(env.exchange);
        d.routingKey = text(env.routing_key);
        d.messageId = property(p, AMQP_BASIC_MESSAGE_ID_FLAG, p.message_id);
        d.type = property(p, AMQP_BASIC_TYPE_FLAG, p.type);
        d.contentType = property(p, AMQP_BASIC_CONTENT_TYPE_FLAG, p.content_type);
        d.timestampS = (p._flags & AMQP_BASIC_TIMESTAMP_FLAG) != 0 ? p.timestamp : 0;
        d.redelivered = env.redelivered != 0;
        d.body = text(env.message.body);
        uint64_t tag = env.delivery_tag;
        amqp_destroy_envelope(&env);
        if (!taking_) {
            return true;  // stopping: left unacknowledged, queued again when the link closes
        }
        uint64_t handle = 0;
        {
            std::lock_guard<std::mutex> lock(owner_.mu);
            handle = nextHandle_++;
        }
        switch (handler_(d, handle)) {
            case Verdict::Taken: {
                std::lock_guard<std::mutex> lock(owner_.mu);
                unacked_.emplace_back(handle, tag);
                ++stats_.consumed;
                ++stats_.unacked;
                if (d.redelivered) {
                    ++stats_.redelivered;
                }
                break;
            }
            case Verdict::Reject:
                ++stats_.rejected;
                if (int rc = amqp_basic_reject(st, kChannel, tag, 0); rc != AMQP_STATUS_OK) {
                    why = std::string("reject failed: ") + amqp_error_string2(rc);
                    conn_.broken();
                    return false;
                }
                break;
            case Verdict::Stop:
                taking_ = false;
                break;
        }
        return true;
    }
    if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION && r.library_error == AMQP_STATUS_TIMEOUT) {
        return true;
    }
    if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
        r.library_error == AMQP_STATUS_UNEXPECTED_STATE) {
        // Something other than a delivery: a cancel, a closing channel or connection.
        amqp_frame_t f{};
        timeval none{};
        int rc = amqp_simple_wait_frame_noblock(st, &f, &none);
        if (rc == AMQP_STATUS_TIMEOUT) {
            return true;
        }
        if (rc != AMQP_STATUS_OK) {
            why = amqp_error_string2(rc);
            conn_.broken();
            return false;
        }
        if (f.frame_type != AMQP_FRAME_METHOD) {
            return true;
        }
        switch (f.payload.method.id) {
            case AMQP_BASIC_CANCEL_METHOD:
                why = "the broker cancelled the consumer of queue '" + opt_.queue +
                      "' (queue deleted?)";
                return false;
            case AMQP_CHANNEL_CLOSE_METHOD: {
                auto* m = static_cast<amqp_channel_close_t*>(f.payload.method.decoded);
                why = "the broker closed the channel: " + std::to_string(m->reply_code) + " " +
                      text(m->reply_text);
                amqp_channel_close_ok_t ok{};
                amqp_send_method(st, f.channel, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok);
                return false;
            }
            case AMQP_CONNECTION_CLOSE_METHOD: {
                auto* m = static_cast<amqp_connection_close_t*>(f.payload.method.decoded);
                why = "the broker closed the connection: " + std::to_string(m->reply_code) + " " +
                      text(m->reply_text);
                amqp_connection_close_ok_t ok{};
                amqp_send_method(st, 0, AMQP_CONNECTION_CLOSE_OK_METHOD, &ok);
                conn_.broken();
                return false;
            }
            default:
                return true;
        }
    }
    why = describe(r);
    conn_.broken();
    return false;
}

void Consumer::run() {
    while (true) {
        bool stopping = false;
        {
            std::lock_guard<std::mutex> lock(owner_.mu);
            stopping = owner_.stopping;
            if (stopping && (unacked_.empty() || !conn_.isOpen() ||
                             std::chrono::steady_clock::now() >= owner_.drainUntil)) {
                break;
            }
        }
        if (!conn_.isOpen()) {
            std::string why;
            if (!connect(why)) {
                conn_.close(false);
                ++stats_.failures;
                auto wait = retry_.failed(why);
                std::unique_lock<std::mutex> lock(owner_.mu);
                owner_.wake.wait_for(lock, wait, [&] { return owner_.stopping; });
                continue;
            }
            stats_.connected = 1;
            if (retry_.connected()) {
                ++stats_.reconnects;
            }
        }
        if (stopping) {
            taking_ = false;  // what arrives now stays unacknowledged: queued again at close
        }
        std::string why;
        if (!sendAcks(why) || !consumeOne(why)) {
            conn_.close(false);
            stats_.connected = 0;
            ++stats_.failures;
            retry_.lost(why);
            std::lock_guard<std::mutex> lock(owner_.mu);
            stats_.unacked -= static_cast<int64_t>(unacked_.size());
            unacked_.clear();  // the broker queues them again
        }
    }
    std::string why;
    if (conn_.isOpen()) {
        sendAcks(why);
    }
    size_t left = 0;
    {
        std::lock_guard<std::mutex> lock(owner_.mu);
        left = unacked_.size();
        stats_.unacked -= static_cast<int64_t>(left);
        unacked_.clear();
    }
    if (left != 0) {
        log_(3, "amqp: stopping with " + std::to_string(left) +
                    " messages not yet delivered downstream: the broker delivers them again");
    }
    conn_.close(true);
    stats_.connected = 0;
}

}  // namespace mp::amqp

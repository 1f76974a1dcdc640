// SPDX-License-Identifier: Apache-2.0
#include "publisher.hpp"

#include <amqp.h>
#include <amqp_framing.h>
#include <sys/time.h>

#include <algorithm>
#include <utility>

namespace mp::amqp {

namespace {

constexpr int kWarn = 3;  // MP_LOG_WARN
constexpr uint16_t kChannel = Connection::kChannel;

timeval timeout(int ms) {
    timeval tv{};
    tv.tv_sec = ms / 1000;
    tv.tv_usec = (ms % 1000) * 1000;
    return tv;
}

}  // namespace

struct Publisher::Link {
    Connection conn;
    uint64_t nextTag = 1;  // delivery tags of a confirm channel count from 1
};

Publisher::Publisher(Options options, Log log)
    : opt_(std::move(options)),
      log_(std::move(log)),
      retry_(opt_.endpoint.address(), opt_.reconnectMinMs, opt_.reconnectMaxMs, log_) {}

Publisher::~Publisher() { stop(std::chrono::milliseconds(0)); }

void Publisher::start() {
    owner_.start([this] { run(); });
}

void Publisher::stop(std::chrono::milliseconds drain) { owner_.stop(drain); }

bool Publisher::publish(Message m) {
    std::deque<Message> dropped;
    {
        std::lock_guard<std::mutex> lock(owner_.mu);
        if (m.body.size() > opt_.maxQueuedBytes) {
            ++stats_.dropped;
            dropped.push_back(std::move(m));
        } else {
            while (!queue_.empty() &&
                   static_cast<size_t>(stats_.queuedBytes.load()) + m.body.size() >
                       opt_.maxQueuedBytes) {
                stats_.queuedBytes -= static_cast<int64_t>(queue_.front().body.size());
                ++stats_.dropped;
                dropped.push_back(std::move(queue_.front()));
                queue_.pop_front();
            }
            stats_.queuedBytes += static_cast<int64_t>(m.body.size());
            queue_.push_back(std::move(m));
        }
    }
    owner_.wake.notify_all();
    bool refused = false;
    for (auto& d : dropped) {
        refused = refused || d.body.size() > opt_.maxQueuedBytes;
        if (d.tracked && opt_.done) {
            opt_.done(d.token, false);
        }
    }
    return !refused;
}

bool Publisher::tryPublish(Message& m) {
    {
        std::lock_guard<std::mutex> lock(owner_.mu);
        if (static_cast<size_t>(stats_.queuedBytes.load()) + m.body.size() > opt_.maxQueuedBytes &&
            stats_.queuedBytes.load() != 0) {
            return false;  // full (a message alone larger than the bound still goes through)
        }
        stats_.queuedBytes += static_cast<int64_t>(m.body.size());
        queue_.push_back(std::move(m));
    }
    owner_.wake.notify_all();
    return true;
}

void Publisher::finish(Message& m, bool delivered) {
    stats_.queuedBytes -= static_cast<int64_t>(m.body.size());
    if (m.tracked && opt_.done) {
        opt_.done(m.token, delivered);
    }
}

bool Publisher::connect(Link& c, std::string& why) {
    c.nextTag = 1;
    if (!c.conn.open(opt_.endpoint, why)) {
        return false;
    }
    amqp_connection_state_t st = c.conn.state();
    if (opt_.declare != Options::Declare::None) {
        bool passive = opt_.declare == Options::Declare::Passive;
        amqp_exchange_declare(st, kChannel, bytes(opt_.exchange), bytes(opt_.exchangeType),
                              passive ? 1 : 0, opt_.persistent ? 1 : 0, 0, 0, amqp_empty_table);
        if (std::string e = c.conn.rpcError(); !e.empty()) {
            why = std::string(passive ? "exchange '" + opt_.exchange + "' (passive) not usable: "
                                      : "cannot declare exchange '" + opt_.exchange + "': ") +
                  e;
            return false;
        }
    }
    amqp_confirm_select(st, kChannel);
    if (std::string e = c.conn.rpcError(); !e.empty()) {
        why = "publisher confirms refused: " + e;
        return false;
    }
    return true;
}

void Publisher::disconnect(Link& c, const std::string& why) {
    if (!c.conn.isOpen()) {
        return;
    }
    c.conn.close(why.empty());
    if (stats_.connected.exchange(0) != 0 && !why.empty()) {
        ++stats_.failures;
        retry_.lost(why);
    }
    requeueInFlight();
}

// Unconfirmed messages go back to the head of the queue, in publication order.
void Publisher::requeueInFlight() {
    if (flight_.empty()) {
        return;
    }
    std::lock_guard<std::mutex> lock(owner_.mu);
    for (auto it = flight_.rbegin(); it != flight_.rend(); ++it) {
        if (it->open) {
            queue_.push_front(std::move(it->m));
        }
    }
    flight_.clear();
    flightOpen_ = 0;
    stats_.inFlight = 0;
}

// Messages go back to the head of the queue, in their order.
void Publisher::putBack(std::deque<Message>& msgs) {
    if (msgs.empty()) {
        return;
    }
    std::lock_guard<std::mutex> lock(owner_.mu);
    for (auto it = msgs.rbegin(); it != msgs.rend(); ++it) {
        queue_.push_front(std::move(*it));
    }
}

void Publisher::dropAll(std::deque<Message>& q) {
    for (auto& m : q) {
        ++stats_.dropped;
        finish(m, false);
    }
    q.clear();
}

// Publishes what the window allows and handles what the broker sent; false when the
// connection is unusable (`why` says why).
bool Publisher::pump(Link& c, std::string& why) {
    // Returned records whose wait is over go first.
    if (!held_.empty() && std::chrono::steady_clock::now() >= heldUntil_) {
        stats_.held = 0;
        putBack(held_);
        held_.clear();
    }
    // What the window allows, taken from the queue in one lock (the sink's thread adds to it
    // record by record: one lock each way per message would make them take turns).
    std::deque<Message> batch;
    if (flightOpen_ < opt_.maxInFlight) {
        std::lock_guard<std::mutex> lock(owner_.mu);
        const size_t n = std::min(queue_.size(), opt_.maxInFlight - flightOpen_);
        auto end = queue_.begin() + static_cast<std::ptrdiff_t>(n);
        batch.insert(batch.end(), std::make_move_iterator(queue_.begin()),
                     std::make_move_iterator(end));
        queue_.erase(queue_.begin(), end);
    }
    if (flight_.empty()) {
        flightTag_ = c.nextTag;
    }
    static const std::string app = "mysqlprobe";
    while (!batch.empty()) {
        Message& m = batch.front();
        amqp_basic_properties_t props{};
        props._flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG |
                       AMQP_BASIC_MESSAGE_ID_FLAG | AMQP_BASIC_APP_ID_FLAG;
        props.content_type = bytes(m.contentType);
        props.delivery_mode =
            opt_.persistent ? AMQP_DELIVERY_PERSISTENT : AMQP_DELIVERY_NONPERSISTENT;
        props.message_id = bytes(m.messageId);
        props.app_id = bytes(app);
        if (!m.type.empty()) {
            props._flags |= AMQP_BASIC_TYPE_FLAG;
            props.type = bytes(m.type);
        }
        if (m.timestampS != 0) {
            props._flags |= AMQP_BASIC_TIMESTAMP_FLAG;
            props.timestamp = m.timestampS;
        }
        int st =
            amqp_basic_publish(c.conn.state(), kChannel, bytes(opt_.exchange), bytes(m.routingKey),
                               opt_.mandatory ? 1 : 0, 0, &props, bytes(m.body));
        ++(m.attempts == 0 ? stats_.published : stats_.resent);
        ++m.attempts;
        ++c.nextTag;
        flight_.push_back(Flight{std::move(m), true});
        batch.pop_front();
        ++flightOpen_;
        stats_.inFlight = static_cast<int64_t>(flightOpen_);
        if (st != AMQP_STATUS_OK) {
            why = std::string("publish failed: ") + amqp_error_string2(st);
            c.conn.broken();
            // not published: back to the head of the queue, behind what is in flight (which
            // disconnect() puts back in front of them)
            putBack(batch);
            return false;
        }
    }

    // What the broker says: confirms, returns, a closing channel. Wait a little when there is
    // nothing to publish (the wait also serves heartbeats).
    bool more = false;
    {
        std::lock_guard<std::mutex> lock(owner_.mu);
        more = !queue_.empty() && flightOpen_ < opt_.maxInFlight;
    }
    timeval tv = timeout(more ? 0 : flightOpen_ == 0 ? 50 : 20);
    for (int frames = 0; frames < 10000; ++frames) {
        amqp_frame_t f{};
        amqp_maybe_release_buffers(c.conn.state());
        timeval none{};  // after the first frame: only what has already arrived
        int st = amqp_simple_wait_frame_noblock(c.conn.state(), &f, frames == 0 ? &tv : &none);
        if (st == AMQP_STATUS_TIMEOUT) {
            return true;
        }
        if (st != AMQP_STATUS_OK) {
            why = amqp_error_string2(st);
            c.conn.broken();
            return false;
        }
        if (f.frame_type != AMQP_FRAME_METHOD) {
            continue;
        }
        switch (f.payload.method.id) {
            case AMQP_BASIC_ACK_METHOD:
            case AMQP_BASIC_NACK_METHOD: {
                bool ack = f.payload.method.id == AMQP_BASIC_ACK_METHOD;
                uint64_t tag = 0;
                bool multiple = false;
                if (ack) {
                    auto* a = static_cast<amqp_basic_ack_t*>(f.payload.method.decoded);
                    tag = a->delivery_tag;
                    multiple = a->multiple != 0;
                } else {
                    auto* n = static_cast<amqp_basic_nack_t*>(f.payload.method.decoded);
                    tag = n->delivery_tag;
                    multiple = n->multiple != 0;
                }
                // places [from, to) of flight_: every tag up to `tag`, or that one tag
                const uint64_t last = flightTag_ + flight_.size();  // one past the last tag
                size_t from = 0;
                size_t to = 0;
                if (tag >= flightTag_ && tag < last) {
                    to = static_cast<size_t>(tag - flightTag_) + 1;
                    from = multiple ? 0 : to - 1;
                }
                std::deque<Message> again;
                for (size_t i = from; i < to; ++i) {
                    Flight& fl = flight_[i];
                    if (!fl.open) {
                        continue;
                    }
                    fl.open = false;
                    --flightOpen_;
                    if (ack && fl.returned && opt_.retryUnroutable && fl.m.tracked) {
                        // confirmed, but no queue took it: held, published again later
                        if (held_.empty()) {
                            heldUntil_ = std::chrono::steady_clock::now() +
                                         std::chrono::milliseconds(opt_.reconnectMaxMs);
                        }
                        held_.push_back(std::move(fl.m));
                        stats_.held = static_cast<int64_t>(held_.size());
                        fl.m = Message{};
                    } else if (ack) {
                        ++stats_.confirmed;
                        finish(fl.m, true);
                        fl.m = Message{};  // its place may wait for earlier ones: not its body
                    } else {
                        ++stats_.nacked;
                        again.push_back(std::move(fl.m));
                    }
                }
                while (!flight_.empty() && !flight_.front().open) {
                    flight_.pop_front();
                    ++flightTag_;
                }
                stats_.inFlight = static_cast<int64_t>(flightOpen_);
                putBack(again);  // the broker could not take them: publish them again
                break;
            }
            case AMQP_BASIC_RETURN_METHOD: {
                auto* ret = static_cast<amqp_basic_return_t*>(f.payload.method.decoded);
                std::string reason = std::to_string(ret->reply_code) + " " + text(ret->reply_text) +
                                     " (routing key " + text(ret->routing_key) + ")";
                amqp_message_t msg{};
                amqp_rpc_reply_t r = amqp_read_message(c.conn.state(), f.channel, &msg, 0);
                if (r.reply_type != AMQP_RESPONSE_NORMAL) {
                    why = "reading a returned message: " + describe(r);
                    c.conn.broken();
                    return false;
                }
                // Its place in flight_: the open one with its message id (a return comes
                // before the message's confirm; ids are unique among the open ones).
                if ((msg.properties._flags & AMQP_BASIC_MESSAGE_ID_FLAG) != 0) {
                    const std::string id = text(msg.properties.message_id);
                    for (Flight& fl : flight_) {
                        if (fl.open && !fl.returned && fl.m.messageId == id) {
                            fl.returned = true;
                            break;
                        }
                    }
                }
                amqp_destroy_message(&msg);
                if (stats_.returned++ == 0) {
                    log_(kWarn, "amqp: the broker returned a message, no queue is bound for it: " +
                                    reason +
                                    (opt_.retryUnroutable
                                         ? " (records are held and published again until a queue "
                                           "takes them; counted in returned_total; logged once)"
                                         : " (counted in returned_total; logged once)"));
                }
                break;
            }
            case AMQP_CHANNEL_CLOSE_METHOD: {
                auto* m = static_cast<amqp_channel_close_t*>(f.payload.method.decoded);
                why = "the broker closed the channel: " + std::to_string(m->reply_code) + " " +
                      text(m->reply_text);
                amqp_channel_close_ok_t ok{};
                amqp_send_method(c.conn.state(), f.channel, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok);
                return false;
            }
            case AMQP_CONNECTION_CLOSE_METHOD: {
                auto* m = static_cast<amqp_connection_close_t*>(f.payload.method.decoded);
                why = "the broker closed the connection: " + std::to_string(m->reply_code) + " " +
                      text(m->reply_text);
                amqp_connection_close_ok_t ok{};
                amqp_send_method(c.conn.state(), 0, AMQP_CONNECTION_CLOSE_OK_METHOD, &ok);
                c.conn.broken();
                return false;
            }
            default:
                break;
        }
    }
    return true;
}

void Publisher::run() {
    Link c;
    while (true) {
        bool stopping = false;
        bool idle = false;
        {
            std::lock_guard<std::mutex> lock(owner_.mu);
            stopping = owner_.stopping;
            idle = queue_.empty() && flightOpen_ == 0 && held_.empty();
        }
        if (stopping && (idle || std::chrono::steady_clock::now() >= owner_.drainUntil)) {
            break;
        }
        if (!c.conn.isOpen()) {
            std::string why;
            if (!connect(c, why)) {
                disconnect(c, why.empty() ? "failed" : why);
                ++stats_.failures;
                auto wait = retry_.failed(why);
                std::unique_lock<std::mutex> lock(owner_.mu);
                auto until = std::chrono::steady_clock::now() + wait;
                if (owner_.stopping) {
                    until = std::min(until, owner_.drainUntil);
                }
                owner_.wake.wait_until(lock, until, [&] {
                    return owner_.stopping && std::chrono::steady_clock::now() >= owner_.drainUntil;
                });
                continue;
            }
            stats_.connected = 1;
            if (retry_.connected()) {
                ++stats_.reconnects;
            }
        }
        std::string why;
        if (!pump(c, why)) {
            disconnect(c, why);
            continue;
        }
        if (!stopping) {
            std::unique_lock<std::mutex> lock(owner_.mu);
            if (queue_.empty() && flightOpen_ == 0) {
                // Idle: wait for work, waking up for heartbeats.
                owner_.wake.wait_for(lock, std::chrono::milliseconds(200),
                                     [&] { return owner_.stopping || !queue_.empty(); });
            }
        }
    }
    disconnect(c, "");
    std::deque<Message> left;
    {
        std::lock_guard<std::mutex> lock(owner_.mu);
        left.swap(queue_);
    }
    for (auto& f : flight_) {
        if (f.open) {
            left.push_back(std::move(f.m));
        }
    }
    for (auto& m : held_) {
        left.push_back(std::move(m));
    }
    held_.clear();
    stats_.held = 0;
    flight_.clear();
    flightOpen_ = 0;
    stats_.inFlight = 0;
    if (!left.empty()) {
        log_(kWarn, "amqp: stopping with " + std::to_string(left.size()) +
                        " messages not confirmed by the broker (dropped, counted)");
    }
    dropAll(left);
}

}  // namespace mp::amqp

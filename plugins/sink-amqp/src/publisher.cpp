// SPDX-License-Identifier: Apache-2.0
#include "publisher.hpp"

#include <amqp.h>
#include <amqp_framing.h>
#include <amqp_tcp_socket.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <utility>

namespace mp::amqp {

namespace {

constexpr int kWarn = 3;  // MP_LOG_WARN
constexpr int kInfo = 2;  // MP_LOG_INFO
constexpr uint16_t kChannel = 1;

amqp_bytes_t bytes(const std::string& s) {
    return amqp_bytes_t{s.size(), const_cast<char*>(s.data())};
}
std::string text(amqp_bytes_t b) { return std::string(static_cast<const char*>(b.bytes), b.len); }

timeval timeout(int ms) {
    timeval tv{};
    tv.tv_sec = ms / 1000;
    tv.tv_usec = (ms % 1000) * 1000;
    return tv;
}

// One line for a failed RPC: the library's error, or the broker's close code and text
// ("403 ACCESS_REFUSED - Login was refused ...", "404 NOT_FOUND - no exchange 'x' ...").
std::string describe(const amqp_rpc_reply_t& r) {
    switch (r.reply_type) {
        case AMQP_RESPONSE_NORMAL:
            return "";
        case AMQP_RESPONSE_NONE:
            return "no reply from the broker";
        case AMQP_RESPONSE_LIBRARY_EXCEPTION:
            return amqp_error_string2(r.library_error);
        case AMQP_RESPONSE_SERVER_EXCEPTION:
            if (r.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
                auto* m = static_cast<amqp_connection_close_t*>(r.reply.decoded);
                return "the broker closed the connection: " + std::to_string(m->reply_code) + " " +
                       text(m->reply_text);
            }
            if (r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
                auto* m = static_cast<amqp_channel_close_t*>(r.reply.decoded);
                return "the broker closed the channel: " + std::to_string(m->reply_code) + " " +
                       text(m->reply_text);
            }
            return "the broker answered method " + std::to_string(r.reply.id);
    }
    return "unknown reply";
}

// A TCP connection within `ms`, with the reason when there is none ("connection refused",
// "timed out", "name resolution: ..."): rabbitmq-c's own connect only says "a socket error".
int connectTcp(const std::string& host, uint16_t port, int ms, std::string& why) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    int rc = ::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res);
    if (rc != 0) {
        why = "cannot resolve " + host + ": " + ::gai_strerror(rc);
        return -1;
    }
    std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> list(res, &::freeaddrinfo);
    why = "no address for " + host;
    for (addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
        int fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0) {
            why = std::string("cannot connect: ") + std::strerror(errno);
            continue;
        }
        int err = 0;
        if (::connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
            err = errno;
            if (err == EINPROGRESS) {
                pollfd p{fd, POLLOUT, 0};
                int n = ::poll(&p, 1, ms);
                socklen_t len = sizeof err;
                if (n == 0) {
                    err = ETIMEDOUT;
                } else if (n < 0 || ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) {
                    err = errno;
                }
            }
        }
        if (err == 0) {
            // Left non-blocking: rabbitmq-c (0.9 on) does its I/O with poll() and timeouts.
            int one = 1;
            ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            return fd;
        }
        ::close(fd);
        why = std::string("cannot connect: ") + std::strerror(err);
    }
    return -1;
}
}  // namespace

struct Publisher::Connection {
    amqp_connection_state_t state = nullptr;
    uint64_t nextTag = 1;  // delivery tags of a confirm channel count from 1
    bool open = false;     // logged in
    bool healthy = true;   // the socket works (false after an I/O error or a connection.close)
};

Publisher::Publisher(Options options, Log log) : opt_(std::move(options)), log_(std::move(log)) {}

Publisher::~Publisher() { stop(std::chrono::milliseconds(0)); }

void Publisher::start() {
    std::lock_guard<std::mutex> lock(mu_);
    if (thread_.joinable()) {
        return;
    }
    stopping_ = false;
    thread_ = std::thread([this] { run(); });
}

void Publisher::stop(std::chrono::milliseconds drain) {
    {
        std::lock_guard<std::mutex> lock(mu_);
        if (!thread_.joinable()) {
            return;
        }
        stopping_ = true;
        drainUntil_ = std::chrono::steady_clock::now() + drain;
    }
    wake_.notify_all();
    thread_.join();
}

bool Publisher::publish(Message m) {
    std::deque<Message> dropped;
    {
        std::lock_guard<std::mutex> lock(mu_);
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
    wake_.notify_all();
    bool refused = false;
    for (auto& d : dropped) {
        refused = refused || d.body.size() > opt_.maxQueuedBytes;
        if (d.done) {
            d.done(false);
        }
    }
    return !refused;
}

bool Publisher::tryPublish(Message& m) {
    {
        std::lock_guard<std::mutex> lock(mu_);
        if (static_cast<size_t>(stats_.queuedBytes.load()) + m.body.size() > opt_.maxQueuedBytes &&
            stats_.queuedBytes.load() != 0) {
            return false;  // full (a message alone larger than the bound still goes through)
        }
        stats_.queuedBytes += static_cast<int64_t>(m.body.size());
        queue_.push_back(std::move(m));
    }
    wake_.notify_all();
    return true;
}

void Publisher::finish(Message& m, bool delivered) {
    stats_.queuedBytes -= static_cast<int64_t>(m.body.size());
    if (m.done) {
        m.done(delivered);
    }
}

void Publisher::problem(const std::string& why) {
    ++stats_.failures;
    if (why != lastProblem_) {
        log_(kWarn,
             "amqp " + opt_.host + ":" + std::to_string(opt_.port) + ": " + why + "; retrying");
        lastProblem_ = why;
    }
}

bool Publisher::connect(Connection& c, std::string& why) {
    c.state = amqp_new_connection();
    c.nextTag = 1;
    c.healthy = true;
    amqp_socket_t* sock = amqp_tcp_socket_new(c.state);
    if (sock == nullptr) {
        why = "cannot make a socket";
        return false;
    }
    int fd = connectTcp(opt_.host, opt_.port, opt_.connectTimeoutMs, why);
    if (fd < 0) {
        return false;
    }
    amqp_tcp_socket_set_sockfd(sock, fd);  // the connection owns it from here
    timeval tv = timeout(opt_.connectTimeoutMs);
    amqp_set_handshake_timeout(c.state, &tv);
    amqp_set_rpc_timeout(c.state, &tv);
    amqp_rpc_reply_t r =
        amqp_login(c.state, opt_.vhost.c_str(), 0, 131072, opt_.heartbeatS, AMQP_SASL_METHOD_PLAIN,
                   opt_.user.c_str(), opt_.password.c_str());
    if (r.reply_type != AMQP_RESPONSE_NORMAL) {
        why = "login as " + opt_.user + " to vhost " + opt_.vhost + " refused: " + describe(r);
        c.healthy = false;
        return false;
    }
    c.open = true;  // from here on the connection is closed politely
    amqp_channel_open(c.state, kChannel);
    if (r = amqp_get_rpc_reply(c.state); r.reply_type != AMQP_RESPONSE_NORMAL) {
        why = "cannot open a channel: " + describe(r);
        return false;
    }
    if (opt_.declare != Options::Declare::None) {
        bool passive = opt_.declare == Options::Declare::Passive;
        amqp_exchange_declare(c.state, kChannel, bytes(opt_.exchange), bytes(opt_.exchangeType),
                              passive ? 1 : 0, opt_.persistent ? 1 : 0, 0, 0, amqp_empty_table);
        if (r = amqp_get_rpc_reply(c.state); r.reply_type != AMQP_RESPONSE_NORMAL) {
            why = std::string(passive ? "exchange '" + opt_.exchange + "' (passive) not usable: "
                                      : "cannot declare exchange '" + opt_.exchange + "': ") +
                  describe(r);
            return false;
        }
    }
    amqp_confirm_select(c.state, kChannel);
    if (r = amqp_get_rpc_reply(c.state); r.reply_type != AMQP_RESPONSE_NORMAL) {
        why = "publisher confirms refused: " + describe(r);
        return false;
    }
    return true;
}

void Publisher::disconnect(Connection& c, const std::string& why) {
    if (c.state == nullptr) {
        return;
    }
    if (c.open && c.healthy) {  // the socket works: say goodbye (the channel may be gone)
        if (why.empty()) {
            amqp_channel_close(c.state, kChannel, AMQP_REPLY_SUCCESS);
        }
        amqp_connection_close(c.state, AMQP_REPLY_SUCCESS);
    }
    amqp_destroy_connection(c.state);
    c.state = nullptr;
    c.open = false;
    if (stats_.connected.exchange(0) != 0 && !why.empty()) {
        problem("connection lost: " + why);
    }
    requeueInFlight();
}

// Unconfirmed messages go back to the head of the queue, in publication order.
void Publisher::requeueInFlight() {
    if (flight_.empty()) {
        return;
    }
    std::lock_guard<std::mutex> lock(mu_);
    for (auto it = flight_.rbegin(); it != flight_.rend(); ++it) {
        queue_.push_front(std::move(it->second));
    }
    flight_.clear();
    stats_.inFlight = 0;
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
bool Publisher::pump(Connection& c, std::string& why) {
    while (flight_.size() < opt_.maxInFlight) {
        Message m;
        {
            std::lock_guard<std::mutex> lock(mu_);
            if (queue_.empty()) {
                break;
            }
            m = std::move(queue_.front());
            queue_.pop_front();
        }
        amqp_basic_properties_t props{};
        props._flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG |
                       AMQP_BASIC_MESSAGE_ID_FLAG | AMQP_BASIC_APP_ID_FLAG;
        props.content_type = bytes(m.contentType);
        props.delivery_mode =
            opt_.persistent ? AMQP_DELIVERY_PERSISTENT : AMQP_DELIVERY_NONPERSISTENT;
        props.message_id = bytes(m.messageId);
        static const std::string app = "mysqlprobe";
        props.app_id = bytes(app);
        if (!m.type.empty()) {
            props._flags |= AMQP_BASIC_TYPE_FLAG;
            props.type = bytes(m.type);
        }
        if (m.timestampS != 0) {
            props._flags |= AMQP_BASIC_TIMESTAMP_FLAG;
            props.timestamp = m.timestampS;
        }
        int st = amqp_basic_publish(c.state, kChannel, bytes(opt_.exchange), bytes(m.routingKey),
                                    opt_.mandatory ? 1 : 0, 0, &props, bytes(m.body));
        ++(m.attempts == 0 ? stats_.published : stats_.resent);
        ++m.attempts;
        flight_.emplace(c.nextTag++, std::move(m));
        stats_.inFlight = static_cast<int64_t>(flight_.size());
        if (st != AMQP_STATUS_OK) {
            why = std::string("publish failed: ") + amqp_error_string2(st);
            c.healthy = false;
            return false;
        }
    }

    // What the broker says: confirms, returns, a closing channel. Wait a little when there is
    // nothing to publish (the wait also serves heartbeats).
    bool more = false;
    {
        std::lock_guard<std::mutex> lock(mu_);
        more = !queue_.empty() && flight_.size() < opt_.maxInFlight;
    }
    timeval tv = timeout(more ? 0 : flight_.empty() ? 50 : 20);
    for (int frames = 0; frames < 10000; ++frames) {
        amqp_frame_t f{};
        amqp_maybe_release_buffers(c.state);
        timeval none{};  // after the first frame: only what has already arrived
        int st = amqp_simple_wait_frame_noblock(c.state, &f, frames == 0 ? &tv : &none);
        if (st == AMQP_STATUS_TIMEOUT) {
            return true;
        }
        if (st != AMQP_STATUS_OK) {
            why = amqp_error_string2(st);
            c.healthy = false;
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
                auto end = multiple ? flight_.upper_bound(tag) : flight_.find(tag);
                auto begin = multiple ? flight_.begin() : end;
                if (!multiple && end != flight_.end()) {
                    ++end;
                }
                std::deque<Message> again;
                for (auto it = begin; it != end; ++it) {
                    if (ack) {
                        ++stats_.confirmed;
                        finish(it->second, true);
                    } else {
                        ++stats_.nacked;
                        again.push_back(std::move(it->second));
                    }
                }
                flight_.erase(begin, end);
                stats_.inFlight = static_cast<int64_t>(flight_.size());
                if (!again.empty()) {  // the broker could not take them: publish them again
                    std::lock_guard<std::mutex> lock(mu_);
                    for (auto it = again.rbegin(); it != again.rend(); ++it) {
                        queue_.push_front(std::move(*it));
                    }
                }
                break;
            }
            case AMQP_BASIC_RETURN_METHOD: {
                auto* ret = static_cast<amqp_basic_return_t*>(f.payload.method.decoded);
                std::string reason = std::to_string(ret->reply_code) + " " + text(ret->reply_text) +
                                     " (routing key " + text(ret->routing_key) + ")";
                amqp_message_t msg{};
                amqp_rpc_reply_t r = amqp_read_message(c.state, f.channel, &msg, 0);
                if (r.reply_type != AMQP_RESPONSE_NORMAL) {
                    why = "reading a returned message: " + describe(r);
                    c.healthy = false;
                    return false;
                }
                amqp_destroy_message(&msg);
                if (stats_.returned++ == 0) {
                    log_(kWarn, "amqp: the broker returned a message, no queue is bound for it: " +
                                    reason + " (counted in returned_total; logged once)");
                }
                break;
            }
            case AMQP_CHANNEL_CLOSE_METHOD: {
                auto* m = static_cast<amqp_channel_close_t*>(f.payload.method.decoded);
                why = "the broker closed the channel: " + std::to_string(m->reply_code) + " " +
                      text(m->reply_text);
                amqp_channel_close_ok_t ok{};
                amqp_send_method(c.state, f.channel, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok);
                return false;
            }
            case AMQP_CONNECTION_CLOSE_METHOD: {
                auto* m = static_cast<amqp_connection_close_t*>(f.payload.method.decoded);
                why = "the broker closed the connection: " + std::to_string(m->reply_code) + " " +
                      text(m->reply_text);
                amqp_connection_close_ok_t ok{};
                amqp_send_method(c.state, 0, AMQP_CONNECTION_CLOSE_OK_METHOD, &ok);
                c.healthy = false;
                return false;
            }
            default:
                break;
        }
    }
    return true;
}

void Publisher::run() {
    Connection c;
    int backoffMs = opt_.reconnectMinMs;
    while (true) {
        bool stopping = false;
        bool idle = false;
        {
            std::lock_guard<std::mutex> lock(mu_);
            stopping = stopping_;
            idle = queue_.empty() && flight_.empty();
        }
        if (stopping && (idle || std::chrono::steady_clock::now() >= drainUntil_)) {
            break;
        }
        if (c.state == nullptr) {
            std::string why;
            if (!connect(c, why)) {
                disconnect(c, why.empty() ? "failed" : why);
                problem(why);
                ++failedAttempts_;
                std::unique_lock<std::mutex> lock(mu_);
                auto until =
                    std::chrono::steady_clock::now() + std::chrono::milliseconds(backoffMs);
                if (stopping_) {
                    until = std::min(until, drainUntil_);
                }
                wake_.wait_until(lock, until, [&] {
                    return stopping_ && std::chrono::steady_clock::now() >= drainUntil_;
                });
                backoffMs = std::min(backoffMs * 2, opt_.reconnectMaxMs);
                continue;
            }
            stats_.connected = 1;
            if (everConnected_) {
                ++stats_.reconnects;
            }
            if (everConnected_ || failedAttempts_ != 0) {
                log_(kInfo,
                     "amqp: connected to " + opt_.host + ":" + std::to_string(opt_.port) +
                         (failedAttempts_ != 0
                              ? " after " + std::to_string(failedAttempts_) + " failed attempts"
                              : std::string()));
            }
            everConnected_ = true;
            failedAttempts_ = 0;
            lastProblem_.clear();
            backoffMs = opt_.reconnectMinMs;
        }
        std::string why;
        if (!pump(c, why)) {
            disconnect(c, why);
            continue;
        }
        if (!stopping) {
            std::unique_lock<std::mutex> lock(mu_);
            if (queue_.empty() && flight_.empty()) {
                // Idle: wait for work, waking up for heartbeats.
                wake_.wait_for(lock, std::chrono::milliseconds(200),
                               [&] { return stopping_ || !queue_.empty(); });
            }
        }
    }
    disconnect(c, "");
    std::deque<Message> left;
    {
        std::lock_guard<std::mutex> lock(mu_);
        left.swap(queue_);
    }
    for (auto& [tag, m] : flight_) {
        left.push_back(std::move(m));
    }
    flight_.clear();
    stats_.inFlight = 0;
    if (!left.empty()) {
        log_(kWarn, "amqp: stopping with " + std::to_string(left.size()) +
                        " messages not confirmed by the broker (dropped, counted)");
    }
    dropAll(left);
}

}  // namespace mp::amqp

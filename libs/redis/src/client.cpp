// SPDX-License-Identifier: Apache-2.0
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <mp/dial.hpp>

#include "connection.hpp"

namespace mp::redis {
namespace detail {
namespace {

constexpr size_t kReadChunk = 16 * 1024;
constexpr size_t kMaxServerMessage = 256;  // of an error quoted in an exception

/// Milliseconds left to `deadline` for poll(): rounded up, -1 for no deadline.
int pollWait(Clock::time_point deadline) {
    if (deadline == Clock::time_point::max()) {
        return -1;
    }
    const auto left = deadline - Clock::now();
    if (left <= Clock::duration::zero()) {
        return 0;
    }
    const auto ms = std::chrono::ceil<std::chrono::milliseconds>(left).count();
    return static_cast<int>(std::min<int64_t>(ms, INT_MAX));
}

/// A server's error message fit for an exception: one line, bounded.
std::string quote(const std::string& message) {
    std::string m = message.substr(0, kMaxServerMessage);
    if (message.size() > kMaxServerMessage) {
        m += "...";
    }
    for (char& c : m) {
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
            c = '?';
        }
    }
    return m;
}

/// Replaces `secret` in every error of `r` by "***": a server may quote what it was sent (the
/// AUTH command), and error messages end up in exceptions and logs.
void scrub(Reply& top, const std::string& secret) {
    std::vector<Reply*> todo{&top};
    while (!todo.empty()) {
        Reply& r = *todo.back();
        todo.pop_back();
        if (r.isError()) {
            for (size_t at = r.str.find(secret); at != std::string::npos;
                 at = r.str.find(secret, at + 3)) {
                r.str.replace(at, secret.size(), "***");
            }
        }
        for (Reply& e : r.elements) {
            todo.push_back(&e);
        }
    }
}

}  // namespace

Clock::time_point deadlineIn(int ms) {
    if (ms < 0) {
        return Clock::time_point::max();
    }
    return Clock::now() + std::chrono::milliseconds(ms);
}

Connection::Connection(const Options& o)
    : options_(o),
      where_((o.host.find(':') != std::string::npos ? "[" + o.host + "]" : o.host) + ":" +
             std::to_string(o.port)),
      parser_(o.limits) {}

void Connection::fail(const std::string& what) {
    close();
    throw ConnectionError("redis " + where_ + ": " + what);
}

void Connection::close() {
    if (fd_ >= 0) {
        ::close(fd_);
        fd_ = -1;
    }
    parser_.reset();  // what was buffered belonged to that connection
}

void Connection::connectSocket() {
    std::string why;
    fd_ = net::dial(options_.host, options_.port, options_.connectTimeoutMs, why);
    if (fd_ < 0) {
        fail(why.rfind("cannot resolve", 0) == 0 ? why : "cannot connect: " + why);
    }
    int on = 1;
    ::setsockopt(fd_, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on);
}

void Connection::open(bool select) {
    close();
    connectSocket();
    if (options_.password) {
        std::vector<std::string> auth{"AUTH"};
        if (!options_.user.empty()) {
            auth.push_back(options_.user);
        }
        auth.push_back(*options_.password);
        const Reply r = roundTrip(auth);
        if (!r.isString("OK")) {
            fail("AUTH refused: " + (r.isError() ? quote(r.str) : std::string("unexpected reply")));
        }
    }
    if (select && options_.db) {
        const Reply r = roundTrip({"SELECT", std::to_string(*options_.db)});
        if (!r.isString("OK")) {
            fail("SELECT " + std::to_string(*options_.db) +
                 " refused: " + (r.isError() ? quote(r.str) : std::string("unexpected reply")));
        }
    }
}

bool Connection::stale() const {
    if (fd_ < 0 || parser_.buffered() > 0) {
        return true;
    }
    pollfd p{fd_, POLLIN, 0};
    const int rc = ::poll(&p, 1, 0);
    if (rc == 0) {
        return false;
    }
    if (rc < 0 || (p.revents & (POLLERR | POLLHUP | POLLNVAL)) != 0) {
        return true;
    }
    // Readable with no command sent: closed by the server (0), or bytes nobody asked for.
    char c = 0;
    const ssize_t got = ::recv(fd_, &c, 1, MSG_PEEK);
    return !(got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR));
}

void Connection::send(std::string_view data, Clock::time_point deadline) {
    if (fd_ < 0) {
        fail("not connected");
    }
    size_t off = 0;
    while (off < data.size()) {
        const ssize_t w = ::send(fd_, data.data() + off, data.size() - off, MSG_NOSIGNAL);
        if (w > 0) {
            off += static_cast<size_t>(w);
            continue;
        }
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            pollfd p{fd_, POLLOUT, 0};
            const int rc = ::poll(&p, 1, pollWait(deadline));
            if (rc == 0 && Clock::now() >= deadline) {
                fail("write timed out after " + std::to_string(options_.readTimeoutMs) + " ms");
            }
            if (rc < 0 && errno != EINTR) {
                fail(std::string("poll failed: ") + std::strerror(errno));
            }
            continue;
        }
        fail(std::string("write failed: ") + std::strerror(errno));
    }
}

bool Connection::receive(Reply& out, Clock::time_point deadline) {
    char chunk[kReadChunk];
    for (;;) {
        try {
            if (parser_.next(out)) {
                if (options_.password && !options_.password->empty()) {
                    scrub(out, *options_.password);
                }
                return true;
            }
        } catch (const ProtocolError& e) {
            close();
            throw ProtocolError("redis " + where_ + ": " + e.what());
        }
        if (fd_ < 0) {
            fail("not connected");
        }
        pollfd p{fd_, POLLIN, 0};
        const int rc = ::poll(&p, 1, pollWait(deadline));
        if (rc < 0) {
            if (errno == EINTR) {
                continue;
            }
            fail(std::string("poll failed: ") + std::strerror(errno));
        }
        if (rc == 0) {
            if (Clock::now() >= deadline) {
                return false;
            }
            continue;
        }
        const ssize_t got = ::recv(fd_, chunk, sizeof chunk, 0);
        if (got > 0) {
            parser_.feed(std::string_view(chunk, static_cast<size_t>(got)));
        } else if (got == 0) {
            fail("the server closed the connection");
        } else if (errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK) {
            fail(std::string("read failed: ") + std::strerror(errno));
        }
    }
}

Reply Connection::roundTrip(const std::vector<std::string>& args) {
    const Clock::time_point deadline = deadlineIn(std::max(options_.readTimeoutMs, 0));
    send(encode(args), deadline);
    Reply r;
    if (!receive(r, deadline)) {
        // The reply may still come: the connection cannot be used for another command.
        fail("no reply within " + std::to_string(options_.readTimeoutMs) + " ms");
    }
    return r;
}

}  // namespace detail

// Client

Client::Client(const Options& options) : conn_(std::make_unique<detail::Connection>(options)) {}
Client::~Client() = default;
Client::Client(Client&&) noexcept = default;
Client& Client::operator=(Client&&) noexcept = default;

void Client::connect() {
    if (conn_->isOpen() && conn_->stale()) {
        conn_->close();  // closed by the server while idle: nothing was sent on it
    }
    if (!conn_->isOpen()) {
        conn_->open(true);
    }
}

Reply Client::command(const std::vector<std::string>& args) {
    if (args.empty()) {
        throw std::invalid_argument("redis: an empty command");
    }
    connect();
    return conn_->roundTrip(args);
}

void Client::close() { conn_->close(); }
bool Client::connected() const { return conn_->isOpen(); }
const std::string& Client::where() const { return conn_->where(); }

// Subscriber

namespace {

/// A published message: ["message", channel, payload].
bool isMessage(const Reply& r) {
    return r.isArray() && r.elements.size() == 3 && r.elements[0].isString("message") &&
           r.elements[1].type == Reply::Type::Bulk && r.elements[2].type == Reply::Type::Bulk;
}

}  // namespace

Subscriber::Subscriber(const Options& options, std::vector<std::string> channels)
    : conn_(std::make_unique<detail::Connection>(options)), channels_(std::move(channels)) {
    if (channels_.empty()) {
        throw std::invalid_argument("redis: a subscriber without channels");
    }
    subscribe();
}

Subscriber::~Subscriber() = default;
Subscriber::Subscriber(Subscriber&&) noexcept = default;
Subscriber& Subscriber::operator=(Subscriber&&) noexcept = default;

const std::string& Subscriber::where() const { return conn_->where(); }

void Subscriber::subscribe() {
    conn_->open(false);
    std::vector<std::string> args{"SUBSCRIBE"};
    args.insert(args.end(), channels_.begin(), channels_.end());
    const auto deadline = detail::deadlineIn(std::max(conn_->options().readTimeoutMs, 0));
    conn_->send(encode(args), deadline);
    // One confirmation per channel named (a channel named twice is confirmed twice); messages
    // on the channels confirmed first may come in between.
    size_t confirmed = 0;
    while (confirmed < channels_.size()) {
        Reply r;
        if (!conn_->receive(r, deadline)) {
            conn_->fail("SUBSCRIBE not confirmed within " +
                        std::to_string(conn_->options().readTimeoutMs) + " ms");
        }
        if (r.isError()) {
            conn_->fail("SUBSCRIBE refused: " + detail::quote(r.str));
        }
        if (isMessage(r)) {
            pending_.emplace_back(std::move(r.elements[1].str), std::move(r.elements[2].str));
        } else if (r.isArray() && !r.elements.empty() && r.elements[0].isString("subscribe")) {
            ++confirmed;
        }
    }
}

std::optional<std::pair<std::string, std::string>> Subscriber::next(int timeoutMs) {
    if (!pending_.empty()) {
        auto m = std::move(pending_.front());
        pending_.pop_front();
        return m;
    }
    if (!conn_->isOpen()) {
        subscribe();  // after a broken connection: connect and subscribe again
        if (!pending_.empty()) {
            auto m = std::move(pending_.front());
            pending_.pop_front();
            return m;
        }
    }
    const auto deadline = detail::deadlineIn(timeoutMs);
    Reply r;
    while (conn_->receive(r, deadline)) {
        if (isMessage(r)) {
            return std::make_pair(std::move(r.elements[1].str), std::move(r.elements[2].str));
        }
        if (r.isError()) {
            conn_->fail("error in pub/sub mode: " + detail::quote(r.str));
        }
        // Anything else (a confirmation, a pong) is not a message.
    }
    return std::nullopt;
}

}  // namespace mp::redis

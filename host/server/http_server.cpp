// SPDX-License-Identifier: Apache-2.0
#include "server/http_server.hpp"

#include <Poco/Net/SocketAddress.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <ctime>
#include <deque>
#include <mp/files.hpp>
#include <mp/sdk.hpp>
#include <shared_mutex>
#include <thread>
#include <unordered_map>

#include "core/log.hpp"
#include "server/http_parser.hpp"
#include "server/ws_frame.hpp"

namespace mp::host {

namespace {
// epoll keys of the two descriptors that are not connections (connection ids count up from 1).
constexpr uint64_t kListenKey = UINT64_MAX;
// Output a websocket connection may owe its client before the server stops adding to it: the
// plugin queue waits behind it, and pings get no pong of their own.
constexpr size_t kMaxOwedOutput = 1u << 20;
constexpr uint64_t kWakeKey = UINT64_MAX - 1;

// application/x-www-form-urlencoded decoding of one name or value; false on a broken escape.
bool percentDecode(std::string_view in, std::string& res) {
    res.clear();
    for (size_t i = 0; i < in.size(); ++i) {
        char c = in[i];
        if (c == '+') {
            res += ' ';
        } else if (c == '%') {
            auto hex = [](char h) -> int {
                if (h >= '0' && h <= '9') {
                    return h - '0';
                }
                if (h >= 'a' && h <= 'f') {
                    return h - 'a' + 10;
                }
                if (h >= 'A' && h <= 'F') {
                    return h - 'A' + 10;
                }
                return -1;
            };
            if (i + 2 >= in.size()) {
                return false;
            }
            int hi = hex(in[i + 1]);
            int lo = hex(in[i + 2]);
            if (hi < 0 || lo < 0) {
                return false;
            }
            res += static_cast<char>(hi * 16 + lo);
            i += 2;
        } else {
            res += c;
        }
    }
    return true;
}
}  // namespace

bool parseQuery(const std::string& query, std::multimap<std::string, std::string>& out) {
    auto decode = [](std::string_view in, std::string& res) { return percentDecode(in, res); };
    std::string_view q = query;
    while (!q.empty()) {
        size_t amp = q.find('&');
        std::string_view part = q.substr(0, amp);
        q = amp == std::string_view::npos ? std::string_view() : q.substr(amp + 1);
        if (part.empty()) {
            continue;
        }
        size_t eq = part.find('=');
        std::string key;
        std::string value;
        if (!decode(part.substr(0, eq), key)) {
            return false;
        }
        if (eq != std::string_view::npos && !decode(part.substr(eq + 1), value)) {
            return false;
        }
        out.emplace(std::move(key), std::move(value));
    }
    return true;
}

namespace {

using Clock = std::chrono::steady_clock;

std::string errorJson(const std::string& msg) { return "{\"error\":" + mp::jsonString(msg) + "}"; }

bool iequals(std::string_view a, std::string_view b) {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
               return std::tolower(static_cast<unsigned char>(x)) ==
                      std::tolower(static_cast<unsigned char>(y));
           });
}

bool listHas(std::string_view value, std::string_view token) {
    while (!value.empty()) {
        size_t comma = value.find(',');
        std::string_view item = value.substr(0, comma);
        while (!item.empty() && (item.front() == ' ' || item.front() == '\t')) {
            item.remove_prefix(1);
        }
        while (!item.empty() && (item.back() == ' ' || item.back() == '\t')) {
            item.remove_suffix(1);
        }
        if (iequals(item, token)) {
            return true;
        }
        if (comma == std::string_view::npos) {
            break;
        }
        value.remove_prefix(comma + 1);
    }
    return false;
}

bool methodAllowed(uint32_t methods, const std::string& m) {
    return ((methods & MP_HTTP_GET) != 0 && (m == "GET" || m == "HEAD")) ||
           ((methods & MP_HTTP_POST) != 0 && m == "POST") ||
           ((methods & MP_HTTP_PUT) != 0 && m == "PUT") ||
           ((methods & MP_HTTP_DELETE) != 0 && m == "DELETE");
}

std::string allowHeader(uint32_t methods) {
    std::string out;
    for (auto [bit, names] : {std::pair<uint32_t, const char*>{MP_HTTP_GET, "GET, HEAD"},
                              {MP_HTTP_POST, "POST"},
                              {MP_HTTP_PUT, "PUT"},
                              {MP_HTTP_DELETE, "DELETE"}}) {
        if ((methods & bit) != 0) {
            out += (out.empty() ? "" : ", ") + std::string(names);
        }
    }
    return out;
}

// The access rule of a route or an endpoint against its caller: 0 when allowed, else the
// status to answer (401: no token, or one that matches none; 403: a role too low).
int gate(const Caller& caller, uint32_t need) {
    need = need == MP_ROLE_DEFAULT ? MP_ROLE_ADMIN : need;
    if (need <= MP_ROLE_ANYONE) {
        return 0;
    }
    if (caller.badCredentials) {
        return 401;
    }
    if (caller.role >= need) {
        return 0;
    }
    return caller.principal == "anonymous" ? 401 : 403;
}

std::string gateMessage(int status, uint32_t need) {
    std::string role = roleName(need == MP_ROLE_DEFAULT ? MP_ROLE_ADMIN : need);
    return status == 401
               ? "a valid token is required (Authorization: Bearer TOKEN; role " + role + ")"
               : "this token's role is too low: this path needs the '" + role + "' role";
}

std::string httpDate() {
    char buf[64];
    std::time_t t = std::time(nullptr);
    std::tm tm{};
    gmtime_r(&t, &tm);
    std::strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    return buf;
}

// Drops "name=..." from a query string (the access token never reaches a plugin).
std::string stripParam(const std::string& q, std::string_view name) {
    std::string out;
    size_t start = 0;
    while (start <= q.size()) {
        size_t amp = q.find('&', start);
        std::string_view part(q.data() + start,
                              (amp == std::string::npos ? q.size() : amp) - start);
        // Compared decoded: "access%5Ftoken" is the same parameter to every query parser.
        std::string decoded;
        bool named = percentDecode(part.substr(0, part.find('=')), decoded) && decoded == name;
        if (!part.empty() && !named) {
            out += (out.empty() ? "" : "&") + std::string(part);
        }
        if (amp == std::string::npos) {
            break;
        }
        start = amp + 1;
    }
    return out;
}

}  // namespace

// ---- a small pool of worker threads -----------------------------------------------------------

class WorkerPool {
  public:
    WorkerPool(size_t threads, size_t maxQueued) : max_(maxQueued) {
        for (size_t i = 0; i < std::max<size_t>(1, threads); ++i) {
            threads_.emplace_back([this] { run(); });
        }
    }
    ~WorkerPool() { join(); }
    /// False when the queue is full (the caller answers 503).
    bool submit(std::function<void()> task) {
        std::lock_guard<std::mutex> lock(m_);
        if (queue_.size() >= max_ || stopping_) {
            return false;
        }
        queue_.push_back(std::move(task));
        cv_.notify_one();
        return true;
    }
    /// Runs what is queued, then ends the threads.
    void join() {
        {
            std::lock_guard<std::mutex> lock(m_);
            stopping_ = true;
        }
        cv_.notify_all();
        for (auto& t : threads_) {
            if (t.joinable()) {
                t.join();
            }
        }
        threads_.clear();
    }
    /// Tasks queued or running.
    size_t busy() {
        std::lock_guard<std::mutex> lock(m_);
        return queue_.size() + running_;
    }

  private:
    void run() {
        while (true) {
            std::function<void()> task;
            {
                std::unique_lock<std::mutex> lock(m_);
                cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
                if (queue_.empty()) {
                    return;
                }
                task = std::move(queue_.front());
                queue_.pop_front();
                ++running_;
            }
            try {
                task();
            } catch (const std::exception& e) {
                log(MP_LOG_ERROR, "http", std::string("a handler failed: ") + e.what());
            } catch (...) {
                log(MP_LOG_ERROR, "http", "a handler failed");
            }
            std::lock_guard<std::mutex> lock(m_);
            --running_;
        }
    }
    size_t max_;
    std::mutex m_;
    std::condition_variable cv_;
    std::deque<std::function<void()>> queue_;
    size_t running_ = 0;
    bool stopping_ = false;
    std::vector<std::thread> threads_;
};

}  // namespace mp::host

// One websocket connection as plugins see it: valid from on_open until on_close returns.
struct mp_ws_conn {
    std::mutex mutex;
    std::deque<std::pair<uint32_t, std::string>> queue;  // outgoing, not yet on the loop
    size_t queuedBytes = 0;
    bool closed = false;          // peer gone or closing: ws_send returns MP_ECLOSED
    bool closeRequested = false;  // ws_close() called
    uint16_t closeCode = 1000;
    std::string closeReason;
    size_t maxQueue = 64;
    size_t maxQueueBytes = 64 << 20;
    mp::host::HttpServer::Impl* server = nullptr;
    uint64_t connId = 0;
};

namespace mp::host {

// The plugin side of one websocket: callbacks run one at a time on a worker, in order.
struct WsSession {
    mp_ws_conn handle;
    mp_ws_handler h{};
    std::mutex m;
    std::deque<std::pair<uint32_t, std::string>> inbound;  // messages for on_message
    size_t inboundBytes = 0;
    bool running = false;  // a drain task is queued or running
    bool ended = false;    // the connection is gone: on_close after the inbound ones
    bool opened = false;   // on_open accepted: on_close is owed
};

struct HttpServer::Impl {
    HttpOptions options;
    Metrics& metrics;
    const Authenticator& auth;
    std::shared_mutex routesMutex;
    std::map<std::string, RouteSpec> routes;
    struct WsSpec {
        mp_ws_handler handler;
        const std::atomic<bool>* ready;
    };
    std::map<std::string, WsSpec> sockets;

    // Counters.
    mp_counter *requests, *badRequests, *wsOpen, *wsDropped, *wsSlowClosed, *wsIdleClosed,
        *wsProtocolErrors, *authFailures, *forbidden, *connections, *refused, *timeouts,
        *memoryRefused, *tlsFailures, *wsPongsSkipped;

    // The loop's state (only the loop thread touches these, after start()).
    struct Conn;
    int listenFd = -1;
    int epollFd = -1;
    int wakeFd = -1;
    std::thread loop;
    std::atomic<bool> stopping{false};
    std::unordered_map<int, std::shared_ptr<Conn>> conns;  // by fd
    std::unordered_map<uint64_t, int> fdById;
    std::unordered_map<std::string, size_t> perClient;
    uint64_t nextId = 1;
    std::atomic<int64_t> buffered{0};  // bytes held for clients, all connections

    // Hand-over to the loop from workers and plugins.
    struct Done {
        uint64_t id;
        int status;
        std::string contentType;
        std::string body;
        bool headOnly;                       // a HEAD: the length of the body, not the body
        bool upgrade;                        // on_open's answer: status 101 accepts
        std::shared_ptr<WsSession> session;  // upgrade: the session on_open ran for
    };
    std::mutex handMutex;
    std::vector<Done> done;
    std::vector<uint64_t> poked;  // websockets with something to send (or to resume reading)

    std::unique_ptr<WorkerPool> readers;
    std::unique_ptr<WorkerPool> control;
    SSL_CTX* tls = nullptr;  // set when the server speaks TLS

    Impl(HttpOptions o, Metrics& m, const Authenticator& a)
        : options(std::move(o)),
          metrics(m),
          auth(a),
          requests(m.get("http", "requests_total", "HTTP requests served", MP_COUNTER)),
          badRequests(m.get("http", "bad_requests_total", "HTTP requests refused with a 4xx status",
                            MP_COUNTER)),
          wsOpen(m.get("http", "websocket_connections", "open websocket connections", MP_GAUGE)),
          wsDropped(m.get("http", "websocket_dropped_messages_total",
                          "websocket messages dropped because a client's queue was full",
                          MP_COUNTER)),
          wsSlowClosed(m.get("http", "websocket_write_timeouts_total",
                             "websocket clients closed because a write timed out", MP_COUNTER)),
          wsIdleClosed(m.get("http", "websocket_ping_timeouts_total",
                             "websocket clients closed because they stayed silent (no pong)",
                             MP_COUNTER)),
          wsProtocolErrors(m.get("http", "websocket_protocol_errors_total",
                                 "websocket clients closed for breaking RFC 6455 (1002, 1007, "
                                 "1009)",
                                 MP_COUNTER)),
          authFailures(m.get("http", "auth_failures_total",
                             "requests refused with 401: no token where one is needed, or a "
                             "token that matches none",
                             MP_COUNTER)),
          forbidden(m.get("http", "auth_forbidden_total",
                          "requests refused with 403: a valid token of a role too low",
                          MP_COUNTER)),
          connections(
              m.get("http", "connections", "open HTTP and websocket connections", MP_GAUGE)),
          refused(m.get("http", "connections_refused_total",
                        "connections refused with 503: too many in all, or from one address",
                        MP_COUNTER)),
          timeouts(m.get("http", "timeouts_total",
                         "connections closed because a request head, a body or a response did "
                         "not progress in time",
                         MP_COUNTER)),
          memoryRefused(m.get("http", "memory_refused_total",
                              "connections closed because the bytes held for clients reached "
                              "the server's budget",
                              MP_COUNTER)),
          tlsFailures(m.get("http", "tls_handshake_failures_total",
                            "TLS connections that failed their handshake (plain HTTP on the TLS "
                            "port, unknown ciphers, garbage)",
                            MP_COUNTER)),
          wsPongsSkipped(m.get("http", "websocket_pongs_skipped_total",
                               "pings answered by a later pong only: the client did not read "
                               "what the server already owed it",
                               MP_COUNTER)) {}

    static void add(mp_counter* c, int64_t n = 1) {
        c->value.fetch_add(n, std::memory_order_relaxed);
    }

    void wake() {
        uint64_t one = 1;
        (void)::write(wakeFd, &one, sizeof one);
    }
    void poke(uint64_t id) {
        {
            std::lock_guard<std::mutex> lock(handMutex);
            poked.push_back(id);
        }
        wake();
    }
    void finish(Done d) {
        {
            std::lock_guard<std::mutex> lock(handMutex);
            done.push_back(std::move(d));
        }
        wake();
    }

    // Runs the session's callbacks in order on a worker: queued messages, then on_close.
    void drain(const std::shared_ptr<WsSession>& s, WorkerPool& pool) {
        {
            std::lock_guard<std::mutex> lock(s->m);
            if (s->running) {
                return;
            }
            s->running = true;
        }
        auto run = [this, s] {
            while (true) {
                std::pair<uint32_t, std::string> msg;
                bool close = false;
                {
                    std::lock_guard<std::mutex> lock(s->m);
                    if (!s->inbound.empty()) {
                        msg = std::move(s->inbound.front());
                        s->inbound.pop_front();
                        s->inboundBytes -= msg.second.size();
                        buffered.fetch_sub(static_cast<int64_t>(msg.second.size()));
                    } else if (s->ended && s->opened) {
                        close = true;
                        s->opened = false;
                    } else {
                        s->running = false;
                        break;
                    }
                }
                if (close) {
                    if (s->h.on_close != nullptr) {
                        s->h.on_close(s->h.user, &s->handle);
                    }
                    continue;
                }
                if (s->h.on_message != nullptr) {
                    s->h.on_message(s->h.user, &s->handle,
                                    msg.first == ws::Text ? MP_WS_TEXT : MP_WS_BINARY,
                                    mp_bytes{reinterpret_cast<const uint8_t*>(msg.second.data()),
                                             msg.second.size()});
                }
                poke(s->handle.connId);  // room again: the loop may read on
            }
        };
        if (!pool.submit(run)) {
            // The pool is stopping or full: run here rather than lose on_close (stop joins).
            run();
        }
    }
};

// One client connection (the loop's).
struct HttpServer::Impl::Conn {
    int fd = -1;
    uint64_t id = 0;
    std::string ip;
    std::string remote;  // "ip:port"
    enum class St { Head, Body, Busy, Ws, Closing } st = St::Head;
    std::string in;
    std::string out;
    Clock::time_point deadline;      // Head / Body / Closing
    Clock::time_point lastProgress;  // of the output
    bool sawBytes = false;           // of the current request
    bool reserved = false;           // admitted into the reserve: privileged callers only
    bool closeAfter = false;
    uint32_t events = 0;  // epoll interest
    // The request being read.
    http::RequestHead head;
    std::string path, query;
    std::string body;
    std::unique_ptr<http::ChunkedDecoder> chunked;
    RouteSpec route;
    Caller caller;
    RequestCtx ctx;
    // Websocket.
    std::shared_ptr<WsSession> session;
    std::unique_ptr<ws::Reader> reader;
    bool control = false;  // callbacks go to the control pool
    size_t maxMessage = 0;
    std::chrono::milliseconds pingEvery{0}, idleLimit{0}, wsWriteTimeout{0};
    Clock::time_point lastHeard, lastPing;
    bool closeSent = false;     // websocket: our close frame is queued
    bool wsCounted = false;     // counted in the open-websockets gauge
    SSL* ssl = nullptr;         // TLS (tls.cert_file): the session over this socket
    bool tlsReady = false;      // handshake done
    bool tlsWantWrite = false;  // OpenSSL needs the socket writable to go on
    bool shut = false;          // our side is shut down (SHUT_WR): only lingering remains
    size_t heldIn = 0;          // input and body bytes counted in Impl::buffered (and `out`)
};

namespace {

using Conn = HttpServer::Impl::Conn;

class Loop {
  public:
    explicit Loop(HttpServer::Impl& s) : s_(s) {}

    void run() {
        epoll_event evs[128];
        auto nextTick = Clock::now();
        while (true) {
            int n = ::epoll_wait(s_.epollFd, evs, 128, tlsPending_.empty() ? 100 : 0);
            for (int i = 0; i < n; ++i) {
                // Events name connections by id, not descriptor: a descriptor closed earlier in
                // this batch may already belong to a connection accepted since.
                uint64_t key = evs[i].data.u64;
                if (key == kWakeKey) {
                    uint64_t v = 0;
                    (void)::read(s_.wakeFd, &v, sizeof v);
                    continue;
                }
                if (key == kListenKey) {
                    acceptAll();
                    continue;
                }
                std::shared_ptr<Conn> c = find(key);
                if (!c) {
                    continue;
                }
                if ((evs[i].events & EPOLLIN) != 0) {
                    onReadable(*c);
                }
                if (c->fd >= 0 && (evs[i].events & EPOLLOUT) != 0) {
                    if (c->tlsWantWrite) {
                        onReadable(*c);  // OpenSSL wanted to write in order to read on
                    }
                    if (c->fd >= 0) {
                        flush(*c);
                    }
                }
                if (c->fd >= 0 && (evs[i].events & (EPOLLHUP | EPOLLERR)) != 0) {
                    close(*c);  // gone both ways: nothing left to read or to write
                }
            }
            handOver();
            std::vector<uint64_t> pending;
            pending.swap(tlsPending_);
            for (uint64_t id : pending) {
                auto c = find(id);
                if (c && (c->events & EPOLLIN) != 0) {
                    onReadable(*c);
                }
            }
            if (Clock::now() >= nextTick) {
                nextTick = Clock::now() + std::chrono::milliseconds(100);
                tick();
            }
            if (s_.stopping.load() && !stopped_) {
                beginStop();
            }
            if (stopped_ && (s_.conns.empty() || Clock::now() > stopDeadline_)) {
                break;
            }
        }
        // Whatever is left is closed now; every websocket's on_close still runs.
        std::vector<std::shared_ptr<Conn>> left;
        for (auto& [fd, c] : s_.conns) {
            left.push_back(c);
        }
        for (auto& c : left) {
            close(*c);
        }
        if (spareFd_ >= 0) {
            ::close(spareFd_);
        }
    }

  private:
    // ---- connections ---------------------------------------------------------------------

    void acceptAll() {
        while (true) {
            sockaddr_storage sa{};
            socklen_t len = sizeof sa;
            int fd = ::accept4(s_.listenFd, reinterpret_cast<sockaddr*>(&sa), &len,
                               SOCK_NONBLOCK | SOCK_CLOEXEC);
            if (fd < 0) {
                if ((errno == EMFILE || errno == ENFILE) && spareFd_ >= 0) {
                    // Out of descriptors: free an idle connection's, and take this one off the
                    // queue with the spare descriptor (else it stays readable, and the loop spins).
                    evictIdle();
                    ::close(spareFd_);
                    int gone = ::accept4(s_.listenFd, nullptr, nullptr, SOCK_CLOEXEC);
                    if (gone >= 0) {
                        HttpServer::Impl::add(s_.refused);
                        ::close(gone);
                    }
                    spareFd_ = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
                }
                return;
            }
            if (stopped_) {
                ::close(fd);
                continue;
            }
            Poco::Net::SocketAddress addr(reinterpret_cast<sockaddr*>(&sa), len);
            std::string ip = addr.host().toString();
            if (s_.conns.size() >= s_.options.maxConnections) {
                evictIdle();
            }
            if (s_.conns.size() >= s_.options.maxConnections ||
                s_.perClient[ip] >= s_.options.maxConnectionsPerClient) {
                // A clear refusal, best effort on a fresh socket, then the door shuts.
                HttpServer::Impl::add(s_.refused);
                std::string body =
                    errorJson(s_.conns.size() >= s_.options.maxConnections
                                  ? "too many connections: try again later"
                                  : "too many connections from " + ip + ": try again later");
                std::string resp =
                    "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n"
                    "Retry-After: 1\r\nContent-Type: application/json\r\n"
                    "Content-Length: " +
                    std::to_string(body.size()) + "\r\n\r\n" + body;
                (void)::send(fd, resp.data(), resp.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
                ::close(fd);
                if (s_.perClient[ip] == 0) {
                    s_.perClient.erase(ip);
                }
                continue;
            }
            int one = 1;
            ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            auto c = std::make_shared<Conn>();
            c->fd = fd;
            c->id = s_.nextId++;
            c->ip = ip;
            c->remote = addr.toString();
            c->reserved =
                s_.conns.size() + s_.options.reservedConnections >= s_.options.maxConnections;
            c->deadline = Clock::now() + s_.options.headerTimeout;
            if (s_.tls != nullptr) {
                c->ssl = SSL_new(s_.tls);
                if (c->ssl == nullptr || SSL_set_fd(c->ssl, fd) != 1) {
                    if (c->ssl != nullptr) {
                        SSL_free(c->ssl);
                    }
                    ::close(fd);
                    continue;
                }
                SSL_set_accept_state(c->ssl);
            }
            s_.perClient[ip] += 1;
            s_.conns[fd] = c;
            s_.fdById[c->id] = fd;
            s_.connections->value.store(static_cast<int64_t>(s_.conns.size()));
            c->events = EPOLLIN;
            epoll_event ev{};
            ev.events = c->events;
            ev.data.u64 = c->id;
            ::epoll_ctl(s_.epollFd, EPOLL_CTL_ADD, fd, &ev);
        }
    }

    // Closes the longest-idle keep-alive connection (between requests, nothing buffered).
    void evictIdle() {
        std::shared_ptr<Conn> oldest;
        for (auto& [fd, c] : s_.conns) {
            if (c->st == Conn::St::Head && !c->sawBytes && c->in.empty() && c->out.empty() &&
                (!oldest || c->deadline < oldest->deadline)) {
                oldest = c;
            }
        }
        if (oldest) {
            close(*oldest);
        }
    }

    void interest(Conn& c) {
        if (c.fd < 0) {
            return;
        }
        uint32_t want = 0;
        bool readable = c.st == Conn::St::Head || c.st == Conn::St::Body ||
                        c.st == Conn::St::Closing ||
                        (c.st == Conn::St::Ws && !c.closeSent && !sessionFull(c));
        if (c.st == Conn::St::Head && !c.out.empty()) {
            readable = false;  // one response at a time: pipelined requests wait in the kernel
        }
        if (c.ssl != nullptr && !c.tlsReady) {
            readable = true;  // the handshake first
        }
        if (readable) {
            want |= EPOLLIN;
        }
        if (!c.out.empty() || c.tlsWantWrite) {
            want |= EPOLLOUT;
        }
        if ((want & EPOLLIN) != 0 && c.ssl != nullptr && c.tlsReady && SSL_pending(c.ssl) > 0 &&
            (c.events & EPOLLIN) == 0) {
            tlsPending_.push_back(c.id);  // readable again with bytes OpenSSL already holds
        }
        if (want != c.events) {
            c.events = want;
            epoll_event ev{};
            ev.events = want;
            ev.data.u64 = c.id;
            ::epoll_ctl(s_.epollFd, EPOLL_CTL_MOD, c.fd, &ev);
        }
    }

    bool sessionFull(const Conn& c) {
        if (!c.session) {
            return false;
        }
        std::lock_guard<std::mutex> lock(c.session->m);
        return c.session->inboundBytes > c.maxMessage;
    }

    void close(Conn& c) {
        if (c.fd < 0) {
            return;
        }
        ::epoll_ctl(s_.epollFd, EPOLL_CTL_DEL, c.fd, nullptr);
        if (c.ssl != nullptr) {
            SSL_free(c.ssl);
            c.ssl = nullptr;
        }
        ::close(c.fd);
        s_.buffered.fetch_sub(static_cast<int64_t>(c.heldIn + c.out.size()));
        c.out.clear();
        c.heldIn = 0;
        if (auto pc = s_.perClient.find(c.ip); pc != s_.perClient.end() && --pc->second == 0) {
            s_.perClient.erase(pc);
        }
        s_.fdById.erase(c.id);
        int fd = c.fd;
        c.fd = -1;
        if (c.session) {
            endSession(c);
        }
        s_.conns.erase(fd);  // may free c
        s_.connections->value.store(static_cast<int64_t>(s_.conns.size()));
    }

    void endSession(Conn& c) {
        std::shared_ptr<WsSession> s = std::move(c.session);
        bool opened = false;
        {
            std::lock_guard<std::mutex> lock(s->handle.mutex);
            s->handle.closed = true;
            s_.buffered.fetch_sub(static_cast<int64_t>(s->handle.queuedBytes));
            s->handle.queuedBytes = 0;
            s->handle.queue.clear();
        }
        {
            std::lock_guard<std::mutex> lock(s->m);
            s->ended = true;
            opened = s->opened;
        }
        if (c.wsCounted) {
            c.wsCounted = false;
            HttpServer::Impl::add(s_.wsOpen, -1);
        }
        if (opened) {
            s_.drain(s, c.control ? *s_.control : *s_.readers);
        }
    }

    // Input is held by the server: every byte is counted against the budget.
    bool hold(Conn& c, size_t more) {
        if (static_cast<size_t>(s_.buffered.load()) + more > s_.options.maxBufferedBytes) {
            HttpServer::Impl::add(s_.memoryRefused);
            return false;
        }
        s_.buffered.fetch_add(static_cast<int64_t>(more));
        c.heldIn += more;
        return true;
    }
    void release(Conn& c, size_t n) {
        n = std::min(n, c.heldIn);
        s_.buffered.fetch_sub(static_cast<int64_t>(n));
        c.heldIn -= n;
    }

    // How much input this connection may hold in its state.
    size_t inputLimit(const Conn& c) const {
        switch (c.st) {
            case Conn::St::Head:
                return s_.options.maxHeadBytes + 1;
            case Conn::St::Body:
                return 64 * 1024;  // the body itself is counted as it is decoded
            case Conn::St::Ws:
                return c.maxMessage + 14;
            default:
                return 64 * 1024;
        }
    }

    // ---- the transport: plain TCP or TLS ---------------------------------------------------

    // Completes the TLS handshake; false while it is not done (or when it failed: closed).
    bool handshake(Conn& c) {
        if (c.ssl == nullptr || c.tlsReady) {
            return true;
        }
        ERR_clear_error();
        int r = SSL_do_handshake(c.ssl);
        if (r == 1) {
            c.tlsReady = true;
            c.tlsWantWrite = false;
            return true;
        }
        int e = SSL_get_error(c.ssl, r);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
            c.tlsWantWrite = e == SSL_ERROR_WANT_WRITE;
            interest(c);
            return false;
        }
        HttpServer::Impl::add(s_.tlsFailures);
        ERR_clear_error();
        close(c);
        return false;
    }

    // Bytes read (>0), 0 at the end of the stream, -1 when nothing is there now, -2 on error.
    ssize_t readSome(Conn& c, char* buf, size_t n) {
        if (c.ssl == nullptr) {
            ssize_t r = ::recv(c.fd, buf, n, 0);
            if (r < 0) {
                return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? -1 : -2;
            }
            return r;
        }
        ERR_clear_error();
        int r = SSL_read(c.ssl, buf, static_cast<int>(std::min<size_t>(n, INT32_MAX)));
        if (r > 0) {
            return r;
        }
        int e = SSL_get_error(c.ssl, r);
        if (e == SSL_ERROR_WANT_READ) {
            return -1;
        }
        if (e == SSL_ERROR_WANT_WRITE) {
            c.tlsWantWrite = true;
            return -1;
        }
        ERR_clear_error();
        return e == SSL_ERROR_ZERO_RETURN || e == SSL_ERROR_SYSCALL ? 0 : -2;
    }

    // Bytes written (>0), -1 when the socket is full, -2 on error.
    ssize_t writeSome(Conn& c, const char* p, size_t n) {
        if (c.ssl == nullptr) {
            ssize_t r = ::send(c.fd, p, n, MSG_NOSIGNAL);
            if (r < 0) {
                return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? -1 : -2;
            }
            return r;
        }
        ERR_clear_error();
        int r = SSL_write(c.ssl, p, static_cast<int>(std::min<size_t>(n, 1 << 20)));
        if (r > 0) {
            return r;
        }
        int e = SSL_get_error(c.ssl, r);
        ERR_clear_error();
        return e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ ? -1 : -2;
    }

    // Our side is done sending: a TLS close_notify first, then the TCP half-close.
    void shutWrite(Conn& c) {
        if (c.ssl != nullptr && c.tlsReady) {
            ERR_clear_error();
            (void)SSL_shutdown(c.ssl);
            ERR_clear_error();
        }
        ::shutdown(c.fd, SHUT_WR);
    }

    void onReadable(Conn& c) {
        char buf[65536];
        c.tlsWantWrite = false;
        if (!handshake(c)) {
            return;
        }
        while (c.fd >= 0) {
            if (c.st == Conn::St::Busy) {
                return;
            }
            // Lingering, what arrives is dropped: read it whatever `in` still holds (else the
            // socket stays readable, unread, and the loop spins on it).
            size_t room = c.st == Conn::St::Closing     ? sizeof buf
                          : inputLimit(c) > c.in.size() ? inputLimit(c) - c.in.size()
                                                        : 0;
            if (room == 0) {
                break;
            }
            ssize_t n = readSome(c, buf, std::min(room, sizeof buf));
            if (n == 0 || n == -2) {
                close(c);  // the peer is gone (a websocket's on_close follows)
                return;
            }
            if (n < 0) {
                break;
            }
            if (c.st == Conn::St::Closing) {
                continue;  // lingering: what the client still sends is discarded
            }
            if (!hold(c, static_cast<size_t>(n))) {
                refuseMemory(c);
                return;
            }
            if (c.st == Conn::St::Head && !c.sawBytes) {
                c.deadline = Clock::now() + s_.options.headerTimeout;  // the head has begun
            }
            c.in.append(buf, static_cast<size_t>(n));
            c.sawBytes = true;
            if (c.ssl == nullptr && static_cast<size_t>(n) < sizeof buf) {
                break;  // the kernel had no more (TLS reads a record at a time: read on)
            }
        }
        advance(c);
        // Decrypted bytes OpenSSL holds do not make the socket readable: come back for them.
        if (c.fd >= 0 && c.ssl != nullptr && SSL_pending(c.ssl) > 0) {
            tlsPending_.push_back(c.id);
        }
    }

    void refuseMemory(Conn& c) {
        if (c.st == Conn::St::Ws) {
            sendClose(c, 1008, "server memory budget reached");
        } else {
            respondError(c, 503, "server busy: memory budget for clients reached", true);
        }
    }

    void consume(Conn& c, size_t n) {
        c.in.erase(0, n);
        release(c, n);
    }

    // Parses whatever the connection's input holds, in its state.
    void advance(Conn& c) {
        while (c.fd >= 0) {
            if (c.st == Conn::St::Head) {
                if (c.in.empty() || !c.out.empty()) {
                    break;
                }
                if (!c.sawBytes) {
                    break;
                }
                http::Limits lim;
                lim.maxHeadBytes = s_.options.maxHeadBytes;
                http::HeadResult r = http::parseHead(c.in, c.head, lim);
                if (r.state == http::Parse::Incomplete) {
                    break;
                }
                if (r.state == http::Parse::Error) {
                    HttpServer::Impl::add(s_.requests);
                    respondError(c, r.status, r.reason, true);
                    return;
                }
                consume(c, r.consumed);
                startRequest(c);
            } else if (c.st == Conn::St::Body) {
                if (!readBody(c)) {
                    break;
                }
            } else if (c.st == Conn::St::Ws) {
                readFrames(c);
                break;
            } else {
                break;
            }
        }
        interest(c);
    }

    // ---- HTTP requests -------------------------------------------------------------------

    void startRequest(Conn& c) {
        HttpServer::Impl::add(s_.requests);
        const http::RequestHead& h = c.head;
        c.closeAfter = !h.keepAlive;
        size_t q = h.target.find('?');
        c.path = h.target.substr(0, q);
        c.query = q == std::string::npos ? "" : h.target.substr(q + 1);
        c.ctx = RequestCtx{};
        c.body.clear();
        c.chunked.reset();
        bool hasBody = h.chunked || (h.hasLength && h.contentLength > 0);
        // Until the body is read, a refusal closes: a body left unread is never parsed as the
        // next request.
        c.closeAfter = !h.keepAlive || hasBody;
        bool upgrade = iequals(h.header("Upgrade"), "websocket");
        {
            std::shared_lock<std::shared_mutex> lock(s_.routesMutex);
            if (upgrade) {
                auto it = s_.sockets.find(c.path);
                if (it != s_.sockets.end()) {
                    HttpServer::Impl::WsSpec spec = it->second;
                    lock.unlock();
                    upgradeRequest(c, spec);
                    return;
                }
            }
            auto it = s_.routes.find(c.path);
            if (it == s_.routes.end()) {
                lock.unlock();
                respondError(c, 404, "no such path: " + mp::printable(c.path, 200), c.closeAfter);
                return;
            }
            c.route = it->second;
        }
        if (!parseQuery(c.query, c.ctx.params)) {
            respondError(c, 400, "malformed query string", c.closeAfter);
            return;
        }
        if (c.ctx.params.count("access_token") != 0) {
            // Tokens in URLs end up in proxies' and browsers' histories: only a websocket
            // upgrade, where a browser has no other way, may carry one (docs/security.md).
            identify(c, false);
            HttpServer::Impl::add(s_.authFailures);
            respondError(c, 401,
                         "a token in the URL is refused here: send it in the Authorization header",
                         c.closeAfter, {{"WWW-Authenticate", "Bearer"}});
            return;
        }
        identify(c, false);
        if (int st = gate(c.caller, c.route.role); st != 0) {
            refuseAuth(c, st, c.route.role);
            return;
        }
        if (!methodAllowed(c.route.methods, h.method)) {
            respondError(c, 405, "method not allowed: use " + allowHeader(c.route.methods),
                         c.closeAfter, {{"Allow", allowHeader(c.route.methods)}});
            return;
        }
        if (c.route.ready != nullptr && !c.route.ready->load()) {
            respondError(c, 503, "not ready: the plugin serving " + c.path + " is not running",
                         c.closeAfter, {{"Retry-After", "1"}});
            return;
        }
        if (c.reserved && c.caller.role < MP_ROLE_PEER) {
            HttpServer::Impl::add(s_.refused);
            respondError(c, 503,
                         "too many connections: the last ones are kept for nodes and "
                         "admins",
                         true, {{"Retry-After", "1"}});
            return;
        }
        if (h.hasLength && h.contentLength > s_.options.maxBodyBytes) {
            respondError(
                c, 413,
                "request body larger than " + std::to_string(s_.options.maxBodyBytes) + " bytes",
                true);
            return;
        }
        if (hasBody) {
            if (h.chunked) {
                c.chunked = std::make_unique<http::ChunkedDecoder>(s_.options.maxBodyBytes);
            }
            if (h.expectContinue) {
                queue(c, "HTTP/1.1 100 Continue\r\n\r\n");
            }
            c.st = Conn::St::Body;
            c.deadline = Clock::now() + s_.options.bodyTimeout;
            return;
        }
        dispatch(c);
    }

    // True when the body is complete (and dispatched) or refused.
    bool readBody(Conn& c) {
        if (c.chunked) {
            size_t before = c.body.size();
            size_t used = c.chunked->feed(c.in, c.body);
            consume(c, used);
            size_t grew = c.body.size() - before;
            if (!hold(c, grew)) {
                refuseMemory(c);
                return true;
            }
            if (c.chunked->error() != 0) {
                respondError(c, c.chunked->error(),
                             c.chunked->error() == 413
                                 ? "request body larger than " +
                                       std::to_string(s_.options.maxBodyBytes) + " bytes"
                                 : "malformed chunked body",
                             true);
                return true;
            }
            if (!c.chunked->done()) {
                return false;
            }
        } else {
            size_t want = static_cast<size_t>(c.head.contentLength) - c.body.size();
            size_t take = std::min(want, c.in.size());
            c.body.append(c.in, 0, take);
            c.in.erase(0, take);  // still held: now as body bytes
            if (c.body.size() < c.head.contentLength) {
                return false;
            }
        }
        c.closeAfter = !c.head.keepAlive;  // the body is read: the connection may go on
        // A form POST's fields are parameters too (after those of the query string).
        if (c.head.method == "POST" &&
            iequals(c.head.header("Content-Type").substr(0, 33),
                    "application/x-www-form-urlencoded") &&
            !parseQuery(c.body, c.ctx.params)) {
            respondError(c, 400, "malformed form body", c.closeAfter);
            return true;
        }
        c.ctx.params.erase("access_token");
        dispatch(c);
        return true;
    }

    void identify(Conn& c, bool upgrade) {
        const http::RequestHead& h = c.head;
        std::string queryToken;
        if (upgrade && s_.auth.queryTokenOnUpgrade()) {
            auto it = c.ctx.params.find("access_token");
            if (it != c.ctx.params.end()) {
                queryToken = it->second;
            }
        }
        c.ctx.params.erase("access_token");
        c.query = stripParam(c.query, "access_token");
        c.caller = s_.auth.identify(RequestFacts{h.header("Authorization"), queryToken, c.ip,
                                                 h.header("Host"), h.header("Origin")});
        for (const auto& [k, v] : h.headers) {
            if (!iequals(k, "Authorization")) {
                c.ctx.headers.emplace_back(k, v);
            }
        }
    }

    void refuseAuth(Conn& c, int st, uint32_t role) {
        HttpServer::Impl::add(st == 401 ? s_.authFailures : s_.forbidden);
        std::vector<std::pair<std::string, std::string>> extra;
        if (st == 401) {
            extra.emplace_back("WWW-Authenticate", "Bearer realm=\"mysqlprobe\"");
        }
        respondError(c, st, gateMessage(st, role), c.closeAfter, extra);
    }

    void dispatch(Conn& c) {
        c.st = Conn::St::Busy;
        // The task owns everything the request points into.
        struct Task {
            std::string method, path, query, remote, principal, body;
            uint32_t role;
            RequestCtx ctx;
        };
        auto t = std::make_shared<Task>();
        t->method = c.head.method;
        t->path = c.path;
        t->query = c.query;
        t->remote = c.remote;
        t->principal = c.caller.principal;
        t->role = c.caller.role;
        t->ctx = std::move(c.ctx);
        t->body = std::move(c.body);  // still counted in heldIn until the answer (respond())
        RouteFn fn = c.route.fn;
        uint64_t id = c.id;
        HttpServer::Impl* s = &s_;
        bool head = c.head.method == "HEAD";
        WorkerPool& pool = c.route.role >= MP_ROLE_PEER ? *s_.control : *s_.readers;
        bool ok = pool.submit([s, t, fn, id, head] {
            mp_http_request r{};
            r.struct_size = sizeof r;
            r.method = mp_str{t->method.data(), t->method.size()};
            r.path = mp_str{t->path.data(), t->path.size()};
            r.query = mp_str{t->query.data(), t->query.size()};
            r.body = mp_str{t->body.data(), t->body.size()};
            r.remote_addr = mp_str{t->remote.data(), t->remote.size()};
            r.impl = &t->ctx;
            r.role = t->role;
            r.principal = mp_str{t->principal.data(), t->principal.size()};
            mp_http_response out;
            try {
                fn(r, out);
            } catch (const std::exception& e) {
                log(MP_LOG_WARN, "http", std::string("request failed: ") + e.what());
                out = mp_http_response{500, "application/json", errorJson("internal error")};
            }
            if (out.status == 0) {
                out = mp_http_response{500, "application/json",
                                       errorJson("the handler gave no answer")};
            }
            s->finish(HttpServer::Impl::Done{id, out.status, out.contentType, std::move(out.body),
                                             head, false, nullptr});
        });
        if (!ok) {
            c.st = Conn::St::Head;
            respondError(c, 503, "server busy: too many requests waiting", true,
                         {{"Retry-After", "1"}});
        }
    }

    void queue(Conn& c, std::string_view bytes) {
        if (c.out.empty()) {
            c.lastProgress = Clock::now();
        }
        c.out.append(bytes);
        s_.buffered.fetch_add(static_cast<int64_t>(bytes.size()));  // output is held too
    }

    void respond(Conn& c, int status, const std::string& contentType, const std::string& body,
                 bool close, const std::vector<std::pair<std::string, std::string>>& extra,
                 bool headOnly = false) {
        if (status >= 400 && status < 500) {
            HttpServer::Impl::add(s_.badRequests);
        }
        c.closeAfter = c.closeAfter || close || s_.stopping.load();
        release(c, c.heldIn - std::min(c.heldIn, c.in.size()));  // the body is answered
        std::string r = "HTTP/1.1 " + std::to_string(status) + " " + http::reasonPhrase(status) +
                        "\r\nServer: mysqlprobe\r\nDate: " + httpDate() +
                        "\r\nContent-Type: " + (contentType.empty() ? "text/plain" : contentType) +
                        "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
        for (const auto& [k, v] : extra) {
            r += k + ": " + v + "\r\n";
        }
        r += c.closeAfter ? "Connection: close\r\n\r\n" : "\r\n";
        if (!headOnly) {
            r += body;
        }
        queue(c, r);
        c.st = c.closeAfter ? Conn::St::Closing : Conn::St::Head;
        c.sawBytes = !c.in.empty();
        c.deadline = Clock::now() + (c.closeAfter   ? s_.options.writeTimeout
                                     : c.in.empty() ? s_.options.keepAliveTimeout
                                                    : s_.options.headerTimeout);
        flush(c);
    }

    void respondError(Conn& c, int status, const std::string& why, bool close,
                      const std::vector<std::pair<std::string, std::string>>& extra = {}) {
        respond(c, status, "application/json", errorJson(why), close, extra);
    }

    void flush(Conn& c) {
        if (c.ssl != nullptr && !c.tlsReady) {
            if (!handshake(c)) {
                return;
            }
        }
        while (c.fd >= 0 && !c.out.empty()) {
            ssize_t n = writeSome(c, c.out.data(), c.out.size());
            if (n == -1) {
                break;
            }
            if (n < 0) {
                close(c);
                return;
            }
            c.out.erase(0, static_cast<size_t>(n));
            s_.buffered.fetch_sub(n);
            c.lastProgress = Clock::now();
        }
        if (c.fd < 0) {
            return;
        }
        if (c.out.empty() && c.st == Conn::St::Closing && !c.shut) {
            // Lingering close: no more output, the client's remaining bytes are read and
            // dropped for a moment so that it sees the answer rather than a reset.
            shutWrite(c);
            c.shut = true;
            c.deadline = Clock::now() + std::chrono::milliseconds(1000);
        }
        if (c.out.empty() && c.st == Conn::St::Ws) {
            pullOutgoing(c);
        }
        if (c.out.empty() && c.st == Conn::St::Head && !c.in.empty()) {
            advance(c);  // the next pipelined request
            return;
        }
        interest(c);
    }

    // ---- websockets ----------------------------------------------------------------------

    void upgradeRequest(Conn& c, const HttpServer::Impl::WsSpec& spec) {
        const http::RequestHead& h = c.head;
        const mp_ws_handler& wh = spec.handler;
        if (h.method != "GET" || h.minorVersion != 1 ||
            !listHas(h.header("Connection"), "upgrade")) {
            respondError(c, 400, "a websocket upgrade is a GET with Connection: Upgrade", true);
            return;
        }
        if (h.header("Sec-WebSocket-Version") != "13") {
            respondError(c, 426, "websocket version 13 only", true,
                         {{"Sec-WebSocket-Version", "13"}});
            return;
        }
        std::string accept = ws::acceptKey(h.header("Sec-WebSocket-Key"));
        if (accept.empty()) {
            respondError(c, 400, "bad Sec-WebSocket-Key", true);
            return;
        }
        if (h.chunked || (h.hasLength && h.contentLength > 0)) {
            respondError(c, 400, "a websocket upgrade has no body", true);
            return;
        }
        if (!parseQuery(c.query, c.ctx.params)) {
            respondError(c, 400, "malformed query string", true);
            return;
        }
        identify(c, true);
        if (int st = gate(c.caller, wh.role); st != 0) {
            c.closeAfter = true;
            refuseAuth(c, st, wh.role);
            return;
        }
        if (spec.ready != nullptr && !spec.ready->load()) {
            respondError(c, 503, "not ready: the plugin serving " + c.path + " is not running",
                         true, {{"Retry-After", "1"}});
            return;
        }
        if (c.reserved && c.caller.role < MP_ROLE_PEER) {
            HttpServer::Impl::add(s_.refused);
            respondError(c, 503,
                         "too many connections: the last ones are kept for nodes and "
                         "admins",
                         true, {{"Retry-After", "1"}});
            return;
        }
        auto session = std::make_shared<WsSession>();
        session->h = wh;
        session->handle.server = &s_;
        session->handle.connId = c.id;
        session->handle.maxQueue =
            wh.queue_messages != 0 ? wh.queue_messages : s_.options.wsQueueMessages;
        session->handle.maxQueueBytes = s_.options.wsQueueBytes;
        c.session = session;
        c.control = wh.role >= MP_ROLE_PEER || wh.role == MP_ROLE_DEFAULT;
        c.maxMessage = wh.max_message_bytes != 0
                           ? std::min<size_t>(wh.max_message_bytes, size_t{1} << 30)
                           : s_.options.wsMaxMessageBytes;
        c.pingEvery = std::chrono::milliseconds(wh.ping_interval_ms);
        c.idleLimit = std::chrono::milliseconds(wh.idle_timeout_ms);
        c.wsWriteTimeout = wh.write_timeout_ms != 0 ? std::chrono::milliseconds(wh.write_timeout_ms)
                                                    : s_.options.wsWriteTimeout;
        c.st = Conn::St::Busy;
        // The plugin decides before the upgrade: a refusal is a plain HTTP answer (401 for
        // MP_EPERM, 403 otherwise). What it sends from on_open goes out after the 101.
        struct Req {
            std::string method, path, query, remote, principal;
            uint32_t role;
            RequestCtx ctx;
        };
        auto r = std::make_shared<Req>(Req{h.method, c.path, c.query, c.remote, c.caller.principal,
                                           c.caller.role, std::move(c.ctx)});
        HttpServer::Impl* s = &s_;
        uint64_t id = c.id;
        WorkerPool& pool = c.control ? *s_.control : *s_.readers;
        bool ok = pool.submit([s, session, r, id, accept] {
            mp_status st = MP_OK;
            if (session->h.on_open != nullptr) {
                mp_http_request q{};
                q.struct_size = sizeof q;
                q.method = mp_str{r->method.data(), r->method.size()};
                q.path = mp_str{r->path.data(), r->path.size()};
                q.query = mp_str{r->query.data(), r->query.size()};
                q.remote_addr = mp_str{r->remote.data(), r->remote.size()};
                q.impl = &r->ctx;
                q.role = r->role;
                q.principal = mp_str{r->principal.data(), r->principal.size()};
                try {
                    st = session->h.on_open(session->h.user, &session->handle, &q);
                } catch (...) {
                    st = MP_ERROR;
                }
            }
            if (st == MP_OK) {
                std::lock_guard<std::mutex> lock(session->m);
                session->opened = true;
            }
            int status = st == MP_OK ? 101 : st == MP_EPERM ? 401 : 403;
            s->finish(HttpServer::Impl::Done{id, status, "", accept, false, true, session});
        });
        if (!ok) {
            c.session.reset();
            c.st = Conn::St::Head;
            respondError(c, 503, "server busy: too many requests waiting", true,
                         {{"Retry-After", "1"}});
        }
    }

    void opened(Conn& c, const HttpServer::Impl::Done& d) {
        if (d.status != 101) {
            if (c.session) {
                // What on_open queued before it refused goes nowhere: drop it, and its bytes
                // from the budget; later sends on the handle get MP_ECLOSED.
                std::lock_guard<std::mutex> lock(c.session->handle.mutex);
                c.session->handle.closed = true;
                s_.buffered.fetch_sub(static_cast<int64_t>(c.session->handle.queuedBytes));
                c.session->handle.queuedBytes = 0;
                c.session->handle.queue.clear();
            }
            c.session.reset();  // refused before the upgrade: no on_close is owed
            c.st = Conn::St::Head;
            c.closeAfter = true;
            if (d.status == 401) {
                HttpServer::Impl::add(s_.authFailures);
            }
            respondError(c, d.status, d.status == 401 ? "not authorized" : "refused", true);
            return;
        }
        queue(c,
              "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: "
              "Upgrade\r\nSec-WebSocket-Accept: " +
                  d.body + "\r\n\r\n");
        c.st = Conn::St::Ws;
        c.reader = std::make_unique<ws::Reader>(c.maxMessage);
        c.lastHeard = c.lastPing = Clock::now();
        HttpServer::Impl::add(s_.wsOpen);
        c.wsCounted = true;
        pullOutgoing(c);
        flush(c);
        if (c.fd >= 0 && !c.in.empty()) {
            advance(c);  // frames that came with the upgrade
        }
    }

    void readFrames(Conn& c) {
        size_t pushed = 0;    // bytes of complete messages handed to the session
        size_t consumed = 0;  // of c.in, erased once after the loop (not once per frame)
        while (c.fd >= 0 && c.st == Conn::St::Ws && !c.closeSent) {
            ws::Event ev;
            consumed += c.reader->next(std::string_view(c.in).substr(consumed), ev);
            if (ev.kind == ws::Event::Kind::None) {
                break;
            }
            c.lastHeard = Clock::now();
            switch (ev.kind) {
                case ws::Event::Kind::Message: {
                    pushed += ev.payload.size();
                    std::lock_guard<std::mutex> lock(c.session->m);
                    c.session->inboundBytes += ev.payload.size();
                    c.session->inbound.emplace_back(ev.opcode, std::move(ev.payload));
                    break;
                }
                case ws::Event::Kind::Ping:
                    // A client that pings and does not read would make pongs pile up: while
                    // its output is over the bound, a ping gets no pong of its own (RFC 6455
                    // 5.5.3 lets a pong answer only the latest ping); the memory stays bounded.
                    if (c.out.size() < kMaxOwedOutput) {
                        queue(c, ws::encode(ws::Pong, ev.payload));
                    } else {
                        HttpServer::Impl::add(s_.wsPongsSkipped);
                    }
                    break;
                case ws::Event::Kind::Pong:
                    break;
                case ws::Event::Kind::Close:
                    sendClose(c, ev.code == 1005 ? 1000 : ev.code, "");
                    break;
                case ws::Event::Kind::Error:
                    HttpServer::Impl::add(s_.wsProtocolErrors);
                    sendClose(c, ev.code, ev.why);
                    break;
                default:
                    break;
            }
        }
        c.in.erase(0, std::min(consumed, c.in.size()));
        // Held for this connection: its unparsed input and the message being assembled; the
        // complete messages are the session's until drain() delivers them.
        size_t held = c.in.size() + (c.reader ? c.reader->buffered() : 0);
        s_.buffered.fetch_add(static_cast<int64_t>(held) - static_cast<int64_t>(c.heldIn) +
                              static_cast<int64_t>(pushed));
        c.heldIn = held;
        if (c.session && pushed != 0) {
            s_.drain(c.session, c.control ? *s_.control : *s_.readers);
        }
        if (c.fd >= 0 && !c.out.empty()) {
            flush(c);
        }
    }

    void sendClose(Conn& c, uint16_t code, const std::string& why) {
        if (c.closeSent) {
            return;
        }
        queue(c, ws::encodeClose(code, why));
        c.closeSent = true;
        c.st = Conn::St::Closing;
        c.deadline = Clock::now() + std::chrono::milliseconds(2000);
        {
            std::lock_guard<std::mutex> lock(c.session->handle.mutex);
            c.session->handle.closed = true;
        }
        flush(c);  // then shut down our side, and linger (flush() does both)
    }

    // Moves what plugins queued for this websocket onto its output (a bounded amount at once).
    void pullOutgoing(Conn& c) {
        if (!c.session || c.st != Conn::St::Ws) {
            return;
        }
        mp_ws_conn& hnd = c.session->handle;
        bool closeNow = false;
        uint16_t code = 1000;
        std::string reason;
        {
            std::lock_guard<std::mutex> lock(hnd.mutex);
            while (!hnd.queue.empty() && c.out.size() < kMaxOwedOutput) {
                auto& [op, data] = hnd.queue.front();
                queue(c, ws::encode(op == MP_WS_TEXT ? ws::Text : ws::Binary, data));
                hnd.queuedBytes -= data.size();
                s_.buffered.fetch_sub(static_cast<int64_t>(data.size()));
                hnd.queue.pop_front();
            }
            if (hnd.closeRequested && hnd.queue.empty()) {
                closeNow = true;
                code = hnd.closeCode;
                reason = hnd.closeReason;
            }
        }
        if (closeNow) {
            sendClose(c, code, reason);
        }
    }

    // ---- hand-over from workers and plugins ------------------------------------------------

    void handOver() {
        std::vector<HttpServer::Impl::Done> done;
        std::vector<uint64_t> poked;
        {
            std::lock_guard<std::mutex> lock(s_.handMutex);
            done.swap(s_.done);
            poked.swap(s_.poked);
        }
        for (auto& d : done) {
            auto c = find(d.id);
            if (!c) {
                if (d.upgrade && d.session) {
                    // The client left while on_open ran: an accepted session owes on_close.
                    {
                        std::lock_guard<std::mutex> lock(d.session->m);
                        d.session->ended = true;
                    }
                    s_.drain(d.session, *s_.control);
                }
                continue;
            }
            if (d.upgrade) {
                opened(*c, d);
                continue;
            }
            respond(*c, d.status, d.contentType, d.body, false, {}, d.headOnly);
        }
        std::sort(poked.begin(), poked.end());
        poked.erase(std::unique(poked.begin(), poked.end()), poked.end());
        for (uint64_t id : poked) {
            if (auto c = find(id)) {
                if (c->st == Conn::St::Ws && c->out.empty()) {
                    pullOutgoing(*c);
                }
                flush(*c);
                if (c->fd >= 0 && c->st == Conn::St::Ws && !c->in.empty()) {
                    advance(*c);  // reading was paused while the plugin caught up
                }
            }
        }
    }

    std::shared_ptr<Conn> find(uint64_t id) {
        auto it = s_.fdById.find(id);
        if (it == s_.fdById.end()) {
            return nullptr;
        }
        auto c = s_.conns.find(it->second);
        return c == s_.conns.end() ? nullptr : c->second;
    }

    // ---- time ----------------------------------------------------------------------------

    void tick() {
        auto now = Clock::now();
        std::vector<std::shared_ptr<Conn>> all;
        all.reserve(s_.conns.size());
        for (auto& [fd, c] : s_.conns) {
            all.push_back(c);
        }
        for (auto& c : all) {
            if (c->fd < 0) {
                continue;
            }
            if (!c->out.empty() &&
                now - c->lastProgress >
                    (c->st == Conn::St::Ws ? c->wsWriteTimeout : s_.options.writeTimeout)) {
                HttpServer::Impl::add(c->session ? s_.wsSlowClosed : s_.timeouts);
                close(*c);
                continue;
            }
            switch (c->st) {
                case Conn::St::Head:
                case Conn::St::Body:
                    if (now > c->deadline && c->out.empty()) {
                        if (c->sawBytes || c->st == Conn::St::Body) {
                            HttpServer::Impl::add(s_.timeouts);
                            respondError(*c, 408, "request not received in time", true);
                        } else {
                            close(*c);  // an idle keep-alive connection: nothing to say
                        }
                    }
                    break;
                case Conn::St::Closing:
                    // While the answer is still going out, the write timeout above judges its
                    // progress; the deadline is the linger's, once all is sent.
                    if (now > c->deadline && c->out.empty()) {
                        close(*c);
                    }
                    break;
                case Conn::St::Ws:
                    if (c->idleLimit.count() != 0 && now - c->lastHeard > c->idleLimit) {
                        HttpServer::Impl::add(s_.wsIdleClosed);
                        sendClose(*c, 1001, "ping timeout");
                    } else if (c->pingEvery.count() != 0 && now - c->lastPing >= c->pingEvery) {
                        c->lastPing = now;
                        queue(*c, ws::encode(ws::Ping, "mp"));
                        flush(*c);
                    }
                    break;
                case Conn::St::Busy:
                    break;
            }
        }
    }

    // ---- stopping ------------------------------------------------------------------------

    void beginStop() {
        stopped_ = true;
        stopDeadline_ = Clock::now() + std::chrono::milliseconds(3000);
        ::epoll_ctl(s_.epollFd, EPOLL_CTL_DEL, s_.listenFd, nullptr);
        std::vector<std::shared_ptr<Conn>> all;
        for (auto& [fd, c] : s_.conns) {
            all.push_back(c);
        }
        for (auto& c : all) {
            if (c->st == Conn::St::Ws) {
                uint16_t code = 1001;
                std::string reason = "server stopping";
                {
                    std::lock_guard<std::mutex> lock(c->session->handle.mutex);
                    if (c->session->handle.closeRequested) {
                        code = c->session->handle.closeCode;
                        reason = c->session->handle.closeReason;
                    }
                }
                pullOutgoing(*c);
                sendClose(*c, code, reason);
            } else if (c->st == Conn::St::Head && c->out.empty()) {
                close(*c);
            }
        }
    }

    HttpServer::Impl& s_;
    int spareFd_ = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    std::vector<uint64_t> tlsPending_;  // connections with decrypted bytes left in OpenSSL
    bool stopped_ = false;
    Clock::time_point stopDeadline_;
};

}  // namespace

namespace {

std::string opensslError() {
    unsigned long e = ERR_get_error();
    char buf[256] = {0};
    if (e != 0) {
        ERR_error_string_n(e, buf, sizeof buf);
    }
    ERR_clear_error();
    return e != 0 ? buf : "unknown error";
}

SSL_CTX* makeTlsContext(const std::string& cert, const std::string& key) {
    SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == nullptr) {
        throw std::runtime_error("tls: cannot make a TLS context: " + opensslError());
    }
    auto fail = [&](const std::string& what) {
        std::string why = what + ": " + opensslError();
        SSL_CTX_free(ctx);
        throw std::runtime_error(why);
    };
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(
        ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert.c_str()) != 1) {
        fail("tls.cert_file " + cert + ": not a usable PEM certificate chain");
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key.c_str(), SSL_FILETYPE_PEM) != 1) {
        fail("tls.key_file " + key + ": not a usable PEM private key");
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        fail("tls.key_file " + key + " does not belong to the certificate of " + cert);
    }
    return ctx;
}

}  // namespace

HttpServer::HttpServer(HttpOptions options, Metrics& metrics)
    : auth_(options.auth ? options.auth : std::make_shared<const Authenticator>(AuthConfig{})),
      impl_(std::make_unique<Impl>(std::move(options), metrics, *auth_)) {
    if (!impl_->options.tlsCertFile.empty()) {
        impl_->tls = makeTlsContext(impl_->options.tlsCertFile, impl_->options.tlsKeyFile);
    }
}

size_t HttpServer::bufferedBytes() const {
    int64_t v = impl_->buffered.load();
    return v < 0 ? 0 : static_cast<size_t>(v);
}

HttpServer::~HttpServer() {
    stop();
    if (impl_->tls != nullptr) {
        SSL_CTX_free(impl_->tls);
    }
}

bool HttpServer::addRoute(const std::string& path, RouteSpec spec) {
    std::unique_lock<std::shared_mutex> lock(impl_->routesMutex);
    if (impl_->routes.count(path) != 0 || impl_->sockets.count(path) != 0) {
        return false;
    }
    impl_->routes[path] = std::move(spec);
    return true;
}

bool HttpServer::addWebSocket(const std::string& path, const mp_ws_handler& handler,
                              const std::atomic<bool>* ready) {
    std::unique_lock<std::shared_mutex> lock(impl_->routesMutex);
    if (impl_->routes.count(path) != 0 || impl_->sockets.count(path) != 0) {
        return false;
    }
    impl_->sockets[path] = Impl::WsSpec{handler, ready};
    // A plain request on a websocket path explains itself instead of a bare 404 (to callers
    // allowed to open it).
    RouteSpec plain;
    plain.role = handler.role;
    plain.methods = MP_HTTP_GET | MP_HTTP_POST | MP_HTTP_PUT | MP_HTTP_DELETE;
    plain.fn = [path](const mp_http_request&, mp_http_response& r) {
        r.status = 426;
        r.contentType = "application/json";
        r.body = errorJson(path + " is a websocket endpoint: send an Upgrade: websocket request");
    };
    impl_->routes[path] = std::move(plain);
    return true;
}

void HttpServer::start() {
    Impl& s = *impl_;
    Poco::Net::SocketAddress addr;
    try {
        addr =
            Poco::Net::SocketAddress(s.options.address, static_cast<Poco::UInt16>(s.options.port));
    } catch (const Poco::Exception& e) {
        throw std::runtime_error("cannot listen on " + s.options.address + ":" +
                                 std::to_string(s.options.port) + ": " + e.displayText());
    }
    int fd = ::socket(addr.family() == Poco::Net::SocketAddress::IPv6 ? AF_INET6 : AF_INET,
                      SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);  // not SO_REUSEPORT
    if (fd < 0 || ::bind(fd, addr.addr(), addr.length()) != 0 || ::listen(fd, 1024) != 0) {
        std::string why = std::strerror(errno);
        if (fd >= 0) {
            ::close(fd);
        }
        throw std::runtime_error("cannot listen on " + s.options.address + ":" +
                                 std::to_string(s.options.port) + ": " + why);
    }
    sockaddr_storage bound{};
    socklen_t len = sizeof bound;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &len);
    port_ = Poco::Net::SocketAddress(reinterpret_cast<sockaddr*>(&bound), len).port();
    // Every connection is a descriptor: take what the system allows, and keep the cap below.
    rlimit rl{};
    if (::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        ::setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
        s.options.maxConnections + 256 > rl.rlim_cur) {
        s.options.maxConnections = rl.rlim_cur > 512 ? rl.rlim_cur - 256 : rl.rlim_cur / 2;
        log(MP_LOG_WARN, "http",
            "at most " + std::to_string(s.options.maxConnections) +
                " connections: the descriptor limit is " + std::to_string(rl.rlim_cur));
    }
    s.options.reservedConnections =
        std::min(s.options.reservedConnections, s.options.maxConnections / 2);
    s.listenFd = fd;
    s.epollFd = ::epoll_create1(EPOLL_CLOEXEC);
    s.wakeFd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    for (auto [f, key] : {std::pair{s.listenFd, kListenKey}, std::pair{s.wakeFd, kWakeKey}}) {
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.u64 = key;
        ::epoll_ctl(s.epollFd, EPOLL_CTL_ADD, f, &ev);
    }
    s.readers = std::make_unique<WorkerPool>(s.options.readerThreads, s.options.maxQueuedTasks);
    s.control = std::make_unique<WorkerPool>(s.options.controlThreads, s.options.maxQueuedTasks);
    s.loop = std::thread([&s] { Loop(s).run(); });
    running_ = true;
}

void HttpServer::stop() {
    if (!running_) {
        return;
    }
    running_ = false;
    Impl& s = *impl_;
    s.stopping.store(true);
    s.wake();
    if (s.loop.joinable()) {
        s.loop.join();
    }
    // Handlers still running finish; every websocket's on_close has been queued: run them.
    s.readers->join();
    s.control->join();
    // An upgrade whose on_open finished after the loop ended: its on_close is owed too.
    for (auto& d : s.done) {
        if (d.upgrade && d.session) {
            bool owed = false;
            {
                std::lock_guard<std::mutex> lock(d.session->m);
                owed = d.session->opened;
                d.session->opened = false;
            }
            if (owed && d.session->h.on_close != nullptr) {
                d.session->h.on_close(d.session->h.user, &d.session->handle);
            }
        }
    }
    s.done.clear();
    for (int f : {s.listenFd, s.epollFd, s.wakeFd}) {
        if (f >= 0) {
            ::close(f);
        }
    }
    s.listenFd = s.epollFd = s.wakeFd = -1;
}

// Services used by the C host API.

mp_status wsSend(mp_ws_conn* conn, uint32_t opcode, mp_bytes data) {
    if (conn == nullptr || (opcode != MP_WS_TEXT && opcode != MP_WS_BINARY) ||
        (data.data == nullptr && data.len != 0)) {
        return MP_EINVAL;
    }
    mp_status st = MP_OK;
    HttpServer::Impl* s = conn->server;
    {
        std::lock_guard<std::mutex> lock(conn->mutex);
        if (conn->closed) {
            return MP_ECLOSED;
        }
        // Bounded by count (the endpoint's queue) and by bytes (this connection's share, and
        // the server's budget): the oldest goes first, counted. When even this connection's
        // whole queue would not make room (the budget is held by other connections), only the
        // new message is refused: dropping the queue would lose it for nothing.
        size_t budget = s->options.maxBufferedBytes;
        size_t others = static_cast<size_t>(std::max<int64_t>(s->buffered.load(), 0));
        others -= std::min(others, conn->queuedBytes);
        if (data.len > conn->maxQueueBytes || others + data.len > budget) {
            HttpServer::Impl::add(s->wsDropped);
            return MP_EAGAIN;
        }
        while (!conn->queue.empty() &&
               (conn->queue.size() >= conn->maxQueue ||
                conn->queuedBytes + data.len > conn->maxQueueBytes ||
                static_cast<size_t>(s->buffered.load()) + data.len > budget)) {
            conn->queuedBytes -= conn->queue.front().second.size();
            s->buffered.fetch_sub(static_cast<int64_t>(conn->queue.front().second.size()));
            conn->queue.pop_front();
            HttpServer::Impl::add(s->wsDropped);
            st = MP_EAGAIN;
        }
        conn->queue.emplace_back(opcode,
                                 std::string(reinterpret_cast<const char*>(data.data), data.len));
        conn->queuedBytes += data.len;
        s->buffered.fetch_add(static_cast<int64_t>(data.len));
    }
    s->poke(conn->connId);
    return st;
}

void wsClose(mp_ws_conn* conn, uint16_t code, mp_str reason) {
    if (conn == nullptr) {
        return;
    }
    {
        std::lock_guard<std::mutex> lock(conn->mutex);
        if (conn->closed) {
            return;
        }
        conn->closeRequested = true;
        conn->closeCode = code;
        conn->closeReason.assign(reason.data != nullptr ? reason.data : "",
                                 reason.data != nullptr ? std::min<size_t>(reason.len, 123) : 0);
    }
    conn->server->poke(conn->connId);
}

mp_status headerValue(const mp_http_request* req, const char* name, mp_str* out) {
    if (req == nullptr || req->impl == nullptr || name == nullptr || out == nullptr) {
        return MP_EINVAL;
    }
    const auto* ctx = static_cast<const RequestCtx*>(req->impl);
    for (const auto& [k, v] : ctx->headers) {
        if (iequals(k, name)) {
            *out = mp_str{v.data(), v.size()};
            return MP_OK;
        }
    }
    return MP_ENOENT;
}

mp_status queryParam(const mp_http_request* req, const char* name, mp_str* out) {
    if (req == nullptr || req->impl == nullptr || name == nullptr || out == nullptr) {
        return MP_EINVAL;
    }
    const auto* ctx = static_cast<const RequestCtx*>(req->impl);
    auto it = ctx->params.find(name);
    if (it == ctx->params.end()) {
        return MP_ENOENT;
    }
    *out = mp_str{it->second.data(), it->second.size()};
    return MP_OK;
}

}  // namespace mp::host

// SPDX-License-Identifier: Apache-2.0
// The HTTP server's public side: HttpServer (routes, endpoints, start, stop), its counters, the
// TLS context, the event loop's main loop, hand-over from workers, ticks and stopping, and the
// request services of the host API (headerValue, queryParam). The rest of the loop is in
// loop_connections.cpp, loop_http.cpp and loop_websocket.cpp (see server_impl.hpp).
#include "server/http_server.hpp"

#include <Poco/Net/SocketAddress.h>
#include <openssl/err.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "core/log.hpp"
#include "server/http_util.hpp"
#include "server/server_impl.hpp"

namespace mp::host {

namespace {
// epoll keys of the two descriptors that are not connections (connection ids count up from 1).
constexpr uint64_t kListenKey = UINT64_MAX;
constexpr uint64_t kWakeKey = UINT64_MAX - 1;
}  // namespace

HttpServer::Impl::Impl(HttpOptions o, Metrics& m, const Authenticator& a)
    : options(std::move(o)),
      metrics(m),
      auth(a),
      requests(m.get("http", "requests_total", "HTTP requests served", MP_COUNTER)),
      badRequests(m.get("http", "bad_requests_total", "HTTP requests refused with a 4xx status",
                        MP_COUNTER)),
      wsOpen(m.get("http", "websocket_connections", "open websocket connections", MP_GAUGE)),
      wsDropped(m.get("http", "websocket_dropped_messages_total",
                      "websocket messages dropped because a client's queue was full", MP_COUNTER)),
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
                      "requests refused with 403: a valid token of a role too low", MP_COUNTER)),
      connections(m.get("http", "connections", "open HTTP and websocket connections", MP_GAUGE)),
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

// ---- the event loop ------------------------------------------------------------------------

void Loop::run() {
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

// ---- hand-over from workers and plugins ----------------------------------------------------

void Loop::handOver() {
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

std::shared_ptr<Conn> Loop::find(uint64_t id) {
    auto it = s_.fdById.find(id);
    if (it == s_.fdById.end()) {
        return nullptr;
    }
    auto c = s_.conns.find(it->second);
    return c == s_.conns.end() ? nullptr : c->second;
}

// ---- time ----------------------------------------------------------------------------------

void Loop::tick() {
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
                if (c->idleLimit.count() != 0 && !c->sse && now - c->lastHeard > c->idleLimit) {
                    HttpServer::Impl::add(s_.wsIdleClosed);
                    sendClose(*c, 1001, "ping timeout");
                } else if (c->pingEvery.count() != 0 && now - c->lastPing >= c->pingEvery) {
                    c->lastPing = now;
                    queue(*c, c->sse ? std::string(":\n\n") : ws::encode(ws::Ping, "mp"));
                    flush(*c);
                }
                break;
            case Conn::St::Busy:
                break;
        }
    }
}

// ---- stopping ------------------------------------------------------------------------------

void Loop::beginStop() {
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
    if (path.size() >= 3 && path.compare(path.size() - 2, 2, "/*") == 0 && path[0] == '/') {
        return impl_->prefixes.emplace(path.substr(0, path.size() - 1), std::move(spec)).second;
    }
    if (impl_->routes.count(path) != 0 || impl_->sockets.count(path) != 0) {
        return false;
    }
    impl_->routes[path] = std::move(spec);
    return true;
}

const RouteSpec* HttpServer::Impl::findRoute(const std::string& path) const {
    if (auto it = routes.find(path); it != routes.end()) {
        return &it->second;
    }
    if (prefixes.empty()) {
        return nullptr;
    }
    // The longest "/a/b/" that begins the path.
    for (size_t slash = path.rfind('/'); slash != std::string::npos && slash > 0;
         slash = path.rfind('/', slash - 1)) {
        if (auto it = prefixes.find(path.substr(0, slash + 1)); it != prefixes.end()) {
            return &it->second;
        }
    }
    auto root = prefixes.find("/");
    return root == prefixes.end() ? nullptr : &root->second;
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

// Request services of the host API (the host's C table points at these).

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

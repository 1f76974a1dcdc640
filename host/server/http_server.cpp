// SPDX-License-Identifier: Apache-2.0
#include "server/http_server.hpp"

#include <Poco/Buffer.h>
#include <Poco/Net/HTTPRequestHandler.h>
#include <Poco/Net/HTTPRequestHandlerFactory.h>
#include <Poco/Net/HTTPServer.h>
#include <Poco/Net/HTTPServerParams.h>
#include <Poco/Net/HTTPServerRequest.h>
#include <Poco/Net/HTTPServerResponse.h>
#include <Poco/Net/NetException.h>
#include <Poco/Net/ServerSocket.h>
#include <Poco/Net/SocketAddress.h>
#include <Poco/Net/WebSocket.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <istream>
#include <mp/files.hpp>
#include <mp/sdk.hpp>
#include <set>
#include <thread>

#include "core/log.hpp"

// One websocket connection; lives on its handler thread's stack frame (see WsHandler).
struct mp_ws_conn {
    std::mutex mutex;
    std::deque<std::pair<uint32_t, std::string>> queue;
    bool closed = false;          // peer gone or closing: ws_send returns MP_ECLOSED
    bool closeRequested = false;  // ws_close() called
    uint16_t closeCode = 1000;
    std::string closeReason;
    int wakeFd = -1;  // eventfd: wakes the connection thread
    size_t maxQueue = 64;
    mp_counter* dropped = nullptr;
};

namespace mp::host {

bool parseQuery(const std::string& query, std::multimap<std::string, std::string>& out) {
    auto decode = [](std::string_view in, std::string& res) {
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
    };
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

struct WsSpec {
    mp_ws_handler handler;
    const std::atomic<bool>* ready;
};

struct HttpServer::Impl {
    HttpOptions options;
    Metrics& metrics;
    const Authenticator& auth;
    std::shared_mutex routesMutex;
    std::map<std::string, RouteSpec> routes;
    std::map<std::string, WsSpec> sockets;
    std::atomic<bool> stopping{false};
    std::mutex connsMutex;
    std::condition_variable connsCv;
    std::set<mp_ws_conn*> conns;
    mp_counter* requests;
    mp_counter* badRequests;
    mp_counter* wsOpen;
    mp_counter* wsDropped;
    mp_counter* wsSlowClosed;
    mp_counter* wsIdleClosed;
    mp_counter* wsProtocolErrors;
    mp_counter* authFailures;
    mp_counter* forbidden;

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
                                 "websocket clients closed with 1002 (unmasked, reserved bits, "
                                 "bad control frames)",
                                 MP_COUNTER)),
          authFailures(m.get("http", "auth_failures_total",
                             "requests refused with 401: no token where one is needed, or a "
                             "token that matches none",
                             MP_COUNTER)),
          forbidden(m.get("http", "auth_forbidden_total",
                          "requests refused with 403: a valid token of a role too low",
                          MP_COUNTER)) {}
};

// The strings an mp_http_request points into, taken apart once from a Poco request.
struct RequestView {
    std::string method;
    std::string path;
    std::string query;
    std::string remote;
    std::string remoteIp;
    Caller caller;
    RequestCtx ctx;

    explicit RequestView(const Poco::Net::HTTPServerRequest& req)
        : method(req.getMethod()),
          remote(req.clientAddress().toString()),
          remoteIp(req.clientAddress().host().toString()) {
        const std::string& uri = req.getURI();
        size_t qpos = uri.find('?');
        path = uri.substr(0, qpos);
        query = qpos == std::string::npos ? "" : uri.substr(qpos + 1);
        for (const auto& [name, value] : req) {
            if (Poco::icompare(name, "Authorization") != 0) {
                ctx.headers.emplace_back(name, value);
            }
        }
    }
    /// Who is calling: the token of the Authorization header, or (websocket upgrades, where a
    /// browser cannot send headers) of ?access_token=, which is then taken out of the query the
    /// plugin sees.
    void identify(const Poco::Net::HTTPServerRequest& req, const Authenticator& auth,
                  bool upgrade) {
        std::string queryToken;
        if (upgrade && auth.queryTokenOnUpgrade()) {
            auto it = ctx.params.find("access_token");
            if (it != ctx.params.end()) {
                queryToken = it->second;
            }
        }
        ctx.params.erase("access_token");
        query = stripParam(query, "access_token");
        caller = auth.identify(RequestFacts{req.get("Authorization", ""), queryToken, remoteIp,
                                            req.get("Host", ""), req.get("Origin", "")});
    }
    static std::string stripParam(const std::string& q, std::string_view name) {
        std::string out;
        size_t start = 0;
        while (start <= q.size()) {
            size_t amp = q.find('&', start);
            std::string_view part(q.data() + start,
                                  (amp == std::string::npos ? q.size() : amp) - start);
            if (!part.empty() && part.substr(0, part.find('=')) != name) {
                out += (out.empty() ? "" : "&") + std::string(part);
            }
            if (amp == std::string::npos) {
                break;
            }
            start = amp + 1;
        }
        return out;
    }
    /// Valid while this view lives; `body` is borrowed too.
    mp_http_request request(std::string_view body = {}) const {
        mp_http_request r{};
        r.struct_size = sizeof r;
        r.method = mp_str{method.data(), method.size()};
        r.path = mp_str{path.data(), path.size()};
        r.query = mp_str{query.data(), query.size()};
        r.body = mp_str{body.data(), body.size()};
        r.remote_addr = mp_str{remote.data(), remote.size()};
        r.impl = &ctx;
        r.role = caller.role;
        r.principal = mp_str{caller.principal.data(), caller.principal.size()};
        return r;
    }
};

namespace {

void sendJson(Poco::Net::HTTPServerResponse& resp, int status, const std::string& body) {
    resp.setStatusAndReason(static_cast<Poco::Net::HTTPResponse::HTTPStatus>(status));
    resp.setContentType("application/json");
    resp.setContentLength(static_cast<std::streamsize>(body.size()));
    resp.send() << body;
}

std::string errorJson(const std::string& msg) { return "{\"error\":" + mp::jsonString(msg) + "}"; }

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

class RouteHandler : public Poco::Net::HTTPRequestHandler {
  public:
    explicit RouteHandler(HttpServer::Impl& impl) : impl_(impl) {}

    void handleRequest(Poco::Net::HTTPServerRequest& req,
                       Poco::Net::HTTPServerResponse& resp) override {
        impl_.requests->value.fetch_add(1, std::memory_order_relaxed);
        // A body this handler does not read must not be parsed as the next request.
        bodyPending_ = req.hasContentLength() ? req.getContentLength64() != 0
                                              : req.getChunkedTransferEncoding();
        try {
            handle(req, resp);
        } catch (const std::exception& e) {
            log(MP_LOG_WARN, "http", std::string("request failed: ") + e.what());
            if (!resp.sent()) {
                resp.setKeepAlive(false);
                sendJson(resp, 500, errorJson("internal error"));
            }
        }
    }

  private:
    void refuse(Poco::Net::HTTPServerResponse& resp, int status, const std::string& msg) {
        impl_.badRequests->value.fetch_add(1, std::memory_order_relaxed);
        if (bodyPending_) {
            resp.setKeepAlive(false);
        }
        sendJson(resp, status, errorJson(msg));
    }

    void tooLarge(Poco::Net::HTTPServerResponse& resp) {
        refuse(resp, 413,
               "request body larger than " + std::to_string(impl_.options.maxBodyBytes) + " bytes");
    }

    void handle(Poco::Net::HTTPServerRequest& req, Poco::Net::HTTPServerResponse& resp) {
        const std::string& version = req.getVersion();
        if (version != Poco::Net::HTTPMessage::HTTP_1_1 &&
            version != Poco::Net::HTTPMessage::HTTP_1_0) {
            resp.setVersion(Poco::Net::HTTPMessage::HTTP_1_1);
            resp.setKeepAlive(false);
            bodyPending_ = true;
            refuse(resp, 505, "HTTP version not supported: use HTTP/1.1 or HTTP/1.0");
            return;
        }
        RequestView view(req);
        const std::string& path = view.path;
        RouteSpec spec;
        {
            std::shared_lock<std::shared_mutex> lock(impl_.routesMutex);
            auto it = impl_.routes.find(path);
            if (it != impl_.routes.end()) {
                spec = it->second;
            }
        }
        if (!spec.fn) {
            refuse(resp, 404, "no such path: " + mp::printable(path, 200));
            return;
        }
        if (!parseQuery(view.query, view.ctx.params)) {
            refuse(resp, 400, "malformed query string");
            return;
        }
        view.identify(req, impl_.auth, false);
        if (int st = gate(view.caller, spec.role); st != 0) {
            (st == 401 ? impl_.authFailures : impl_.forbidden)
                ->value.fetch_add(1, std::memory_order_relaxed);
            if (st == 401) {
                resp.set("WWW-Authenticate", "Bearer realm=\"mysqlprobe\"");
            }
            refuse(resp, st, gateMessage(st, spec.role));
            return;
        }
        if (!methodAllowed(spec.methods, view.method)) {
            resp.set("Allow", allowHeader(spec.methods));
            refuse(resp, 405, "method not allowed: use " + allowHeader(spec.methods));
            return;
        }
        if (spec.ready != nullptr && !spec.ready->load()) {
            resp.set("Retry-After", "1");
            refuse(resp, 503, "not ready: the plugin serving " + path + " is not running");
            return;
        }
        std::string body;
        if (req.hasContentLength() &&
            req.getContentLength64() > static_cast<int64_t>(impl_.options.maxBodyBytes)) {
            tooLarge(resp);
            return;
        }
        if (bodyPending_) {
            std::istream& in = req.stream();
            std::vector<char> buf(64 * 1024);
            while (in) {
                in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
                body.append(buf.data(), static_cast<size_t>(in.gcount()));
                if (body.size() > impl_.options.maxBodyBytes) {
                    tooLarge(resp);
                    return;
                }
            }
            bodyPending_ = false;
        }
        // A form POST's fields are parameters too (after those of the query string).
        if (view.method == "POST" && !body.empty() &&
            Poco::icompare(req.getContentType().substr(0, 33),
                           "application/x-www-form-urlencoded") == 0 &&
            !parseQuery(body, view.ctx.params)) {
            refuse(resp, 400, "malformed form body");
            return;
        }
        view.ctx.params.erase("access_token");
        mp_http_request r = view.request(body);
        mp_http_response out;
        spec.fn(r, out);
        if (out.status == 0) {
            sendJson(resp, 500, errorJson("the handler gave no answer"));
            return;
        }
        if (out.status >= 400 && out.status < 500) {
            impl_.badRequests->value.fetch_add(1, std::memory_order_relaxed);
        }
        resp.setStatusAndReason(static_cast<Poco::Net::HTTPResponse::HTTPStatus>(out.status));
        resp.setContentType(out.contentType.empty() ? "text/plain" : out.contentType);
        resp.setContentLength(static_cast<std::streamsize>(out.body.size()));
        if (view.method == "HEAD") {
            resp.send();
        } else {
            resp.send() << out.body;
        }
    }

    HttpServer::Impl& impl_;
    bool bodyPending_ = false;
};

class WsHandler : public Poco::Net::HTTPRequestHandler {
  public:
    WsHandler(HttpServer::Impl& impl, const WsSpec& spec)
        : impl_(impl), h_(spec.handler), ready_(spec.ready) {}

    void handleRequest(Poco::Net::HTTPServerRequest& req,
                       Poco::Net::HTTPServerResponse& resp) override {
        impl_.requests->value.fetch_add(1, std::memory_order_relaxed);
        RequestView view(req);
        if (!parseQuery(view.query, view.ctx.params)) {
            impl_.badRequests->value.fetch_add(1, std::memory_order_relaxed);
            sendJson(resp, 400, errorJson("malformed query string"));
            return;
        }
        view.identify(req, impl_.auth, true);
        if (int st = gate(view.caller, h_.role); st != 0) {
            impl_.badRequests->value.fetch_add(1, std::memory_order_relaxed);
            (st == 401 ? impl_.authFailures : impl_.forbidden)
                ->value.fetch_add(1, std::memory_order_relaxed);
            if (st == 401) {
                resp.set("WWW-Authenticate", "Bearer realm=\"mysqlprobe\"");
            }
            sendJson(resp, st, errorJson(gateMessage(st, h_.role)));
            return;
        }
        if (ready_ != nullptr && !ready_->load()) {
            impl_.badRequests->value.fetch_add(1, std::memory_order_relaxed);
            resp.set("Retry-After", "1");
            sendJson(resp, 503,
                     errorJson("not ready: the plugin serving " + view.path + " is not running"));
            return;
        }
        mp_ws_conn conn;
        conn.wakeFd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        conn.maxQueue = h_.queue_messages != 0 ? h_.queue_messages : impl_.options.wsQueueMessages;
        conn.dropped = impl_.wsDropped;
        if (conn.wakeFd < 0) {
            sendJson(resp, 503, errorJson("out of file descriptors"));
            return;
        }
        // The plugin decides before the upgrade: a refusal is a plain HTTP answer (401 for
        // MP_EPERM, 403 otherwise). What it sends from on_open is queued for after the upgrade.
        if (h_.on_open != nullptr) {
            mp_http_request r = view.request();
            mp_status st = h_.on_open(h_.user, &conn, &r);
            if (st != MP_OK) {
                impl_.badRequests->value.fetch_add(1, std::memory_order_relaxed);
                ::close(conn.wakeFd);
                sendJson(resp, st == MP_EPERM ? 401 : 403,
                         errorJson(st == MP_EPERM ? "not authorized" : "refused"));
                return;
            }
        }
        std::unique_ptr<Poco::Net::WebSocket> ws;
        try {
            ws = std::make_unique<Poco::Net::WebSocket>(req, resp);
        } catch (const std::exception& e) {
            // Poco has already answered 400 for a bad handshake when it could.
            impl_.badRequests->value.fetch_add(1, std::memory_order_relaxed);
            if (!resp.sent()) {
                sendJson(resp, 400, errorJson(std::string("bad websocket handshake: ") + e.what()));
            }
            if (h_.on_close != nullptr) {
                h_.on_close(h_.user, &conn);
            }
            ::close(conn.wakeFd);
            return;
        }
        {
            std::lock_guard<std::mutex> lock(impl_.connsMutex);
            impl_.conns.insert(&conn);
        }
        impl_.wsOpen->value.fetch_add(1);
        try {
            serve(*ws, conn);
        } catch (const std::exception& e) {
            log(MP_LOG_DEBUG, "http", std::string("websocket ended: ") + e.what());
        }
        {
            std::lock_guard<std::mutex> lock(conn.mutex);
            conn.closed = true;
        }
        if (h_.on_close != nullptr) {
            h_.on_close(h_.user, &conn);
        }
        impl_.wsOpen->value.fetch_sub(1);
        {
            std::lock_guard<std::mutex> lock(impl_.connsMutex);
            impl_.conns.erase(&conn);
        }
        impl_.connsCv.notify_all();
        ::close(conn.wakeFd);
    }

  private:
    // A send that does not complete within the write timeout fails with EAGAIN, which Poco
    // raises as an I/O error rather than a timeout: both count as a slow client. False: closed.
    bool sendOrCount(Poco::Net::WebSocket& ws, const void* data, int len, int flags) {
        try {
            ws.sendFrame(data, len, flags);
            return true;
        } catch (const Poco::TimeoutException&) {
            impl_.wsSlowClosed->value.fetch_add(1);
        } catch (const Poco::Exception& e) {
            if (e.code() == EAGAIN || e.code() == EWOULDBLOCK ||
                e.displayText().find("Resource temporarily unavailable") != std::string::npos) {
                impl_.wsSlowClosed->value.fetch_add(1);
            }
        }
        return false;
    }

    void serve(Poco::Net::WebSocket& ws, mp_ws_conn& conn) {
        using Clock = std::chrono::steady_clock;
        // This endpoint's limits (ABI 1.1), else the host's.
        const int maxMessage =
            h_.max_message_bytes != 0
                ? static_cast<int>(std::min<uint32_t>(h_.max_message_bytes, 1u << 30))
                : impl_.options.wsMaxMessageBytes;
        const auto writeTimeout = h_.write_timeout_ms != 0
                                      ? std::chrono::milliseconds(h_.write_timeout_ms)
                                      : impl_.options.wsWriteTimeout;
        const auto pingEvery = std::chrono::milliseconds(h_.ping_interval_ms);
        const auto idleLimit = std::chrono::milliseconds(h_.idle_timeout_ms);
        ws.setMaxPayloadSize(maxMessage);
        ws.setSendTimeout(Poco::Timespan(writeTimeout.count() * 1000));
        ws.setReceiveTimeout(Poco::Timespan(writeTimeout.count() * 1000));
        auto lastHeard = Clock::now();
        auto lastPing = lastHeard;
        Poco::Buffer<char> frame(0);
        std::string message;
        int messageOp = 0;
        while (true) {
            pollfd fds[2] = {{ws.impl()->sockfd(), POLLIN, 0}, {conn.wakeFd, POLLIN, 0}};
            // Wake at least every 200 ms, and in time for the next keepalive ping.
            int wait = 200;
            if (pingEvery.count() != 0) {
                auto due = std::chrono::duration_cast<std::chrono::milliseconds>(
                    lastPing + pingEvery - Clock::now());
                wait = static_cast<int>(std::clamp<int64_t>(due.count(), 0, 200));
            }
            int rc = ::poll(fds, 2, wait);
            if (rc < 0 && errno != EINTR) {
                return;
            }
            if ((fds[1].revents & POLLIN) != 0) {
                uint64_t drain = 0;
                (void)::read(conn.wakeFd, &drain, sizeof drain);
            }
            // Outgoing first: reports should not wait behind a chatty client.
            std::deque<std::pair<uint32_t, std::string>> out;
            bool closeNow = false;
            {
                std::lock_guard<std::mutex> lock(conn.mutex);
                out.swap(conn.queue);
                closeNow = conn.closeRequested;
            }
            for (auto& [op, data] : out) {
                int flags =
                    static_cast<int>(Poco::Net::WebSocket::FRAME_FLAG_FIN) |
                    static_cast<int>(op == MP_WS_TEXT ? Poco::Net::WebSocket::FRAME_OP_TEXT
                                                      : Poco::Net::WebSocket::FRAME_OP_BINARY);
                if (!sendOrCount(ws, data.data(), static_cast<int>(data.size()), flags)) {
                    return;
                }
            }
            const auto now = Clock::now();
            if (pingEvery.count() != 0 && now - lastPing >= pingEvery) {
                lastPing = now;
                if (!sendOrCount(ws, "mp", 2,
                                 static_cast<int>(Poco::Net::WebSocket::FRAME_FLAG_FIN) |
                                     static_cast<int>(Poco::Net::WebSocket::FRAME_OP_PING))) {
                    return;
                }
            }
            if (idleLimit.count() != 0 && now - lastHeard > idleLimit) {
                impl_.wsIdleClosed->value.fetch_add(1);
                ws.shutdown(Poco::Net::WebSocket::WS_ENDPOINT_GOING_AWAY, "ping timeout");
                return;
            }
            if (closeNow || impl_.stopping.load()) {
                std::string reason;
                uint16_t code = 1001;
                {
                    std::lock_guard<std::mutex> lock(conn.mutex);
                    if (conn.closeRequested) {
                        code = conn.closeCode;
                        reason = conn.closeReason;
                    }
                    conn.closed = true;
                }
                ws.shutdown(code, reason);
                return;
            }
            if ((fds[0].revents & (POLLIN | POLLHUP | POLLERR)) == 0) {
                continue;
            }
            if (std::string why = frameHeaderProblem(ws.impl()->sockfd()); !why.empty()) {
                impl_.wsProtocolErrors->value.fetch_add(1);
                ws.shutdown(Poco::Net::WebSocket::WS_PROTOCOL_ERROR, why);
                return;
            }
            int flags = 0;
            frame.resize(0);
            int n = ws.receiveFrame(frame, flags);
            int op = flags & Poco::Net::WebSocket::FRAME_OP_BITMASK;
            lastHeard = Clock::now();
            if (n == 0 && flags == 0) {
                return;  // peer closed the TCP connection
            }
            if (op == Poco::Net::WebSocket::FRAME_OP_CLOSE) {
                ws.shutdown();
                return;
            }
            if (op == Poco::Net::WebSocket::FRAME_OP_PING) {
                ws.sendFrame(frame.begin(), n,
                             static_cast<int>(Poco::Net::WebSocket::FRAME_FLAG_FIN) |
                                 static_cast<int>(Poco::Net::WebSocket::FRAME_OP_PONG));
                continue;
            }
            if (op == Poco::Net::WebSocket::FRAME_OP_PONG) {
                continue;
            }
            if (op == Poco::Net::WebSocket::FRAME_OP_TEXT ||
                op == Poco::Net::WebSocket::FRAME_OP_BINARY) {
                message.assign(frame.begin(), static_cast<size_t>(n));
                messageOp = op;
            } else if (op == Poco::Net::WebSocket::FRAME_OP_CONT && messageOp != 0) {
                message.append(frame.begin(), static_cast<size_t>(n));
            } else {
                ws.shutdown(Poco::Net::WebSocket::WS_PROTOCOL_ERROR, "unexpected frame");
                return;
            }
            if (message.size() > static_cast<size_t>(maxMessage)) {
                ws.shutdown(Poco::Net::WebSocket::WS_PAYLOAD_TOO_BIG, "message too big");
                return;
            }
            if ((flags & Poco::Net::WebSocket::FRAME_FLAG_FIN) != 0) {
                if (h_.on_message != nullptr) {
                    h_.on_message(
                        h_.user, &conn,
                        messageOp == Poco::Net::WebSocket::FRAME_OP_TEXT ? MP_WS_TEXT
                                                                         : MP_WS_BINARY,
                        mp_bytes{reinterpret_cast<const uint8_t*>(message.data()), message.size()});
                }
                message.clear();
                messageOp = 0;
            }
        }
    }

    // RFC 6455 5.1-5.5, checked on the frame header before Poco reads the frame (Poco reads
    // from the socket itself once the handshake is done, so a peek sees the header): a client's
    // frames are masked, reserved bits are 0 (no extension is negotiated), opcodes are known,
    // control frames are final and at most 125 bytes. Empty when fine, else why (close 1002).
    static std::string frameHeaderProblem(int fd) {
        unsigned char h[2];
        ssize_t n = ::recv(fd, h, sizeof h, MSG_PEEK | MSG_DONTWAIT);
        if (n < 2) {
            return "";  // closed, or not all there yet: Poco reads (or times out) as before
        }
        int op = h[0] & 0x0f;
        if ((h[0] & 0x70) != 0) {
            return "reserved bits set";
        }
        if ((h[1] & 0x80) == 0) {
            return "unmasked client frame";
        }
        if (op != 0 && op != 1 && op != 2 && op != 8 && op != 9 && op != 10) {
            return "unknown opcode";
        }
        if (op >= 8 && ((h[0] & 0x80) == 0 || (h[1] & 0x7f) > 125)) {
            return "control frame fragmented or longer than 125 bytes";
        }
        return "";
    }

    HttpServer::Impl& impl_;
    mp_ws_handler h_;
    const std::atomic<bool>* ready_;
};

class Factory : public Poco::Net::HTTPRequestHandlerFactory {
  public:
    explicit Factory(HttpServer::Impl& impl) : impl_(impl) {}

    Poco::Net::HTTPRequestHandler* createRequestHandler(
        const Poco::Net::HTTPServerRequest& req) override {
        const std::string& uri = req.getURI();
        std::string path = uri.substr(0, uri.find('?'));
        if (Poco::icompare(req.get("Upgrade", ""), "websocket") == 0) {
            std::shared_lock<std::shared_mutex> lock(impl_.routesMutex);
            auto it = impl_.sockets.find(path);
            if (it != impl_.sockets.end()) {
                return new WsHandler(impl_, it->second);
            }
        }
        return new RouteHandler(impl_);
    }

  private:
    HttpServer::Impl& impl_;
};

}  // namespace

HttpServer::HttpServer(HttpOptions options, Metrics& metrics)
    : auth_(options.auth ? options.auth : std::make_shared<const Authenticator>(AuthConfig{})),
      impl_(std::make_unique<Impl>(std::move(options), metrics, *auth_)) {}

HttpServer::~HttpServer() { stop(); }

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
    impl_->sockets[path] = WsSpec{handler, ready};
    // A plain GET on a websocket path explains itself instead of a bare 404 (to callers allowed
    // to open it).
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
    Poco::Net::ServerSocket socket;
    try {
        Poco::Net::SocketAddress addr(impl_->options.address,
                                      static_cast<Poco::UInt16>(impl_->options.port));
        socket.bind(addr, true, false);  // SO_REUSEPORT would let two hosts share a port
        socket.listen(128);
    } catch (const Poco::Exception& e) {
        throw std::runtime_error("cannot listen on " + impl_->options.address + ":" +
                                 std::to_string(impl_->options.port) + ": " + e.displayText());
    }
    port_ = socket.address().port();
    auto* params = new Poco::Net::HTTPServerParams();
    params->setMaxThreads(impl_->options.maxThreads);
    params->setMaxQueued(impl_->options.maxQueued);
    params->setTimeout(Poco::Timespan(impl_->options.idleTimeout.count() * 1000));
    params->setKeepAlive(true);
    params->setMaxKeepAliveRequests(1000);
    params->setServerName("mysqlprobe");
    server_ = std::make_unique<Poco::Net::HTTPServer>(new Factory(*impl_), socket, params);
    server_->start();
    running_ = true;
}

void HttpServer::stop() {
    if (!running_) {
        return;
    }
    running_ = false;
    impl_->stopping.store(true);
    {
        std::unique_lock<std::mutex> lock(impl_->connsMutex);
        for (mp_ws_conn* c : impl_->conns) {
            uint64_t one = 1;
            (void)::write(c->wakeFd, &one, sizeof one);
        }
        impl_->connsCv.wait_for(lock, std::chrono::seconds(3),
                                [&] { return impl_->conns.empty(); });
    }
    server_->stopAll(true);
    // Poco's dispatcher lets running handlers finish; give them a bounded moment.
    for (int i = 0; i < 100 && server_->currentConnections() > 0; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
}

}  // namespace mp::host

// Services used by the C host API (host_api.cpp).
namespace mp::host {

mp_status wsSend(mp_ws_conn* conn, uint32_t opcode, mp_bytes data) {
    if (conn == nullptr || (opcode != MP_WS_TEXT && opcode != MP_WS_BINARY) ||
        (data.data == nullptr && data.len != 0)) {
        return MP_EINVAL;
    }
    mp_status st = MP_OK;
    {
        std::lock_guard<std::mutex> lock(conn->mutex);
        if (conn->closed) {
            return MP_ECLOSED;
        }
        if (conn->queue.size() >= conn->maxQueue) {
            conn->queue.pop_front();
            if (conn->dropped != nullptr) {
                conn->dropped->value.fetch_add(1);
            }
            st = MP_EAGAIN;
        }
        conn->queue.emplace_back(opcode,
                                 std::string(reinterpret_cast<const char*>(data.data), data.len));
    }
    uint64_t one = 1;
    (void)::write(conn->wakeFd, &one, sizeof one);
    return st;
}

void wsClose(mp_ws_conn* conn, uint16_t code, mp_str reason) {
    if (conn == nullptr) {
        return;
    }
    {
        std::lock_guard<std::mutex> lock(conn->mutex);
        conn->closeRequested = true;
        conn->closeCode = code;
        conn->closeReason.assign(reason.data != nullptr ? reason.data : "",
                                 reason.data != nullptr ? std::min<size_t>(reason.len, 123) : 0);
    }
    uint64_t one = 1;
    (void)::write(conn->wakeFd, &one, sizeof one);
}

mp_status headerValue(const mp_http_request* req, const char* name, mp_str* out) {
    if (req == nullptr || req->impl == nullptr || name == nullptr || out == nullptr) {
        return MP_EINVAL;
    }
    const auto* ctx = static_cast<const RequestCtx*>(req->impl);
    for (const auto& [k, v] : ctx->headers) {
        if (Poco::icompare(k, name) == 0) {
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

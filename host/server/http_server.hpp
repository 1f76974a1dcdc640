// SPDX-License-Identifier: Apache-2.0
// The host's HTTP and websocket server: one event loop (epoll) owns every socket, so a slow,
// idle or hostile client costs a file descriptor and the bytes it makes the server hold, never
// a thread. Requests and websocket callbacks run on two small worker pools: one for the routes
// of other nodes and admins (peer and admin roles), one for everything else, so a flood of
// readers cannot delay cluster traffic or an operator.
#pragma once

#include <mp/abi.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "core/metrics.hpp"
#include "server/auth.hpp"

struct mp_http_response {
    int status = 0;
    std::string contentType;
    std::string body;
};

namespace mp::host {

using RouteFn = std::function<void(const mp_http_request&, mp_http_response&)>;

/// What mp_http_request::impl points to: the request's parameters (query string, then the
/// fields of a form body; never access_token) and headers (never Authorization).
struct RequestCtx {
    std::multimap<std::string, std::string> params;
    std::vector<std::pair<std::string, std::string>> headers;
};

/// A route and its access rule. The server answers 401/403/405/503 itself; `fn` sees only
/// allowed requests.
struct RouteSpec {
    RouteFn fn;
    uint32_t role = MP_ROLE_ADMIN;     // MP_ROLE_* a caller needs
    uint32_t methods = MP_HTTP_GET;    // MP_HTTP_* accepted (HEAD wherever GET)
    const std::atomic<bool>* ready{};  // the owner serves only while this is true (else 503)
};

struct HttpOptions {
    std::string address = "0.0.0.0";
    int port = 8667;
    size_t maxBodyBytes = 1 << 20;   // larger bodies get 413
    size_t maxHeadBytes = 16 << 10;  // request line and headers; larger: 431
    // Connections: every one costs a descriptor and what it makes the server buffer.
    size_t maxConnections = 1024;          // beyond: 503 and close (idle keep-alives go first)
    size_t maxConnectionsPerClient = 128;  // per remote address
    size_t reservedConnections = 32;  // the last ones: only for callers of the peer/admin roles
    std::chrono::milliseconds headerTimeout{5000};      // a request head arrives within this
    std::chrono::milliseconds keepAliveTimeout{15000};  // idle between requests
    std::chrono::milliseconds bodyTimeout{30000};       // a body arrives within this
    std::chrono::milliseconds writeTimeout{10000};      // a response makes progress within this
    // Workers: handlers and websocket callbacks run there, never on the event loop.
    size_t readerThreads = 2;      // routes of the anyone/read roles
    size_t controlThreads = 2;     // routes of the peer/admin roles
    size_t maxQueuedTasks = 1024;  // per pool; beyond: 503
    // Memory: bytes held for clients, all connections together (input being parsed, messages
    // waiting for a callback, output queued); past it the connection asking for more is closed.
    size_t maxBufferedBytes = 256 << 20;
    // Websockets (an endpoint's own limits, ABI 1.1, take precedence).
    size_t wsQueueMessages = 64;  // per connection, oldest dropped
    size_t wsQueueBytes = 64 << 20;
    size_t wsMaxMessageBytes = 16 << 20;  // incoming messages larger than this close the conn
    std::chrono::milliseconds wsWriteTimeout{5000};
    std::shared_ptr<const Authenticator> auth;  // null: protected mode, default roles
    // TLS: with both, the server speaks HTTPS and WSS only (TLS 1.2 or newer).
    std::string tlsCertFile;  // PEM: the certificate, then its chain
    std::string tlsKeyFile;   // PEM: its private key
};

class HttpServer {
  public:
    HttpServer(HttpOptions options, Metrics& metrics);
    ~HttpServer();
    HttpServer(const HttpServer&) = delete;
    HttpServer& operator=(const HttpServer&) = delete;

    /// Exact-path route, or a prefix route when `path` ends in "/*" (every path under it that no
    /// exact route or longer prefix takes). False when the path is taken (by a route or a
    /// websocket endpoint).
    bool addRoute(const std::string& path, RouteSpec spec);
    /// Websocket endpoint; the handler struct is copied; its `role` field (0: admin) says who
    /// may open it. False when the path is taken.
    bool addWebSocket(const std::string& path, const mp_ws_handler& handler,
                      const std::atomic<bool>* ready = nullptr);
    const Authenticator& auth() const { return *auth_; }

    /// Throws std::runtime_error with a one-line reason when the TLS files are unusable.
    /// Binds and starts serving; throws std::runtime_error with a one-line reason.
    void start();
    /// Closes websockets (their on_close runs), stops accepting, waits for handlers (bounded).
    void stop();
    int port() const { return port_; }
    bool running() const { return running_; }
    /// Bytes held for clients right now (input, output, websocket queues): what
    /// max_buffered_mb bounds.
    size_t bufferedBytes() const;

    struct Impl;

  private:
    std::shared_ptr<const Authenticator> auth_;
    std::unique_ptr<Impl> impl_;
    int port_ = 0;
    bool running_ = false;
};

// The websocket and request services of mp_host_api (the host's C table points at these).
mp_status wsSend(mp_ws_conn* conn, uint32_t opcode, mp_bytes data);
void wsClose(mp_ws_conn* conn, uint16_t code, mp_str reason);
mp_status queryParam(const mp_http_request* req, const char* name, mp_str* out);
mp_status headerValue(const mp_http_request* req, const char* name, mp_str* out);

/// Percent-decoding of the query string of a request; false when malformed.
bool parseQuery(const std::string& query, std::multimap<std::string, std::string>& out);

}  // namespace mp::host

// SPDX-License-Identifier: Apache-2.0
// The host's HTTP server (Poco): built-in routes, plugin routes and websocket endpoints.
#pragma once

#include <mp/abi.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <vector>

#include "core/metrics.hpp"
#include "server/auth.hpp"

namespace Poco::Net {
class HTTPServer;
}

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
    size_t maxBodyBytes = 1 << 20;     // larger bodies get 413
    int maxThreads = 32;               // concurrent connections served
    int maxQueued = 64;                // accepted connections waiting for a thread
    size_t wsQueueMessages = 64;       // per websocket connection, oldest dropped
    int wsMaxMessageBytes = 16 << 20;  // incoming frames larger than this close the conn
    std::chrono::milliseconds wsWriteTimeout{5000};
    std::chrono::milliseconds idleTimeout{30000};  // HTTP keep-alive / read timeout
    std::shared_ptr<const Authenticator> auth;     // null: protected mode, default roles
};

class HttpServer {
  public:
    HttpServer(HttpOptions options, Metrics& metrics);
    ~HttpServer();
    HttpServer(const HttpServer&) = delete;
    HttpServer& operator=(const HttpServer&) = delete;

    /// Exact-path route. False when the path is taken (by a route or a websocket endpoint).
    bool addRoute(const std::string& path, RouteSpec spec);
    /// Websocket endpoint; the handler struct is copied; its `role` field (0: admin) says who
    /// may open it. False when the path is taken.
    bool addWebSocket(const std::string& path, const mp_ws_handler& handler,
                      const std::atomic<bool>* ready = nullptr);
    const Authenticator& auth() const { return *auth_; }

    /// Binds and starts serving; throws std::runtime_error with a one-line reason.
    void start();
    /// Closes websockets (their on_close runs), stops accepting, waits for handlers (bounded).
    void stop();
    int port() const { return port_; }
    bool running() const { return running_; }

    // Used by the request handlers.
    struct Impl;

  private:
    std::shared_ptr<const Authenticator> auth_;
    std::unique_ptr<Impl> impl_;
    std::unique_ptr<Poco::Net::HTTPServer> server_;
    int port_ = 0;
    bool running_ = false;
};

/// Percent-decoding of the query string of a request; false when malformed.
bool parseQuery(const std::string& query, std::multimap<std::string, std::string>& out);

}  // namespace mp::host

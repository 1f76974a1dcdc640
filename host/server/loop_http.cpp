// SPDX-License-Identifier: Apache-2.0
// The event loop's HTTP requests: parsing what a connection holds, routing, the caller and its
// role, the body, dispatch to a worker, responses, and flushing the output.
#include <algorithm>
#include <mp/files.hpp>
#include <mp/sdk.hpp>

#include "core/log.hpp"
#include "server/http_util.hpp"
#include "server/server_impl.hpp"

namespace mp::host {

// Parses whatever the connection's input holds, in its state.
void Loop::advance(Conn& c) {
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

void Loop::startRequest(Conn& c) {
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
        auto socket = s_.sockets.find(c.path);
        if (socket != s_.sockets.end() &&
            (upgrade || (socket->second.handler.flags & MP_WS_SSE) != 0)) {
            HttpServer::Impl::WsSpec spec = socket->second;
            lock.unlock();
            upgradeRequest(c, spec);
            return;
        }
        const RouteSpec* route = s_.findRoute(c.path);
        if (route == nullptr) {
            lock.unlock();
            respondError(c, 404, "no such path: " + mp::printable(c.path, 200), c.closeAfter);
            return;
        }
        c.route = *route;
    }
    if (!plainPath(c.path)) {
        // No handler (a prefix route's above all, which may map paths to files) sees a path
        // that could climb out of its folder or mean something else once decoded.
        respondError(c, 400,
                     "a path with '.', '..' or empty segments, or an encoded '.', '/' or "
                     "'\\', is refused",
                     c.closeAfter);
        return;
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
            "request body larger than " + std::to_string(s_.options.maxBodyBytes) + " bytes", true);
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
bool Loop::readBody(Conn& c) {
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
        iequals(c.head.header("Content-Type").substr(0, 33), "application/x-www-form-urlencoded") &&
        !parseQuery(c.body, c.ctx.params)) {
        respondError(c, 400, "malformed form body", c.closeAfter);
        return true;
    }
    c.ctx.params.erase("access_token");
    dispatch(c);
    return true;
}

void Loop::identify(Conn& c, bool upgrade) {
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

void Loop::refuseAuth(Conn& c, int st, uint32_t role) {
    HttpServer::Impl::add(st == 401 ? s_.authFailures : s_.forbidden);
    std::vector<std::pair<std::string, std::string>> extra;
    if (st == 401) {
        extra.emplace_back("WWW-Authenticate", "Bearer realm=\"mysqlprobe\"");
    }
    respondError(c, st, gateMessage(st, role), c.closeAfter, extra);
}

void Loop::dispatch(Conn& c) {
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
            out =
                mp_http_response{500, "application/json", errorJson("the handler gave no answer")};
        }
        s->finish(HttpServer::Impl::Done{id, out.status, out.contentType, std::move(out.body), head,
                                         false, nullptr});
    });
    if (!ok) {
        c.st = Conn::St::Head;
        respondError(c, 503, "server busy: too many requests waiting", true,
                     {{"Retry-After", "1"}});
    }
}

void Loop::queue(Conn& c, std::string_view bytes) {
    if (c.out.empty()) {
        c.lastProgress = Clock::now();
    }
    c.out.append(bytes);
    s_.buffered.fetch_add(static_cast<int64_t>(bytes.size()));  // output is held too
}

void Loop::respond(Conn& c, int status, const std::string& contentType, const std::string& body,
                   bool close, const std::vector<std::pair<std::string, std::string>>& extra,
                   bool headOnly) {
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

void Loop::respondError(Conn& c, int status, const std::string& why, bool close,
                        const std::vector<std::pair<std::string, std::string>>& extra) {
    respond(c, status, "application/json", errorJson(why), close, extra);
}

void Loop::flush(Conn& c) {
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

}  // namespace mp::host

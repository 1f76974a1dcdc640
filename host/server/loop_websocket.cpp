// SPDX-License-Identifier: Apache-2.0
// Websockets: the upgrade (on_open decides), frames in, the closing handshake, what plugins queue
// going out; the session's callbacks on a worker (Impl::drain); and ws_send / ws_close of the
// host API.
#include <algorithm>

#include "server/http_util.hpp"
#include "server/server_impl.hpp"

namespace mp::host {

namespace {
// Output a websocket connection may owe its client before the server stops adding to it: the
// plugin queue waits behind it, and pings get no pong of their own.
constexpr size_t kMaxOwedOutput = 1u << 20;

// One Server-Sent Event: a `data:` line per line of the message (CR, LF and CRLF end lines),
// then an empty line. `named` (MP_WS_SSE_EVENTS): the first line is the event's name instead, an
// `event:` line (none when it is empty).
std::string sseEvent(std::string_view msg, bool named) {
    std::string out;
    out.reserve(msg.size() + 8);
    size_t pos = 0;
    if (named) {
        size_t end = msg.find_first_of("\r\n");
        std::string_view name = msg.substr(0, end);
        if (!name.empty()) {
            out += "event: ";
            out.append(name);
            out += '\n';
        }
        if (end == std::string_view::npos) {
            return out + "data: \n\n";
        }
        pos = end + (msg[end] == '\r' && end + 1 < msg.size() && msg[end + 1] == '\n' ? 2 : 1);
    }
    while (true) {
        size_t end = msg.find_first_of("\r\n", pos);
        out += "data: ";
        out.append(msg.substr(pos, end == std::string_view::npos ? msg.size() - pos : end - pos));
        out += '\n';
        if (end == std::string_view::npos) {
            break;
        }
        pos = end + (msg[end] == '\r' && end + 1 < msg.size() && msg[end + 1] == '\n' ? 2 : 1);
    }
    out += '\n';
    return out;
}
}  // namespace

// Runs the session's callbacks in order on a worker: queued messages, then on_close.
void HttpServer::Impl::drain(const std::shared_ptr<WsSession>& s, WorkerPool& pool) {
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

// A websocket upgrade, or the GET of an event stream (MP_WS_SSE): the same gate, the same
// on_open decision and session.
void Loop::upgradeRequest(Conn& c, const HttpServer::Impl::WsSpec& spec) {
    const http::RequestHead& h = c.head;
    const mp_ws_handler& wh = spec.handler;
    bool sse = (wh.flags & MP_WS_SSE) != 0;
    std::string accept;
    if (sse) {
        if (iequals(h.header("Upgrade"), "websocket")) {
            respondError(c, 400,
                         c.path + " is an event stream (text/event-stream), not a websocket", true);
            return;
        }
        if (h.method != "GET") {
            respondError(c, 405, "an event stream is read with GET", true, {{"Allow", "GET"}});
            return;
        }
    } else {
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
        accept = ws::acceptKey(h.header("Sec-WebSocket-Key"));
        if (accept.empty()) {
            respondError(c, 400, "bad Sec-WebSocket-Key", true);
            return;
        }
    }
    if (h.chunked || (h.hasLength && h.contentLength > 0)) {
        respondError(
            c, 400, sse ? "an event stream request has no body" : "a websocket upgrade has no body",
            true);
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
        respondError(c, 503, "not ready: the plugin serving " + c.path + " is not running", true,
                     {{"Retry-After", "1"}});
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
    c.sse = sse;
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
        c.sse = false;
        c.st = Conn::St::Head;
        respondError(c, 503, "server busy: too many requests waiting", true,
                     {{"Retry-After", "1"}});
    }
}

void Loop::opened(Conn& c, const HttpServer::Impl::Done& d) {
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
        c.sse = false;
        c.st = Conn::St::Head;
        c.closeAfter = true;
        if (d.status == 401) {
            HttpServer::Impl::add(s_.authFailures);
        }
        respondError(c, d.status, d.status == 401 ? "not authorized" : "refused", true);
        return;
    }
    if (c.sse) {
        // The stream is the body, to the end of the connection.
        queue(c,
              "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: "
              "no-store\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n");
    } else {
        queue(c,
              "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: "
              "Upgrade\r\nSec-WebSocket-Accept: " +
                  d.body + "\r\n\r\n");
        c.reader = std::make_unique<ws::Reader>(c.maxMessage);
    }
    c.st = Conn::St::Ws;
    c.lastHeard = c.lastPing = Clock::now();
    HttpServer::Impl::add(s_.wsOpen);
    c.wsCounted = true;
    pullOutgoing(c);
    flush(c);
    if (c.fd >= 0 && !c.in.empty()) {
        advance(c);  // frames that came with the upgrade
    }
}

void Loop::readFrames(Conn& c) {
    if (c.sse) {
        // An event stream's client has nothing to say: what it sends is read and dropped.
        s_.buffered.fetch_sub(static_cast<int64_t>(c.heldIn));
        c.heldIn = 0;
        c.in.clear();
        return;
    }
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

void Loop::sendClose(Conn& c, uint16_t code, const std::string& why) {
    if (c.closeSent) {
        return;
    }
    if (!c.sse) {
        queue(c, ws::encodeClose(code, why));  // an event stream just ends
    }
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
void Loop::pullOutgoing(Conn& c) {
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
            queue(c, c.sse ? sseEvent(data, (c.session->h.flags & MP_WS_SSE_EVENTS) != 0)
                           : ws::encode(op == MP_WS_TEXT ? ws::Text : ws::Binary, data));
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

void Loop::endSession(Conn& c) {
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

// Websocket services of the host API (the host's C table points at these): called by plugins
// from any thread.

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

}  // namespace mp::host

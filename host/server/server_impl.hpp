// SPDX-License-Identifier: Apache-2.0
// Internal to the HTTP server: the state behind HttpServer (HttpServer::Impl), a websocket as
// plugins see it (mp_ws_conn, WsSession), one client connection (Conn) and the event loop that
// owns every socket (Loop). Only host/server/ and its unit tests include this.
//
// The loop's member functions are defined by concern:
//   http_server.cpp       the loop's run(), hand-over from workers, ticks, stopping;
//   loop_connections.cpp  accepting, idle eviction, epoll interest, closing, memory held,
//                         the transport (plain TCP or TLS);
//   loop_http.cpp         requests: head, body, caller, dispatch, responses, output;
//   loop_websocket.cpp    upgrades, frames, closing handshake, plugin output (and
//                         wsSend/wsClose, Impl::drain).
#pragma once

#include <fcntl.h>
#include <openssl/ssl.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "server/http_parser.hpp"
#include "server/http_server.hpp"
#include "server/worker_pool.hpp"
#include "server/ws_frame.hpp"

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

using Clock = std::chrono::steady_clock;

struct HttpServer::Impl {
    HttpOptions options;
    Metrics& metrics;
    const Authenticator& auth;
    std::shared_mutex routesMutex;
    std::map<std::string, RouteSpec> routes;
    std::map<std::string, RouteSpec> prefixes;  // "/console/" for a route "/console/*"
    /// The route of `path`: the exact one, else the longest prefix route above it (null).
    const RouteSpec* findRoute(const std::string& path) const;
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

    Impl(HttpOptions o, Metrics& m, const Authenticator& a);

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
    void drain(const std::shared_ptr<WsSession>& s, WorkerPool& pool);
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
    bool sse = false;      // a Server-Sent Events stream (MP_WS_SSE), not a websocket
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

using Conn = HttpServer::Impl::Conn;

// The event loop (one thread): every socket, its state and its deadlines.
class Loop {
  public:
    explicit Loop(HttpServer::Impl& s) : s_(s) {}

    void run();

  private:
    // ---- connections (loop_connections.cpp) ----------------------------------------------
    void acceptAll();
    void evictIdle();
    void interest(Conn& c);
    bool sessionFull(const Conn& c);
    void close(Conn& c);
    bool hold(Conn& c, size_t more);
    void release(Conn& c, size_t n);
    size_t inputLimit(const Conn& c) const;

    // ---- the transport: plain TCP or TLS (loop_connections.cpp) ----------------------------
    bool handshake(Conn& c);
    ssize_t readSome(Conn& c, char* buf, size_t n);
    ssize_t writeSome(Conn& c, const char* p, size_t n);
    void shutWrite(Conn& c);
    void onReadable(Conn& c);
    void refuseMemory(Conn& c);
    void consume(Conn& c, size_t n);

    // ---- HTTP requests (loop_http.cpp) ----------------------------------------------------
    void advance(Conn& c);
    void startRequest(Conn& c);
    bool readBody(Conn& c);
    void identify(Conn& c, bool upgrade);
    void refuseAuth(Conn& c, int st, uint32_t role);
    void dispatch(Conn& c);
    void queue(Conn& c, std::string_view bytes);
    void respond(Conn& c, int status, const std::string& contentType, const std::string& body,
                 bool close, const std::vector<std::pair<std::string, std::string>>& extra,
                 bool headOnly = false);
    void respondError(Conn& c, int status, const std::string& why, bool close,
                      const std::vector<std::pair<std::string, std::string>>& extra = {});
    void flush(Conn& c);

    // ---- websockets (loop_websocket.cpp) --------------------------------------------------
    void upgradeRequest(Conn& c, const HttpServer::Impl::WsSpec& spec);
    void opened(Conn& c, const HttpServer::Impl::Done& d);
    void readFrames(Conn& c);
    void sendClose(Conn& c, uint16_t code, const std::string& why);
    void pullOutgoing(Conn& c);
    void endSession(Conn& c);

    // ---- hand-over, time, stopping (http_server.cpp) --------------------------------------
    void handOver();
    std::shared_ptr<Conn> find(uint64_t id);
    void tick();
    void beginStop();

    HttpServer::Impl& s_;
    int spareFd_ = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    std::vector<uint64_t> tlsPending_;  // connections with decrypted bytes left in OpenSSL
    bool stopped_ = false;
    Clock::time_point stopDeadline_;
};

}  // namespace mp::host

// SPDX-License-Identifier: Apache-2.0
// The host's HTTP server with the real plugins: /health, 404, bad requests, websockets.
#include <Poco/JSON/Object.h>
#include <Poco/JSON/Parser.h>
#include <Poco/Net/HTTPClientSession.h>
#include <Poco/Net/HTTPRequest.h>
#include <Poco/Net/HTTPResponse.h>
#include <Poco/Net/StreamSocket.h>
#include <Poco/Net/WebSocket.h>
#include <Poco/StreamCopier.h>
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "app/runtime.hpp"
#include "support/process.hpp"

namespace {

struct Reply {
    int status = 0;
    std::string contentType;
    std::string body;
};

Reply request(int port, const std::string& method, const std::string& uri,
              const std::string& body = "") {
    Poco::Net::HTTPClientSession s("127.0.0.1", static_cast<Poco::UInt16>(port));
    s.setTimeout(Poco::Timespan(5, 0));
    Poco::Net::HTTPRequest req(method, uri, Poco::Net::HTTPMessage::HTTP_1_1);
    if (!body.empty()) {
        req.setContentLength(static_cast<std::streamsize>(body.size()));
    }
    s.sendRequest(req) << body;
    Poco::Net::HTTPResponse resp;
    std::istream& in = s.receiveResponse(resp);
    Reply r;
    r.status = resp.getStatus();
    r.contentType = resp.getContentType();
    Poco::StreamCopier::copyToString(in, r.body);
    return r;
}

// Sends raw bytes and returns what the server answers (until it closes or 2 s pass).
std::string raw(int port, const std::string& bytes) {
    Poco::Net::StreamSocket sock(
        Poco::Net::SocketAddress("127.0.0.1", static_cast<Poco::UInt16>(port)));
    sock.setReceiveTimeout(Poco::Timespan(2, 0));
    sock.sendBytes(bytes.data(), static_cast<int>(bytes.size()));
    std::string out;
    char buf[4096];
    try {
        while (true) {
            int n = sock.receiveBytes(buf, sizeof buf);
            if (n <= 0) {
                break;
            }
            out.append(buf, static_cast<size_t>(n));
        }
    } catch (const Poco::Exception&) {
        // timeout or reset: return what arrived
    }
    return out;
}

// The bytes after the header of a raw HTTP answer ("" when there is no header end).
std::string bodyOf(const std::string& answer) {
    size_t end = answer.find("\r\n\r\n");
    return end == std::string::npos ? std::string() : answer.substr(end + 4);
}

// A bare HTTP server (no plugins) on a free loopback port; `tune` changes its options first.
struct Loopback {
    mp::host::Metrics metrics;
    mp::host::HttpServer server;
    explicit Loopback(const std::function<void(mp::host::HttpOptions&)>& tune = {})
        : server(options(tune), metrics) {}
    static mp::host::HttpOptions options(const std::function<void(mp::host::HttpOptions&)>& tune) {
        mp::host::HttpOptions o;
        o.address = "127.0.0.1";
        o.port = 0;
        if (tune) {
            tune(o);
        }
        return o;
    }
};

Poco::JSON::Object::Ptr parseJson(const std::string& text) {
    Poco::JSON::Parser p;
    return p.parse(text).extract<Poco::JSON::Object::Ptr>();
}

// A host with the websocket sink and no cluster, on a free loopback port.
struct Host {
    std::unique_ptr<mp::host::Runtime> rt;
    int port = 0;
    explicit Host(const std::string& sink = "sink-websocket") {
        auto cfg = mp::host::parseConfig(
            "serverport: 0\nserveraddress: 127.0.0.1\ninterval: 3600\nnodename: test-node\n"
            "plugins:\n  cluster: none\n  sinks: [" +
                sink + "]\n",
            "t.yaml", mp::host::Overrides{});
        rt = std::make_unique<mp::host::Runtime>(cfg, mp::host::RuntimeOptions{});
        rt->loadPlugins();
        rt->resolve();
        rt->create();
        rt->start();
        port = rt->http()->port();
    }
};

}  // namespace

TEST_SUITE("http") {
    TEST_CASE("/health answers JSON with the running plugins") {
        Host h;
        Reply r = request(h.port, "GET", "/health");
        CHECK(r.status == 200);
        CHECK(r.contentType == "application/json");
        auto obj = parseJson(r.body);
        CHECK(obj->getValue<std::string>("status") == "ok");
        CHECK(obj->getValue<std::string>("node") == "test-node");
        auto plugins = obj->getArray("plugins");
        REQUIRE(plugins->size() == 1);
        CHECK(plugins->getObject(0)->getValue<std::string>("name") == "sink-websocket");
        CHECK(plugins->getObject(0)->getValue<bool>("running"));
        CHECK(request(h.port, "HEAD", "/health").status == 200);
        Reply post = request(h.port, "POST", "/health", "x");
        CHECK(post.status == 405);
    }

    TEST_CASE("unknown paths give 404 JSON") {
        Host h;
        Reply r = request(h.port, "GET", "/nope?x=1");
        CHECK(r.status == 404);
        CHECK(r.contentType == "application/json");
        CHECK(parseJson(r.body)->getValue<std::string>("error") == "no such path: /nope");
    }

    TEST_CASE("/metrics is Prometheus text with HELP and TYPE") {
        Host h;
        request(h.port, "GET", "/health");
        Reply r = request(h.port, "GET", "/metrics");
        CHECK(r.status == 200);
        CHECK(r.body.find("# HELP mysqlprobe_http_requests_total ") != std::string::npos);
        CHECK(r.body.find("# TYPE mysqlprobe_http_requests_total counter") != std::string::npos);
        CHECK(r.body.find("# TYPE mysqlprobe_sink_websocket_clients gauge") != std::string::npos);
    }

    TEST_CASE("malformed and oversized requests get 4xx and the host keeps serving") {
        Host h;
        CHECK(raw(h.port, "GARBAGE\r\n\r\n").rfind("HTTP/1.", 0) == 0);
        CHECK(raw(h.port, "GARBAGE\r\n\r\n").find(" 400 ") != std::string::npos);
        CHECK(raw(h.port, "\x01\x02\x03\xff\r\n\r\n").find(" 400 ") != std::string::npos);
        std::string longHeader =
            "GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(100000, 'a') + "\r\n\r\n";
        CHECK(raw(h.port, longHeader).find(" 431 Request Header Fields Too Large") !=
              std::string::npos);
        std::string many = "GET /health HTTP/1.1\r\nHost: x\r\n";
        for (int i = 0; i < 200; ++i) {
            many += "X-H" + std::to_string(i) + ": v\r\n";
        }
        CHECK(raw(h.port, many + "\r\n").find(" 431 ") != std::string::npos);
        // A connection that sends half a request and goes away.
        raw(h.port, "GET /hea");
        CHECK(request(h.port, "GET", "/health").status == 200);
    }

    TEST_CASE("plugin routes: query parameters, bad encodings and body limits") {
        Loopback lb([](mp::host::HttpOptions& o) { o.maxBodyBytes = 1024; });
        auto& server = lb.server;
        mp::host::RouteSpec echo;
        echo.role = MP_ROLE_ANYONE;
        echo.methods = MP_HTTP_GET | MP_HTTP_POST;
        echo.fn = [](const mp_http_request& req, mp_http_response& resp) {
            mp_str v{};
            mp_status st = mp::host::hostApi()->http_query_param(&req, "addr", &v);
            resp.status = st == MP_OK ? 200 : 400;
            resp.body = st == MP_OK ? std::string(v.data, v.len) + "|" +
                                          std::string(req.body.data, req.body.len)
                                    : "missing";
        };
        CHECK(server.addRoute("/echo", echo));
        CHECK_FALSE(server.addRoute("/echo", echo));
        server.start();
        int port = server.port();
        Reply r = request(port, "POST", "/echo?addr=127.0.0.1%3A8667&x", "hello");
        CHECK(r.status == 200);
        CHECK(r.body == "127.0.0.1:8667|hello");
        CHECK(request(port, "GET", "/echo").status == 400);
        CHECK(request(port, "GET", "/echo?addr=%zz").status == 400);
        CHECK(request(port, "GET", "/echo?addr=%4").status == 400);
        CHECK(request(port, "POST", "/echo?addr=a", std::string(2048, 'x')).status == 413);
        std::string chunked =
            "POST /echo?addr=a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            "800\r\n" +
            std::string(2048, 'y') + "\r\n0\r\n\r\n";
        CHECK(raw(port, chunked).find(" 413 ") != std::string::npos);
        CHECK(lb.metrics.value("mysqlprobe_http_bad_requests_total") >= 4);
        server.stop();
    }

    TEST_CASE("prefix routes: the longest one under which the path falls, plain paths only") {
        Loopback lb;
        auto& server = lb.server;
        auto named = [](const std::string& name) {
            mp::host::RouteSpec r;
            r.role = MP_ROLE_ANYONE;
            r.fn = [name](const mp_http_request& req, mp_http_response& resp) {
                resp.status = 200;
                resp.body = name + " " + std::string(req.path.data, req.path.len);
            };
            return r;
        };
        CHECK(server.addRoute("/ui/*", named("ui")));
        CHECK(server.addRoute("/ui/api/*", named("api")));
        CHECK(server.addRoute("/ui/health", named("exact")));
        CHECK_FALSE(server.addRoute("/ui/*", named("again")));
        server.start();
        int port = server.port();
        CHECK(request(port, "GET", "/ui/").body == "ui /ui/");
        CHECK(request(port, "GET", "/ui/app.js").body == "ui /ui/app.js");
        CHECK(request(port, "GET", "/ui/img/logo.svg?v=2").body == "ui /ui/img/logo.svg");
        CHECK(request(port, "GET", "/ui/api/templates").body == "api /ui/api/templates");
        CHECK(request(port, "GET", "/ui/health").body == "exact /ui/health");
        CHECK(request(port, "GET", "/ui").status == 404);  // "/ui/*" is what is under /ui/
        CHECK(request(port, "GET", "/other/x").status == 404);
        for (const char* bad : {"/ui/../etc/passwd", "/ui/./x", "/ui//x", "/ui/%2e%2e/x",
                                "/ui/a%2Fb", "/ui/a%5cb", "/ui/a\\b"}) {
            CHECK_MESSAGE(request(port, "GET", bad).status == 400, bad);
        }
        CHECK(request(port, "GET", "/ui/a%20b.txt").body == "ui /ui/a%20b.txt");
        server.stop();
    }

    TEST_CASE("websocket clients of /collector receive each report") {
        Host h;
        Poco::Net::HTTPClientSession s("127.0.0.1", static_cast<Poco::UInt16>(h.port));
        Poco::Net::HTTPRequest req(Poco::Net::HTTPRequest::HTTP_GET, "/collector",
                                   Poco::Net::HTTPMessage::HTTP_1_1);
        Poco::Net::HTTPResponse resp;
        Poco::Net::WebSocket ws(s, req, resp);
        ws.setReceiveTimeout(Poco::Timespan(5, 0));
        auto& metrics = h.rt->metrics();
        REQUIRE(mptest::eventually(
            [&] { return metrics.value("mysqlprobe_sink_websocket_clients") == 1; }));
        h.rt->flushReport(false);
        h.rt->flushReport(false);
        for (int expected = 1; expected <= 2; ++expected) {
            char buf[65536];
            int flags = 0;
            int n = ws.receiveFrame(buf, sizeof buf, flags);
            REQUIRE(n > 0);
            CHECK((flags & Poco::Net::WebSocket::FRAME_OP_BITMASK) ==
                  Poco::Net::WebSocket::FRAME_OP_TEXT);
            auto report = parseJson(std::string(buf, static_cast<size_t>(n)));
            CHECK(report->getValue<int>("version") == 1);
            CHECK(report->getValue<std::string>("node") == "test-node");
            CHECK(report->getValue<int>("seq") == expected);
        }
        // A ping is answered with a pong carrying the same payload.
        ws.sendFrame("hi", 2,
                     static_cast<int>(Poco::Net::WebSocket::FRAME_FLAG_FIN) |
                         static_cast<int>(Poco::Net::WebSocket::FRAME_OP_PING));
        char buf[16];
        int flags = 0;
        int n = ws.receiveFrame(buf, sizeof buf, flags);
        CHECK(n == 2);
        CHECK((flags & Poco::Net::WebSocket::FRAME_OP_BITMASK) ==
              Poco::Net::WebSocket::FRAME_OP_PONG);
        ws.shutdown();
        CHECK(mptest::eventually(
            [&] { return metrics.value("mysqlprobe_sink_websocket_clients") == 0; }));
    }

    TEST_CASE("bad websocket handshakes and plain GETs on a websocket path") {
        Host h;
        CHECK(request(h.port, "GET", "/collector").status == 426);
        std::string noKey =
            "GET /collector HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n";
        CHECK(raw(h.port, noKey).find(" 400 ") != std::string::npos);
        CHECK(request(h.port, "GET", "/health").status == 200);
    }

    TEST_CASE("garbage websocket frames close that client only; the host keeps serving") {
        Host h;
        const std::string upgrade =
            "GET /collector HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
            "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
        const std::vector<std::string> garbage = {
            std::string("\x81\x05hello", 7),             // client frame without a mask
            std::string("\x83\x80\x01\x02\x03\x04", 6),  // reserved opcode 3
            std::string("\x81\xff\x7f\xff\xff\xff\xff\xff\xff\xff\x00\x00\x00\x00",
                        14),                              // 2^63-1 bytes
            std::string("\x80\x81\x00\x00\x00\x00x", 7),  // continuation with no start
            std::string("\xf1\x80\x00\x00\x00\x00", 6),   // reserved bits set
            std::string("\x81\xfe\x00", 3),               // truncated length
        };
        for (const auto& g : garbage) {
            CAPTURE(g.size());
            std::string answer = raw(h.port, upgrade + g);
            CHECK(answer.find(" 101 ") != std::string::npos);
            CHECK(request(h.port, "GET", "/health").status == 200);
        }
        // Still serving websockets: a good client gets a report.
        Poco::Net::HTTPClientSession s("127.0.0.1", static_cast<Poco::UInt16>(h.port));
        Poco::Net::HTTPRequest req(Poco::Net::HTTPRequest::HTTP_GET, "/collector",
                                   Poco::Net::HTTPMessage::HTTP_1_1);
        Poco::Net::HTTPResponse resp;
        Poco::Net::WebSocket ws(s, req, resp);
        ws.setReceiveTimeout(Poco::Timespan(5, 0));
        auto& metrics = h.rt->metrics();
        REQUIRE(mptest::eventually(
            [&] { return metrics.value("mysqlprobe_sink_websocket_clients") == 1; }));
        h.rt->flushReport(false);
        char buf[65536];
        int flags = 0;
        CHECK(ws.receiveFrame(buf, sizeof buf, flags) > 0);
    }

    TEST_CASE("keepalive: pings every 0.9 x ping_timeout_s; a silent client is closed") {
        Host h("{plugin: sink-websocket, config: {ping_timeout_s: 2}}");
        // A client that answers pings stays; one that never reads is closed after 2 s.
        Poco::Net::HTTPClientSession s("127.0.0.1", static_cast<Poco::UInt16>(h.port));
        Poco::Net::HTTPRequest req(Poco::Net::HTTPRequest::HTTP_GET, "/collector",
                                   Poco::Net::HTTPMessage::HTTP_1_1);
        Poco::Net::HTTPResponse resp;
        Poco::Net::WebSocket ws(s, req, resp);
        ws.setReceiveTimeout(Poco::Timespan(3, 0));
        Poco::Net::HTTPClientSession s2("127.0.0.1", static_cast<Poco::UInt16>(h.port));
        Poco::Net::HTTPRequest req2(Poco::Net::HTTPRequest::HTTP_GET, "/collector",
                                    Poco::Net::HTTPMessage::HTTP_1_1);
        Poco::Net::HTTPResponse resp2;
        Poco::Net::WebSocket silent(s2, req2, resp2);
        auto& metrics = h.rt->metrics();
        int pings = 0;
        auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(5000);
        while (std::chrono::steady_clock::now() < until) {
            char buf[256];
            int flags = 0;
            int n = ws.receiveFrame(buf, sizeof buf, flags);
            REQUIRE(n >= 0);
            if ((flags & Poco::Net::WebSocket::FRAME_OP_BITMASK) ==
                Poco::Net::WebSocket::FRAME_OP_PING) {
                ++pings;
                ws.sendFrame(buf, n,
                             static_cast<int>(Poco::Net::WebSocket::FRAME_FLAG_FIN) |
                                 static_cast<int>(Poco::Net::WebSocket::FRAME_OP_PONG));
            }
        }
        CHECK(pings >= 3);                                                           // every 0.9 s
        CHECK(metrics.value("mysqlprobe_http_websocket_ping_timeouts_total") == 1);  // `silent`
        CHECK(metrics.value("mysqlprobe_sink_websocket_clients") == 1);              // `ws` stays
    }

    TEST_CASE("stopping the host sends the final report, then closes websocket clients") {
        Host h;
        Poco::Net::HTTPClientSession s("127.0.0.1", static_cast<Poco::UInt16>(h.port));
        Poco::Net::HTTPRequest req(Poco::Net::HTTPRequest::HTTP_GET, "/collector",
                                   Poco::Net::HTTPMessage::HTTP_1_1);
        Poco::Net::HTTPResponse resp;
        Poco::Net::WebSocket ws(s, req, resp);
        ws.setReceiveTimeout(Poco::Timespan(5, 0));
        REQUIRE(mptest::eventually(
            [&] { return h.rt->metrics().value("mysqlprobe_sink_websocket_clients") == 1; }));
        auto t0 = std::chrono::steady_clock::now();
        h.rt->stop();
        CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(5));
        // The last interval arrives as the final report, then the server closes the socket.
        char buf[65536];
        int flags = 0;
        int n = ws.receiveFrame(buf, sizeof buf, flags);
        REQUIRE(n > 0);
        CHECK((flags & Poco::Net::WebSocket::FRAME_OP_BITMASK) ==
              Poco::Net::WebSocket::FRAME_OP_TEXT);
        CHECK(parseJson(std::string(buf, static_cast<size_t>(n)))->getValue<bool>("final"));
        bool closed = false;
        try {
            n = ws.receiveFrame(buf, sizeof buf, flags);
            closed = n == 0 || (flags & Poco::Net::WebSocket::FRAME_OP_BITMASK) ==
                                   Poco::Net::WebSocket::FRAME_OP_CLOSE;
        } catch (const Poco::Exception&) {
            closed = true;  // the server shut the connection down after its close frame
        }
        CHECK(closed);
    }

    TEST_CASE("a client that pings and never reads owes the server at most 1 MiB of pongs") {
        // A write timeout longer than the test: the pongs owed stay bounded while the client is
        // kept (with the default 1 s, a slow run drops the client before its pings are all sent).
        Host h("{plugin: sink-websocket, config: {write_timeout_ms: 600000}}");
        Poco::Net::StreamSocket sock(
            Poco::Net::SocketAddress("127.0.0.1", static_cast<Poco::UInt16>(h.port)));
        sock.setReceiveBufferSize(4096);  // reads nothing anyway: the pongs stay on the server
        const std::string upgrade =
            "GET /collector HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
            "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
        sock.sendBytes(upgrade.data(), static_cast<int>(upgrade.size()));
        // 300,000 masked pings of 125 bytes (mask 0: the payload as is): 38 MB of pongs owed,
        // more than the kernel buffers of both sides take.
        std::string ping =
            std::string("\x89\xfd", 2) + std::string(4, '\0') + std::string(125, 'p');
        std::string burst;
        for (int i = 0; i < 1000; ++i) {
            burst += ping;
        }
        sock.setSendTimeout(Poco::Timespan(10, 0));
        for (int i = 0; i < 300; ++i) {
            sock.sendBytes(burst.data(), static_cast<int>(burst.size()));
        }
        CHECK(mptest::eventually(
            [&] {
                return h.rt->metrics().value("mysqlprobe_http_websocket_pongs_skipped_total") >
                       100000;
            },
            std::chrono::seconds(10)));
        // Once its input is read, what is held for it is the pongs owed, at most 1 MiB (the
        // input itself is bounded by the endpoint's message size, as for any client).
        CHECK(mptest::eventually([&] { return h.rt->http()->bufferedBytes() < (2u << 20); },
                                 std::chrono::seconds(10)));
        MESSAGE("bytes held for the pinging client: ", h.rt->http()->bufferedBytes());
        CHECK(request(h.port, "GET", "/health").status == 200);  // others are served
    }

    TEST_CASE("pongs owed to a connected client that pings and never reads stay bounded") {
        Loopback lb;
        auto& server = lb.server;
        std::atomic<bool> last{false};  // the text message sent after the pings arrived
        mp_ws_handler h{};
        h.struct_size = sizeof h;
        h.user = &last;
        h.role = MP_ROLE_ANYONE;
        h.max_message_bytes = 4096;  // input held for the client stays small
        h.write_timeout_ms = 60000;  // the client stays connected while it does not read
        h.on_message = [](void* user, mp_ws_conn*, uint32_t, mp_bytes) {
            static_cast<std::atomic<bool>*>(user)->store(true);
        };
        REQUIRE(server.addWebSocket("/ws", h));
        mp::host::RouteSpec ok;
        ok.role = MP_ROLE_ANYONE;
        ok.fn = [](const mp_http_request&, mp_http_response& r) {
            r.status = 200;
            r.body = "ok";
        };
        REQUIRE(server.addRoute("/ok", ok));
        server.start();

        Poco::Net::StreamSocket sock(
            Poco::Net::SocketAddress("127.0.0.1", static_cast<Poco::UInt16>(server.port())));
        const std::string upgrade =
            "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
            "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
        sock.sendBytes(upgrade.data(), static_cast<int>(upgrade.size()));
        std::atomic<bool> sampling{true};
        std::atomic<size_t> peak{0};
        std::thread sampler([&] {
            while (sampling.load()) {
                peak.store(std::max(peak.load(), server.bufferedBytes()));
                std::this_thread::sleep_for(std::chrono::microseconds(200));
            }
        });
        struct Join {  // the sampler ends even when a send throws
            std::atomic<bool>& on;
            std::thread& t;
            ~Join() {
                on.store(false);
                if (t.joinable()) {
                    t.join();
                }
            }
        } join{sampling, sampler};
        // 300,000 masked pings of 125 bytes (mask 0: the payload as is): 38 MB of pongs owed,
        // more than the kernel buffers of both sides take; then one text message.
        const std::string ping =
            std::string("\x89\xfd", 2) + std::string(4, '\0') + std::string(125, 'p');
        std::string burst;
        for (int i = 0; i < 1000; ++i) {
            burst += ping;
        }
        sock.setSendTimeout(Poco::Timespan(10, 0));
        for (int i = 0; i < 300; ++i) {
            sock.sendBytes(burst.data(), static_cast<int>(burst.size()));
        }
        const std::string text = std::string("\x81\x84", 2) + std::string(4, '\0') + "done";
        sock.sendBytes(text.data(), static_cast<int>(text.size()));
        CHECK(mptest::eventually([&] { return last.load(); }, std::chrono::seconds(10)));
        // Another client is served while this one is still connected and still owed pongs.
        CHECK(request(server.port(), "GET", "/ok").status == 200);
        sampling.store(false);
        sampler.join();
        MESSAGE("peak bytes held: ", peak.load());
        CHECK(peak.load() < (1u << 20) + (64u << 10));  // 1 MiB of output, a little input
        CHECK(lb.metrics.value("mysqlprobe_http_websocket_pongs_skipped_total") > 0);
        CHECK(lb.metrics.value("mysqlprobe_http_websocket_write_timeouts_total") == 0);
        sock.close();
        server.stop();
    }

    TEST_CASE("what on_open sends before it refuses is dropped, and its bytes leave the budget") {
        Loopback lb;
        auto& server = lb.server;
        mp_ws_handler h{};
        h.struct_size = sizeof h;
        h.role = MP_ROLE_READ;
        h.on_open = [](void*, mp_ws_conn* conn, const mp_http_request*) -> mp_status {
            static const std::string big(256 * 1024, 'x');
            mp::host::wsSend(conn, MP_WS_TEXT,
                             mp_bytes{reinterpret_cast<const uint8_t*>(big.data()), big.size()});
            return MP_EPERM;  // ... and then refuses
        };
        REQUIRE(server.addWebSocket("/refuse", h));
        server.start();
        const std::string upgrade =
            "GET /refuse HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
            "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
        for (int i = 0; i < 20; ++i) {
            CHECK(raw(server.port(), upgrade).find(" 401 ") != std::string::npos);
        }
        // 20 x 256 KiB were queued by on_open; none of it is held once the refusals are out.
        CHECK(mptest::eventually([&] { return server.bufferedBytes() == 0; },
                                 std::chrono::seconds(5)));
        server.stop();
    }

    TEST_CASE("event streams (MP_WS_SSE): on_open decides, each message an event, ws_close ends") {
        Loopback lb;
        auto& server = lb.server;
        struct State {
            std::atomic<mp_ws_conn*> conn{nullptr};
            std::atomic<int> closed{0};
        } st;
        mp_ws_handler h{};
        h.struct_size = sizeof h;
        h.flags = MP_WS_SSE;
        h.user = &st;
        h.role = MP_ROLE_ANYONE;
        h.ping_interval_ms = 50;
        h.on_open = [](void* user, mp_ws_conn* conn, const mp_http_request*) -> mp_status {
            static const std::string first = "hello\nworld\r\nagain";
            mp::host::wsSend(
                conn, MP_WS_TEXT,
                mp_bytes{reinterpret_cast<const uint8_t*>(first.data()), first.size()});
            static_cast<State*>(user)->conn = conn;
            return MP_OK;
        };
        h.on_close = [](void* user, mp_ws_conn*) { ++static_cast<State*>(user)->closed; };
        REQUIRE(server.addWebSocket("/events", h));
        mp_ws_handler refusing = h;
        refusing.on_open = [](void*, mp_ws_conn*, const mp_http_request*) -> mp_status {
            return MP_EPERM;
        };
        REQUIRE(server.addWebSocket("/events-refused", refusing));
        server.start();
        int port = server.port();
        std::thread later([&] {
            REQUIRE(mptest::eventually([&] { return st.conn.load() != nullptr; }));
            std::this_thread::sleep_for(std::chrono::milliseconds(200));  // a few keepalives
            static const std::string second = "{\"n\":2}";
            mp::host::wsSend(
                st.conn, MP_WS_TEXT,
                mp_bytes{reinterpret_cast<const uint8_t*>(second.data()), second.size()});
            mp::host::wsClose(st.conn, 1000, mp_str{"", 0});
        });
        std::string got =
            raw(port, "GET /events HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n");
        later.join();
        CHECK(got.rfind("HTTP/1.1 200 OK\r\n", 0) == 0);
        CHECK(got.find("Content-Type: text/event-stream\r\n") != std::string::npos);
        std::string events = bodyOf(got);
        CHECK(events.rfind("data: hello\ndata: world\ndata: again\n\n", 0) == 0);
        CHECK(events.find(":\n\n") != std::string::npos);  // keepalive comments
        const std::string last = "data: {\"n\":2}\n\n";    // the last event, then the end
        REQUIRE(events.size() >= last.size());
        CHECK(events.substr(events.size() - last.size()) == last);
        CHECK(mptest::eventually([&] { return st.closed.load() == 1; }));
        // A websocket upgrade or a POST on it is refused.
        const std::string upgrade =
            "GET /events HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
            "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
        CHECK(raw(port, upgrade).find(" 400 ") != std::string::npos);
        CHECK(request(port, "POST", "/events", "x").status == 405);
        // on_open refuses: a plain 401, no stream, and the connection is not left an event stream.
        std::string refused = raw(port, "GET /events-refused HTTP/1.1\r\nHost: x\r\n\r\n");
        CHECK(refused.rfind("HTTP/1.1 401 ", 0) == 0);
        CHECK(refused.find("text/event-stream") == std::string::npos);
        CHECK(mptest::eventually([&] { return server.bufferedBytes() == 0; }));
        server.stop();
    }

    TEST_CASE("named events (MP_WS_SSE_EVENTS, 1.6): the first line of a message is its name") {
        Loopback lb;
        auto& server = lb.server;
        mp_ws_handler h{};
        h.struct_size = sizeof h;
        h.flags = MP_WS_SSE | MP_WS_SSE_EVENTS;
        h.role = MP_ROLE_ANYONE;
        h.on_open = [](void*, mp_ws_conn* conn, const mp_http_request*) -> mp_status {
            for (const std::string m :
                 {"init\n{\"a\":1}", "update\r\nx\ny", "\nnameless", "bare"}) {
                mp::host::wsSend(conn, MP_WS_TEXT,
                                 mp_bytes{reinterpret_cast<const uint8_t*>(m.data()), m.size()});
            }
            mp::host::wsClose(conn, 1000, mp_str{"", 0});
            return MP_OK;
        };
        REQUIRE(server.addWebSocket("/servers", h));
        server.start();
        std::string got = raw(server.port(), "GET /servers HTTP/1.1\r\nHost: x\r\n\r\n");
        CHECK(bodyOf(got) ==
              "event: init\ndata: {\"a\":1}\n\nevent: update\ndata: x\ndata: y\n\n"
              "data: nameless\n\nevent: bare\ndata: \n\n");
        server.stop();
    }
}

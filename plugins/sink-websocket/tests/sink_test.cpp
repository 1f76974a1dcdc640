// SPDX-License-Identifier: Apache-2.0
// sink-websocket against a real node (the mysqlprobe binary replaying a bundled capture) and a
// real websocket client (Poco's): /collector reports add up to the offline report of the same
// file, the mysqlprobe-v1 format decodes with snappy and has the original's fields, a client that
// never reads does not hold the others back, /config/update changes the interval.
#include <Poco/Buffer.h>
#include <Poco/JSON/Array.h>
#include <Poco/Net/HTTPClientSession.h>
#include <Poco/Net/HTTPResponse.h>
#include <Poco/Net/NetException.h>
#include <Poco/Net/WebSocket.h>
#include <doctest/doctest.h>

#include <chrono>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <thread>

#include "encode.hpp"
#include "support/node.hpp"

using namespace std::chrono_literals;
using mptest::Process;
using Poco::JSON::Array;
using Poco::JSON::Object;

namespace {

const std::string kCapture = "pcap/sysbench_text_rw_2t_20tx.pcap";

// A running node; its HTTP port once it logged it.
struct Node {
    std::unique_ptr<Process> proc;
    int port = 0;

    explicit Node(const std::string& yaml) {
        std::string cfg =
            mptest::config("node", "serverport: 0\nserveraddress: 127.0.0.1\n" + yaml);
        proc = std::make_unique<Process>(std::vector<std::string>{mptest::binary(), "-c", cfg});
        REQUIRE(mptest::eventually([&] { return (port = mptest::loggedPort(*proc)) != 0; }));
    }
    ~Node() {
        proc->signal(SIGTERM);
        proc->wait(10s);
    }
    long rssKb() const {
        std::ifstream in("/proc/" + std::to_string(proc->pid()) + "/status");
        std::string line;
        while (std::getline(in, line)) {
            if (line.rfind("VmRSS:", 0) == 0) {
                return std::stol(line.substr(6));
            }
        }
        return 0;
    }
};

// The node logs its port once it serves HTTP, and its plugins start just after: until the sink
// runs, an upgrade of its path gets 503 "not ready" (as any client would, this one tries again).
std::unique_ptr<Poco::Net::WebSocket> connect(int port, Poco::Net::HTTPClientSession& session,
                                              const std::string& path = "/collector") {
    (void)port;
    const auto until = std::chrono::steady_clock::now() + 10s;
    while (true) {
        Poco::Net::HTTPRequest req(Poco::Net::HTTPRequest::HTTP_GET, path,
                                   Poco::Net::HTTPMessage::HTTP_1_1);
        Poco::Net::HTTPResponse resp;
        try {
            auto ws = std::make_unique<Poco::Net::WebSocket>(session, req, resp);
            ws->setReceiveTimeout(Poco::Timespan(10, 0));
            return ws;
        } catch (const Poco::Net::WebSocketException&) {
            if (resp.getStatus() != Poco::Net::HTTPResponse::HTTP_SERVICE_UNAVAILABLE ||
                std::chrono::steady_clock::now() >= until) {
                throw;
            }
        }
        session.reset();
        std::this_thread::sleep_for(50ms);
    }
}

// The next data message (pings are answered, pongs skipped); empty string when none in time.
std::string receive(Poco::Net::WebSocket& ws, int& opcode) {
    Poco::Buffer<char> buf(0);
    while (true) {
        int flags = 0;
        buf.resize(0);
        int n = 0;
        try {
            n = ws.receiveFrame(buf, flags);
        } catch (const Poco::TimeoutException&) {
            return {};
        }
        opcode = flags & Poco::Net::WebSocket::FRAME_OP_BITMASK;
        if (n == 0 && flags == 0) {
            return {};
        }
        if (opcode == Poco::Net::WebSocket::FRAME_OP_PING) {
            ws.sendFrame(buf.begin(), n,
                         static_cast<int>(Poco::Net::WebSocket::FRAME_FLAG_FIN) |
                             static_cast<int>(Poco::Net::WebSocket::FRAME_OP_PONG));
            continue;
        }
        if (opcode == Poco::Net::WebSocket::FRAME_OP_PONG) {
            continue;
        }
        return std::string(buf.begin(), static_cast<size_t>(n));
    }
}

// The offline report of the bundled capture: template id -> count (and by the original's key,
// the MD5 of the fingerprint), and the command totals.
struct Totals {
    std::map<std::string, uint64_t> templates;
    std::map<std::string, uint64_t> byMd5;
    std::map<std::string, uint64_t> commands;
    void add(const Object::Ptr& report) {
        Array::Ptr t = report->getArray("templates");
        for (size_t i = 0; t && i < t->size(); ++i) {
            Object::Ptr o = t->getObject(static_cast<unsigned>(i));
            templates[o->getValue<std::string>("id")] += o->getValue<uint64_t>("count");
            byMd5[mp::ws::md5Hex(o->getValue<std::string>("fingerprint"))] +=
                o->getValue<uint64_t>("count");
        }
        Object::Ptr c = report->getObject("totals")->getObject("commands");
        for (const auto& name : c->getNames()) {
            commands[name] += c->getValue<uint64_t>(name);
        }
    }
};

Totals offline() {
    Process p({mptest::binary(), "-r", mptest::data(kCapture), "--port", "3306"});
    REQUIRE(mptest::run(p) == 0);
    Totals t;
    t.add(mptest::parseJson(p.out()));
    REQUIRE(t.templates.size() == 38);
    return t;
}

std::string fileConfig(const std::string& sinkConfig, const std::string& extra = "") {
    return "interval: 2\nprobe:\n  file: " + mptest::data(kCapture) + "\n" + extra +
           "plugins:\n  cluster: none\n"
           "  decoder: {plugin: decoder-mysql, config: {slow_threshold_ms: 1}}\n"
           "  sinks:\n    - {plugin: sink-websocket, config: {" +
           sinkConfig + "}}\n";
}

}  // namespace

TEST_SUITE("sink-websocket") {
    TEST_CASE("/collector: the reports of a replayed capture add up to its offline report") {
        Totals want = offline();
        for (const char* compression : {"none", "snappy"}) {
            CAPTURE(compression);
            Node node(fileConfig(std::string("compression: ") + compression));
            Poco::Net::HTTPClientSession session("127.0.0.1", static_cast<Poco::UInt16>(node.port));
            auto ws = connect(node.port, session);
            Totals got;
            std::vector<uint64_t> seqs;
            // The file is read at once; its data are in the first report, later ones are empty.
            while (seqs.size() < 3) {
                int op = 0;
                std::string msg = receive(*ws, op);
                REQUIRE(!msg.empty());
                if (std::string(compression) == "snappy") {
                    REQUIRE(op == Poco::Net::WebSocket::FRAME_OP_BINARY);
                    std::string plain;
                    REQUIRE(mp::ws::snappyUncompress(msg, plain, 64 << 20));
                    msg = plain;
                } else {
                    REQUIRE(op == Poco::Net::WebSocket::FRAME_OP_TEXT);
                }
                Object::Ptr r = mptest::parseJson(msg);
                seqs.push_back(r->getValue<uint64_t>("seq"));
                got.add(r);
            }
            CHECK(seqs == std::vector<uint64_t>{1, 2, 3});  // from the first: nothing missed
            CHECK(got.templates == want.templates);
            CHECK(got.commands == want.commands);
        }
    }

    TEST_CASE("mysqlprobe-v1: snappy, binary, the original's short-key fields") {
        Totals want = offline();
        uint64_t wantCount = 0;
        for (const auto& [id, c] : want.templates) {
            wantCount += c;
        }
        Node node(fileConfig("format: mysqlprobe-v1"));
        Poco::Net::HTTPClientSession session("127.0.0.1", static_cast<Poco::UInt16>(node.port));
        auto ws = connect(node.port, session);
        int op = 0;
        std::string msg = receive(*ws, op);
        REQUIRE(!msg.empty());
        CHECK(op == Poco::Net::WebSocket::FRAME_OP_BINARY);
        std::string json;
        REQUIRE(mp::ws::snappyUncompress(msg, json, 64 << 20));
        Object::Ptr r = mptest::parseJson(json);
        REQUIRE(r->has("sbtest"));  // keyed by schema, as the original
        Object::Ptr db = r->getObject("sbtest");
        CHECK(db->getValue<std::string>("a") == "sbtest");
        CHECK(db->getValue<std::string>("b") == "127.0.0.1");
        CHECK(db->getValue<uint64_t>("c") > 0);
        CHECK(db->getValue<int64_t>("f") == 0);
        Array::Ptr d = db->getArray("d");
        REQUIRE(d->size() == 38);
        uint64_t count = 0;
        std::set<std::string> keys;
        for (size_t i = 0; i < d->size(); ++i) {
            Object::Ptr s = d->getObject(static_cast<unsigned>(i));
            count += s->getValue<uint64_t>("c") + s->getValue<uint64_t>("d");
            keys.insert(s->getValue<std::string>("a"));
            CHECK(!s->getValue<std::string>("b").empty());
            for (const char* f : {"e", "f", "g", "h", "i", "j", "k", "l", "m", "n", "o"}) {
                CHECK_MESSAGE(s->has(f), f);
            }
            CHECK(s->getValue<double>("m") <= s->getValue<double>("o"));
            CHECK(s->getValue<double>("o") <= s->getValue<double>("n"));
            // The original's key: the MD5 of the template text, as its consumers check it.
            CHECK(s->getValue<std::string>("a") == mp::ws::md5Hex(s->getValue<std::string>("b")));
            CHECK(want.byMd5.count(s->getValue<std::string>("a")) == 1);
        }
        CHECK(count == wantCount);
        CHECK(keys.size() == 38);
        // Per client: the same counts, and the slow queries (over 1 ms) with their raw SQL.
        Array::Ptr e = db->getArray("e");
        REQUIRE(e->size() == 1);
        CHECK(e->getObject(0)->getValue<std::string>("a") == "127.0.0.1");
        Array::Ptr perClient = e->getObject(0)->getArray("b");
        uint64_t clientCount = 0;
        size_t slow = 0;
        for (size_t i = 0; i < perClient->size(); ++i) {
            Object::Ptr s = perClient->getObject(static_cast<unsigned>(i));
            clientCount += s->getValue<uint64_t>("c") + s->getValue<uint64_t>("d");
            Array::Ptr p = s->getArray("p");
            for (size_t k = 0; p && k < p->size(); ++k) {
                Object::Ptr m = p->getObject(static_cast<unsigned>(k));
                CHECK(m->getValue<double>("k") > 1.0);
                CHECK(!m->getValue<std::string>("c").empty());
                CHECK(m->getValue<std::string>("n") == "127.0.0.1");
                CHECK(m->getValue<uint64_t>("j") > m->getValue<uint64_t>("i"));
                ++slow;
            }
        }
        CHECK(clientCount == wantCount);
        CHECK(slow > 0);
        // Intervals without traffic send nothing, as the original (2 of them in 5 s).
        ws->setReceiveTimeout(Poco::Timespan(5, 0));
        CHECK(receive(*ws, op).empty());
    }

    TEST_CASE("a client asks for its format: ?format= and ?compression=; api: original") {
        auto first = [](int port, const std::string& path, int& op) {
            Poco::Net::HTTPClientSession session("127.0.0.1", static_cast<Poco::UInt16>(port));
            auto ws = connect(port, session, path);
            return receive(*ws, op);
        };
        int op = 0;
        {
            Node node(fileConfig("format: native"));
            std::string v1 = first(node.port, "/collector?format=mysqlprobe-v1", op);
            CHECK(op == Poco::Net::WebSocket::FRAME_OP_BINARY);
            std::string json;
            REQUIRE(mp::ws::snappyUncompress(v1, json, 64 << 20));
            CHECK(mptest::parseJson(json)->has("sbtest"));
            std::string z = first(node.port, "/collector?compression=snappy", op);
            CHECK(op == Poco::Net::WebSocket::FRAME_OP_BINARY);
            REQUIRE(mp::ws::snappyUncompress(z, json, 64 << 20));
            CHECK(mptest::parseJson(json)->has("templates"));
            Poco::Net::HTTPClientSession session("127.0.0.1", static_cast<Poco::UInt16>(node.port));
            CHECK_THROWS_AS(connect(node.port, session, "/collector?format=xml"),
                            Poco::Net::WebSocketException);
        }
        {
            // What the host gives a file with only the original's keys: the original's format
            // by default, native JSON on request.
            Node node(fileConfig("api: original"));
            std::string v1 = first(node.port, "/collector", op);
            CHECK(op == Poco::Net::WebSocket::FRAME_OP_BINARY);
            std::string json;
            REQUIRE(mp::ws::snappyUncompress(v1, json, 64 << 20));
            CHECK(mptest::parseJson(json)->has("sbtest"));
            std::string native = first(node.port, "/collector?format=native", op);
            CHECK(op == Poco::Net::WebSocket::FRAME_OP_TEXT);
            CHECK(mptest::parseJson(native)->has("templates"));
        }
    }

    TEST_CASE("a client that never reads does not hold back another; memory stays bounded") {
        Node node(fileConfig("queue_reports: 4, write_timeout_ms: 500", "  loop: true\n"));
        std::string body;
        REQUIRE(mptest::httpGet(node.port, "/config/update?report_period_ms=100", body, "POST") ==
                200);
        // The stalled client: a small receive buffer, and it never reads.
        Poco::Net::HTTPClientSession stalledSession("127.0.0.1",
                                                    static_cast<Poco::UInt16>(node.port));
        auto stalled = connect(node.port, stalledSession);
        stalled->setReceiveBufferSize(4096);
        Poco::Net::HTTPClientSession session("127.0.0.1", static_cast<Poco::UInt16>(node.port));
        auto ws = connect(node.port, session);
        std::vector<uint64_t> seqs;
        long maxRss = 0;
        auto until = std::chrono::steady_clock::now() + 8s;
        while (std::chrono::steady_clock::now() < until) {
            int op = 0;
            std::string msg = receive(*ws, op);
            REQUIRE(!msg.empty());
            seqs.push_back(mptest::parseJson(msg)->getValue<uint64_t>("seq"));
            maxRss = std::max(maxRss, node.rssKb());
        }
        MESSAGE("reader got " << seqs.size() << " reports in 8 s; node peak RSS " << maxRss
                              << " kB");
        CHECK(seqs.size() >= 40);  // 10 per second asked: the stalled client holds nothing back
        for (size_t i = 1; i < seqs.size(); ++i) {
            CHECK(seqs[i] == seqs[i - 1] + 1);  // no report skipped for the reader
        }
#if defined(MP_TEST_SANITIZED)
        const long boundKb = 600 * 1024;  // ASan's quarantine keeps up to 256 MB of freed memory
#else
        const long boundKb = 200 * 1024;
#endif
        CHECK(maxRss < boundKb);
        REQUIRE(mptest::httpGet(node.port, "/metrics", body) == 200);
        // The stalled client lost reports (its queue of 4) or was dropped by the write timeout.
        auto counter = [&](const std::string& name) {
            size_t at = body.find("\n" + name + " ");
            return at == std::string::npos ? -1L : std::stol(body.substr(at + name.size() + 2));
        };
        long dropped = counter("mysqlprobe_http_websocket_dropped_messages_total");
        long timeouts = counter("mysqlprobe_http_websocket_write_timeouts_total");
        MESSAGE("stalled client: " << dropped << " reports dropped, " << timeouts
                                   << " write timeouts");
        CHECK(dropped + timeouts > 0);
        // Its writes stall (4 KiB of receive buffer, reports of tens of KiB): the write timeout
        // closes it, and that is counted as such.
        CHECK(timeouts >= 1);
    }

    TEST_CASE("/config/update: checked keys and values; the interval changes at once") {
        Node node(fileConfig("", "  loop: true\n"));
        std::string body;
        for (const char* bad :
             {"/config/update", "/config/update?nosuchkey=5", "/config/update?report_period_ms=abc",
              "/config/update?report_period_ms=5", "/config/update?interval=999999999",
              "/config/update?report_period_ms=", "/config/update?interval=1&report_period_ms=300",
              "/config/update?report_period_ms=%zz"}) {
            CAPTURE(bad);
            CHECK(mptest::httpGet(node.port, bad, body, "POST") == 400);
            CHECK(mptest::parseJson(body)->has("error"));
        }
        // A change of state: POST only.
        CHECK(mptest::httpGet(node.port, "/config/update?report_period_ms=100", body, "DELETE") ==
              405);
        CHECK(mptest::httpGet(node.port, "/config/update?report_period_ms=100", body) == 405);
        REQUIRE(mptest::httpGet(node.port, "/config/update?report_period_ms=300", body, "POST") ==
                200);
        CHECK(mptest::parseJson(body)->getValue<uint64_t>("interval_ms") == 300);
        Poco::Net::HTTPClientSession session("127.0.0.1", static_cast<Poco::UInt16>(node.port));
        auto ws = connect(node.port, session);
        for (int i = 0; i < 3; ++i) {
            int op = 0;
            std::string msg = receive(*ws, op);
            REQUIRE(!msg.empty());
            Object::Ptr iv = mptest::parseJson(msg)->getObject("interval");
            double ms = static_cast<double>(iv->getValue<uint64_t>("end_ns") -
                                            iv->getValue<uint64_t>("start_ns")) /
                        1e6;
            if (i > 0) {  // the first may span the change
                CHECK(ms == doctest::Approx(300).epsilon(0.5));
            }
        }
        REQUIRE(mptest::httpGet(node.port, "/health", body) == 200);
        CHECK(mptest::parseJson(body)->getValue<uint64_t>("interval_ms") == 300);
    }

    TEST_CASE("bad sink settings are refused at start with the reason") {
        for (const auto& cw : std::vector<std::pair<std::string, std::string>>{
                 {"pusher_servers: 'nohostport'", "pusher server must be host:port"},
                 {"pusher_servers: 'h:99999'", "with a port 1..65535"},
                 {"path: 'nopath'", "path must start with '/'"},
                 {"format: 'xml'", "format"}}) {
            const std::string& cfg = cw.first;  // plain variables: CAPTURE takes them
            const std::string& why = cw.second;
            CAPTURE(cfg);
            std::string path = mptest::config(
                "bad", "serverport: 0\nserveraddress: 127.0.0.1\n" + fileConfig(cfg));
            Process p({mptest::binary(), "-c", path});
            CHECK(mptest::run(p) == 2);
            CHECK(p.err().find(why) != std::string::npos);
        }
    }
}

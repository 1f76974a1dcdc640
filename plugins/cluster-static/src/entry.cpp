// SPDX-License-Identifier: Apache-2.0
// cluster-static: a master gathers its slaves' reports; the topology is managed by hand.
//
// Slave (`slave: true`): forwards its reports to its sinks, keeps the last `history` of them,
// and serves them on the websocket /cluster/stream (?since=SEQ&started=NS replays what a master
// missed). Master: /cluster/join, /cluster/remove, /cluster/leave, /cluster/listnodes; one
// puller thread per slave reads its /cluster/stream; at each of its own intervals the master
// merges what arrived into its own report (mp/report.hpp: counts add, sketches merge exactly)
// and says which slave reports are in it and which slaves sent nothing. The topology is saved
// to a state file on every change (atomic rename), so a restarted master dials its slaves again.
#include <Poco/Buffer.h>
#include <Poco/Net/HTTPClientSession.h>
#include <Poco/Net/HTTPRequest.h>
#include <Poco/Net/HTTPResponse.h>
#include <Poco/Net/IPAddress.h>
#include <Poco/Net/NetException.h>
#include <Poco/Net/WebSocket.h>
#include <unistd.h>

#include <atomic>
#include <charconv>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <fstream>
#include <map>
#include <memory>
#include <mp/pusher.hpp>
#include <mp/report_merge.hpp>
#include <mp/sdk.hpp>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>
#include <vector>

namespace {

// clang-format off
const mp_property kProps[] = {
    {"slave", MP_PROP_BOOL, 0, "false", "this node is a slave (reports to a master)", 0, 0, nullptr},
    {"group", MP_PROP_STRING, 0, "", "cluster name (a label in static mode)", 0, 0, nullptr},
    {"port", MP_PROP_INT, 0, "0", "unused in static mode (gossip port)", 0, 65535, nullptr},
    {"state_file", MP_PROP_STRING, 0, "", "where a master saves its slaves (default: cluster-state.txt next to the config file)", 0, 0, nullptr},
    {"reconnect_period_s", MP_PROP_INT, 0, "10", "how often a master redials a lost slave", 1, 86400, nullptr},
    {"history", MP_PROP_INT, 0, "60", "reports a slave keeps for a master that was away", 1, 100000, nullptr},
    {"max_templates", MP_PROP_INT, 0, "10000", "templates in a master's merged report; further ones are counted as evicted", 1, 10000000, nullptr},
    {nullptr, 0, 0, nullptr, nullptr, 0, 0, nullptr},
};
// clang-format on

using Clock = std::chrono::steady_clock;

uint64_t wallNs() {
    return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                     std::chrono::system_clock::now().time_since_epoch())
                                     .count());
}

// "host:port" with a numeric port 1..65535 and a host of letters, digits, '.', '-' (IPv6 in
// brackets); false otherwise.
bool parseAddr(const std::string& addr, std::string& host, uint16_t& port) {
    size_t colon = addr.rfind(':');
    if (colon == std::string::npos || colon == 0 || addr.size() > 300) {
        return false;
    }
    host = addr.substr(0, colon);
    if (host.front() == '[' && host.back() == ']') {
        host = host.substr(1, host.size() - 2);
    }
    for (char c : host) {
        if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == ':')) {
            return false;
        }
    }
    unsigned p = 0;
    const char* b = addr.data() + colon + 1;
    const char* e = addr.data() + addr.size();
    auto [end, ec] = std::from_chars(b, e, p);
    if (host.empty() || ec != std::errc() || end != e || p == 0 || p > 65535) {
        return false;
    }
    port = static_cast<uint16_t>(p);
    return true;
}

std::string errorJson(const std::string& why) { return "{\"error\":" + mp::jsonString(why) + "}"; }

class StaticCluster;

// A master's view of one slave, and the thread that reads its stream.
struct Slave {
    std::string addr;
    std::string host;
    uint16_t port = 0;
    std::atomic<bool> stop{false};
    std::thread thread;
    // Guarded by the cluster's mutex:
    bool up = false;
    std::string node;
    uint64_t started = 0;
    uint64_t lastSeq = 0;
    uint64_t lastReportWall = 0;  // when the last report arrived (ns since the epoch)
    uint64_t lastIntervalEnd = 0;
    uint64_t received = 0;
    uint64_t duplicates = 0;
    uint64_t missed = 0;  // master intervals without a report from it
    bool contributed = false;
};

class StaticCluster : public mp::Plugin {
  public:
    StaticCluster(mp::Host host, const mp::Config& cfg)
        : Plugin(host),
          slave_(cfg.boolean("slave")),
          peerAuthorization_(host.get("auth.peer_authorization").value_or("")),
          tls_{host.get("tls.ca_file").has_value(), host.get("tls.ca_file").value_or("")},
          reconnect_(std::chrono::seconds(cfg.i64("reconnect_period_s"))),
          history_(static_cast<size_t>(cfg.i64("history"))),
          maxTemplates_(static_cast<size_t>(cfg.i64("max_templates"))),
          merged_(host.counter("slave_reports_merged_total",
                               "slave reports merged into this master's reports")),
          rejected_(host.counter("slave_reports_rejected_total",
                                 "slave reports that were not valid reports (skipped)")),
          duplicates_(host.counter("slave_reports_duplicate_total",
                                   "slave reports received twice (dropped by node, run, seq)")),
          slavesUp_(host.counter("slaves_up", "slaves whose stream is connected", MP_GAUGE)) {
        stateFile_ = cfg.str("state_file");
        if (stateFile_.empty()) {
            std::string conf = host.get("config.file").value_or("");
            size_t slash = conf.rfind('/');
            stateFile_ = (slash == std::string::npos ? std::string(".") : conf.substr(0, slash)) +
                         "/cluster-state.txt";
        }
        if (slave_) {
            mp_ws_handler h{};
            h.struct_size = sizeof h;
            h.user = this;
            h.on_open = [](void* self, mp_ws_conn* c, const mp_http_request* r) -> mp_status {
                return static_cast<StaticCluster*>(self)->streamOpen(c, r);
            };
            h.on_close = [](void* self, mp_ws_conn* c) {
                static_cast<StaticCluster*>(self)->streamClose(c);
            };
            h.queue_messages = static_cast<uint32_t>(history_ + 64);
            h.role = MP_ROLE_PEER;  // a master pulls with the cluster's token
            if (host.api()->ws_endpoint(host.raw(), "/cluster/stream", &h) != MP_OK) {
                throw mp::Error("cannot serve /cluster/stream");
            }
        } else {
            addRoute("/cluster/join", &StaticCluster::join, MP_ROLE_ADMIN, MP_HTTP_POST);
            addRoute("/cluster/remove", &StaticCluster::remove, MP_ROLE_ADMIN, MP_HTTP_POST);
            addRoute("/cluster/leave", &StaticCluster::leave, MP_ROLE_ADMIN, MP_HTTP_POST);
        }
        addRoute("/cluster/listnodes", &StaticCluster::listNodes, MP_ROLE_READ, MP_HTTP_GET);
    }

    ~StaticCluster() override { stopPullers(); }

    void start() override {
        host().info(slave_ ? "role: slave (serving /cluster/stream)" : "role: master");
        if (!slave_) {
            loadState();
        }
    }

    void stop() override { stopPullers(); }

    mp_status onEvent(const mp_event& ev) override {
        if (ev.type != MP_EVENT_REPORT) {
            return MP_OK;
        }
        std::string json(mp::view(ev.payload));
        if (slave_) {
            slaveReport(json, ev.seq);
            return host().emit(MP_EVENT_REPORT, json, ev.ts_ns, ev.seq);
        }
        return host().emit(MP_EVENT_REPORT, masterReport(json), ev.ts_ns, ev.seq);
    }

  private:
    using Handler = void (StaticCluster::*)(const mp_http_request*, mp_http_response*);

    // The host checks the caller's role and the method before the handler runs.
    void addRoute(const char* path, Handler h, uint32_t role, uint32_t methods) {
        routes_[path] = h;
        bool ok = host().route(
            path,
            [](void* self, const mp_http_request* req, mp_http_response* resp) {
                auto* me = static_cast<StaticCluster*>(self);
                std::string p(mp::view(req->path));
                me->dispatch(p, req, resp);
            },
            this, role, methods);
        if (!ok) {
            throw mp::Error(std::string("cannot serve ") + path);
        }
    }

    void dispatch(const std::string& path, const mp_http_request* req, mp_http_response* resp) {
        auto it = routes_.find(path);
        if (it == routes_.end()) {
            host().replyJson(resp, 404, errorJson("no such path: " + path));
            return;
        }
        (this->*(it->second))(req, resp);
    }

    // ---- slave -----------------------------------------------------------------------------

    void slaveReport(const std::string& json, uint64_t seq) {
        std::lock_guard<std::mutex> lock(mutex_);
        if (started_ == 0) {
            mp::cluster::Identity id;
            if (mp::cluster::reportIdentity(json, id)) {
                started_ = id.started;
            }
        }
        history_list_.push_back({seq, json});
        while (history_list_.size() > history_) {
            history_list_.pop_front();
        }
        for (mp_ws_conn* c : streams_) {
            send(c, json);
        }
    }

    void send(mp_ws_conn* c, const std::string& json) {
        host().api()->ws_send(c, MP_WS_TEXT,
                              mp_bytes{reinterpret_cast<const uint8_t*>(json.data()), json.size()});
    }

    mp_status streamOpen(mp_ws_conn* c, const mp_http_request* req) {
        uint64_t since = 0;
        uint64_t started = 0;
        if (auto s = host().param(req, "since")) {
            std::from_chars(s->data(), s->data() + s->size(), since);
        }
        if (auto s = host().param(req, "started")) {
            std::from_chars(s->data(), s->data() + s->size(), started);
        }
        std::lock_guard<std::mutex> lock(mutex_);
        // The master knew this run: what it has not seen. Another run (or none): everything.
        bool sameRun = started != 0 && started == started_;
        for (const auto& [seq, json] : history_list_) {
            if (!sameRun || seq > since) {
                send(c, json);
            }
        }
        streams_.insert(c);
        master_ = std::string(mp::view(req->remote_addr));
        return MP_OK;
    }

    void streamClose(mp_ws_conn* c) {
        std::lock_guard<std::mutex> lock(mutex_);
        streams_.erase(c);
    }

    // ---- master: topology ------------------------------------------------------------------

    void join(const mp_http_request* req, mp_http_response* resp) {
        std::string addr = host().param(req, "addr").value_or("");
        std::string h;
        uint16_t port = 0;
        if (!parseAddr(addr, h, port)) {
            host().replyJson(resp, 400, errorJson("addr must be HOST:PORT (the slave's server)"));
            return;
        }
        // An address that is nobody's (0.0.0.0, ::, multicast) names no slave; this node's own
        // server is no slave of itself.
        Poco::Net::IPAddress ip;
        if (Poco::Net::IPAddress::tryParse(h, ip) &&
            (ip.isWildcard() || ip.isMulticast() || ip.isBroadcast())) {
            host().replyJson(resp, 400, errorJson("addr " + addr + " is nobody's address"));
            return;
        }
        if (addr == host().get("server.address").value_or("") + ":" +
                        host().get("server.port").value_or("")) {
            host().replyJson(resp, 409, errorJson("addr " + addr + " is this node"));
            return;
        }
        {
            std::lock_guard<std::mutex> lock(mutex_);
            if (slaves_.count(addr) != 0) {
                host().replyJson(resp, 409, errorJson("already a slave: " + addr));
                return;
            }
        }
        // Reachable and a slave: its /cluster/stream answers the upgrade.
        std::string why;
        if (!probe(h, port, why)) {
            host().replyJson(resp, 409, errorJson("cannot add " + addr + ": " + why));
            return;
        }
        {
            std::lock_guard<std::mutex> lock(mutex_);
            if (slaves_.count(addr) != 0) {
                host().replyJson(resp, 409, errorJson("already a slave: " + addr));
                return;
            }
            addSlave(addr, h, port);
            saveState();
        }
        host().info("slave joined: " + addr);
        host().replyJson(resp, 200, "{\"joined\":" + mp::jsonString(addr) + "}");
    }

    void remove(const mp_http_request* req, mp_http_response* resp) {
        std::string addr = host().param(req, "addr").value_or("");
        std::string h;
        uint16_t port = 0;
        if (!parseAddr(addr, h, port)) {
            host().replyJson(resp, 400, errorJson("addr must be HOST:PORT"));
            return;
        }
        std::unique_ptr<Slave> gone;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            auto it = slaves_.find(addr);
            if (it == slaves_.end()) {
                host().replyJson(resp, 404, errorJson("not a slave: " + addr));
                return;
            }
            gone = std::move(it->second);
            slaves_.erase(it);
            saveState();
        }
        stopSlave(*gone);
        host().info("slave removed: " + addr);
        host().replyJson(resp, 200, "{\"removed\":" + mp::jsonString(addr) + "}");
    }

    void leave(const mp_http_request*, mp_http_response* resp) {
        std::map<std::string, std::unique_ptr<Slave>> all;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            all.swap(slaves_);
            saveState();
        }
        for (auto& [a, s] : all) {
            stopSlave(*s);
        }
        host().info("left: " + std::to_string(all.size()) + " slave(s) dropped");
        host().replyJson(resp, 200, "{\"removed\":" + std::to_string(all.size()) + "}");
    }

    void listNodes(const mp_http_request*, mp_http_response* resp) {
        std::string self = host().get("server.address").value_or("") + ":" +
                           host().get("server.port").value_or("");
        std::ostringstream out;
        out << "{\"mode\":\"static\",\"self\":{\"node\":"
            << mp::jsonString(host().get("node.name").value_or(""))
            << ",\"addr\":" << mp::jsonString(self) << ",\"role\":\""
            << (slave_ ? "slave" : "master") << "\"}";
        std::lock_guard<std::mutex> lock(mutex_);
        if (slave_) {
            out << ",\"master\":" << (master_.empty() ? "null" : mp::jsonString(master_))
                << ",\"nodes\":[]}";
        } else {
            out << ",\"nodes\":[";
            bool first = true;
            uint64_t now = wallNs();
            for (const auto& [addr, s] : slaves_) {
                out << (first ? "" : ",") << "{\"addr\":" << mp::jsonString(addr)
                    << ",\"role\":\"slave\",\"state\":\"" << (s->up ? "up" : "down")
                    << "\",\"node\":" << mp::jsonString(s->node) << ",\"started_ns\":" << s->started
                    << ",\"last_seq\":" << s->lastSeq << ",\"last_report_ns\":" << s->lastReportWall
                    << ",\"lag_ms\":"
                    << (s->lastIntervalEnd != 0 && now > s->lastIntervalEnd
                            ? (now - s->lastIntervalEnd) / 1000000
                            : 0)
                    << ",\"reports_received\":" << s->received
                    << ",\"duplicates\":" << s->duplicates << ",\"intervals_missed\":" << s->missed
                    << "}";
                first = false;
            }
            out << "]}";
        }
        host().replyJson(resp, 200, out.str());
    }

    // Mutex held.
    void addSlave(const std::string& addr, const std::string& h, uint16_t port) {
        auto s = std::make_unique<Slave>();
        s->addr = addr;
        s->host = h;
        s->port = port;
        if (auto p = progress_.find(addr); p != progress_.end()) {
            s->started = p->second.first;
            s->lastSeq = p->second.second;
        }
        Slave* raw = s.get();
        slaves_[addr] = std::move(s);
        raw->thread = std::thread([this, raw] { pull(*raw); });
    }

    void stopSlave(Slave& s) {
        s.stop = true;
        wake_.notify_all();
        if (s.thread.joinable()) {
            s.thread.join();
        }
    }

    void stopPullers() {
        std::map<std::string, std::unique_ptr<Slave>> all;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            all.swap(slaves_);  // the state file keeps them: a restart dials them again
            for (auto& [a, s] : all) {
                s->stop = true;
            }
        }
        wake_.notify_all();
        for (auto& [a, s] : all) {
            if (s->thread.joinable()) {
                s->thread.join();
            }
        }
    }

    // The slave's /cluster/stream, opened (and closed) once: is it there, and a slave?
    bool probe(const std::string& h, uint16_t port, std::string& why) {
        try {
            auto session = mp::ws::openHttpSession("", h, port, std::chrono::seconds(2),
                                                   std::chrono::seconds(2), tls_);
            Poco::Net::HTTPRequest req = streamRequest(h, port, 0, 0);
            Poco::Net::HTTPResponse resp;
            Poco::Net::WebSocket ws(*session, req, resp);
            ws.shutdown();
            return true;
        } catch (const Poco::Net::WebSocketException& e) {
            why = "not a slave or refused (" + std::string(e.displayText()) + ")";
        } catch (const std::exception& e) {
            why = std::string("unreachable (") + e.what() + ")";
        }
        return false;
    }

    std::string streamUri(uint64_t since, uint64_t started) const {
        return "/cluster/stream?since=" + std::to_string(since) +
               "&started=" + std::to_string(started);
    }

    // The request that opens a slave's stream; it carries this node's cluster token in the
    // Authorization header (never in the URL).
    Poco::Net::HTTPRequest streamRequest(const std::string& h, uint16_t port, uint64_t since,
                                         uint64_t started) const {
        Poco::Net::HTTPRequest req(Poco::Net::HTTPRequest::HTTP_GET, streamUri(since, started),
                                   Poco::Net::HTTPMessage::HTTP_1_1);
        req.setHost(h, port);
        if (!peerAuthorization_.empty()) {
            req.set("Authorization", peerAuthorization_);
        }
        return req;
    }

    // One slave's puller: dial, read reports, redial every reconnect period when lost.
    void pull(Slave& s) {
        while (!s.stop) {
            uint64_t since = 0;
            uint64_t started = 0;
            {
                std::lock_guard<std::mutex> lock(mutex_);
                since = s.lastSeq;
                started = s.started;
            }
            try {
                auto session = mp::ws::openHttpSession("", s.host, s.port, std::chrono::seconds(2),
                                                       std::chrono::seconds(2), tls_);
                Poco::Net::HTTPRequest req = streamRequest(s.host, s.port, since, started);
                Poco::Net::HTTPResponse resp;
                Poco::Net::WebSocket ws(*session, req, resp);
                ws.setReceiveTimeout(Poco::Timespan(0, 300000));
                ws.setMaxPayloadSize(64 << 20);
                setUp(s, true);
                Poco::Buffer<char> buf(0);
                std::string message;
                while (!s.stop) {
                    int flags = 0;
                    buf.resize(0);
                    int n = 0;
                    try {
                        n = ws.receiveFrame(buf, flags);
                    } catch (const Poco::TimeoutException&) {
                        continue;
                    }
                    int op = flags & Poco::Net::WebSocket::FRAME_OP_BITMASK;
                    if ((n == 0 && flags == 0) || op == Poco::Net::WebSocket::FRAME_OP_CLOSE) {
                        break;
                    }
                    if (op == Poco::Net::WebSocket::FRAME_OP_PING) {
                        ws.sendFrame(buf.begin(), n,
                                     static_cast<int>(Poco::Net::WebSocket::FRAME_FLAG_FIN) |
                                         static_cast<int>(Poco::Net::WebSocket::FRAME_OP_PONG));
                        continue;
                    }
                    if (op == Poco::Net::WebSocket::FRAME_OP_TEXT ||
                        op == Poco::Net::WebSocket::FRAME_OP_CONT) {
                        message.append(buf.begin(), static_cast<size_t>(n));
                        if ((flags & Poco::Net::WebSocket::FRAME_FLAG_FIN) != 0) {
                            received(s, std::move(message));
                            message.clear();
                        }
                    }
                }
            } catch (const std::exception& e) {
                host().debug("slave " + s.addr + ": " + e.what());
            }
            setUp(s, false);
            std::unique_lock<std::mutex> lock(mutex_);
            wake_.wait_for(lock, reconnect_, [&] { return s.stop.load(); });
        }
    }

    void setUp(Slave& s, bool up) {
        std::lock_guard<std::mutex> lock(mutex_);
        if (s.up != up) {
            host().info("slave " + s.addr + (up ? " up" : " down"));
        }
        s.up = up;
        int64_t n = 0;
        for (const auto& [a, x] : slaves_) {
            n += x->up ? 1 : 0;
        }
        slavesUp_.set(n);
    }

    void received(Slave& s, std::string json) {
        mp::cluster::Identity id;
        if (!mp::cluster::reportIdentity(json, id)) {
            rejected_.add();
            return;
        }
        std::lock_guard<std::mutex> lock(mutex_);
        if (id.started != s.started || (!s.node.empty() && id.node != s.node)) {
            s.started = id.started;  // a new run of the slave: its seq starts again
            s.node = id.node;
            s.lastSeq = 0;
        }
        if (id.seq <= s.lastSeq) {
            ++s.duplicates;
            duplicates_.add();
            return;
        }
        s.lastSeq = id.seq;
        progress_[s.addr] = {s.started, s.lastSeq};
        ++s.received;
        s.lastReportWall = wallNs();
        s.lastIntervalEnd = id.intervalEnd;
        s.contributed = true;
        inbox_.push_back(
            mp::cluster::Incoming{s.addr, id.node, id.started, id.seq, std::move(json)});
    }

    std::string masterReport(const std::string& own) {
        std::vector<mp::cluster::Incoming> in;
        std::vector<std::string> missing;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            in.swap(inbox_);
            for (auto& [addr, s] : slaves_) {
                if (!s->contributed) {
                    missing.push_back(addr);
                    ++s->missed;
                }
                s->contributed = false;
            }
            if (!in.empty()) {
                saveState();  // the progress moved
            }
        }
        try {
            mp::cluster::MergeResult r = mp::cluster::mergeReports(own, in, missing, maxTemplates_);
            merged_.add(static_cast<int64_t>(r.merged));
            rejected_.add(static_cast<int64_t>(r.rejected));
            return r.json;
        } catch (const std::exception& e) {
            host().warn(std::string("merge failed, own report sent alone: ") + e.what());
            return own;
        }
    }

    // ---- state file ------------------------------------------------------------------------
    // "slave HOST:PORT" per slave, "seen HOST:PORT STARTED_NS SEQ" per address merged from.

    void saveState() {  // mutex held
        std::string tmp = stateFile_ + ".tmp";
        {
            std::ofstream out(tmp, std::ios::trunc);
            out << "# mysqlprobe cluster-static master state (rewritten on every change)\n";
            for (const auto& [addr, s] : slaves_) {
                out << "slave " << addr << "\n";
            }
            for (const auto& [addr, p] : progress_) {
                out << "seen " << addr << " " << p.first << " " << p.second << "\n";
            }
            out.flush();
            if (!out) {
                host().warn("cannot write the state file " + tmp);
                return;
            }
        }
        if (std::rename(tmp.c_str(), stateFile_.c_str()) != 0) {
            host().warn("cannot replace the state file " + stateFile_);
        }
    }

    void loadState() {
        std::ifstream in(stateFile_);
        if (!in) {
            return;
        }
        std::string line;
        std::vector<std::string> addrs;
        std::lock_guard<std::mutex> lock(mutex_);
        for (size_t lines = 0; std::getline(in, line) && lines < 1000000; ++lines) {
            if (line.empty() || line[0] == '#') {
                continue;
            }
            std::istringstream fields(line);
            std::string kind;
            std::string addr;
            fields >> kind >> addr;
            std::string h;
            uint16_t port = 0;
            uint64_t started = 0;
            uint64_t seq = 0;
            if (kind == "slave" && parseAddr(addr, h, port)) {
                addrs.push_back(addr);
            } else if (kind == "seen" && parseAddr(addr, h, port) && (fields >> started >> seq)) {
                progress_[addr] = {started, seq};
            } else {
                host().warn("state file " + stateFile_ + ": skipped '" + line.substr(0, 200) + "'");
            }
        }
        for (const auto& addr : addrs) {
            std::string h;
            uint16_t port = 0;
            if (slaves_.count(addr) == 0 && parseAddr(addr, h, port)) {
                addSlave(addr, h, port);
            }
        }
        host().info("state file " + stateFile_ + ": " + std::to_string(slaves_.size()) +
                    " slave(s)");
    }

    bool slave_;
    std::string peerAuthorization_;  // "Bearer ..." of auth.cluster_token (a secret)
    mp::ws::TlsClient tls_;          // tls.ca_file set: slaves are dialled with TLS
    std::chrono::seconds reconnect_;
    size_t history_;
    size_t maxTemplates_;
    std::string stateFile_;
    std::map<std::string, Handler> routes_;
    std::mutex mutex_;
    std::condition_variable wake_;
    // slave
    uint64_t started_ = 0;
    std::deque<std::pair<uint64_t, std::string>> history_list_;
    std::set<mp_ws_conn*> streams_;
    std::string master_;
    // master
    std::map<std::string, std::unique_ptr<Slave>> slaves_;
    // What this master has merged of each address (run, last seq), kept across remove/join and
    // restarts (state file), so that a slave's replay never counts a report twice.
    std::map<std::string, std::pair<uint64_t, uint64_t>> progress_;
    std::vector<mp::cluster::Incoming> inbox_;
    mp::Counter merged_;
    mp::Counter rejected_;
    mp::Counter duplicates_;
    mp::Counter slavesUp_;
};

}  // namespace

MP_DECLARE_PLUGIN(StaticCluster, MP_KIND_CLUSTER, "cluster-static", "0.1.0",
                  "Static cluster: masters pull their slaves' reports; topology by hand", kProps, 0)

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
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <fstream>
#include <map>
#include <memory>
#include <mp/clock.hpp>
#include <mp/files.hpp>
#include <mp/hostport.hpp>
#include <mp/original_api.hpp>
#include <mp/pusher.hpp>
#include <mp/report_merge.hpp>
#include <mp/sdk.hpp>
#include <mp/ws_client.hpp>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>
#include <tuple>
#include <vector>

namespace {

// clang-format off
const mp_property kProps[] = {
    {"slave", MP_PROP_BOOL, 0, "false", "this node is a slave (reports to a master)", 0, 0, nullptr},
    {"group", MP_PROP_STRING, 0, "", "cluster name (a label in static mode)", 0, 0, nullptr},
    {"port", MP_PROP_INT, 0, "0", "unused in static mode (gossip port)", 0, 65535, nullptr},
    {"api", MP_PROP_STRING, 0, "native", "shape of the /cluster answers: native JSON, or the original probe's (listnodes an array of {name, ip, gossip_port, meta}, join/leave/remove plain \"OK\"); ?format= on a request overrides it", 0, 0, mp::original::kApiValues},
    {"state_file", MP_PROP_STRING, 0, "", "where a master saves its slaves (default: cluster-state-NODE.txt next to the config file, NODE the node name with characters other than letters, digits, '.', '_', '-' as '_')", 0, 0, nullptr},
    {"reconnect_period_s", MP_PROP_INT, 0, "10", "how often a master redials a lost slave", 1, 86400, nullptr},
    {"history", MP_PROP_INT, 0, "60", "reports a slave keeps for a master that was away", 1, 100000, nullptr},
    {"max_templates", MP_PROP_INT, 0, "10000", "templates in a master's merged report; further ones are counted as evicted", 1, 10000000, nullptr},
    {"max_report_mb", MP_PROP_INT, 0, "64", "largest slave report (one websocket message) a master reads; a larger one closes that slave's link (counted)", 1, 1024, nullptr},
    {"max_slave_backlog_mb", MP_PROP_INT, 0, "64", "bytes of one slave's reports a master holds between two of its intervals; past it that link is closed until the next interval and the refused report is asked for again (counted). Also the bound of the reports taken from records (the slot's records:) between two intervals: past it the next one waits", 1, 4096, nullptr},
    {nullptr, 0, 0, nullptr, nullptr, 0, 0, nullptr},
};
// clang-format on

using Clock = std::chrono::steady_clock;

// "host:port" (IPv6 in brackets), a port 1..65535: mp::net's one parser.
bool parseAddr(const std::string& addr, std::string& host, uint16_t& port) {
    auto hp = mp::net::parseHostPort(addr);
    if (!hp) {
        return false;
    }
    host = hp->host;
    port = hp->port;
    return true;
}

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
    uint64_t refused = 0;   // reports refused because its backlog was full (asked for again)
    uint64_t oversize = 0;  // messages larger than max_report_mb (link closed)
    uint64_t skipped = 0;   // seqs of a run it no longer had when asked (gaps)
};

class StaticCluster : public mp::Plugin, public mp::RecordSink {
  public:
    StaticCluster(mp::Host host, const mp::Config& cfg)
        : Plugin(host),
          slave_(cfg.boolean("slave")),
          group_(cfg.str("group")),
          api_(*mp::original::parseApi(cfg.str("api"))),
          peerAuthorization_(host.get("auth.peer_authorization").value_or("")),
          tls_{host.get("tls.ca_file").has_value(), host.get("tls.ca_file").value_or("")},
          reconnect_(std::chrono::seconds(cfg.i64("reconnect_period_s"))),
          history_(static_cast<size_t>(cfg.i64("history"))),
          maxTemplates_(static_cast<size_t>(cfg.i64("max_templates"))),
          maxReport_(static_cast<size_t>(cfg.i64("max_report_mb")) << 20),
          maxBacklog_(static_cast<size_t>(cfg.i64("max_slave_backlog_mb")) << 20),
          merged_(host.counter("slave_reports_merged_total",
                               "slave reports merged into this master's reports")),
          rejected_(host.counter("slave_reports_rejected_total",
                                 "slave reports that were not valid reports (skipped)")),
          duplicates_(host.counter("slave_reports_duplicate_total",
                                   "slave reports received twice (dropped by node, run, seq)")),
          slavesUp_(host.counter("slaves_up", "slaves whose stream is connected", MP_GAUGE)),
          backlogRefused_(host.counter("slave_reports_refused_total",
                                       "slave reports refused because that slave's backlog was "
                                       "full (its link is closed; asked for again later)")),
          oversize_(host.counter("slave_messages_oversize_total",
                                 "slave messages larger than max_report_mb (link closed)")),
          skipped_(host.counter("slave_reports_skipped_total",
                                "seqs of a slave run never received (gone from its history)")),
          backlogBytes_(host.counter("slave_backlog_bytes",
                                     "bytes of slave reports held until the next interval",
                                     MP_GAUGE)),
          recordsTaken_(host.counter("slave_reports_from_records_total",
                                     "slave reports taken from record streams (the slot's "
                                     "records:, e.g. consumed from a broker)")) {
        host.set("cluster.role", slave_ ? "slave" : "master");
        stateFile_ = cfg.str("state_file");
        if (stateFile_.empty()) {
            // One file per node: two masters whose configs share a folder must not share it.
            std::string dir = host.get("state.dir").value_or(".");
            std::string node = host.get("node.name").value_or("");
            if (node.empty()) {
                node = host.get("server.port").value_or("");
            }
            std::string safe;
            for (char c : node.substr(0, 128)) {
                bool ok =
                    std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-';
                safe += ok ? c : '_';
            }
            if (safe.empty()) {
                safe = "node";
            }
            stateFile_ = dir + "/cluster-state-" + safe + ".txt";
            legacyStateFile_ = dir + "/cluster-state.txt";
        }
        if (slave_) {
            mp_ws_handler h{};
            h.struct_size = sizeof h;
            h.user = this;
            h.on_open = [](void* self, mp_ws_conn* c, const mp_http_request* r) -> mp_status {
                return static_cast<StaticCluster*>(self)->slaveLinkOpen(c, r);
            };
            h.on_close = [](void* self, mp_ws_conn* c) {
                static_cast<StaticCluster*>(self)->slaveLinkClose(c);
            };
            h.queue_messages = static_cast<uint32_t>(history_ + 64);
            h.role = MP_ROLE_PEER;  // a master pulls with the cluster's token
            if (host.api()->ws_endpoint(host.raw(), "/cluster/stream", &h) != MP_OK) {
                throw mp::Error("cannot serve /cluster/stream");
            }
        } else {
            routes_.add("/cluster/join", &StaticCluster::join, MP_ROLE_ADMIN, MP_HTTP_POST);
            routes_.add("/cluster/remove", &StaticCluster::remove, MP_ROLE_ADMIN, MP_HTTP_POST);
            routes_.add("/cluster/leave", &StaticCluster::leave, MP_ROLE_ADMIN, MP_HTTP_POST);
        }
        routes_.add("/cluster/listnodes", &StaticCluster::listNodes, MP_ROLE_READ, MP_HTTP_GET);
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
        std::vector<uint64_t> merged;  // records merged into it, done once it is out
        std::vector<uint64_t> unmerged;
        std::string out = masterReport(json, merged, unmerged);
        mp_status st = host().emit(MP_EVENT_REPORT, out, ev.ts_ns, ev.seq);
        for (uint64_t token : merged) {
            host().recordDone(token, MP_OK);
        }
        for (uint64_t token : unmerged) {
            host().recordDone(token, MP_RETRY);
        }
        return st;
    }

    // A slave report taken from a record stream (the slot's `records:`, e.g. reports a source
    // consumes from a broker): merged into the next report like a pulled one, deduplicated by
    // (node, run, seq), and delivered (record_done) only once that report is out. Those still
    // waiting at the last report are given back unmerged (the broker delivers them again to a
    // master that runs). Not a report: counted as rejected and acknowledged, so one bad message
    // does not stop the queue.
    mp_status onRecord(const mp_record& record, uint64_t token) override {
        if (slave_) {
            warnOnce(slaveRecordsWarned_,
                     "a slave merges nothing: the records given to it are "
                     "refused (subscribe the master instead)");
            return MP_ERROR;
        }
        std::string json(mp::view(record.payload));
        mp::report::Identity id;
        if (!mp::report::reportIdentity(json, id)) {
            rejected_.add();
            host().recordDone(token, MP_OK);
            return MP_OK;
        }
        std::lock_guard<std::mutex> lock(mutex_);
        RecordKey key{id.node, id.started, id.seq};
        if (recordSeen_.count(key) != 0) {
            duplicates_.add();
            host().recordDone(token, MP_OK);
            return MP_OK;
        }
        if (recordBytes_ != 0 && recordBytes_ + json.size() > maxBacklog_) {
            backlogRefused_.add();
            return MP_EAGAIN;  // offered again once the next report took what is held
        }
        recordSeen_.insert(key);
        recordSeenOrder_.push_back(key);
        while (recordSeenOrder_.size() > kRecordSeenMax) {
            recordSeen_.erase(recordSeenOrder_.front());
            recordSeenOrder_.pop_front();
        }
        recordBytes_ += json.size();
        recordsTaken_.add();
        backlogBytes_.set(static_cast<int64_t>(heldTotal_ + recordBytes_));
        fromRecords_.push_back(RecordReport{
            token, mp::report::Incoming{"records:" + std::string(mp::view(record.producer)),
                                        id.node, id.started, id.seq, std::move(json)}});
        return MP_OK;
    }

  private:
    // ---- slave -----------------------------------------------------------------------------

    void slaveReport(const std::string& json, uint64_t seq) {
        std::lock_guard<std::mutex> lock(mutex_);
        if (started_ == 0) {
            mp::report::Identity id;
            if (mp::report::reportIdentity(json, id)) {
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

    mp_status slaveLinkOpen(mp_ws_conn* c, const mp_http_request* req) {
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

    void slaveLinkClose(mp_ws_conn* c) {
        std::lock_guard<std::mutex> lock(mutex_);
        streams_.erase(c);
    }

    // ---- master: topology ------------------------------------------------------------------

    void join(const mp_http_request* req, mp_http_response* resp) {
        const auto api = mp::original::requested(host(), req, api_);
        auto refuse = [&](int status, const std::string& why) {
            mp::original::replyError(host(), resp, api, status, why);
        };
        std::string addr = host().param(req, "addr").value_or("");
        std::string h;
        uint16_t port = 0;
        if (!parseAddr(addr, h, port)) {
            refuse(400, "addr must be HOST:PORT (the slave's server)");
            return;
        }
        // An address that is nobody's (0.0.0.0, ::, multicast) names no slave; this node's own
        // server is no slave of itself.
        Poco::Net::IPAddress ip;
        if (Poco::Net::IPAddress::tryParse(h, ip) &&
            (ip.isWildcard() || ip.isMulticast() || ip.isBroadcast())) {
            refuse(400, "addr " + addr + " is nobody's address");
            return;
        }
        if (addr == host().get("server.address").value_or("") + ":" +
                        host().get("server.port").value_or("")) {
            refuse(409, "addr " + addr + " is this node");
            return;
        }
        {
            std::lock_guard<std::mutex> lock(mutex_);
            if (slaves_.count(addr) != 0) {
                refuse(409, "already a slave: " + addr);
                return;
            }
        }
        // A server that answers must be a slave (its /cluster/stream takes the upgrade); one
        // that does not answer yet is taken as the original did, shown down until it answers:
        // a topology can be registered ahead of its slaves.
        std::string why;
        Reach reach = probe(h, port, why);
        if (reach == Reach::NotSlave) {
            refuse(409, "cannot add " + addr + ": " + why);
            return;
        }
        {
            std::lock_guard<std::mutex> lock(mutex_);
            if (slaves_.count(addr) != 0) {
                refuse(409, "already a slave: " + addr);
                return;
            }
            addSlave(addr, h, port);
            saveState();
        }
        const bool down = reach == Reach::Unreachable;
        host().info("slave joined: " + addr + (down ? " (down for now: " + why + ")" : ""));
        mp::original::replyDone(host(), resp, api,
                                "{\"joined\":" + mp::jsonString(addr) + ",\"state\":\"" +
                                    (down ? "down" : "up") + "\"" +
                                    (down ? ",\"why\":" + mp::jsonString(why) : "") + "}");
    }

    void remove(const mp_http_request* req, mp_http_response* resp) {
        const auto api = mp::original::requested(host(), req, api_);
        std::string addr = host().param(req, "addr").value_or("");
        std::string h;
        uint16_t port = 0;
        if (!parseAddr(addr, h, port)) {
            mp::original::replyError(host(), resp, api, 400, "addr must be HOST:PORT");
            return;
        }
        std::unique_ptr<Slave> gone;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            auto it = slaves_.find(addr);
            if (it == slaves_.end()) {
                mp::original::replyError(host(), resp, api, 404, "not a slave: " + addr);
                return;
            }
            gone = std::move(it->second);
            slaves_.erase(it);
            saveState();
        }
        stopSlave(*gone);
        host().info("slave removed: " + addr);
        mp::original::replyDone(host(), resp, api, "{\"removed\":" + mp::jsonString(addr) + "}");
    }

    void leave(const mp_http_request* req, mp_http_response* resp) {
        const auto api = mp::original::requested(host(), req, api_);
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
        mp::original::replyDone(host(), resp, api,
                                "{\"removed\":" + std::to_string(all.size()) + "}");
    }

    void listNodes(const mp_http_request* req, mp_http_response* resp) {
        if (mp::original::requested(host(), req, api_) == mp::original::Api::Original) {
            listNodesOriginal(resp);
            return;
        }
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
            uint64_t now = mp::wallClockNs();
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
                    << ",\"refused\":" << s->refused << ",\"oversize\":" << s->oversize
                    << ",\"skipped\":" << s->skipped
                    << ",\"backlog_bytes\":" << (held_.count(addr) != 0 ? held_.at(addr) : 0)
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
    enum class Reach { Slave, NotSlave, Unreachable };
    Reach probe(const std::string& h, uint16_t port, std::string& why) {
        try {
            auto session = mp::push::openHttpSession("", h, port, std::chrono::seconds(2),
                                                     std::chrono::seconds(2), tls_);
            Poco::Net::HTTPRequest req = streamRequest(h, port, 0, 0);
            Poco::Net::HTTPResponse resp;
            Poco::Net::WebSocket ws(*session, req, resp);
            ws.shutdown();
            return Reach::Slave;
        } catch (const Poco::Exception& e) {
            // Down (nobody listens, no route, no answer in time) or answering, but not as a
            // slave: a refusal, another protocol (TLS), a closed link, a name that resolves to
            // nothing.
            const int code = e.code();
            const bool down = dynamic_cast<const Poco::Net::ConnectionRefusedException*>(&e) ||
                              dynamic_cast<const Poco::TimeoutException*>(&e) ||
                              code == EHOSTUNREACH || code == ENETUNREACH || code == EHOSTDOWN ||
                              code == ETIMEDOUT;
            why = (down ? "unreachable (" : "not a slave or refused (") +
                  std::string(e.displayText()) + ")";
            return down ? Reach::Unreachable : Reach::NotSlave;
        } catch (const std::exception& e) {
            why = std::string("not a slave or refused (") + e.what() + ")";
            return Reach::NotSlave;
        }
    }

    // The original's listnodes: the master's slaves as {name, ip, gossip_port, meta}; a slave
    // answers "not master", as the original did.
    void listNodesOriginal(mp_http_response* resp) {
        if (slave_) {
            mp::original::replyError(host(), resp, mp::original::Api::Original, 500, "not master");
            return;
        }
        std::vector<mp::original::Node> nodes;
        std::lock_guard<std::mutex> lock(mutex_);
        for (const auto& [addr, s] : slaves_) {
            nodes.push_back({addr, s->host, 0, "slave", 0, group_, s->port});
        }
        host().replyJson(resp, 200, mp::original::nodesJson(nodes));
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

    // How a slave report was taken by received().
    enum class Taken { Kept, Skipped, Refused };

    // A frame that stalls this long half-way closes the link (poll() waits for the next one).
    static constexpr int kFrameStallS = 3;
    // The frame buffer keeps its memory between frames up to this size (larger ones are freed).
    static constexpr size_t kKeepFrameBytes = 1 << 20;

    // One slave's puller: dial, read reports, redial every reconnect period when lost, or as soon
    // as what it delivered has been merged when its backlog was full. What a slave can make this
    // master hold: its backlog (max_slave_backlog_mb, or one report when it was empty) and the
    // message being read (max_report_mb, with its current frame besides).
    void pull(Slave& s) {
        while (!s.stop) {
            uint64_t since = 0;
            uint64_t started = 0;
            {
                std::lock_guard<std::mutex> lock(mutex_);
                since = s.lastSeq;
                started = s.started;
            }
            bool full = false;
            try {
                auto session = mp::push::openHttpSession(
                    "", s.host, s.port, std::chrono::seconds(2), std::chrono::seconds(2), tls_);
                Poco::Net::HTTPRequest req = streamRequest(s.host, s.port, since, started);
                Poco::Net::HTTPResponse resp;
                Poco::Net::WebSocket ws(*session, req, resp);
                ws.setReceiveTimeout(Poco::Timespan(kFrameStallS, 0));
                ws.setSendTimeout(Poco::Timespan(kFrameStallS, 0));
                // A frame header announcing more is refused before anything is allocated.
                ws.setMaxPayloadSize(static_cast<int>(maxReport_));
                setUp(s, true);
                full = readStream(s, ws);
            } catch (const std::exception& e) {
                host().debug("slave " + s.addr + ": " + e.what());
            }
            setUp(s, false);
            std::unique_lock<std::mutex> lock(mutex_);
            if (full) {
                wake_.wait(lock, [&] { return s.stop.load() || held_.count(s.addr) == 0; });
            } else {
                wake_.wait_for(lock, reconnect_, [&] { return s.stop.load(); });
            }
        }
    }

    // Reads one link until it breaks or the puller stops (false), or until that slave's backlog
    // is full (true: the link was closed, the refused report is asked for again later).
    bool readStream(Slave& s, Poco::Net::WebSocket& ws) {
        using Frame = mp::push::ClientFrame;
        using Assembled = mp::push::MessageAssembler::Result;
        Poco::Buffer<char> frame(0);
        mp::push::MessageAssembler message(maxReport_);
        while (!s.stop) {
            // Bytes read along with the handshake are not seen by poll(); available() counts them.
            if (ws.available() == 0 &&
                !ws.poll(Poco::Timespan(0, 300000), Poco::Net::Socket::SELECT_READ)) {
                continue;
            }
            Frame f = mp::push::readClientFrame(ws, frame);
            if (f.kind == Frame::Kind::TooBig) {
                tooBig(s, ws, "a frame larger than max_report_mb");
                return false;
            }
            if (f.kind == Frame::Kind::Closed) {
                return false;
            }
            Assembled r = f.kind == Frame::Kind::Data ? message.add(f) : Assembled::More;
            if (frame.capacity() > kKeepFrameBytes) {
                frame.setCapacity(0, false);
            }
            if (r == Assembled::TooBig) {
                tooBig(s, ws, "a message larger than max_report_mb");
                return false;
            }
            if (r == Assembled::Protocol) {
                host().warn("slave " + s.addr + ": a new message inside a fragmented one");
                return false;
            }
            if (r == Assembled::Complete && received(s, message.take()) == Taken::Refused) {
                closeLink(ws, 1013, "backlog full: try again later");
                return true;
            }
        }
        return false;
    }

    void tooBig(Slave& s, Poco::Net::WebSocket& ws, const std::string& what) {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            ++s.oversize;
        }
        oversize_.add();
        host().warn("slave " + s.addr + ": " + what + " (" + std::to_string(maxReport_ >> 20) +
                    " MiB): link closed");
        closeLink(ws, Poco::Net::WebSocket::WS_PAYLOAD_TOO_BIG, "message too big");
    }

    static void closeLink(Poco::Net::WebSocket& ws, uint16_t code, const std::string& why) {
        try {
            ws.shutdown(code, why);  // a close frame, then the socket goes with `ws`
        } catch (const std::exception&) {
            // the link is gone already
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

    // A complete report from slave `s`: kept for the next interval, skipped (not a report, or a
    // duplicate), or refused (its backlog is full: nothing of it is kept, its seq is not marked
    // as seen, so the next dial asks for it again).
    Taken received(Slave& s, std::string json) {
        mp::report::Identity id;
        if (!mp::report::reportIdentity(json, id)) {
            rejected_.add();
            return Taken::Skipped;
        }
        size_t bytes = json.capacity();
        std::lock_guard<std::mutex> lock(mutex_);
        bool newRun = id.started != s.started || (!s.node.empty() && id.node != s.node);
        if (!newRun && id.seq <= s.lastSeq) {
            ++s.duplicates;
            duplicates_.add();
            return Taken::Skipped;
        }
        auto held = held_.find(s.addr);
        if (held != held_.end() && held->second + bytes > maxBacklog_) {
            ++s.refused;
            backlogRefused_.add();
            return Taken::Refused;  // (an empty backlog takes one report of any allowed size)
        }
        if (newRun) {
            s.started = id.started;  // a new run of the slave: its seq starts again
            s.node = id.node;
            s.lastSeq = 0;
        } else if (s.lastSeq != 0 && id.seq > s.lastSeq + 1) {
            s.skipped += id.seq - s.lastSeq - 1;  // gone from its history before we asked
            skipped_.add(static_cast<int64_t>(id.seq - s.lastSeq - 1));
        }
        s.lastSeq = id.seq;
        progress_[s.addr] = {s.started, s.lastSeq};
        ++s.received;
        s.lastReportWall = mp::wallClockNs();
        s.lastIntervalEnd = id.intervalEnd;
        s.contributed = true;
        held_[s.addr] += bytes;
        heldTotal_ += bytes;
        backlogBytes_.set(static_cast<int64_t>(heldTotal_));
        inbox_.push_back(
            mp::report::Incoming{s.addr, id.node, id.started, id.seq, std::move(json)});
        return Taken::Kept;
    }

    std::string masterReport(const std::string& own, std::vector<uint64_t>& mergedRecords,
                             std::vector<uint64_t>& unmergedRecords) {
        std::vector<mp::report::Incoming> in;
        std::vector<RecordReport> records;
        std::vector<std::string> missing;
        StateSnapshot state;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            in.swap(inbox_);
            records.swap(fromRecords_);
            recordBytes_ = 0;
            backlogBytes_.set(static_cast<int64_t>(heldTotal_));
            for (auto& [addr, s] : slaves_) {
                if (!s->contributed) {
                    missing.push_back(addr);
                    ++s->missed;
                }
                s->contributed = false;
            }
            if (!in.empty()) {
                state = stateSnapshot();  // the progress moved
            }
        }
        if (state.gen != 0) {
            writeState(state);  // (fsync outside the cluster's lock)
        }
        if (!records.empty()) {
            mp::report::Identity self;
            if (mp::report::reportIdentity(own, self) && self.final) {
                // The last report: the source has stopped and its broker will deliver these
                // again to a master that runs; merged here too they would count twice.
                host().info(std::to_string(records.size()) +
                            " slave reports taken from records were not merged before the stop: "
                            "given back");
                for (auto& r : records) {
                    unmergedRecords.push_back(r.token);
                }
                records.clear();
            }
        }
        size_t pulled = in.size();
        for (auto& r : records) {
            mergedRecords.push_back(r.token);
            in.push_back(std::move(r.in));
        }
        records.clear();
        std::string out;
        try {
            mp::report::MergeResult r = mp::report::mergeReports(own, in, missing, maxTemplates_);
            merged_.add(static_cast<int64_t>(r.merged));
            rejected_.add(static_cast<int64_t>(r.rejected));
            out = std::move(r.json);
        } catch (const std::exception& e) {
            host().warn(std::string("merge failed, own report sent alone: ") + e.what());
            out = own;
        }
        in.resize(pulled);  // (the ones taken from records are not in a slave's backlog)
        release(in);
        return out;
    }

    void warnOnce(std::atomic<bool>& flag, const std::string& what) {
        if (!flag.exchange(true)) {
            host().warn(what);
        }
    }

    // Merged: their bytes leave the slaves' backlogs, whose links may take more again.
    void release(std::vector<mp::report::Incoming>& in) {
        std::map<std::string, size_t> bytes;
        for (const auto& i : in) {
            bytes[i.addr] += i.json.capacity();
        }
        std::vector<mp::report::Incoming>().swap(in);
        {
            std::lock_guard<std::mutex> lock(mutex_);
            for (const auto& [addr, n] : bytes) {
                auto it = held_.find(addr);
                if (it == held_.end()) {
                    continue;
                }
                size_t k = std::min(it->second, n);
                it->second -= k;
                heldTotal_ -= std::min(heldTotal_, k);
                if (it->second == 0) {
                    held_.erase(it);
                }
            }
            backlogBytes_.set(static_cast<int64_t>(heldTotal_ + recordBytes_));
        }
        wake_.notify_all();
    }

    // ---- state file ------------------------------------------------------------------------
    // "slave HOST:PORT" per slave, "seen HOST:PORT STARTED_NS SEQ" per address merged from.
    // Replaced with mp::writeFileAtomic (a fresh temporary, fsync, rename, folder fsync): a
    // symlink at the path is replaced, never written through. Snapshots are numbered so that a
    // slower writer never puts an older state over a newer one.

    struct StateSnapshot {
        uint64_t gen = 0;
        std::string text;
    };

    StateSnapshot stateSnapshot() {  // mutex held
        std::ostringstream out;
        out << "# mysqlprobe cluster-static master state (rewritten on every change)\n";
        for (const auto& [addr, s] : slaves_) {
            out << "slave " << addr << "\n";
        }
        for (const auto& [addr, p] : progress_) {
            out << "seen " << addr << " " << p.first << " " << p.second << "\n";
        }
        return StateSnapshot{++stateGen_, out.str()};
    }

    void writeState(const StateSnapshot& state) {
        std::lock_guard<std::mutex> lock(stateMutex_);
        if (state.gen <= stateWritten_) {
            return;  // a newer state is on disk already
        }
        std::string why = mp::writeFileAtomic(stateFile_, state.text);
        if (!why.empty()) {
            host().warn("state file not saved: " + why);
            return;
        }
        stateWritten_ = state.gen;
    }

    void saveState() { writeState(stateSnapshot()); }  // mutex held (join, remove, leave)

    void loadState() {
        std::string path = stateFile_;
        struct stat st {};
        if (!legacyStateFile_.empty() && ::stat(stateFile_.c_str(), &st) != 0 &&
            ::stat(legacyStateFile_.c_str(), &st) == 0) {
            // The former default name, shared by every master of that folder: read it once.
            path = legacyStateFile_;
            host().info("state file " + stateFile_ + " absent: reading the former default " + path +
                        " (saved to the new name from now on)");
        }
        std::ifstream in(path);
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
                host().warn("state file " + path + ": skipped '" + mp::printable(line, 200) + "'");
            }
        }
        for (const auto& addr : addrs) {
            std::string h;
            uint16_t port = 0;
            if (slaves_.count(addr) == 0 && parseAddr(addr, h, port)) {
                addSlave(addr, h, port);
            }
        }
        host().info("state file " + path + ": " + std::to_string(slaves_.size()) + " slave(s)");
    }

    bool slave_;
    std::string group_;
    mp::original::Api api_;
    std::string peerAuthorization_;  // "Bearer ..." of auth.cluster_token (a secret)
    mp::push::TlsClient tls_;        // tls.ca_file set: slaves are dialled with TLS
    std::chrono::seconds reconnect_;
    size_t history_;
    size_t maxTemplates_;
    size_t maxReport_;   // bytes of one slave message
    size_t maxBacklog_;  // bytes of one slave's reports held between two intervals
    std::string stateFile_;
    std::string legacyStateFile_;  // the former default name, read when stateFile_ is absent
    std::mutex stateMutex_;        // writers of the state file, in snapshot order
    uint64_t stateGen_ = 0;        // last snapshot taken (mutex_)
    uint64_t stateWritten_ = 0;    // last snapshot written (stateMutex_)
    mp::Routes<StaticCluster> routes_{*this};
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
    std::vector<mp::report::Incoming> inbox_;
    std::map<std::string, size_t> held_;  // bytes in inbox_ per slave address (none: absent)
    size_t heldTotal_ = 0;
    // Slave reports taken from records (onRecord), with their tokens, until the next report.
    struct RecordReport {
        uint64_t token = 0;
        mp::report::Incoming in;
    };
    using RecordKey = std::tuple<std::string, uint64_t, uint64_t>;  // (node, run, seq)
    static constexpr size_t kRecordSeenMax = 100000;  // keys remembered against duplicates
    std::vector<RecordReport> fromRecords_;
    size_t recordBytes_ = 0;  // JSON bytes in fromRecords_ (bounded by max_slave_backlog_mb)
    std::set<RecordKey> recordSeen_;
    std::deque<RecordKey> recordSeenOrder_;
    std::atomic<bool> slaveRecordsWarned_{false};
    mp::Counter merged_;
    mp::Counter rejected_;
    mp::Counter duplicates_;
    mp::Counter slavesUp_;
    mp::Counter backlogRefused_;
    mp::Counter oversize_;
    mp::Counter skipped_;
    mp::Counter backlogBytes_;
    mp::Counter recordsTaken_;
};

}  // namespace

MP_DECLARE_PLUGIN(StaticCluster, MP_KIND_CLUSTER, "cluster-static", "0.1.0",
                  "Static cluster: masters pull their slaves' reports; topology by hand", kProps, 0)

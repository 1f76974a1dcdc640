// SPDX-License-Identifier: Apache-2.0
// cluster-gossip: SWIM membership on HashiCorp memberlist's wire (membership.hpp), so probes,
// serf agents and anything else built on memberlist can share one cluster; a deterministic
// master among the master-eligible members.
//
// Tags each probe gossips in its node meta (serf's format, so `serf members` shows them):
//   mp_role  master | slave   (master: eligible to be the master)
//   mp_http  HOST:PORT        its HTTP server (/collector, /cluster/*)
//   mp_epoch N                when this run started (ms since the epoch)
//   group    NAME             when set; members whose group differs are refused, both ways
// The master of a connected partition is, among its alive members whose mp_role is
// `master`, the one with the smallest (mp_epoch, name): the longest-running eligible member,
// so a restarted node never takes the role back from a healthy one.
//
// Endpoints: /cluster/join?addr=HOST:PORT, /cluster/leave, /cluster/listnodes, and the
// websocket /cluster/push on master-eligible nodes.
//
// Reports: a slave pushes each of its reports to the current master's /cluster/push (mp::push:
// a bounded buffer of unacknowledged reports; on a new master the connection moves and what is
// unacknowledged goes again). A master-eligible node that receives reports merges them into its
// own next report (counts add, sketches merge: mp/report_merge.hpp), emits that, and only then
// acknowledges them ({"ack":SEQ}); reports of a connection that closes before that are
// forgotten (the slave sends them again to whoever is master), and (node, run, seq) already
// merged are acknowledged again but not counted twice. So a master's death loses nothing: what
// it had not yet emitted was not acknowledged.
//
// Exactly once when an acknowledgement is lost (a partition cut it, or the slave moved on before
// it arrived): the slave announces a report it sent to other masters without an acknowledgement
// ({"resent":SEQ,"unacked_by":[...]}, mp/report_merge.hpp). The new master holds such a report
// and asks those masters (/cluster/merged): "merged" (it is counted there: acknowledge, drop),
// "pending" (ask again), "released" (it was not, and that master promises never to merge it:
// merge here). A master whose port refuses the connection is gone and merged nothing more:
// merge here. One that cannot be reached (a partition) is asked again until in_doubt_hold_s;
// when the partition heals first, the slave moves back to the master that kept the report and
// nothing was counted twice. Acknowledgements are cumulative, so a held report also holds the
// acknowledgement of every later report of its connection.
#include <Poco/JSON/Array.h>
#include <Poco/JSON/Object.h>
#include <Poco/JSON/Parser.h>
#include <Poco/Net/HTTPClientSession.h>
#include <Poco/Net/HTTPRequest.h>
#include <Poco/Net/HTTPResponse.h>
#include <Poco/Net/NetException.h>
#include <Poco/Net/SocketAddress.h>
#include <Poco/Net/StreamSocket.h>
#include <Poco/URI.h>
#include <arpa/inet.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <mp/pusher.hpp>
#include <mp/report_merge.hpp>
#include <mp/sdk.hpp>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>
#include <tuple>

#include "membership.hpp"

namespace {

// clang-format off
const mp_property kProps[] = {
    {"slave", MP_PROP_BOOL, 0, "false", "this node is a slave (never master-eligible)", 0, 0, nullptr},
    {"group", MP_PROP_STRING, 0, "", "cluster name: nodes of another group are refused", 0, 0, nullptr},
    {"port", MP_PROP_INT, 0, "0", "gossip bind port, UDP and TCP (0: random)", 0, 65535, nullptr},
    {"bind", MP_PROP_STRING, 0, "", "gossip bind address (IPv4; default: serveraddress, or 127.0.0.1 when that is 0.0.0.0)", 0, 0, nullptr},
    {"name", MP_PROP_STRING, 0, "", "member name, unique in the cluster (default: BIND:PORT)", 0, 0, nullptr},
    {"profile", MP_PROP_STRING, 0, "lan", "memberlist timings: lan, wan or local", 0, 0, nullptr},
    {"keys", MP_PROP_STRING_LIST, MP_PROP_SECRET, "", "base64 AES keys (16/24/32 bytes), first one primary", 0, 0, nullptr},
    {"token", MP_PROP_STRING, MP_PROP_SECRET, "", "shared token for the management endpoints", 0, 0, nullptr},
    {"seeds_file", MP_PROP_STRING, 0, "", "where known members are saved (default: gossip-seeds.txt next to the config file)", 0, 0, nullptr},
    {"reconnect_period_s", MP_PROP_INT, 0, "10", "how often failed members are redialled, and a node alone rejoins through its seeds", 1, 86400, nullptr},
    {"buffer_reports", MP_PROP_INT, 0, "600", "a slave's reports kept until a master acknowledges them", 1, 100000, nullptr},
    {"max_templates", MP_PROP_INT, 0, "10000", "templates in a merged report; further ones are counted as evicted", 1, 10000000, nullptr},
    {"in_doubt_hold_s", MP_PROP_INT, 0, "300", "a resent report whose earlier master cannot be asked is held this long, then merged", 1, 86400, nullptr},
    {nullptr, 0, 0, nullptr, nullptr, 0, 0, nullptr},
};
// clang-format on

constexpr size_t kMaxPending = 10000;  // slave reports waiting for this node's next report
constexpr size_t kMaxAskSeqs = 256;    // sequence numbers in one /cluster/merged question

using Clock = std::chrono::steady_clock;

std::string errorJson(const std::string& why) { return "{\"error\":" + mp::jsonString(why) + "}"; }

bool parseHostPort(const std::string& addr, std::string& ip, uint16_t& port) {
    size_t colon = addr.rfind(':');
    if (colon == std::string::npos || colon == 0 || addr.size() > 64) {
        return false;
    }
    ip = addr.substr(0, colon);
    in_addr a{};
    if (inet_pton(AF_INET, ip.c_str(), &a) != 1) {
        return false;
    }
    unsigned p = 0;
    const char* b = addr.data() + colon + 1;
    const char* e = addr.data() + addr.size();
    auto [end, ec] = std::from_chars(b, e, p);
    if (ec != std::errc() || end != e || p == 0 || p > 65535) {
        return false;
    }
    port = static_cast<uint16_t>(p);
    return true;
}

const char* stateName(mp::gossip::State s) {
    switch (s) {
        case mp::gossip::State::Alive:
            return "alive";
        case mp::gossip::State::Suspect:
            return "suspect";
        case mp::gossip::State::Dead:
            return "dead";
        case mp::gossip::State::Left:
            return "left";
    }
    return "unknown";
}

uint64_t epochMs() {
    return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                     std::chrono::system_clock::now().time_since_epoch())
                                     .count());
}

class GossipCluster : public mp::Plugin {
  public:
    GossipCluster(mp::Host host, const mp::Config& cfg)
        : Plugin(host),
          slave_(cfg.boolean("slave")),
          token_(cfg.str("token")),
          reconnect_(std::chrono::seconds(cfg.i64("reconnect_period_s"))),
          bufferReports_(static_cast<size_t>(cfg.i64("buffer_reports"))),
          maxTemplates_(static_cast<size_t>(cfg.i64("max_templates"))),
          holdLimit_(std::chrono::seconds(cfg.i64("in_doubt_hold_s"))),
          merged_(host.counter("slave_reports_merged_total",
                               "slave reports merged into this node's reports")),
          duplicates_(host.counter(
              "slave_reports_duplicate_total",
              "slave reports received again after they were merged (acknowledged, not counted)")),
          rejected_(host.counter("slave_reports_rejected_total",
                                 "pushed messages that were not a report")),
          pushed_(host.counter("reports_pushed_total",
                               "this slave's reports acknowledged by a master")),
          inDoubt_(host.counter("slave_reports_in_doubt_total",
                                "resent slave reports held until their earlier masters answered")),
          settledElsewhere_(host.counter(
              "slave_reports_settled_elsewhere_total",
              "held slave reports that an earlier master had merged (acknowledged, not counted)")),
          forced_(host.counter("slave_reports_forced_total",
                               "held slave reports merged because no earlier master could be "
                               "asked within in_doubt_hold_s (may be counted twice)")) {
        opt_.group = cfg.str("group");
        opt_.port = static_cast<uint16_t>(cfg.i64("port"));
        opt_.name = cfg.str("name");
        opt_.bindIp = cfg.str("bind");
        if (opt_.bindIp.empty()) {
            std::string sa = host.get("server.address").value_or("");
            opt_.bindIp = sa.empty() || sa == "0.0.0.0" ? "127.0.0.1" : sa;
        }
        in_addr a{};
        if (inet_pton(AF_INET, opt_.bindIp.c_str(), &a) != 1) {
            throw mp::Error("cluster bind '" + opt_.bindIp + "' is not an IPv4 address");
        }
        std::string profile = cfg.str("profile");
        if (profile == "local") {
            opt_.timing.probeTimeout = mp::gossip::Ms(200);
            opt_.timing.indirectChecks = 1;
            opt_.timing.suspicionMult = 3;
            opt_.timing.retransmitMult = 2;
            opt_.timing.gossipInterval = mp::gossip::Ms(100);
            opt_.timing.gossipToTheDead = mp::gossip::Ms(15000);
            opt_.timing.pushPullInterval = mp::gossip::Ms(15000);
            opt_.timing.tcpTimeout = mp::gossip::Ms(1000);
        } else if (profile == "wan") {
            opt_.timing.probeInterval = mp::gossip::Ms(5000);
            opt_.timing.probeTimeout = mp::gossip::Ms(3000);
            opt_.timing.suspicionMult = 6;
            opt_.timing.gossipInterval = mp::gossip::Ms(500);
            opt_.timing.gossipNodes = 4;
            opt_.timing.gossipToTheDead = mp::gossip::Ms(60000);
            opt_.timing.pushPullInterval = mp::gossip::Ms(60000);
            opt_.timing.tcpTimeout = mp::gossip::Ms(10000);
        } else if (profile != "lan") {
            throw mp::Error("cluster profile must be lan, wan or local, not '" + profile + "'");
        }
        for (const std::string& k : cfg.list("keys")) {
            if (!k.empty() && !opt_.keys.addBase64(k)) {
                throw mp::Error("cluster keys: each key is base64 of 16, 24 or 32 bytes");
            }
        }
        seedsFile_ = cfg.str("seeds_file");
        if (seedsFile_.empty()) {
            std::string conf = host.get("config.file").value_or("");
            size_t slash = conf.rfind('/');
            seedsFile_ = (slash == std::string::npos ? std::string(".") : conf.substr(0, slash)) +
                         "/gossip-seeds.txt";
        }
        if (!slave_) {
            mp_ws_handler h{};
            h.struct_size = sizeof h;
            h.user = this;
            h.on_open = [](void* self, mp_ws_conn* c, const mp_http_request* r) -> mp_status {
                return static_cast<GossipCluster*>(self)->pushOpen(c, r);
            };
            h.on_message = [](void* self, mp_ws_conn* c, uint32_t op, mp_bytes data) {
                static_cast<GossipCluster*>(self)->pushMessage(c, op, data);
            };
            h.on_close = [](void* self, mp_ws_conn* c) {
                static_cast<GossipCluster*>(self)->pushClose(c);
            };
            h.max_message_bytes = 64 << 20;
            h.idle_timeout_ms = 60000;
            if (host.api()->ws_endpoint(host.raw(), "/cluster/push", &h) != MP_OK) {
                throw mp::Error("cannot serve /cluster/push");
            }
        }
        addRoute("/cluster/join", &GossipCluster::join);
        addRoute("/cluster/leave", &GossipCluster::leave);
        addRoute("/cluster/listnodes", &GossipCluster::listNodes);
        addRoute("/cluster/keys", &GossipCluster::keys);
        if (!slave_) {
            addRoute("/cluster/merged", &GossipCluster::mergedQuery);
        }
    }

    ~GossipCluster() override { stop(); }

    void start() override {
        opt_.tags["mp_role"] = slave_ ? "slave" : "master";
        opt_.tags["mp_epoch"] = std::to_string(epochMs());
        std::string http = host().get("server.port").value_or("0");
        opt_.tags["mp_http"] = opt_.bindIp + ":" + http;
        selfHttp_ = opt_.tags["mp_http"];
        if (!opt_.group.empty()) {
            opt_.tags["group"] = opt_.group;
        }
        if (opt_.port == 0) {
            opt_.port = freePort();  // the default name includes it, so it is chosen here
        }
        if (opt_.name.empty()) {
            opt_.name = opt_.bindIp + ":" + std::to_string(opt_.port);
        }
        if (slave_) {
            mp::ws::PusherOptions po;
            po.path = "/cluster/push" + (token_.empty() ? "" : "?token=" + token_);
            po.bufferReports = bufferReports_;
            po.sourceIp = opt_.bindIp;  // from this node's address, as its gossip
            po.ack = mp::ws::AckMode::Message;
            po.reconnectPeriod = std::chrono::milliseconds(500);
            // A master that is still alive (a view change, a healed partition) acknowledges
            // after its next report: wait for that before the new master gets the rest.
            po.retargetGrace = std::chrono::milliseconds(std::max<int64_t>(
                2000, 2 * std::stoll(host().get("interval.ms").value_or("1000"))));
            po.drainTimeout = std::chrono::milliseconds(2000);
            po.announceResends = true;  // so that a new master can ask the old one
            pusher_ = std::make_unique<mp::ws::Pusher>(
                po,
                [this](int level, const std::string& msg) {
                    level == MP_LOG_WARN ? host().warn(msg) : host().info(msg);
                },
                [this](const mp::ws::PusherStats& s) {
                    uint64_t acked = s.acked;
                    uint64_t before = ackedSeen_.exchange(acked);
                    if (acked > before) {
                        pushed_.add(acked - before);
                    }
                });
            pusher_->start();
        }
        ml_ = std::make_unique<mp::gossip::Membership>(opt_,
                                                       [this](int level, const std::string& msg) {
                                                           if (level == 0) {
                                                               host().info(msg);
                                                           } else {
                                                               host().warn(msg);
                                                           }
                                                       });
        ml_->onChange([this] { membershipChanged(); });
        try {
            ml_->start();
        } catch (const std::exception& e) {
            throw mp::Error(e.what());
        }
        host().info("gossip member " + ml_->name() + " on " + opt_.bindIp + ":" +
                    std::to_string(ml_->port()) + (slave_ ? " (slave)" : " (master-eligible)") +
                    (opt_.keys.empty() ? "" : ", encrypted"));
        membershipChanged();  // the master known so far (none yet, alone)
        running_ = true;
        seeder_ = std::thread([this] { seedLoop(); });
        if (!slave_) {
            resolver_ = std::thread([this] { resolveLoop(); });
        }
    }

    void stop() override {
        if (!running_.exchange(false)) {
            return;
        }
        if (seeder_.joinable()) {
            seeder_.join();
        }
        resolverCv_.notify_all();
        if (resolver_.joinable()) {
            resolver_.join();
        }
        if (pusher_) {
            pusher_->stop();  // drains what the master has not acknowledged yet (2 s at most)
        }
        if (ml_) {
            ml_->stop(!left_.load());
        }
    }

    mp_status onEvent(const mp_event& ev) override {
        if (ev.type != MP_EVENT_REPORT) {
            return MP_OK;
        }
        std::string own(mp::view(ev.payload));
        if (slave_) {
            if (pusher_) {
                pusher_->push(ev.seq, mp::ws::Encoded{MP_WS_TEXT, own});
            }
            return host().emit(MP_EVENT_REPORT, own, ev.ts_ns, ev.seq);
        }
        // Master-eligible: this node's report with every slave report received since the last.
        std::vector<Pending> taken;
        {
            std::lock_guard<std::mutex> lock(pushMu_);
            taken.swap(pending_);
        }
        if (taken.empty()) {
            return host().emit(MP_EVENT_REPORT, own, ev.ts_ns, ev.seq);
        }
        std::vector<mp::cluster::Incoming> in;
        in.reserve(taken.size());
        for (const Pending& p : taken) {
            in.push_back(p.in);
        }
        mp::cluster::MergeResult r;
        try {
            r = mp::cluster::mergeReports(own, in, {}, maxTemplates_);
        } catch (const std::exception& e) {
            host().warn(std::string("cannot merge: ") + e.what());
            return host().emit(MP_EVENT_REPORT, own, ev.ts_ns, ev.seq);
        }
        merged_.add(r.merged);
        rejected_.add(r.rejected);
        mp_status st = host().emit(MP_EVENT_REPORT, r.json, ev.ts_ns, ev.seq);
        // Emitted: now the slaves may forget them.
        std::lock_guard<std::mutex> lock(pushMu_);
        for (const Pending& p : taken) {
            remember(p.in.node, p.in.started, p.in.seq);
            auto it = conns_.find(p.conn);
            if (it != conns_.end()) {
                it->second.open.erase(p.in.seq);
                ackUpTo(p.conn, it->second, p.in.seq);
            }
        }
        return st;
    }

  private:
    using Key = std::tuple<std::string, uint64_t, uint64_t>;  // (node, run, seq)
    struct Pending {
        mp_ws_conn* conn = nullptr;
        mp::cluster::Incoming in;
    };
    // A resent report held until the masters that may have merged it answer.
    struct Held {
        mp_ws_conn* conn = nullptr;
        mp::cluster::Incoming in;
        std::vector<std::string> ask;  // their mp_http, asked in order
        Clock::time_point since;
        Clock::time_point next;  // when to ask again
    };
    // A slave's connection to /cluster/push.
    struct Conn {
        std::set<uint64_t> open;  // received, not yet emitted or settled: bounds the ack
        uint64_t ackable = 0;     // highest seq emitted or settled
        uint64_t acked = 0;       // highest acknowledgement sent
        std::map<uint64_t, std::vector<std::string>> notices;  // resent notices, by seq
    };
    enum class Answer { Merged, Pending, Released, Gone, Unreachable };

    mp_status pushOpen(mp_ws_conn* c, const mp_http_request* req) {
        if (!token_.empty() && host().param(req, "token") != token_) {
            return MP_EPERM;
        }
        std::lock_guard<std::mutex> lock(pushMu_);
        conns_.emplace(c, Conn{});
        return MP_OK;
    }

    void pushMessage(mp_ws_conn* c, uint32_t /*op*/, mp_bytes data) {
        std::string json(reinterpret_cast<const char*>(data.data), data.len);
        mp::cluster::ResentNotice notice;
        if (mp::cluster::parseResentNotice(json, notice)) {
            std::lock_guard<std::mutex> lock(pushMu_);
            auto it = conns_.find(c);
            if (it != conns_.end()) {
                auto& n = it->second.notices;
                if (n.size() >= 1024) {
                    n.erase(n.begin());
                }
                n[notice.seq] = std::move(notice.unackedBy);
            }
            return;
        }
        mp::cluster::Identity id;
        if (!mp::cluster::reportIdentity(json, id)) {
            rejected_.add();
            return;
        }
        std::lock_guard<std::mutex> lock(pushMu_);
        auto cit = conns_.find(c);
        if (cit == conns_.end()) {
            return;
        }
        Conn& conn = cit->second;
        std::vector<std::string> ask;
        if (auto n = conn.notices.find(id.seq); n != conn.notices.end()) {
            ask = std::move(n->second);
            conn.notices.erase(n);
        }
        Key key{id.node, id.started, id.seq};
        if (mergedSet_.count(key) != 0) {
            duplicates_.add();
            ackUpTo(c, conn, id.seq);  // merged before: the slave missed the acknowledgement
            return;
        }
        if (auto r = released_.find(key); r != released_.end()) {
            ask.push_back(r->second);  // promised to that master: it may have merged it
        }
        ask.erase(std::remove(ask.begin(), ask.end(), selfHttp_), ask.end());
        std::sort(ask.begin(), ask.end());
        ask.erase(std::unique(ask.begin(), ask.end()), ask.end());
        auto now = Clock::now();
        if (mp_ws_conn** owner = openOwner(key)) {
            // Already waiting for the next report, or for an answer. When it came on an older
            // connection of that slave (not closed yet here), the newest one owns it now, and
            // what the slave announces now is asked too.
            if (*owner != c) {
                auto old = conns_.find(*owner);
                if (old != conns_.end()) {
                    old->second.open.erase(id.seq);
                }
                *owner = c;
                conn.open.insert(id.seq);
            }
            if (!ask.empty()) {
                hold(key, std::move(ask), now);
            }
            return;
        }
        if (pending_.size() + held_.size() >= kMaxPending) {
            rejected_.add();  // not acknowledged: the slave keeps it and sends it again
            return;
        }
        mp::cluster::Incoming in;
        in.addr = id.node;
        in.node = id.node;
        in.started = id.started;
        in.seq = id.seq;
        in.json = std::move(json);
        conn.open.insert(id.seq);
        pending_.push_back(Pending{c, std::move(in)});
        if (!ask.empty()) {
            hold(key, std::move(ask), now);
        }
    }

    // A waiting report (pending or held) must first be asked about at `ask` too.
    void hold(const Key& key, std::vector<std::string> ask, Clock::time_point now) {
        auto same = [&key](const mp::cluster::Incoming& in) { return keyOf(in) == key; };
        auto p = std::find_if(pending_.begin(), pending_.end(),
                              [&](const Pending& x) { return same(x.in); });
        if (p != pending_.end()) {
            held_.push_back(Held{p->conn, std::move(p->in), std::move(ask), now, now});
            pending_.erase(p);
            inDoubt_.add();
            ++nInDoubt_;
            resolverCv_.notify_all();
            return;
        }
        for (Held& h : held_) {
            if (same(h.in)) {
                for (std::string& a : ask) {
                    if (std::find(h.ask.begin(), h.ask.end(), a) == h.ask.end()) {
                        h.ask.push_back(std::move(a));
                    }
                }
                return;
            }
        }
    }

    void pushClose(mp_ws_conn* c) {
        std::lock_guard<std::mutex> lock(pushMu_);
        conns_.erase(c);
        // Not merged yet and now not acknowledgeable: the slave sends them to the master again.
        pending_.erase(std::remove_if(pending_.begin(), pending_.end(),
                                      [c](const Pending& p) { return p.conn == c; }),
                       pending_.end());
        held_.erase(
            std::remove_if(held_.begin(), held_.end(), [c](const Held& h) { return h.conn == c; }),
            held_.end());
    }

    static Key keyOf(const mp::cluster::Incoming& in) { return Key{in.node, in.started, in.seq}; }

    // The connection of a report waiting here (pending or held), or null.
    mp_ws_conn** openOwner(const Key& key) {  // under pushMu_
        auto same = [&key](const mp::cluster::Incoming& in) { return keyOf(in) == key; };
        for (Pending& p : pending_) {
            if (same(p.in)) {
                return &p.conn;
            }
        }
        for (Held& h : held_) {
            if (same(h.in)) {
                return &h.conn;
            }
        }
        return nullptr;
    }

    // Acknowledgements are cumulative: never past a report of this connection that is open.
    void ackUpTo(mp_ws_conn* c, Conn& conn, uint64_t seq) {  // under pushMu_
        conn.ackable = std::max(conn.ackable, seq);
        uint64_t upTo = conn.ackable;
        if (!conn.open.empty()) {
            upTo = std::min(upTo, *conn.open.begin() - 1);
        }
        if (upTo > conn.acked) {
            conn.acked = upTo;
            std::string a = "{\"ack\":" + std::to_string(upTo) + "}";
            host().api()->ws_send(c, MP_WS_TEXT,
                                  mp_bytes{reinterpret_cast<const uint8_t*>(a.data()), a.size()});
        }
    }

    // /cluster/merged?node=&started=&seqs=1,2,..&asker=HOST:PORT - another master holds these
    // reports of a slave and asks whether this one merged them. "released" is a promise: this
    // node will not merge them (if they come here, it asks the asker first).
    void mergedQuery(const mp_http_request* req, mp_http_response* resp) {
        std::string node = host().param(req, "node").value_or("");
        std::string started = host().param(req, "started").value_or("");
        std::string seqs = host().param(req, "seqs").value_or("");
        std::string asker = host().param(req, "asker").value_or("");
        uint64_t run = 0;
        auto [e1, ec1] = std::from_chars(started.data(), started.data() + started.size(), run);
        std::vector<uint64_t> list;
        std::string askerIp;
        uint16_t askerPort = 0;
        bool ok = !node.empty() && node.size() <= 256 && parseHostPort(asker, askerIp, askerPort) &&
                  ec1 == std::errc() && e1 == started.data() + started.size();
        for (size_t at = 0; ok && at <= seqs.size();) {
            size_t comma = std::min(seqs.find(',', at), seqs.size());
            uint64_t v = 0;
            auto [e, ec] = std::from_chars(seqs.data() + at, seqs.data() + comma, v);
            ok = ec == std::errc() && e == seqs.data() + comma && v != 0 &&
                 list.size() < kMaxAskSeqs;
            list.push_back(v);
            at = comma + 1;
        }
        if (!ok) {
            host().replyJson(resp, 400,
                             errorJson("node, started, asker (IPv4:PORT) and seqs (up to 256 "
                                       "numbers, comma separated) are required"));
            return;
        }
        std::string out[3];
        {
            std::lock_guard<std::mutex> lock(pushMu_);
            for (uint64_t seq : list) {
                Key key{node, run, seq};
                int k = mergedSet_.count(key) != 0 ? 0 : openOwner(key) != nullptr ? 1 : 2;
                if (k == 2) {
                    release(key, asker);
                }
                out[k] += (out[k].empty() ? "" : ",") + std::to_string(seq);
            }
        }
        host().replyJson(resp, 200,
                         "{\"merged\":[" + out[0] + "],\"pending\":[" + out[1] +
                             "],\"released\":[" + out[2] + "]}");
    }

    void release(const Key& key, const std::string& asker) {  // under pushMu_
        if (released_.emplace(key, asker).second) {
            releasedOrder_.push_back(key);
            if (releasedOrder_.size() > 100000) {
                released_.erase(releasedOrder_.front());
                releasedOrder_.pop_front();
            }
        }
    }

    // Asks `server` about some held reports of one slave run.
    std::map<uint64_t, Answer> askMaster(const std::string& server, const std::string& node,
                                         uint64_t started, const std::vector<uint64_t>& seqs) {
        std::map<uint64_t, Answer> out;
        auto all = [&](Answer a) {
            for (uint64_t s : seqs) {
                out[s] = a;
            }
            return out;
        };
        std::string ip;
        uint16_t port = 0;
        if (!parseHostPort(server, ip, port)) {
            return all(Answer::Gone);
        }
        std::string path = "/cluster/merged?started=" + std::to_string(started) + "&node=";
        Poco::URI::encode(node, "&=+#%?/", path);
        path += "&asker=" + selfHttp_ + "&seqs=";
        for (size_t i = 0; i < seqs.size(); ++i) {
            path += (i == 0 ? "" : ",") + std::to_string(seqs[i]);
        }
        if (!token_.empty()) {
            path += "&token=" + token_;
        }
        std::string body;
        try {
            // From this node's address, as its gossip and its pushes.
            Poco::Net::StreamSocket sock(Poco::Net::SocketAddress::IPv4);
            sock.impl()->bind(Poco::Net::SocketAddress(opt_.bindIp, 0));
            sock.connect(Poco::Net::SocketAddress(ip, port), Poco::Timespan(1, 0));
            Poco::Net::HTTPClientSession session(sock);
            session.setTimeout(Poco::Timespan(2, 0));
            Poco::Net::HTTPRequest rq(Poco::Net::HTTPRequest::HTTP_GET, path,
                                      Poco::Net::HTTPMessage::HTTP_1_1);
            rq.setHost(ip, port);
            session.sendRequest(rq);
            Poco::Net::HTTPResponse rs;
            std::istream& is = session.receiveResponse(rs);
            if (rs.getStatus() != Poco::Net::HTTPResponse::HTTP_OK) {
                host().warn("in-doubt reports: " + server + " answered " +
                            std::to_string(static_cast<int>(rs.getStatus())) + ": taken as gone");
                return all(Answer::Gone);
            }
            char buf[4096];
            while (is.read(buf, sizeof buf) || is.gcount() > 0) {
                body.append(buf, static_cast<size_t>(is.gcount()));
                if (body.size() > (1 << 20)) {
                    return all(Answer::Gone);
                }
            }
        } catch (const Poco::Net::ConnectionRefusedException&) {
            return all(Answer::Gone);  // nobody listens there: that master is gone
        } catch (const std::exception&) {
            return all(Answer::Unreachable);  // timed out, reset: ask again later
        }
        try {
            Poco::JSON::Object::Ptr o =
                Poco::JSON::Parser().parse(body).extract<Poco::JSON::Object::Ptr>();
            const std::pair<const char*, Answer> kinds[] = {{"merged", Answer::Merged},
                                                            {"pending", Answer::Pending},
                                                            {"released", Answer::Released}};
            for (const auto& [name, answer] : kinds) {
                Poco::JSON::Array::Ptr a = o->getArray(name);
                for (size_t i = 0; !a.isNull() && i < a->size(); ++i) {
                    out[a->getElement<uint64_t>(static_cast<unsigned>(i))] = answer;
                }
            }
        } catch (const std::exception&) {
            return all(Answer::Gone);
        }
        return out;
    }

    // Resolves held reports: groups them by (server to ask, slave run), asks, applies.
    void resolveLoop() {
        while (running_.load()) {
            struct Question {
                std::string server, node;
                uint64_t started = 0;
                std::vector<uint64_t> seqs;
            };
            std::vector<Question> questions;
            {
                std::unique_lock<std::mutex> lock(pushMu_);
                resolverCv_.wait_for(lock, std::chrono::milliseconds(200));
                auto now = Clock::now();
                for (const Held& h : held_) {
                    if (h.next > now) {
                        continue;
                    }
                    auto q = std::find_if(questions.begin(), questions.end(), [&](auto& x) {
                        return x.server == h.ask.front() && x.node == h.in.node &&
                               x.started == h.in.started && x.seqs.size() < kMaxAskSeqs;
                    });
                    if (q == questions.end()) {
                        questions.push_back(Question{h.ask.front(), h.in.node, h.in.started, {}});
                        q = std::prev(questions.end());
                    }
                    q->seqs.push_back(h.in.seq);
                }
            }
            for (const Question& q : questions) {
                if (!running_.load()) {
                    break;
                }
                auto answers = askMaster(q.server, q.node, q.started, q.seqs);
                std::lock_guard<std::mutex> lock(pushMu_);
                settle(q.server, q.node, q.started, answers);
            }
        }
    }

    void settle(const std::string& server, const std::string& node, uint64_t started,
                const std::map<uint64_t, Answer>& answers) {  // under pushMu_
        auto now = Clock::now();
        for (auto it = held_.begin(); it != held_.end();) {
            Held& h = *it;
            auto a = answers.find(h.in.seq);
            if (h.in.node != node || h.in.started != started || h.ask.empty() ||
                h.ask.front() != server || a == answers.end()) {
                ++it;
                continue;
            }
            bool mergeHere = false;
            switch (a->second) {
                case Answer::Merged: {
                    settledElsewhere_.add();
                    ++nSettledElsewhere_;
                    auto c = conns_.find(h.conn);
                    if (c != conns_.end()) {
                        c->second.open.erase(h.in.seq);
                        ackUpTo(h.conn, c->second, h.in.seq);
                    }
                    it = held_.erase(it);
                    continue;
                }
                case Answer::Pending:
                    h.next = now + std::chrono::milliseconds(500);
                    break;
                case Answer::Released:
                case Answer::Gone:
                    h.ask.erase(h.ask.begin());
                    mergeHere = h.ask.empty();
                    break;
                case Answer::Unreachable:
                    h.next = now + std::chrono::seconds(1);
                    if (now - h.since >= holdLimit_) {
                        host().warn("in-doubt report " + h.in.node + "#" +
                                    std::to_string(h.in.seq) + ": " + server +
                                    " unreachable for in_doubt_hold_s: merged here");
                        forced_.add();
                        ++nForced_;
                        mergeHere = true;
                    }
                    break;
            }
            if (mergeHere) {  // stays open on its connection until emitted
                ++nSettledHere_;
                pending_.push_back(Pending{h.conn, std::move(h.in)});
                it = held_.erase(it);
                continue;
            }
            ++it;
        }
    }

    // (node, run, seq) merged here, bounded: the oldest are forgotten first.
    void remember(const std::string& node, uint64_t started, uint64_t seq) {
        auto key = std::make_tuple(node, started, seq);
        if (mergedSet_.insert(key).second) {
            mergedOrder_.push_back(key);
            if (mergedOrder_.size() > 100000) {
                mergedSet_.erase(mergedOrder_.front());
                mergedOrder_.pop_front();
            }
        }
    }
    using Handler = void (GossipCluster::*)(const mp_http_request*, mp_http_response*);

    static uint16_t freePort() {
        // The kernel's choice of a free TCP port; the membership binds UDP and TCP to it.
        int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in sa{};
        sa.sin_family = AF_INET;
        socklen_t len = sizeof sa;
        uint16_t port = 0;
        if (fd >= 0 && ::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0 &&
            ::getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len) == 0) {
            port = ntohs(sa.sin_port);
        }
        if (fd >= 0) {
            ::close(fd);
        }
        return port;
    }

    void addRoute(const char* path, Handler h) {
        routes_[path] = h;
        bool ok = host().route(
            path,
            [](void* self, const mp_http_request* req, mp_http_response* resp) {
                auto* me = static_cast<GossipCluster*>(self);
                std::string p(mp::view(req->path));
                auto it = me->routes_.find(p);
                if (it == me->routes_.end()) {
                    me->host().replyJson(resp, 404, errorJson("no such endpoint"));
                    return;
                }
                if (!me->token_.empty() && me->host().param(req, "token") != me->token_) {
                    me->host().replyJson(resp, 401, errorJson("a valid token= is required"));
                    return;
                }
                if (!me->ml_) {
                    me->host().replyJson(resp, 503, errorJson("not started"));
                    return;
                }
                (me->*(it->second))(req, resp);
            },
            this);
        if (!ok) {
            throw mp::Error(std::string("cannot serve ") + path);
        }
    }

    void join(const mp_http_request* req, mp_http_response* resp) {
        std::string addr = host().param(req, "addr").value_or("");
        std::string ip;
        uint16_t port = 0;
        if (!parseHostPort(addr, ip, port)) {
            host().replyJson(resp, 400, errorJson("addr must be IPv4:PORT (the gossip port)"));
            return;
        }
        std::string error;
        if (!ml_->join(ip, port, error)) {
            host().replyJson(resp, 502, errorJson("join through " + addr + " failed: " + error));
            return;
        }
        left_ = false;
        saveSeeds();
        host().replyJson(resp, 200,
                         "{\"joined\":" + mp::jsonString(addr) +
                             ",\"members\":" + std::to_string(ml_->members().size()) + "}");
    }

    void leave(const mp_http_request* /*req*/, mp_http_response* resp) {
        if (!left_.exchange(true)) {
            ml_->leave();
        }
        host().replyJson(resp, 200, "{\"left\":true}");
    }

    // Key rotation at run time, as `serf keys` does it (the probes do not answer serf's key
    // queries: each node gets the calls): install, use, remove; without an operation, the count.
    void keys(const mp_http_request* req, mp_http_response* resp) {
        if (opt_.keys.empty()) {
            host().replyJson(resp, 409, errorJson("this node runs without encryption (keys)"));
            return;
        }
        mp::gossip::Keyring ring = ml_->keys();
        const char* ops[] = {"install", "use", "remove"};
        std::string op;
        std::string value;
        for (const char* o : ops) {
            if (auto v = host().param(req, o)) {
                if (!op.empty()) {
                    host().replyJson(resp, 400, errorJson("one of install, use, remove at a time"));
                    return;
                }
                op = o;
                value = *v;
            }
        }
        if (!op.empty()) {
            mp::gossip::Bytes key;
            if (!mp::gossip::Keyring::fromBase64(value, key) ||
                (key.size() != 16 && key.size() != 24 && key.size() != 32)) {
                host().replyJson(resp, 400,
                                 errorJson("a key is base64 of 16, 24 or 32 bytes (serf keygen)"));
                return;
            }
            bool ok = op == "install" ? ring.add(key)
                      : op == "use"   ? ring.use(key)
                                      : ring.remove(key);
            if (!ok) {
                host().replyJson(
                    resp, 409,
                    errorJson(op == "use" ? "that key is not installed"
                                          : "that key is not installed, or is the primary"));
                return;
            }
            ml_->setKeys(ring);
            host().info("gossip keyring: " + op + " (" + std::to_string(ring.size()) + " keys)");
        }
        host().replyJson(resp, 200,
                         "{\"keys\":" + std::to_string(ring.size()) +
                             (op.empty() ? "" : ",\"done\":" + mp::jsonString(op)) + "}");
    }

    void listNodes(const mp_http_request* /*req*/, mp_http_response* resp) {
        auto members = ml_->members();
        std::string master = masterOf(members);
        auto st = ml_->stats();
        std::ostringstream o;
        o << "{\"self\":" << mp::jsonString(ml_->name())
          << ",\"group\":" << mp::jsonString(opt_.group)
          << ",\"gossip\":" << mp::jsonString(opt_.bindIp + ":" + std::to_string(ml_->port()))
          << ",\"encrypted\":" << (opt_.keys.empty() ? "false" : "true") << ",\"role\":"
          << mp::jsonString(master == ml_->name() ? "master"
                            : slave_              ? "slave"
                                                  : "standby")
          << ",\"master\":" << (master.empty() ? "null" : mp::jsonString(master))
          << ",\"members\":[";
        bool first = true;
        for (const auto& m : members) {
            o << (first ? "" : ",") << "{\"name\":" << mp::jsonString(m.name)
              << ",\"gossip\":" << mp::jsonString(m.ip + ":" + std::to_string(m.port))
              << ",\"state\":\"" << stateName(m.state) << "\",\"incarnation\":" << m.incarnation
              << ",\"since_ms\":" << m.sinceMs << ",\"self\":" << (m.self ? "true" : "false")
              << ",\"master\":" << (m.name == master ? "true" : "false") << ",\"tags\":{";
            bool ft = true;
            for (const auto& [k, v] : m.tags) {
                o << (ft ? "" : ",") << mp::jsonString(k) << ":" << mp::jsonString(v);
                ft = false;
            }
            o << "}}";
            first = false;
        }
        o << "],\"stats\":{\"udp_in\":" << st.udpIn << ",\"udp_out\":" << st.udpOut
          << ",\"tcp_in\":" << st.tcpIn << ",\"tcp_out\":" << st.tcpOut
          << ",\"bad_packets\":" << st.badPackets << ",\"decrypt_failures\":" << st.decryptFailures
          << ",\"refused_group\":" << st.refusedGroup << ",\"refused_full\":" << st.refusedFull
          << ",\"probes\":" << st.probes << ",\"probe_failures\":" << st.probeFailures
          << ",\"tcp_fallback_ok\":" << st.tcpFallbackOk << ",\"suspicions\":" << st.suspicions
          << ",\"refutations\":" << st.refutations << ",\"deaths\":" << st.deaths
          << ",\"push_pulls\":" << st.pushPulls << ",\"awareness\":" << st.awareness << "}";
        {
            std::lock_guard<std::mutex> lock(pushMu_);
            o << ",\"reports\":{\"pending\":" << pending_.size() << ",\"held\":" << held_.size()
              << ",\"in_doubt\":" << nInDoubt_ << ",\"settled_elsewhere\":" << nSettledElsewhere_
              << ",\"settled_here\":" << nSettledHere_ << ",\"forced\":" << nForced_
              << ",\"released\":" << released_.size() << "}";
        }
        o << "}";
        host().replyJson(resp, 200, o.str());
    }

    static std::string masterOf(const std::vector<mp::gossip::MemberInfo>& members) {
        const mp::gossip::MemberInfo* best = nullptr;
        uint64_t bestEpoch = 0;
        for (const auto& m : members) {
            if (m.state != mp::gossip::State::Alive) {  // a suspect master hands over at once
                continue;
            }
            auto role = m.tags.find("mp_role");
            if (role == m.tags.end() || role->second != "master") {
                continue;
            }
            uint64_t epoch = UINT64_MAX;
            auto e = m.tags.find("mp_epoch");
            if (e != m.tags.end()) {
                std::from_chars(e->second.data(), e->second.data() + e->second.size(), epoch);
            }
            if (best == nullptr || epoch < bestEpoch ||
                (epoch == bestEpoch && m.name < best->name)) {
                best = &m;
                bestEpoch = epoch;
            }
        }
        return best == nullptr ? "" : best->name;
    }

    void membershipChanged() {
        auto members = ml_->members();
        std::string master = masterOf(members);
        if (pusher_) {
            std::vector<std::string> servers;
            for (const auto& m : members) {
                auto http = m.tags.find("mp_http");
                if (m.name == master && http != m.tags.end()) {
                    servers.push_back(http->second);
                }
            }
            try {
                pusher_->setServers(servers);
            } catch (const std::exception& e) {
                host().warn(std::string("master's mp_http tag: ") + e.what());
            }
        }
        std::lock_guard<std::mutex> lock(mu_);
        if (master != lastMaster_) {
            host().info("master: " + (master.empty() ? std::string("none") : master) +
                        (master == ml_->name() ? " (this node)" : ""));
            lastMaster_ = master;
        }
        dirtySeeds_ = true;
    }

    // Seeds: the gossip addresses of the other alive members, written atomically.
    void saveSeeds() {
        std::set<std::string> seeds;
        for (const auto& m : ml_->members()) {
            if (!m.self && m.state == mp::gossip::State::Alive) {
                seeds.insert(m.ip + ":" + std::to_string(m.port));
            }
        }
        if (seeds.empty()) {
            return;  // alone: keep the old seeds, they are how this node gets back
        }
        std::string tmp = seedsFile_ + ".tmp";
        {
            std::ofstream f(tmp, std::ios::trunc);
            if (!f) {
                host().warn("cannot write " + tmp);
                return;
            }
            for (const auto& s : seeds) {
                f << "seed " << s << "\n";
            }
        }
        if (std::rename(tmp.c_str(), seedsFile_.c_str()) != 0) {
            host().warn("cannot rename " + tmp + " to " + seedsFile_);
        }
    }

    std::vector<std::string> loadSeeds() {
        std::vector<std::string> out;
        std::ifstream f(seedsFile_);
        std::string line;
        while (std::getline(f, line)) {
            if (line.rfind("seed ", 0) == 0) {
                out.push_back(line.substr(5));
            }
        }
        return out;
    }

    // A node alone in its cluster (just started, or cut off) rejoins through its saved seeds.
    void seedLoop() {
        auto next = std::chrono::steady_clock::now();
        while (running_.load()) {
            std::this_thread::sleep_for(std::chrono::milliseconds(100));
            bool dirty = false;
            {
                std::lock_guard<std::mutex> lock(mu_);
                std::swap(dirty, dirtySeeds_);
            }
            if (dirty) {
                saveSeeds();
            }
            if (std::chrono::steady_clock::now() < next || left_.load()) {
                continue;
            }
            next = std::chrono::steady_clock::now() + reconnect_;
            size_t alive = 0;
            auto members = ml_->members();
            auto now = std::chrono::steady_clock::now();
            for (const auto& m : members) {
                alive += m.state == mp::gossip::State::Alive ? 1 : 0;
                if (m.state == mp::gossip::State::Dead) {
                    failed_.try_emplace(m.name, m.ip + ":" + std::to_string(m.port), now);
                } else if (!m.self) {
                    failed_.erase(m.name);
                }
            }
            // Failed members are dialled again, as serf does: after a partition heals, one
            // push-pull across it merges the two views (each side refutes its death).
            for (auto it = failed_.begin(); it != failed_.end();) {
                bool gone = now - it->second.second > std::chrono::hours(24) ||
                            (failed_.size() > 1024 && it == failed_.begin());
                it = gone ? failed_.erase(it) : std::next(it);
            }
            if (!failed_.empty()) {
                auto it = failed_.begin();
                std::advance(it,
                             static_cast<long>(static_cast<size_t>(std::rand()) % failed_.size()));
                std::string ip;
                uint16_t port = 0;
                std::string error;
                if (parseHostPort(it->second.first, ip, port) && ml_->join(ip, port, error)) {
                    host().info("reconnected to failed member " + it->first);
                }
            }
            if (alive > 1) {
                continue;
            }
            for (const std::string& s : loadSeeds()) {
                std::string ip;
                uint16_t port = 0;
                std::string error;
                if (!running_.load() || !parseHostPort(s, ip, port) ||
                    (ip == opt_.bindIp && port == ml_->port())) {
                    continue;
                }
                if (ml_->join(ip, port, error)) {
                    host().info("rejoined through seed " + s);
                    break;
                }
            }
        }
    }

    bool slave_;
    std::string token_;
    std::chrono::seconds reconnect_;
    mp::gossip::Options opt_;
    std::string seedsFile_;
    std::unique_ptr<mp::gossip::Membership> ml_;
    std::map<std::string, Handler> routes_;
    std::atomic<bool> running_{false};
    std::atomic<bool> left_{false};
    std::thread seeder_;
    std::mutex mu_;
    std::string lastMaster_;
    // Members seen dead (not left): name -> (gossip address, since); the seed thread's only.
    std::map<std::string, std::pair<std::string, std::chrono::steady_clock::time_point>> failed_;
    bool dirtySeeds_ = false;
    size_t bufferReports_;
    size_t maxTemplates_;
    std::chrono::seconds holdLimit_;
    mp::Counter merged_, duplicates_, rejected_, pushed_, inDoubt_, settledElsewhere_, forced_;
    std::string selfHttp_;
    std::unique_ptr<mp::ws::Pusher> pusher_;
    std::atomic<uint64_t> ackedSeen_{0};
    std::mutex pushMu_;
    std::map<mp_ws_conn*, Conn> conns_;
    std::vector<Pending> pending_;
    std::vector<Held> held_;
    uint64_t nInDoubt_ = 0, nSettledElsewhere_ = 0, nSettledHere_ = 0, nForced_ = 0;
    std::set<Key> mergedSet_;
    std::deque<Key> mergedOrder_;
    std::map<Key, std::string> released_;  // promised not to merge: key -> the asker
    std::deque<Key> releasedOrder_;
    std::condition_variable resolverCv_;
    std::thread resolver_;
};

}  // namespace

MP_DECLARE_PLUGIN(GossipCluster, MP_KIND_CLUSTER, "cluster-gossip", "0.3.0",
                  "Gossip cluster: SWIM membership (memberlist wire) and master election", kProps,
                  0)

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
// Exactly once also when an acknowledgement is lost (a partition cut it, the slave moved on
// first): the report comes to the next master announced as resent, and is held there until the
// earlier master says whether it merged it. The inbox (inbox.hpp) does all of that.
#include <arpa/inet.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <mp/clock.hpp>
#include <mp/files.hpp>
#include <mp/original_api.hpp>
#include <mp/pusher.hpp>
#include <mp/report_merge.hpp>
#include <mp/sdk.hpp>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include "inbox.hpp"
#include "membership.hpp"

namespace {

// clang-format off
const mp_property kProps[] = {
    {"slave", MP_PROP_BOOL, 0, "false", "this node is a slave (never master-eligible)", 0, 0, nullptr},
    {"group", MP_PROP_STRING, 0, "", "cluster name: nodes of another group are refused", 0, 0, nullptr},
    {"port", MP_PROP_INT, 0, "0", "gossip bind port, UDP and TCP (0: random)", 0, 65535, nullptr},
    {"bind", MP_PROP_STRING, 0, "", "gossip bind address (IPv4; default: serveraddress, which is 0.0.0.0, every interface, unless set, as the original)", 0, 0, nullptr},
    {"advertise", MP_PROP_STRING, 0, "", "the address other members reach this one at (IPv4; default: bind, or when that is 0.0.0.0 the first IPv4 address of an interface that is up and not loopback, else 127.0.0.1)", 0, 0, nullptr},
    {"api", MP_PROP_STRING, 0, "native", "shape of the /cluster answers: native JSON, or the original probe's (listnodes an array of {name, ip, gossip_port, meta}, join/leave plain \"OK\"); ?format= on a request overrides it", 0, 0, mp::original::kApiValues},
    {"name", MP_PROP_STRING, 0, "", "member name, unique in the cluster (default: ADVERTISE:PORT)", 0, 0, nullptr},
    {"profile", MP_PROP_STRING, 0, "lan", "memberlist timings: lan, wan or local", 0, 0, nullptr},
    {"keys", MP_PROP_STRING_LIST, MP_PROP_SECRET, "", "base64 AES keys (16/24/32 bytes), first one primary", 0, 0, nullptr},
    {"seeds_file", MP_PROP_STRING, 0, "", "where known members are saved (default: gossip-seeds-NAME.txt next to the config file, NAME the member name made file-safe)", 0, 0, nullptr},
    {"max_members", MP_PROP_INT, 0, "1024", "members known at once, dead and left ones included; new ones beyond are refused and counted", 1, 4096, nullptr},
    {"insecure", MP_PROP_BOOL, 0, "false", "allow gossip without keys on a host that has auth tokens: then any host that reaches the gossip port can join, claim the master role and receive the slaves' reports", 0, 0, nullptr},
    {"reconnect_period_s", MP_PROP_INT, 0, "10", "how often failed members are redialled, and a node alone rejoins through its seeds", 1, 86400, nullptr},
    {"buffer_reports", MP_PROP_INT, 0, "600", "a slave's reports kept until a master acknowledges them", 1, 100000, nullptr},
    {"max_templates", MP_PROP_INT, 0, "10000", "templates in a merged report; further ones are counted as evicted", 1, 10000000, nullptr},
    {"in_doubt_hold_s", MP_PROP_INT, 0, "300", "a resent report whose earlier master cannot be asked is held this long, then merged", 1, 86400, nullptr},
    {nullptr, 0, 0, nullptr, nullptr, 0, 0, nullptr},
};
// clang-format on

using mp::gossip::parseHostPort;

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

uint64_t epochMs() { return mp::wallClockNs() / 1'000'000ULL; }

class GossipCluster : public mp::Plugin {
  public:
    GossipCluster(mp::Host host, const mp::Config& cfg)
        : Plugin(host),
          slave_(cfg.boolean("slave")),
          api_(*mp::original::parseApi(cfg.str("api"))),
          peerAuthorization_(host.get("auth.peer_authorization").value_or("")),
          tls_{host.get("tls.ca_file").has_value(), host.get("tls.ca_file").value_or("")},
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
            opt_.bindIp = sa.empty() ? "0.0.0.0" : sa;
        }
        in_addr a{};
        if (inet_pton(AF_INET, opt_.bindIp.c_str(), &a) != 1) {
            throw mp::Error("cluster bind '" + opt_.bindIp + "' is not an IPv4 address");
        }
        opt_.advertiseIp = cfg.str("advertise");
        if (opt_.advertiseIp.empty()) {
            opt_.advertiseIp = opt_.bindIp == "0.0.0.0" ? mp::gossip::routableIpv4() : opt_.bindIp;
        }
        if (inet_pton(AF_INET, opt_.advertiseIp.c_str(), &a) != 1 ||
            !mp::gossip::unusableAddress(opt_.advertiseIp).empty()) {
            throw mp::Error("cluster advertise '" + opt_.advertiseIp +
                            "' is not an IPv4 address other members can reach");
        }
        sourceIp_ = mp::gossip::sourceIpFor(opt_.bindIp, opt_.advertiseIp);
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
        opt_.maxMembers = static_cast<size_t>(cfg.i64("max_members"));
        // Without keys nothing a peer sends is authenticated (see the README's threat model).
        // A host that asks callers for tokens must not have a gossip port that takes anyone.
        if (opt_.keys.empty() && host.get("auth.mode").value_or("protected") == "tokens" &&
            !cfg.boolean("insecure")) {
            throw mp::Error(
                "cluster-gossip without keys on a host with auth tokens: any host that reaches "
                "the gossip port could join, become master and receive the slaves' reports. Set "
                "keys (serf keygen), or insecure: true to accept that");
        }
        seedsFile_ = cfg.str("seeds_file");
        configDir_ = host.get("state.dir").value_or(".");
        if (!slave_) {
            mp::gossip::InboxOptions io;
            io.bindIp = sourceIp_;
            io.authorization = peerAuthorization_;
            io.tls = tls_;
            io.holdLimit = holdLimit_;
            inbox_ = std::make_unique<mp::gossip::Inbox>(
                io,
                mp::gossip::InboxCounters{merged_, duplicates_, rejected_, inDoubt_,
                                          settledElsewhere_, forced_},
                [this](mp_ws_conn* c, const std::string& text) {
                    this->host().api()->ws_send(
                        c, MP_WS_TEXT,
                        mp_bytes{reinterpret_cast<const uint8_t*>(text.data()), text.size()});
                },
                [this](mp_ws_conn* c) {
                    const char why[] = "inbox full: send again later";
                    this->host().api()->ws_close(c, 1013, mp_str{why, sizeof why - 1});
                },
                [this](int level, const std::string& msg) {  // with node names from peers
                    level == 0 ? this->host().info(mp::printable(msg, 1024))
                               : this->host().warn(mp::printable(msg, 1024));
                },
                [this](const std::string& http) {
                    if (!ml_) {
                        return false;
                    }
                    for (const auto& m : ml_->members()) {
                        auto role = m.tags.find("mp_role");
                        auto h = m.tags.find("mp_http");
                        if (role != m.tags.end() && role->second == "master" && h != m.tags.end() &&
                            h->second == http) {
                            return true;
                        }
                    }
                    return false;
                });
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
            h.role = MP_ROLE_PEER;  // slaves push with the cluster's token
            if (host.api()->ws_endpoint(host.raw(), "/cluster/push", &h) != MP_OK) {
                throw mp::Error("cannot serve /cluster/push");
            }
        }
        routes_.add("/cluster/join", &GossipCluster::join, MP_ROLE_ADMIN, MP_HTTP_POST);
        routes_.add("/cluster/leave", &GossipCluster::leave, MP_ROLE_ADMIN, MP_HTTP_POST);
        routes_.add("/cluster/listnodes", &GossipCluster::listNodes, MP_ROLE_READ, MP_HTTP_GET);
        // GET: how many keys; POST install=|use=|remove=: a rotation step.
        routes_.add("/cluster/keys", &GossipCluster::keys, MP_ROLE_ADMIN,
                    MP_HTTP_GET | MP_HTTP_POST);
        if (!slave_) {
            routes_.add("/cluster/merged", &GossipCluster::mergedQuery, MP_ROLE_PEER, MP_HTTP_GET);
        }
    }

    ~GossipCluster() override { stop(); }

    void start() override {
        opt_.tags["mp_role"] = slave_ ? "slave" : "master";
        opt_.tags["mp_epoch"] = std::to_string(epochMs());
        std::string http = host().get("server.port").value_or("0");
        opt_.tags["mp_http"] = opt_.advertiseIp + ":" + http;

        if (!opt_.group.empty()) {
            opt_.tags["group"] = opt_.group;
        }
        if (opt_.port == 0) {
            opt_.port = freePort();  // the default name includes it, so it is chosen here
        }
        if (opt_.name.empty()) {
            opt_.name = opt_.advertiseIp + ":" + std::to_string(opt_.port);
        }
        if (seedsFile_.empty()) {
            // One file per node, so that two nodes configured in one folder never share one.
            seedsFile_ = configDir_ + "/gossip-seeds-" + fileSafe(opt_.name) + ".txt";
        }
        if (slave_) {
            mp::push::PusherOptions po;
            po.path = "/cluster/push";
            po.authorization = peerAuthorization_;  // the cluster's token, in a header
            po.tls = tls_;                          // tls.ca_file: masters over TLS
            po.bufferReports = bufferReports_;
            // From this node's address, as its gossip (and as the inbox's asker checks).
            po.sourceIp = sourceIp_;
            po.ack = mp::push::AckMode::Message;
            po.reconnectPeriod = std::chrono::milliseconds(500);
            // A master that is still alive (a view change, a healed partition) acknowledges
            // after its next report: wait for that before the new master gets the rest.
            po.retargetGrace = std::chrono::milliseconds(std::max<int64_t>(
                2000, 2 * std::stoll(host().get("interval.ms").value_or("1000"))));
            po.drainTimeout = std::chrono::milliseconds(2000);
            po.announceResends = true;  // so that a new master can ask the old one
            pusher_ = std::make_unique<mp::push::Pusher>(
                po,
                [this](int level, const std::string& msg) {
                    level == MP_LOG_WARN ? host().warn(msg) : host().info(msg);
                },
                [this](const mp::push::PusherStats& s) {
                    uint64_t acked = s.acked;
                    uint64_t before = ackedSeen_.exchange(acked);
                    if (acked > before) {
                        pushed_.add(acked - before);
                    }
                });
            pusher_->start();
        }
        // Its lines carry member names and addresses as peers sent them: made log-safe.
        ml_ = std::make_unique<mp::gossip::Membership>(
            opt_, [this](int level, const std::string& msg) {
                if (level == 0) {
                    host().info(mp::printable(msg, 1024));
                } else {
                    host().warn(mp::printable(msg, 1024));
                }
            });
        ml_->onChange([this] { membershipChanged(); });
        try {
            ml_->start();
        } catch (const std::exception& e) {
            throw mp::Error(e.what());
        }
        host().info("gossip member " + ml_->name() + " on " + opt_.bindIp + ":" +
                    std::to_string(ml_->port()) + ", reached at " + opt_.advertiseIp +
                    (slave_ ? " (slave)" : " (master-eligible)") +
                    (opt_.keys.empty() ? "" : ", encrypted"));
        if (opt_.keys.empty()) {
            host().warn("SECURITY: gossip on " + opt_.bindIp + ":" + std::to_string(ml_->port()) +
                        " runs WITHOUT encryption keys: anyone who can send packets to it can "
                        "join the cluster, make itself master and receive the slaves' reports. "
                        "Set keys (serf keygen) on every member");
        }
        membershipChanged();  // the master known so far (none yet, alone)
        if (inbox_) {
            inbox_->setSelf(opt_.tags["mp_http"]);
            inbox_->start();
        }
        running_ = true;
        seeder_ = std::thread([this] { seedLoop(); });
    }

    void stop() override {
        if (!running_.exchange(false)) {
            return;
        }
        if (ml_) {
            ml_->cancelDials();  // a join in progress (seeds, a failed member) ends at once
        }
        if (seeder_.joinable()) {
            seeder_.join();
        }
        if (inbox_) {
            inbox_->stop();
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
                pusher_->push(ev.seq, mp::push::Encoded{MP_WS_TEXT, own});
            }
            return host().emit(MP_EVENT_REPORT, own, ev.ts_ns, ev.seq);
        }
        // Master-eligible: this node's report with every slave report received since the last.
        std::vector<mp::report::Incoming> in = inbox_->take();
        if (in.empty()) {
            return host().emit(MP_EVENT_REPORT, own, ev.ts_ns, ev.seq);
        }
        mp::report::MergeResult r;
        try {
            r = mp::report::mergeReports(own, in, {}, maxTemplates_);
        } catch (const std::exception& e) {
            host().warn(std::string("cannot merge: ") + e.what());
            inbox_->putBack();  // they wait for the next report
            return host().emit(MP_EVENT_REPORT, own, ev.ts_ns, ev.seq);
        }
        merged_.add(r.merged);
        rejected_.add(r.rejected);
        mp_status st = host().emit(MP_EVENT_REPORT, r.json, ev.ts_ns, ev.seq);
        inbox_->emitted();  // now the slaves may forget them
        return st;
    }

  private:
    mp_status pushOpen(mp_ws_conn* c, const mp_http_request* /*req*/) {
        if (!inbox_) {
            return MP_EAGAIN;
        }
        inbox_->opened(c);
        return MP_OK;
    }

    void pushMessage(mp_ws_conn* c, uint32_t /*op*/, mp_bytes data) {
        if (inbox_) {
            inbox_->message(c, std::string(reinterpret_cast<const char*>(data.data), data.len));
        }
    }

    void pushClose(mp_ws_conn* c) {
        if (inbox_) {
            inbox_->closed(c);
        }
    }

    // /cluster/merged?node=&started=&seqs=1,2,..&asker=HOST:PORT (inbox.hpp).
    void mergedQuery(const mp_http_request* req, mp_http_response* resp) {
        if (!inbox_) {
            host().replyJson(resp, 503, mp::errorJson("not started"));
            return;
        }
        std::string out;
        int status = inbox_->answer(host().param(req, "node").value_or(""),
                                    host().param(req, "started").value_or(""),
                                    host().param(req, "seqs").value_or(""),
                                    host().param(req, "asker").value_or(""), callerIp(req), out);
        host().replyJson(resp, status, status == 200 ? out : mp::errorJson(out));
    }

    // The caller's address without its port ("1.2.3.4:5" -> "1.2.3.4").
    static std::string callerIp(const mp_http_request* req) {
        std::string_view r = mp::view(req->remote_addr);
        return std::string(r.substr(0, r.rfind(':')));
    }

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

    // Routes (routes_) run once start() has returned: the membership (ml_) exists.
    void join(const mp_http_request* req, mp_http_response* resp) {
        const auto api = mp::original::requested(host(), req, api_);
        auto refuse = [&](int status, const std::string& why) {
            mp::original::replyError(host(), resp, api, status, why);
        };
        std::string addr = host().param(req, "addr").value_or("");
        std::string ip;
        uint16_t port = 0;
        if (!parseHostPort(addr, ip, port)) {
            refuse(400, "addr must be IPv4:PORT (the gossip port)");
            return;
        }
        if (std::string why = mp::gossip::unusableAddress(ip); !why.empty()) {
            refuse(400, ip + " is " + why + ": nobody to join");
            return;
        }
        if (ml_->isSelf(ip, port)) {
            refuse(409, addr + " is this node's own gossip address");
            return;
        }
        std::string error;
        if (!ml_->join(ip, port, error)) {
            refuse(502, "join through " + addr + " failed: " + error);
            return;
        }
        left_ = false;
        saveSeeds();
        mp::original::replyDone(host(), resp, api,
                                "{\"joined\":" + mp::jsonString(addr) +
                                    ",\"members\":" + std::to_string(ml_->members().size()) + "}");
    }

    void leave(const mp_http_request* req, mp_http_response* resp) {
        const auto api = mp::original::requested(host(), req, api_);
        if (!left_.exchange(true)) {
            ml_->leave();
        }
        mp::original::replyDone(host(), resp, api, "{\"left\":true}");
    }

    // Key rotation at run time, as `serf keys` does it (the probes do not answer serf's key
    // queries: each node gets the calls): install, use, remove; without an operation, the count.
    void keys(const mp_http_request* req, mp_http_response* resp) {
        if (opt_.keys.empty()) {
            host().replyJson(resp, 409, mp::errorJson("this node runs without encryption (keys)"));
            return;
        }
        // One rotation step at a time: each reads the keyring, changes it and sets it.
        std::lock_guard<std::mutex> rotation(keysMu_);
        mp::gossip::Keyring ring = ml_->keys();
        const char* ops[] = {"install", "use", "remove"};
        std::string op;
        std::string value;
        for (const char* o : ops) {
            if (auto v = host().param(req, o)) {
                if (!op.empty()) {
                    host().replyJson(resp, 400,
                                     mp::errorJson("one of install, use, remove at a time"));
                    return;
                }
                op = o;
                value = *v;
            }
        }
        if (!op.empty() && mp::view(req->method) != "POST") {
            host().replyJson(resp, 405, mp::errorJson("a key rotation step is a POST"));
            return;
        }
        if (!op.empty()) {
            mp::gossip::Bytes key;
            if (!mp::gossip::Keyring::fromBase64(value, key) ||
                (key.size() != 16 && key.size() != 24 && key.size() != 32)) {
                host().replyJson(
                    resp, 400,
                    mp::errorJson("a key is base64 of 16, 24 or 32 bytes (serf keygen)"));
                return;
            }
            bool ok = op == "install" ? ring.add(key)
                      : op == "use"   ? ring.use(key)
                                      : ring.remove(key);
            if (!ok) {
                host().replyJson(
                    resp, 409,
                    mp::errorJson(op == "use" ? "that key is not installed"
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

    void listNodes(const mp_http_request* req, mp_http_response* resp) {
        auto members = ml_->members();
        std::string master = masterOf(members);
        if (mp::original::requested(host(), req, api_) == mp::original::Api::Original) {
            host().replyJson(resp, 200, originalNodes(members, master));
            return;
        }
        auto st = ml_->stats();
        std::ostringstream o;
        o << "{\"self\":" << mp::jsonString(ml_->name())
          << ",\"group\":" << mp::jsonString(opt_.group)
          << ",\"gossip\":" << mp::jsonString(opt_.advertiseIp + ":" + std::to_string(ml_->port()))
          << ",\"bind\":" << mp::jsonString(opt_.bindIp + ":" + std::to_string(ml_->port()))
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
          << ",\"refused_oversize\":" << st.refusedOversize
          << ",\"refused_address\":" << st.refusedAddress << ",\"tcp_refused\":" << st.tcpRefused
          << ",\"probes\":" << st.probes << ",\"probe_failures\":" << st.probeFailures
          << ",\"tcp_fallback_ok\":" << st.tcpFallbackOk << ",\"suspicions\":" << st.suspicions
          << ",\"refutations\":" << st.refutations << ",\"deaths\":" << st.deaths
          << ",\"push_pulls\":" << st.pushPulls << ",\"awareness\":" << st.awareness << "}";
        if (inbox_) {
            auto r = inbox_->stats();
            o << ",\"reports\":{\"pending\":" << r.pending << ",\"held\":" << r.held
              << ",\"in_doubt\":" << r.inDoubt << ",\"settled_elsewhere\":" << r.settledElsewhere
              << ",\"settled_here\":" << r.settledHere << ",\"forced\":" << r.forced
              << ",\"released\":" << r.released << ",\"overloaded\":" << r.overloaded << "}";
        }
        o << "}";
        host().replyJson(resp, 200, o.str());
    }

    // The original's listnodes: its live members as {name, ip, gossip_port, meta{role, epic,
    // group, server_port}}; role master, standby (master-eligible, not the master) or slave.
    std::string originalNodes(const std::vector<mp::gossip::MemberInfo>& members,
                              const std::string& master) const {
        std::vector<mp::original::Node> nodes;
        for (const auto& m : members) {
            if (m.state != mp::gossip::State::Alive && m.state != mp::gossip::State::Suspect) {
                continue;
            }
            auto tag = [&m](const char* k) {
                auto it = m.tags.find(k);
                return it == m.tags.end() ? std::string() : it->second;
            };
            mp::original::Node n;
            n.name = m.name;
            n.ip = m.ip;
            n.gossipPort = m.port;
            n.role = m.name == master ? "master" : tag("mp_role") == "slave" ? "slave" : "standby";
            std::string epoch = tag("mp_epoch");
            std::from_chars(epoch.data(), epoch.data() + epoch.size(), n.epic);
            n.group = tag("group");
            std::string httpIp;
            if (!parseHostPort(tag("mp_http"), httpIp, n.serverPort)) {
                n.serverPort = 0;
            }
            nodes.push_back(std::move(n));
        }
        return mp::original::nodesJson(nodes);
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
                host().warn("master's mp_http tag: " + mp::printable(e.what()));
            }
        }
        bool changed = false;
        {
            std::lock_guard<std::mutex> lock(mu_);
            if (master != lastMaster_) {
                host().info(
                    "master: " + (master.empty() ? std::string("none") : mp::printable(master)) +
                    (master == ml_->name() ? " (this node)" : ""));
                lastMaster_ = master;
                changed = true;
            }
            dirtySeeds_ = true;
        }
        if (changed) {  // the host tells the other plugins (outside mu_: they may call back)
            host().set("cluster.master", master);
            host().set("cluster.role", master == ml_->name() ? "master" : "slave");
        }
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
        std::string text;
        for (const auto& s : seeds) {
            text += "seed " + s + "\n";
        }
        // The HTTP join and the seed thread both save: one at a time, the newest view last.
        std::lock_guard<std::mutex> lock(seedsMu_);
        if (std::string why = mp::writeFileAtomic(seedsFile_, text); !why.empty()) {
            host().warn("seeds file: " + why);
        }
    }

    // A member name as part of a file name: letters, digits, '.', '-' and '_' kept, anything
    // else '_', at most 128 bytes ("127.0.0.1:7946" -> "127.0.0.1_7946").
    static std::string fileSafe(const std::string& name) {
        std::string out;
        for (char c : name.substr(0, 128)) {
            bool keep = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                        (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_';
            out += keep ? c : '_';
        }
        return out.empty() || out.find_first_not_of('.') == std::string::npos ? "_" + out : out;
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
                    host().info("reconnected to failed member " + mp::printable(it->first));
                }
            }
            if (alive > 1) {
                continue;
            }
            for (const std::string& s : loadSeeds()) {
                std::string ip;
                uint16_t port = 0;
                std::string error;
                if (!running_.load() || !parseHostPort(s, ip, port) || ml_->isSelf(ip, port)) {
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
    mp::original::Api api_;
    std::string sourceIp_;           // what this node dials from (sourceIpFor: bind, advertise)
    std::string peerAuthorization_;  // "Bearer ..." of auth.cluster_token (a secret)
    mp::push::TlsClient tls_;        // tls.ca_file set: other nodes are dialled with TLS
    std::chrono::seconds reconnect_;
    mp::gossip::Options opt_;
    std::string seedsFile_;
    std::string configDir_;
    std::mutex seedsMu_;  // around writes of the seeds file
    std::mutex keysMu_;   // one /cluster/keys rotation step at a time
    std::unique_ptr<mp::gossip::Membership> ml_;
    mp::Routes<GossipCluster> routes_{*this};
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
    std::unique_ptr<mp::push::Pusher> pusher_;
    std::atomic<uint64_t> ackedSeen_{0};
    std::unique_ptr<mp::gossip::Inbox> inbox_;
};

}  // namespace

MP_DECLARE_PLUGIN(GossipCluster, MP_KIND_CLUSTER, "cluster-gossip", "0.3.0",
                  "Gossip cluster: SWIM membership (memberlist wire) and master election", kProps,
                  0)

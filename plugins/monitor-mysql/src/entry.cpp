// SPDX-License-Identifier: Apache-2.0
// monitor-mysql: a replication monitor (LAIN's mysql-service monitor and mmm-manager's duties) on
// the host: polls the instances, keeps one master, at most one standby and any slaves, runs the
// operations over HTTP (admin, POST), fails over when asked or on its own, and serves the
// topology to proxies as LAIN's Server-Sent-Events feed (/servers) and as records
// (mysql.topology; mysql.status for any sink).
#include <map>
#include <memory>
#include <mp/sdk.hpp>
#include <mutex>
#include <set>
#include <string>

#include "coordination.hpp"
#include "monitor.hpp"

namespace {

// clang-format off
const mp_property kProps[] = {
    {"instances", MP_PROP_STRING_LIST, MP_PROP_REQUIRED, "", "the servers, name=host:port (name: a-z, 0-9, _)", 0, 0, nullptr},
    {"user", MP_PROP_STRING, 0, "root", "the monitor's account on every instance (polls: PROCESS, REPLICATION CLIENT; operations: SUPER or the 10.5+ admin privileges)", 0, 0, nullptr},
    {"password", MP_PROP_STRING, MP_PROP_SECRET, "", "its password", 0, 0, nullptr},
    {"repl_user", MP_PROP_STRING, 0, "repl", "the account replicas log in to their master with (REPLICATION SLAVE)", 0, 0, nullptr},
    {"repl_password", MP_PROP_STRING, MP_PROP_SECRET, "", "its password", 0, 0, nullptr},
    {"interval_ms", MP_PROP_INT, 0, "1000", "poll every instance this often", 50, 3600000, nullptr},
    {"tls", MP_PROP_STRING, 0, "off", "TLS to every instance (as the MySQL clients' --ssl-mode): off, required (encrypted, certificate not checked), verify_ca (signed by a CA of tls_ca), verify_identity (and issued for the instance's host)", 0, 0, "off|required|verify_ca|verify_identity"},
    {"tls_ca", MP_PROP_STRING, 0, "", "PEM file of the CAs that sign the instances' certificates (verify_ca, verify_identity); empty: the system's", 0, 0, nullptr},
    {"connect_timeout_ms", MP_PROP_INT, 0, "1000", "a server that does not accept within this is ERROR", 10, 600000, nullptr},
    {"read_timeout_ms", MP_PROP_INT, 0, "3000", "longest wait for one answer of a poll", 10, 600000, nullptr},
    {"max_lag_s", MP_PROP_INT, 0, "10", "a replica further behind is SYNCING, not OK", 0, 86400, nullptr},
    {"switch_timeout_s", MP_PROP_INT, 0, "30", "longest wait for a candidate to apply what the master wrote", 1, 3600, nullptr},
    {"innodb_every", MP_PROP_INT, 0, "10", "polls between two SHOW ENGINE INNODB STATUS summaries (0: never)", 0, 1000000, nullptr},
    {"auto_failover", MP_PROP_BOOL, 0, "false", "fail over on its own when the master stays ERROR for failover_after_ms", 0, 0, nullptr},
    {"failover_after_ms", MP_PROP_INT, 0, "3000", "how long the master must stay ERROR before an automatic failover", 0, 3600000, nullptr},
    {"enforce", MP_PROP_BOOL, 0, "true", "mmm's duties on the acting monitor: read_only on every node but the master, the master's replication (mutual backup) started again when both threads stopped", 0, 0, nullptr},
    {"block_users", MP_PROP_STRING_LIST, 0, "", "regular expressions of application user names locked (ACCOUNT LOCK) on a master going read-only and unlocked on the new one", 0, 0, nullptr},
    {"state_file", MP_PROP_STRING, 0, "", "the registry (roles, pause, mutual backup), written atomically; default: <state dir>/monitor-mysql.json", 0, 0, nullptr},
    {"coordination", MP_PROP_STRING, 0, "none", "which of several monitors acts: none (this one), cluster (the gossip or static cluster's master), redis (the holder of a lease)", 0, 0, nullptr},
    {"redis", MP_PROP_STRING, 0, "127.0.0.1:6379", "coordination redis: the Redis server, host:port", 0, 0, nullptr},
    {"redis_password", MP_PROP_STRING, MP_PROP_SECRET, "", "its password (AUTH)", 0, 0, nullptr},
    {"tag", MP_PROP_STRING, 0, "default", "coordination redis: the name of this replication set (keys and messages carry it)", 0, 0, nullptr},
    {"redis_topic", MP_PROP_STRING, 0, "mysqlprobe-switch", "coordination redis: the pub/sub channel switch decisions are announced on", 0, 0, nullptr},
    {"lease_ms", MP_PROP_INT, 0, "5000", "coordination redis: the lease's time to live; renewed every third of it", 300, 3600000, nullptr},
    {nullptr, 0, 0, nullptr, nullptr, 0, 0, nullptr},
};
// clang-format on

const char* const kOperations[] = {"register", "unregister", "activate",   "detach",
                                   "pause",    "resume",     "switchover", "failover"};

struct Gauges {
    mp::Counter up, state, readOnly, lag, threadsConnected, threadsRunning;
};

class MonitorPlugin : public mp::Plugin {
  public:
    MonitorPlugin(mp::Host host, const mp::Config& cfg)
        : Plugin(host),
          routes_(*this),
          polls_(host.counter("polls_total", "polls of the instances")),
          pollFailures_(
              host.counter("poll_failures_total", "polls that found a server unreachable")),
          operations_(host.counter("operations_total", "operations run (HTTP and automatic)")),
          operationsFailed_(
              host.counter("operations_failed_total", "operations refused or failed")),
          topologyUpdates_(host.counter("topology_updates_total", "changes of the topology feed")),
          leaderGauge_(host.counter("acting", "this monitor acts (1) or watches (0)", MP_GAUGE)),
          recordsDropped_(host.counter("records_dropped_total",
                                       "records the host's buffer refused (drop policy)")) {
        mp::monitor::Options o;
        for (const auto& spec : cfg.list("instances")) {
            o.instances.push_back(mp::monitor::parseInstance(spec));
        }
        if (o.instances.empty()) {
            throw mp::Error("instances: at least one, name=host:port");
        }
        o.user = cfg.str("user");
        o.password = cfg.str("password");
        o.replUser = cfg.str("repl_user");
        o.replPassword = cfg.str("repl_password");
        o.intervalMs = static_cast<int>(cfg.i64("interval_ms"));
        o.tls = mp::mysql::parseTls(cfg.str("tls")).value_or(mp::mysql::Tls::Off);
        o.tlsCa = cfg.str("tls_ca");
        o.connectTimeoutMs = static_cast<int>(cfg.i64("connect_timeout_ms"));
        o.readTimeoutMs = static_cast<int>(cfg.i64("read_timeout_ms"));
        o.maxLagS = cfg.i64("max_lag_s");
        o.switchTimeoutS = static_cast<int>(cfg.i64("switch_timeout_s"));
        o.innodbEvery = static_cast<int>(cfg.i64("innodb_every"));
        o.autoFailover = cfg.boolean("auto_failover");
        o.failoverAfterMs = static_cast<int>(cfg.i64("failover_after_ms"));
        o.enforce = cfg.boolean("enforce");
        o.blockUsers = cfg.list("block_users");
        o.stateFile = cfg.str("state_file");
        if (o.stateFile.empty()) {
            if (auto dir = host.get("state.dir")) {
                o.stateFile = *dir + "/monitor-mysql.json";
            }
        }
        for (const auto& i : o.instances) {
            auto& g = gauges_[i.name];
            const std::string p = i.name + "_";
            g.up = host.counter((p + "up").c_str(), "1 when the instance answered the last poll",
                                MP_GAUGE);
            g.state = host.counter((p + "state").c_str(),
                                   "0 UNREGISTERED, 1 OK, 2 DETACHED, 3 SYNCING, 4 PAUSE, 5 LOST, "
                                   "6 ERROR",
                                   MP_GAUGE);
            g.readOnly =
                host.counter((p + "read_only").c_str(), "1 when read_only is on", MP_GAUGE);
            g.lag = host.counter((p + "lag_seconds").c_str(),
                                 "Seconds_Behind_Master (-1: not replicating)", MP_GAUGE);
            g.threadsConnected =
                host.counter((p + "threads_connected").c_str(), "Threads_connected", MP_GAUGE);
            g.threadsRunning =
                host.counter((p + "threads_running").c_str(), "Threads_running", MP_GAUGE);
        }
        mp::monitor::CoordinationOptions co;
        co.mode = cfg.str("coordination");
        co.redis = cfg.str("redis");
        co.redisPassword = cfg.str("redis_password");
        co.tag = cfg.str("tag");
        co.topic = cfg.str("redis_topic");
        co.leaseMs = static_cast<int>(cfg.i64("lease_ms"));
        co.owner = host.get("node.name").value_or("monitor") + "/" + std::to_string(::getpid());
        coordination_ = mp::monitor::makeCoordination(
            co, host, [h = host](int level, const std::string& line) { h.log(level, line); });
        host.set("records.backpressure", "drop");  // a stalled sink never holds up the monitor
        monitor_ = std::make_unique<mp::monitor::Monitor>(
            std::move(o), [h = host](int level, const std::string& line) { h.log(level, line); },
            [this](const std::string& json) { topologyChanged(json); },
            [this](const std::string& name, const mp::monitor::NodeStatus& st,
                   const mp::monitor::NodeView& view,
                   const std::string& json) { statusPolled(name, st, view, json); },
            [this] { return coordination_->acting(); });

        mp_ws_handler h{};
        h.struct_size = sizeof h;
        h.flags = MP_WS_SSE | MP_WS_SSE_EVENTS;
        h.user = this;
        h.role = MP_ROLE_READ;
        h.ping_interval_ms = 15000;
        h.queue_messages = 64;
        h.on_open = &MonitorPlugin::feedOpen;
        h.on_close = &MonitorPlugin::feedClose;
        if (host.api()->ws_endpoint(host.raw(), "/servers", &h) != MP_OK) {
            throw mp::Error("cannot serve /servers (taken by another plugin?)");
        }
        routes_.add("/mysql/status", &MonitorPlugin::status, MP_ROLE_READ);
        routes_.add("/mysql/operations", &MonitorPlugin::operations, MP_ROLE_READ);
        routes_.add("/mysql/topology", &MonitorPlugin::topology, MP_ROLE_READ);
        for (const char* op : kOperations) {
            paths_.push_back(std::string("/mysql/") + op);
            routes_.add(paths_.back().c_str(), &MonitorPlugin::operate, MP_ROLE_ADMIN,
                        MP_HTTP_POST);
        }
    }

    void start() override {
        coordination_->start();
        monitor_->start();
        timer_.start(host(), 100'000'000, 500'000'000,
                     [this] { leaderGauge_.set(coordination_->acting() ? 1 : 0); });
    }

    void stop() override {
        timer_.stop();
        monitor_->stop();
        coordination_->stop();
        std::lock_guard<std::mutex> lock(feedMutex_);
        for (auto* c : feeds_) {
            host().api()->ws_close(c, 1001, mp::toStr("stopping"));
        }
    }

  private:
    static mp_status feedOpen(void* user, mp_ws_conn* conn, const mp_http_request* /*req*/) {
        auto* self = static_cast<MonitorPlugin*>(user);
        std::lock_guard<std::mutex> lock(self->feedMutex_);
        self->feeds_.insert(conn);
        self->send(conn, "init\n" + self->monitor_->topologyJson());
        return MP_OK;
    }
    static void feedClose(void* user, mp_ws_conn* conn) {
        auto* self = static_cast<MonitorPlugin*>(user);
        std::lock_guard<std::mutex> lock(self->feedMutex_);
        self->feeds_.erase(conn);
    }
    void send(mp_ws_conn* conn, const std::string& msg) {
        host().api()->ws_send(conn, MP_WS_TEXT, mp::toBytes(msg));
    }

    void topologyChanged(const std::string& json) {
        topologyUpdates_.add();
        host().info("topology: " + json);
        {
            std::lock_guard<std::mutex> lock(feedMutex_);
            for (auto* c : feeds_) {
                send(c, "update\n" + json);
            }
        }
        emit("mysql.topology", json, host().nowNs(), "topology");
        coordination_->announce(json);
    }

    void statusPolled(const std::string& name, const mp::monitor::NodeStatus& st,
                      const mp::monitor::NodeView& view, const std::string& json) {
        polls_.add();
        auto& g = gauges_[name];
        pollFailures_.add(st.reachable ? 0 : 1);
        g.up.set(st.reachable ? 1 : 0);
        g.state.set(static_cast<int64_t>(view.state));
        g.readOnly.set(st.readOnly ? 1 : 0);
        g.lag.set(st.replica && st.replica->lagSeconds ? *st.replica->lagSeconds : -1);
        auto num = [&](const char* key) -> int64_t {
            auto it = st.status.find(key);
            try {
                return it == st.status.end() ? 0 : std::stoll(it->second);
            } catch (const std::exception&) {
                return 0;
            }
        };
        g.threadsConnected.set(num("Threads_connected"));
        g.threadsRunning.set(num("Threads_running"));
        emit("mysql.status", json, st.polledNs, name);
    }

    // Records leave in the order of their seq (the host refuses a seq not above the last), from
    // the poll thread and from operations: one at a time.
    void emit(const char* stream, const std::string& json, uint64_t tsNs, const std::string& key) {
        std::lock_guard<std::mutex> lock(emitMutex_);
        if (host().emitRecord(stream, json, ++seq_, tsNs, key) != MP_OK) {
            recordsDropped_.add();
        }
    }

    void status(const mp_http_request* /*req*/, mp_http_response* resp) {
        host().replyJson(resp, 200, monitor_->statusJson());
    }
    void operations(const mp_http_request* /*req*/, mp_http_response* resp) {
        host().replyJson(resp, 200, monitor_->operationsJson());
    }
    void topology(const mp_http_request* /*req*/, mp_http_response* resp) {
        host().replyJson(resp, 200, monitor_->topologyJson());
    }

    void operate(const mp_http_request* req, mp_http_response* resp) {
        const std::string path(mp::view(req->path));
        const std::string op = path.substr(path.rfind('/') + 1);
        std::map<std::string, std::string> args;
        for (const char* key : {"node", "role", "to"}) {
            if (auto v = host().param(req, key)) {
                args[key] = *v;
            }
        }
        const std::string by =
            mp::Host::principal(req) + " (" + std::string(mp::view(req->remote_addr)) + ")";
        operations_.add();
        try {
            std::string result = monitor_->operate(op, args, by);
            host().replyJson(resp, 200,
                             "{\"ok\":true,\"operation\":" + mp::jsonString(op) +
                                 ",\"result\":" + mp::jsonString(result) + "}");
        } catch (const mp::monitor::OpError& e) {
            operationsFailed_.add();
            throw mp::HttpError(e.status(), e.what());
        }
    }

    mp::Routes<MonitorPlugin> routes_;
    std::deque<std::string> paths_;  // the operation routes' paths (stable c_str)
    mp::Counter polls_, pollFailures_, operations_, operationsFailed_, topologyUpdates_,
        leaderGauge_, recordsDropped_;
    std::map<std::string, Gauges> gauges_;
    std::unique_ptr<mp::monitor::Coordination> coordination_;
    std::unique_ptr<mp::monitor::Monitor> monitor_;
    std::mutex feedMutex_;
    std::set<mp_ws_conn*> feeds_;
    std::mutex emitMutex_;
    uint64_t seq_ = 0;
    mp::Timer timer_;
};

}  // namespace

MP_DECLARE_PLUGIN(MonitorPlugin, MP_KIND_SOURCE, "monitor-mysql", "0.1.0",
                  "replication monitor: node states, switchover and failover, topology feed",
                  kProps, 0)

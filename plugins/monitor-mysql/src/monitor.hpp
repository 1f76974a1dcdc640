// SPDX-License-Identifier: Apache-2.0
// The monitor without the plugin glue: one poller thread per instance, the registry and its
// state file, the node states, the operations (LAIN's and mmm's) and automatic failover.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <mp/mysql_client.hpp>
#include <mutex>
#include <optional>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "topology.hpp"

namespace mp::monitor {

struct Options {
    std::vector<Instance> instances;
    std::string user, password;          // the monitor's account on every instance (secret)
    std::string replUser, replPassword;  // what replicas log in to the master with (secret)
    int intervalMs = 1000;
    mysql::Tls tls = mysql::Tls::Off;  // the monitor's own connections to the instances
    std::string tlsCa;
    int connectTimeoutMs = 1000;
    int readTimeoutMs = 3000;
    int64_t maxLagS = 10;
    int switchTimeoutS = 30;
    int innodbEvery = 10;  // polls between two InnoDB summaries (0: never)
    bool autoFailover = false;
    int failoverAfterMs = 3000;
    bool enforce = true;  // read_only on the non-masters, replication restarted on the master
    std::vector<std::string> blockUsers;  // regexes of application users locked on the passive
    std::string stateFile;
};

/// An operation refused (409) or failed (500), with the reason.
class OpError : public std::runtime_error {
  public:
    OpError(int status, const std::string& why) : std::runtime_error(why), status_(status) {}
    int status() const { return status_; }

  private:
    int status_;
};

struct OpRecord {
    uint64_t atNs = 0;
    std::string op, node, by;
    bool ok = false;
    std::string result;
    double seconds = 0;
};

class Monitor {
  public:
    using Log = std::function<void(int level, const std::string&)>;
    /// Called (from the poll thread or an operation) when the feed's JSON changed.
    using TopologyFn = std::function<void(const std::string& lainJson)>;
    /// Called after every poll round with each instance's status JSON.
    // One instance's poll: its status, its view (state, reason) and both as JSON.
    using StatusFn = std::function<void(const std::string& name, const NodeStatus& st,
                                        const NodeView& view, const std::string& json)>;
    /// True when this monitor may act (coordination); asked before every automatic action.
    using LeaderFn = std::function<bool()>;

    Monitor(Options o, Log log, TopologyFn topo, StatusFn status, LeaderFn leader);
    ~Monitor();
    Monitor(const Monitor&) = delete;
    Monitor& operator=(const Monitor&) = delete;

    void start();
    void stop();

    /// Runs an operation (register, unregister, activate, detach, pause, resume, switchover,
    /// failover); throws OpError. `by` names the caller for the log. Serialized.
    std::string operate(const std::string& op, const std::map<std::string, std::string>& args,
                        const std::string& by);

    std::string topologyJson();    // the feed's data now
    std::string statusJson();      // every node: role, state, status
    std::string operationsJson();  // the last operations
    Registry registry();

    /// Waits until every instance was polled after this call (or the timeout).
    bool refresh(int timeoutMs);

  private:
    struct Poller {
        Instance inst;
        std::thread thread;
        mysql::Connection conn;
    };
    void pollLoop(Poller& p);
    void roundDone();
    void evaluate(bool afterOperation);
    void save();
    void follow();
    void enforce();
    mysql::ServerAddress address(const std::string& name) const;
    /// A connection for an operation: sql_log_bin off, so that the tool's own changes do not
    /// replicate.
    std::unique_ptr<mysql::Connection> admin(const std::string& name) const;
    void exec(const std::string& name, const std::string& sql) const;
    std::string changeMasterSql(const std::string& to) const;
    void pointTo(const std::string& node, const std::string& to);
    void setReadOnly(const std::string& node, bool on);
    void blockUsers(const std::string& node, bool lock);
    bool waitGtid(const std::string& node, const std::string& pos, int timeoutS);
    bool waitRelay(const std::string& node, int timeoutS);

    struct Target {  // the node of an operation, as the last evaluation saw it
        std::string node;
        Registration reg;
        NodeView view;
        std::optional<std::string> master;
        std::optional<std::string> standby;
        bool mutual = false;
    };
    Target target(const std::map<std::string, std::string>& args);
    std::string doRegister(const std::map<std::string, std::string>& args);
    std::string doUnregister(const std::map<std::string, std::string>& args);
    std::string doActivate(const Target& t);
    std::string doDetach(const Target& t);
    std::string doPause(const Target& t);
    std::string doResume(const Target& t);
    std::string doSwitchover(const std::string& to);
    std::string doFailover();
    void record(const OpRecord& r);
    const Instance& instance(const std::string& name) const;

    Options o_;
    Log log_;
    TopologyFn topo_;
    StatusFn statusFn_;
    LeaderFn leader_;
    std::map<std::string, Instance> instances_;
    std::vector<std::regex> block_;

    std::mutex opMutex_;    // one operation at a time (automatic ones too)
    std::mutex evalMutex_;  // one evaluation at a time (the feed's updates in order)
    mutable std::mutex mu_;
    std::condition_variable cv_;
    Registry reg_;
    std::map<std::string, NodeStatus> statuses_;
    std::map<std::string, NodeView> views_;
    std::string lastTopology_;
    std::deque<OpRecord> ops_;
    uint64_t round_ = 0;  // completed poll rounds (every instance once)
    std::map<std::string, uint64_t> polledRound_;
    std::map<std::string, bool> busy_;            // a poll of it is under way
    std::map<std::string, uint64_t> enforcedAt_;  // the poll count when a duty last acted
    uint64_t wakeGen_ = 0;                        // refresh(): the pollers poll again at once
    std::optional<std::chrono::steady_clock::time_point> masterDownSince_;  // steady: durations
    std::atomic<int64_t> stateStamp_{0};  // mtime and size of the state file last read or written
    std::atomic<bool> stopping_{false};
    std::deque<Poller> pollers_;
    std::thread brain_;
};

}  // namespace mp::monitor

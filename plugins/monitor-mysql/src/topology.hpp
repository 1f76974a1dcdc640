// SPDX-License-Identifier: Apache-2.0
// What monitor-mysql knows and decides without talking to a server: the configured instances,
// what a poll of one saw, the registry of roles (persisted), the state of each node (LAIN's
// states), the topology feed's JSON (LAIN's shape) and GTID positions. Pure functions: the unit
// tests drive them with hand-made statuses.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace mp::monitor {

struct Instance {
    std::string name;  // [a-z0-9_]: used in metric names and operations
    std::string host;
    uint16_t port = 3306;
};

/// "db1=127.0.0.1:3307" into an Instance; throws mp::Error with the reason.
Instance parseInstance(const std::string& spec);

/// SHOW SLAVE STATUS of a node, the fields the states and the operations use.
struct ReplicaStatus {
    std::string masterHost;
    uint16_t masterPort = 0;
    std::string ioRunning;  // "Yes", "No", "Connecting"
    std::string sqlRunning;
    std::optional<int64_t> lagSeconds;  // Seconds_Behind_Master (NULL when not replicating)
    std::string lastIoError;
    std::string lastSqlError;
    std::string readFile, execFile;  // Master_Log_File, Relay_Master_Log_File
    uint64_t readPos = 0, execPos = 0;
    std::string usingGtid;
    std::string gtidIoPos;
    bool relayApplied() const { return readFile == execFile && readPos == execPos; }
    /// A thread stopped on an error (the IO thread refused by the master, e.g. 1236 for a
    /// diverged replica, or the SQL thread failing to apply): what it holds may differ from the
    /// master's stream. A thread still reconnecting ("Connecting") is no such stop.
    bool stoppedOnError() const {
        return (ioRunning == "No" && !lastIoError.empty()) ||
               (sqlRunning == "No" && !lastSqlError.empty());
    }
};

/// What one poll of one instance saw.
struct NodeStatus {
    bool reachable = false;
    std::string error;  // why not reachable
    uint64_t polledNs = 0;
    double pollMs = 0;
    std::string version;
    std::string tls;  // the session's protocol and cipher; empty: plain
    uint32_t serverId = 0;
    bool readOnly = false;
    bool logBin = false;
    bool logSlaveUpdates = false;
    std::string gtidBinlogPos, gtidCurrentPos, gtidSlavePos;
    std::optional<ReplicaStatus> replica;          // none: no replication configured
    std::map<std::string, std::string> status;     // selected GLOBAL STATUS
    std::map<std::string, std::string> variables;  // selected GLOBAL VARIABLES
    std::map<std::string, std::string> innodb;     // summary of SHOW ENGINE INNODB STATUS
};

enum class Role { None, Master, Standby, Slave };
enum class State { Unregistered, Ok, Detached, Syncing, Pause, Lost, Error };

const char* roleName(Role r);
std::optional<Role> parseRole(const std::string& s);
const char* stateName(State s);

/// The registry: roles given by the operators (register/unregister) and what the operations
/// set. Persisted as JSON (state file).
struct Registration {
    Role role = Role::None;
    bool paused = false;
};
struct Registry {
    std::map<std::string, Registration> nodes;
    bool mutual = false;   // the master replicates from the standby too (activate on the master)
    uint64_t version = 0;  // grows with every change

    std::optional<std::string> master() const;
    std::optional<std::string> standby() const;
    std::string toJson() const;
    /// Throws mp::Error on a damaged or unknown document.
    static Registry fromJson(const std::string& text);
};

struct NodeView {
    State state = State::Unregistered;
    std::string reason;  // why, in words, when not OK
};

/// The state of node `name` (LAIN's rules): ERROR unreachable; PAUSE paused by an operation;
/// the master OK; a standby or slave DETACHED without replication, LOST when it replicates from
/// another address than the master's, OK when both threads run and the lag is at most
/// `maxLagS`, else SYNCING.
NodeView stateOf(const std::string& name, const Registry& reg,
                 const std::map<std::string, Instance>& instances,
                 const std::map<std::string, NodeStatus>& statuses, int64_t maxLagS);

/// The feed's data in LAIN's shape: {"master":{"containers":[{"container_ip","container_port"}]},
/// "slave":{"containers":[...]}}: the registered master (whatever its state: a proxy has no
/// better place to send writes), the standby and slaves whose state is OK.
std::string lainJson(const Registry& reg, const std::map<std::string, Instance>& instances,
                     const std::map<std::string, NodeView>& views);

/// A GTID position "0-1-100,1-2-7": sequence number per domain.
std::map<uint32_t, uint64_t> parseGtids(const std::string& pos);
/// True when `a` has everything `b` has (per domain, seq_no at least b's).
bool gtidCovers(const std::string& a, const std::string& b);
/// Sum of the sequence numbers: orders candidates by how much they applied (one writer domain).
uint64_t gtidWeight(const std::string& pos);

/// One node's status as JSON (records on `mysql.status`, GET /mysql/status).
std::string statusJson(const Instance& inst, const NodeStatus& st, Role role, const NodeView& v);

}  // namespace mp::monitor

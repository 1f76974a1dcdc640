// SPDX-License-Identifier: Apache-2.0
#include "topology.hpp"

#include <Poco/JSON/Parser.h>

#include <charconv>
#include <mp/hostport.hpp>
#include <mp/sdk.hpp>

namespace mp::monitor {

namespace {
bool validName(const std::string& n) {
    if (n.empty() || n.size() > 64) {
        return false;
    }
    for (char c : n) {
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) {
            return false;
        }
    }
    return true;
}

bool parseU64(std::string_view s, uint64_t& out) {
    if (s.empty()) {
        return false;
    }
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
    return ec == std::errc() && p == s.data() + s.size();
}
}  // namespace

Instance parseInstance(const std::string& spec) {
    const auto eq = spec.find('=');
    if (eq == std::string::npos) {
        throw Error("instances: each entry is name=host:port, not '" + spec + "'");
    }
    Instance i;
    i.name = spec.substr(0, eq);
    if (!validName(i.name)) {
        throw Error("instances: '" + i.name +
                    "' is not a name (1 to 64 of a-z, 0-9 and _: it names metrics)");
    }
    auto hp = net::parseHostPort(std::string_view(spec).substr(eq + 1));
    if (!hp) {
        throw Error("instances: '" + spec.substr(eq + 1) + "' of " + i.name +
                    " is not host:port (a port from 1 to 65535)");
    }
    i.host = hp->host;
    i.port = hp->port;
    return i;
}

const char* roleName(Role r) {
    switch (r) {
        case Role::Master:
            return "master";
        case Role::Standby:
            return "standby";
        case Role::Slave:
            return "slave";
        case Role::None:
            break;
    }
    return "none";
}

std::optional<Role> parseRole(const std::string& s) {
    if (s == "master") {
        return Role::Master;
    }
    if (s == "standby") {
        return Role::Standby;
    }
    if (s == "slave") {
        return Role::Slave;
    }
    return std::nullopt;
}

const char* stateName(State s) {
    switch (s) {
        case State::Unregistered:
            return "UNREGISTERED";
        case State::Ok:
            return "OK";
        case State::Detached:
            return "DETACHED";
        case State::Syncing:
            return "SYNCING";
        case State::Pause:
            return "PAUSE";
        case State::Lost:
            return "LOST";
        case State::Error:
            return "ERROR";
    }
    return "?";
}

std::optional<std::string> Registry::master() const {
    for (const auto& [name, r] : nodes) {
        if (r.role == Role::Master) {
            return name;
        }
    }
    return std::nullopt;
}

std::optional<std::string> Registry::standby() const {
    for (const auto& [name, r] : nodes) {
        if (r.role == Role::Standby) {
            return name;
        }
    }
    return std::nullopt;
}

std::string Registry::toJson() const {
    std::string out = "{\"format\":1,\"version\":" + std::to_string(version) +
                      ",\"mutual\":" + (mutual ? "true" : "false") + ",\"nodes\":{";
    bool first = true;
    for (const auto& [name, r] : nodes) {
        out += first ? "" : ",";
        first = false;
        out += jsonString(name) + ":{\"role\":\"" + roleName(r.role) +
               "\",\"paused\":" + (r.paused ? "true" : "false") + "}";
    }
    return out + "}}";
}

Registry Registry::fromJson(const std::string& text) {
    Registry reg;
    try {
        Poco::JSON::Parser parser;
        auto root = parser.parse(text).extract<Poco::JSON::Object::Ptr>();
        if (!root || root->getValue<int>("format") != 1) {
            throw Error("not a monitor-mysql state (format 1)");
        }
        reg.version = root->getValue<uint64_t>("version");
        reg.mutual = root->getValue<bool>("mutual");
        auto nodes = root->getObject("nodes");
        if (!nodes) {
            throw Error("no nodes");
        }
        for (const auto& name : nodes->getNames()) {
            auto n = nodes->getObject(name);
            if (!n || !validName(name)) {
                throw Error("bad node '" + name + "'");
            }
            auto role = parseRole(n->getValue<std::string>("role"));
            if (!role) {
                throw Error("node '" + name + "': unknown role");
            }
            reg.nodes[name] = Registration{*role, n->getValue<bool>("paused")};
        }
    } catch (const Error&) {
        throw;
    } catch (const std::exception& e) {
        throw Error(std::string("damaged state: ") + e.what());
    }
    int masters = 0;
    int standbys = 0;
    for (const auto& [name, r] : reg.nodes) {
        masters += r.role == Role::Master ? 1 : 0;
        standbys += r.role == Role::Standby ? 1 : 0;
    }
    if (masters > 1 || standbys > 1) {
        throw Error("damaged state: more than one master or standby");
    }
    return reg;
}

NodeView stateOf(const std::string& name, const Registry& reg,
                 const std::map<std::string, Instance>& instances,
                 const std::map<std::string, NodeStatus>& statuses, int64_t maxLagS) {
    NodeView v;
    auto r = reg.nodes.find(name);
    auto st = statuses.find(name);
    if (r == reg.nodes.end()) {
        v.state = State::Unregistered;
        return v;
    }
    if (st == statuses.end() || !st->second.reachable) {
        v.state = State::Error;
        v.reason = st == statuses.end() ? "not polled yet" : st->second.error;
        return v;
    }
    if (r->second.paused) {
        v.state = State::Pause;
        return v;
    }
    if (r->second.role == Role::Master) {
        v.state = State::Ok;
        return v;
    }
    const NodeStatus& s = st->second;
    if (!s.replica || s.replica->masterHost.empty()) {
        v.state = State::Detached;
        v.reason = "no replication configured";
        return v;
    }
    auto master = reg.master();
    auto mi = master ? instances.find(*master) : instances.end();
    if (mi == instances.end()) {
        v.state = State::Lost;
        v.reason = "no master registered";
        return v;
    }
    if (s.replica->masterHost != mi->second.host || s.replica->masterPort != mi->second.port) {
        v.state = State::Lost;
        v.reason = "replicates from " + s.replica->masterHost + ":" +
                   std::to_string(s.replica->masterPort) + ", the master is " + mi->second.host +
                   ":" + std::to_string(mi->second.port);
        return v;
    }
    const ReplicaStatus& rs = *s.replica;
    if (rs.ioRunning == "Yes" && rs.sqlRunning == "Yes" && rs.lagSeconds &&
        *rs.lagSeconds <= maxLagS) {
        v.state = State::Ok;
        return v;
    }
    v.state = State::Syncing;
    if (rs.ioRunning != "Yes" || rs.sqlRunning != "Yes") {
        v.reason = "IO thread " + rs.ioRunning + ", SQL thread " + rs.sqlRunning;
        const std::string& err = !rs.lastIoError.empty() ? rs.lastIoError : rs.lastSqlError;
        if (!err.empty()) {
            v.reason += ": " + err;
        }
    } else {
        v.reason = "behind by " + (rs.lagSeconds ? std::to_string(*rs.lagSeconds) : "?") + " s";
    }
    return v;
}

namespace {
std::string containers(const std::vector<const Instance*>& list) {
    std::string out = "{\"containers\":[";
    for (size_t i = 0; i < list.size(); ++i) {
        out += i == 0 ? "" : ",";
        out += "{\"container_ip\":" + jsonString(list[i]->host) +
               ",\"container_port\":" + std::to_string(list[i]->port) + "}";
    }
    return out + "]}";
}
}  // namespace

std::string lainJson(const Registry& reg, const std::map<std::string, Instance>& instances,
                     const std::map<std::string, NodeView>& views) {
    std::vector<const Instance*> masters;
    std::vector<const Instance*> slaves;
    for (const auto& [name, r] : reg.nodes) {
        auto inst = instances.find(name);
        if (inst == instances.end()) {
            continue;
        }
        if (r.role == Role::Master) {
            masters.push_back(&inst->second);
        } else if (r.role != Role::None) {
            auto v = views.find(name);
            if (v != views.end() && v->second.state == State::Ok) {
                slaves.push_back(&inst->second);
            }
        }
    }
    return "{\"master\":" + containers(masters) + ",\"slave\":" + containers(slaves) + "}";
}

std::map<uint32_t, uint64_t> parseGtids(const std::string& pos) {
    std::map<uint32_t, uint64_t> out;
    size_t start = 0;
    while (start < pos.size()) {
        size_t end = pos.find(',', start);
        std::string_view one(pos.data() + start,
                             (end == std::string::npos ? pos.size() : end) - start);
        while (!one.empty() && (one.front() == ' ' || one.front() == '\n')) {
            one.remove_prefix(1);
        }
        auto d1 = one.find('-');
        auto d2 = one.rfind('-');
        uint64_t domain = 0;
        uint64_t seq = 0;
        if (d1 != std::string_view::npos && d2 != d1 && parseU64(one.substr(0, d1), domain) &&
            parseU64(one.substr(d2 + 1), seq) && domain <= UINT32_MAX) {
            auto& slot = out[static_cast<uint32_t>(domain)];
            slot = std::max(slot, seq);
        }
        if (end == std::string::npos) {
            break;
        }
        start = end + 1;
    }
    return out;
}

bool gtidCovers(const std::string& a, const std::string& b) {
    auto ga = parseGtids(a);
    for (const auto& [domain, seq] : parseGtids(b)) {
        auto it = ga.find(domain);
        if (it == ga.end() || it->second < seq) {
            return false;
        }
    }
    return true;
}

uint64_t gtidWeight(const std::string& pos) {
    uint64_t sum = 0;
    for (const auto& [domain, seq] : parseGtids(pos)) {
        sum += seq;
    }
    return sum;
}

namespace {
std::string object(const std::map<std::string, std::string>& m) {
    std::string out = "{";
    bool first = true;
    for (const auto& [k, v] : m) {
        out += first ? "" : ",";
        first = false;
        out += jsonString(k) + ":" + jsonString(v);
    }
    return out + "}";
}
}  // namespace

std::string statusJson(const Instance& inst, const NodeStatus& st, Role role, const NodeView& v) {
    std::string out = "{\"name\":" + jsonString(inst.name) + ",\"host\":" + jsonString(inst.host) +
                      ",\"port\":" + std::to_string(inst.port) + ",\"role\":\"" + roleName(role) +
                      "\",\"state\":\"" + stateName(v.state) +
                      "\",\"reason\":" + jsonString(v.reason) +
                      ",\"reachable\":" + (st.reachable ? "true" : "false") +
                      ",\"polled_ns\":" + std::to_string(st.polledNs) +
                      ",\"poll_ms\":" + std::to_string(st.pollMs);
    if (!st.reachable) {
        return out + ",\"error\":" + jsonString(st.error) + "}";
    }
    out += ",\"version\":" + jsonString(st.version) + ",\"tls\":" + jsonString(st.tls) +
           ",\"server_id\":" + std::to_string(st.serverId) +
           ",\"read_only\":" + (st.readOnly ? "true" : "false") +
           ",\"log_bin\":" + (st.logBin ? "true" : "false") +
           ",\"gtid_binlog_pos\":" + jsonString(st.gtidBinlogPos) +
           ",\"gtid_current_pos\":" + jsonString(st.gtidCurrentPos) +
           ",\"gtid_slave_pos\":" + jsonString(st.gtidSlavePos);
    if (st.replica) {
        const ReplicaStatus& r = *st.replica;
        out += ",\"replication\":{\"master_host\":" + jsonString(r.masterHost) +
               ",\"master_port\":" + std::to_string(r.masterPort) +
               ",\"io_running\":" + jsonString(r.ioRunning) +
               ",\"sql_running\":" + jsonString(r.sqlRunning) + ",\"lag_s\":" +
               (r.lagSeconds ? std::to_string(*r.lagSeconds) : std::string("null")) +
               ",\"last_io_error\":" + jsonString(r.lastIoError) +
               ",\"last_sql_error\":" + jsonString(r.lastSqlError) +
               ",\"using_gtid\":" + jsonString(r.usingGtid) + "}";
    } else {
        out += ",\"replication\":null";
    }
    return out + ",\"status\":" + object(st.status) + ",\"variables\":" + object(st.variables) +
           ",\"innodb\":" + object(st.innodb) + "}";
}

}  // namespace mp::monitor

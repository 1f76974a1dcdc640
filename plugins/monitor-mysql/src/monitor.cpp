// SPDX-License-Identifier: Apache-2.0
#include "monitor.hpp"

#include <sys/stat.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <mp/clock.hpp>
#include <mp/files.hpp>
#include <mp/sdk.hpp>
#include <sstream>

#include "poll.hpp"

namespace mp::monitor {

namespace {
double since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

std::string arg(const std::map<std::string, std::string>& args, const char* key) {
    auto it = args.find(key);
    if (it == args.end() || it->second.empty()) {
        throw OpError(400, std::string("missing parameter '") + key + "'");
    }
    return it->second;
}

}  // namespace

Monitor::Monitor(Options o, Log log, TopologyFn topo, StatusFn status, LeaderFn leader)
    : o_(std::move(o)),
      log_(std::move(log)),
      topo_(std::move(topo)),
      statusFn_(std::move(status)),
      leader_(std::move(leader)) {
    for (const auto& i : o_.instances) {
        if (!instances_.emplace(i.name, i).second) {
            throw Error("instances: '" + i.name + "' is named twice");
        }
    }
    for (const auto& pattern : o_.blockUsers) {
        try {
            block_.emplace_back(pattern);
        } catch (const std::regex_error& e) {
            throw Error("block_users: '" + pattern + "' is not a regular expression (" + e.what() +
                        ")");
        }
    }
    if (!o_.stateFile.empty()) {
        std::ifstream f(o_.stateFile);
        if (f) {
            std::stringstream ss;
            ss << f.rdbuf();
            try {
                reg_ = Registry::fromJson(ss.str());
            } catch (const std::exception& e) {
                throw Error(o_.stateFile + ": " + e.what() +
                            " (move it away to start with nothing registered)");
            }
            for (const auto& [name, r] : reg_.nodes) {
                if (instances_.count(name) == 0) {
                    throw Error(o_.stateFile + ": node '" + name +
                                "' is registered but not in instances");
                }
            }
        }
    }
}

Monitor::~Monitor() { stop(); }

void Monitor::start() {
    for (const auto& i : o_.instances) {
        pollers_.emplace_back();
        pollers_.back().inst = i;
    }
    for (auto& p : pollers_) {
        p.thread = std::thread([this, &p] { pollLoop(p); });
    }
    brain_ = std::thread([this] {
        std::unique_lock<std::mutex> lock(mu_);
        uint64_t seen = round_;
        while (!stopping_) {
            cv_.wait_for(lock, std::chrono::milliseconds(o_.intervalMs),
                         [&] { return stopping_ || round_ != seen; });
            if (stopping_) {
                break;
            }
            seen = round_;
            lock.unlock();
            evaluate(false);
            lock.lock();
        }
    });
}

void Monitor::stop() {
    stopping_ = true;
    cv_.notify_all();
    for (auto& p : pollers_) {
        p.conn.interrupt();
    }
    for (auto& p : pollers_) {
        if (p.thread.joinable()) {
            p.thread.join();
        }
    }
    if (brain_.joinable()) {
        brain_.join();
    }
}

mysql::ServerAddress Monitor::address(const std::string& name) const {
    const Instance& i = instance(name);
    mysql::ServerAddress a;
    a.host = i.host;
    a.port = i.port;
    a.user = o_.user;
    a.password = o_.password;
    a.tls = o_.tls;
    a.tlsCa = o_.tlsCa;
    a.connectTimeoutMs = o_.connectTimeoutMs;
    a.readTimeoutMs = o_.readTimeoutMs;
    return a;
}

const Instance& Monitor::instance(const std::string& name) const {
    auto it = instances_.find(name);
    if (it == instances_.end()) {
        throw OpError(404, "no instance named '" + name + "'");
    }
    return it->second;
}

void Monitor::pollLoop(Poller& p) {
    const mysql::ServerAddress addr = address(p.inst.name);
    uint64_t n = 0;
    while (!stopping_) {
        const auto t0 = std::chrono::steady_clock::now();
        uint64_t wake = 0;
        {
            std::lock_guard<std::mutex> lock(mu_);
            busy_[p.inst.name] = true;
            wake = wakeGen_;  // a refresh() asked during this poll gets another one at once
        }
        bool innodb = o_.innodbEvery > 0 && n % static_cast<uint64_t>(o_.innodbEvery) == 0;
        NodeStatus st = pollNode(p.conn, addr, innodb);
        ++n;
        std::unique_lock<std::mutex> lock(mu_);
        statuses_[p.inst.name] = std::move(st);
        busy_[p.inst.name] = false;
        uint64_t mine = ++polledRound_[p.inst.name];
        bool all = true;
        for (const auto& i : o_.instances) {
            all = all && polledRound_[i.name] >= mine;
        }
        if (all) {
            ++round_;
        }
        cv_.notify_all();
        cv_.wait_until(lock, t0 + std::chrono::milliseconds(o_.intervalMs),
                       [&] { return stopping_.load() || wakeGen_ != wake; });
    }
}

bool Monitor::refresh(int timeoutMs) {
    std::unique_lock<std::mutex> lock(mu_);
    // A poll under way may have read the servers before the change: one more is needed then.
    std::map<std::string, uint64_t> need;
    for (const auto& i : o_.instances) {
        need[i.name] = polledRound_[i.name] + (busy_[i.name] ? 2 : 1);
    }
    ++wakeGen_;
    cv_.notify_all();
    return cv_.wait_for(lock, std::chrono::milliseconds(timeoutMs), [&] {
        if (stopping_) {
            return true;
        }
        for (const auto& i : o_.instances) {
            if (polledRound_[i.name] < need[i.name]) {
                return false;
            }
        }
        return true;
    });
}

// A monitor that does not act follows the registry the acting one writes (a state file on
// storage they share): reloaded when it changed.
void Monitor::follow() {
    if (o_.stateFile.empty()) {
        return;
    }
    struct stat sb {};
    if (::stat(o_.stateFile.c_str(), &sb) != 0) {
        return;
    }
    const int64_t stamp = static_cast<int64_t>(sb.st_mtim.tv_sec) * 1'000'000'000 +
                          sb.st_mtim.tv_nsec + static_cast<int64_t>(sb.st_size);
    if (stamp == stateStamp_) {
        return;
    }
    std::ifstream f(o_.stateFile);
    std::stringstream ss;
    ss << f.rdbuf();
    try {
        Registry r = Registry::fromJson(ss.str());
        std::lock_guard<std::mutex> lock(mu_);
        if (r.version != reg_.version || r.toJson() != reg_.toJson()) {
            log_(MP_LOG_INFO, "registry version " + std::to_string(r.version) + " read from " +
                                  o_.stateFile + " (written by the acting monitor)");
        }
        reg_ = std::move(r);
        stateStamp_ = stamp;
    } catch (const std::exception& e) {
        log_(MP_LOG_WARN, o_.stateFile + ": " + e.what());
    }
}

void Monitor::evaluate(bool afterOperation) {
    if (!afterOperation && !leader_()) {
        follow();
    }
    std::unique_lock<std::mutex> serial(evalMutex_);
    std::string topo;
    struct Polled {
        std::string name;
        NodeStatus st;
        NodeView view;
        std::string json;
    };
    std::vector<Polled> polled;
    bool masterDown = false;
    {
        std::lock_guard<std::mutex> lock(mu_);
        views_.clear();
        for (const auto& i : o_.instances) {
            views_[i.name] = stateOf(i.name, reg_, instances_, statuses_, o_.maxLagS);
        }
        topo = lainJson(reg_, instances_, views_);
        for (const auto& i : o_.instances) {
            auto st = statuses_.find(i.name);
            if (st == statuses_.end()) {
                continue;
            }
            auto r = reg_.nodes.find(i.name);
            Role role = r == reg_.nodes.end() ? Role::None : r->second.role;
            const NodeView& view = views_[i.name];
            polled.push_back(
                {i.name, st->second, view, monitor::statusJson(i, st->second, role, view)});
        }
        auto master = reg_.master();
        masterDown =
            master && views_[*master].state == State::Error && statuses_.count(*master) != 0;
        if (!masterDown) {
            masterDownSince_.reset();
        } else if (!masterDownSince_) {
            masterDownSince_ = std::chrono::steady_clock::now();
        }
        if (topo == lastTopology_) {
            topo.clear();
        } else {
            lastTopology_ = topo;
        }
    }
    if (!topo.empty() && topo_) {
        topo_(topo);
    }
    if (!afterOperation && statusFn_) {
        for (const auto& p : polled) {
            statusFn_(p.name, p.st, p.view, p.json);
        }
    }
    serial.unlock();
    if (afterOperation || stopping_) {
        return;
    }
    if (o_.autoFailover && masterDown) {
        std::chrono::steady_clock::duration down{};
        {
            std::lock_guard<std::mutex> lock(mu_);
            if (masterDownSince_) {
                down = std::chrono::steady_clock::now() - *masterDownSince_;
            }
        }
        if (down >= std::chrono::milliseconds(o_.failoverAfterMs) && leader_() &&
            opMutex_.try_lock()) {
            std::lock_guard<std::mutex> held(opMutex_, std::adopt_lock);
            OpRecord rec;
            rec.atNs = mp::wallClockNs();
            rec.op = "failover";
            rec.by = "automatic";
            const auto t0 = std::chrono::steady_clock::now();
            try {
                rec.result = doFailover();
                rec.ok = true;
            } catch (const std::exception& e) {
                rec.result = e.what();
            }
            rec.seconds = since(t0);
            record(rec);
            return;
        }
    }
    if (o_.enforce && leader_() && opMutex_.try_lock()) {
        std::lock_guard<std::mutex> held(opMutex_, std::adopt_lock);
        enforce();
    }
}

// mmm's agent duties, on the acting monitor only: read_only on every registered node but the
// master, and the master's own replication (mutual backup) started again when both of its
// threads stopped; a replica's too, when they stopped without an error.
void Monitor::enforce() {
    std::vector<std::string> makeReadOnly;
    std::vector<std::string> restart;  // START SLAVE
    {
        std::lock_guard<std::mutex> lock(mu_);
        for (const auto& [name, r] : reg_.nodes) {
            auto st = statuses_.find(name);
            if (st == statuses_.end() || !st->second.reachable) {
                continue;
            }
            // A duty acts on a node at most once per two of its polls: the poll that follows an
            // action may have read the server before it.
            uint64_t& last = enforcedAt_[name];
            if (last != 0 && polledRound_[name] <= last + 1) {
                continue;
            }
            const auto& rep = st->second.replica;
            const bool stopped = rep && rep->ioRunning == "No" && rep->sqlRunning == "No";
            bool acts = false;
            if (r.role != Role::Master && !st->second.readOnly) {
                makeReadOnly.push_back(name);
                acts = true;
            }
            // The master's replication (mutual backup) when both threads stopped; a replica's
            // of the master when both stopped without an error (a restart with
            // skip-slave-start). With an error, it waits for an operator.
            const bool masterBackup = r.role == Role::Master && reg_.mutual;
            const bool replica = r.role != Role::Master && rep && rep->lastIoError.empty() &&
                                 rep->lastSqlError.empty() && views_[name].state == State::Syncing;
            if (!r.paused && stopped && (masterBackup || replica)) {
                restart.push_back(name);
                acts = true;
            }
            if (acts) {
                last = polledRound_[name];
            }
        }
    }
    for (const auto& name : makeReadOnly) {
        try {
            setReadOnly(name, true);
            log_(MP_LOG_WARN, name + " is not the master and was writable: read_only set");
        } catch (const std::exception& e) {
            log_(MP_LOG_WARN, name + ": cannot set read_only: " + e.what());
        }
    }
    for (const auto& name : restart) {
        try {
            exec(name, "START SLAVE");
            log_(MP_LOG_WARN, name +
                                  ": both replication threads had stopped without an error: "
                                  "started again");
        } catch (const std::exception& e) {
            log_(MP_LOG_WARN, name + ": cannot start replication: " + e.what());
        }
    }
}

void Monitor::save() {
    ++reg_.version;
    if (!o_.stateFile.empty()) {
        if (std::string err = mp::writeFileAtomic(o_.stateFile, reg_.toJson() + "\n");
            !err.empty()) {
            throw std::runtime_error(err);
        }
        struct stat sb {};
        if (::stat(o_.stateFile.c_str(), &sb) == 0) {
            stateStamp_ = static_cast<int64_t>(sb.st_mtim.tv_sec) * 1'000'000'000 +
                          sb.st_mtim.tv_nsec + static_cast<int64_t>(sb.st_size);
        }
    }
}

std::unique_ptr<mysql::Connection> Monitor::admin(const std::string& name) const {
    auto c = std::make_unique<mysql::Connection>();
    mysql::ServerAddress a = address(name);
    a.readTimeoutMs = std::max(a.readTimeoutMs, (o_.switchTimeoutS + 5) * 1000);
    try {
        c->connect(a);
        c->query("SET SESSION sql_log_bin=0");
    } catch (const std::exception& e) {
        throw OpError(500, name + ": " + e.what());
    }
    return c;
}

void Monitor::exec(const std::string& name, const std::string& sql) const {
    auto c = admin(name);
    try {
        c->query(sql);
    } catch (const std::exception& e) {
        throw OpError(500, name + ": " + e.what());
    }
}

std::string Monitor::changeMasterSql(const std::string& to) const {
    const Instance& m = instance(to);
    return "CHANGE MASTER TO MASTER_HOST=" + sqlQuote(m.host) +
           ", MASTER_PORT=" + std::to_string(m.port) + ", MASTER_USER=" + sqlQuote(o_.replUser) +
           ", MASTER_PASSWORD=" + sqlQuote(o_.replPassword) +
           ", MASTER_USE_GTID=current_pos, MASTER_CONNECT_RETRY=1, MASTER_HEARTBEAT_PERIOD=1";
}

void Monitor::pointTo(const std::string& node, const std::string& to) {
    auto c = admin(node);
    try {
        c->query("STOP SLAVE");
        c->query("RESET SLAVE ALL");
        c->query(changeMasterSql(to));
        c->query("START SLAVE");
    } catch (const std::exception& e) {
        // The password is in the statement, never in the error: the server does not echo it.
        throw OpError(500, node + ": replicating from " + to + ": " + e.what());
    }
}

void Monitor::setReadOnly(const std::string& node, bool on) {
    exec(node, on ? "SET GLOBAL read_only=1" : "SET GLOBAL read_only=0");
}

void Monitor::blockUsers(const std::string& node, bool lock) {
    if (block_.empty()) {
        return;
    }
    auto c = admin(node);
    try {
        for (const auto& row : c->query("SELECT User, Host FROM mysql.user")) {
            if (row.size() < 2 || !row[0] || !row[1]) {
                continue;
            }
            bool match = false;
            for (const auto& re : block_) {
                match = match || std::regex_search(*row[0], re);
            }
            if (match) {
                c->query("ALTER USER " + sqlQuote(*row[0]) + "@" + sqlQuote(*row[1]) +
                         (lock ? " ACCOUNT LOCK" : " ACCOUNT UNLOCK"));
            }
        }
    } catch (const std::exception& e) {
        throw OpError(500, node + ": " + (lock ? "locking" : "unlocking") + " users: " + e.what());
    }
}

// Until `node` has applied or written everything in `pos`: gtid_current_pos, not
// MASTER_GTID_WAIT, which looks at gtid_slave_pos only and so never sees a former master's own
// transactions (they are in its binlog position).
bool Monitor::waitGtid(const std::string& node, const std::string& pos, int timeoutS) {
    auto c = admin(node);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeoutS);
    try {
        for (;;) {
            auto rows = c->query("SELECT @@gtid_current_pos");
            if (!rows.empty() && !rows[0].empty() && rows[0][0] && gtidCovers(*rows[0][0], pos)) {
                return true;
            }
            if (std::chrono::steady_clock::now() >= deadline || stopping_) {
                return false;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
    } catch (const std::exception& e) {
        throw OpError(500, node + ": waiting for " + pos + ": " + e.what());
    }
}

// A replica of a dead master: its IO thread stopped, wait until the SQL thread applied what the
// relay log holds (Gtid_IO_Pos: the last transaction received).
bool Monitor::waitRelay(const std::string& node, int timeoutS) {
    std::string io;
    try {
        auto c = admin(node);
        c->query("STOP SLAVE IO_THREAD");
        std::vector<std::string> names;
        auto rows = c->query("SHOW SLAVE STATUS", &names);
        for (size_t i = 0; !rows.empty() && i < names.size(); ++i) {
            if (names[i] == "Gtid_IO_Pos" && rows[0][i]) {
                io = *rows[0][i];
            }
        }
    } catch (const std::exception& e) {
        throw OpError(500, node + ": stopping its IO thread: " + e.what());
    }
    return io.empty() || waitGtid(node, io, timeoutS);
}

std::string Monitor::doSwitchover(const std::string& to) {
    std::string old;
    std::vector<std::string> others;
    Role toRole = Role::None;
    bool mutual = false;
    {
        std::lock_guard<std::mutex> lock(mu_);
        auto m = reg_.master();
        if (!m) {
            throw OpError(409, "no master registered");
        }
        old = *m;
        if (views_[old].state != State::Ok) {
            throw OpError(409, "the master " + old + " is " + stateName(views_[old].state) +
                                   (views_[old].state == State::Error ? ": use failover" : ""));
        }
        auto r = reg_.nodes.find(to);
        if (r == reg_.nodes.end() || r->second.role == Role::Master) {
            throw OpError(409, to + " is not a registered standby or slave");
        }
        if (views_[to].state != State::Ok) {
            throw OpError(409,
                          to + " is " + std::string(stateName(views_[to].state)) +
                              ", a switchover needs it OK" +
                              (views_[to].reason.empty() ? "" : " (" + views_[to].reason + ")"));
        }
        toRole = r->second.role;
        mutual = reg_.mutual;
        for (const auto& [name, reg] : reg_.nodes) {
            if (name != old && name != to && reg.role != Role::None &&
                views_[name].state != State::Error && views_[name].state != State::Detached) {
                others.push_back(name);
            }
        }
    }
    const auto t0 = std::chrono::steady_clock::now();
    // 1. The old master stops taking writes.
    blockUsers(old, true);
    setReadOnly(old, true);
    std::string pos;
    {
        auto c = admin(old);
        auto rows = c->query("SELECT @@gtid_binlog_pos");
        pos = rows.empty() || rows[0].empty() || !rows[0][0] ? "" : *rows[0][0];
    }
    // 2. The candidate applies everything the old master wrote; else the switch is called off.
    if (!waitGtid(to, pos, o_.switchTimeoutS)) {
        setReadOnly(old, false);
        blockUsers(old, false);
        throw OpError(500, to + " did not reach " + pos + " within " +
                               std::to_string(o_.switchTimeoutS) + " s: switchover called off, " +
                               old + " writable again");
    }
    // 3. Promote.
    {
        auto c = admin(to);
        c->query("STOP SLAVE");
        c->query("RESET SLAVE ALL");
        c->query("SET GLOBAL read_only=0");
    }
    blockUsers(to, false);
    const double writeDowntime = since(t0);
    // 4. Roles change now (the feed follows), then the others are re-pointed.
    {
        std::lock_guard<std::mutex> lock(mu_);
        reg_.nodes[to].role = Role::Master;
        reg_.nodes[to].paused = false;
        reg_.nodes[old].role = toRole;
        reg_.nodes[old].paused = false;
        save();
    }
    evaluate(true);
    std::string warnings;
    for (const auto& n : others) {
        try {
            if (!waitGtid(n, pos, o_.switchTimeoutS)) {
                warnings += "; " + n + " had not reached " + pos + " (re-pointed anyway)";
            }
            pointTo(n, to);
        } catch (const std::exception& e) {
            warnings += std::string("; ") + e.what();
        }
    }
    try {
        pointTo(old, to);
    } catch (const std::exception& e) {
        warnings += std::string("; ") + e.what();
    }
    if (mutual) {
        try {
            pointTo(to, old);
        } catch (const std::exception& e) {
            warnings += std::string("; mutual backup: ") + e.what();
        }
    }
    refresh(o_.connectTimeoutMs + o_.readTimeoutMs + 1000);
    evaluate(true);
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.3f", writeDowntime);
    return to + " is the master (was " + old + ", now " + roleName(toRole) + " at " + pos +
           "); writes refused for " + buf + " s" + warnings;
}

std::string Monitor::doFailover() {
    std::string old;
    std::vector<std::string> replicas;  // reachable standby and slaves
    std::optional<std::string> standby;
    {
        std::lock_guard<std::mutex> lock(mu_);
        auto m = reg_.master();
        if (!m) {
            throw OpError(409, "no master registered");
        }
        old = *m;
        if (views_[old].state != State::Error) {
            throw OpError(409, "the master " + old + " is " + stateName(views_[old].state) +
                                   ", not ERROR: an emergency failover is only for a master "
                                   "that does not answer (use switchover)");
        }
        // Candidates replicate from the dead master (OK, or SYNCING now that it is gone); a
        // DETACHED, LOST or paused node may lack what the master wrote, and one whose
        // replication stopped on an error (diverged, or failing to apply) may hold something
        // else: never promoted.
        for (const auto& [name, r] : reg_.nodes) {
            State s = views_[name].state;
            auto st = statuses_.find(name);
            const bool broken =
                st != statuses_.end() && st->second.replica && st->second.replica->stoppedOnError();
            if (name != old && r.role != Role::None && !broken &&
                (s == State::Ok || s == State::Syncing)) {
                replicas.push_back(name);
                if (r.role == Role::Standby) {
                    standby = name;
                }
            }
        }
    }
    if (replicas.empty()) {
        throw OpError(409,
                      "no standby or slave that replicates from the master answers: "
                      "nothing to promote");
    }
    const auto t0 = std::chrono::steady_clock::now();
    // 1. Every replica applies what it received from the dead master.
    std::map<std::string, std::string> positions;
    for (const auto& n : replicas) {
        try {
            waitRelay(n, o_.switchTimeoutS);
            auto c = admin(n);
            auto rows = c->query("SELECT @@gtid_current_pos");
            positions[n] = rows.empty() || rows[0].empty() || !rows[0][0] ? "" : *rows[0][0];
        } catch (const std::exception& e) {
            log_(MP_LOG_WARN, "failover: " + std::string(e.what()));
        }
    }
    if (positions.empty()) {
        throw OpError(500, "no replica could apply its relay log");
    }
    // 2. The standby first, else the slave that applied the most.
    std::string best = positions.begin()->first;
    for (const auto& [n, pos] : positions) {
        if (gtidWeight(pos) > gtidWeight(positions[best])) {
            best = n;
        }
    }
    std::string to = standby && positions.count(*standby) != 0 ? *standby : best;
    std::string note;
    if (to != best && !gtidCovers(positions[to], positions[best])) {
        // The standby is behind a slave: it takes what it lacks from that slave first (its
        // binlog has the master's transactions, log_slave_updates), then it is promoted.
        pointTo(to, best);
        if (!waitGtid(to, positions[best], o_.switchTimeoutS)) {
            note = "; " + to + " did not catch up with " + best + " (" + positions[best] + ")";
        } else {
            note = "; " + to + " first caught up with " + best;
        }
    }
    Role toRole = Role::None;
    {
        auto c = admin(to);
        c->query("STOP SLAVE");
        c->query("RESET SLAVE ALL");
        c->query("SET GLOBAL read_only=0");
    }
    blockUsers(to, false);
    {
        std::lock_guard<std::mutex> lock(mu_);
        toRole = reg_.nodes[to].role;
        reg_.nodes[to].role = Role::Master;
        reg_.nodes[to].paused = false;
        reg_.nodes[old].role = toRole;
        reg_.nodes[old].paused = false;
        reg_.mutual = false;
        save();
    }
    evaluate(true);
    const double promoted = since(t0);
    for (const auto& n : replicas) {
        if (n == to) {
            continue;
        }
        try {
            pointTo(n, to);
        } catch (const std::exception& e) {
            note += std::string("; ") + e.what();
        }
    }
    refresh(o_.connectTimeoutMs + o_.readTimeoutMs + 1000);
    evaluate(true);
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.3f", promoted);
    return to + " is the master (emergency: " + old + " did not answer; now " + roleName(toRole) +
           ", activate it when it is back), promoted in " + buf + " s at " + positions[to] + note;
}

std::string Monitor::doRegister(const std::map<std::string, std::string>& args) {
    const std::string node = arg(args, "node");
    instance(node);
    auto role = parseRole(arg(args, "role"));
    if (!role) {
        throw OpError(400, "role is master, standby or slave");
    }
    std::lock_guard<std::mutex> lock(mu_);
    auto it = reg_.nodes.find(node);
    if (it != reg_.nodes.end()) {
        throw OpError(409, node + " is registered already (as " + roleName(it->second.role) +
                               "): unregister it first");
    }
    if (*role == Role::Master && reg_.master()) {
        throw OpError(409, "the master is " + *reg_.master() + " already");
    }
    if (*role == Role::Standby && reg_.standby()) {
        throw OpError(409, "the standby is " + *reg_.standby() + " already");
    }
    reg_.nodes[node] = Registration{*role, false};
    save();
    return node + " registered as " + roleName(*role);
}

std::string Monitor::doUnregister(const std::map<std::string, std::string>& args) {
    const std::string node = arg(args, "node");
    std::lock_guard<std::mutex> lock(mu_);
    if (reg_.nodes.erase(node) == 0) {
        throw OpError(409, node + " is not registered");
    }
    if (!reg_.standby()) {
        reg_.mutual = false;
    }
    save();
    return node + " unregistered (the server itself is left as it is)";
}

// A registered node that answers (not ERROR), with what an operation on it needs to know.
Monitor::Target Monitor::target(const std::map<std::string, std::string>& args) {
    Target t;
    t.node = arg(args, "node");
    {
        std::lock_guard<std::mutex> lock(mu_);
        auto it = reg_.nodes.find(t.node);
        if (it == reg_.nodes.end()) {
            throw OpError(409, t.node + " is not registered");
        }
        t.reg = it->second;
        t.view = views_[t.node];
        t.master = reg_.master();
        t.standby = reg_.standby();
        t.mutual = reg_.mutual;
    }
    if (t.view.state == State::Error) {
        throw OpError(409, t.node + " is ERROR (" + t.view.reason + ")");
    }
    return t;
}

std::string Monitor::doActivate(const Target& t) {
    if (t.view.state == State::Pause) {
        throw OpError(409, t.node + " is paused: resume it");
    }
    if (t.reg.role == Role::Master) {
        if (!t.standby) {
            throw OpError(409,
                          "no standby registered: activate on the master sets up replication "
                          "from the standby (mutual backup)");
        }
        pointTo(t.node, *t.standby);
        std::lock_guard<std::mutex> lock(mu_);
        reg_.mutual = true;
        save();
        return t.node + " replicates from the standby " + *t.standby + " (mutual backup)";
    }
    if (!t.master) {
        throw OpError(409, "no master registered");
    }
    if (t.view.state == State::Ok || t.view.state == State::Syncing) {
        throw OpError(409, t.node + " is " + stateName(t.view.state) +
                               ": it replicates from the master already");
    }
    pointTo(t.node, *t.master);
    setReadOnly(t.node, true);
    return t.node + " replicates from " + *t.master;
}

std::string Monitor::doDetach(const Target& t) {
    if (t.reg.role == Role::Master) {
        if (!t.mutual) {
            throw OpError(409, t.node + " is the master and replicates from nobody");
        }
        exec(t.node, "STOP SLAVE");
        exec(t.node, "RESET SLAVE ALL");
        std::lock_guard<std::mutex> lock(mu_);
        reg_.mutual = false;
        save();
        return t.node + " no longer replicates from the standby";
    }
    if (t.view.state == State::Detached) {
        throw OpError(409, t.node + " is DETACHED already");
    }
    exec(t.node, "STOP SLAVE");
    exec(t.node, "RESET SLAVE ALL");
    return t.node + " detached";
}

std::string Monitor::doPause(const Target& t) {
    if (t.view.state == State::Pause) {
        throw OpError(409, t.node + " is paused already");
    }
    if (t.reg.role == Role::Master) {
        blockUsers(t.node, true);
        setReadOnly(t.node, true);
    } else {
        exec(t.node, "STOP SLAVE");
    }
    std::lock_guard<std::mutex> lock(mu_);
    reg_.nodes[t.node].paused = true;
    save();
    return t.node +
           (t.reg.role == Role::Master ? " read-only (paused)" : " replication stopped (paused)");
}

std::string Monitor::doResume(const Target& t) {
    if (t.view.state != State::Pause) {
        throw OpError(409, t.node + " is " + stateName(t.view.state) + ", not PAUSE");
    }
    if (t.reg.role == Role::Master) {
        setReadOnly(t.node, false);
        blockUsers(t.node, false);
    } else {
        exec(t.node, "START SLAVE");
    }
    std::lock_guard<std::mutex> lock(mu_);
    reg_.nodes[t.node].paused = false;
    save();
    return t.node + " resumed";
}

std::string Monitor::operate(const std::string& op, const std::map<std::string, std::string>& args,
                             const std::string& by) {
    std::lock_guard<std::mutex> serial(opMutex_);
    OpRecord rec;
    rec.atNs = mp::wallClockNs();
    rec.op = op;
    rec.by = by;
    auto n = args.find("node");
    rec.node = n == args.end() ? (args.count("to") != 0 ? args.at("to") : "") : n->second;
    const auto t0 = std::chrono::steady_clock::now();
    auto finish = [&](bool ok, std::string result) {
        rec.ok = ok;
        rec.result = std::move(result);
        rec.seconds = since(t0);
        record(rec);
    };
    try {
        if (op != "register" && op != "unregister" && !leader_()) {
            throw OpError(409, "this monitor is not the acting one (coordination): ask the leader");
        }
        std::string result;
        if (op == "register") {
            result = doRegister(args);
        } else if (op == "unregister") {
            result = doUnregister(args);
        } else if (op == "switchover") {
            result = doSwitchover(arg(args, "to"));
        } else if (op == "failover") {
            result = doFailover();
        } else if (op == "activate") {
            result = doActivate(target(args));
        } else if (op == "detach") {
            result = doDetach(target(args));
        } else if (op == "pause") {
            result = doPause(target(args));
        } else if (op == "resume") {
            result = doResume(target(args));
        } else {
            throw OpError(404, "no operation '" + op +
                                   "' (register, unregister, activate, detach, pause, resume, "
                                   "switchover, failover)");
        }
        if (op != "switchover" && op != "failover") {
            refresh(o_.connectTimeoutMs + o_.readTimeoutMs + 1000);
            evaluate(true);
        }
        finish(true, result);
        return result;
    } catch (const OpError& e) {
        finish(false, e.what());
        throw;
    } catch (const std::exception& e) {
        finish(false, e.what());
        throw OpError(500, e.what());
    }
}

void Monitor::record(const OpRecord& r) {
    char secs[32];
    std::snprintf(secs, sizeof secs, "%.3f", r.seconds);
    log_(r.ok ? MP_LOG_INFO : MP_LOG_WARN,
         "operation " + r.op + (r.node.empty() ? "" : " " + r.node) + " by " + r.by + ": " +
             (r.ok ? "done" : "refused or failed") + " in " + secs + " s: " + r.result);
    std::lock_guard<std::mutex> lock(mu_);
    ops_.push_back(r);
    while (ops_.size() > 100) {
        ops_.pop_front();
    }
}

std::string Monitor::topologyJson() {
    std::lock_guard<std::mutex> lock(mu_);
    return lainJson(reg_, instances_, views_);
}

std::string Monitor::statusJson() {
    std::lock_guard<std::mutex> lock(mu_);
    std::string out = "{\"mutual\":" + std::string(reg_.mutual ? "true" : "false") +
                      ",\"registry_version\":" + std::to_string(reg_.version) + ",\"nodes\":[";
    bool first = true;
    for (const auto& i : o_.instances) {
        auto r = reg_.nodes.find(i.name);
        Role role = r == reg_.nodes.end() ? Role::None : r->second.role;
        auto st = statuses_.find(i.name);
        NodeStatus none;
        none.error = "not polled yet";
        out += first ? "" : ",";
        first = false;
        out +=
            monitor::statusJson(i, st == statuses_.end() ? none : st->second, role, views_[i.name]);
    }
    return out + "]}";
}

std::string Monitor::operationsJson() {
    std::lock_guard<std::mutex> lock(mu_);
    std::string out = "{\"operations\":[";
    for (size_t i = 0; i < ops_.size(); ++i) {
        const OpRecord& r = ops_[i];
        out += i == 0 ? "" : ",";
        out += "{\"at_ns\":" + std::to_string(r.atNs) + ",\"op\":" + jsonString(r.op) +
               ",\"node\":" + jsonString(r.node) + ",\"by\":" + jsonString(r.by) +
               ",\"ok\":" + (r.ok ? "true" : "false") + ",\"result\":" + jsonString(r.result) +
               ",\"seconds\":" + std::to_string(r.seconds) + "}";
    }
    return out + "]}";
}

Registry Monitor::registry() {
    std::lock_guard<std::mutex> lock(mu_);
    return reg_;
}

}  // namespace mp::monitor

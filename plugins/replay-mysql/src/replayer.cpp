// SPDX-License-Identifier: Apache-2.0
#include "replayer.hpp"

#include <netdb.h>
#include <sys/socket.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <mp/mysql_wire.hpp>
#include <mp/sdk.hpp>
#include <set>

#include "readonly.hpp"

namespace mp::replay {

namespace {

using Clock = std::chrono::steady_clock;
using mysql::inbound::Record;
using mysql::inbound::Type;

constexpr uint32_t kLastPrepared = 0xffffffff;

const char* const kSkipNames[] = {"read_only",      "truncated",      "unknown_statement",
                                  "prepare_failed", "not_replayable", "no_connection",
                                  "login_unknown",  "same_server"};

// Commands sent as they were captured (statement ids mapped); the rest are never replayed:
// replication, shutdown, kill, debug, the obsolete ones, and bulk execute (its capability is
// not negotiated).
bool replayable(uint8_t cmd) {
    switch (cmd) {
        case mysql::kQuit:
        case mysql::kInitDb:
        case mysql::kQuery:
        case mysql::kFieldList:
        case mysql::kCreateDb:
        case mysql::kDropDb:
        case mysql::kRefresh:
        case mysql::kStatistics:
        case mysql::kProcessInfo:
        case mysql::kPing:
        case mysql::kChangeUser:
        case mysql::kStmtPrepare:
        case mysql::kStmtExecute:
        case mysql::kStmtSendLongData:
        case mysql::kStmtClose:
        case mysql::kStmtReset:
        case mysql::kSetOption:
        case mysql::kStmtFetch:
        case mysql::kResetConnection:
            return true;
        default:
            return false;
    }
}

bool hasStatementId(uint8_t cmd) {
    return cmd == mysql::kStmtExecute || cmd == mysql::kStmtSendLongData ||
           cmd == mysql::kStmtClose || cmd == mysql::kStmtReset || cmd == mysql::kStmtFetch;
}

mysql::PacketReader reader(const std::string& b) {
    return {reinterpret_cast<const uint8_t*>(b.data()), b.size()};
}

// COM_CHANGE_USER's user and schema (protocol 4.1: user NUL, auth with its length byte,
// schema NUL).
bool changeUserFields(const std::string& b, std::string& user, std::string& schema) {
    mysql::PacketReader r = reader(b);
    r.skip(1);
    user = r.nulString(b.size());
    r.skip(static_cast<size_t>(r.le(1)));
    schema = r.nulString(b.size());
    return r.ok();
}

}  // namespace

const char* skipName(Skip s) { return kSkipNames[static_cast<int>(s)]; }

struct Replayer::Conn {
    std::thread thread;
    std::mutex mu;
    std::condition_variable cv;
    std::deque<Item> queue;
    bool closed = false;                // its close record is queued: nothing after it
    std::atomic<bool> finished{false};  // the thread has ended
    mysql::Connection db;
    bool opened = false;
    Skip broken = Skip::Count;  // Count: usable; else why every command is skipped
    std::unordered_map<uint32_t, uint32_t> statements;  // captured id -> target id
    std::set<uint32_t> skippedStatements;               // prepares skipped (read-only)
    std::set<uint32_t> failedStatements;                // prepares the target refused
    uint64_t lastN = 0;                                 // the last record's `n`
};

Replayer::Replayer(Options o, Done done, Log log)
    : opt_(std::move(o)),
      done_(std::move(done)),
      log_(std::move(log)),
      divergence_(opt_.maxTemplates, opt_.maxSamples) {
    // The target's addresses, to refuse replaying onto the captured server itself.
    addrinfo hints{};
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    if (getaddrinfo(opt_.target.host.c_str(), nullptr, &hints, &res) == 0) {
        for (addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
            char ip[NI_MAXHOST];
            if (getnameinfo(ai->ai_addr, ai->ai_addrlen, ip, sizeof ip, nullptr, 0,
                            NI_NUMERICHOST) == 0) {
                std::string port = std::to_string(opt_.target.port);
                targetAddrs_.push_back(ai->ai_family == AF_INET6
                                           ? "[" + std::string(ip) + "]:" + port
                                           : std::string(ip) + ":" + port);
            }
        }
        freeaddrinfo(res);
    }
}

Replayer::~Replayer() { stop(); }

bool Replayer::offer(std::vector<Record>&& batch, uint64_t token) {
    auto ack = std::make_shared<Ack>();
    ack->left = batch.size();
    ack->token = token;
    if (stopping_.load() || batch.empty()) {
        done_(token);
        return true;
    }
    auto sizeOf = [](const Record& r) {
        return r.bytes.size() + r.sql.size() + r.templateText.size() + 512;
    };
    size_t bytes = 0;
    for (const Record& r : batch) {
        bytes += sizeOf(r);
    }
    std::lock_guard<std::mutex> lock(mu_);
    reap(false);
    if (buffered_.load() > 0 && buffered_.load() + bytes > opt_.maxBufferBytes) {
        return false;
    }
    // The connections this batch opens must fit (when none runs, they are let in whatever
    // their number: a batch larger than the bound must not wait for ever).
    std::set<std::string> fresh;
    for (const Record& r : batch) {
        std::string key = r.client + " " + r.server;
        if (conns_.count(key) == 0) {
            fresh.insert(std::move(key));
        }
    }
    const size_t running = conns_.size() + ending_.size();
    if (!fresh.empty() && running != 0 && running + fresh.size() > opt_.maxConnections) {
        return false;  // until connections end
    }
    if (!clockSet_) {
        clockSet_ = true;
        captureZero_ = batch.front().ts;
        wallZero_ =
            Clock::now() + std::chrono::milliseconds(opt_.speed > 0 ? opt_.startDelayMs : 0);
    }
    buffered_ += bytes;
    for (Record& r : batch) {
        std::string key = r.client + " " + r.server;
        auto it = conns_.find(key);
        if (it == conns_.end()) {
            auto c = std::make_unique<Conn>();
            Conn* raw = c.get();
            it = conns_.emplace(key, std::move(c)).first;
            raw->thread = std::thread([this, raw] { run(*raw); });
        }
        Conn& c = *it->second;
        const bool close = r.type == Type::Close;
        const size_t size = sizeOf(r);
        {
            std::lock_guard<std::mutex> l(c.mu);
            c.queue.push_back(Item{std::move(r), ack, size});
            c.closed = close;
        }
        c.cv.notify_one();
        if (close) {  // the same client address may connect again: a new Conn then
            ending_.push_back(std::move(it->second));
            conns_.erase(it);
        }
    }
    return true;
}

void Replayer::finish(Item& item) {
    buffered_ -= item.bytes;
    if (item.ack && --item.ack->left == 0) {
        done_(item.ack->token);
    }
}

void Replayer::reap(bool all) {
    for (auto it = ending_.begin(); it != ending_.end();) {
        if (all || (*it)->finished.load()) {
            if ((*it)->thread.joinable()) {
                (*it)->thread.join();
            }
            it = ending_.erase(it);
        } else {
            ++it;
        }
    }
}

void Replayer::stop() {
    if (stopping_.exchange(true)) {
        return;
    }
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [key, c] : conns_) {
        ending_.push_back(std::move(c));
    }
    conns_.clear();
    for (auto& c : ending_) {
        c->db.interrupt();  // a command waiting for the target returns at once
        std::lock_guard<std::mutex> l(c->mu);
        c->cv.notify_all();
    }
    reap(true);
}

void Replayer::run(Conn& c) {
    for (;;) {
        Item item;
        {
            std::unique_lock<std::mutex> l(c.mu);
            c.cv.wait(l, [&] { return !c.queue.empty() || stopping_.load(); });
            if (c.queue.empty()) {
                break;  // stopping, nothing left
            }
            item = std::move(c.queue.front());
            c.queue.pop_front();
        }
        const bool last = item.rec.type == Type::Close;
        if (item.rec.n > c.lastN + 1 && c.lastN != 0) {
            missing_ += item.rec.n - c.lastN - 1;  // the collector dropped some (its counter)
        }
        c.lastN = std::max(c.lastN, item.rec.n);
        if (!stopping_.load()) {
            try {
                execute(c, item.rec);
            } catch (const std::exception& e) {
                // The target connection broke (network, protocol): what follows is skipped.
                log_(MP_LOG_WARN, "replay of " + item.rec.client + ": " + e.what());
                c.db.close();
                c.broken = Skip::NoConnection;
                ++failed_;
            }
        }
        finish(item);
        if (last) {
            break;
        }
    }
    if (c.opened && c.db.connected()) {
        try {
            c.db.command(std::string(1, static_cast<char>(mysql::kQuit)));
        } catch (const std::exception&) {
        }
    }
    c.db.close();
    // Records queued behind a close (none, normally) or at stop: given up.
    std::unique_lock<std::mutex> l(c.mu);
    while (!c.queue.empty()) {
        finish(c.queue.front());
        c.queue.pop_front();
    }
    c.finished = true;
}

void Replayer::skip(Skip why) { ++skipped_[static_cast<int>(why)]; }

void Replayer::pace(Conn& c, uint64_t ts) {
    if (opt_.speed <= 0) {
        return;
    }
    // The clock was set by the first record, before any connection's thread started.
    const uint64_t since = ts > captureZero_ ? ts - captureZero_ : 0;
    const Clock::time_point due =
        wallZero_ +
        std::chrono::nanoseconds(static_cast<int64_t>(static_cast<double>(since) / opt_.speed));
    auto now = Clock::now();
    if (now < due) {
        std::unique_lock<std::mutex> l(c.mu);
        c.cv.wait_until(l, due, [&] { return stopping_.load(); });
    } else {
        lagMs_ = static_cast<uint64_t>(
            std::chrono::duration_cast<std::chrono::milliseconds>(now - due).count());
    }
}

std::string Replayer::mapUser(const std::string& u) const {
    if (!opt_.target.user.empty()) {
        return opt_.target.user;
    }
    auto it = opt_.users.find(u);
    return it != opt_.users.end() ? it->second : u;
}

std::string Replayer::mapSchema(const std::string& s) const {
    auto it = opt_.schemas.find(s);
    return it != opt_.schemas.end() ? it->second : s;
}

bool Replayer::sameServer(const std::string& captured) {
    if (opt_.force ||
        std::find(targetAddrs_.begin(), targetAddrs_.end(), captured) == targetAddrs_.end()) {
        return false;
    }
    if (!sameWarned_.exchange(true)) {
        log_(MP_LOG_ERROR, "the target " + captured +
                               " is the captured server itself: its commands are not replayed "
                               "(set force: true to replay onto it anyway)");
    }
    return true;
}

bool Replayer::open(Conn& c, const Record& connect) {
    c.opened = true;
    if (sameServer(connect.server)) {
        c.broken = Skip::SameServer;
        return false;
    }
    if (!connect.loginKnown && opt_.target.user.empty()) {
        c.broken = Skip::LoginUnknown;
        return false;
    }
    mysql::ServerAddress a = opt_.target;
    a.user = mapUser(connect.user);
    a.schema = connect.loginKnown ? mapSchema(connect.schema) : std::string();
    a.collation = static_cast<uint8_t>(connect.collation);
    a.extraCapabilities = connect.clientFlags & mysql::kSemanticCapabilities;
    try {
        c.db.connect(a);
        ++opened_;
        return true;
    } catch (const std::exception& e) {
        ++failed_;
        c.broken = Skip::NoConnection;
        const uint64_t n = failed_.load();
        if (n <= 10 || n % 1000 == 0) {
            log_(MP_LOG_WARN, "cannot open the target connection for " + connect.client + " as " +
                                  a.user + ": " + e.what() + " (failure " + std::to_string(n) +
                                  "; its commands are skipped)");
        }
        return false;
    }
}

void Replayer::execute(Conn& c, const Record& r) {
    switch (r.type) {
        case Type::Connect:
            if (!r.loginFailed && !c.opened) {
                pace(c, r.ts);
                open(c, r);
            }
            return;
        case Type::Gap:
            ++gaps_;
            return;
        case Type::Close:
            return;
        case Type::Command:
            break;
    }
    if (!c.opened) {  // no connect record (lost): the login is not known
        Record unknown = r;
        unknown.loginKnown = false;
        open(c, unknown);
    }
    if (c.broken != Skip::Count) {
        skip(c.broken);
        return;
    }
    if (r.truncated || r.bytes.empty()) {
        skip(Skip::Truncated);
        return;
    }
    const auto cmd = static_cast<uint8_t>(r.bytes[0]);
    if (!replayable(cmd)) {
        skip(Skip::NotReplayable);
        return;
    }
    std::string packet = r.bytes;
    uint32_t capturedId = 0;
    if (hasStatementId(cmd)) {
        if (packet.size() < 5) {
            skip(Skip::Truncated);
            return;
        }
        mysql::PacketReader id = reader(packet);
        id.skip(1);
        capturedId = static_cast<uint32_t>(id.le(4));
        if (capturedId != kLastPrepared) {
            auto it = c.statements.find(capturedId);
            if (it == c.statements.end()) {
                skip(c.skippedStatements.count(capturedId) != 0  ? Skip::ReadOnly
                     : c.failedStatements.count(capturedId) != 0 ? Skip::PrepareFailed
                                                                 : Skip::UnknownStatement);
                return;
            }
            for (int i = 0; i < 4; ++i) {
                packet[1 + static_cast<size_t>(i)] =
                    static_cast<char>((it->second >> (8 * i)) & 0xff);
            }
        }
    }
    if (opt_.readOnly) {
        const std::string_view text(packet.data() + 1, packet.size() - 1);
        bool writes = cmd == mysql::kCreateDb || cmd == mysql::kDropDb || cmd == mysql::kRefresh;
        if (cmd == mysql::kQuery) {
            writes = !readOnlySql(text);
        }
        if (cmd == mysql::kStmtPrepare && !readOnlySql(text)) {
            c.skippedStatements.insert(r.statementId);
            skip(Skip::ReadOnly);
            return;
        }
        if (writes) {
            skip(Skip::ReadOnly);
            return;
        }
    }
    pace(c, r.ts);
    if (stopping_.load()) {
        return;
    }
    mysql::Response resp;
    const auto t0 = Clock::now();
    if (cmd == mysql::kChangeUser) {
        std::string user, schema;
        if (!changeUserFields(packet, user, schema)) {
            skip(Skip::Truncated);
            return;
        }
        resp = c.db.changeUser(mapUser(user), opt_.target.password, mapSchema(schema));
    } else {
        if (cmd == mysql::kInitDb) {
            packet =
                std::string(1, static_cast<char>(mysql::kInitDb)) + mapSchema(packet.substr(1));
        }
        resp = c.db.command(packet);
    }
    const double us = std::chrono::duration<double, std::micro>(Clock::now() - t0).count();
    if (cmd == mysql::kStmtPrepare && r.statementId != 0) {
        if (resp.kind == mysql::Response::Prepared) {
            c.statements[r.statementId] = resp.statementId;
        } else {
            c.failedStatements.insert(r.statementId);
        }
    }
    if (cmd == mysql::kStmtClose) {
        c.statements.erase(capturedId);
    }
    if (cmd == mysql::kQuit) {
        c.broken = Skip::NoConnection;  // nothing should follow
    }
    ++replayed_;
    if (resp.kind == mysql::Response::Error) {
        ++targetErrors_;
    }
    divergence_.add(r, resp, us);
}

Replayer::Stats Replayer::stats() const {
    Stats s;
    s.replayed = replayed_.load();
    for (int i = 0; i < static_cast<int>(Skip::Count); ++i) {
        s.skipped[i] = skipped_[i].load();
    }
    s.targetErrors = targetErrors_.load();
    s.divergent = divergence_.divergentCommands();
    s.connectionsOpened = opened_.load();
    s.connectionsFailed = failed_.load();
    s.gaps = gaps_.load();
    s.missing = missing_.load();
    s.lagMs = lagMs_.load();
    s.bufferedBytes = buffered_.load();
    std::lock_guard<std::mutex> lock(mu_);
    s.connectionsOpen = conns_.size() + ending_.size();
    return s;
}

std::string Replayer::reportJson() const {
    Stats s = stats();
    std::string out = "{\"replayed\":" + std::to_string(s.replayed) + ",\"skipped\":{";
    for (int i = 0; i < static_cast<int>(Skip::Count); ++i) {
        out += i == 0 ? "\"" : ",\"";
        out += kSkipNames[i];
        out += "\":" + std::to_string(s.skipped[i]);
    }
    out += "},\"target_errors\":" + std::to_string(s.targetErrors) +
           ",\"connections_opened\":" + std::to_string(s.connectionsOpened) +
           ",\"connections_failed\":" + std::to_string(s.connectionsFailed) +
           ",\"gaps\":" + std::to_string(s.gaps) +
           ",\"records_missing\":" + std::to_string(s.missing) +
           ",\"lag_ms\":" + std::to_string(s.lagMs) + ",\"divergence\":" + divergence_.json() + "}";
    return out;
}

}  // namespace mp::replay

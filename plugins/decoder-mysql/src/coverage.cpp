// SPDX-License-Identifier: Apache-2.0
#include "coverage.hpp"

#include <cstdio>
#include <mp/mysql_wire.hpp>
#include <mp/sdk.hpp>

namespace mp::mysql {

namespace {

std::string_view nextWord(std::string_view s, size_t& at) {
    while (at < s.size() && (s[at] == ' ' || s[at] == '(')) {
        ++at;
    }
    size_t start = at;
    while (at < s.size() && ((s[at] >= 'a' && s[at] <= 'z') || s[at] == '_')) {
        ++at;
    }
    return s.substr(start, at - start);
}

// What the probe compares with which server counters.
struct Compared {
    const char* key;
    std::vector<const char*> counters;  // summed
    enum { Questions, Command, Kind } from;
    unsigned index;  // command byte or StatementKind
};

const std::vector<Compared>& comparisons() {
    static const std::vector<Compared> all = {
        {"questions", {"Questions"}, Compared::Questions, 0},
        {"stmt_execute", {"Com_stmt_execute"}, Compared::Command, kStmtExecute},
        {"stmt_prepare", {"Com_stmt_prepare"}, Compared::Command, kStmtPrepare},
        {"stmt_close", {"Com_stmt_close"}, Compared::Command, kStmtClose},
        {"stmt_reset", {"Com_stmt_reset"}, Compared::Command, kStmtReset},
        {"stmt_fetch", {"Com_stmt_fetch"}, Compared::Command, kStmtFetch},
        {"stmt_send_long_data", {"Com_stmt_send_long_data"}, Compared::Command, kStmtSendLongData},
        {"select", {"Com_select"}, Compared::Kind, unsigned(StatementKind::Select)},
        {"insert",
         {"Com_insert", "Com_insert_select"},
         Compared::Kind,
         unsigned(StatementKind::Insert)},
        {"update",
         {"Com_update", "Com_update_multi"},
         Compared::Kind,
         unsigned(StatementKind::Update)},
        {"delete",
         {"Com_delete", "Com_delete_multi"},
         Compared::Kind,
         unsigned(StatementKind::Delete)},
        {"replace",
         {"Com_replace", "Com_replace_select"},
         Compared::Kind,
         unsigned(StatementKind::Replace)},
        {"begin", {"Com_begin"}, Compared::Kind, unsigned(StatementKind::Begin)},
        {"commit", {"Com_commit"}, Compared::Kind, unsigned(StatementKind::Commit)},
        {"rollback", {"Com_rollback"}, Compared::Kind, unsigned(StatementKind::Rollback)},
    };
    return all;
}

uint64_t seenFor(const Compared& c, const Seen& s) {
    switch (c.from) {
        case Compared::Questions:
            return s.questions();
        case Compared::Command:
            return s.commands[c.index];
        case Compared::Kind:
            return s.kinds[c.index];
    }
    return 0;
}

uint64_t value(const StatusCounters& m, const char* name) {
    auto it = m.find(name);
    return it == m.end() ? 0 : it->second;
}

std::string ratio(const CoverageAccount::Figure& f) {
    if (f.counted == 0) {
        return "null";
    }
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.6f", static_cast<double>(f.seen) / f.counted);
    std::string s = buf;
    s.erase(s.find_last_not_of('0') + 1);
    if (s.back() == '.') {
        s.pop_back();
    }
    return s;
}

void figuresJson(std::string& out, const CoverageAccount::Figures& figures) {
    out += '{';
    bool first = true;
    for (const auto& [key, f] : figures) {
        out += first ? "\"" : ",\"";
        first = false;
        out += key;
        out += "\":{\"seen\":" + std::to_string(f.seen) +
               ",\"counted\":" + std::to_string(f.counted) + ",\"ratio\":" + ratio(f) + "}";
    }
    out += '}';
}

}  // namespace

StatementKind statementKind(std::string_view fp) {
    size_t at = 0;
    std::string_view w = nextWord(fp, at);
    if (w == "select" || w == "with") {
        return StatementKind::Select;
    }
    if (w == "insert") {
        return StatementKind::Insert;
    }
    if (w == "update") {
        return StatementKind::Update;
    }
    if (w == "delete") {
        return StatementKind::Delete;
    }
    if (w == "replace") {
        return StatementKind::Replace;
    }
    if (w == "begin") {
        return StatementKind::Begin;
    }
    if (w == "start") {
        return nextWord(fp, at) == "transaction" ? StatementKind::Begin : StatementKind::Other;
    }
    if (w == "commit") {
        return StatementKind::Commit;
    }
    if (w == "rollback") {
        std::string_view next = nextWord(fp, at);
        if (next == "work") {
            next = nextWord(fp, at);
        }
        return next == "to" ? StatementKind::Other : StatementKind::Rollback;
    }
    return StatementKind::Other;
}

void Seen::add(const Transaction& tx) {
    ++commands[tx.command];
    if (tx.command == kQuery || tx.command == kStmtExecute) {
        if (tx.fingerprint.empty()) {
            // An empty COM_QUERY is no statement; an execute without text has an unknown kind.
            if (tx.command == kStmtExecute) {
                ++kinds[unsigned(StatementKind::Unknown)];
            }
            return;
        }
        ++kinds[unsigned(statementKind(tx.fingerprint))];
    }
}

void Seen::merge(const Seen& o) {
    for (size_t i = 0; i < commands.size(); ++i) {
        commands[i] += o.commands[i];
    }
    for (size_t i = 0; i < kinds.size(); ++i) {
        kinds[i] += o.kinds[i];
    }
}

bool Seen::empty() const {
    for (uint64_t c : commands) {
        if (c != 0) {
            return false;
        }
    }
    return true;
}

uint64_t Seen::questions() const {
    uint64_t n = 0;
    for (size_t c = 0; c < commands.size(); ++c) {
        if (c != kPing && c != kStatistics && c != kStmtPrepare && c != kStmtClose &&
            c != kStmtReset) {
            n += commands[c];
        }
    }
    return n;
}

const std::vector<std::string>& coverageCounters() {
    static const std::vector<std::string> names = [] {
        std::vector<std::string> v;
        for (const auto& c : comparisons()) {
            for (const char* n : c.counters) {
                v.emplace_back(n);
            }
        }
        return v;
    }();
    return names;
}

void CoverageAccount::reading(const StatusCounters& server, const StatusCounters& own,
                              const Seen& seen, uint64_t ts) {
    compared_ = false;
    error_.clear();
    interval_.clear();
    ++readings_;
    readingNs_ = ts;
    bool wentBack = false;
    if (last_) {
        for (const auto& name : coverageCounters()) {
            wentBack = wentBack || value(server, name.c_str()) < value(*last_, name.c_str());
        }
    }
    if (!last_ || wentBack) {  // a new baseline: what the probe saw before it is not compared
        last_ = server;
        baselineNs_ = baselineNs_ == 0 ? ts : baselineNs_;
        uncompared_ += readings_ + failures_ > 1 ? 1 : 0;  // not the very first reading
        return;
    }
    const bool first = total_.empty();
    size_t i = 0;
    for (const auto& c : comparisons()) {
        Figure f;
        f.seen = seenFor(c, seen);
        for (const char* n : c.counters) {
            const uint64_t delta = value(server, n) - value(*last_, n);
            const uint64_t mine = value(own, n);
            f.counted += delta > mine ? delta - mine : 0;
        }
        interval_.emplace_back(c.key, f);
        if (first) {
            total_.emplace_back(c.key, Figure{});
        }
        total_[i].second.seen += f.seen;
        total_[i].second.counted += f.counted;
        ++i;
    }
    unknownExecutes_ += seen.kinds[unsigned(StatementKind::Unknown)];
    last_ = server;
    compared_ = true;
}

void CoverageAccount::failed(const std::string& why, const Seen& /*seen*/, uint64_t ts) {
    compared_ = false;
    interval_.clear();
    error_ = why;
    ++failures_;
    ++uncompared_;
    readingNs_ = ts;
    last_.reset();  // the next reading is a new baseline
}

std::string CoverageAccount::json(const std::string& server) const {
    std::string out = "{\"server\":" + jsonString(server) +
                      ",\"readings\":" + std::to_string(readings_) +
                      ",\"failed_readings\":" + std::to_string(failures_) +
                      ",\"reading_ns\":" + std::to_string(readingNs_) +
                      ",\"baseline_ns\":" + std::to_string(baselineNs_) +
                      ",\"uncompared_intervals\":" + std::to_string(uncompared_);
    if (!error_.empty()) {
        out += ",\"error\":" + jsonString(error_);
    }
    if (compared_) {
        out += ",\"interval\":";
        figuresJson(out, interval_);
    }
    if (!total_.empty()) {
        out += ",\"total\":";
        figuresJson(out, total_);
        out += ",\"ratio\":" + ratio(total_.front().second);
        out += ",\"unknown_executes\":" + std::to_string(unknownExecutes_);
    }
    out += '}';
    return out;
}

}  // namespace mp::mysql

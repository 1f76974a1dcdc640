// SPDX-License-Identifier: Apache-2.0
#include "aggregate.hpp"

#include <algorithm>

#include "fingerprint.hpp"
#include "params.hpp"

namespace mp::mysql {

namespace {

// An error message as the report keeps it: bounded; under masked or none samples its quoted
// parts (values: "Duplicate entry 'bob@example.com' for key 'email'") become '?'.
std::string errorTextFor(Samples samples, std::string_view message) {
    if (samples == Samples::Raw) {
        return report::boundedMessage(message);
    }
    std::string out;
    for (size_t i = 0; i < message.size(); ++i) {
        if (message[i] == '\'') {
            size_t end = message.find('\'', i + 1);
            out += "'?'";
            if (end == std::string_view::npos) {
                break;
            }
            i = end;
        } else {
            out += message[i];
        }
    }
    return report::boundedMessage(out);
}

}  // namespace

std::map<std::string, uint64_t> Aggregator::commands() const {
    std::map<std::string, uint64_t> out;
    for (size_t c = 0; c < commands_.size(); ++c) {
        if (commands_[c] != 0) {
            out[commandName(static_cast<uint8_t>(c))] = commands_[c];
        }
    }
    return out;
}

void Aggregator::add(const Transaction& tx, std::string_view server, std::string_view client,
                     uint16_t clientPort) {
    ++commands_[tx.command];
    report::Section& r = section_;
    r.rows += tx.rowsReturned;
    const bool error = tx.outcome == Outcome::Error;
    if (error) {
        ++r.errors;
        ++r.errorCodes[tx.errorCode];
    }
    if (tx.outcome == Outcome::Lost) {
        ++r.lost;
    }
    bool execution =
        tx.command == kQuery || tx.command == kStmtExecute || tx.command == kStmtBulkExecute;
    if (!execution) {
        return;
    }
    if (tx.fingerprint.empty() && tx.sql.empty()) {
        if (tx.command != kQuery) {  // an empty COM_QUERY is no execute
            r.addUnresolved(server, tx.schema, 1);
        }
        return;
    }
    TemplateStats* found = findOrAdd(server, tx.schema, tx.fingerprintId);
    if (found == nullptr) {
        ++r.evicted;
        return;
    }
    TemplateStats& t = *found;
    if (t.count == 0) {
        t.fingerprint = tx.fingerprint;
    }
    ++t.count;
    if (error) {
        ++t.errors;
        if (t.errorCodes.count(tx.errorCode) != 0 ||
            t.errorCodes.size() < TemplateStats::kMaxErrorCodes) {
            ++t.errorCodes[tx.errorCode];
            report::ErrorInfo& info = t.errorInfo[tx.errorCode];  // the latest message
            info.sqlState = tx.sqlState;
            info.message = errorTextFor(limits_.samples, tx.errorMessage);
        } else {
            ++t.otherErrors;
        }
    }
    double us = 0;
    if (tx.outcome == Outcome::Lost || tx.responseTs < tx.requestTs) {
        ++t.lost;
    } else {
        us = static_cast<double>(tx.responseTs - tx.requestTs) / 1000.0;
        t.latency.add(us);
    }
    t.rowsReturned += tx.rowsReturned;
    t.rowsAffected += tx.rowsAffected;
    t.bytesIn += tx.requestBytes;
    t.bytesOut += tx.responseBytes;
    const uint64_t noGood = (tx.statusFlags & 0x0010) != 0 ? 1 : 0;
    const uint64_t noIndex = (tx.statusFlags & 0x0020) != 0 ? 1 : 0;
    const uint64_t slowFlag = (tx.statusFlags & 0x0800) != 0 ? 1 : 0;
    t.noGoodIndexUsed += noGood;
    t.noIndexUsed += noIndex;
    t.slowFlag += slowFlag;
    t.inTransaction += (tx.statusFlags & 0x0001) != 0 ? 1 : 0;
    t.warnings += tx.warnings;
    // Samples are runnable SQL: an execute's placeholders get its parameters (raw), or the
    // statement with its literals masked, or nothing (the `samples` setting).
    auto sampleSql = [&tx, this]() -> std::string {
        if (limits_.samples == Samples::None) {
            return {};
        }
        if (limits_.samples == Samples::Masked) {
            return maskLiterals(tx.sql, limits_.maxSample);
        }
        if (tx.params.empty() && !tx.executeParams.present) {
            return tx.sql;
        }
        std::vector<std::string> values = tx.paramValues();
        return values.empty() ? tx.sql : substituteParams(tx.sql, values, limits_.maxSample);
    };
    if (t.firstSeen == 0) {
        t.firstSeen = tx.requestTs;
        t.sample = sampleSql();
    }
    t.lastSeen = std::max(t.lastSeen, tx.requestTs);
    for (Breakdown* b : {&t.clients.at(client), &t.users.at(tx.user)}) {
        ++b->count;
        b->errors += error ? 1 : 0;
        (error ? b->errorLatencySumUs : b->latencySumUs) += us;
        b->noGoodIndexUsed += noGood;
        b->noIndexUsed += noIndex;
        b->slowFlag += slowFlag;
        b->lastSeen = std::max(b->lastSeen, tx.requestTs);
    }
    if (us > limits_.slowThresholdUs) {
        SlowSample* slot = nullptr;
        if (t.slow.size() < TemplateStats::kMaxSlow) {
            slot = &t.slow.emplace_back();
        } else {
            auto least = std::min_element(
                t.slow.begin(), t.slow.end(),
                [](const SlowSample& a, const SlowSample& b) { return a.us < b.us; });
            if (least->us < us) {
                slot = &*least;
            }
        }
        if (slot != nullptr) {
            *slot =
                SlowSample{us,
                           sampleSql(),
                           std::string(client),
                           clientPort,
                           tx.connectionId,
                           tx.user,
                           tx.requestTs,
                           tx.errorCode,
                           tx.statusFlags,
                           tx.rowsAffected,
                           error ? errorTextFor(limits_.samples, tx.errorMessage) : std::string()};
        }
    }
}

TemplateStats* Aggregator::findOrAdd(std::string_view server, std::string_view schema,
                                     uint64_t id) {
    Hot& h = hot_[id & (hot_.size() - 1)];
    if (h.stats != nullptr && h.id == id && h.server == server && h.schema == schema) {
        return h.stats;
    }
    TemplateStats* t = section_.findOrAdd(server, schema, id);
    if (t != nullptr) {
        h.id = id;
        h.server.assign(server);
        h.schema.assign(schema);
        h.stats = t;
    }
    return t;
}

void Aggregator::merge(const Aggregator& o) {
    for (size_t c = 0; c < commands_.size(); ++c) {
        commands_[c] += o.commands_[c];
    }
    covered_.merge(o.covered_);
    section_.merge(o.section_);
}

void Aggregator::clear() {
    commands_.fill(0);
    covered_ = Seen{};
    forgetHot();  // the table goes
    section_ = report::Section();
    section_.maxTemplates = limits_.maxTemplates;
}

std::string Aggregator::json() {
    section_.commands = commands();
    return section_.json();
}

}  // namespace mp::mysql

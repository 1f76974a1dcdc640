// SPDX-License-Identifier: Apache-2.0
#include "aggregate.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <mp/sdk.hpp>
#include <sstream>

namespace mp::mysql {

namespace {
const double kGamma = (1 + LatencySketch::kAlpha) / (1 - LatencySketch::kAlpha);
const double kLogGamma = std::log(kGamma);

std::string hex64(uint64_t v) {
    char buf[17];
    std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
    return buf;
}

std::string num(double v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.1f", v);
    return buf;
}
}  // namespace

int LatencySketch::index(double us) {
    return static_cast<int>(std::ceil(std::log(us) / kLogGamma));
}

double LatencySketch::value(int index) {
    // The middle of the bucket (gamma^(i-1), gamma^i]: within alpha of every value in it.
    return 2.0 * std::pow(kGamma, index) / (kGamma + 1.0);
}

void LatencySketch::add(double us) {
    if (count_ == 0 || us < min_) {
        min_ = us;
    }
    max_ = std::max(max_, us);
    sum_ += us;
    ++count_;
    if (us < 0.001) {
        ++zero_;
        return;
    }
    ++buckets_[index(us)];
}

void LatencySketch::merge(const LatencySketch& o) {
    if (o.count_ == 0) {
        return;
    }
    if (count_ == 0 || o.min_ < min_) {
        min_ = o.min_;
    }
    max_ = std::max(max_, o.max_);
    sum_ += o.sum_;
    count_ += o.count_;
    zero_ += o.zero_;
    for (const auto& [i, c] : o.buckets_) {
        buckets_[i] += c;
    }
}

double LatencySketch::quantile(double q) const {
    if (count_ == 0) {
        return 0;
    }
    // Rank round(q * n + 0.5) with ties to even, clamped to [1, n]: the nearest-rank order
    // statistic as the reference decoder of tests/data/pcap computes it (no interpolation).
    double r = std::nearbyint(q * static_cast<double>(count_) + 0.5);
    auto rank = static_cast<uint64_t>(std::clamp(r, 1.0, static_cast<double>(count_)));
    if (rank == count_) {
        return max_;  // exact
    }
    uint64_t seen = zero_;
    if (rank <= seen) {
        return 0;
    }
    for (const auto& [i, c] : buckets_) {
        seen += c;
        if (seen >= rank) {
            return std::clamp(value(i), min_, max_);
        }
    }
    return max_;
}

std::string LatencySketch::json() const {
    std::ostringstream out;
    out << "{\"alpha\":" << kAlpha << ",\"zero\":" << zero_ << ",\"buckets\":[";
    bool first = true;
    for (const auto& [i, c] : buckets_) {
        out << (first ? "" : ",") << '[' << i << ',' << c << ']';
        first = false;
    }
    out << "]}";
    return out.str();
}

void TemplateStats::merge(const TemplateStats& o) {
    count += o.count;
    errors += o.errors;
    for (const auto& [code, c] : o.errorCodes) {
        if (errorCodes.count(code) != 0 || errorCodes.size() < kMaxErrorCodes) {
            errorCodes[code] += c;
        } else {
            otherErrors += c;
        }
    }
    otherErrors += o.otherErrors;
    lost += o.lost;
    latency.merge(o.latency);
    rowsReturned += o.rowsReturned;
    rowsAffected += o.rowsAffected;
    bytesIn += o.bytesIn;
    bytesOut += o.bytesOut;
    noIndexUsed += o.noIndexUsed;
    noGoodIndexUsed += o.noGoodIndexUsed;
    slowFlag += o.slowFlag;
    inTransaction += o.inTransaction;
    warnings += o.warnings;
    if (firstSeen == 0 || (o.firstSeen != 0 && o.firstSeen < firstSeen)) {
        firstSeen = o.firstSeen;
        if (!o.sample.empty()) {
            sample = o.sample;
        }
    }
    lastSeen = std::max(lastSeen, o.lastSeen);
    if (sample.empty()) {
        sample = o.sample;
    }
    slow.insert(slow.end(), o.slow.begin(), o.slow.end());
    std::sort(slow.begin(), slow.end(),
              [](const auto& a, const auto& b) { return a.first > b.first; });
    if (slow.size() > kMaxSlow) {
        slow.resize(kMaxSlow);
    }
}

void Aggregator::add(const Transaction& tx, const std::string& server) {
    ++commands_[tx.commandName];
    rows_ += tx.rowsReturned;
    if (tx.outcome == Outcome::Error) {
        ++errors_;
        ++errorCodes_[tx.errorCode];
    }
    if (tx.outcome == Outcome::Lost) {
        ++lost_;
    }
    bool execution =
        tx.command == kQuery || tx.command == kStmtExecute || tx.command == kStmtBulkExecute;
    if (!execution || (tx.fingerprint.empty() && tx.sql.empty())) {
        return;
    }
    std::string key = server + "|" + tx.schema + "|" + std::to_string(tx.fingerprintId);
    auto it = templates_.find(key);
    if (it == templates_.end()) {
        if (templates_.size() >= limits_.maxTemplates) {
            ++evicted_;
            return;
        }
        TemplateStats t;
        t.fingerprint = tx.fingerprint;
        t.id = tx.fingerprintId;
        t.server = server;
        t.schema = tx.schema;
        it = templates_.emplace(key, std::move(t)).first;
    }
    TemplateStats& t = it->second;
    ++t.count;
    if (tx.outcome == Outcome::Error) {
        ++t.errors;
        if (t.errorCodes.count(tx.errorCode) != 0 ||
            t.errorCodes.size() < TemplateStats::kMaxErrorCodes) {
            ++t.errorCodes[tx.errorCode];
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
    t.noGoodIndexUsed += (tx.statusFlags & 0x0010) != 0 ? 1 : 0;
    t.noIndexUsed += (tx.statusFlags & 0x0020) != 0 ? 1 : 0;
    t.slowFlag += (tx.statusFlags & 0x0800) != 0 ? 1 : 0;
    t.inTransaction += (tx.statusFlags & 0x0001) != 0 ? 1 : 0;
    t.warnings += tx.warnings;
    if (t.firstSeen == 0) {
        t.firstSeen = tx.requestTs;
        t.sample = tx.sql;
    }
    t.lastSeen = std::max(t.lastSeen, tx.requestTs);
    if (us > limits_.slowThresholdUs) {
        if (t.slow.size() < TemplateStats::kMaxSlow) {
            t.slow.emplace_back(us, tx.sql);
        } else {
            auto least = std::min_element(t.slow.begin(), t.slow.end());
            if (least->first < us) {
                *least = {us, tx.sql};
            }
        }
    }
}

void Aggregator::merge(const Aggregator& o) {
    for (const auto& [k, v] : o.commands_) {
        commands_[k] += v;
    }
    for (const auto& [k, v] : o.errorCodes_) {
        errorCodes_[k] += v;
    }
    errors_ += o.errors_;
    rows_ += o.rows_;
    lost_ += o.lost_;
    evicted_ += o.evicted_;
    for (const auto& [key, t] : o.templates_) {
        auto it = templates_.find(key);
        if (it != templates_.end()) {
            it->second.merge(t);
        } else if (templates_.size() < limits_.maxTemplates) {
            templates_.emplace(key, t);
        } else {
            evicted_ += t.count;
        }
    }
}

void Aggregator::clear() {
    commands_.clear();
    errorCodes_.clear();
    errors_ = rows_ = lost_ = evicted_ = 0;
    templates_.clear();
}

std::string Aggregator::json() const {
    std::ostringstream out;
    out << "\"totals\":{\"commands\":{";
    bool first = true;
    uint64_t total = 0;
    for (const auto& [k, v] : commands_) {
        out << (first ? "" : ",") << mp::jsonString(k) << ':' << v;
        total += v;
        first = false;
    }
    out << "},\"commands_total\":" << total << ",\"errors\":" << errors_ << ",\"errors_by_code\":{";
    first = true;
    for (const auto& [k, v] : errorCodes_) {
        out << (first ? "" : ",") << '"' << k << "\":" << v;
        first = false;
    }
    out << "},\"rows_returned\":" << rows_ << ",\"lost_responses\":" << lost_
        << ",\"templates_evicted\":" << evicted_ << "},\"templates\":[";
    // Most total time first: what an operator looks at.
    std::vector<const TemplateStats*> order;
    for (const auto& [k, t] : templates_) {
        order.push_back(&t);
    }
    std::sort(order.begin(), order.end(), [](const TemplateStats* a, const TemplateStats* b) {
        if (a->latency.sum() != b->latency.sum()) {
            return a->latency.sum() > b->latency.sum();
        }
        return a->fingerprint < b->fingerprint;
    });
    first = true;
    for (const TemplateStats* t : order) {
        const LatencySketch& l = t->latency;
        out << (first ? "" : ",") << "{\"fingerprint\":" << mp::jsonString(t->fingerprint)
            << ",\"id\":\"" << hex64(t->id) << "\",\"server\":" << mp::jsonString(t->server)
            << ",\"schema\":" << mp::jsonString(t->schema) << ",\"count\":" << t->count
            << ",\"errors\":" << t->errors << ",\"errors_by_code\":{";
        bool f2 = true;
        for (const auto& [code, c] : t->errorCodes) {
            out << (f2 ? "" : ",") << '"' << code << "\":" << c;
            f2 = false;
        }
        out << "},\"other_errors\":" << t->otherErrors << ",\"lost\":" << t->lost
            << ",\"latency_us\":{\"p50\":" << num(l.quantile(0.5))
            << ",\"p95\":" << num(l.quantile(0.95)) << ",\"p99\":" << num(l.quantile(0.99))
            << ",\"p999\":" << num(l.quantile(0.999)) << ",\"min\":" << num(l.min())
            << ",\"max\":" << num(l.max()) << ",\"sum\":" << num(l.sum())
            << ",\"sketch\":" << l.json() << "},\"rows_returned\":" << t->rowsReturned
            << ",\"rows_affected\":" << t->rowsAffected << ",\"bytes_in\":" << t->bytesIn
            << ",\"bytes_out\":" << t->bytesOut << ",\"no_index_used\":" << t->noIndexUsed
            << ",\"no_good_index_used\":" << t->noGoodIndexUsed
            << ",\"query_was_slow\":" << t->slowFlag << ",\"in_transaction\":" << t->inTransaction
            << ",\"warnings\":" << t->warnings << ",\"first_seen_ns\":" << t->firstSeen
            << ",\"last_seen_ns\":" << t->lastSeen << ",\"sample\":" << mp::jsonString(t->sample)
            << ",\"slow\":[";
        bool f3 = true;
        for (const auto& [us, sql] : t->slow) {
            out << (f3 ? "" : ",") << "{\"latency_us\":" << num(us)
                << ",\"sql\":" << mp::jsonString(sql) << "}";
            f3 = false;
        }
        out << "]}";
        first = false;
    }
    out << "]";
    return out.str();
}

}  // namespace mp::mysql

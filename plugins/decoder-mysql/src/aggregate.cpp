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

void breakdown(std::ostream& out, const Breakdown& b) {
    out << "\"count\":" << b.count << ",\"errors\":" << b.errors
        << ",\"latency_sum_us\":" << num(b.latencySumUs)
        << ",\"error_latency_sum_us\":" << num(b.errorLatencySumUs)
        << ",\"no_index_used\":" << b.noIndexUsed << ",\"no_good_index_used\":" << b.noGoodIndexUsed
        << ",\"query_was_slow\":" << b.slowFlag << ",\"last_seen_ns\":" << b.lastSeen;
}

// [{"addr":..., counts...}, ...] then, when the bound was reached, {"other":true, counts...}.
template <size_t Max>
void breakdowns(std::ostream& out, const BreakdownSet<Max>& set, const char* field) {
    out << '[';
    bool first = true;
    for (const auto& [name, b] : set.named) {
        out << (first ? "" : ",") << "{\"" << field << "\":" << mp::jsonString(name) << ',';
        breakdown(out, b);
        out << '}';
        first = false;
    }
    if (set.other.count != 0) {
        out << (first ? "" : ",") << "{\"other\":true,";
        breakdown(out, set.other);
        out << '}';
    }
    out << ']';
}
}  // namespace

int LatencySketch::index(double us) {
    double i = std::ceil(std::log(us) / kLogGamma);
    return static_cast<int>(std::clamp(i, double(kMinIndex), double(kMaxIndex)));
}

// Makes index i part of the array (never shrinks it).
void LatencySketch::grow(int i) {
    if (counts_.empty()) {
        offset_ = i;
        counts_.assign(1, 0);
        return;
    }
    if (i < offset_) {
        counts_.insert(counts_.begin(), static_cast<size_t>(offset_ - i), 0);
        offset_ = i;
    } else if (i >= offset_ + static_cast<int>(counts_.size())) {
        counts_.resize(static_cast<size_t>(i - offset_) + 1, 0);
    }
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
    int i = index(us);
    grow(i);
    ++counts_[static_cast<size_t>(i - offset_)];
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
    if (o.counts_.empty()) {
        return;
    }
    grow(o.offset_);
    grow(o.offset_ + static_cast<int>(o.counts_.size()) - 1);
    for (size_t k = 0; k < o.counts_.size(); ++k) {
        counts_[static_cast<size_t>(o.offset_ - offset_) + k] += o.counts_[k];
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
    for (size_t k = 0; k < counts_.size(); ++k) {
        seen += counts_[k];
        if (seen >= rank) {
            return std::clamp(value(offset_ + static_cast<int>(k)), min_, max_);
        }
    }
    return max_;
}

std::string LatencySketch::json() const {
    std::ostringstream out;
    out << "{\"alpha\":" << kAlpha << ",\"zero\":" << zero_ << ",\"buckets\":[";
    bool first = true;
    forEach([&](int i, uint64_t c) {
        out << (first ? "" : ",") << '[' << i << ',' << c << ']';
        first = false;
    });
    out << "]}";
    return out.str();
}

void Breakdown::merge(const Breakdown& o) {
    count += o.count;
    errors += o.errors;
    latencySumUs += o.latencySumUs;
    errorLatencySumUs += o.errorLatencySumUs;
    noIndexUsed += o.noIndexUsed;
    noGoodIndexUsed += o.noGoodIndexUsed;
    slowFlag += o.slowFlag;
    lastSeen = std::max(lastSeen, o.lastSeen);
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
    std::sort(slow.begin(), slow.end(), [](const SlowSample& a, const SlowSample& b) {
        return a.us != b.us ? a.us > b.us : a.ts < b.ts;
    });
    if (slow.size() > kMaxSlow) {
        slow.resize(kMaxSlow);
    }
    clients.merge(o.clients);
    users.merge(o.users);
}

size_t Aggregator::KeyHash::operator()(const KeyView& k) const {
    std::hash<std::string_view> h;
    uint64_t x = k.id * 0x9e3779b97f4a7c15ULL;
    x ^= h(k.server) + 0x9e3779b97f4a7c15ULL + (x << 6) + (x >> 2);
    x ^= h(k.schema) + 0x9e3779b97f4a7c15ULL + (x << 6) + (x >> 2);
    return static_cast<size_t>(x);
}

std::map<std::string, uint64_t> Aggregator::commands() const {
    std::map<std::string, uint64_t> out;
    for (size_t c = 0; c < commands_.size(); ++c) {
        if (commands_[c] != 0) {
            out[commandName(static_cast<uint8_t>(c))] = commands_[c];
        }
    }
    return out;
}

void Aggregator::add(const Transaction& tx, std::string_view server, std::string_view client) {
    ++commands_[tx.command];
    rows_ += tx.rowsReturned;
    const bool error = tx.outcome == Outcome::Error;
    if (error) {
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
    auto it = templates_.find(KeyView{server, tx.schema, tx.fingerprintId});
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
        it = templates_.emplace(Key{std::string(server), tx.schema, tx.fingerprintId}, std::move(t))
                 .first;
    }
    TemplateStats& t = it->second;
    ++t.count;
    if (error) {
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
    const uint64_t noGood = (tx.statusFlags & 0x0010) != 0 ? 1 : 0;
    const uint64_t noIndex = (tx.statusFlags & 0x0020) != 0 ? 1 : 0;
    const uint64_t slowFlag = (tx.statusFlags & 0x0800) != 0 ? 1 : 0;
    t.noGoodIndexUsed += noGood;
    t.noIndexUsed += noIndex;
    t.slowFlag += slowFlag;
    t.inTransaction += (tx.statusFlags & 0x0001) != 0 ? 1 : 0;
    t.warnings += tx.warnings;
    if (t.firstSeen == 0) {
        t.firstSeen = tx.requestTs;
        t.sample = tx.sql;
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
            *slot = SlowSample{us,           tx.sql,       std::string(client), tx.user,
                               tx.requestTs, tx.errorCode, tx.statusFlags,      tx.rowsAffected};
        }
    }
}

void Aggregator::merge(const Aggregator& o) {
    for (size_t c = 0; c < commands_.size(); ++c) {
        commands_[c] += o.commands_[c];
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
    commands_.fill(0);
    errorCodes_.clear();
    errors_ = rows_ = lost_ = evicted_ = 0;
    templates_.clear();
}

std::string Aggregator::json() const {
    std::ostringstream out;
    out << "\"totals\":{\"commands\":{";
    bool first = true;
    uint64_t total = 0;
    for (const auto& [k, v] : commands()) {
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
        for (const SlowSample& x : t->slow) {
            out << (f3 ? "" : ",") << "{\"latency_us\":" << num(x.us)
                << ",\"sql\":" << mp::jsonString(x.sql)
                << ",\"client\":" << mp::jsonString(x.client)
                << ",\"user\":" << mp::jsonString(x.user) << ",\"ts_ns\":" << x.ts
                << ",\"error_code\":" << x.errorCode << ",\"status_flags\":" << x.statusFlags
                << ",\"rows_affected\":" << x.rowsAffected << "}";
            f3 = false;
        }
        out << "],\"clients\":";
        breakdowns(out, t->clients, "addr");
        out << ",\"users\":";
        breakdowns(out, t->users, "user");
        out << "}";
        first = false;
    }
    out << "]";
    return out.str();
}

}  // namespace mp::mysql

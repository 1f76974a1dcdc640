// SPDX-License-Identifier: Apache-2.0
// Per-interval aggregation of transactions: per (server, schema, fingerprint) counts, errors,
// rows, bytes, status flags, samples, and a mergeable latency sketch with bounded relative
// error; totals per command. Bounded: templates, error codes and samples have limits, and
// what they turn away is counted.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

#include "session.hpp"

namespace mp::mysql {

/// Log-bucketed latency sketch (DDSketch style): quantiles within `kAlpha` relative error,
/// merges exactly (bucket counts add), at most ~2,100 buckets from 1 us to 1 day.
class LatencySketch {
  public:
    static constexpr double kAlpha = 0.01;

    void add(double us);
    void merge(const LatencySketch& o);
    /// q in [0, 1]; the value of rank round(q * count + 0.5) (ties to even, clamped to
    /// [1, count]), within kAlpha relative error; the maximum is exact.
    double quantile(double q) const;
    uint64_t count() const { return count_; }
    double min() const { return count_ != 0 ? min_ : 0; }
    double max() const { return max_; }
    double sum() const { return sum_; }
    /// {"alpha":0.01,"zero":N,"buckets":[[index,count],...]}
    std::string json() const;

    static int index(double us);
    static double value(int index);

  private:
    std::map<int, uint64_t> buckets_;
    uint64_t zero_ = 0;  // latencies under 1 ns (clock steps): counted, no bucket
    uint64_t count_ = 0;
    double min_ = 0;
    double max_ = 0;
    double sum_ = 0;
};

struct TemplateStats {
    std::string fingerprint;
    uint64_t id = 0;
    std::string server;
    std::string schema;
    uint64_t count = 0;
    uint64_t errors = 0;
    std::map<uint16_t, uint64_t> errorCodes;  // at most kMaxErrorCodes, rest in otherErrors
    uint64_t otherErrors = 0;
    uint64_t lost = 0;  // response lost to a gap: no latency
    LatencySketch latency;
    uint64_t rowsReturned = 0;
    uint64_t rowsAffected = 0;
    uint64_t bytesIn = 0;   // request bytes
    uint64_t bytesOut = 0;  // response bytes
    uint64_t noIndexUsed = 0;
    uint64_t noGoodIndexUsed = 0;
    uint64_t slowFlag = 0;  // SERVER_QUERY_WAS_SLOW
    uint64_t inTransaction = 0;
    uint64_t warnings = 0;
    uint64_t firstSeen = 0;
    uint64_t lastSeen = 0;
    std::string sample;                                // first raw SQL of the interval
    std::vector<std::pair<double, std::string>> slow;  // latency us, SQL (bounded)

    static constexpr size_t kMaxErrorCodes = 16;
    static constexpr size_t kMaxSlow = 5;
    void merge(const TemplateStats& o);
};

struct AggregatorLimits {
    size_t maxTemplates = 10000;
    double slowThresholdUs = 100000;
};

class Aggregator {
  public:
    explicit Aggregator(AggregatorLimits limits = {}) : limits_(limits) {}

    /// One transaction of a connection to `server` ("ip:port").
    void add(const Transaction& tx, const std::string& server);
    void merge(const Aggregator& o);
    void clear();

    /// The report members this decoder contributes, as JSON object members (no braces):
    /// "totals":{...},"templates":[...]
    std::string json() const;

    const std::map<std::string, uint64_t>& commands() const { return commands_; }
    const std::unordered_map<std::string, TemplateStats>& templates() const { return templates_; }
    uint64_t evicted() const { return evicted_; }

  private:
    AggregatorLimits limits_;
    std::map<std::string, uint64_t> commands_;
    std::map<uint16_t, uint64_t> errorCodes_;
    uint64_t errors_ = 0;
    uint64_t rows_ = 0;
    uint64_t lost_ = 0;
    uint64_t evicted_ = 0;  // transactions not kept because the template table was full
    std::unordered_map<std::string, TemplateStats> templates_;  // key: server|schema|id
};

}  // namespace mp::mysql

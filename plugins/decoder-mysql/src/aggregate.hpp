// SPDX-License-Identifier: Apache-2.0
// Per-interval aggregation of the decoder's transactions into the shared report model
// (mp/report.hpp): per (server, schema, fingerprint) counts, errors, rows, bytes, status flags,
// breakdowns, samples and a mergeable latency sketch; totals per command.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <mp/report.hpp>
#include <string>

#include "coverage.hpp"
#include "session.hpp"

namespace mp::mysql {

using report::Breakdown;
using report::LatencySketch;
using report::SlowSample;
using report::TemplateStats;

/// What the statements' text in a report (samples, slow samples, error messages) may show:
/// raw (as sent, execute parameters substituted), masked (literals replaced by `?` as in the
/// fingerprint, parameters not substituted, quoted parts of error messages masked), none (no
/// statement text; error messages masked).
enum class Samples { Raw, Masked, None };

struct AggregatorLimits {
    size_t maxTemplates = 10000;
    double slowThresholdUs = 100000;
    size_t maxSample = 4096;  // bytes of a sample, parameters substituted (max_sql_length)
    Samples samples = Samples::Raw;
};

class Aggregator {
  public:
    explicit Aggregator(AggregatorLimits limits = {}) : limits_(limits) {
        section_.maxTemplates = limits.maxTemplates;
    }
    // Copies and moves never carry the hot entries (they point into one table's nodes).
    Aggregator(const Aggregator& o)
        : limits_(o.limits_), commands_(o.commands_), covered_(o.covered_), section_(o.section_) {}
    Aggregator(Aggregator&& o) noexcept
        : limits_(o.limits_),
          commands_(o.commands_),
          covered_(o.covered_),
          section_(std::move(o.section_)) {
        o.forgetHot();
    }
    Aggregator& operator=(const Aggregator& o) {
        if (this != &o) {
            limits_ = o.limits_;
            commands_ = o.commands_;
            covered_ = o.covered_;
            section_ = o.section_;
            forgetHot();
        }
        return *this;
    }
    Aggregator& operator=(Aggregator&& o) noexcept {
        if (this != &o) {
            limits_ = o.limits_;
            commands_ = o.commands_;
            covered_ = o.covered_;
            section_ = std::move(o.section_);
            forgetHot();
            o.forgetHot();
        }
        return *this;
    }
    ~Aggregator() = default;

    /// One transaction of a connection from `client` (IP address) and `clientPort` to `server`
    /// ("ip:port").
    void add(const Transaction& tx, std::string_view server, std::string_view client = {},
             uint16_t clientPort = 0);
    /// A transaction of a client of the server whose coverage is measured (the watcher's own
    /// connection excluded): counted for the comparison with the server's counters.
    void addCovered(const Transaction& tx) { covered_.add(tx); }
    const Seen& covered() const { return covered_; }
    void merge(const Aggregator& o);
    void clear();

    /// The report members this decoder contributes, as JSON object members (no braces):
    /// "totals":{...},"templates":[...]
    std::string json();

    /// Commands by name ("COM_QUERY" -> count).
    std::map<std::string, uint64_t> commands() const;
    size_t templateCount() const { return section_.templateCount(); }
    template <class F>
    void forEachTemplate(F f) const {
        section_.forEachTemplate(f);
    }
    uint64_t evicted() const { return section_.evicted; }

  private:
    AggregatorLimits limits_;
    std::array<uint64_t, 256> commands_{};  // by command byte; names at json()
    Seen covered_;
    report::Section section_;
    // The templates met last, by id (direct-mapped): most commands skip the table's hash and
    // probe. Valid until clear() (the table never erases otherwise).
    struct Hot {
        uint64_t id = 0;
        std::string server;
        std::string schema;
        report::TemplateStats* stats = nullptr;
    };
    std::array<Hot, 64> hot_{};
    report::TemplateStats* findOrAdd(std::string_view server, std::string_view schema, uint64_t id);
    void forgetHot() {
        for (Hot& h : hot_) {
            h.stats = nullptr;
        }
    }
};

}  // namespace mp::mysql

// SPDX-License-Identifier: Apache-2.0
// The report model shared by the decoder (which fills it) and the cluster plugins (which merge
// the reports of several nodes): per-template statistics with a mergeable latency sketch, the
// decoder's totals, their JSON (docs/report-format.md) and the way back from JSON.
// Bounded: templates, error codes, breakdowns and samples have limits; what they turn away is
// counted.
#pragma once

#include <Poco/JSON/Object.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <ostream>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace mp::report {

/// Log-bucketed latency sketch (DDSketch style): quantiles within `kAlpha` relative error,
/// merges exactly (bucket counts add). Buckets are one dense array over the indices seen
/// (1 ns to 1 day: at most ~1,600; a template's latencies usually span a few hundred).
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
    /// Heap bytes held by the buckets.
    size_t heapBytes() const { return counts_.capacity() * sizeof(uint64_t); }

    /// Rebuilds a sketch from its JSON parts (a report of another node); false when they do
    /// not fit together (bucket indices out of range, counts that do not add up).
    bool restore(uint64_t zero, const std::vector<std::pair<int, uint64_t>>& buckets, double min,
                 double max, double sum);

    static constexpr int kMinIndex = -345;  // index(0.001 us)
    static constexpr int kMaxIndex = 1271;  // index(1 day); longer latencies share it

  private:
    void grow(int index);
    template <class F>
    void forEach(F f) const {
        for (size_t k = 0; k < counts_.size(); ++k) {
            if (counts_[k] != 0) {
                f(offset_ + static_cast<int>(k), counts_[k]);
            }
        }
    }

    std::vector<uint64_t> counts_;  // counts_[k]: bucket offset_ + k
    int offset_ = 0;
    uint64_t zero_ = 0;  // latencies under 1 ns (clock steps): counted, no bucket
    uint64_t count_ = 0;
    double min_ = 0;
    double max_ = 0;
    double sum_ = 0;
};

/// One client address's or one user's share of a template.
struct Breakdown {
    uint64_t count = 0;
    uint64_t errors = 0;
    double latencySumUs = 0;       // commands that succeeded
    double errorLatencySumUs = 0;  // commands answered with an error
    uint64_t noIndexUsed = 0;
    uint64_t noGoodIndexUsed = 0;
    uint64_t slowFlag = 0;
    uint64_t lastSeen = 0;
    void merge(const Breakdown& o);
};

/// Named breakdowns, at most `Max` names; the rest is summed under `other`. Names are found by
/// an open-addressed index of their positions (a template seen from 64 client addresses, or
/// from thousands, costs a hash and a compare or two per execution, not 64 compares); the name
/// met last is tried first. `named` only grows, through at(), so copies keep a valid index.
template <size_t Max>
struct BreakdownSet {
    std::vector<std::pair<std::string, Breakdown>> named;
    Breakdown other;
    Breakdown& at(std::string_view name) {
        if (last_ < named.size() && named[last_].first == name) {
            return named[last_].second;
        }
        size_t slot = std::hash<std::string_view>()(name) & (kSlots - 1);
        for (; index_[slot] != 0; slot = (slot + 1) & (kSlots - 1)) {
            size_t i = index_[slot] - 1u;
            if (named[i].first == name) {
                last_ = i;
                return named[i].second;
            }
        }
        if (named.size() < Max) {
            named.emplace_back(std::string(name), Breakdown{});
            index_[slot] = static_cast<uint8_t>(named.size());
            last_ = named.size() - 1;
            return named.back().second;
        }
        return other;
    }
    void merge(const BreakdownSet& o) {
        for (const auto& [n, b] : o.named) {
            at(n).merge(b);
        }
        other.merge(o.other);
    }

  private:
    static constexpr size_t kSlots = [] {  // a power of two, at least twice Max
        size_t n = 1;
        while (n < 2 * Max) {
            n *= 2;
        }
        return n;
    }();
    static_assert(Max < 255, "positions are kept in bytes");
    std::array<uint8_t, kSlots> index_{};  // position + 1 in `named`; 0: empty
    size_t last_ = 0;
};

/// A slow command, kept as a sample.
struct SlowSample {
    double us = 0;
    std::string sql;
    std::string client;       // IP address
    uint16_t clientPort = 0;  // with the connection id, which connection it was
    uint32_t connectionId = 0;
    std::string user;
    uint64_t ts = 0;
    uint16_t errorCode = 0;
    uint16_t statusFlags = 0;
    uint64_t rowsAffected = 0;
    std::string errorMessage;  // the server's text when errorCode != 0 (bounded)
};

/// What the server said with an error code: its SQL state and its latest message.
struct ErrorInfo {
    std::string sqlState;  // 5 characters ("" before protocol 4.1)
    std::string message;   // at most kMaxErrorMessage bytes
};
inline constexpr size_t kMaxErrorMessage = 256;

/// `text` cut to kMaxErrorMessage bytes, never inside a UTF-8 sequence.
inline std::string boundedMessage(std::string_view text) {
    size_t n = std::min(text.size(), kMaxErrorMessage);
    if (n < text.size()) {
        while (n > 0 && (static_cast<unsigned char>(text[n]) & 0xC0) == 0x80) {
            --n;  // text[n] continues a sequence: cut before the sequence's first byte
        }
    }
    return std::string(text.substr(0, n));
}

struct TemplateStats {
    std::string fingerprint;
    uint64_t id = 0;
    std::string server;
    std::string schema;
    uint64_t count = 0;
    uint64_t errors = 0;
    std::map<uint16_t, uint64_t> errorCodes;  // at most kMaxErrorCodes, rest in otherErrors
    std::map<uint16_t, ErrorInfo> errorInfo;  // for the codes of errorCodes
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
    std::string sample;            // first raw SQL of the interval
    std::vector<SlowSample> slow;  // the slowest over the threshold (bounded)
    static constexpr size_t kMaxClients = 64;
    static constexpr size_t kMaxUsers = 16;
    BreakdownSet<kMaxClients> clients;  // by client IP address
    BreakdownSet<kMaxUsers> users;

    static constexpr size_t kMaxErrorCodes = 16;
    static constexpr size_t kMaxSlow = 5;
    void merge(const TemplateStats& o);
    /// One element of a report's "templates" array.
    std::string json() const;
    /// Bytes this template holds (itself, its strings, buckets, samples and breakdowns): what a
    /// holder of many reports counts against its memory bound.
    size_t heapBytes() const;
};

/// A report's decoder section: totals and templates, keyed by (server, schema, id).
class Section {
  public:
    size_t maxTemplates = 10000;

    std::map<std::string, uint64_t> commands;  // by name ("COM_QUERY")
    std::map<uint16_t, uint64_t> errorCodes;
    uint64_t errors = 0;
    uint64_t rows = 0;
    uint64_t lost = 0;
    uint64_t evicted = 0;  // executions not kept because the template table was full
    // Executes of a statement whose text is not known (prepared before the capture started,
    // or forgotten by the per-connection statement bound): counted, in no template.
    uint64_t unresolved = 0;
    // The same by (server, schema) of the session (the original's per-schema count), at most
    // kMaxUnresolvedKeys pairs; the rest only in `unresolved`.
    std::map<std::pair<std::string, std::string>, uint64_t> unresolvedBy;
    static constexpr size_t kMaxUnresolvedKeys = 64;
    void addUnresolved(std::string_view server, std::string_view schema, uint64_t n);

    /// The template of (server, schema, id), created when there is room; nullptr when full.
    TemplateStats* find(std::string_view server, std::string_view schema, uint64_t id);
    const TemplateStats* find(std::string_view server, std::string_view schema, uint64_t id) const;
    TemplateStats* findOrAdd(std::string_view server, std::string_view schema, uint64_t id);
    void merge(const Section& o);
    size_t templateCount() const { return templates_.size(); }
    /// Bytes held by the templates and totals (TemplateStats::heapBytes, plus the table).
    size_t heapBytes() const;
    template <class F>
    void forEachTemplate(F f) const {
        for (const auto& [k, t] : templates_) {
            f(t);
        }
    }

    /// "totals":{...},"templates":[...] (JSON object members, no braces), most total time first.
    std::string json() const;
    /// The section of a report (its "totals" and "templates"); throws std::runtime_error naming
    /// the first field that is missing or of the wrong type.
    static Section fromJson(const Poco::JSON::Object::Ptr& report, size_t maxTemplates = 10000);

  private:
    // (server, schema, fingerprint id); looked up by views, without building a string.
    struct Key {
        std::string server;
        std::string schema;
        uint64_t id;
    };
    struct KeyView {
        std::string_view server;
        std::string_view schema;
        uint64_t id;
    };
    struct KeyHash {
        using is_transparent = void;
        size_t operator()(const KeyView& k) const;
        size_t operator()(const Key& k) const { return (*this)(KeyView{k.server, k.schema, k.id}); }
    };
    struct KeyEq {
        using is_transparent = void;
        static KeyView view(const Key& k) { return {k.server, k.schema, k.id}; }
        static KeyView view(const KeyView& k) { return k; }
        template <class A, class B>
        bool operator()(const A& a, const B& b) const {
            KeyView x = view(a);
            KeyView y = view(b);
            return x.id == y.id && x.server == y.server && x.schema == y.schema;
        }
    };

    std::unordered_map<Key, TemplateStats, KeyHash, KeyEq> templates_;
};

/// "0123456789abcdef": a template id as the report writes it.
std::string hex64(uint64_t v);
/// Its inverse: exactly 16 hex digits (either case); false for anything else.
bool parseHex64(std::string_view text, uint64_t& v);

/// Latencies as the report writes them: percentiles to 0.1 us ("66.1"), sums and extremes to the
/// nanosecond ("3955.000").
std::string formatTenths(double us);
std::string formatExact(double us);

/// An unsigned field of a report's JSON (0 when absent and not `required`); throws
/// std::runtime_error naming the field ("report: seq: not a number", "...: out of range",
/// "report: missing seq").
uint64_t readU64(const Poco::JSON::Object::Ptr& o, const char* key, bool required = true);

/// A readable top-N table of a report (its templates by total time), as `--format table` prints
/// it; a report that is not one says so in the text instead of throwing.
std::string table(const std::string& json, size_t top = 20);

}  // namespace mp::report

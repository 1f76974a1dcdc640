// SPDX-License-Identifier: Apache-2.0
// console-web's model: the last reports of the node (bounded by the bytes they hold and by a
// number of intervals), their exact merge (the sliding window: counts add, latency sketches
// merge), and the answers the page asks for: a sorted, filtered table of templates with each
// row's recent series, one template in full, the capture's health.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <mp/report.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace mp::console {

/// One report held: its interval and its decoder section, parsed once.
struct Held {
    uint64_t seq = 0;
    uint64_t startNs = 0;
    uint64_t endNs = 0;
    std::string node;
    report::Section section;
    std::vector<std::pair<std::string, uint64_t>> capture;  // "connections.opened": N, cumulative
    // decoder-mysql's comparison with the server's counters (its questions), when the report
    // has one: the total since the first reading and the interval's.
    struct Coverage {
        bool present = false;
        std::string server;  // at most 256 bytes
        std::string error;   // the last reading's failure, at most 512 bytes
        uint64_t seen = 0;
        uint64_t counted = 0;
        bool interval = false;
        uint64_t intervalSeen = 0;
        uint64_t intervalCounted = 0;
    } coverage;
    size_t bytes = 0;  // what it holds (section + capture)
};

/// Parses a native report; throws std::runtime_error naming what is wrong.
std::shared_ptr<const Held> parseReport(const std::string& json, size_t maxTemplates);

enum class View { Last, Window };
enum class Sort { TotalTime, Count, P99, Errors, Rows };

struct Query {
    View view = View::Window;
    Sort sort = Sort::TotalTime;
    std::string text;    // substring of the fingerprint, ASCII case-insensitive
    std::string server;  // exact, "" = any
    std::string schema;  // exact, "" = any
    size_t limit = 100;
};

/// Reads view, sort, q, server, schema, limit from a request's parameters (`get` returns the
/// value of one, or nothing); throws std::invalid_argument naming a bad one.
template <class Get>
Query parseQuery(Get get);

/// Not thread-safe; cheap to copy (the reports and the merge are shared, immutable): a writer
/// copies the current window, adds to the copy outside any lock, then publishes it.
class Window {
  public:
    Window(size_t maxIntervals, size_t maxBytes)
        : maxIntervals_(maxIntervals), maxBytes_(maxBytes) {}

    /// Adds the newest report and drops the oldest ones beyond the bounds (the newest is always
    /// kept), then merges what is held into the window.
    void add(std::shared_ptr<const Held> r);

    /// {"node","seq","intervals":[{seq,start_ns,end_ns}],"view","templates_total","matched",
    ///  "servers":[..],"schemas":[..],"rows":[{...,"series":[[count,p50,p99],..]}],
    ///  "capture":{...},"held_bytes"} (docs in the plugin's README).
    std::string state(const Query& q) const;
    /// The template in full (the report's element) in the last interval and in the window, with
    /// its series; nothing when neither holds it.
    std::optional<std::string> detail(const std::string& server, const std::string& schema,
                                      uint64_t id) const;

    size_t intervals() const { return held_.size(); }
    size_t heldBytes() const { return bytes_ + windowBytes_; }
    uint64_t dropped() const { return dropped_; }

  private:
    std::string series(const report::TemplateStats& t) const;
    std::string capture() const;

    size_t maxIntervals_;
    size_t maxBytes_;
    std::deque<std::shared_ptr<const Held>> held_;   // oldest first
    std::deque<uint64_t> drops_;                     // each held report's capture drops
    std::shared_ptr<const report::Section> window_;  // the merge of held_
    size_t bytes_ = 0;
    size_t windowBytes_ = 0;
    uint64_t dropped_ = 0;  // reports let go for the bounds
};

template <class Get>
Query parseQuery(Get get) {
    Query q;
    if (auto v = get("view")) {
        if (*v == "last") {
            q.view = View::Last;
        } else if (*v != "window") {
            throw std::invalid_argument("view: last or window");
        }
    }
    if (auto v = get("sort")) {
        static const std::pair<const char*, Sort> kSorts[] = {{"total_time", Sort::TotalTime},
                                                              {"count", Sort::Count},
                                                              {"p99", Sort::P99},
                                                              {"errors", Sort::Errors},
                                                              {"rows", Sort::Rows}};
        bool found = false;
        for (const auto& [name, s] : kSorts) {
            if (*v == name) {
                q.sort = s;
                found = true;
            }
        }
        if (!found) {
            throw std::invalid_argument("sort: total_time, count, p99, errors or rows");
        }
    }
    auto bounded = [&](const char* name, std::string& out) {
        if (auto v = get(name)) {
            if (v->size() > 1024) {
                throw std::invalid_argument(std::string(name) + ": longer than 1024 bytes");
            }
            out = *v;
        }
    };
    bounded("q", q.text);
    bounded("server", q.server);
    bounded("schema", q.schema);
    if (auto v = get("limit")) {
        size_t n = 0;
        bool ok = !v->empty() && v->size() <= 5;
        for (char c : *v) {
            ok = ok && c >= '0' && c <= '9';
            n = n * 10 + static_cast<size_t>(c - '0');
        }
        if (!ok || n < 1 || n > 10000) {
            throw std::invalid_argument("limit: 1 to 10000");
        }
        q.limit = n;
    }
    return q;
}

}  // namespace mp::console

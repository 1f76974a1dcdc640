// SPDX-License-Identifier: Apache-2.0
// The divergence report (as pt-upgrade's): per template, what the captured server answered and
// what the target answered: counts, errors by code, rows, latency p50/p99 on both sides, and
// the statements that succeeded on one side and failed on the other (or returned a different
// number of rows), with samples. Bounded: at most `maxTemplates` templates (further ones are
// counted in `other`), `maxSamples` samples per template, each statement cut to 1 KiB.
#pragma once

#include <cstdint>
#include <map>
#include <mp/mysql_client.hpp>
#include <mp/mysql_inbound.hpp>
#include <mp/report.hpp>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace mp::replay {

class Divergence {
  public:
    Divergence(size_t maxTemplates, size_t maxSamples)
        : maxTemplates_(maxTemplates), maxSamples_(maxSamples) {}

    /// One replayed command: the record (what the captured server did) and the target's answer
    /// with its latency. Thread-safe.
    void add(const mysql::inbound::Record& source, const mysql::Response& target, double targetUs);

    /// The report as JSON: {"templates":[...],"divergent_templates":N,"divergent_commands":M,...}
    std::string json() const;
    /// Commands whose outcome differed (error on one side only, a different error, different rows).
    uint64_t divergentCommands() const;

  private:
    struct Side {
        std::map<uint16_t, uint64_t> errors;  // code -> count
        uint64_t rows = 0;
        report::LatencySketch latency;
    };
    struct Sample {
        std::string kind;
        std::string sql;
        std::string source;
        std::string target;
    };
    struct Template {
        std::string text;
        std::string command;
        uint64_t count = 0;
        uint64_t compared = 0;  // with the source's answer known
        Side source, target;
        uint64_t failedOnTarget = 0, failedOnSource = 0, differentError = 0, differentRows = 0;
        std::vector<Sample> samples;
        uint64_t divergent() const {
            return failedOnTarget + failedOnSource + differentError + differentRows;
        }
    };

    mutable std::mutex mu_;
    size_t maxTemplates_;
    size_t maxSamples_;
    // By (template, command): a statement's prepare, executes and close are separate rows.
    std::map<std::pair<uint64_t, uint8_t>, Template> templates_;
    uint64_t other_ = 0;  // commands of templates beyond the bound
};

}  // namespace mp::replay

// SPDX-License-Identifier: Apache-2.0
#include "divergence.hpp"

#include <cinttypes>
#include <cstdio>
#include <mp/sdk.hpp>

namespace mp::replay {

namespace {

using mysql::Response;
using mysql::inbound::Outcome;
using mysql::inbound::Record;

constexpr size_t kSampleSql = 1024;

std::string describeSource(const Record& r) {
    if (r.outcome == Outcome::Error) {
        return "error " + std::to_string(r.errorCode) + " (" + r.sqlState + "): " + r.errorMessage;
    }
    return std::string(mysql::inbound::outcomeName(r.outcome)) + ", " + std::to_string(r.rows) +
           " rows";
}

std::string describeTarget(const Response& t) {
    if (t.kind == Response::Error) {
        return "error " + std::to_string(t.errorCode) + " (" + t.sqlState + "): " + t.errorMessage;
    }
    const char* kinds[] = {"none", "ok", "error", "resultset", "prepared"};
    return std::string(kinds[t.kind]) + ", " + std::to_string(t.rows) + " rows";
}

void side(std::string& out, const char* name, const std::map<uint16_t, uint64_t>& errors,
          uint64_t rows, const report::LatencySketch& l) {
    out += ",\"";
    out += name;
    out += "\":{\"errors\":{";
    bool first = true;
    for (const auto& [code, n] : errors) {
        out += first ? "\"" : ",\"";
        first = false;
        out += std::to_string(code) + "\":" + std::to_string(n);
    }
    char lat[96];
    std::snprintf(lat, sizeof lat, ",\"p50_us\":%.1f,\"p99_us\":%.1f,\"max_us\":%.1f",
                  l.quantile(0.5), l.quantile(0.99), l.max());
    out += "},\"rows\":" + std::to_string(rows) + lat + "}";
}

}  // namespace

void Divergence::add(const Record& source, const Response& target, double targetUs) {
    const bool known = source.outcome != Outcome::Lost && source.outcome != Outcome::None;
    const bool sourceFailed = source.outcome == Outcome::Error;
    const bool targetFailed = target.kind == Response::Error;
    // Templates by fingerprint and command; commands without one (ping, init db...) by their
    // command alone.
    const std::pair<uint64_t, uint8_t> key{source.templateId, source.command};
    std::lock_guard<std::mutex> lock(mu_);
    auto it = templates_.find(key);
    if (it == templates_.end()) {
        if (templates_.size() >= maxTemplates_) {
            ++other_;
            return;
        }
        it = templates_.emplace(key, Template{}).first;
        it->second.text = source.templateText;
        it->second.command =
            source.commandName.empty() ? std::to_string(source.command) : source.commandName;
    }
    Template& t = it->second;
    ++t.count;
    if (targetFailed) {
        ++t.target.errors[target.errorCode];
    }
    t.target.rows += target.rows;
    t.target.latency.add(targetUs);
    if (!known) {
        return;  // the captured answer was not seen: nothing to compare
    }
    ++t.compared;
    if (sourceFailed) {
        ++t.source.errors[source.errorCode];
    }
    t.source.rows += source.rows;
    if (source.responseTs > source.ts) {
        t.source.latency.add(static_cast<double>(source.responseTs - source.ts) / 1000.0);
    }
    const char* kind = nullptr;
    if (!sourceFailed && targetFailed) {
        ++t.failedOnTarget;
        kind = "failed_on_target";
    } else if (sourceFailed && !targetFailed) {
        ++t.failedOnSource;
        kind = "failed_on_source";
    } else if (sourceFailed && source.errorCode != target.errorCode) {
        ++t.differentError;
        kind = "different_error";
    } else if (!sourceFailed && source.rows != target.rows) {
        ++t.differentRows;
        kind = "different_rows";
    }
    if (kind != nullptr && t.samples.size() < maxSamples_) {
        std::string_view sql =
            source.sql.empty() ? std::string_view(source.commandName) : source.sql;
        t.samples.push_back(Sample{kind, std::string(sql.substr(0, kSampleSql)),
                                   describeSource(source), describeTarget(target)});
    }
}

uint64_t Divergence::divergentCommands() const {
    std::lock_guard<std::mutex> lock(mu_);
    uint64_t n = 0;
    for (const auto& [key, t] : templates_) {
        n += t.divergent();
    }
    return n;
}

std::string Divergence::json() const {
    std::lock_guard<std::mutex> lock(mu_);
    std::string out = "{\"templates\":[";
    uint64_t divergentTemplates = 0;
    uint64_t divergentCommands = 0;
    bool first = true;
    for (const auto& [key, t] : templates_) {
        out += first ? "{" : ",{";
        first = false;
        char id[24];
        std::snprintf(id, sizeof id, "%016" PRIx64, key.first);
        out += "\"template_id\":\"";
        out += id;
        out += "\",\"template\":";
        appendJsonString(out, t.text);
        out += ",\"command\":";
        appendJsonString(out, t.command);
        out +=
            ",\"count\":" + std::to_string(t.count) + ",\"compared\":" + std::to_string(t.compared);
        side(out, "source", t.source.errors, t.source.rows, t.source.latency);
        side(out, "target", t.target.errors, t.target.rows, t.target.latency);
        out += ",\"divergent\":{\"failed_on_target\":" + std::to_string(t.failedOnTarget) +
               ",\"failed_on_source\":" + std::to_string(t.failedOnSource) +
               ",\"different_error\":" + std::to_string(t.differentError) +
               ",\"different_rows\":" + std::to_string(t.differentRows) + "},\"samples\":[";
        for (size_t i = 0; i < t.samples.size(); ++i) {
            const Sample& s = t.samples[i];
            out += i == 0 ? "{\"kind\":" : ",{\"kind\":";
            appendJsonString(out, s.kind);
            out += ",\"sql\":";
            appendJsonString(out, s.sql);
            out += ",\"source\":";
            appendJsonString(out, s.source);
            out += ",\"target\":";
            appendJsonString(out, s.target);
            out += '}';
        }
        out += "]}";
        divergentTemplates += t.divergent() != 0 ? 1 : 0;
        divergentCommands += t.divergent();
    }
    out += "],\"divergent_templates\":" + std::to_string(divergentTemplates) +
           ",\"divergent_commands\":" + std::to_string(divergentCommands) +
           ",\"templates_over_bound\":" + std::to_string(other_) + "}";
    return out;
}

}  // namespace mp::replay

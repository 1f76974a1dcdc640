// SPDX-License-Identifier: Apache-2.0
// A master's interval: its own report merged with the reports its slaves delivered since the
// last one. Counts add and latency sketches merge exactly (mp/report.hpp); the result says which
// slave reports it contains and which slaves sent nothing.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace mp::report {

/// One report received from a slave (native JSON, as its /cluster/stream sends it).
struct Incoming {
    std::string addr;  // the slave's server address (host:port)
    std::string node;
    uint64_t started = 0;  // the slave run's started_ns
    uint64_t seq = 0;
    std::string json;
};

/// Which run and interval a report is.
struct Identity {
    std::string node;
    uint64_t started = 0;
    uint64_t seq = 0;
    uint64_t intervalEnd = 0;
    bool final = false;  // the run's last report (end of input or shutdown)
};
/// Reads node, started_ns, seq (and interval.end_ns and final when there); false when they are
/// missing or malformed.
bool reportIdentity(const std::string& json, Identity& id);

struct MergeResult {
    std::string json;
    size_t merged = 0;    // slave reports merged
    size_t rejected = 0;  // slave reports that were not a valid native report (skipped)
};

/// The notice a pusher sends before a report that it wrote earlier to other servers which did not
/// acknowledge it (PusherOptions::announceResends): {"resent":SEQ,"unacked_by":["host:port",..]}.
/// A receiver that can ask those servers whether they kept the report holds it until they answer,
/// so that a report whose acknowledgement was lost is not counted twice.
struct ResentNotice {
    uint64_t seq = 0;
    std::vector<std::string> unackedBy;  // at most 8, each 1-256 printable ASCII characters
};
std::string encodeResentNotice(const ResentNotice& n);
/// False when `json` is not such a notice (or is malformed, or exceeds the bounds).
bool parseResentNotice(const std::string& json, ResentNotice& n);

/// `own`: this node's report for the interval. `missing`: slaves that delivered nothing in it.
MergeResult mergeReports(const std::string& own, const std::vector<Incoming>& in,
                         const std::vector<std::string>& missing, size_t maxTemplates);

}  // namespace mp::report

// SPDX-License-Identifier: Apache-2.0
// Fuzz target: a report as a master receives it from a slave (cluster-static: identity, the
// shared report model's JSON reader, the merge; cluster-gossip: the resent notice) and as
// sink-websocket re-encodes it for the original probe's consumers (mysqlprobe-v1). Garbage must
// be refused, never crash.
#include <cstddef>
#include <cstdint>
#include <mp/report_merge.hpp>
#include <stdexcept>
#include <string>

#include "encode.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string json(reinterpret_cast<const char*>(data), size);
    mp::report::Identity id;
    (void)mp::report::reportIdentity(json, id);
    mp::report::ResentNotice notice;
    if (mp::report::parseResentNotice(json, notice)) {
        if (notice.seq == 0 || notice.unackedBy.size() > 8) {
            __builtin_trap();
        }
        mp::report::ResentNotice again;  // what is accepted re-encodes to the same notice
        if (!mp::report::parseResentNotice(mp::report::encodeResentNotice(notice), again) ||
            again.seq != notice.seq || again.unackedBy != notice.unackedBy) {
            __builtin_trap();
        }
    }
    std::vector<mp::report::Incoming> in{{"127.0.0.2:1", "n", 1, 1, json}};
    const std::string own = R"({"version":1,"node":"m","started_ns":1,"seq":1,"final":false})";
    mp::report::MergeResult r = mp::report::mergeReports(own, in, {"127.0.0.3:1"}, 100);
    if (r.merged + r.rejected != 1) {
        __builtin_trap();
    }
    try {
        (void)mp::ws::toMysqlProbeV1(json);
    } catch (const std::exception&) {
        // not JSON, or fields of the wrong type (Poco's exceptions derive from it): refused
    }
    return 0;
}

// SPDX-License-Identifier: Apache-2.0
// Fuzz target: monitor-mysql's parsers of outside input: its state file (the registry's JSON),
// GTID positions and the InnoDB status text a server sends, and the instance syntax of the
// configuration. A registry that parses must write and parse back to the same.
#include <cstddef>
#include <cstdint>
#include <string>

#include "poll.hpp"
#include "topology.hpp"

using namespace mp::monitor;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string text(reinterpret_cast<const char*>(data), size);
    try {
        Registry r = Registry::fromJson(text);
        if (Registry::fromJson(r.toJson()).toJson() != r.toJson()) {
            __builtin_trap();
        }
    } catch (const std::exception&) {
    }
    auto g = parseGtids(text);
    if (!gtidCovers(text, text)) {
        __builtin_trap();  // a position always covers itself
    }
    (void)g;
    (void)gtidWeight(text);
    (void)innodbSummary(text);
    try {
        Instance i = parseInstance(text);
        if (i.name.empty() || i.port == 0) {
            __builtin_trap();
        }
    } catch (const std::exception&) {
    }
    return 0;
}

// SPDX-License-Identifier: Apache-2.0
// Fuzz target: proxy-mysql's readers of a monitor's feed: the event stream (fed whole and cut
// in two at a point the input chooses: the same events either way) and LAIN's topology JSON in
// each event's data.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "topology.hpp"

using namespace mp::proxy;

namespace {
std::vector<std::string> events(std::string_view a, std::string_view b, bool& broke) {
    std::vector<std::string> out;
    SseParser p([&](const std::string& e, const std::string& d) { out.push_back(e + '\0' + d); },
                1024, 2048);
    try {
        p.feed(a);
        p.feed(b);
    } catch (const SseError&) {
        broke = true;
    }
    if (p.held() > 1024 + 2048 + 256 + 2) {
        __builtin_trap();  // bounded by its limits
    }
    return out;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string_view in(reinterpret_cast<const char*>(data), size);
    const size_t cut = size == 0 ? 0 : data[0] % (size + 1);
    bool brokeWhole = false;
    bool brokeCut = false;
    auto whole = events(in, {}, brokeWhole);
    auto split = events(in.substr(0, cut), in.substr(cut), brokeCut);
    if (!brokeWhole && !brokeCut && whole != split) {
        __builtin_trap();
    }
    for (const auto& e : whole) {
        auto topo = parseTopology(e.substr(e.find('\0') + 1));
        if (topo && (topo->master.size() > 1000 || topo->slave.size() > 1000)) {
            __builtin_trap();
        }
    }
    (void)parseTopology(in);
    return 0;
}

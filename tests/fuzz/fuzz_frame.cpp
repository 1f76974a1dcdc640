// SPDX-License-Identifier: Apache-2.0
// Fuzz target: link/IP/TCP parsing of one captured frame. The first byte picks the link type.
#include <cstddef>
#include <cstdint>

#include "stream/packet.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 1) {
        return 0;
    }
    static const uint32_t kLinks[] = {1, 113, 276, 0, 108, 101, 12, 14, 228, 229, 147};
    uint32_t link = kLinks[data[0] % (sizeof kLinks / sizeof kLinks[0])];
    mp::host::Segment s;
    if (mp::host::parseFrame(link, data + 1, size - 1, s) == mp::host::ParseResult::Ok) {
        // What the parser returns must lie inside the frame.
        if (s.captured > s.length || s.payload < data + 1 || s.payload + s.captured > data + size) {
            __builtin_trap();
        }
    }
    return 0;
}

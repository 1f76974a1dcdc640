// SPDX-License-Identifier: Apache-2.0
// Fuzz target: source-binlog's MySQL binary JSON decoder (a JSON column's bytes in a MySQL row
// image). The input is one value. Whatever it holds, the decoder answers with text or a reason,
// within its growth bound (16 bytes of text per byte and 64 more, plus the few
// separators written after the last check); seeds are Vitess's vectors
// (tests/data/third-party/vitess).
#include <cstddef>
#include <cstdint>
#include <string>

#include "json_binary.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string out;
    std::string why;
    const bool ok = mp::binlog::appendBinaryJson(data, size, out, why);
    if ((!ok && why.empty()) || out.size() > 16 * size + 64 + 8) {
        __builtin_trap();
    }
    return 0;
}

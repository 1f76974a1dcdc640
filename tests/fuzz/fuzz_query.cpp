// SPDX-License-Identifier: Apache-2.0
// Fuzz target: the HTTP query-string decoder used for every request to the host.
#include <cstddef>
#include <cstdint>
#include <map>
#include <mp/sdk.hpp>
#include <string>

#include "server/http_server.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string q(reinterpret_cast<const char*>(data), size);
    std::multimap<std::string, std::string> out;
    if (mp::host::parseQuery(q, out)) {
        size_t total = 0;
        for (const auto& [k, v] : out) {
            total += k.size() + v.size();
        }
        // Decoding never grows the text.
        if (total > q.size()) {
            __builtin_trap();
        }
    }
    (void)mp::jsonString(q);
    return 0;
}

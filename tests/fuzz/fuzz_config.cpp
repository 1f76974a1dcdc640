// SPDX-License-Identifier: Apache-2.0
// Fuzz target: the YAML configuration loader must refuse garbage with a ConfigError, never crash.
#include <cstddef>
#include <cstdint>
#include <string>

#include "config/config.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size > 64 * 1024) {
        return 0;
    }
    std::string text(reinterpret_cast<const char*>(data), size);
    try {
        mp::host::parseConfig(text, "fuzz.yaml", mp::host::Overrides{});
    } catch (const mp::host::ConfigError&) {
        // expected for most inputs
    }  // anything else escaping is a bug: libFuzzer reports the uncaught exception
    return 0;
}

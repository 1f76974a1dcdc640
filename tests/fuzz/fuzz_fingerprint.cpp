// SPDX-License-Identifier: Apache-2.0
// Fuzz target: the decoder's fingerprint memo (plugins/decoder-mysql/src/fingerprint.hpp). The
// cache is first given a variant of the input with other digits, other string contents and
// other number lengths (the same shape when the shape scan is right), then the input itself:
// what it returns must be exactly what the tokenizer computes for the input. And the masked
// statement of samples: masked stays within its bound.
#include <cstddef>
#include <cstdint>
#include <string>

#include "fingerprint.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string sql(reinterpret_cast<const char*>(data), size);
    std::string variant;
    bool inString = false;
    for (char c : sql) {
        if (c == '\'') {
            inString = !inString;
        }
        if (c >= '0' && c <= '9') {
            variant += static_cast<char>('0' + (c - '0' + 7) % 10);
            if (c == '5') {
                variant += '3';  // a longer number
            }
        } else if (inString && c != '\'' && c != '\\') {
            variant += c == 'a' ? 'b' : c;
        } else {
            variant += c;
        }
    }
    // The masked sample (samples: masked) stays within its bound, whatever the input.
    for (size_t maxOut : {size_t{4096}, size_t{16}}) {
        if (mp::mysql::maskLiterals(sql, maxOut).size() > maxOut + 3) {
            __builtin_trap();
        }
    }
    for (size_t maxOut : {size_t{4096}, size_t{16}}) {
        mp::mysql::FingerprintCache cache(8);
        std::string a;
        std::string b;
        cache.fingerprintInto(variant, a, maxOut);
        uint64_t viaCache = cache.fingerprintInto(sql, a, maxOut);
        uint64_t direct = mp::mysql::fingerprintInto(sql, b, maxOut);
        if (viaCache != direct || a != b) {
            __builtin_trap();
        }
    }
    return 0;
}

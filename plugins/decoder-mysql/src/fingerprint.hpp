// SPDX-License-Identifier: Apache-2.0
// SQL fingerprints: one tokenizer pass, never fails, bounded output.
//  - literals (strings, numbers, hex, bit, x'..', b'..', TRUE/FALSE/NULL are kept as words) -> ?
//  - placeholders `?` of prepared statements stay `?`, so text and binary forms share a template
//  - lists of literals collapse: IN (?, ?, ?) -> in(?+); VALUES (?, ?), (?, ?) -> values(?+)
//    (function arguments do not: f(?) and f(?, ?) stay apart, as in performance_schema)
//  - comments are removed, optimizer hints /*+ ... */ included (documented difference from
//    performance_schema, which keeps hints out of the digest too but keeps versioned comments)
//  - whitespace is normalised and everything outside literals is lower-cased
// The 64-bit id is FNV-1a of the fingerprint text.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace mp::mysql {

struct Fingerprint {
    std::string text;
    uint64_t id = 0;
};

/// `maxOut` bounds the text (a longer one ends with "..." and still gets a stable id).
Fingerprint fingerprint(std::string_view sql, size_t maxOut = 4096);

/// The same, written into `out` (cleared first, its capacity reused); returns the id.
uint64_t fingerprintInto(std::string_view sql, std::string& out, size_t maxOut = 4096);

uint64_t fnv1a64(std::string_view s);

}  // namespace mp::mysql

// SPDX-License-Identifier: Apache-2.0
// SQL fingerprints: one tokenizer pass, never fails, bounded output.
//  - literals (strings, numbers, hex, bit, x'..', b'..', TRUE/FALSE/NULL are kept as words) -> ?
//  - placeholders `?` of prepared statements stay `?`, so text and binary forms share a template
//  - lists of literals collapse: IN (?, ?, ?) -> in(?+); VALUES (?, ?), (?, ?) -> values(?+)
//    (function arguments do not: f(?, ?) and f(?, ?, ?) stay apart; performance_schema writes
//    both as f (...): a deliberate difference, listed with the others in the plugin's README)
//  - comments are removed, optimizer hints /*+ ... */ included (as MariaDB 10.x/11.x, whose
//    parser takes them as comments; MySQL 5.7+ keeps hint tokens in its digest: a hint does not
//    make a new template here)
//  - versioned comments /*!50100 ... */ and /*M!100100 ... */ are SQL: their body is tokenized
//    (whatever the version: the server's is not known here)
//  - whitespace is normalised and everything outside literals is lower-cased
// The 64-bit id is FNV-1a of the fingerprint text.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

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

/// The statement as written, with every literal replaced by `?` as the fingerprint replaces it
/// (strings with their _charset, numbers with their sign where it is one, hex, bit,
/// x'..'/b'..'/n'..') and comments removed (optimizer hints and versioned comments are kept:
/// they are SQL); case, spacing and identifiers (`sbtest1`, backticked ones) are kept. For
/// statements with tokens apart as SQL writes them, fingerprint(maskLiterals(s)) equals
/// fingerprint(s) (tested on every statement of the bundled captures); garbage such as `1col`
/// or `.5a` may tokenize apart. At most `maxOut` bytes (a longer one ends with "...").
std::string maskLiterals(std::string_view sql, size_t maxOut = 4096);

/// A memo of fingerprints by statement shape: the statement's bytes with the digits of plain
/// numbers and the contents of plain '...' strings masked. The tokenizer classifies those
/// regions as literals whatever they hold, so statements of one shape have one fingerprint, and
/// an application's statements, which differ in their literals, are tokenized once per shape.
/// Statements the shape scan does not fully understand (comments, backticks, double quotes,
/// backslashes, x'..'/b'..'/n'..'/_charset'..', 0x.., 1e5, 1abc) are fingerprinted each time.
/// Direct-mapped, bounded (fingerprints over 512 bytes are not kept: at most 2 MiB of text per
/// cache); one per thread (not thread-safe).
class FingerprintCache {
  public:
    explicit FingerprintCache(size_t slots = 4096);
    /// fingerprintInto(sql, out, maxOut), memoised.
    uint64_t fingerprintInto(std::string_view sql, std::string& out, size_t maxOut = 4096);

    struct Stats {
        uint64_t hits = 0;
        uint64_t misses = 0;
        uint64_t unmemoisable = 0;
    };
    const Stats& stats() const { return stats_; }

    /// The shape hash of `sql` (seeded with maxOut); false when the statement is unmemoisable.
    static bool shape(std::string_view sql, size_t maxOut, uint64_t& hash);

  private:
    struct Slot {
        uint64_t shape = 0;
        uint64_t id = 0;
        bool used = false;
        std::string text;
    };
    std::vector<Slot> slots_;
    Stats stats_;
};

/// The calling thread's cache (the decoder's sessions of one worker share it).
FingerprintCache& threadFingerprintCache();

}  // namespace mp::mysql

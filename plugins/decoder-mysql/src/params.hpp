// SPDX-License-Identifier: Apache-2.0
// The parameters of COM_STMT_EXECUTE (binary protocol), rendered as SQL literals for samples:
// "SELECT c FROM t WHERE id=?" + [42] -> "SELECT c FROM t WHERE id=42".
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace mp::mysql {

/// Decodes the parameter block of an execute: `d` points after the statement id, flags and
/// iteration count. `types` holds the 2-byte types bound by an earlier execute of the statement
/// and is replaced when this one binds new ones; `longData` marks parameters sent by
/// COM_STMT_SEND_LONG_DATA (not in the packet). Each rendered value is at most `maxValue`
/// bytes. False (and `out` cleared) when the block does not parse.
/// With CLIENT_QUERY_ATTRIBUTES negotiated, `qa` says whether the execute's flags carry
/// PARAMETER_COUNT_AVAILABLE (0x08); the block then starts with the number of values (the
/// statement's parameters, then the attributes) and names follow the types; attributes are
/// skipped.
struct QueryAttributes {
    bool countPresent = false;
};
bool decodeExecuteParams(const uint8_t* d, size_t n, uint16_t count, std::vector<uint8_t>& types,
                         const std::vector<bool>& longData, std::vector<std::string>& out,
                         size_t maxValue = 256, const QueryAttributes* qa = nullptr);

/// Only the head of the block: replaces `types` when the execute binds new ones (what every
/// execute must do for the next one); the values are left alone. False when it does not parse.
bool bindExecuteTypes(const uint8_t* d, size_t n, uint16_t count, std::vector<uint8_t>& types,
                      const QueryAttributes* qa = nullptr);

/// An execute's parameter block, kept undecoded: formatting values costs more than the rest of
/// the execute, and only samples need them. Bounded by the caller (see Session).
struct ExecuteParams {
    bool present = false;
    bool attributes = false;    // CLIENT_QUERY_ATTRIBUTES negotiated
    bool countPresent = false;  // PARAMETER_COUNT_AVAILABLE
    uint16_t count = 0;
    std::string raw;             // the block (after the iteration count)
    std::vector<uint8_t> types;  // the statement's bound types
    std::vector<bool> longData;

    void keep(const uint8_t* d, size_t n, uint16_t paramCount,
              const std::vector<uint8_t>& boundTypes, const std::vector<bool>& sentLong,
              const QueryAttributes* qa);
    /// Forgets the block; a large one's memory goes too (idle connections keep little).
    void clear() {
        present = false;
        if (raw.capacity() > 512) {
            std::string().swap(raw);
        }
    }
    /// decodeExecuteParams() of the kept block.
    bool decode(std::vector<std::string>& out, size_t maxValue = 256) const;
};

/// The statement text with each '?' placeholder (outside quotes and comments) replaced by the
/// next value; at most `maxOut` bytes.
std::string substituteParams(std::string_view sql, const std::vector<std::string>& values,
                             size_t maxOut);

}  // namespace mp::mysql

// SPDX-License-Identifier: Apache-2.0
// CRC-32 (ISO-HDLC, zlib's and the binlog's): the same value as zlib's crc32(), with x86's
// carry-less multiply where the CPU has it (about a tenth of the node's time went to zlib's).
#pragma once

#include <cstddef>
#include <cstdint>

namespace mp::binlog {

/// zlib's crc32(crc, d, n): `crc` is a previous result (0 to start), chained the same way.
uint32_t crc32(uint32_t crc, const uint8_t* d, size_t n);

/// The portable path alone (zlib), for tests that compare the two.
uint32_t crc32Portable(uint32_t crc, const uint8_t* d, size_t n);

}  // namespace mp::binlog

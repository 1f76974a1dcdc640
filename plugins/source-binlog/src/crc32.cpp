// SPDX-License-Identifier: Apache-2.0
// The fast path folds the message 64 bytes at a time with PCLMULQDQ, then to 128 bits, 64 and
// 32 (a Barrett reduction), as in Gopal et al., "Fast CRC Computation for Generic Polynomials
// Using PCLMULQDQ Instruction" (Intel, 2009), with the constants of the bit-reflected
// polynomial 0x04C11DB7 given there. What is not a whole 16 bytes, and everything on another
// CPU, goes eight bytes at a time through tables ("slicing-by-8"): most binlog events are
// short (GTID, table map, XID), and zlib's own set-up per call cost more than their bytes.
#include "crc32.hpp"

#include <zlib.h>

#include <array>
#include <bit>
#include <cstring>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace mp::binlog {

uint32_t crc32Portable(uint32_t crc, const uint8_t* d, size_t n) {
    return static_cast<uint32_t>(crc32_z(crc, d, n));
}

namespace {

using Tables = std::array<std::array<uint32_t, 256>, 8>;
constexpr Tables kTables = [] {
    Tables t{};
    for (uint32_t i = 0; i < 256; ++i) {
        uint32_t c = i;
        for (int k = 0; k < 8; ++k) {
            c = (c & 1U) != 0 ? 0xEDB88320U ^ (c >> 1) : c >> 1;
        }
        t[0][i] = c;
    }
    for (size_t j = 1; j < 8; ++j) {
        for (size_t i = 0; i < 256; ++i) {
            t[j][i] = (t[j - 1][i] >> 8) ^ t[0][t[j - 1][i] & 0xFFU];
        }
    }
    return t;
}();

uint32_t crc32Sliced(uint32_t crc, const uint8_t* d, size_t n) {
    if constexpr (std::endian::native != std::endian::little) {
        return crc32Portable(crc, d, n);
    }
    const Tables& t = kTables;
    uint32_t c = ~crc;
    for (; n >= 8; d += 8, n -= 8) {
        uint32_t lo = 0;
        uint32_t hi = 0;
        std::memcpy(&lo, d, 4);
        std::memcpy(&hi, d + 4, 4);
        lo ^= c;
        c = t[7][lo & 0xFFU] ^ t[6][(lo >> 8) & 0xFFU] ^ t[5][(lo >> 16) & 0xFFU] ^ t[4][lo >> 24] ^
            t[3][hi & 0xFFU] ^ t[2][(hi >> 8) & 0xFFU] ^ t[1][(hi >> 16) & 0xFFU] ^ t[0][hi >> 24];
    }
    for (; n > 0; ++d, --n) {
        c = t[0][(c ^ *d) & 0xFFU] ^ (c >> 8);
    }
    return ~c;
}

}  // namespace

#if defined(__x86_64__)
namespace {

// x^(4*128+32) mod P, x^(4*128-32) mod P; x^(128+32), x^(128-32); x^64; P' and mu (reflected)
constexpr uint64_t kFold4[2] = {0x0154442bd4, 0x01c6e41596};
constexpr uint64_t kFold1[2] = {0x01751997d0, 0x00ccaa009e};
constexpr uint64_t kTo64 = 0x0163cd6124;
constexpr uint64_t kBarrett[2] = {0x01db710641, 0x01f7011641};

// a folded forward over 128 bits by the pair k, plus the next block b
__attribute__((target("pclmul,sse4.1"))) inline __m128i fold(__m128i a, __m128i k, __m128i b) {
    const __m128i lo = _mm_clmulepi64_si128(a, k, 0x00);
    const __m128i hi = _mm_clmulepi64_si128(a, k, 0x11);
    return _mm_xor_si128(_mm_xor_si128(lo, hi), b);
}

__attribute__((target("pclmul,sse4.1"))) inline __m128i load(const uint8_t* p) {
    return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
}

// The raw register (no inversions) over n bytes, n >= 16 and a multiple of 16.
__attribute__((target("pclmul,sse4.1"))) uint32_t foldAll(uint32_t reg, const uint8_t* d,
                                                          size_t n) {
    const __m128i k1 =
        _mm_set_epi64x(static_cast<long long>(kFold1[1]), static_cast<long long>(kFold1[0]));
    __m128i acc;
    if (n >= 64) {
        __m128i x[4] = {load(d), load(d + 16), load(d + 32), load(d + 48)};
        x[0] = _mm_xor_si128(x[0], _mm_cvtsi32_si128(static_cast<int>(reg)));
        d += 64;
        n -= 64;
        const __m128i k4 =
            _mm_set_epi64x(static_cast<long long>(kFold4[1]), static_cast<long long>(kFold4[0]));
        for (; n >= 64; d += 64, n -= 64) {
            for (int i = 0; i < 4; ++i) {
                x[i] = fold(x[i], k4, load(d + 16 * i));
            }
        }
        acc = fold(x[0], k1, x[1]);
        acc = fold(acc, k1, x[2]);
        acc = fold(acc, k1, x[3]);
    } else {
        acc = _mm_xor_si128(load(d), _mm_cvtsi32_si128(static_cast<int>(reg)));
        d += 16;
        n -= 16;
    }
    for (; n >= 16; d += 16, n -= 16) {
        acc = fold(acc, k1, load(d));
    }
    // 128 -> 64 bits
    const __m128i low32 = _mm_setr_epi32(-1, 0, -1, 0);
    __m128i t = _mm_clmulepi64_si128(acc, k1, 0x10);
    acc = _mm_xor_si128(_mm_srli_si128(acc, 8), t);
    const __m128i k64 = _mm_set_epi64x(0, static_cast<long long>(kTo64));
    t = _mm_srli_si128(acc, 4);
    acc = _mm_clmulepi64_si128(_mm_and_si128(acc, low32), k64, 0x00);
    acc = _mm_xor_si128(acc, t);
    // Barrett: 64 -> 32 bits
    const __m128i pm =
        _mm_set_epi64x(static_cast<long long>(kBarrett[1]), static_cast<long long>(kBarrett[0]));
    t = _mm_clmulepi64_si128(_mm_and_si128(acc, low32), pm, 0x10);
    t = _mm_clmulepi64_si128(_mm_and_si128(t, low32), pm, 0x00);
    acc = _mm_xor_si128(acc, t);
    return static_cast<uint32_t>(_mm_extract_epi32(acc, 1));
}

// asked at the first call (a global's initialiser could run after another one's first call)
bool hasClmul() {
    static const bool has = [] {
        __builtin_cpu_init();
        return __builtin_cpu_supports("pclmul") && __builtin_cpu_supports("sse4.1");
    }();
    return has;
}

}  // namespace
#endif

uint32_t crc32(uint32_t crc, const uint8_t* d, size_t n) {
#if defined(__x86_64__)
    if (n >= 32 && hasClmul()) {
        const size_t whole = n & ~size_t{15};
        crc = ~foldAll(~crc, d, whole);
        d += whole;
        n -= whole;
    }
#endif
    return crc32Sliced(crc, d, n);
}

}  // namespace mp::binlog

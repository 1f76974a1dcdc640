// SPDX-License-Identifier: Apache-2.0
// Go's compress/lzw as memberlist uses it: LSB order, literal width 8, 12-bit codes, byte-exact
// with Go 1.19's writer, and a reader bounded by the output it may produce.
#include <algorithm>
#include <array>
#include <cstring>
#include <memory>

#include "wire.hpp"

namespace mp::gossip {

namespace {

// ------------------------------------------------------------------------------------ LZW

constexpr uint32_t kClear = 256;  // 1 << litWidth
constexpr uint32_t kEof = 257;
constexpr uint32_t kMaxCode = 4095;  // 12-bit codes
constexpr unsigned kMaxWidth = 12;

class BitWriter {
  public:
    explicit BitWriter(Bytes& out) : out_(out) {}
    void write(uint32_t code) {
        bits_ |= code << nBits_;
        nBits_ += width;
        while (nBits_ >= 8) {
            out_.push_back(static_cast<uint8_t>(bits_));
            bits_ >>= 8;
            nBits_ -= 8;
        }
    }
    void flush() {
        if (nBits_ > 0) {
            out_.push_back(static_cast<uint8_t>(bits_));
        }
    }
    unsigned width = 9;

  private:
    Bytes& out_;
    uint32_t bits_ = 0;
    unsigned nBits_ = 0;
};

}  // namespace

// ------------------------------------------------------------------------------------ LZW

Bytes lzwCompress(const uint8_t* p, size_t n) {
    // Go's compress/lzw Writer (Go 1.17+): a leading CLEAR, a hash table of key<<12|code
    // entries with linear probing, CLEAR when hi reaches 4095, the last code, then EOF.
    Bytes out;
    out.reserve(n / 2 + 8);
    BitWriter w(out);
    w.write(kClear);
    if (p == nullptr || n == 0) {
        w.write(kEof);
        w.flush();
        return out;
    }
    // At most min(n, 4096) entries: a table twice that size (Go always uses 16384 slots; the
    // size changes where entries sit, never which codes come out).
    uint32_t tableSize = 64;
    while (tableSize < 4 * (1u << kMaxWidth) && tableSize < 2 * n) {
        tableSize <<= 1;
    }
    const uint32_t tableMask = tableSize - 1;
    auto table = std::make_unique<uint32_t[]>(tableSize);  // 0: empty (codes are >= 258)
    uint32_t hi = kEof;
    uint32_t overflow = 1u << 9;
    auto incHi = [&]() {  // false: the table was full and has been reset
        ++hi;
        if (hi == overflow) {
            ++w.width;
            overflow <<= 1;
        }
        if (hi == kMaxCode) {
            w.write(kClear);
            w.width = 9;
            hi = kEof;
            overflow = 1u << 9;
            std::memset(table.get(), 0, tableSize * sizeof(uint32_t));
            return false;
        }
        return true;
    };
    uint32_t code = p[0];
    for (size_t i = 1; i < n; ++i) {
        const uint32_t literal = p[i];
        const uint32_t key = code << 8 | literal;
        uint32_t hash = ((key >> 12) ^ key) & tableMask;
        bool hit = false;
        for (uint32_t h = hash, t = table[hash]; t != 0;) {
            if (key == t >> 12) {
                code = t & kMaxCode;
                hit = true;
                break;
            }
            h = (h + 1) & tableMask;
            t = table[h];
        }
        if (hit) {
            continue;
        }
        w.write(code);
        code = literal;
        if (!incHi()) {
            continue;
        }
        while (table[hash] != 0) {
            hash = (hash + 1) & tableMask;
        }
        table[hash] = key << 12 | hi;
    }
    w.write(code);
    incHi();
    w.write(kEof);
    w.flush();
    return out;
}

bool lzwDecompress(const uint8_t* p, size_t n, Bytes& out, size_t maxOut) {
    // Go's compress/lzw Reader. Codes > hi are corrupt; the stream must end with EOF.
    try {
        constexpr uint32_t kInvalid = 0xffff;
        std::array<uint16_t, kMaxCode + 1> prefix{};
        std::array<uint8_t, kMaxCode + 1> suffix{};
        std::array<uint8_t, kMaxCode + 2> expand{};
        Bytes res;
        uint32_t bits = 0;
        unsigned nBits = 0;
        unsigned width = 9;
        uint32_t hi = kEof;
        uint32_t overflow = 1u << 9;
        uint32_t last = kInvalid;
        size_t pos = 0;
        for (;;) {
            while (nBits < width) {
                if (p == nullptr || pos >= n) {
                    return false;  // unexpected EOF
                }
                bits |= static_cast<uint32_t>(p[pos++]) << nBits;
                nBits += 8;
            }
            const uint32_t code = bits & ((1u << width) - 1);
            bits >>= width;
            nBits -= width;
            if (code < kClear) {
                if (res.size() >= maxOut) {
                    return false;
                }
                res.push_back(static_cast<uint8_t>(code));
                if (last != kInvalid) {
                    suffix[hi] = static_cast<uint8_t>(code);
                    prefix[hi] = static_cast<uint16_t>(last);
                }
            } else if (code == kClear) {
                width = 9;
                hi = kEof;
                overflow = 1u << 9;
                last = kInvalid;
                continue;
            } else if (code == kEof) {
                break;
            } else if (code <= hi) {
                size_t i = expand.size();
                uint32_t c = code;
                if (code == hi && last != kInvalid) {
                    // KwKwK: the last expansion followed by its own first byte.
                    c = last;
                    while (c >= kClear) {
                        c = prefix[c];
                    }
                    expand[--i] = static_cast<uint8_t>(c);
                    c = last;
                }
                while (c >= kClear) {
                    if (i <= 1) {
                        return false;
                    }
                    expand[--i] = suffix[c];
                    c = prefix[c];
                }
                expand[--i] = static_cast<uint8_t>(c);
                const size_t len = expand.size() - i;
                if (len > maxOut - res.size()) {
                    return false;
                }
                res.insert(res.end(), expand.begin() + static_cast<std::ptrdiff_t>(i),
                           expand.end());
                if (last != kInvalid) {
                    suffix[hi] = static_cast<uint8_t>(c);
                    prefix[hi] = static_cast<uint16_t>(last);
                }
            } else {
                return false;  // invalid code
            }
            last = code;
            ++hi;
            if (hi >= overflow) {
                if (width == kMaxWidth) {
                    last = kInvalid;  // the table is full until the next CLEAR
                    --hi;
                } else {
                    ++width;
                    overflow <<= 1;
                }
            }
        }
        out = std::move(res);
        return true;
    } catch (...) {
        return false;
    }
}

}  // namespace mp::gossip

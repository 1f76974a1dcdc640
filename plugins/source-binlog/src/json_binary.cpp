// SPDX-License-Identifier: Apache-2.0
#include "json_binary.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>
#include <mp/mysql_wire.hpp>
#include <mp/sdk.hpp>

#include "values.hpp"

namespace mp::binlog {
namespace {

// The value types of MySQL's binary JSON (sql-common/json_binary.h).
enum : uint8_t {
    kSmallObject = 0x00,  // offsets and counts in 2 bytes
    kLargeObject = 0x01,  // ... in 4
    kSmallArray = 0x02,
    kLargeArray = 0x03,
    kLiteral = 0x04,  // 0 null, 1 true, 2 false
    kInt16 = 0x05,
    kUint16 = 0x06,
    kInt32 = 0x07,
    kUint32 = 0x08,
    kInt64 = 0x09,
    kUint64 = 0x0a,
    kDouble = 0x0b,
    kString = 0x0c,  // a variable length, then the bytes (utf8mb4)
    kOpaque = 0x0f,  // a column type, a variable length, then the bytes
};

constexpr int kMaxDepth = 100;        // MySQL's JSON_DOCUMENT_MAX_DEPTH
constexpr size_t kMaxGrowth = 16;     // text bytes per value byte, at most
constexpr size_t kKeyLengthSize = 2;  // a key's length is 2 bytes in both forms
constexpr size_t kScalarText = 80;    // the longest text of a number, literal or date (DECIMAL)

uint64_t le(const uint8_t* p, size_t n) {
    uint64_t v = 0;
    for (size_t i = 0; i < n; ++i) {
        v |= static_cast<uint64_t>(p[i]) << (8 * i);
    }
    return v;
}

class Reader {
  public:
    Reader(std::string& out, std::string& why, size_t limit)
        : out_(out), why_(why), limit_(limit) {}

    // One value of type `type` whose bytes start at `p`, with `n` bytes there to read.
    bool value(uint8_t type, const uint8_t* p, size_t n, int depth) {
        if (depth > kMaxDepth) {
            return fail("nested deeper than " + std::to_string(kMaxDepth) + " levels");
        }
        if (!room(kScalarText)) {
            return false;
        }
        switch (type) {
            case kSmallObject:
            case kLargeObject:
            case kSmallArray:
            case kLargeArray:
                return container(type, p, n, depth);
            case kLiteral:
                if (n < 1 || p[0] > 2) {
                    return fail(n < 1 ? "literal past the end" : "unknown literal");
                }
                out_ += p[0] == 0 ? "null" : p[0] == 1 ? "true" : "false";
                return true;
            case kInt16:
                return n >= 2 ? integer(static_cast<int16_t>(le(p, 2)))
                              : fail("int16 past the end");
            case kUint16:
                return n >= 2 ? integer(le(p, 2)) : fail("uint16 past the end");
            case kInt32:
                return n >= 4 ? integer(static_cast<int32_t>(le(p, 4)))
                              : fail("int32 past the end");
            case kUint32:
                return n >= 4 ? integer(le(p, 4)) : fail("uint32 past the end");
            case kInt64:
                return n >= 8 ? integer(static_cast<int64_t>(le(p, 8)))
                              : fail("int64 past the end");
            case kUint64:
                return n >= 8 ? integer(le(p, 8)) : fail("uint64 past the end");
            case kDouble:
                return n >= 8 ? real(le(p, 8)) : fail("double past the end");
            case kString: {
                size_t len = 0;
                const uint8_t* s = p;
                if (!varLength(s, p + n, len)) {
                    return fail("string length past the end");
                }
                if (!room(6 * len + 2)) {
                    return false;
                }
                appendJsonString(out_, std::string_view(reinterpret_cast<const char*>(s), len));
                return true;
            }
            case kOpaque:
                return opaque(p, n);
            default:
                return fail("unknown value type " + std::to_string(type));
        }
    }

  private:
    bool fail(std::string why) {
        why_ = std::move(why);
        return false;
    }

    // True when `worst` more bytes of text stay within the bound; checked before anything is
    // appended, so that the text never grows far past it (a few separators at most).
    bool room(size_t worst) {
        if (out_.size() + worst <= limit_) {
            return true;
        }
        return fail("text longer than " + std::to_string(kMaxGrowth) +
                    " times the value's bytes (members that share bytes)");
    }

    template <typename T>
    bool integer(T v) {
        char buf[24];
        auto r = std::to_chars(buf, buf + sizeof buf, v);
        out_.append(buf, r.ptr);
        return true;
    }

    bool real(uint64_t bits) {
        double d = 0;
        std::memcpy(&d, &bits, sizeof d);
        if (!std::isfinite(d)) {
            return fail("double not finite");  // MySQL stores none
        }
        char buf[40];
        auto r = std::to_chars(buf, buf + sizeof buf, d);
        const std::string_view text(buf, static_cast<size_t>(r.ptr - buf));
        out_ += text;
        if (text.find_first_of(".e") == std::string_view::npos) {
            out_ += ".0";  // a double, not an integer
        }
        return true;
    }

    // A length of 7 bits per byte, the lowest first, at most 5 bytes (32 bits); then that many
    // bytes must be there. `p` moves past the length.
    static bool varLength(const uint8_t*& p, const uint8_t* end, size_t& len) {
        uint64_t v = 0;
        for (int i = 0; i < 5; ++i) {
            if (p == end) {
                return false;
            }
            const uint8_t b = *p++;
            v |= static_cast<uint64_t>(b & 0x7f) << (7 * i);
            if ((b & 0x80) == 0) {
                if (v > static_cast<uint64_t>(end - p)) {
                    return false;
                }
                len = static_cast<size_t>(v);
                return true;
            }
        }
        return false;
    }

    bool container(uint8_t type, const uint8_t* p, size_t n, int depth) {
        const bool object = type == kSmallObject || type == kLargeObject;
        const bool large = type == kLargeObject || type == kLargeArray;
        const size_t w = large ? 4 : 2;  // offsets, counts and sizes
        const char* what = object ? "object" : "array";
        if (n < 2 * w) {
            return fail(std::string(what) + " header past the end");
        }
        const uint64_t count = le(p, w);
        // The size the container states; one that runs past the bytes there is read within
        // them (MySQL writes none; one of Vitess's vectors does, and Vitess reads it so)
        const uint64_t size = std::min<uint64_t>(le(p + w, w), n);
        const uint64_t keyEntry = object ? w + kKeyLengthSize : 0;
        const uint64_t valueEntry = 1 + w;
        // count < 2^32, entries < 8 bytes: no overflow
        if (2 * w + count * (keyEntry + valueEntry) > size) {
            return fail(std::string(what) + " of " + std::to_string(count) +
                        " members larger than its " + std::to_string(size) + " bytes");
        }
        out_ += object ? '{' : '[';
        for (uint64_t i = 0; i < count; ++i) {
            if (i != 0) {
                out_ += ", ";
            }
            if (object) {
                const uint8_t* k = p + 2 * w + i * keyEntry;
                const uint64_t at = le(k, w);
                const uint64_t len = le(k + w, kKeyLengthSize);
                if (at > size || len > size - at) {
                    return fail("object key past the object's end");
                }
                if (!room(6 * len + 4)) {
                    return false;
                }
                appendJsonString(out_, std::string_view(reinterpret_cast<const char*>(p + at),
                                                        static_cast<size_t>(len)));
                out_ += ": ";
            }
            const uint8_t* e = p + 2 * w + count * keyEntry + i * valueEntry;
            const uint8_t t = e[0];
            // Literals and 16-bit integers sit in the entry itself, and 32-bit ones in a large
            // container's; anything else is at an offset from the container's start.
            const bool inlined = t == kLiteral || t == kInt16 || t == kUint16 ||
                                 (large && (t == kInt32 || t == kUint32));
            bool ok = false;
            if (inlined) {
                ok = value(t, e + 1, w, depth + 1);
            } else {
                const uint64_t at = le(e + 1, w);
                if (at >= size) {
                    return fail(std::string(what) + " member past the " + what + "'s end");
                }
                ok = value(t, p + at, static_cast<size_t>(size - at), depth + 1);
            }
            if (!ok) {
                return false;
            }
        }
        out_ += object ? '}' : ']';
        return true;
    }

    bool opaque(const uint8_t* p, size_t n) {
        if (n < 1) {
            return fail("opaque value past the end");
        }
        const uint8_t field = p[0];
        const uint8_t* d = p + 1;
        size_t len = 0;
        if (!varLength(d, p + n, len)) {
            return fail("opaque value's length past the end");
        }
        switch (field) {
            case mysql::kTypeNewDecimal: {
                // precision, scale, then the server's binary DECIMAL
                if (len < 2) {
                    return fail("opaque DECIMAL of " + std::to_string(len) + " bytes");
                }
                mysql::PacketReader r(d + 2, len - 2);
                if (!appendDecimal(r, d[0], d[1], out_, false)) {  // a number here
                    return fail("bad opaque DECIMAL(" + std::to_string(d[0]) + "," +
                                std::to_string(d[1]) + ")");
                }
                return true;
            }
            case mysql::kTypeDate:
            case mysql::kTypeTime:
            case mysql::kTypeDateTime:
            case mysql::kTypeTimestamp:
                if (len < 8) {
                    return fail("opaque temporal value of " + std::to_string(len) + " bytes");
                }
                temporal(field, static_cast<int64_t>(le(d, 8)));
                return true;
            default:
                if (!room(len / 3 * 4 + 32)) {
                    return false;
                }
                out_ += "\"base64:type";
                integer(field);
                out_ += ':';
                appendBase64(out_, d, len);
                out_ += '"';
                return true;
        }
    }

    // MySQL's packed temporal integers (TIME_to_longlong_*_packed): microseconds in the low 24
    // bits; above them hour << 12 | minute << 6 | second, and for dates ((year * 13 + month)
    // << 5 | day) << 17 above that; negative (a TIME) as the negated value.
    void temporal(uint8_t field, int64_t packed) {
        const bool negative = packed < 0;
        const uint64_t v =
            negative ? 0 - static_cast<uint64_t>(packed) : static_cast<uint64_t>(packed);
        const uint64_t whole = v >> 24;
        const uint64_t hms = whole & 0x1ffff;
        const uint64_t ymd = whole >> 17;
        out_ += '"';
        if (field == mysql::kTypeTime) {
            if (negative) {
                out_ += '-';
            }
            appendClock(out_, (whole >> 12) & 0x3ff, (hms >> 6) & 0x3f, hms & 0x3f);
        } else {
            appendDate(out_, (ymd >> 5) / 13, (ymd >> 5) % 13, ymd & 0x1f);
            if (field != mysql::kTypeDate) {
                out_ += ' ';
                appendClock(out_, hms >> 12, (hms >> 6) & 0x3f, hms & 0x3f);
            }
        }
        if (field != mysql::kTypeDate) {
            appendFraction(out_, v & 0xffffff, 6);  // MySQL prints six digits
        }
        out_ += '"';
    }

    std::string& out_;
    std::string& why_;
    size_t limit_;
};

}  // namespace

bool appendBinaryJson(const uint8_t* data, size_t size, std::string& out, std::string& why) {
    if (size == 0) {
        out += "null";
        return true;
    }
    Reader r(out, why, out.size() + kMaxGrowth * size + 64);
    return r.value(data[0], data + 1, size - 1, 1);
}

}  // namespace mp::binlog

// SPDX-License-Identifier: Apache-2.0
#include "values.hpp"

#include <charconv>
#include <cmath>
#include <mp/sdk.hpp>

#include "json_binary.hpp"

namespace mp::binlog {
namespace {

using mysql::PacketReader;

void appendUnsigned(std::string& out, uint64_t v) {
    char buf[24];
    auto r = std::to_chars(buf, buf + sizeof buf, v);
    out.append(buf, r.ptr);
}

void appendSigned(std::string& out, int64_t v) {
    char buf[24];
    auto r = std::to_chars(buf, buf + sizeof buf, v);
    out.append(buf, r.ptr);
}

// Zero-padded decimal digits of v, at least `width` of them.
void appendPadded(std::string& out, uint64_t v, int width) {
    char buf[24];
    auto r = std::to_chars(buf, buf + sizeof buf, v);
    for (auto len = static_cast<int>(r.ptr - buf); len < width; ++len) {
        out += '0';
    }
    out.append(buf, r.ptr);
}

template <typename F>
void appendFloat(std::string& out, F v) {
    if (!std::isfinite(v)) {
        out += "null";
        return;
    }
    char buf[40];
    auto r = std::to_chars(buf, buf + sizeof buf, v);  // shortest text that reads back as v
    out.append(buf, r.ptr);
}

}  // namespace

void appendFraction(std::string& out, uint64_t micros, unsigned fsp) {
    if (fsp == 0) {
        return;
    }
    static constexpr uint64_t kDiv[7] = {1000000, 100000, 10000, 1000, 100, 10, 1};
    out += '.';
    appendPadded(out, micros / kDiv[fsp], static_cast<int>(fsp));
}

namespace {

// The fractional part of DATETIME2 and TIMESTAMP2 (never negative; TIME2 reads its own):
// (fsp + 1) / 2 big-endian bytes, in units of 10^(6 - 2 * bytes) microseconds.
uint64_t readFraction(PacketReader& r, unsigned fsp) {
    static constexpr uint64_t kUnit[4] = {0, 10000, 100, 1};
    const size_t bytes = (fsp + 1) / 2;
    return bytes >= 1 && bytes <= 3 ? r.be(bytes) * kUnit[bytes] : 0;
}

}  // namespace

void appendDate(std::string& out, uint64_t year, uint64_t month, uint64_t day) {
    appendPadded(out, year, 4);
    out += '-';
    appendPadded(out, month, 2);
    out += '-';
    appendPadded(out, day, 2);
}

void appendClock(std::string& out, uint64_t hour, uint64_t minute, uint64_t second) {
    appendPadded(out, hour, 2);
    out += ':';
    appendPadded(out, minute, 2);
    out += ':';
    appendPadded(out, second, 2);
}

namespace {

// Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
void civilFromDays(int64_t z, int64_t& y, unsigned& m, unsigned& d) {
    z += 719468;
    const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    const auto doe = static_cast<unsigned>(z - era * 146097);
    const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    y = static_cast<int64_t>(yoe) + era * 400;
    const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    const unsigned mp = (5 * doy + 2) / 153;
    d = doy - (153 * mp + 2) / 5 + 1;
    m = mp < 10 ? mp + 3 : mp - 9;
    y += m <= 2 ? 1 : 0;
}

void appendEpoch(std::string& out, uint64_t seconds, uint64_t micros, unsigned fsp) {
    out += '"';
    if (seconds == 0 && micros == 0) {
        out += "0000-00-00 00:00:00";
    } else {
        int64_t y = 0;
        unsigned m = 0;
        unsigned d = 0;
        civilFromDays(static_cast<int64_t>(seconds / 86400), y, m, d);
        const uint64_t s = seconds % 86400;
        appendDate(out, static_cast<uint64_t>(y), m, d);
        out += ' ';
        appendClock(out, s / 3600, s / 60 % 60, s % 60);
    }
    appendFraction(out, micros, fsp);
    out += '"';
}

constexpr int kDigitsPerWord = 9;
constexpr int kDigitBytes[kDigitsPerWord + 1] = {0, 1, 1, 2, 2, 3, 3, 4, 4, 4};

}  // namespace

// DECIMAL(precision, scale) in the binary form of the server's decimal2bin(): groups of nine
// digits in four big-endian bytes, the leftover digits in fewer; the sign in the first bit
// (set for positive), negative values with every bit inverted.
bool appendDecimal(PacketReader& r, unsigned precision, unsigned scale, std::string& out,
                   bool quoted) {
    if (precision == 0 || precision > 65 || scale > 38 || scale > precision) {
        return false;
    }
    const int intg = static_cast<int>(precision - scale);
    const int intg0 = intg / kDigitsPerWord;
    const int intg0x = intg % kDigitsPerWord;
    const int frac0 = static_cast<int>(scale) / kDigitsPerWord;
    const int frac0x = static_cast<int>(scale) % kDigitsPerWord;
    const int bytes = intg0 * 4 + kDigitBytes[intg0x] + frac0 * 4 + kDigitBytes[frac0x];
    const auto size = static_cast<size_t>(bytes);
    if (!r.has(size)) {
        return false;
    }
    uint8_t buf[40];
    std::memcpy(buf, r.here(), size);
    r.skip(size);
    const bool negative = (buf[0] & 0x80) == 0;
    buf[0] ^= 0x80;
    if (negative) {
        for (size_t i = 0; i < size; ++i) {
            buf[i] ^= 0xff;
        }
    }
    PacketReader b(buf, size);
    std::string digits;  // integer part
    auto group = [&](int ndigits, int nbytes, std::string& into, bool pad) {
        uint64_t v = b.be(static_cast<size_t>(nbytes));
        if (pad) {
            appendPadded(into, v, ndigits);
        } else {
            appendUnsigned(into, v);
        }
    };
    if (intg0x > 0) {
        group(intg0x, kDigitBytes[intg0x], digits, true);
    }
    for (int i = 0; i < intg0; ++i) {
        group(kDigitsPerWord, 4, digits, true);
    }
    size_t lead = digits.find_first_not_of('0');
    std::string_view integer =
        lead == std::string::npos ? std::string_view("0") : std::string_view(digits).substr(lead);
    std::string fraction;
    for (int i = 0; i < frac0; ++i) {
        group(kDigitsPerWord, 4, fraction, true);
    }
    if (frac0x > 0) {
        group(frac0x, kDigitBytes[frac0x], fraction, true);
    }
    if (quoted) {
        out += '"';
    }
    if (negative) {
        out += '-';
    }
    out += integer;
    if (scale > 0) {
        out += '.';
        out += fraction;
    }
    if (quoted) {
        out += '"';
    }
    return b.ok();
}

namespace {

// A length-prefixed byte string: text in JSON, or base64 for binary data.
bool appendBytes(PacketReader& r, size_t prefix, bool binary, std::string& out) {
    uint64_t len = r.le(prefix);
    if (!r.has(len)) {
        return false;
    }
    const uint8_t* p = r.here();
    r.skip(len);
    if (binary) {
        out += '"';
        appendBase64(out, p, len);
        out += '"';
    } else {
        appendJsonString(out, std::string_view(reinterpret_cast<const char*>(p), len));
    }
    return true;
}

}  // namespace

int metadataLength(uint8_t type) {
    switch (type) {
        case mysql::kTypeTiny:
        case mysql::kTypeShort:
        case mysql::kTypeInt24:
        case mysql::kTypeLong:
        case mysql::kTypeLongLong:
        case mysql::kTypeNull:
        case mysql::kTypeYear:
        case mysql::kTypeDate:
        case mysql::kTypeNewDate:
        case mysql::kTypeTime:
        case mysql::kTypeDateTime:
        case mysql::kTypeTimestamp:
        case mysql::kTypeDecimal:
            return 0;
        case mysql::kTypeFloat:
        case mysql::kTypeDouble:
        case mysql::kTypeBlob:
        case mysql::kTypeTinyBlob:
        case mysql::kTypeMediumBlob:
        case mysql::kTypeLongBlob:
        case mysql::kTypeGeometry:
        case mysql::kTypeJson:
        case mysql::kTypeTime2:
        case mysql::kTypeDateTime2:
        case mysql::kTypeTimestamp2:
            return 1;
        case mysql::kTypeVarchar:
        case mysql::kTypeVarString:
        case mysql::kTypeBit:
        case mysql::kTypeNewDecimal:
        case mysql::kTypeString:
        case mysql::kTypeEnum:
        case mysql::kTypeSet:
            return 2;
        default:
            return -1;
    }
}

void readMetadata(PacketReader& r, Column& c) {
    c.realType = c.type;
    switch (c.type) {
        case mysql::kTypeString:
        case mysql::kTypeEnum:
        case mysql::kTypeSet:
        case mysql::kTypeNewDecimal: {
            // Two bytes in this order: for STRING, the real type (ENUM, SET or STRING) with two
            // bits of a long CHAR's length folded into it, then the length.
            auto b0 = static_cast<uint8_t>(r.le(1));
            auto b1 = static_cast<uint8_t>(r.le(1));
            if (c.type == mysql::kTypeNewDecimal) {
                c.meta = static_cast<uint16_t>((b0 << 8) | b1);
            } else if ((b0 & 0x30) != 0x30) {
                c.realType = static_cast<uint8_t>(b0 | 0x30);
                c.meta = static_cast<uint16_t>(b1 | (((b0 & 0x30) ^ 0x30) << 4));
            } else {
                c.realType = b0;
                c.meta = b1;
            }
            return;
        }
        default: {
            int len = metadataLength(c.type);
            c.meta = len > 0 ? static_cast<uint16_t>(r.le(static_cast<size_t>(len))) : 0;
        }
    }
}

bool appendValue(PacketReader& r, const Column& c, std::string& out, std::string& why) {
    const bool u = c.isUnsigned;
    switch (c.realType) {
        case mysql::kTypeTiny: {
            uint64_t v = r.le(1);
            u ? appendUnsigned(out, v) : appendSigned(out, static_cast<int8_t>(v));
            break;
        }
        case mysql::kTypeShort: {
            uint64_t v = r.le(2);
            u ? appendUnsigned(out, v) : appendSigned(out, static_cast<int16_t>(v));
            break;
        }
        case mysql::kTypeInt24: {
            uint64_t v = r.le(3);
            u ? appendUnsigned(out, v)
              : appendSigned(out, (v & 0x800000) != 0 ? static_cast<int64_t>(v) - 0x1000000
                                                      : static_cast<int64_t>(v));
            break;
        }
        case mysql::kTypeLong: {
            uint64_t v = r.le(4);
            u ? appendUnsigned(out, v) : appendSigned(out, static_cast<int32_t>(v));
            break;
        }
        case mysql::kTypeLongLong: {
            uint64_t v = r.le(8);
            if (u) {
                out += '"';  // beyond 2^53 a JSON number loses digits in most readers
                appendUnsigned(out, v);
                out += '"';
            } else {
                appendSigned(out, static_cast<int64_t>(v));
            }
            break;
        }
        case mysql::kTypeFloat: {
            auto bits = static_cast<uint32_t>(r.le(4));
            float f = 0;
            std::memcpy(&f, &bits, sizeof f);
            appendFloat(out, f);
            break;
        }
        case mysql::kTypeDouble: {
            uint64_t bits = r.le(8);
            double d = 0;
            std::memcpy(&d, &bits, sizeof d);
            appendFloat(out, d);
            break;
        }
        case mysql::kTypeNewDecimal:
            if (!appendDecimal(r, c.meta >> 8, c.meta & 0xff, out)) {
                why = "bad DECIMAL(" + std::to_string(c.meta >> 8) + "," +
                      std::to_string(c.meta & 0xff) + ") value";
                return false;
            }
            break;
        case mysql::kTypeYear: {
            uint64_t v = r.le(1);
            appendUnsigned(out, v == 0 ? 0 : 1900 + v);
            break;
        }
        case mysql::kTypeDate:
        case mysql::kTypeNewDate: {
            uint64_t v = r.le(3);
            out += '"';
            appendDate(out, v >> 9, (v >> 5) & 15, v & 31);
            out += '"';
            break;
        }
        case mysql::kTypeTime: {  // old format: HHMMSS as a signed 3-byte integer
            uint64_t raw = r.le(3);
            int64_t v = (raw & 0x800000) != 0 ? static_cast<int64_t>(raw) - 0x1000000
                                              : static_cast<int64_t>(raw);
            out += '"';
            if (v < 0) {
                out += '-';
                v = -v;
            }
            appendClock(out, static_cast<uint64_t>(v / 10000), static_cast<uint64_t>(v / 100 % 100),
                        static_cast<uint64_t>(v % 100));
            out += '"';
            break;
        }
        case mysql::kTypeTime2: {
            const unsigned fsp = c.meta > 6 ? 6 : c.meta;
            // Three big-endian bytes offset by 0x800000 (sign, 1 unused bit, 10 bits of hours,
            // 6 of minutes, 6 of seconds), then the fraction; a negative time with a fraction
            // is stored as the next lower second plus a positive fraction (my_time_packed).
            int64_t packed = 0;  // seconds part << 24 | microseconds
            const int64_t intpart = static_cast<int64_t>(r.be(3)) - 0x800000;
            switch ((fsp + 1) / 2) {
                case 0:
                    packed = intpart * (1 << 24);
                    break;
                case 1:
                case 2: {
                    auto frac = static_cast<int64_t>(r.be((fsp + 1) / 2));
                    const int64_t span = fsp <= 2 ? 0x100 : 0x10000;
                    const int64_t unit = fsp <= 2 ? 10000 : 100;
                    int64_t ip = intpart;
                    if (ip < 0 && frac != 0) {
                        ip += 1;
                        frac -= span;
                    }
                    packed = ip * (1 << 24) + frac * unit;
                    break;
                }
                default:
                    packed = intpart * (1 << 24) + static_cast<int64_t>(r.be(3));
                    break;
            }
            out += '"';
            if (packed < 0) {
                out += '-';
                packed = -packed;
            }
            const auto hms = static_cast<uint64_t>(packed >> 24);
            appendClock(out, (hms >> 12) & 1023, (hms >> 6) & 63, hms & 63);
            appendFraction(out, static_cast<uint64_t>(packed % (1 << 24)), fsp);
            out += '"';
            break;
        }
        case mysql::kTypeDateTime: {  // old format: YYYYMMDDhhmmss as an 8-byte integer
            uint64_t v = r.le(8);
            uint64_t date = v / 1000000;
            uint64_t time = v % 1000000;
            out += '"';
            appendDate(out, date / 10000, date / 100 % 100, date % 100);
            out += ' ';
            appendClock(out, time / 10000, time / 100 % 100, time % 100);
            out += '"';
            break;
        }
        case mysql::kTypeDateTime2: {
            const unsigned fsp = c.meta > 6 ? 6 : c.meta;
            // Five big-endian bytes offset by 0x8000000000: 17 bits of year*13+month, 5 of
            // day, 5 of hour, 6 of minute, 6 of second; then the fraction.
            uint64_t intpart = r.be(5) - 0x8000000000ULL;
            auto frac = readFraction(r, fsp);
            const uint64_t ymd = intpart >> 17;
            const uint64_t ym = ymd >> 5;
            const uint64_t hms = intpart & ((1 << 17) - 1);
            out += '"';
            appendDate(out, ym / 13, ym % 13, ymd & 31);
            out += ' ';
            appendClock(out, hms >> 12, (hms >> 6) & 63, hms & 63);
            appendFraction(out, frac, fsp);
            out += '"';
            break;
        }
        case mysql::kTypeTimestamp:
            appendEpoch(out, r.le(4), 0, 0);
            break;
        case mysql::kTypeTimestamp2: {
            const unsigned fsp = c.meta > 6 ? 6 : c.meta;
            uint64_t seconds = r.be(4);
            auto frac = readFraction(r, fsp);
            appendEpoch(out, seconds, frac, fsp);
            break;
        }
        case mysql::kTypeBit: {
            const unsigned nbits = (c.meta >> 8) * 8 + (c.meta & 0xff);
            const size_t len = (nbits + 7) / 8;
            if (len > 8) {
                why = "BIT column wider than 64 bits";
                return false;
            }
            uint64_t v = r.be(len);
            if (nbits > 53) {
                out += '"';
                appendUnsigned(out, v);
                out += '"';
            } else {
                appendUnsigned(out, v);
            }
            break;
        }
        case mysql::kTypeEnum: {
            uint64_t v = r.le(c.meta == 2 ? 2 : 1);
            if (!c.labels.empty() && v <= c.labels.size()) {
                appendJsonString(out,
                                 v == 0 ? std::string_view() : std::string_view(c.labels[v - 1]));
            } else {
                appendUnsigned(out, v);
            }
            break;
        }
        case mysql::kTypeSet: {
            const size_t len = c.meta >= 1 && c.meta <= 8 ? c.meta : 8;
            uint64_t v = r.le(len);
            if (!c.labels.empty()) {
                std::string joined;
                for (size_t i = 0; i < c.labels.size() && i < 64; ++i) {
                    if ((v >> i) & 1) {
                        if (!joined.empty()) {
                            joined += ',';
                        }
                        joined += c.labels[i];
                    }
                }
                appendJsonString(out, joined);
            } else {
                appendUnsigned(out, v);
            }
            break;
        }
        case mysql::kTypeString:
            if (!appendBytes(r, c.meta < 256 ? 1 : 2, c.binary, out)) {
                why = "CHAR value past the end of the event";
                return false;
            }
            break;
        case mysql::kTypeVarchar:
        case mysql::kTypeVarString:
            if (!appendBytes(r, c.meta < 256 ? 1 : 2, c.binary, out)) {
                why = "VARCHAR value past the end of the event";
                return false;
            }
            break;
        case mysql::kTypeBlob:
        case mysql::kTypeTinyBlob:
        case mysql::kTypeMediumBlob:
        case mysql::kTypeLongBlob:
        case mysql::kTypeGeometry:
            if (c.meta < 1 || c.meta > 4) {
                why = "BLOB length of " + std::to_string(c.meta) + " bytes";
                return false;
            }
            if (!appendBytes(r, c.meta, c.binary || c.realType != mysql::kTypeBlob, out)) {
                why = "BLOB value past the end of the event";
                return false;
            }
            break;
        case mysql::kTypeJson: {  // MySQL's binary JSON (MariaDB's JSON is a BLOB)
            if (c.meta < 1 || c.meta > 4) {
                why = "JSON length of " + std::to_string(c.meta) + " bytes";
                return false;
            }
            const uint64_t len = r.le(c.meta);
            if (!r.has(len)) {
                why = "JSON value past the end of the event";
                return false;
            }
            // Its text, as a string: the same as MariaDB's JSON column gives
            std::string text;
            if (!appendBinaryJson(r.here(), len, text, why)) {
                why = "binary JSON value: " + why;
                return false;
            }
            r.skip(len);
            appendJsonString(out, text);
            break;
        }
        case mysql::kTypeNull:
            out += "null";
            break;
        default:
            why = "column type " + std::to_string(c.realType) + " unknown";
            return false;
    }
    if (!r.ok()) {
        why = "value past the end of the event";
        return false;
    }
    return true;
}

}  // namespace mp::binlog

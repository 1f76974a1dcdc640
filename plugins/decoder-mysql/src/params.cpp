// SPDX-License-Identifier: Apache-2.0
#include "params.hpp"

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "protocol.hpp"

namespace mp::mysql {

namespace {

// The shortest text that reads back as the same float or double (3.4567, not 3.4567000000000001).
std::string shortest(double v, bool isFloat) {
    char buf[40];
    for (int digits = isFloat ? 6 : 15; digits <= (isFloat ? 9 : 17); ++digits) {
        std::snprintf(buf, sizeof buf, "%.*g", digits, v);
        double back = std::strtod(buf, nullptr);
        if (isFloat ? static_cast<float>(back) == static_cast<float>(v) : back == v) {
            break;
        }
    }
    return buf;
}

std::string quoted(const uint8_t* p, size_t len, size_t maxValue) {
    std::string s = "'";
    size_t keep = len < maxValue ? len : maxValue;
    for (size_t i = 0; i < keep; ++i) {
        char c = static_cast<char>(p[i]);
        if (c == '\'' || c == '\\') {
            s += '\\';
        }
        s += c;
    }
    s += len > keep ? "...'" : "'";
    return s;
}

// Ends a TIME or DATETIME literal written up to buf[k]: ".micros'" when `micros` points at the
// 4-byte microseconds, else "'".
std::string closeTemporal(char (&buf)[64], int k, const uint8_t* micros) {
    if (micros != nullptr) {
        uint32_t us = 0;
        std::memcpy(&us, micros, 4);
        std::snprintf(buf + k, sizeof buf - static_cast<size_t>(k), ".%06u'", us);
    } else {
        std::snprintf(buf + k, sizeof buf - static_cast<size_t>(k), "'");
    }
    return buf;
}

std::string temporal(PacketReader& in, uint8_t type) {
    uint64_t len = in.le(1);
    if (!in.has(len)) {
        return {};
    }
    const uint8_t* p = in.here();
    in.skip(static_cast<size_t>(len));
    char buf[64];
    if (type == kTypeTime) {
        if (len == 0) {
            return "'00:00:00'";
        }
        if (len != 8 && len != 12) {
            in.fail();
            return {};
        }
        uint32_t days = 0;
        std::memcpy(&days, p + 1, 4);
        unsigned hours = static_cast<unsigned>(days) * 24 + p[5];
        int k = std::snprintf(buf, sizeof buf, "'%s%02u:%02u:%02u", p[0] != 0 ? "-" : "", hours,
                              p[6], p[7]);
        return closeTemporal(buf, k, len == 12 ? p + 8 : nullptr);
    }
    if (len != 0 && len != 4 && len != 7 && len != 11) {
        in.fail();
        return {};
    }
    unsigned year = len >= 4 ? static_cast<unsigned>(p[0] | (p[1] << 8)) : 0;
    unsigned month = len >= 4 ? p[2] : 0;
    unsigned day = len >= 4 ? p[3] : 0;
    if (type == kTypeDate || len < 7) {
        if (type == kTypeDate) {
            std::snprintf(buf, sizeof buf, "'%04u-%02u-%02u'", year, month, day);
        } else {
            std::snprintf(buf, sizeof buf, "'%04u-%02u-%02u 00:00:00'", year, month, day);
        }
        return buf;
    }
    int k = std::snprintf(buf, sizeof buf, "'%04u-%02u-%02u %02u:%02u:%02u", year, month, day, p[4],
                          p[5], p[6]);
    return closeTemporal(buf, k, len == 11 ? p + 7 : nullptr);
}

std::string value(PacketReader& in, uint8_t type, bool isUnsigned, size_t maxValue) {
    char buf[48];
    switch (type) {
        case kTypeTiny: {
            uint64_t v = in.le(1);
            std::snprintf(buf, sizeof buf, isUnsigned ? "%" PRIu64 : "%" PRId64,
                          isUnsigned ? v : static_cast<uint64_t>(static_cast<int8_t>(v)));
            return buf;
        }
        case kTypeShort:
        case kTypeYear: {
            uint64_t v = in.le(2);
            if (isUnsigned || type == kTypeYear) {
                std::snprintf(buf, sizeof buf, "%" PRIu64, v);
            } else {
                std::snprintf(buf, sizeof buf, "%d", static_cast<int16_t>(v));
            }
            return buf;
        }
        case kTypeLong:
        case kTypeInt24: {
            uint64_t v = in.le(4);
            if (isUnsigned) {
                std::snprintf(buf, sizeof buf, "%" PRIu64, v);
            } else {
                std::snprintf(buf, sizeof buf, "%d", static_cast<int32_t>(v));
            }
            return buf;
        }
        case kTypeLongLong: {
            uint64_t v = in.le(8);
            if (isUnsigned) {
                std::snprintf(buf, sizeof buf, "%" PRIu64, v);
            } else {
                std::snprintf(buf, sizeof buf, "%" PRId64, static_cast<int64_t>(v));
            }
            return buf;
        }
        case kTypeFloat: {
            auto bits = static_cast<uint32_t>(in.le(4));
            float f = 0;
            std::memcpy(&f, &bits, 4);
            return shortest(static_cast<double>(f), true);
        }
        case kTypeDouble: {
            uint64_t bits = in.le(8);
            double v = 0;
            std::memcpy(&v, &bits, 8);
            return shortest(v, false);
        }
        case kTypeNull:
            return "NULL";
        case kTypeDate:
        case kTypeDateTime:
        case kTypeTimestamp:
        case kTypeTime:
            return temporal(in, type);
        default: {  // decimal, strings, blobs, enum, set, json, bit, geometry: length-encoded
            uint64_t len = in.lenenc();
            if (!in.has(len)) {
                return {};
            }
            const uint8_t* p = in.here();
            in.skip(static_cast<size_t>(len));
            if (type == kTypeDecimal || type == kTypeNewDecimal) {  // digits, unquoted
                return std::string(reinterpret_cast<const char*>(p), len < 66 ? len : 66);
            }
            return quoted(p, len, maxValue);
        }
    }
}

}  // namespace

namespace {

// The block's head: the value count (with query attributes), the null bitmap, the
// new-params-bound flag and the types (and names) it binds. `in` is left at the values.
bool readHead(PacketReader& in, uint16_t count, std::vector<uint8_t>& types,
              const QueryAttributes* qa, const uint8_t*& bitmap) {
    // With query attributes (MySQL 8.0.23+): the number of values comes first (the statement's
    // parameters, then the attributes), and each bound type is followed by a name.
    size_t total = count;
    if (qa != nullptr) {
        total = count > 0 || qa->countPresent ? static_cast<size_t>(in.lenenc()) : 0;
        if (!in.ok() || total < count || total > in.size()) {
            return false;
        }
    }
    bitmap = nullptr;
    if (total == 0) {
        return true;
    }
    size_t bitmapLen = (total + 7) / 8;
    if (!in.has(bitmapLen + 1)) {
        return false;
    }
    bitmap = in.here();
    in.skip(bitmapLen);
    if (in.le(1) == kNewParamsBound) {  // new parameters bound: their types (and names) follow
        types.clear();
        for (size_t i = 0; i < total; ++i) {
            if (!in.has(2)) {
                return false;
            }
            if (i < count) {  // the attributes' types are not kept: their values come last
                types.push_back(in.here()[0]);
                types.push_back(in.here()[1]);
            }
            in.skip(2);
            if (qa != nullptr) {
                uint64_t name = in.lenenc();
                if (!in.has(static_cast<size_t>(std::min<uint64_t>(name, in.size())))) {
                    return false;
                }
                in.skip(static_cast<size_t>(name));
            }
        }
    }
    return true;
}

}  // namespace

bool bindExecuteTypes(const uint8_t* d, size_t n, uint16_t count, std::vector<uint8_t>& types,
                      const QueryAttributes* qa) {
    PacketReader in(d, n);
    const uint8_t* bitmap = nullptr;
    return readHead(in, count, types, qa, bitmap);
}

bool decodeExecuteParams(const uint8_t* d, size_t n, uint16_t count, std::vector<uint8_t>& types,
                         const std::vector<bool>& longData, std::vector<std::string>& out,
                         size_t maxValue, const QueryAttributes* qa) {
    out.clear();
    PacketReader in(d, n);
    const uint8_t* bitmap = nullptr;
    if (!readHead(in, count, types, qa, bitmap)) {
        return false;
    }
    if (count == 0 || bitmap == nullptr) {
        return true;  // nothing, or attributes only
    }
    if (types.size() != 2 * static_cast<size_t>(count)) {
        return false;  // types were bound by an execute we did not see
    }
    out.reserve(count);
    for (size_t i = 0; i < count; ++i) {
        if ((bitmap[i / 8] >> (i % 8)) & 1) {
            out.emplace_back("NULL");
            continue;
        }
        if (i < longData.size() && longData[i]) {
            out.emplace_back("'<long data>'");
            continue;
        }
        std::string v =
            value(in, types[2 * i], (types[2 * i + 1] & (kUnsignedFlag >> 8)) != 0, maxValue);
        if (!in.ok() || v.empty()) {
            out.clear();
            return false;
        }
        out.push_back(std::move(v));
    }
    return true;
}

void ExecuteParams::keep(const uint8_t* d, size_t n, uint16_t paramCount,
                         const std::vector<uint8_t>& boundTypes, const std::vector<bool>& sentLong,
                         const QueryAttributes* qa) {
    present = true;
    count = paramCount;
    attributes = qa != nullptr;
    countPresent = qa != nullptr && qa->countPresent;
    raw.assign(reinterpret_cast<const char*>(d), n);
    types.assign(boundTypes.begin(), boundTypes.end());
    if (sentLong.empty()) {
        longData.clear();  // the usual case: no bit-vector copy
    } else {
        longData.assign(sentLong.begin(), sentLong.end());
    }
}

bool ExecuteParams::decode(std::vector<std::string>& out, size_t maxValue) const {
    out.clear();
    if (!present) {
        return false;
    }
    std::vector<uint8_t> bound = types;  // the block may bind them again: same values
    QueryAttributes qa{countPresent};
    return decodeExecuteParams(reinterpret_cast<const uint8_t*>(raw.data()), raw.size(), count,
                               bound, longData, out, maxValue, attributes ? &qa : nullptr);
}

std::string substituteParams(std::string_view sql, const std::vector<std::string>& values,
                             size_t maxOut) {
    std::string out;
    out.reserve(sql.size() + 16);
    size_t next = 0;
    char quote = 0;
    for (size_t i = 0; i < sql.size() && out.size() < maxOut; ++i) {
        char c = sql[i];
        if (quote != 0) {
            out += c;
            if (c == '\\' && quote != '`' && i + 1 < sql.size()) {
                out += sql[++i];
            } else if (c == quote) {
                quote = 0;
            }
            continue;
        }
        if (c == '\'' || c == '"' || c == '`') {
            quote = c;
            out += c;
            continue;
        }
        if (c == '?' && next < values.size()) {
            out += values[next++];
            continue;
        }
        out += c;
    }
    if (out.size() > maxOut) {
        out.resize(maxOut);
    }
    return out;
}

}  // namespace mp::mysql

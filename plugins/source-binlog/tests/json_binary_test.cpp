// SPDX-License-Identifier: Apache-2.0
// MySQL's binary JSON (json_binary.cpp): Vitess's vectors decode to MySQL's text of the same
// value; documents built here from the format's description (large forms, inlined 32-bit
// integers, escapes, doubles, negative TIMEs) read back; every cut of every vector fails
// cleanly or decodes; nesting past 100 levels and members that share bytes are refused; a JSON
// column in a row image comes out as a JSON string holding the text.
#include "json_binary.hpp"

#include <doctest/doctest.h>

#include <cstring>
#include <fstream>
#include <mp/mysql_wire.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "values.hpp"

namespace {

using Bytes = std::vector<uint8_t>;

Bytes fromHex(const std::string& hex) {
    Bytes out;
    for (size_t i = 0; i + 1 < hex.size(); i += 2) {
        out.push_back(static_cast<uint8_t>(std::stoi(hex.substr(i, 2), nullptr, 16)));
    }
    return out;
}

struct Decoded {
    bool ok = false;
    std::string text;
    std::string why;
};

Decoded decode(const Bytes& b) {
    Decoded d;
    d.ok = mp::binlog::appendBinaryJson(b.data(), b.size(), d.text, d.why);
    return d;
}

void putLe(Bytes& out, uint64_t v, size_t n) {
    for (size_t i = 0; i < n; ++i) {
        out.push_back(static_cast<uint8_t>(v >> (8 * i)));
    }
}

// A value as the format stores it: its type, and its bytes after the type byte.
struct Value {
    uint8_t type;
    Bytes body;
};

Value literal(uint8_t v) { return {0x04, {v}}; }
Value int16(int16_t v) {
    Bytes b;
    putLe(b, static_cast<uint16_t>(v), 2);
    return {0x05, b};
}
Value int32(int32_t v) {
    Bytes b;
    putLe(b, static_cast<uint32_t>(v), 4);
    return {0x07, b};
}
Value uint32(uint32_t v) {
    Bytes b;
    putLe(b, v, 4);
    return {0x08, b};
}
Value dbl(double d) {
    uint64_t bits = 0;
    std::memcpy(&bits, &d, sizeof d);
    Bytes b;
    putLe(b, bits, 8);
    return {0x0b, b};
}
Value str(const std::string& s) {
    Bytes b;
    size_t n = s.size();
    do {
        b.push_back(static_cast<uint8_t>((n & 0x7f) | (n > 0x7f ? 0x80 : 0)));
        n >>= 7;
    } while (n != 0);
    b.insert(b.end(), s.begin(), s.end());
    return {0x0c, b};
}
Value opaque(uint8_t field, const Bytes& data) {
    Bytes b{field, static_cast<uint8_t>(data.size())};
    b.insert(b.end(), data.begin(), data.end());
    return {0x0f, b};
}

// An object (keys given) or an array (no keys), small or large, written the way MySQL lays it
// out: count, size, key entries, value entries, keys, then the values that are not inlined.
Value container(const std::vector<std::string>* keys, const std::vector<Value>& items, bool large) {
    const size_t w = large ? 4 : 2;
    const bool object = keys != nullptr;
    auto inlined = [&](uint8_t t) {
        return t == 0x04 || t == 0x05 || t == 0x06 || (large && (t == 0x07 || t == 0x08));
    };
    size_t at = 2 * w + items.size() * ((object ? w + 2 : 0) + 1 + w);
    Bytes keyEntries, valueEntries, tail;
    if (object) {
        for (const auto& k : *keys) {
            putLe(keyEntries, at + tail.size(), w);
            putLe(keyEntries, k.size(), 2);
            tail.insert(tail.end(), k.begin(), k.end());
        }
    }
    for (const auto& v : items) {
        valueEntries.push_back(v.type);
        if (inlined(v.type)) {
            Bytes field = v.body;
            field.resize(w, 0);
            valueEntries.insert(valueEntries.end(), field.begin(), field.end());
        } else {
            putLe(valueEntries, at + tail.size(), w);
            tail.insert(tail.end(), v.body.begin(), v.body.end());
        }
    }
    Bytes body;
    putLe(body, items.size(), w);
    putLe(body, at + tail.size(), w);
    body.insert(body.end(), keyEntries.begin(), keyEntries.end());
    body.insert(body.end(), valueEntries.begin(), valueEntries.end());
    body.insert(body.end(), tail.begin(), tail.end());
    return {static_cast<uint8_t>((object ? 0x00 : 0x02) | (large ? 1 : 0)), body};
}
Value array(const std::vector<Value>& items, bool large = false) {
    return container(nullptr, items, large);
}
Value object(const std::vector<std::string>& keys, const std::vector<Value>& items,
             bool large = false) {
    return container(&keys, items, large);
}

Bytes document(const Value& v) {
    Bytes b{v.type};
    b.insert(b.end(), v.body.begin(), v.body.end());
    return b;
}

// MySQL's packed TIME: hour << 12 | minute << 6 | second, shifted 24 bits over the micros.
Bytes packedTime(bool negative, int64_t h, int64_t m, int64_t s, int64_t us) {
    int64_t v = (((h << 12) | (m << 6) | s) << 24) + us;
    Bytes b;
    putLe(b, static_cast<uint64_t>(negative ? -v : v), 8);
    return b;
}

}  // namespace

// The vectors of tests/data/third-party/vitess/binlog_json.tsv: name, bytes, expected text.
struct Vector {
    std::string name;
    Bytes bytes;
    std::string expected;  // "!error": refused
};

std::vector<Vector> vectors() {
    std::ifstream in(MP_VITESS_JSON_VECTORS);
    REQUIRE(in.good());
    std::vector<Vector> out;
    std::string line;
    while (std::getline(in, line)) {
        if (line.empty() || line[0] == '#') {
            continue;
        }
        std::istringstream fields(line);
        std::string hex;
        Vector v;
        std::getline(fields, v.name, '\t');
        std::getline(fields, hex, '\t');
        std::getline(fields, v.expected);
        v.bytes = fromHex(hex);
        out.push_back(std::move(v));
    }
    return out;
}

TEST_CASE("Vitess's binary JSON vectors decode to MySQL's text of their values") {
    const auto all = vectors();
    CHECK(all.size() == 45);
    for (const Vector& v : all) {
        CAPTURE(v.name);
        const Decoded d = decode(v.bytes);
        if (v.expected == "!error") {
            CHECK_FALSE(d.ok);
            CHECK_FALSE(d.why.empty());
        } else {
            CHECK(d.ok);
            CHECK(d.why.empty());
            CHECK(d.text == v.expected);
        }
    }
}

TEST_CASE("every cut of every vector is refused with a reason or decodes, never read past") {
    size_t refused = 0;
    for (const Vector& v : vectors()) {
        for (size_t len = 1; len < v.bytes.size(); ++len) {
            // a copy of exactly `len` bytes: ASan sees any read past them
            const Bytes cut(v.bytes.begin(), v.bytes.begin() + static_cast<std::ptrdiff_t>(len));
            const Decoded d = decode(cut);
            CHECK((d.ok || !d.why.empty()));
            refused += d.ok ? 0 : 1;
        }
    }
    CHECK(refused > 300);
}

TEST_CASE("documents in both forms, inlined integers, escapes, doubles, negative TIME") {
    // small and large forms of the same object; 32-bit integers inline only in the large
    const std::vector<std::string> keys{"n", "big", "neg", "list"};
    const std::vector<Value> items{literal(0), uint32(4000000000U), int32(-2000000000),
                                   array({int16(-32768), literal(1), literal(2), str("x")})};
    CHECK(
        decode(document(object(keys, items))).text ==
        R"({"n": null, "big": 4000000000, "neg": -2000000000, "list": [-32768, true, false, "x"]})");
    CHECK(
        decode(document(object(keys, items, true))).text ==
        R"({"n": null, "big": 4000000000, "neg": -2000000000, "list": [-32768, true, false, "x"]})");
    CHECK(decode(document(array({int32(1), int32(-2)}, true))).text == "[1, -2]");

    // strings and keys as JSON strings: quotes, backslashes, controls escaped, UTF-8 kept
    CHECK(decode(document(object({"k\"\\"}, {str("a\"b\n\t\x01 é")}))).text ==
          "{\"k\\\"\\\\\": \"a\\\"b\\n\\t\\u0001 é\"}");
    // a string longer than 127 bytes has a two-byte length
    const std::string longText(300, 'z');
    CHECK(decode(document(str(longText))).text == "\"" + longText + "\"");

    // doubles: the shortest text that reads back the same, marked as a double
    CHECK(decode(document(array({dbl(1.0), dbl(-0.5), dbl(1e100), dbl(0.1)}))).text ==
          "[1.0, -0.5, 1e+100, 0.1]");

    // TIME beyond 24 hours and negative; DATETIME with micros; TIMESTAMP prints as DATETIME
    CHECK(decode(document(opaque(11, packedTime(true, 838, 59, 59, 0)))).text ==
          "\"-838:59:59.000000\"");
    CHECK(decode(document(opaque(11, packedTime(false, 1, 2, 3, 4)))).text ==
          "\"01:02:03.000004\"");
    const Bytes dt{0x40, 0xe2, 0x01, 25, 118, 31, 149, 25};  // 2015-01-15 23:24:25.123456
    CHECK(decode(document(opaque(12, dt))).text == "\"2015-01-15 23:24:25.123456\"");
    CHECK(decode(document(opaque(7, dt))).text == "\"2015-01-15 23:24:25.123456\"");
}

TEST_CASE("nesting past 100 levels and members that share bytes are refused") {
    Value v = literal(1);
    for (int i = 0; i < 99; ++i) {
        v = array({v});
    }
    CHECK(decode(document(v)).ok);  // 99 arrays and a literal: 100 levels
    const Value deeper = array({v});
    const Decoded d = decode(document(deeper));
    CHECK_FALSE(d.ok);
    CHECK(d.why.find("deeper than 100") != std::string::npos);

    // Ten members that all point at the same nested array, eight levels down: 10^8 leaves of
    // text from a few hundred bytes, unless the growth bound stops it.
    Bytes body;  // innermost: an empty small array
    putLe(body, 0, 2);
    putLe(body, 4, 2);
    for (int level = 0; level < 8; ++level) {
        const size_t n = 10;
        const size_t header = 4 + n * 3;
        Bytes outer;
        putLe(outer, n, 2);
        putLe(outer, header + body.size(), 2);
        for (size_t i = 0; i < n; ++i) {
            outer.push_back(0x02);
            putLe(outer, header, 2);
        }
        outer.insert(outer.end(), body.begin(), body.end());
        body = outer;
    }
    Bytes doc{0x02};
    doc.insert(doc.end(), body.begin(), body.end());
    const Decoded bomb = decode(doc);
    CHECK_FALSE(bomb.ok);
    CHECK(bomb.why.find("times the value's bytes") != std::string::npos);
    CHECK(bomb.text.size() < 16 * doc.size() + 4096);

    // members and keys past their container, an unknown type, a bad literal
    CHECK_FALSE(decode({0x02, 1, 0, 7, 0, 0x0c, 9, 0}).ok);             // offset past the end
    CHECK_FALSE(decode({0x00, 1, 0, 11, 0, 11, 0, 5, 0, 4, 1, 0}).ok);  // key past the end
    CHECK_FALSE(decode({0x0d, 0}).ok);
    CHECK_FALSE(decode({0x04, 3}).ok);
    CHECK_FALSE(decode({0x02, 0xff, 0xff, 4, 0}).ok);  // 65535 members in 4 bytes
}

TEST_CASE("a JSON column of a row image is a JSON string holding the value's text") {
    mp::binlog::Column c;
    c.type = c.realType = mp::mysql::kTypeJson;
    c.meta = 4;
    const Bytes doc = document(object({"a", "b"}, {int16(1), array({str("x"), literal(0)})}));
    Bytes row;
    putLe(row, doc.size(), 4);
    row.insert(row.end(), doc.begin(), doc.end());
    row.push_back(0x99);  // the next column's first byte: left unread
    mp::mysql::PacketReader r(row.data(), row.size());
    std::string out, why;
    REQUIRE(mp::binlog::appendValue(r, c, out, why));
    CHECK(out == R"("{\"a\": 1, \"b\": [\"x\", null]}")");
    CHECK(r.left() == 1);

    Bytes bad = row;
    bad[4 + 1] = 0xff;  // the object's count: more members than its bytes hold
    mp::mysql::PacketReader rb(bad.data(), bad.size());
    out.clear();
    CHECK_FALSE(mp::binlog::appendValue(rb, c, out, why));
    CHECK(why.find("binary JSON value: object of 255 members") == 0);
}

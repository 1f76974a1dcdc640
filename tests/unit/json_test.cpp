// SPDX-License-Identifier: Apache-2.0
// mp::jsonString, the one JSON string encoder of every report: whatever the bytes, the result is
// valid JSON; well-formed UTF-8 survives as it is, other bytes read as Latin-1; and a text that
// went through a parser once encodes and parses back to itself (a cluster master re-encodes its
// slaves' reports). Checked against Poco's parser, which the master and the sink use.
#include <Poco/JSON/Parser.h>
#include <doctest/doctest.h>

#include <mp/report.hpp>
#include <mp/report_merge.hpp>
#include <mp/sdk.hpp>
#include <string>
#include <vector>

namespace {

std::string parsed(const std::string& literal) {
    Poco::JSON::Parser p;
    return p.parse("[" + literal + "]")
        .extract<Poco::JSON::Array::Ptr>()
        ->getElement<std::string>(0);
}

bool wellFormedUtf8(const std::string& s) {
    for (size_t i = 0; i < s.size();) {
        if (static_cast<unsigned char>(s[i]) < 0x80) {
            ++i;
        } else if (size_t n = mp::utf8SequenceLength(s, i); n != 0) {
            i += n;
        } else {
            return false;
        }
    }
    return true;
}

// appendJsonString's rule, a byte at a time: what its sixteen- and eight-byte paths must equal.
std::string slowJsonString(std::string_view s) {
    static const char* hex = "0123456789abcdef";
    std::string out = "\"";
    for (size_t i = 0; i < s.size(); ++i) {
        const auto c = static_cast<unsigned char>(s[i]);
        if (c >= 0x80) {
            if (size_t n = mp::utf8SequenceLength(s, i); n != 0) {
                out.append(s.substr(i, n));
                i += n - 1;
                continue;
            }
        }
        if (c == '"' || c == '\\') {
            out += '\\';
            out += static_cast<char>(c);
        } else if (c == '\n') {
            out += "\\n";
        } else if (c == '\r') {
            out += "\\r";
        } else if (c == '\t') {
            out += "\\t";
        } else if (c < 0x20 || c >= 0x80) {
            out += "\\u00";
            out += hex[c >> 4];
            out += hex[c & 15];
        } else {
            out += static_cast<char>(c);
        }
    }
    return out + "\"";
}

}  // namespace

TEST_SUITE("json") {
    TEST_CASE("the fast paths equal the byte-at-a-time rule on every kind of run") {
        // Pieces that meet the 16- and 8-byte blocks at every offset: plain runs, JSON keys
        // (quote-dense), backslashes, controls, UTF-8 whole, cut or wrong, lone high bytes.
        const std::vector<std::string> pieces = {"a",
                                                 "plain text run",
                                                 "0123456789abcdef0123",
                                                 "\"",
                                                 "\\",
                                                 "\":\"",
                                                 "{\"k\":1,",
                                                 "\n",
                                                 "\t",
                                                 std::string(1, '\0'),
                                                 "\x1f",
                                                 "\x7f",
                                                 "\xc3\xa9",
                                                 "\xe4\xb8\xad",
                                                 "\xf0\x9f\x98\x80",
                                                 "\xe4\xb8",
                                                 "\xc3",
                                                 "\xff",
                                                 "\xed\xa0\x80",
                                                 "\xf4\x90\x80\x80"};
        uint64_t x = 88172645463325252ULL;  // xorshift: the same strings every run
        auto next = [&x] {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            return x;
        };
        size_t checked = 0;
        size_t differ = 0;
        for (int n = 0; n < 60000; ++n) {
            std::string s;
            const size_t parts = next() % 40;
            for (size_t k = 0; k < parts; ++k) {
                s += pieces[next() % pieces.size()];
            }
            std::string out = "x";  // appended to what is there
            mp::appendJsonString(out, s);
            if (out != "x" + slowJsonString(s)) {
                if (differ++ == 0) {
                    CAPTURE(s);
                    CHECK(out == "x" + slowJsonString(s));
                }
            }
            ++checked;
        }
        CHECK(checked == 60000);
        CHECK(differ == 0);
    }

    TEST_CASE("ASCII and control characters") {
        CHECK(mp::jsonString("select 1") == "\"select 1\"");
        CHECK(mp::jsonString("a\"b\\c\n\r\t") == "\"a\\\"b\\\\c\\n\\r\\t\"");
        CHECK(mp::jsonString(std::string("\0\x01\x1f\x7f", 4)) == "\"\\u0000\\u0001\\u001f\x7f\"");
    }

    TEST_CASE("well-formed UTF-8 is kept, one to four bytes") {
        for (const char* s : {"caf\xc3\xa9", "\xe4\xb8\xad\xe6\x96\x87", "\xf0\x9f\x98\x80",
                              "\xef\xbf\xbf", "\xf4\x8f\xbf\xbf", "\xed\x9f\xbf"}) {
            CAPTURE(s);
            CHECK(mp::jsonString(s) == "\"" + std::string(s) + "\"");
            CHECK(parsed(mp::jsonString(s)) == s);
        }
    }

    TEST_CASE("bytes outside well-formed UTF-8 are escaped one by one as Latin-1") {
        struct Case {
            std::string in, out;
        };
        const std::vector<Case> cases = {
            {"caf\xe9", "\"caf\\u00e9\""},                             // Latin-1 text
            {"\xc0\x80", "\"\\u00c0\\u0080\""},                        // overlong NUL
            {"\xe0\x80\xaf", "\"\\u00e0\\u0080\\u00af\""},             // overlong '/'
            {"\xed\xa0\x80", "\"\\u00ed\\u00a0\\u0080\""},             // a surrogate
            {"\xf4\x90\x80\x80", "\"\\u00f4\\u0090\\u0080\\u0080\""},  // above U+10FFFF
            {"\xf5\x80", "\"\\u00f5\\u0080\""},                        // never a lead byte
            {"\xe4\xb8", "\"\\u00e4\\u00b8\""},                        // cut at the end
            {"\xe4\xb8x", "\"\\u00e4\\u00b8x\""},                      // cut before ASCII
            {"\x80\xc3\xa9", "\"\\u0080\xc3\xa9\""},                   // stray continuation
        };
        for (const Case& c : cases) {
            CAPTURE(c.in);
            CHECK(mp::jsonString(c.in) == c.out);
        }
        CHECK(parsed(mp::jsonString("caf\xe9")) == "caf\xc3\xa9");
    }

    TEST_CASE("after one parse, encoding and parsing change nothing") {
        std::vector<std::string> inputs;
        for (int b = 0; b < 256; ++b) {  // every byte, alone and around a 3-byte character
            inputs.push_back(std::string(1, static_cast<char>(b)));
            inputs.push_back("\xe4" + std::string(1, static_cast<char>(b)) + "\xad");
            inputs.push_back("\xe4\xb8" + std::string(1, static_cast<char>(b)));
        }
        for (const std::string& s : inputs) {
            CAPTURE(s);
            const std::string once = parsed(mp::jsonString(s));
            CHECK(wellFormedUtf8(once));
            if (wellFormedUtf8(s)) {
                CHECK(once == s);
            }
            CHECK(parsed(mp::jsonString(once)) == once);
        }
    }

    TEST_CASE("a resent notice re-encodes to itself; addresses are printable ASCII") {
        mp::report::ResentNotice n, again;
        REQUIRE(mp::report::parseResentNotice(
            R"({"resent":12,"unacked_by":["127.0.0.2:9000","db-1.example:9000"]})", n));
        CHECK(n.seq == 12);
        CHECK(n.unackedBy == std::vector<std::string>{"127.0.0.2:9000", "db-1.example:9000"});
        REQUIRE(mp::report::parseResentNotice(mp::report::encodeResentNotice(n), again));
        CHECK(again.unackedBy == n.unackedBy);
        // What the fuzzer found: a non-ASCII address came back changed from a re-encode. Such an
        // address is now refused, as are spaces and control characters.
        for (const char* bad : {R"({"resent":12,"unacked_by":["12.0.0.1.)"
                                "\xd5\xa6"
                                R"(:9000"]})",
                                R"({"resent":12,"unacked_by":["a b:1"]})",
                                R"({"resent":12,"unacked_by":["a\u0001:1"]})",
                                R"({"resent":12,"unacked_by":[""]})"}) {
            CAPTURE(bad);
            CHECK_FALSE(mp::report::parseResentNotice(bad, n));
        }
    }

    TEST_CASE("error messages are cut at 256 bytes, never inside a character") {
        std::string ascii(300, 'x');
        CHECK(mp::report::boundedMessage(ascii).size() == 256);
        // 255 ASCII bytes, then a 2-byte character across the limit: cut before it.
        std::string across = std::string(255, 'a') + "\xc3\xa9" + "tail";
        CHECK(mp::report::boundedMessage(across) == std::string(255, 'a'));
        // A 3-byte character at 254..256: cut before it; the result is well-formed.
        std::string euro = std::string(254, 'a') + "\xe2\x82\xac";
        CHECK(mp::report::boundedMessage(euro) == std::string(254, 'a'));
        CHECK(wellFormedUtf8(mp::report::boundedMessage(std::string(200, 'b') + euro)));
        CHECK(mp::report::boundedMessage("short") == "short");
    }

    TEST_CASE("error details and unresolved executes by schema survive JSON and merges") {
        mp::report::Section a;
        mp::report::TemplateStats* t = a.findOrAdd("127.0.0.1:3306", "db", 7);
        REQUIRE(t != nullptr);
        t->fingerprint = "select ?";
        t->count = 2;
        t->errors = 2;
        t->errorCodes[1146] = 2;
        t->errorInfo[1146] = {"42S02", "Table 'db.x' doesn't exist"};
        t->latency.add(10);
        t->latency.add(20);
        a.addUnresolved("127.0.0.1:3306", "", 3);
        a.addUnresolved("127.0.0.1:3306", "db", 1);
        Poco::JSON::Parser p;
        auto obj = p.parse("{" + a.json() + "}").extract<Poco::JSON::Object::Ptr>();
        mp::report::Section back = mp::report::Section::fromJson(obj);
        CHECK(back.unresolved == 4);
        CHECK(back.unresolvedBy.at({"127.0.0.1:3306", ""}) == 3);
        mp::report::TemplateStats* bt = back.find("127.0.0.1:3306", "db", 7);
        REQUIRE(bt != nullptr);
        CHECK(bt->errorInfo.at(1146).sqlState == "42S02");
        CHECK(bt->errorInfo.at(1146).message == "Table 'db.x' doesn't exist");
        // A merge adds the counts; the message merged last is kept.
        back.find("127.0.0.1:3306", "db", 7)->errorInfo[1146].message = "newer";
        a.merge(back);
        CHECK(a.unresolved == 8);
        CHECK(a.unresolvedBy.at({"127.0.0.1:3306", "db"}) == 2);
        CHECK(a.find("127.0.0.1:3306", "db", 7)->errorInfo.at(1146).message == "newer");
        // More by schema than in total, or sums that would wrap: refused.
        for (
            const char* bad :
            {R"("unresolved_executes":1,"unresolved_by_schema":[{"server":"s","schema":"","executes":2}])",
             R"("unresolved_executes":5,"unresolved_by_schema":[{"server":"s","schema":"a","executes":4},{"server":"s","schema":"b","executes":18446744073709551615}])"}) {
            CAPTURE(bad);
            std::string text = R"({"totals":{"commands":{},"errors":0,"errors_by_code":{},)"
                               R"("rows_returned":0,"lost_responses":0,"templates_evicted":0,)" +
                               std::string(bad) + R"(},"templates":[]})";
            auto o = p.parse(text).extract<Poco::JSON::Object::Ptr>();
            CHECK_THROWS_AS(mp::report::Section::fromJson(o), std::runtime_error);
        }
    }
}

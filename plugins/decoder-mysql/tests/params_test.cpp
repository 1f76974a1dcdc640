// SPDX-License-Identifier: Apache-2.0
// Execute parameters against the values pcap2mysql-log's own transcripts expect (MIT, copied in
// tests/data/third-party): strings, NULLs, integers at their limits (signed and unsigned),
// floats, doubles, and statements executed several times with and without new types.
#include "params.hpp"

#include <Poco/JSON/Array.h>
#include <Poco/JSON/Object.h>
#include <Poco/JSON/Parser.h>
#include <doctest/doctest.h>

#include <fstream>
#include <sstream>

#include "decode_util.hpp"

using mptest::mysql::decode;
using mptest::mysql::Totals;
using mptest::mysql::Transaction;

namespace {

// The parameters of every "Execute" message of an .expected transcript, in order (none when
// its Params is null).
void collect(const Poco::Dynamic::Var& v, std::vector<Poco::JSON::Array::Ptr>& out) {
    if (v.type() == typeid(Poco::JSON::Object::Ptr)) {
        auto o = v.extract<Poco::JSON::Object::Ptr>();
        if (o->has("Type") && o->get("Type").isString() &&
            o->getValue<std::string>("Type") == "Execute") {
            Poco::JSON::Array::Ptr a = o->getArray("Params");
            out.push_back(a.isNull() ? Poco::JSON::Array::Ptr(new Poco::JSON::Array) : a);
            return;
        }
        for (const auto& name : o->getNames()) {
            collect(o->get(name), out);
        }
    } else if (v.type() == typeid(Poco::JSON::Array::Ptr)) {
        auto a = v.extract<Poco::JSON::Array::Ptr>();
        for (size_t i = 0; i < a->size(); ++i) {
            collect(a->get(static_cast<unsigned>(i)), out);
        }
    }
}

// The literal this decoder writes for an expected value.
std::string literal(const Poco::Dynamic::Var& v) {
    if (v.isEmpty()) {
        return "NULL";
    }
    if (v.isString()) {
        std::string s = v.convert<std::string>();
        std::string q = "'";
        for (size_t i = 0; i < s.size() && i < 256; ++i) {
            if (s[i] == '\'' || s[i] == '\\') {
                q += '\\';
            }
            q += s[i];
        }
        return q + (s.size() > 256 ? "...'" : "'");
    }
    if (v.isInteger()) {
        return v.isSigned() ? std::to_string(v.convert<int64_t>())
                            : std::to_string(v.convert<uint64_t>());
    }
    std::ostringstream out;
    out << v.convert<std::string>();  // Poco prints doubles in their shortest form
    return out.str();
}

}  // namespace

TEST_SUITE("decoder-mysql") {
    TEST_CASE("execute parameters equal pcap2mysql-log's transcripts") {
        std::string dir = std::string(MP_TEST_SOURCE_DIR) +
                          "/tests/data/third-party/pcap2mysql-log/test/captures/";
        size_t compared = 0;
        for (std::string name : {"execute", "numeric-types", "date-types", "big-data"}) {
            CAPTURE(name);
            std::ifstream in(dir + name + ".expected");
            REQUIRE(in);
            std::stringstream text;
            text << in.rdbuf();
            Poco::JSON::Parser parser;
            std::vector<Poco::JSON::Array::Ptr> want;
            collect(parser.parse(text.str()), want);
            REQUIRE(!want.empty());
            Totals got = decode(dir + name + ".pcap", 1);
            std::vector<const Transaction*> executes;
            for (const auto& tx : got.all) {
                if (tx.command == mp::mysql::kStmtExecute) {
                    executes.push_back(&tx);
                }
            }
            std::sort(executes.begin(), executes.end(),
                      [](auto* a, auto* b) { return a->requestTs < b->requestTs; });
            REQUIRE(executes.size() == want.size());
            for (size_t i = 0; i < want.size(); ++i) {
                const std::vector<std::string> values = executes[i]->paramValues();
                REQUIRE(values.size() == want[i]->size());
                for (size_t k = 0; k < want[i]->size(); ++k) {
                    CAPTURE(k);
                    CHECK(values[k] == literal(want[i]->get(static_cast<unsigned>(k))));
                    ++compared;
                }
            }
        }
        MESSAGE("execute parameters compared with the transcripts: " << compared);
        CHECK(compared >= 40);
    }

    TEST_CASE("samples substitute parameters; garbage parameter blocks are refused") {
        CHECK(mp::mysql::substituteParams("SELECT c FROM t WHERE id=? AND s='?' AND x=?",
                                          {"42", "'a'"}, 100) ==
              "SELECT c FROM t WHERE id=42 AND s='?' AND x='a'");
        std::vector<uint8_t> types;
        std::vector<std::string> out;
        const uint8_t truncated[] = {0x00, 0x01, 0x08, 0x00, 0x01};  // LONGLONG, value cut
        CHECK_FALSE(mp::mysql::decodeExecuteParams(truncated, sizeof truncated, 1, types, {}, out));
        CHECK(out.empty());
        const uint8_t unbound[] = {0x00, 0x00, 0x2a};  // types never bound
        types.clear();
        CHECK_FALSE(mp::mysql::decodeExecuteParams(unbound, sizeof unbound, 1, types, {}, out));
        const uint8_t ok[] = {0x00, 0x01, 0x03, 0x80, 0xff, 0xff, 0xff, 0xff};  // unsigned LONG
        CHECK(mp::mysql::decodeExecuteParams(ok, sizeof ok, 1, types, {}, out));
        CHECK(out == std::vector<std::string>{"4294967295"});
    }

    // COM_STMT_EXECUTE with CLIENT_QUERY_ATTRIBUTES (MySQL 8.0.23+, after the iteration count):
    // lenenc number of values, NULL bitmap over all of them, bind flag, (type, lenenc name) each,
    // then the values: the statement's parameters first, the attributes after.
    TEST_CASE("execute parameters with query attributes: names skipped, attributes ignored") {
        std::vector<uint8_t> types;
        std::vector<std::string> out;
        mp::mysql::QueryAttributes qa{true};
        const uint8_t withAttr[] = {0x03,              // 3 values: 2 parameters, 1 attribute
                                    0x02,              // NULL bitmap: the second is NULL
                                    0x01,              // new types bound
                                    0x08, 0x00, 0x00,  // LONGLONG, name ""
                                    0x0f, 0x00, 0x00,  // VARCHAR, name "" (NULL)
                                    0xfe, 0x00, 0x02, 'i', 'd',           // STRING attribute "id"
                                    0x2a, 0,    0,    0,   0,   0, 0, 0,  // 42
                                    0x03, 'a',  'b',  'c'};               // the attribute's value
        CHECK(
            mp::mysql::decodeExecuteParams(withAttr, sizeof withAttr, 2, types, {}, out, 256, &qa));
        CHECK(out == std::vector<std::string>{"42", "NULL"});
        CHECK(types.size() == 4);  // the statement's two types, kept for the next execute
        // The next execute binds no new types: the kept ones apply.
        const uint8_t again[] = {0x02, 0x00, 0x00, 0x07, 0, 0, 0, 0, 0, 0, 0, 0x01, 'x'};
        CHECK(mp::mysql::decodeExecuteParams(again, sizeof again, 2, types, {}, out, 256, &qa));
        CHECK(out == std::vector<std::string>{"7", "'x'"});
        // No parameters and no PARAMETER_COUNT_AVAILABLE: nothing follows.
        mp::mysql::QueryAttributes none{false};
        CHECK(mp::mysql::decodeExecuteParams(nullptr, 0, 0, types, {}, out, 256, &none));
        CHECK(out.empty());
        // Attributes only, on a statement without parameters.
        const uint8_t attrsOnly[] = {0x01, 0x00, 0x01, 0xfe, 0x00, 0x01, 'k', 0x01, 'v'};
        CHECK(mp::mysql::decodeExecuteParams(attrsOnly, sizeof attrsOnly, 0, types, {}, out, 256,
                                             &qa));
        CHECK(out.empty());
        // Garbage: fewer values than parameters, a name running past the end.
        const uint8_t fewer[] = {0x01, 0x00, 0x01, 0x08, 0x00, 0x00};
        CHECK_FALSE(
            mp::mysql::decodeExecuteParams(fewer, sizeof fewer, 2, types, {}, out, 256, &qa));
        const uint8_t longName[] = {0x01, 0x00, 0x01, 0x08, 0x00, 0xfc, 0xff, 0xff};
        CHECK_FALSE(
            mp::mysql::decodeExecuteParams(longName, sizeof longName, 1, types, {}, out, 256, &qa));
    }

    // Executes keep their blocks undecoded (ExecuteParams) and only bind the types at once: the
    // values are formatted when a sample needs them. Both ways must give the same values.
    TEST_CASE("kept parameter blocks decode as decoded ones; binding carries to the next") {
        mp::mysql::QueryAttributes qa{true};
        const uint8_t bind[] = {0x02, 0x00, 0x01, 0x08, 0x00, 0x00, 0x0f, 0x00, 0x00, 0x2a,
                                0,    0,    0,    0,    0,    0,    0,    0x01, 'a'};
        const uint8_t next[] = {0x02, 0x02, 0x00, 0x07, 0, 0, 0, 0, 0, 0, 0};  // 7, NULL
        std::vector<uint8_t> statementTypes;
        std::vector<std::string> direct;
        std::vector<std::string> lazy;
        mp::mysql::ExecuteParams first;
        first.keep(bind, sizeof bind, 2, statementTypes, {}, &qa);
        REQUIRE(mp::mysql::bindExecuteTypes(bind, sizeof bind, 2, statementTypes, &qa));
        CHECK(statementTypes.size() == 4);
        mp::mysql::ExecuteParams second;
        second.keep(next, sizeof next, 2, statementTypes, {}, &qa);
        CHECK(mp::mysql::bindExecuteTypes(next, sizeof next, 2, statementTypes, &qa));
        CHECK(statementTypes.size() == 4);  // not bound again: kept
        std::vector<uint8_t> types;
        CHECK(mp::mysql::decodeExecuteParams(bind, sizeof bind, 2, types, {}, direct, 256, &qa));
        CHECK(first.decode(lazy));
        CHECK(lazy == direct);
        CHECK(lazy == std::vector<std::string>{"42", "'a'"});
        CHECK(mp::mysql::decodeExecuteParams(next, sizeof next, 2, types, {}, direct, 256, &qa));
        CHECK(second.decode(lazy));
        CHECK(lazy == direct);
        CHECK(lazy == std::vector<std::string>{"7", "NULL"});
        // Long data: the value is not in the packet.
        const uint8_t longData[] = {0x00, 0x01, 0xfc, 0x00};
        mp::mysql::ExecuteParams sent;
        sent.keep(longData, sizeof longData, 1, {}, {true}, nullptr);
        CHECK(sent.decode(lazy));
        CHECK(lazy == std::vector<std::string>{"'<long data>'"});
        // Unbound types: nothing to decode with, as with decodeExecuteParams.
        mp::mysql::ExecuteParams unbound;
        unbound.keep(next, sizeof next, 2, {}, {}, &qa);
        CHECK_FALSE(unbound.decode(lazy));
        CHECK(lazy.empty());
        mp::mysql::ExecuteParams none;
        CHECK_FALSE(none.decode(lazy));
    }
}

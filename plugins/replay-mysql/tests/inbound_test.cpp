// SPDX-License-Identifier: Apache-2.0
// The mysql.inbound record in both forms: every field back as written, damaged input refused.
#include <doctest/doctest.h>

#include <mp/mysql_inbound.hpp>
#include <string>

using namespace mp::mysql::inbound;

namespace {

Record sample() {
    Record r;
    r.type = Type::Command;
    r.client = "10.0.0.7:51234";
    r.server = "10.0.0.1:3306";
    r.connectionId = 42;
    r.n = 7;
    r.ts = 1733300000123456789ULL;
    r.user = "app";
    r.schema = "shop";
    r.command = 0x17;
    r.commandName = "COM_STMT_EXECUTE";
    r.bytes =
        std::string("\x17\x01\x00\x00\x00\x00\x01\x00\x00\x00\x01\x03\x00\x2a\x00\x00\x00", 17);
    r.bytes += std::string("\xff\xfe\x00 \"quoted\" \\", 13);
    r.statementId = 1;
    r.sql = "SELECT c FROM t WHERE id=?";
    r.templateId = 0xfedcba9876543210ULL;
    r.templateText = "SELECT c FROM t WHERE id=?";
    r.outcome = Outcome::Error;
    r.errorCode = 1146;
    r.sqlState = "42S02";
    r.errorMessage = "Table 'shop.t' doesn't exist";
    r.rows = 3;
    r.affectedRows = 2;
    r.responseTs = r.ts + 1500;
    return r;
}

void same(const Record& a, const Record& b) {
    CHECK(a.type == b.type);
    CHECK(a.client == b.client);
    CHECK(a.server == b.server);
    CHECK(a.connectionId == b.connectionId);
    CHECK(a.n == b.n);
    CHECK(a.ts == b.ts);
    CHECK(a.loginKnown == b.loginKnown);
    CHECK(a.user == b.user);
    CHECK(a.schema == b.schema);
    CHECK(a.command == b.command);
    CHECK(a.commandName == b.commandName);
    CHECK(a.bytes == b.bytes);
    CHECK(a.truncated == b.truncated);
    CHECK(a.statementId == b.statementId);
    CHECK(a.templateId == b.templateId);
    CHECK(a.templateText == b.templateText);
    CHECK(a.outcome == b.outcome);
    CHECK(a.errorCode == b.errorCode);
    CHECK(a.sqlState == b.sqlState);
    CHECK(a.errorMessage == b.errorMessage);
    CHECK(a.rows == b.rows);
    CHECK(a.affectedRows == b.affectedRows);
    CHECK(a.responseTs == b.responseTs);
    CHECK(a.serverVersion == b.serverVersion);
    CHECK(a.clientFlags == b.clientFlags);
    CHECK(a.collation == b.collation);
    CHECK(a.tls == b.tls);
    CHECK(a.compressed == b.compressed);
    CHECK(a.loginFailed == b.loginFailed);
    CHECK(a.reason == b.reason);
    CHECK(a.gapFromServer == b.gapFromServer);
    CHECK(a.gapBytes == b.gapBytes);
}

}  // namespace

TEST_CASE("inbound: a command survives both forms, bytes exact") {
    Record r = sample();
    std::string json;
    appendJson(r, json);
    Record back;
    std::string error;
    REQUIRE_MESSAGE(parse(json, kJsonContentType, back, error), error);
    same(r, back);
    CHECK(back.commandName == "COM_STMT_EXECUTE");
    std::string bin;
    appendBinary(r, bin);
    CHECK(bin.size() < json.size());
    Record back2;
    REQUIRE_MESSAGE(parse(bin, kBinaryContentType, back2, error), error);
    same(r, back2);
    Record back3;  // found by its magic without a content type
    REQUIRE(parse(bin, "", back3, error));
    same(r, back3);
}

TEST_CASE("inbound: events survive both forms") {
    Record c;
    c.type = Type::Connect;
    c.client = "[::1]:4000";
    c.server = "[::1]:3306";
    c.n = 1;
    c.ts = 5;
    c.user = "u";
    c.schema = "";
    c.serverVersion = "10.11.6-MariaDB";
    c.clientFlags = 0x3ae685;
    c.collation = 45;
    c.compressed = true;
    Record unknown;
    unknown.type = Type::Connect;
    unknown.loginKnown = false;
    Record gap;
    gap.type = Type::Gap;
    gap.gapFromServer = true;
    gap.gapBytes = 1460;
    Record close;
    close.type = Type::Close;
    close.reason = "quit";
    for (const Record& r : {c, unknown, gap, close}) {
        std::string json, bin, error;
        appendJson(r, json);
        appendBinary(r, bin);
        Record a, b;
        REQUIRE_MESSAGE(parse(json, kJsonContentType, a, error), json);
        REQUIRE(parse(bin, kBinaryContentType, b, error));
        same(r, a);
        same(r, b);
    }
}

TEST_CASE("inbound: damaged or foreign payloads are refused with a reason") {
    std::string error;
    Record r;
    CHECK_FALSE(parse("not json", kJsonContentType, r, error));
    CHECK(error.find("not a JSON object") != std::string::npos);
    CHECK_FALSE(parse("{\"v\":2,\"type\":\"command\"}", kJsonContentType, r, error));
    CHECK(error.find("version") != std::string::npos);
    CHECK_FALSE(parse("{\"type\":\"command\"}", kJsonContentType, r, error));
    CHECK_FALSE(parse("{\"v\":1,\"type\":\"nope\"}", kJsonContentType, r, error));
    CHECK_FALSE(
        parse("{\"v\":1,\"type\":\"command\",\"bytes\":\"@@@@\"}", kJsonContentType, r, error));
    CHECK_FALSE(parse("{\"v\":1,\"type\":\"command\",\"n\":\"zz\"}", kJsonContentType, r, error));
    std::string bin;
    appendBinary(sample(), bin);
    for (size_t cut = 0; cut < bin.size(); cut += 7) {
        CHECK_FALSE(parse(bin.substr(0, cut), kBinaryContentType, r, error));
    }
    std::string longer = bin + "x";
    CHECK_FALSE(parse(longer, kBinaryContentType, r, error));
    std::string v2 = bin;
    v2[3] = 2;
    CHECK_FALSE(parse(v2, kBinaryContentType, r, error));
    CHECK(error.find("version 2") != std::string::npos);
}

TEST_CASE("inbound: batches of records in both forms, a damaged one refused whole") {
    Record a = sample();
    Record b;  // a close has only the common fields and its reason
    b.type = Type::Close;
    b.client = a.client;
    b.server = a.server;
    b.connectionId = a.connectionId;
    b.reason = "quit";
    b.n = 8;
    std::string json, bin, error;
    appendJson(a, json);
    json += '\n';
    appendJson(b, json);
    appendBinary(a, bin);
    appendBinary(b, bin);
    std::vector<Record> out;
    REQUIRE_MESSAGE(parseBatch(json, kJsonBatchContentType, out, error), error);
    REQUIRE(out.size() == 2);
    same(a, out[0]);
    same(b, out[1]);
    REQUIRE_MESSAGE(parseBatch(bin, kBinaryContentType, out, error), error);
    REQUIRE(out.size() == 4);
    same(a, out[2]);
    same(b, out[3]);
    // One record alone is a batch of one; an empty payload a batch of none.
    std::string one;
    appendJson(a, one);
    REQUIRE(parseBatch(one, kJsonContentType, out, error));
    CHECK(out.size() == 5);
    REQUIRE(parseBatch("", kBinaryContentType, out, error));
    CHECK(out.size() == 5);
    // A damaged record anywhere: nothing of the batch is taken.
    CHECK_FALSE(parseBatch(bin.substr(0, bin.size() - 1), kBinaryContentType, out, error));
    CHECK_FALSE(parseBatch(json + "\n{", kJsonBatchContentType, out, error));
    CHECK(out.size() == 5);
}

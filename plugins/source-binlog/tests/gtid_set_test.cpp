// SPDX-License-Identifier: Apache-2.0
// MySQL GTID sets (text and binary forms), COM_BINLOG_DUMP_GTID's body, and the decoder keeping
// the set of a MySQL stream. The expected values are Vitess's (go/mysql/replication/
// mysql56_gtid_set_test.go and go/mysql/binlog_dump_test.go, Apache-2.0; provenance in
// tests/data/third-party/vitess/EXPECTED.md), and the GTID event is one a MySQL 5.6.24 server
// wrote (go/mysql/binlog_event_mysql56_test.go), with its CRC32 checked.
#include "gtid_set.hpp"

#include <doctest/doctest.h>

#include <cstring>
#include <string>
#include <vector>

#include "binlog.hpp"
#include "replica.hpp"

namespace {

using mp::binlog::MysqlGtidSet;

const char* kSid1 = "00010203-0405-0607-0809-0a0b0c0d0e0f";
const char* kSid2 = "00010203-0405-0607-0809-0a0b0c0d0e10";

MysqlGtidSet parsed(const std::string& text) {
    MysqlGtidSet s;
    REQUIRE_MESSAGE(MysqlGtidSet::parse(text, s), text);
    return s;
}

MysqlGtidSet::Uuid uuid(const char* text) {
    MysqlGtidSet::Uuid u{};
    REQUIRE(MysqlGtidSet::parseUuid(text, u));
    return u;
}

std::string bytes(std::initializer_list<int> b) {
    std::string s;
    for (int c : b) {
        s += static_cast<char>(c);
    }
    return s;
}

std::string le64(uint64_t v) {
    std::string s;
    mp::binlog::putLe(s, v, 8);
    return s;
}

}  // namespace

TEST_CASE("MySQL GTID sets: MySQL's text form, as Vitess reads and prints it") {
    struct Case {
        const char* in;
        const char* out;  // text() of the set read
    } cases[] = {
        {"", ""},
        {"00010203-0405-0607-0809-0a0b0c0d0e0f:1-5", "00010203-0405-0607-0809-0a0b0c0d0e0f:1-5"},
        {"00010203-0405-0607-0809-0A0B0C0D0E0F:1-5", "00010203-0405-0607-0809-0a0b0c0d0e0f:1-5"},
        {"00010203-0405-0607-0809-0a0b0c0d0e0f:12", "00010203-0405-0607-0809-0a0b0c0d0e0f:12"},
        {"00010203-0405-0607-0809-0a0b0c0d0e0f:1-5:10-20",
         "00010203-0405-0607-0809-0a0b0c0d0e0f:1-5:10-20"},
        {"00010203-0405-0607-0809-0a0b0c0d0e0f:10-20:1-5",
         "00010203-0405-0607-0809-0a0b0c0d0e0f:1-5:10-20"},
        // an interval whose end is below its start adds nothing (MySQL 5.6)
        {"00010203-0405-0607-0809-0a0b0c0d0e0f:8-7", ""},
        {"00010203-0405-0607-0809-0a0b0c0d0e0f:1-5:8-7:10-20",
         "00010203-0405-0607-0809-0a0b0c0d0e0f:1-5:10-20"},
        {"00010203-0405-0607-0809-0a0b0c0d0e0f:1-5,00010203-0405-0607-0809-0a0b0c0d0e0f:10-20",
         "00010203-0405-0607-0809-0a0b0c0d0e0f:1-5:10-20"},
        {"00010203-0405-0607-0809-0a0b0c0d0e0f:10-20,00010203-0405-0607-0809-0a0b0c0d0e0f:1-5",
         "00010203-0405-0607-0809-0a0b0c0d0e0f:1-5:10-20"},
        {"00010203-0405-0607-0809-0a0b0c0d0e0f:1-5:10-20,00010203-0405-0607-0809-0a0b0c0d0eff:1-"
         "5:50",
         "00010203-0405-0607-0809-0a0b0c0d0e0f:1-5:10-20,00010203-0405-0607-0809-0a0b0c0d0eff:1-"
         "5:50"},
        {"00010203-0405-0607-0809-0a0b0c0d0e0f:1-5:10-20, 00010203-0405-0607-0809-0a0b0c0d0eff:1-"
         "5:50",
         "00010203-0405-0607-0809-0a0b0c0d0e0f:1-5:10-20,00010203-0405-0607-0809-0a0b0c0d0eff:1-"
         "5:50"},
        // as SELECT @@GLOBAL.gtid_executed prints it (a newline after each comma); UUIDs sorted
        {"8aabbf4f-5074-11ed-b225-aa23ce7e3ba2:1-20443,\na6f1bf40-5073-11ed-9c0f-12a3889dc912:1-"
         "343402",
         "8aabbf4f-5074-11ed-b225-aa23ce7e3ba2:1-20443,a6f1bf40-5073-11ed-9c0f-12a3889dc912:1-"
         "343402"},
        {"a6f1bf40-5073-11ed-9c0f-12a3889dc912:1-3,8aabbf4f-5074-11ed-b225-aa23ce7e3ba2:7",
         "8aabbf4f-5074-11ed-b225-aa23ce7e3ba2:7,a6f1bf40-5073-11ed-9c0f-12a3889dc912:1-3"},
        // touching intervals are one
        {"00010203-0405-0607-0809-0a0b0c0d0e0f:1-5:6-9:11",
         "00010203-0405-0607-0809-0a0b0c0d0e0f:1-9:11"},
    };
    for (const Case& c : cases) {
        CAPTURE(c.in);
        MysqlGtidSet s;
        REQUIRE(MysqlGtidSet::parse(c.in, s));
        CHECK(s.text() == c.out);
        // what it prints reads back as the same set
        CHECK(parsed(s.text()) == s);
    }
    const char* invalid[] = {
        "00010203-0405-0607-0809-0a0b0c0d0e0f",                      // no interval
        "00010203-0405-060X-0809-0a0b0c0d0e0f:1-5",                  // not hex
        "00010203-0405-0607-0809-0a0b0c0d0e0f:0-5",                  // 0 is no transaction
        "00010203-0405-0607-0809-0a0b0c0d0e0f:-5",                   // no start
        "00010203-0405-0607-0809-0a0b0c0d0e0f:1-2-3",                // two ends
        "00010203-0405-0607-0809-0a0b0c0d0e0f:1-",                   // no end
        "00010203-0405-0607-0809-0a0b0c0d0e0f:tag:1-5",              // MySQL 8.3's tagged GTIDs
        "00010203-0405-0607-0809-0a0b0c0d0e0f:9223372036854775807",  // past 2^63 - 2
        "00010203-0405-0607-0809-0a0b0c0d0e:1",                      // short UUID
        "0-1-100",                                                   // MariaDB's form
    };
    for (const char* in : invalid) {
        CAPTURE(in);
        MysqlGtidSet s;
        CHECK_FALSE(MysqlGtidSet::parse(in, s));
        CHECK(s.empty());
    }
}

TEST_CASE("MySQL GTID sets: adding a transaction merges intervals as Vitess's AddGTID does") {
    const std::string base = std::string(kSid1) + ":20-30:35-40:42-45," + kSid2 + ":1-5:50:60-70";
    const std::string sid3 = "00010203-0405-0607-0809-0a0b0c0d0e11";
    struct Case {
        const char* sid;
        uint64_t gno;
        std::string want;
    } cases[] = {
        {kSid1, 20, base},  // already in the set
        {kSid1, 30, base},
        {kSid1, 25, base},
        {kSid1, 1, std::string(kSid1) + ":1:20-30:35-40:42-45," + kSid2 + ":1-5:50:60-70"},
        {kSid1, 32, std::string(kSid1) + ":20-30:32:35-40:42-45," + kSid2 + ":1-5:50:60-70"},
        {kSid1, 50, std::string(kSid1) + ":20-30:35-40:42-45:50," + kSid2 + ":1-5:50:60-70"},
        {kSid2, 49, std::string(kSid1) + ":20-30:35-40:42-45," + kSid2 + ":1-5:49-50:60-70"},
        {kSid2, 51, std::string(kSid1) + ":20-30:35-40:42-45," + kSid2 + ":1-5:50-51:60-70"},
        {kSid1, 41, std::string(kSid1) + ":20-30:35-45," + kSid2 + ":1-5:50:60-70"},
        {sid3.c_str(), 1, base + "," + sid3 + ":1"},
    };
    for (const Case& c : cases) {
        CAPTURE(c.sid);
        CAPTURE(c.gno);
        MysqlGtidSet s = parsed(base);
        s.add(uuid(c.sid), c.gno);
        CHECK(s.text() == c.want);
        CHECK(s.contains(uuid(c.sid), c.gno));
    }
    // 0 and numbers past 2^63 - 2 are no transactions
    MysqlGtidSet s = parsed(base);
    s.add(uuid(kSid1), 0);
    s.add(uuid(kSid1), MysqlGtidSet::kMaxGno + 1);
    CHECK(s.text() == base);
    CHECK_FALSE(s.contains(uuid(kSid1), 31));
    CHECK_FALSE(s.contains(uuid(sid3.c_str()), 1));
}

TEST_CASE("MySQL GTID sets: union as Vitess's Union") {
    const std::string sid3 = "00010203-0405-0607-0809-0a0b0c0d0e11";
    MysqlGtidSet a =
        parsed(std::string(kSid1) + ":20-30:35-40:42-45," + kSid2 + ":1-5:20-50:60-70");
    a.add(parsed(std::string(kSid1) + ":20-31:35-37:41-46," + kSid2 + ":3-6:22-49:67-72," + sid3 +
                 ":1-45"));
    CHECK(a.text() ==
          std::string(kSid1) + ":20-31:35-46," + kSid2 + ":1-6:20-50:60-72," + sid3 + ":1-45");
}

TEST_CASE("MySQL GTID sets: the binary form (Vitess's SIDBlock) and back") {
    // {sid1: [20,30] [35,40], sid2: [1,5]}: each end exclusive
    const std::string want =
        le64(2) + bytes({0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}) + le64(2) +
        le64(20) + le64(31) + le64(35) + le64(41) +
        bytes({0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 16}) + le64(1) + le64(1) + le64(6);
    const MysqlGtidSet set = parsed(std::string(kSid2) + ":1-5," + kSid1 + ":20-30:35-40");
    CHECK(set.encode() == want);
    MysqlGtidSet back;
    REQUIRE(MysqlGtidSet::decode(reinterpret_cast<const uint8_t*>(want.data()), want.size(), back));
    CHECK(back == set);
    // the empty set: n_sids 0
    CHECK(MysqlGtidSet().encode() == le64(0));
    // damaged: cut anywhere, counts past the end, an interval that ends before it starts or
    // starts at 0; the tagged form's first byte (a format number) makes n_sids huge
    for (size_t cut = 0; cut < want.size(); ++cut) {
        CAPTURE(cut);
        MysqlGtidSet s;
        CHECK_FALSE(MysqlGtidSet::decode(reinterpret_cast<const uint8_t*>(want.data()), cut, s));
        CHECK(s.empty());
    }
    const std::string bad[] = {
        le64(uint64_t{1} << 56) + std::string(24, '\0'),
        le64(1) + std::string(16, 'u') + le64(1000) + le64(1) + le64(2),
        le64(1) + std::string(16, 'u') + le64(1) + le64(5) + le64(5),
        le64(1) + std::string(16, 'u') + le64(1) + le64(0) + le64(5),
    };
    for (const std::string& b : bad) {
        MysqlGtidSet s;
        CHECK_FALSE(MysqlGtidSet::decode(reinterpret_cast<const uint8_t*>(b.data()), b.size(), s));
    }
}

TEST_CASE("COM_BINLOG_DUMP_GTID: the layout of Vitess's test, as MySQL's replica sends it") {
    const MysqlGtidSet set = parsed("16b1039f-22b6-11ed-b765-0a43f95f28a3:1-243");
    const std::string block = set.encode();
    CHECK(block.size() == 48);  // as in Vitess's test
    const std::string body = mp::binlog::dumpGtidPacket(0x01020304, set);
    const std::string want = bytes({0x04, 0x00,              // flags: BINLOG_THROUGH_GTID
                                    0x04, 0x03, 0x02, 0x01,  // server id
                                    0x00, 0x00, 0x00, 0x00,  // file name length: none
                                    4,    0,    0,    0,    0, 0, 0, 0,  // position 4
                                    0x30, 0x00, 0x00, 0x00}) +           // data size
                             block;
    CHECK(body == want);
    // the empty set (from the oldest binlog): n_sids 0
    CHECK(mp::binlog::dumpGtidPacket(7, MysqlGtidSet()).substr(18) ==
          bytes({8, 0, 0, 0}) + le64(0));
}

namespace {

struct Commits : mp::binlog::Handler {
    void row(const mp::binlog::EventHeader&, const mp::binlog::TableMap&, mp::binlog::RowKind,
             const mp::binlog::Image&, const mp::binlog::Image&, uint32_t) override {}
    void commit(const mp::binlog::EventHeader&, const mp::binlog::Position& p) override {
        states.push_back(p.gtidState);
        gtids.push_back(p.gtid);
    }
    std::vector<std::string> states;
    std::vector<std::string> gtids;
};

// An event without checksum: header, then `body`.
std::vector<uint8_t> event(uint8_t type, const std::string& body) {
    std::vector<uint8_t> ev(mp::binlog::kHeaderLength + body.size(), 0);
    ev[4] = type;
    const auto size = static_cast<uint32_t>(ev.size());
    std::memcpy(ev.data() + 9, &size, 4);
    std::memcpy(ev.data() + mp::binlog::kHeaderLength, body.data(), body.size());
    return ev;
}

std::vector<uint8_t> gtidEvent(const char* sid, uint64_t gno) {
    const auto u = uuid(sid);
    return event(mp::binlog::kMysqlGtid,
                 bytes({1}) + std::string(u.begin(), u.end()) + le64(gno) + std::string(17, '\0'));
}

const std::vector<uint8_t> kXid = event(mp::binlog::kXid, le64(77));

bool feed(mp::binlog::Decoder& d, const std::vector<uint8_t>& ev) {
    return d.event(ev.data(), ev.size());
}

}  // namespace

TEST_CASE("a MySQL 5.6 GTID event (checksum checked) adds its transaction to the set") {
    // Vitess's sample events from MySQL 5.6.24: format description (CRC32), GTID, a query
    const std::vector<uint8_t> fde = {
        0x78, 0x4e, 0x49, 0x55, 0xf,  0x64, 0x0,  0x0,  0x0,  0x74, 0x0,  0x0,  0x0,  0x78, 0x0,
        0x0,  0x0,  0x1,  0x0,  0x4,  0x0,  0x35, 0x2e, 0x36, 0x2e, 0x32, 0x34, 0x2d, 0x6c, 0x6f,
        0x67, 0x0,  0x0,  0x0,  0x0,  0x0,  0x0,  0x0,  0x0,  0x0,  0x0,  0x0,  0x0,  0x0,  0x0,
        0x0,  0x0,  0x0,  0x0,  0x0,  0x0,  0x0,  0x0,  0x0,  0x0,  0x0,  0x0,  0x0,  0x0,  0x0,
        0x0,  0x0,  0x0,  0x0,  0x0,  0x0,  0x0,  0x0,  0x0,  0x0,  0x0,  0x78, 0x4e, 0x49, 0x55,
        0x13, 0x38, 0xd,  0x0,  0x8,  0x0,  0x12, 0x0,  0x4,  0x4,  0x4,  0x4,  0x12, 0x0,  0x0,
        0x5c, 0x0,  0x4,  0x1a, 0x8,  0x0,  0x0,  0x0,  0x8,  0x8,  0x8,  0x2,  0x0,  0x0,  0x0,
        0xa,  0xa,  0xa,  0x19, 0x19, 0x0,  0x1,  0x18, 0x4a, 0xf,  0xca};
    const std::vector<uint8_t> gtid = {0xff, 0x4e, 0x49, 0x55, 0x21, 0x64, 0x0,  0x0,  0x0,  0x30,
                                       0x0,  0x0,  0x0,  0xf5, 0x2,  0x0,  0x0,  0x0,  0x0,  0x1,
                                       0x43, 0x91, 0x92, 0xbd, 0xf3, 0x7c, 0x11, 0xe4, 0xbb, 0xeb,
                                       0x2,  0x42, 0xac, 0x11, 0x3,  0x5a, 0x4,  0x0,  0x0,  0x0,
                                       0x0,  0x0,  0x0,  0x0,  0x48, 0x45, 0x82, 0x27};
    const std::vector<uint8_t> query = {
        0xff, 0x4e, 0x49, 0x55, 0x2,  0x64, 0x0,  0x0,  0x0,  0x77, 0x0,  0x0,  0x0,  0xdb, 0x3,
        0x0,  0x0,  0x0,  0x0,  0x3d, 0x0,  0x0,  0x0,  0x0,  0x0,  0x0,  0x0,  0x4,  0x0,  0x0,
        0x21, 0x0,  0x0,  0x0,  0x0,  0x0,  0x0,  0x1,  0x0,  0x0,  0x20, 0x0,  0x0,  0x0,  0x0,
        0x0,  0x6,  0x3,  0x73, 0x74, 0x64, 0x4,  0x8,  0x0,  0x8,  0x0,  0x21, 0x0,  0xc,  0x1,
        0x74, 0x65, 0x73, 0x74, 0x0,  0x74, 0x65, 0x73, 0x74, 0x0,  0x69, 0x6e, 0x73, 0x65, 0x72,
        0x74, 0x20, 0x69, 0x6e, 0x74, 0x6f, 0x20, 0x74, 0x65, 0x73, 0x74, 0x5f, 0x74, 0x61, 0x62,
        0x6c, 0x65, 0x20, 0x28, 0x6d, 0x73, 0x67, 0x29, 0x20, 0x76, 0x61, 0x6c, 0x75, 0x65, 0x73,
        0x20, 0x28, 0x27, 0x68, 0x65, 0x6c, 0x6c, 0x6f, 0x27, 0x29, 0x92, 0x12, 0x79, 0xc3};
    Commits c;
    mp::binlog::Decoder d(c);
    d.startFile("mysql-bin.000001", 4);
    REQUIRE(d.setGtidState("439192bd-f37c-11e4-bbeb-0242ac11035a:1-3"));
    REQUIRE(d.event(fde.data(), fde.size()));
    CHECK(d.hasChecksum());
    CHECK(d.serverVersion() == "5.6.24-log");
    REQUIRE_MESSAGE(d.event(gtid.data(), gtid.size()), d.error());
    CHECK(d.position().gtid == "439192bd-f37c-11e4-bbeb-0242ac11035a:4");
    // a statement outside BEGIN ... COMMIT is its own transaction
    REQUIRE_MESSAGE(d.event(query.data(), query.size()), d.error());
    REQUIRE(c.states.size() == 1);
    CHECK(c.states[0] == "439192bd-f37c-11e4-bbeb-0242ac11035a:1-4");
    CHECK(c.gtids[0] == "439192bd-f37c-11e4-bbeb-0242ac11035a:4");
    CHECK(d.position().pos == 0x3db);
    // one damaged byte in the GTID event: the checksum says so
    auto damaged = gtid;
    damaged[30] ^= 1;
    CHECK_FALSE(d.event(damaged.data(), damaged.size()));
    CHECK(d.error().find("checksum") != std::string::npos);
}

TEST_CASE("a MySQL stream's GTID set: known from a GTID start or a PREVIOUS_GTIDS event") {
    const std::string previous = std::string(kSid1) + ":20-30:35-40," + kSid2 + ":1-5";
    SUBCASE("a start at a file and position learns the set from PREVIOUS_GTIDS") {
        Commits c;
        mp::binlog::Decoder d(c);
        d.startFile("binlog.000002", 4000);
        // in the middle of a file: the transactions before are not known, no GTID state
        REQUIRE(feed(d, gtidEvent(kSid2, 9)));
        REQUIRE(feed(d, kXid));
        CHECK(c.states.back().empty());
        CHECK(c.gtids.back() == std::string(kSid2) + ":9");
        // the next file's PREVIOUS_GTIDS: every transaction of the files before it
        d.startFile("binlog.000003", 4);
        REQUIRE(feed(d, event(mp::binlog::kMysqlPreviousGtids, parsed(previous).encode())));
        CHECK(d.position().gtidState == previous);
        REQUIRE(feed(d, gtidEvent(kSid2, 6)));
        REQUIRE(feed(d, kXid));
        CHECK(c.states.back() == std::string(kSid1) + ":20-30:35-40," + kSid2 + ":1-6");
        REQUIRE(feed(d, gtidEvent(kSid1, 31)));
        REQUIRE(feed(d, kXid));
        CHECK(c.states.back() == std::string(kSid1) + ":20-31:35-40," + kSid2 + ":1-6");
        // an anonymous transaction (gtid_mode ON_PERMISSIVE) changes nothing in the set, and
        // does not carry the GTID of the one before (its ids are its file and position)
        REQUIRE(feed(d, event(mp::binlog::kMysqlAnonymousGtid, std::string(42, '\0'))));
        REQUIRE(feed(d, kXid));
        CHECK(c.states.back() == std::string(kSid1) + ":20-31:35-40," + kSid2 + ":1-6");
        CHECK(c.gtids.back().empty());
    }
    SUBCASE("a GTID start: the set given, then each transaction added") {
        Commits c;
        mp::binlog::Decoder d(c);
        REQUIRE(d.setGtidState(std::string(kSid1) + ":1-3,\n" + kSid2 + ":1-2"));
        CHECK(d.position().gtidState == std::string(kSid1) + ":1-3," + kSid2 + ":1-2");
        d.startFile("binlog.000001", 4);
        // the server's PREVIOUS_GTIDS holds at most what was asked for: the set stays
        REQUIRE(feed(d, event(mp::binlog::kMysqlPreviousGtids,
                              parsed(std::string(kSid1) + ":1-2").encode())));
        REQUIRE(feed(d, gtidEvent(kSid1, 4)));
        REQUIRE(feed(d, kXid));
        CHECK(c.states.back() == std::string(kSid1) + ":1-4," + kSid2 + ":1-2");
        // the empty state: from the oldest binlog, every transaction seen is the set
        REQUIRE(d.setGtidState(""));
        REQUIRE(feed(d, gtidEvent(kSid2, 1)));
        REQUIRE(feed(d, kXid));
        CHECK(c.states.back() == std::string(kSid2) + ":1");
        CHECK_FALSE(d.setGtidState(std::string(kSid1) + ":0-3"));
    }
    SUBCASE("tagged GTIDs (not read) and a damaged PREVIOUS_GTIDS: the set is no longer known") {
        Commits c;
        mp::binlog::Decoder d(c);
        REQUIRE(d.setGtidState(previous));
        REQUIRE(feed(d, gtidEvent(kSid1, 41)));
        REQUIRE(feed(d, kXid));
        REQUIRE(feed(d, event(mp::binlog::kMysqlGtidTagged, std::string(60, '\x01'))));
        REQUIRE(feed(d, kXid));
        CHECK(c.states.back().empty());  // checkpoints fall back to the file and position
        CHECK(c.gtids.back().empty());   // ids: file and position, not the GTID before
        REQUIRE(feed(d, gtidEvent(kSid1, 50)));
        REQUIRE(feed(d, kXid));
        CHECK(c.states.back().empty());
        REQUIRE(d.setGtidState(previous));
        REQUIRE(feed(d, event(mp::binlog::kMysqlPreviousGtids, le64(1) + "short")));
        CHECK(d.position().gtidState.empty());
    }
}

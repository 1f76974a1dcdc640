// SPDX-License-Identifier: Apache-2.0
#include "fingerprint.hpp"

#include <doctest/doctest.h>

#include <random>
#include <string>
#include <vector>

using mp::mysql::fingerprint;

namespace {
std::string fp(const char* sql) { return fingerprint(sql).text; }
}  // namespace

TEST_SUITE("fingerprint") {
    TEST_CASE("literals of every kind become ?") {
        CHECK(fp("SELECT c FROM sbtest1 WHERE id=5000") == "select c from sbtest1 where id = ?");
        CHECK(fp("select 'a''b', \"x\\\"y\", 1.5e-3, .5, 0x1F, X'ab', b'0101', -7") ==
              "select ?, ?, ?, ?, ?, ?, ?, ?");
        CHECK(fp("SELECT _utf8mb4'abc'") == "select ?");
        CHECK(fp("select a-1, a - 1, f(-1)") == "select a - ?, a - ?, f(?)");
        CHECK(fp("select f(1)") != fp("select f(1, 2)"));
        // Temporal literals: the keyword stays, the string is a literal.
        CHECK(fp("SELECT DATE '2026-12-01', TIME '10:00:00', TIMESTAMP '2026-12-01 10:00:00'") ==
              "select date ?, time ?, timestamp ?");
        CHECK(fp("select * from t where d > DATE '2020-01-01'") ==
              fp("select * from t where d > date '1999-12-31'"));
        CHECK(fp("SELECT {d '2026-12-01'}, {ts '2026-12-01 10:00:00'}") ==
              "select { d ? }, { ts ? }");
    }
    TEST_CASE("text and prepared forms share a template") {
        CHECK(fingerprint("UPDATE sbtest3 SET c='x' WHERE id=17").id ==
              fingerprint("UPDATE sbtest3 SET c=? WHERE id=?").id);
    }
    TEST_CASE("case, whitespace, comments and quoting do not make new templates") {
        const char* forms[] = {
            "SELECT c FROM t WHERE id = 1",
            "select  c\n  from t where id=2",
            "/* app: x */ SELECT c FROM t WHERE id = 3 -- trailing\n",
            "SELECT /*+ MAX_EXECUTION_TIME(1000) */ c FROM `t` WHERE `id` = 4;",
            "# comment line\nSELECT c FROM t WHERE id=5",
        };
        for (const char* f : forms) {
            CAPTURE(f);
            CHECK(fp(f) == "select c from t where id = ?");
        }
    }
    TEST_CASE("lists collapse: IN and multi-row VALUES") {
        CHECK(fp("SELECT * FROM t WHERE id IN (1, 2, 3)") == fp("select * from t where id in (7)"));
        CHECK(fp("SELECT * FROM t WHERE id IN (1, 2, 3)") == "select * from t where id in(?+)");
        CHECK(fp("INSERT INTO t VALUES (1,'a'),(2,'b'),(3,'c')") == "insert into t values(?+)");
        CHECK(fp("INSERT INTO t VALUES (1,'a')") == fp("INSERT INTO t VALUES (1,'a'),(2,'b')"));
        // A list with an expression is not a literal list.
        CHECK(fp("select f(a, 1)") == "select f(a, ?)");
    }
    TEST_CASE("versioned comments are SQL; optimizer hints and other comments are not") {
        CHECK(fp("/*!40101 SET NAMES utf8 */") == "set names utf8");
        CHECK(fp("/*!40101 SET NAMES utf8 */;") == "set names utf8");
        CHECK(fp("/*!50503 SET character_set_client = utf8mb4 */") ==
              "set character_set_client = utf8mb4");
        CHECK(fp("CREATE TABLE t (a INT) /*!50100 PARTITION BY HASH (a) */") ==
              "create table t(a int) partition by hash(a)");
        CHECK(fp("SELECT /*M!100301 SQL_NO_CACHE */ c FROM t WHERE id = 1") ==
              "select sql_no_cache c from t where id = ?");
        CHECK(fp("SELECT /*! STRAIGHT_JOIN */ a FROM t") == "select straight_join a from t");
        CHECK(fp("/*!40101 SET NAMES utf8 */") != fp("/*!40101 SET SQL_MODE='' */"));
        CHECK(fp("/*!40101 SET NAMES utf8") == "set names utf8");  // unterminated
        CHECK(fp("SELECT /*+ BKA(t) */ a FROM t") == "select a from t");
    }
    TEST_CASE("the deliberate differences from performance_schema (README table), as written") {
        CHECK(fp("select * from t where id in (1)") == fp("select * from t where id in (1, 2, 3)"));
        CHECK(fp("insert into t values (1, 'a')") == fp("insert into t values (1, 'a'), (2, 'b')"));
        CHECK(fp("select f(1, 2)") == "select f(?, ?)");
        CHECK(fp("select f(1, 2)") != fp("select f(1, 2, 3)"));
        CHECK(fp("SELECT * FROM T") == fp("select * from t"));
        CHECK(fp("select /*+ BKA(t) */ a from t") == fp("select a from t"));
        CHECK(fp("/*!90000 select 1 */") == "select ?");
        CHECK(fp("select 1; select 2") == "select ?; select ?");
        CHECK(fp("select * from t where id in (1, NULL, 3)") ==
              "select * from t where id in(?, null, ?)");
        CHECK(fp("select * from t where a is null") == "select * from t where a is null");
    }
    TEST_CASE("synonyms share a template") {
        CHECK(fp("SELECT DISTINCTROW c FROM t") == fp("select distinct c from t"));
    }
    TEST_CASE("identifiers with digits stay identifiers") {
        CHECK(fp("select * from t1 join 2fa on t1.x = 2fa.y") ==
              "select * from t1 join 2fa on t1.x = 2fa.y");
    }
    TEST_CASE("garbage and unterminated input never fail, and the text is bounded") {
        CHECK(fp("SELECT 'unterminated") == "select ?");
        CHECK(fp("/* open comment") == "");
        CHECK(fp("") == "");
        std::string big = "select " + std::string(100000, 'a');
        CHECK(fingerprint(big, 100).text.size() <= 103);
        std::string weird;
        for (int i = 0; i < 256; ++i) {
            weird += static_cast<char>(i);
        }
        CHECK_NOTHROW(fingerprint(weird));
    }
}

// The memo by shape must never change a fingerprint: statements built from the same pieces with
// other literal values (numbers of other lengths, other string contents, escapes) and random
// strings over SQL's awkward characters, each fingerprinted through one warm cache and directly.
TEST_CASE("fingerprint cache: the memo by shape gives the tokenizer's fingerprint") {
    std::mt19937_64 rng(20261123);
    auto pick = [&](size_t n) { return static_cast<size_t>(rng() % n); };
    // clang-format off
    const std::vector<std::string> pieces = {
        "SELECT",  "select", " ",      "  ",   "\n",      "c",           "FROM",
        "sbtest1", "WHERE",  "id",     "=",    "-",       "+",           "(",
        ")",       ",",      ".",      "IN",   "VALUES",  "BETWEEN",     "AND",
        "x",       "e",      "0x",     "b",    "n",       "_utf8mb4",    "`t`",
        "\"q\"",   "--",     "-- c\n", "#h\n", "/* k */", "/*+ h */",    "?",
        "*",       "'",      "\\",     "''",   "$",       "t.",          ".",
        "1",       "12",     "1.5",    "1e5",  "5x",      "distinctrow", "ORDER BY",
        "\xc3\xa9", "k9z", "sbtest12.c", "0123456789abcdef0123"};
    // clang-format on
    auto literal = [&]() -> std::string {
        switch (pick(4)) {
            case 0:
                return std::to_string(rng() % 100000);
            case 1:
                return std::to_string(rng() % 100) + "." + std::to_string(rng() % 1000);
            case 2: {
                std::string s = "'";
                for (size_t k = pick(12); k > 0; --k) {
                    const char* cs[] = {"a", "Z", "1", " ", "''", "\\'", "\"", "`", "#", "--", "é"};
                    s += cs[pick(11)];
                }
                return s + "'";
            }
            default:
                return pick(2) == 0 ? "-" + std::to_string(rng() % 50) : ".5";
        }
    };
    mp::mysql::FingerprintCache cache(64);  // small: slots are overwritten often
    size_t checked = 0;
    // Pairs that only look alike: what follows a number decides what it is.
    for (auto [x, y] : {std::pair{"select 5.x", "select 6.x"},
                        {"select 1e5", "select 2e5"},
                        {"select 0x1F", "select 1x1F"},
                        {"select 'a'", "select n'a'"},
                        {"select 1 -- 2\n", "select 1 -- 3\n"}}) {
        std::string out;
        cache.fingerprintInto(x, out);
        cache.fingerprintInto(y, out);
        CHECK(out == mp::mysql::fingerprint(y).text);
    }
    for (int round = 0; round < 50000; ++round) {
        // Half the rounds only from the pieces the shape scan understands (the first 21).
        size_t vocabulary = round % 2 == 0 ? 21 : pieces.size();
        std::vector<int> shape;
        for (size_t k = 2 + pick(14); k > 0; --k) {
            shape.push_back(pick(4) == 0 ? -1 : static_cast<int>(pick(vocabulary)));
        }
        for (int variant = 0; variant < 4; ++variant) {
            std::string sql;
            for (int p : shape) {
                sql += p < 0 ? literal() : pieces[static_cast<size_t>(p)];
            }
            for (size_t maxOut : {size_t{4096}, size_t{24}}) {
                std::string viaCache;
                std::string direct;
                uint64_t a = cache.fingerprintInto(sql, viaCache, maxOut);
                uint64_t b = mp::mysql::fingerprintInto(sql, direct, maxOut);
                if (a != b || viaCache != direct) {
                    CAPTURE(sql);
                    CAPTURE(maxOut);
                    CHECK(viaCache == direct);
                    CHECK(a == b);
                }
                ++checked;
            }
        }
    }
    const auto& st = cache.stats();
    MESSAGE("fingerprint cache: " << checked << " statements, " << st.hits << " hits, " << st.misses
                                  << " misses, " << st.unmemoisable << " unmemoisable");
    CHECK(st.hits > 20000);  // the test exercised the memo, not only the tokenizer
    CHECK(st.unmemoisable > 1000);
}

TEST_CASE("fingerprint cache: long fingerprints are computed each time, not kept") {
    std::string sql = "select c0";
    for (int i = 1; i < 200; ++i) {
        sql += ", c" + std::to_string(i);
    }
    sql += " from t where id = 5";
    mp::mysql::FingerprintCache cache(16);
    std::string a;
    std::string b;
    uint64_t x = cache.fingerprintInto(sql, a);
    uint64_t y = cache.fingerprintInto(sql, b);
    CHECK(a.size() > 512);
    CHECK(x == y);
    CHECK(a == b);
    CHECK(a == mp::mysql::fingerprint(sql).text);
    CHECK(cache.stats().hits == 0);
    CHECK(cache.stats().misses == 2);
}

TEST_CASE("maskLiterals: literals become ?, the rest stays as written, the template is the same") {
    using mp::mysql::maskLiterals;
    const std::pair<std::string, std::string> cases[] = {
        {"SELECT c FROM sbtest1 WHERE id=42", "SELECT c FROM sbtest1 WHERE id=?"},
        {"insert into t values ('it''s', \"x\\\"y\", -1.5e-3, 0x1F, x'ab', b'01', N'abc', .5)",
         "insert into t values (?, ?, ?, ?, ?, ?, ?, ?)"},
        {"UPDATE `t 1` SET a = a - 1 WHERE b IN (1,2,3) -- secret 123\n",
         "UPDATE `t 1` SET a = a - ? WHERE b IN (?,?,?) \n"},
        {"select /*+ MAX_EXECUTION_TIME(1000) */ 1 /* pwd=secret */ from dual",
         "select /*+ MAX_EXECUTION_TIME(?) */ ?   from dual"},
        {"/*!50100 SELECT 5 */ # note 7", "/*!50100 SELECT ? */ "},
        {"select ?, ? from t where x = -? limit 10", "select ?, ? from t where x = -? limit ?"},
        {"select _utf8mb4'secret', col2 from t2", "select ?, col2 from t2"},
    };
    for (const auto& [sql, want] : cases) {
        CAPTURE(sql);
        std::string got = maskLiterals(sql);
        CHECK(got == want);
        CHECK(fingerprint(got).text == fingerprint(sql).text);
        CHECK(fingerprint(got).id == fingerprint(sql).id);
    }
    // bounded: a long statement ends with "..."
    std::string big = "select " + std::string(10000, '1');
    std::string cut = maskLiterals("select 'a', " + std::string(5000, 'x'), 20);
    CHECK(cut.size() <= 23);
    CHECK(cut.substr(cut.size() - 3) == "...");
    CHECK(maskLiterals(big) == "select ?");
    CHECK(maskLiterals("") == "");
    CHECK(maskLiterals("'unterminated") == "?");
}

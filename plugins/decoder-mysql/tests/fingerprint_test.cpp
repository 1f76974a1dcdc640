// SPDX-License-Identifier: Apache-2.0
#include "fingerprint.hpp"

#include <doctest/doctest.h>

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

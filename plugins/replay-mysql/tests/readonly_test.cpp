// SPDX-License-Identifier: Apache-2.0
#include "readonly.hpp"

#include <doctest/doctest.h>

using mp::replay::readOnlySql;

TEST_CASE("read-only: reads pass") {
    for (const char* sql : {"SELECT c FROM sbtest1 WHERE id=1",
                            "  select 1",
                            "/* app */ SELECT 1",
                            "-- note\nSELECT 1",
                            "# note\nSELECT 1",
                            "SHOW TABLES",
                            "show global status",
                            "DESCRIBE t",
                            "desc t",
                            "EXPLAIN SELECT 1",
                            "BEGIN",
                            "COMMIT",
                            "ROLLBACK",
                            "START TRANSACTION",
                            "SET autocommit=0",
                            "SET NAMES utf8mb4",
                            "USE sbtest",
                            "SELECT 'insert into t' FROM dual",
                            "SELECT 1;",
                            "SELECT `update` FROM t",
                            "SELECT DISTINCT c FROM sbtest1 WHERE id BETWEEN 1 AND 100 ORDER BY c",
                            "SELECT x FROM t FOR UPDATE"}) {
        INFO(sql);
        CHECK(readOnlySql(sql));
    }
}

TEST_CASE("read-only: writes and what may write are skipped") {
    for (const char* sql : {"INSERT INTO t VALUES (1)",
                            "UPDATE t SET c=1",
                            "DELETE FROM t",
                            "REPLACE INTO t VALUES (1)",
                            "CREATE TABLE t (a int)",
                            "DROP TABLE t",
                            "TRUNCATE t",
                            "ALTER TABLE t ADD b int",
                            "SELECT * FROM t INTO OUTFILE '/tmp/x'",
                            "SELECT 1 INTO @a",
                            "SET GLOBAL max_connections=1",
                            "SET @@global.x=1",
                            "SET PASSWORD = PASSWORD('x')",
                            "EXPLAIN ANALYZE DELETE FROM t",
                            "SELECT 1; DELETE FROM t",
                            "CALL p()",
                            "LOCK TABLES t WRITE",
                            "LOAD DATA INFILE 'x' INTO TABLE t",
                            "/*!40101 INSERT INTO t VALUES (1) */",
                            "GRANT ALL ON *.* TO x",
                            "FLUSH TABLES",
                            "WITH a AS (SELECT 1) DELETE FROM t",
                            "SELECT NEXTVAL(s)",
                            "",
                            "   ",
                            "/* only */"}) {
        INFO(sql);
        CHECK_FALSE(readOnlySql(sql));
    }
}

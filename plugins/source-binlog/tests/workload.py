# SPDX-License-Identifier: Apache-2.0
"""The change workload of source-binlog's tests: every column type with edge values,
multi-row statements, updates (one of a primary key), deletes, a rolled-back transaction, a
DDL in the middle of the stream, a table without primary key (with duplicate rows), a
non-transactional table, a 5 MiB blob, compressed events (log_bin_compress) and sysbench
oltp_write_only. Run against schema `src`; the copy is built in `dst`."""
import os
import shutil
import subprocess

TYPES = """
  id INT PRIMARY KEY AUTO_INCREMENT,
  ti TINYINT, tiu TINYINT UNSIGNED, si SMALLINT, siu SMALLINT UNSIGNED,
  mi MEDIUMINT, miu MEDIUMINT UNSIGNED, i INT, iu INT UNSIGNED, bi BIGINT, biu BIGINT UNSIGNED,
  y YEAR, d1 DECIMAL(10,2), d2 DECIMAL(65,30), d3 DECIMAL(5,0), d4 DECIMAL(20,10) UNSIGNED,
  f FLOAT, fu FLOAT UNSIGNED, db DOUBLE,
  b1 BIT(1), b13 BIT(13), b64 BIT(64),
  dt DATE, tm TIME, tm1 TIME(1), tm3 TIME(3), tm6 TIME(6),
  dtt DATETIME, dtt2 DATETIME(2), dtt6 DATETIME(6),
  ts TIMESTAMP NULL DEFAULT NULL, ts4 TIMESTAMP(4) NULL DEFAULT NULL, ts6 TIMESTAMP(6) NULL DEFAULT NULL,
  c CHAR(10), cu CHAR(100) CHARACTER SET utf8mb4, cl CHAR(20) CHARACTER SET latin1,
  vc VARCHAR(100), vcl VARCHAR(1000) CHARACTER SET latin1, vcu VARCHAR(300) CHARACTER SET utf8mb4,
  bn BINARY(8), vb VARBINARY(300),
  tt TINYTEXT, tx TEXT, mt MEDIUMTEXT, lt LONGTEXT CHARACTER SET utf8mb4,
  tb TINYBLOB, bl BLOB, mb MEDIUMBLOB, lb LONGBLOB,
  e ENUM('a','b','c'), e2 ENUM('x1','x2') CHARACTER SET latin1, st SET('x','y','z'),
  j JSON, g GEOMETRY NULL, pt POINT NULL
"""

ROWS = [
    # every column NULL but the key
    {},
    # minimum values, the odd ones
    {"ti": "-128", "tiu": "255", "si": "-32768", "siu": "65535", "mi": "-8388608",
     "miu": "16777215", "i": "-2147483648", "iu": "4294967295", "bi": "-9223372036854775808",
     "biu": "18446744073709551615", "y": "1901", "d1": "-12345678.91",
     "d2": "-12345678901234567890123456789012345.123456789012345678901234567890",
     "d3": "-99999", "d4": "1234567890.0123456789", "f": "-3.4e38", "fu": "1.5",
     "db": "-1.7976931348623157e308", "b1": "1", "b13": "8191", "b64": "18446744073709551615",
     "dt": "'1000-01-01'", "tm": "'-838:59:59'", "tm1": "'-00:00:00.5'", "tm3": "'-12:34:56.789'",
     "tm6": "'838:59:58.999999'", "dtt": "'1000-01-01 00:00:00'", "dtt2": "'2024-02-29 23:59:59.99'",
     "dtt6": "'9999-12-31 23:59:59.999999'", "ts": "'1970-01-01 00:00:01'",
     "ts4": "'2038-01-19 03:14:07.9999'", "ts6": "'2001-09-09 01:46:40.000001'",
     "c": "'abc'", "cu": "'ünïcødé ✓ 𝄞'", "cl": "'déjà'", "vc": "''", "vcl": "REPEAT('l',1000)",
     "vcu": "REPEAT('€',300)", "bn": "0x00ff00ff", "vb": "0x00", "tt": "'tiny'",
     "tx": "'text ''quoted'' \"double\" \\\\ back\\ttab\\nnewline'",
     "mt": "REPEAT('m', 70000)", "lt": "REPEAT('𝄞', 1000)", "tb": "0x000102", "bl": "0xdeadbeef",
     "mb": "REPEAT(0xab, 70000)", "lb": "0x00", "e": "'c'", "e2": "'x2'", "st": "'x,z'",
     "j": "'{\"k\": [1, 2.5, null, \"s\"]}'",
     "g": "ST_GeomFromText('POLYGON((0 0,1 0,1 1,0 0))')", "pt": "ST_GeomFromText('POINT(1.5 -2.25)')"},
    # maximum values and zeros
    {"ti": "127", "tiu": "0", "si": "32767", "siu": "0", "mi": "8388607", "miu": "0",
     "i": "2147483647", "iu": "0", "bi": "9223372036854775807", "biu": "0", "y": "2155",
     "d1": "0.00", "d2": "0", "d3": "0", "d4": "0", "f": "0", "fu": "0", "db": "0", "b1": "0",
     "b13": "0", "b64": "0", "dt": "'9999-12-31'", "tm": "'00:00:00'", "tm1": "'00:00:00.1'",
     "tm3": "'838:59:59.000'", "tm6": "'-838:59:59.000000'", "dtt": "'2000-01-01 12:00:00'",
     "dtt2": "'1999-12-31 23:59:59.01'", "dtt6": "'0000-00-00 00:00:00'",
     "ts": "'2024-06-01 12:00:00'", "ts4": "'2024-06-01 12:00:00.0001'",
     "ts6": "'2024-06-01 12:00:00.5'", "c": "'  pad'", "cu": "''", "vc": "''", "bn": "''",
     "vb": "''", "e": "''", "st": "''", "j": "NULL"},
    {"ti": "-1", "d1": "-0.01", "d2": "0.000000000000000000000000000001", "f": "0.1", "db": "0.1",
     "tm3": "'-00:00:01.001'", "dtt6": "'2020-02-02 02:02:02.020202'", "c": "'x'", "e": "'a'",
     "st": "''"},
    {"ti": "1", "d1": "99999999.99", "d3": "99999", "f": "1e-30", "db": "2.2250738585072014e-308",
     "tm": "'-01:00:00'", "tm6": "'-00:00:00.000001'"},
]


def insert(row):
    if not row:
        return "INSERT INTO src.types (id) VALUES (NULL)"
    return (f"INSERT INTO src.types ({','.join(row)}) VALUES ({','.join(row.values())})")


def run_workload(cur, log_bin_compress_point):
    cur.execute("CREATE DATABASE src")
    cur.execute(f"CREATE TABLE src.types ({TYPES}) ENGINE=InnoDB DEFAULT CHARSET=utf8mb3")
    cur.execute("SET SESSION sql_mode='NO_ENGINE_SUBSTITUTION'")  # zero dates, '' into ENUM
    for r in ROWS:
        cur.execute(insert(r))
    # multi-row insert, then updates and deletes
    cur.execute("INSERT INTO src.types (i,vc,e) VALUES " +
                ",".join(f"({n},'row {n}','b')" for n in range(200)))
    cur.execute("UPDATE src.types SET vc=CONCAT(vc,'!'), i=i*2 WHERE i%3=0")
    cur.execute("UPDATE src.types SET id=id+100000 WHERE i=4")  # a primary key changes
    cur.execute("DELETE FROM src.types WHERE i%5=1")
    # a rolled-back transaction: nothing in the binlog
    cur.execute("BEGIN")
    cur.execute("INSERT INTO src.types (i,vc) VALUES (-777,'rolled back')")
    cur.execute("UPDATE src.types SET vc='rolled back' WHERE i=0")
    cur.execute("ROLLBACK")
    # a table without a primary key, duplicates included
    cur.execute("CREATE TABLE src.nokey (a INT, b VARCHAR(20), c DATETIME(3)) ENGINE=InnoDB")
    cur.execute("INSERT INTO src.nokey VALUES (1,'x','2020-01-01 00:00:00.123'),"
                "(1,'x','2020-01-01 00:00:00.123'),(2,NULL,NULL),(3,'y',NOW(3))")
    cur.execute("UPDATE src.nokey SET b='z' WHERE a=1 LIMIT 1")
    cur.execute("DELETE FROM src.nokey WHERE a=2")
    # the optional metadata lists signedness for numeric columns only and character sets for
    # text columns only: a YEAR, a POINT and an ENUM before the columns that depend on them
    cur.execute("CREATE TABLE src.ordering (id INT PRIMARY KEY, y YEAR, u TINYINT UNSIGNED, "
                "g POINT NULL, e ENUM('p','q'), b VARBINARY(10), t VARCHAR(10), "
                "u2 SMALLINT UNSIGNED, s SET('m','n') CHARACTER SET latin1, b2 BINARY(3))")
    cur.execute("INSERT INTO src.ordering VALUES (1, 2001, 255, ST_GeomFromText('POINT(1 2)'), "
                "'q', 0xff00fe, 'txt', 65535, 'm,n', 0x000a0d), "
                "(2, NULL, 0, NULL, NULL, '', '', 0, '', NULL)")
    # a non-transactional table (its changes end with a COMMIT query, not an XID)
    cur.execute("CREATE TABLE src.myisam (k INT PRIMARY KEY, v VARCHAR(10)) ENGINE=MyISAM")
    cur.execute("INSERT INTO src.myisam VALUES (1,'a'),(2,'b')")
    cur.execute("UPDATE src.myisam SET v='c' WHERE k=2")
    # a DDL in the middle of the stream, then more rows
    cur.execute("ALTER TABLE src.types ADD COLUMN added VARCHAR(20) DEFAULT 'dflt' AFTER i")
    cur.execute("INSERT INTO src.types (i,added,vc) VALUES (1000,'new','after ddl'),(1001,NULL,'x')")
    cur.execute("UPDATE src.types SET added='changed' WHERE i=1000")
    # a large blob
    cur.execute("CREATE TABLE src.big (id INT PRIMARY KEY, data LONGBLOB, txt LONGTEXT)")
    cur.execute("INSERT INTO src.big VALUES (1, REPEAT(0x5a01, 2621440), REPEAT('long text ', 100000))")
    cur.execute("UPDATE src.big SET data=CONCAT(data, 0xff) WHERE id=1")
    # compressed events from here on
    log_bin_compress_point(cur)
    cur.execute("INSERT INTO src.types (i,vc,tx) VALUES " +
                ",".join(f"({n},'compressed {n}',REPEAT('z',{n * 7}))" for n in range(2000, 2100)))
    cur.execute("UPDATE src.types SET tx=CONCAT(tx,'+') WHERE i BETWEEN 2000 AND 2050")
    cur.execute("DELETE FROM src.types WHERE i BETWEEN 2090 AND 2099")
    cur.execute("INSERT INTO src.nokey VALUES (9,'compressed',NULL)")


def run_sysbench(port, seconds=8, threads=2, tables=2):
    """oltp_write_only into src (prepare creates and fills the tables: DDL and inserts)."""
    sysbench = shutil.which("sysbench")
    if not sysbench:
        return False
    common = ["--db-driver=mysql", "--mysql-host=127.0.0.1", f"--mysql-port={port}",
              "--mysql-user=root", "--mysql-db=src", f"--tables={tables}", "--table-size=500"]
    subprocess.run([sysbench, "oltp_write_only"] + common + ["prepare"], check=True,
                   stdout=subprocess.DEVNULL)
    subprocess.run([sysbench, "oltp_write_only"] + common +
                   [f"--threads={threads}", f"--time={seconds}", "run"], check=True,
                   stdout=subprocess.DEVNULL)
    return True

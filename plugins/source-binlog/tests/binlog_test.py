#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""source-binlog against a real MariaDB (log_bin, binlog_format=ROW, binlog_row_metadata=FULL,
CRC32 checksums): the workload of workload.py runs, mysqlprobe reads the binlog files with
source-binlog into sink-jsonl, and a consumer applies the messages to an empty copy of the
schema; every table's CHECKSUM TABLE must equal the source's. Then the same files with
binlog_row_metadata=NONE semantics are not needed: column names come from the binlog.

usage: binlog_test.py MYSQLPROBE SOURCE_DIR TEST_PLUGINS_DIR"""
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(sys.argv[2], "tests", "live"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import MariaDB, skip  # noqa: E402
from reference import compare  # noqa: E402
from workload import run_sysbench, run_workload  # noqa: E402

try:
    import pymysql
except ImportError:
    skip("python3-pymysql is not installed (scripts/deps.sh installs it)")

BINARY_TYPES = {"binary", "varbinary", "tinyblob", "blob", "mediumblob", "longblob", "geometry",
                "point", "linestring", "polygon", "multipoint", "multilinestring",
                "multipolygon", "geometrycollection"}


def decode(binary, plugins, files, out, extra=""):
    """mysqlprobe reads the files (source-binlog) into a JSON-lines file (sink-jsonl)."""
    work = tempfile.mkdtemp(prefix="mp-binlog-")
    cfg = os.path.join(work, "binlog.yaml")
    with open(cfg, "w") as f:
        f.write(f"""serverport: 0
serveraddress: 127.0.0.1
plugins:
  directories: [{plugins}]
  cluster: none
  sources:
    - {{plugin: source-binlog, config: {{files: {json.dumps(files)}{extra}}}}}
  sinks:
    - {{plugin: sink-jsonl, records: [binlog.*], reports: false, config: {{path: {out}, flush: false}}}}
""")
    p = subprocess.run([binary, "-c", cfg], capture_output=True, text=True, timeout=300)
    if p.returncode != 0:
        raise AssertionError(f"mysqlprobe exited {p.returncode}: {p.stderr[-3000:]} "
                             f"(configuration in {work})")
    shutil.rmtree(work)
    return [json.loads(line) for line in open(out)], p.stderr


class Copy:
    """Applies MySQL Monitor messages to schema `dst` the way a consumer would: by key."""

    def __init__(self, cur, columns, dst="dst"):
        self.cur = cur
        self.dst = dst
        self.noop = 0  # updates and deletes that changed no row
        self.columns = columns  # table -> {column: data_type}
        self.applied = 0

    def value(self, table, col, v):
        t = self.columns[table][col]
        if v is None:
            return None
        if t in BINARY_TYPES:
            return base64.b64decode(v)
        if t == "bit":
            return int(v)  # BIT(n > 53) comes as a decimal string
        return v

    def where(self, table, keys):
        parts, args = [], []
        for k, v in keys.items():
            parts.append(f"`{k}` <=> %s")
            args.append(self.value(table, k, v))
        return " AND ".join(parts), args

    def apply(self, m):
        table = m["table_name"]
        if m["schema"] != "src":
            return
        if m["type"] == "row_insert":
            cols = list(m["values"])
            self.cur.execute(
                f"INSERT INTO {self.dst}.`{table}` ({','.join('`%s`' % c for c in cols)}) VALUES "
                f"({','.join(['%s'] * len(cols))})",
                [self.value(table, c, m["values"][c]) for c in cols])
        elif m["type"] == "row_update":
            after = m["after_values"]
            if after:
                w, wargs = self.where(table, m["keys"])
                sets = ",".join(f"`{c}`=%s" for c in after)
                n = self.cur.execute(f"UPDATE {self.dst}.`{table}` SET {sets} WHERE {w} LIMIT 1",
                                     [self.value(table, c, after[c]) for c in after] + wargs)
                # 0: a merged update that ended where it began, or one a replay after a crash
                # sends again after the merged change that held it (the row is already so);
                # CHECKSUM TABLE at the end is what tells
                self.noop += n == 0
        elif m["type"] == "row_delete":
            w, wargs = self.where(table, m["keys"])
            n = self.cur.execute(f"DELETE FROM {self.dst}.`{table}` WHERE {w} LIMIT 1", wargs)
            # 0: insert + delete merged (a row this consumer never had), or a replay
            self.noop += n == 0
        self.applied += 1


def rebuild(cur, msgs, dst="dst"):
    """The copy: the final schema of every table of src, empty, in `dst`; the messages applied
    in order; CHECKSUM TABLE of each table equal in both. Returns the column types."""
    cur.execute(f"CREATE DATABASE {dst}")
    cur.execute("SET SESSION sql_log_bin=0, time_zone='+00:00', sql_mode=''")
    cur.execute("SELECT table_name FROM information_schema.tables WHERE table_schema='src'")
    tables = sorted(r[0] for r in cur.fetchall())
    columns = {}
    for t in tables:
        cur.execute(f"SHOW CREATE TABLE src.`{t}`")
        ddl = cur.fetchone()[1]
        cur.execute(f"USE {dst}")
        cur.execute(ddl)
        cur.execute("SELECT column_name, data_type FROM information_schema.columns "
                    "WHERE table_schema='src' AND table_name=%s", (t,))
        columns[t] = {c: d for c, d in cur.fetchall()}
    cur.execute("SELECT table_name, column_name, column_type FROM information_schema.columns "
                "WHERE table_schema='src'")
    column_types = {}
    for t, c, ct in cur.fetchall():
        column_types.setdefault(t, {})[c] = ct
    copy = Copy(cur, columns, dst)
    for m in msgs:
        copy.apply(m)
    bad = []
    for t in tables:
        cur.execute(f"CHECKSUM TABLE src.`{t}`, {dst}.`{t}`")
        (_, a), (_, b) = cur.fetchall()
        cur.execute(f"SELECT COUNT(*) FROM src.`{t}`")
        n = cur.fetchone()[0]
        print(f"  {t}: {n} rows, checksum {a} {'==' if a == b else '!='} {b}")
        if a != b:
            bad.append(t)
    if bad:
        dump(cur, bad[0], dst)
    assert not bad, f"the copy differs from the source in {bad}"
    print(f"the copy built from {copy.applied} messages ({copy.noop} changed no row) equals "
          f"the source in all {len(tables)} tables (CHECKSUM TABLE)")
    return columns, column_types


def main():
    binary, _, plugins = sys.argv[1:4]
    args = ["--log-bin=mysql-bin", "--binlog-format=ROW", "--binlog-row-metadata=FULL",
            "--server-id=7", "--binlog-checksum=CRC32", "--max-allowed-packet=64M",
            "--character-set-server=utf8mb4"]
    with MariaDB(args) as db:
        conn = pymysql.connect(host="127.0.0.1", port=db.port, user="root", autocommit=True,
                               charset="utf8mb4")
        cur = conn.cursor()

        def compress(c):
            c.execute("SET GLOBAL log_bin_compress=ON")
            c.execute("SET GLOBAL log_bin_compress_min_len=10")
        run_workload(cur, compress)
        # MP_TEST_SHORT (the sanitizer steps of scripts/test.sh): a shorter sysbench run, the
        # same checks
        sysbench = run_sysbench(db.port, 3 if os.environ.get("MP_TEST_SHORT") else 8)
        cur.execute("FLUSH BINARY LOGS")
        cur.execute("SHOW BINARY LOGS")
        names = [r[0] for r in cur.fetchall()]
        datadir = os.path.join(db.dir, "data")
        files = [os.path.join(datadir, n) for n in names]

        work = tempfile.mkdtemp(prefix="mp-binlog-out-")
        if os.environ.get("MP_KEEP_BINLOGS"):
            os.makedirs(os.environ["MP_KEEP_BINLOGS"], exist_ok=True)
            for f in files:
                shutil.copy(f, os.environ["MP_KEEP_BINLOGS"])
        records, log = decode(binary, plugins, files, os.path.join(work, "rows.jsonl"))
        msgs = [json.loads(r["payload"]) for r in records]
        assert records and all(r["stream"] == "binlog.rows" for r in records)
        ids = [r["id"] for r in records]
        assert len(set(ids)) == len(ids), "record ids are not unique"
        assert [r["seq"] for r in records] == list(range(1, len(records) + 1))
        assert not any(m.get("table_name") == "types" and
                       "rolled back" in json.dumps(m) for m in msgs), "a rolled-back row was published"
        kinds = {}
        for m in msgs:
            kinds[m["type"]] = kinds.get(m["type"], 0) + 1
        print(f"{len(names)} binlog files, {len(msgs)} row changes {kinds}")

        columns, column_types = rebuild(cur, msgs)

        # the differential: every row image against mariadb-binlog's
        full, _ = decode(binary, plugins, files, os.path.join(work, "full.jsonl"),
                         ", full_images: true")
        got = compare(full, files, columns, column_types)
        if got is None:
            print("SKIPPED differential: mariadb-binlog is not installed")
        else:
            print(f"mariadb-binlog --verbose: {got[0]} row images, {got[1]} values, all equal")

        # filters: include and exclude patterns of schema.table
        kept, _ = decode(binary, plugins, files, os.path.join(work, "filtered.jsonl"),
                         ", include: ['src.*'], exclude: ['src.sbtest*', 'src.typ?s']")
        tables_kept = {json.loads(r["payload"])["table_name"] for r in kept}
        want = {m["table_name"] for m in msgs} - {"types"} - {t for t in columns
                                                               if t.startswith("sbtest")}
        assert tables_kept == want, (tables_kept, want)
        assert len(kept) == sum(1 for m in msgs if m["table_name"] in want)
        print(f"filters: {len(kept)} changes of {sorted(tables_kept)} kept")

        # the de-duplication window, as long as the whole run: every change of a row merges
        # into one (insert+update -> insert, update+update -> update, insert+delete -> none...);
        # the copy built from the merged messages must still equal the source
        merged, log = decode(binary, plugins, files, os.path.join(work, "merged.jsonl"),
                             ", dedupe_s: 3600")
        mmsgs = [json.loads(r["payload"]) for r in merged]
        ids = [r["id"] for r in merged]
        assert len(set(ids)) == len(ids), "merged record ids are not unique"
        assert len(mmsgs) < len(msgs) / 2, (len(mmsgs), len(msgs))
        assert sum(m.get("merged", 1) for m in mmsgs) == len(msgs), "merged parts != changes"
        rebuild(cur, mmsgs, "dst_merged")
        print(f"de-duplication window: {len(msgs)} changes became {len(mmsgs)} messages; the "
              "copy built from them equals the source")
        shutil.rmtree(work)  # kept when a check failed above (the records, for a look)


def dump(cur, t, dst):
    """The first differing row of a table, for the failure message."""
    cur.execute(f"SELECT * FROM src.`{t}` ORDER BY 1")
    a = cur.fetchall()
    cur.execute(f"SELECT * FROM {dst}.`{t}` ORDER BY 1")
    b = cur.fetchall()
    print(f"  {t}: {len(a)} rows in src, {len(b)} in dst")
    for ra, rb in zip(a, b):
        if ra != rb:
            for i, (x, y) in enumerate(zip(ra, rb)):
                if x != y:
                    print(f"  first difference, column {i}: src {str(x)[:200]!r} dst {str(y)[:200]!r}")
            break


if __name__ == "__main__":
    main()

#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""replay-mysql against a real MariaDB: the bundled sysbench captures (text and prepared
protocols) go through decoder-mysql's collector (`inbound: true`) into replay-mysql in one
node (`mysqlprobe -c replay.yaml -r X.pcap`), onto a fresh server prepared by sysbench with the
capture's tables. The server's Com_* counters must move exactly as the captured server's did
(the capture's server_truth), every command must be replayed, none skipped, and the divergence
report must be empty. Then the read-only mode (writes skipped and counted, reads replayed), the
binary record form, and the edge-case capture (every command replayed or skipped with a reason,
nothing lost, no crash). The records go one per host record, in batches (binary and JSON
lines) and in both forms. Last, over TLS (the server's certificate from a CA made here): with
`tls: verify_identity` every command is replayed through TLS sessions (the server's
Ssl_accepts), with another CA none is (each skipped as no_connection, the refusal logged).

usage: replay_test.py MYSQLPROBE SOURCE_DIR"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(sys.argv[2], "tests", "live"))
from harness import MariaDB, check, mariadb_tls, skip  # noqa: E402

try:
    import pymysql
except ImportError:
    skip("python3-pymysql is not installed (scripts/deps.sh installs it)")

BINARY, SOURCE = sys.argv[1], sys.argv[2]
PCAPS = os.path.join(SOURCE, "tests", "data", "pcap")
COUNTED = ["Com_begin", "Com_commit", "Com_delete", "Com_insert", "Com_select", "Com_update",
           "Com_stmt_execute", "Com_stmt_prepare", "Com_stmt_close"]



def status(db):
    c = pymysql.connect(host="127.0.0.1", port=db.port, user="root")
    try:
        with c.cursor() as cur:
            cur.execute("SHOW GLOBAL STATUS LIKE 'Com\\_%'")
            return {k: int(v) for k, v in cur.fetchall()}
    finally:
        c.close()


def status_of(db, name):
    c = pymysql.connect(host="127.0.0.1", port=db.port, user="root")
    try:
        with c.cursor() as cur:
            cur.execute("SHOW GLOBAL STATUS LIKE %s", (name,))
            return int(cur.fetchone()[1])
    finally:
        c.close()


def replay(db, pcap, work, extra="", inbound=""):
    """One node: the capture through the collector into replay-mysql; the divergence report."""
    report = os.path.join(work, "report.json")
    if os.path.exists(report):
        os.remove(report)
    cfg = os.path.join(work, "replay.yaml")
    with open(cfg, "w") as f:
        f.write(f"""serverport: 0
serveraddress: 127.0.0.1
records: {{drain_ms: 60000}}
plugins:
  cluster: none
  decoder: {{plugin: decoder-mysql, config: {{inbound: true, inbound_backpressure: wait{inbound}}}}}
  sinks:
    - {{plugin: replay-mysql, records: [mysql.inbound], reports: false,
        config: {{host: 127.0.0.1, port: {db.port}, report_file: {report}{extra}}}}}
""")
    p = subprocess.run([BINARY, "-c", cfg, "-r", pcap], capture_output=True, text=True,
                       timeout=300)
    if p.returncode != 0:
        raise AssertionError(f"mysqlprobe exited {p.returncode}: {p.stderr[-3000:]}")
    with open(report) as f:
        return json.load(f), json.loads(p.stdout), p.stderr


def squeeze(template):
    return re.sub(r"\s+", "", template.lower())


def delta(before, after):
    return {k: after.get(k, 0) - before.get(k, 0) for k in COUNTED}


def main():
    if not shutil.which("sysbench"):
        skip("sysbench is not installed (scripts/deps.sh installs it)")
    work = tempfile.mkdtemp(prefix="mp-replay-")
    pem, tls_args = mariadb_tls(work)  # the server's certificate: for 127.0.0.1 only
    with MariaDB(tls_args) as db:
        c = pymysql.connect(host="127.0.0.1", port=db.port, user="root")
        c.cursor().execute("CREATE DATABASE sbtest")
        c.close()
        # The capture's tables: 4 of 100,000 rows, as the captured server had (same ids; other
        # random strings, which no row count depends on).
        subprocess.run(["sysbench", "oltp_read_write", "--db-driver=mysql",
                        "--mysql-host=127.0.0.1", f"--mysql-port={db.port}",
                        "--mysql-user=root", "--mysql-db=sbtest", "--tables=4",
                        "--table-size=100000", "prepare"], check=True,
                       stdout=subprocess.DEVNULL)

        # Text: one JSON record per command; prepared: binary records in batches of 50.
        for name, extra, inbound in (("sysbench_text_rw_2t_20tx", "", ""),
                                     ("sysbench_ps_rw_2t_20tx", "",
                                      ", inbound_format: binary, inbound_batch: 50")):
            truth = json.load(open(os.path.join(PCAPS, name + ".truth.json")))
            before = status(db)
            rep, offline, _ = replay(db, os.path.join(PCAPS, name + ".pcap"), work, extra,
                                     inbound)
            moved = delta(before, status(db))
            want = {k: truth["server_truth"]["status_delta"].get(k, 0) for k in COUNTED}
            check(moved == want, f"{name}: the target's Com_* moved as the captured server's "
                                 f"did: {moved}")
            commands = truth["wire_truth"]["client_commands_total"]
            check(rep["replayed"] == commands,
                  f"{name}: {rep['replayed']} commands replayed of {commands} captured")
            check(sum(rep["skipped"].values()) == 0, f"{name}: none skipped: {rep['skipped']}")
            div = rep["divergence"]
            check(div["divergent_templates"] == 0 and div["divergent_commands"] == 0,
                  f"{name}: the divergence report is empty")
            check(rep["target_errors"] == 0, f"{name}: no error on the target")
            # The truth's reference decoder spaces templates its own way: compared without spaces.
            by_template = {squeeze(t["template"]): t for t in div["templates"]
                           if t["command"] in ("COM_QUERY", "COM_STMT_EXECUTE")}
            for t in truth["wire_truth"]["templates"]:
                got = by_template.get(squeeze(t["fingerprint"]))
                check(got is not None and got["count"] == t["count"] and
                      got["source"]["rows"] == t["rows"] and got["target"]["rows"] == t["rows"],
                      f"{name}: template '{t['fingerprint'][:40]}': {t['count']} runs, "
                      f"{t['rows']} rows on both sides")

        # Read-only: the writes are skipped (and counted), the rest runs.
        name = "sysbench_text_rw_2t_20tx"
        truth = json.load(open(os.path.join(PCAPS, name + ".truth.json")))
        sd = truth["server_truth"]["status_delta"]
        before = status(db)
        rep, _, _ = replay(db, os.path.join(PCAPS, name + ".pcap"), work,
                           ", read_only: true, speed: max", ", inbound_batch: 16")  # JSON lines
        moved = delta(before, status(db))
        writes = sd["Com_insert"] + sd["Com_update"] + sd["Com_delete"]
        check(moved["Com_insert"] == moved["Com_update"] == moved["Com_delete"] == 0,
              "read_only: no write reached the target")
        check(moved["Com_select"] == sd["Com_select"], "read_only: every SELECT ran")
        check(rep["skipped"]["read_only"] == writes,
              f"read_only: {writes} writes skipped and counted")

        # The edge cases (errors, change user, LOCAL INFILE, 16 MiB packets, compression, TLS,
        # cursors, bulk execute...): every command the node decoded is replayed or skipped with
        # a reason. The capture's tables are not on this server (their prepares fail, their
        # executes are skipped as prepare_failed), but its syntax errors and its unknown table
        # fail with the same codes on the target.
        name = "edge_cases_small"
        c = pymysql.connect(host="127.0.0.1", port=db.port, user="root")
        c.cursor().execute("CREATE DATABASE probe_edge")
        c.close()
        rep, offline, log = replay(db, os.path.join(PCAPS, name + ".pcap"), work, ", speed: max")
        decoded = sum(offline["totals"]["commands"].values())
        handled = rep["replayed"] + sum(rep["skipped"].values())
        print(json.dumps({k: v for k, v in rep.items() if k != "divergence"}))
        check(handled == decoded, f"edge cases: all {decoded} decoded commands replayed "
                                  f"({rep['replayed']}) or skipped with a reason")
        check(rep["skipped"]["not_replayable"] == offline["totals"]["commands"].get(
            "COM_STMT_BULK_EXECUTE", 0), "edge cases: only bulk execute is not replayable")
        check(rep["skipped"]["unknown_statement"] == 0, "edge cases: every statement known")
        for t in rep["divergence"]["templates"]:
            for sample in t["samples"]:
                print(f"  {sample['kind']}: {sample['sql'][:70]!r}: {sample['source']} / "
                      f"{sample['target']}")
        same_errors = [t for t in rep["divergence"]["templates"] if t["source"]["errors"] and
                       t["source"]["errors"] == t["target"]["errors"]]
        check(len(same_errors) >= 4, f"edge cases: {len(same_errors)} templates failed with the "
                                     "same error codes on both sides")

        # Over TLS: verified against the CA that signed the server's certificate, every command
        # goes through TLS sessions; another CA: no connection opens, nothing runs.
        name = "sysbench_text_rw_2t_20tx"
        commands = json.load(open(os.path.join(PCAPS, name + ".truth.json")))[
            "wire_truth"]["client_commands_total"]
        accepts = status_of(db, "Ssl_accepts")
        rep, _, log = replay(db, os.path.join(PCAPS, name + ".pcap"), work,
                             f", speed: max, tls: verify_identity, tls_ca: '{pem['ca.crt']}'")
        tls_sessions = status_of(db, "Ssl_accepts") - accepts
        check(rep["replayed"] == commands and rep["connections_failed"] == 0,
              f"tls verify_identity: {rep['replayed']} of {commands} commands replayed")
        check(tls_sessions >= rep["connections_opened"] >= 1,
              f"tls verify_identity: {rep['connections_opened']} connections, {tls_sessions} TLS "
              "sessions accepted by the server")
        rep, _, log = replay(db, os.path.join(PCAPS, name + ".pcap"), work,
                             f", speed: max, tls: verify_ca, tls_ca: '{pem['other.crt']}'")
        check(rep["replayed"] == 0 and rep["skipped"]["no_connection"] == commands and
              rep["connections_failed"] >= 1,
              f"tls with another CA: nothing replayed, {rep['skipped']['no_connection']} "
              "commands skipped as no_connection")
        check("certificate" in log, "tls with another CA: the refusal is logged with its reason")
    shutil.rmtree(work, ignore_errors=True)
    print("PASS")


if __name__ == "__main__":
    main()

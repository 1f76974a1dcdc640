#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Live accuracy: a real mariadbd (performance_schema on) on loopback, sysbench oltp_read_write
with the text protocol and again with prepared statements, mysqlprobe capturing on `lo` and
serving /collector. The probe's counts must equal the server's own: Com_* deltas per statement
kind; text run: each template's count equals its performance_schema digest's COUNT_STAR, and
every digest has its template; prepared run (MariaDB keeps no digests for executes): each
template's count equals the server's general log, in both directions. The server's figures are
read over the unix socket, which the probe does not see.
Usage: live_sysbench.py MYSQLPROBE [SECONDS]"""
import json
import os
import re
import subprocess
import sys
import threading

sys.path.insert(0, os.path.dirname(__file__))
from harness import MariaDB, Probe, require_live_sysbench, wait_for  # noqa: E402

SYSBENCH = require_live_sysbench()
import pymysql  # noqa: E402
import websocket  # noqa: E402

binary = sys.argv[1]
seconds = int(sys.argv[2]) if len(sys.argv) > 2 else 10
RATE = 40  # transactions per second: a fixed load, the same under sanitizers


def admin(db):
    return pymysql.connect(unix_socket=f"{db.dir}/mysqld.sock", user="root", autocommit=True)


def status(conn):
    with conn.cursor() as cur:
        cur.execute("SHOW GLOBAL STATUS")
        return {k: int(v) for k, v in cur.fetchall() if v.isdigit()}


def digests(db):
    with admin(db) as c, c.cursor() as cur:
        cur.execute("SELECT DIGEST_TEXT, COUNT_STAR, AVG_TIMER_WAIT, MAX_TIMER_WAIT FROM "
                    "performance_schema.events_statements_summary_by_digest "
                    "WHERE SCHEMA_NAME = 'sbtest' AND DIGEST_TEXT IS NOT NULL")
        return cur.fetchall()


def execute_timer(db):
    """The server's only timer for prepared executes: all of them together."""
    with admin(db) as c, c.cursor() as cur:
        cur.execute("SELECT COUNT_STAR, AVG_TIMER_WAIT, MAX_TIMER_WAIT FROM "
                    "performance_schema.events_statements_summary_global_by_event_name "
                    "WHERE EVENT_NAME = 'statement/com/Execute'")
        return cur.fetchone() or (0, 0, 0)


def norm(text):
    """One spelling for our fingerprints and the server's digest texts."""
    t = text.lower().replace("`", "").replace("(...)", "(?+)")
    t = t.replace("distinctrow", "distinct")  # the server prints DISTINCT as its synonym
    return re.sub(r"\s+", "", t)


# One token of a statement as the server logs it: a quoted identifier (kept), a quoted string, or
# a standalone number (not the digits of an identifier such as sbtest3).
LITERAL = re.compile(r"`(?:[^`]|``)*`|'(?:[^'\\]|\\.|'')*'|\"(?:[^\"\\]|\\.|\"\")*\"|"
                     r"(?<![\w$])(?:0x[0-9a-f]+|\d+(?:\.\d*)?(?:e[-+]?\d+)?|\.\d+(?:e[-+]?\d+)?)"
                     r"(?![\w$])", re.I)
# A list of literals after IN / VALUES, and the rows following it: the probe collapses them to (?+).
ROW = r"\(\s*\?(?:\s*,\s*\?)*\s*\)"
LIST = re.compile(rf"\b(in|values?)\s*{ROW}(?:\s*,\s*{ROW})*")


def shape(sql):
    """A statement the general log shows (an Execute with its parameters filled in, or a Query)
    with its literals as '?', lists of them as (?+); norm() of it is the template's key."""
    t = LITERAL.sub(lambda m: m.group(0) if m.group(0)[0] == "`" else "?", sql)
    return LIST.sub(r"\1(?+)", t.lower())


# "261201 21:10:12\t     4 Query\tSHOW ..." or, in the same second, "\t\t     8 Execute\tSELECT ..."
LOG_LINE = re.compile(r"^(?:\d{6}\s+\d{1,2}:\d\d:\d\d)?\t+\s*(\d+) ([A-Za-z]+(?: [A-Za-z]+)?)\t(.*)$")
LOG_HEADER = re.compile(r"^(?:\S+, Version: .* started with:|Tcp port: \d+ .*|"
                        r"Time\t+\s*Id Command\t.*)$")  # written when the file is opened


def general_log(path, admin_id):
    """Statements of the TCP connections (their Connect line says 'using TCP/IP') in a general log
    file: (templates {key: [count, text]} of Execute and Query lines, commands {name: count},
    lines of other threads left out)."""
    entries = []
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            line = line.rstrip("\n")
            m = LOG_LINE.match(line)
            if m:
                entries.append([int(m.group(1)), m.group(2), m.group(3)])
            elif LOG_HEADER.match(line):
                continue
            elif entries and entries[-1][1] in ("Query", "Execute", "Prepare"):
                entries[-1][2] += "\n" + line  # a statement spanning lines
    tcp = {tid for tid, cmd, arg in entries if cmd == "Connect" and "using TCP/IP" in arg}
    tcp.discard(admin_id)
    templates, commands, other = {}, {}, 0
    for tid, cmd, arg in entries:
        if tid not in tcp:
            other += 1
            continue
        commands[cmd] = commands.get(cmd, 0) + 1
        if cmd in ("Execute", "Query"):
            text = shape(arg)
            templates.setdefault(norm(text), [0, text])[0] += 1
    return templates, commands, other


def collector(port, reports, stop):
    ws = websocket.create_connection(f"ws://127.0.0.1:{port}/collector", timeout=2)
    while not stop.is_set():
        try:
            msg = ws.recv()
        except websocket.WebSocketTimeoutException:
            continue
        except Exception:
            break
        if msg:
            reports.append(json.loads(msg))
            if reports[-1].get("final"):
                break
    ws.close()


def run(db, mode, log_path=None):
    sb = [SYSBENCH, "oltp_read_write", "--db-driver=mysql", "--mysql-host=127.0.0.1",
          f"--mysql-port={db.port}", "--mysql-user=root", "--mysql-db=sbtest", "--tables=4",
          "--table-size=1000", "--threads=4", f"--time={seconds}", f"--rate={RATE}",
          f"--db-ps-mode={mode}", "--rand-seed=7"]
    yaml = f"""serverport: 0
serveraddress: 127.0.0.1
interval: 2
probe:
  device: lo
  port: {db.port}
  workers: 2
plugins:
  cluster: none
  sinks: [sink-websocket]
"""
    with admin(db) as c, c.cursor() as cur:
        cur.execute("TRUNCATE TABLE performance_schema.events_statements_summary_by_digest")
        cur.execute("TRUNCATE TABLE "
                    "performance_schema.events_statements_summary_global_by_event_name")
    with Probe(binary, yaml) as probe:
        reports, stop = [], threading.Event()
        t = threading.Thread(target=collector, args=(probe.http_port, reports, stop))
        t.start()
        # One admin connection for both readings: between them it runs only the second SHOW.
        # With log_path, the general log is on for the run only; this connection's own lines
        # (unix socket, its Connect line not in the log) are left out by thread id.
        conn = admin(db)
        with conn.cursor() as cur:
            cur.execute("SELECT CONNECTION_ID()")
            admin_id = cur.fetchone()[0]
            if log_path:
                cur.execute("SET GLOBAL general_log_file = %s", (log_path,))
                cur.execute("SET GLOBAL general_log = 1")
        before = status(conn)
        out = subprocess.run(sb + ["run"], capture_output=True, text=True)
        if out.returncode != 0:
            raise AssertionError("sysbench failed: " + out.stderr[-2000:])
        after = status(conn)
        if log_path:
            with conn.cursor() as cur:
                cur.execute("SET GLOBAL general_log = 0")
        conn.close()
        delta = {k: after.get(k, 0) - before.get(k, 0) for k in after}
        m0 = None

        def settled():
            nonlocal m0
            m = {k: v for k, v in probe.metrics().items() if "_http_" not in k}
            done = m == m0
            m0 = m
            opened = m.get("mysqlprobe_stream_connections_opened_total", 0)
            closed = sum(v for k, v in m.items() if "_stream_connections_closed_" in k or
                         "_stream_connections_evicted_" in k)
            return m if done and opened >= 4 and closed == opened else None
        try:
            metrics = wait_for(settled, 60, "the probe to see every connection end")
        except AssertionError:
            print({k: v for k, v in probe.metrics().items() if "connections" in k or "drop" in k})
            raise
        rc = probe.stop()
        t.join(10)
        stop.set()
    return delta, metrics, reports, rc, admin_id


def summed(reports):
    commands, templates = {}, {}
    for r in reports:
        for k, v in r.get("totals", {}).get("commands", {}).items():
            commands[k] = commands.get(k, 0) + v
        for t in r.get("templates", []):
            key = norm(t["fingerprint"])
            agg = templates.setdefault(key, {"count": 0, "errors": 0, "p50": [], "p99": [],
                                             "text": t["fingerprint"]})
            agg["count"] += t["count"]
            agg["errors"] += t["errors"]
            agg["p50"].append(t["latency_us"]["p50"])
            agg["p99"].append(t["latency_us"]["p99"])
    return commands, templates


failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)


with MariaDB(["--performance-schema=ON", "--max-connections=100"]) as db:
    with admin(db) as c, c.cursor() as cur:
        cur.execute("CREATE DATABASE sbtest")
    prep = subprocess.run([SYSBENCH, "oltp_read_write", "--db-driver=mysql",
                           "--mysql-host=127.0.0.1", f"--mysql-port={db.port}",
                           "--mysql-user=root", "--mysql-db=sbtest", "--tables=4",
                           "--table-size=1000", "prepare"], capture_output=True, text=True)
    if prep.returncode != 0:
        raise SystemExit("sysbench prepare failed: " + prep.stderr)

    # --- text protocol ---
    delta, m, reports, rc, _ = run(db, "disable")
    commands, templates = summed(reports)
    print(f"text run: {sum(commands.values())} commands in {len(reports)} reports, "
          f"{len(templates)} templates")
    check(rc == 0, "probe exited 0")
    check(reports and reports[-1].get("final"), "the last report received is the final one")
    check(m["mysqlprobe_capture_pcap_kernel_dropped"] == 0 and
          m["mysqlprobe_stream_queue_dropped_total"] == 0 and
          m["mysqlprobe_stream_gap_bytes_total"] == 0, "no drops, no gaps")
    kinds = {"select": "Com_select", "insert": "Com_insert", "update": "Com_update",
             "delete": "Com_delete", "begin": "Com_begin", "commit": "Com_commit"}
    for word, com in kinds.items():
        ours = sum(t["count"] for k, t in templates.items() if k.startswith(word))
        check(ours == delta.get(com, 0), f"{com}: server {delta.get(com, 0)}, probe {ours}")
    # Questions also counts this script's own SHOW GLOBAL STATUS on the unix socket, which the
    # probe cannot see: the server tells how many there were.
    own = delta.get("Com_show_status", 0)
    check(commands.get("COM_QUERY", 0) == delta["Questions"] - commands.get("COM_QUIT", 0) - own,
          f"COM_QUERY {commands.get('COM_QUERY', 0)} = Questions {delta['Questions']} - "
          f"COM_QUIT {commands.get('COM_QUIT', 0)} - unix-socket statements {own}")
    rows = digests(db)
    server = {norm(text): (count, avg, mx) for text, count, avg, mx in rows}
    server_text = {norm(text): text for text, _, _, _ in rows}
    if os.environ.get("MP_DEBUG_DIGESTS"):
        for text, count, _, _ in digests(db):
            print("   digest:", count, text)
    # performance_schema can miss a few statements that Com_* counted (seen: 3 of 950, at the
    # end of a run). Such a difference is accepted only when the server's two counts disagree
    # with each other by at least as much for that statement kind, and the probe agrees with
    # Com_*; it is printed, never silent.
    digest_sum = {w: sum(c for k, (c, _, _) in server.items() if k.startswith(w)) for w in kinds}

    def digests_explain(word, excess, server_excess):
        """A difference of `excess` statements of kind `word` between the probe and the digests
        is the server's own when its Com_* counter and its digests differ by at least as much the
        same way (`server_excess`) and the probe's statements of that kind equal Com_*."""
        probe_kind = sum(x["count"] for k, x in templates.items() if word and k.startswith(word))
        return (word is not None and 0 < excess <= server_excess and
                probe_kind == delta.get(kinds[word], 0))

    for key, t in sorted(templates.items()):
        s = server.get(key)
        if s is not None and s[0] != t["count"]:
            word = next((w for w in kinds if key.startswith(w)), None)
            server_gap = delta.get(kinds[word], 0) - digest_sum[word] if word else 0
            explained = digests_explain(word, t["count"] - s[0], server_gap)
            print(f"note template '{t['text'][:60]}': probe {t['count']}, digest {s[0]}; "
                  f"{kinds.get(word)} {delta.get(kinds.get(word), 0)} vs digests of that kind "
                  f"{digest_sum.get(word)}: " +
                  ("performance_schema missed statements that Com_* counted" if explained
                   else "NOT explained by the server's own counters"))
            check(explained, f"template '{t['text'][:60]}' difference explained by the server")
            continue
        check(s is not None and s[0] == t["count"],
              f"template '{t['text'][:60]}': probe {t['count']}, digest {s[0] if s else None}")
        if s is not None:
            print(f"     probe p50 {min(t['p50']):.0f}-{max(t['p50']):.0f} us, p99 up to "
                  f"{max(t['p99']):.0f} us | server avg {s[1] / 1e6:.0f} us, max {s[2] / 1e6:.0f} us")
    # The other direction: every digest of schema sbtest has its template. A digest the probe
    # lacks is accepted only when the digests hold more statements of that kind than Com_*
    # counted between its two readings (statements outside the run) and the probe agrees with
    # Com_*; it is printed, never silent.
    absent = sorted(k for k in server if k not in templates)
    for key in absent:
        count = server[key][0]
        word = next((w for w in kinds if key.startswith(w)), None)
        surplus = digest_sum[word] - delta.get(kinds[word], 0) if word else 0
        explained = digests_explain(word, count, surplus)
        print(f"note digest '{server_text[key][:60]}': {count} statements, no probe template; "
              f"{kinds.get(word)} {delta.get(kinds.get(word), 0)} vs digests of that kind "
              f"{digest_sum.get(word)}: " +
              ("the digests counted statements outside Com_*'s two readings" if explained
               else "NOT explained by the server's own counters"))
        check(explained, f"digest '{server_text[key][:60]}' without a template explained by "
              "the server")
    if not absent:
        check(len(server) > 0, f"every digest of schema sbtest ({len(server)}) has its template")

    # --- prepared statements ---
    log_path = os.path.join(db.dir, "general.log")
    delta, m, reports, rc, admin_id = run(db, "auto", log_path)
    commands, templates = summed(reports)
    print(f"prepared run: {sum(commands.values())} commands in {len(reports)} reports, "
          f"{len(templates)} templates")
    check(rc == 0, "probe exited 0")
    for cmd, com in {"COM_STMT_EXECUTE": "Com_stmt_execute", "COM_STMT_PREPARE": "Com_stmt_prepare",
                     "COM_STMT_CLOSE": "Com_stmt_close"}.items():
        check(commands.get(cmd, 0) == delta.get(com, 0),
              f"{com}: server {delta.get(com, 0)}, probe {commands.get(cmd, 0)}")
    # sysbench prepares BEGIN and COMMIT too; the server counts their executes in Com_begin and
    # Com_commit (and text ones, if a sysbench sends them so, count there as well).
    for word, com in kinds.items():
        ours = sum(t["count"] for k, t in templates.items() if k.startswith(word))
        check(ours == delta.get(com, 0), f"{com} (executes): server {delta.get(com, 0)}, probe {ours}")

    # MariaDB keeps no digests for prepared executes: the server's per-statement account is its
    # general log, on for this run only. Only threads whose Connect line says TCP/IP count (the
    # probe sees nothing else); this script's own statements on the unix socket are left out.
    logged, log_cmds, other = general_log(log_path, admin_id)
    print(f"general log: {sum(log_cmds.values())} lines of {log_cmds.get('Connect', 0)} TCP "
          f"connections; {other} lines of other threads left out (this script's connection "
          f"{admin_id}, unix socket)")
    log_kind = {w: sum(n for k, (n, _) in logged.items() if k.startswith(w)) for w in kinds}
    execs, com_exec = log_cmds.get("Execute", 0), delta.get("Com_stmt_execute", 0)
    if execs == com_exec:
        check(True, f"general log Execute lines {execs} = Com_stmt_execute {com_exec}")
    else:
        # Accepted only when the server's Com_* counters per statement kind show the same
        # shortfall of its log, and the probe agrees with Com_stmt_execute; printed.
        kind_gap = sum(delta.get(com, 0) - log_kind[w] for w, com in kinds.items())
        explained = kind_gap == com_exec - execs and commands.get("COM_STMT_EXECUTE") == com_exec
        print(f"note general log Execute lines {execs}, Com_stmt_execute {com_exec}; Com_* by "
              f"kind exceed the log by {kind_gap}: " +
              ("the general log lacks executes that Com_* counted" if explained
               else "NOT explained by the server's own counters"))
        check(explained, f"general log Execute lines {execs} vs Com_stmt_execute {com_exec} "
              "explained by the server")
    for cmd, com in {"Prepare": "Com_stmt_prepare", "Close stmt": "Com_stmt_close"}.items():
        check(log_cmds.get(cmd, 0) == delta.get(com, 0),
              f"general log {cmd} lines {log_cmds.get(cmd, 0)} = {com} {delta.get(com, 0)}")
    check(log_cmds.get("Query", 0) == commands.get("COM_QUERY", 0),
          f"general log Query lines {log_cmds.get('Query', 0)}, probe COM_QUERY "
          f"{commands.get('COM_QUERY', 0)}")
    # The server's only timer for executes covers all of them together.
    n_exec, avg_exec, max_exec = execute_timer(db)
    print(f"server timer, performance_schema statement/com/Execute (all templates together): "
          f"{n_exec} executes, avg {avg_exec / 1e6:.0f} us, max {max_exec / 1e6:.0f} us")
    # Both directions: every template has its general-log statements and every general-log
    # template its probe template, with equal counts. A difference is accepted only when the
    # server's Com_* counter and its log disagree by at least as much for that statement kind,
    # in the same direction, and the probe agrees with Com_*; it is printed, never silent.
    for key in sorted(set(templates) | set(logged)):
        t, g = templates.get(key), logged.get(key)
        ours, theirs = (t["count"] if t else 0), (g[0] if g else 0)
        text = t["text"] if t else g[1]
        if t is not None and g is not None and ours == theirs:
            check(True, f"template '{text[:60]}': probe {ours}, general log {theirs}")
            print(f"     probe p50 {min(t['p50']):.0f}-{max(t['p50']):.0f} us, p99 up to "
                  f"{max(t['p99']):.0f} us | server: no per-template timer for executes")
            continue
        word = next((w for w in kinds if key.startswith(w)), None)
        com = delta.get(kinds[word], 0) if word else None
        probe_kind = sum(x["count"] for k, x in templates.items() if word and k.startswith(word))
        if ours > theirs:
            explained = word is not None and com - log_kind[word] >= ours - theirs
            why = "the general log lacks statements that Com_* counted"
        else:
            explained = word is not None and log_kind[word] - com >= theirs - ours
            why = "the general log has statements that Com_* did not count"
        explained = explained and probe_kind == com
        print(f"note template '{text[:60]}': probe {ours if t else None}, general log "
              f"{theirs if g else None}; {kinds.get(word)} {com} vs general log of that kind "
              f"{log_kind.get(word)}: " + (why if explained else
                                           "NOT explained by the server's own counters"))
        check(explained, f"template '{text[:60]}' difference explained by the server")

if failures:
    print(f"{len(failures)} checks failed")
    sys.exit(1)
print("live sysbench accuracy: OK")

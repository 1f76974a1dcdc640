#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Coverage against the server's own counters, live: a real mariadbd (grants on) on loopback,
mysqlprobe capturing on `lo` with decoder-mysql's `server` credentials (a user with no
privilege at all), sysbench oltp_read_write with the text protocol and then with prepared
statements. Checks:
1. undisturbed: once the load has ended, the report's coverage since the first reading is
   exactly 1 for Questions and for every Com_* compared (seen == counted, both not zero where
   the load has such statements), the intervals add up to the total, and /metrics says
   1000000 ppm; the watcher's own SHOW GLOBAL STATUS is in neither figure;
2. a capture forced to drop (1 MiB kernel buffer read once a second, unthrottled sysbench and
   large result sets): a report whose capture counts kernel drops says coverage below 1;
3. wrong credentials: the probe runs, every report's coverage says the server refused the login,
   and the password is in no log line and no report; an offline run's table says so too;
4. connections and statements from before the probe: sysbench with prepared statements already
   running when two probes start, one with the credentials (PROCESS, SELECT on
   performance_schema) and one without: with them no execute is unresolved, every template has
   its user and schema, and the coverage is exact; without them the same traffic has unresolved
   executes (the case is real);
5. capture over two threads (capture-pcap `fanout: 2`, PACKET_FANOUT by flow hash) beside one
   thread, on the same traffic at the same time: the same commands, templates, counts, errors
   and rows, and both coverages exact.
Usage: live_coverage.py MYSQLPROBE"""
import json
import os
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
from harness import MariaDB, Probe, require_live_sysbench, wait_for  # noqa: E402

SYSBENCH = require_live_sysbench()
import pymysql  # noqa: E402
import websocket  # noqa: E402

binary = sys.argv[1]
SECRET = "cov-Secret-7781"
failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)


def root(db):
    return pymysql.connect(unix_socket=db.socket, user="root", autocommit=True)


class Reports(threading.Thread):
    """Every report of a node's /collector."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.ws = websocket.create_connection(f"ws://127.0.0.1:{port}/collector", timeout=1)
        self.items, self.stop = [], threading.Event()
        self.start()

    def run(self):
        while not self.stop.is_set():
            try:
                msg = self.ws.recv()
            except websocket.WebSocketTimeoutException:
                continue
            except Exception:
                return
            if msg:
                self.items.append(json.loads(msg))

    def close(self):
        self.stop.set()
        self.join(5)
        self.ws.close()


def probe_yaml(db, password, capture="capture-pcap", user="watch", server=True, workers=2):
    decoder = (f'{{server: "127.0.0.1:{db.port}", server_user: {user}, '
               f'server_password: "{password}"}}' if server else "{}")
    return f"""serverport: 0
serveraddress: 127.0.0.1
interval: 1
probe: {{device: lo, port: {db.port}, workers: {workers}}}
plugins:
  capture: {capture}
  decoder:
    plugin: decoder-mysql
    config: {decoder}
  cluster: none
  sinks: [sink-websocket]
"""


def sysbench(db, mode, seconds, rate, threads=4, test="oltp_read_write"):
    cmd = [SYSBENCH, test, "--db-driver=mysql", "--mysql-host=127.0.0.1",
           f"--mysql-port={db.port}", "--mysql-user=sb", "--mysql-password=sb",
           "--mysql-db=sbtest", "--tables=2", "--table-size=1000", f"--threads={threads}",
           f"--time={seconds}", f"--rate={rate}", f"--db-ps-mode={mode}", "--rand-seed=11", "run"]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise AssertionError("sysbench failed: " + out.stderr[-2000:])


with MariaDB(["--max-connections=200", "--performance-schema=ON"], grants=True) as db:
    with root(db) as c, c.cursor() as cur:
        cur.execute("CREATE DATABASE sbtest")
        cur.execute("CREATE USER 'sb'@'127.0.0.1' IDENTIFIED BY 'sb'")
        cur.execute("GRANT ALL ON sbtest.* TO 'sb'@'127.0.0.1'")
        # The watcher's account: no privilege (SHOW GLOBAL STATUS needs none).
        cur.execute(f"CREATE USER 'watch'@'127.0.0.1' IDENTIFIED BY '{SECRET}'")
        # Part 4's account lists the sessions and their prepared statements.
        cur.execute(f"CREATE USER 'watch4'@'127.0.0.1' IDENTIFIED BY '{SECRET}'")
        cur.execute("GRANT PROCESS ON *.* TO 'watch4'@'127.0.0.1'")
        cur.execute("GRANT SELECT ON performance_schema.* TO 'watch4'@'127.0.0.1'")
    prep = subprocess.run([SYSBENCH, "oltp_read_write", "--db-driver=mysql",
                           "--mysql-host=127.0.0.1", f"--mysql-port={db.port}",
                           "--mysql-user=sb", "--mysql-password=sb", "--mysql-db=sbtest",
                           "--tables=2", "--table-size=1000", "prepare"],
                          capture_output=True, text=True)
    if prep.returncode != 0:
        raise SystemExit("sysbench prepare failed: " + prep.stderr)

    # --- 1: undisturbed. From here on nothing else talks to the server (no unix socket use):
    # every command the server counts comes over TCP, which the probe sees.
    with Probe(binary, probe_yaml(db, SECRET)) as probe:
        reports = Reports(probe.http_port)
        wait_for(lambda: any("total" in r.get("coverage", {}) for r in reports.items), 20,
                 "a first comparison")
        sysbench(db, "disable", 4, 60)
        sysbench(db, "auto", 4, 60)

        def quiet():
            # Two compared intervals in a row with nothing seen nor counted: the load is over
            # on both sides.
            cov = [r["coverage"] for r in reports.items if "interval" in r.get("coverage", {})]
            return len(cov) >= 2 and all(c["interval"]["questions"]["counted"] == 0 and
                                         c["interval"]["questions"]["seen"] == 0
                                         for c in cov[-2:]) and cov[-1]
        last = wait_for(quiet, 30, "the load to end on both sides")
        total = last["total"]
        print("coverage since the first reading:",
              {k: (v["seen"], v["counted"]) for k, v in total.items()})
        check(last["ratio"] == 1, f"coverage ratio since the first reading is 1 ({last['ratio']})")
        for key, fig in total.items():
            check(fig["seen"] == fig["counted"],
                  f"{key}: probe {fig['seen']} = server {fig['counted']}")
        for key in ("questions", "select", "insert", "update", "delete", "begin", "commit",
                    "stmt_execute", "stmt_prepare", "stmt_close"):
            check(total[key]["counted"] > 0, f"{key}: the load had some ({total[key]['counted']})")
        check(total["questions"]["counted"] > 2000,
              f"questions counted: {total['questions']['counted']} (two sysbench runs)")
        # The intervals add up to the total (a report per interval, none lost).
        compared = [r["coverage"]["interval"] for r in reports.items
                    if "interval" in r.get("coverage", {})]
        summed = sum(i["questions"]["counted"] for i in compared)
        check(summed == total["questions"]["counted"],
              f"the intervals' counts add up to the total ({summed})")
        check(last["unknown_executes"] == 0, "no execute of an unknown statement")
        check(last["failed_readings"] == 0, "no reading failed")
        m = probe.metrics()
        check(m.get("mysqlprobe_decoder_mysql_coverage_ratio_ppm") == 1000000,
              f"/metrics coverage_ratio_ppm {m.get('mysqlprobe_decoder_mysql_coverage_ratio_ppm')}")
        check(m.get("mysqlprobe_decoder_mysql_coverage_seen_questions_total") ==
              m.get("mysqlprobe_decoder_mysql_coverage_counted_questions_total") ==
              total["questions"]["counted"], "/metrics seen = counted = the report's total")
        check("coverage: reading the counters of 127.0.0.1:" in probe.log(),
              "the log says which server is read")
        check(SECRET not in probe.log(), "the password is in no log line")
        reports.close()

    # --- 2: a capture that drops.
    drop_capture = "{plugin: capture-pcap, config: {buffer_mb: 1, batch_ms: 1000}}"
    with Probe(binary, probe_yaml(db, SECRET, drop_capture).replace(
            "sinks: [sink-websocket]\n", "sinks: [sink-websocket]\nstream: {ring_kb: 64}\n")) \
            as probe:
        reports = Reports(probe.http_port)
        wait_for(lambda: any("total" in r.get("coverage", {}) for r in reports.items), 20,
                 "a first comparison")
        stop = threading.Event()

        def big():
            conn = pymysql.connect(host="127.0.0.1", port=db.port, user="sb", password="sb")
            with conn.cursor() as cur:
                while not stop.is_set():
                    cur.execute("SELECT REPEAT('x', 4000000)")
                    cur.fetchall()
            conn.close()
        bigs = [threading.Thread(target=big) for _ in range(2)]
        for t in bigs:
            t.start()
        sysbench(db, "disable", 4, 0, threads=4, test="oltp_read_only")
        stop.set()
        for t in bigs:
            t.join()
        time.sleep(3)
        dropped = [r for r in reports.items if r["capture"].get("kernel_dropped", 0) > 0 and
                   "interval" in r.get("coverage", {})]
        check(len(dropped) > 0, "the capture dropped packets (kernel_dropped in the reports)")
        if dropped:
            last = dropped[-1]["coverage"]
            q = last["total"]["questions"]
            print(f"with drops: kernel_dropped {dropped[-1]['capture']['kernel_dropped']}, "
                  f"questions seen {q['seen']} of {q['counted']}, ratio {last['ratio']}")
            check(last["ratio"] is not None and last["ratio"] < 1,
                  f"coverage below 1 in the same report as the drops ({last['ratio']})")
        reports.close()

    # --- 3: wrong credentials: the probe runs and says why it has no figures.
    with Probe(binary, probe_yaml(db, "not-" + SECRET)) as probe:
        reports = Reports(probe.http_port)
        wait_for(lambda: len(reports.items) >= 2, 20, "two reports")
        cov = reports.items[-1]["coverage"]
        check("Access denied" in cov.get("error", ""), f"the report says why: {cov.get('error')}")
        check("interval" not in cov and "total" not in cov, "and has no figures")
        check("coverage: " in probe.log() and "Access denied" in probe.log(),
              "the log says it once")
        check(sum("coverage: " in line and "Access denied" in line
                  for line in probe.log().splitlines()) == 1, "once only")
        check(all(("not-" + SECRET) not in json.dumps(r) for r in reports.items) and
              ("not-" + SECRET) not in probe.log(), "the password is in no report and no log")
        reports.close()
    # The table of an offline run shows the line too (here: why there is no comparison).
    capture = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "pcap",
                           "sysbench_text_rw_2t_20tx.pcap")
    cfg = os.path.join(db.dir, "offline.yaml")
    with open(cfg, "w") as f:
        f.write(probe_yaml(db, "not-" + SECRET).replace("probe: {device: lo, ", "probe: {"))
    out = subprocess.run([binary, "-c", cfg, "-r", capture, "--format", "table"],
                         capture_output=True, text=True, timeout=60)
    line = next((x for x in out.stdout.splitlines() if x.startswith("coverage of ")), "")
    check(out.returncode == 0 and f"coverage of 127.0.0.1:{db.port}: no comparison yet; last "
          "reading: server error 1045: Access denied" in line, f"the table's line: {line!r}")

    # --- 4: sessions and statements from before the probe.
    load = subprocess.Popen(
        [SYSBENCH, "oltp_read_write", "--db-driver=mysql", "--mysql-host=127.0.0.1",
         f"--mysql-port={db.port}", "--mysql-user=sb", "--mysql-password=sb",
         "--mysql-db=sbtest", "--tables=2", "--table-size=1000", "--threads=4", "--time=8",
         "--rate=40", "--db-ps-mode=auto", "--rand-seed=5", "run"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(2.5)  # its connections are open and their statements prepared
    plain = probe_yaml(db, SECRET, server=False)
    with Probe(binary, probe_yaml(db, SECRET, user="watch4")) as a, Probe(binary, plain) as b:
        ra, rb = Reports(a.http_port), Reports(b.http_port)
        check(load.wait(30) == 0, "sysbench ran")

        def closed(p):
            m = p.metrics()
            # sysbench's connections were all open before the probes (the watcher's stays).
            midstream = m.get("mysqlprobe_stream_connections_midstream_total", 0)
            done = sum(v for k, v in m.items() if "_stream_connections_closed_" in k)
            return midstream >= 4 and done >= midstream
        wait_for(lambda: closed(a) and closed(b), 30, "both probes to see every connection end")
        time.sleep(2.5)  # a report after the last close
        ma, mb = a.metrics(), b.metrics()
        check("sessions open before the capture" in a.log(), "probe A read the sessions")

        def account(items):
            # sysbench's statements (the probes also see probe A's own: its watcher's SHOW,
            # and the reading of the sessions when the capture was already open).
            ts = [t for r in items for t in r.get("templates", [])
                  if {u["user"] for u in t.get("users", [])} != {"watch4"}]
            unresolved = sum(r.get("totals", {}).get("unresolved_executes", 0) for r in items)
            executes = sum(r.get("totals", {}).get("commands", {}).get("COM_STMT_EXECUTE", 0)
                           for r in items)
            users = {u["user"] for t in ts for u in t.get("users", [])}
            schemas = {t["schema"] for t in ts}
            return unresolved, executes, users, schemas
        ua, ca, users_a, schemas_a = account(ra.items)
        ub, cb, users_b, schemas_b = account(rb.items)
        print(f"with the server: {ua} of {ca} executes unresolved, users {users_a}, schemas "
              f"{schemas_a}; without: {ub} of {cb}, users {users_b}, schemas {schemas_b}")
        check(cb > 1000 and ub == cb,
              f"without the server, every execute is unresolved ({ub} of {cb}): the case is real")
        check(ca > 1000 and ua == 0, f"with it, none of {ca} is ({ua})")
        resolved = ma.get("mysqlprobe_decoder_mysql_statements_from_server_total", 0)
        check(resolved > 0, f"statements named by performance_schema: {resolved}")
        check(users_a == {"sb"} and schemas_a == {"sbtest"},
              f"every template has its user and schema ({users_a}, {schemas_a})")
        # Its first reading was taken under load: the commands in flight between that
        # interval's end and the reading count on the server's side of the baseline and on the
        # probe's side after it (40 of 3,724 under ASan). So: within 2%, and every execute's
        # kind known.
        cov = [r["coverage"] for r in ra.items if "total" in r.get("coverage", {})][-1]
        check(all(abs(f["seen"] - f["counted"]) <= max(5, f["counted"] // 50)
                  for f in cov["total"].values()) and cov["unknown_executes"] == 0,
              "and the coverage within 2%, every execute's kind known: " +
              str({k: (f["seen"], f["counted"]) for k, f in cov["total"].items()
                   if f["counted"]}))
        ra.close()
        rb.close()

    # --- 5: capture over two threads, against one.
    fan = "{plugin: capture-pcap, config: {fanout: 2}}"
    with Probe(binary, probe_yaml(db, SECRET, fan, workers=3)) as a, \
            Probe(binary, probe_yaml(db, SECRET, workers=1)) as b:
        check("2 capture threads (fanout group" in a.log(), "probe A reads lo with two threads")
        ra, rb = Reports(a.http_port), Reports(b.http_port)
        for r in (ra, rb):
            wait_for(lambda: any("total" in x.get("coverage", {}) for x in r.items), 20,
                     "a first comparison")
        mark = (len(ra.items), len(rb.items))
        sysbench(db, "disable", 3, 60)
        sysbench(db, "auto", 3, 60)

        def quiet(r):
            # Only the other probe's watcher is left (a question a second, seen by both).
            cov = [x["coverage"] for x in r.items if "interval" in x.get("coverage", {})]
            return len(cov) >= 2 and all(c["interval"]["questions"]["counted"] <= 3 and
                                         c["interval"]["questions"]["seen"] ==
                                         c["interval"]["questions"]["counted"]
                                         for c in cov[-2:])
        wait_for(lambda: quiet(ra) and quiet(rb), 30, "the load to end for both")

        def summary(items):
            commands, templates = {}, {}
            for x in items:
                for k, v in x.get("totals", {}).get("commands", {}).items():
                    commands[k] = commands.get(k, 0) + v
                for t in x.get("templates", []):
                    if t["fingerprint"].startswith("show global status"):
                        continue  # each probe's own watcher, seen by both
                    key = (t["server"], t["schema"], t["fingerprint"])
                    c, e, rows = templates.get(key, (0, 0, 0))
                    templates[key] = (c + t["count"], e + t["errors"], rows + t["rows_returned"])
            return templates
        ta, tb = summary(ra.items[mark[0]:]), summary(rb.items[mark[1]:])
        executions = sum(c for c, _, _ in ta.values())
        check(ta == tb and executions > 2000,
              f"two capture threads, one: the same {len(ta)} templates, {executions} executions, "
              "errors and rows" + ("" if ta == tb else f" (differ: {set(ta.items()) ^ set(tb.items())})"))
        for name, r in (("two threads", ra), ("one thread", rb)):
            cov = [x["coverage"] for x in r.items if "total" in x.get("coverage", {})][-1]
            check(all(f["seen"] == f["counted"] for f in cov["total"].values()),
                  f"{name}: coverage exact ({cov['total']['questions']})")
        ra.close()
        rb.close()

if failures:
    print(f"{len(failures)} check(s) failed")
    sys.exit(1)
print("all coverage checks passed")

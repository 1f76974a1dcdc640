#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""source-binlog's speed, against mariadb-binlog in the same run. A local mariadbd (log_bin, ROW,
FULL row metadata, CRC32) takes sysbench oltp_write_only (4 threads) into its binlog; then:
  - offline: the same binlog files decoded to JSON by mysqlprobe (source-binlog -> record bus ->
    sink-jsonl into /dev/null), by source-binlog's decoder alone (binlog-decode: each row's
    message rendered, no host) and by `mariadb-binlog --verbose --base64-output=DECODE-ROWS >
    /dev/null`: row images per CPU second (user + system, wait4), median of RUNS, the ratios;
  - live: mysqlprobe replicating with sink-amqp into a local rabbitmq-server (publisher
    confirms) while sysbench oltp_write_only runs with 4 threads: rows per second published and
    confirmed, the replication lag sampled each 0.5 s (/metrics lag_seconds: now minus the last
    event's time, whole seconds as the binlog has them), and how long after sysbench's last
    write the checkpoint holds the server's last GTID (every change confirmed by the broker).
Usage: bench/binlog.py [SYSBENCH_SECONDS] [RUNS]   (default 20 3; MP_BUILD_DIR=build/release)"""
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(root, "tests", "live"))
from harness import MariaDB, RabbitMQ, free_port, wait_for  # noqa: E402
import pymysql  # noqa: E402

SECONDS = int(sys.argv[1]) if len(sys.argv) > 1 else 20
RUNS = int(sys.argv[2]) if len(sys.argv) > 2 else 3
build = os.environ.get("MP_BUILD_DIR", os.path.join(root, "build", "release"))
binary = os.path.join(build, "bin", "mysqlprobe")
plugins = os.path.join(build, "test-plugins")
SERVER = ["--log-bin=mysql-bin", "--binlog-format=ROW", "--binlog-row-metadata=FULL",
          "--server-id=7", "--binlog-checksum=CRC32", "--innodb-flush-log-at-trx-commit=2",
          "--sync-binlog=0"]


def sysbench(port, action, seconds=0):
    args = ["sysbench", "oltp_write_only", "--db-driver=mysql", "--mysql-host=127.0.0.1",
            f"--mysql-port={port}", "--mysql-user=root", "--mysql-db=sb", "--tables=4",
            "--table-size=10000", "--threads=4"]
    if seconds:
        args.append(f"--time={seconds}")
    subprocess.run(args + [action], check=True, stdout=subprocess.DEVNULL)


def timed(cmd, stdout=subprocess.DEVNULL):
    """(cpu seconds, wall seconds, stderr) of one run of cmd."""
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=stdout, stderr=subprocess.PIPE)
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.monotonic() - t0
    err = p.stderr.read().decode(errors="replace")
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{cmd[0]} failed: {err[-2000:]}")
    return ru.ru_utime + ru.ru_stime, wall, err


def offline(files, work):
    cfg = os.path.join(work, "offline.yaml")
    with open(cfg, "w") as f:
        f.write(f"serverport: 0\nserveraddress: 127.0.0.1\nplugins:\n  directories: [{plugins}]\n"
                f"  cluster: none\n  sources:\n    - {{plugin: source-binlog, config: "
                f"{{files: {json.dumps(files)}}}}}\n  sinks:\n    - {{plugin: sink-jsonl, records: "
                f"[binlog.*], reports: false, config: {{path: /dev/null, flush: false}}}}\n")
    tool = shutil.which("mariadb-binlog") or shutil.which("mysqlbinlog")
    ours, theirs, alone, rows = [], [], [], 0
    for _ in range(RUNS):
        cpu, _, _ = timed([os.path.join(build, "bin", "binlog-decode")] + files)
        alone.append(cpu)
        cpu, wall, err = timed([binary, "-c", cfg])
        m = re.search(r"read \d+ file\(s\): (\d+) row changes", err)
        if not m:
            raise SystemExit("no row count in the log: " + err[-2000:])
        rows = int(m.group(1))
        ours.append(cpu)
        cpu, _, _ = timed([tool, "--verbose", "--base64-output=DECODE-ROWS"] + files)
        theirs.append(cpu)
    a, b, c = statistics.median(ours), statistics.median(theirs), statistics.median(alone)
    size = sum(os.path.getsize(f) for f in files) / 1e6
    print(f"offline decode of {size:.0f} MB of binlog, {rows} row images, median of {RUNS}:")
    print(f"  source-binlog (mysqlprobe -> JSON records):  {a:6.2f} CPU s  "
          f"{rows / a:10,.0f} rows/CPU s")
    print(f"  mariadb-binlog --verbose:                    {b:6.2f} CPU s  "
          f"{rows / b:10,.0f} rows/CPU s")
    print(f"  source-binlog's decoder alone (binlog-decode): {c:6.2f} CPU s  "
          f"{rows / c:10,.0f} rows/CPU s")
    print(f"  ratio to mariadb-binlog: node {b / a:.1f}x, decoder alone {b / c:.1f}x")


def metrics(port):
    out = {}
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line and not line.startswith("#"):
                k, v = line.rsplit(" ", 1)
                out[k] = int(v)
    return out


def live(db, broker, work):
    http = free_port()
    cp = os.path.join(work, "live.cp")
    cfg = os.path.join(work, "live.yaml")
    with open(cfg, "w") as f:
        f.write(f"serverport: {http}\nserveraddress: 127.0.0.1\nplugins:\n  cluster: none\n"
                f"  sources:\n    - {{plugin: source-binlog, config: {{host: 127.0.0.1, port: "
                f"{db.port}, user: root, server_id: 99, checkpoint: '{cp}', heartbeat_s: 1}}}}\n"
                f"  sinks:\n    - {{plugin: sink-amqp, records: [binlog.rows], reports: false, "
                f"config: {{url: 'amqp://127.0.0.1:{broker.port}/%2F', exchange: cdc, "
                f"declare: declare}}}}\n")
    node = subprocess.Popen([binary, "-c", cfg], stderr=subprocess.DEVNULL)
    try:
        def connected():
            try:
                return metrics(http).get("mysqlprobe_source_binlog_connected") == 1
            except OSError:
                return False
        wait_for(connected, 20, "the replica to connect")
        lags, done = [], threading.Event()

        def sample():
            while not done.is_set():
                lags.append(metrics(http).get("mysqlprobe_source_binlog_lag_seconds", 0))
                time.sleep(0.5)
        sampler = threading.Thread(target=sample)
        sampler.start()
        m0 = metrics(http)
        t0 = time.monotonic()
        sysbench(db.port, "run", SECONDS)
        t1 = time.monotonic()
        conn = pymysql.connect(host="127.0.0.1", port=db.port, user="root")
        cur = conn.cursor()
        cur.execute("SELECT @@GLOBAL.gtid_binlog_pos")
        target = cur.fetchone()[0]

        def at_target():
            try:
                return re.search(r"^gtid_state=(.*)$", open(cp).read(), re.M).group(1) == target
            except (OSError, AttributeError):
                return False
        wait_for(at_target, 300, "the checkpoint to reach the server's last GTID")
        t2 = time.monotonic()
        done.set()
        sampler.join()
        m1 = metrics(http)
        rows = m1["mysqlprobe_source_binlog_rows_total"] - m0["mysqlprobe_source_binlog_rows_total"]
        confirmed = (m1.get("mysqlprobe_sink_amqp_confirmed_total", 0) -
                     m0.get("mysqlprobe_sink_amqp_confirmed_total", 0))
        print(f"live, sysbench oltp_write_only 4 threads for {SECONDS} s:")
        print(f"  {rows} row changes published, {confirmed} confirmed by RabbitMQ: "
              f"{rows / (t2 - t0):,.0f} rows/s end to end")
        print(f"  lag (s, sampled each 0.5 s): max {max(lags)}, median {statistics.median(lags)}")
        print(f"  checkpoint at the server's last GTID {t2 - t1:.2f} s after sysbench ended")
    finally:
        node.terminate()
        node.wait(30)


def main():
    for tool in ("sysbench",):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is not installed (scripts/deps.sh installs it)")
    work = tempfile.mkdtemp(prefix="mp-bench-binlog-")
    with RabbitMQ() as broker, MariaDB(SERVER) as db:
        conn = pymysql.connect(host="127.0.0.1", port=db.port, user="root", autocommit=True)
        conn.cursor().execute("CREATE DATABASE sb")
        sysbench(db.port, "prepare")
        live(db, broker, work)
        cur = conn.cursor()
        cur.execute("FLUSH BINARY LOGS")
        cur.execute("SHOW BINARY LOGS")
        files = [os.path.join(db.dir, "data", r[0]) for r in cur.fetchall()]
        offline(files, work)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

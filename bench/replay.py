#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Traffic capture for replay, measured in one invocation on loopback (release build):

1. Collector cost, live: sysbench (oltp_read_write, 2 threads, not rate-limited) runs on a
   real mariadbd while three nodes capture it on `lo` side by side: one with the probe's report
   path only; one with the collector as well (decoder-mysql `inbound: true`, binary records)
   whose records no sink takes (the cost of making them); two whose records sink-amqp publishes
   to a real RabbitMQ with confirms, one message per command and batches of 64 (the cost of
   shipping them). CPU per command of each node
   (user + system, from /proc), and the ratios.
2. Replay rate: a third node consumes those records from the broker (source-amqp) and replays
   them as fast as possible (replay-mysql, speed max) on the same server; commands per second
   against sysbench's own rate on that server with the same number of connections.

Usage: MP_BUILD_DIR=build/release /usr/bin/python3 bench/replay.py [SECONDS] [MODE]
  MODE: disable (text protocol, default) or auto (prepared statements)"""
import json
import os
import re
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "live"))
from harness import (MariaDB, Probe, RabbitMQ, amqp_bind, amqp_depth,  # noqa: E402
                     cpu_seconds, wait_for)

SECONDS = int(sys.argv[1]) if len(sys.argv) > 1 else 20
MODE = sys.argv[2] if len(sys.argv) > 2 else "disable"
BUILD = os.environ.get("MP_BUILD_DIR", os.path.join(ROOT, "build", "release"))
BINARY = os.path.join(BUILD, "bin", "mysqlprobe")


def sysbench(port, *args):
    out = subprocess.run(
        ["sysbench", "oltp_read_write", "--db-driver=mysql", "--mysql-host=127.0.0.1",
         f"--mysql-port={port}", "--mysql-user=root", "--mysql-db=sbtest", "--tables=4",
         "--table-size=10000"] + list(args), check=True, capture_output=True, text=True).stdout
    return out


def queries(out):
    m = re.search(r"queries:\s+(\d+)\s+\((\d+\.\d+) per sec", out)
    return int(m.group(1)), float(m.group(2))


def main():
    if not os.path.exists(BINARY):
        sys.exit(f"{BINARY} is missing: cmake --preset release && cmake --build --preset release")
    with RabbitMQ() as broker, MariaDB() as db:
        amqp_bind(broker, "inbound", "replay", "#")
        amqp_bind(broker, "batched", "batched", "#")
        subprocess.run(["mariadb", "-h127.0.0.1", f"-P{db.port}", "-uroot", "-e",
                            "CREATE DATABASE sbtest"], check=True)
        sysbench(db.port, "prepare")
        url = f"amqp://127.0.0.1:{broker.port}/%2F"
        probe_only = f"""serverport: 0
serveraddress: 127.0.0.1
probe: {{device: lo, port: {db.port}, workers: 1}}
plugins: {{cluster: none}}
"""
        unrouted = f"""serverport: 0
serveraddress: 127.0.0.1
probe: {{device: lo, port: {db.port}, workers: 1}}
plugins:
  cluster: none
  decoder: {{plugin: decoder-mysql, config: {{inbound: true, inbound_format: binary}}}}
"""
        def collector(batch, exchange):
            return f"""serverport: 0
serveraddress: 127.0.0.1
probe: {{device: lo, port: {db.port}, workers: 1}}
records: {{max_buffer_mb: 256}}
plugins:
  cluster: none
  decoder: {{plugin: decoder-mysql, config: {{inbound: true, inbound_format: binary,
      inbound_batch: {batch}}}}}
  sinks:
    - {{plugin: sink-amqp, records: [mysql.inbound], reports: false,
        config: {{url: '{url}', exchange: {exchange}, record_routing_key: 'inbound.{{key}}'}}}}
"""
        with Probe(BINARY, probe_only) as p, Probe(BINARY, unrouted) as u, \
                Probe(BINARY, collector(1, "inbound")) as col, \
                Probe(BINARY, collector(64, "batched")) as bat:
            p0, u0, c0 = (cpu_seconds(p.proc.pid), cpu_seconds(u.proc.pid),
                          cpu_seconds(col.proc.pid))
            b0 = cpu_seconds(bat.proc.pid)
            out = sysbench(db.port, "--threads=2", f"--time={SECONDS}", f"--db-ps-mode={MODE}",
                           "run")
            n, qps = queries(out)

            def published():
                m = col.metrics()
                rec = m.get("mysqlprobe_decoder_mysql_inbound_records_total", 0)
                return m if rec > 0 and m.get("mysqlprobe_sink_amqp_confirmed_total", 0) >= rec \
                    else None
            m = wait_for(published, 120, "the collector's records confirmed by the broker")
            time.sleep(1)
            def batched():
                b = bat.metrics()
                return b.get("mysqlprobe_decoder_mysql_inbound_records_total", 0) >= \
                    m["mysqlprobe_decoder_mysql_inbound_records_total"] and \
                    b.get("mysqlprobe_sink_amqp_confirmed_total", 0) >= \
                    b.get("mysqlprobe_sink_amqp_published_total", 1)
            wait_for(batched, 120, "the batches confirmed")
            p1, u1, c1 = (cpu_seconds(p.proc.pid), cpu_seconds(u.proc.pid),
                          cpu_seconds(col.proc.pid))
            b1 = cpu_seconds(bat.proc.pid)
            messages = bat.metrics().get("mysqlprobe_sink_amqp_confirmed_total", 0)
            records = m["mysqlprobe_decoder_mysql_inbound_records_total"]
            dropped = m.get("mysqlprobe_decoder_mysql_inbound_dropped_total", 0)
            commands = sum(v for k, v in m.items()
                           if k.startswith("mysqlprobe_decoder_mysql_command_") and "{" not in k)
        probe_us = (p1 - p0) / commands * 1e6
        col_us = (c1 - c0) / commands * 1e6
        unrouted_us = (u1 - u0) / commands * 1e6
        batch_us = (b1 - b0) / commands * 1e6
        print(f"sysbench oltp_read_write ({MODE}), 2 threads, {SECONDS} s: {n} queries, "
              f"{qps:.0f}/s; the probe saw {commands} commands, the collector emitted {records} "
              f"records ({dropped} dropped)")
        print("| node (same run) | CPU s | µs per command | vs probe only |")
        print("|---|---|---|---|")
        print(f"| probe (report path only) | {p1 - p0:.2f} | {probe_us:.2f} | 1.00x |")
        print(f"| probe + collector (binary records, no sink takes them) | {u1 - u0:.2f} | "
              f"{unrouted_us:.2f} | {unrouted_us / probe_us:.2f}x |")
        print(f"| probe + collector + sink-amqp (binary records, confirms) | {c1 - c0:.2f} | "
              f"{col_us:.2f} | {col_us / probe_us:.2f}x |")
        print(f"| probe + collector + sink-amqp (batches of 64: {messages} messages) | "
              f"{b1 - b0:.2f} | {batch_us:.2f} | {batch_us / probe_us:.2f}x |")

        depth = amqp_depth(broker, "replay")
        replayer = f"""serverport: 0
serveraddress: 127.0.0.1
plugins:
  cluster: none
  sources:
    - {{plugin: source-amqp, config: {{url: '{url}', queue: replay, declare: passive,
        stream: mysql.inbound, prefetch: 5000}}}}
  sinks:
    - {{plugin: replay-mysql, records: [mysql.inbound], reports: false,
        config: {{host: 127.0.0.1, port: {db.port}, speed: max, force: true}}}}
"""
        with Probe(BINARY, replayer) as r:
            start = time.monotonic()
            r0 = cpu_seconds(r.proc.pid)

            def drained():  # every record taken from the queue, replayed and acknowledged
                m = r.metrics()
                return json.loads(r.get("/replay/report")) \
                    if m.get("mysqlprobe_host_records_delivered_total", 0) >= depth else None
            rep = wait_for(drained, 600, "the replay")
            wall = time.monotonic() - start
            rcpu = cpu_seconds(r.proc.pid) - r0
        rate = rep["replayed"] / wall
        print(f"\nreplay of the {depth} records ({rep['replayed']} commands, skipped "
              f"{sum(rep['skipped'].values())}, target errors {rep['target_errors']}) from "
              f"RabbitMQ onto the same server, speed max:")
        print("| | commands/s | vs sysbench |")
        print("|---|---|---|")
        print(f"| sysbench, 2 threads | {qps:.0f} | 1.00x |")
        print(f"| replay-mysql, {rep['connections_opened']} connections | "
              f"{rate:.0f} | {rate / qps:.2f}x |")
        print(f"replayer node CPU: {rcpu:.2f} s, {rcpu / max(rep['replayed'], 1) * 1e6:.1f} µs "
              f"per command")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""proxy-mysql against haproxy and a direct connection, in one invocation on loopback (release
build): sysbench oltp_read_write (4 tables x 10,000 rows, THREADS threads, not rate-limited) on
one real mariadbd, directly, through proxy-mysql (its targets from monitor-mysql in the same
node) and through haproxy (Debian's, mode tcp, balance roundrobin), each for SECONDS, in rounds
that alternate the order. Prints queries per second, p95 and p99 latency, the proxies' CPU per
1,000 queries (user + system, /proc), and the ratios to direct. Both proxies run one thread.

Usage: MP_BUILD_DIR=build/release /usr/bin/python3 bench/proxy.py [SECONDS] [THREADS] [ROUNDS]"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "live"))
from harness import MariaDB, Probe, cpu_seconds, free_port, wait_for  # noqa: E402

SECONDS = int(sys.argv[1]) if len(sys.argv) > 1 else 20
THREADS = int(sys.argv[2]) if len(sys.argv) > 2 else 4
ROUNDS = int(sys.argv[3]) if len(sys.argv) > 3 else 2
BUILD = os.environ.get("MP_BUILD_DIR", os.path.join(ROOT, "build", "release"))
BINARY = os.path.join(BUILD, "bin", "mysqlprobe")


def sysbench(port, *args):
    p = subprocess.run(
        ["sysbench", "oltp_read_write", "--db-driver=mysql", "--mysql-host=127.0.0.1",
         f"--mysql-port={port}", "--mysql-user=root", "--mysql-db=sbtest", "--tables=4",
         "--table-size=10000"] + list(args), capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"sysbench on port {port} failed: {p.stdout[-1500:]} {p.stderr[-500:]}")
    return p.stdout


def run(port, pid=None):
    c0 = cpu_seconds(pid) if pid else 0
    out = sysbench(port, f"--threads={THREADS}", f"--time={SECONDS}", "--percentile=99",
                   "--histogram=on", "run")
    cpu = (cpu_seconds(pid) - c0) if pid else 0
    q = int(re.search(r"queries:\s+(\d+)", out).group(1))
    qps = float(re.search(r"queries:\s+\d+\s+\((\d+\.\d+) per sec", out).group(1))
    p99 = float(re.search(r"99th percentile:\s+([\d.]+)", out).group(1))
    # p95 from the histogram (sysbench prints one percentile only): the bucket where 95% of
    # the events lie.
    rows = [(float(v), int(n)) for v, n in re.findall(r"^\s+([\d.]+) \|[ *]+(\d+)$", out, re.M)]
    total = sum(n for _, n in rows)
    acc, p95 = 0, 0.0
    for v, n in rows:
        acc += n
        if acc >= 0.95 * total:
            p95 = v
            break
    errors = int(out.split("errors:")[1].split()[0])
    return {"qps": qps, "queries": q, "p95_ms": p95, "p99_ms": p99, "errors": errors,
            "cpu_ms_per_1000": cpu * 1000 / q * 1000 if pid else None}


def main():
    if not os.path.exists(BINARY):
        sys.exit(f"{BINARY} is missing: cmake --preset release && cmake --build --preset release")
    if shutil.which("haproxy") is None:
        sys.exit("haproxy is missing (scripts/deps.sh installs it)")
    tmp = tempfile.mkdtemp(prefix="mp-bench-proxy-")
    with MariaDB(["--max-connections=500"]) as db:
        subprocess.run(["mariadb", "-h127.0.0.1", f"-P{db.port}", "-uroot", "-e",
                        "CREATE DATABASE sbtest"], check=True)
        sysbench(db.port, "--threads=4", "prepare")
        pm = free_port()
        yaml = (f"serverport: 0\nserveraddress: 127.0.0.1\ninterval: 3600\nnodename: bench\n"
                f"plugins:\n  cluster: none\n  sources:\n"
                f"    - plugin: monitor-mysql\n"
                f"      config: {{instances: ['db=127.0.0.1:{db.port}'], "
                f"user: root, state_file: '{tmp}/state.json', enforce: false}}\n"
                f"  sinks:\n    - plugin: proxy-mysql\n      records: [mysql.topology]\n"
                f"      reports: false\n      config: {{master_listen: '127.0.0.1:{pm}', "
                f"slave_listen: '', threads: 1}}\n")
        hp = free_port()
        cfg = os.path.join(tmp, "haproxy.cfg")
        with open(cfg, "w") as f:
            f.write(f"global\n  maxconn 4000\n  nbthread 1\ndefaults\n  mode tcp\n"
                    f"  timeout connect 5s\n  timeout client 1h\n  timeout server 1h\n"
                    f"listen mysql\n  bind 127.0.0.1:{hp}\n  balance roundrobin\n"
                    f"  server db 127.0.0.1:{db.port}\n")
        hlog = open(os.path.join(tmp, "haproxy.log"), "w")
        haproxy = subprocess.Popen(["haproxy", "-f", cfg, "-db"], stdout=hlog,
                                   stderr=subprocess.STDOUT)
        try:
            with Probe(BINARY, yaml) as node:
                req = urllib.request.Request(
                    f"http://127.0.0.1:{node.http_port}/mysql/register?node=db&role=master",
                    data=b"", method="POST")
                urllib.request.urlopen(req, timeout=10).read()
                wait_for(lambda: subprocess.run(
                    ["mariadb", "-h127.0.0.1", f"-P{pm}", "-uroot", "-e", "SELECT 1"],
                    capture_output=True).returncode == 0, 10, "the proxy to reach the server")
                results = {"direct": [], "proxy-mysql": [], "haproxy": []}
                order = [("direct", db.port, None), ("proxy-mysql", pm, node.proc.pid),
                         ("haproxy", hp, haproxy.pid)]
                for r in range(ROUNDS):
                    for name, port, pid in (order if r % 2 == 0 else order[::-1]):
                        results[name].append(run(port, pid))
                        print(f"round {r + 1} {name}: {json.dumps(results[name][-1])}",
                              flush=True)
        except BaseException:
            print("haproxy's log: " + open(hlog.name).read()[-2000:])
            raise
        finally:
            haproxy.terminate()
            haproxy.wait(10)
    shutil.rmtree(tmp, ignore_errors=True)

    def mean(name, key):
        vals = [x[key] for x in results[name] if x[key] is not None]
        return sum(vals) / len(vals) if vals else None
    direct = mean("direct", "qps")
    print(f"\nsysbench oltp_read_write, {THREADS} threads, {SECONDS} s x {ROUNDS} rounds, "
          f"one mariadbd on loopback, 2 cores shared by everything:")
    print(f"{'path':<12} {'queries/s':>10} {'vs direct':>10} {'p95 ms':>8} {'p99 ms':>8} "
          f"{'proxy CPU ms/1000 q':>20} {'errors':>7}")
    for name in ("direct", "proxy-mysql", "haproxy"):
        qps = mean(name, "qps")
        cpu = mean(name, "cpu_ms_per_1000")
        print(f"{name:<12} {qps:>10.0f} {qps / direct:>10.2f} {mean(name, 'p95_ms'):>8.2f} "
              f"{mean(name, 'p99_ms'):>8.2f} {'' if cpu is None else f'{cpu:.1f}':>20} "
              f"{sum(x['errors'] for x in results[name]):>7}")
    print(f"proxy-mysql / haproxy throughput: "
          f"{mean('proxy-mysql', 'qps') / mean('haproxy', 'qps'):.2f}")


if __name__ == "__main__":
    main()

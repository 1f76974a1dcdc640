# SPDX-License-Identifier: Apache-2.0
"""The host's HTTP server under load, for one or more mysqlprobe binaries in the same run (the
current build and, say, an older one), each started with the same configuration:

  - /health requests per second from C keep-alive clients (one thread each), and the latency
    percentiles a client sees;
  - the same while S slowloris connections drip a header byte a second and I idle connections
    sit open;
  - the process' resident memory and threads with W websocket clients of /collector open.

Usage: python3 bench/http_load.py BINARY [BINARY...] [--clients C] [--seconds T] [--websockets W]
"""
import argparse
import http.client
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

YAML = """serverport: 0
serveraddress: 127.0.0.1
interval: 3600
plugins:
  cluster: none
  sinks: [sink-websocket]
"""


class Node:
    def __init__(self, binary):
        self.dir = tempfile.mkdtemp(prefix="mp-bench-http-")
        cfg = os.path.join(self.dir, "b.yaml")
        with open(cfg, "w") as f:
            f.write(YAML)
        self.err = open(os.path.join(self.dir, "err"), "w+")
        self.proc = subprocess.Popen([binary, "-c", cfg], stdout=subprocess.DEVNULL,
                                     stderr=self.err)
        deadline = time.time() + 20
        while time.time() < deadline:
            log = open(self.err.name).read()
            m = re.search(r"serving HTTP on [0-9.]+:(\d+)", log)
            if m and "host: running" in log:
                self.port = int(m.group(1))
                return
            time.sleep(0.05)
        raise SystemExit("did not start: " + open(self.err.name).read()[-500:])

    def status(self, key):
        with open(f"/proc/{self.proc.pid}/status") as f:
            m = re.search(rf"^{key}:\s+(\d+)", f.read(), re.M)
        return int(m.group(1))

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)


def load(port, clients, seconds):
    """(requests/s, p50 ms, p99 ms, errors) of /health from keep-alive clients."""
    lat, errors, stop = [], [0], time.time() + seconds
    lock = threading.Lock()

    def client():
        mine = []
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        while time.time() < stop:
            t0 = time.perf_counter()
            try:
                c.request("GET", "/health")
                c.getresponse().read()
                mine.append(time.perf_counter() - t0)
            except OSError:
                errors[0] += 1
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        with lock:
            lat.extend(mine)
    ts = [threading.Thread(target=client) for _ in range(clients)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    lat.sort()
    q = (lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] * 1000) if lat else (lambda p: 0)
    return len(lat) / seconds, q(0.5), q(0.99), errors[0]


def hostile(port, slow, idle):
    socks, stop = [], threading.Event()
    for i in range(slow + idle):
        try:
            s = socket.socket()
            s.bind((f"127.0.9.{1 + i % 200}", 0))
            s.connect(("127.0.0.1", port))
            if i < slow:
                s.sendall(b"GET /health HTTP/1.1\r\n")
            socks.append(s)
        except OSError:
            break

    def drip():
        while not stop.is_set():
            for s in socks[:slow]:
                try:
                    s.sendall(b"X")
                except OSError:
                    pass
            time.sleep(1)
    t = threading.Thread(target=drip, daemon=True)
    t.start()
    return socks, stop


def websockets(port, n):
    out = []
    for i in range(n):
        try:
            s = socket.socket()
            s.bind((f"127.0.8.{1 + i % 200}", 0))
            s.connect(("127.0.0.1", port))
            s.sendall(b"GET /collector HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                      b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                      b"Sec-WebSocket-Version: 13\r\n\r\n")
            out.append(s)
        except OSError:
            break
    time.sleep(1)
    ok = 0
    for s in out:
        s.settimeout(0.2)
        try:
            ok += s.recv(12).startswith(b"HTTP/1.1 101")
        except OSError:
            pass
    return out, ok


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binaries", nargs="+")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--websockets", type=int, default=1000)
    ap.add_argument("--slow", type=int, default=100)
    ap.add_argument("--idle", type=int, default=1000)
    a = ap.parse_args()
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    print(f"{'binary':<40} {'test':<34} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'errors':>6}")
    rows = {}
    for b in a.binaries:
        n = Node(b)
        try:
            r = load(n.port, a.clients, a.seconds)
            print(f"{b[-40:]:<40} {'/health, ' + str(a.clients) + ' keep-alive clients':<34} "
                  f"{r[0]:>8.0f} {r[1]:>7.2f} {r[2]:>7.2f} {r[3]:>6}")
            socks, stop = hostile(n.port, a.slow, a.idle)
            time.sleep(0.5)
            h = load(n.port, a.clients, a.seconds)
            print(f"{'':<40} {f'same, {a.slow} slowloris + {a.idle} idle':<34} "
                  f"{h[0]:>8.0f} {h[1]:>7.2f} {h[2]:>7.2f} {h[3]:>6}")
            stop.set()
            for s in socks:
                s.close()
            time.sleep(0.5)
            rss0, th0 = n.status("VmRSS"), n.status("Threads")
            ws, ok = websockets(n.port, a.websockets)
            rss1, th1 = n.status("VmRSS"), n.status("Threads")
            health = load(n.port, 1, 1.0)
            print(f"{'':<40} {f'{ok} of {a.websockets} websockets open':<34} "
                  f"RSS +{(rss1 - rss0) / 1024:.1f} MB, threads {th0} -> {th1}, "
                  f"/health beside them: {health[0]:.0f} req/s, {health[3]} errors")
            for s in ws:
                s.close()
            rows[b] = (r, h, ok, rss1 - rss0, th1)
        finally:
            n.stop()
    if len(rows) > 1:
        base = rows[a.binaries[0]]
        for b in a.binaries[1:]:
            o = rows[b]
            print(f"ratio {a.binaries[0][-30:]} / {b[-30:]}: /health {base[0][0] / max(o[0][0], 1):.2f}x,"
                  f" under attack {base[1][0] / max(o[1][0], 1):.2f}x")


main()

# SPDX-License-Identifier: Apache-2.0
"""Slow and hostile clients against a real mysqlprobe process on loopback: none of them may make
the node unreachable, and what it holds for them stays bounded.

 - 100 slowloris connections (a header byte every second): /health answers at once throughout,
   and the server drops them after its header deadline (408, counted);
 - 1,000 idle connections from 10 loopback addresses: /health still answers;
 - 64 websocket clients of /collector that never read: /health and an admin change still
   answer (a websocket holds no thread);
 - a connection cap with a clear refusal (503), a per-address cap, and the last connections kept
   for the peer and admin roles: readers are refused there, an admin is served;
 - a memory budget: clients that each start a 4 MiB websocket message and never finish it are
   closed with 1008 once the server holds its budget, and its memory stays bounded.
Usage: http_dos.py MYSQLPROBE"""
import http.client
import os
import re
import resource
import socket
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "live"))
from harness import Probe, skip  # noqa: E402
from sechttp import check, finish, ws_upgrade  # noqa: E402

BINARY = sys.argv[1]
SANITIZED = os.environ.get("MP_SANITIZED") == "1"  # ASan: memory figures are not the build's



def timed_get(port, path, token=None, host="127.0.0.1"):
    """(status, seconds) of one GET on a fresh connection; status 0 when it failed."""
    t0 = time.time()
    try:
        c = http.client.HTTPConnection(host, port, timeout=5)
        c.request("GET", path, headers={"Authorization": f"Bearer {token}"} if token else {})
        r = c.getresponse()
        r.read()
        c.close()
        return r.status, time.time() - t0
    except OSError:
        return 0, time.time() - t0


def post(port, path, token=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    c.request("POST", path, body=b"", headers={"Authorization": f"Bearer {token}"} if token else {})
    r = c.getresponse()
    r.read()
    c.close()
    return r.status


def metric(p, name, token=None):
    c = http.client.HTTPConnection("127.0.0.1", p.http_port, timeout=5)
    c.request("GET", "/metrics", headers={"Authorization": f"Bearer {token}"} if token else {})
    body = c.getresponse().read().decode()
    c.close()
    m = re.search(rf"^{name} (\d+)$", body, re.M)
    return int(m.group(1)) if m else -1


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))


def connect(port, source="127.0.0.1"):
    s = socket.socket()
    s.bind((source, 0))
    s.settimeout(5)
    s.connect(("127.0.0.1", port))
    return s


def ws_connect(port, path="/collector", token=None, source="127.0.0.1"):
    s, status, _ = ws_upgrade(port, path, token, source)
    return s, status


def worst_health(port, seconds):
    """The slowest of repeated /health calls over `seconds` (and whether all answered 200)."""
    worst, ok, end = 0.0, True, time.time() + seconds
    while time.time() < end:
        st, dt = timed_get(port, "/health")
        ok = ok and st == 200
        worst = max(worst, dt)
        time.sleep(0.1)
    return ok, worst


YAML = """serverport: 0
serveraddress: 127.0.0.1
interval: 3600
http: {{header_timeout_ms: 3000{extra}}}
plugins:
  cluster: none
  sinks: [sink-websocket]
"""


def slowloris_and_idle():
    with Probe(BINARY, YAML.format(extra="")) as p:
        port = p.http_port
        socks = []
        stop = threading.Event()
        for _ in range(100):
            s = connect(port)
            s.sendall(b"GET /health HTTP/1.1\r\n")
            socks.append(s)

        def drip():
            while not stop.is_set():
                for s in socks:
                    try:
                        s.sendall(b"X")
                    except OSError:
                        pass
                time.sleep(1)
        t = threading.Thread(target=drip, daemon=True)
        t.start()
        ok, worst = worst_health(port, 4)
        check(ok and worst < 1.0,
              f"slowloris: 100 connections dripping a header; /health answers (slowest {worst:.3f} s)")
        time.sleep(1.5)
        timeouts = metric(p, "mysqlprobe_http_timeouts_total")
        check(timeouts >= 100,
              f"slowloris: each is dropped at the 3 s header deadline (timeouts {timeouts})")
        stop.set()
        t.join()
        for s in socks:
            s.close()

        idle = []
        for i in range(1000):
            try:
                idle.append(connect(port, f"127.0.1.{1 + i % 10}"))
            except OSError:
                break
        check(len(idle) == 1000, f"idle: {len(idle)} idle connections open")
        ok, worst = worst_health(port, 2)
        check(ok and worst < 1.0, f"idle: /health answers beside them (slowest {worst:.3f} s)")
        time.sleep(3.5)
        conns = metric(p, "mysqlprobe_http_connections")
        check(conns <= 2, f"idle: connections that never send a request are closed ({conns} left)")
        for s in idle:
            s.close()


def websockets_hold_no_thread():
    with Probe(BINARY, YAML.format(extra="")) as p:
        port = p.http_port
        clients = []
        for i in range(64):
            s, st = ws_connect(port, source=f"127.0.2.{1 + i % 4}")
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            clients.append((s, st))
        check(all(st == 101 for _, st in clients), "websockets: 64 /collector clients connected")
        ok, worst = worst_health(port, 2)
        check(ok and worst < 1.0, f"websockets: /health answers beside them (slowest {worst:.3f} s)")
        check(post(port, "/config/update?report_period_ms=200") == 200,
              "websockets: an admin change is served beside them")
        time.sleep(2)  # reports go out to 64 clients that read nothing
        ok, worst = worst_health(port, 1)
        check(ok and worst < 1.0, f"websockets: still answering while they stall ({worst:.3f} s)")
        for s, _ in clients:
            s.close()


READ, ADMIN = "read-token-0123456789ab", "admin-token-0123456789"
CAP_YAML = f"""serverport: 0
serveraddress: 127.0.0.1
interval: 3600
http: {{max_connections: 40, reserved_connections: 10, max_connections_per_client: 35}}
auth:
  tokens:
    - {{name: dash, role: read, token: {READ}}}
    - {{name: ops, role: admin, token: {ADMIN}}}
plugins:
  cluster: none
  sinks: [sink-websocket]
"""


def caps():
    with Probe(BINARY, CAP_YAML) as p:
        port = p.http_port
        held = []
        for i in range(30):
            s, st = ws_connect(port, token=READ, source=f"127.0.3.{1 + i // 10}")
            held.append((s, st))
        check(all(st == 101 for _, st in held), "caps: 30 readers' websockets open (40 - 10 kept)")
        s, st = ws_connect(port, token=READ, source="127.0.3.9")
        check(st == 503, f"caps: the 31st reader is refused: the last 10 are kept ({st})")
        s.close()
        st, _ = timed_get(port, "/metrics", ADMIN, host="127.0.0.1")
        check(st == 200, f"caps: an admin is served in the reserve ({st})")
        st, _ = timed_get(port, "/metrics", READ, host="127.0.0.1")
        check(st == 503, f"caps: a reader is not ({st})")
        for s, _ in held:
            s.close()
        time.sleep(0.3)
        many = []
        for _ in range(36):
            try:
                many.append(ws_connect(port, token=READ, source="127.0.4.1"))
            except OSError:
                many.append((None, 0))
        statuses = [st for _, st in many]
        check(statuses.count(101) == 30 and 503 in statuses[30:],
              f"caps: one address gets at most its share ({statuses.count(101)} accepted)")
        for s, _ in many:
            if s:
                s.close()
        check(metric(p, "mysqlprobe_http_connections_refused_total", ADMIN) >= 3,
              "caps: refusals are counted")


def memory_budget():
    with Probe(BINARY, YAML.format(extra=", max_buffered_mb: 16")) as p:
        port = p.http_port
        base = rss_kb(p.proc.pid)
        part = b"m" * (4 << 20)
        key = b"\x01\x02\x03\x04"
        masked = bytes(c ^ key[i % 4] for i, c in enumerate(part[:1 << 16])) * 64
        codes = []
        socks = []
        for i in range(12):
            s, st = ws_connect(port, source=f"127.0.5.{1 + i}")
            if st != 101:
                codes.append(st)
                continue
            # A text frame that is not final: the message is never complete.
            try:
                s.sendall(struct.pack("!BBQ", 0x01, 0x80 | 127, len(part)) + key + masked)
            except OSError:
                pass  # closed by the server while sending: what the test wants to see
            socks.append(s)
        # Each refused client gets its close frame; waited for up to 10 s in all (a loaded
        # machine: other tests run beside this one).
        closed = 0
        seen = {}  # what the other clients got, shown when the check fails
        deadline = time.time() + 10
        for s in socks:
            s.settimeout(max(0.5, deadline - time.time()))
            try:
                data = s.recv(64)
                if data[:1] == b"\x88" and struct.unpack("!H", data[2:4])[0] == 1008:
                    closed += 1
                    continue
                what = f"bytes {data[:8].hex() or '(end)'}"
            except OSError as e:
                what = type(e).__name__
            seen[what] = seen.get(what, 0) + 1
        grew = (rss_kb(p.proc.pid) - base) / 1024
        # A client is past the budget at its frame (closed with 1008) or, when the server is
        # slower than the clients (TSan), already at its upgrade request (503): both refusals.
        busy = codes.count(503)
        other = [c for c in codes if c != 503]
        check(closed + busy >= 8 and not other,
              f"memory: clients past the 16 MiB budget are refused ({closed} closed with 1008, "
              f"{busy} upgrades answered 503, other answers {other}, the others got {seen})")
        check(grew < 40 or SANITIZED, f"memory: the node grew by {grew:.1f} MB for 48 MiB sent")
        check(metric(p, "mysqlprobe_http_memory_refused_total") >= 8, "memory: refusals counted")
        ok, worst = worst_health(port, 1)
        check(ok, "memory: the node keeps serving")
        for s in socks:
            s.close()


def main():
    if not os.path.exists(BINARY):
        skip(f"no binary at {BINARY}")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < 2200:
        skip(f"needs 2200 descriptors, the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    slowloris_and_idle()
    websockets_hold_no_thread()
    caps()
    memory_budget()
    finish()


main()

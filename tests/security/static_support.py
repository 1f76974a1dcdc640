# SPDX-License-Identifier: Apache-2.0
"""Shared by the tests/security/static_*.py tests: real mysqlprobe processes on 127.0.0.0/8 and
hostile websocket peers written with the standard library only (raw sockets, RFC 6455 framing by
hand), so that they can send what no well-behaved library would (a 100 MiB frame header, a
fragmented message that never ends)."""
import base64
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

SKIP = 77
SOURCE = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PCAP = os.path.join(SOURCE, "tests", "data", "pcap", "edge_cases_small.pcap")
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
# The build has sanitizers: ASan's quarantine keeps up to 256 MB of freed memory (RSS bounds).
SANITIZED = "--sanitized" in sys.argv[2:]
QUARANTINE_KB = 320 * 1024 if SANITIZED else 0
failures = []
NODES = []  # every node started: stopped at exit whatever happened


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)
    return cond


def finish():
    for n in NODES:
        n.stop()
    if failures:
        print(f"{len(failures)} check(s) failed")
        sys.exit(1)
    print("all checks passed")
    sys.exit(0)


def run(main, work):
    """Runs a test's main(): a failed assertion is a failed check; the work folder is removed
    when every check passed, else kept for its logs; then finish()."""
    try:
        main()
    except AssertionError as e:
        check(False, str(e))
    finally:
        if not failures:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"     logs kept in {work}")
    finish()


def wait_for(cond, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def free_port(host):
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def status_kb(pid, field):
    """VmRSS (now) or VmHWM (peak) of a process, in KiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


class Node:
    """One mysqlprobe process: `name` is its node name, `yaml` the rest of its config file."""

    def __init__(self, binary, work, name, host, yaml, nodename=None):
        self.binary, self.work, self.name, self.host = binary, work, name, host
        self.port = free_port(host)
        self.addr = f"{host}:{self.port}"
        self.cfg = os.path.join(work, name + ".yaml")
        with open(self.cfg, "w") as f:
            f.write(f"serverport: {self.port}\nserveraddress: {host}\n"
                    f"nodename: {json.dumps(nodename or name)}\n{yaml}")
        self.proc = None
        self.errname = os.path.join(work, name + ".err")
        NODES.append(self)

    def start(self):
        err = open(self.errname, "a")
        before = os.path.getsize(self.errname)
        self.proc = subprocess.Popen([self.binary, "-c", self.cfg], stdout=subprocess.DEVNULL,
                                     stderr=err)

        def running():
            if self.proc.poll() is not None:
                raise AssertionError(self.name + " exited: " + self.log()[-2000:])
            with open(self.errname) as f:
                f.seek(before)
                return "host: running" in f.read()
        wait_for(running, 20, self.name + " to start")
        return self

    def log(self):
        with open(self.errname, errors="replace") as f:
            return f.read()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def get(self, path, timeout=10, method="GET"):
        """(status, body text)"""
        req = urllib.request.Request(f"http://{self.addr}{path}", method=method,
                                     data=b"" if method == "POST" else None)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def post(self, path, timeout=10):
        """A change of state (join, remove, leave): POST."""
        return self.get(path, timeout, "POST")

    def metric(self, name):
        """The value of one counter of /metrics (0 when absent)."""
        st, body = self.get("/metrics")
        assert st == 200, f"/metrics: {st}"
        m = re.search(r"^" + re.escape(name) + r"(?:\{[^}]*\})? (\S+)$", body, re.M)
        return float(m.group(1)) if m else 0.0

    def healthy(self):
        try:
            return self.get("/health", timeout=5)[0] == 200
        except OSError:
            return False

    def rss_kb(self):
        return status_kb(self.proc.pid, "VmRSS")

    def peak_kb(self):
        return status_kb(self.proc.pid, "VmHWM")


def ws_frame(opcode, payload, fin=True, length=None):
    """A server-to-client frame (unmasked). `length` overrides the length field (a header that
    announces more than follows)."""
    n = len(payload) if length is None else length
    head = bytes([(0x80 if fin else 0) | opcode])
    if n < 126:
        head += bytes([n])
    elif n < 65536:
        head += bytes([126]) + struct.pack("!H", n)
    else:
        head += bytes([127]) + struct.pack("!Q", n)
    return head + payload


class FakeWsServer:
    """A websocket server on host:free port that answers any upgrade (101) and hands every
    connection to `behaviour(sock, path, index)` in its own thread. Records each request's path.
    Connections that close (or send a close frame) within `probe_wait` s (a /cluster/join probe
    that only checks the upgrade) are not handed over."""

    def __init__(self, host, behaviour, probe_wait=0.3):
        self.host, self.behaviour, self.probe_wait = host, behaviour, probe_wait
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.addr = f"{host}:{self.port}"
        self.paths = []  # every upgraded connection handed over, in order
        self.lock = threading.Lock()
        self.stopping = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stopping:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        try:
            c.settimeout(5)
            req = b""
            while b"\r\n\r\n" not in req:
                more = c.recv(4096)
                if not more:
                    return
                req += more
            head = req.split(b"\r\n\r\n")[0].decode(errors="replace")
            path = head.split("\r\n")[0].split(" ")[1]
            key = re.search(r"(?im)^sec-websocket-key:\s*(\S+)", head).group(1)
            accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
            c.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                       f"Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n").encode())
            c.settimeout(self.probe_wait)
            try:
                first = c.recv(1, socket.MSG_PEEK)
                if first == b"" or first[0] & 0x0F == 0x8:
                    return  # closed (or a close frame) at once: a probe of the upgrade only
            except socket.timeout:
                pass
            c.settimeout(10)
            with self.lock:
                index = len(self.paths)
                self.paths.append(path)
            self.behaviour(c, path, index)
        except OSError:
            pass  # the peer closed the link: what these tests provoke
        finally:
            c.close()

    def close(self):
        self.stopping = True
        self.sock.close()


def drain(c, seconds):
    """Reads (and discards) what the peer sends for `seconds` or until it closes; True when it
    closed the connection."""
    deadline = time.time() + seconds
    c.settimeout(0.2)
    while time.time() < deadline:
        try:
            if c.recv(65536) == b"":
                return True
        except socket.timeout:
            continue
        except OSError:
            return True
    return False


def offline_report(binary):
    """A real native report (mysqlprobe -r on a bundled capture), as a dict."""
    out = subprocess.run([binary, "-r", PCAP], capture_output=True, check=True, timeout=60)
    return json.loads(out.stdout)


def workdir(prefix):
    return tempfile.mkdtemp(prefix=prefix)


def recv_exact(c, n):
    out = b""
    while len(out) < n:
        more = c.recv(min(n - len(out), 1 << 20))
        if not more:
            raise ConnectionError("closed")
        out += more
    return out


def read_frame(c, max_len=64 << 20):
    """One client-to-server frame: (fin, opcode, payload), unmasked."""
    b0, b1 = recv_exact(c, 2)
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack("!H", recv_exact(c, 2))[0]
    elif n == 127:
        n = struct.unpack("!Q", recv_exact(c, 8))[0]
    if n > max_len:
        raise ConnectionError(f"frame of {n} bytes")
    mask = recv_exact(c, 4) if b1 & 0x80 else b"\0\0\0\0"
    data = recv_exact(c, n)
    payload = bytes(b ^ mask[i % 4] for i, b in enumerate(data)) if b1 & 0x80 else data
    return bool(b0 & 0x80), b0 & 0x0F, payload

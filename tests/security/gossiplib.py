# SPDX-License-Identifier: Apache-2.0
"""Shared by the gossip_*.py security tests: mysqlprobe nodes with cluster-gossip started from a
YAML file on 127.0.0.0/8, and memberlist messages built by hand (stdlib only: msgpack as Go
writes it, Go's LZW, compound) to play a hostile peer. docs/gossip-wire.md has the format."""
import atexit
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "live"))
from harness import skip, wait_for  # noqa: E402,F401

failures = []
NODES = []
WORKDIRS = []


@atexit.register
def _cleanup():
    """Whatever happened (a failure, a broken pipe), no process and no folder is left behind."""
    for n in NODES:
        try:
            n.kill()
        except Exception:
            pass
    for d in WORKDIRS:
        shutil.rmtree(d, ignore_errors=True)


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)


def finish():
    for n in NODES:
        n.kill()
    if failures:
        print(f"{len(failures)} check(s) failed: {failures}")
        sys.exit(1)
    print("all checks passed")
    sys.exit(0)


def run(main):
    """Runs a test's main(); an exception is a failure, and every node is killed."""
    try:
        main()
    except Exception as e:
        print("FAIL", e)
        for node in NODES:
            node.kill()
        sys.exit(1)


def free_port(host):
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def free_udp_tcp_port(host):
    """A port free for both TCP and UDP on host (the gossip port binds both)."""
    for _ in range(50):
        p = free_port(host)
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                u.bind((host, p))
            return p
        except OSError:
            continue
    raise RuntimeError("no free port")


class Node:
    """One mysqlprobe process with cluster-gossip: HTTP on a free port, gossip on HOST:GPORT."""

    def __init__(self, binary, name, host, extra="", folder=None, seeds_file=True, top=""):
        self.binary, self.name, self.host = binary, name, host
        self.dir = folder
        if folder is None:
            self.dir = tempfile.mkdtemp(prefix="mp-gsec-")
            WORKDIRS.append(self.dir)
        self.port = free_port(host)
        self.gport = free_udp_tcp_port(host)
        self.gossip = f"{host}:{self.gport}"
        self.cfg = os.path.join(self.dir, name + ".yaml")
        seeds = f"      seeds_file: {self.dir}/{name}.seeds\n" if seeds_file else ""
        with open(self.cfg, "w") as f:
            f.write(f"serverport: {self.port}\nserveraddress: {host}\nnodename: {name}\n"
                    f"interval: 1\n{top}cluster:\n  gossip: true\n  port: {self.gport}\n"
                    f"plugins:\n  cluster:\n    plugin: cluster-gossip\n    config:\n"
                    f"      name: {name}\n{seeds}" + extra)
        self.proc = None
        NODES.append(self)

    def start(self, wait=True):
        self.errpath = os.path.join(self.dir, self.name + ".err")
        self.err = open(self.errpath, "ab")
        self.proc = subprocess.Popen([self.binary, "-c", self.cfg], stdout=subprocess.DEVNULL,
                                     stderr=self.err)
        if wait:
            def running():
                if self.proc.poll() is not None:
                    raise AssertionError(f"{self.name} exited {self.proc.returncode}: "
                                         + self.log()[-2000:])
                return "host: running" in self.log()
            wait_for(running, 20, self.name + " start")
        return self

    def logbytes(self):
        with open(self.errpath, "rb") as f:
            return f.read()

    def log(self):
        return self.logbytes().decode(errors="replace")

    def call(self, path, method="GET"):
        req = urllib.request.Request(f"http://{self.host}:{self.port}{path}", method=method,
                                     data=b"" if method == "POST" else None)
        try:
            with urllib.request.urlopen(req, timeout=15) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            body = e.read()
            try:
                return e.code, json.loads(body or b"{}")
            except ValueError:
                return e.code, {"raw": body.decode(errors="replace")}

    def post(self, path):
        return self.call(path, "POST")

    def listnodes(self):
        st, body = self.call("/cluster/listnodes")
        assert st == 200, (st, body)
        return body

    def rss_kb(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def terminate(self, timeout=15):
        """SIGTERM; (exit status, seconds until exit)."""
        t0 = time.time()
        self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(timeout)
        return rc, time.time() - t0

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.proc and not self.err.closed:
            self.err.close()


def cleanup(path):
    shutil.rmtree(path, ignore_errors=True)


# ---- msgpack as go-msgpack 0.5.5 writes it ----

def mp_uint(v):
    if v <= 0x7f:
        return bytes([v])
    if v <= 0xff:
        return b"\xcc" + struct.pack(">B", v)
    if v <= 0xffff:
        return b"\xcd" + struct.pack(">H", v)
    if v <= 0xffffffff:
        return b"\xce" + struct.pack(">I", v)
    return b"\xcf" + struct.pack(">Q", v)


def mp_str(b):
    if isinstance(b, str):
        b = b.encode()
    n = len(b)
    if n < 32:
        return bytes([0xa0 | n]) + b
    if n <= 0xffff:
        return b"\xda" + struct.pack(">H", n) + b
    return b"\xdb" + struct.pack(">I", n) + b


def mp_map(fields):
    """fields: [(key, encoded value)], written in the given order."""
    n = len(fields)
    head = bytes([0x80 | n]) if n < 16 else b"\xde" + struct.pack(">H", n)
    return head + b"".join(mp_str(k) + v for k, v in fields)


VSN = bytes([1, 5, 2, 2, 5, 5])


def ip4(ip):
    return socket.inet_aton(ip)


def alive(name, ip, port, meta=b"", inc=1):
    """memberlist alive (type 4)."""
    return b"\x04" + mp_map([("Addr", mp_str(ip4(ip))), ("Incarnation", mp_uint(inc)),
                             ("Meta", mp_str(meta) if meta else b"\xc0"), ("Node", mp_str(name)),
                             ("Port", mp_uint(port)), ("Vsn", mp_str(VSN))])


def suspect(name, inc, frm):
    return b"\x03" + mp_map([("From", mp_str(frm)), ("Incarnation", mp_uint(inc)),
                             ("Node", mp_str(name))])


def tags(d):
    """serf tags in node meta: 0xFF + msgpack map."""
    return b"\xff" + mp_map([(k, mp_str(v)) for k, v in sorted(d.items())])


def lzw(data):
    """Go's compress/lzw writer: LSB order, literal width 8, a leading CLEAR."""
    out = bytearray()
    bits = nbits = 0
    width, hi, overflow = 9, 257, 512
    table = {}

    def write(code):
        nonlocal bits, nbits
        bits |= code << nbits
        nbits += width
        while nbits >= 8:
            out.append(bits & 0xff)
            bits >>= 8
            nbits -= 8

    def inc_hi():
        nonlocal hi, width, overflow, table
        hi += 1
        if hi == overflow:
            width += 1
            overflow <<= 1
        if hi == 4095:
            write(256)
            width, hi, overflow, table = 9, 257, 512, {}
            return False
        return True

    write(256)
    code = data[0]
    for x in data[1:]:
        key = code << 8 | x
        if key in table:
            code = table[key]
            continue
        write(code)
        code = x
        if inc_hi():
            table[key] = hi
    write(code)
    inc_hi()
    write(257)
    if nbits > 0:
        out.append(bits & 0xff)
    return bytes(out)


def compress(msg):
    """memberlist compress (type 9): {Algo: 0, Buf: lzw(msg)}."""
    return b"\x09" + mp_map([("Algo", b"\x00"), ("Buf", mp_str(lzw(msg)))])


def udp_send(host, port, msg, src="127.0.0.1"):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((src, 0))
        s.sendto(msg, (host, port))

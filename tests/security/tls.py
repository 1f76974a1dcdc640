# SPDX-License-Identifier: Apache-2.0
"""TLS on every link, with real processes on loopback and certificates the test makes itself
(openssl: a CA, and node certificates for 127.0.0.x):

 - the server speaks HTTPS and WSS only: a verified client gets /health and a /collector report;
   plain HTTP on the TLS port gets no answer (counted), and the node keeps serving; a connection
   that never starts its handshake is closed at the header deadline;
 - unusable certificate files stop the start, and --check says so;
 - a static cluster over TLS: the master dials its slave's /cluster/stream with TLS, verifies it
   against tls.ca_file, presents the cluster token, and merges the slave's reports; a master
   without the CA cannot add the slave;
 - a gossip cluster over TLS: the slave pushes its reports to the master's /cluster/push (the
   pusher over TLS), which merges them.
Usage: tls.py MYSQLPROBE"""
import base64
import http.client
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "live"))
from harness import make_certs, skip, wait_for  # noqa: E402
from sechttp import check, finish  # noqa: E402

BINARY = sys.argv[1]
SOURCE = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
PCAP = os.path.join(SOURCE, "tests/data/pcap/sysbench_text_rw_2t_20tx.pcap")
TOKEN = "cluster-peer-token-0123456789"
procs = []



def free_port(host):
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class Node:
    def __init__(self, work, name, host, yaml):
        self.name, self.host = name, host
        self.port = free_port(host)
        self.cfg = os.path.join(work, name + ".yaml")
        with open(self.cfg, "w") as f:
            f.write(f"serverport: {self.port}\nserveraddress: {host}\nnodename: {name}\n" + yaml)
        self.errf = os.path.join(work, name + ".err")
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen([BINARY, "-c", self.cfg], stdout=subprocess.DEVNULL,
                                     stderr=open(self.errf, "w"))
        procs.append(self.proc)

        def running():
            if self.proc.poll() is not None:
                raise AssertionError(self.name + " exited: " + self.log()[-2000:])
            return "host: running" in self.log()
        wait_for(running, 20, self.name + " start")
        return self

    def log(self):
        with open(self.errf) as f:
            return f.read()

    def call(self, method, path, ctx, token=None, plain=False):
        c = (http.client.HTTPConnection(self.host, self.port, timeout=10) if plain else
             http.client.HTTPSConnection(self.host, self.port, context=ctx, timeout=10))
        c.request(method, path, body=b"" if method == "POST" else None,
                  headers={"Authorization": f"Bearer {token}"} if token else {})
        r = c.getresponse()
        out = r.status, r.read().decode(errors="replace")
        c.close()
        return out

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


def tls_yaml(d, ca=True, cert=True):
    out = "tls:\n"
    if cert:
        out += f"  cert_file: {d}/node.crt\n  key_file: {d}/node.key\n"
    if ca:
        out += f"  ca_file: {d}/ca.crt\n"
    return out


def server(d, work, ctx):
    n = Node(work, "srv", "127.0.0.1", "interval: 1\nhttp: {header_timeout_ms: 1500}\n" +
             tls_yaml(d) + "plugins:\n  cluster: none\n  sinks: [sink-websocket]\n").start()
    st, body = n.call("GET", "/health", ctx)
    check(st == 200 and json.loads(body)["status"] == "ok", f"https: /health ({st})")
    import websocket  # python3-websocket
    ws = websocket.create_connection(f"wss://127.0.0.1:{n.port}/collector",
                                     sslopt={"ca_certs": f"{d}/ca.crt"}, timeout=5)
    report = json.loads(ws.recv())
    ws.close()
    check(report.get("node") == "srv", "wss: /collector sends a report")
    s = socket.create_connection(("127.0.0.1", n.port), timeout=3)
    s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    try:
        got = s.recv(100)
    except OSError:
        got = b""
    s.close()
    check(not got.startswith(b"HTTP/"), f"plain HTTP on the TLS port gets no HTTP answer ({got[:20]!r})")
    silent = socket.create_connection(("127.0.0.1", n.port), timeout=4)
    t0 = time.time()
    try:
        gone = silent.recv(10) == b""
    except OSError:
        gone = True
    check(gone and time.time() - t0 < 3.5,
          f"a connection that never starts its handshake is closed ({time.time() - t0:.1f} s)")
    silent.close()
    st, m = n.call("GET", "/metrics", ctx)
    line = [ln for ln in m.splitlines() if ln.startswith("mysqlprobe_http_tls_handshake_failures_total ")]
    check(bool(line) and int(line[0].split()[1]) >= 1, f"handshake failures counted ({line})")
    other = ssl.create_default_context(cafile=f"{d}/other.crt")
    try:
        n.call("GET", "/health", other)
        check(False, "a client trusting another CA refuses the node's certificate")
    except ssl.SSLError:
        check(True, "a client trusting another CA refuses the node's certificate")
    n.stop()
    # Unusable files stop the start, and --check says so.
    bad = Node(work, "bad", "127.0.0.1", f"tls:\n  cert_file: {d}/node.crt\n  key_file: {d}/ca.key\n")
    r = subprocess.run([BINARY, "--check", "-c", bad.cfg], capture_output=True, text=True)
    check(r.returncode == 2 and "tls.key_file" in r.stderr,
          f"--check: a key of another certificate ({r.stderr.strip()[-90:]})")
    bad2 = Node(work, "bad2", "127.0.0.1", f"tls:\n  cert_file: {d}/none.crt\n  key_file: {d}/node.key\n")
    r = subprocess.run([BINARY, "--check", "-c", bad2.cfg], capture_output=True, text=True)
    check(r.returncode == 2 and "tls.cert_file" in r.stderr, "--check: a missing certificate")


def static_cluster(d, work, ctx):
    auth = f"auth:\n  tokens:\n    - {{name: nodes, role: admin, token: {TOKEN}}}\n  cluster_token: nodes\n"
    slave = Node(work, "sslave", "127.0.0.5", f"slave: true\ninterval: 1\nprobe:\n  file: {PCAP}\n"
                 "  loop: true\n" + auth + tls_yaml(d)).start()
    master = Node(work, "smaster", "127.0.0.6", "interval: 1\ncluster:\n  gossip: false\n" + auth +
                  tls_yaml(d) + "plugins:\n  cluster: {plugin: cluster-static, config: "
                  f"{{state_file: {work}/state.txt, reconnect_period_s: 1}}}}\n").start()
    st, body = master.call("POST", f"/cluster/join?addr=127.0.0.5:{slave.port}", ctx, TOKEN)
    check(st == 200, f"static: the master adds its slave over TLS ({st} {body})")

    def merged():
        st, body = master.call("GET", "/cluster/listnodes", ctx, TOKEN)
        nodes = json.loads(body).get("nodes", []) if st == 200 else []
        return nodes and nodes[0]["state"] == "up" and nodes[0]["reports_received"] >= 2
    try:
        wait_for(merged, 15, "the slave's reports")
        check(True, "static: the slave's reports reach the master over TLS")
    except AssertionError:
        check(False, "static: the slave's reports reach the master over TLS")
    blind = Node(work, "blind", "127.0.0.7", "interval: 1\ncluster:\n  gossip: false\n" + auth +
                 tls_yaml(d, ca=False) + "plugins:\n  cluster: {plugin: cluster-static, config: "
                 f"{{state_file: {work}/state2.txt}}}}\n").start()
    st, body = blind.call("POST", f"/cluster/join?addr=127.0.0.5:{slave.port}", ctx, TOKEN)
    check(st == 409, f"static: a master that does not dial with TLS cannot add it ({st})")
    wrong = Node(work, "wrongca", "127.0.0.4", "interval: 1\ncluster:\n  gossip: false\n" + auth +
                 f"tls:\n  ca_file: {d}/other.crt\n" + "plugins:\n  cluster: {plugin: "
                 f"cluster-static, config: {{state_file: {work}/state3.txt}}}}\n").start()
    st, body = wrong.call("POST", f"/cluster/join?addr=127.0.0.5:{slave.port}", None, TOKEN,
                          plain=True)
    check(st == 409 and "SSL" in body,
          f"static: a master trusting another CA refuses the slave's certificate ({st} {body[:90]})")
    for n in (wrong, blind, master, slave):
        n.stop()


def gossip_cluster(d, work, ctx):
    key = base64.b64encode(os.urandom(16)).decode()
    auth = f"auth:\n  tokens:\n    - {{name: nodes, role: admin, token: {TOKEN}}}\n  cluster_token: nodes\n"
    gport = free_port("127.0.0.8")

    def gossip(name, host, slave, extra=""):
        return (f"interval: 1\n{'slave: true' if slave else ''}\n{extra}cluster:\n  gossip: true\n"
                f"  port: {gport}\n  keys: [{key}]\n" + auth + tls_yaml(d) +
                f"plugins:\n  cluster:\n    plugin: cluster-gossip\n    config:\n"
                f"      name: {name}\n      seeds_file: {work}/{name}.seeds\n"
                f"      reconnect_period_s: 1\n")
    master = Node(work, "gmaster", "127.0.0.8", gossip("gmaster", "127.0.0.8", False)).start()
    slave = Node(work, "gslave", "127.0.0.9", gossip("gslave", "127.0.0.9", True,
                 f"probe:\n  file: {PCAP}\n  loop: true\n")).start()
    st, body = slave.call("POST", f"/cluster/join?addr=127.0.0.8:{gport}", ctx, TOKEN)
    check(st == 200, f"gossip: the slave joins ({st} {body})")

    def merged():
        st, body = master.call("GET", "/cluster/listnodes", ctx, TOKEN)
        return st == 200 and json.loads(body).get("reports", {}).get("settled_here", 0) >= 0 and \
            "slave_reports_merged_total" in master.call("GET", "/metrics", ctx, TOKEN)[1] and \
            int([ln for ln in master.call("GET", "/metrics", ctx, TOKEN)[1].splitlines()
                 if ln.startswith("mysqlprobe_cluster_gossip_slave_reports_merged_total ")][0]
                .split()[1]) >= 2
    try:
        wait_for(merged, 20, "the slave's pushed reports")
        check(True, "gossip: the slave's reports are pushed to the master over TLS and merged")
    except AssertionError:
        check(False, "gossip: the slave's reports are pushed to the master over TLS and merged")
        print(slave.log()[-1500:])
        print(master.log()[-1500:])
    for n in (slave, master):
        n.stop()


def main():
    if not os.path.exists(BINARY):
        skip(f"no binary at {BINARY}")
    if shutil.which("openssl") is None:
        skip("openssl is not installed (scripts/deps.sh installs it)")
    try:
        import websocket  # noqa: F401
    except ImportError:
        skip("python3-websocket is not installed")
    work = tempfile.mkdtemp(prefix="mp-sec-tls-")
    try:
        make_certs(work)
        ctx = ssl.create_default_context(cafile=f"{work}/ca.crt")
        server(work, work, ctx)
        static_cluster(work, work, ctx)
        gossip_cluster(work, work, ctx)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        shutil.rmtree(work, ignore_errors=True)
    finish()


main()

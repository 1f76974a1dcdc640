#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""The original Go Mysql Probe's operator, first day: its README's sample configuration (tabs
fixed, ports changed) on a slave and on a master, driven by a client that speaks only the
original's formats: /collector reports as snappy short-key JSON, /cluster/listnodes as an array,
join/leave answering "OK". Everything runs in a network namespace this test creates (loopback
and a veth pair 10.99.0.1/24): gossip binds every interface and advertises the routable address.

Checks each point of docs/compat.md; usage: original_test.py MYSQLPROBE (as root)."""
import hashlib
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "live"))
from harness import MariaDB, Probe, skip, wait_for  # noqa: E402

if os.geteuid() != 0:
    skip("needs root: a network namespace, capture on lo")
try:
    import pymysql
    import snappy
    import websocket
except ImportError as e:
    skip(f"{e.name} is not installed (scripts/deps.sh installs it)")

binary = os.path.abspath(sys.argv[1])
ADDR = "10.99.0.1"

# Re-run inside a network namespace of our own: nothing here reaches another address.
if os.environ.get("MP_COMPAT_NETNS") != "1":
    if not shutil.which("unshare") or not shutil.which("ip"):
        skip("unshare and ip (util-linux, iproute2) are needed")
    env = dict(os.environ, MP_COMPAT_NETNS="1")
    sys.exit(subprocess.run(["unshare", "--net", sys.executable] + sys.argv, env=env).returncode)
for cmd in (["ip", "link", "set", "lo", "up"],
            ["ip", "link", "add", "v0", "type", "veth", "peer", "name", "v1"],
            ["ip", "addr", "add", f"{ADDR}/24", "dev", "v0"],
            ["ip", "link", "set", "v0", "up"], ["ip", "link", "set", "v1", "up"]):
    subprocess.run(cmd, check=True)

failures = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what, flush=True)
    if not ok:
        failures.append(what)


# The original README's sample, verbatim: its `group:` line is indented with a tab.
README_SAMPLE = ("slave: true      # true if run as slave. In gossip mode, those nodes not slave "
                 "are initialized as master. \n"
                 "serverport: 8667 # websocket address the node listen\n"
                 "interval: 10     # report interval, slaves and master(s) will report assembled "
                 "data period by websocket\n"
                 "cluster:\n"
                 "  gossip: true   # true if run as gossip mode\n"
                 "  \t  group: test    # cluster name\n"
                 "  port: 0        # gossip bind port\n"
                 "probe:\n"
                 "  device: lo0      # device to probe, slave only\n"
                 "  port: 3306       # port to probe, slave only\n"
                 "  snappylength: 0  # snappy buffer length of the probe, slave only\n"
                 "  workers: 2       # number of workers to process probe data, slave only\n")


def sample(slave, port):
    """The sample with its tab fixed, the device and port of this test, a 1 s interval, the HTTP
    port chosen by the kernel, and slow queries from 0 ms (the original's own key)."""
    text = README_SAMPLE.replace("  \t  group", "  group")
    text = text.replace("slave: true ", f"slave: {'true' if slave else 'false'} ")
    text = text.replace("serverport: 8667", "serverport: 0")
    text = text.replace("interval: 10 ", "interval: 1 ")
    text = text.replace("device: lo0", "device: lo")
    text = text.replace("port: 3306", f"port: {port}")
    return text + "slowthresholdms: 0\n"


def http(node, method, path):
    req = urllib.request.Request(f"http://127.0.0.1:{node.http_port}{path}", method=method,
                                 data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read().decode()


def reports(node, until, timeout=30, query=""):
    """Reads /collector as the original's consumers do (binary frames, snappy, short keys) until
    `until(merged)` holds; returns every report."""
    ws = websocket.create_connection(f"ws://127.0.0.1:{node.http_port}/collector{query}",
                                     timeout=timeout)
    got = []
    deadline = time.time() + timeout
    try:
        while time.time() < deadline:
            opcode, data = ws.recv_data()
            if opcode != websocket.ABNF.OPCODE_BINARY:
                raise AssertionError(f"a frame of opcode {opcode}, not binary")
            got.append(json.loads(snappy.uncompress(data)))
            if until(got):
                return got
    finally:
        ws.close()
    raise AssertionError("the reports never showed what was expected")


def summaries(reps):
    """Every (assembly key, assembly) of the reports."""
    for r in reps:
        for key, a in r.items():
            yield key, a


# 1. The sample as the README prints it: the error names the tab and its line.
d = tempfile.mkdtemp(prefix="mp-compat-")
with open(os.path.join(d, "readme.yaml"), "w") as f:
    f.write(README_SAMPLE)
p = subprocess.run([binary, "--check", "-c", os.path.join(d, "readme.yaml")], capture_output=True,
                   text=True)
check(p.returncode == 2 and "tab characters are not allowed for indentation in YAML, line 6"
      in p.stderr, f"the README sample's tab: {p.stderr.strip()}")

N_EXECUTES = 40
with MariaDB() as db:
    setup = pymysql.connect(host="127.0.0.1", port=db.port, user="root", autocommit=True)
    setup.cursor().execute("CREATE DATABASE compat")
    setup.cursor().execute("CREATE TABLE compat.t (id INT PRIMARY KEY, v VARCHAR(20))")
    setup.cursor().execute("INSERT INTO compat.t VALUES (1, 'one')")
    setup.close()
    # A statement prepared before any probe runs (COM_STMT_PREPARE of "DO 1"): its executes
    # are the original's `f` (executes without their SQL).
    old = pymysql.connect(host="127.0.0.1", port=db.port, user="root", database="compat",
                          autocommit=True)
    old._execute_command(0x16, "DO 1")
    first = old._read_packet()
    stmt_id = struct.unpack("<I", first.get_bytes(1, 4))[0]

    with Probe(binary, sample(True, db.port)) as slave, \
            Probe(binary, sample(False, db.port)) as master:
        # 4. probe: is "slave only": the master, given the same file, does not capture.
        check("probe.device is not used" in master.log(), "the master says it does not capture")
        check(not any(k.startswith("mysqlprobe_capture_pcap") for k in master.metrics()),
              "the master has no capture")
        check(any(k.startswith("mysqlprobe_capture_pcap") for k in slave.metrics()),
              "the slave captures")
        # 3. gossip on every interface, the routable address advertised; a warning without keys.
        st, ctype, body = http(slave, "GET", "/cluster/listnodes")
        nodes = json.loads(body)
        check(st == 200 and isinstance(nodes, list) and len(nodes) == 1,
              f"listnodes: the original's array ({body})")
        me = nodes[0]
        check(set(me) == {"name", "ip", "gossip_port", "meta"} and
              set(me["meta"]) == {"role", "epic", "group", "server_port"},
              f"each node is {{name, ip, gossip_port, meta{{role, epic, group, server_port}}}}: {me}")
        check(me["ip"] == ADDR, f"the slave advertises the routable address {ADDR}: {me['ip']}")
        check(me["meta"]["group"] == "test" and me["meta"]["server_port"] == slave.http_port,
              "meta: the group and the server port")
        ss = subprocess.run(["ss", "-ulnH", f"sport = :{me['gossip_port']}"], capture_output=True,
                            text=True).stdout
        check(re.search(r"(0\.0\.0\.0|\*):%d\b" % me["gossip_port"], ss) is not None,
              f"gossip UDP is bound to every interface: {ss.strip()}")
        check("WITHOUT encryption keys" in slave.log(), "gossip without keys: a warning at start")
        # Bound to every interface, any local address on its own port is itself.
        st, _, body = http(slave, "POST", f"/cluster/join?addr=127.0.0.1:{me['gossip_port']}")
        check(st == 409 and "own gossip address" in body, f"join of itself by 127.0.0.1: {st}")
        # join answers "OK" in plain text, as the original (by POST: state changes are POSTs).
        st, ctype, body = http(master, "POST",
                               f"/cluster/join?addr={me['ip']}:{me['gossip_port']}")
        check(st == 200 and body == "OK" and ctype.startswith("text/plain"),
              f"join: {st} {ctype} {body!r}")
        st, ctype, body = http(master, "POST", "/cluster/join?addr=nonsense")
        check(st == 400 and ctype.startswith("text/plain") and "addr" in body,
              f"a bad join: the reason in plain text ({st} {body!r})")

        def two():
            nodes = json.loads(http(master, "GET", "/cluster/listnodes")[2])
            return nodes if len(nodes) == 2 else None
        nodes = wait_for(two, 20, "the master to list two nodes")
        roles = {n["meta"]["role"] for n in nodes}
        check(roles == {"master", "slave"}, f"listnodes on the master: {roles}")
        check(all(n["ip"] == ADDR for n in nodes), "both advertise the routable address")
        st, _, body = http(master, "GET", "/cluster/listnodes?format=native")
        check(st == 200 and "members" in json.loads(body), "the richer answer on request")

        # Traffic: executes of the old statement, errors, and normal queries.
        for _ in range(N_EXECUTES):
            old._execute_command(0x17, struct.pack("<IBI", stmt_id, 0, 1))
            old._read_packet()
        old.close()
        c = pymysql.connect(host="127.0.0.1", port=db.port, user="root", database="compat",
                            autocommit=True)
        messages = {}
        for sql in ("SELECT * FROM no_such_table", "INSERT INTO t VALUES (1, 'again')",
                    "SELEC 1"):
            try:
                c.cursor().execute(sql)
            except pymysql.err.MySQLError as e:
                messages[e.args[0]] = e.args[1]
        c.cursor().execute("SELECT v FROM t WHERE id = 1")
        c.close()
        check(sorted(messages) == [1062, 1064, 1146], f"the client saw three errors: {messages}")

        def complete(reps):
            f = sum(a.get("f", 0) for _, a in summaries(reps))
            errs = set()
            for _, a in summaries(reps):
                for client in a.get("e", []):
                    for s in client.get("b", []):
                        for m in s.get("p", []):
                            if m.get("d"):
                                errs.add((m.get("f"), m.get("e")))
            return f >= N_EXECUTES and len(errs) >= 3
        # 1 and 6: the master's merged reports, in the original's format by default.
        reps = reports(master, complete)
        f = sum(a.get("f", 0) for _, a in summaries(reps))
        check(f == N_EXECUTES, f"f: executes without their SQL, {f} of {N_EXECUTES}")
        errs = {}
        keys_ok = True
        for _, a in summaries(reps):
            for s in a.get("d", []):
                keys_ok = keys_ok and s["a"] == hashlib.md5(s["b"].encode()).hexdigest()
            for client in a.get("e", []):
                for s in client.get("b", []):
                    for m in s.get("p", []):
                        if m.get("d"):
                            errs[m["f"]] = m.get("e")
        check(keys_ok, "each template's key is the MD5 of its text")
        for code, text in messages.items():
            check(errs.get(code) == text, f"error {code}: the message the client saw ({text!r})")
        # A new consumer asks for native JSON: the SQL state and the latest message per code.
        ws = websocket.create_connection(
            f"ws://127.0.0.1:{master.http_port}/collector?format=native", timeout=10)
        native = json.loads(ws.recv())
        ws.close()
        check("templates" in native, "?format=native: native JSON")
        # leave: "OK"
        st, ctype, body = http(slave, "POST", "/cluster/leave")
        check(st == 200 and body == "OK", f"leave: {st} {body!r}")

# The error details in native JSON, offline (the same decoder): state and message per code.
out = subprocess.run([binary, "-r", os.path.join(os.path.dirname(__file__), "..", "data", "pcap",
                                                 "edge_cases_small.pcap")],
                     capture_output=True, text=True, check=True).stdout
details = {}
for t in json.loads(out)["templates"]:
    for code, detail in t.get("error_details", {}).items():
        details[code] = detail
check(details.get("1146", {}).get("sql_state") == "42S02" and
      "doesn't exist" in details.get("1146", {}).get("message", ""),
      f"native error_details: {details.get('1146')}")
shutil.rmtree(d, ignore_errors=True)
if failures:
    print(f"{len(failures)} check(s) failed")
    sys.exit(1)
print("original compatibility: OK")

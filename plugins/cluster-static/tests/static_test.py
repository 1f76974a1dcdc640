#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""cluster-static with real processes on 127.0.0.0/8: one master (127.0.0.1) and three slaves
(127.0.0.2-4), each replaying a different bundled capture in a loop. Independent recorders
(Python websocket-client) keep every slave's own reports from its /collector, so the master's
merged view is checked against what the slaves themselves said:
 - merged totals = the sum of the slave reports the master lists as merged; every slave report
   is merged exactly once (kill -9 of a slave and its restart included);
 - merged p99 = the p99 of the union of the slaves' sketches (within the sketch's rounding);
 - join/remove/leave, bad requests, the state file across a master restart, the token.
Usage: static_test.py MYSQLPROBE SOURCE_DIR"""
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

binary, source = sys.argv[1], sys.argv[2]
sys.path.insert(0, os.path.join(source, "tests", "live"))
from harness import Recorder, skip, wait_for  # noqa: E402

try:
    import websocket
except ImportError:
    skip("python3-websocket missing (scripts/deps.sh installs it)")

PCAPS = [os.path.join(source, "tests", "data", "pcap", f) for f in
         ("sysbench_text_rw_2t_20tx.pcap", "sysbench_ps_rw_2t_20tx.pcap", "edge_cases_small.pcap")]
WORK = tempfile.mkdtemp(prefix="mp-cluster-")
failures = []
NODES = []  # every node started, killed at exit whatever happened


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)


def free_port(host):
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class Node:
    """One mysqlprobe process with a fixed address and port."""

    def __init__(self, name, host, yaml_extra):
        self.name, self.host = name, host
        self.port = free_port(host)
        self.addr = f"{host}:{self.port}"
        self.cfg = os.path.join(WORK, name + ".yaml")
        with open(self.cfg, "w") as f:
            f.write(f"serverport: {self.port}\nserveraddress: {host}\nnodename: {name}\n"
                    f"interval: 1\n{yaml_extra}")
        self.proc = None
        NODES.append(self)

    def start(self):
        self.err = open(os.path.join(WORK, self.name + ".err"), "a")
        before = os.path.getsize(self.err.name)  # a restart appends to the same log
        self.proc = subprocess.Popen([binary, "-c", self.cfg], stdout=subprocess.DEVNULL,
                                     stderr=self.err)

        def running():
            if self.proc.poll() is not None:
                raise AssertionError(self.name + " exited: " + open(self.err.name).read()[-2000:])
            with open(self.err.name) as f:
                f.seek(before)
                return "host: running" in f.read()
        wait_for(running, 20, self.name + " start")
        return self

    def stop(self, sig=signal.SIGTERM):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(15)

    def get(self, path, token=None, method="GET"):
        """(status, parsed JSON body); the token goes in the Authorization header"""
        req = urllib.request.Request(f"http://{self.addr}{path}", method=method,
                                     data=b"" if method == "POST" else None)
        if token is not None:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"{}")

    def post(self, path, token=None):
        """A change of state: POST (admin routes refuse GET with 405)"""
        return self.get(path, token, "POST")


def slave_yaml(pcap, token=""):
    tok = f"cluster:\n  token: {token}\n" if token else ""
    return f"slave: true\nprobe:\n  file: {pcap}\n  loop: true\n{tok}"


def master_yaml(token=""):
    tok = f"  token: {token}\n" if token else ""
    return f"cluster:\n  gossip: false\n{tok}plugins:\n  cluster: {{plugin: cluster-static, " \
           f"config: {{state_file: {WORK}/state.txt, reconnect_period_s: 1}}}}\n"


def ident(r):
    return (r["node"], r["started_ns"], r["seq"])


def quantile(buckets, zero, count, q, vmin, vmax):
    """The report's rank rule over a sketch: rank round(q*n + 0.5) (ties to even), clamped."""
    rank = min(max(round(q * count + 0.5), 1), count)
    if rank == count:
        return vmax
    seen = zero
    if rank <= seen:
        return 0
    gamma = 1.01 / 0.99
    for i in sorted(buckets):
        seen += buckets[i]
        if seen >= rank:
            return min(max(2 * gamma ** i / (gamma + 1), vmin), vmax)
    return vmax


def main():
    slaves = [Node(f"slave{i + 1}", f"127.0.0.{i + 2}", slave_yaml(p)) for i, p in enumerate(PCAPS)]
    master = Node("master", "127.0.0.1", master_yaml())
    # Each slave's recorder connects as soon as that slave runs, before the next one starts: the
    # recorder must hold every report the slave sends (starting the other slaves first could take
    # longer than a slave's first interval under ASan and load, and its first report was missed).
    recorders = {}
    for s in slaves:
        s.start()
        recorders[s.name] = Recorder(s)
        recorders[s.name].connected.wait(10)
    master.start()
    merged = Recorder(master)
    for r in list(recorders.values()) + [merged]:
        r.connected.wait(10)

    # Bad requests change nothing.
    check(master.post("/cluster/join")[0] == 400, "join without addr: 400")
    check(master.post("/cluster/join?addr=no-port")[0] == 400, "join with a bad addr: 400")
    # A slave that does not answer yet is taken (as the original did) and shown down: a topology
    # can be registered ahead of its slaves. A server that answers but is not a slave is refused.
    st, body = master.post("/cluster/join?addr=127.0.0.9:1")
    check(st == 200 and body.get("state") == "down", f"join of a slave that is down: {st} {body}")
    nodes = {n["addr"]: n["state"] for n in master.get("/cluster/listnodes")[1]["nodes"]}
    check(nodes.get("127.0.0.9:1") == "down", f"listnodes shows it down: {nodes}")
    check(master.post("/cluster/remove?addr=127.0.0.9:1")[0] == 200, "remove it again: 200")
    check(master.post("/cluster/remove?addr=127.0.0.2:1")[0] == 404, "remove of a stranger: 404")
    check(master.post("/cluster/join?addr=0.0.0.0:8667")[0] == 400, "join of nobody's address: 400")
    check(master.post(f"/cluster/join?addr={master.addr}")[0] == 409, "join of itself: 409")
    for s in slaves:
        st, body = master.post(f"/cluster/join?addr={s.addr}")
        check(st == 200, f"join {s.addr}: {st} {body}")
    check(master.post(f"/cluster/join?addr={slaves[0].addr}")[0] == 409, "join twice: 409")
    check(slaves[0].post("/cluster/join?addr=127.0.0.1:1")[0] == 404, "a slave has no /cluster/join")

    def states():
        return {n["addr"]: n["state"] for n in master.get("/cluster/listnodes")[1]["nodes"]}
    wait_for(lambda: set(states().values()) == {"up"} and len(states()) == 3, 10, "3 slaves up")
    check(True, "listnodes: 3 slaves up")
    st, body = slaves[0].get("/cluster/listnodes")
    check(st == 200 and body["self"]["role"] == "slave" and body["master"], "slave listnodes")
    # The original's shape on request: the master's slaves as {name, ip, gossip_port, meta}.
    st, body = master.get("/cluster/listnodes?format=original")
    check(st == 200 and sorted(n["name"] for n in body) == sorted(s.addr for s in slaves) and
          all(n["meta"]["role"] == "slave" and n["meta"]["server_port"] == int(n["name"].split(":")[1])
              for n in body), f"listnodes?format=original: the original's array ({body})")

    time.sleep(3)
    # kill -9 a slave, then start it again: down, then up, with a new run.
    victim = slaves[1]
    victim.stop(signal.SIGKILL)
    wait_for(lambda: states()[victim.addr] == "down", 10, "the killed slave to be down")
    check(True, "kill -9: the master marks the slave down")
    victim.start()
    wait_for(lambda: states()[victim.addr] == "up", 10, "the restarted slave to be up")
    check(True, "restart: the master marks it up again")
    time.sleep(3)

    # Stop the slaves (their last reports go out), let the master merge them, stop it.
    for s in slaves:
        s.stop()
    time.sleep(2.5)
    merged_reports = list(merged.reports)
    contributions = [(c["node"], c["started_ns"], c["seq"])
                     for m in merged_reports for c in m.get("cluster", {}).get("contributors", [])]
    slave_reports = {ident(r): r for rec in recorders.values() for r in rec.reports}
    check(len(contributions) == len(set(contributions)),
          f"no slave report merged twice ({len(contributions)} merged)")
    missing = sorted(set(slave_reports) - set(contributions))
    extra = sorted(set(contributions) - set(slave_reports))
    check(not missing, f"every slave report reached the master (missing: {missing[:5]})")
    check(not extra, f"the master merged only reports the slaves sent (unknown: {extra[:5]})")
    runs = {(n, s) for n, s, _ in contributions if n == victim.name}
    check(len(runs) == 2, "the killed slave's two runs both contributed")

    # Totals: the master's merged commands = the sum over the reports it merged.
    want, got = {}, {}
    for key in contributions:
        for k, v in slave_reports.get(key, {}).get("totals", {}).get("commands", {}).items():
            want[k] = want.get(k, 0) + v
    for m in merged_reports:
        for k, v in m.get("totals", {}).get("commands", {}).items():
            got[k] = got.get(k, 0) + v
    print(f"     merged commands: {got}")
    check(got == want and sum(got.values()) > 0, "merged totals = sum of the slaves' reports")

    # p99 of a merged template = p99 of the union of the merged reports' sketches.
    compared = 0
    bad = []
    for m in merged_reports:
        parts = [slave_reports[(c["node"], c["started_ns"], c["seq"])]
                 for c in m.get("cluster", {}).get("contributors", [])
                 if (c["node"], c["started_ns"], c["seq"]) in slave_reports]
        if len(parts) < 2:
            continue
        for t in m["templates"]:
            buckets, zero, lo, hi, n = {}, 0, math.inf, 0.0, 0
            for p in parts:
                for u in p["templates"]:
                    if (u["id"], u["server"], u["schema"]) != (t["id"], t["server"], t["schema"]):
                        continue
                    sk = u["latency_us"]["sketch"]
                    zero += sk["zero"]
                    for i, c in sk["buckets"]:
                        buckets[i] = buckets.get(i, 0) + c
                        n += c
                    lo, hi = min(lo, u["latency_us"]["min"]), max(hi, u["latency_us"]["max"])
            n += zero
            if n == 0:
                continue
            union = quantile(buckets, zero, n, 0.99, lo, hi)
            compared += 1
            if abs(union - t["latency_us"]["p99"]) > 0.06 + 1e-3 * union:
                bad.append((t["fingerprint"][:40], union, t["latency_us"]["p99"]))
    check(compared > 0 and not bad,
          f"merged p99 = p99 of the union of the slaves' sketches ({compared} templates; {bad[:3]})")

    # Topology by hand, and the state file across a master restart.
    for s in slaves:
        s.start()
    check(master.post(f"/cluster/remove?addr={slaves[2].addr}")[0] == 200, "remove: 200")
    check(slaves[2].addr not in states(), "remove: gone from listnodes")
    state = open(f"{WORK}/state.txt").read()
    check(f"slave {slaves[0].addr}\n" in state and f"slave {slaves[2].addr}\n" not in state,
          "state file follows changes")
    master.stop()
    master.start()
    wait_for(lambda: states().get(slaves[0].addr) == "up" and len(states()) == 2, 10,
             "the restarted master to dial its slaves from the state file")
    check(True, "a restarted master dials the slaves of its state file")
    time.sleep(2.5)  # the slaves replay their history to it: only what it had not merged
    again = [(c["node"], c["started_ns"], c["seq"])
             for m in merged.reports for c in m.get("cluster", {}).get("contributors", [])]
    check(len(again) == len(set(again)) and len(again) > len(contributions),
          f"after the master's restart nothing is merged twice ({len(again)} merged in all)")
    st, body = master.post("/cluster/leave")
    check(st == 200 and body.get("removed") == 2 and states() == {}, "leave drops every slave")
    for s in slaves:
        s.stop()
    master.stop()

    # The token: management endpoints and master-slave links (docs/security.md).
    secret = "s3cret/&x-cluster-token"
    tslave = Node("tslave", "127.0.0.5", slave_yaml(PCAPS[0], secret)).start()
    tmaster = Node("tmaster", "127.0.0.1", master_yaml(secret)).start()
    check(tmaster.get("/cluster/listnodes")[0] == 401, "no token: 401")
    check(tmaster.get("/cluster/listnodes", "wrong-token-0123456789")[0] == 401,
          "wrong token: 401")
    check(tmaster.get(f"/cluster/listnodes?token={urllib.request.quote(secret)}")[0] == 401,
          "a token in the URL is not accepted on HTTP routes: 401")
    check(tmaster.get("/cluster/listnodes", secret)[0] == 200, "right token: 200")
    check(tmaster.get(f"/cluster/join?addr={tslave.addr}", secret)[0] == 405,
          "join by GET: 405 (changes are POSTs)")
    st, _ = tmaster.post(f"/cluster/join?addr={tslave.addr}")
    check(st == 401, f"join without the token, from loopback too: {st}")
    st, _ = tmaster.post(f"/cluster/join?addr={tslave.addr}", secret)
    check(st == 200, f"join with the token (the link carries it in a header): {st}")
    try:
        websocket.create_connection(f"ws://{tslave.addr}/cluster/stream", timeout=3)
        check(False, "a slave's stream without the token is refused")
    except websocket.WebSocketBadStatusException as e:
        check(e.status_code == 401, "a slave's stream without the token: 401")
    plain = Node("plainmaster", "127.0.0.1", master_yaml()).start()
    st, _ = plain.post(f"/cluster/join?addr={tslave.addr}")
    check(st == 409, "a master without the slave's token cannot add it")
    for n in (plain, tmaster, tslave):
        n.stop()
    for r in list(recorders.values()) + [merged]:
        r.stopping = True


try:
    main()
finally:
    for node in NODES:
        if node.proc and node.proc.poll() is None:
            node.proc.kill()
            node.proc.wait()
    shutil.rmtree(WORK, ignore_errors=True)
if failures:
    print(f"{len(failures)} check(s) failed")
    sys.exit(1)
print("all checks passed")

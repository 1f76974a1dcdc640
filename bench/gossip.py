#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Failure detection of cluster-gossip beside HashiCorp's serf agent (memberlist), same run,
same machine: N members on loopback (mysqlprobe on 127.0.3.x, serf on 127.0.4.x), default LAN
timings, under CPU load (LOAD busy processes). For each tool:
 - false-positive suspicions during QUIET seconds in which no member fails (mysqlprobe: the
   members' own suspicion counters; serf: memberlist's "Suspect X has failed" log lines);
 - kill -9 of one member: seconds until the first and until the last of the others declares
   it dead (mysqlprobe: /cluster/listnodes; serf: `serf members`, status failed), polled
   every 0.2 s;
 - CPU seconds and peak RSS of the members over the run.
Usage: bench/gossip.py MYSQLPROBE [N] [LOAD] [QUIET]"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

binary = sys.argv[1]
N = int(sys.argv[2]) if len(sys.argv) > 2 else 20
LOAD = int(sys.argv[3]) if len(sys.argv) > 3 else 2
QUIET = int(sys.argv[4]) if len(sys.argv) > 4 else 30
SERF = shutil.which("serf")
WORK = tempfile.mkdtemp(prefix="mp-gossip-bench-")
PROCS = []


def free_port(host):
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_for(cond, timeout, what):
    end = time.time() + timeout
    while time.time() < end:
        if cond():
            return
        time.sleep(0.1)
    raise RuntimeError("timed out waiting for " + what)


def proc_stats(pid):
    """(cpu seconds, peak RSS MB) of a live process, from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / tick
    rss = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                rss = int(line.split()[1]) / 1024
    return cpu, rss


class Probe:
    def __init__(self, i):
        self.name = f"p{i}"
        self.host = f"127.0.3.{i}"
        self.port = free_port(self.host)
        self.gossip = f"{self.host}:7946"
        cfg = os.path.join(WORK, self.name + ".yaml")
        with open(cfg, "w") as f:
            f.write(f"serverport: {self.port}\nserveraddress: {self.host}\nnodename: {self.name}\n"
                    f"cluster:\n  gossip: true\n  port: 7946\nplugins:\n  cluster:\n"
                    f"    plugin: cluster-gossip\n    config:\n      name: {self.name}\n"
                    f"      seeds_file: {WORK}/{self.name}.seeds\n")
        self.proc = subprocess.Popen([binary, "-c", cfg], stdout=subprocess.DEVNULL,
                                     stderr=open(os.path.join(WORK, self.name + ".err"), "w"))
        PROCS.append(self.proc)

    def get(self, path, method="GET"):
        req = urllib.request.Request(f"http://{self.host}:{self.port}{path}", method=method,
                                     data=b"" if method == "POST" else None)
        with urllib.request.urlopen(req, timeout=5) as r:
            return json.loads(r.read())

    def ready(self):
        try:
            self.get("/cluster/listnodes")
            return True
        except Exception:
            return False

    def join(self, other):
        self.get(f"/cluster/join?addr={other.gossip}", "POST")

    def states(self):
        return {m["name"]: m["state"] for m in self.get("/cluster/listnodes")["members"]}

    def suspicions(self):
        return self.get("/cluster/listnodes")["stats"]["suspicions"]


class Agent:
    def __init__(self, i):
        self.name = f"serf{i}"
        self.host = f"127.0.4.{i}"
        self.gossip = f"{self.host}:7946"
        self.rpc = f"127.0.0.1:{free_port('127.0.0.1')}"
        self.log = os.path.join(WORK, self.name + ".log")
        self.proc = subprocess.Popen([SERF, "agent", f"-node={self.name}",
                                      f"-bind={self.gossip}", f"-rpc-addr={self.rpc}",
                                      "-log-level=info"],
                                     stdout=open(self.log, "w"), stderr=subprocess.STDOUT)
        PROCS.append(self.proc)

    def cmd(self, *args):
        return subprocess.run([SERF, args[0], f"-rpc-addr={self.rpc}", *args[1:]],
                              capture_output=True, text=True, timeout=10)

    def ready(self):
        return self.cmd("members").returncode == 0

    def join(self, other):
        self.cmd("join", other.gossip)

    def states(self):
        r = self.cmd("members", "-format=json")
        if r.returncode != 0:
            return {}
        st = {"alive": "alive", "failed": "dead", "left": "left", "leaving": "alive"}
        return {m["name"]: st.get(m["status"], m["status"]) for m in json.loads(r.stdout)["members"]}

    def suspicions(self):
        with open(self.log) as f:
            return sum(1 for line in f if "has failed, no acks received" in line)


def run(kind, make):
    members = [make(i + 1) for i in range(N)]
    wait_for(lambda: all(m.ready() for m in members), 30, kind + " start")
    for m in members[1:]:
        m.join(members[0])
    names = {m.name for m in members}
    wait_for(lambda: all({k for k, v in m.states().items() if v == "alive"} == names
                         for m in members), 60, kind + " convergence")
    load = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(LOAD)]
    PROCS.extend(load)
    base = sum(m.suspicions() for m in members)
    time.sleep(QUIET)
    false_pos = sum(m.suspicions() for m in members) - base
    victim = members[-1]
    others = members[:-1]
    victim.proc.send_signal(signal.SIGKILL)
    victim.proc.wait()
    t0 = time.time()
    first = last = None
    seen = set()
    while time.time() - t0 < 120 and len(seen) < len(others):
        for m in others:
            if m.name not in seen and m.states().get(victim.name, "dead") == "dead":
                seen.add(m.name)
                if first is None:
                    first = time.time() - t0
        time.sleep(0.2)
    last = time.time() - t0 if len(seen) == len(others) else None
    for p in load:
        p.kill()
    cpu = rss = 0.0
    for m in others:
        c, r = proc_stats(m.proc.pid)
        cpu += c
        rss = max(rss, r)
    for m in others:
        m.proc.kill()
        m.proc.wait()
    return false_pos, first, last, cpu, rss


def main():
    print(f"== {N} members on loopback, {LOAD} busy processes, {QUIET} s without failures, "
          f"then kill -9 of one member ({os.cpu_count()} cores)", flush=True)
    rows = [("mysqlprobe",) + run("mysqlprobe", Probe)]
    if SERF:
        version = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "serf"],
                                 capture_output=True, text=True).stdout.split("~")[0]
        rows.append((f"serf {version}".strip(),) + run("serf", Agent))
    else:
        print("serf missing: apt-get install serf")
    print(f"{'tool':<16}{'false suspicions':>18}{'first detects s':>17}{'all detect s':>14}"
          f"{'CPU s (N-1)':>13}{'peak RSS MB':>13}")
    for name, fp, first, last, cpu, rss in rows:
        f = f"{first:.2f}" if first is not None else "-"
        la = f"{last:.2f}" if last is not None else "> 120"
        print(f"{name:<16}{fp:>18}{f:>17}{la:>14}{cpu:>13.2f}{rss:>13.1f}")
    if len(rows) == 2 and rows[0][3] and rows[1][3]:
        print(f"detection (all): mysqlprobe / serf = {rows[0][3] / rows[1][3]:.2f}; "
              f"CPU: {rows[0][4] / max(rows[1][4], 0.01):.2f}")


if __name__ == "__main__":
    try:
        main()
    finally:
        for p in PROCS:
            try:
                p.kill()
            except Exception:
                pass
        shutil.rmtree(WORK, ignore_errors=True)

#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""cluster-gossip partition and heal, in a network namespace of its own (unshare -n: nothing
outside it is touched, and it vanishes with the test). Inside it, on its loopback: two
master-eligible probes and two slaves replaying captures, in two sides A = {m1, s1} and
B = {m2, s2}. nft drops every packet between the sides' addresses (the nodes send from their
own addresses), then the table is deleted:
 - before: one master (m1) everywhere;
 - during: each side has its own master (A: m1, B: m2), and each side's slave reports to it;
 - after: one master again (m1, the longest-running), on every node; every slave report is
   merged exactly once, by one master, without a gap (also the one whose acknowledgement the
   cut took: m2 holds it until m1 can say it has it).
Needs root (namespaces, nft): skips visibly otherwise.
Usage: partition_test.py MYSQLPROBE SOURCE_DIR"""
import os
import shutil
import subprocess
import sys

if os.environ.get("MP_IN_NETNS") != "1":
    if os.geteuid() != 0 or shutil.which("unshare") is None or shutil.which("nft") is None:
        print("SKIPPED: needs root, unshare and nft (scripts/deps.sh installs nftables)")
        sys.exit(77)
    env = dict(os.environ, MP_IN_NETNS="1")
    r = subprocess.run(["unshare", "--net", sys.executable, *sys.argv], env=env)
    sys.exit(r.returncode)

subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
if os.environ.get("MP_PCAP"):  # debugging: everything on this namespace's loopback
    subprocess.Popen(["tcpdump", "-i", "lo", "-U", "-w", os.environ["MP_PCAP"], "udp or tcp"],
                     stderr=subprocess.DEVNULL)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gossip_test as g  # noqa: E402  (Node, Recorder, check, ident and the process list)

A = ["127.0.2.1", "127.0.2.3"]
B = ["127.0.2.2", "127.0.2.4"]


def nft(script):
    subprocess.run(["nft", "-f", "-"], input=script, text=True, check=True)


def partition():
    a, b = ", ".join(A), ", ".join(B)
    nft("table inet mp_partition {\n"
        "  chain out {\n"
        "    type filter hook output priority 0;\n"
        f"    ip saddr {{ {a} }} ip daddr {{ {b} }} drop\n"
        f"    ip saddr {{ {b} }} ip daddr {{ {a} }} drop\n"
        "  }\n"
        "}\n")


def heal():
    nft("delete table inet mp_partition\n")


def masters(nodes):
    return {n.name: n.view()[1] for n in nodes}


def main():
    m1 = g.Node("m1", A[0], False).start()
    m2 = g.Node("m2", B[0], False).start()
    s1 = g.Node("s1", A[1], True, g.PCAPS[0]).start()
    s2 = g.Node("s2", B[1], True, g.PCAPS[1]).start()
    nodes = [m1, m2, s1, s2]
    for n in nodes[1:]:
        st, body = n.post(f"/cluster/join?addr={m1.gossip}")
        g.check(st == 200, f"{n.name} joins: {st} {body}")
    g.wait_for(lambda: set(masters(nodes).values()) == {"m1"}, 15, "m1 master everywhere")
    g.check(True, "before: one master (m1) on every node")
    recs = {n.name: g.Recorder(n) for n in nodes}
    for r in recs.values():
        r.connected.wait(10)
    g.time.sleep(3)

    partition()
    t0 = g.time.time()
    g.wait_for(lambda: masters(nodes) == {"m1": "m1", "s1": "m1", "m2": "m2", "s2": "m2"}, 40,
               "one master per side")
    print(f"partition: each side has its own master after {g.time.time() - t0:.1f} s",
          flush=True)
    g.check(True, "during: side A's master is m1, side B's is m2")
    g.time.sleep(4)
    to_m2 = [c["node"] for r in list(recs["m2"].reports)
             for c in r.get("cluster", {}).get("contributors", [])]
    g.check("s2" in to_m2, "during: s2 reports to m2")

    heal()
    t0 = g.time.time()
    g.wait_for(lambda: set(masters(nodes).values()) == {"m1"} and
               all(set(n.view()[0].values()) == {"alive"} for n in nodes), 60,
               "one master and everyone alive after the heal")
    print(f"heal: one master (m1) and all 4 alive on every node {g.time.time() - t0:.1f} s "
          f"after the partition ended", flush=True)
    g.check(True, "after: one master (m1) on every node, all members alive")
    g.time.sleep(4)
    contributed = {}
    for name in ("m1", "m2"):
        for r in list(recs[name].reports):
            for c in r.get("cluster", {}).get("contributors", []):
                contributed.setdefault((c["node"], c["started_ns"], c["seq"]), []).append(name)
    doubled = {k: v for k, v in contributed.items() if len(v) > 1}
    print(f"reports: {len(contributed)} slave reports merged, {len(doubled)} twice "
          f"{sorted(doubled)}", flush=True)
    for m in (m1, m2):
        st, body = m.get("/cluster/listnodes")
        rep = body.get("reports", {})
        print(f"{m.name} reports: {rep}", flush=True)
        g.check(rep.get("held") == 0 and rep.get("forced") == 0,
                f"{m.name}: every held report settled by an answer ({rep.get('in_doubt')} held, "
                f"{rep.get('settled_elsewhere')} merged elsewhere, {rep.get('settled_here')} here)")
    # A report whose acknowledgement the cut took (m1 merged it, s2 never heard) is announced
    # as resent to m2, which holds it until m1 can answer; after the heal s2 is back with m1,
    # which has it already. Nothing is counted by both masters.
    g.check(not doubled, f"no slave report merged by both masters ({len(doubled)})")
    for s in (s1, s2):
        seqs = sorted(k[2] for k in contributed if k[0] == s.name)
        g.check(bool(seqs) and seqs == list(range(seqs[0], seqs[-1] + 1)),
                f"{s.name}: reports {seqs[0] if seqs else 0}..{seqs[-1] if seqs else 0} merged "
                f"without a gap through partition and heal")
    for r in recs.values():
        r.stopping = True


if __name__ == "__main__":
    try:
        main()
    except (AssertionError, subprocess.CalledProcessError) as e:
        g.failures.append(str(e))
        print("FAIL " + str(e), flush=True)
    finally:
        for p in g.PROCS:
            try:
                p.kill()
            except Exception:
                pass
        if g.failures:
            print(f"logs kept in {g.WORK}")
        else:
            shutil.rmtree(g.WORK, ignore_errors=True) if not os.environ.get("MP_KEEP") else print(g.WORK)
    print(f"{len(g.failures)} failure(s)")
    sys.exit(1 if g.failures else 0)

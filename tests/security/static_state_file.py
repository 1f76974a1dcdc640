#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""cluster-static's state file, with real masters on 127.0.0.0/8 and fake slaves (raw-socket
websocket servers that answer /cluster/stream's upgrade, so /cluster/join accepts them):
 - two masters whose config files share a folder and set no state_file get a file each
   (cluster-state-NODE.txt, NODE their node name with '/', ':', ' ' ... as '_'), each with only
   its own slave, and each dials only its own slave after a restart;
 - the former shared default (cluster-state.txt) is read when a master's own file is absent;
 - a symlink at the former fixed temporary name (STATE.tmp) or at the state file itself is
   never written through: the files they point to keep their content, the state file becomes a
   regular file (0600) with the state, and no temporary file is left behind.
Usage: static_state_file.py MYSQLPROBE [--sanitized]"""
import os
import stat
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import static_support as S  # noqa: E402

binary = sys.argv[1]
WORK = S.workdir("mp-sec-state-")
MASTER = f"interval: 1\nprobe: {{file: {S.PCAP}}}\n"


def idle(c, path, index):
    S.drain(c, 60)  # a slave with nothing to say


def listed(node):
    import json
    st, body = node.get("/cluster/listnodes")
    return sorted(n["addr"] for n in json.loads(body)["nodes"]) if st == 200 else None


def main():
    shared = os.path.join(WORK, "shared")
    os.mkdir(shared)
    slave_a = S.FakeWsServer("127.0.0.3", idle)
    slave_b = S.FakeWsServer("127.0.0.4", idle)

    # Two masters, one folder, default state files.
    ma = S.Node(binary, shared, "ma", "127.0.0.1", MASTER, nodename="edge/a:1")
    mb = S.Node(binary, shared, "mb", "127.0.0.2", MASTER, nodename="edge b")
    ma.start()
    mb.start()
    S.check(ma.post(f"/cluster/join?addr={slave_a.addr}")[0] == 200, "master a joins slave a")
    S.check(mb.post(f"/cluster/join?addr={slave_b.addr}")[0] == 200, "master b joins slave b")
    fa = os.path.join(shared, "cluster-state-edge_a_1.txt")
    fb = os.path.join(shared, "cluster-state-edge_b.txt")
    files = sorted(os.listdir(shared))
    print(f"     folder: {files}")
    S.check(os.path.isfile(fa) and os.path.isfile(fb), "one default state file per node")
    S.check(not os.path.exists(os.path.join(shared, "cluster-state.txt")),
            "no shared cluster-state.txt")
    text_a = open(fa).read() if os.path.isfile(fa) else ""
    text_b = open(fb).read() if os.path.isfile(fb) else ""
    S.check(f"slave {slave_a.addr}\n" in text_a and slave_b.addr not in text_a,
            "master a's file has its slave only")
    S.check(f"slave {slave_b.addr}\n" in text_b and slave_a.addr not in text_b,
            "master b's file has its slave only")
    S.check(all(stat.S_IMODE(os.stat(f).st_mode) == 0o600 for f in (fa, fb) if os.path.exists(f)),
            "state files are 0600")
    ma.stop()
    mb.stop()
    ma.start()
    mb.start()
    S.check(listed(ma) == [slave_a.addr] and listed(mb) == [slave_b.addr],
            f"after a restart each master dials its own slave ({listed(ma)}, {listed(mb)})")
    ma.stop()
    mb.stop()

    # The former default name is read when the node's own file is absent.
    legacy = os.path.join(WORK, "legacy")
    os.mkdir(legacy)
    with open(os.path.join(legacy, "cluster-state.txt"), "w") as f:
        f.write(f"# old\nslave {slave_a.addr}\nseen {slave_a.addr} 5 7\n")
    ml = S.Node(binary, legacy, "ml", "127.0.0.1", MASTER).start()
    S.check(listed(ml) == [slave_a.addr], "the former cluster-state.txt is read")
    S.check(ml.post(f"/cluster/join?addr={slave_b.addr}")[0] == 200, "join one more")
    own = os.path.join(legacy, "cluster-state-ml.txt")
    text = open(own).read() if os.path.exists(own) else ""
    S.check(f"slave {slave_a.addr}\n" in text and f"slave {slave_b.addr}\n" in text and
            f"seen {slave_a.addr} 5 7\n" in text, "then saved under the node's own name")
    ml.stop()

    # Symlinks at the temporary and the final names.
    links = os.path.join(WORK, "links")
    os.mkdir(links)
    state = os.path.join(links, "state.txt")
    victim_tmp = os.path.join(WORK, "victim-tmp")
    victim_final = os.path.join(WORK, "victim-final")
    for v in (victim_tmp, victim_final):
        with open(v, "w") as f:
            f.write("precious\n")
    os.symlink(victim_tmp, state + ".tmp")
    os.symlink(victim_final, state)
    mt = S.Node(binary, links, "mt", "127.0.0.1",
                MASTER + f"plugins:\n  cluster: {{plugin: cluster-static, config: "
                         f"{{state_file: {state}}}}}\n").start()
    S.check(mt.post(f"/cluster/join?addr={slave_a.addr}")[0] == 200, "join with symlinks around")
    S.check(mt.post(f"/cluster/remove?addr={slave_a.addr}")[0] == 200, "remove")
    S.check(mt.post(f"/cluster/join?addr={slave_b.addr}")[0] == 200, "join again")
    mt.stop()
    S.check(open(victim_tmp).read() == "precious\n",
            "a symlink at STATE.tmp is not written through")
    S.check(open(victim_final).read() == "precious\n",
            "a symlink at the state file is not written through")
    S.check(not os.path.islink(state) and f"slave {slave_b.addr}\n" in open(state).read() and
            slave_a.addr not in open(state).read().split("seen")[0],
            "the state file is a regular file with the last state")
    left = sorted(f for f in os.listdir(links) if f.startswith("state.txt.") and
                  f != "state.txt.tmp")
    S.check(not left, f"no temporary file left behind ({left})")
    slave_a.close()
    slave_b.close()


if __name__ == "__main__":
    S.run(main, WORK)

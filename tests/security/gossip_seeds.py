#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""cluster-gossip's seeds file, with real mysqlprobe processes on loopback:
 - two nodes whose configuration files share one folder, without seeds_file: each has a file
   of its own (gossip-seeds-NAME.txt; they shared gossip-seeds.txt), listing the other;
 - a symlink planted at a node's seeds path, and one at the old fixed temporary name (PATH.tmp),
   for the default path and for a configured seeds_file: none is written through (the files
   they point to are unchanged); the seeds path becomes a regular file, written atomically (no
   temporary left behind), 0600.
Usage: gossip_seeds.py MYSQLPROBE"""
import os
import stat
import sys
import tempfile

from gossiplib import NODES, Node, WORKDIRS, check, cleanup, finish, run, wait_for

BINARY = sys.argv[1]


def seeds_of(path):
    try:
        with open(path) as f:
            return sorted(line.split()[1] for line in f if line.startswith("seed "))
    except OSError:
        return None


def main():
    folder = tempfile.mkdtemp(prefix="mp-gseeds-")
    WORKDIRS.append(folder)
    victim = os.path.join(folder, "victim.txt")
    victim_tmp = os.path.join(folder, "victim-tmp.txt")
    for v in (victim, victim_tmp):
        with open(v, "w") as f:
            f.write("precious\n")
    a_path = os.path.join(folder, "gossip-seeds-sa1.txt")
    os.symlink(victim, a_path)
    os.symlink(victim_tmp, a_path + ".tmp")
    c_path = os.path.join(folder, "sc1.seeds")  # sc1's configured seeds_file
    victim_c, victim_ctmp = victim + ".c", victim + ".ctmp"
    for v in (victim_c, victim_ctmp):
        with open(v, "w") as f:
            f.write("precious\n")
    os.symlink(victim_c, c_path)
    os.symlink(victim_ctmp, c_path + ".tmp")
    a = Node(BINARY, "sa1", "127.0.9.1", folder=folder, seeds_file=False).start()
    c = Node(BINARY, "sc1", "127.0.9.3", folder=folder).start()
    b = Node(BINARY, "sb1", "127.0.9.2", folder=folder, seeds_file=False).start()
    st, body = b.post(f"/cluster/join?addr={a.gossip}")
    check(st == 200, f"join: {st} {body}")
    st, body = c.post(f"/cluster/join?addr={a.gossip}")
    check(st == 200, f"join: {st} {body}")
    b_path = os.path.join(folder, "gossip-seeds-sb1.txt")
    try:
        wait_for(lambda: seeds_of(a_path) == sorted([b.gossip, c.gossip]) and
                 seeds_of(b_path) == sorted([a.gossip, c.gossip]) and
                 seeds_of(c_path) == sorted([a.gossip, b.gossip]), 10,
                 "both seeds files")
    except AssertionError:
        pass
    check(seeds_of(a_path) == sorted([b.gossip, c.gossip]),
          f"sa1's own seeds file lists the others: {seeds_of(a_path)}")
    check(seeds_of(b_path) == sorted([a.gossip, c.gossip]),
          f"sb1's own seeds file lists the others: {seeds_of(b_path)}")
    check(seeds_of(c_path) == sorted([a.gossip, b.gossip]),
          f"sc1's configured seeds file lists the others: {seeds_of(c_path)}")
    check(not os.path.exists(os.path.join(folder, "gossip-seeds.txt")), "no shared seeds file")
    for v in (victim, victim_tmp, victim_c, victim_ctmp):
        with open(v) as f:
            check(f.read() == "precious\n", f"{os.path.basename(v)}, target of a symlink, "
                  "not written through")
    for path in (a_path, c_path):
        info = os.lstat(path)
        check(stat.S_ISREG(info.st_mode),
              f"{os.path.basename(path)} is a regular file now (the symlink replaced)")
        check(stat.S_IMODE(info.st_mode) & 0o077 == 0, f"mode {oct(stat.S_IMODE(info.st_mode))}")
    left = [f for f in os.listdir(folder) if f.startswith("gossip-seeds-") and
            not f.endswith(".txt") and not f.endswith(".tmp") or
            f.startswith("sc1.seeds.") and not f.endswith(".tmp")]
    check(not left, f"no temporary file left behind: {left}")
    for n in list(NODES):
        n.kill()
    cleanup(folder)
    finish()


if __name__ == "__main__":
    run(main)

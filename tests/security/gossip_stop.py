#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""A graceful stop is bounded in every gossip profile, with real mysqlprobe processes on loopback:
a member of a two-node cluster gets SIGTERM and exits 0 within 5 s (the host's stop deadline;
`profile: wan` always overran it and exited 3), and the other member sees it `left`, not failed.
Usage: gossip_stop.py MYSQLPROBE"""
import sys
import time

from gossiplib import Node, check, finish, run, wait_for

BINARY = sys.argv[1]


def main():
    for i, profile in enumerate(("wan", "lan", "local")):
        extra = f"      profile: {profile}\n"
        a = Node(BINARY, f"{profile}a", f"127.0.8.{2 * i + 1}", extra).start()
        b = Node(BINARY, f"{profile}b", f"127.0.8.{2 * i + 2}", extra).start()
        st, body = b.post(f"/cluster/join?addr={a.gossip}")
        check(st == 200, f"{profile}: join {st} {body}")
        time.sleep(0.5)
        rc, took = b.terminate()
        check(rc == 0, f"{profile}: SIGTERM, exit status {rc}")
        check(took < 4.0, f"{profile}: stopped in {took:.2f} s (< 4, the host allows 5)")

        def left():
            names = {m["name"]: m["state"] for m in a.listnodes()["members"]}
            return names.get(f"{profile}b") == "left"
        try:
            wait_for(left, 5, "left")
            check(True, f"{profile}: the other member sees it left")
        except AssertionError:
            check(False, f"{profile}: the other member sees it left: "
                  f"{[(m['name'], m['state']) for m in a.listnodes()['members']]}")
        rc, took = a.terminate()
        check(rc == 0 and took < 4.0, f"{profile}: the last member stops alone: {rc} in "
              f"{took:.2f} s")
    finish()


if __name__ == "__main__":
    run(main)

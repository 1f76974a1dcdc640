#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""/cluster/join of nobody, against a real mysqlprobe process on loopback: joining the node's own
gossip address (409), 0.0.0.0 (the unspecified address: the local host), a multicast or the
broadcast address (400) is refused with a JSON error, and the node stays alone. It "succeeded".
Usage: gossip_join.py MYSQLPROBE"""
import sys

from gossiplib import Node, check, finish, run

BINARY = sys.argv[1]


def main():
    n = Node(BINARY, "joiner", "127.0.7.1").start()
    st, body = n.post(f"/cluster/join?addr={n.gossip}")
    check(st == 409 and "error" in body, f"join of itself: {st} {body}")
    for addr in (f"0.0.0.0:{n.gport}", "224.0.0.1:7946", "239.1.2.3:7946",
                 "255.255.255.255:7946", "0.1.2.3:7946"):
        st, body = n.post(f"/cluster/join?addr={addr}")
        check(st == 400 and "error" in body, f"join of {addr}: {st} {body}")
    members = n.listnodes()["members"]
    check(len(members) == 1, f"still alone: {[m['name'] for m in members]}")
    finish()


if __name__ == "__main__":
    run(main)

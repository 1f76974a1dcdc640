#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Gossip without keys is said loudly, against real mysqlprobe processes on loopback: a node
started without `keys` warns at start that anyone reaching its gossip port can join and become
master; a node with keys does not. (Refusing to start without keys when the host has auth
tokens needs the host's auth.mode, not there yet: not tested here.)
Usage: gossip_nokeys.py MYSQLPROBE"""
import base64
import os
import sys

from gossiplib import NODES, Node, check, finish

BINARY = sys.argv[1]


def main():
    plain = Node(BINARY, "plain1", "127.0.12.1").start()
    log = plain.log()
    check("WITHOUT encryption keys" in log and "master" in log,
          "a node without keys warns at start")
    warn = [line for line in log.splitlines() if "WITHOUT encryption keys" in line]
    print("   " + (warn[0] if warn else "(no warning)"))
    key = base64.b64encode(os.urandom(32)).decode()
    enc = Node(BINARY, "enc1", "127.0.12.2", f"      keys: [{key}]\n").start()
    check("WITHOUT encryption keys" not in enc.log(), "a node with keys does not")
    check(enc.listnodes()["encrypted"] is True, "and is encrypted")
    finish()


if __name__ == "__main__":
    try:
        main()
    except Exception as e:
        print("FAIL", e)
        for node in NODES:
            node.kill()
        sys.exit(1)

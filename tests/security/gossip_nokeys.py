#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Gossip without keys, against real mysqlprobe processes on loopback:
 - a node started without `keys` warns at start that anyone reaching its gossip port can join
   and become master; a node with keys does not;
 - on a host with auth tokens (auth.mode "tokens"), a node without keys refuses to start
   (exit 2, saying why), unless `insecure: true` (then it starts, and warns); with keys it
   starts.
Usage: gossip_nokeys.py MYSQLPROBE"""
import base64
import os
import sys

from gossiplib import Node, check, finish, run

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

    tokens = ("auth:\n  tokens:\n    - {name: ops, role: admin, token: "
              "\"admin-token-0123456789\"}\n")
    refused = Node(BINARY, "tok1", "127.0.12.3", top=tokens).start(wait=False)
    try:
        rc = refused.proc.wait(15)
    except Exception:
        rc = None
    log = refused.log()
    check(rc == 2, f"tokens and no keys: the node does not start (exit {rc})")
    check("without keys on a host with auth tokens" in log and "insecure" in log,
          "and says why: " + next((x for x in log.splitlines() if "auth tokens" in x), "")[-160:])
    loose = Node(BINARY, "tok2", "127.0.12.4", "      insecure: true\n", top=tokens).start()
    check("WITHOUT encryption keys" in loose.log(), "tokens, no keys, insecure: true: starts, warns")
    keyed = Node(BINARY, "tok3", "127.0.12.5", f"      keys: [{key}]\n", top=tokens).start()
    check("WITHOUT encryption keys" not in keyed.log(), "tokens and keys: starts, no warning")
    finish()


if __name__ == "__main__":
    run(main)

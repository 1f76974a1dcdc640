#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""/cluster/keys rotation steps at the same time, against a real mysqlprobe process on loopback:
16 installs of distinct keys sent at once all land (each step reads the keyring, changes it
and sets it: interleaved, some were lost), then 16 removes at once leave the primary alone.
Usage: gossip_keys.py MYSQLPROBE"""
import base64
import os
import sys
import threading
import urllib.parse

from gossiplib import Node, check, finish, run

BINARY = sys.argv[1]


def key():
    return base64.b64encode(os.urandom(32)).decode()


def at_once(node, op, keys):
    results = []
    barrier = threading.Barrier(len(keys))

    def one(k):
        barrier.wait()
        results.append(node.post(f"/cluster/keys?{op}=" + urllib.parse.quote(k))[0])
    threads = [threading.Thread(target=one, args=(k,)) for k in keys]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def main():
    primary = key()
    n = Node(BINARY, "keys1", "127.0.10.1", f"      keys: [{primary}]\n").start()
    for rnd in range(6):
        extra = [key() for _ in range(16)]
        codes = at_once(n, "install", extra)
        st, body = n.call("/cluster/keys")
        check(codes.count(200) == 16 and body.get("keys") == 17,
              f"round {rnd}: 16 installs at once: {sorted(set(codes))}, keys {body.get('keys')}")
        codes = at_once(n, "remove", extra)
        st, body = n.call("/cluster/keys")
        check(codes.count(200) == 16 and body.get("keys") == 1,
              f"round {rnd}: 16 removes at once: {sorted(set(codes))}, keys {body.get('keys')}")
    finish()


if __name__ == "__main__":
    run(main)

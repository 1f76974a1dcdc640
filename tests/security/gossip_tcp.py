#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""cluster-gossip's TCP port (push-pull joins, fallback pings) against idle connections, with real
mysqlprobe processes on loopback:
 - 20 connections to a node's gossip port that send nothing: another node still joins through
   it at once (they were served one at a time, and the join timed out);
 - the node closes idle connections after its TCP timeout (the read deadline), and refuses
   those beyond 8 at once from one address (tcp_refused).
Usage: gossip_tcp.py MYSQLPROBE"""
import socket
import sys
import time

from gossiplib import Node, check, finish, run

BINARY = sys.argv[1]


def main():
    a = Node(BINARY, "tcpa", "127.0.6.1").start()
    b = Node(BINARY, "tcpb", "127.0.6.2").start()
    idle = []
    for _ in range(20):
        s = socket.create_connection(("127.0.6.1", a.gport), timeout=5)
        idle.append(s)
    time.sleep(0.3)
    t0 = time.time()
    st, body = b.post(f"/cluster/join?addr={a.gossip}")
    took = time.time() - t0
    check(st == 200, f"join through a node holding 20 idle connections: {st} {body} "
          f"in {took:.2f} s")
    check(took < 1.5, f"the join did not wait for the idle connections ({took:.2f} s)")
    names = {m["name"]: m["state"] for m in b.listnodes()["members"]}
    check(names.get("tcpa") == "alive", f"the joiner sees the node alive: {names}")
    stats = a.listnodes()["stats"]
    check(stats.get("tcp_refused", 0) >= 12, f"beyond 8 from one address refused: "
          f"{stats.get('tcp_refused')}")
    # The TCP timeout (2 s on a LAN) is each connection's deadline: idle ones are closed.
    closed = 0
    deadline = time.time() + 5
    for s in idle:
        s.settimeout(max(0.1, deadline - time.time()))
        try:
            closed += s.recv(1) == b""
        except (socket.timeout, ConnectionError):
            closed += 0 if isinstance(sys.exc_info()[1], socket.timeout) else 1
        s.close()
    check(closed == 20, f"every idle connection closed by the node within 5 s: {closed}/20")
    finish()


if __name__ == "__main__":
    run(main)

#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Peer text in the log, against a real mysqlprobe process on loopback: a member whose name holds
terminal escapes, a newline, a C1 control and bytes that are not UTF-8 is logged with those as
\\xNN, never raw (a forged log line, a terminal taken over); its printable part is kept.
Usage: gossip_log.py MYSQLPROBE"""
import sys
import time

from gossiplib import Node, alive, check, finish, run, suspect, udp_send

BINARY = sys.argv[1]


def main():
    n = Node(BINARY, "logged", "127.0.11.1").start()
    evil = b"evil\x1b[31mRED\nhost: FORGED line\xff\xfe\xc2\x9b"
    udp_send("127.0.11.1", n.gport, alive(evil, "127.0.11.9", 7946))
    udp_send("127.0.11.1", n.gport, suspect(b"evil-2", 1, b"x"))  # unknown: ignored
    time.sleep(1.0)
    raw = n.logbytes()
    check(b"evil" in raw, "the member's join is logged")
    check(b"\x1b" not in raw, "no raw ESC in the log")
    check(b"\xff" not in raw and b"\xfe" not in raw, "no invalid UTF-8 in the log")
    check(b"\xc2\x9b" not in raw, "no C1 control (CSI) in the log")
    check(b"\nhost: FORGED" not in raw, "no forged line")
    check(b"evil\\x1b[31mRED\\x0ahost: FORGED line\\xff\\xfe" in raw,
          "the name is rendered with \\xNN escapes")
    finish()


if __name__ == "__main__":
    run(main)

#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Runs a command and writes "wall_s cpu_s rss_kb" to FILE: wall-clock seconds, user + system CPU
seconds and peak resident set, from wait4(2), to the microsecond (GNU time's %U and %S round to
10 ms, which is 3% of a 0.3 s run). The command's own exit status is returned.

Usage: rusage.py FILE command [args...]   (stdout and stderr are the command's)"""
import os
import sys
import time

if len(sys.argv) < 3:
    sys.exit(__doc__)
start = time.monotonic()
pid = os.fork()
if pid == 0:
    try:
        os.execvp(sys.argv[2], sys.argv[2:])
    finally:
        os._exit(127)
_, status, ru = os.wait4(pid, 0)
wall = time.monotonic() - start
with open(sys.argv[1], "w") as f:
    f.write(f"{wall:.6f} {ru.ru_utime + ru.ru_stime:.6f} {ru.ru_maxrss}\n")
sys.exit(os.waitstatus_to_exitcode(status) & 0xff)

#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Regression test of the hardening issue's compressed-protocol finding: decoder-mysql holds a
compressed frame's bytes as they go by, not the frame, nor its inflated copy, and keeps nothing
between frames.

Writes a capture itself: C connections seen mid-stream, each switched to the compressed protocol
by the client's first command (a stored frame), answered by one zlib frame that inflates to
16 MiB (one packet of 16,777,211 bytes: ~16 KB on the wire), then left open to the end of the
capture. Before the fix each direction kept its inflated copy (16 MiB) and the packet's kept
prefix (1 MiB) for the connection's life: C = 12 took the run to 206 MB; now 15 MB. Now an inflater
(~56 KiB) exists only inside a frame and a large packet's buffer is released once it is done.

Usage: compressed_memory.py MYSQLPROBE [C]"""
import json
import os
import resource
import struct
import subprocess
import sys
import tempfile
import zlib

# The run's own footprint (~14 MB) and one frame's inflater and kept prefix (~1.1 MB) at a
# time, with room for the allocator: 48 MB, under a third of what 12 connections took before.
BOUND_KB = 48 * 1024
SANITIZED = os.environ.get("MP_SANITIZED") == "1"  # ASan: memory figures are not the build's
SERVER = bytes([10, 0, 0, 2])


def frame(client_port, to_server, seq, ack, payload):
    client = bytes([10, 0, 1, client_port & 0xFF])
    sport, dport = (client_port, 3306) if to_server else (3306, client_port)
    tcp = struct.pack(">HHIIBBHHH", sport, dport, seq, ack, 5 << 4, 0x18, 65535, 0, 0)
    src, dst = (client, SERVER) if to_server else (SERVER, client)
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 40 + len(payload), 0, 0x4000, 64, 6, 0, src, dst)
    return b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01\x08\x00" + ip + tcp + payload


def le24(n):
    return struct.pack("<I", n)[:3]


def main():
    binary = sys.argv[1]
    conns = int(sys.argv[2]) if len(sys.argv) > 2 else 12
    query = b"\x03select repeat('x', 16777207)"
    stored = le24(len(query) + 4) + b"\x00" + le24(0) + le24(len(query)) + b"\x00" + query
    # One packet of 16 MiB less 4 bytes, compressed by pieces: this process stays small, as
    # the child's peak RSS also counts what it was before it exec'd the probe.
    plain_len = 0xFFFFFF  # the largest a frame may inflate to
    payload_len = plain_len - 4
    z = zlib.compressobj()
    body = z.compress(le24(payload_len) + b"\x01")
    left = payload_len
    while left > 0:
        n = min(left, 1 << 20)
        body += z.compress(bytes(n))
        left -= n
    body += z.flush()
    zframe = le24(len(body)) + b"\x00" + le24(plain_len) + body
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "compressed.pcap")
        with open(path, "wb") as out:
            out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
            t = [0]

            def record(f):
                t[0] += 1
                out.write(struct.pack("<IIII", 1700000000, t[0], len(f), len(f)))
                out.write(f)

            for c in range(conns):
                port = 41000 + c
                record(frame(port, True, 1000, 5000, stored))
                seq = 5000
                for i in range(0, len(zframe), 1448):
                    piece = zframe[i:i + 1448]
                    record(frame(port, False, seq, 1000 + len(stored), piece))
                    seq += len(piece)
        proc = subprocess.run([binary, "-r", path, "--port", "3306"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, timeout=300)
        peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if proc.returncode != 0:
        print(proc.stderr, file=sys.stderr)
        sys.exit(f"FAIL: mysqlprobe exited with {proc.returncode}")
    report = json.loads(proc.stdout)
    stats = report.get("stats", {})
    queries = report["totals"]["commands"].get("COM_QUERY", 0)
    errors = stats.get("decoder_mysql_decompress_errors_total", 0)
    print(f"connections={conns} peak RSS {peak_kb / 1024:.1f} MB (bound {BOUND_KB / 1024:.0f} MB)"
          f"; COM_QUERY {queries}, decompress errors {errors}, gaps {report['capture']['gaps']}")
    failures = []
    if queries != conns:
        failures.append(f"COM_QUERY {queries} != {conns}: the compressed streams were not decoded")
    if errors != 0:
        failures.append(f"decompress errors {errors} != 0")
    if report["capture"]["gaps"] != 0:
        failures.append("gaps in a lossless capture")
    if peak_kb >= BOUND_KB and not SANITIZED:
        failures.append(f"peak RSS {peak_kb} kB >= {BOUND_KB} kB")
    for f in failures:
        print("FAIL:", f)
    if failures:
        sys.exit(1)
    print("PASS")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Regression test of the hardening issue's reassembly finding: out-of-order buffering is bounded
by the memory it really takes, not by a count of payload bytes an attacker can game.

Writes a capture itself, then runs `mysqlprobe -r FILE --port 3306` on it and measures the
child's peak RSS:
  - connection A (no handshake, seen mid-stream): one in-order byte, then N one-byte segments
    out of order, each ahead of a one-byte hole (every other sequence number);
  - connection B: N/4 out-of-order segments whose IP length claims 1000 payload bytes of which
    the snapshot length kept 1 (orig_len says so): truncation, a gap of the bytes not captured;
  - connection C: N/4 segments whose IP length claims 1000 payload bytes while the whole frame
    (orig_len == caplen) holds 1: malformed, counted and dropped.
Then, with `stream.max_worker_buffer_mb: 8` (-c FILE), 16 connections of N/25 one-byte
out-of-order segments each: every direction stays under its own 4 MiB, together they would hold
64 MiB; the worker's bound gives up holes (counted) so that 8 MiB is all they hold.
Before the fix each one-byte segment counted 1 byte against `stream.max_buffer_kb` (4 MiB) while
it held ~128 (map node and allocation), and segments without captured bytes counted nothing:
with N = 1,000,000 this capture took the run to 193 MB (the probe's own footprint is 14 MB).
Now a direction holds at most 4 MiB of real memory and the worker at most 64 MiB, whatever the
segments: 21 MB.

Usage: reassembly_memory.py MYSQLPROBE [N]"""
import json
import os
import resource
import struct
import subprocess
import sys
import tempfile

# The bound: the run's own footprint (binary, plugins, decoder, report: ~14 MB on the bundled
# captures), plus 4 MiB per direction of out-of-order buffer (A's client side, B's), plus
# allocator slack (freed chunks not returned at once). 48 MB leaves ~20 MB of slack over that,
# and is a third of what the same capture took before the fix.
BOUND_KB = 48 * 1024
SANITIZED = os.environ.get("MP_SANITIZED") == "1"  # ASan: memory figures are not the build's
SERVER = bytes([10, 0, 0, 2])
CLIENT = bytes([10, 0, 0, 1])


class Capture:
    """A classic pcap written as it goes (this process stays small: the child's peak RSS
    also counts what the parent was when it forked)."""

    def __init__(self, path):
        self.out = open(path, "wb")
        self.out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        self.usec = 0

    def record(self, frame, orig_len=None):
        self.usec += 1  # 1 us apart: the whole capture lasts a few seconds of stream time
        sec, us = divmod(self.usec, 1000000)
        self.out.write(struct.pack("<IIII", 1700000000 + sec, us, len(frame),
                                   len(frame) if orig_len is None else orig_len))
        self.out.write(frame)

    def close(self):
        self.out.close()


def checksum_free_frame(sport, dport, seq, payload, ip_payload_len, flags=0x18):
    """Ethernet + IPv4 + TCP (checksums zero: the probe does not check them). `ip_payload_len`
    is the TCP payload length the IP header claims; `payload` is what the frame holds."""
    tcp = struct.pack(">HHIIBBHHH", sport, dport, seq, 1, 5 << 4, flags, 65535, 0, 0)
    total = 20 + 20 + ip_payload_len
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, total, 0, 0x4000, 64, 6, 0, CLIENT, SERVER)
    eth = b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01\x08\x00"
    return eth + ip + tcp + payload


def write_capture(path, n):
    cap = Capture(path)
    record = cap.record
    base = 1000
    # A: one byte in order, then n one-byte segments each ahead of a one-byte hole.
    record(checksum_free_frame(40000, 3306, base, b"x", 1))
    for i in range(n):
        record(checksum_free_frame(40000, 3306, base + 2 + 2 * i, b"y", 1))
    # B: cut by the snapshot length, out of order: 999 bytes of each are known missing.
    quarter = n // 4
    record(checksum_free_frame(40001, 3306, base, b"x", 1))
    for i in range(quarter):
        frame = checksum_free_frame(40001, 3306, base + 2 + 1001 * i, b"z", 1000)
        record(frame, orig_len=len(frame) + 999)
    # C: the IP length lies about a whole frame.
    record(checksum_free_frame(40002, 3306, base, b"x", 1))
    for i in range(quarter):
        record(checksum_free_frame(40002, 3306, base + 1 + 1000 * i, b"w", 1000))
    cap.close()
    return quarter


def write_spread_capture(path, conns, per_conn):
    """`conns` connections, each one byte in order then `per_conn` one-byte segments ahead of
    one-byte holes, interleaved."""
    cap = Capture(path)
    for c in range(conns):
        cap.record(checksum_free_frame(42000 + c, 3306, 1000, b"x", 1))
    for i in range(per_conn):
        for c in range(conns):
            cap.record(checksum_free_frame(42000 + c, 3306, 1002 + 2 * i, b"y", 1))
    cap.close()


def run(args):
    """The report's capture counters, or None (the failure printed) when the run failed."""
    proc = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          timeout=300)
    if proc.returncode != 0:
        print(f"{' '.join(args)} exited with {proc.returncode}: {proc.stderr.strip()}")
        return None
    return json.loads(proc.stdout)["capture"]


KEYS = ("packets", "tcp_segments", "malformed", "gaps", "gap_bytes", "buffer_limit_gaps",
        "worker_buffer_limit_gaps", "stream_bytes")


def main():
    binary = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 1000000
    failures = []

    def check(cond, what):
        if not cond:
            failures.append(what)

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "flood.pcap")
        quarter = write_capture(path, n)
        cap = run([binary, "-r", path, "--port", "3306"])
        peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        print(f"n={n}: peak RSS {peak_kb / 1024:.1f} MB (bound {BOUND_KB / 1024:.0f} MB)")
        check(peak_kb < BOUND_KB or SANITIZED, f"peak RSS {peak_kb} kB >= {BOUND_KB} kB")
        check(cap is not None, "the run failed")
        if cap is not None:
            print("  capture:", json.dumps({k: cap.get(k) for k in KEYS}))
            total_frames = 3 + n + 2 * quarter
            check(cap["packets"] == total_frames, f"packets {cap['packets']} != {total_frames}")
            # C's lying frames are malformed, and nothing else is.
            check(cap["malformed"] == quarter, f"malformed {cap['malformed']} != {quarter}")
            check(cap["tcp_segments"] == total_frames - quarter, "tcp_segments")
            # Every hole becomes a gap, none is lost silently: A has n one-byte holes; B has a
            # one-byte hole before each segment and 999 bytes cut after each.
            check(cap["gaps"] >= n + 2 * quarter, f"gaps {cap['gaps']} < {n + 2 * quarter}")
            check(cap["gap_bytes"] == n + quarter * (1 + 999),
                  f"gap_bytes {cap['gap_bytes']} != {n + quarter * 1000}")
            # Only the captured bytes reach the decoder: A's 1 + n, B's 1 + quarter, C's first.
            want = (1 + n) + (1 + quarter) + 1
            check(cap["stream_bytes"] == want, f"stream_bytes {cap['stream_bytes']} != {want}")
            # The bound was reached and said so (4 MiB at ~128 bytes a chunk: ~32k chunks).
            check(cap.get("buffer_limit_gaps", 0) >= n - 40000,
                  f"buffer_limit_gaps {cap.get('buffer_limit_gaps')} < {n - 40000}")

        os.unlink(path)
        conns, per_conn = 16, n // 25
        write_spread_capture(path, conns, per_conn)
        config = os.path.join(tmp, "probe.yaml")
        with open(config, "w") as f:
            f.write("serveraddress: 127.0.0.1\nstream:\n  max_worker_buffer_mb: 8\n")
        spread = run([binary, "-c", config, "-r", path, "--port", "3306", "--serverport", "0"])
        peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        print(f"{conns} connections x {per_conn}, worker bound 8 MiB: peak RSS of both runs "
              f"{peak_kb / 1024:.1f} MB")
        check(peak_kb < BOUND_KB or SANITIZED,
              f"peak RSS of both runs {peak_kb} kB >= {BOUND_KB} kB")
        check(spread is not None, "the run with stream.max_worker_buffer_mb failed")
        if spread is not None:
            print("  capture:", json.dumps({k: spread.get(k) for k in KEYS}))
            # The worker's bound: nothing lost silently, and it did the giving up, before any
            # direction reached its own 4 MiB (16 directions share 8 MiB).
            total = conns * per_conn
            check(spread["buffer_limit_gaps"] == 0, "spread: a direction reached its own bound")
            check(spread["gaps"] == total and spread["gap_bytes"] == total,
                  f"spread: gaps {spread['gaps']}, gap_bytes {spread['gap_bytes']} != {total}")
            check(spread["stream_bytes"] == conns + total, "spread: stream_bytes")
            check(spread["worker_buffer_limit_gaps"] >= total - (8 << 20) // 96,
                  f"spread: worker_buffer_limit_gaps {spread['worker_buffer_limit_gaps']}")
    for f in failures:
        print("FAIL:", f)
    if failures:
        sys.exit(1)
    print("PASS")


if __name__ == "__main__":
    main()

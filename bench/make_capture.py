#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Writes a large pcap by repeating a real capture N times: each copy gets its own client ports
(so its connections are distinct) and timestamps shifted past the previous copy.
Usage: make_capture.py IN.pcap OUT.pcap COPIES"""
import struct
import sys

src, dst, copies = sys.argv[1], sys.argv[2], int(sys.argv[3])
data = open(src, "rb").read()
magic = struct.unpack("<I", data[:4])[0]
if magic not in (0xA1B2C3D4, 0xA1B23C4D):
    sys.exit("little-endian classic pcap expected")
nano = magic == 0xA1B23C4D
link = struct.unpack("<I", data[20:24])[0]
if link != 1:
    sys.exit("Ethernet link type expected")
packets = []
off = 24
while off + 16 <= len(data):
    sec, frac, incl, orig = struct.unpack("<IIII", data[off:off + 16])
    packets.append((sec, frac, orig, bytearray(data[off + 16:off + 16 + incl])))
    off += 16 + incl
span = packets[-1][0] - packets[0][0] + 1

with open(dst, "wb") as out:
    out.write(data[:24])
    for c in range(copies):
        for sec, frac, orig, frame in packets:
            f = bytearray(frame)
            # Ethernet(14) + IPv4(IHL) + TCP ports: move the non-3306 port of each copy.
            ihl = (f[14] & 0x0F) * 4
            tcp = 14 + ihl
            sport, dport = struct.unpack(">HH", f[tcp:tcp + 4])
            shift = (c * 7) % 20000
            if sport != 3306:
                sport = 30000 + (sport + shift) % 30000
            if dport != 3306:
                dport = 30000 + (dport + shift) % 30000
            f[tcp:tcp + 4] = struct.pack(">HH", sport, dport)
            out.write(struct.pack("<IIII", sec + c * span, frac, len(f), orig))
            out.write(f)
print(f"{dst}: {copies * len(packets)} packets")

#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Writes a pcap where many copies of a real capture's first packets run at the same time:
copy c gets its own client address (10.x.y.z), and packet i of every copy is written before
packet i+1 of any, so COPIES x (connections of the capture) connections are open at once.
Usage: make_connections.py IN.pcap OUT.pcap COPIES HEAD_PACKETS"""
import struct
import sys

src, dst, copies, head = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
data = open(src, "rb").read()
magic = struct.unpack("<I", data[:4])[0]
if magic not in (0xA1B2C3D4, 0xA1B23C4D) or struct.unpack("<I", data[20:24])[0] != 1:
    sys.exit("little-endian classic pcap with Ethernet frames expected")
packets = []
off = 24
while off + 16 <= len(data) and len(packets) < head:
    sec, frac, incl, orig = struct.unpack("<IIII", data[off:off + 16])
    packets.append((sec, frac, orig, bytes(data[off + 16:off + 16 + incl])))
    off += 16 + incl

with open(dst, "wb") as out:
    out.write(data[:24])
    for sec, frac, orig, frame in packets:
        ihl = (frame[14] & 0x0F) * 4
        sport = struct.unpack(">H", frame[14 + ihl:14 + ihl + 2])[0]
        client_at = 14 + (12 if sport != 3306 else 16)  # IPv4 source or destination
        for c in range(copies):
            f = bytearray(frame)
            f[client_at:client_at + 4] = bytes((10, (c >> 16) & 255, (c >> 8) & 255, c & 255))
            out.write(struct.pack("<IIII", sec, frac, len(f), orig))
            out.write(f)
print(f"{dst}: {copies * len(packets)} packets")

#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
# Writes a classic pcap file (microsecond or nanosecond, either byte order) as the hex-lines
# text that examples/capture-hexlines reads: "linktype N", then "<ts_ns> <orig_len> <hex>".
# Usage: pcap_to_hexlines.py IN.pcap OUT.hex
import struct
import sys

with open(sys.argv[1], "rb") as f:
    data = f.read()
magic = data[:4]
formats = {
    b"\xd4\xc3\xb2\xa1": ("<", 1000),
    b"\xa1\xb2\xc3\xd4": (">", 1000),
    b"\x4d\x3c\xb2\xa1": ("<", 1),
    b"\xa1\xb2\x3c\x4d": (">", 1),
}
if magic not in formats:
    sys.exit(f"{sys.argv[1]}: not a classic pcap file")
order, scale = formats[magic]
linktype = struct.unpack(order + "I", data[20:24])[0] & 0x0FFFFFFF
out = [f"# from {sys.argv[1]}", f"linktype {linktype}"]
pos = 24
while pos + 16 <= len(data):
    sec, frac, caplen, origlen = struct.unpack(order + "IIII", data[pos:pos + 16])
    pos += 16
    frame = data[pos:pos + caplen]
    pos += caplen
    out.append(f"{sec * 1_000_000_000 + frac * scale} {origlen} {frame.hex()}")
with open(sys.argv[2], "w") as f:
    f.write("\n".join(out) + "\n")
print(f"{len(out) - 2} frames written to {sys.argv[2]}")

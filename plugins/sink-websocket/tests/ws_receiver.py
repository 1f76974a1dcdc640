#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""A report receiver for pusher tests, independent of our code (Python websockets library):
listens on 127.0.0.1:PORT, appends one line per received report to OUT
("seq final" for native JSON), flushed before it acknowledges with {"ack": seq} (ACK=message)
or leaves acknowledging to the library's pongs (ACK=pong), or sends no ack message at all
(ACK=none: a pusher waiting for ack messages never gets one). Prints "ready" once listening.
Usage: ws_receiver.py PORT OUT message|pong|none"""
import asyncio
import json
import sys

import websockets

port, out_path, ack = int(sys.argv[1]), sys.argv[2], sys.argv[3]
out = open(out_path, "a", buffering=1)


async def handle(ws, path=None):
    async for message in ws:
        if isinstance(message, bytes):
            out.write(f"binary {len(message)}\n")
            continue
        report = json.loads(message)
        out.write(f"{report['seq']} {int(report['final'])} {report['node']}\n")
        out.flush()
        if ack == "message":
            await ws.send(json.dumps({"ack": report["seq"]}))


async def main():
    async with websockets.serve(handle, "127.0.0.1", port, max_size=64 << 20):
        print("ready", flush=True)
        await asyncio.Future()

asyncio.run(main())

#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""The report pusher (libs/push, here in sink-websocket) against a hostile receiver: the first
server of pusher_servers (a raw-socket websocket server on 127.0.0.2) takes the reports, never
acknowledges them, then sends a frame whose header announces 100 MiB and sends the 100 MiB.
The pusher must refuse the frame from its header (nothing allocated: the probe's peak RSS grows
by less than 16 MiB, where the unbounded receive grew by what arrived before its 1 ms read
timeout, tens of MiB), close that connection
(counted as a pusher failure), and deliver every report, from seq 1 (none was acknowledged), to
the second, good server (127.0.0.3, which answers pings with pongs), in order. /health answers
throughout.
Usage: static_pusher_payload.py MYSQLPROBE [--sanitized]"""
import json
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import static_support as S  # noqa: E402

binary = sys.argv[1]
MIB = 1 << 20
HUGE = 100 * MIB
BOUND_KB = 16 * 1024 + S.QUARANTINE_KB  # ASan: the looped capture fills its quarantine
WORK = S.workdir("mp-sec-pusher-")

attack = threading.Event()
bad_got, bad_sent, bad_closed_with = [], [], []
good_seqs = []


def bad(c, path, index):
    """Reads reports (never answers the pings), then sends a 100 MiB frame when told."""
    c.settimeout(10)
    while not attack.is_set():
        fin, op, payload = S.read_frame(c)
        if op == 0x1:
            bad_got.append(json.loads(payload)["seq"])
    if index != 0:
        return S.drain(c, 5)
    c.settimeout(0.2)
    try:  # anything the pusher says before it closes (it should be a close frame, 1009)
        while True:
            fin, op, payload = S.read_frame(c)
            if op == 0x8:
                bad_closed_with.append(int.from_bytes(payload[:2], "big"))
                break
    except Exception:
        pass
    c.settimeout(10)
    sent = 0
    data = memoryview(S.ws_frame(0x1, b"y" * HUGE))  # header and payload in one stream
    try:
        while sent < len(data):
            sent += c.send(data[sent:])
    except OSError:
        pass
    bad_sent.append(sent)
    c.settimeout(1)
    try:
        while not bad_closed_with:
            fin, op, payload = S.read_frame(c)
            if op == 0x8:
                bad_closed_with.append(int.from_bytes(payload[:2], "big"))
    except Exception:
        pass


def good(c, path, index):
    """Keeps the reports' seqs and answers pings with pongs (which acknowledge them)."""
    c.settimeout(30)
    while True:
        fin, op, payload = S.read_frame(c)
        if op == 0x1:
            good_seqs.append(json.loads(payload)["seq"])
        elif op == 0x9:
            c.sendall(S.ws_frame(0xA, payload))
        elif op == 0x8:
            return


def main():
    bad_srv = S.FakeWsServer("127.0.0.2", bad, probe_wait=0.05)
    good_srv = S.FakeWsServer("127.0.0.3", good, probe_wait=0.05)
    probe = S.Node(binary, WORK, "pusher", "127.0.0.1",
                   f"interval: 1\nprobe: {{file: {S.PCAP}, loop: true}}\n"
                   f"plugins:\n  sinks:\n    - plugin: sink-websocket\n      config:\n"
                   f"        pusher_servers: [\"{bad_srv.addr}\", \"{good_srv.addr}\"]\n"
                   f"        reconnect_period_s: 1\n")
    probe.start()
    S.wait_for(lambda: len(bad_got) >= 2, 15, "the first server to get two reports")
    time.sleep(0.3)
    start_peak = probe.peak_kb()
    print(f"     probe RSS {probe.rss_kb()} KiB, peak {start_peak} KiB; the first server got "
          f"seqs {bad_got}")
    attack.set()
    S.wait_for(lambda: len(good_seqs) >= len(bad_got) + 3, 15,
               "the second server to get the reports")
    S.check(probe.healthy(), "/health answers")
    time.sleep(1)
    peak = probe.peak_kb()
    print(f"     peak RSS {peak} KiB (+{peak - start_peak} KiB, bound +{BOUND_KB} KiB); the bad "
          f"server wrote {bad_sent} bytes of its 100 MiB and saw close codes {bad_closed_with}; "
          f"the good one got seqs {good_seqs[:3]}..{good_seqs[-3:]}")
    S.check(peak - start_peak < BOUND_KB, "the 100 MiB frame was not allocated (peak RSS bound)")
    S.check(bad_sent and bad_sent[0] < HUGE // 2, "the pusher stopped reading the 100 MiB frame")
    S.check(bad_closed_with == [1009], f"the pusher closed with 1009 ({bad_closed_with})")
    failures = probe.metric("mysqlprobe_sink_websocket_pusher_failures_total")
    S.check(failures >= 1, f"the broken connection counts as a pusher failure ({failures})")
    dedup = sorted(set(good_seqs))
    S.check(dedup[0] == 1 and dedup == list(range(1, dedup[-1] + 1)),
            "the second server got every report from seq 1 (none was acknowledged), no gap")
    S.check(good_seqs == sorted(good_seqs), "in order")
    S.check(probe.metric("mysqlprobe_sink_websocket_pusher_dropped_total") == 0,
            "nothing dropped from the pusher's buffer")
    S.check(probe.metric("mysqlprobe_sink_websocket_pusher_connected") == 1,
            "the pusher is connected (to the second server)")
    probe.stop()
    S.check(probe.proc.returncode == 0, f"the probe stops cleanly ({probe.proc.returncode})")
    bad_srv.close()
    good_srv.close()


if __name__ == "__main__":
    S.run(main, WORK)

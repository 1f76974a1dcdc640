#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""cluster-static master against hostile "slaves" (raw-socket websocket servers on 127.0.0.x
that answer /cluster/stream's upgrade), joined through the master's /cluster/join:

 A. a slave that sends 300 valid reports of 1 MiB at once (300 MiB) with the master's backlog
    cap at 8 MiB: the master keeps what fits, refuses the next one (counted) and closes the link,
    merges what it kept at its next interval, then dials again with since= the last seq it kept;
    the slave replays from its history (the last 20 reports, as a real slave with history: 20):
    every report the slave still had is merged exactly once, the seq gap between the first
    connection and the replay is counted as skipped, and the peak RSS stays bounded;
 B. a slave that sends a fragmented message that never ends (1 MiB continuation frames, 300 MiB
    announced): the link is closed once the message passes max_report_mb (counted);
 C. a slave whose frame header announces 1 GiB: refused before anything is allocated (counted).
The master answers /health throughout.

RSS bound: the caps allow 8 MiB of backlog plus one message of at most 2 MiB being read (its
frame buffer and the assembled message: 2 x 2 MiB) per slave; parsing a 1 MiB report
(identity, then the merge, one at a time) costs a few MiB more. 64 MiB over the master's peak
before the first slave leaves room for allocator slack and stays far below the 300 MiB sent
(an unbounded master grows by about that much: +549 MiB measured).

Usage: static_slave_flood.py MYSQLPROBE [--sanitized] [--no-limits]
(--no-limits omits the new keys, to measure a build that does not have them)"""
import json
import os
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import static_support as S  # noqa: E402

binary = sys.argv[1]
no_limits = "--no-limits" in sys.argv[2:]
sys.path.insert(0, os.path.join(S.SOURCE, "tests", "live"))
try:
    import websocket  # noqa: F401  (python3-websocket: the recorder of the master's /collector)
    from harness import Recorder
except ImportError:
    print("SKIPPED: python3-websocket missing (scripts/deps.sh installs it)")
    sys.exit(S.SKIP)

MIB = 1 << 20
BACKLOG_MB, REPORT_MB = 8, 2
FLOOD, HISTORY = 300, 20
BOUND_KB = 64 * 1024 + S.QUARANTINE_KB
STARTED = 1_700_000_000_000_000_000
WORK = S.workdir("mp-sec-flood-")

base = S.offline_report(binary)


def report_text(node, seq):
    r = dict(base)
    r.update(node=node, started_ns=STARTED, seq=seq, final=False)
    r["interval"] = {"start_ns": STARTED + seq * 10**9, "end_ns": STARTED + (seq + 1) * 10**9}
    text = json.dumps(r)
    pad = MIB - len(text) - len(',"pad":""')
    return text[:-1] + ',"pad":"' + "x" * pad + '"}'


def query(path):
    q = dict(p.split("=", 1) for p in path.split("?", 1)[1].split("&")) if "?" in path else {}
    return int(q.get("since", 0)), int(q.get("started", 0))


flood_sent = []  # per connection: the seqs written before the master closed the link


def flood(c, path, index):
    since, started = query(path)
    if index == 0:
        seqs = range(1, FLOOD + 1)  # made while connected: sent live
    else:  # a reconnect: what the history still has and this master has not seen
        seqs = [s for s in range(FLOOD - HISTORY + 1, FLOOD + 1)
                if started != STARTED or s > since]
    sent = []
    flood_sent.append(sent)
    try:
        for s in seqs:
            c.sendall(S.ws_frame(0x1, report_text("fake-flood", s).encode()))
            sent.append(s)
    except OSError:
        return
    S.drain(c, 30)  # stay connected (a live slave) until the master goes


fragment_bytes = []


def fragments(c, path, index):
    c.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)  # what is written is in flight
    sent = 0
    fragment_bytes.append(0)
    chunk = b"[" * MIB
    try:
        c.sendall(S.ws_frame(0x1, chunk, fin=False))
        sent += len(chunk)
        for _ in range(FLOOD - 1):
            c.sendall(S.ws_frame(0x0, chunk, fin=False))  # never the final fragment
            sent += len(chunk)
            fragment_bytes[index] = sent
    except OSError:
        pass
    fragment_bytes[index] = sent


def kernel_receive_max():
    """The most a loopback TCP receive buffer can grow to (tcp_rmem's third field)."""
    try:
        with open("/proc/sys/net/ipv4/tcp_rmem") as f:
            return int(f.read().split()[2])
    except (OSError, ValueError, IndexError):
        return 32 * MIB


huge_closed = []


def huge(c, path, index):
    c.sendall(S.ws_frame(0x1, b"", length=1 << 30))  # announces 1 GiB; nothing follows
    huge_closed.append(S.drain(c, 5))


def main():
    limits = "" if no_limits else \
        f", max_slave_backlog_mb: {BACKLOG_MB}, max_report_mb: {REPORT_MB}"
    master = S.Node(binary, WORK, "master", "127.0.0.1",
                    f"interval: 1\nprobe: {{file: {S.PCAP}}}\n"
                    f"plugins:\n  cluster: {{plugin: cluster-static, config: "
                    f"{{state_file: {WORK}/state.txt, reconnect_period_s: 1{limits}}}}}\n")
    master.start()
    rec = Recorder(master)
    rec.connected.wait(10)
    time.sleep(1.5)
    start_peak = master.peak_kb()
    print(f"     master RSS {master.rss_kb()} KiB, peak {start_peak} KiB before the slaves")
    peaks = []
    sampling = threading.Event()

    def sample():
        while not sampling.is_set() and master.proc.poll() is None:
            peaks.append(master.peak_kb())
            time.sleep(0.1)
    threading.Thread(target=sample, daemon=True).start()

    # A. 300 x 1 MiB valid reports.
    fake = S.FakeWsServer("127.0.0.2", flood)
    st, body = master.post(f"/cluster/join?addr={fake.addr}")
    S.check(st == 200, f"join of the flooding slave: {st} {body}")

    def contributions():
        return [c["seq"] for m in list(rec.reports)
                for c in m.get("cluster", {}).get("contributors", []) if c["node"] == "fake-flood"]
    try:
        S.wait_for(lambda: set(range(FLOOD - HISTORY + 1, FLOOD + 1)) <= set(contributions()),
                   30, "the replayed history to be merged")
    except AssertionError as e:
        S.check(False, str(e))
    S.check(master.healthy(), "/health answers after the flood")
    merged = contributions()
    first = [s for s in merged if s <= FLOOD - HISTORY]
    sinces = [query(p)[0] for p in fake.paths]
    print(f"     connections since=: {sinces}; merged {len(merged)}: {merged[:3]}..{merged[-3:]}; "
          f"written per connection: {[len(x) for x in flood_sent]}")
    S.check(len(merged) == len(set(merged)), "no report merged twice")
    S.check(first == list(range(1, len(first) + 1)) and 0 < len(first) < FLOOD - HISTORY,
            f"the first connection's reports were kept up to the cap ({len(first)} of them)")
    S.check(set(range(FLOOD - HISTORY + 1, FLOOD + 1)) <= set(merged),
            "every report the slave still had was merged after the reconnects")
    S.check(len(fake.paths) >= 2 and sinces[1] == len(first),
            f"the master dialled again with since= the last seq it kept ({sinces[1:2]})")
    S.check(all(sinces[i] in merged for i in range(1, len(sinces))),
            "every reconnect asked from a seq that was merged")
    refused = master.metric("mysqlprobe_cluster_static_slave_reports_refused_total")
    skipped = master.metric("mysqlprobe_cluster_static_slave_reports_skipped_total")
    S.check(refused == len(fake.paths) - 1 and refused >= 2,
            f"one refused report counted per closed link ({refused}, {len(fake.paths)} links)")
    S.check(skipped == FLOOD - HISTORY - len(first),
            f"the seqs the slave no longer had are counted as skipped ({skipped})")
    st, body = master.get("/cluster/listnodes")
    node = [n for n in json.loads(body)["nodes"] if n["addr"] == fake.addr]
    S.check(bool(node) and node[0].get("refused") == refused,
            f"listnodes names the refusals of that slave ({node[0] if node else None})")
    S.check(master.post(f"/cluster/remove?addr={fake.addr}")[0] == 200, "remove the flooder")
    fake.close()

    # B. A fragmented message that never ends.
    frag = S.FakeWsServer("127.0.0.3", fragments)
    S.check(master.post(f"/cluster/join?addr={frag.addr}")[0] == 200, "join of the fragmenter")
    try:
        S.wait_for(lambda: master.metric(
            "mysqlprobe_cluster_static_slave_messages_oversize_total") >= 2, 15,
            "two oversize messages")
    except AssertionError as e:
        S.check(False, str(e))
    # What the fragmenter could write is what the master read plus what the kernel holds for
    # it: the master's receive buffer grows up to tcp_rmem's maximum (32 MiB on some kernels),
    # so "soon" is max_report_mb plus that, far below the 300 MiB announced.
    in_kernel = kernel_receive_max()
    print(f"     fragment bytes written per connection: {fragment_bytes} "
          f"(bound {REPORT_MB} MiB + {in_kernel // MIB} MiB the kernel may buffer + 2 MiB)")
    S.check(len(fragment_bytes) >= 2 and
            all(b < (REPORT_MB + 2) * MIB + in_kernel for b in fragment_bytes[:2]),
            "the master closed the link soon after the message passed max_report_mb")
    S.check(master.healthy(), "/health answers during the endless message")
    S.check(master.post(f"/cluster/remove?addr={frag.addr}")[0] == 200, "remove the fragmenter")
    frag.close()

    # C. A header announcing 1 GiB.
    before = master.metric("mysqlprobe_cluster_static_slave_messages_oversize_total")
    big = S.FakeWsServer("127.0.0.4", huge)
    S.check(master.post(f"/cluster/join?addr={big.addr}")[0] == 200, "join of the 1 GiB header")
    try:
        S.wait_for(lambda: huge_closed and huge_closed[0], 10, "the link to be closed")
    except AssertionError as e:
        S.check(False, str(e))
    S.check(master.metric("mysqlprobe_cluster_static_slave_messages_oversize_total") > before,
            "a 1 GiB frame header is refused and counted")
    S.check(master.post(f"/cluster/remove?addr={big.addr}")[0] == 200, "remove it")
    big.close()

    sampling.set()
    peak = max(peaks + [master.peak_kb()])
    print(f"     master peak RSS {peak} KiB (+{peak - start_peak} KiB, bound +{BOUND_KB} KiB), "
          f"RSS now {master.rss_kb()} KiB")
    S.check(peak - start_peak < BOUND_KB, "the master's peak RSS stays within the bound")
    S.check(master.healthy() and master.proc.poll() is None, "the master is still healthy")
    rec.stopping = True
    master.stop()
    S.check(master.proc.returncode == 0, f"the master stops cleanly ({master.proc.returncode})")


if __name__ == "__main__":
    S.run(main, WORK)

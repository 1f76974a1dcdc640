#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""sink-websocket with independent peers (Python's websocket-client and websockets, Debian's
python3-snappy): /collector content equals the offline report; mysqlprobe-v1 decodes with
another snappy; the pusher fails over when its server is killed (kill -9) and, after dedupe by
sequence number, no report is lost or duplicated. Usage: push_test.py MYSQLPROBE SOURCE_DIR"""
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

binary, source = sys.argv[1], sys.argv[2]
sys.path.insert(0, os.path.join(source, "tests", "live"))
from harness import Probe, free_port, skip, wait_for  # noqa: E402

try:
    import snappy
    import websocket
    import websockets  # noqa: F401  (the receivers use it)
except ImportError as e:
    skip(f"python module missing ({e}); scripts/deps.sh installs it")

CAPTURE = os.path.join(source, "tests", "data", "pcap", "sysbench_text_rw_2t_20tx.pcap")
RECEIVER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ws_receiver.py")
failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)


def node_yaml(sink, extra=""):
    return (f"serverport: 0\nserveraddress: 127.0.0.1\ninterval: 2\nprobe:\n  file: {CAPTURE}\n"
            f"{extra}plugins:\n  cluster: none\n  sinks:\n    - {{plugin: sink-websocket, "
            f"config: {{{sink}}}}}\n")


def offline():
    out = subprocess.run([binary, "-r", CAPTURE, "--port", "3306"], check=True,
                         capture_output=True).stdout
    return templates_of(json.loads(out))


def templates_of(report, into=None):
    into = {} if into is None else into
    for t in report.get("templates", []):
        into[t["id"]] = into.get(t["id"], 0) + t["count"]
    return into


def collector_equals_offline():
    want = offline()
    with Probe(binary, node_yaml("")) as p:
        ws = websocket.create_connection(f"ws://127.0.0.1:{p.http_port}/collector", timeout=10)
        got, seqs = {}, []
        while len(seqs) < 3:
            report = json.loads(ws.recv())
            seqs.append(report["seq"])
            templates_of(report, got)
        ws.close()
    check(seqs == [1, 2, 3], f"websocket-client got reports 1, 2, 3 from the start ({seqs})")
    check(got == want, f"their templates add up to the offline report ({len(want)} templates)")


def by_fingerprint(report):
    out = {}
    for t in report.get("templates", []):
        out[t["fingerprint"]] = out.get(t["fingerprint"], 0) + t["count"]
    return out


def v1_with_python_snappy():
    want_report = json.loads(subprocess.run([binary, "-r", CAPTURE, "--port", "3306"], check=True,
                                            capture_output=True).stdout)
    with Probe(binary, node_yaml("format: mysqlprobe-v1")) as p:
        ws = websocket.create_connection(f"ws://127.0.0.1:{p.http_port}/collector", timeout=10)
        opcode, data = ws.recv_data()
        ws.close()
    check(opcode == websocket.ABNF.OPCODE_BINARY, "mysqlprobe-v1 comes in binary frames")
    report = json.loads(snappy.uncompress(data))
    db = report.get("sbtest", {})
    check(db.get("a") == "sbtest" and db.get("b") == "127.0.0.1", "keyed by schema, a/b fields")
    counts = {s["b"]: s["c"] + s["d"] for s in db.get("d", [])}
    check(counts == by_fingerprint(want_report),
          "python-snappy decodes it; per-template c+d equal the offline counts")
    check(all(s["a"] == hashlib.md5(s["b"].encode()).hexdigest() for s in db.get("d", [])),
          "each template's key is the MD5 of its text, as the original's")


def receiver(port, out, ack):
    proc = subprocess.Popen(["/usr/bin/python3", RECEIVER, str(port), out, ack],
                            stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if line.strip() != "ready":
        raise AssertionError("receiver did not start")
    return proc


def lines(path):
    try:
        with open(path) as f:
            return [l.split() for l in f if l.strip()]
    except FileNotFoundError:
        return []


def pusher_failover(ack, a_acks=None):
    """Server A is killed mid-run; B takes over. a_acks="none": A never acknowledges, so
    everything it got is sent again to B (duplicates, dropped by seq)."""
    work = tempfile.mkdtemp(prefix="mp-push-")
    pa, pb = free_port(), free_port()
    outa, outb = os.path.join(work, "a"), os.path.join(work, "b")
    a = receiver(pa, outa, a_acks or ack)
    b = receiver(pb, outb, ack)
    sink = (f"pusher_servers: '127.0.0.1:{pa},ws://127.0.0.1:{pb}', pusher_path: /reports, "
            f"pusher_ack: {ack}, reconnect_period_s: 1")
    try:
        with Probe(binary, node_yaml(sink, "  loop: true\n")) as p:
            p.post("/config/update?report_period_ms=100")
            wait_for(lambda: len(lines(outa)) >= 10, 20, "server A to receive 10 reports")
            a.send_signal(signal.SIGKILL)  # mid-run, without warning
            a.wait()
            got_a = len(lines(outa))
            wait_for(lambda: len(lines(outb)) >= 10, 20, "server B to take over")
            m = p.metrics()
            p.stop()  # the final report is pushed before the node exits
        rec = lines(outa) + lines(outb)
        seqs = [int(r[0]) for r in rec]
        unique = sorted(set(seqs))
        final = [int(r[0]) for r in rec if r[1] == "1"]
        print(f"     ({ack}) A got {got_a}, B got {len(lines(outb))}, "
              f"{len(seqs) - len(unique)} duplicate(s) resent after the failover; "
              f"sent {m.get('mysqlprobe_sink_websocket_pusher_sent_total')}, "
              f"retried {m.get('mysqlprobe_sink_websocket_pusher_retried_total')}, "
              f"failures {m.get('mysqlprobe_sink_websocket_pusher_failures_total')}")
        if a_acks == "none":
            check(len(seqs) > len(unique) and m.get(
                "mysqlprobe_sink_websocket_pusher_retried_total", 0) > 0,
                f"({ack}) what A never acknowledged was sent again to B")
        check(unique == list(range(1, unique[-1] + 1)),
              f"({ack}) after dedupe by seq: reports 1..{unique[-1]}, none missing")
        check(final == [unique[-1]], f"({ack}) the final report arrived, last")
        bseq = [int(r[0]) for r in lines(outb)]
        check(bseq == sorted(bseq), f"({ack}) server B got them in order")
    finally:
        for proc in (a, b):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        shutil.rmtree(work, ignore_errors=True)


collector_equals_offline()
v1_with_python_snappy()
pusher_failover("message")
pusher_failover("pong")
pusher_failover("message", a_acks="none")
if failures:
    print(f"{len(failures)} check(s) failed")
    sys.exit(1)
print("all checks passed")

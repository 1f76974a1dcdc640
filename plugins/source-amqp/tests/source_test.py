#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""source-amqp against a real rabbitmq-server (started here, on loopback, once for the group),
python3-pika publishing and reading:
1. A shovel, source-amqp -> sink-amqp: every message published to the input queue arrives at
   the output with its body and message id, the probe killed with -9 in the middle and started
   again; the input queue ends empty (each message acknowledged once delivered downstream).
2. Reports over the broker, the scale-out path: three slaves (offline runs of the bundled
   captures) publish their reports with sink-amqp; two masters consume one shared queue
   (source-amqp, their cluster-static slot subscribed to the stream) and publish their merged
   reports with sink-amqp; a third-party consumer adds up the merged reports: equal to the sum of
   the slaves' offline totals, per template too. A report published twice is merged once.
3. Refusals: a missing queue (passive) and a wrong password, one log line each.
Usage: source_test.py MYSQLPROBE SOURCE_DIR TEST_PLUGIN_DIR"""
import json
import os
import subprocess
import sys
import tempfile
import time

binary, source = sys.argv[1], sys.argv[2]
sys.path.insert(0, os.path.join(source, "tests", "live"))
from harness import (Probe, RabbitMQ, amqp_bind, amqp_channel, amqp_depth,  # noqa: E402
                     amqp_drain, skip, wait_for)

try:
    import pika
except ImportError as e:
    skip(f"python module missing ({e}); scripts/deps.sh installs python3-pika")

PCAPS = [os.path.join(source, "tests", "data", "pcap", n + ".pcap")
         for n in ("sysbench_text_rw_2t_20tx", "sysbench_ps_rw_2t_20tx", "edge_cases_small")]
failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)


def url(broker):
    return f"amqp://127.0.0.1:{broker.port}/%2F"


def shovel(broker):
    total = 3000
    amqp_bind(broker, "mp.in", "in", "in.#")
    amqp_bind(broker, "mp.out", "out")
    conn, ch = amqp_channel(broker)
    ch.confirm_delivery()
    for i in range(1, total + 1):
        ch.basic_publish("mp.in", f"in.{i % 7}", json.dumps({"i": i, "pad": "x" * 300}),
                         pika.BasicProperties(message_id=f"m-{i}", delivery_mode=2,
                                              content_type="application/json"))
    conn.close()
    yaml_text = (
        f"serverport: 0\nserveraddress: 127.0.0.1\ninterval: 3600\nnodename: shovel\n"
        f"plugins:\n  cluster: none\n"
        f"  sources:\n    - plugin: source-amqp\n      config: {{url: '{url(broker)}', "
        f"queue: in, declare: passive, stream: shovel.msgs, prefetch: 50}}\n"
        f"  sinks:\n    - plugin: sink-amqp\n      records: [shovel.msgs]\n      reports: false\n"
        f"      config: {{url: '{url(broker)}', exchange: mp.out, "
        f"record_routing_key: 'out.{{key}}', max_in_flight: 20}}\n")
    got = []
    with Probe(binary, yaml_text) as p:
        wait_for(lambda: amqp_depth(broker, "out") >= 1000, 60, "1,000 messages through")
        p.proc.kill()  # a crash: what it took and did not acknowledge goes back to the queue
        p.proc.wait()
        left = amqp_depth(broker, "in")
        print(f"probe killed with -9; {amqp_depth(broker, 'out')} out, {left} still in")
        check(0 < left < total, f"the crash left messages in the input queue ({left})")
    with Probe(binary, yaml_text) as p:
        wait_for(lambda: amqp_depth(broker, "in") == 0, 60, "the input queue drained")
        time.sleep(0.5)
        m = p.metrics()
        check(m.get("mysqlprobe_source_amqp_connected") == 1, "the source is connected")
        check(p.stop() == 0, "the node stops cleanly")
        log = p.log()
    m_consumed = m.get("mysqlprobe_source_amqp_consumed_total", 0)
    m_acked = m.get("mysqlprobe_source_amqp_acked_total", 0)
    got = amqp_drain(broker, "out")
    check(amqp_depth(broker, "in") == 0, "nothing left in the input queue after the stop")
    seen = {}
    bad = 0
    for method, props, body in got:
        i = json.loads(body)["i"]
        seen[i] = seen.get(i, 0) + 1
        bad += props.message_id != f"m-{i}" or not method.routing_key.startswith("out.in.")
    missing = [i for i in range(1, total + 1) if i not in seen]
    dups = sum(c - 1 for c in seen.values())
    check(not missing, f"every message 1..{total} arrived at the output (missing {len(missing)}: "
          f"{missing[:5]}); {dups} twice, those taken and not acknowledged at the crash")
    check(bad == 0, "bodies, message ids and routing keys ({key}: the input's routing key) kept")
    check(m_consumed == m_acked and m_consumed > 0,
          f"the second run acknowledged all it took ({m_acked} of {m_consumed})")
    check("not yet delivered downstream" not in log, "nothing was left unacknowledged at the stop")


def slave_yaml(broker, name):
    return (f"serverport: 0\nserveraddress: 127.0.0.1\ninterval: 3600\nnodename: {name}\n"
            f"plugins:\n  cluster: none\n  sinks:\n    - plugin: sink-amqp\n"
            f"      config: {{url: '{url(broker)}', exchange: mp.fleet}}\n")


def master_yaml(broker, name, state):
    return (f"serverport: 0\nserveraddress: 127.0.0.1\ninterval: 1\nnodename: {name}\n"
            f"plugins:\n  cluster:\n    plugin: cluster-static\n    records: [mysqlprobe.report]\n"
            f"    config: {{state_file: {state}}}\n"
            f"  sources:\n    - plugin: source-amqp\n      config: {{url: '{url(broker)}', "
            f"queue: fleet, exchange: mp.fleet, binding_keys: ['mysqlprobe.report.#'], "
            f"stream: mysqlprobe.report, prefetch: 1}}\n"
            f"  sinks:\n    - plugin: sink-amqp\n"
            f"      config: {{url: '{url(broker)}', exchange: mp.merged, "
            f"routing_key: 'merged.{{node}}'}}\n")


def add(total, report):
    """Adds a report's totals and per-template counts into `total`."""
    t = report.get("totals", {})
    for k in ("commands_total", "errors", "rows_returned"):
        total[k] = total.get(k, 0) + t.get(k, 0)
    for tpl in report.get("templates", []):
        key = ("tpl", tpl["id"])
        c, e, r = total.get(key, (0, 0, 0))
        total[key] = (c + tpl["count"], e + tpl["errors"], r + tpl["rows_returned"])


def fleet(broker):
    amqp_bind(broker, "mp.merged", "merged")
    conn, ch = amqp_channel(broker)
    ch.exchange_declare("mp.fleet", "topic", durable=True)
    ch.queue_declare("fleet", durable=True)
    ch.queue_purge("fleet")
    conn.close()
    expected = {}
    offline = []
    for pcap in PCAPS:
        r = json.loads(subprocess.run([binary, "-r", pcap], capture_output=True, check=True).stdout)
        add(expected, r)
    with tempfile.TemporaryDirectory() as d, \
            Probe(binary, master_yaml(broker, "master1", f"{d}/m1.txt")) as m1, \
            Probe(binary, master_yaml(broker, "master2", f"{d}/m2.txt")) as m2:
        for m in (m1, m2):
            wait_for(lambda: m.metrics().get("mysqlprobe_source_amqp_connected") == 1, 20,
                     "a master consuming the fleet queue")
        cfg = os.path.join(d, "slave.yaml")
        for i, pcap in enumerate(PCAPS):
            with open(cfg, "w") as f:
                f.write(slave_yaml(broker, f"slave{i + 1}"))
            run = subprocess.run([binary, "-c", cfg, "-r", pcap], capture_output=True, text=True)
            check(run.returncode == 0, f"slave{i + 1} ran {os.path.basename(pcap)}"
                  + ("" if run.returncode == 0 else f": {run.stderr[-300:]}"))
            offline.append(json.loads(run.stdout))

        got = {}
        reports = []

        def merged_all():
            for _, _, body in amqp_drain(broker, "merged"):
                r = json.loads(body)
                reports.append(r)
                add(got, r)
            return got.get("commands_total", 0) >= expected["commands_total"]
        wait_for(merged_all, 30, "the merged totals to reach the slaves' sum")
        time.sleep(2.5)  # two more intervals: nothing counted twice
        merged_all()
        check(got == expected,
              f"the two masters' merged reports add up to the slaves' offline totals "
              f"({got.get('commands_total')} commands, {got.get('rows_returned')} rows, "
              f"{sum(1 for k in got if isinstance(k, tuple))} templates; expected "
              f"{expected['commands_total']}, {expected['rows_returned']})")
        per_master = [m.metrics().get("mysqlprobe_cluster_static_slave_reports_merged_total", 0)
                      for m in (m1, m2)]
        check(sum(per_master) == 3 and min(per_master) >= 1,
              f"both masters took part: {per_master} slave reports merged")
        check({r["node"] for r in reports} == {"master1", "master2"},
              "merged reports come from both masters")
        check(amqp_depth(broker, "fleet") == 0, "the fleet queue is empty: every report acknowledged")

        # A new report published twice reaches one master twice: merged once.
        m2.stop()
        conn, ch = amqp_channel(broker)
        ch.confirm_delivery()
        fresh = dict(offline[0], seq=offline[0]["seq"] + 1000)
        body = json.dumps(fresh)
        for _ in range(2):
            ch.basic_publish("mp.fleet", "mysqlprobe.report.slave1", body,
                             pika.BasicProperties(message_id="dup", delivery_mode=2))
        conn.close()
        dup_metric = "mysqlprobe_cluster_static_slave_reports_duplicate_total"
        wait_for(lambda: m1.metrics().get(dup_metric, 0) >= 1, 20, "the duplicate to be seen")
        time.sleep(2.5)  # two more intervals
        check(m1.metrics().get(dup_metric) == 1, "the second copy is a duplicate, dropped")
        once, again = {}, {}
        add(once, fresh)
        for _, _, b in amqp_drain(broker, "merged"):
            add(again, json.loads(b))
        check(again == once, "the report is merged once (same node, run and seq: "
              f"{again.get('commands_total')} commands, expected {once['commands_total']})")
        check(amqp_depth(broker, "fleet") == 0, "both copies acknowledged")
        check(m1.stop() == 0, "master1 stops cleanly")


def refusals(broker):
    cases = [
        ("missing queue", "queue: no-such-queue, declare: passive", "NOT_FOUND - no queue"),
        ("wrong password", "queue: q1, password: not-the-password-y8", "ACCESS_REFUSED"),
    ]
    for what, extra, want in cases:
        yaml_text = (f"serverport: 0\nserveraddress: 127.0.0.1\ninterval: 3600\n"
                     f"plugins:\n  cluster: none\n  sources:\n    - plugin: source-amqp\n"
                     f"      config: {{url: '{url(broker)}', {extra}, reconnect_max_ms: 300}}\n")
        with Probe(binary, yaml_text) as p:
            wait_for(lambda: want in p.log(), 15, f"{what}: '{want}' in the log")
            time.sleep(1.2)
            log = p.log()
            m = p.metrics()
            lines = [ln for ln in log.splitlines() if want in ln]
            check(len(lines) == 1, f"{what}: one log line names the cause: {lines[:1]}")
            check(m.get("mysqlprobe_source_amqp_failures_total", 0) >= 2 and
                  m.get("mysqlprobe_source_amqp_connected", 1) == 0,
                  f"{what}: retried ({m.get('mysqlprobe_source_amqp_failures_total')} failures), "
                  f"not connected")
            check("not-the-password-y8" not in log, f"{what}: the password is not in the log")
            check(p.stop() == 0, f"{what}: the node stops cleanly")


def main():
    with RabbitMQ() as broker:
        shovel(broker)
        fleet(broker)
        refusals(broker)
    if failures:
        print(f"{len(failures)} failures")
        sys.exit(1)
    print("source-amqp: OK")


main()

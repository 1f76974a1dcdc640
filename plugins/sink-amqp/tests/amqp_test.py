#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""sink-amqp against a real rabbitmq-server (started here, on loopback, once for the group) with
python3-pika as the consumer: offline reports arrive equal to the probe's own; every refusal
(no broker, wrong password, missing exchange, bad URL) gives its message and the node keeps
running; the broker killed with -9 and restarted in the middle of a stream of reports loses
nothing that was confirmed, and what was published again carries the same message id.
Records from a source (the example source-counter, checkpointing its delivered mark) go through
the same broker killed with -9, then the probe itself is killed with -9 and restarted from the
checkpoint: every record arrives at least once, duplicates carry the same message id.
Usage: amqp_test.py MYSQLPROBE SOURCE_DIR TEST_PLUGIN_DIR"""
import json
import os
import subprocess
import sys
import tempfile
import time

binary, source, test_plugins = sys.argv[1], sys.argv[2], sys.argv[3]
sys.path.insert(0, os.path.join(source, "tests", "live"))
from harness import (Probe, RabbitMQ, amqp_bind, amqp_drain, amqp_rebind, free_port, skip,  # noqa: E402
                     wait_for)

try:
    import pika  # noqa: F401 (the consumers in the harness need it)
except ImportError as e:
    skip(f"python module missing ({e}); scripts/deps.sh installs python3-pika")

PCAPS = [os.path.join(source, "tests", "data", "pcap", n + ".pcap")
         for n in ("sysbench_text_rw_2t_20tx", "sysbench_ps_rw_2t_20tx", "edge_cases_small")]
failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)


def bind_queue(broker, exchange, queue, key="mysqlprobe.report.#"):
    amqp_bind(broker, exchange, queue, key)


def sink_yaml(broker, extra="", interval=3600, exchange="mp.reports"):
    return (f"serverport: 0\nserveraddress: 127.0.0.1\ninterval: {interval}\nnodename: amqp-node\n"
            f"plugins:\n  cluster: none\n  sinks:\n    - plugin: sink-amqp\n      config:\n"
            f"        url: amqp://127.0.0.1:{broker.port}/%2F\n        exchange: {exchange}\n"
            f"        reconnect_max_ms: 500\n{extra}")


def strip(report):
    return {k: v for k, v in report.items() if k not in ("node", "started_ns", "interval", "stats")}


def offline_reports_arrive(broker):
    bind_queue(broker, "mp.reports", "offline")
    with tempfile.TemporaryDirectory() as d:
        cfg = os.path.join(d, "amqp.yaml")
        with open(cfg, "w") as f:
            f.write(sink_yaml(broker))
        for pcap in PCAPS:
            run = subprocess.run([binary, "-c", cfg, "-r", pcap], capture_output=True, text=True)
            check(run.returncode == 0, f"{os.path.basename(pcap)}: the probe ran" +
                  ("" if run.returncode == 0 else f" ({run.stderr[-300:]})"))
            printed = json.loads(run.stdout)
            plain = json.loads(subprocess.run([binary, "-r", pcap], capture_output=True,
                                              check=True).stdout)
            got = amqp_drain(broker, "offline")
            check(len(got) == 1, f"one message for one offline report ({len(got)})")
            if not got:
                continue
            method, props, body = got[0]
            report = json.loads(body)
            name = os.path.basename(pcap)
            check(report == printed, f"{name}: the message is the report the probe printed")
            check(strip(report) == strip(plain) and len(report["templates"]) > 0,
                  f"{name}: equal to the offline report ({len(report['templates'])} templates, "
                  f"{report['totals']['count'] if 'count' in report.get('totals', {}) else '?'} commands)")
            check(props.message_id == f"amqp-node/{report['started_ns']}/{report['seq']}",
                  f"message id node/run/seq ({props.message_id})")
            check(props.delivery_mode == 2 and props.content_type == "application/json"
                  and props.type == "report" and props.app_id == "mysqlprobe",
                  "persistent, application/json, type report, app_id mysqlprobe")
            check(method.routing_key == "mysqlprobe.report.amqp-node",
                  f"routing key from the template ({method.routing_key})")


def refusals(broker):
    dead = free_port()
    cases = [
        ("no broker", sink_yaml(broker).replace(f":{broker.port}/", f":{dead}/"),
         "cannot connect: Connection refused"),
        ("wrong password", sink_yaml(broker, "        password: not-the-password-x7\n"),
         "ACCESS_REFUSED"),
        ("missing exchange", sink_yaml(broker, "        declare: passive\n",
                                       exchange="no.such.exchange"), "NOT_FOUND"),
    ]
    for what, yaml_text, want in cases:
        with Probe(binary, yaml_text) as p:
            wait_for(lambda: want in p.log(), 15, f"{what}: '{want}' in the log")
            time.sleep(1.2)  # a few retries
            log = p.log()
            m = p.metrics()
            lines = [ln for ln in log.splitlines() if want in ln]
            check(len(lines) == 1, f"{what}: one log line names the cause: {lines[:1]}")
            check(m.get("mysqlprobe_sink_amqp_failures_total", 0) >= 2 and
                  m.get("mysqlprobe_sink_amqp_connected", 1) == 0,
                  f"{what}: retried, counted (failures_total "
                  f"{m.get('mysqlprobe_sink_amqp_failures_total')}), not connected")
            check("not-the-password-x7" not in log, f"{what}: the password is not in the log")
            check(p.stop() == 0, f"{what}: the node stops cleanly")
    bad_urls = [("http://127.0.0.1/", "scheme must be amqp:// or amqps://"),
                ("amqp://u:p@127.0.0.1/", "credentials in user and password"),
                ("amqp://127.0.0.1/a/b", "the path is one vhost")]
    with tempfile.TemporaryDirectory() as d:
        for url, want in bad_urls:
            cfg = os.path.join(d, "bad.yaml")
            with open(cfg, "w") as f:
                f.write(sink_yaml(broker).replace(f"amqp://127.0.0.1:{broker.port}/%2F", url))
            run = subprocess.run([binary, "--check", "-c", cfg], capture_output=True, text=True)
            out = run.stdout + run.stderr
            check(run.returncode != 0 and want in out and "u:p@" not in out,
                  f"--check refuses url {url.replace('u:p@', '***@')}: '{want}'")


def broker_crash(broker):
    bind_queue(broker, "mp.reports", "crash")
    with Probe(binary, sink_yaml(broker, interval=1)) as p:
        def confirmed():
            return p.metrics().get("mysqlprobe_sink_amqp_confirmed_total", 0)
        wait_for(lambda: confirmed() >= 3, 20, "3 reports confirmed")
        broker.kill9()
        print("broker killed with -9")
        wait_for(lambda: p.metrics().get("mysqlprobe_sink_amqp_connected") == 0, 10,
                 "the sink to see the connection lost")
        time.sleep(3)  # reports keep coming, kept by the sink
        held = p.metrics().get("mysqlprobe_sink_amqp_buffered_bytes", 0)
        check(held > 0, f"reports kept while the broker is down ({held} bytes)")
        broker.start()
        wait_for(lambda: p.metrics().get("mysqlprobe_sink_amqp_connected") == 1, 30,
                 "the sink to reconnect")
        wait_for(lambda: p.metrics().get("mysqlprobe_sink_amqp_in_flight") == 0 and
                 p.metrics().get("mysqlprobe_sink_amqp_buffered_bytes") == 0, 20,
                 "everything kept to be confirmed")
        time.sleep(1.5)
        check(p.stop() == 0, "the node stops cleanly")
        m_log = p.log()
    got = amqp_drain(broker, "crash")
    seqs = {}
    for _, props, body in got:
        report = json.loads(body)
        ident = f"amqp-node/{report['started_ns']}/{report['seq']}"
        check(props.message_id == ident, f"message id {props.message_id} names its report") \
            if props.message_id != ident else None
        seqs.setdefault(report["seq"], []).append(props.message_id)
    last = max(seqs) if seqs else 0
    missing = sorted(set(range(1, last + 1)) - set(seqs))
    dups = sum(len(v) - 1 for v in seqs.values())
    check(last >= 6 and not missing,
          f"every report 1..{last} arrived across the crash (missing: {missing}, duplicates: {dups})")
    check("connection lost" in m_log and "connected to 127.0.0.1" in m_log,
          "the log says the connection was lost and made again")


def records_across_crashes(broker):
    """source-counter -> sink-amqp: the broker killed with -9 mid-stream, then the probe killed
    with -9 and restarted: it goes on from its checkpoint (the delivered mark), so every record
    is in the queue at least once and a record sent twice has one message id."""
    total = 20000
    bind_queue(broker, "mp.records", "records", key="example.#")
    with tempfile.TemporaryDirectory() as d:
        mark = os.path.join(d, "counter.mark")
        yaml_text = (
            f"serverport: 0\nserveraddress: 127.0.0.1\ninterval: 3600\nnodename: amqp-node\n"
            f"plugins:\n  directories: [{test_plugins}]\n  cluster: none\n"
            f"  sources:\n    - plugin: source-counter\n      config: {{count: {total}, "
            f"rate: 4000, payload_bytes: 500, checkpoint: {mark}, exit_when_delivered: true}}\n"
            f"  sinks:\n    - plugin: sink-amqp\n      records: [example.*]\n"
            f"      reports: false\n      config:\n"
            f"        url: amqp://127.0.0.1:{broker.port}/%2F\n        exchange: mp.records\n"
            f"        reconnect_max_ms: 300\n        max_buffer_mb: 2\n"
            f"        unroutable: retry\n")

        def read_mark():
            try:
                with open(mark) as f:
                    return int(f.read().strip() or 0)
            except (OSError, ValueError):
                return 0
        with Probe(binary, yaml_text) as p:
            wait_for(lambda: read_mark() >= 2000, 30, "2,000 records delivered")
            broker.kill9()
            print(f"broker killed with -9 at mark {read_mark()}")
            time.sleep(1.5)
            held = p.metrics().get("mysqlprobe_host_records_buffered_bytes", 0)
            check(held > 0, f"records held by the host while the broker is down ({held} bytes)")
            broker.start()
            # a broker recovering from a crash under load may lose the binding (its records
            # then come back unroutable and are held, counted in returned_total): bound again
            amqp_rebind(broker, "mp.records", "records", "example.#")
            wait_for(lambda: read_mark() >= 9000, 60, "9,000 records delivered")
            m = p.metrics()
            p.proc.kill()  # the probe crashes
            p.proc.wait()
            crashed_at = read_mark()
            print(f"probe killed with -9 at mark {crashed_at}; sink: " + ", ".join(
                f"{k.split('sink_amqp_')[1]}={v}" for k, v in m.items() if "sink_amqp_" in k))
            print("\n".join(line for line in p.log().splitlines() if "amqp" in line)[-3000:])
            check(m.get("mysqlprobe_sink_amqp_resent_total", 0) +
                  m.get("mysqlprobe_sink_amqp_reconnects_total", 0) > 0,
                  f"the sink reconnected (reconnects {m.get('mysqlprobe_sink_amqp_reconnects_total')},"
                  f" resent {m.get('mysqlprobe_sink_amqp_resent_total')})")
        with Probe(binary, yaml_text) as p:
            code = p.proc.wait(120)
            check(code == 0, f"the restarted probe went on from {crashed_at} and stopped once all "
                  f"were delivered (exit {code})")
            check(f"all {total} records delivered" in p.log(), "it says so")
        check(read_mark() == total, f"the checkpoint holds {read_mark()}")
    got = amqp_drain(broker, "records")
    seen = {}
    bad_ids = 0
    for method, props, body in got:
        n = json.loads(body)["n"]
        bad_ids += props.message_id != f"amqp-node/sources[0]/{n}"
        seen[n] = seen.get(n, 0) + 1
    missing = [n for n in range(1, total + 1) if n not in seen]
    dups = sum(c - 1 for c in seen.values())
    check(not missing, f"every record 1..{total} is in the queue (missing {len(missing)}: "
          f"{missing[:5]}); {dups} sent twice across the two crashes")
    check(bad_ids == 0, "each message id is node/producer/number, the same when sent again")
    check(all(m.routing_key == "example.counter" for m, _, _ in got[:100]),
          "routing key from record_routing_key ({stream})")


def unroutable_held(broker):
    """unroutable: retry. Records no queue takes come back from the broker and are held: nothing
    is delivered, the source's mark stays at 0, while they are published again; once a queue is
    bound for them every record arrives, once, and the source exits. (With the default, count,
    they would be confirmed and lost to consumers.)"""
    total = 300
    amqp_bind(broker, "mp.held", "held", key="nothing.#")  # no queue for example.counter
    with tempfile.TemporaryDirectory() as d:
        mark = os.path.join(d, "counter.mark")
        yaml_text = (
            f"serverport: 0\nserveraddress: 127.0.0.1\ninterval: 3600\nnodename: amqp-node\n"
            f"plugins:\n  directories: [{test_plugins}]\n  cluster: none\n"
            f"  sources:\n    - plugin: source-counter\n      config: {{count: {total}, "
            f"rate: 3000, checkpoint: {mark}, exit_when_delivered: true}}\n"
            f"  sinks:\n    - plugin: sink-amqp\n      records: [example.*]\n"
            f"      reports: false\n      config:\n"
            f"        url: amqp://127.0.0.1:{broker.port}/%2F\n        exchange: mp.held\n"
            f"        reconnect_max_ms: 300\n        unroutable: retry\n")
        with Probe(binary, yaml_text) as p:
            wait_for(lambda: p.metrics().get("mysqlprobe_sink_amqp_held", 0) > 0, 30,
                     "records held")
            time.sleep(1.5)
            m = p.metrics()
            delivered = open(mark).read().strip() if os.path.exists(mark) else ""
            check(m.get("mysqlprobe_sink_amqp_returned_total", 0) > total and
                  m.get("mysqlprobe_sink_amqp_confirmed_total", 0) == 0 and
                  delivered in ("", "0"),
                  f"no queue bound: returned and published again "
                  f"({m.get('mysqlprobe_sink_amqp_returned_total')} returns), none delivered")
            check("published again until a queue takes them" in p.log(), "the log says so")
            amqp_rebind(broker, "mp.held", "held", "example.#")
            code = p.proc.wait(60)
            check(code == 0, f"bound: every record delivered, the source exits (exit {code})")
    got = [json.loads(b)["n"] for _, _, b in amqp_drain(broker, "held")]
    check(sorted(got) == list(range(1, total + 1)),
          f"every record 1..{total} in the queue once ({len(got)} messages)")


def tls(broker):
    """amqps://: a report published over TLS, the broker's certificate verified against the
    test CA; against another CA, the handshake is refused with one log line."""
    bind_queue(broker, "mp.reports", "tls")
    tls_url = f"amqps://localhost:{broker.tls_port}/%2F"
    with tempfile.TemporaryDirectory() as d:
        cfg = os.path.join(d, "tls.yaml")
        with open(cfg, "w") as f:
            f.write(sink_yaml(broker, f"        tls_ca_file: {broker.certs}/ca.crt\n")
                    .replace(f"amqp://127.0.0.1:{broker.port}/%2F", tls_url))
        run = subprocess.run([binary, "-c", cfg, "-r", PCAPS[0]], capture_output=True, text=True)
        check(run.returncode == 0, "a report over TLS: the probe ran" +
              ("" if run.returncode == 0 else f" ({run.stderr[-300:]})"))
        got = amqp_drain(broker, "tls")
        check(len(got) == 1 and json.loads(got[0][2]) == json.loads(run.stdout),
              f"the report arrived over TLS ({len(got)} message)")
    wrong = (sink_yaml(broker, f"        tls_ca_file: {broker.certs}/other.crt\n")
             .replace(f"amqp://127.0.0.1:{broker.port}/%2F", tls_url))
    with Probe(binary, wrong) as p:
        want = "TLS handshake failed"
        wait_for(lambda: want in p.log(), 15, f"'{want}' in the log")
        time.sleep(1.2)
        lines = [ln for ln in p.log().splitlines() if want in ln]
        check(len(lines) == 1, f"a broker certificate the CA did not sign: one line, {lines[:1]}")
        check(p.metrics().get("mysqlprobe_sink_amqp_connected", 1) == 0, "not connected")
        check(p.stop() == 0, "the node stops cleanly")
    with tempfile.TemporaryDirectory() as d:
        cfg = os.path.join(d, "bad.yaml")
        with open(cfg, "w") as f:
            f.write(sink_yaml(broker, f"        tls_ca_file: {broker.certs}/ca.crt\n"))
        run = subprocess.run([binary, "--check", "-c", cfg], capture_output=True, text=True)
        check(run.returncode == 2 and "TLS settings need an amqps:// url" in run.stderr,
              f"TLS files with amqp:// are refused by --check ({run.stderr.strip()[-120:]})")


def main():
    with RabbitMQ(tls=True) as broker:
        offline_reports_arrive(broker)
        tls(broker)
        refusals(broker)
        broker_crash(broker)
        records_across_crashes(broker)
        unroutable_held(broker)
    if failures:
        print(f"{len(failures)} failures")
        sys.exit(1)
    print("sink-amqp: OK")


main()

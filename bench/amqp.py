#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Records per second through sink-amqp with publisher confirms, against the broker's own ceiling
measured the same way in the same run. One local rabbitmq-server (started here, as the tests
start it); N persistent messages of SIZE bytes each, all confirmed:
  - minimal: bench/amqp_publish.c, a bare rabbitmq-c publisher with the same confirm window
    (1,000 unconfirmed, sink-amqp's max_in_flight default), publishing the same messages
    (properties, mandatory flag, routing key) as sink-amqp does for the records: the ceiling
    the ratio is taken against;
  - bare: the same publisher with the smallest message (delivery mode and content type only,
    not mandatory): what the broker's own work per message property costs, for reference;
  - mysqlprobe: the example source-counter emitting N records of SIZE bytes into the host, the
    host's record bus, sink-amqp publishing and confirming them, the delivered mark back to the
    source, which stops the node once all are confirmed. Timed from process start to exit, less
    the start and stop of the same node with one record (measured in the same run);
  - pika: python3-pika with a synchronous confirm per message (how a Python consumer of the old
    tools would publish), on fewer messages.
Each is run RUNS times, interleaved; the median is printed with the ratio to the minimal one.
Usage: bench/amqp.py [N] [SIZE] [RUNS]   (default 200000 500 3)"""
import os
import statistics
import subprocess
import sys
import tempfile
import time

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(root, "tests", "live"))
from harness import RabbitMQ  # noqa: E402
import pika  # noqa: E402

N = int(sys.argv[1]) if len(sys.argv) > 1 else 200000
SIZE = int(sys.argv[2]) if len(sys.argv) > 2 else 500
RUNS = int(sys.argv[3]) if len(sys.argv) > 3 else 3
build = os.path.join(root, "build", "release")
binary = os.path.join(build, "bin", "mysqlprobe")
plugins = os.path.join(build, "test-plugins")
work = tempfile.mkdtemp(prefix="mp-bench-amqp-")
publisher = os.path.join(work, "amqp_publish")
subprocess.run(["gcc", "-O2", os.path.join(root, "bench", "amqp_publish.c"), "-lrabbitmq", "-o",
                publisher], check=True)


def reset(broker):
    c = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", broker.port))
    ch = c.channel()
    ch.exchange_declare("bench", "topic", durable=True)
    ch.queue_declare("bench", durable=True)
    ch.queue_bind("bench", "bench", "#")
    ch.queue_purge("bench")
    c.close()


def queued(broker):
    c = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", broker.port))
    n = c.channel().queue_declare("bench", durable=True, passive=True).method.message_count
    c.close()
    return n


def minimal(broker, n, bare=False):
    out = subprocess.run([publisher, "127.0.0.1", str(broker.port), "bench", "example.counter",
                          str(n), str(SIZE), "1000"] + (["bare"] if bare else []), check=True,
                         capture_output=True, text=True).stdout
    return float(out)


def probe(broker, n):
    cfg = os.path.join(work, "probe.yaml")
    with open(cfg, "w") as f:
        f.write(f"serverport: 0\nserveraddress: 127.0.0.1\ninterval: 3600\nloglevel: warn\n"
                f"plugins:\n  directories: [{plugins}]\n  cluster: none\n"
                f"  sources: [{{plugin: source-counter, config: {{count: {n}, payload_bytes: {SIZE},"
                f" exit_when_delivered: true}}}}]\n"
                f"  sinks:\n    - plugin: sink-amqp\n      records: [example.*]\n"
                f"      reports: false\n      config: {{url: 'amqp://127.0.0.1:{broker.port}/%2F',"
                f" exchange: bench, declare: passive}}\n")
    rusage = os.path.join(work, "rusage")
    t0 = time.monotonic()
    subprocess.run([sys.executable, os.path.join(root, "bench", "rusage.py"), rusage, binary,
                    "-c", cfg], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.monotonic() - t0
    with open(rusage) as f:
        _, cpu, rss = f.read().split()
    return wall, float(cpu), int(rss) // 1024


def pika_sync(broker, n):
    c = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", broker.port))
    ch = c.channel()
    ch.confirm_delivery()
    body = b"x" * SIZE
    props = pika.BasicProperties(delivery_mode=2, content_type="application/json")
    t0 = time.monotonic()
    for _ in range(n):
        ch.basic_publish("bench", "bench.x", body, props)
    dt = time.monotonic() - t0
    c.close()
    return dt


with RabbitMQ() as broker:
    reset(broker)
    minimal(broker, 20000)  # warm the broker up
    reset(broker)
    rates = {"minimal": [], "bare": [], "mysqlprobe": [], "pika": []}
    probe_cpu, probe_rss, overheads = [], [], []
    pika_n = min(N, 5000)
    for run in range(RUNS):
        dt = minimal(broker, N)
        assert queued(broker) == N
        rates["minimal"].append(N / dt)
        reset(broker)
        dt = minimal(broker, N, bare=True)
        assert queued(broker) == N
        rates["bare"].append(N / dt)
        reset(broker)
        base, _, _ = probe(broker, 1)
        reset(broker)
        wall, cpu, rss = probe(broker, N)
        got = queued(broker)
        assert got == N, f"{got} of {N} records in the queue"
        rates["mysqlprobe"].append(N / max(wall - base, 1e-3))
        probe_cpu.append(cpu)
        probe_rss.append(rss)
        overheads.append(base)
        reset(broker)
        dt = pika_sync(broker, pika_n)
        rates["pika"].append(pika_n / dt)
        reset(broker)
        print(f"run {run + 1}: minimal {rates['minimal'][-1]:,.0f}/s, bare "
              f"{rates['bare'][-1]:,.0f}/s, mysqlprobe "
              f"{rates['mysqlprobe'][-1]:,.0f}/s (wall {wall:.2f} s less {base:.2f} s start/stop, "
              f"CPU {cpu:.2f} s, {rss} MB), pika {rates['pika'][-1]:,.0f}/s", flush=True)
    med = {k: statistics.median(v) for k, v in rates.items()}
    print(f"\n{N:,} persistent messages of {SIZE} bytes, publisher confirms, one local broker "
          f"(median of {RUNS}):")
    print(f"{'publisher':<34}{'msg/s':>12}{'vs minimal':>12}")
    print(f"{'minimal rabbitmq-c, same messages':<34}{med['minimal']:>12,.0f}{'1.00x':>12}")
    print(f"{'minimal, bare messages':<34}{med['bare']:>12,.0f}"
          f"{med['bare'] / med['minimal']:>11.2f}x")
    print(f"{'mysqlprobe source -> sink-amqp':<34}{med['mysqlprobe']:>12,.0f}"
          f"{med['mysqlprobe'] / med['minimal']:>11.2f}x")
    print(f"{'pika, confirm per message':<34}{med['pika']:>12,.0f}"
          f"{med['pika'] / med['minimal']:>11.2f}x")
    print(f"mysqlprobe: CPU {statistics.median(probe_cpu):.2f} s for {N:,} records "
          f"({statistics.median(probe_cpu) / N * 1e6:.1f} us each, broker not included), "
          f"peak RSS {statistics.median(probe_rss)} MB, start+stop {statistics.median(overheads):.2f} s")

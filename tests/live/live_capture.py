#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Live: a real mariadbd on loopback, mysqlprobe capturing on `lo`, a real client (PyMySQL)
whose socket bytes are counted. The probe must drop nothing and deliver to the decoder exactly
the bytes the client sent and received. Usage: live_capture.py MYSQLPROBE"""
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from harness import MariaDB, Probe, skip, wait_for  # noqa: E402

if os.geteuid() != 0:
    skip("live capture on lo needs root (CAP_NET_RAW)")
try:
    import pymysql
    import pymysql.connections
except ImportError:
    skip("python3-pymysql is not installed (scripts/deps.sh installs it)")

binary = sys.argv[1]
counted = {"sent": 0, "received": 0, "connections": 0}
_write = pymysql.connections.Connection._write_bytes
_read = pymysql.connections.Connection._read_bytes


def write_bytes(self, data):
    counted["sent"] += len(data)
    return _write(self, data)


def read_bytes(self, n):
    data = _read(self, n)
    counted["received"] += len(data)
    return data


pymysql.connections.Connection._write_bytes = write_bytes
pymysql.connections.Connection._read_bytes = read_bytes


def workload(port):
    def connect(db=None):
        counted["connections"] += 1
        return pymysql.connect(host="127.0.0.1", port=port, user="root", database=db,
                               autocommit=True, client_flag=pymysql.constants.CLIENT.MULTI_STATEMENTS)
    c = connect()
    cur = c.cursor()
    cur.execute("CREATE DATABASE probe_live")
    cur.execute("USE probe_live")
    cur.execute("CREATE TABLE t (id INT PRIMARY KEY AUTO_INCREMENT, v VARCHAR(64), b LONGBLOB)")
    for i in range(200):
        cur.execute("INSERT INTO t (v) VALUES (%s)", (f"row {i}",))
    cur.execute("INSERT INTO t (v, b) VALUES ('big', %s)", (os.urandom(3 * 1024 * 1024),))
    cur.execute("SELECT id, v FROM t")
    assert len(cur.fetchall()) == 201
    cur.execute("SELECT b FROM t WHERE v = 'big'")
    assert len(cur.fetchone()[0]) == 3 * 1024 * 1024
    try:
        cur.execute("SELEC 1")
    except pymysql.err.ProgrammingError:
        pass
    cur.execute("SELECT 1; SELECT 2")
    while cur.nextset():  # read every result: unread bytes would end in a RST, not a FIN
        pass
    c.close()
    for _ in range(5):
        c = connect("probe_live")
        c.cursor().execute("SELECT COUNT(*) FROM t")
        c.close()


with MariaDB() as db:
    yaml = f"""serverport: 0
serveraddress: 127.0.0.1
interval: 1
probe:
  device: lo
  port: {db.port}
  workers: 2
plugins:
  cluster: none
  sinks: []
"""
    with Probe(binary, yaml) as probe:
        workload(db.port)
        total = counted["sent"] + counted["received"]
        print(f"client: {counted['connections']} connections, {counted['sent']} bytes sent, "
              f"{counted['received']} received")

        def caught_up():
            # the decoder's own count follows the stream layer's (its worker takes the bytes
            # from a queue): wait for both
            m = probe.metrics()
            done = m.get("mysqlprobe_stream_connections_closed_fin_total", 0)
            return m if done >= counted["connections"] and \
                m.get("mysqlprobe_stream_delivered_bytes_total", 0) >= total and \
                m.get("mysqlprobe_decoder_mysql_bytes_total", 0) >= total else None
        try:
            m = wait_for(caught_up, 20, "the probe to see every byte and every FIN")
        except AssertionError:
            m = probe.metrics()
            print({k: v for k, v in m.items() if "stream" in k or "capture" in k})
            raise
        delivered = m["mysqlprobe_stream_delivered_bytes_total"]
        print(f"probe: {delivered} bytes delivered to the decoder, "
              f"{m['mysqlprobe_stream_connections_opened_total']} connections, "
              f"kernel drops {m['mysqlprobe_capture_pcap_kernel_dropped']}, "
              f"queue drops {m['mysqlprobe_stream_queue_dropped_total']}, "
              f"gap bytes {m['mysqlprobe_stream_gap_bytes_total']}")
        failures = []
        if delivered != total:
            failures.append(f"delivered {delivered} != client bytes {total}")
        if m["mysqlprobe_decoder_mysql_bytes_total"] != total:
            failures.append("the decoder did not receive every byte")
        for k in ("mysqlprobe_capture_pcap_kernel_dropped", "mysqlprobe_stream_queue_dropped_total",
                  "mysqlprobe_stream_gap_bytes_total", "mysqlprobe_stream_connections_midstream_total"):
            if m[k] != 0:
                failures.append(f"{k} = {m[k]}")
        if m["mysqlprobe_stream_connections_opened_total"] != counted["connections"]:
            failures.append("connection count differs")
        rc = probe.stop()
        if rc != 0:
            failures.append(f"probe exited with {rc}")
        if failures:
            print("FAIL: " + "; ".join(failures))
            print(probe.log()[-3000:])
            sys.exit(1)
print("live capture: OK")

#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""The whole loop, live, on loopback: servers A and B start from the same sysbench data; one
node captures A on `lo` with the collector (`decoder-mysql`, `inbound: true`) and publishes the
records to a real RabbitMQ (`sink-amqp`); a second node consumes them (`source-amqp`) and replays
them on B (`replay-mysql`, as captured). sysbench runs on A with the text protocol, then with
prepared statements. B's Com_* counters must move exactly as A's did, the divergence report must
be empty, and CHECKSUM TABLE must be equal on A and B at the end.

usage: replay_live_test.py MYSQLPROBE SOURCE_DIR"""
import json
import os
import shutil
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(sys.argv[2], "tests", "live"))
from harness import MariaDB, Probe, RabbitMQ, amqp_bind, check, skip, wait_for  # noqa: E402

if os.geteuid() != 0:
    skip("live capture on lo needs root (CAP_NET_RAW)")
try:
    import pymysql
except ImportError:
    skip("python3-pymysql is not installed (scripts/deps.sh installs it)")
for tool in ("sysbench", "mariadb-dump", "mariadb"):
    if not shutil.which(tool):
        skip(f"{tool} is not installed (scripts/deps.sh installs it)")

BINARY = sys.argv[1]
COUNTED = ["Com_begin", "Com_commit", "Com_delete", "Com_insert", "Com_select", "Com_update",
           "Com_stmt_execute", "Com_stmt_prepare", "Com_stmt_close"]
TABLES = 2
ROWS = 50000



def query(db, sql):
    c = pymysql.connect(host="127.0.0.1", port=db.port, user="root", database="sbtest")
    try:
        with c.cursor() as cur:
            cur.execute(sql)
            return cur.fetchall()
    finally:
        c.close()


def status(db):
    return {k: int(v) for k, v in query(db, "SHOW GLOBAL STATUS LIKE 'Com\\_%'")}


def sysbench(db, mode, seconds):
    """oltp_read_write on A, rate-limited (the two servers, the broker and two nodes share
    the machine), ids drawn uniformly: two connections writing the same row within the
    scheduler's jitter of each other may be replayed in the other order (see the README), and
    sysbench's default hot set would make that likely."""
    out = subprocess.run(
        ["sysbench", "oltp_read_write", "--db-driver=mysql", "--mysql-host=127.0.0.1",
         f"--mysql-port={db.port}", "--mysql-user=sbtest", "--mysql-db=sbtest",
         f"--tables={TABLES}", f"--table-size={ROWS}", "--threads=2", f"--time={seconds}",
         "--rate=40", f"--db-ps-mode={mode}", "--rand-seed=7", "--rand-type=uniform", "run"],
        check=True, capture_output=True, text=True).stdout
    for line in out.splitlines():
        if "ignored errors:" in line:
            print(f"sysbench {mode}: {line.strip()}")
    return out


def main():
    with RabbitMQ() as broker, MariaDB() as a, MariaDB() as b:
        amqp_bind(broker, "inbound", "replay", "#")
        for db in (a, b):
            query_root = pymysql.connect(host="127.0.0.1", port=db.port, user="root")
            query_root.cursor().execute("CREATE DATABASE sbtest")
            query_root.close()
        subprocess.run(["sysbench", "oltp_read_write", "--db-driver=mysql",
                        "--mysql-host=127.0.0.1", f"--mysql-port={a.port}", "--mysql-user=root",
                        "--mysql-db=sbtest", f"--tables={TABLES}", f"--table-size={ROWS}",
                        "prepare"], check=True, stdout=subprocess.DEVNULL)
        dump = subprocess.run(["mariadb-dump", "-h127.0.0.1", f"-P{a.port}", "-uroot",
                               "sbtest"], check=True, capture_output=True).stdout
        subprocess.run(["mariadb", "-h127.0.0.1", f"-P{b.port}", "-uroot", "sbtest"],
                       input=dump, check=True)
        tables = ", ".join(f"sbtest{i}" for i in range(1, TABLES + 1))
        check(query(a, f"CHECKSUM TABLE {tables}") == query(b, f"CHECKSUM TABLE {tables}"),
              "A and B start equal")

        url = f"amqp://127.0.0.1:{broker.port}/%2F"
        collector = f"""serverport: 0
serveraddress: 127.0.0.1
nodename: collector
probe: {{device: lo, port: {a.port}, workers: 2}}
plugins:
  cluster: none
  decoder: {{plugin: decoder-mysql, config: {{inbound: true, inbound_format: binary,
      inbound_batch: 64}}}}
  sinks:
    - {{plugin: sink-amqp, records: [mysql.inbound], reports: false,
        config: {{url: '{url}', exchange: inbound, record_routing_key: 'inbound.{{key}}'}}}}
"""
        report = os.path.join(a.dir, "divergence.json")
        replayer = f"""serverport: 0
serveraddress: 127.0.0.1
nodename: replayer
plugins:
  cluster: none
  sources:
    - {{plugin: source-amqp, config: {{url: '{url}', queue: replay, declare: passive,
        stream: mysql.inbound}}}}
  sinks:
    - {{plugin: replay-mysql, records: [mysql.inbound], reports: false,
        config: {{host: 127.0.0.1, port: {b.port}, report_file: {report}}}}}
"""
        with Probe(BINARY, replayer) as rnode, Probe(BINARY, collector) as cnode:
            for mode, seconds in (("disable", 5), ("auto", 5)):
                a0, b0 = status(a), status(b)
                sysbench(a, mode, seconds)
                moved_a = {k: status(a)[k] - a0[k] for k in COUNTED}

                def caught_up():
                    now = status(b)
                    return all(now[k] - b0[k] >= moved_a[k] for k in COUNTED)
                try:
                    wait_for(caught_up, 120, f"B to replay the {mode} run")
                except AssertionError:
                    print("collector:", {k: v for k, v in cnode.metrics().items()
                                         if "inbound" in k or "amqp" in k or "drop" in k})
                    print("replayer:", {k: v for k, v in rnode.metrics().items()
                                        if "replay" in k or "amqp" in k})
                    raise
                time.sleep(1)  # nothing more may come
                moved_b = {k: status(b)[k] - b0[k] for k in COUNTED}
                check(moved_b == moved_a, f"{mode}: B's Com_* moved as A's did: {moved_a}")
            m = cnode.metrics()
            check(m.get("mysqlprobe_decoder_mysql_inbound_dropped_total", 0) == 0 and
                  m.get("mysqlprobe_capture_pcap_kernel_dropped", 0) == 0,
                  "the collector dropped nothing")
            rep = json.loads(rnode.get("/replay/report"))
            print(json.dumps({k: v for k, v in rep.items() if k != "divergence"}))
            check(sum(rep["skipped"].values()) == 0, "the replayer skipped nothing")
            check(rep["divergence"]["divergent_commands"] == 0,
                  "the divergence report is empty")
            check(rep["target_errors"] == 0, "no error on B")
            check(rnode.stop() == 0 and cnode.stop() == 0, "both nodes stop cleanly")
        check(query(a, f"CHECKSUM TABLE {tables}") == query(b, f"CHECKSUM TABLE {tables}"),
              "CHECKSUM TABLE is equal on A and B at the end")
        midstream(b, broker, url)
    print("PASS")


def midstream(b, broker, url):
    """Connections open before the capture: sysbench runs on server C (privileges checked,
    so its PROCESSLIST shows each client's address) before two collectors start. One may ask C
    for its sessions (inbound_server, a PROCESS user with a password): their user and schema
    come from PROCESSLIST and the replayer (without a configured user) logs in as them on B;
    the other may not: the sessions stay unknown and their commands are skipped as
    login_unknown, never guessed. Both replay read-only."""
    secret = "Pl-7d2q-not-in-logs"
    with MariaDB(grants=True) as c:
        root = pymysql.connect(unix_socket=c.socket, user="root", autocommit=True)
        cur = root.cursor()
        cur.execute("CREATE DATABASE sbtest")
        cur.execute("CREATE USER sbtest@'%'")
        cur.execute("GRANT ALL ON sbtest.* TO sbtest@'%'")
        cur.execute(f"CREATE USER lister@'%' IDENTIFIED BY '{secret}'")
        cur.execute("GRANT PROCESS ON *.* TO lister@'%'")
        root.close()
        subprocess.run(["sysbench", "oltp_read_only", "--db-driver=mysql",
                        "--mysql-host=127.0.0.1", f"--mysql-port={c.port}", "--mysql-user=sbtest",
                        "--mysql-db=sbtest", "--tables=1", "--table-size=1000", "prepare"],
                       check=True, stdout=subprocess.DEVNULL)
        for name in ("listed", "unlisted"):
            amqp_bind(broker, name, name, "#")

        def collector(name, extra):
            return f"""serverport: 0
serveraddress: 127.0.0.1
nodename: {name}
probe: {{device: lo, port: {c.port}, workers: 1}}
plugins:
  cluster: none
  decoder: {{plugin: decoder-mysql, config: {{inbound: true{extra}}}}}
  sinks:
    - {{plugin: sink-amqp, records: [mysql.inbound], reports: false,
        config: {{url: '{url}', exchange: {name}, record_routing_key: 'inbound.{{key}}'}}}}
"""

        def replayer(name):
            return f"""serverport: 0
serveraddress: 127.0.0.1
plugins:
  cluster: none
  sources:
    - {{plugin: source-amqp, config: {{url: '{url}', queue: {name}, declare: passive,
        stream: mysql.inbound}}}}
  sinks:
    - {{plugin: replay-mysql, records: [mysql.inbound], reports: false,
        config: {{host: 127.0.0.1, port: {b.port}, read_only: true, speed: max}}}}
"""
        load = threading.Thread(target=subprocess.run, args=(
            ["sysbench", "oltp_read_only", "--db-driver=mysql", "--mysql-host=127.0.0.1",
             f"--mysql-port={c.port}", "--mysql-user=sbtest", "--mysql-db=sbtest", "--tables=1",
             "--table-size=1000", "--threads=2", "--time=8", "--rate=40",
             "--db-ps-mode=disable", "run"],),
            kwargs={"check": True, "stdout": subprocess.DEVNULL})
        load.start()
        time.sleep(2)  # sysbench's connections are open before the collectors start
        server = (f", inbound_server: '127.0.0.1:{c.port}', inbound_server_user: lister, "
                  f"inbound_server_password: '{secret}'")
        with Probe(BINARY, collector("listed", server)) as c1, \
                Probe(BINARY, collector("unlisted", "")) as c2, \
                Probe(BINARY, replayer("listed")) as r1, Probe(BINARY, replayer("unlisted")) as r2:
            load.join()
            time.sleep(1)
            reports = []
            for col, r in ((c1, r1), (c2, r2)):
                records = col.metrics()["mysqlprobe_decoder_mysql_inbound_records_total"]
                wait_for(lambda: r.metrics().get("mysqlprobe_host_records_delivered_total", 0)
                         >= records, 60, "the replay of the mid-stream sessions")
                reports.append(json.loads(r.get("/replay/report")))
            check(secret not in c1.log(), "the lister's password is in no log line")
        listed, unlisted = reports
        print("listed:", json.dumps({k: v for k, v in listed.items() if k != "divergence"}))
        print("unlisted:", json.dumps({k: v for k, v in unlisted.items() if k != "divergence"}))
        check(listed["skipped"]["login_unknown"] == 0 and listed["replayed"] > 0 and
              listed["connections_opened"] >= 2,
              "with inbound_server, the 2 sessions open before the capture replay as their "
              "PROCESSLIST user and schema")
        check(unlisted["replayed"] == 0 and unlisted["skipped"]["login_unknown"] > 0 and
              unlisted["connections_opened"] == 0,
              "without it, they stay unknown: skipped as login_unknown, never guessed")

if __name__ == "__main__":
    main()

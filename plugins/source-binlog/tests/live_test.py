#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""source-binlog live: mysqlprobe replicates from a real MariaDB (GTID, CRC32 checksums) and
sink-amqp publishes the row changes to a real RabbitMQ with publisher confirms. In the middle
of the write load (workload.py, then sysbench oltp_write_only) the node is killed with -9 and
started again (it resumes from its checkpoint, now with a de-duplication window), and the
broker is restarted. A consumer takes
every message off the queue, drops repeated message ids (each repeat must be the same change)
and applies the rest to an empty copy: CHECKSUM TABLE of every table equals the source's, so
nothing was lost. Also: the refusals at start (binlog off, STATEMENT format, a purged position)
each in one line, and heartbeat messages while idle.

usage: live_test.py MYSQLPROBE SOURCE_DIR TEST_PLUGINS_DIR"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(sys.argv[2], "tests", "live"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (MariaDB, Probe, RabbitMQ, amqp_bind, amqp_drain, check,  # noqa: E402
                     skip, wait_for)
from workload import run_sysbench, run_workload  # noqa: E402

try:
    import pika  # noqa: F401
    import pymysql
except ImportError:
    skip("python3-pika or python3-pymysql is not installed (scripts/deps.sh installs them)")

from binlog_test import rebuild  # noqa: E402

SERVER_ARGS = ["--log-bin=mysql-bin", "--binlog-format=ROW", "--binlog-row-metadata=FULL",
               "--server-id=7", "--binlog-checksum=CRC32", "--character-set-server=utf8mb4"]



def node_yaml(db, broker, checkpoint, extra="", exchange="cdc", user="root"):
    return (f"serverport: 0\nserveraddress: 127.0.0.1\ninterval: 3600\nnodename: cdc\n"
            f"plugins:\n  cluster: none\n"
            f"  sources:\n    - plugin: source-binlog\n      config: {{host: 127.0.0.1, "
            f"port: {db.port}, user: {user}, server_id: 99, checkpoint: '{checkpoint}', "
            f"heartbeat_s: 1{extra}}}\n"
            f"  sinks:\n    - plugin: sink-amqp\n      records: [binlog.rows]\n"
            f"      reports: false\n"
            f"      config: {{url: 'amqp://127.0.0.1:{broker.port}/%2F', exchange: {exchange}, "
            f"record_routing_key: 'binlog.{{key}}', unroutable: retry}}\n")


def checkpoint_state(path):
    try:
        text = open(path).read()
    except OSError:
        return None
    m = re.search(r"^gtid_state=(.*)$", text, re.M)
    return m.group(1) if m else None


def wait_checkpoint(cur, cp, timeout=30):
    """Until the checkpoint holds the server's last GTID (every change delivered)."""
    cur.execute("SELECT @@GLOBAL.gtid_binlog_pos")
    target = cur.fetchone()[0]
    wait_for(lambda: checkpoint_state(cp) == target, timeout,
             f"the checkpoint to reach the server's {target}")


def refusals(binary, broker, work):
    """A server that cannot serve a replica: the node does not start, one line says why."""
    cases = [
        ("--skip-log-bin", "writes no binary log"),
        ("--binlog-format=STATEMENT", "binlog_format is STATEMENT"),
    ]
    for arg, want in cases:
        args = [a for a in SERVER_ARGS if not a.startswith("--log-bin") or arg != "--skip-log-bin"]
        with MariaDB(args + [arg]) as db:
            cfg = os.path.join(work, "refuse.yaml")
            with open(cfg, "w") as f:
                f.write(node_yaml(db, broker, os.path.join(work, "none.cp")))
            p = subprocess.run([binary, "-c", cfg], capture_output=True, text=True, timeout=60)
            check(p.returncode != 0 and want in p.stderr,
                  f"refused at start ({arg}): {[l for l in p.stderr.splitlines() if want in l][:1]}")
    # a checkpoint the server no longer has (purged): refused, with what to do
    with MariaDB(SERVER_ARGS) as db:
        conn = pymysql.connect(host="127.0.0.1", port=db.port, user="root", autocommit=True)
        cur = conn.cursor()
        cur.execute("CREATE DATABASE gone")
        cur.execute("CREATE TABLE gone.t (a INT)")
        cur.execute("INSERT INTO gone.t VALUES (1)")
        cur.execute("FLUSH BINARY LOGS")

        def purged():  # a binlog goes once InnoDB's binlog checkpoint has passed it
            cur.execute("SHOW MASTER STATUS")
            cur.execute(f"PURGE BINARY LOGS TO '{cur.fetchone()[0]}'")
            cur.execute("SHOW BINARY LOGS")
            return len(cur.fetchall()) == 1
        wait_for(purged, 30, "the first binlog to be purged")
        conn.close()
        cp = os.path.join(work, "purged.cp")
        with open(cp, "w") as f:
            f.write("gtid_state=0-7-1\nfile=\nposition=0\n")
        cfg = os.path.join(work, "purged.yaml")
        with open(cfg, "w") as f:
            f.write(node_yaml(db, broker, cp))
        p = subprocess.run([binary, "-c", cfg], capture_output=True, text=True, timeout=60)
        check(p.returncode != 0 and "no longer on the server" in p.stderr,
              "a checkpoint past what the server has is refused at start")


def grants_and_password(binary, broker, work):
    """Privileges checked: a user without REPLICATION SLAVE and a wrong password are refused at
    start in one line; with the grants and the password (mysql_native_password) the replica
    streams; the password is in no log line."""
    secret = "Pw-9f3k-not-in-logs"
    with MariaDB(SERVER_ARGS, grants=True) as db:
        conn = pymysql.connect(unix_socket=db.socket, user="root", autocommit=True)
        cur = conn.cursor()
        cur.execute(f"CREATE USER cdc IDENTIFIED BY '{secret}'")
        cur.execute("GRANT SELECT ON *.* TO cdc")
        cur.execute("CREATE USER nopass IDENTIFIED BY 'other'")
        amqp_bind(broker, "cdc3", "rows3", "binlog.#")

        def run(user, password):
            cfg = os.path.join(work, f"grants-{user}.yaml")
            with open(cfg, "w") as f:
                f.write(node_yaml(db, broker, os.path.join(work, f"{user}.cp"),
                                  f", password: '{password}', heartbeat_messages: false", "cdc3",
                                  user))
            return subprocess.run([binary, "-c", cfg], capture_output=True, text=True, timeout=60)
        p = run("cdc", secret)
        check(p.returncode != 0 and "REPLICATION SLAVE" in p.stderr and secret not in p.stderr,
              "a user without REPLICATION SLAVE is refused at start: " +
              [l for l in p.stderr.splitlines() if "start failed" in l][0][-160:])
        p = run("nopass", secret)
        check(p.returncode != 0 and "1045" in p.stderr and secret not in p.stderr,
              "a wrong password is refused at start: " +
              [l for l in p.stderr.splitlines() if "start failed" in l][0][-120:])
        cur.execute("GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO cdc")
        cp = os.path.join(work, "granted.cp")
        with Probe(binary, node_yaml(db, broker, cp, f", password: '{secret}', "
                                     "heartbeat_messages: false", "cdc3", "cdc")) as node:
            cur.execute("CREATE DATABASE g")
            cur.execute("CREATE TABLE g.t (id INT PRIMARY KEY)")
            cur.execute("INSERT INTO g.t VALUES (7)")
            wait_checkpoint(cur, cp)
            log = node.log()
            check(node.stop() == 0, "stopped")
        msgs = [json.loads(b) for _, _, b in amqp_drain(broker, "rows3")]
        check([m.get("values") for m in msgs] == [{"id": 7}],
              "with the grants and its password (mysql_native_password), the change arrives")
        check(secret not in log, "the password is in no log line")


def without_names(binary, broker, work):
    """binlog_row_metadata left at MariaDB's default (no column names, no signedness): names,
    keys, unsigned, binary and ENUM names come from information_schema."""
    with MariaDB(["--log-bin=mysql-bin", "--binlog-format=ROW", "--server-id=8"]) as db:
        amqp_bind(broker, "cdc2", "rows2", "binlog.#")
        conn = pymysql.connect(host="127.0.0.1", port=db.port, user="root", autocommit=True)
        cur = conn.cursor()
        cp = os.path.join(work, "names.cp")
        with Probe(binary, node_yaml(db, broker, cp, ", heartbeat_messages: false",
                                     "cdc2")) as p:
            cur.execute("CREATE DATABASE s2")
            cur.execute("CREATE TABLE s2.t (id INT UNSIGNED PRIMARY KEY, name VARCHAR(10), "
                        "b VARBINARY(4), e ENUM('x','y'), n TINYINT UNSIGNED)")
            cur.execute("INSERT INTO s2.t VALUES (4294967295, 'max', 0xff00, 'y', 200)")
            cur.execute("UPDATE s2.t SET name='changed' WHERE id=4294967295")
            cur.execute("DELETE FROM s2.t")
            wait_checkpoint(cur, cp)
            check(p.stop() == 0, "stopped")
        msgs = [json.loads(b) for _, _, b in amqp_drain(broker, "rows2")]
        check([m["type"] for m in msgs] == ["row_insert", "row_update", "row_delete"],
              "three changes")
        ins, upd, dele = msgs
        check(ins["values"] == {"id": 4294967295, "name": "max", "b": "/wA=", "e": "y", "n": 200}
              and ins["keys"] == {"id": 4294967295},
              f"without binlog metadata, names, key, unsigned, binary and ENUM from "
              f"information_schema: {ins['values']}")
        check(upd["keys"] == {"id": 4294967295} and upd["after_values"] == {"name": "changed"},
              "the update names its key and the changed column")
        check(dele["keys"] == {"id": 4294967295}, "the delete names its key")


def crash_and_restart(binary, broker, work, extra, exchange, queue):
    """The write load with a kill -9 of the node and a broker restart in the middle; the copy
    rebuilt from the messages (repeated ids dropped) must equal the source."""
    cp = os.path.join(work, f"{queue}.checkpoint")
    with MariaDB(SERVER_ARGS) as db:
        amqp_bind(broker, exchange, queue, "binlog.#")
        conn = pymysql.connect(host="127.0.0.1", port=db.port, user="root", autocommit=True,
                               charset="utf8mb4")
        cur = conn.cursor()
        yaml_text = node_yaml(db, broker, cp, extra, exchange)

        def compress(c):
            c.execute("SET GLOBAL log_bin_compress=ON")
            c.execute("SET GLOBAL log_bin_compress_min_len=10")
        with Probe(binary, yaml_text) as p:
            run_workload(cur, compress)
            sb = threading.Thread(target=run_sysbench, args=(db.port, 14, 4, 4))
            sb.start()
            time.sleep(5)
            before = checkpoint_state(cp)
            p.proc.kill()  # a crash in the middle of the write load
            p.proc.wait()
            print(f"node killed with -9 at checkpoint {before}")
            check(before is not None, "a checkpoint was written before the crash")
        with Probe(binary, yaml_text) as p:
            check("resuming from the checkpoint" in p.log(), "the new node resumes from "
                  "the checkpoint")
            time.sleep(2)
            broker.stop()  # the broker goes away while changes keep coming
            time.sleep(1)
            broker.start()
            sb.join()
            cur.execute("INSERT INTO src.nokey VALUES (42, 'after all', NULL)")
            t0 = time.time()
            wait_checkpoint(cur, cp, 120)
            t1 = time.time()
            time.sleep(2.5)  # idle: the server's heartbeats become heartbeat messages
            m = p.metrics()
            check(m.get("mysqlprobe_source_binlog_connected") == 1, "streaming")
            check(m.get("mysqlprobe_source_binlog_lag_seconds", 99) <= 2,
                  f"lag {m.get('mysqlprobe_source_binlog_lag_seconds')} s")
            print(f"checkpoint at the server's position {t1 - t0:.1f} s after the "
                  "last write; metrics: " + ", ".join(
                f"{k.split('source_binlog_')[1]}={v}" for k, v in m.items()
                if "source_binlog" in k))
            check(p.stop() == 0, "the node stops cleanly")
        got = amqp_drain(broker, queue)
        print(f"{len(got)} messages in the queue")
        seen, dups, applied, heartbeats = {}, 0, [], 0
        for method, props, body in got:
            msg = json.loads(body)
            if msg["type"] == "heartbeat":
                heartbeats += 1
                continue
            mid = props.message_id
            strip = {k: v for k, v in msg.items() if k != "timestamp"}
            if mid in seen:
                dups += 1
                assert seen[mid] == strip, f"message {mid} repeated with other content"
                continue
            seen[mid] = strip
            applied.append(msg)
        check(heartbeats > 0, f"{heartbeats} heartbeat messages while idle")
        print(f"{dups} repeated messages (same id, same change) dropped by the consumer")
        rebuild(cur, applied)


def main():
    binary, _, _ = sys.argv[1:4]
    work = tempfile.mkdtemp(prefix="mp-binlog-live-")
    with RabbitMQ() as broker:
        refusals(binary, broker, work)
        grants_and_password(binary, broker, work)
        without_names(binary, broker, work)
        if os.environ.get("MP_TEST_SHORT"):
            # the sanitizer steps of scripts/test.sh: the crash once, with the window (the same
            # reader, checkpoint and sink paths, plus the window's)
            print("MP_TEST_SHORT: the crash without the window runs in the ci step only")
        else:
            crash_and_restart(binary, broker, work, "", "cdc", "rows")
        # again with the de-duplication window (both nodes): the replay after the crash must
        # merge the same parts into the same messages with the same ids
        print("with the de-duplication window (dedupe_s: 1):")
        crash_and_restart(binary, broker, work, ", dedupe_s: 1", "cdcw", "rowsw")
    shutil.rmtree(work)  # kept when a check failed above (configurations, checkpoints)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""monitor-mysql and proxy-mysql, live: three real MariaDB servers with GTID replication
(semi-synchronous), started here on loopback ports, a node running the monitor and the proxy,
and a real redis-server for the coordination of two monitors.

1. register master, standby and slave, activate: states OK; sysbench writes through the proxy's
   master port and reads through its slave port (round robin over the replicas);
2. switchover under write load: every acknowledged row on all three servers, CHECKSUM TABLE
   equal, write downtime printed;
3. kill -9 of the master: automatic failover promotes the standby, writes resume through the
   proxy, no acknowledged transaction lost (semi-synchronous replication), time printed;
4. pause/resume, detach/activate, a slave re-pointed by hand is LOST, an unreachable node ERROR,
   refused operations answer 409 with the reason;
5. two monitors coordinated through Redis: one acts; kill -9 of it, the other acts within the
   lease and fails over on its own.

Usage: monitor_test.py <mysqlprobe binary> <source dir>"""
import itertools
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.join(sys.argv[2], "tests", "live"))
from harness import MariaDB, Probe, Redis, check, free_port, skip, wait_for  # noqa: E402

try:
    import pymysql
except ImportError:
    skip("python3-pymysql is not installed")
if shutil.which("sysbench") is None:
    skip("sysbench is not installed")

BINARY = sys.argv[1]
PASSWORDS = {"mon": "mon-secret-8841", "repl": "repl-secret-2207", "app": "app-secret-5310"}



def server_args(server_id):
    return ["--log-bin=mysql-bin", "--binlog-format=ROW", f"--server-id={server_id}",
            "--log-slave-updates=1", "--gtid-strict-mode=1", "--skip-slave-start",
            "--rpl-semi-sync-master-enabled=1", "--rpl-semi-sync-slave-enabled=1",
            "--rpl-semi-sync-master-wait-no-slave=0", "--rpl-semi-sync-master-timeout=5000",
            "--rpl-semi-sync-master-wait-point=AFTER_SYNC"]


def prepare_users(db):
    """The same accounts on every server, written with sql_log_bin off (not replicated)."""
    c = pymysql.connect(unix_socket=db.socket, user="root", autocommit=True)
    cur = c.cursor()
    cur.execute("SET SESSION sql_log_bin=0")
    for user, grant in (("mon", "ALL ON *.* TO {u} WITH GRANT OPTION"),
                        ("repl", "REPLICATION SLAVE ON *.* TO {u}"),
                        ("app", "ALL ON app.* TO {u}")):
        u = f"{user}@'127.0.0.1'"
        cur.execute(f"CREATE USER {u} IDENTIFIED BY '{PASSWORDS[user]}'")
        cur.execute("GRANT " + grant.format(u=u))
    cur.execute(f"GRANT ALL ON sbtest.* TO app@'127.0.0.1'")
    c.close()


def sql(db_or_port, query, user="mon", database=None):
    port = db_or_port if isinstance(db_or_port, int) else db_or_port.port
    c = pymysql.connect(host="127.0.0.1", port=port, user=user, password=PASSWORDS[user],
                        database=database, autocommit=True, connect_timeout=3, read_timeout=60)
    try:
        cur = c.cursor()
        cur.execute(query)
        return cur.fetchall()
    finally:
        c.close()


def node_yaml(dbs, state_file, name="mon1", coordination="none", redis_port=0, lease_ms=1500,
              proxy=None, auto_failover=True, address="127.0.0.1", cluster="none"):
    instances = ", ".join(f"'{n}=127.0.0.1:{db.port}'" for n, db in dbs.items())
    text = (f"serverport: 0\nserveraddress: {address}\ninterval: 3600\nnodename: {name}\n"
            f"plugins:\n  cluster: {cluster}\n"
            f"  sources:\n    - plugin: monitor-mysql\n      config: {{instances: [{instances}], "
            f"user: mon, password: {PASSWORDS['mon']}, repl_user: repl, "
            f"repl_password: {PASSWORDS['repl']}, interval_ms: 200, connect_timeout_ms: 300, "
            f"read_timeout_ms: 3000, max_lag_s: 5, block_users: ['^app$'], "
            f"auto_failover: {'true' if auto_failover else 'false'}, failover_after_ms: 1000, "
            f"state_file: '{state_file}', coordination: {coordination}, "
            f"redis: '127.0.0.1:{redis_port or 6379}', lease_ms: {lease_ms}}}\n")
    if proxy:
        text += (f"  sinks:\n    - plugin: proxy-mysql\n      records: [mysql.topology]\n"
                 f"      reports: false\n      config: {{master_listen: '127.0.0.1:{proxy[0]}', "
                 f"slave_listen: '127.0.0.1:{proxy[1]}'}}\n")
    return text


def op(mon, name, **params):
    req = urllib.request.Request(f"http://127.0.0.1:{mon.http_port}/mysql/{name}",
                                 data=urllib.parse.urlencode(params).encode(), method="POST")
    req.add_header("Content-Type", "application/x-www-form-urlencoded")
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def states(node):
    return {n["name"]: n for n in json.loads(node.get("/mysql/status"))["nodes"]}


def states_with(node, token):
    req = urllib.request.Request(f"http://127.0.0.1:{node.http_port}/mysql/status")
    req.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=10) as r:
        return {n["name"]: n for n in json.loads(r.read())["nodes"]}


def wait_states(node, want, timeout=30):
    def ok():
        s = states(node)
        return all(s[n]["state"] == st for n, st in want.items())
    try:
        wait_for(ok, timeout, f"states {want}")
    except AssertionError:
        print(json.dumps({n: (v["role"], v["state"], v["reason"])
                          for n, v in states(node).items()}))
        raise
    check(True, "states " + ", ".join(f"{n} {st}" for n, st in want.items()))


def events(node, count, timeout=10):
    """The first `count` events of the /servers feed, as (event, data)."""
    s = socket.create_connection(("127.0.0.1", node.http_port), timeout=timeout)
    s.sendall(b"GET /servers HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n")
    data = b""
    out = []
    deadline = time.time() + timeout
    while len(out) < count and time.time() < deadline:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
        head, sep, body = data.partition(b"\r\n\r\n")
        if not sep:
            continue
        out = []
        for block in body.decode().split("\n\n")[:-1]:
            ev = {"event": "message", "data": []}
            for line in block.split("\n"):
                if line.startswith("event: "):
                    ev["event"] = line[7:]
                elif line.startswith("data: "):
                    ev["data"].append(line[6:])
            if ev["data"]:
                out.append((ev["event"], json.loads("\n".join(ev["data"]))))
    s.close()
    return out


def subscribe(port, channel):
    """A real Redis subscriber: what is published on `channel` accumulates in ["data"]."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(f"*2\r\n$9\r\nSUBSCRIBE\r\n${len(channel)}\r\n{channel}\r\n".encode())
    heard = {"sock": sock, "data": ""}

    def read():
        sock.settimeout(None)
        while True:
            try:
                chunk = sock.recv(65536)
            except OSError:
                return
            if not chunk:
                return
            heard["data"] += chunk.decode(errors="replace")
    threading.Thread(target=read, daemon=True).start()
    wait_for(lambda: "subscribe" in heard["data"], 5, "the subscription")
    return heard


def master_port(topology):
    return [c["container_port"] for c in topology["master"]["containers"]]


class Writer(threading.Thread):
    """Inserts rows through the proxy's master port as the application does; a failed insert
    reconnects (through the proxy: after a switch it lands on the new master). Only the rows
    whose commit was acknowledged are counted."""

    def __init__(self, port, tid):
        super().__init__(daemon=True)
        self.port, self.tid = port, tid
        self.acked, self.times = [], []
        self.errors = 0
        self.last_error = None
        self.halt = False

    def run(self):
        conn, n = None, 0
        while not self.halt:
            try:
                if conn is None:
                    conn = pymysql.connect(host="127.0.0.1", port=self.port, user="app",
                                           password=PASSWORDS["app"], database="app",
                                           autocommit=True, connect_timeout=2, read_timeout=10,
                                           write_timeout=10)
                n += 1
                conn.cursor().execute("INSERT INTO w (t, n) VALUES (%s, %s)", (self.tid, n))
                self.acked.append(n)
                self.times.append(time.time())
            except Exception as e:  # noqa: BLE001 (any failure: reconnect and go on)
                self.errors += 1
                self.last_error = repr(e)
                try:
                    conn and conn.close()
                except Exception:  # noqa: BLE001
                    pass
                conn = None
                time.sleep(0.02)


WRITER_IDS = itertools.count(1)


def write_load(port, seconds_before, action, seconds_after, threads=2):
    writers = [Writer(port, next(WRITER_IDS)) for _ in range(threads)]
    for w in writers:
        w.start()
    time.sleep(seconds_before)
    t0 = time.time()
    action()
    t1 = time.time()
    time.sleep(seconds_after)
    for w in writers:
        w.halt = True
    for w in writers:
        w.join(30)
    times = sorted(t for w in writers for t in w.times)
    after = [t for t in times if t >= t1]
    first_after = after[0] if after else None
    # The downtime: the longest time without an acknowledged write around the action.
    window = [t for t in times if t0 - 0.5 <= t <= t1 + seconds_after]
    gap = max((b - a for a, b in zip(window, window[1:])), default=None) if after else None
    acked = {(w.tid, n) for w in writers for n in w.acked}
    if first_after is None:
        print("writers' last errors: " + "; ".join(str(w.last_error) for w in writers))
    return acked, gap, first_after, t0, t1, sum(w.errors for w in writers)


def gtids(pos):
    out = {}
    for g in filter(None, (x.strip() for x in (pos or "").split(","))):
        domain, _, seq = g.split("-")
        out[int(domain)] = max(out.get(int(domain), 0), int(seq))
    return out


def wait_gtid(db, pos, timeout=60):
    """Until `db` has applied or written everything in `pos` (gtid_current_pos: a former
    master's own transactions are in its binlog position, not in its slave position)."""
    want = gtids(pos)
    wait_for(lambda: all(gtids(sql(db, "SELECT @@gtid_current_pos")[0][0]).get(d, 0) >= s
                         for d, s in want.items()), timeout, f"{db.port} to reach {pos}")


def sync_and_compare(master, replicas, acked, what):
    pos = sql(master, "SELECT @@gtid_binlog_pos")[0][0]
    for r in replicas:
        wait_gtid(r, pos)
        check(True, f"{what}: replica on {r.port} reached {pos}")
    rows = {(t, n) for t, n in sql(master, "SELECT t, n FROM app.w")}
    missing = acked - rows
    check(not missing, f"{what}: every acknowledged row ({len(acked)}) is on the master "
          f"({len(missing)} missing)")
    sums = {db.port: sql(db, "CHECKSUM TABLE app.w")[0][1] for db in [master] + replicas}
    counts = {db.port: sql(db, "SELECT COUNT(*) FROM app.w")[0][0] for db in [master] + replicas}
    check(len(set(sums.values())) == 1 and len(set(counts.values())) == 1,
          f"{what}: row counts {counts} and CHECKSUM TABLE equal on all servers")


def sysbench(test, port, seconds, threads=2, extra=()):
    cmd = ["sysbench", test, "--db-driver=mysql", "--mysql-host=127.0.0.1",
           f"--mysql-port={port}", "--mysql-user=app", f"--mysql-password={PASSWORDS['app']}",
           "--mysql-db=sbtest", "--tables=2", "--table-size=2000", f"--threads={threads}",
           f"--time={seconds}"] + list(extra)
    out = subprocess.run(cmd + ["run"], check=True, capture_output=True, text=True).stdout
    errors = int(out.split("errors:")[1].split()[0])
    queries = int(out.split("queries:")[1].split()[0]) if "queries:" in out else 0
    return errors, queries, out


def roles_and_operations(node, dbs, state, pm, ps):
    """Sections 1 to 4, on one node running the monitor and the proxy."""
    a, b, c = dbs["a"], dbs["b"], dbs["c"]
    # --- 1. register, activate, traffic through the proxy ---------------------------
    wait_states(node, {"a": "UNREGISTERED", "b": "UNREGISTERED", "c": "UNREGISTERED"})
    for n, role in (("a", "master"), ("b", "standby"), ("c", "slave")):
        st, body = op(node, "register", node=n, role=role)
        check(st == 200 and body["ok"], f"register {n} as {role}: {body['result']}")
    st, body = op(node, "register", node="b", role="master")
    check(st == 409 and "registered already" in body["error"],
          f"a second register is refused with 409: {body['error']}")
    wait_states(node, {"a": "OK", "b": "DETACHED", "c": "DETACHED"})
    st, body = op(node, "switchover", to="b")
    check(st == 409 and "DETACHED" in body["error"],
          f"switchover to a DETACHED standby: 409 ({body['error']})")
    st, body = op(node, "failover")
    check(st == 409 and "not ERROR" in body["error"],
          f"failover while the master answers: 409 ({body['error']})")
    sql(a, "CREATE DATABASE app")
    sql(a, "CREATE TABLE app.w (id BIGINT AUTO_INCREMENT PRIMARY KEY, t INT, n INT, "
           "UNIQUE KEY (t, n))")
    sql(a, "CREATE DATABASE sbtest")
    for n in ("b", "c"):
        st, body = op(node, "activate", node=n)
        check(st == 200, f"activate {n}: {body.get('result', body)}")
    wait_states(node, {"a": "OK", "b": "OK", "c": "OK"})
    # Mutual backup: activate on the master makes it replicate from the standby; when both of
    # its threads stop, the monitor starts them again (mmm's duty).
    st, body = op(node, "activate", node="a")
    check(st == 200 and "mutual" in body["result"], f"activate the master: {body['result']}")

    def master_replication():
        row = sql(a, "SHOW SLAVE STATUS")[0]
        return row[3], row[10], row[11]  # Master_Port, Slave_IO_Running, Slave_SQL_Running
    wait_for(lambda: master_replication() == (b.port, "Yes", "Yes"), 20,
             "the master to replicate from the standby")
    check(True, "the master replicates from the standby (mutual backup)")
    sql(a, "STOP SLAVE")
    wait_for(lambda: master_replication()[1:] == ("Yes", "Yes"), 20,
             "the monitor to start the master's replication again")
    check("a: both replication threads had stopped without an error: started again"
          in node.log(),
          "the master's replication, stopped by hand, was started again by the monitor")
    check(sql(b, "SELECT @@read_only")[0][0] == 1 and
          sql(a, "SELECT @@read_only")[0][0] == 0,
          "read_only on the replicas, off on the master")
    check(json.loads(open(state).read())["nodes"]["a"]["role"] == "master",
          "the registry is in the state file")
    ev = events(node, 1)
    check(ev and ev[0][0] == "init" and master_port(ev[0][1]) == [a.port] and
          sorted(x["container_port"] for x in ev[0][1]["slave"]["containers"]) ==
          sorted([b.port, c.port]),
          f"/servers: an init event in LAIN's shape, master {a.port}, slaves b and c")
    wait_for(lambda: sql(pm, "SELECT @@port", user="app")[0][0] == a.port, 10,
             "the proxy's master port to reach a")
    subprocess.run(["sysbench", "oltp_write_only", "--db-driver=mysql",
                    "--mysql-host=127.0.0.1", f"--mysql-port={pm}", "--mysql-user=app",
                    f"--mysql-password={PASSWORDS['app']}", "--mysql-db=sbtest",
                    "--tables=2", "--table-size=2000", "prepare"],
                   check=True, capture_output=True)
    # One thread: no deadlock between sysbench's own transactions (sysbench counts the
    # ones it retries as errors), so any error is the path's.
    errors, queries, _ = sysbench("oltp_write_only", pm, 4, threads=1)
    check(errors == 0 and queries > 0,
          f"sysbench oltp_write_only through the proxy's master port: {queries} queries, "
          f"0 errors")
    pos = sql(a, "SELECT @@gtid_binlog_pos")[0][0]
    for r in (b, c):
        wait_gtid(r, pos)
    ports = {sql(ps, "SELECT @@port", user="app")[0][0] for _ in range(4)}
    check(ports == {b.port, c.port}, f"the slave port round-robins over b and c: {ports}")
    errors, queries, _ = sysbench("oltp_read_only", ps, 4)
    check(errors == 0 and queries > 0,
          f"sysbench oltp_read_only through the proxy's slave port: {queries} queries, "
          f"0 errors")

    # --- 2. switchover under write load ------------------------------------------
    result = {}

    def switch():
        result["switch"] = op(node, "switchover", to="b")
    acked, gap, first, t0, t1, errs = write_load(pm, 2, switch, 3)
    st, body = result["switch"]
    check(st == 200, f"switchover to b: {body.get('result', body)}")
    print(f"figure: switchover took {t1 - t0:.3f} s; write downtime seen by the "
          f"application through the proxy: {gap:.3f} s ({errs} failed attempts "
          f"retried)", flush=True)
    check(gap is not None and gap < 5, "writes resumed through the proxy within 5 s")
    wait_states(node, {"a": "OK", "b": "OK", "c": "OK"})
    roles = {n: v["role"] for n, v in states(node).items()}
    check(roles == {"a": "standby", "b": "master", "c": "slave"},
          f"roles after the switchover: {roles}")
    check(sql(pm, "SELECT @@port", user="app")[0][0] == b.port,
          "new connections through the master port reach b")
    sync_and_compare(b, [a, c], acked, "switchover")
    ops = json.loads(node.get("/mysql/operations"))["operations"]
    check(any(o["op"] == "switchover" and o["ok"] and o["by"].startswith("loopback")
              for o in ops), "the operation is logged with who, when and its result")
    check("operation switchover" in node.log() and PASSWORDS["repl"] not in node.log()
          and PASSWORDS["mon"] not in node.log(),
          "the node's log has the operation and no password")

    # --- 3. kill -9 of the master: automatic failover ----------------------------
    result = {}

    def crash():
        b.kill9()
        result["killed"] = time.time()
    acked, gap, first, t0, t1, errs = write_load(pm, 2, crash, 8)
    check(first is not None, "writes resumed through the proxy after the crash")
    print(f"figure: kill -9 of the master to the first acknowledged write through the "
          f"proxy: {first - result['killed']:.3f} s (failover_after_ms 1000, "
          f"interval 200 ms)", flush=True)
    wait_states(node, {"a": "OK", "b": "ERROR", "c": "OK"})
    roles = {n: v["role"] for n, v in states(node).items()}
    check(roles["a"] == "master" and roles["b"] == "standby",
          f"the standby a was promoted, b is the standby now: {roles}")
    ops = json.loads(node.get("/mysql/operations"))["operations"]
    check(any(o["op"] == "failover" and o["by"] == "automatic" and o["ok"] for o in ops),
          "an automatic failover is in the operations log")
    sync_and_compare(a, [c], acked, "failover (semi-synchronous)")
    b.restart()
    wait_for(lambda: states(node)["b"]["state"] != "ERROR", 30, "b to answer again")
    wait_for(lambda: sql(b, "SELECT @@read_only")[0][0] == 1, 10,
             "read_only on the old master")
    # The backup was mutual: b already replicated from a (the switchover set it up), so the
    # monitor starts that replication again. b either holds nothing a lacks and catches up
    # (OK), or its replication stops with the server's error (SYNCING, with the reason): it
    # is never written to, and never promoted while it is not OK or SYNCING from the master.
    wait_for(lambda: states(node)["b"]["state"] in ("OK", "SYNCING"), 30,
             "b to replicate from the new master")
    check(True, f"the old master came back read-only, replicating from the new master: "
                f"{states(node)['b']['state']} {states(node)['b']['reason'][:120]}")

    # --- 4. pause/resume, detach/activate, LOST, ERROR, refusals -----------------
    st, body = op(node, "pause", node="c")
    check(st == 200, f"pause c: {body.get('result', body)}")
    wait_states(node, {"c": "PAUSE"})
    check(sql(c, "SHOW SLAVE STATUS")[0][11] == "No", "c's replication is stopped")
    st, body = op(node, "pause", node="c")
    check(st == 409 and "paused already" in body["error"], "pause twice: 409")
    st, body = op(node, "resume", node="c")
    check(st == 200, "resume c")
    wait_states(node, {"c": "OK"})
    st, body = op(node, "pause", node="a")
    check(st == 200, "pause the master a")
    wait_states(node, {"a": "PAUSE"})
    try:
        sql(pm, "INSERT INTO app.w (t, n) VALUES (99, 1)", user="app")
        refused = False
    except pymysql.MySQLError as e:
        refused = e.args[0] in (1290, 1836, 4151)  # read-only, or the account locked
    check(refused, "a paused master refuses writes (read_only)")
    st, body = op(node, "resume", node="a")
    check(st == 200, "resume a")
    sql(pm, "INSERT INTO app.w (t, n) VALUES (99, 2)", user="app")
    check(True, "writes go through again")
    st, body = op(node, "detach", node="c")
    check(st == 200, "detach c")
    wait_states(node, {"c": "DETACHED"})
    st, body = op(node, "activate", node="c")
    check(st == 200, "activate c again")
    wait_states(node, {"c": "OK"})
    # By hand, c replicates from b (not the master): LOST.
    cc = pymysql.connect(host="127.0.0.1", port=c.port, user="mon",
                         password=PASSWORDS["mon"], autocommit=True)
    cur = cc.cursor()
    cur.execute("STOP SLAVE")
    cur.execute(f"CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT={b.port}, "
                f"MASTER_USER='repl', MASTER_PASSWORD='{PASSWORDS['repl']}', "
                f"MASTER_USE_GTID=current_pos")
    cc.close()
    wait_states(node, {"c": "LOST"})
    check(f":{b.port}" in states(node)["c"]["reason"], "LOST says where it replicates from")
    st, body = op(node, "activate", node="c")
    check(st == 200, "activate puts c back on the master")
    wait_states(node, {"c": "OK"})
    c.kill9()
    wait_states(node, {"c": "ERROR"})
    st, body = op(node, "activate", node="c")
    check(st == 409 and "ERROR" in body["error"], f"activate an ERROR node: 409 "
          f"({body['error']})")
    st, body = op(node, "switchover", to="c")
    check(st == 409, f"switchover to an ERROR node: 409 ({body['error']})")
    st, body = op(node, "nonsense", node="c")
    check(st == 404, "an unknown operation: 404")
    c.restart()
    wait_states(node, {"c": "OK"}, 40)


def main():
    tmp = tempfile.mkdtemp(prefix="mp-monitor-")
    state = os.path.join(tmp, "state.json")
    pm, ps = free_port(), free_port()
    with MariaDB(server_args(1), grants=True) as a, MariaDB(server_args(2), grants=True) as b, \
            MariaDB(server_args(3), grants=True) as c:
        dbs = {"a": a, "b": b, "c": c}
        for db in dbs.values():
            prepare_users(db)
        with Probe(BINARY, node_yaml(dbs, state, proxy=(pm, ps))) as node:
            try:
                roles_and_operations(node, dbs, state, pm, ps)
            except BaseException:
                print("node log:\n" + node.log()[-8000:])
                raise
            node.stop()

        # --- 5. two monitors coordinated through Redis ----------------------------------
        with Redis() as redis:
            y1 = node_yaml(dbs, state, name="m1", coordination="redis", redis_port=redis.port)
            y2 = node_yaml(dbs, state, name="m2", coordination="redis", redis_port=redis.port)
            with Probe(BINARY, y1) as m1, Probe(BINARY, y2) as m2:
                def acting(n):
                    try:
                        return n.metrics().get("mysqlprobe_monitor_mysql_acting", 0) == 1
                    except OSError:
                        return False
                wait_for(lambda: acting(m1) != acting(m2), 10, "exactly one acting monitor")
                first, second = (m1, m2) if acting(m1) else (m2, m1)
                holder = redis.command("GET", "mysqlprobe:default:leader")
                check(holder is not None and holder.startswith("m1/" if first is m1 else "m2/"),
                      f"the lease in Redis names the acting monitor ({holder})")
                st, body = op(second, "pause", node="c")
                check(st == 409 and "not the acting one" in body["error"],
                      "the other monitor refuses operations (409)")
                first.proc.kill()
                t_kill = time.time()
                wait_for(lambda: acting(second), 10, "the other monitor to take the lease")
                took = time.time() - t_kill
                print(f"figure: the second monitor acts {took:.3f} s after kill -9 of the first "
                      f"(lease 1.5 s, renewed every 0.5 s)", flush=True)
                check(took < 1.5 + 1.0, "within the lease (plus one renewal)")
                heard = subscribe(redis.port, "mysqlprobe-switch")
                a.kill9()
                try:
                    wait_for(lambda: states(second)["b"]["role"] == "master" or
                             states(second)["c"]["role"] == "master", 30,
                             "the acting monitor to fail over on its own")
                except AssertionError:
                    print("status:\n" + second.get("/mysql/status"))
                    print("operations:\n" + second.get("/mysql/operations"))
                    print("node log:\n" + second.log()[-8000:])
                    raise
                roles = {n: v["role"] for n, v in states(second).items()}
                check(True, f"failover by the second monitor: {roles}")
                new_master = b if roles["b"] == "master" else c
                announced = json.loads(redis.command("GET", "mysqlprobe:default:master"))
                check(master_port(announced) == [new_master.port],
                      "the active master is announced in Redis (mysqlprobe:default:master)")
                want = (f'"master":{{"containers":[{{"container_ip":"127.0.0.1",'
                        f'"container_port":{new_master.port}}}]}}')
                wait_for(lambda: want in heard["data"], 10, "the switch message")
                check('{"tag":"default","by":"' in heard["data"],
                      "and published on the topic mysqlprobe-switch, with the tag and who decided")
                heard["sock"].close()

        # --- 6. two monitors coordinated through the gossip cluster's master -------------
        gport = free_port()
        seeds = os.path.join(tmp, "seeds")

        def gossip_node(name, ip):
            cluster = (f"{{plugin: cluster-gossip, config: {{bind: '{ip}', port: {gport}, "
                       f"name: {name}, profile: local, reconnect_period_s: 1, "
                       f"seeds_file: '{seeds}-{name}'}}}}")
            return Probe(BINARY, node_yaml(dbs, state, name=name, coordination="cluster",
                                           address=ip, cluster=cluster))
        with gossip_node("g1", "127.0.1.31") as g1, gossip_node("g2", "127.0.1.32") as g2:
            req = urllib.request.Request(f"http://127.0.1.32:{g2.http_port}/cluster/join?"
                                         f"addr=127.0.1.31:{gport}", data=b"", method="POST")
            urllib.request.urlopen(req, timeout=10).read()

            def gacting(n, ip):
                try:
                    with urllib.request.urlopen(f"http://{ip}:{n.http_port}/metrics",
                                                timeout=5) as r:
                        return "mysqlprobe_monitor_mysql_acting 1" in r.read().decode().splitlines()
                except OSError:
                    return False
            wait_for(lambda: gacting(g1, "127.0.1.31") != gacting(g2, "127.0.1.32"), 20,
                     "exactly one acting monitor (the gossip master)")
            first, fip, second, sip = ((g1, "127.0.1.31", g2, "127.0.1.32")
                                       if gacting(g1, "127.0.1.31")
                                       else (g2, "127.0.1.32", g1, "127.0.1.31"))
            check(True, f"the gossip master {fip} acts, {sip} watches")
            first.proc.kill()
            t_kill = time.time()
            wait_for(lambda: gacting(second, sip), 30, "the other node to become master and act")
            print(f"figure: gossip coordination: the other monitor acts "
                  f"{time.time() - t_kill:.3f} s after kill -9 of the master node (profile local)",
                  flush=True)
            req = urllib.request.Request(f"http://{sip}:{second.http_port}/mysql/pause",
                                         data=b"node=nosuch", method="POST")
            try:
                urllib.request.urlopen(req, timeout=10)
                status = 200
            except urllib.error.HTTPError as e:
                status, body = e.code, json.loads(e.read())
            check(status == 409 and "not registered" in body["error"],
                  "the new acting monitor takes operations (an unknown node: 409 not registered, "
                  "not 'not the acting one')")
        # --- 7. a proxy in another node follows the monitor's /servers feed, with a token ---
        read_token, admin_token = "feed-reader-5d1c0b7e2a", "operator-9e4f1a6c3b"
        mon_yaml = node_yaml(dbs, state, name="mon7", auto_failover=False) + (
            f"auth:\n  tokens:\n    - {{name: ops, role: admin, token: {admin_token}}}\n"
            f"    - {{name: feed, role: read, token: {read_token}}}\n")
        with Probe(BINARY, mon_yaml) as mon:
            feed = f"http://127.0.0.1:{mon.http_port}/servers"
            master = [n for n, v in states_with(mon, read_token).items()
                      if v["role"] == "master"][0]
            pm7, pm8 = free_port(), free_port()

            def proxy_yaml(name, port, token):
                return (f"serverport: 0\nserveraddress: 127.0.0.1\ninterval: 3600\n"
                        f"nodename: {name}\nplugins:\n  cluster: none\n  sinks:\n"
                        f"    - plugin: proxy-mysql\n      reports: false\n"
                        f"      config: {{master_listen: '127.0.0.1:{port}', slave_listen: '', "
                        f"servers_url: '{feed}', token: {token}}}\n")
            with Probe(BINARY, proxy_yaml("p7", pm7, read_token)) as p7, \
                    Probe(BINARY, proxy_yaml("p8", pm8, "a-wrong-token-0000")) as p8:
                wait_for(lambda: sql(pm7, "SELECT @@port", user="app")[0][0] ==
                         dbs[master].port, 20, "the remote proxy to reach the master")
                check(p7.proc.poll() is None, f"a proxy in another node follows the feed (token "
                      f"in the header): its master port reaches {master}")
                wait_for(lambda: p8.metrics().get("mysqlprobe_proxy_mysql_feed_refused_total", 0)
                         >= 1, 20, "the wrong token to be refused")
                check("answered 401" in p8.log() and "a-wrong-token" not in p8.log(),
                      "a wrong token: the feed answers 401, the proxy says so without the token")
                try:
                    sql(pm8, "SELECT 1", user="app")
                    got = "connected"
                except pymysql.MySQLError:
                    got = "refused"
                check(got == "refused", "a proxy without targets refuses clients")
                wait_for(lambda: p8.metrics().get(
                    "mysqlprobe_proxy_mysql_connections_refused_total", 0) >= 1, 5,
                    "the refusal to be counted")
                check(True, "and counts it (connections_refused_total)")
    shutil.rmtree(tmp, ignore_errors=True)
    print("monitor-mysql: all checks passed")


if __name__ == "__main__":
    main()

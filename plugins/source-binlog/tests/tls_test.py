#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""source-binlog over TLS: a real MariaDB with a certificate signed by a CA made here, and a
replication user that must come over TLS (REQUIRE SSL). With `tls: verify_identity` and the CA
the replica streams (the row changes arrive, the log names the TLS version, never the password);
`tls: required` streams without checking the certificate. Refused at start, each in one line
that says what to do: plain (`tls: off`: the server denies the user), a CA that did not sign
the certificate, a host the certificate is not for, an unreadable CA file, and TLS asked of a
server that offers none.

usage: tls_test.py MYSQLPROBE SOURCE_DIR TEST_PLUGINS_DIR"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(sys.argv[2], "tests", "live"))
from harness import MariaDB, Probe, check, mariadb_tls, skip, wait_for  # noqa: E402

try:
    import pymysql
except ImportError:
    skip("python3-pymysql is not installed (scripts/deps.sh installs it)")

SERVER_ARGS = ["--log-bin=mysql-bin", "--binlog-format=ROW", "--binlog-row-metadata=FULL",
               "--server-id=7", "--binlog-checksum=CRC32"]
SECRET = "Tls-pw-77a1-not-in-logs"


def node_yaml(work, plugins, db, name, tls, host="127.0.0.1"):
    out = os.path.join(work, name + ".jsonl")
    return (f"serverport: 0\nserveraddress: 127.0.0.1\ninterval: 3600\nnodename: tls\n"
            f"plugins:\n  directories: [{plugins}]\n  cluster: none\n"
            f"  sources:\n    - plugin: source-binlog\n      config: {{host: {host}, "
            f"port: {db.port}, user: cdc, password: '{SECRET}', server_id: 99, "
            f"checkpoint: '{os.path.join(work, name + '.cp')}', heartbeat_messages: false, "
            f"connect_timeout_ms: 3000{tls}}}\n"
            f"  sinks:\n    - {{plugin: sink-jsonl, records: [binlog.rows], reports: false, "
            f"config: {{path: '{out}'}}}}\n"), out


def refused(binary, work, yaml_text, want, what):
    cfg = os.path.join(work, "refused.yaml")
    with open(cfg, "w") as f:
        f.write(yaml_text)
    p = subprocess.run([binary, "-c", cfg], capture_output=True, text=True, timeout=60)
    lines = [line for line in p.stderr.splitlines() if "start failed" in line]
    check(p.returncode != 0 and lines and all(w in lines[0] for w in want) and
          SECRET not in p.stderr, f"{what}: {lines[0][-220:] if lines else p.stderr[-400:]}")


def streams(binary, work, plugins, db, cur, name, tls, value):
    yaml_text, out = node_yaml(work, plugins, db, name, tls)
    with Probe(binary, yaml_text) as node:
        cur.execute(f"INSERT INTO s.t VALUES ({value}, 'over tls')")
        cur.execute(f"UPDATE s.t SET v = 'changed' WHERE id = {value}")

        def arrived():
            if not os.path.exists(out):
                return None
            lines = [json.loads(json.loads(line)["payload"]) for line in open(out)]
            return lines if len(lines) >= 2 else None
        msgs = wait_for(arrived, 30, f"the changes of {name} in {out}")
        log = node.log()
        check(node.stop() == 0, "stopped")
    check([(m["type"], m["keys"]) for m in msgs] ==
          [("row_insert", {"id": value}), ("row_update", {"id": value})] and
          msgs[1]["after_values"] == {"v": "changed"},
          f"{name}: the insert and the update arrive over TLS")
    line = [x for x in log.splitlines() if "replicating from" in x]
    check(line and "TLSv1." in line[0], f"{name}: the log names the session: {line[0][-150:]}")
    check(SECRET not in log, f"{name}: the password is in no log line")


def main():
    binary, plugins = sys.argv[1], sys.argv[3]
    work = tempfile.mkdtemp(prefix="mp-binlog-tls-")
    pem, tls_args = mariadb_tls(work)  # the server's certificate: for 127.0.0.1 only
    with MariaDB(SERVER_ARGS + tls_args, grants=True) as db:
        conn = pymysql.connect(unix_socket=db.socket, user="root", autocommit=True)
        cur = conn.cursor()
        cur.execute(f"CREATE USER cdc IDENTIFIED BY '{SECRET}' REQUIRE SSL")
        cur.execute("GRANT REPLICATION SLAVE, REPLICATION CLIENT, SELECT ON *.* TO cdc")
        cur.execute("CREATE DATABASE s")
        cur.execute("CREATE TABLE s.t (id INT PRIMARY KEY, v VARCHAR(20))")

        def yaml_for(tls, host="127.0.0.1"):
            return node_yaml(work, plugins, db, "refused", tls, host)[0]
        refused(binary, work, yaml_for(""), ["1045"],
                "plain (tls: off) is refused at start: the user must come over TLS")
        refused(binary, work, yaml_for(f", tls: verify_ca, tls_ca: '{pem['other.crt']}'"),
                ["certificate:", "tls_ca"], "a CA that did not sign the certificate is refused")
        refused(binary, work,
                yaml_for(f", tls: verify_identity, tls_ca: '{pem['ca.crt']}'", "localhost"),
                ["not for localhost"], "a host the certificate is not for is refused")
        refused(binary, work,
                yaml_for(f", tls: verify_ca, tls_ca: '{os.path.join(work, 'missing.pem')}'"),
                ["cannot read the CA file"], "an unreadable CA file is refused")
        streams(binary, work, plugins, db, cur, "verify_identity",
                f", tls: verify_identity, tls_ca: '{pem['ca.crt']}'", 1)
        streams(binary, work, plugins, db, cur, "required", ", tls: required", 2)
        conn.close()
    with MariaDB(SERVER_ARGS) as plain:
        refused(binary, work, node_yaml(work, plugins, plain, "plain", ", tls: required")[0],
                ["does not offer TLS", "ssl_cert"], "TLS asked of a server without it is refused")
    shutil.rmtree(work, ignore_errors=True)
    print("source-binlog over TLS: all checks passed")


if __name__ == "__main__":
    main()

#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""monitor-mysql over TLS: a real MariaDB with a certificate signed by a CA made here, and a
monitor account that must come over TLS (REQUIRE SSL). Under `tls: verify_identity` with the CA,
and under `tls: required`, the instance answers its polls and /mysql/status names the session;
plain (`tls: off`: the server denies the account), a CA that did not sign the certificate and a
host the certificate is not for each leave it unreachable with the reason shown. The password
is in no log line and no status.

usage: tls_test.py MYSQLPROBE SOURCE_DIR"""
import json
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.join(sys.argv[2], "tests", "live"))
from harness import MariaDB, Probe, check, mariadb_tls, skip, wait_for  # noqa: E402

try:
    import pymysql
except ImportError:
    skip("python3-pymysql is not installed (scripts/deps.sh installs it)")

SECRET = "Mon-tls-pw-31c4-not-in-logs"


def node_yaml(work, host, port, tls):
    return (f"serverport: 0\nserveraddress: 127.0.0.1\ninterval: 3600\nnodename: mon-tls\n"
            f"plugins:\n  cluster: none\n  sources:\n    - plugin: monitor-mysql\n"
            f"      config: {{instances: ['a={host}:{port}'], user: mon, password: '{SECRET}', "
            f"interval_ms: 200, connect_timeout_ms: 2000, "
            f"state_file: '{os.path.join(work, 'state.json')}'{tls}}}\n")


def polled(binary, work, host, port, tls, name):
    """The instance's status once a poll ended (answered or not)."""
    with Probe(binary, node_yaml(work, host, port, tls)) as node:
        def seen():
            a = json.loads(node.get("/mysql/status"))["nodes"][0]
            return a if a.get("polled_ns", 0) > 0 else None
        a = wait_for(seen, 20, "a poll of the instance")
        status = node.get("/mysql/status")
        log = node.log()
    check(SECRET not in log and SECRET not in status, f"{name}: the password is in no log line and no status")
    return a


def main():
    binary = sys.argv[1]
    work = tempfile.mkdtemp(prefix="mp-monitor-tls-")
    pem, tls_args = mariadb_tls(work)  # the server's certificate: for 127.0.0.1 only
    with MariaDB(tls_args, grants=True) as db:
        conn = pymysql.connect(unix_socket=db.socket, user="root", autocommit=True)
        cur = conn.cursor()
        cur.execute(f"CREATE USER mon IDENTIFIED BY '{SECRET}' REQUIRE SSL")
        cur.execute("GRANT ALL ON *.* TO mon")
        conn.close()

        a = polled(binary, work, "127.0.0.1", db.port, "", "off")
        check(not a["reachable"] and "1045" in a.get("error", ""),
              f"plain (tls: off): the server denies the account: {a.get('error')}")
        a = polled(binary, work, "127.0.0.1", db.port,
                   f", tls: verify_identity, tls_ca: '{pem['ca.crt']}'", "verify_identity")
        check(a["reachable"] and a.get("tls", "").startswith("TLSv1."),
              f"verify_identity: polled over TLS ({a.get('tls')!r}, {a.get('error')})")
        check(a.get("server_id", 0) >= 1 and a.get("version"), "verify_identity: the poll's figures")
        a = polled(binary, work, "127.0.0.1", db.port, ", tls: required", "required")
        check(a["reachable"] and a.get("tls", "").startswith("TLSv1."),
              f"required: polled over TLS ({a.get('tls')!r}, {a.get('error')})")
        a = polled(binary, work, "127.0.0.1", db.port,
                   f", tls: verify_ca, tls_ca: '{pem['other.crt']}'", "another CA")
        check(not a["reachable"] and "certificate" in a.get("error", ""),
              f"a CA that did not sign the certificate: unreachable: {a.get('error')}")
        a = polled(binary, work, "localhost", db.port,
                   f", tls: verify_identity, tls_ca: '{pem['ca.crt']}'", "localhost")
        check(not a["reachable"] and "not for localhost" in a.get("error", ""),
              f"a host the certificate is not for: unreachable: {a.get('error')}")
    shutil.rmtree(work, ignore_errors=True)
    print("monitor-mysql over TLS: all checks passed")


if __name__ == "__main__":
    main()

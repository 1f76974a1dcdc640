#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""decoder-mysql's server reader over TLS: a real MariaDB with a certificate signed by a CA made
here, and a reader account that must come over TLS (REQUIRE SSL). A bundled capture is read
offline (`mysqlprobe -r`) with `server` pointing at that MariaDB: under `server_tls:
verify_identity` with the CA the report's coverage has its reading and the log names the TLS
session, and the collector's `inbound_server` lists the open sessions through TLS; plain (the
server denies the account) and another CA each leave the coverage without a reading and say
why. The password is in no output.

usage: server_tls_test.py MYSQLPROBE SOURCE_DIR"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(sys.argv[2], "tests", "live"))
from harness import MariaDB, check, mariadb_tls, skip  # noqa: E402

try:
    import pymysql
except ImportError:
    skip("python3-pymysql is not installed (scripts/deps.sh installs it)")

SECRET = "Reader-tls-pw-9e2b-not-in-logs"
PCAP = os.path.join(sys.argv[2], "tests", "data", "pcap", "sysbench_text_rw_2t_20tx.pcap")


def offline(binary, work, port, extra, name):
    cfg = os.path.join(work, "node.yaml")
    with open(cfg, "w") as f:
        f.write(f"serverport: 0\nserveraddress: 127.0.0.1\nplugins:\n  cluster: none\n"
                f"  sinks: []\n  decoder: {{plugin: decoder-mysql, config: {{server: "
                f"'127.0.0.1:{port}', server_user: reader, server_password: '{SECRET}'{extra}}}}}\n")
    p = subprocess.run([binary, "-c", cfg, "-r", PCAP], capture_output=True, text=True,
                       timeout=120)
    if p.returncode != 0:
        raise AssertionError(f"mysqlprobe exited {p.returncode}: {p.stderr[-2000:]}")
    check(SECRET not in p.stdout and SECRET not in p.stderr,
          f"{name}: the password is in no output")
    return json.loads(p.stdout)["coverage"], p.stderr


def main():
    binary = sys.argv[1]
    work = tempfile.mkdtemp(prefix="mp-reader-tls-")
    pem, tls_args = mariadb_tls(work)
    with MariaDB(tls_args, grants=True) as db:
        conn = pymysql.connect(unix_socket=db.socket, user="root", autocommit=True)
        conn.cursor().execute(f"CREATE USER reader IDENTIFIED BY '{SECRET}' REQUIRE SSL")
        conn.cursor().execute("GRANT PROCESS ON *.* TO reader")
        conn.close()

        cov, _ = offline(binary, work, db.port, "", "plain")
        check(cov["readings"] == 0 and "1045" in cov.get("error", ""),
              f"plain: the server denies the account, the coverage says so: {cov.get('error')}")
        verified = f", server_tls: verify_identity, server_tls_ca: '{pem['ca.crt']}'"
        cov, log = offline(binary, work, db.port, verified, "verify_identity")
        check(cov["readings"] == 1 and cov["failed_readings"] == 0 and "error" not in cov,
              f"verify_identity: the counters read over TLS ({cov})")
        line = [x for x in log.splitlines() if "reading the counters" in x]
        check(line and "TLSv1." in line[0], f"verify_identity: the log names the session: "
                                            f"{line[0][-120:] if line else log[-500:]}")
        cov, log = offline(binary, work, db.port, ", server_tls: required, inbound: true, "
                           f"inbound_server: '127.0.0.1:{db.port}', inbound_server_user: "
                           f"reader, inbound_server_password: '{SECRET}'", "required")
        check(cov["readings"] == 1, "required: the counters read over TLS")
        check("cannot list its sessions" not in log,
              "required: the collector's inbound_server lists the sessions over TLS")
        cov, _ = offline(binary, work, db.port,
                         f", server_tls: verify_ca, server_tls_ca: '{pem['other.crt']}'",
                         "another CA")
        check(cov["readings"] == 0 and "certificate" in cov.get("error", ""),
              f"another CA: no reading, the coverage says why: {cov.get('error')}")
    shutil.rmtree(work, ignore_errors=True)
    print("decoder-mysql's server reader over TLS: all checks passed")


if __name__ == "__main__":
    main()

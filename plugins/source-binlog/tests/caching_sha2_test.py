#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""The MySQL client's caching_sha2_password login (libs/mysql, through source-binlog), against a
server that plays MySQL 8's side of the exchange, since no MySQL server runs here (Debian 12 has
none). The played server is checked first with PyMySQL, a client used against real MySQL 8
servers: it must log in to each scene the server plays. Then mysqlprobe must log in to the same
scenes, and its scramble or password must be the right one (the server checks them as MySQL
does). Scenes:
- `default`: the server's default plugin is caching_sha2_password; the client answers with its
  scramble at once; the server had the password cached (fast authentication, 0x01 0x03);
- `switch`: the default is mysql_native_password, the user's caching_sha2_password: an auth
  switch with a new nonce, then fast authentication;
- `full`: the server has nothing cached (0x01 0x04): over TLS the client sends the password;
  without TLS it refuses, in one line, and sends nothing more (no password in clear, no RSA key
  taken from the network unchecked);
- `native`: a mysql_native_password user after a switch (what MariaDB's tests cover already).
After the login the played server answers any query with error 1381 ("login ok"): mysqlprobe's
start fails with that line, which says the login passed. The password is in no log line.

usage: caching_sha2_test.py MYSQLPROBE SOURCE_DIR TEST_PLUGINS_DIR"""
import hashlib
import os
import shutil
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading

sys.path.insert(0, os.path.join(sys.argv[2], "tests", "live"))
from harness import check, make_certs, skip  # noqa: E402

try:
    import pymysql
except ImportError:
    skip("python3-pymysql is not installed (scripts/deps.sh installs it)")

PASSWORD = "Sha2-pw-41c9-not-in-logs"
NATIVE = b"mysql_native_password"
SHA2 = b"caching_sha2_password"
CLIENT_SSL = 0x800
CAPS = 0x00000200 | 0x00008000 | 0x00080000 | 0x00000001 | 0x00000004 | 0x00002000 | CLIENT_SSL


def sha256(b):
    return hashlib.sha256(b).digest()


def sha2_scramble(password, nonce):  # as MySQL checks it, written from its documentation
    p1 = sha256(password)
    p3 = sha256(sha256(p1) + nonce)
    return bytes(a ^ b for a, b in zip(p1, p3))


def native_scramble(password, nonce):
    s1 = hashlib.sha1(password).digest()
    s3 = hashlib.sha1(nonce + hashlib.sha1(s1).digest()).digest()
    return bytes(a ^ b for a, b in zip(s1, s3))


class Wire:
    def __init__(self, sock):
        self.sock = sock
        self.seq = 0

    def read(self):
        head = self._exact(4)
        n = head[0] | head[1] << 8 | head[2] << 16
        self.seq = (head[3] + 1) & 0xff
        return self._exact(n)

    def _exact(self, n):
        out = b""
        while len(out) < n:
            got = self.sock.recv(n - len(out))
            if not got:
                raise EOFError
            out += got
        return out

    def write(self, payload):
        self.sock.sendall(struct.pack("<I", len(payload))[:3] + bytes([self.seq]) + payload)
        self.seq = (self.seq + 1) & 0xff


class Played:
    """One scene of MySQL 8's login, on a loopback port; what happened, in `log`."""

    def __init__(self, scene, pem):
        self.scene, self.pem = scene, pem
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.log = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            conn, _ = self.listener.accept()
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn):
        try:
            self._login(Wire(conn))
        except EOFError:
            self.log.append("closed")
        except Exception as e:  # noqa: BLE001 (the test reads the log)
            self.log.append(f"server error: {e!r}")
        finally:
            conn.close()

    def _login(self, w):
        nonce = os.urandom(20).replace(b"\0", b"\1")
        default = NATIVE if self.scene in ("switch", "native") else SHA2
        hs = (b"\x0a" + b"8.0.36-played\0" + struct.pack("<I", 7) + nonce[:8] + b"\0" +
              struct.pack("<H", CAPS & 0xffff) + b"\x2d" + struct.pack("<H", 2) +
              struct.pack("<H", CAPS >> 16) + bytes([21]) + b"\0" * 10 + nonce[8:] + b"\0" +
              default + b"\0")
        w.write(hs)
        resp = w.read()
        caps = struct.unpack("<I", resp[:4])[0]
        tls = False
        if len(resp) == 32 and caps & CLIENT_SSL:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(self.pem["node.crt"], self.pem["node.key"])
            w.sock = ctx.wrap_socket(w.sock, server_side=True)
            tls = True
            resp = w.read()
        rest = resp[32:]
        user, rest = rest.split(b"\0", 1)
        n = rest[0]
        auth, rest = rest[1:1 + n], rest[1 + n:]
        if caps & 0x8:  # CLIENT_CONNECT_WITH_DB: the schema first
            rest = rest.split(b"\0", 1)[1]
        plugin = rest.split(b"\0")[0] if rest else b""
        self.log.append(f"user {user.decode()} plugin {plugin.decode()} tls {tls}")
        password = PASSWORD.encode()
        if self.scene == "native" or (self.scene == "switch" and plugin != SHA2):
            want_plugin = NATIVE if self.scene == "native" else SHA2
            if plugin != want_plugin:
                nonce = os.urandom(20).replace(b"\0", b"\1")
                w.write(b"\xfe" + want_plugin + b"\0" + nonce + b"\0")
                auth = w.read()
                self.log.append(f"switched to {want_plugin.decode()}")
            plugin = want_plugin
        if plugin == NATIVE:
            ok = auth == native_scramble(password, nonce)
        elif self.scene != "full" and auth == sha2_scramble(password, nonce):
            ok = True  # the hash is in the server's cache: fast authentication
            w.write(b"\x01\x03")
            self.log.append("fast authentication")
        else:
            # nothing cached (or a scramble that does not match it): MySQL asks for the
            # password itself (perform_full_authentication)
            w.write(b"\x01\x04")
            if not tls:
                try:
                    more = w.read()
                except EOFError:
                    self.log.append("full authentication refused by the client without TLS")
                    raise
                self.log.append("password in clear" if password in more else
                                f"asked {more[:1].hex()} without TLS")
                return
            ok = w.read() == password + b"\0"
            self.log.append("password over TLS")
        if not ok:
            self.log.append("scramble wrong")
            w.write(b"\xff" + struct.pack("<H", 1045) + b"#28000Access denied (played)")
            return
        self.log.append("login ok")
        w.write(b"\x00\x00\x00\x02\x00\x00\x00")
        while True:
            w.seq = 0
            cmd = w.read()
            if cmd[:1] == b"\x0e":  # COM_PING
                w.seq = 1
                w.write(b"\x00\x00\x00\x02\x00\x00\x00")
            elif cmd[:1] == b"\x01":  # COM_QUIT
                return
            else:
                w.seq = 1
                w.write(b"\xff" + struct.pack("<H", 1381) +
                        b"#HY000played server: login ok, no binary log here")


def node_yaml(work, plugins, port, tls):
    return (f"serverport: 0\nserveraddress: 127.0.0.1\ninterval: 3600\nnodename: sha2\n"
            f"plugins:\n  directories: [{plugins}]\n  cluster: none\n"
            f"  sources:\n    - plugin: source-binlog\n      config: {{host: 127.0.0.1, "
            f"port: {port}, user: cdc, password: '{PASSWORD}', server_id: 99, "
            f"checkpoint: '{os.path.join(work, 'x.cp')}', heartbeat_messages: false, "
            f"connect_timeout_ms: 3000, tls: {tls}}}\n"
            f"  sinks:\n    - {{plugin: sink-jsonl, records: [binlog.rows], reports: false, "
            f"config: {{path: '{os.path.join(work, 'x.jsonl')}'}}}}\n")


def probe(binary, work, plugins, port, tls):
    cfg = os.path.join(work, "sha2.yaml")
    with open(cfg, "w") as f:
        f.write(node_yaml(work, plugins, port, tls))
    p = subprocess.run([binary, "-c", cfg], capture_output=True, text=True, timeout=60)
    lines = [line for line in p.stderr.splitlines() if "start failed" in line]
    return p.returncode, (lines[0] if lines else p.stderr[-400:]), p.stderr


def main():
    binary, _, plugins = sys.argv[1:4]
    if shutil.which("openssl") is None:
        skip("openssl is not installed (scripts/deps.sh installs it)")
    work = tempfile.mkdtemp(prefix="mp-sha2-")
    make_certs(work, san="IP:127.0.0.1")
    pem = {name: os.path.join(work, name) for name in ("node.crt", "node.key")}

    # 1. The played server is what PyMySQL (a client of real MySQL 8) logs in to.
    # (PyMySQL 1.0.2 scrambles an auth switch's nonce with its final NUL: its fast path fails
    # there and MySQL, as the played server, asks for the password, so it needs TLS there.)
    for scene, tls in (("default", False), ("switch", True), ("native", False),
                       ("full", True)):
        server = Played(scene, pem)
        args = {"ssl": {"check_hostname": False, "verify_mode": ssl.CERT_NONE}} if tls else {}
        conn = pymysql.connect(host="127.0.0.1", port=server.port, user="cdc", password=PASSWORD,
                               autocommit=None, **args)
        conn.ping(reconnect=False)
        conn.close()
        check("login ok" in server.log, f"PyMySQL logs in to the played '{scene}' scene "
              f"(tls {tls}): {server.log}")

    # 2. mysqlprobe's client, on the same scenes.
    for scene, tls, want in (("default", "off", ["plugin caching_sha2_password",
                                                  "fast authentication"]),
                             ("switch", "off", ["plugin mysql_native_password",
                                                "switched to caching_sha2_password",
                                                "fast authentication"]),
                             ("native", "off", ["plugin mysql_native_password"]),
                             ("full", "required", ["tls True", "password over TLS"])):
        server = Played(scene, pem)
        code, line, stderr = probe(binary, work, plugins, server.port, tls)
        check(code != 0 and "login ok, no binary log here" in line and "login ok" in server.log
              and all(any(w in e for e in server.log) for w in want)
              and PASSWORD not in stderr,
              f"mysqlprobe logs in to the '{scene}' scene (tls {tls}): {server.log}; "
              f"then: {line[-90:]}")

    # 3. Full authentication without TLS: refused by the client, nothing more sent.
    server = Played("full", pem)
    code, line, stderr = probe(binary, work, plugins, server.port, "off")
    check(code != 0 and "sent over TLS only" in line and PASSWORD not in stderr and
          "password in clear" not in server.log and
          any("refused by the client" in e for e in server.log),
          f"full authentication without TLS is refused in one line: {line[-160:]}; server: "
          f"{server.log}")
    shutil.rmtree(work)


if __name__ == "__main__":
    main()

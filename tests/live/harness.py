# SPDX-License-Identifier: Apache-2.0
"""Test harness for live tests: a throwaway mariadbd on a loopback port, and a mysqlprobe
process with its HTTP endpoints. Real processes only; everything is removed afterwards."""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

SKIP = 77


def skip(why):
    print(f"SKIPPED: {why}")
    sys.exit(SKIP)


def require_live_sysbench():
    """Skips (visibly) unless a live capture with sysbench can run: root (CAP_NET_RAW on lo),
    PyMySQL, websocket-client and sysbench; answers sysbench's path."""
    if os.geteuid() != 0:
        skip("live capture on lo needs root (CAP_NET_RAW)")
    try:
        import pymysql  # noqa: F401
        import websocket  # noqa: F401
    except ImportError:
        skip("python3-pymysql and python3-websocket are needed (scripts/deps.sh installs them)")
    sysbench = shutil.which("sysbench")
    if sysbench is None:
        skip("sysbench is not installed (scripts/deps.sh installs it)")
    return sysbench


def free_port(host="127.0.0.1"):
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def check(cond, what):
    """A test's check that stops it at the first failure (tests that go on after a failure
    keep their own list)."""
    if not cond:
        raise AssertionError(what)
    print(f"ok: {what}", flush=True)


def make_certs(d, san=None):
    """Test certificates made with openssl in `d`: a CA (ca.crt/key), a node certificate
    (node.crt/key) signed by it, for 127.0.0.1..127.0.0.9 and localhost unless `san` (a
    subjectAltName value) says otherwise, and another CA that signed nothing (other.crt/key)."""
    def sh(*cmd):
        subprocess.run(cmd, check=True, capture_output=True)
    for ca in ("ca", "other"):
        sh("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
           "-nodes", "-keyout", f"{d}/{ca}.key", "-out", f"{d}/{ca}.crt", "-days", "2",
           "-subj", f"/CN=mysqlprobe test {ca}")
    sh("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
       "-keyout", f"{d}/node.key", "-out", f"{d}/node.csr", "-subj", "/CN=mysqlprobe node")
    with open(f"{d}/ext", "w") as f:
        f.write("subjectAltName=" + (san or "DNS:localhost," + ",".join(
            f"IP:127.0.0.{i}" for i in range(1, 10))) + "\n")
    sh("openssl", "x509", "-req", "-in", f"{d}/node.csr", "-CA", f"{d}/ca.crt", "-CAkey",
       f"{d}/ca.key", "-CAcreateserial", "-out", f"{d}/node.crt", "-days", "2", "-extfile",
       f"{d}/ext")


def mariadb_tls(work):
    """A mariadbd's TLS for 127.0.0.1 in `work` (readable by the server's user): certificates as
    make_certs makes them, the server's for 127.0.0.1 only. (pem paths by file name: ca.crt,
    other.crt, node.crt, node.key; the server's arguments). Skips without openssl."""
    if shutil.which("openssl") is None:
        skip("openssl is not installed (scripts/deps.sh installs it)")
    os.chmod(work, 0o755)
    make_certs(work, san="IP:127.0.0.1")
    pem = {name: os.path.join(work, name) for name in ("ca.crt", "other.crt", "node.crt",
                                                       "node.key")}
    return pem, [f"--ssl-ca={pem['ca.crt']}", f"--ssl-cert={pem['node.crt']}",
                 f"--ssl-key={pem['node.key']}"]


def cpu_seconds(pid):
    """User + system CPU seconds a running process has used so far (/proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_for(cond, timeout=20.0, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class MariaDB:
    """mariadbd with a fresh datadir on 127.0.0.1:<free port>, grants off (test only) unless
    grants=True (then root connects over `socket` only)."""

    def __init__(self, extra_args=(), grants=False):
        self.mariadbd = shutil.which("mariadbd") or "/usr/sbin/mariadbd"
        self.install = shutil.which("mariadb-install-db") or "/usr/bin/mariadb-install-db"
        if not os.path.exists(self.mariadbd) or not os.path.exists(self.install):
            skip("mariadbd is not installed (scripts/deps.sh installs mariadb-server)")
        self.extra = list(extra_args)
        self.grants = grants  # True: privileges checked (root over the socket only)
        self.dir = tempfile.mkdtemp(prefix="mp-mariadb-")
        self.port = free_port()
        self.socket = os.path.join(self.dir, "mysqld.sock")
        self.proc = None

    def __enter__(self):
        data = os.path.join(self.dir, "data")
        # a copy of one freshly installed datadir (0.2 s) instead of mariadb-install-db in
        # every server (2 s, about 30 servers in a test run)
        subprocess.run(["cp", "-a", "--sparse=always", self._template(), data], check=True)
        self.log = open(os.path.join(self.dir, "mariadbd.log"), "w")
        self.cmd = (
            [self.mariadbd, "--no-defaults", f"--datadir={data}", "--user=root",
             f"--socket={self.dir}/mysqld.sock", f"--port={self.port}", "--bind-address=127.0.0.1",
             "--skip-name-resolve", "--max-allowed-packet=64M",
             f"--pid-file={self.dir}/mysqld.pid", "--innodb-buffer-pool-size=64M",
             "--skip-log-bin"] + ([] if self.grants else ["--skip-grant-tables"]) + self.extra)
        self._launch()
        return self

    def _template(self):
        """The datadir mariadb-install-db makes, once per mariadbd build and user, shared by the
        test processes (made in a folder of its own, then renamed into place: atomic)."""
        st = os.stat(self.mariadbd)
        path = os.path.join(tempfile.gettempdir(),
                            f"mp-mariadb-template-{os.getuid()}-{st.st_size}-{int(st.st_mtime)}")
        if os.path.isdir(path):
            return path
        work = tempfile.mkdtemp(prefix="mp-mariadb-install-")
        subprocess.run([self.install, "--no-defaults", f"--datadir={work}/data", "--user=root",
                        "--skip-test-db", "--auth-root-authentication-method=normal"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            os.rename(f"{work}/data", path)
        except OSError:  # another test process put its own in place first: the same content
            pass
        shutil.rmtree(work, ignore_errors=True)
        return path

    def _launch(self):
        self.proc = subprocess.Popen(self.cmd, stdout=self.log, stderr=subprocess.STDOUT)

        def up():
            if self.proc.poll() is not None:
                raise AssertionError("mariadbd exited: " + open(self.log.name).read()[-2000:])
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return True
            except OSError:
                return False
        wait_for(up, 60, "mariadbd to listen")

    def kill9(self):
        """The server dies at once (SIGKILL), as in a crash; restart() brings it back."""
        self.proc.kill()
        self.proc.wait()

    def restart(self):
        """Starts the same server again on its datadir and port (crash recovery runs)."""
        self._launch()

    def __exit__(self, *exc):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class Redis:
    """redis-server on 127.0.0.1:<free port>, nothing saved to disk, its own folder."""

    def __init__(self):
        self.binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        if not os.path.exists(self.binary):
            skip("redis-server is not installed (scripts/deps.sh installs it)")
        self.dir = tempfile.mkdtemp(prefix="mp-redis-")
        self.port = free_port()
        self.proc = None

    def __enter__(self):
        self.log = open(os.path.join(self.dir, "redis.log"), "w")
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.dir], stdout=self.log, stderr=subprocess.STDOUT)

        def up():
            if self.proc.poll() is not None:
                raise AssertionError("redis-server exited: " + open(self.log.name).read()[-2000:])
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return True
            except OSError:
                return False
        wait_for(up, 20, "redis-server to listen")
        return self

    def command(self, *args):
        """One command over RESP; the reply's first line (enough for GET/SET/PUBLISH checks)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as c:
            msg = f"*{len(args)}\r\n" + "".join(f"${len(str(a).encode())}\r\n{a}\r\n"
                                                for a in args)
            c.sendall(msg.encode())
            data = b""
            while b"\r\n" not in data:
                data += c.recv(65536)
            head, _, rest = data.partition(b"\r\n")
            if head.startswith(b"$") and head != b"$-1":
                n = int(head[1:])
                while len(rest) < n + 2:
                    rest += c.recv(65536)
                return rest[:n].decode()
            return None if head == b"$-1" else head.decode()

    def __exit__(self, *exc):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class Probe:
    """mysqlprobe -c <generated config>; stderr kept; HTTP port read from its log."""

    def __init__(self, binary, yaml_text):
        self.dir = tempfile.mkdtemp(prefix="mp-probe-")
        self.cfg = os.path.join(self.dir, "probe.yaml")
        with open(self.cfg, "w") as f:
            f.write(yaml_text)
        self.binary = binary
        self.proc = None

    def __enter__(self):
        self.err = open(os.path.join(self.dir, "stderr"), "w+")
        self.proc = subprocess.Popen([self.binary, "-c", self.cfg], stdout=subprocess.DEVNULL,
                                     stderr=self.err)

        def running():
            if self.proc.poll() is not None:
                raise AssertionError("mysqlprobe exited: " + self.log())
            m = re.search(r"serving HTTP on [0-9.]+:(\d+)", self.log())
            return int(m.group(1)) if m and "host: running" in self.log() else None
        self.http_port = wait_for(running, 20, "mysqlprobe to start")
        return self

    def log(self):
        with open(self.err.name) as f:
            return f.read()

    def get(self, path):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}{path}", timeout=5) as r:
            return r.read().decode()

    def post(self, path):
        """A change of state (/config/update): POST."""
        req = urllib.request.Request(f"http://127.0.0.1:{self.http_port}{path}", method="POST",
                                     data=b"")
        with urllib.request.urlopen(req, timeout=5) as r:
            return json.loads(r.read())

    def metrics(self):
        out = {}
        for line in self.get("/metrics").splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                out[name] = int(value)
        return out

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(10)

    def __exit__(self, *exc):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.err.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class Recorder(threading.Thread):
    """Keeps every report a node's /collector sends (Python websocket-client), reconnecting
    while the node restarts. `node.addr` is its HTTP host:port."""

    def __init__(self, node):
        super().__init__(daemon=True)
        self.node, self.reports, self.stopping = node, [], False
        self.connected = threading.Event()
        self.start()

    def run(self):
        import websocket  # python3-websocket; the tests that record skip without it
        while not self.stopping:
            try:
                ws = websocket.create_connection(f"ws://{self.node.addr}/collector", timeout=1)
            except Exception:  # refused, or closed during the handshake (the node restarts)
                time.sleep(0.05)
                continue
            self.connected.set()
            while not self.stopping:
                try:
                    msg = ws.recv()
                except websocket.WebSocketTimeoutException:
                    continue
                except Exception:
                    break
                if not msg:
                    break
                self.reports.append(json.loads(msg))
            self.connected.clear()


class RabbitMQ:
    """rabbitmq-server (Debian's) on 127.0.0.1:<free port>, with its own node name, data and
    log folders in a world-writable temp folder (the server runs as the rabbitmq user) and its
    own epmd port; started without systemd, stopped (and its epmd) at the end. kill9() and
    start() again restart it on the same port and data, as after a crash. With tls=True it also
    listens for AMQP over TLS on `tls_port`, with a node certificate of make_certs() in
    `certs` (ca.crt verifies it, other.crt does not)."""

    def __init__(self, tls=False):
        self.server = "/usr/sbin/rabbitmq-server"
        if not os.path.exists(self.server):
            skip("rabbitmq-server is not installed (scripts/deps.sh installs it)")
        self.dir = tempfile.mkdtemp(prefix="mp-rabbit-")
        os.chmod(self.dir, 0o777)
        self.port = free_port()
        self.epmd = free_port()
        self.name = f"mp{self.port}"
        with open(os.path.join(self.dir, "enabled_plugins"), "w") as f:
            f.write("[].\n")
        os.chmod(os.path.join(self.dir, "enabled_plugins"), 0o666)
        self.env = dict(os.environ,
                        RABBITMQ_NODENAME=f"{self.name}@localhost",
                        RABBITMQ_NODE_IP_ADDRESS="127.0.0.1",
                        RABBITMQ_NODE_PORT=str(self.port),
                        RABBITMQ_DIST_PORT=str(free_port()),
                        RABBITMQ_MNESIA_BASE=os.path.join(self.dir, "mnesia"),
                        RABBITMQ_LOG_BASE=os.path.join(self.dir, "log"),
                        RABBITMQ_ENABLED_PLUGINS_FILE=os.path.join(self.dir, "enabled_plugins"),
                        RABBITMQ_FEATURE_FLAGS_FILE=os.path.join(self.dir, "feature_flags"),
                        ERL_EPMD_PORT=str(self.epmd))
        self.tls_port = None
        self.certs = None
        if tls:
            self.certs = os.path.join(self.dir, "certs")
            os.mkdir(self.certs)
            make_certs(self.certs)
            for name in os.listdir(self.certs):  # the broker runs as the rabbitmq user
                os.chmod(os.path.join(self.certs, name), 0o644)
            os.chmod(self.certs, 0o755)
            self.tls_port = free_port()
            conf = os.path.join(self.dir, "rabbitmq.conf")
            with open(conf, "w") as f:
                f.write(f"listeners.ssl.default = 127.0.0.1:{self.tls_port}\n"
                        f"ssl_options.cacertfile = {self.certs}/ca.crt\n"
                        f"ssl_options.certfile = {self.certs}/node.crt\n"
                        f"ssl_options.keyfile = {self.certs}/node.key\n"
                        "ssl_options.verify = verify_none\n"
                        "ssl_options.fail_if_no_peer_cert = false\n")
            os.chmod(conf, 0o644)
            self.env["RABBITMQ_CONFIG_FILE"] = conf
        self.proc = None
        self.out = None

    def start(self, timeout=60):
        self.out = open(os.path.join(self.dir, "server.out"), "a")
        self.proc = subprocess.Popen([self.server], env=self.env, stdout=self.out,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        t0 = time.time()

        def up():
            if self.proc.poll() is not None:
                raise AssertionError("rabbitmq-server exited: " + self.log()[-3000:])
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return True
            except OSError:
                return False
        wait_for(up, timeout, "rabbitmq-server to listen")
        print(f"rabbitmq-server on 127.0.0.1:{self.port} in {time.time() - t0:.1f} s")
        return self

    def log(self):
        with open(os.path.join(self.dir, "server.out")) as f:
            return f.read()

    def beam_pids(self):
        """The Erlang VM of this broker (it runs under su, in a session of its own): the
        beam.smp whose environment names this node."""
        out = subprocess.run(["pgrep", "-f", "beam.smp"], capture_output=True, text=True).stdout
        want = f"RABBITMQ_NODENAME={self.name}@localhost".encode()
        pids = []
        for pid in out.split():
            try:
                with open(f"/proc/{pid}/environ", "rb") as f:
                    if want in f.read().split(b"\0"):
                        pids.append(int(pid))
            except OSError:
                pass
        return pids

    def _gone(self):
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        wait_for(lambda: not self.beam_pids(), 30, "the broker's beam to exit")
        self.out.close()

    def kill9(self):
        """A crash: SIGKILL to the Erlang VM, no shutdown."""
        for pid in self.beam_pids():
            os.kill(pid, signal.SIGKILL)
        self._gone()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            for pid in self.beam_pids():
                os.kill(pid, signal.SIGTERM)
            self._gone()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        try:
            self.stop()
        finally:
            subprocess.run(["epmd", "-port", str(self.epmd), "-kill"], env=self.env,
                           capture_output=True)
            # epmd refuses -kill while a node is still registered (a broker that would not
            # stop): its own epmd is found by its port and killed, never another one.
            want = f"ERL_EPMD_PORT={self.epmd}".encode()
            out = subprocess.run(["pgrep", "-x", "epmd"], capture_output=True, text=True).stdout
            for pid in out.split():
                try:
                    with open(f"/proc/{pid}/environ", "rb") as f:
                        if want in f.read().split(b"\0"):
                            os.kill(int(pid), signal.SIGKILL)
                except OSError:
                    pass
            shutil.rmtree(self.dir, ignore_errors=True)


# ---- AMQP clients for tests (python3-pika, imported by the tests that use a broker) ----------

def amqp_channel(broker):
    """A pika connection and channel to the test broker."""
    import pika
    conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", broker.port))
    return conn, conn.channel()


def amqp_bind(broker, exchange, queue, key="#"):
    """A durable topic exchange and queue bound with `key`, the queue emptied."""
    conn, ch = amqp_channel(broker)
    ch.exchange_declare(exchange, "topic", durable=True)
    ch.queue_declare(queue, durable=True)
    ch.queue_bind(queue, exchange, key)
    ch.queue_purge(queue)
    conn.close()


def amqp_rebind(broker, exchange, queue, key="#"):
    """Binds the queue again, its messages kept: what an operator does when a broker lost a
    binding (RabbitMQ can, recovering from a crash under load: rabbitmq-server #1873)."""
    conn, ch = amqp_channel(broker)
    ch.queue_bind(queue, exchange, key)
    conn.close()


def amqp_drain(broker, queue):
    """Every message in the queue, as (method, properties, body), taken off it."""
    conn, ch = amqp_channel(broker)
    out = []
    while True:
        method, props, body = ch.basic_get(queue, auto_ack=True)
        if method is None:
            break
        out.append((method, props, body))
    conn.close()
    return out


def amqp_depth(broker, queue):
    """How many messages wait in the queue."""
    conn, ch = amqp_channel(broker)
    n = ch.queue_declare(queue, passive=True).method.message_count
    conn.close()
    return n

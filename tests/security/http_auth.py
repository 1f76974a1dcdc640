# SPDX-License-Identifier: Apache-2.0
"""The control plane's access rules, tried as an attacker on the same network would
(docs/security.md), against a real mysqlprobe process on loopback:

 - tokens: every route and websocket asks for the role it needs (401 without a token or with a
   wrong one, 403 with a role too low), /health stays open, tokens in URLs are refused on HTTP
   routes (websocket upgrades may use ?access_token=, for browsers), changes of state are POSTs;
 - protected mode (no token configured): this machine's callers administer the node, but not
   through a page of another site (Origin) or under another name (Host: DNS rebinding); callers
   from another address (a network namespace of the test's own) read reports and nothing more;
 - secrets never reach the log.
Usage: http_auth.py MYSQLPROBE"""
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "live"))
from harness import Probe, skip  # noqa: E402
from sechttp import check, finish, ws_upgrade  # noqa: E402

BINARY = sys.argv[1]



def call(port, method, path, token=None, headers=None, body=None, host="127.0.0.1"):
    """(status, body text) of one request on its own connection."""
    c = http.client.HTTPConnection(host, port, timeout=10)
    h = dict(headers or {})
    if token is not None:
        h["Authorization"] = f"Bearer {token}"
    c.request(method, path, body=body if body is not None else (b"" if method == "POST" else None),
              headers=h)
    r = c.getresponse()
    out = r.status, r.read().decode(errors="replace")
    c.close()
    return out


def ws_status(port, path, token=None):
    """The HTTP status a websocket upgrade gets (101 when accepted)."""
    s, status, _ = ws_upgrade(port, path, token)
    s.close()
    return status


READ, PEER, ADMIN = "read-token-0123456789ab", "peer-token-0123456789ab", "admin-token-0123456789"
TOKENS_YAML = f"""serverport: 0
serveraddress: 127.0.0.1
interval: 3600
auth:
  tokens:
    - {{name: dashboards, role: read, token: "{READ}"}}
    - {{name: nodes, role: peer, token: "{PEER}"}}
    - {{name: ops, role: admin, file: "{{admin_file}}"}}
plugins:
  cluster: none
  sinks: [sink-websocket]
"""


def tokens_mode(work):
    admin_file = os.path.join(work, "admin.token")
    with open(admin_file, "w") as f:
        f.write(ADMIN + "\n")
    os.chmod(admin_file, 0o600)
    with Probe(BINARY, TOKENS_YAML.replace("{admin_file}", admin_file)) as p:
        port = p.http_port
        check(call(port, "GET", "/health")[0] == 200, "tokens: /health stays open")
        st, body = call(port, "GET", "/metrics")
        check(st == 401 and "token" in body, f"tokens: /metrics without a token: 401 ({st})")
        check(call(port, "GET", "/metrics", "wrong-token-0123456789")[0] == 401,
              "tokens: /metrics with a wrong token: 401")
        check(call(port, "GET", "/metrics", headers={"Authorization": f"Basic {READ}"})[0] == 401,
              "tokens: another scheme than Bearer: 401")
        check(call(port, "GET", f"/metrics?access_token={READ}")[0] == 401,
              "tokens: a token in the URL of an HTTP route is not accepted: 401")
        check(call(port, "GET", f"/metrics?access_token={READ}", READ)[0] == 401,
              "tokens: a token in the URL is refused even beside a good header: 401")
        check(call(port, "GET", f"/metrics?access%5Ftoken={READ}", READ)[0] == 401,
              "tokens: a percent-encoded access%5Ftoken in the URL is the same: 401")
        for tok, name in ((READ, "read"), (PEER, "peer"), (ADMIN, "admin")):
            check(call(port, "GET", "/metrics", tok)[0] == 200, f"tokens: /metrics as {name}: 200")
        check(call(port, "POST", "/config/update?interval=2", READ)[0] == 403,
              "tokens: /config/update as read: 403")
        check(call(port, "POST", "/config/update?interval=2", PEER)[0] == 403,
              "tokens: /config/update as peer: 403")
        check(call(port, "POST", "/config/update?interval=2")[0] == 401,
              "tokens: /config/update without a token, from this machine too: 401")
        check(call(port, "GET", "/config/update?interval=2", ADMIN)[0] == 405,
              "tokens: /config/update by GET: 405 (changes are POSTs)")
        st, body = call(port, "POST", "/config/update", ADMIN, body=b"interval=2",
                        headers={"Content-Type": "application/x-www-form-urlencoded"})
        check(st == 200 and json.loads(body).get("interval_ms") == 2000,
              f"tokens: /config/update as admin, keys in a form body: 200 ({st} {body})")
        check(ws_status(port, "/collector") == 401, "tokens: /collector without a token: 401")
        check(ws_status(port, "/collector", READ) == 101,
              "tokens: /collector with a read token in the header: 101")
        check(ws_status(port, f"/collector?access_token={READ}") == 101,
              "tokens: /collector with ?access_token= (browsers cannot send headers): 101")
        check(ws_status(port, f"/collector?access%5Ftoken={READ}") == 101,
              "tokens: /collector with a percent-encoded ?access%5Ftoken=: 101")
        check(ws_status(port, "/collector?access_token=wrong-token-0123456789") == 401,
              "tokens: /collector with a wrong ?access_token=: 401")
        m = call(port, "GET", "/metrics", ADMIN)[1]
        failures_line = [ln for ln in m.splitlines()
                         if ln.startswith("mysqlprobe_http_auth_failures_total ")]
        check(bool(failures_line) and int(failures_line[0].split()[1]) >= 6,
              f"tokens: refusals are counted ({failures_line})")
        log = p.log()
        check("dashboards (read), nodes (peer), ops (admin)" in log,
              "tokens: the start-up log names the tokens and their roles")
        check("by ops (" in log, "tokens: a change is logged with who made it")
        check(all(t not in log for t in (READ, PEER, ADMIN)), "tokens: no secret in the log")
    bad = Probe(BINARY, TOKENS_YAML.replace("{admin_file}", os.path.join(work, "none")))
    r = subprocess.run([BINARY, "--check", "-c", bad.cfg], capture_output=True, text=True)
    check(r.returncode == 2 and "cannot read the token file" in r.stderr,
          f"tokens: --check refuses a missing token file ({r.stderr.strip()})")
    shutil.rmtree(bad.dir, ignore_errors=True)


PROTECTED_YAML = """serverport: 0
serveraddress: {addr}
interval: 3600
plugins:
  cluster: none
  sinks: [sink-websocket]
"""


def protected_mode():
    with Probe(BINARY, PROTECTED_YAML.format(addr="127.0.0.1")) as p:
        port = p.http_port
        check("protected mode" in p.log(), "protected: the start-up log says so")
        check(call(port, "POST", "/config/update?interval=3")[0] == 200,
              "protected: this machine's caller changes the interval: 200")
        st, _ = call(port, "POST", "/config/update?interval=4",
                     headers={"Origin": "http://evil.example"})
        check(st == 401, f"protected: the same POST from a page of another site (Origin): {st}")
        st, _ = call(port, "POST", "/config/update?interval=4",
                     headers={"Host": "evil.example:8667"})
        check(st == 401, f"protected: the same POST under another name (DNS rebinding): {st}")
        check(call(port, "POST", "/config/update?interval=4",
                   headers={"Origin": f"http://localhost:{port}"})[0] == 200,
              "protected: a page served from this machine may: 200")


def protected_from_another_address():
    """A client in a network namespace of the test's own reaches the node through a veth pair:
    its address is not loopback."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        print("SKIPPED part: protected mode from another address (needs root and iproute2)")
        return
    ns, a, b = f"mpsec{os.getpid()}", f"mpsa{os.getpid() % 10000}", f"mpsb{os.getpid() % 10000}"
    sh = lambda *c: subprocess.run(c, check=True, capture_output=True)  # noqa: E731
    try:
        sh("ip", "netns", "add", ns)
        sh("ip", "link", "add", a, "type", "veth", "peer", "name", b)
        sh("ip", "link", "set", b, "netns", ns)
        sh("ip", "addr", "add", "10.251.7.1/30", "dev", a)
        sh("ip", "link", "set", a, "up")
        sh("ip", "netns", "exec", ns, "ip", "addr", "add", "10.251.7.2/30", "dev", b)
        sh("ip", "netns", "exec", ns, "ip", "link", "set", b, "up")
        sh("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
        with Probe(BINARY, PROTECTED_YAML.format(addr="10.251.7.1")) as p:
            client = ("import http.client,sys\n"
                      "c=http.client.HTTPConnection('10.251.7.1',%d,timeout=5)\n"
                      "c.request(sys.argv[1],sys.argv[2],body=b'' if sys.argv[1]=='POST' else None)\n"
                      "print(c.getresponse().status)\n") % p.http_port

            def remote(method, path):
                r = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", client,
                                    method, path], capture_output=True, text=True, timeout=20)
                return int(r.stdout.strip() or 0)
            check(remote("GET", "/metrics") == 200,
                  "protected: a caller from another address reads /metrics: 200")
            check(remote("POST", "/config/update?interval=5") == 401,
                  "protected: a caller from another address cannot change the node: 401")
    finally:
        subprocess.run(["ip", "link", "del", a], capture_output=True)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def main():
    if not os.path.exists(BINARY):
        skip(f"no binary at {BINARY}")
    import tempfile
    work = tempfile.mkdtemp(prefix="mp-sec-auth-")
    try:
        tokens_mode(work)
        protected_mode()
        protected_from_another_address()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    finish()


main()

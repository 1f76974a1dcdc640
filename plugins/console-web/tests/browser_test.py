#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""console-web in a real browser: Debian's chromium, headless, driven by chromedriver through
python3-selenium, against real nodes.

1. Nodes replaying each bundled capture: the numbers on the page (every template's count,
   errors, rows, p99, total time) equal the offline report's (`mysqlprobe -r FILE`); sorting by
   a column and filtering by text work; a template's detail opens with its sample and errors.
2. Tokens: the page asks for one, refuses a wrong one, and a read token sees the replication
   panel (monitor-mysql loaded) without any operation button; an admin token sees them.
3. A live capture forced to drop (tiny kernel buffer, a burst on its port): the capture panel
   turns red and shows the node's own drop counters.
4. A narrow window (390 px) still reads: nothing wider than the screen but the scrolling tables.
5. Against a monitored pair of real MariaDB servers (GTID replication, monitor-mysql's test
   topology): a switchover started from the page, confirmed in its dialog, succeeds, and the
   page then draws the new master.
Screenshots go to the folder given as the third argument (CI artefacts).

Usage: browser_test.py MYSQLPROBE SOURCE_DIR SCREENSHOT_DIR"""
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "..", "tests", "live"))
from harness import Probe, free_port, skip, wait_for  # noqa: E402

try:
    from selenium import webdriver
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select
except ImportError:
    skip("python3-selenium is not installed (scripts/deps.sh installs it)")
for tool in ("/usr/bin/chromium", "/usr/bin/chromedriver"):
    if not os.path.exists(tool):
        skip(f"{tool} is not installed (scripts/deps.sh installs chromium and chromium-driver)")

binary = os.path.abspath(sys.argv[1])
source = os.path.abspath(sys.argv[2])
shots = os.path.abspath(sys.argv[3])
os.makedirs(shots, exist_ok=True)
READ_TOKEN = "read-token-0123456789abcdef"
ADMIN_TOKEN = "admin-token-0123456789abcdef"
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what, flush=True)


def browser(width=1400, height=1000):
    o = webdriver.ChromeOptions()
    o.binary_location = "/usr/bin/chromium"
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              f"--window-size={width},{height}", "--no-first-run", "--disable-extensions"):
        o.add_argument(a)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=o)


def node_yaml(port, capture_cfg, extra="", cluster="none"):
    capture = f"  capture: {capture_cfg}\n" if capture_cfg else ""
    return f"""serveraddress: 127.0.0.1
serverport: {port}
interval: 1
slave: {"true" if capture_cfg else "false"}
probe: {{port: 3306}}
auth:
  tokens:
    - {{name: viewer, role: read, token: "{READ_TOKEN}"}}
    - {{name: ops, role: admin, token: "{ADMIN_TOKEN}"}}
  cluster_token: ops
plugins:
{capture}  cluster: {cluster}
  sinks: [{{plugin: console-web, config: {{window_intervals: 3600}}}}]
{extra}"""


def offline(pcap):
    out = subprocess.run([binary, "-r", pcap, "--port", "3306", "--format", "json"],
                         capture_output=True, check=True).stdout
    return json.loads(out)


@contextlib.contextmanager
def console(node, token, width=1400, height=1000):
    """A browser on the node's console, signed in with `token`."""
    d = browser(width, height)
    try:
        d.get(f"http://127.0.0.1:{node.http_port}/")
        sign_in(d, token)
        yield d
    finally:
        d.quit()


def post_admin(probe, path, **params):
    """A change of state with the admin token (form parameters in the body; `node` may be one)."""
    req = urllib.request.Request(
        f"http://127.0.0.1:{probe.http_port}{path}", method="POST",
        data=urllib.parse.urlencode(params).encode(),
        headers={"Authorization": "Bearer " + ADMIN_TOKEN,
                 "Content-Type": "application/x-www-form-urlencoded"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return r.read()


def click(d, selector):
    """Clicks what `selector` finds now (panels are drawn again while a test runs, so a found
    element can go stale before a separate click); after the script returns, so that a
    confirmation dialog it opens does not block the call."""
    d.execute_script("const e = document.querySelector(arguments[0]);"
                     "if (!e) throw new Error('no ' + arguments[0]);"
                     "setTimeout(() => e.click(), 0);", selector)


def cell(d, key):
    """The label, value and class of the panel cell `key`, read by one script (None if absent):
    panels are drawn again at each update, so an element found by one call can be gone
    (stale) by the next."""
    return d.execute_script("""const e = document.querySelector('[data-key=' + arguments[0] + ']');
        return e && {k: e.querySelector('.k').textContent, v: e.querySelector('.v').textContent,
                     cls: e.className};""", key)


def open_alert(d):
    try:
        return d.switch_to.alert
    except NoAlertPresentException:
        return None


def sign_in(d, token):
    wait_for(lambda: d.find_element(By.ID, "login").is_displayed(), 10, "the token form")
    d.find_element(By.ID, "token").send_keys(token)
    d.find_element(By.CSS_SELECTOR, "#login button").click()


def rows(d):
    """The table as the page shows it, keyed by (id, server, schema)."""
    data = d.execute_script("""
      return Array.from(document.querySelectorAll('#templates tbody tr')).map(tr => ({
        id: tr.dataset.id, server: tr.dataset.server, schema: tr.dataset.schema,
        text: tr.cells[0].textContent,
        cells: Object.fromEntries(Array.from(tr.querySelectorAll('td[data-col]'))
                                  .map(td => [td.dataset.col, td.textContent]))}));""")
    return data


def num(text):
    return float(text.replace(",", ""))


def queries_node(pcap, name):
    """Check 1 on one bundled capture."""
    want = offline(pcap)
    expected = {(t["id"], t["server"], t["schema"]): t for t in want["templates"]}
    port = free_port()
    cfg = "{plugin: capture-pcap, config: {file: %s}}" % pcap
    with Probe(binary, node_yaml(port, cfg)) as node:
        url = f"http://127.0.0.1:{node.http_port}/"
        d = browser()
        try:
            d.get(url)
            # anonymous callers may load the page but not the data: the page asks for a token
            sign_in(d, "wrong-token-0123456789abcdef")
            wait_for(lambda: "not accepted" in d.find_element(By.ID, "login-error").text, 10,
                     "a wrong token refused")
            sign_in(d, READ_TOKEN)
            wait_for(lambda: d.find_element(By.ID, "main").is_displayed(), 10, "the console")
            check(d.find_element(By.ID, "who").text == "viewer (read)",
                  f"{name}: who shows the token's name and role")
            check(READ_TOKEN not in node.log(), f"{name}: the token is never logged")
            Select(d.find_element(By.ID, "limit")).select_by_visible_text("2000")
            # the whole capture is in the window once the node has reported it
            wait_for(lambda: len(rows(d)) == len(expected), 20,
                     f"{name}: {len(expected)} templates on the page")
            got = rows(d)
            compared = 0
            for r in got:
                t = expected.get((r["id"], r["server"], r["schema"]))
                check(t is not None, f"{name}: template {r['id']} is in the offline report")
                if t is None:
                    continue
                c = r["cells"]
                check(num(c["count"]) == t["count"], f"{name}: {t['fingerprint'][:40]} count")
                check(num(c["errors"]) == t["errors"], f"{name}: {t['fingerprint'][:40]} errors")
                check(num(c["rows"]) == t["rows_returned"] + t["rows_affected"],
                      f"{name}: {t['fingerprint'][:40]} rows")
                check(r["text"] == t["fingerprint"], f"{name}: fingerprint text")
                if t["count"] > t["errors"] + t["lost"]:
                    p99 = t["latency_us"]["p99"] / 1000
                    check(abs(num(c["p99"]) - p99) <= 0.0005,
                          f"{name}: {t['fingerprint'][:40]} p99 {c['p99']} vs {p99}")
                    total = t["latency_us"]["sum"] / 1e6
                    check(abs(num(c["total"]) - total) <= 0.0005,
                          f"{name}: {t['fingerprint'][:40]} total {c['total']} vs {total}")
                compared += 1
            check(compared == len(expected), f"{name}: every template compared")
            d.save_screenshot(os.path.join(shots, f"{name}-queries.png"))

            # sorting by a column header: counts descending
            d.find_element(By.CSS_SELECTOR, "th[data-sort=count]").click()
            wait_for(lambda: "sorted" in d.find_element(By.CSS_SELECTOR, "th[data-sort=count]")
                     .get_attribute("class"), 10, "the count column sorted")
            wait_for(lambda: (lambda cs: cs == sorted(cs, reverse=True) and len(cs) > 1)(
                [num(r["cells"]["count"]) for r in rows(d)]), 10, f"{name}: rows by count")
            Select(d.find_element(By.ID, "sort")).select_by_value("errors")
            wait_for(lambda: (lambda cs: cs == sorted(cs, reverse=True))(
                [num(r["cells"]["errors"]) for r in rows(d)]), 10, f"{name}: rows by errors")

            # filtering by text
            word = "insert" if any("insert" in t["fingerprint"] for t in want["templates"]) \
                else want["templates"][0]["fingerprint"].split()[0]
            matching = [t for t in want["templates"] if word.lower() in t["fingerprint"].lower()]
            d.find_element(By.ID, "filter").send_keys(word.upper())
            wait_for(lambda: len(rows(d)) == len(matching), 10,
                     f"{name}: {len(matching)} rows matching {word!r}")
            check(all(word in r["text"].lower() for r in rows(d)), f"{name}: filter keeps matches")
            d.find_element(By.ID, "filter").clear()
            d.execute_script("document.getElementById('filter').dispatchEvent(new Event('input'))")
            wait_for(lambda: len(rows(d)) == len(expected), 10, f"{name}: filter cleared")
            # every control change above asked for an update: still one update loop (about one
            # update a second), not one more loop per change
            u0 = d.execute_script("return window.mpConsole.updates")
            time.sleep(4)
            u1 = d.execute_script("return window.mpConsole.updates")
            check(u1 - u0 <= 6, f"{name}: one update loop ({u1 - u0} updates in 4 s)")

            # a template's detail: the one with the most errors, else the first
            t = max(want["templates"], key=lambda t: (t["errors"], t["count"]))
            # the table is drawn again every second: find and click in one step
            click(d, f"#templates tr[data-id='{t['id']}']")
            wait_for(lambda: d.find_element(By.ID, "detail").is_displayed(), 10, "the detail")
            wait_for(lambda: d.find_element(By.ID, "detail-fingerprint").text == t["fingerprint"],
                     10, f"{name}: the detail's template")
            sample = d.execute_script(
                "return document.querySelector('#detail-sample pre').textContent")
            check(sample == t["sample"], f"{name}: the detail shows the sample")
            if t["errors"]:
                shown = d.execute_script("""return Array.from(document.querySelectorAll(
                    '#detail-errors tbody tr')).map(tr => [tr.cells[0].textContent,
                    tr.cells[1].textContent, tr.cells[3].textContent]);""")
                want_codes = sorted([c, n, t["error_details"][c]["message"]]
                                    for c, n in t["errors_by_code"].items())
                check(sorted([c, num(n), m] for c, n, m in shown) ==
                      sorted([c, float(n), m] for c, n, m in want_codes),
                      f"{name}: the detail's errors by code and messages")
            clients = d.execute_script(
                "return document.querySelectorAll('#detail-clients tbody tr').length")
            check(clients == len(t["clients"]), f"{name}: the detail's clients")
            d.save_screenshot(os.path.join(shots, f"{name}-detail.png"))
            renders = d.execute_script("return window.mpConsole.renderMs")
            print(f"{name}: {len(expected)} templates, {len(renders)} updates, "
                  f"render median {sorted(renders)[len(renders) // 2]:.1f} ms", flush=True)

            # a narrow window still reads: only the tables' own boxes scroll sideways
            d.set_window_size(390, 844)
            time.sleep(1.5)
            widths = d.execute_script(
                "return [document.documentElement.scrollWidth, window.innerWidth]")
            check(widths[0] <= widths[1] + 1, f"{name}: narrow page fits ({widths})")
            d.save_screenshot(os.path.join(shots, f"{name}-narrow.png"))
        finally:
            d.quit()


def roles_node():
    """Check 2: the replication panel's operations are for admins only."""
    dead = free_port()  # nothing listens there: the instance is shown unreachable
    port = free_port()
    extra = f"""  sources:
    - {{plugin: monitor-mysql, config: {{instances: ["db1=127.0.0.1:{dead}", "db2=127.0.0.1:{dead + 1 if dead < 65535 else dead - 1}"], connect_timeout_ms: 200}}}}
"""
    cfg = "{plugin: capture-pcap, config: {file: %s}}" % os.path.join(
        source, "tests/data/pcap/edge_cases_small.pcap")
    with Probe(binary, node_yaml(port, cfg, extra)) as node:
        for token, admin in ((READ_TOKEN, False), (ADMIN_TOKEN, True)):
            with console(node, token) as d:
                wait_for(lambda: d.find_element(By.ID, "replication").is_displayed(), 15,
                         "the replication panel")
                wait_for(lambda: len(d.find_elements(By.CSS_SELECTOR, "#repl-nodes tbody tr"))
                         == 2, 10, "both instances listed")
                wait_for(lambda: len(d.find_elements(By.CSS_SELECTOR, "#topology-svg g")) == 2,
                         10, "both instances drawn")
                wait_for(lambda: "records_accepted_total" in
                         d.find_element(By.ID, "metrics").text, 10, "the records panel")
                buttons = d.find_elements(By.CSS_SELECTOR, "#replication button[data-op]")
                if admin:
                    check(any(b.get_attribute("data-op") == "failover" for b in buttons),
                          "an admin sees the failover operation")
                else:
                    check(buttons == [], "a read token sees no operation button")
                d.execute_script("document.getElementById('replication').scrollIntoView()")
                d.save_screenshot(os.path.join(
                    shots, f"replication-{'admin' if admin else 'read'}.png"))


def cluster_nodes():
    """The cluster panel: a static master with one slave, joined by hand."""
    pcap = os.path.join(source, "tests/data/pcap/sysbench_text_rw_2t_20tx.pcap")
    want = offline(pcap)
    cfg = "{plugin: capture-pcap, config: {file: %s}}" % pcap
    with Probe(binary, node_yaml(free_port(), cfg, cluster="cluster-static")) as slave, \
            Probe(binary, node_yaml(free_port(), None, cluster="cluster-static")) as master:
        post_admin(master, "/cluster/join", addr=f"127.0.0.1:{slave.http_port}")
        with console(master, READ_TOKEN) as d:
            wait_for(lambda: d.find_element(By.ID, "cluster").is_displayed(), 15,
                     "the cluster panel")
            addr = f"127.0.0.1:{slave.http_port}"

            def slave_row():
                return d.execute_script("""return Array.from(document.querySelectorAll(
                    '#cluster-nodes tbody tr')).map(tr => Object.fromEntries(Array.from(
                    tr.cells).map(td => [td.dataset.col, td.textContent])));""")
            wait_for(lambda: any(r.get("addr") == addr and r.get("state") == "up" and
                                 int(r.get("reports_received") or 0) > 0 for r in slave_row()),
                     20, "the slave listed up with its reports")
            check("self.role master" in d.find_element(By.ID, "cluster-self").text,
                  "the panel says this node is the master")
            # the master's console shows the slave's traffic, merged
            Select(d.find_element(By.ID, "limit")).select_by_visible_text("2000")
            wait_for(lambda: len(rows(d)) == len(want["templates"]), 20,
                     "the slave's templates on the master's console")
            total = sum(num(r["cells"]["count"]) for r in rows(d))
            check(total == sum(t["count"] for t in want["templates"]),
                  "the master's window counts every execution of the slave's capture once")
            d.execute_script("document.getElementById('cluster').scrollIntoView()")
            d.save_screenshot(os.path.join(shots, "cluster-static.png"))


def drops_node():
    """Check 3: a capture that drops turns the panel red."""
    port = free_port()
    target = free_port()
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", target))
    srv.listen(4)

    def sink():
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return
            threading.Thread(target=lambda: [None for _ in iter(lambda: c.recv(1 << 20), b"")],
                             daemon=True).start()
    threading.Thread(target=sink, daemon=True).start()
    cfg = "{plugin: capture-pcap, config: {buffer_mb: 1, batch_ms: 1000}}"
    yaml = node_yaml(port, cfg).replace(
        "probe: {port: 3306}", f"probe: {{device: lo, port: {target}}}") + \
        "stream: {ring_kb: 64}\n"
    with Probe(binary, yaml) as node:
        with console(node, READ_TOKEN) as d:
            wait_for(lambda: d.find_element(By.ID, "main").is_displayed(), 10, "the console")
            check("bad" not in d.find_element(By.ID, "capture").get_attribute("class"),
                  "the capture panel is not red before drops")

            def dropped():
                m = urllib.request.Request(f"http://127.0.0.1:{node.http_port}/metrics",
                                           headers={"Authorization": "Bearer " + READ_TOKEN})
                text = urllib.request.urlopen(m, timeout=5).read().decode()
                total = 0
                for line in text.splitlines():
                    if line.startswith(("mysqlprobe_capture_pcap_kernel_dropped",
                                        "mysqlprobe_capture_pcap_interface_dropped",
                                        "mysqlprobe_host_probe_dropped")):
                        total += int(float(line.rsplit(" ", 1)[1]))
                return total

            blob = b"x" * (1 << 20)
            deadline = time.time() + 30
            while dropped() == 0 and time.time() < deadline:
                with socket.create_connection(("127.0.0.1", target)) as c:
                    for _ in range(200):
                        c.sendall(blob)
            check(dropped() > 0, "the burst made the capture drop")
            wait_for(lambda: "bad" in d.find_element(By.ID, "capture").get_attribute("class"),
                     15, "the capture panel red")
            shown = num(cell(d, "drops_window")["v"])
            check(shown > 0, "the drops are counted on the page")
            check("drops" in d.find_element(By.ID, "capture-status").text,
                  "the badge says drops")
            d.save_screenshot(os.path.join(shots, "capture-drops.png"))
        srv.close()


def switchover_node():
    """Check 5: a switchover from the page."""
    sys.path.insert(0, os.path.join(source, "plugins", "monitor-mysql", "tests"))
    import monitor_test as mt  # its servers' settings, accounts and SQL helper
    from harness import MariaDB

    def status(node):
        req = urllib.request.Request(f"http://127.0.0.1:{node.http_port}/mysql/status",
                                     headers={"Authorization": "Bearer " + ADMIN_TOKEN})
        with urllib.request.urlopen(req, timeout=10) as r:
            return {n["name"]: n for n in json.loads(r.read())["nodes"]}

    with MariaDB(mt.server_args(1), grants=True) as a, MariaDB(mt.server_args(2), grants=True) as b:
        for db in (a, b):
            mt.prepare_users(db)
        state = os.path.join(shots, "monitor-state.json")
        if os.path.exists(state):
            os.unlink(state)
        extra = (f"  sources:\n    - {{plugin: monitor-mysql, config: {{instances: "
                 f"['a=127.0.0.1:{a.port}', 'b=127.0.0.1:{b.port}'], user: mon, "
                 f"password: {mt.PASSWORDS['mon']}, repl_user: repl, "
                 f"repl_password: {mt.PASSWORDS['repl']}, interval_ms: 200, "
                 f"connect_timeout_ms: 300, max_lag_s: 5, state_file: '{state}'}}}}\n")
        cfg = "{plugin: capture-pcap, config: {file: %s}}" % os.path.join(
            source, "tests/data/pcap/edge_cases_small.pcap")
        with Probe(binary, node_yaml(free_port(), cfg, extra)) as node:
            wait_for(lambda: {n: s["state"] for n, s in status(node).items()} ==
                     {"a": "UNREGISTERED", "b": "UNREGISTERED"}, 30, "both servers polled")
            post_admin(node, "/mysql/register", node="a", role="master")
            post_admin(node, "/mysql/register", node="b", role="standby")
            post_admin(node, "/mysql/activate", node="b")
            wait_for(lambda: {n: s["state"] for n, s in status(node).items()} ==
                     {"a": "OK", "b": "OK"}, 30, "a master and its standby OK")
            mt.sql(a, "CREATE DATABASE app")
            with console(node, ADMIN_TOKEN) as d:
                wait_for(lambda: d.find_elements(
                    By.CSS_SELECTOR, "button[data-op=switchover][data-node=b]"), 20,
                    "the switchover button for b")
                wait_for(lambda: d.find_elements(
                    By.CSS_SELECTOR, "#topology-svg g[data-node=a][data-role=master]"), 10,
                    "a drawn as the master")
                click(d, "button[data-op=switchover][data-node=b]")
                alert = wait_for(lambda: open_alert(d), 5, "the confirmation dialog")
                check("switchover b" in alert.text, f"the dialog names the operation ({alert.text})")
                alert.accept()
                wait_for(lambda: d.find_elements(By.CSS_SELECTOR, "#repl-last[data-ok='1']"), 90,
                         "the switchover's result on the page")
                wait_for(lambda: d.find_elements(
                    By.CSS_SELECTOR, "#topology-svg g[data-node=b][data-role=master]"), 10,
                    "b drawn as the new master")
                check(status(node)["b"]["role"] == "master", "the monitor says b is the master")
                check(mt.sql(b, "SELECT @@read_only")[0][0] == 0, "b is writable")
                check(mt.sql(a, "SELECT @@read_only")[0][0] == 1, "a is read-only")
                history = d.execute_script("""return Array.from(document.querySelectorAll(
                    '#repl-history tbody tr')).map(tr => tr.cells[1].textContent + ' ' +
                    tr.cells[4].textContent);""")
                check("switchover ok" in history, f"the operation is in the history ({history})")
                d.execute_script("document.getElementById('replication').scrollIntoView()")
                d.save_screenshot(os.path.join(shots, "replication-switchover.png"))


def coverage_node():
    """Check 6: the coverage of a live capture against the server's counters, on the page."""
    from harness import MariaDB
    import pymysql
    with MariaDB() as db:
        decoder = (f"  decoder: {{plugin: decoder-mysql, config: {{server: '127.0.0.1:{db.port}', "
                   "server_user: watcher, server_password: unused}}\n")
        yaml = node_yaml(free_port(), "capture-pcap", decoder).replace(
            "probe: {port: 3306}", f"probe: {{device: lo, port: {db.port}}}")
        with Probe(binary, yaml) as node:
            with console(node, READ_TOKEN) as d:
                wait_for(lambda: d.find_elements(By.CSS_SELECTOR, "[data-key=coverage] .v"), 20,
                         "the coverage on the page")
                conn = pymysql.connect(host="127.0.0.1", port=db.port, user="root")
                with conn.cursor() as cur:
                    for i in range(200):
                        cur.execute("SELECT %s", (i,))
                conn.close()

                def counted():
                    c = cell(d, "coverage_questions")
                    if not c:
                        return False
                    seen, total = (int(x.replace(",", "")) for x in c["v"].split(" / "))
                    return seen == total and total >= 200 and (seen, total)
                seen = wait_for(counted, 20, "the page to count the 200 questions")
                cov = cell(d, "coverage")
                check(cov["v"] == "100.00%" and f"127.0.0.1:{db.port}" in cov["k"],
                      f"coverage {cov['v']} of the server's {seen[1]} questions ({cov['k']})")
                check("bad" not in cov["cls"], "not red")
                d.save_screenshot(os.path.join(shots, "capture-coverage.png"))


for pcap in ("sysbench_text_rw_2t_20tx", "sysbench_ps_rw_2t_20tx", "edge_cases_small"):
    queries_node(os.path.join(source, "tests/data/pcap", pcap + ".pcap"), pcap)
roles_node()
cluster_nodes()
switchover_node()
if os.geteuid() == 0:
    drops_node()
    coverage_node()
else:
    print("SKIP drops and coverage: a live capture on lo needs root", flush=True)

print(f"screenshots: {shots}")
if failures:
    print(f"{len(failures)} failure(s)")
    sys.exit(1)
print("console-web browser test: OK")

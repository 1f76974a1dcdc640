#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""console-web under 2,000 templates and a report every second, in a real browser.

A real MariaDB (started here) gets TEMPLATES distinct statements in a loop from a client; a node
captures them live on lo (1 s interval, console-web and sink-websocket); headless chromium
shows the console for SECONDS at 100 rows, then at 2,000 rows. Printed: the browser's time per
update (fetch of /console/state, then render), the node's CPU per second and the bytes its
window holds, and what the page loads per update against the native report a /collector client
would have to take and sort itself (the only "peer": no other console runs here).

Usage (as root, for the capture): MP_BUILD_DIR=build/release /usr/bin/python3 bench/console.py
       [TEMPLATES] [SECONDS]"""
import json
import os
import statistics
import sys
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "live"))
from harness import MariaDB, Probe, cpu_seconds, wait_for  # noqa: E402

import pymysql  # noqa: E402
import websocket  # noqa: E402
from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.support.ui import Select  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402

TEMPLATES = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
SECONDS = int(sys.argv[2]) if len(sys.argv) > 2 else 20
build = os.environ.get("MP_BUILD_DIR", os.path.join(HERE, "..", "build", "release"))
binary = os.path.join(build, "bin", "mysqlprobe")
stop = threading.Event()
sent = [0]


def load(port):
    c = pymysql.connect(host="127.0.0.1", port=port, user="root", autocommit=True)
    cur = c.cursor()
    try:
        while not stop.is_set():
            for i in range(TEMPLATES):
                cur.execute(f"SELECT {i} AS c{i}")  # one template per alias
                cur.fetchall()
                sent[0] += 1
    except pymysql.err.OperationalError:
        pass  # the server stops at the end


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(p * len(values)))]


def measure(d, limit):
    Select(d.find_element(By.ID, "limit")).select_by_visible_text(str(limit))
    time.sleep(2)  # the first update at this size
    d.execute_script("window.mpConsole.renderMs = []; window.mpConsole.fetchMs = [];")
    time.sleep(SECONDS)
    r = d.execute_script("return [window.mpConsole.renderMs, window.mpConsole.fetchMs]")
    rows = len(d.find_elements(By.CSS_SELECTOR, "#templates tbody tr"))
    d.save_screenshot(os.path.join(os.environ.get("TMPDIR", "/tmp"), f"console-{limit}.png"))
    return r[0], r[1], rows


with MariaDB() as db:
    yaml = f"""serveraddress: 127.0.0.1
serverport: 0
interval: 1
slave: true
probe: {{device: lo, port: {db.port}}}
plugins:
  cluster: none
  sinks: [sink-websocket, console-web]
"""
    with Probe(binary, yaml) as node:
        t = threading.Thread(target=load, args=(db.port,), daemon=True)
        t.start()
        base = f"http://127.0.0.1:{node.http_port}"

        def templates_last():
            s = json.loads(node.get("/console/state?view=last&limit=1"))
            return s["templates_total"] >= TEMPLATES
        wait_for(templates_last, 60, f"{TEMPLATES} templates in one interval")
        o = webdriver.ChromeOptions()
        o.binary_location = "/usr/bin/chromium"
        for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,1000"):
            o.add_argument(a)
        d = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=o)
        try:
            d.get(base + "/")
            wait_for(lambda: d.find_element(By.ID, "main").is_displayed(), 10, "the console")
            cpu0, t0, sent0 = cpu_seconds(node.proc.pid), time.time(), sent[0]
            results = {}
            for limit in (100, 2000):
                results[limit] = measure(d, limit)
            cpu = cpu_seconds(node.proc.pid) - cpu0
            wall = time.time() - t0
            qps = (sent[0] - sent0) / wall
        finally:
            d.quit()
        state100 = node.get("/console/state?limit=100")
        state2000 = node.get("/console/state?limit=2000")
        held = json.loads(state100)["held_bytes"]
        metrics = {}
        for line in node.get("/metrics").splitlines():
            if line.startswith("mysqlprobe_console_web_"):
                k, v = line.rsplit(" ", 1)
                metrics[k[len("mysqlprobe_console_web_"):]] = int(float(v))
        intervals = len(json.loads(state100)["intervals"])
        ws = websocket.create_connection(f"ws://127.0.0.1:{node.http_port}/collector", timeout=5)
        report = ws.recv()
        ws.close()
        stop.set()

print(f"console-web: {TEMPLATES} templates per 1 s report, {qps:,.0f} queries/s captured, "
      f"{SECONDS} s per size")
print("| rows on the page | updates | fetch p50 / p95 ms | render p50 / p95 ms | rows shown |")
print("|---|---|---|---|---|")
for limit, (render, fetch, rows) in results.items():
    print(f"| {limit} | {len(render)} | {statistics.median(fetch):.1f} / {pct(fetch, 0.95):.1f} | "
          f"{statistics.median(render):.1f} / {pct(render, 0.95):.1f} | {rows} |")
print(f"node CPU: {cpu / wall * 100:.1f}% of a core while capturing, decoding and serving "
      f"the console ({cpu:.2f} s over {wall:.1f} s)")
print(f"window: {intervals} intervals held, {held / 1e6:.1f} MB counted (bound 64 MB), "
      f"{metrics.get('reports_let_go_total', 0)} reports let go for the bound; the last report "
      f"took {metrics.get('update_us', 0) / 1000:.1f} ms to read and merge into the window")
print(f"per update: /console/state {len(state100) / 1e3:.0f} kB (100 rows), "
      f"{len(state2000) / 1e3:.0f} kB (2,000 rows); one native report on /collector: "
      f"{len(report) / 1e3:.0f} kB (x{len(report) / len(state100):.1f} the 100-row state), "
      f"which a client would parse and sort itself and which holds one interval, not the window")

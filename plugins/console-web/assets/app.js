// SPDX-License-Identifier: Apache-2.0
// mysqlprobe's console: reads the node's own endpoints (/console/state and /console/template
// from console-web, /cluster/listnodes, /mysql/*, /metrics) and draws them. No external
// resource, no framework. Text from the wire is only ever set as text (never as HTML).
"use strict";

const TOKEN_KEY = "mysqlprobe.token";
const $ = (id) => document.getElementById(id);

// Timings the browser tests and bench/console.py read: each update's fetch and render times.
const perf = { updates: 0, renderMs: [], fetchMs: [], lastSeq: 0, errors: 0 };
window.mpConsole = perf;

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}
const svgNs = "http://www.w3.org/2000/svg";
function svg(tag, attrs, ...children) {
  const e = document.createElementNS(svgNs, tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "text") e.textContent = v;
    else e.setAttribute(k, String(v));
  }
  for (const c of children) if (c) e.append(c);
  return e;
}

const fmtInt = (n) => Number(n).toLocaleString("en-US");
const fmtMs = (us) => (us === null || us === undefined ? "" : (us / 1000).toFixed(3));
const fmtS = (us) => (us / 1e6).toFixed(3);

// ---- access ----------------------------------------------------------------------------
let token = sessionStorage.getItem(TOKEN_KEY) || "";
let role = "anyone";

class Unauthorized extends Error {}

async function api(path, opts = {}) {
  const headers = Object.assign({}, opts.headers || {});
  if (token) headers["Authorization"] = "Bearer " + token;
  const r = await fetch(path, Object.assign({}, opts, { headers, cache: "no-store" }));
  if (r.status === 401) throw new Unauthorized(path);
  return r;
}

async function whoami() {
  const r = await api("/console/whoami");
  const w = await r.json();
  role = w.role;
  $("who").textContent = w.principal ? `${w.principal} (${w.role})` : w.role;
  $("signout").hidden = !token;
  document.body.dataset.role = role;
}

function askToken(message) {
  $("main").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message || "";
  $("token").focus();
}

$("login").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  token = $("token").value.trim();
  $("token").value = "";
  sessionStorage.setItem(TOKEN_KEY, token);
  start();
});
$("signout").addEventListener("click", () => {
  token = "";
  sessionStorage.removeItem(TOKEN_KEY);
  location.reload();
});

// ---- queries ---------------------------------------------------------------------------
const query = { view: "window", sort: "total_time", q: "", server: "", schema: "", limit: "100" };
let selected = null; // {id, server, schema}
let lastState = null;

// The row's executions per interval (blue) and p99 (red, its own scale) over the held intervals.
function sparkline(series, w = 110, h = 24) {
  const line = (values, color) => {
    const max = Math.max(1e-9, ...values.filter((v) => v !== null));
    const step = values.length > 1 ? w / (values.length - 1) : w;
    const pts = [];
    values.forEach((v, i) => { if (v !== null) pts.push(`${(i * step).toFixed(1)},${(h - 2 - (v / max) * (h - 4)).toFixed(1)}`); });
    if (pts.length === 1) pts.push(`${w},${pts[0].split(",")[1]}`);
    return svg("polyline", { points: pts.join(" "), fill: "none", stroke: color, "stroke-width": 1.2 });
  };
  return svg("svg", { class: "spark", width: w, height: h, viewBox: `0 0 ${w} ${h}` },
    line(series.map((p) => p[2]), "#e57373"), line(series.map((p) => p[0]), "#1f6feb"));
}

// A chart of a template over the held intervals: executions per second and p50/p99 (ms).
function chart(series, intervals, w, h = 140) {
  w = Math.max(240, Math.round(w || 560));
  const secs = intervals.map((iv) => Math.max(1e-9, (iv.end_ns - iv.start_ns) / 1e9));
  const rate = series.map((p, i) => p[0] / secs[i]);
  const p50 = series.map((p) => (p[1] === null ? null : p[1] / 1000));
  const p99 = series.map((p) => (p[2] === null ? null : p[2] / 1000));
  const n = series.length;
  const x = (i) => 40 + (n > 1 ? (i * (w - 80)) / (n - 1) : (w - 80) / 2);
  const g = svg("svg", { class: "chart", viewBox: `0 0 ${w} ${h}` });
  const line = (vals, max, color, yTop, yBottom) => {
    const pts = [];
    vals.forEach((v, i) => { if (v !== null) pts.push(`${x(i).toFixed(1)},${(yBottom - (v / max) * (yBottom - yTop)).toFixed(1)}`); });
    if (pts.length) g.append(svg("polyline", { points: pts.join(" "), fill: "none", stroke: color, "stroke-width": 1.5 }));
  };
  const rMax = Math.max(1e-9, ...rate);
  const lMax = Math.max(1e-9, ...p99.filter((v) => v !== null), ...p50.filter((v) => v !== null));
  line(rate, rMax, "#1f6feb", 8, h / 2 - 6);
  line(p50, lMax, "#2e7d32", h / 2 + 6, h - 8);
  line(p99, lMax, "#c62828", h / 2 + 6, h - 8);
  g.append(svg("text", { x: 2, y: 14, text: `${rMax.toFixed(1)}/s` }));
  g.append(svg("text", { x: 2, y: h / 2 + 18, text: `${lMax.toFixed(2)} ms` }));
  const legend = el("div", { class: "legend" },
    el("span", { style: "color:#1f6feb", text: "executions/s" }),
    el("span", { style: "color:#2e7d32", text: "p50" }),
    el("span", { style: "color:#c62828", text: "p99" }));
  return el("div", {}, g, legend);
}

function fillSelect(sel, values, current) {
  const want = ["", ...values];
  const have = Array.from(sel.options).map((o) => o.value);
  if (want.length === have.length && want.every((v, i) => v === have[i])) return;
  sel.replaceChildren(el("option", { value: "", text: "all" }),
    ...values.map((v) => el("option", { value: v, text: v === "" ? "(none)" : v })));
  sel.value = values.includes(current) ? current : "";
}

function renderCapture(c) {
  const panel = $("capture");
  const grid = $("capture-grid");
  if (!c) { grid.replaceChildren(el("div", { text: "no report yet" })); return; }
  const t = c.total, iv = c.interval;
  const drops = (o) => (o.kernel_dropped || 0) + (o.interface_dropped || 0) + (o.probe_dropped || 0);
  const bad = c.drops_window > 0;
  panel.classList.toggle("bad", bad);
  $("capture-status").textContent = bad ? `drops: ${fmtInt(c.drops_window)} in the window` : "no drops";
  const cell = (k, v, cls, id) => el("div", { class: cls, "data-key": id }, el("span", { class: "v", text: v }), el("span", { class: "k", text: k }));
  grid.replaceChildren(
    cell("packets (interval)", fmtInt(iv.packets || 0), "", "packets_interval"),
    cell("packets (total)", fmtInt(t.packets || 0), "", "packets"),
    cell("bytes (total)", fmtInt(t.bytes || 0), "", "bytes"),
    cell("kernel drops", fmtInt(t.kernel_dropped || 0), (iv.kernel_dropped || 0) > 0 ? "bad" : "", "kernel_dropped"),
    cell("interface drops", fmtInt(t.interface_dropped || 0), (iv.interface_dropped || 0) > 0 ? "bad" : "", "interface_dropped"),
    cell("probe drops", fmtInt(t.probe_dropped || 0), (iv.probe_dropped || 0) > 0 ? "bad" : "", "probe_dropped"),
    cell("drops (window)", fmtInt(c.drops_window), bad ? "bad" : "", "drops_window"),
    cell("gaps", fmtInt(t.gaps || 0), (iv.gaps || 0) > 0 ? "bad" : "", "gaps"),
    cell("bytes missing", fmtInt(t.gap_bytes || 0), (iv.gap_bytes || 0) > 0 ? "bad" : "", "gap_bytes"),
    cell("connections opened", fmtInt(t["connections.opened"] || 0), "", "connections_opened"),
    cell("seen mid-stream", fmtInt(t["connections.midstream"] || 0), "", "connections_midstream"),
    cell("all drops (total)", fmtInt(drops(t)), drops(t) > 0 ? "bad" : "", "drops_total"),
    ...coverageCells(c.coverage, cell));
}

// decoder-mysql's comparison with the server's own count of questions (with `server` set).
function coverageCells(cov, cell) {
  if (!cov) return [];
  const pct = (seen, counted) => counted > 0 ? `${(100 * seen / counted).toFixed(2)}%` : "n/a";
  // Red past what commands in flight at a reading's moment explain (the server counts them in
  // one interval, the probe in the next): more than 10 and more than 0.1% missing.
  const short = (seen, counted) => counted - seen > Math.max(10, counted / 1000);
  const missed = short(cov.seen, cov.counted);
  const out = [cell(`coverage of ${cov.server} (total)`, pct(cov.seen, cov.counted), missed ? "bad" : "", "coverage")];
  if (cov.interval_counted !== undefined) {
    out.push(cell("coverage (interval)", pct(cov.interval_seen, cov.interval_counted),
      short(cov.interval_seen, cov.interval_counted) ? "bad" : "", "coverage_interval"));
  }
  out.push(cell("questions seen / counted", `${fmtInt(cov.seen)} / ${fmtInt(cov.counted)}`, "", "coverage_questions"));
  if (cov.error) out.push(cell("server reading", cov.error, "bad", "coverage_error"));
  return out;
}

function renderTemplates(s) {
  const tbody = $("templates").tBodies[0];
  const rows = s.rows.map((r) => {
    const tr = el("tr", {
      "data-id": r.id, "data-server": r.server, "data-schema": r.schema,
      class: selected && selected.id === r.id && selected.server === r.server && selected.schema === r.schema ? "selected" : "",
      onclick: () => openDetail({ id: r.id, server: r.server, schema: r.schema }),
    },
    el("td", { class: "sql", title: `${r.server} ${r.schema}` }, r.fingerprint),
    el("td", { class: "num", "data-col": "count" }, fmtInt(r.count)),
    el("td", { class: "hide-narrow", title: "executions (blue) and p99 (red) per interval" }, sparkline(r.series)),
    el("td", { class: "num", "data-col": "p50" }, fmtMs(r.p50)),
    el("td", { class: "num", "data-col": "p99" }, fmtMs(r.p99)),
    el("td", { class: "num", "data-col": "total" }, fmtS(r.total_us)),
    el("td", { class: "num" + (r.errors > 0 ? " errors-nonzero" : ""), "data-col": "errors" }, fmtInt(r.errors)),
    el("td", { class: "num", "data-col": "rows" }, fmtInt(r.rows)));
    return tr;
  });
  tbody.replaceChildren(...rows);
  for (const th of $("templates").tHead.rows[0].cells) th.classList.toggle("sorted", th.dataset.sort === query.sort);
  $("queries-summary").textContent =
    `${fmtInt(s.matched)} of ${fmtInt(s.templates_total)} templates, ${s.view === "window" ? `window of ${s.intervals.length} intervals` : "last interval"}`;
}

async function refresh() {
  const params = new URLSearchParams(query);
  const t0 = performance.now();
  const r = await api("/console/state?" + params.toString());
  if (!r.ok) throw new Error(`/console/state: ${r.status}`);
  const s = await r.json();
  const t1 = performance.now();
  lastState = s;
  $("node").textContent = s.node ? `${s.node}` : "";
  $("updated").textContent = s.seq ? `report ${s.seq}` : "waiting for the first report";
  fillSelect($("server"), s.servers, query.server);
  fillSelect($("schema"), s.schemas, query.schema);
  renderCapture(s.capture);
  renderTemplates(s);
  const t2 = performance.now();
  perf.updates++;
  perf.lastSeq = s.seq;
  perf.fetchMs.push(t1 - t0);
  perf.renderMs.push(t2 - t1);
  if (perf.renderMs.length > 1000) { perf.renderMs.shift(); perf.fetchMs.shift(); }
  if (selected && !$("detail").hidden) await loadDetail(false);
}

function table(headers, rows) {
  return el("table", {},
    el("thead", {}, el("tr", {}, ...headers.map((h) => el("th", { class: h.num ? "num" : "", text: h.t })))),
    el("tbody", {}, ...rows.map((r) => el("tr", {}, ...r.map((c, i) => el("td", { class: headers[i].num ? "num" : (headers[i].sql ? "sql" : "") }, c))))));
}

async function openDetail(key) {
  selected = key;
  for (const tr of $("templates").tBodies[0].rows) {
    tr.classList.toggle("selected", tr.dataset.id === key.id && tr.dataset.server === key.server && tr.dataset.schema === key.schema);
  }
  await loadDetail(true);
}

async function loadDetail(scroll) {
  const p = new URLSearchParams(selected);
  const r = await api("/console/template?" + p.toString());
  if (r.status === 404) { $("detail").hidden = true; selected = null; return; }
  const d = await r.json();
  const t = query.view === "last" && d.last ? d.last : d.window;
  $("detail-fingerprint").textContent = t.fingerprint;
  $("detail-chart").replaceChildren(chart(d.series, lastState ? lastState.intervals : d.series.map(() => ({ start_ns: 0, end_ns: 1e9 })),
    $("detail").clientWidth || $("queries").clientWidth));
  const lat = t.latency_us;
  const parts = [];
  parts.push(el("div", {}, el("h3", { text: "Summary" }), table([{ t: "" }, { t: "", num: true }], [
    ["server", t.server], ["schema", t.schema === "" ? "(none)" : t.schema], ["executions", fmtInt(t.count)],
    ["errors", fmtInt(t.errors)], ["responses lost", fmtInt(t.lost)],
    ["p50 / p95 / p99 ms", `${fmtMs(lat.p50)} / ${fmtMs(lat.p95)} / ${fmtMs(lat.p99)}`],
    ["max ms", fmtMs(lat.max)], ["rows returned", fmtInt(t.rows_returned)], ["rows affected", fmtInt(t.rows_affected)],
    ["no index used", fmtInt(t.no_index_used)], ["warnings", fmtInt(t.warnings)],
  ])));
  const codes = Object.entries(t.errors_by_code || {});
  parts.push(el("div", { id: "detail-errors" }, el("h3", { text: "Errors by code" }),
    codes.length === 0 && !t.other_errors ? el("p", { class: "muted", text: "none" }) :
      table([{ t: "code" }, { t: "count", num: true }, { t: "SQL state" }, { t: "latest message" }],
        codes.map(([c, n]) => [c, fmtInt(n), (t.error_details[c] || {}).sql_state || "", (t.error_details[c] || {}).message || ""])
          .concat(t.other_errors ? [["other", fmtInt(t.other_errors), "", ""]] : []))));
  const bd = (list, key) => list.map((b) => [b.other ? "(others)" : b[key], fmtInt(b.count), fmtInt(b.errors), fmtMs(b.count - b.errors > 0 ? b.latency_sum_us / (b.count - b.errors) : null)]);
  parts.push(el("div", { id: "detail-clients" }, el("h3", { text: "Clients" }),
    table([{ t: "address" }, { t: "count", num: true }, { t: "errors", num: true }, { t: "mean ms", num: true }], bd(t.clients, "addr"))));
  parts.push(el("div", { id: "detail-users" }, el("h3", { text: "Users" }),
    table([{ t: "user" }, { t: "count", num: true }, { t: "errors", num: true }, { t: "mean ms", num: true }], bd(t.users, "user"))));
  parts.push(el("div", { id: "detail-sample" }, el("h3", { text: "Sample" }), el("pre", { text: t.sample })));
  parts.push(el("div", { id: "detail-slow" }, el("h3", { text: "Slow executions" }),
    t.slow.length === 0 ? el("p", { class: "muted", text: "none over the threshold" }) :
      table([{ t: "ms", num: true }, { t: "SQL", sql: true }, { t: "client" }, { t: "user" }, { t: "error" }],
        t.slow.map((x) => [fmtMs(x.latency_us), x.sql, `${x.client}:${x.client_port}`, x.user, x.error_code ? `${x.error_code} ${x.error_message}` : ""]))));
  $("detail-body").replaceChildren(...parts);
  $("detail").hidden = false;
  if (scroll) $("detail").scrollIntoView({ block: "nearest" });
}

$("detail-close").addEventListener("click", () => {
  $("detail").hidden = true;
  selected = null;
  for (const tr of $("templates").tBodies[0].rows) tr.classList.remove("selected");
});

function bindControls() {
  const onChange = (id, key) => $(id).addEventListener("change", () => { query[key] = $(id).value; tick(); });
  onChange("view", "view");
  onChange("sort", "sort");
  onChange("server", "server");
  onChange("schema", "schema");
  onChange("limit", "limit");
  let timer = null;
  $("filter").addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(() => { query.q = $("filter").value; tick(); }, 150);
  });
  for (const th of $("templates").tHead.rows[0].cells) {
    if (!th.dataset.sort) continue;
    th.addEventListener("click", () => { query.sort = th.dataset.sort; $("sort").value = th.dataset.sort; tick(); });
  }
}

// ---- cluster ---------------------------------------------------------------------------
async function refreshCluster() {
  const r = await api("/cluster/listnodes?format=native");
  if (r.status === 404) { $("cluster").hidden = true; return; }
  $("cluster").hidden = false;
  const body = $("cluster-body");
  if (!r.ok) { body.replaceChildren(el("p", { class: "bad-text", text: `listnodes: ${r.status} ${await r.text()}` })); return; }
  const d = await r.json();
  const nodes = Array.isArray(d) ? d : (d.nodes || d.members || []);
  const scalars = (o) => Object.entries(o).filter(([, v]) => v === null || typeof v !== "object");
  // This node (static: `self`; gossip: the answer's own fields), then every other node.
  const head = [];
  if (!Array.isArray(d)) {
    for (const [k, v] of scalars(d)) head.push([k, String(v)]);
    if (d.self && typeof d.self === "object") for (const [k, v] of scalars(d.self)) head.push([`self.${k}`, String(v)]);
  }
  const cols = [];
  for (const n of nodes) for (const [k] of scalars(n)) if (!cols.includes(k)) cols.push(k);
  const bad = new Set(["down", "dead", "suspect", "failed"]);
  const tableEl = el("table", { id: "cluster-nodes" },
    el("thead", {}, el("tr", {}, ...cols.map((c) => el("th", { text: c })))),
    el("tbody", {}, ...nodes.map((n) => el("tr", {}, ...cols.map((c) => {
      const v = n[c] === undefined ? "" : String(n[c]);
      return el("td", { "data-col": c, class: bad.has(v) ? "bad-text" : "" }, v);
    })))));
  body.replaceChildren(
    el("p", { id: "cluster-self" }, ...head.map(([k, v]) => el("span", { class: "kv" }, el("span", { class: "muted", text: k + " " }), v))),
    nodes.length === 0 ? el("p", { class: "muted", text: "no other node" }) : el("div", { class: "scroll" }, tableEl));
}

// ---- replication (monitor-mysql) -------------------------------------------------------
async function post(path) {
  const r = await api(path, { method: "POST" });
  let body = await r.text();
  try { body = JSON.stringify(JSON.parse(body), null, 1); } catch (e) { /* text */ }
  return { ok: r.ok, status: r.status, body };
}

async function operate(op, node) {
  const what = node ? `${op} ${node}` : op;
  if (!window.confirm(`Run ${what}? This changes the replication topology.`)) return;
  const path = `/mysql/${op}` + (node ? (op === "switchover" ? `?to=${encodeURIComponent(node)}` : `?node=${encodeURIComponent(node)}`) : "");
  $("repl-result").replaceChildren(el("p", { class: "muted", text: `${what}: running...` }));
  const res = await post(path);
  $("repl-result").replaceChildren(el("p", { id: "repl-last", class: res.ok ? "" : "bad-text", "data-ok": res.ok ? "1" : "0" },
    `${what}: ${res.ok ? "done" : "refused (" + res.status + ")"}`), el("pre", { text: res.body }));
  await refreshReplication();
}

function topologyPicture(nodes) {
  const master = nodes.find((n) => n.role === "master");
  const others = nodes.filter((n) => n !== master);
  const w = Math.max(320, others.length * 170 + 20), h = master ? 150 : 70;
  const g = svg("svg", { width: w, height: h, viewBox: `0 0 ${w} ${h}`, id: "topology-svg", style: "max-width:100%;height:auto" });
  const box = (n, x, y) => {
    const cls = `topo-node ${n.role} ${String(n.state).toLowerCase()}`;
    const grp = svg("g", { class: cls, "data-node": n.name, "data-role": n.role },
      svg("rect", { x, y, width: 150, height: 46, rx: 6 }),
      svg("text", { x: x + 8, y: y + 18, text: `${n.name} (${n.role})` }),
      svg("text", { x: x + 8, y: y + 36, text: `${n.state}${n.replication && n.replication.lag_s !== null && n.replication.lag_s !== undefined ? ", lag " + n.replication.lag_s + " s" : ""}` }));
    g.append(grp);
  };
  const slotX = (i) => 10 + i * 170;
  if (master) {
    const mx = w / 2 - 75;
    others.forEach((n, i) => g.append(svg("line", { x1: w / 2, y1: 56, x2: slotX(i) + 75, y2: 94, stroke: "#888" })));
    box(master, mx, 10);
    others.forEach((n, i) => box(n, slotX(i), 94));
  } else {
    others.forEach((n, i) => box(n, slotX(i), 10));
  }
  return g;
}

async function refreshReplication() {
  const r = await api("/mysql/status");
  if (r.status === 404) { $("replication").hidden = true; return; }
  $("replication").hidden = false;
  if (!r.ok) return;
  const st = await r.json();
  const admin = role === "admin";
  $("topology").replaceChildren(topologyPicture(st.nodes));
  const tbody = $("repl-nodes").tBodies[0];
  tbody.replaceChildren(...st.nodes.map((n) => {
    const rep = n.replication || {};
    const ops = [];
    if (admin) {
      const button = (op, label) => ops.push(el("button", { type: "button", "data-op": op, "data-node": n.name, onclick: () => operate(op, n.name) }, label));
      const registered = n.role === "master" || n.role === "standby" || n.role === "slave";
      if (n.role !== "master" && registered && n.reachable) button("switchover", "switch over to");
      if (n.state === "DETACHED") button("activate", "activate");
      if (n.role !== "master" && (n.state === "OK" || n.state === "SYNCING")) button("detach", "detach");
      if (n.state === "PAUSE") button("resume", "resume");
      else if (registered) button("pause", "pause");
    }
    return el("tr", { "data-node": n.name },
      el("td", {}, n.name, el("br"), el("span", { class: "muted", text: `${n.host}:${n.port}` })),
      el("td", { "data-col": "role" }, n.role),
      el("td", { "data-col": "state", class: n.state === "ERROR" || n.state === "LOST" ? "bad-text" : "" }, n.state + (n.reason ? ` (${n.reason})` : "")),
      el("td", { class: "num" }, rep.lag_s === null || rep.lag_s === undefined ? "" : String(rep.lag_s)),
      el("td", {}, n.read_only === undefined ? "" : (n.read_only ? "yes" : "no")),
      el("td", {}, rep.master_host ? `${rep.master_host}:${rep.master_port}` : ""),
      el("td", { class: "sql" }, n.gtid_current_pos || ""),
      el("td", { class: "ops-col" }, ...ops));
  }));
  for (const c of document.querySelectorAll(".ops-col")) c.hidden = !admin;
  const ops = $("repl-ops");
  ops.replaceChildren(...(admin ? [el("button", { type: "button", class: "danger", "data-op": "failover", onclick: () => operate("failover") }, "Fail over")] : []));
  const h = await api("/mysql/operations");
  if (h.ok) {
    const d = await h.json();
    $("repl-history").tBodies[0].replaceChildren(...d.operations.slice().reverse().slice(0, 20).map((o) =>
      el("tr", {}, el("td", {}, new Date(o.at_ns / 1e6).toLocaleTimeString()), el("td", {}, o.op), el("td", {}, o.node),
        el("td", {}, o.by), el("td", { class: o.ok ? "" : "bad-text" }, o.ok ? "ok" : o.result))));
  }
}

// ---- records and sinks (from /metrics) -------------------------------------------------
async function refreshMetrics() {
  const r = await api("/metrics");
  if (!r.ok) return;
  const text = await r.text();
  const rows = [];
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const m = /^mysqlprobe_([a-z0-9_]+)(\{[^}]*\})?\s+(\S+)$/.exec(line);
    if (!m) continue;
    if (!/^(host_records_|sink_|source_|proxy_|console_web_)/.test(m[1])) continue;
    rows.push([m[1] + (m[2] || ""), fmtInt(Number(m[3]))]);
  }
  $("metrics").tBodies[0].replaceChildren(...rows.map(([k, v]) => el("tr", {}, el("td", { class: "sql" }, k), el("td", { class: "num" }, v))));
}

// ---- the loop --------------------------------------------------------------------------
let timer = null;
let slow = 0;
let busy = false;    // an update is under way
let pending = false; // a control changed meanwhile: update again right after it

// One update loop only: a control that changes while an update is under way asks for one more
// update when it ends, never for a second loop.
async function tick() {
  if (busy) { pending = true; return; }
  busy = true;
  clearTimeout(timer);
  try {
    await refresh();
    $("main").hidden = false;
    $("login").hidden = true;
    if (++slow % 5 === 1) {
      await Promise.allSettled([refreshCluster(), refreshReplication(), refreshMetrics()]);
    }
  } catch (e) {
    perf.errors++;
    if (e instanceof Unauthorized) { askToken(token ? "This token is not accepted." : ""); busy = false; return; }
    $("updated").textContent = `update failed: ${e.message}`;
  }
  busy = false;
  if (pending) { pending = false; tick(); return; }
  timer = setTimeout(tick, 1000);
}

async function start() {
  try {
    await whoami();
  } catch (e) {
    if (e instanceof Unauthorized) { askToken("This token is not accepted."); return; }
  }
  // Without a token the data may still be readable (anonymous read, or protected mode on this
  // machine): the first update tells, and asks for a token on 401.
  bindOnce();
  tick();
}

let bound = false;
function bindOnce() { if (!bound) { bound = true; bindControls(); } }

start();

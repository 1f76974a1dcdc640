#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Out-of-tree proof: install mysqlprobe into a staging prefix, build examples/sink-jsonl and
# examples/decoder-bytes against that prefix ONLY, and have the installed host load them from
# YAML: the sink writes the reports, the decoder's figures agree with the stream layer's, the
# example capture source gives the same report as capture-pcap on the same frames.
# Usage: run.sh SOURCE_DIR BUILD_DIR [SANITIZERS]
set -euo pipefail
src=$1
build=$2
sanitize=()  # a sanitizer build's static libraries need the same runtimes in the examples
if [ -n "${3:-}" ]; then
  sanitize=(-DCMAKE_CXX_FLAGS="-fsanitize=$3" -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=$3"
    -DCMAKE_SHARED_LINKER_FLAGS="-fsanitize=$3" -DCMAKE_MODULE_LINKER_FLAGS="-fsanitize=$3")
fi
work=$(mktemp -d "$build/consumer.XXXXXX")
trap 'kill "${pid:-}" 2>/dev/null || true' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
# build_example NAME DIR: configure and build examples/NAME in $work/DIR against the staging
# prefix only.
build_example() {
  cmake -S "$src/examples/$1" -B "$work/$2" -G Ninja -DCMAKE_PREFIX_PATH="$work/stage" \
    -DCMAKE_BUILD_TYPE=Release "${sanitize[@]}" >"$work/configure-$2.log" ||
    fail "$1 did not configure: $(tail -20 "$work/configure-$2.log")"
  cmake --build "$work/$2" >"$work/build-$2.log" || fail "$1 did not build: $(tail -20 "$work/build-$2.log")"
}

cmake --install "$build" --prefix "$work/stage" >"$work/install.log"
# The example sees the SDK through CMAKE_PREFIX_PATH and nothing else from this tree.
build_example sink-jsonl example
so="$work/example/libmp-sink-jsonl.so"
[ -f "$so" ] || fail "the example did not build $so"
grep -q "mysqlprobe-sdk" "$work/example/CMakeCache.txt" || fail "the example did not use find_package"
grep -q "$work/stage" "$work/example/CMakeCache.txt" || fail "the SDK did not come from the staging prefix"
if grep -q "$src/sdk/include" "$work/example/build.ninja"; then
  fail "the example compiled against the source tree's SDK, not the installed one"
fi

# The example decoder, the same way.
build_example decoder-bytes decoder
[ -f "$work/decoder/libmp-decoder-bytes.so" ] || fail "the example decoder did not build"
# Its unit test runs on the installed SDK's fake host (mp/testing.hpp).
"$work/decoder/decoder-bytes-test" || fail "decoder-bytes' unit test (on mp/testing.hpp) failed"
if grep -q "$src/sdk/include" "$work/decoder/build.ninja"; then
  fail "the example decoder compiled against the source tree's SDK, not the installed one"
fi

host="$work/stage/bin/mysqlprobe"
# The installed host finds its own plugins, without LD_LIBRARY_PATH.
list=$(env -u LD_LIBRARY_PATH "$host" --list-plugins --plugin-dir "$work/example")
for name in capture-pcap decoder-mysql cluster-static cluster-gossip sink-websocket sink-amqp sink-jsonl; do
  grep -q "^$name " <<<"$list" || fail "--list-plugins does not list $name"
done
echo "installed host lists 6 built-in plugins and sink-jsonl"

cat >"$work/jsonl.yaml" <<YAML
serverport: 0
serveraddress: 127.0.0.1
interval: 1
plugins:
  directories: [$work/example]
  cluster: none
  sinks:
    - plugin: sink-jsonl
      config: {path: $work/reports.jsonl}
YAML
"$host" --check -c "$work/jsonl.yaml" || fail "--check refused the sink-jsonl config"
"$host" -c "$work/jsonl.yaml" 2>"$work/host.log" &
pid=$!
for _ in $(seq 1 100); do
  lines=0
  [ -f "$work/reports.jsonl" ] && lines=$(wc -l <"$work/reports.jsonl")
  [ "$lines" -ge 2 ] && break
  sleep 0.1
done
kill -TERM "$pid"
wait "$pid" || fail "host exited with $? after SIGTERM: $(cat "$work/host.log")"
pid=
lines=$(wc -l <"$work/reports.jsonl")
[ "$lines" -ge 2 ] || fail "expected at least 2 reports in reports.jsonl, got $lines"
python3 - "$work/reports.jsonl" <<'PY' || fail "reports.jsonl lines are not the host's reports"
import json, sys
seqs = []
finals = []
for line in open(sys.argv[1]):
    r = json.loads(line)
    assert r["version"] == 1, r
    assert "stats" in r and "sink_jsonl_reports_written_total" in r["stats"], r
    seqs.append(r["seq"])
    finals.append(r["final"])
assert seqs == list(range(1, len(seqs) + 1)), seqs
# The SIGTERM sends the last interval as the final report, and only that one is final.
assert finals[-1] is True and not any(finals[:-1]), finals
print(f"{len(seqs)} reports written by sink-jsonl, seq 1..{len(seqs)}")
PY
# decoder-bytes on a bundled capture, with 1 and 3 workers: its bytes and connections per
# server are what the host's stream layer delivered, whatever the number of workers.
pcap="$src/tests/data/pcap/sysbench_text_rw_2t_20tx.pcap"
for workers in 1 3; do
  cat >"$work/bytes-$workers.yaml" <<YAML
serverport: 0
serveraddress: 127.0.0.1
probe: {workers: $workers}
plugins:
  directories: [$work/decoder]
  decoder: decoder-bytes
  cluster: none
  sinks: []
YAML
  env -u LD_LIBRARY_PATH "$host" -c "$work/bytes-$workers.yaml" -r "$pcap" \
    >"$work/bytes-$workers.json" 2>"$work/bytes-$workers.log" ||
    fail "decoder-bytes run ($workers workers) failed: $(tail -5 "$work/bytes-$workers.log")"
done
python3 - "$work/bytes-1.json" "$work/bytes-3.json" <<'PY' || fail "decoder-bytes figures disagree"
import json, sys
seen = []
for path in sys.argv[1:]:
    r = json.loads(open(path).read())
    servers = r["bytes"]["servers"]
    cap = r["capture"]
    moved = sum(s["to_server"] + s["to_client"] for s in servers.values())
    conns = sum(s["connections"] for s in servers.values())
    assert moved == cap["stream_bytes"] > 0, (moved, cap["stream_bytes"])
    assert conns == cap["connections"]["opened"] > 0, (conns, cap["connections"])
    assert sum(s["gap_bytes"] for s in servers.values()) == cap["gap_bytes"], servers
    assert "templates" not in r, "decoder-mysql ran instead of the example"
    seen.append(servers)
assert seen[0] == seen[1], seen
print(f"decoder-bytes: {moved} bytes on {conns} connections, same with 1 and 3 workers")
PY
# Two decoders on one node (plugins.decoders): decoder-mysql and decoder-bytes both see every
# connection; the report holds both sections, each equal to what that decoder gives alone.
env -u LD_LIBRARY_PATH "$host" -r "$pcap" >"$work/mysql-alone.json" 2>/dev/null || fail "offline run failed"
for workers in 1 3; do
  cat >"$work/both-$workers.yaml" <<YAML
serverport: 0
serveraddress: 127.0.0.1
probe: {workers: $workers}
plugins:
  directories: [$work/decoder]
  decoders: [decoder-bytes]
  cluster: none
  sinks: []
YAML
  env -u LD_LIBRARY_PATH "$host" -c "$work/both-$workers.yaml" -r "$pcap" \
    >"$work/both-$workers.json" 2>"$work/both-$workers.log" ||
    fail "two decoders ($workers workers) failed: $(tail -5 "$work/both-$workers.log")"
done
python3 - "$work" <<'PY' || fail "two decoders on one node disagree with each alone"
import json, sys
d = sys.argv[1]
alone = json.load(open(f"{d}/mysql-alone.json"))
bytes_alone = json.load(open(f"{d}/bytes-1.json"))["bytes"]
for w in (1, 3):
    r = json.load(open(f"{d}/both-{w}.json"))
    assert r["bytes"] == bytes_alone, (w, r["bytes"], bytes_alone)
    strip = lambda t: {k: v for k, v in t.items() if k not in ("first_seen_ns", "last_seen_ns")}
    assert [strip(t) for t in r["templates"]] == [strip(t) for t in alone["templates"]], w
    assert r["totals"] == alone["totals"], (r["totals"], alone["totals"])
print(f"decoder-mysql and decoder-bytes on one node: {len(r['templates'])} templates and "
      f"{sum(s['to_server'] for s in r['bytes']['servers'].values())} bytes to the server, "
      "each as alone, with 1 and 3 workers")
PY
# A second capture source: capture-hexlines reads the same frames from text. With the built-in
# decoder-mysql and no host change, its report is the one capture-pcap gives for the pcap.
build_example capture-hexlines hexlines
for name in sysbench_ps_rw_2t_20tx edge_cases_small; do
  pcap="$src/tests/data/pcap/$name.pcap"
  hex="$work/$name.hex"
  python3 "$src/tests/consumer/pcap_to_hexlines.py" "$pcap" "$hex"
  # Garbage in the middle: skipped and counted, the frames around it still read.
  sed -i '10a this line is not a frame\n12 34 0g' "$hex"
  cat >"$work/hexlines-$name.yaml" <<YAML
serverport: 0
serveraddress: 127.0.0.1
plugins:
  directories: [$work/hexlines]
  capture: {plugin: capture-hexlines, config: {file: $hex}}
  cluster: none
  sinks: []
YAML
  env -u LD_LIBRARY_PATH "$host" -c "$work/hexlines-$name.yaml" -r "$hex" \
    >"$work/hexlines-$name.json" 2>"$work/hexlines-$name.log" ||
    fail "capture-hexlines run on $name failed: $(tail -5 "$work/hexlines-$name.log")"
  env -u LD_LIBRARY_PATH "$host" -r "$pcap" >"$work/pcap-$name.json" 2>"$work/pcap-$name.log" ||
    fail "capture-pcap run on $name failed: $(tail -5 "$work/pcap-$name.log")"
  grep -q "not a frame, skipped" "$work/hexlines-$name.log" ||
    fail "no warning for the garbage lines: $(cat "$work/hexlines-$name.log")"
  python3 - "$work/hexlines-$name.json" "$work/pcap-$name.json" "$name" <<'PY' ||
import json, sys
hexr = json.load(open(sys.argv[1]))
pcapr = json.load(open(sys.argv[2]))
assert pcapr["capture"]["packets"] > 0, pcapr["capture"]
assert hexr["capture"] == pcapr["capture"], (hexr["capture"], pcapr["capture"])
stats = hexr["stats"]
assert stats.get("capture_hexlines_bad_lines_total") == 2, stats
assert stats.get("capture_hexlines_frames_total") == pcapr["capture"]["packets"], stats
skip = {"capture", "stats", "interval", "node", "started_ns"}  # the run's clock, name
keys = sorted(k for k in pcapr if k not in skip)
for k in keys:
    assert hexr.get(k) == pcapr[k], (k, hexr.get(k), pcapr[k])
n = len(pcapr.get("templates", []))
print(f"capture-hexlines on {sys.argv[3]}: same report as capture-pcap "
      f"({pcapr['capture']['packets']} packets, {n} templates, keys {keys})")
PY
    fail "capture-hexlines and capture-pcap disagree on $name"
done
# The standard counter MP_CAPTURE_TRUNCATED, registered by a plugin the host has never heard of,
# lands in the report's capture object: one frame whose wire length exceeds its bytes.
hex="$work/edge_cases_small.hex"
awk '!done && $1 ~ /^[0-9]+$/ && NF == 3 { $2 = $2 + 100; done = 1 } { print }' "$hex" >"$hex.cut"
env -u LD_LIBRARY_PATH "$host" -c "$work/hexlines-edge_cases_small.yaml" -r "$hex.cut" \
  >"$work/hexlines-cut.json" 2>"$work/hexlines-cut.log" || fail "truncated run failed"
python3 -c 'import json,sys; c=json.load(open(sys.argv[1]))["capture"]; assert c["truncated_snaplen"] == 1, c' \
  "$work/hexlines-cut.json" || fail "capture.truncated_snaplen is not 1"
echo "capture-hexlines: its truncated_total counter is the report's capture.truncated_snaplen"
# A source (ABI 1.4 records): source-counter emits numbered records, sink-jsonl writes those of
# its subscribed stream, and the delivered mark reaches the source's checkpoint. A second run
# goes on from the mark: every number once, in order.
build_example source-counter counter
"$work/counter/source-counter-test" || fail "source-counter's unit test (on mp/testing.hpp) failed"
# The first run hands its records over one at a time, the second in batches of 7 (emit_records,
# ABI 1.7, through the installed SDK's mp::RecordBatch).
for count in 3000 5000; do
  batch=$([ "$count" = 3000 ] && echo 1 || echo 7)
  cat >"$work/counter-$count.yaml" <<YAML
serverport: 0
serveraddress: 127.0.0.1
plugins:
  directories: [$work/counter, $work/example]
  cluster: none
  sources:
    - {plugin: source-counter, config: {count: $count, payload_bytes: 200, checkpoint: $work/counter.mark, exit_when_delivered: true, batch: $batch}}
    - {plugin: source-counter, config: {stream: other.stream, count: 10}}
  sinks:
    - {plugin: sink-jsonl, records: [example.*], reports: false, config: {path: $work/records.jsonl}}
YAML
  timeout 60 env -u LD_LIBRARY_PATH "$host" -c "$work/counter-$count.yaml" 2>"$work/counter-$count.log" ||
    fail "source-counter run ($count) failed: $(tail -5 "$work/counter-$count.log")"
  [ "$(cat "$work/counter.mark")" = "$count" ] ||
    fail "the checkpoint holds $(cat "$work/counter.mark"), not $count"
done
python3 - "$work/records.jsonl" <<'PY' || fail "the records written are not 1..5000 once each"
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
seqs = [l["seq"] for l in lines]
assert seqs == list(range(1, 5001)), (len(seqs), seqs[:3], seqs[-3:])
assert all(l["stream"] == "example.counter" and l["producer"] == "sources[0]" for l in lines)
assert all(json.loads(l["payload"])["n"] == l["seq"] and len(l["payload"]) == 200 for l in lines)
print(f"source-counter -> sink-jsonl: records 1..{seqs[-1]} once each over two runs "
      "(the second went on from the checkpoint, in batches of 7); the other stream was not written")
PY
# The SDK's report component: a third-party program merges two offline reports the way a master
# does; the merged totals are the sum of the two.
build_example report-merge merge
for name in sysbench_text_rw_2t_20tx sysbench_ps_rw_2t_20tx; do
  env -u LD_LIBRARY_PATH "$host" -r "$src/tests/data/pcap/$name.pcap" >"$work/$name.json" 2>/dev/null ||
    fail "offline run of $name failed"
done
"$work/merge/report-merge" "$work/sysbench_text_rw_2t_20tx.json" "$work/sysbench_ps_rw_2t_20tx.json" \
  >"$work/merged.json" 2>"$work/merge.log" || fail "report-merge failed: $(cat "$work/merge.log")"
python3 - "$work" <<'PY' || fail "the merged report is not the sum of the two"
import json, sys
d = sys.argv[1]
a, b, m = (json.load(open(f"{d}/{n}.json")) for n in
           ("sysbench_text_rw_2t_20tx", "sysbench_ps_rw_2t_20tx", "merged"))
for k in ("commands_total", "rows_returned", "errors"):
    assert m["totals"][k] == a["totals"][k] + b["totals"][k], (k, m["totals"][k])
count = lambda r: sum(t["count"] for t in r["templates"])
assert count(m) == count(a) + count(b)
assert [c["node"] for c in m["cluster"]["contributors"]] == [b["node"]]
print(f"report-merge (SDK component report): {m['totals']['commands_total']} commands = "
      f"{a['totals']['commands_total']} + {b['totals']['commands_total']}")
PY
# The SDK's push component: a third-party program sends an offline report to a master's
# /cluster/push with a peer token read from a file, as a slave does; the master acknowledges it
# once merged, and its next report counts those commands (it has no traffic of its own).
build_example report-push push
ports=$(python3 -c 'import socket
for _ in range(2):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
http_port=$(sed -n 1p <<<"$ports")
gossip_port=$(sed -n 2p <<<"$ports")
(umask 077 && head -c 24 /dev/urandom | base64 | tr -d '/+=' >"$work/peer.token")
gossip_key=$(head -c 16 /dev/urandom | base64)
cat >"$work/master.yaml" <<YAML
serverport: $http_port
serveraddress: 127.0.0.1
nodename: master
interval: 1
cluster:
  gossip: true
  port: $gossip_port
auth:
  tokens:
    - {name: cluster, role: peer, file: $work/peer.token}
  cluster_token: cluster
plugins:
  directories: [$work/example]
  cluster:
    plugin: cluster-gossip
    config: {name: master, seeds_file: $work/master.seeds, keys: ["$gossip_key"]}
  sinks:
    - plugin: sink-jsonl
      config: {path: $work/master.jsonl}
YAML
"$host" -c "$work/master.yaml" 2>"$work/master.log" &
pid=$!
for _ in $(seq 1 100); do  # until its HTTP port answers
  (exec 3<>"/dev/tcp/127.0.0.1/$http_port") 2>/dev/null && break
  kill -0 "$pid" 2>/dev/null || fail "the master did not start: $(tail -5 "$work/master.log")"
  sleep 0.1
done
MP_TOKEN_FILE="$work/peer.token" "$work/push/report-push" "127.0.0.1:$http_port" \
  "$work/sysbench_text_rw_2t_20tx.json" >"$work/push.out" 2>"$work/push.log" ||
  fail "report-push: $(cat "$work/push.out" "$work/push.log"); master: $(tail -5 "$work/master.log")"
pushed=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["totals"]["commands_total"])' \
  "$work/sysbench_text_rw_2t_20tx.json")
merged=0
for _ in $(seq 1 50); do
  merged=$(python3 - "$work/master.jsonl" <<'PY'
import json, sys
best = 0
for line in open(sys.argv[1]):
    r = json.loads(line)
    if any(c.get("node") != "master" for c in r.get("cluster", {}).get("contributors", [])):
        best = max(best, r["totals"]["commands_total"])
print(best)
PY
  )
  [ "$merged" = "$pushed" ] && break
  sleep 0.2
done
kill -TERM "$pid"
wait "$pid" || fail "the master exited with $? after SIGTERM: $(tail -5 "$work/master.log")"
pid=
[ "$merged" = "$pushed" ] ||
  fail "the master's reports count $merged commands from the pushed report, not $pushed"
if grep -qF "$(cat "$work/peer.token")" "$work/master.log" "$work/push.log"; then
  fail "the peer token appears in a log"
fi
echo "report-push (SDK component push): $(cat "$work/push.out"); the master's report counts its $pushed commands"
echo "consumer: OK"

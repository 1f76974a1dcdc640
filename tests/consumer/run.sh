#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Out-of-tree proof: install mysqlprobe into a staging prefix, build examples/sink-jsonl against
# that prefix ONLY, and have the installed host load it from YAML and write reports with it.
# Usage: run.sh SOURCE_DIR BUILD_DIR
set -euo pipefail
src=$1
build=$2
work=$(mktemp -d "$build/consumer.XXXXXX")
trap 'kill "${pid:-}" 2>/dev/null || true' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

cmake --install "$build" --prefix "$work/stage" >"$work/install.log"
# The example sees the SDK through CMAKE_PREFIX_PATH and nothing else from this tree.
cmake -S "$src/examples/sink-jsonl" -B "$work/example" -G Ninja \
  -DCMAKE_PREFIX_PATH="$work/stage" -DCMAKE_BUILD_TYPE=Release >"$work/configure.log"
cmake --build "$work/example" >"$work/build.log"
so="$work/example/libmp-sink-jsonl.so"
[ -f "$so" ] || fail "the example did not build $so"
grep -q "mysqlprobe-sdk" "$work/example/CMakeCache.txt" || fail "the example did not use find_package"
grep -q "$work/stage" "$work/example/CMakeCache.txt" || fail "the SDK did not come from the staging prefix"
if grep -q "$src/sdk/include" "$work/example/build.ninja"; then
  fail "the example compiled against the source tree's SDK, not the installed one"
fi

host="$work/stage/bin/mysqlprobe"
# The installed host finds its own plugins, without LD_LIBRARY_PATH.
list=$(env -u LD_LIBRARY_PATH "$host" --list-plugins --plugin-dir "$work/example")
for name in capture-pcap decoder-mysql cluster-static cluster-gossip sink-websocket sink-jsonl; do
  grep -q "^$name " <<<"$list" || fail "--list-plugins does not list $name"
done
echo "installed host lists 5 built-in plugins and sink-jsonl"

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
echo "consumer: OK"

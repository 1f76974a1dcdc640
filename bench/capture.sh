#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Capture + reassembly throughput, offline, against tshark on the same file in the same run.
# Prints packets/s, MB/s, CPU seconds and peak RSS for both, and their ratio.
# Usage: bench/capture.sh [COPIES]   (the sysbench capture repeated COPIES times; default 1500)
set -euo pipefail
cd "$(dirname "$0")/.."
copies=${1:-1500}
command -v tshark >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tshark; }
[ -x build/release/bin/mysqlprobe ] || { cmake --preset release >/dev/null && cmake --build --preset release; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
big="$work/big.pcap"
python3 bench/make_capture.py tests/data/pcap/sysbench_text_rw_2t_20tx.pcap "$big" "$copies" >/dev/null
packets=$(( copies * 826 ))
bytes=$(stat -c %s "$big")
sync "$big"            # not while the kernel still writes the new file back
cat "$big" >/dev/null  # both tools read from the page cache

measure() {  # name, command...: prints "name wall cpu rss_kb"
  local name=$1; shift
  python3 bench/rusage.py "$work/$name.time" "$@" >"$work/$name.out" 2>"$work/$name.err"
  read -r wall cpu rss <"$work/$name.time"
  echo "$name $wall $cpu $rss"
}

# Capture and reassembly only: no decoder (bench/decoder.sh measures decoding).
cat >"$work/capture.yaml" <<YAML
serverport: 0
serveraddress: 127.0.0.1
plugins: {capture: capture-pcap, decoder: none, cluster: none, sinks: []}
YAML
probe=$(measure mysqlprobe build/release/bin/mysqlprobe -c "$work/capture.yaml" -r "$big")
shark=$(measure tshark tshark -r "$big" -q -n)
# Sanity: the probe saw every packet and delivered every payload byte of every copy.
python3 - "$work/mysqlprobe.out" "$packets" "$copies" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
c = r["capture"]
assert c["packets"] == int(sys.argv[2]), c
assert c["stream_bytes"] == 816746 * int(sys.argv[3]), c
assert c["gap_bytes"] == 0 and c["probe_dropped"] == 0, c
PY
printf "%-11s %10s %12s %10s %9s %10s\n" tool packets packets/s MB/s cpu_s peak_MB
for row in "$probe" "$shark"; do
  read -r name wall cpu rss <<<"$row"
  pps=$(echo "$packets / $cpu" | bc)
  mbs=$(echo "scale=1; $bytes / 1048576 / $cpu" | bc)
  printf "%-11s %10d %12d %10s %9s %10d\n" "$name" "$packets" "$pps" "$mbs" "$cpu" $((rss / 1024))
done
read -r _ _ pcpu prss <<<"$probe"
read -r _ _ tcpu trss <<<"$shark"
echo "ratio (tshark CPU / mysqlprobe CPU): $(echo "scale=1; $tcpu / $pcpu" | bc)x;" \
     "peak RSS ratio: $(echo "scale=1; $trss / $prss" | bc)x"
echo "(packets/s and MB/s are per CPU second; file: $copies copies of the sysbench capture, $((bytes / 1048576)) MB)"

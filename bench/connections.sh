#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Memory at many concurrent connections: COPIES copies of the bundled sysbench capture's first
# HEAD packets run side by side (2 connections each, own client addresses), so 2 x COPIES
# connections are open at once. Prints peak RSS and CPU of mysqlprobe and tshark on the file.
# Usage: bench/connections.sh [COPIES] [HEAD]   (default 5000 copies = 10,000 connections)
set -euo pipefail
cd "$(dirname "$0")/.."
copies=${1:-5000}
head=${2:-120}
command -v tshark >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tshark; }
[ -x build/release/bin/mysqlprobe ] || { cmake --preset release >/dev/null && cmake --build --preset release; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
file="$work/connections.pcap"
python3 bench/make_connections.py tests/data/pcap/sysbench_text_rw_2t_20tx.pcap "$file" "$copies" "$head" >/dev/null
sync "$file"  # not while the kernel still writes the new file back
measure() {  # name command...: prints "name cpu_s rss_mb"
  local name=$1; shift
  python3 bench/rusage.py "$work/time" "$@" >"$work/$name.out" 2>"$work/$name.err"
  read -r _ cpu rss <"$work/time"
  echo "$name $cpu $((rss / 1024))"
}
read -r _ pcpu prss < <(measure mysqlprobe build/release/bin/mysqlprobe -r "$file" --port 3306)
conns=$(python3 -c "import json;print(json.load(open('$work/mysqlprobe.out'))['capture']['connections']['opened'])")
queries=$(python3 -c "import json;print(json.load(open('$work/mysqlprobe.out'))['totals']['commands'].get('COM_QUERY',0))")
read -r _ tcpu trss < <(measure tshark tshark -r "$file" -n -Y mysql.command -T fields -e mysql.command)
echo "== $conns concurrent connections, $queries queries ($(($(stat -c %s "$file") / 1048576)) MB)"
printf "%-12s %10s %10s\n" tool cpu_s peak_rss_MB
printf "%-12s %10s %10s\n" mysqlprobe "$pcpu" "$prss"
printf "%-12s %10s %10s\n" tshark "$tcpu" "$trss"
echo "ratio (RSS): tshark / mysqlprobe $(echo "scale=1; $trss / $prss" | bc)x"

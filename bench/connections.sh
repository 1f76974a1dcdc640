#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Memory at many concurrent connections: COPIES copies of a bundled sysbench capture's first
# HEAD packets run side by side (2 connections each, own client addresses), so 2 x COPIES
# connections are open at once. Prints peak RSS and CPU of mysqlprobe and tshark on the file.
# Both captures: text (queries), and prepared (each connection prepares its 38 statements in
# its first packets and keeps them: a pool of connections with prepared statements).
# Usage: bench/connections.sh [COPIES] [HEAD]   (default 5000 copies = 10,000 connections;
#        HEAD 120 packets of the text capture, 400 of the prepared one)
set -euo pipefail
cd "$(dirname "$0")/.."
copies=${1:-5000}
head=${2:-}
command -v tshark >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tshark; }
[ -x build/release/bin/mysqlprobe ] || { cmake --preset release >/dev/null && cmake --build --preset release; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
file="$work/connections.pcap"
measure() {  # name command...: prints "name cpu_s rss_mb"
  local name=$1; shift
  python3 bench/rusage.py "$work/time" "$@" >"$work/$name.out" 2>"$work/$name.err"
  read -r _ cpu rss <"$work/time"
  echo "$name $cpu $((rss / 1024))"
}
for kind in text ps; do
  h=${head:-$([ $kind = text ] && echo 120 || echo 400)}
  python3 bench/make_connections.py "tests/data/pcap/sysbench_${kind}_rw_2t_20tx.pcap" "$file" "$copies" "$h" >/dev/null
  sync "$file"  # not while the kernel still writes the new file back
  echo "== sysbench_${kind}_rw_2t_20tx.pcap, first $h packets"
  read -r _ pcpu prss < <(measure mysqlprobe build/release/bin/mysqlprobe -r "$file" --port 3306)
  conns=$(python3 -c "import json;print(json.load(open('$work/mysqlprobe.out'))['capture']['connections']['opened'])")
  queries=$(python3 -c "import json;c=json.load(open('$work/mysqlprobe.out'))['totals']['commands'];print(c.get('COM_QUERY',0)+c.get('COM_STMT_EXECUTE',0))")
  read -r _ tcpu trss < <(measure tshark tshark -r "$file" -n -Y mysql.command -T fields -e mysql.command)
  echo "== $conns concurrent connections, $queries queries ($(($(stat -c %s "$file") / 1048576)) MB)"
  printf "%-12s %10s %10s\n" tool cpu_s peak_rss_MB
  printf "%-12s %10s %10s\n" mysqlprobe "$pcpu" "$prss"
  printf "%-12s %10s %10s\n" tshark "$tcpu" "$trss"
  echo "ratio (RSS): tshark / mysqlprobe $(echo "scale=1; $trss / $prss" | bc)x"
done

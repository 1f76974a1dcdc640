#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Decoder benchmark, in one invocation on the same files:
#   offline: mysqlprobe -r, tshark -Y mysql.command, pt-query-digest --type tcpdump, on
#     (1) the two sysbench captures of tests/data (text and prepared) each repeated COPIES times
#     and (2) a larger sysbench capture this script records itself (real mariadbd on loopback,
#     tcpdump);
#   live: the probe's CPU per 1000 queries and peak RSS while sysbench runs.
# Usage: [RUNS=9] bench/decoder.sh [COPIES] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
copies=${1:-200}
seconds=${2:-20}
runs=${RUNS:-9}  # mysqlprobe's offline runs per file (median)
need=()
for p in tshark percona-toolkit tcpdump sysbench mariadb-server python3-pymysql; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
[ -x build/release/bin/mysqlprobe ] || { cmake --preset release >/dev/null && cmake --build --preset release; }
probe=$PWD/build/release/bin/mysqlprobe
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

measure() {  # out-file command...: prints "cpu_s rss_mb"
  local out=$1; shift
  python3 bench/rusage.py "$work/time" "$@" >"$out" 2>"$out.err" || true
  read -r _ cpu rss <"$work/time"
  echo "$cpu $((rss / 1024))"
}

row() {  # tool queries cpu rss
  local qps="-"
  per="-"
  if [ "$(echo "$3 > 0" | bc)" = 1 ]; then
    qps=$(echo "$2 / $3" | bc)
    per=$(echo "scale=4; $3 * 1000 / $2" | bc)
  fi
  printf "%-16s %10s %12s %14s %8s %8s\n" "$1" "$2" "$qps" "$per" "$3" "$4"
}

offline() {  # name file port
  local name=$1 file=$2 port=$3
  # Every tool reads the file from the page cache, and none runs while the kernel still writes
  # anything back (a file written just before made the first timings swing by 50%; so did the
  # previous file's multi-GB tcpdump text, still being written back).
  sync
  cat "$file" >/dev/null
  echo "== offline: $name ($(($(stat -c %s "$file") / 1048576)) MB)"
  printf "%-16s %10s %12s %14s %8s %8s\n" tool queries "queries/s" "cpu_s/1000q" cpu_s rss_MB
  # mysqlprobe takes well under a second here, where this VM's timing swings by 20-30%: it
  # runs RUNS times and the median counts (the minimum is printed beside it).
  local cpus=() r
  for ((r = 0; r < runs; r++)); do
    read -r c rss < <(measure "$work/probe.json" "$probe" -r "$file" --port "$port")
    cpus+=("$c")
  done
  read -r pcpu pmin < <(printf "%s\n" "${cpus[@]}" | sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)], v[1]}')
  pq=$(python3 -c "import json;t=json.load(open('$work/probe.json'))['totals']['commands'];print(t.get('COM_QUERY',0)+t.get('COM_STMT_EXECUTE',0))")
  row mysqlprobe "$pq" "$pcpu" "$rss"
  echo "  (median of $runs runs; CPU s of each: ${cpus[*]}; best $(echo "$pq / $pmin" | bc) queries/s)"
  read -r tcpu rss < <(measure "$work/tshark.txt" tshark -r "$file" -n -d "tcp.port==$port,mysql" -Y mysql.command -T fields -e mysql.command)
  q=$(grep -cE '^(3|23)$' "$work/tshark.txt" || true)
  row "tshark -Y" "$q" "$tcpu" "$rss"
  # pt-query-digest reads tcpdump's text output; producing that text is not counted.
  tcpdump -r "$file" -x -n -q -tttt "tcp port $port" >"$work/dump.txt" 2>/dev/null
  read -r qcpu rss < <(measure "$work/pt.txt" pt-query-digest --type tcpdump --watch-server "127.0.0.1:$port" --limit 1 "$work/dump.txt")
  rm -f "$work/dump.txt"
  q=$(grep -m1 -oE '# Overall: [0-9.]+[kM]? total' "$work/pt.txt" | awk '{print $3}' || echo "?")
  printf "%-16s %10s %12s %14s %8s %8s\n" pt-query-digest "$q" "$(echo "$pq / $qcpu" | bc)" \
    "$(echo "scale=4; $qcpu * 1000 / $pq" | bc)" "$qcpu" "$rss"
  echo "ratios (CPU): tshark / mysqlprobe $(echo "scale=1; $tcpu / $pcpu" | bc)x," \
       "pt-query-digest / mysqlprobe $(echo "scale=1; $qcpu / $pcpu" | bc)x" \
       "(pt-query-digest's queries/s uses mysqlprobe's query count)"
}

# Both bundled sysbench captures (the prepared one is the largest of ../shared/pcaps).
for kind in text ps; do
  python3 bench/make_capture.py "tests/data/pcap/sysbench_${kind}_rw_2t_20tx.pcap" "$work/copies.pcap" "$copies" >/dev/null
  offline "bundled sysbench_${kind}_rw_2t_20tx.pcap x$copies" "$work/copies.pcap" 3306
done
rm -f "$work/copies.pcap"

# Record a larger capture of our own, and measure the probe live at the same time.
/usr/bin/python3 - "$work" "$seconds" "$probe" <<'PY'
import os, subprocess, sys, time
sys.path.insert(0, "tests/live")
from harness import MariaDB, Probe
work, seconds, probe = sys.argv[1], int(sys.argv[2]), sys.argv[3]
with MariaDB() as db:
    open(f"{work}/port", "w").write(str(db.port))
    sb = ["sysbench", "oltp_read_write", "--db-driver=mysql", "--mysql-host=127.0.0.1",
          f"--mysql-port={db.port}", "--mysql-user=root", "--mysql-db=sbtest", "--tables=4",
          "--table-size=10000", "--threads=4"]
    subprocess.run(["mariadb", f"--socket={db.dir}/mysqld.sock", "-uroot", "-e",
                    "CREATE DATABASE sbtest"], check=True)
    subprocess.run(sb + ["prepare"], check=True, capture_output=True)
    dump = subprocess.Popen(["tcpdump", "-i", "lo", "-s", "0", "-B", "65536", "-w",
                             f"{work}/recorded.pcap", f"tcp port {db.port}"],
                            stderr=subprocess.DEVNULL)
    def live(batch_ms, note):
      yaml = (f"serverport: 0\nserveraddress: 127.0.0.1\nprobe: {{device: lo, port: {db.port}}}\n"
              f"plugins:\n  cluster: none\n  sinks: []\n"
              f"  capture: {{plugin: capture-pcap, config: {{batch_ms: {batch_ms}}}}}\n")
      with Probe(probe, yaml) as p:
          time.sleep(1)
          pid = p.proc.pid
          def cpu():
              f = open(f"/proc/{pid}/stat").read().split(")")[1].split()
              return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
          c0 = cpu()
          out = subprocess.run(sb + [f"--time={seconds}", "run"], capture_output=True, text=True)
          time.sleep(1)
          c1 = cpu()
          m = p.metrics()
          rss = int([l for l in open(f"/proc/{pid}/status") if l.startswith("VmHWM")][0].split()[1]) // 1024
          q = (m.get("mysqlprobe_decoder_mysql_command_com_query_total", 0) +
               m.get("mysqlprobe_decoder_mysql_command_com_stmt_execute_total", 0))
          print(f"== live: sysbench oltp_read_write, 4 threads, {seconds} s, unthrottled; capture batch_ms {batch_ms} ({note})")
          print(f"queries (text + executes) seen by the probe: {q} ({q / seconds:.0f}/s); probe CPU {c1 - c0:.2f} s = "
                f"{(c1 - c0) * 1e6 / max(q, 1):.2f} us per query; peak RSS {rss} MB; "
                f"kernel drops {m.get('mysqlprobe_capture_pcap_kernel_dropped')}, "
                f"queue drops {m.get('mysqlprobe_stream_queue_dropped_total')}, "
                f"gap bytes {m.get('mysqlprobe_stream_gap_bytes_total')}")
    live(50, "the default")
    dump.terminate()  # the recorded capture is the first run's traffic
    dump.wait()
    live(0, "a read for every kernel block, as before batch_ms")
PY
offline "recorded sysbench capture" "$work/recorded.pcap" "$(cat "$work/port")"

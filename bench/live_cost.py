#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Live cost at the capture floor: on the same traffic, at the same time, the CPU of mysqlprobe
(capture, reassembly, decoding, templates), of `tcpdump -w /dev/null` with the same filter, and
of a bare libpcap loop (bench/pcap_loop.c: reads every packet, nothing else), per query.
A real mariadbd on loopback, sysbench oltp_read_write unthrottled (text, then prepared); all
three capture `lo` at once, so they see exactly the same packets. CPU is user + system of each
process (/proc/PID/stat) over the run.
Usage (root): MP_BUILD_DIR=build/release python3 bench/live_cost.py [SECONDS] [THREADS]"""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "live"))
from harness import MariaDB, Probe  # noqa: E402

seconds = int(sys.argv[1]) if len(sys.argv) > 1 else 10
threads = int(sys.argv[2]) if len(sys.argv) > 2 else 4
root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
build = os.environ.get("MP_BUILD_DIR", os.path.join(root, "build", "release"))
probe_bin = os.path.join(build, "bin", "mysqlprobe")
if os.geteuid() != 0:
    raise SystemExit("live capture needs root")
need = [pkg for tool, pkg in (("tcpdump", "tcpdump"), ("sysbench", "sysbench"), ("cc", "gcc"),
                              ("mariadbd", "mariadb-server"))
        if shutil.which(tool) is None and not os.path.exists(f"/usr/sbin/{tool}")]
if not os.path.exists("/usr/include/pcap/pcap.h"):
    need.append("libpcap-dev")
if need:
    subprocess.run(["apt-get", "update", "-qq"], check=True)
    subprocess.run(["apt-get", "install", "-y", "-qq"] + need, check=True,
                   env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"),
                   stdout=subprocess.DEVNULL)
if not os.path.exists(probe_bin):
    subprocess.run(["cmake", "--preset", "release"], cwd=root, check=True,
                   stdout=subprocess.DEVNULL)
    subprocess.run(["cmake", "--build", "--preset", "release"], cwd=root, check=True)
work = tempfile.mkdtemp(prefix="mp-livecost-")
loop_bin = os.path.join(work, "pcap_loop")
subprocess.run(["cc", "-O2", "-o", loop_bin, os.path.join(root, "bench", "pcap_loop.c"),
                "-lpcap"], check=True)
BUFFER_MB, SNAPLEN = 32, 262144  # capture-pcap's defaults


def cpu(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def run(db, mode):
    flt = f"tcp port {db.port}"
    yaml = (f"serverport: 0\nserveraddress: 127.0.0.1\nprobe: {{device: lo, port: {db.port}}}\n"
            "plugins:\n  cluster: none\n  sinks: []\n")
    with Probe(probe_bin, yaml) as p:
        dump = subprocess.Popen(["tcpdump", "-i", "lo", "-n", "-s", str(SNAPLEN), "-B",
                                 str(BUFFER_MB * 1024), "-w", "/dev/null", flt],
                                stderr=subprocess.PIPE, text=True)
        loop = subprocess.Popen([loop_bin, "lo", flt, str(BUFFER_MB), str(SNAPLEN)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(1.5)
        pids = {"mysqlprobe": p.proc.pid, "tcpdump -w /dev/null": dump.pid,
                "bare libpcap loop": loop.pid}
        m0 = p.metrics()
        c0 = {k: cpu(v) for k, v in pids.items()}
        sb = subprocess.run(
            ["sysbench", "oltp_read_write", "--db-driver=mysql", "--mysql-host=127.0.0.1",
             f"--mysql-port={db.port}", "--mysql-user=root", "--mysql-db=sbtest", "--tables=4",
             "--table-size=10000", f"--threads={threads}", f"--time={seconds}",
             f"--db-ps-mode={mode}", "run"], capture_output=True, text=True)
        if sb.returncode != 0:
            raise SystemExit("sysbench failed: " + sb.stderr[-2000:])
        time.sleep(1.5)
        c1 = {k: cpu(v) for k, v in pids.items()}
        m1 = p.metrics()
        dump.terminate()
        loop.terminate()
        dump_err = dump.communicate(timeout=10)[1]
        loop_out = loop.communicate(timeout=10)[0]
    q = sum(m1.get(k, 0) - m0.get(k, 0) for k in (
        "mysqlprobe_decoder_mysql_command_com_query_total",
        "mysqlprobe_decoder_mysql_command_com_stmt_execute_total"))
    drops = {
        "mysqlprobe": m1.get("mysqlprobe_capture_pcap_kernel_dropped", 0) +
        m1.get("mysqlprobe_stream_queue_dropped_total", 0),
        "tcpdump -w /dev/null": int((re.search(r"(\d+) packets dropped by kernel", dump_err) or
                                     re.search("()", ""))[1] or 0),
        "bare libpcap loop": int((re.search(r"(\d+) dropped", loop_out) or re.search("()", ""))[1]
                                 or 0),
    }
    packets = int((re.search(r"(\d+) packets", loop_out) or re.search("()", ""))[1] or 0)
    label = "text" if mode == "disable" else "prepared"
    print(f"\n== sysbench oltp_read_write {label}, {threads} threads, {seconds} s unthrottled: "
          f"{q} queries ({q / seconds:,.0f}/s), {packets} packets")
    print(f"{'tool':<22}{'CPU s':>8}{'us/query':>10}{'us/packet':>11}{'vs tcpdump':>12}"
          f"{'drops':>8}")
    base = (c1["tcpdump -w /dev/null"] - c0["tcpdump -w /dev/null"]) / max(q, 1) * 1e6
    for name in pids:
        used = c1[name] - c0[name]
        per_q = used / max(q, 1) * 1e6
        print(f"{name:<22}{used:>8.2f}{per_q:>10.2f}{used / max(packets, 1) * 1e6:>11.2f}"
              f"{per_q / base if base else 0:>11.2f}x{drops[name]:>8}")


with MariaDB() as db:
    subprocess.run(["mariadb", f"--socket={db.dir}/mysqld.sock", "-uroot", "-e",
                    "CREATE DATABASE sbtest"], check=True)
    subprocess.run(["sysbench", "oltp_read_write", "--db-driver=mysql", "--mysql-host=127.0.0.1",
                    f"--mysql-port={db.port}", "--mysql-user=root", "--mysql-db=sbtest",
                    "--tables=4", "--table-size=10000", "prepare"], check=True,
                   capture_output=True)
    for mode in ("disable", "auto"):
        run(db, mode)
shutil.rmtree(work, ignore_errors=True)

#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Builds mysqlprobe and runs it on a bundled capture of real MariaDB traffic (sysbench).
# Any arguments are passed to mysqlprobe instead of the default.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
cmake --preset release >/dev/null
cmake --build --preset release -j"$(nproc)"
bin=build/release/bin/mysqlprobe
if [ $# -eq 0 ]; then
  set -- -r tests/data/pcap/sysbench_text_rw_2t_20tx.pcap
fi
echo "+ $bin $*" >&2
exec "$bin" "$@"

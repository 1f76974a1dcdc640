#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Builds mysqlprobe and runs it on a bundled capture of real MariaDB traffic (sysbench).
# Any arguments are passed to mysqlprobe instead of the default.
# Set-up (packages, build) is one line per step on stderr, its whole output in
# build/demo-setup.log; stdout gets only the report: a table on a terminal, JSON into a pipe or a
# file (`--format json|table` chooses).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p build
log=build/demo-setup.log
: >"$log"
step() { # step WHAT CMD...: CMD's output goes to the log, one line to stderr
  local what=$1 t0=$SECONDS
  shift
  printf '%s ... ' "$what" >&2
  if "$@" >>"$log" 2>&1; then
    echo "done ($((SECONDS - t0)) s)" >&2
  else
    echo "FAILED; the end of $log:" >&2
    tail -n 30 "$log" >&2
    exit 1
  fi
}
step "packages (scripts/deps.sh)" bash scripts/deps.sh
step "configure (cmake --preset release)" cmake --preset release
step "build" cmake --build --preset release -j"$(nproc)"
bin=build/release/bin/mysqlprobe
if [ $# -eq 0 ]; then
  set -- -r tests/data/pcap/sysbench_text_rw_2t_20tx.pcap
fi
echo "+ $bin $*" >&2
exec "$bin" "$@"

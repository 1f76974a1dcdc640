#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Failure detection of cluster-gossip beside HashiCorp's serf agent, same run: N members on
# loopback under CPU load; false suspicions, detection time of a kill -9, CPU and memory.
# Usage: bench/gossip.sh [N] [LOAD] [QUIET_SECONDS]   (default 20 members, 2 busy processes, 30 s)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v serf >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq serf; }
[ -x build/release/bin/mysqlprobe ] || { cmake --preset release >/dev/null && cmake --build --preset release; }
/usr/bin/python3 bench/gossip.py build/release/bin/mysqlprobe "${1:-20}" "${2:-2}" "${3:-30}"

#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Installs what mysqlprobe needs to build and test on Debian 12. Idempotent: apt runs only
# when a package is missing. Needs root (or sudo).
set -euo pipefail
pkgs=(
  # toolchain and build
  g++ cmake ninja-build pkg-config git python3
  clang libclang-rt-14-dev clang-format clang-tidy
  # libraries
  libpoco-dev libpcap-dev libboost-dev libboost-filesystem-dev libyaml-cpp-dev doctest-dev zlib1g-dev
  libsnappy-dev libmsgpack-cxx-dev libssl-dev
  # live tests: a real server and client; independent websocket clients/servers and snappy
  mariadb-server mariadb-client python3-pymysql sysbench
  python3-websocket python3-websockets python3-snappy
  # TLS tests make their own certificates
  openssl
  # gossip: HashiCorp's serf agent (memberlist) as the reference peer; nft for partitions
  serf nftables
  # sink-amqp: rabbitmq-c, and a real broker with a python consumer for its tests
  librabbitmq-dev rabbitmq-server python3-pika
  # monitor-mysql and proxy-mysql: Redis coordination; haproxy as the proxy's peer in bench/
  redis-server haproxy
  # console-web: its page in a real browser (headless chromium driven by selenium)
  chromium chromium-driver python3-selenium
)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "deps: all ${#pkgs[@]} packages present"
  exit 0
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "deps: installing ${missing[*]}"
$sudo apt-get update -qq
# Installing mariadb-server must not start a system server on 3306: tests start their own.
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
  $sudo chmod +x /usr/sbin/policy-rc.d
  trap '$sudo rm -f /usr/sbin/policy-rc.d' EXIT
fi
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"

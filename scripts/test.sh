#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Everything CI checks: formatting, every test in a warnings-as-errors ASan+UBSan build,
# clang-tidy, the threaded tests under TSan (warnings as errors, optimised), and a short run of
# every libFuzzer target.
# Exit status 0 only if all pass.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)
fuzz_seconds=${MP_FUZZ_SECONDS:-20}
# Each step prints the wall-clock time and the seconds since the start (CI's budget is 45 min).
step() { printf '\n==== %s (%s, %d s in) ====\n' "$*" "$(date +%T)" "$SECONDS"; }

step "dependencies"
bash scripts/deps.sh

step "clang-format"
files=$(git ls-files '*.c' '*.h' '*.cpp' '*.hpp')
clang-format --dry-run --Werror $files
echo "formatting: $(wc -w <<<"$files") files clean"

# Every test runs once, in the ASan+UBSan build (warnings as errors): a failure there is a
# failure. The optimised build's warnings are checked by the ThreadSanitizer build (RelWithDebInfo,
# warnings as errors). CI's budget (45 minutes on 2 cores) does not allow a third run of the
# real-component tests (MariaDB, RabbitMQ, sysbench, several nodes) without a sanitizer.
step "build with ASan+UBSan (warnings as errors) and test"
cmake --preset asan >/dev/null
cmake --build --preset asan -j"$jobs"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --preset asan -j"$jobs"

step "clang-tidy (the checks and why: .clang-tidy)"
tidy_files=$(git ls-files 'host/*.cpp' 'libs/*.cpp' 'plugins/*/src/*.cpp')
# shellcheck disable=SC2086
echo $tidy_files | xargs -n4 -P"$jobs" clang-tidy -p build/asan --quiet
echo "clang-tidy: $(wc -w <<<"$tidy_files") files clean"

step "build with ThreadSanitizer and test the threaded parts"
# GCC's TSan does not model std::atomic_thread_fence (-Wtsan, off in the preset): the stream
# pipeline's one fence orders atomics only, which TSan never reports as races anyway.
cmake --preset tsan >/dev/null
cmake --build --preset tsan -j"$jobs"
tsan_log=$(mktemp -d)
# Every test that runs threads or the host process; not the memory bounds (TSan's shadow memory),
# the sysbench accuracy run (timing), the fuzz corpus replays (single-threaded, ASan has them) or
# the console's browser test (chromium's time; console-web runs in every test of a node with the
# default sinks here).
# What this step checks is that TSan reports no race (a race stops the process, exit 66, and
# leaves its report in $tsan_log). The tests' own checks count in the ASan step: under
# TSan's 5-15x slowdown a few timing checks can miss (a recorder that subscribes after a slave's
# first report, a stalled client that is never fed enough to overflow), so they are shown here,
# not held against the run.
# MP_TEST_SHORT: the slowest real-component tests repeat less of their load here (each says
# what it leaves to the ASan step); every code path they reach is still reached.
if ! MP_TEST_SHORT=1 TSAN_OPTIONS="halt_on_error=1 exitcode=66 second_deadlock_stack=1 log_path=$tsan_log/race" \
  ctest --preset tsan -j"$jobs" -E "live-sysbench|live-coverage|memory|fuzz-replay|slave-flood|pusher-payload|console-web-browser"; then
  echo "(tests that failed under TSan's slowdown are listed above; they passed in the ASan step)"
fi
if ls "$tsan_log"/race* >/dev/null 2>&1; then
  cat "$tsan_log"/race*
  echo "ThreadSanitizer reported the races above"
  exit 1
fi
echo "ThreadSanitizer: no race reported"

step "fuzz (${fuzz_seconds}s per target, $jobs at a time)"
targets="config query http wsframe descriptor frame stream pcap_file decoder report fingerprint gossip inbox hostport amqp binlog binlog_json inbound resp monitor sse console mysql_client"
cmake --preset fuzz >/dev/null
# shellcheck disable=SC2046,SC2086
cmake --build --preset fuzz -j"$jobs" --target $(printf 'fuzz_%s ' $targets)
# An input that runs past 15 s is a hang (libFuzzer's own default waits 20 minutes). A failure
# prints the report and the input in base64, so that it can be replayed from CI's log alone:
# base64 -d > input; build/fuzz/bin/fuzz_NAME input
fuzz_one() {  # fuzz_one NAME: a copy of its corpus, the time given, the log's summary or its crash
  local work input
  work=$(mktemp -d)
  cp "tests/fuzz/corpus/$1"/* "$work/"
  if ! "build/fuzz/bin/fuzz_$1" -max_total_time="$fuzz_seconds" -max_len=4096 -timeout=15 \
    -artifact_prefix="$work.found-" "$work" 2>"$work.log"; then
    sed -n '/^==[0-9]*==\|^ALARM\|ERROR: libFuzzer/,$p' "$work.log" | grep -v '^MS:' | head -80
    for input in "$work".found-*; do
      [ -f "$input" ] && { echo "fuzz_$1's input ($(wc -c <"$input") bytes, base64):"; base64 -w0 "$input"; echo; }
    done
    echo "fuzz_$1 found a crash"
    rm -rf "$work" "$work".*
    return 1
  fi
  grep -E "^Done" "$work.log" | sed "s/^/fuzz_$1: /"
  rm -rf "$work" "$work".*
}
export -f fuzz_one
export fuzz_seconds
# shellcheck disable=SC2086
printf '%s\n' $targets | xargs -P"$jobs" -I{} bash -c 'fuzz_one {}' ||
  { echo "a fuzz target failed (above)"; exit 1; }

step "all checks passed"

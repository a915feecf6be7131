#!/usr/bin/env bash
# Reproducible benchmark: builds release binaries (netservd, the tokio echo
# example, the C baselines, the C load generator), then bench/bench.py runs
# every cell against netservd, the C baselines, tokio and `sockperf server`
# with the same generator (bench/c_gen.c: one epoll thread, faster than any of
# the servers, so the server is the bottleneck; `--generator netservd` for the
# old one), server and generator pinned to different cores, and writes
# BENCHMARKS.md from the run, flagging every generator-bound run.
#
#   bench/run.sh            full run: 3 repetitions, 1 s warm-up + 3 s per cell, plus memory/scale (~10 min)
#   bench/run.sh --quick    CI smoke: ~1 s per cell, one repetition; exits 1 if netservd < 0.7x the C
#                           baseline in both throughput and server CPU per message (after one re-run)
#
# Needs gcc, python3, taskset (util-linux) and sockperf; installs the missing ones with apt-get when root.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for tool in gcc:gcc python3:python3 taskset:util-linux sockperf:sockperf; do
  command -v "${tool%%:*}" >/dev/null 2>&1 || need+=("${tool#*:}")
done
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing: ${need[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  else
    echo "bench: missing ${need[*]}; install them (Debian: apt-get install ${need[*]})" >&2
    exit 1
  fi
fi

cargo build --release --locked --bin netservd --example tokio_echo
mkdir -p target/bench
gcc -O2 -Wall -Wextra -o target/bench/c_echo_tcp bench/c_echo_tcp.c
gcc -O2 -Wall -Wextra -o target/bench/c_echo_udp bench/c_echo_udp.c
gcc -O2 -Wall -Wextra -o target/bench/c_gen bench/c_gen.c
# 10,000 idle connections need descriptors on both ends.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || ulimit -n 65536 2>/dev/null || true
exec python3 bench/bench.py "$@"

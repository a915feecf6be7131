#!/usr/bin/env bash
# Scaling with `[daemon] workers` (issue 15): builds the release netservd and
# the C generator, then bench/scale.py runs UDP and TCP 64 B at 1, 2, 4 and 8
# workers (capped at the CPUs available unless --force) and prints one
# Markdown table (workers, msgs/s, server CPU per message, server and
# generator core shares) to paste into BENCHMARKS.md. About 2 minutes with
# the defaults (3 repetitions of 1 s warm-up + 3 s per point); loopback only.
#
#   bench/scale.sh                 full run
#   bench/scale.sh --quick         smoke run: one repetition of 300 ms + 1 s per point
#   bench/scale.sh --force         also the worker counts above the CPU count
#   NETSERVD=path bench/scale.sh --skip-build   use an existing binary (e.g. a debug one for a smoke run)
#
# Needs gcc, python3 and taskset (util-linux).
set -euo pipefail
cd "$(dirname "$0")/.."

build=1
args=()
for a in "$@"; do
  if [ "$a" = --skip-build ]; then build=0; else args+=("$a"); fi
done
for tool in gcc python3 taskset; do
  command -v "$tool" >/dev/null 2>&1 || { echo "scale: missing $tool" >&2; exit 1; }
done
if [ "$build" = 1 ]; then
  cargo build --release --locked --bin netservd
fi
mkdir -p target/bench
gcc -O2 -Wall -Wextra -o target/bench/c_gen bench/c_gen.c
exec python3 bench/scale.py "${args[@]+"${args[@]}"}"

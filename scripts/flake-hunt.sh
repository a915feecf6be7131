#!/usr/bin/env bash
# Runs the whole test suite N times in a row and reports every failure with
# its test name, to prove the suite does not flake:
#   bash scripts/flake-hunt.sh 20              # 20 runs
#   bash scripts/flake-hunt.sh 20 --pressure   # ... with every core kept busy
# --pressure starts one CPU hog per core for the whole hunt (stress-ng when it is
# installed, else a shell busy loop), so the tests compete for CPU the way they
# do on a busy CI machine; the hogs are bounded by the hunt and killed on exit.
# Each run's log is kept in target/flake-hunt/run-K.log. Exit 0 only if every
# run passed. Needs cargo-nextest (per-test results); builds once, up front.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-20}
pressure=${2:-}
out=target/flake-hunt
rm -rf "$out"; mkdir -p "$out"
cargo nextest --version >/dev/null 2>&1 || { echo "flake-hunt needs cargo-nextest" >&2; exit 2; }
cargo test --locked --no-run >/dev/null 2>&1 || { echo "build failed" >&2; cargo test --locked --no-run; exit 2; }

hogs=()
cleanup() { [ ${#hogs[@]} -eq 0 ] || kill "${hogs[@]}" 2>/dev/null || true; }
trap cleanup EXIT
if [ "$pressure" = "--pressure" ]; then
  cores=$(nproc)
  if command -v stress-ng >/dev/null; then
    stress-ng --cpu "$cores" --timeout "$(( runs * 600 ))s" --quiet & hogs+=($!)
    label="stress-ng --cpu $cores"
  else
    for _ in $(seq "$cores"); do (while :; do :; done) & hogs+=($!); done
    label="$cores busy loops"
  fi
  echo "flake-hunt: $runs runs under CPU pressure ($label)"
else
  echo "flake-hunt: $runs runs"
fi

green=0
declare -A failed_tests=()
t_all=$(date +%s)
for k in $(seq "$runs"); do
  t0=$(date +%s)
  log="$out/run-$k.log"
  if cargo nextest run --locked >"$log" 2>&1; then
    green=$((green + 1)); result="ok"
  else
    result="FAILED:"
    while read -r name; do
      result+=" $name"; failed_tests[$name]=$(( ${failed_tests[$name]:-0} + 1 ))
    done < <(grep -E '^ +(FAIL|TIMEOUT|SIGSEGV|SIGABRT|LEAK) \[' "$log" | sed -E 's/^ +[A-Z]+ \[[^]]*\] (\([0-9]+\/[0-9]+\) )?//' | sort -u)
  fi
  summary=$(grep -E '^ +Summary \[' "$log" | sed -E 's/^ +//' || true)
  echo "run $k/$runs: $result ($(( $(date +%s) - t0 ))s; ${summary:-no summary})"
done
echo "flake-hunt: $green of $runs runs green in $(( $(date +%s) - t_all ))s${pressure:+ under CPU pressure}"
for name in "${!failed_tests[@]}"; do echo "  failed ${failed_tests[$name]}x: $name"; done
[ "$green" = "$runs" ]

#!/usr/bin/env bash
# Bounded fuzz run: FUZZ_SECS (default 60) per cargo-fuzz target in fuzz/,
# only where a nightly toolchain is installed (cargo-fuzz needs it); says
# clearly when it skips. New inputs go to a scratch directory so the checkout
# stays clean; a crash fails the run and leaves its input in
# fuzz/artifacts/TARGET/ (copy it into fuzz/corpus/TARGET/ once fixed, so
# tests/fuzz_corpus.rs keeps it as a regression test).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${FUZZ_SECS:-60}

if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  echo "fuzz: SKIPPED: no nightly toolchain (rustup toolchain install nightly); corpora still run in cargo test"
  exit 0
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz"
  cargo install cargo-fuzz --locked --quiet
fi
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
for target in $(cargo +nightly fuzz list); do
  echo "fuzz: $target for ${secs}s"
  mkdir -p "$scratch/$target"
  # -O -a: optimised, with overflow and debug assertions on.
  cargo +nightly fuzz run -O -a "$target" "$scratch/$target" "fuzz/corpus/$target" -- \
    -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
done
echo "fuzz: all targets ran ${secs}s without a crash"

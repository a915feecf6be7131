#!/usr/bin/env bash
# Runs the whole test suite: unit, integration (real binary on loopback),
# network-namespace tests (broadcast/multicast, the compose scenario), peers.
# Extra arguments go to the test runner (e.g. a filter: `bash scripts/test.sh reload`).
# Installs the test peers it needs when run as root on Debian/Ubuntu.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for tool in socat:socat ip:iproute2 python3:python3 sockperf:sockperf; do
  command -v "${tool%%:*}" >/dev/null 2>&1 || need+=("${tool#*:}")
done
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing test peers: ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  else
    echo "missing test peers: ${need[*]} (install them, or run as root so this script can)" >&2
  fi
fi

# cargo-nextest (on this kind of machine from the start) runs every test in its
# own process, kills a hung one (.config/nextest.toml) and prints each test's
# time; the log goes to target/test-report.log, from which .ci/run lists the
# slowest tests. Plain `cargo test` where nextest is missing (same tests; there
# are no doctests).
mkdir -p target
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --locked "$@" 2>&1 | tee target/test-report.log
  exit "${PIPESTATUS[0]}"
fi
echo "cargo-nextest not found: running cargo test (no per-test times)"
cargo test --locked --no-fail-fast "$@" 2>&1 | tee target/test-report.log
exit "${PIPESTATUS[0]}"

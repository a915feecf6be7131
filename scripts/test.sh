#!/usr/bin/env bash
# Runs the whole test suite: unit, integration (real binary on loopback),
# network-namespace tests (broadcast/multicast, the compose scenario), peers.
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

cargo test --locked "$@"

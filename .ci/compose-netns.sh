#!/usr/bin/env bash
# The compose test kit without Docker: one network namespace per compose
# service (daemon, tester) joined by veth pairs to a bridge that lives in a
# third namespace, on the compose file's subnet 172.30.70.0/24, which exists
# only inside these namespaces. The daemon runs docker/config.toml on a
# read-only filesystem (as `read_only: true` in the compose file); the
# "service_healthy" gate is the image's HEALTHCHECK command run inside the
# daemon's namespace; then docker/scenario.sh runs in the tester's namespace,
# as the tester container does. Afterwards the admin endpoint is checked from
# the tester (the container config listens on 0.0.0.0) and the daemon gets
# SIGTERM, as `docker stop` sends, and must exit 0 within 10 s. As with the
# compose kit's config volume, the daemon reads its config from a directory
# the tester may rewrite (CONFIG_DIR: the scenario's reload steps), and the
# network has the compose file's IPv6 ULA subnet as well.
#
# Needs root (ip netns), iproute2 and python3 (HTTP check). Usage:
#   .ci/compose-netns.sh [path/to/netservd]     (default: cargo build, target/debug/netservd)
# CONFIG=other.toml overrides the daemon's config (e.g. to try a subset).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "compose-netns: needs root for ip netns" >&2; exit 1; }

SUBNET_PREFIX=172.30.70 SUBNET6_PREFIX=fd00:172:30:70:
DAEMON_ADDR=$SUBNET_PREFIX.10 TESTER_ADDR=$SUBNET_PREFIX.20 BRIDGE_ADDR=$SUBNET_PREFIX.1
DAEMON6_ADDR=$SUBNET6_PREFIX:10 TESTER6_ADDR=$SUBNET6_PREFIX:20 BRIDGE6_ADDR=$SUBNET6_PREFIX:1
CONFIG=${CONFIG:-docker/config.toml}
if [ $# -ge 1 ]; then
  bin=$(realpath "$1")
else
  cargo build --locked --quiet
  bin=$PWD/target/debug/netservd
fi

# Unique names: several runs (or engineers) may share this machine.
id=ck$$
NS_BR=$id-br NS_D=$id-daemon NS_T=$id-tester
work=$(mktemp -d)
daemon_pid=
# shellcheck disable=SC2317  # invoked by the trap
cleanup() {
  if [ -n "$daemon_pid" ]; then kill -9 "$daemon_pid" 2>/dev/null || true; fi
  for ns in "$NS_D" "$NS_T" "$NS_BR"; do ip netns del "$ns" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# The bridge namespace plays the Docker bridge (gateway .1); multicast
# snooping is off so the bridge floods group traffic like a plain L2 segment.
ip netns add "$NS_BR"
ip -n "$NS_BR" link set lo up
ip -n "$NS_BR" link add br0 type bridge mcast_snooping 0
ip -n "$NS_BR" addr add "$BRIDGE_ADDR/24" dev br0
ip -n "$NS_BR" addr add "$BRIDGE6_ADDR/64" dev br0 nodad
ip -n "$NS_BR" link set br0 up
attach() { # NS ADDR ADDR6: a "container" namespace with eth0 on the bridge and a default route like Docker's
  local ns=$1 addr=$2 addr6=$3 port=v${1##*-}
  ip netns add "$ns"
  ip -n "$NS_BR" link add "$port" type veth peer name eth0 netns "$ns"
  ip -n "$NS_BR" link set "$port" master br0 up
  ip -n "$ns" link set lo up
  ip -n "$ns" addr add "$addr/24" dev eth0
  ip -n "$ns" addr add "$addr6/64" dev eth0 nodad
  ip -n "$ns" link set eth0 up
  ip -n "$ns" route add default via "$BRIDGE_ADDR"
}
attach "$NS_D" "$DAEMON_ADDR" "$DAEMON6_ADDR"
attach "$NS_T" "$TESTER_ADDR" "$TESTER6_ADDR"

# The config directory (the compose kit's `config` volume): the daemon only reads it.
mkdir "$work/conf"
cp "$CONFIG" "$work/conf/config.toml"
echo "compose-netns: daemon $DAEMON_ADDR [$DAEMON6_ADDR], tester $TESTER_ADDR, config $CONFIG in $work/conf"
# Like `read_only: true` in the compose file: the daemon runs in its own mount
# namespace with every filesystem remounted read-only (the exec chain keeps one pid).
# shellcheck disable=SC2016  # expanded by the inner shell
ip netns exec "$NS_D" unshare -m --propagation private sh -c '
  for m in $(awk "{print \$2}" /proc/mounts | grep -v "^/proc\|^/sys\|^/dev"); do
    mount -o remount,bind,ro "$m" 2>/dev/null || true
  done
  touch /.netservd-rw-test 2>/dev/null && { echo "root filesystem is still writable" >&2; exit 1; }
  exec env RUST_LOG=info "$0" --log-format json run --config "$1"' "$bin" "$work/conf/config.toml" 2>"$work/daemon.log" &
daemon_pid=$!

# depends_on: condition: service_healthy -> the image's HEALTHCHECK command, retried.
healthy=0
for _ in $(seq 1 50); do
  if ip netns exec "$NS_D" "$bin" probe tcp://127.0.0.1:7007 --timeout 2s >/dev/null 2>&1; then healthy=1; break; fi
  kill -0 "$daemon_pid" 2>/dev/null || break
  sleep 0.2
done
if [ "$healthy" != 1 ]; then
  echo "compose-netns: daemon never became healthy; its log:" >&2
  cat "$work/daemon.log" >&2
  exit 1
fi

status=0
ip netns exec "$NS_T" env DAEMON="$DAEMON_ADDR" DAEMON6="[$DAEMON6_ADDR]" TESTER_ADDR="$TESTER_ADDR" \
  CONFIG_DIR="$work/conf" NETSERVD="$bin" bash docker/scenario.sh || status=1

# The admin endpoint answers across the network (it listens on 0.0.0.0 in the container config).
ip netns exec "$NS_T" python3 - "$DAEMON_ADDR" <<'PY' || status=1
import json, sys, urllib.request
base = f"http://{sys.argv[1]}:9900"
with urllib.request.urlopen(base + "/healthz", timeout=5) as r:
    assert r.status == 200, r.status
    print("PASS admin /healthz from the tester:", r.read().decode().strip())
with urllib.request.urlopen(base + "/metrics", timeout=5) as r:
    text = r.read().decode()
with urllib.request.urlopen(base + "/services", timeout=5) as r:
    services = {s["name"] for s in json.load(r)}
def sample(name, svc):
    prefix = f'{name}{{service="{svc}"}} '
    return next((float(l[len(prefix):]) for l in text.splitlines() if l.startswith(prefix)), 0.0)
# What the scenario did, seen from the daemon's side (independent of the client tools' output).
want = [("netservd_messages_in_total", "echo", 1), ("netservd_messages_out_total", "echo-udp", 1),
        ("netservd_messages_out_total", "announce", 2), ("netservd_messages_in_total", "group", 1),
        ("netservd_messages_out_total", "group", 1)]
bad = 0
for name, svc, least in want:
    if svc not in services:
        continue
    got = sample(name, svc)
    ok = got >= least
    bad += not ok
    print(f"{'PASS' if ok else 'FAIL'} admin /metrics {name}{{service={svc!r}}} = {got:g} (want >= {least})")
sys.exit(1 if bad else 0)
PY

# docker stop: SIGTERM, then the daemon must be gone within the 10 s grace period with exit 0.
kill -TERM "$daemon_pid"
rc=0
timeout 10 tail --pid="$daemon_pid" -f /dev/null || { echo "FAIL daemon still running 10s after SIGTERM" >&2; status=1; }
wait "$daemon_pid" || rc=$?
daemon_pid=
if [ "$rc" = 0 ]; then echo "PASS daemon exited 0 after SIGTERM"; else echo "FAIL daemon exit code $rc after SIGTERM"; status=1; fi
# The scenario's broken edit is logged as errors naming the file (PATH:LINE:COL: ...); nothing else may be.
errors() { grep '"level":"ERROR"\|panicked' "$work/daemon.log" | grep -v "\"message\":\"$work/conf/config.toml:[0-9]*:[0-9]*: "; }
if errors >/dev/null; then
  echo "FAIL daemon logged errors:"; errors; status=1
fi
[ "$status" = 0 ] || { echo "--- daemon log"; cat "$work/daemon.log"; }
exit "$status"

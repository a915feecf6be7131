#!/bin/sh
# The compose test scenario: run from the tester container (docker compose)
# or from the tester namespace (.ci/compose-netns.sh), against a daemon running
# docker/config.toml. Each step uses only the netservd binary's client tools:
#   1. probe the framed TCP echo and the UDP echo (a round trip each),
#   2. receive two announcements broadcast to the network (netservd listen),
#   3. send to the multicast group and get the listener's unicast echo back
#      (netservd send --expect-reply: exit 1 without a reply).
# Prints one PASS/FAIL line per step and a closing "N passed, N failed" line;
# exits 0 only if every step passed.
#
# Environment: DAEMON (host or address of the daemon, default "daemon"),
# TESTER_ADDR (this host's address on the test network: the interface that
# sends to the group; required for step 3), NETSERVD (the binary, default
# "netservd"), READY_WAIT_S (how long step 1 retries while the daemon starts, default 10).
set -u

DAEMON=${DAEMON:-daemon}
NETSERVD=${NETSERVD:-netservd}
READY_WAIT_S=${READY_WAIT_S:-10}
GROUP=${GROUP:-239.255.70.77:7077}
ANNOUNCE_PORT=${ANNOUNCE_PORT:-7070}
passed=0
failed=0

pass() { passed=$((passed + 1)); echo "PASS $1"; }
fail() { failed=$((failed + 1)); echo "FAIL $1: $2"; }

# probe NAME URL: retried for READY_WAIT_S, since a freshly started daemon may not listen yet.
probe() {
    deadline=$(( $(date +%s) + READY_WAIT_S ))
    while :; do
        if out=$("$NETSERVD" probe "$2" --timeout 2s 2>&1); then
            pass "$1 ($out)"
            return
        fi
        if [ "$(date +%s)" -ge "$deadline" ]; then
            fail "$1" "$out"
            return
        fi
        sleep 0.5
    done
}

probe "probe tcp echo" "tcp://$DAEMON:7007"
probe "probe udp echo" "udp://$DAEMON:7007"

# The announcer sends every second (docker/config.toml); two must arrive well within 10s.
if out=$("$NETSERVD" listen "udp://0.0.0.0:$ANNOUNCE_PORT" --count 2 --timeout 10s 2>&1) \
    && [ "$(printf '%s\n' "$out" | grep -c 'netservd announce')" -ge 2 ]; then
    pass "receive 2 broadcast announcements"
else
    fail "receive 2 broadcast announcements" "$out"
fi

msg="scenario-$(hostname)-$$"
if [ -z "${TESTER_ADDR:-}" ]; then
    fail "multicast round trip" "TESTER_ADDR is not set (this host's address on the test network)"
elif out=$("$NETSERVD" send "udp://$GROUP" "$msg" --interface "$TESTER_ADDR" --expect-reply --wait 3s 2>&1) \
    && printf '%s\n' "$out" | grep -q "$msg"; then
    pass "multicast round trip via $GROUP"
else
    fail "multicast round trip via $GROUP" "$out"
fi

echo "scenario: $passed passed, $failed failed"
[ "$failed" -eq 0 ]

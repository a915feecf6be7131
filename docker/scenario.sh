#!/usr/bin/env bash
# The compose test scenario: run from the tester container (docker compose)
# or from the tester namespace (.ci/compose-netns.sh), against a daemon running
# docker/config.toml whose config directory this script may rewrite
# (CONFIG_DIR). Only the netservd binary's client tools and bash are used:
#   - probe the framed TCP echo and the UDP echo (`netservd probe`);
#   - framed TCP round trips of 1 B, 1500 B, 16 KiB and 64 KiB, UDP round
#     trips of 1200 B and 65507 B (IP fragments), and TCP and UDP over IPv6
#     (`netservd send --expect-reply`; each reply must be the payload, byte
#     for byte, as one frame or datagram);
#   - two announcements broadcast to the network (`netservd listen --count`);
#   - a datagram to the multicast group, echoed back by the listener;
#   - GET /healthz and /metrics on the admin endpoint, over the network (bash
#     /dev/tcp); the counters must show this scenario's own traffic;
#   - faults, live: `netservd fault echo --latency 300ms` over the admin API
#     makes the next TCP echo take >= 300 ms, the echo's journal holds the
#     message sent, netservd_faults_total{fault="latency"} counts it, and
#     `--clear` restores the plain echo (needs [admin] control = true);
#   - reload: config.toml is replaced (write + rename, as editors and
#     ConfigMaps do) by one with an extra listener, which must serve within
#     2 s; then a broken edit, which must be rejected (reloads_total{result=
#     "invalid"} goes up) while every service keeps serving. The good config is
#     written back at the end, so a restarted daemon starts with it.
# Prints one PASS/FAIL line per step and a closing "scenario: N passed, M failed"
# line; exits 0 only if every step passed.
#
# Environment: DAEMON (IPv4 address of the daemon, or a name that resolves to it first; default "daemon"),
# DAEMON6 (its IPv6 address in brackets, "[fd00:...]"), TESTER_ADDR (this
# host's IPv4 address on the test network: the interface that sends to the
# group), CONFIG_DIR (the daemon's config directory, writable here), ADMIN
# (host:port of the admin endpoint, default "$DAEMON:9900"), NETSERVD (the
# binary, default "netservd"), READY_WAIT_S (how long the first probe retries
# while the daemon starts, default 10), RELOAD_WITHIN_S (default 2).
set -u

DAEMON=${DAEMON:-daemon}
DAEMON6=${DAEMON6:-}
ADMIN=${ADMIN:-$DAEMON:9900}
NETSERVD=${NETSERVD:-netservd}
READY_WAIT_S=${READY_WAIT_S:-10}
RELOAD_WITHIN_S=${RELOAD_WITHIN_S:-2}
GROUP=${GROUP:-239.255.70.77:7077}
ANNOUNCE_PORT=${ANNOUNCE_PORT:-7070}
ADDED_PORT=7008  # the listener the reload adds
BROKEN_PORT=7009 # the listener of the broken edit, which must never serve
passed=0
failed=0

pass() { passed=$((passed + 1)); echo "PASS $1"; }
fail() { failed=$((failed + 1)); echo "FAIL $1: $2"; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }

# probe_until SECONDS URL: retry `netservd probe` until it answers or the time is up; prints its last line.
probe_until() {
    local deadline=$(($(now_ms) + $1 * 1000)) out
    while :; do
        out=$("$NETSERVD" probe "$2" --timeout 1s 2>&1) && { echo "$out"; return 0; }
        [ "$(now_ms)" -ge "$deadline" ] && { echo "$out"; return 1; }
        sleep 0.1
    done
}

probe_step() { # NAME URL
    local out
    if out=$(probe_until "$READY_WAIT_S" "$2"); then pass "$1 ($out)"; else fail "$1" "$out"; fi
}

# payload SIZE TAG: SIZE bytes, TAG then a run of counting numbers, so a lost,
# repeated or reordered chunk changes the text.
payload() {
    local p
    p="$2:$(seq -s . 1 $(($1 / 2 + 10)))"
    printf '%s' "${p:0:$1}"
}

# echo_step NAME URL SIZE: one message of SIZE bytes; exactly one reply, equal to it.
echo_step() {
    local msg out got
    msg=$(payload "$3" "$1")
    if ! out=$("$NETSERVD" send "$2" "$msg" --expect-reply --wait 1s 2>&1); then
        fail "$1" "$(printf '%s' "$out" | head -c 300)"
        return
    fi
    got=${out##* bytes: }
    if [[ $out == *$'\n'* ]]; then
        fail "$1" "more than one reply: $(printf '%s' "$out" | cut -c1-120)"
    elif [[ $out != *" $3 bytes: "* || $got != "$msg" ]]; then
        fail "$1" "reply differs from the $3 bytes sent: $(printf '%s' "$out" | head -c 200)"
    else
        pass "$1 ($3 bytes back, identical)"
    fi
}

# http_get PATH: the raw HTTP response from the admin endpoint (status line, headers, body).
http_get() {
    # shellcheck disable=SC2016  # expanded by the inner shell
    timeout 5 bash -c 'exec 3<>"/dev/tcp/$1/$2" || exit 1
        printf "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" "$3" "$1" >&3
        cat <&3' _ "${ADMIN%:*}" "${ADMIN##*:}" "$1"
}

# metric TEXT NAME LABELS: the value of one sample in Prometheus text, 0 when absent.
metric() {
    local v
    v=$(printf '%s\n' "$1" | awk -v k="$2{$3}" '$1 == k { print $2; exit }')
    echo "${v:-0}"
}

# broadcast_step NAME COUNT: COUNT announcements arrive (the announcer sends every second).
broadcast_step() {
    local out
    if out=$("$NETSERVD" listen "udp://0.0.0.0:$ANNOUNCE_PORT" --count "$2" --timeout 10s 2>&1) \
        && [ "$(printf '%s\n' "$out" | grep -c 'netservd announce')" -ge "$2" ]; then
        pass "$1 ($(printf '%s\n' "$out" | tail -n1 | cut -c1-100))"
    else
        fail "$1" "$out"
    fi
}

multicast_step() {
    local msg out
    msg="scenario-$(hostname)-$$-$1"
    msg=${msg// /-}
    if [ -z "${TESTER_ADDR:-}" ]; then
        fail "$1" "TESTER_ADDR is not set (this host's address on the test network)"
    elif out=$("$NETSERVD" send "udp://$GROUP" "$msg" --interface "$TESTER_ADDR" --expect-reply --wait 3s 2>&1) \
        && printf '%s\n' "$out" | grep -q -- "$msg"; then
        pass "$1 via $GROUP"
    else
        fail "$1 via $GROUP" "$out"
    fi
}

# write_config TEXT: replace config.toml the way editors and ConfigMaps do (write, then rename).
write_config() {
    printf '%s\n' "$1" >"$CONFIG_DIR/.config.toml.new" && mv -f "$CONFIG_DIR/.config.toml.new" "$CONFIG_DIR/config.toml"
}

# --- echo services ------------------------------------------------------------
probe_step "probe tcp echo" "tcp://$DAEMON:7007"
probe_step "probe udp echo" "udp://$DAEMON:7007"
for size in 1 1500 16384 65536; do
    echo_step "tcp framed echo $size B" "tcp://$DAEMON:7007" "$size"
done
echo_step "udp echo 1200 B" "udp://$DAEMON:7007" 1200
echo_step "udp echo 65507 B (largest datagram, fragmented)" "udp://$DAEMON:7007" 65507
if [ -n "$DAEMON6" ]; then
    echo_step "tcp framed echo 65536 B over IPv6 $DAEMON6" "tcp://$DAEMON6:7007" 65536
    echo_step "udp echo 1200 B over IPv6 $DAEMON6" "udp://$DAEMON6:7007" 1200
else
    fail "tcp and udp echo over IPv6" "DAEMON6 is not set (the daemon's IPv6 address, in brackets)"
fi

# --- broadcast and multicast --------------------------------------------------
broadcast_step "receive 2 broadcast announcements" 2
multicast_step "multicast round trip"

# --- admin endpoint over the network ------------------------------------------
resp=$(http_get /healthz 2>&1)
if [[ $resp == "HTTP/1.1 200"* && $resp == *"ok: "*" services running"* ]]; then
    pass "GET http://$ADMIN/healthz (${resp##*$'\n'})"
else
    fail "GET http://$ADMIN/healthz" "$resp"
fi
# What the steps above did, seen from the daemon's side (not from the client tools' output).
metrics=$(http_get /metrics 2>&1)
bad=""
for want in "netservd_messages_in_total echo 5" "netservd_bytes_in_total echo 83421" \
    "netservd_messages_out_total echo6 1" "netservd_messages_out_total echo-udp 3" \
    "netservd_messages_out_total echo-udp6 1" "netservd_messages_out_total announce 2" \
    "netservd_messages_in_total group 1" "netservd_messages_out_total group 1"; do
    read -r name svc least <<<"$want"
    got=$(metric "$metrics" "$name" "service=\"$svc\"")
    awk -v g="$got" -v l="$least" 'BEGIN { exit !(g >= l) }' || bad="$bad $name{service=$svc}=$got (want >= $least);"
done
if [[ $metrics != "HTTP/1.1 200"* ]]; then
    fail "GET http://$ADMIN/metrics" "$(printf '%s' "$metrics" | head -n 3)"
elif [ -n "$bad" ]; then
    fail "GET http://$ADMIN/metrics counts this scenario's traffic" "$bad"
else
    pass "GET http://$ADMIN/metrics counts this scenario's traffic (echo in $(metric "$metrics" netservd_messages_in_total 'service="echo"') frames)"
fi

# --- faults set live over the admin API, and the journal ----------------------
fault_step() {
    local out msg slow fast clear journal lat
    msg="fault-step-$$"
    if ! out=$("$NETSERVD" fault echo --latency 300ms --admin "$ADMIN" 2>&1); then
        fail "fault: set latency 300ms on echo" "$out"
        return
    fi
    # A client that waits 200 ms for its echo must time out now ...
    slow=$("$NETSERVD" send "tcp://$DAEMON:7007" "$msg-slow" --expect-reply --wait 200ms 2>&1) && slow="ok:$slow"
    clear=$("$NETSERVD" fault echo --clear --admin "$ADMIN" 2>&1)
    # ... and get it again once the fault is cleared.
    fast=$("$NETSERVD" send "tcp://$DAEMON:7007" "$msg-fast" --expect-reply --wait 1s 2>&1) || fast="failed:$fast"
    journal=$("$NETSERVD" journal echo --admin "$ADMIN" 2>&1)
    lat=$(metric "$(http_get /metrics)" netservd_faults_total 'service="echo",fault="latency"')
    if [[ $slow == ok:* ]]; then
        fail "fault: latency 300ms makes a 200 ms client time out" "it got its echo: $slow"
    elif [ "$clear" != "{}" ]; then
        fail "fault: --clear" "$clear"
    elif [[ $fast == failed:* || $fast != *"$msg-fast"* ]]; then
        fail "fault: echo after --clear" "$fast"
    elif [[ $journal != *"$msg-slow"* || $journal != *"$msg-fast"* ]]; then
        fail "fault: journal holds both messages" "$(printf '%s' "$journal" | tail -n 3)"
    elif ! awk -v g="$lat" 'BEGIN { exit !(g >= 1) }'; then
        fail "fault: netservd_faults_total counts it" "latency counter $lat"
    else
        pass "fault: latency 300ms set live timed a 200 ms client out; cleared, echo back; journaled; counted ($lat)"
    fi
}
fault_step

# --- reload through the config directory --------------------------------------
if [ -z "${CONFIG_DIR:-}" ] || ! good=$(cat "$CONFIG_DIR/config.toml" 2>&1); then
    fail "reload: add a listener" "CONFIG_DIR is not set or has no config.toml (${good:-})"
    fail "reload: broken edit" "no config directory"
else
    if "$NETSERVD" probe "tcp://$DAEMON:$ADDED_PORT" --timeout 1s >/dev/null 2>&1; then
        fail "reload: add a listener" "port $ADDED_PORT already answers before the reload"
    else
        good="$good

# Added by docker/scenario.sh (reload test).
[[tcp_echo]]
name = \"added\"
listen = \"0.0.0.0:$ADDED_PORT\"
length_field_bytes = 4"
        t0=$(now_ms)
        if ! write_config "$good"; then
            fail "reload: add a listener" "cannot write $CONFIG_DIR/config.toml"
        elif out=$(probe_until "$RELOAD_WITHIN_S" "tcp://$DAEMON:$ADDED_PORT"); then
            pass "reload: listener added in the config directory serves $(($(now_ms) - t0)) ms after the write (limit ${RELOAD_WITHIN_S}s)"
        else
            fail "reload: add a listener" "tcp://$DAEMON:$ADDED_PORT not served ${RELOAD_WITHIN_S}s after the write: $out"
        fi
    fi

    invalid_before=$(metric "$(http_get /metrics)" netservd_reloads_total 'result="invalid"')
    write_config "$good

[[tcp_echo]]
name = \"broken\"
listen = \"0.0.0.0:$BROKEN_PORT\"
max_frame_bytes = \"lots\""
    deadline=$(($(now_ms) + RELOAD_WITHIN_S * 1000))
    invalid=$invalid_before
    while [ "$invalid" = "$invalid_before" ] && [ "$(now_ms)" -lt "$deadline" ]; do
        sleep 0.1
        invalid=$(metric "$(http_get /metrics)" netservd_reloads_total 'result="invalid"')
    done
    if [ "$invalid" != "$invalid_before" ]; then
        pass "reload: broken edit rejected (reloads_total{result=\"invalid\"} $invalid_before -> $invalid)"
    else
        fail "reload: broken edit rejected" "reloads_total{result=\"invalid\"} still $invalid ${RELOAD_WITHIN_S}s after the write"
    fi

    # Nothing of the broken file applied; everything of the last good one still serves.
    bad=""
    for url in "tcp://$DAEMON:7007" "udp://$DAEMON:7007" "tcp://$DAEMON:$ADDED_PORT" \
        ${DAEMON6:+"tcp://$DAEMON6:7007" "udp://$DAEMON6:7007"}; do
        "$NETSERVD" probe "$url" --timeout 2s >/dev/null 2>&1 || bad="$bad $url"
    done
    "$NETSERVD" probe "tcp://$DAEMON:$BROKEN_PORT" --timeout 1s >/dev/null 2>&1 && bad="$bad (the broken edit's :$BROKEN_PORT serves)"
    [[ $(http_get /healthz 2>&1) == "HTTP/1.1 200"* ]] || bad="$bad /healthz"
    if [ -z "$bad" ]; then
        pass "after the broken edit every service still serves (tcp, udp, IPv6, :$ADDED_PORT; :$BROKEN_PORT not started)"
    else
        fail "after the broken edit every service still serves" "not serving:$bad"
    fi
    broadcast_step "after the broken edit: announcements still broadcast" 1
    multicast_step "after the broken edit: multicast round trip"
    write_config "$good" || fail "restore the good config" "cannot write $CONFIG_DIR/config.toml"
fi

echo "scenario: $passed passed, $failed failed"
[ "$failed" -eq 0 ]

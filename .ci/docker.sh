#!/usr/bin/env bash
# The compose test kit on a real Docker engine (issue 12), called from .ci/run.
#  1. Engine: Debian's docker.io (Engine 20.10) when dockerd is missing, and the
#     Compose v2 plugin (the static binary from Debian's newer docker-compose
#     2.x package; bookworm's own docker-compose is v1) when `docker compose`
#     is missing. Starts dockerd when no engine answers, and stops only that one.
#  2. Base images: each FROM of docker/Dockerfile is used as found or pulled
#     (short timeout); only when it cannot be pulled is a stand-in built here
#     with the same tag and the label org.netservd.stand-in (debian: a
#     debootstrap minbase rootfs; rust: that plus gcc and this machine's Rust
#     toolchain). Stand-ins stay cached for the next run; the log says which
#     base images were stand-ins.
#  3. `docker build` of docker/Dockerfile (classic builder: Engine 20.10's
#     BuildKit would pull a frontend image), tagged netservd:ci-PID for this run.
#  4. `docker compose up --exit-code-from tester`: docker/scenario.sh in the
#     tester container (echo, IPv6, broadcast, multicast, admin, reload).
#  5. Steps only the engine can do: start the daemon again from the config
#     volume the scenario left, the ports published on 127.0.0.1,
#     `docker compose restart daemon` -> healthy, `docker compose stop daemon`
#     -> exit 0 within shutdown_timeout, last log line "shutdown complete".
# Prints PASS/FAIL per step and "docker: N passed, M failed"; exits 1 on any
# failure. Where no engine can start (not root, no packages, dockerd fails:
# no privileges or cgroups), it says why and runs the namespace rig
# (.ci/compose-netns.sh) instead; NETSERVD_DOCKER=require makes that a failure.
# Every docker command runs under `timeout`. On exit (trap) it removes the
# kit's containers, network and volume and this run's image tag (its layers
# stay as build cache), and stops the dockerd it started.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive DOCKER_BUILDKIT=0 COMPOSE_DOCKER_CLI_BUILD=0
t0=$(date +%s)
phase() { echo "--- docker: $* ($(($(date +%s) - t0))s)"; }

KIT=docker/docker-compose.yml
export NETSERVD_IMAGE=netservd:ci-$$
STAND_IN_LABEL=org.netservd.stand-in
work=$(mktemp -d)
dockerd_pid=
engine=0
passed=0 failed=0
stand_ins=()

pass() { passed=$((passed + 1)); echo "PASS $1"; }
fail() { failed=$((failed + 1)); echo "FAIL $1: $2"; }
dk() { timeout --kill-after=10 "$1" docker "${@:2}"; }    # dk SECONDS ARGS...
kit() { timeout --kill-after=10 "$1" docker compose --ansi never -f "$KIT" "${@:2}"; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }

# shellcheck disable=SC2317  # invoked by the trap
cleanup() {
  if [ "$engine" = 1 ]; then
    kit 90 down -v --remove-orphans --timeout 10 >/dev/null 2>&1 || echo "docker: compose down failed" >&2
    dk 30 image rm --no-prune "$NETSERVD_IMAGE" >/dev/null 2>&1 || true
  fi
  if [ -n "$dockerd_pid" ]; then
    kill -TERM "$dockerd_pid" 2>/dev/null || true
    timeout 30 tail --pid="$dockerd_pid" -f /dev/null || kill -KILL "$dockerd_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# fallback WHY: no engine here; the namespace rig reproduces the kit's topology instead.
fallback() {
  echo "docker: no Docker engine: $1"
  if [ "${NETSERVD_DOCKER:-}" = require ]; then
    echo "docker: NETSERVD_DOCKER=require: failing instead of falling back" >&2
    exit 1
  fi
  phase "falling back to the namespace rig (.ci/compose-netns.sh)"
  bash .ci/compose-netns.sh
  exit $?
}

apt_mirror() {
  local m
  m=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1)
  [ -n "$m" ] || m=$(awk '/^deb /{print $2; exit}' /etc/apt/sources.list 2>/dev/null)
  echo "${m:-http://deb.debian.org/debian}"
}
apt_install() { timeout 600 apt-get install -y -qq -o DPkg::Lock::Timeout=600 --no-install-recommends "$@" >/dev/null; }

# The Compose v2 plugin from Debian's next suite: only its static binary is unpacked.
install_compose_plugin() {
  local t="$work/compose-deb" o
  mkdir -p "$t/lists/partial" "$t/cache/archives/partial"
  echo "deb $(apt_mirror) trixie main" >"$t/sources.list"
  o=(-o Dir::Etc::sourcelist="$t/sources.list" -o Dir::Etc::sourceparts=/dev/null
    -o Dir::State::Lists="$t/lists" -o Dir::Cache="$t/cache" -o APT::Sandbox::User=root)
  timeout 300 apt-get "${o[@]}" update -qq >/dev/null
  (cd "$t" && timeout 300 apt-get "${o[@]}" download -qq docker-compose >/dev/null)
  dpkg-deb -x "$t"/docker-compose_*.deb "$t/x"
  install -D -m 0755 "$t/x/usr/libexec/docker/cli-plugins/docker-compose" \
    /usr/libexec/docker/cli-plugins/docker-compose
}

install_engine() {
  if timeout 10 docker info >/dev/null 2>&1 && timeout 20 docker compose version >/dev/null 2>&1; then
    return
  fi
  [ "$(id -u)" = 0 ] || fallback "not root, and no running engine with the Compose v2 plugin"
  command -v dockerd >/dev/null || apt_install docker.io || fallback "apt-get install docker.io failed"
  if ! timeout 20 docker compose version >/dev/null 2>&1; then
    install_compose_plugin || fallback "could not install the Compose v2 plugin"
  fi
}

# Uses the engine that answers, else starts dockerd (its own log and pid file).
start_engine() {
  if timeout 10 docker info >/dev/null 2>&1; then
    echo "docker: using the running engine ($(dk 10 version -f '{{.Server.Version}}'))"
    return
  fi
  dockerd --pidfile "$work/dockerd.pid" >"$work/dockerd.log" 2>&1 &
  dockerd_pid=$!
  for _ in $(seq 60); do
    if timeout 5 docker info >/dev/null 2>&1; then
      echo "docker: started dockerd (pid $dockerd_pid, Engine $(dk 10 version -f '{{.Server.Version}}'))"
      return
    fi
    kill -0 "$dockerd_pid" 2>/dev/null || break
    sleep 0.5
  done
  echo "docker: dockerd did not come up; its log ends:" >&2
  tail -n 15 "$work/dockerd.log" >&2
  kill -KILL "$dockerd_pid" 2>/dev/null || true
  dockerd_pid=
  fallback "dockerd could not start (no privileges or cgroups?)"
}

# The debian:SUITE-slim stand-in: a debootstrap minbase rootfs with this machine's CA bundle.
stand_in_debian() { # TAG
  local suite=${1#debian:} r="$work/rootfs"
  suite=${suite%-slim}
  command -v debootstrap >/dev/null || apt_install debootstrap
  timeout 600 debootstrap --variant=minbase "$suite" "$r" "$(apt_mirror)" >/dev/null
  cp /etc/ssl/certs/ca-certificates.crt "$r/etc/ssl/certs/" 2>/dev/null || true
  rm -rf "$r"/var/cache/apt/archives/*.deb "$r"/var/lib/apt/lists/*
  tar -C "$r" -c . | dk 300 import --change "LABEL $STAND_IN_LABEL=\"debootstrap --variant=minbase $suite\"" \
    --change 'CMD ["bash"]' - "$1" >/dev/null
  rm -rf "$r"
}

# The rust:VER-slim-SUITE stand-in: the debian stand-in plus gcc and this machine's toolchain.
stand_in_rust() { # TAG
  local c="$work/rust-ctx" tc version base="debian:${1##*-slim-}-slim"
  dk 10 image inspect "$base" >/dev/null 2>&1 || base_image "$base"
  tc=$(rustc --print sysroot)
  version=$(rustc --version)
  [[ $1 == rust:"$(rustc --version | awk '{print $2}' | cut -d. -f1,2)"* ]] \
    || echo "docker: warning: $1 stands in with the machine's $version"
  mkdir -p "$c/tc"
  cp -a "$tc/bin" "$tc/lib" "$c/tc/"
  cp /etc/ssl/certs/ca-certificates.crt "$c/"
  cat >"$c/Dockerfile" <<EOF
FROM $base
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev ca-certificates && rm -rf /var/lib/apt/lists/*
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY tc /usr/local/rust
ENV PATH=/usr/local/rust/bin:\$PATH CARGO_HOME=/usr/local/cargo
LABEL $STAND_IN_LABEL="debian stand-in + gcc + host toolchain ($version)"
EOF
  dk 600 build -q -t "$1" "$c" >/dev/null
  rm -rf "$c"
}

# base_image TAG: found, pulled, or built as a stand-in; records stand-ins.
base_image() {
  local what
  if dk 10 image inspect "$1" >/dev/null 2>&1; then
    what=$(dk 10 image inspect -f "{{index .Config.Labels \"$STAND_IN_LABEL\"}}" "$1" 2>/dev/null || true)
    [ "$what" = "<no value>" ] && what=
    if [ -z "$what" ]; then echo "docker: $1: real image (local)"; return; fi
    if dk 30 pull -q "$1" >/dev/null 2>&1; then echo "docker: $1: pulled the real image over the stand-in"; return; fi
    stand_ins+=("$1 (cached: $what)")
    return
  fi
  if dk 30 pull -q "$1" >/dev/null 2>&1; then echo "docker: $1: pulled"; return; fi
  echo "docker: $1: cannot be pulled; building a stand-in"
  case $1 in
    debian:*-slim) stand_in_debian "$1" ;;
    rust:*-slim-*) stand_in_rust "$1" ;;
    *) echo "docker: no stand-in recipe for $1" >&2; exit 1 ;;
  esac
  what=$(dk 10 image inspect -f "{{index .Config.Labels \"$STAND_IN_LABEL\"}}" "$1")
  stand_ins+=("$1 (built now: $what)")
}

base_images() {
  local tag tags
  mapfile -t tags < <(awk 'toupper($1) == "FROM" { print $2 }' docker/Dockerfile | sort -u)
  for tag in "${tags[@]}"; do
    base_image "$tag"
  done
  if [ ${#stand_ins[@]} -eq 0 ]; then
    echo "docker: base images: all real"
  else
    printf 'docker: base image stand-in: %s\n' "${stand_ins[@]}"
  fi
}

build_image() {
  local rc=0
  # Each source change leaves the previous build stage behind as a dangling image
  # (2 GB, the cache of that tree); drop those older than a day so a developer's disk does not fill.
  dk 120 image prune -f --filter until=24h >/dev/null 2>&1 || true
  dk 900 build --force-rm -f docker/Dockerfile -t "$NETSERVD_IMAGE" . >"$work/build.log" 2>&1 || rc=$?
  sed 's/\x1b\[[0-9;]*[A-Za-z]//g' "$work/build.log" | grep -E '^Step |Using cache|Finished |^Successfully' || true
  if [ "$rc" != 0 ]; then
    echo "docker: docker build failed (exit $rc); the build log ends:" >&2
    tail -n 40 "$work/build.log" >&2
    fail "docker build -f docker/Dockerfile" "exit $rc"
    return 1
  fi
  pass "docker build -f docker/Dockerfile -t $NETSERVD_IMAGE ($(dk 10 image inspect -f '{{.Size}}' "$NETSERVD_IMAGE" | awk '{printf "%.0f MB", $1 / 1e6}'))"
}

# compose_scenario: the tester's steps count as steps here; the tester's exit code is one more.
compose_scenario() {
  local rc=0 summary
  kit 60 down -v --remove-orphans >/dev/null 2>&1 || true # leftovers of an interrupted run
  kit 300 up --no-build --no-color --attach tester --exit-code-from tester >"$work/up.log" 2>&1 || rc=$?
  sed 's/\x1b\[[0-9;]*[A-Za-z]//g' "$work/up.log" # compose's line erasing, even with --ansi never
  summary=$(grep -o 'scenario: [0-9]* passed, [0-9]* failed' "$work/up.log" | tail -n1 || true)
  if [ -n "$summary" ]; then
    read -r _ n _ m _ <<<"$summary"
    passed=$((passed + n)) failed=$((failed + m))
  else
    fail "docker/scenario.sh in the tester" "no 'scenario: N passed, M failed' line (the tester never ran?)"
  fi
  if [ "$rc" = 0 ]; then
    pass "docker compose up --exit-code-from tester: exit 0"
  else
    fail "docker compose up --exit-code-from tester" "exit $rc"
    echo "--- the daemon's log ends:"
    kit 30 logs --no-color --no-log-prefix daemon 2>&1 | tail -n 30 || true
  fi
  [ -n "$summary" ]
}

# wait_healthy SECONDS: until the daemon container's HEALTHCHECK says healthy; prints the last status.
wait_healthy() {
  local deadline=$(($(date +%s) + $1)) status
  while :; do
    status=$(dk 10 inspect -f '{{.State.Health.Status}}' "$cid" 2>&1 || true)
    [ "$status" = healthy ] && return 0
    [ "$(date +%s)" -ge "$deadline" ] && { echo "$status"; return 1; }
    sleep 0.5
  done
}

# Start the stopped daemon again, then restart and stop it, as an operator would.
engine_steps() {
  local out before after t rc code limit_s
  cid=$(kit 20 ps -a -q daemon)
  if kit 60 start daemon >/dev/null 2>&1 && out=$(wait_healthy 30); then
    pass "docker compose start daemon: healthy again, from the config volume the scenario left"
  else
    fail "docker compose start daemon: healthy" "health ${out:-unknown}"
  fi
  if out=$(kit 20 exec -T daemon netservd probe tcp://127.0.0.1:7008 --timeout 2s 2>&1); then
    pass "the listener the scenario's reload added still serves after the start ($out)"
  else
    fail "the listener the scenario's reload added still serves after the start" "$out"
  fi
  published_ports
  before=$(dk 10 inspect -f '{{.State.StartedAt}}' "$cid")
  if kit 60 restart daemon >/dev/null 2>&1 && out=$(wait_healthy 30) \
    && after=$(dk 10 inspect -f '{{.State.StartedAt}}' "$cid") && [ "$after" != "$before" ]; then
    pass "docker compose restart daemon: restarted ($before -> $after) and healthy"
  else
    fail "docker compose restart daemon: healthy" "health ${out:-unknown}, started ${after:-?}"
  fi
  limit_s=$(awk -F'"' '/^shutdown_timeout *=/ { sub(/s$/, "", $2); print $2 }' docker/config.toml)
  t=$(now_ms) rc=0
  kit 60 stop daemon >/dev/null 2>&1 || rc=$?
  t=$(($(now_ms) - t))
  code=$(dk 10 inspect -f '{{.State.ExitCode}}' "$cid" 2>&1 || true)
  if [ "$rc" = 0 ] && [ "$code" = 0 ] && [ "$t" -le $((limit_s * 1000)) ]; then
    pass "docker compose stop daemon: exit code 0 after $t ms (shutdown_timeout ${limit_s}s)"
  else
    fail "docker compose stop daemon" "compose exit $rc, container exit code $code, $t ms (shutdown_timeout ${limit_s}s)"
  fi
  daemon_log_steps
}

# The published ports are on 127.0.0.1 only, and the admin endpoint answers there from the host.
published_ports() {
  local ports admin resp
  ports=$(dk 10 port "$cid" 2>&1 || true)
  admin=$(printf '%s\n' "$ports" | awk '$1 == "9900/tcp" { print $3; exit }')
  # shellcheck disable=SC2016  # expanded by the inner shell
  resp=$(timeout 5 bash -c 'exec 3<>"/dev/tcp/${1%:*}/${1##*:}" || exit 1
    printf "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" >&3; cat <&3' _ "$admin" 2>&1 || true)
  if [ -n "$ports" ] && ! printf '%s\n' "$ports" | grep -qv -- '-> 127\.0\.0\.1:' \
    && [[ $resp == "HTTP/1.1 200"* ]]; then
    pass "ports published on 127.0.0.1 only; /healthz answers on $admin from the host"
  else
    fail "ports published on 127.0.0.1 only, /healthz from the host" "ports: ${ports//$'\n'/; }; reply: ${resp:0:80}"
  fi
}

# The daemon's log across its three runs: the last line is the shutdown summary, and the
# only errors are the scenario's broken edit (each names the file: PATH:LINE:COL: ...).
daemon_log_steps() {
  local log last bad
  log=$(dk 30 logs "$cid" 2>&1 || true)
  last=$(printf '%s\n' "$log" | tail -n1)
  if [[ $last == *'"message":"shutdown complete"'* ]]; then
    pass "the daemon's last log line is the shutdown summary ($(printf '%s' "$last" | grep -o '"connections_cut":[0-9]*'))"
  else
    fail "the daemon's last log line is the shutdown summary" "$last"
  fi
  bad=$(printf '%s\n' "$log" | grep '"level":"ERROR"\|panicked' \
    | grep -v '"message":"/etc/netservd/config.toml:[0-9]*:[0-9]*: ' || true)
  if [ -z "$bad" ]; then
    pass "the daemon logged no panic and no error but the broken edit's"
  else
    fail "the daemon logged no panic and no error but the broken edit's" "$bad"
  fi
}

phase "engine"
install_engine
start_engine
engine=1
phase "base images"
base_images
phase "docker build (release build inside the container)"
if build_image; then
  phase "docker compose up --exit-code-from tester (docker/scenario.sh in the tester)"
  if compose_scenario; then
    phase "engine-driven steps: start, published ports, restart, stop"
    engine_steps
  else
    echo "docker: the tester never ran (daemon not healthy?): engine-driven steps skipped"
  fi
fi
phase "done"
[ ${#stand_ins[@]} -eq 0 ] || printf 'docker: base image stand-in: %s\n' "${stand_ins[@]}"
echo "docker: $passed passed, $failed failed"
[ "$failed" -eq 0 ]

#!/usr/bin/env bash
# Windows gate without Windows (recipe and measurements: ../shared/WINDOWS.md):
#  1. type-check every target (lib, bin, tests) for x86_64-pc-windows-msvc and -gnu,
#  2. clippy on both with -D warnings,
#  3. link the windows-gnu build with mingw and run the portable tests under Wine.
# Debian's rustc-web is used because only it ships std sources matching its
# compiler (-Zbuild-std needs both); rustup's toolchain stays first on PATH for
# everything else, so Debian's is called by full path with its own target dir.
# Wine approximates Winsock/IOCP: the test run is a smoke test, not proof.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
t0=$(date +%s)
phase() { echo "--- windows: $* ($(( $(date +%s) - t0 ))s)"; }

phase "packages"
pkgs=(rustc-web cargo-web rust-web-src rust-web-clippy binutils-mingw-w64-x86-64 gcc-mingw-w64-x86-64-win32 wine64)
installed=$(dpkg-query -W -f='${Status}\n' "${pkgs[@]}" 2>/dev/null | grep -c '^install ok installed$' || true)
if [ "$installed" = "${#pkgs[@]}" ]; then
  echo "already installed"
else
  apt-get update -qq
  apt-get install -y -qq -o DPkg::Lock::Timeout=600 --no-install-recommends "${pkgs[@]}" >/dev/null
fi
v_rustc=$(dpkg-query -W -f='${Version}' rustc-web); v_src=$(dpkg-query -W -f='${Version}' rust-web-src)
[ "$v_rustc" = "$v_src" ] || { echo "rustc-web $v_rustc != rust-web-src $v_src: -Zbuild-std needs matching std sources" >&2; exit 1; }

# RUSTFLAGS stays fixed (empty) so the cached std build is reused between runs.
WINCARGO=(env -u RUSTFLAGS "PATH=/usr/bin:$PATH" RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1
          CARGO_TARGET_DIR="${WIN_TARGET_DIR:-target/win}" /usr/bin/cargo)
BUILD_STD=-Zbuild-std=std,panic_abort
TARGETS=(--target x86_64-pc-windows-msvc --target x86_64-pc-windows-gnu)

phase "check (msvc + gnu, all targets)"
"${WINCARGO[@]}" check "$BUILD_STD" "${TARGETS[@]}" --all-targets --locked
phase "clippy (msvc + gnu, all targets)"
"${WINCARGO[@]}" clippy "$BUILD_STD" "${TARGETS[@]}" --all-targets --locked -- -D warnings

phase "wine prefix"
export WINEPREFIX="${WINEPREFIX:-$PWD/target/wineprefix}" WINEDEBUG=-all
export WINEDLLOVERRIDES="mscoree,mshtml=;bcryptprimitives=n"
if [ ! -f "$WINEPREFIX/system.reg" ]; then
  /usr/lib/wine/wine64 wineboot --init >/dev/null 2>&1 || true
  /usr/lib/wine/wineserver -w
fi
# Wine 8 lacks ProcessPrng (bcryptprimitives.dll), which Rust std imports: forward it to SystemFunction036.
shim="$WINEPREFIX/drive_c/windows/system32/bcryptprimitives.dll"
if [ ! -f "$shim" ]; then
  d=$(mktemp -d)
  cat > "$d/b.c" <<'C'
#include <windows.h>
BOOLEAN WINAPI SystemFunction036(PVOID buf, ULONG len);
__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE p, SIZE_T n) {
  while (n) { ULONG k = n > 0x7fffffff ? 0x7fffffff : (ULONG)n;
    if (!SystemFunction036(p, k)) return FALSE; p += k; n -= k; }
  return TRUE; }
C
  x86_64-w64-mingw32-gcc -shared -O2 -o "$shim" "$d/b.c" -ladvapi32
  rm -rf "$d"
fi

phase "tests under Wine (windows-gnu)"
# One persistent wineserver for every test binary: by default it exits a few
# seconds after its last client, and a binary starting in that moment dies
# with "wine client error: recvmsg: Connection reset by peer" before its
# first test (a CI run lost the reload tests that way). The runner reruns a
# binary once if that still happens (.ci/wine-runner.sh).
/usr/lib/wine/wineserver -p
# Two test threads: Wine's process start-up is slow and the integration tests
# each start a daemon. Skipped here, not on real Windows: tests that rely on a
# bind failing, which Wine lets succeed (a UDP bind to an address the host does
# not have), leaving the daemon running. The timeout turns any other such hang
# into a failure instead of eating CI's time budget.
# Also skipped under Wine only: a client socket bound to 127.0.0.2 sends from
# 127.0.0.1 under Wine, so the deny list cannot see the denied source; and
# Wine's loopback timing defeats bench's "the echoes that came back were quick"
# rate-limit heuristic (the loss itself is still detected and exits 1).
# Also: the seeded UDP loss test counts every datagram as replied or lost, and
# Wine's sockets drop some of a 2,000-datagram burst where the daemon cannot
# count them (a CI run: 820 replied + 918 lost of 2,000); Linux counts them.
wine_skip=(--skip bind_failures_exit_1_naming_service_address_and_cause
           --skip loss_half_with_seed_same_count_every_run_within_45_55_percent
           --skip deny_refuses_its_source_on_tcp_and_udp_and_serves_the_others
           --skip bench_fails_on_losses_that_look_like_a_rate_limit)
timeout -k 30 "${WINE_TEST_TIMEOUT_S:-900}" \
  "${WINCARGO[@]}" test "$BUILD_STD" --target x86_64-pc-windows-gnu --locked --no-fail-fast \
  --config "target.x86_64-pc-windows-gnu.linker='x86_64-w64-mingw32-gcc'" \
  --config "target.x86_64-pc-windows-gnu.runner='$PWD/.ci/wine-runner.sh'" \
  -- --test-threads="${WINE_TEST_THREADS:-2}" "${wine_skip[@]}"
/usr/lib/wine/wineserver -k 2>/dev/null || true

phase "multicast group isolation under Wine, in a private network namespace"
# tests/multicast_windows.rs is #[ignore]d elsewhere: it sends multicast, so it
# runs only here, in a namespace made for it (loopback, 224.0.0.0/4 routed to
# lo). The wineserver is restarted inside it, since Wine's sockets live in the
# wineserver's namespace, and killed before leaving, so no later Wine run uses it.
export NETSERVD_TEST_NETNS=1
# shellcheck disable=SC2016  # "$@" expands in the inner shell, on purpose
timeout -k 10 600 unshare -n sh -c '
  ip link set lo up && ip link set lo multicast on && ip route add 224.0.0.0/4 dev lo || exit 1
  "$@"; rc=$?
  /usr/lib/wine/wineserver -k 2>/dev/null
  exit $rc' sh \
  "${WINCARGO[@]}" test "$BUILD_STD" --target x86_64-pc-windows-gnu --locked --offline \
  --config "target.x86_64-pc-windows-gnu.linker='x86_64-w64-mingw32-gcc'" \
  --config "target.x86_64-pc-windows-gnu.runner='/usr/lib/wine/wine64'" \
  --test multicast_windows -- --ignored
unset NETSERVD_TEST_NETNS

phase "Windows service under Wine's Service Control Manager"
# `run --windows-service`: the SCM starts it (RUNNING, serving), and its Stop
# control drains like SIGTERM (STOPPED, exit code 0, port closed). One cmd
# session keeps Wine's services.exe alive from start to stop.
cargo build --locked -q   # the Linux probe that checks the Windows service from outside
exe_dir="${WIN_TARGET_DIR:-target/win}/x86_64-pc-windows-gnu/debug"
svc_dir=$(mktemp -d)
port=17999
printf '[daemon]\nwatch_config = false\n[[tcp_echo]]\nname = "echo"\nlisten = "127.0.0.1:%s"\n' "$port" > "$svc_dir/svc.toml"
winpath() { echo "Z:$(realpath "$1" | sed 's|/|\\|g')"; }
/usr/lib/wine/wine64 sc create netservd-ci binPath= "$(winpath "$exe_dir/netservd.exe") run --windows-service --config $(winpath "$svc_dir/svc.toml")" >/dev/null
timeout 120 /usr/lib/wine/wine64 cmd /c "net start netservd-ci & ping -n 7 127.0.0.1 > NUL & net stop netservd-ci & ping -n 3 127.0.0.1 > NUL & sc query netservd-ci" > "$svc_dir/log" 2>&1 &
cmd_pid=$!
probe=fail
for _ in $(seq 1 40); do
  if target/debug/netservd probe "tcp://127.0.0.1:$port" --timeout 1s >/dev/null 2>&1; then probe=ok; break; fi
  sleep 0.25
done
wait "$cmd_pid" || true
/usr/lib/wine/wine64 sc delete netservd-ci >/dev/null 2>&1 || true
/usr/lib/wine/wineserver -k 2>/dev/null || true
cat "$svc_dir/log"
[ "$probe" = ok ] || { echo "windows service: never answered on port $port while RUNNING" >&2; exit 1; }
if ! grep -q "STOPPED" "$svc_dir/log" || ! grep -q "WIN32_EXIT_CODE    : 0" "$svc_dir/log"; then
  echo "windows service: did not stop cleanly (expected STOPPED with exit code 0)" >&2; exit 1
fi
if target/debug/netservd probe "tcp://127.0.0.1:$port" --timeout 1s >/dev/null 2>&1; then
  echo "windows service: port $port still answers after the service stopped" >&2; exit 1
fi
echo "windows service: started by the SCM, served, stopped cleanly"
rm -rf "$svc_dir"
phase "done"

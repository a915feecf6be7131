#!/usr/bin/env bash
# cargo's runner for the windows-gnu tests: wine64 "$@", with one rerun when
# Wine itself failed rather than the test binary. "wine client error" is the
# Wine loader losing its wineserver connection (seen in CI: `recvmsg:
# Connection reset by peer` before the test binary printed a line, a
# wineserver exiting as the next binary connected). windows.sh keeps one
# persistent wineserver for the whole run so that race should not happen; the
# rerun is the second guard, and it says so loudly. A test that fails on its
# own never matches and is never rerun.
set -uo pipefail
err=$(mktemp)
trap 'rm -f "$err"' EXIT
for attempt in 1 2; do
  # stdout straight through; stderr into a file, shown when the binary ends.
  # Not through a pipe: Wine's own background processes (services.exe,
  # winedevice.exe) inherit it and never close it, so a reader would wait
  # for an EOF that does not come (a CI run hung here until its timeout).
  "${WINE64:-/usr/lib/wine/wine64}" "$@" 2>"$err"
  rc=$?
  cat "$err" >&2
  if [ "$rc" -eq 0 ] || ! grep -q '^wine client error' "$err" || [ "$attempt" -eq 2 ]; then
    exit "$rc"
  fi
  echo "wine-runner: Wine lost its wineserver (exit $rc, 'wine client error'), not a test failure: rerunning $(basename "$1") once" >&2
  /usr/lib/wine/wineserver -p 2>/dev/null || true
done

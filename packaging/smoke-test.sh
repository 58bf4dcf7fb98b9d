#!/bin/sh
# Checks a built uplink-console where it was installed or unpacked, on every OS:
#   1. `--version` prints "uplink-console VERSION" (VERSION checked when EXPECTED_VERSION is set);
#   2. `--demo --smoke-test 10` opens the window offscreen on the demo (embedded broker, five
#      simulated platforms) and prints its JSON line; rows must have reached the tables and, when
#      the line has "platforms", every one of the five platforms must have some.
# The demo's broker is the bundled amqtt (UPLINK_CONSOLE_DEMO_BROKER=amqtt unless set), so the
# check proves the package carries its own broker, with or without mosquitto on the machine.
# Everything the program writes goes to a temporary directory. Exits non-zero, saying why, on
# the first failure.
# Usage: packaging/smoke-test.sh PATH/TO/uplink-console[-cli.exe] [SECONDS]
set -eu
exe=${1:?usage: smoke-test.sh PATH/TO/uplink-console [SECONDS]}
seconds=${2:-10}
[ -x "$exe" ] || { echo "SMOKE TEST FAILED: $exe is not an executable file" >&2; exit 1; }
work=$(mktemp -d 2>/dev/null || mktemp -d -t uplink-smoke)
trap 'rm -rf "$work"' EXIT
export UPLINK_CONSOLE_DATA_DIR="$work/data" UPLINK_CONSOLE_CONFIG_DIR="$work/config" UPLINK_CONSOLE_LOG_DIR="$work/log"
export QT_QPA_PLATFORM=offscreen
export UPLINK_CONSOLE_DEMO_BROKER="${UPLINK_CONSOLE_DEMO_BROKER:-amqtt}"
limit=$(awk "BEGIN { print int($seconds) + 90 }")
# A hung program must fail the check, not stall it (macOS has no timeout(1); CI jobs have their own).
run() { if command -v timeout >/dev/null 2>&1; then timeout "$limit" "$@"; else "$@"; fi; }
# A Python to read the JSON line with (Windows may have a python3 that only opens the Store).
py=""
for candidate in "${PYTHON:-}" python3 python; do
  [ -n "$candidate" ] && "$candidate" -c "import json" >/dev/null 2>&1 && { py=$candidate; break; }
done

fail() {
  echo "SMOKE TEST FAILED: $*" >&2
  for f in "$work"/log/*; do [ -f "$f" ] && { echo "--- $f" >&2; tail -n 40 "$f" >&2; }; done
  exit 1
}

echo "== $exe --version"
version=$(run "$exe" --version 2>"$work/version.err") || fail "--version exited $? ($(cat "$work/version.err"))"
echo "$version"
case "$version" in
  "uplink-console ${EXPECTED_VERSION:-}"*) ;;
  *) fail "--version printed '$version', expected 'uplink-console ${EXPECTED_VERSION:-VERSION}'" ;;
esac

echo "== $exe --demo --smoke-test $seconds   (offscreen, demo broker: $UPLINK_CONSOLE_DEMO_BROKER)"
started=$(date +%s)
status=0
run "$exe" --demo --smoke-test "$seconds" >"$work/smoke.out" 2>"$work/smoke.err" || status=$?
cat "$work/smoke.out"
[ -s "$work/smoke.err" ] && { echo "-- stderr:"; tail -n 20 "$work/smoke.err"; }
[ "$status" = 0 ] || fail "--demo --smoke-test $seconds exited $status after $(( $(date +%s) - started )) s"
line=$(grep '^{' "$work/smoke.out" | tail -n 1)
[ -n "$line" ] || fail "--demo --smoke-test printed no JSON line"
if [ -n "$py" ]; then
  "$py" - "$line" <<'PY' || fail "the smoke test's measurements say the demo did not work (above)"
import json, sys
report = json.loads(sys.argv[1])
problems = []
if not report.get("rows"):
    problems.append("no rows reached the tables")
platforms = report.get("platforms")
if platforms is not None:
    missing = [p for p in ("tts", "tektelic", "akenza", "thingpark", "drogue") if not platforms.get(p)]
    if missing:
        problems.append("no rows from " + ", ".join(missing))
for problem in problems:
    print("smoke test:", problem, file=sys.stderr)
sys.exit(1 if problems else 0)
PY
else
  case "$line" in *'"rows": 0,'*|*'"rows": 0}'*) fail "no rows reached the tables" ;; esac
fi
echo "smoke test passed: $exe ($(( $(date +%s) - started )) s)"

#!/bin/sh
# Checks a built uplink-console: it starts, reports its version, opens its window offscreen,
# decodes nothing wrongly, and exits cleanly.
set -eu
exe=${1:-dist/uplink-console/uplink-console}
"$exe" --version
QT_QPA_PLATFORM=offscreen "$exe" --smoke-test 2 | tee /tmp/uplink-smoke.json
grep -q '"rows"' /tmp/uplink-smoke.json
echo "smoke test passed: $exe"

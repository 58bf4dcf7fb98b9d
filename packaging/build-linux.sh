#!/bin/sh
# `make package`: builds the Linux installers here and checks what was built.
#   dist/uplink-console_VERSION_ARCH.deb            (/opt/uplink-console, /usr/bin/uplink-console)
#   dist/uplink-console-VERSION-linux-MACHINE.tar.gz (the folder, run in place)
# Then unpacks each into a temporary root (dpkg-deb -x, tar) and runs packaging/smoke-test.sh on
# the program found there (--version, --demo --smoke-test 10, offscreen; SMOKE_SECONDS=N for a
# longer run on a busy machine). Any failure stops the build with a non-zero exit. Prints the
# build time and the size of each artifact.
set -eu
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
SMOKE_SECONDS=${SMOKE_SECONDS:-10}
started=$(date +%s)
if ! command -v dpkg-deb >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get install -y -q dpkg-dev >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q dpkg-dev >/dev/null; }
  else
    echo "dpkg-deb is missing; run: sudo apt-get install -y dpkg-dev   (then make package again)" >&2
    exit 1
  fi
fi

PYTHON="$PYTHON" packaging/build.sh
version=$("$PYTHON" packaging/version.py)
rm -f dist/uplink-console_*.deb dist/uplink-console-*-linux-*.tar.gz
"$PYTHON" packaging/linux_packages.py dist/uplink-console --out dist
deb=$(ls dist/uplink-console_"$version"_*.deb)
tarball=$(ls dist/uplink-console-"$version"-linux-*.tar.gz)
built=$(date +%s)

check=$(mktemp -d)
trap 'rm -rf "$check"' EXIT
echo "== the .deb, unpacked with dpkg-deb -x into $check/deb"
dpkg-deb -x "$deb" "$check/deb"
launcher="$check/deb/usr/bin/uplink-console"
grep -q '^exec /opt/uplink-console/uplink-console "\$@"$' "$launcher" ||
  { echo "PACKAGE CHECK FAILED: $launcher does not start /opt/uplink-console/uplink-console" >&2; exit 1; }
for f in usr/share/applications/uplink-console.desktop usr/share/icons/hicolor/256x256/apps/uplink-console.png \
         usr/share/icons/hicolor/scalable/apps/uplink-console.svg; do
  [ -f "$check/deb/$f" ] || { echo "PACKAGE CHECK FAILED: the .deb has no /$f" >&2; exit 1; }
done
if command -v desktop-file-validate >/dev/null 2>&1; then
  desktop-file-validate "$check/deb/usr/share/applications/uplink-console.desktop"
fi
# The launcher, pointed at the unpacked /opt instead of the real one.
sed "s#/opt/uplink-console#$check/deb/opt/uplink-console#" "$launcher" >"$check/launcher" && chmod +x "$check/launcher"
EXPECTED_VERSION="$version" packaging/smoke-test.sh "$check/launcher" "$SMOKE_SECONDS"

echo "== the tarball, unpacked with tar into $check/tar"
mkdir "$check/tar"
tar -xzf "$tarball" -C "$check/tar"
EXPECTED_VERSION="$version" packaging/smoke-test.sh "$check/tar/uplink-console/uplink-console" "$SMOKE_SECONDS"

finished=$(date +%s)
echo
echo "uplink-console $version: built in $((built - started)) s, checked in $((finished - built)) s"
for f in "$deb" "$tarball"; do
  printf '  %-55s %6s\n' "$f" "$(du -h "$f" | cut -f1)"
done
printf '  %-55s %6s\n' "installed (dist/uplink-console/)" "$(du -sh dist/uplink-console | cut -f1)"
echo "both passed their smoke test"

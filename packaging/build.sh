#!/bin/sh
# Builds the one-folder program with PyInstaller (Linux and macOS; Windows: build-windows.ps1):
#   Linux  dist/uplink-console/uplink-console
#   macOS  dist/uplink-console/ and dist/Uplink Console.app
# PYTHON picks the interpreter whose installed packages go into the build (default: the
# project's .venv, created and filled by the Makefile). The installers are made from this
# folder by build-linux.sh and build-macos.sh.
set -eu
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
if [ "$PYTHON" = .venv/bin/python ]; then
  make -s .venv/.installed
fi
"$PYTHON" -m pip install -q "pyinstaller>=6.10"
rm -rf dist/uplink-console "dist/Uplink Console.app"
"$PYTHON" -m PyInstaller --noconfirm --clean --log-level WARN --distpath dist --workpath build/pyinstaller \
  packaging/uplink-console.spec
echo "built dist/uplink-console/ ($(du -sh dist/uplink-console | cut -f1)), version $("$PYTHON" packaging/version.py)"

#!/bin/sh
# Builds dist/uplink-console/ with PyInstaller from the project's .venv, then smoke-tests it.
set -eu
cd "$(dirname "$0")/.."
make .venv/.installed
.venv/bin/python -m pip install -q "pyinstaller>=6.10"
.venv/bin/pyinstaller --noconfirm --clean --distpath dist --workpath build packaging/uplink-console.spec
packaging/smoke-test.sh dist/uplink-console/uplink-console

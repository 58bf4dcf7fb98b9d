"""Prints the version of the installed uplink-console package, from its metadata: the one version
every installer recipe uses (the PyInstaller spec, the .deb and .tar.gz names, the macOS bundle,
the Inno Setup installer), so no recipe carries a second, hard-coded version.

    python packaging/version.py        ->  0.1.0
"""

import importlib.metadata
import sys

DIST_NAME = "uplink-console"

if __name__ == "__main__":
    try:
        print(importlib.metadata.version(DIST_NAME))
    except importlib.metadata.PackageNotFoundError:
        print(f"{DIST_NAME} is not installed in {sys.executable}; run: python -m pip install -e .", file=sys.stderr)
        sys.exit(1)

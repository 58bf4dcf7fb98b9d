"""Makes the Linux installers from the PyInstaller folder (dist/uplink-console/):

- uplink-console_VERSION_ARCH.deb: the program in /opt/uplink-console, a launcher
  /usr/bin/uplink-console, the desktop entry and the icon (hicolor theme), and `Depends:` on the
  system libraries Qt needs to draw on an X11 or Wayland desktop (the list scripts/system-deps
  installs for `make run`, so the two never drift apart);
- uplink-console-VERSION-linux-MACHINE.tar.gz: the same folder, for any distribution, run in place.

The version comes from the installed package's metadata (packaging/version.py), like every
other recipe's. dpkg-deb builds the .deb (apt-get install dpkg-dev where it is missing); the
tarball is written with Python's tarfile, keeping the executable bits.

    python packaging/linux_packages.py dist/uplink-console --out dist
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DIST_NAME = "uplink-console"
EXE_NAME = "uplink-console"
INSTALL_DIR = "/opt/uplink-console"
LAUNCHER = "/usr/bin/uplink-console"
SYSTEM_DEPS = ROOT / "scripts" / "system-deps"
DESKTOP_FILE = ROOT / "resources" / "uplink-console.desktop"
ICON_SVG = ROOT / "resources" / "uplink-console.svg"
ICON_PNG = ROOT / "resources" / "uplink-console.png"
# Packages renamed by Debian's 64-bit time_t transition (Ubuntu 24.04, Debian 13): either name will do.
RENAMED = {"libglib2.0-0": "libglib2.0-0t64"}
MAINTAINER = os.environ.get("DEB_MAINTAINER", "Uplink Console <uplink-console@users.noreply.github.com>")
DESCRIPTION = """\
Description: Desktop MQTT console for LoRaWAN network servers
 Uplink Console watches uplinks and sends downlinks on The Things Stack, Tektelic,
 akenza, ThingPark and Drogue Cloud in each platform's own format: a live table of
 uplinks with per-device RSSI/SNR/SF charts, a downlink composer that tracks each
 downlink to its acknowledgement, certificates, saved connections with secrets in
 the system keyring, and a demo with simulated platforms (uplink-console --demo).
"""


def package_version() -> str:
    return importlib.metadata.version(DIST_NAME)


def qt_runtime_packages(system_deps: Path = SYSTEM_DEPS) -> list[str]:
    """The Debian packages scripts/system-deps installs for the window (its `want` and `xcb` lists)."""
    text = system_deps.read_text(encoding="utf-8")
    lists = {}
    for name in ("want", "xcb"):
        found = re.search(rf'^{name}="([^"$]+)"', text, re.M)  # the first, literal assignment
        if not found:
            raise SystemExit(f'{system_deps} no longer sets {name}="…"; update packaging/linux_packages.py to match.')
        lists[name] = found.group(1).split()
    return lists["want"] + lists["xcb"]


def depends_field(packages: list[str]) -> str:
    return ", ".join(f"{RENAMED[p]} | {p}" if p in RENAMED else p for p in packages)


def deb_architecture() -> str:
    return subprocess.run(["dpkg", "--print-architecture"], check=True, capture_output=True, text=True).stdout.strip()


def control_text(version: str, architecture: str, installed_kib: int, depends: str) -> str:
    return (
        f"Package: {DIST_NAME}\n"
        f"Version: {version}\n"
        f"Architecture: {architecture}\n"
        f"Maintainer: {MAINTAINER}\n"
        f"Installed-Size: {installed_kib}\n"
        f"Depends: {depends}\n"
        "Section: net\n"
        "Priority: optional\n" + DESCRIPTION
    )


def launcher_text() -> str:
    return f'#!/bin/sh\n# Uplink Console, installed in {INSTALL_DIR} by its .deb.\nexec {INSTALL_DIR}/{EXE_NAME} "$@"\n'


def _copy_tree(source: Path, target: Path) -> None:
    """Copies the program folder with normal modes: 0755 for directories and executables, else 0644."""
    shutil.copytree(source, target, symlinks=True)
    for dirpath, _dirnames, filenames in os.walk(target):
        os.chmod(dirpath, 0o755)
        for name in filenames:
            path = os.path.join(dirpath, name)
            if os.path.islink(path):
                continue
            executable = os.stat(path).st_mode & 0o111
            os.chmod(path, 0o755 if executable else 0o644)


def _write(path: Path, text: str | bytes, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, str):
        path.write_text(text, encoding="utf-8")
    else:
        path.write_bytes(text)
    os.chmod(path, mode)


def build_deb(folder: Path, version: str, out_dir: Path) -> Path:
    if not shutil.which("dpkg-deb"):
        raise SystemExit("dpkg-deb is not installed; run: sudo apt-get install -y dpkg-dev (then build again).")
    architecture = deb_architecture()
    out = out_dir / f"{DIST_NAME}_{version}_{architecture}.deb"
    with tempfile.TemporaryDirectory(prefix="uplink-deb-") as tmp:
        root = Path(tmp) / "root"
        _copy_tree(folder, root / INSTALL_DIR.lstrip("/"))
        _write(root / LAUNCHER.lstrip("/"), launcher_text(), 0o755)
        _write(root / "usr/share/applications/uplink-console.desktop", DESKTOP_FILE.read_bytes())
        _write(root / "usr/share/icons/hicolor/scalable/apps/uplink-console.svg", ICON_SVG.read_bytes())
        _write(root / "usr/share/icons/hicolor/256x256/apps/uplink-console.png", ICON_PNG.read_bytes())
        _write(
            root / "usr/share/doc/uplink-console/copyright",
            "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n"
            "Upstream-Name: uplink-console\n\nFiles: *\nLicense: MIT\n",
        )
        installed = sum(os.lstat(os.path.join(d, f)).st_size for d, _dirs, files in os.walk(root) for f in files)
        _write(
            root / "DEBIAN/control",
            control_text(version, architecture, (installed + 1023) // 1024, depends_field(qt_runtime_packages())),
        )
        os.chmod(root / "DEBIAN", 0o755)
        subprocess.run(["dpkg-deb", "--root-owner-group", "-Zxz", "--build", str(root), str(out)], check=True)
    return out


def build_tarball(folder: Path, version: str, out_dir: Path) -> Path:
    out = out_dir / f"{DIST_NAME}-{version}-linux-{platform.machine()}.tar.gz"

    def normal(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        if not info.issym():
            info.mode = 0o755 if info.isdir() or info.mode & 0o111 else 0o644
        return info

    with tarfile.open(out, "w:gz", compresslevel=6) as tar:
        tar.add(folder, arcname=EXE_NAME, filter=normal)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Make the .deb and .tar.gz from the PyInstaller folder.")
    parser.add_argument("folder", type=Path, help="the PyInstaller folder, e.g. dist/uplink-console")
    parser.add_argument("--out", type=Path, default=ROOT / "dist", help="where to write the installers")
    parser.add_argument("--only", choices=("deb", "tar"), help="make only one of the two")
    args = parser.parse_args(argv)
    if not (args.folder / EXE_NAME).is_file():
        print(f"{args.folder} holds no {EXE_NAME} executable; run packaging/build.sh first.", file=sys.stderr)
        return 1
    version = package_version()
    args.out.mkdir(parents=True, exist_ok=True)
    built = []
    if args.only in (None, "deb"):
        built.append(build_deb(args.folder, version, args.out))
    if args.only in (None, "tar"):
        built.append(build_tarball(args.folder, version, args.out))
    for path in built:
        print(f"{path}  {path.stat().st_size / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())

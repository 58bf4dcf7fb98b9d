"""Renders resources/uplink-console.svg into the bitmap icons the installers need, so the one
drawing stays the only source of the icon:

    resources/uplink-console.png    256 px, for the Linux desktop entry (hicolor theme) and the tarball
    resources/uplink-console.ico    16-256 px, for the Windows executables and the Inno Setup installer
    resources/uplink-console.icns   16-1024 px, for the macOS .app bundle and the .dmg

Qt's SVG renderer draws each size (no Pillow needed); ICO and ICNS are then plain containers of
those PNG images, written here in a few lines each (PNG entries in ICO since Windows Vista,
PNG-typed entries in ICNS since Mac OS X 10.7), which Qt's own qico/qicns readers read back.

Run after changing the SVG and commit the outputs:   .venv/bin/python packaging/make_icons.py
`--check` exits 1 when the committed files are not what the SVG renders to.
"""

from __future__ import annotations

import struct
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SVG = ROOT / "resources" / "uplink-console.svg"
PNG = ROOT / "resources" / "uplink-console.png"
ICO = ROOT / "resources" / "uplink-console.ico"
ICNS = ROOT / "resources" / "uplink-console.icns"

PNG_SIZE = 256
ICO_SIZES = (16, 24, 32, 48, 64, 128, 256)
# ICNS types that hold PNG data, by pixel size (the @2x types share a size with a 1x one).
ICNS_TYPES = (
    (b"icp4", 16),
    (b"icp5", 32),
    (b"icp6", 64),
    (b"ic07", 128),
    (b"ic08", 256),
    (b"ic09", 512),
    (b"ic11", 32),  # 16 @2x
    (b"ic12", 64),  # 32 @2x
    (b"ic13", 256),  # 128 @2x
    (b"ic14", 512),  # 256 @2x
    (b"ic10", 1024),  # 512 @2x
)


def render_png(size: int, svg: Path = SVG) -> bytes:
    """The SVG drawn on a transparent size x size image, as PNG bytes."""
    from PySide6.QtCore import QBuffer, QByteArray, QIODevice
    from PySide6.QtGui import QGuiApplication, QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    _app = QGuiApplication.instance() or QGuiApplication(["make_icons", "-platform", "offscreen"])  # noqa: F841
    renderer = QSvgRenderer(str(svg))
    if not renderer.isValid():
        raise SystemExit(f"{svg} is not an SVG image Qt can draw; fix the file and run this again.")
    image = QImage(size, size, QImage.Format.Format_ARGB32)
    image.fill(0)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
    renderer.render(painter)
    painter.end()
    data = QByteArray()
    buffer = QBuffer(data)
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    image.save(buffer, "PNG")
    buffer.close()
    return bytes(data)


def ico_bytes(pngs: dict[int, bytes]) -> bytes:
    """An ICO file holding each PNG (ICONDIR, one ICONDIRENTRY per image, then the images)."""
    sizes = sorted(pngs)
    header = struct.pack("<HHH", 0, 1, len(sizes))
    offset = 6 + 16 * len(sizes)
    entries, images = b"", b""
    for size in sizes:
        data = pngs[size]
        dim = 0 if size >= 256 else size  # 0 means 256 in an ICONDIRENTRY
        entries += struct.pack("<BBBBHHII", dim, dim, 0, 0, 1, 32, len(data), offset)
        images += data
        offset += len(data)
    return header + entries + images


def icns_bytes(pngs: dict[int, bytes]) -> bytes:
    """An ICNS file: 'icns', total length, then (type, length, PNG data) per entry."""
    body = b"".join(kind + struct.pack(">I", 8 + len(pngs[size])) + pngs[size] for kind, size in ICNS_TYPES)
    return b"icns" + struct.pack(">I", 8 + len(body)) + body


def outputs() -> dict[Path, bytes]:
    sizes = sorted({PNG_SIZE, *ICO_SIZES, *(size for _kind, size in ICNS_TYPES)})
    pngs = {size: render_png(size) for size in sizes}
    return {
        PNG: pngs[PNG_SIZE],
        ICO: ico_bytes({size: pngs[size] for size in ICO_SIZES}),
        ICNS: icns_bytes(pngs),
    }


def main(argv: list[str]) -> int:
    wanted = outputs()
    if "--check" in argv:
        stale = [path.name for path, data in wanted.items() if not path.exists() or path.read_bytes() != data]
        if stale:
            print(f"Out of date with {SVG.name}: {', '.join(stale)}; run packaging/make_icons.py and commit them.")
            return 1
        print("icons match the SVG")
        return 0
    for path, data in wanted.items():
        path.write_bytes(data)
        print(f"{path.relative_to(ROOT)}: {len(data):,} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Icons, style sheet and desktop entry of Uplink Console (data, no code)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent


def path(name: str) -> str:
    return str(ROOT / name)

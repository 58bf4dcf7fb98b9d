"""The platform registry: one module per platform, one line here each."""

from __future__ import annotations

import importlib

from app.platforms.base import DecodeError, DownlinkRequest, EncodeError, OutgoingMessage, Platform, ProfileError

_MODULES = {
    "tts": "app.platforms.tts",
    "tektelic": "app.platforms.tektelic",
    "akenza": "app.platforms.akenza",
    "thingpark": "app.platforms.thingpark",
    "drogue": "app.platforms.drogue",
    "generic": "app.platforms.generic",
}
NAMES = tuple(_MODULES)
_cache: dict[str, Platform] = {}


def get(name: str) -> Platform:
    """The platform called `name` (tts, tektelic, akenza, thingpark, drogue, generic)."""
    if name not in _MODULES:
        raise KeyError(f"Unknown platform {name!r}; choose one of {', '.join(NAMES)}.")
    if name not in _cache:
        _cache[name] = importlib.import_module(_MODULES[name]).PLATFORM
    return _cache[name]


def available() -> list[Platform]:
    out = []
    for name in NAMES:
        try:
            out.append(get(name))
        except ModuleNotFoundError:
            continue
    return out


__all__ = [
    "DecodeError",
    "DownlinkRequest",
    "EncodeError",
    "OutgoingMessage",
    "Platform",
    "ProfileError",
    "get",
    "available",
    "NAMES",
]

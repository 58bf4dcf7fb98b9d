"""The normalized event every platform's parser produces, and the JSON the commands print.

Slotted and flat: the uplink table keeps up to a million of these in memory.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import orjson

KINDS = (
    "uplink",
    "join",
    "downlink_queued",
    "downlink_sent",
    "downlink_ack",
    "downlink_nack",
    "downlink_failed",
    "location",
    "service_data",
    "status",
    "event",
    "error",
)
PLATFORMS = ("tts", "tektelic", "akenza", "thingpark", "drogue", "generic")


@dataclass(slots=True)
class Event:
    platform: str
    kind: str
    received_at: str | None = None
    application_id: str | None = None
    device_id: str | None = None
    dev_eui: str | None = None  # uppercase hex
    dev_addr: str | None = None  # uppercase hex
    f_port: int | None = None
    f_cnt: int | None = None
    payload_hex: str | None = None  # lowercase hex of the frame payload
    decoded: object = None  # what the platform decoded (object), or None
    rssi: float | None = None  # best gateway
    snr: float | None = None  # best gateway
    gateway_id: str | None = None  # best gateway
    gateways: int | None = None
    spreading_factor: int | None = None
    bandwidth_hz: int | None = None
    frequency_hz: int | None = None
    correlation_ids: list[str] = field(default_factory=list)
    error: str | None = None
    topic: str | None = None

    def to_dict(self) -> dict:
        return {name: getattr(self, name) for name in EVENT_KEYS}

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict(), option=orjson.OPT_NON_STR_KEYS, default=_json_default)


EVENT_KEYS = tuple(Event.__dataclass_fields__)


def _json_default(value):
    """A number beyond a float that a parser kept (app.platforms.base.OutOfRange, a float subclass
    orjson does not write) as the text it came as; anything else stays a TypeError."""
    text = getattr(value, "text", None)
    if isinstance(value, float) and isinstance(text, str):
        return text
    raise TypeError(f"Type is not JSON serializable: {type(value).__name__}")


def utc_now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")


def iso_from_epoch(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).isoformat().replace("+00:00", "Z")


def error_event(platform: str, topic: str | None, message: str, received_at: str | None = None) -> Event:
    return Event(platform=platform, kind="error", error=message, topic=topic, received_at=received_at or utc_now_iso())

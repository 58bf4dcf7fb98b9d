"""The Things Stack uplinks straight to table rows: the hot path of a live flood.

A TTS uplink is ~850 bytes of JSON of which the table needs about twenty values. Decoding the
whole document into dicts, walking them, building an `Event` and re-encoding its decoded object
costs ~35 us a message here; decoding only those values into typed structs (msgspec) and building
the row tuple directly costs a fraction of that (benchmarks/parse_fast.py prints both).

The fast path covers the common, well-formed shape only. Anything else (a value of another type,
a missing uplink_message, decoder warnings, LR-FHSS, invalid base64, a number the table cannot
hold ...) returns None and the message goes through `parse_tts_message`, which knows every case
and says what is wrong. For what it accepts, the fast path produces exactly the row `event_row`
builds from `parse_tts_message`'s event (tests/test_tts_fast.py holds it to that). It never
raises, whatever the bytes.

Where msgspec is laxer than orjson (the full parser's reader), the fast path checks first: msgspec
skips the fields a struct does not name without checking their UTF-8 or their numbers' range,
and it nests as deep as the interpreter lets it. So a body that is not ASCII is checked as
UTF-8, a body with more brackets than MAX_DEPTH has its depth measured (as body_problem does), and the
numbers the row takes are bounded in the structs (FPort 0..255, FCnt 32 bits, 64-bit columns).
A number beyond a float in a skipped field is ignored by both paths (see parse_tts_message).
"""

from __future__ import annotations

import binascii
from binascii import a2b_base64
from math import isfinite
from typing import Annotated

import msgspec
import orjson

from app.events import utc_now_iso
from app.platforms.base import (
    F_CNT,
    F_PORT,
    INT64_MAX,
    MAX_BODY,
    MAX_DEPTH,
    NONE_INT,
    DecodeError,
    int_field,
    json_depth,
)

# The bounds of the full parser's int_field, as msgspec checks them while decoding: beyond them
# the struct does not decode and the full parser words the message.
_FPort = Annotated[int, msgspec.Meta(ge=F_PORT[0], le=F_PORT[1])]
_FCnt = Annotated[int, msgspec.Meta(ge=F_CNT[0], le=F_CNT[1])]
_Int64 = Annotated[int, msgspec.Meta(gt=NONE_INT, le=INT64_MAX)]  # NONE_INT and below: the full parser


class _AppIds(msgspec.Struct, gc=False):
    application_id: str | None = None


class _DeviceIds(msgspec.Struct, gc=False):
    device_id: str | None = None
    application_ids: _AppIds | None = None
    dev_eui: str | None = None
    dev_addr: str | None = None


class _GatewayIds(msgspec.Struct, gc=False):
    gateway_id: str | None = None
    eui: str | None = None


class _RxMetadata(msgspec.Struct, gc=False):
    gateway_ids: _GatewayIds | None = None
    rssi: float | None = None
    channel_rssi: float | None = None
    snr: float | None = None


class _Lora(msgspec.Struct, gc=False):
    spreading_factor: _Int64 | None = None
    bandwidth: _Int64 | None = None


class _DataRate(msgspec.Struct, gc=False):
    lora: _Lora | None = None
    lrfhss: msgspec.Raw = msgspec.Raw()  # empty when absent (msgspec takes no Raw in a union)


class _Settings(msgspec.Struct, gc=False):
    frequency: str | int | None = None
    data_rate: _DataRate | None = None


class _Uplink(msgspec.Struct, gc=False):
    f_port: _FPort | None = None
    f_cnt: _FCnt | None = None
    frm_payload: str | None = None
    decoded_payload: msgspec.Raw = msgspec.Raw()
    rx_metadata: list[_RxMetadata] | None = None
    settings: _Settings | None = None
    decoded_payload_warnings: msgspec.Raw = msgspec.Raw()
    received_at: str | None = None


class _UplinkDoc(msgspec.Struct, gc=False):
    end_device_ids: _DeviceIds | None = None
    correlation_ids: list[str] | None = None
    received_at: str | None = None
    uplink_message: _Uplink | None = None


_decode = msgspec.json.Decoder(_UplinkDoc).decode
_NULL = b"null"
_NO_WARNINGS = (b"", b"null", b"[]")
# A decoded object is re-encoded as the full parser's orjson writes it when it has whitespace or
# an exponent, and when it may hold an integer of 309+ digits: orjson refuses numbers beyond a
# float (1e400) and the full parser then refuses the message. Found with translate + find (C
# loops; a regex with these alternatives costs ~1 us a message, bytes `in` ~0.25 us a test).
_CLASSES = bytes.maketrans(b"0123456789E\t\r\n", b"0000000000e   ")
_HUGE_INT = b"0" * 309
_UNREADABLE = object()  # a frequency the full parser refuses

# Device ids, gateway ids, topics and frequencies repeat from message to message: each is
# normalized once and then looked up (bounded; emptied when full).
_CACHE_LIMIT = 50_000
_hex_cache: dict[str, str | None] = {}
_topic_cache: dict[str, tuple[str | None, str] | None] = {}
_int_cache: dict = {}


def _upper_hex(value: str | None) -> str | None:
    if not value:
        return None
    try:
        return _hex_cache[value]
    except KeyError:
        if len(_hex_cache) >= _CACHE_LIMIT:
            _hex_cache.clear()
        result = _hex_cache[value] = value.replace(":", "").replace("-", "").upper()
        return result


def _topic_ids(topic: str) -> tuple[str | None, str] | None:
    """(application id from the topic, device id from the topic) of an uplink topic, else None."""
    try:
        return _topic_cache[topic]
    except KeyError:
        pass
    parts = topic.split("/")
    if len(parts) != 5 or parts[0] != "v3" or parts[2] != "devices" or parts[4] != "up":
        result = None
    else:
        result = (parts[1].partition("@")[0] if parts[1] else None, parts[3])
    if len(_topic_cache) >= _CACHE_LIMIT:
        _topic_cache.clear()
    _topic_cache[topic] = result
    return result


def _frequency(value):
    """settings.frequency as the full parser reads it, or _UNREADABLE where it refuses it."""
    try:
        return _int_cache[value]
    except KeyError:
        if len(_int_cache) >= _CACHE_LIMIT:
            _int_cache.clear()
        try:
            result = int_field(value, "frequency")
        except DecodeError:
            result = _UNREADABLE
        _int_cache[value] = result
        return result


def uplink_row(topic: str, payload: bytes, ts: float, row_id: int | None):
    """(row in ROW_FIELDS order, received_at, correlation_ids) for a TTS uplink on its own
    `v3/{app}@{tenant}/devices/{device}/up` topic, or None: then parse_tts_message decides.
    Never raises (anything unexpected is None too); applies body_problem itself."""
    try:
        return _uplink_row(topic, payload, ts, row_id)
    except Exception:
        return None


def _uplink_row(topic: str, payload: bytes, ts: float, row_id: int | None):
    if not payload:
        return None
    size = len(payload)
    if size > MAX_BODY:
        return None
    # body_problem inline: fewer brackets than MAX_DEPTH (the usual case) prove the depth.
    if (
        size > MAX_DEPTH
        and size - len(payload.replace(b"{", b"").replace(b"[", b"")) > MAX_DEPTH
        and json_depth(payload) > MAX_DEPTH
    ):
        return None
    if not payload.isascii():
        payload.decode()  # orjson refuses invalid UTF-8 anywhere; msgspec only where it decodes
    topic_ids = _topic_ids(topic)
    if topic_ids is None:
        return None
    try:
        doc = _decode(payload)
    except (msgspec.DecodeError, UnicodeDecodeError):
        return None
    up = doc.uplink_message
    if up is None:
        return None
    if up.decoded_payload_warnings and bytes(up.decoded_payload_warnings) not in _NO_WARNINGS:
        return None  # the full parser words them

    ids = doc.end_device_ids
    app_id = device_id = dev_eui = dev_addr = None
    if ids is not None:
        if ids.application_ids is not None:
            app_id = ids.application_ids.application_id
        device_id = ids.device_id
        dev_eui = _upper_hex(ids.dev_eui)
        dev_addr = _upper_hex(ids.dev_addr)
    if app_id is None:
        app_id = topic_ids[0]
    if device_id is None:
        device_id = topic_ids[1]

    frm_payload = up.frm_payload
    frame = None
    if frm_payload:
        try:
            frame = a2b_base64(frm_payload, strict_mode=True) or None
        except (binascii.Error, ValueError):
            return None

    f_cnt = up.f_cnt
    if f_cnt is None:
        f_cnt = 0  # zero is left out: the first frame of a session

    rssi = snr = gateway_id = None
    gateways = 0
    rx_metadata = up.rx_metadata
    if rx_metadata:
        best = None
        for md in rx_metadata:
            gateways += 1
            md_rssi = md.rssi
            if md_rssi is None:
                md_rssi = md.channel_rssi
            if best is None or (md_rssi is not None and (rssi is None or md_rssi > rssi)):
                best, rssi = md, md_rssi
        snr = best.snr
        if snr is None:
            snr = 0.0
        gw = best.gateway_ids
        if gw is not None:
            gateway_id = gw.gateway_id or _upper_hex(gw.eui)
        if not (isfinite(snr) and (rssi is None or isfinite(rssi))):
            return None

    spreading_factor = bandwidth_hz = frequency_hz = None
    settings = up.settings
    if settings is not None:
        frequency_hz = _frequency(settings.frequency)
        if frequency_hz is _UNREADABLE:
            return None
        data_rate = settings.data_rate
        if data_rate is not None:
            lora = data_rate.lora
            if lora is not None:
                spreading_factor = lora.spreading_factor
                bandwidth_hz = lora.bandwidth
            elif data_rate.lrfhss and bytes(data_rate.lrfhss) != _NULL:
                return None

    decoded = up.decoded_payload
    if decoded:
        decoded = bytes(decoded)
        if decoded == _NULL:
            decoded = None
        elif (
            (classes := decoded.translate(_CLASSES)).find(b" ") >= 0
            or classes.find(b"0e") >= 0
            or (len(classes) >= 309 and classes.find(_HUGE_INT) >= 0)
        ):
            # Stored as the full parser's re-encoding writes it (compact, orjson's numbers).
            decoded = bytes(memoryview(orjson.dumps(orjson.loads(decoded))))
    else:
        decoded = None

    received_at = doc.received_at
    if received_at is None:
        received_at = up.received_at if up.received_at is not None else utc_now_iso()
    cids = doc.correlation_ids
    row = (
        row_id,
        ts,
        "tts",
        "uplink",
        app_id,
        device_id,
        dev_eui,
        dev_addr,
        up.f_port,
        f_cnt,
        frame,
        decoded,
        rssi,
        snr,
        gateway_id,
        gateways,
        spreading_factor,
        bandwidth_hz,
        frequency_hz,
        None,
        topic,
    )
    return row, received_at, cids if cids is not None else []

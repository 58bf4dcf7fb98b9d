"""Per-gateway receptions of one uplink, read from the raw message a platform sent.

The event table keeps the best gateway only; the details pane shows every gateway that heard
the frame. Each reception is a dict with gateway_id, rssi, snr, channel and time (text), and
antenna, lat, lon and name when the message carries them. Bodies come from brokers and
captures, so anything unexpected gives an empty list rather than an exception.
"""

from __future__ import annotations

import json

import orjson

from app.platforms.base import to_float, to_int, upper_hex
from app.platforms.tektelic import iso_from_epoch_any_unit


def gateway_receptions(platform: str, payload: bytes) -> list[dict]:
    """The gateways that received this message, best RSSI first; [] when there are none or the
    platform's messages carry no per-gateway data (akenza, Drogue, generic)."""
    try:
        reader = _READERS.get(str(platform).lower())
        if reader is None:
            return []
        doc = _load(payload)
        if type(doc) is not dict:
            return []
        rows = reader(doc)
        rows.sort(key=_rank)
        return rows
    except Exception:  # a reception table is a nice-to-have: never break the caller for it
        return []


def _load(payload):
    if isinstance(payload, (bytearray, memoryview)):
        payload = bytes(payload)
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError:
        if len(payload) > 1024 * 1024:
            raise
        return json.loads(payload)  # what orjson refuses but is JSON: integers beyond 64 bits


def _rank(row: dict) -> tuple:
    rssi, snr = row["rssi"], row["snr"]
    return (rssi is None, -(rssi or 0.0), snr is None, -(snr or 0.0))


def _text(value) -> str | None:
    if isinstance(value, str):
        value = value.strip()
        return value or None
    return None


def _number_or_text(value):
    """A channel: an int when it is one ("2", 2.0), else its text ("LC6"), else None."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    text = _text(value)
    if text is None:
        return None
    number = to_int(text) if text.lstrip("-").isdigit() else None
    return number if number is not None else text


def _add_location(row: dict, lat, lon) -> None:
    """lat/lon only when both are real coordinates (0, 0 is what a gateway without GPS reports)."""
    lat, lon = to_float(lat), to_float(lon)
    if lat is None or lon is None or not (-90 <= lat <= 90 and -180 <= lon <= 180) or (lat == 0 and lon == 0):
        return
    row["lat"], row["lon"] = lat, lon


def _row(gateway_id, rssi, snr, channel, time) -> dict:
    return {"gateway_id": gateway_id, "rssi": rssi, "snr": snr, "channel": channel, "time": time}


# ----- The Things Stack ----------------------------------------------------------------------


def _tts(doc: dict) -> list[dict]:
    up = doc.get("uplink_message")
    if type(up) is not dict:
        return []
    metadata = up.get("rx_metadata")
    if type(metadata) is not list:
        return []
    # Older servers put the channel of a single-gateway uplink in the settings only.
    settings = up.get("settings")
    default_channel = to_int(settings.get("gateway_channel_index")) if type(settings) is dict else None
    if default_channel is None or len(metadata) != 1:
        default_channel = 0
    rows = []
    for md in metadata:
        if type(md) is not dict:
            continue
        ids = md.get("gateway_ids")
        ids = ids if type(ids) is dict else {}
        gateway_id = _text(ids.get("gateway_id")) or upper_hex(ids.get("eui"))
        forwarder = md.get("packet_broker")
        if type(forwarder) is dict:  # heard by another network's gateway, forwarded by Packet Broker
            via = _text(forwarder.get("forwarder_gateway_id")) or upper_hex(forwarder.get("forwarder_gateway_eui"))
            net = _text(forwarder.get("forwarder_net_id"))
            if via or net:
                gateway_id = f"{gateway_id or 'packetbroker'}: {via or 'NetID ' + net}"
        rssi = to_float(md.get("rssi"))
        if rssi is None:
            rssi = to_float(md.get("channel_rssi"))
        # TTS leaves zero values out: no snr / channel_index in a reception report means 0.
        snr = to_float(md.get("snr"))
        if snr is None and "snr" not in md and rssi is not None:
            snr = 0.0
        channel = _number_or_text(md.get("channel_index"))
        if channel is None and "channel_index" not in md:
            channel = default_channel
        time = _text(md.get("time")) or _text(md.get("received_at"))
        row = _row(gateway_id, rssi, snr, channel, time)
        antenna = to_int(md.get("antenna_index"))
        if antenna is not None:
            row["antenna"] = antenna
        location = md.get("location")
        if type(location) is dict:
            _add_location(row, location.get("latitude"), location.get("longitude"))
        rows.append(row)
    return rows


# ----- ThingPark -----------------------------------------------------------------------------


def _thingpark(doc: dict) -> list[dict]:
    body = doc.get("DevEUI_uplink")
    if body is None and "DevEUI" in doc and "Time" in doc:  # sendMetadata: the uplink without its root
        body = doc
    if type(body) is not dict:
        return []
    channel = _number_or_text(body.get("Channel"))
    time = _text(body.get("Time"))
    best_id = _text(body.get("Lrrid"))
    lrrs = body.get("Lrrs")
    entries = lrrs.get("Lrr") if type(lrrs) is dict else None
    if isinstance(entries, dict):  # an XML-to-JSON rendering of a single <Lrr>
        entries = [entries]
    rows = []
    if type(entries) is list:
        for lrr in entries:
            if type(lrr) is not dict:
                continue
            gateway_id = _text(lrr.get("Lrrid"))
            row = _row(gateway_id, to_float(lrr.get("LrrRSSI")), to_float(lrr.get("LrrSNR")), channel, time)
            chain = to_int(lrr.get("Chain"))
            if chain is not None:
                row["antenna"] = chain
            if gateway_id is not None and gateway_id == best_id:
                _add_location(row, body.get("LrrLAT"), body.get("LrrLON"))
            rows.append(row)
    if not rows:
        rssi, snr = to_float(body.get("LrrRSSI")), to_float(body.get("LrrSNR"))
        if best_id is not None or rssi is not None or snr is not None:
            row = _row(best_id, rssi, snr, channel, time)
            _add_location(row, body.get("LrrLAT"), body.get("LrrLON"))
            rows.append(row)
    return rows


# ----- Tektelic ------------------------------------------------------------------------------


def _tektelic(doc: dict) -> list[dict]:
    meta = doc.get("tektelicMetadata")
    if type(meta) is not dict:
        return []
    rx_info = meta.get("gatewayRxInfo")
    if type(rx_info) is not list:
        return []
    received = iso_from_epoch_any_unit(meta.get("recvTime"))
    rows = []
    for gw in rx_info:
        if type(gw) is not dict:
            continue
        eui = upper_hex(gw.get("gwEui"))
        name = _text(gw.get("gatewayName"))
        time = _text(gw.get("time")) or iso_from_epoch_any_unit(gw.get("rxTime")) or received
        row = _row(
            eui or name, to_float(gw.get("rssi")), to_float(gw.get("snr")), _number_or_text(gw.get("channel")), time
        )
        antenna = to_int(gw.get("antennaId"))
        if antenna is not None:
            row["antenna"] = antenna
        _add_location(row, gw.get("lat"), gw.get("lon"))
        if eui and name:
            row["name"] = name
        rows.append(row)
    return rows


_READERS = {"tts": _tts, "thingpark": _thingpark, "tektelic": _tektelic}

__all__ = ["gateway_receptions"]

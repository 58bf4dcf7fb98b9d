"""Actility ThingPark (X IoT Flow MQTT connector): ThingPark is an MQTT client of *your* broker.

ThingPark publishes uplinks and reports to `uplinkTopicPattern` and subscribes to
`downlinkTopicPattern`; both carry placeholders such as `{DevEUI}`. The console connects to the
same broker: it subscribes to the uplink pattern (each placeholder level turned into `+`) and
publishes downlinks to the downlink pattern with `{DevEUI}` filled in.

`PLATFORM.parse` needs no profile. Only the decoded-only form (`sendRawDecodedFormat`) names its
device nowhere but in the topic, so `PLATFORM.parser_for(profile)` returns a parser bound to the
profile's uplink pattern that reads the DevEUI from the topic and rejects decoded-only bodies on
topics ThingPark would not use.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache

import orjson

from app.events import Event, utc_now_iso
from app.mqtt.config import ConfigError, ConnectionConfig, Subscription
from app.platforms.base import (
    F_CNT,
    F_PORT,
    DecodeError,
    DownlinkRequest,
    EncodeError,
    OutgoingMessage,
    Platform,
    ProfileError,
    ProfileField,
    assign_pages,
    broker_fields,
    config_from_profile,
    float_field,
    int_field,
    json_type,
    load_json_object,
    save_pem_texts,
)

PLATFORM_NAME = "thingpark"
DEFAULT_UPLINK_PATTERN = "mqtt/things/{DevEUI}/uplink"
DEFAULT_DOWNLINK_PATTERN = "mqtt/things/{DevEUI}/downlink"
PROTOCOL_SCHEMES = {"SSL": "mqtts", "WSS": "wss", "TCP": "mqtt"}
MAX_DOWNLINK_PORT = 224  # DevEUI_downlink FPort: 1..224
# The largest FRMPayload any LoRaWAN regional profile allows (MACPayload 250 - FHDR 7 - FPort 1,
# e.g. US915 DR8+ or AS923 without dwell time). The real limit depends on the device's current
# data rate, which only ThingPark knows: it rejects a frame too long for it (DevEUI_downlink_Rejected).
MAX_DOWNLINK_PAYLOAD = 242
HEX_DIGITS = "0123456789abcdefABCDEF"
MESSAGE_NAME = "ThingPark message"

_MISSING = object()


def is_hex(text: str) -> bool:
    """True for a non-empty string of hex digits only (str.strip beats a regex per message)."""
    return bool(text) and not text.strip(HEX_DIGITS)


# ----- topic patterns -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TopicPattern:
    """A ThingPark topic pattern such as mqtt/things/{DevEUI}/uplink, compiled once.

    `segments` alternate literal text and placeholder names: (is_placeholder, text).
    """

    text: str
    segments: tuple[tuple[bool, str], ...]
    names: tuple[str, ...]  # distinct placeholder names, in order of first appearance
    topic_filter: str  # each level holding a placeholder becomes +
    matcher: re.Pattern[str]
    group_names: tuple[str, ...]  # the placeholder of each regex group (a name may repeat)

    def fill(self, values: Mapping[str, str]) -> str:
        """The topic with every placeholder replaced; EncodeError names what is missing or unusable."""
        parts = []
        for is_placeholder, text in self.segments:
            if not is_placeholder:
                parts.append(text)
                continue
            value = values.get(text)
            if value is None or value == "":
                known = ", ".join("{" + name + "}" for name in values) or "none"
                raise EncodeError(
                    f"The topic pattern {self.text!r} needs a value for {{{text}}}; the console can fill only {known}."
                )
            if any(c in value for c in "/+#\0"):
                raise EncodeError(f"The value {value!r} for {{{text}}} cannot be part of a topic (/, +, # or NUL).")
            parts.append(value)
        return "".join(parts)

    def extract(self, topic: str) -> dict[str, str] | None:
        """The placeholder values of a received topic, or None if ThingPark would not use this topic."""
        match = self.matcher.fullmatch(topic)
        if match is None:
            return None
        values: dict[str, str] = {}
        for name, value in zip(self.group_names, match.groups(), strict=True):
            if values.setdefault(name, value) != value:
                return None  # the same placeholder twice with different values
        return values


@lru_cache(maxsize=64)
def compile_topic_pattern(text: str, what: str = "topic pattern") -> TopicPattern:
    """Checks and compiles a pattern; ProfileError says what is wrong with it."""
    if not isinstance(text, str) or not text.strip():
        raise ProfileError(f"The {what} is empty; enter one such as {DEFAULT_UPLINK_PATTERN}.")
    if text != text.strip():
        raise ProfileError(f"The {what} {text!r} starts or ends with spaces; remove them.")
    if "+" in text or "#" in text:
        raise ProfileError(
            f"The {what} {text!r} contains an MQTT wildcard (+ or #); ThingPark publishes to a plain "
            "topic, so write placeholders such as {DevEUI} where the device changes."
        )
    segments: list[tuple[bool, str]] = []
    filter_levels: list[str] = []
    regex_levels: list[str] = []
    group_names: list[str] = []
    for level_index, level in enumerate(text.split("/")):
        if level_index:
            segments.append((False, "/"))
        level_parts = _split_level(level, text, what)
        segments.extend(level_parts)
        has_placeholder = any(is_placeholder for is_placeholder, _ in level_parts)
        filter_levels.append("+" if has_placeholder else level)
        whole_level = len(level_parts) == 1 and has_placeholder
        regex = []
        for is_placeholder, part in level_parts:
            if is_placeholder:
                # Non-greedy inside a level so "dev-{DevEUI}-up" stops at the next literal.
                regex.append("([^/]+)" if whole_level else "([^/]+?)")
                group_names.append(part)
            else:
                regex.append(re.escape(part))
        regex_levels.append("".join(regex))
    names = tuple(dict.fromkeys(group_names))
    topic_filter = "/".join(filter_levels)
    try:
        Subscription(topic_filter)
    except ConfigError as exc:
        raise ProfileError(f"The {what} {text!r} does not make a valid subscription: {exc}") from None
    return TopicPattern(
        text=text,
        segments=tuple(_merge_literals(segments)),
        names=names,
        topic_filter=topic_filter,
        matcher=re.compile("/".join(regex_levels)),
        group_names=tuple(group_names),
    )


def _split_level(level: str, pattern: str, what: str) -> list[tuple[bool, str]]:
    parts: list[tuple[bool, str]] = []
    position = 0
    while position < len(level):
        open_at = level.find("{", position)
        close_at = level.find("}", position)
        if close_at != -1 and (open_at == -1 or close_at < open_at):
            raise ProfileError(f"The {what} {pattern!r} has a '}}' without a '{{' before it.")
        if open_at == -1:
            parts.append((False, level[position:]))
            break
        if open_at > position:
            parts.append((False, level[position:open_at]))
        close_at = level.find("}", open_at)
        if close_at == -1:
            raise ProfileError(f"The {what} {pattern!r} opens a placeholder with '{{' but never closes it with '}}'.")
        name = level[open_at + 1 : close_at]
        if not name.strip() or "{" in name:
            raise ProfileError(f"The {what} {pattern!r} has an empty or nested placeholder; write e.g. {{DevEUI}}.")
        if parts and parts[-1][0]:
            raise ProfileError(
                f"The {what} {pattern!r} puts {{{parts[-1][1]}}} and {{{name}}} side by side; separate them "
                "with a character so a received topic can be split."
            )
        parts.append((True, name))
        position = close_at + 1
    return parts or [(False, "")]


def _merge_literals(segments: list[tuple[bool, str]]) -> list[tuple[bool, str]]:
    merged: list[tuple[bool, str]] = []
    for is_placeholder, text in segments:
        if not is_placeholder and merged and not merged[-1][0]:
            merged[-1] = (False, merged[-1][1] + text)
        elif is_placeholder or text:
            merged.append((is_placeholder, text))
    return merged


def topic_filter_for(pattern: str) -> str:
    """The subscription for a pattern: every level holding a placeholder becomes +."""
    return compile_topic_pattern(pattern).topic_filter


def fill_topic_pattern(pattern: str, values: Mapping[str, str]) -> str:
    """The topic for these placeholder values, e.g. {"DevEUI": "0018B20000000B20"}."""
    return compile_topic_pattern(pattern).fill(values)


def extract_topic_values(pattern: str, topic: str) -> dict[str, str] | None:
    """The placeholder values in a received topic, or None if the topic does not fit the pattern."""
    return compile_topic_pattern(pattern).extract(topic)


# ----- host name ------------------------------------------------------------------------------


def split_host_name(host_name: str) -> tuple[str, int]:
    """ThingPark's hostName ("host:port", "[2001:db8::1]:8883") as (host, port)."""
    text = str(host_name).strip()
    example = "for example broker.example.com:8883"
    if "://" in text:
        raise ProfileError(
            f"Enter the host name as host:port without a scheme ({example}); choose SSL, WSS or TCP under Protocol."
        )
    if text.startswith("["):
        end = text.find("]")
        if end == -1:
            raise ProfileError(f"The IPv6 address in {text!r} has no closing ']'; write it as [2001:db8::1]:8883.")
        host, rest = text[1:end], text[end + 1 :]
        if not rest.startswith(":"):
            raise ProfileError(
                f"The host name {text!r} has no port; ThingPark needs host:port, e.g. [2001:db8::1]:8883."
            )
        port_text = rest[1:]
    else:
        host, separator, port_text = text.rpartition(":")
        if not separator:
            raise ProfileError(f"The host name {text!r} has no port; ThingPark needs host:port, {example}.")
        if ":" in host:
            raise ProfileError(f"Put an IPv6 address in brackets, as [2001:db8::1]:8883, not {text!r}.")
    if not host:
        raise ProfileError(f"The host name {text!r} has a port but no host; write host:port, {example}.")
    if any(c.isspace() or c in "/@?#[]" for c in host):
        raise ProfileError(f"The host {host!r} is not a host name or IP address; write host:port, {example}.")
    if not (port_text.isascii() and port_text.isdigit()) or not 1 <= int(port_text) <= 65535:
        raise ProfileError(f"The port {port_text!r} in {text!r} is not valid; use a number from 1 to 65535.")
    return host, int(port_text)


# ----- parsing --------------------------------------------------------------------------------


def _clip(value, limit: int = 80) -> str:
    """A value shown in an error sentence, cut short: a message may carry megabytes."""
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[:limit] + "…"


def _quoted(value, limit: int = 40) -> str:
    """A JSON value as Python shows it ('abc', 12, None), cut short and on one line."""
    if isinstance(value, str):
        return repr(value) if len(value) <= limit else repr(value[:limit]) + "…"
    return _clip(repr(value), limit)


def _object(value, where: str) -> dict:
    if not isinstance(value, dict):
        raise DecodeError(f"{where} is {json_type(value)}, not the JSON object ThingPark sends.")
    return value


def _dev_eui(body: dict, where: str) -> str:
    value = body.get("DevEUI")
    if value is None:
        raise DecodeError(f"{where} has no DevEUI; every ThingPark message names its device.")
    if not isinstance(value, str) or len(value) != 16 or not is_hex(value):
        raise DecodeError(f"{where}.DevEUI is {_quoted(value)}; ThingPark sends the DevEUI as 16 hex digits.")
    return value.upper()


def _frame_hex(value, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) % 2 or (value and not is_hex(value)):
        raise DecodeError(f"{where} is {_quoted(value)}, not an even number of hex digits.")
    return value.lower()


def _hex_id(value) -> str | None:
    """An optional hex identifier (DevAddr): uppercase, or None if absent or not hex."""
    return value.upper() if isinstance(value, str) and is_hex(value) else None


def _as_int(value, where: str, limit: tuple[int, int, str] | None = None) -> int | None:
    """A number field (JSON int or text such as "1174"); None when absent or not a number at all;
    DecodeError naming `where` when the table could not hold it (int_field)."""
    return int_field(value, where, limit)


def _as_float(value, where: str) -> float | None:
    """A real-number field (JSON number or text such as "-80.000000"); None when absent or not a
    number ('nan' and 'inf' are words here); DecodeError for a number beyond a float (float_field)."""
    if type(value) is float:
        return value  # orjson never yields NaN or infinity, nor an OutOfRange (load_json_object refuses it)
    return float_field(value, where)


def _text(value) -> str | None:
    return value if isinstance(value, str) and value else None


def _received_at(body: dict) -> str:
    time = body.get("Time")
    return time if isinstance(time, str) and time else utc_now_iso()


def _frequency_hz(value, where: str) -> int | None:
    megahertz = _as_float(value, where)
    if megahertz is None or not 0 < megahertz < 100_000:  # MHz; anything else is not a radio channel
        return None
    # round(), not int(): 868.1 MHz * 1e6 can land a hair below 868100000.
    return round(megahertz * 1_000_000)


def _correlation_ids(body: dict) -> list[str]:
    value = body.get("CorrelationID")
    if isinstance(value, str) and value:
        return [value]
    if isinstance(value, int) and not isinstance(value, bool):
        return [str(value)]
    return []


def _best_gateway(body: dict, where: str) -> tuple[str | None, float | None, float | None, int | None]:
    """(Lrrid, RSSI, SNR, gateway count) of the best gateway (ThingPark's Lrrid: best SNR)."""
    gateway_id = _text(body.get("Lrrid"))
    rssi = _as_float(body.get("LrrRSSI"), f"{where}.LrrRSSI")
    snr = _as_float(body.get("LrrSNR"), f"{where}.LrrSNR")
    gateways = _as_int(body.get("DevLrrCnt"), f"{where}.DevLrrCnt")
    lrrs = body.get("Lrrs")
    lrr_list = lrrs.get("Lrr") if isinstance(lrrs, dict) else None
    if not isinstance(lrr_list, list):
        return gateway_id, rssi, snr, gateways
    if gateways is None:
        gateways = len(lrr_list)
    if rssi is None or snr is None:
        # Join requests carry the best gateway's levels only inside Lrrs.Lrr[].
        entries = [(i, entry) for i, entry in enumerate(lrr_list) if isinstance(entry, dict)]
        best = next((pair for pair in entries if gateway_id and pair[1].get("Lrrid") == gateway_id), None)
        if best is None and entries:
            best = max(entries, key=lambda pair: _snr_or_worst(pair[1], f"{where}.Lrrs.Lrr[{pair[0]}]"))
        if best is not None:
            i, lrr = best
            gateway_id = gateway_id or _text(lrr.get("Lrrid"))
            rssi = rssi if rssi is not None else _as_float(lrr.get("LrrRSSI"), f"{where}.Lrrs.Lrr[{i}].LrrRSSI")
            snr = snr if snr is not None else _as_float(lrr.get("LrrSNR"), f"{where}.Lrrs.Lrr[{i}].LrrSNR")
    return gateway_id, rssi, snr, gateways


def _snr_or_worst(lrr: dict, where: str) -> float:
    snr = _as_float(lrr.get("LrrSNR"), f"{where}.LrrSNR")
    return -math.inf if snr is None else snr


def _decoding_error(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, dict):
        code, message = _text(value.get("code")), _text(value.get("message"))
        text = ": ".join(_clip(part, 300) for part in (code, message) if part)
        return f"The ThingPark driver could not decode the payload ({text})." if text else None
    return f"The ThingPark driver could not decode the payload ({_clip(value, 300)})."


def parse_thingpark_uplink(body: dict, topic: str, where: str = "DevEUI_uplink") -> Event:
    """A DevEUI_uplink body (or the legacy form without the root): uplink or join request."""
    f_port = _as_int(body.get("FPort"), f"{where}.FPort", F_PORT)
    raw_join_request = body.get("rawJoinRequest")
    if raw_join_request is not None and f_port is None:
        kind = "join"
        payload_hex = _frame_hex(raw_join_request, f"{where}.rawJoinRequest")
    else:
        kind = "uplink"
        payload_hex = _frame_hex(body.get("payload_hex"), f"{where}.payload_hex")
    spreading_factor = body.get("SpFact")
    if spreading_factor is None:
        spreading_factor = body.get("Spfact")  # the spelling of join requests
    gateway_id, rssi, snr, gateways = _best_gateway(body, where)
    return Event(
        platform=PLATFORM_NAME,
        kind=kind,
        received_at=_received_at(body),
        dev_eui=_dev_eui(body, where),
        dev_addr=_hex_id(body.get("DevAddr")),
        f_port=f_port,
        f_cnt=_as_int(body.get("FCntUp"), f"{where}.FCntUp", F_CNT),
        payload_hex=payload_hex,
        decoded=body.get("payload"),
        rssi=rssi,
        snr=snr,
        gateway_id=gateway_id,
        gateways=gateways,
        spreading_factor=_as_int(spreading_factor, f"{where}.SpFact"),
        frequency_hz=_frequency_hz(body.get("Frequency"), f"{where}.Frequency"),
        error=_decoding_error(body.get("payloadDecodedError")),
        topic=topic,
    )


# DeliveryFailedCause codes from ThingPark's "Downlink Sent Message" documentation; B0 names its slot.
DELIVERY_FAILED_CAUSES = {
    "A0": "radio stopped",
    "A1": "downlink radio stopped",
    "A2": "ping slot not available",
    "A3": "radio busy",
    "A4": "listen before talk",
    "A5": "radio board error",
    "C0": "LRC selected RX2",
    "D0": "duty cycle constraint detected by the LRR",
    "DA": "duty cycle constraint detected by the LRC",
    "DB": "max dwell time constraint detected by the LRC",
    "DC": "no GPS-synchronized LRR detected by the LRC",
    "DD": "no LRR connected detected by the LRC",
    "DE": "duty cycle not allowed by the peering operator",
    "DF": "wrong NetID",
    "E0": "max delay for Class C (60 seconds)",
}
DELIVERY_SLOTS = (
    ("DeliveryFailedCause1", "RX1"),
    ("DeliveryFailedCause2", "RX2"),
    ("DeliveryFailedCause3", "ping slot"),
)


def _delivery_failure(body: dict, status: int) -> str:
    causes = []
    for key, slot in DELIVERY_SLOTS:
        code = body.get(key)
        if isinstance(code, int) and not isinstance(code, bool):
            code = f"{code:02d}"
        if not isinstance(code, str) or code in ("", "00"):
            continue
        meaning = f"too late for {slot}" if code.upper() == "B0" else DELIVERY_FAILED_CAUSES.get(code.upper())
        causes.append(f"{slot} {code} ({meaning})" if meaning else f"{slot} {_clip(code, 20)}")
    reason = f": {'; '.join(causes)}" if causes else ""
    return f"ThingPark did not send the downlink over the air (DeliveryStatus {status}){reason}."


def parse_thingpark_downlink_sent(body: dict, topic: str) -> Event:
    """DevEUI_downlink_Sent: DeliveryStatus 1 = sent over the air, 0 = not sent (failed)."""
    where = "DevEUI_downlink_Sent"
    status = _as_int(body.get("DeliveryStatus"), f"{where}.DeliveryStatus")
    failed = status == 0
    gateway_id = _text(body.get("Lrrid"))
    spreading_factor = body.get("SpFact")
    if spreading_factor is None:
        spreading_factor = body.get("Spfact")
    return Event(
        platform=PLATFORM_NAME,
        kind="downlink_failed" if failed else "downlink_sent",
        received_at=_received_at(body),
        dev_eui=_dev_eui(body, where),
        dev_addr=_hex_id(body.get("DevAddr")),
        f_port=_as_int(body.get("FPort"), f"{where}.FPort", F_PORT),
        f_cnt=_as_int(body.get("FCntDn"), f"{where}.FCntDn", F_CNT),
        gateway_id=gateway_id,
        spreading_factor=_as_int(spreading_factor, f"{where}.SpFact"),
        frequency_hz=_frequency_hz(body.get("Frequency"), f"{where}.Frequency"),
        correlation_ids=_correlation_ids(body),
        error=_delivery_failure(body, status) if failed else None,
        topic=topic,
    )


def parse_thingpark_downlink_rejected(body: dict, topic: str) -> Event:
    cause = body.get("DownlinkRejectionCause")
    if isinstance(cause, str) and cause.strip():
        error = f"ThingPark rejected the downlink: {_clip(cause.strip().rstrip('.'), 300)}."
    else:
        status = _as_int(body.get("DeliveryStatus"), "DevEUI_downlink_Rejected.DeliveryStatus")
        error = "ThingPark rejected the downlink" + (f" (DeliveryStatus {status})." if status is not None else ".")
    return Event(
        platform=PLATFORM_NAME,
        kind="downlink_failed",
        received_at=_received_at(body),
        dev_eui=_dev_eui(body, "DevEUI_downlink_Rejected"),
        f_port=_as_int(body.get("FPort"), "DevEUI_downlink_Rejected.FPort", F_PORT),
        correlation_ids=_correlation_ids(body),
        error=error,
        topic=topic,
    )


def parse_thingpark_downlink(body: dict, topic: str) -> Event:
    """A DevEUI_downlink seen on the broker: a request on its way to ThingPark, which has not queued it yet.

    Kind `event`, as TTS's down/push bodies: only ThingPark's Sent/Rejected reports say what became of it.
    """
    payload_hex = _frame_hex(body.get("payload_hex"), "DevEUI_downlink.payload_hex")
    return Event(
        platform=PLATFORM_NAME,
        kind="event",
        received_at=_received_at(body),
        dev_eui=_dev_eui(body, "DevEUI_downlink"),
        f_port=_as_int(body.get("FPort"), "DevEUI_downlink.FPort", F_PORT),
        f_cnt=_as_int(body.get("FCntDn"), "DevEUI_downlink.FCntDn", F_CNT),
        payload_hex=payload_hex,
        decoded=body.get("payload"),
        correlation_ids=_correlation_ids(body),
        topic=topic,
    )


LOCATION_KEYS = (
    ("latitude", "DevLAT"),
    ("longitude", "DevLON"),
    ("altitude", "DevAlt"),
    ("accuracy", "DevLocRadius"),
    ("altitude_accuracy", "DevAltRadius"),
)


def parse_thingpark_location(body: dict, topic: str) -> Event:
    location: dict = {}
    for name, key in LOCATION_KEYS:
        value = _as_float(body.get(key), f"DevEUI_location.{key}")
        if value is not None:
            location[name] = value
    located_at = _text(body.get("DevLocTime"))
    if located_at:
        location["time"] = located_at
    algorithm = _as_int(body.get("NwGeolocAlgoUsed"), "DevEUI_location.NwGeolocAlgoUsed")
    if algorithm is not None:
        location["algorithm"] = algorithm
    return Event(
        platform=PLATFORM_NAME,
        kind="location",
        received_at=_received_at(body),
        dev_eui=_dev_eui(body, "DevEUI_location"),
        dev_addr=_hex_id(body.get("DevAddr")),
        f_cnt=_as_int(body.get("DevUlFCntUpUsed"), "DevEUI_location.DevUlFCntUpUsed", F_CNT),
        decoded=location,
        topic=topic,
    )


def parse_thingpark_notification(body: dict, topic: str) -> Event:
    """DevEUI_notification (reset, join, devstatusans) reports the device's state: kind `status`."""
    notification_type = _text(body.get("Type"))
    var1, var2 = body.get("Var1"), body.get("Var2")
    details: dict = {"type": notification_type}
    if notification_type == "devstatusans":
        details["battery"] = _as_int(var1, "DevEUI_notification.Var1")
        details["margin"] = _as_int(var2, "DevEUI_notification.Var2")
    elif notification_type == "reset":
        details["reset"] = _text(var1)
    elif notification_type == "join":
        details["app_s_key_encrypted"] = _text(var1)  # AppSKey encrypted with the AS transport key
    else:
        details["var1"], details["var2"] = var1, var2
    return Event(
        platform=PLATFORM_NAME,
        kind="status",
        received_at=_received_at(body),
        dev_eui=_dev_eui(body, "DevEUI_notification"),
        dev_addr=_hex_id(body.get("DevAddr")),
        decoded={key: value for key, value in details.items() if value not in (None, "")},
        topic=topic,
    )


def parse_thingpark_other_report(root: str, body: dict, topic: str) -> Event:
    """A DevEUI_* report this console has no parser for (multicast summary ...): shown as it is."""
    dev_eui = body.get("DevEUI")
    return Event(
        platform=PLATFORM_NAME,
        kind="event",
        received_at=_received_at(body),
        dev_eui=dev_eui.upper() if isinstance(dev_eui, str) and len(dev_eui) == 16 and is_hex(dev_eui) else None,
        decoded={root: body},
        topic=topic,
    )


REPORT_PARSERS: dict[str, Callable[[dict, str], Event]] = {
    "DevEUI_downlink_Sent": parse_thingpark_downlink_sent,
    "DevEUI_downlink_Rejected": parse_thingpark_downlink_rejected,
    "DevEUI_location": parse_thingpark_location,
    "DevEUI_notification": parse_thingpark_notification,
    "DevEUI_downlink": parse_thingpark_downlink,
}
ROOTS = ("DevEUI_uplink", *REPORT_PARSERS)


# ----- the platform ---------------------------------------------------------------------------


def _console_option(name: str) -> ProfileField:
    return next(f for f in broker_fields() if f.name == name)


class ThingParkPlatform(Platform):
    name = PLATFORM_NAME
    label = "Actility ThingPark"
    description = (
        "ThingPark X IoT Flow's MQTT connector publishes to your own broker; "
        "the console subscribes to the uplink topic pattern and publishes DevEUI_downlink messages."
    )
    fields = (
        ProfileField(
            "host_name",
            "Host name",
            required=True,
            placeholder="broker.example.com:8883",
            help="hostName: the host name or IP address and port of your MQTT broker, as host:port.",
        ),
        ProfileField(
            "protocol",
            "Protocol",
            "choice",
            default="SSL",
            choices=("SSL", "WSS", "TCP"),
            choice_labels=(
                "SSL: MQTT over TLS (recommended)",
                "WSS: MQTT over secure websockets",
                "TCP: MQTT without encryption",
            ),
            help="protocol of the ThingPark connection: SSL (MQTT over TLS, recommended), WSS (MQTT over secure "
            "websockets) or TCP (no encryption; no certificates then).",
        ),
        ProfileField("username", "Username", help="Login to access your MQTT broker."),
        ProfileField("password", "Password", "secret", help="Password to access your MQTT broker."),
        ProfileField(
            "uplink_topic_pattern",
            "Uplink topic pattern",
            required=True,
            default=DEFAULT_UPLINK_PATTERN,
            placeholder=DEFAULT_UPLINK_PATTERN,
            help="uplinkTopicPattern: where ThingPark publishes uplinks and reports. Placeholders such as "
            "{DevEUI} are filled in by ThingPark; the console subscribes with each of their levels as +.",
        ),
        ProfileField(
            "downlink_topic_pattern",
            "Downlink topic pattern",
            required=True,
            default=DEFAULT_DOWNLINK_PATTERN,
            placeholder=DEFAULT_DOWNLINK_PATTERN,
            help="downlinkTopicPattern: where ThingPark takes downlinks from; the console fills {DevEUI} "
            "with the device's DevEUI (16 hex digits, uppercase).",
        ),
        ProfileField(
            "ca_file",
            "Trusted CA certificate",
            "file",
            help="trustedCaCertficate: the CA certificate (X.509 .crt) that signed your broker's certificate. "
            "Empty: the operating system's trusted certificates.",
        ),
        ProfileField(
            "cert_file",
            "Certificate",
            "file",
            help="certificate: the client certificate (X.509 .crt), only for login/password plus client "
            "certificate authentication; SSL and WSS only.",
        ),
        ProfileField(
            "key_file",
            "Private key",
            "file",
            help="privateKey: ThingPark accepts the client key in PKCS#8 format only (-----BEGIN PRIVATE KEY-----). "
            "The console also loads PKCS#1 and encrypted keys, so a key that works here may still need "
            "converting to PKCS#8 for ThingPark.",
        ),
        ProfileField(
            "connection_timeout_ms",
            "Connection timeout (ms)",
            "int",
            default=5000,
            minimum=1,
            maximum=10000,
            help="connectionTimeout: max time for establishing a connection (default 5000 ms, max 10000 ms). "
            "The console uses it as its own connect timeout.",
        ),
        ProfileField(
            "action_timeout_ms",
            "Action timeout (ms)",
            "int",
            default=1000,
            minimum=1,
            maximum=10000,
            help="actionTimeout: ThingPark's max time for each action such as publishing or subscribing "
            "(default 1000 ms, max 10000 ms). Kept with the profile; the console does not apply it.",
        ),
        ProfileField(
            "qos",
            "QoS",
            "int",
            default=1,
            minimum=0,
            maximum=2,
            help="QoS of the console's subscription and of the downlinks it publishes. "
            "ThingPark's own QoS is not documented.",
        ),
        *(
            _console_option(name)
            for name in (
                "key_password",
                "verify_certificate",
                "allow_expired",
                "client_id",
                "mqtt_version",
                "keepalive",
                "clean_session",
            )
        ),
        ProfileField(
            "websocket_path",
            "Websocket path",
            default="/mqtt",
            advanced=True,
            help="For WSS: the path your broker serves MQTT on. ThingPark's hostName has no path; /mqtt is the "
            "most common.",
        ),
        ProfileField(
            "subscribe_downlinks",
            "Also show downlinks sent to ThingPark",
            "bool",
            default=False,
            advanced=True,
            help="Subscribes to the downlink topic pattern too, so every DevEUI_downlink published on the broker "
            "(this console's included) appears as an event row.",
        ),
    )
    fields = assign_pages(
        fields,
        {
            "broker": (
                "host_name",
                "protocol",
                "username",
                "password",
                "connection_timeout_ms",
                "action_timeout_ms",
                "websocket_path",
                "client_id",
                "mqtt_version",
                "keepalive",
                "clean_session",
            ),
            "topics": ("uplink_topic_pattern", "downlink_topic_pattern", "qos", "subscribe_downlinks"),
            "tls": ("ca_file", "cert_file", "key_file", "key_password", "verify_certificate", "allow_expired"),
        },
    )
    topic_pattern_field = "downlink_topic_pattern"

    def __init__(self, uplink_pattern: TopicPattern | None = None) -> None:
        self.uplink_pattern = uplink_pattern

    def parser_for(self, profile: dict) -> ThingParkPlatform:
        """A parser that knows the profile's uplink pattern (for the decoded-only form)."""
        pattern = self.field("uplink_topic_pattern").check(profile.get("uplink_topic_pattern"))
        return ThingParkPlatform(compile_topic_pattern(pattern, "uplink topic pattern"))

    def validate(self, profile: dict) -> dict:
        protocol = profile.get("protocol")
        if isinstance(protocol, str):
            profile = {**profile, "protocol": protocol.strip().upper()}
        return super().validate(profile)

    def connection(self, profile: dict) -> ConnectionConfig:
        profile = self.validate(profile)
        host, port = split_host_name(profile["host_name"])
        uplink = compile_topic_pattern(profile["uplink_topic_pattern"], "uplink topic pattern")
        downlink = compile_topic_pattern(profile["downlink_topic_pattern"], "downlink topic pattern")
        qos = profile["qos"]
        subscriptions = [Subscription(uplink.topic_filter, qos)]
        if profile["subscribe_downlinks"] and downlink.topic_filter != uplink.topic_filter:
            subscriptions.append(Subscription(downlink.topic_filter, qos))
        url_host = f"[{host}]" if ":" in host else host
        return config_from_profile(
            profile,
            subscriptions,
            url=f"{PROTOCOL_SCHEMES[profile['protocol']]}://{url_host}:{port}",
            connect_timeout=profile["connection_timeout_ms"] / 1000,
            websocket_path=profile["websocket_path"] or "/mqtt",
        )

    def profile_from_connection_config(self, doc: dict, pem_dir: str | os.PathLike | None = None) -> dict:
        """A profile from the MQTT connection's REST body (POST /connections) or its `configuration`.

        The certificate, private key and trusted CA arrive as PEM text; they are saved in `pem_dir`
        (the key readable by the owner only), because the console reads them from files. The
        password comes back in the profile like every other value: the caller keeps it out of
        anything saved (app.profiles puts it in the keyring)."""
        if not isinstance(doc, dict):
            raise ProfileError("The ThingPark connection must be a JSON object.")
        connector = doc.get("connectorId")
        if connector is not None and (not isinstance(connector, str) or "mqtt" not in connector.lower()):
            raise ProfileError(
                f"This is a connection of the {_clip(connector, 40)} connector; the console imports MQTT "
                "connections (connectorId actility-mqtt-iot)."
            )
        config = doc.get("configuration", doc)
        if not isinstance(config, dict):
            raise ProfileError("The connection's 'configuration' must be a JSON object.")
        if not config.get("hostName"):
            raise ProfileError("The ThingPark connection has no hostName; it must be host:port.")
        profile = self.defaults()
        for key, name in _CONNECTION_KEYS.items():
            value = config.get(key)
            if value is None or value == "":
                continue
            try:
                if key == "hostName":
                    split_host_name(value)
                if key in ("uplinkTopicPattern", "downlinkTopicPattern"):
                    compile_topic_pattern(value, "uplink topic pattern" if key[0] == "u" else "downlink topic pattern")
                if key == "protocol" and isinstance(value, str):
                    value = value.strip().upper()
                profile[name] = self.field(name).check(value)
            except ProfileError as exc:
                raise ProfileError(f"In the ThingPark connection, {key} is refused: {_lower_first(exc)}") from None
        try:
            profile.update(_save_connection_pem_files(config, pem_dir))
            return self.validate(profile)
        except ProfileError as exc:
            raise ProfileError(f"In the ThingPark connection, {_lower_first(exc)}") from None

    def parse(self, topic: str, payload: bytes, properties: dict | None = None) -> list[Event]:
        events = self._parse(topic, payload)
        for event in events:
            # ThingPark names a device by its DevEUI alone: that is its id in the table and devices list.
            if event.device_id is None:
                event.device_id = event.dev_eui
        return events

    def _parse(self, topic: str, payload: bytes) -> list[Event]:
        doc = load_json_object(payload, MESSAGE_NAME)
        body = doc.get("DevEUI_uplink", _MISSING)
        if body is not _MISSING:
            return [parse_thingpark_uplink(_object(body, "DevEUI_uplink"), topic)]
        for root, parse_report in REPORT_PARSERS.items():
            body = doc.get(root, _MISSING)
            if body is not _MISSING:
                return [parse_report(_object(body, root), topic)]
        if "DevEUI" in doc and "Time" in doc:  # sendMetadata: the uplink without its DevEUI_uplink root
            return [parse_thingpark_uplink(doc, topic, "The uplink")]
        if len(doc) == 1:
            root = next(iter(doc))
            if root.startswith("DevEUI_"):
                return [parse_thingpark_other_report(root, _object(doc[root], root), topic)]
        return [self.parse_decoded_only(doc, topic)]

    def parse_decoded_only(self, decoded: dict, topic: str) -> Event:
        """sendRawDecodedFormat: the driver's output alone; the device is known only from the topic."""
        dev_eui = None
        if self.uplink_pattern is not None:
            values = self.uplink_pattern.extract(topic)
            if values is None:
                raise DecodeError(
                    f"The message on {_quoted(topic, 120)} has none of ThingPark's roots ({', '.join(ROOTS)}) "
                    f"and its topic does not match the uplink pattern {self.uplink_pattern.text!r}, so it is not "
                    "a decoded-only uplink either."
                )
            topic_dev_eui = values.get("DevEUI", "")
            if len(topic_dev_eui) == 16 and is_hex(topic_dev_eui):
                dev_eui = topic_dev_eui.upper()
        return Event(
            platform=PLATFORM_NAME,
            kind="uplink",
            received_at=utc_now_iso(),
            dev_eui=dev_eui,
            decoded=decoded,
            topic=topic,
        )

    def encode_downlink(self, profile: dict, request: DownlinkRequest) -> OutgoingMessage:
        try:
            pattern_text = self.field("downlink_topic_pattern").check(profile.get("downlink_topic_pattern"))
            pattern = compile_topic_pattern(pattern_text, "downlink topic pattern")
            qos = self.field("qos").check(profile.get("qos"))
        except ProfileError as exc:
            raise EncodeError(str(exc)) from None
        dev_eui = downlink_dev_eui(request)
        message = {"Time": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"), "DevEUI": dev_eui}
        f_port = request.f_port
        if isinstance(f_port, str) and f_port.strip().isdigit():
            f_port = int(f_port)
        if f_port is None:
            raise EncodeError(f"Enter the FPort (1 to {MAX_DOWNLINK_PORT}) for the downlink.")
        if isinstance(f_port, bool) or not isinstance(f_port, int) or not 1 <= f_port <= MAX_DOWNLINK_PORT:
            raise EncodeError(f"FPort {f_port!r} is out of range; ThingPark accepts 1 to {MAX_DOWNLINK_PORT}.")
        message["FPort"] = f_port
        if request.payload is not None and request.decoded is not None:
            raise EncodeError(
                "Give either the payload bytes or a decoded payload, not both: ThingPark takes payload_hex or "
                "payload, never both."
            )
        if request.decoded is not None:
            message["payload"] = request.decoded
        elif request.payload:
            if len(request.payload) > MAX_DOWNLINK_PAYLOAD:
                raise EncodeError(
                    f"The payload is {len(request.payload)} bytes; a LoRaWAN downlink carries at most "
                    f"{MAX_DOWNLINK_PAYLOAD} bytes, and fewer at low data rates."
                )
            message["payload_hex"] = bytes(request.payload).hex()
        else:
            raise EncodeError("Enter a payload: bytes (sent as payload_hex) or a decoded object for the driver.")
        message["Confirmed"] = 1 if request.confirmed else 0
        # TTS's "replace the queue" is ThingPark's FlushDownlinkQueue: the same request.
        message["FlushDownlinkQueue"] = 1 if request.flush_queue or request.replace else 0
        if request.validity_time:
            message["ValidityTime"] = downlink_validity_time(request.validity_time)
        message["CorrelationID"] = downlink_correlation_id(request)
        try:
            body = orjson.dumps({"DevEUI_downlink": message})
        except TypeError as exc:
            raise EncodeError(f"The decoded payload cannot be written as JSON ({exc}).") from None
        return OutgoingMessage(pattern.fill({"DevEUI": dev_eui}), body, qos)


def downlink_validity_time(text: str) -> str:
    """ValidityTime: until when ThingPark may still send the downlink, as ISO 8601 with the offset
    (the documented form, e.g. 2019-07-10T16:38:46.882+02:00)."""
    try:
        moment = dt.datetime.fromisoformat(str(text).strip().replace("Z", "+00:00"))
    except ValueError:
        raise EncodeError(
            f"ValidityTime {text!r} is not an ISO 8601 time; write it like 2026-12-01T18:00:00+01:00."
        ) from None
    if moment.tzinfo is None:
        raise EncodeError(
            f"ValidityTime {text!r} has no time zone; add its offset (e.g. +01:00) or Z for UTC, as ThingPark reads it."
        )
    return moment.isoformat(timespec="milliseconds")


def downlink_dev_eui(request: DownlinkRequest) -> str:
    """The request's DevEUI (or a device id that is one) as 16 uppercase hex digits."""
    value = request.dev_eui or request.device_id
    if not value or not str(value).strip():
        raise EncodeError("Enter the device's DevEUI (16 hex digits); ThingPark addresses downlinks by DevEUI.")
    cleaned = "".join(c for c in str(value) if c not in " :-")
    if len(cleaned) != 16 or not is_hex(cleaned):
        raise EncodeError(f"The DevEUI {value!r} is not valid; it must be 16 hex digits, e.g. 0018B20000000B20.")
    return cleaned.upper()


def downlink_correlation_id(request: DownlinkRequest) -> str:
    """The given CorrelationID (64-bit hex), or a new random one so the Sent report can be matched."""
    if not request.correlation_ids:
        return secrets.token_hex(8).upper()
    if len(request.correlation_ids) > 1:
        raise EncodeError("ThingPark takes a single CorrelationID per downlink; give one.")
    value = str(request.correlation_ids[0]).strip()
    if len(value) != 16 or not is_hex(value):
        raise EncodeError(f"The CorrelationID {value!r} must be 16 hex digits (a 64-bit number in hex).")
    return value.upper()


# ----- importing a connection body (POST /connections) ------------------------------------------

_CONNECTION_KEYS = {
    "hostName": "host_name",
    "protocol": "protocol",
    "username": "username",
    "password": "password",
    "uplinkTopicPattern": "uplink_topic_pattern",
    "downlinkTopicPattern": "downlink_topic_pattern",
    "connectionTimeout": "connection_timeout_ms",
    "actionTimeout": "action_timeout_ms",
}
# (keys, profile field, file name); ThingPark spells the CA key trustedCaCertficate.
_CONNECTION_PEM_KEYS = (
    (("trustedCaCertficate", "trustedCaCertificate"), "ca_file", "thingpark-ca.pem"),
    (("certificate",), "cert_file", "thingpark-client-cert.pem"),
    (("privateKey",), "key_file", "thingpark-client-key.pem"),
)


def _save_connection_pem_files(config: dict, pem_dir) -> dict:
    return save_pem_texts(
        config,
        _CONNECTION_PEM_KEYS,
        pem_dir,
        not_pem="{key} is not PEM text (-----BEGIN …).",
        no_folder="the connection carries {key} as text; choose a folder to save it in, or save it to a file "
        "yourself and choose that file.",
    )


def _lower_first(exc: Exception) -> str:
    text = str(exc)
    return text[:1].lower() + text[1:]


PLATFORM = ThingParkPlatform()

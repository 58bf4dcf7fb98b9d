"""The Things Stack v3 (The Things Network, The Things Stack Cloud/Enterprise/Open Source).

The console is a client of the Application Server's MQTT server: it subscribes to
`v3/{uid}/devices/{device}/{up,join,down/...}` and publishes `{"downlinks": [...]}` to
`.../down/push` or `.../down/replace`, where uid is `{application id}@{tenant id}` (plain
`{application id}` on Open Source). The server speaks MQTT 3.1.1 with QoS 0 only.

Message bodies are TTS's JSON rendering of its protobuf messages: fields that are zero, empty
or false are left out, 64-bit numbers (the frequency) are strings and bytes are base64.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import re

import orjson

from app.events import Event, utc_now_iso
from app.mqtt.config import ConnectionConfig, MqttVersion, Subscription
from app.platforms.base import (
    F_CNT,
    F_PORT,
    INT64_MAX,
    NONE_INT,
    U32_MAX,
    DecodeError,
    DownlinkRequest,
    EncodeError,
    OutgoingMessage,
    OutOfRange,
    Platform,
    ProfileError,
    ProfileField,
    assign_pages,
    broker_fields,
    config_from_profile,
    first_out_of_range,
    float_field,
    int_field,
    load_json_object,
    to_int,
    upper_hex,
)

# Upstream topic suffixes after v3/{uid}/devices/{device}/, and the body key each one carries.
# down/invalidated is not in the MQTT page of the docs but is in the Application Server's topic layout.
UPSTREAM_BODY_KEYS = {
    "up": "uplink_message",
    "join": "join_accept",
    "down/queued": "downlink_queued",
    "down/sent": "downlink_sent",
    "down/ack": "downlink_ack",
    "down/nack": "downlink_nack",
    "down/failed": "downlink_failed",
    "down/invalidated": "downlink_queue_invalidated",
    "service/data": "service_data",
    "location/solved": "location_solved",
}
UPSTREAM_TOPICS = tuple(UPSTREAM_BODY_KEYS)
# What a client publishes; parsed too, so a capture or a bridged broker shows outgoing downlinks.
DOWNSTREAM_BODY_KEYS = {"down/push": "downlinks", "down/replace": "downlinks"}
_BODY_KEY_BY_SUFFIX = {**UPSTREAM_BODY_KEYS, **DOWNSTREAM_BODY_KEYS}
_BODY_KEYS = tuple(dict.fromkeys(_BODY_KEY_BY_SUFFIX.values()))

DOWNLINK_PRIORITIES = ("LOWEST", "LOW", "BELOW_NORMAL", "NORMAL", "ABOVE_NORMAL", "HIGH", "HIGHEST")
MIN_DOWNLINK_F_PORT = 1  # FPort 0 carries MAC commands only; TTS schedules 1..233
MAX_DOWNLINK_F_PORT = 233  # 224 is the LoRaWAN test port, 234..255 are reserved
# LoRaWAN Regional Parameters (RP002): the largest FRMPayload any region allows is N = 242 bytes,
# at its fastest data rates (e.g. EU868 DR5..DR7, US915 DR8..DR13), with no MAC commands in FOpts.
# Slower data rates allow less (51 bytes at SF12 in EU868); TTS then reports down/failed.
MAX_DOWNLINK_PAYLOAD = 242
MAX_CORRELATION_ID_LENGTH = 100  # the Application Server's validation rule for each correlation id

# TTS identifiers (application, device): lowercase letters, digits and single dashes, 3..36 characters.
_TTS_ID = re.compile(r"[a-z0-9](?:-?[a-z0-9]){2,35}")
_TOPIC_BREAKING = frozenset("/+#@ \t\r\n\x00")


def tts_username(app_id: str, tenant_id: str | None) -> str:
    """The MQTT username, which is also the uid in every topic."""
    return f"{app_id}@{tenant_id}" if tenant_id else app_id


def priority_name(value) -> str:
    """'high', 'Below normal', 'BELOW-NORMAL' -> the spelling of TTS's enum names."""
    return str(value).strip().upper().replace(" ", "_").replace("-", "_")


def normalize_priority(value) -> str:
    """The TTS priority a user means; EncodeError if it is none of them."""
    name = priority_name(value)
    if name not in DOWNLINK_PRIORITIES:
        raise EncodeError(f"Priority {value!r} is not one of {', '.join(DOWNLINK_PRIORITIES)}.")
    return name


# ----- where The Things Stack runs ----------------------------------------------------------

# The Things Network's public clusters, as the Console's cluster picker names them.
TTN_CLUSTERS = {"eu1": "Europe", "nam1": "North America", "au1": "Australia"}
TTN_TENANT = "ttn"  # The Things Network's tenant ID
# The Things Stack Cloud: one address per tenant and region, <tenant>.<region>.cloud.thethings.industries.
CLOUD_REGIONS = {"eu1": "Europe", "nam1": "North America", "au1": "Australia"}
TTN_DOMAIN = "cloud.thethings.network"
CLOUD_DOMAIN = "cloud.thethings.industries"
TLS_PORT, PLAIN_PORT = 8883, 1883


def ttn_host(cluster: str) -> str:
    """eu1 -> eu1.cloud.thethings.network."""
    return f"{cluster}.{TTN_DOMAIN}"


def cloud_host(tenant: str, region: str) -> str:
    """(my-company, eu1) -> my-company.eu1.cloud.thethings.industries."""
    return f"{tenant}.{region}.{CLOUD_DOMAIN}"


def deployment_of(host: str) -> tuple[str, str | None, str | None]:
    """Which deployment a host is: ("eu1"|"nam1"|"au1", None, None) for a cluster of The Things
    Network, ("cloud", tenant, region) for The Things Stack Cloud, ("custom", None, None) else."""
    host = (host or "").strip().lower().rstrip(".")
    cluster, _, domain = host.partition(".")
    if domain == TTN_DOMAIN and cluster in TTN_CLUSTERS:
        return cluster, None, None
    tenant, _, rest = host.partition(".")
    region, _, domain = rest.partition(".")
    if domain == CLOUD_DOMAIN and tenant and region:
        return "cloud", tenant, region
    return "custom", None, None


def check_id(value: str, what: str) -> None:
    """ProfileError unless value is a valid The Things Stack ID (application or device)."""
    _check_tts_id(value, what)


def check_tenant(value: str) -> None:
    """ProfileError for a tenant ID that cannot be part of the username and topics."""
    if value and _TOPIC_BREAKING.intersection(value):
        raise ProfileError(f"Tenant ID {value!r} may not contain spaces, /, +, # or @.")


API_KEY_MISSING = "Enter the application's API key (NNSXS.…); The Things Stack does not accept connections without one."
ONLY_311_QOS0_WHY = (
    "The Things Stack's MQTT server speaks MQTT 3.1.1 with QoS 0 only, so this connection always uses "
    "MQTT 3.1.1 and QoS 0: there is nothing to choose. A message missed while the console is away is not "
    "delivered later."
)


# ----- profile -------------------------------------------------------------------------------


def _shared_field(name: str, **changes) -> ProfileField:
    shared = {f.name: f for f in broker_fields()}
    return dataclasses.replace(shared[name], **changes)


_FIELDS = (
    ProfileField(
        "url",
        "MQTT server",
        required=True,
        default="mqtts://eu1.cloud.thethings.network:8883",
        placeholder="mqtts://eu1.cloud.thethings.network:8883",
        help=(
            "The cluster address shown in the Console under Integrations → MQTT. Port 8883 is TLS (recommended), "
            "1883 is plain TCP and sends the API key unencrypted. The Things Network: eu1, nam1 or "
            "au1.cloud.thethings.network; The Things Stack Cloud: <tenant>.<region>.cloud.thethings.industries; "
            "Open Source: your server's address."
        ),
    ),
    ProfileField(
        "app",
        "Application ID",
        required=True,
        placeholder="my-app",
        help="The application's ID in The Things Stack: lowercase letters, digits and dashes, 3 to 36 characters.",
    ),
    ProfileField(
        "tenant",
        "Tenant ID",
        placeholder="ttn",
        help=(
            "ttn on The Things Network; your tenant ID on The Things Stack Cloud or Enterprise; empty on "
            "The Things Stack Open Source. The username becomes {application ID}@{tenant ID}."
        ),
    ),
    ProfileField(
        "password",
        "API key",
        "secret",
        placeholder="NNSXS.…",
        help=(
            "An application API key (NNSXS.…), created under Integrations → MQTT or API keys. It needs the right "
            "to read application traffic (uplinks and events) and, to send downlinks, to write downlink traffic."
        ),
    ),
    ProfileField(
        "device",
        "Device ID",
        placeholder="all devices",
        help="Receive the traffic of this end device only; empty receives every device of the application (+).",
    ),
    ProfileField(
        "upstream",
        "Upstream topics",
        default="all",
        help=f"all, or a comma-separated list of: {', '.join(UPSTREAM_TOPICS)}.",
    ),
    ProfileField(
        "downlink_priority",
        "Downlink priority",
        "choice",
        default="NORMAL",
        choices=DOWNLINK_PRIORITIES,
        help="Scheduling priority of the downlinks you send. A downlink that names none gets LOWEST from TTS.",
    ),
    _shared_field("client_id"),
    _shared_field("keepalive"),
    _shared_field(
        "ca_file",
        help=(
            "Empty: the operating system's trusted certificates (right for The Things Network and "
            "The Things Stack Cloud). A private deployment with its own CA: that CA's certificate."
        ),
    ),
    _shared_field("verify_certificate"),
    _shared_field("allow_expired"),
)
TTS_FIELDS = assign_pages(
    _FIELDS,
    {
        "server": ("url", "ca_file", "client_id", "keepalive", "verify_certificate", "allow_expired"),
        "application": ("app", "tenant", "password"),
        "traffic": ("device", "upstream", "downlink_priority"),
    },
)

_ONLY_311_QOS0 = "The Things Stack's MQTT server supports only MQTT 3.1.1 and QoS 0"


def _check_tts_id(value: str, what: str, error=ProfileError) -> None:
    if len(value) > 36 or not _TTS_ID.fullmatch(value):
        raise error(
            f"{what} {value!r} is not a valid The Things Stack ID: use lowercase letters, digits and single "
            "dashes, 3 to 36 characters."
        )


def upstream_topics(value) -> tuple[str, ...]:
    """The upstream topic suffixes a profile's `upstream` value names ('all' or a list)."""
    if value is None or str(value).strip().lower() in ("", "all", "*", "#"):
        return UPSTREAM_TOPICS
    names = tuple(dict.fromkeys(n.strip().strip("/") for n in str(value).replace("\n", ",").split(",") if n.strip()))
    unknown = [n for n in names if n not in UPSTREAM_BODY_KEYS]
    if unknown:
        raise ProfileError(f"Unknown upstream topic {unknown[0]!r}; use all or some of: {', '.join(UPSTREAM_TOPICS)}.")
    return names


# ----- parsing: the hot path -----------------------------------------------------------------


_JSON_TYPE_NAMES = {
    dict: "an object",
    list: "an array",
    str: "text",
    int: "a number",
    float: "a number",
    OutOfRange: "a number",
    bool: "a boolean",
}


def _describe(value) -> str:
    return _JSON_TYPE_NAMES.get(type(value), "null")


def _keys_text(doc: dict) -> str:
    keys = [repr(k[:40]) for k in list(doc)[:6]]
    return ", ".join(keys) + (", …" if len(doc) > 6 else "") if keys else "no keys"


def _expect_object(value, where: str) -> dict:
    if type(value) is not dict:
        raise DecodeError(f"{where} should be a JSON object but is {_describe(value)}.")
    return value


def _bytes_hex(value, where: str) -> str | None:
    """TTS's base64 bytes as lowercase hex; None when absent."""
    if value is None:
        return None
    if type(value) is not str:
        raise DecodeError(f"{where} should be base64 text but is {_describe(value)}.")
    try:
        return binascii.a2b_base64(value, strict_mode=True).hex()
    except (binascii.Error, ValueError):
        raise DecodeError(f"{where} is not valid base64: {value[:40]!r}.") from None


def _string_list(value) -> list[str]:
    if type(value) is not list:
        return []
    return [v for v in value if type(v) is str]


def _text(value) -> str | None:
    return value if type(value) is str and value else None


class _Ids:
    """Who a message is about: from end_device_ids, with the topic as the fallback."""

    __slots__ = ("application_id", "device_id", "dev_eui", "dev_addr")

    def __init__(self, doc: dict, topic_uid: str | None, topic_device: str | None) -> None:
        ids = doc.get("end_device_ids")
        if ids is None:
            ids = {}
        elif type(ids) is not dict:
            raise DecodeError(f"end_device_ids should be a JSON object but is {_describe(ids)}.")
        app_ids = ids.get("application_ids")
        app_id = app_ids.get("application_id") if type(app_ids) is dict else None
        if type(app_id) is not str:
            app_id = topic_uid.partition("@")[0] if topic_uid else None
        device_id = ids.get("device_id")
        self.application_id = app_id
        self.device_id = device_id if type(device_id) is str else topic_device
        self.dev_eui = upper_hex(ids.get("dev_eui"))
        self.dev_addr = upper_hex(ids.get("dev_addr"))


def _received_at(doc: dict, body: dict) -> str:
    # Newer servers stamp the envelope; older ones only the uplink/join inside it.
    received_at = doc.get("received_at")
    if type(received_at) is str:
        return received_at
    received_at = body.get("received_at")
    return received_at if type(received_at) is str else utc_now_iso()


def parse_tts_uplink(doc: dict, up: dict, topic: str, ids: _Ids) -> list[Event]:
    """An uplink_message: payload, counters, best gateway (highest RSSI) and radio settings."""
    frm_payload = up.get("frm_payload")
    payload_hex = _bytes_hex(frm_payload, "uplink_message.frm_payload") if frm_payload is not None else ""
    # The usual shapes inline (orjson's numbers are finite and within 64 bits); int_field and
    # float_field for the rest, which they read or refuse with the field named.
    f_port = up.get("f_port")
    if not (type(f_port) is int and 0 <= f_port <= 255):
        f_port = int_field(f_port, "uplink_message.f_port", F_PORT)
    f_cnt = up.get("f_cnt")
    if f_cnt is None:
        f_cnt = 0  # zero is left out: the first frame of a session
    elif not (type(f_cnt) is int and 0 <= f_cnt <= U32_MAX):
        f_cnt = int_field(f_cnt, "uplink_message.f_cnt", F_CNT)

    rssi = snr = gateway_id = None
    gateways = 0
    rx_metadata = up.get("rx_metadata")
    if type(rx_metadata) is list:
        best = best_index = None
        for i, md in enumerate(rx_metadata):
            if type(md) is not dict:
                continue
            gateways += 1
            md_rssi = md.get("rssi")
            key = "rssi"
            if md_rssi is None:
                md_rssi, key = md.get("channel_rssi"), "channel_rssi"
            if type(md_rssi) is not float:
                if type(md_rssi) is int:
                    md_rssi = float(md_rssi)
                elif md_rssi is not None:
                    md_rssi = float_field(md_rssi, f"uplink_message.rx_metadata[{i}].{key}")
            if best is None or (md_rssi is not None and (rssi is None or md_rssi > rssi)):
                best, best_index, rssi = md, i, md_rssi
        if best is not None:
            md_snr = best.get("snr")
            # An SNR of exactly 0 dB is left out like every zero; absent from a reception report means 0.
            if md_snr is None:
                snr = 0.0
            elif type(md_snr) is float:
                snr = md_snr
            else:
                snr = float_field(md_snr, f"uplink_message.rx_metadata[{best_index}].snr")
            gateway_ids = best.get("gateway_ids")
            if type(gateway_ids) is dict:
                gateway_id = _text(gateway_ids.get("gateway_id")) or upper_hex(gateway_ids.get("eui"))

    spreading_factor = bandwidth_hz = frequency_hz = None
    settings = up.get("settings")
    if type(settings) is dict:
        frequency_hz = settings.get("frequency")
        if type(frequency_hz) is not int or frequency_hz <= NONE_INT or frequency_hz > INT64_MAX:
            frequency_hz = int_field(frequency_hz, "uplink_message.settings.frequency")
        data_rate = settings.get("data_rate")
        if type(data_rate) is dict:
            lora = data_rate.get("lora")
            if type(lora) is dict:
                spreading_factor = lora.get("spreading_factor")
                if type(spreading_factor) is not int or not 0 <= spreading_factor <= 1000:
                    spreading_factor = int_field(
                        spreading_factor, "uplink_message.settings.data_rate.lora.spreading_factor"
                    )
                bandwidth_hz = lora.get("bandwidth")
                if type(bandwidth_hz) is not int or not 0 <= bandwidth_hz <= 2**40:
                    bandwidth_hz = int_field(bandwidth_hz, "uplink_message.settings.data_rate.lora.bandwidth")
            else:
                lrfhss = data_rate.get("lrfhss")
                if type(lrfhss) is dict:
                    bandwidth_hz = int_field(
                        lrfhss.get("operating_channel_width"),
                        "uplink_message.settings.data_rate.lrfhss.operating_channel_width",
                    )

    warnings = up.get("decoded_payload_warnings")
    error = None
    if type(warnings) is list and warnings:
        error = "Decoder warnings: " + "; ".join(str(w) for w in warnings)

    return [
        Event(
            platform="tts",
            kind="uplink",
            received_at=_received_at(doc, up),
            application_id=ids.application_id,
            device_id=ids.device_id,
            dev_eui=ids.dev_eui,
            dev_addr=ids.dev_addr,
            f_port=f_port,
            f_cnt=f_cnt,
            payload_hex=payload_hex,
            decoded=up.get("decoded_payload"),
            rssi=rssi,
            snr=snr,
            gateway_id=gateway_id,
            gateways=gateways,
            spreading_factor=spreading_factor,
            bandwidth_hz=bandwidth_hz,
            frequency_hz=frequency_hz,
            correlation_ids=_string_list(doc.get("correlation_ids")),
            error=error,
            topic=topic,
        )
    ]


def parse_tts_join(doc: dict, join: dict, topic: str, ids: _Ids) -> list[Event]:
    return [
        Event(
            platform="tts",
            kind="join",
            received_at=_received_at(doc, join),
            application_id=ids.application_id,
            device_id=ids.device_id,
            dev_eui=ids.dev_eui,
            dev_addr=ids.dev_addr,
            correlation_ids=_string_list(doc.get("correlation_ids")),
            topic=topic,
        )
    ]


def _downlink_event(
    kind: str,
    doc: dict,
    downlink: dict,
    where: str,
    topic: str,
    ids: _Ids,
    *,
    error: str | None = None,
    f_cnt_if_missing: int | None = 0,
) -> Event:
    own_ids = _string_list(downlink.get("correlation_ids"))
    # The application's own ids first (what a user matches on), then the server's, once each.
    correlation_ids = list(dict.fromkeys(own_ids + _string_list(doc.get("correlation_ids"))))
    f_cnt = downlink.get("f_cnt")
    return Event(
        platform="tts",
        kind=kind,
        received_at=_received_at(doc, downlink),
        application_id=ids.application_id,
        device_id=ids.device_id,
        dev_eui=ids.dev_eui,
        dev_addr=ids.dev_addr,
        f_port=int_field(downlink.get("f_port"), f"{where}.f_port", F_PORT),
        f_cnt=f_cnt_if_missing if f_cnt is None else int_field(f_cnt, f"{where}.f_cnt", F_CNT),
        payload_hex=_bytes_hex(downlink.get("frm_payload"), f"{where}.frm_payload"),
        decoded=downlink.get("decoded_payload"),
        correlation_ids=correlation_ids,
        error=error,
        topic=topic,
    )


def _downlink_parser(kind: str):
    # The event kinds are named after the body keys: downlink_queued, downlink_sent, downlink_ack, downlink_nack.
    def parse_tts_downlink_event(doc: dict, downlink: dict, topic: str, ids: _Ids) -> list[Event]:
        return [_downlink_event(kind, doc, downlink, kind, topic, ids)]

    return parse_tts_downlink_event


def tts_error_text(error) -> str:
    """A TTS error object ({namespace, name, message_format, attributes}) as one line."""
    if type(error) is not dict:
        return "The downlink failed; The Things Stack gave no reason."
    message = _text(error.get("message_format")) or "the downlink failed"
    attributes = error.get("attributes")
    if type(attributes) is dict:
        for key, value in attributes.items():
            message = message.replace("{" + key + "}", str(value))
    namespace, name = _text(error.get("namespace")), _text(error.get("name"))
    ident = ":".join(p for p in (namespace, name) if p)
    text = f"{message} ({ident})" if ident else message
    return " ".join(text.split())


def parse_tts_downlink_failed(doc: dict, failed: dict, topic: str, ids: _Ids) -> list[Event]:
    downlink = failed.get("downlink")
    downlink = {} if downlink is None else _expect_object(downlink, "downlink_failed.downlink")
    error = tts_error_text(failed.get("error"))
    return [_downlink_event("downlink_failed", doc, downlink, "downlink_failed.downlink", topic, ids, error=error)]


def parse_tts_downlink_invalidated(doc: dict, invalidated: dict, topic: str, ids: _Ids) -> list[Event]:
    """The queue was dropped because the session or frame counter changed (a rejoin, or downlinks
    the application encrypted itself): those downlinks will never be sent, so each one is a
    downlink_failed event that says why. An empty list still yields one event."""
    last_f_cnt = int_field(invalidated.get("last_f_cnt_down"), "downlink_queue_invalidated.last_f_cnt_down", F_CNT) or 0
    error = (
        "The network invalidated this queued downlink because the device's session or downlink frame counter "
        f"changed (last downlink frame counter {last_f_cnt}); push it again."
    )
    downlinks = invalidated.get("downlinks")
    if downlinks is not None and type(downlinks) is not list:
        raise DecodeError(f"downlink_queue_invalidated.downlinks should be a JSON array but is {_describe(downlinks)}.")
    events = []
    for i, dl in enumerate(downlinks or ()):
        where = f"downlink_queue_invalidated.downlinks[{i}]"
        events.append(
            _downlink_event("downlink_failed", doc, _expect_object(dl, where), where, topic, ids, error=error)
        )
    return events or [
        _downlink_event("downlink_failed", doc, {}, "downlink_queue_invalidated", topic, ids, error=error)
    ]


def _decoded_event(kind: str):
    def parse_tts_decoded_event(doc: dict, body: dict, topic: str, ids: _Ids) -> list[Event]:
        # location_solved {service, location{latitude, longitude, ...}} / service_data {service, data}:
        # the Event has no columns for these, so the whole object is what the platform decoded.
        return [
            Event(
                platform="tts",
                kind=kind,
                received_at=_received_at(doc, body),
                application_id=ids.application_id,
                device_id=ids.device_id,
                dev_eui=ids.dev_eui,
                dev_addr=ids.dev_addr,
                decoded=body,
                correlation_ids=_string_list(doc.get("correlation_ids")),
                topic=topic,
            )
        ]

    return parse_tts_decoded_event


def parse_tts_downlink_push(doc: dict, downlinks, topic: str, ids: _Ids) -> list[Event]:
    """A down/push or down/replace body (what a client publishes) as one `event` per downlink."""
    if type(downlinks) is not list:
        raise DecodeError(f"downlinks should be a JSON array but is {_describe(downlinks)}.")
    if not downlinks:  # an empty replace: the queue is cleared
        return [
            Event(
                platform="tts",
                kind="event",
                received_at=utc_now_iso(),
                application_id=ids.application_id,
                device_id=ids.device_id,
                decoded={"downlinks": []},
                topic=topic,
            )
        ]
    # A client sets no f_cnt (the server assigns it), so a missing one stays unknown here.
    return [
        _downlink_event(
            "event", doc, _expect_object(dl, f"downlinks[{i}]"), f"downlinks[{i}]", topic, ids, f_cnt_if_missing=None
        )
        for i, dl in enumerate(downlinks)
    ]


_PARSERS = {
    "uplink_message": parse_tts_uplink,
    "join_accept": parse_tts_join,
    "downlink_queued": _downlink_parser("downlink_queued"),
    "downlink_sent": _downlink_parser("downlink_sent"),
    "downlink_ack": _downlink_parser("downlink_ack"),
    "downlink_nack": _downlink_parser("downlink_nack"),
    "downlink_failed": parse_tts_downlink_failed,
    "downlink_queue_invalidated": parse_tts_downlink_invalidated,
    "service_data": _decoded_event("service_data"),
    "location_solved": _decoded_event("location"),
    "downlinks": parse_tts_downlink_push,
}


def parse_tts_message(topic: str, payload: bytes) -> list[Event]:
    """Any message of the TTS MQTT server as events; DecodeError for anything TTS does not send.

    The topic suffix says which body to expect; off a TTS topic the body's own key decides.
    A number beyond any 64-bit float is refused where it is read (a field the table shows, a
    decoded object) and ignored elsewhere, as the fast path ignores what it does not read."""
    out_of_range: list[OutOfRange] = []
    doc = load_json_object(payload, "TTS message", out_of_range=out_of_range)
    body_key = topic_uid = topic_device = None
    suffix = None
    if type(topic) is str and topic.startswith("v3/"):
        parts = topic.split("/", 4)
        if len(parts) == 5 and parts[2] == "devices":
            topic_uid, topic_device, suffix = parts[1], parts[3], parts[4]
            body_key = _BODY_KEY_BY_SUFFIX.get(suffix)
    if body_key is None:
        # Not a TTS topic (a capture, a bridge, a renamed topic): the body says what it is.
        for key in _BODY_KEYS:
            if key in doc:
                body_key = key
                break
        else:
            raise DecodeError(
                f"This is not a The Things Stack message: it has none of {', '.join(_BODY_KEYS)} "
                f"(it has {_keys_text(doc)})."
            )
    body = doc.get(body_key)
    if body is None:
        where = f"A message on …/{suffix}" if suffix else "A The Things Stack message"
        raise DecodeError(f"{where} carries {body_key}, but this one has none (it has {_keys_text(doc)}).")
    if body_key != "downlinks" and type(body) is not dict:
        raise DecodeError(f"{body_key} should be a JSON object but is {_describe(body)}.")
    events = _PARSERS[body_key](doc, body, topic, _Ids(doc, topic_uid, topic_device))
    if out_of_range:
        for event in events:
            marker = first_out_of_range(event.decoded)
            if marker is not None:
                raise DecodeError(marker.sentence())
    return events


# ----- the platform --------------------------------------------------------------------------


class TtsPlatform(Platform):
    name = "tts"
    label = "The Things Stack"
    description = (
        "The Things Stack v3 MQTT server (The Things Network, Cloud, Enterprise, Open Source): "
        "uplinks, joins and downlink events of one application; downlinks by push or replace."
    )
    fields = TTS_FIELDS

    def validate(self, profile: dict) -> dict:
        version = profile.get("mqtt_version")
        if version not in (None, "", MqttVersion.V311, MqttVersion.V311.value):
            raise ProfileError(f"{_ONLY_311_QOS0}, so MQTT {version} cannot be used; choose MQTT 3.1.1.")
        qos = profile.get("qos")
        if qos not in (None, "") and to_int(qos) != 0:
            raise ProfileError(f"{_ONLY_311_QOS0}, so QoS {qos} cannot be used; choose QoS 0.")
        out = super().validate(profile)
        upstream_topics(out.get("upstream"))  # raises ProfileError for an unknown name
        out.update(self._identity(out), downlink_priority=self._default_priority(profile))
        return out

    def _default_priority(self, profile: dict) -> str:
        value = profile.get("downlink_priority")
        return self.field("downlink_priority").check(priority_name(value) if value else None)

    def _identity(self, profile: dict) -> dict:
        """app, tenant and device checked; what building topics needs, without the connection fields."""
        app = self.field("app").check(profile.get("app")).strip()
        tenant = (profile.get("tenant") or "").strip()
        if "@" in app:  # pasted as the username app@tenant
            app, _, in_app = app.partition("@")
            if tenant and tenant != in_app:
                raise ProfileError(f"The application ID names tenant {in_app!r} but the tenant ID is {tenant!r}.")
            tenant = in_app
        _check_tts_id(app, "Application ID")
        check_tenant(tenant)
        device = (profile.get("device") or "").strip()
        if device:
            _check_tts_id(device, "Device ID")
        return {"app": app, "tenant": tenant or None, "device": device or None}

    def connection(self, profile: dict) -> ConnectionConfig:
        p = self.validate(profile)
        if not p.get("password"):
            raise ProfileError(API_KEY_MISSING)
        uid = tts_username(p["app"], p["tenant"])
        device = p["device"] or "+"
        subscriptions = [
            Subscription(f"v3/{uid}/devices/{device}/{suffix}", 0) for suffix in upstream_topics(p.get("upstream"))
        ]
        return config_from_profile(
            p,
            subscriptions,
            username=uid,
            password=p["password"],
            mqtt_version=MqttVersion.V311,
            clean_session=True,
        )

    def row_parser(self, profile: dict):
        from app.platforms.tts_fast import uplink_row

        return uplink_row

    def parse(self, topic: str, payload: bytes, properties: dict | None = None) -> list[Event]:
        return parse_tts_message(topic, payload)

    def encode_downlink(self, profile: dict, request: DownlinkRequest) -> OutgoingMessage:
        # Only what the topic and body need: a downlink can be built without the connection's address or key.
        p = self._identity(profile)
        p["downlink_priority"] = self._default_priority(profile)
        device = (request.device_id or p["device"] or "").strip()
        if not device:
            raise EncodeError("Enter the device id of the end device to send the downlink to (for example dev1).")
        _check_tts_id(device, "Device ID", EncodeError)
        uid = tts_username(p["app"], p["tenant"])
        operation = "replace" if request.replace else "push"
        topic = f"v3/{uid}/devices/{device}/down/{operation}"
        if request.payload is None and request.decoded is None:
            if request.replace:  # replacing the queue with nothing clears it
                return OutgoingMessage(topic, orjson.dumps({"downlinks": []}), qos=0)
            raise EncodeError("Enter a payload, or a decoded payload object for the application's formatter, to send.")
        return OutgoingMessage(topic, orjson.dumps({"downlinks": [tts_downlink_item(p, request)]}), qos=0)


def tts_downlink_item(profile: dict, request: DownlinkRequest) -> dict:
    """One element of `downlinks`, validated; EncodeError with one sentence otherwise."""
    if request.payload is not None and request.decoded is not None:
        raise EncodeError("Give either the payload bytes or a decoded payload object, not both.")
    f_port = request.f_port
    if f_port is None:
        raise EncodeError(f"Enter the FPort ({MIN_DOWNLINK_F_PORT} to {MAX_DOWNLINK_F_PORT}) to send the downlink on.")
    if isinstance(f_port, bool) or not isinstance(f_port, int):
        raise EncodeError(f"The FPort must be a whole number from {MIN_DOWNLINK_F_PORT} to {MAX_DOWNLINK_F_PORT}.")
    if not MIN_DOWNLINK_F_PORT <= f_port <= MAX_DOWNLINK_F_PORT:
        raise EncodeError(
            f"FPort {f_port} is out of range; The Things Stack schedules downlinks on FPort "
            f"{MIN_DOWNLINK_F_PORT} to {MAX_DOWNLINK_F_PORT}."
        )
    item: dict = {"f_port": f_port}
    if request.payload is not None:
        data = bytes(request.payload)
        if len(data) > MAX_DOWNLINK_PAYLOAD:
            raise EncodeError(
                f"The payload is {len(data)} bytes; LoRaWAN allows at most {MAX_DOWNLINK_PAYLOAD} bytes even at the "
                "fastest data rate (and fewer at slower ones)."
            )
        item["frm_payload"] = base64.b64encode(data).decode("ascii")
    else:
        if not isinstance(request.decoded, dict):
            raise EncodeError(
                'The decoded payload must be a JSON object such as {"led": true}; the application\'s downlink '
                "formatter encodes it."
            )
        try:
            orjson.dumps(request.decoded)
        except (TypeError, orjson.JSONEncodeError) as exc:
            raise EncodeError(f"The decoded payload cannot be written as JSON ({exc}).") from None
        item["decoded_payload"] = request.decoded
    item["priority"] = normalize_priority(request.priority or profile.get("downlink_priority") or "NORMAL")
    if request.confirmed:
        item["confirmed"] = True
    correlation_ids = []
    for i, cid in enumerate(request.correlation_ids, 1):
        if not isinstance(cid, str) or not cid:
            raise EncodeError(f"Correlation id {i} is empty; remove it or give it a value.")
        if len(cid) > MAX_CORRELATION_ID_LENGTH:
            raise EncodeError(
                f"Correlation id {i} is {len(cid)} characters; The Things Stack allows at most "
                f"{MAX_CORRELATION_ID_LENGTH}."
            )
        correlation_ids.append(cid)
    if correlation_ids:
        item["correlation_ids"] = correlation_ids
    return item


PLATFORM = TtsPlatform()

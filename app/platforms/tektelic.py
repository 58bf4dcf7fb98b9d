"""Tektelic Network Server, MQTT_V2 integration: the network server and the console share a broker.

The network server is an MQTT client of a broker the user runs. It publishes each uplink (the
output of the application's converter V2) to `pushTopic` and takes downlinks from `pullTopic`.
The console connects to the same broker, subscribes to pushTopic and publishes to pullTopic.

The body pullTopic expects is not documented publicly (the application's encoder V2 reads it),
so downlinks are built from named, editable JSON templates.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import functools
import ipaddress
import math
import os
import re
import time

import orjson

from app.events import Event, utc_now_iso
from app.mqtt.config import (
    ConfigError,
    ConnectionConfig,
    MqttVersion,
    Subscription,
    Transport,
    validate_topic_filter,
    validate_topic_name,
)
from app.payload import PayloadError, from_byte_array, json_error_text
from app.platforms.base import (
    ALLOW_EXPIRED_FIELD,
    VERIFY_HELP,
    DecodeError,
    DownlinkRequest,
    EncodeError,
    OutgoingMessage,
    Platform,
    ProfileError,
    ProfileField,
    assign_pages,
    json_type,
    load_json_object,
    save_pem_texts,
    tls_from_profile,
    to_float,
    to_int,
    upper_hex,
)

WHAT = "Tektelic converter V2 output"

# ----- profile vocabulary ---------------------------------------------------------------------

QOS_NAMES = ("AT_MOST_ONCE", "AT_LEAST_ONCE", "EXACTLY_ONCE")  # index = QoS level
DEFAULT_QOS = "AT_LEAST_ONCE"

# The integration's mqttVersion values; null/absent means "3.1.1, falling back to 3.1".
TEKTELIC_MQTT_VERSIONS = {"MQTT_VERSION_3_1": MqttVersion.V31.value, "MQTT_VERSION_3_1_1": MqttVersion.V311.value}
DEFAULT_MQTT_VERSION = MqttVersion.V311_THEN_31.value
MQTT_VERSION_CHOICES = (DEFAULT_MQTT_VERSION, MqttVersion.V31.value, MqttVersion.V311.value, MqttVersion.V5.value)

MAX_CLIENT_ID_MQTT_31 = 23
MAX_CLIENT_ID = 256  # MQTT 3.1.1 and 5, as Tektelic documents it

# LoRaWAN application ports: 0 carries MAC commands, 224 is the certification test port,
# 225..255 are reserved.
MIN_F_PORT, MAX_F_PORT = 1, 223
# The largest FRMPayload any LoRaWAN region allows (its fastest data rates); slower data rates
# allow less, down to 11 bytes, but the console cannot know the data rate of the next downlink.
MAX_DOWNLINK_BYTES = 242

# ----- downlink templates ---------------------------------------------------------------------

BUILTIN_TEMPLATES = {
    # What the application's encoder V2 returns; for a pass-through encoder, what it expects.
    "passthrough": '{"fPort": {fPort}, "bytes": {bytes}}',
    # The body of Tektelic's embedded MQTT_BROKER integration ("Supported Payload Format").
    "broker-base64": '{"deviceEui": {deviceEui}, "fPort": {fPort}, "data": {base64}}',
}
DEFAULT_TEMPLATE = "passthrough"
PLACEHOLDERS = {
    "fPort": "the FPort (number)",
    "bytes": "the payload as an array of numbers 0..255",
    "base64": "the payload as base64 text",
    "hex": "the payload as lowercase hex text",
    "deviceEui": "the device EUI (uppercase hex text)",
    "deviceId": "the device id or name (text)",
    "confirmed": "true or false",
    "decoded": "the JSON object entered instead of a payload",
}
_PAYLOAD_PLACEHOLDERS = frozenset(("bytes", "base64", "hex"))
# A JSON string literal, or a bare {placeholder} outside any string.
_TEMPLATE_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|\{([A-Za-z][A-Za-z0-9_]*)\}')
_PLACEHOLDER = re.compile(r"\{([A-Za-z][A-Za-z0-9_]*)\}")
_TEMPLATE_LINE = re.compile(r"^\s*([A-Za-z0-9_.-]+)\s*=\s*(.*)$")


def template_placeholders(template: str) -> set[str]:
    """The {names} a template uses, inside strings or as bare values."""
    return set(_PLACEHOLDER.findall(template))


def render_template(template: str, values: dict) -> bytes:
    """The template with its placeholders filled, as compact JSON.

    A bare placeholder becomes a JSON value of its type ({fPort} → 10, {bytes} → [1, 2]); one
    inside a string is written as text ("dev-{deviceEui}" → "dev-647FDA0300000000").
    """

    def fill(match: re.Match) -> str:
        name = match.group(1)
        if name is None:
            literal = match.group(0)
            return _PLACEHOLDER.sub(fill_in_string, literal) if "{" in literal else literal
        if name not in values:
            raise EncodeError(f"The template uses {{{name}}}, which is not one of {_placeholder_list()}.")
        return orjson.dumps(values[name]).decode()

    def fill_in_string(match: re.Match) -> str:
        name = match.group(1)
        if name not in values:
            return match.group(0)  # braces are ordinary text inside strings
        value = values[name]
        text = value if isinstance(value, str) else orjson.dumps(value).decode()
        return orjson.dumps(text).decode()[1:-1]

    filled = _TEMPLATE_TOKEN.sub(fill, template)
    try:
        return orjson.dumps(orjson.loads(filled))
    except orjson.JSONDecodeError as exc:
        raise EncodeError(f"The template does not give valid JSON: {json_error_text(exc, filled)}.") from None


def _placeholder_list() -> str:
    return ", ".join("{" + name + "}" for name in PLACEHOLDERS)


def parse_templates(text) -> dict[str, str]:
    """User templates: a dict, or text with one `name = JSON body` per template (bodies may span lines)."""
    if not text:
        return {}
    if isinstance(text, dict):
        return {str(k): str(v) for k, v in text.items()}
    templates: dict[str, list[str]] = {}
    current = None
    for number, line in enumerate(str(text).splitlines(), 1):
        match = _TEMPLATE_LINE.match(line)
        if match:
            current = match.group(1)
            templates[current] = [match.group(2)]
        elif line.strip():
            if current is None:
                raise ProfileError(
                    f"Line {number} of the downlink templates has no name; write each as name = JSON body."
                )
            templates[current].append(line)
    return {name: "\n".join(lines).strip() for name, lines in templates.items()}


# ----- data rates -----------------------------------------------------------------------------

_KHZ = 1000
_LORA_125 = {dr: (12 - dr, 125 * _KHZ) for dr in range(6)}  # DR0..5 = SF12..SF7 at 125 kHz
_LORA_500_DOWN = {dr: (20 - dr, 500 * _KHZ) for dr in range(8, 14)}  # DR8..13 = SF12..SF7 at 500 kHz
# LoRaWAN Regional Parameters (RP002): data rate index → (spreading factor, bandwidth Hz).
# DR indexes that are FSK, LR-FHSS or RFU in a region have no entry (spreading factor unknown).
_DATA_RATES_EU_LIKE = _LORA_125
_DATA_RATES_EU_WITH_DR6 = {**_LORA_125, 6: (7, 250 * _KHZ)}
_DATA_RATES_US = {dr: (10 - dr, 125 * _KHZ) for dr in range(4)} | {4: (8, 500 * _KHZ)} | _LORA_500_DOWN
_DATA_RATES_AU = {**_LORA_125, 6: (8, 500 * _KHZ), **_LORA_500_DOWN}
_REGION_PREFIXES = (
    ("US9", _DATA_RATES_US),
    ("AU9", _DATA_RATES_AU),
    ("EU8", _DATA_RATES_EU_WITH_DR6),
    ("EU4", _DATA_RATES_EU_WITH_DR6),
    ("CN7", _DATA_RATES_EU_WITH_DR6),
    ("AS9", _DATA_RATES_EU_WITH_DR6),
    ("RU8", _DATA_RATES_EU_WITH_DR6),
    ("IN8", _DATA_RATES_EU_LIKE),
    ("KR9", _DATA_RATES_EU_LIKE),
    ("CN4", _DATA_RATES_EU_LIKE),
)
_SF_BW_TEXT = re.compile(r"SF(\d{1,2})(?:\s*BW(\d{2,3}))?", re.IGNORECASE)
_DR_TEXT = re.compile(r"DR\s*(\d{1,2})", re.IGNORECASE)


@functools.lru_cache(maxsize=64)
def _region_data_rates(region: str) -> dict:
    key = re.sub(r"[^A-Z0-9]", "", region.upper())
    for prefix, table in _REGION_PREFIXES:
        if key.startswith(prefix):
            return table
    return {}


def spreading_factor_and_bandwidth(data_rate, region) -> tuple[int | None, int | None]:
    """(SF, bandwidth Hz) from tektelicMetadata.dataRate: text like "SF7BW125", or a LoRaWAN DR
    index read with the rfRegion's table. Anything else, or a DR the region lacks, is (None, None)."""
    if isinstance(data_rate, str):
        match = _SF_BW_TEXT.search(data_rate)
        if match:
            spreading_factor, bandwidth = int(match.group(1)), match.group(2)
            if not 5 <= spreading_factor <= 12:  # LoRa's range
                return None, None
            return spreading_factor, int(bandwidth) * _KHZ if bandwidth else None
        match = _DR_TEXT.fullmatch(data_rate.strip())
        index = int(match.group(1)) if match else to_int(data_rate)
    else:
        index = to_int(data_rate)
    if index is None or not isinstance(region, str):
        return None, None
    return _region_data_rates(region).get(index, (None, None))


# ----- time -----------------------------------------------------------------------------------

# Epoch values are read by magnitude: 1e11 seconds is the year 5138, 1e11 milliseconds is 1973.
_EPOCH_UNITS = ((1e17, 1_000_000_000), (1e14, 1_000_000), (1e11, 1_000))
_YEAR_10000 = 253_402_300_800  # seconds; ISO 8601 years have four digits


def iso_from_epoch_any_unit(value) -> str | None:
    """ISO 8601 UTC from an epoch in seconds, milliseconds, microseconds or nanoseconds (told apart
    by magnitude), or from ISO text; None if it is not a time from 1970 to 9999."""
    number = value if type(value) is int else to_float(value)
    if number is None:
        return _iso_from_text(value) if isinstance(value, str) else None
    divisor = 1
    for threshold, unit in _EPOCH_UNITS:
        if abs(number) >= threshold:
            divisor = unit
            break
    if type(number) is int:  # integer arithmetic keeps the milliseconds exact
        seconds, remainder = divmod(number, divisor)
        micros = remainder * 1_000_000 // divisor
    else:
        total = number / divisor
        seconds = math.floor(total)
        micros = min(round((total - seconds) * 1_000_000), 999_999)
    if not 0 <= seconds < _YEAR_10000:
        return None
    # strftime over gmtime: a third of the cost of datetime on the hot path.
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    if micros:
        text += f".{micros // 1000:03d}" if micros % 1000 == 0 else f".{micros:06d}"
    return text + "Z"


def _iso_from_text(text: str) -> str | None:
    if "T" not in text:
        return None
    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=dt.UTC)
        return moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
    except (ValueError, OverflowError):
        return None


# ----- the platform ---------------------------------------------------------------------------


QOS_LABELS = (
    "AT_MOST_ONCE (QoS 0: may be lost)",
    "AT_LEAST_ONCE (QoS 1: may arrive twice)",
    "EXACTLY_ONCE (QoS 2)",
)
MQTT_VERSION_LABELS = (
    "Tektelic's default: 3.1.1, falling back to 3.1",
    "MQTT_VERSION_3_1",
    "MQTT_VERSION_3_1_1",
    "MQTT 5 (this console only)",
)


def _qos_field(name: str, label: str, help_text: str, advanced: bool = False) -> ProfileField:
    return ProfileField(
        name,
        label,
        "choice",
        default=DEFAULT_QOS,
        choices=QOS_NAMES,
        help=help_text,
        advanced=advanced,
        choice_labels=QOS_LABELS,
    )


class TektelicPlatform(Platform):
    name = "tektelic"
    label = "Tektelic (MQTT_V2)"
    description = (
        "Tektelic Network Server MQTT_V2 integration: the network server publishes uplinks to pushTopic "
        "on your broker and reads downlinks from pullTopic; the console joins the same broker."
    )
    downlink_templates = BUILTIN_TEMPLATES
    topic_pattern_field = "pull_topic"

    fields = (
        ProfileField(
            "host",
            "Host",
            required=True,
            placeholder="broker.example.com",
            help="Domain name or IP of the external MQTT broker. A port is not allowed here: enter it under Port.",
        ),
        ProfileField(
            "port",
            "Port",
            "int",
            minimum=1,
            maximum=65535,
            placeholder="1883",
            help="Port of the external MQTT broker. Empty: 1883, or 8883 with SSL.",
        ),
        ProfileField("ssl", "SSL", "bool", default=False, help="Use TLS to the broker."),
        ProfileField("token", "Token (username)", help="The username for the broker."),
        ProfileField("password", "Password", "secret", help="The password for the broker."),
        ProfileField(
            "client_id",
            "Client id",
            advanced=True,
            help=(
                "This console's client id: at most 23 characters for MQTT 3.1, 256 for 3.1.1 and 5. "
                "Empty: a random one. It must differ from the network server's clientId, or the broker "
                "disconnects one of the two each time the other connects."
            ),
        ),
        ProfileField(
            "integration_client_id",
            "Network server's client id",
            advanced=True,
            help=(
                "The integration's clientId (same length limits). Only checked: the console refuses to "
                "connect with the same id."
            ),
        ),
        ProfileField(
            "mqtt_version",
            "MQTT version",
            "choice",
            default=DEFAULT_MQTT_VERSION,
            choices=MQTT_VERSION_CHOICES,
            choice_labels=MQTT_VERSION_LABELS,
            advanced=True,
            help=(
                "MQTT_VERSION_3_1 or MQTT_VERSION_3_1_1; by default 3.1.1 first, dropping back to 3.1 "
                "if the broker refuses it."
            ),
        ),
        ProfileField(
            "clean_session",
            "Clean session",
            "bool",
            default=True,
            advanced=True,
            help=(
                "Off: a persistent session; the broker stores the subscriptions and the QoS 1/2 messages "
                "missed while away. On: the broker stores nothing and purges any previous session."
            ),
        ),
        ProfileField(
            "keep_alive_interval_s",
            "Keep alive interval (s)",
            "int",
            default=60,
            minimum=1,
            maximum=65535,
            advanced=True,
            help="The longest time without a message; the client sends PING requests to stay within it.",
        ),
        ProfileField(
            "connection_timeout_s",
            "Connection timeout (s)",
            "int",
            default=30,
            minimum=1,
            advanced=True,
            help="How long to wait for the network connection to the broker to be established.",
        ),
        ProfileField(
            "autoreconnect_interval_s",
            "Autoreconnect interval (s)",
            "int",
            default=30,
            minimum=1,
            advanced=True,
            help="Wait before reconnecting after a failed or lost connection (the console then backs off).",
        ),
        ProfileField(
            "max_inflight",
            "Max inflight",
            "int",
            default=5,
            minimum=1,
            maximum=100,
            advanced=True,
            help="Network server: the most uplinks with QoS > 0 part way through their flow at once.",
        ),
        ProfileField(
            "pending_queue_max_size",
            "Pending queue max size",
            "int",
            default=1000,
            minimum=1,
            maximum=10000,
            advanced=True,
            help="Network server: the most outgoing QoS > 0 messages waiting in its queue.",
        ),
        ProfileField(
            "integration_initialization_retry_interval_s",
            "Initialization retry interval (s)",
            "int",
            default=120,
            minimum=1,
            advanced=True,
            help="Network server: retry interval after internal errors while the integration starts.",
        ),
        ProfileField(
            "pending_queue_on_error_processing_retry_interval_s",
            "Uplink error retry interval (s)",
            "int",
            default=60,
            minimum=1,
            advanced=True,
            help="Network server: retry interval after internal errors while processing an uplink.",
        ),
        _qos_field("push_qos", "Push QoS", "QoS of the uplinks on pushTopic; the console subscribes at the same QoS."),
        _qos_field("pull_qos", "Pull QoS", "QoS of the downlinks the console publishes to pullTopic.", True),
        ProfileField(
            "push_retained",
            "Push retained",
            "bool",
            default=False,
            advanced=True,
            help="Network server publishes uplinks retained: on subscribing, the last one arrives again.",
        ),
        ProfileField(
            "push_topic",
            "Push topic",
            required=True,
            placeholder="ttt_push_xxassss000123",
            help="Topic where the network server publishes uplinks; the console subscribes to it.",
        ),
        ProfileField(
            "pull_topic",
            "Pull topic",
            placeholder="ttt_pull_xxassss000123",
            help="Topic where the network server listens for downlinks; the console publishes to it.",
        ),
        ProfileField(
            "ca_file",
            "CA certificate",
            "file",
            advanced=True,
            help="The certificate of the broker's authority. Empty: the operating system's trusted certificates.",
        ),
        ProfileField(
            "cert_file",
            "Client certificate",
            "file",
            advanced=True,
            help="For a broker that authenticates clients by certificate.",
        ),
        ProfileField(
            "key_file",
            "Client private key",
            "file",
            advanced=True,
            help="clientPrivateKey: the private key of the client certificate.",
        ),
        ProfileField(
            "key_password",
            "Client key password",
            "secret",
            advanced=True,
            help="clientKeyPassword: only for an encrypted private key.",
        ),
        ProfileField(
            "verify_certificate",
            "Verify the broker's certificate",
            "bool",
            default=True,
            advanced=True,
            help=VERIFY_HELP,
        ),
        ALLOW_EXPIRED_FIELD,
        ProfileField(
            "downlink_template",
            "Downlink template",
            default=DEFAULT_TEMPLATE,
            help=(
                "Which body to publish to pullTopic (the format is not documented publicly: it is what your "
                "encoder V2 reads). Built in: passthrough, broker-base64; add your own below."
            ),
        ),
        ProfileField(
            "downlink_templates",
            "Own downlink templates",
            "textarea",
            advanced=True,
            placeholder='mine = {"fPort": {fPort}, "hex": {hex}}',
            help=(
                "One per template: name = JSON body, on one line or continued on the next ones. "
                "Placeholders: {fPort}, {bytes}, {base64}, {hex}, {deviceEui}, {deviceId}, {confirmed}, "
                "{decoded}. A bare placeholder becomes a value of its type; inside quotes it becomes text. "
                "A name of a built-in template replaces it."
            ),
        ),
    )
    fields = assign_pages(
        fields,
        {
            "broker": (
                "host",
                "port",
                "ssl",
                "token",
                "password",
                "client_id",
                "integration_client_id",
                "mqtt_version",
                "clean_session",
                "keep_alive_interval_s",
                "connection_timeout_s",
                "autoreconnect_interval_s",
            ),
            "topics": (
                "push_topic",
                "pull_topic",
                "push_qos",
                "pull_qos",
                "push_retained",
                "downlink_template",
                "downlink_templates",
            ),
            "tls": ("ca_file", "cert_file", "key_file", "key_password", "verify_certificate", "allow_expired"),
            "integration": (
                "max_inflight",
                "pending_queue_max_size",
                "integration_initialization_retry_interval_s",
                "pending_queue_on_error_processing_retry_interval_s",
            ),
        },
    )

    # ----- profile

    def validate(self, profile: dict) -> dict:
        profile = dict(profile)
        version = profile.get("mqtt_version")
        if isinstance(version, str) and version in TEKTELIC_MQTT_VERSIONS:
            profile["mqtt_version"] = TEKTELIC_MQTT_VERSIONS[version]
        for name in ("push_qos", "pull_qos"):
            profile[name] = _qos_name(profile.get(name))
        # Kept as given: a dict of templates, or the text of the textarea (check() would str() a dict).
        own_templates = profile.pop("downlink_templates", None) or None
        out = super().validate(profile)
        out["downlink_templates"] = own_templates
        out["host"] = check_host(out["host"])
        for name in ("client_id", "integration_client_id"):
            check_client_id(self.field(name).label, out.get(name), out["mqtt_version"])
        try:
            validate_topic_filter(out["push_topic"])
            if out.get("pull_topic"):
                validate_topic_name(out["pull_topic"])
        except ConfigError as exc:
            raise ProfileError(str(exc)) from None
        templates = self.templates(out)
        for template_name, template in templates.items():
            try:
                render_template(template, _SAMPLE_VALUES)
            except EncodeError as exc:
                raise ProfileError(f"Downlink template {template_name!r}: {exc}") from None
        if out["downlink_template"] not in templates:
            raise ProfileError(
                f"There is no downlink template {out['downlink_template']!r}; choose one of {', '.join(templates)}."
            )
        return out

    def templates(self, profile: dict) -> dict[str, str]:
        """The built-in templates, with the profile's own added (a same-named one replaces a built-in)."""
        return {**self.downlink_templates, **parse_templates(profile.get("downlink_templates"))}

    def connection(self, profile: dict) -> ConnectionConfig:
        profile = self.validate(profile)
        client_id = profile.get("client_id") or ""
        if client_id and client_id == profile.get("integration_client_id"):
            raise ProfileError(
                "The client id is the network server's own; the broker would disconnect the network server. "
                "Leave it empty or choose another."
            )
        reconnect = float(profile["autoreconnect_interval_s"])
        try:
            return ConnectionConfig(
                host=profile["host"],
                port=profile.get("port"),
                transport=Transport.TLS if profile["ssl"] else Transport.TCP,
                username=profile.get("token") or None,
                password=profile.get("password") or None,
                client_id=client_id,
                mqtt_version=MqttVersion(profile["mqtt_version"]),
                keepalive=profile["keep_alive_interval_s"],
                clean_session=profile["clean_session"],
                connect_timeout=float(profile["connection_timeout_s"]),
                reconnect_interval=reconnect,
                reconnect_max_interval=max(60.0, reconnect),
                tls=tls_from_profile(profile),
                subscriptions=(Subscription(profile["push_topic"], QOS_NAMES.index(profile["push_qos"])),),
            )
        except ProfileError:
            raise
        except ConfigError as exc:
            raise ProfileError(str(exc)) from None

    def profile_from_integration_config(self, doc: dict, pem_dir: str | os.PathLike | None = None) -> dict:
        """A profile from the integration's REST body (POST /api/integration) or its `configuration`.

        Certificates and keys arrive as PEM text; they are saved in `pem_dir` (the key readable by
        the owner only) because the console reads them from files.
        """
        if not isinstance(doc, dict):
            raise ProfileError("The integration configuration must be a JSON object.")
        kind = doc.get("type")
        if kind is not None and kind != "MQTT_V2":
            raise ProfileError(f"This is a {kind} integration; the console imports MQTT_V2 integrations.")
        config = doc.get("configuration", doc)
        if not isinstance(config, dict):
            raise ProfileError("The integration's 'configuration' must be a JSON object.")
        profile = self.defaults()
        for key, name in _IMPORTED_KEYS.items():
            value = config.get(key)
            if value is None or value == "":
                continue
            if key == "mqttVersion":
                if not isinstance(value, str) or value not in TEKTELIC_MQTT_VERSIONS:
                    raise ProfileError(
                        f"In the integration configuration, mqttVersion {value!r} is not MQTT_VERSION_3_1 or "
                        "MQTT_VERSION_3_1_1 (or null: 3.1.1 falling back to 3.1)."
                    )
                value = TEKTELIC_MQTT_VERSIONS[value]
            if key in ("pushQos", "pullQos") and value not in QOS_NAMES:
                raise ProfileError(
                    f"In the integration configuration, {key} {value!r} is not one of {', '.join(QOS_NAMES)}."
                )
            try:
                profile[name] = self.field(name).check(value)
            except ProfileError as exc:
                raise ProfileError(f"In the integration configuration, {key} is refused: {_lower_first(exc)}") from None
        if not config.get("host"):
            raise ProfileError("The integration configuration has no host.")
        if not config.get("pushTopic"):
            raise ProfileError("The integration configuration has no pushTopic; it must not be empty.")
        try:
            check_client_id("clientId", profile.get("integration_client_id"), profile["mqtt_version"])
            profile.update(_save_pem_files(config, pem_dir))
            return self.validate(profile)
        except ProfileError as exc:
            raise ProfileError(f"In the integration configuration, {_lower_first(exc)}") from None

    # ----- uplinks

    def parse(self, topic: str, payload: bytes, properties: dict | None = None) -> list[Event]:
        doc = load_json_object(payload, WHAT)
        data = doc.get("data")
        meta = doc.get("tektelicMetadata")
        if (data is not None and type(data) is not dict) or (data is None and meta is None):
            return [self._downlink_body_or_raise(topic, doc)]
        if meta is None:
            meta = {}
        elif type(meta) is not dict:
            raise DecodeError(f"'tektelicMetadata' is {json_type(meta)}; in a {WHAT} it is an object.")

        payload_hex = None
        decoded = data or None
        if data is not None and "bytes" in data:
            raw = _byte_array(data["bytes"])
            if raw is not None:
                payload_hex = raw.hex()
                if len(data) == 1:
                    decoded = None
            elif len(data) == 1:  # the pass-through converter's output, broken
                try:
                    from_byte_array(data["bytes"])
                except PayloadError as exc:
                    raise DecodeError(f"'data.bytes' is not a byte array: {exc}") from None

        gateway_id = rssi = snr = None
        gateways = _int_in(meta.get("gatewayCount"), _MAX_U32)
        rx_info = meta.get("gatewayRxInfo")
        if type(rx_info) is list:
            best = best_rssi = None
            for gateway in rx_info:
                if type(gateway) is not dict:
                    continue
                gateway_rssi = to_float(gateway.get("rssi"))
                if best is None or (gateway_rssi is not None and (best_rssi is None or gateway_rssi > best_rssi)):
                    best, best_rssi = gateway, gateway_rssi
            if best is not None:
                gateway_id = upper_hex(best.get("gwEui")) or _text(best.get("gatewayName"))
                rssi, snr = best_rssi, to_float(best.get("snr"))
            if gateways is None:
                gateways = len(rx_info)
        spreading_factor, bandwidth = spreading_factor_and_bandwidth(meta.get("dataRate"), meta.get("rfRegion"))
        dev_eui = upper_hex(meta.get("deviceEui"))
        return [
            Event(
                platform="tektelic",
                kind="uplink",
                received_at=iso_from_epoch_any_unit(meta.get("recvTime")) or utc_now_iso(),
                application_id=_text(meta.get("applicationId")),
                device_id=_text(meta.get("deviceName")) or dev_eui,
                dev_eui=dev_eui,
                dev_addr=upper_hex(meta.get("devAddr")),
                f_port=_int_in(meta.get("fPort"), 255),
                f_cnt=_int_in(meta.get("fCntUp"), _MAX_U32),
                payload_hex=payload_hex,
                decoded=decoded,
                rssi=rssi,
                snr=snr,
                gateway_id=gateway_id,
                gateways=gateways,
                spreading_factor=spreading_factor,
                bandwidth_hz=bandwidth,
                frequency_hz=_int_in(meta.get("uLFreq"), _MAX_U32),
                error=_converter_errors(doc.get("errors")),
                topic=topic,
            )
        ]

    def _downlink_body_or_raise(self, topic: str, doc: dict) -> Event:
        """A body of one of the built-in downlink templates (seen when subscribed to pullTopic too)."""
        data = doc.get("data")
        if "fPort" in doc and ("bytes" in doc or type(data) is str):
            try:
                raw = from_byte_array(doc["bytes"]) if "bytes" in doc else _from_base64_strict(data)
            except (PayloadError, binascii.Error, ValueError):
                raise DecodeError(
                    "The message looks like a downlink body (fPort with bytes or data) but its payload is "
                    "not a byte array or base64."
                ) from None
            return Event(
                platform="tektelic",
                kind="downlink_queued",
                received_at=utc_now_iso(),
                dev_eui=upper_hex(doc.get("deviceEui")),
                device_id=upper_hex(doc.get("deviceEui")),
                f_port=_int_in(doc.get("fPort"), 255),
                payload_hex=raw.hex(),
                topic=topic,
            )
        if data is not None:
            raise DecodeError(f"'data' is {json_type(data)}; in a {WHAT} it is an object.")
        keys = ", ".join(list(doc)[:6]) or "no keys"
        raise DecodeError(
            f"The JSON object is not a {WHAT}: it has neither 'data' nor 'tektelicMetadata' (it has {keys})."
        )

    # ----- downlinks

    def encode_downlink(self, profile: dict, request: DownlinkRequest) -> OutgoingMessage:
        topic = profile.get("pull_topic")
        if not topic or not isinstance(topic, str):
            raise EncodeError("Enter the pull topic: the network server takes downlinks from it.")
        try:
            validate_topic_name(topic)
            templates = self.templates(profile)
        except (ConfigError, ProfileError) as exc:
            raise EncodeError(str(exc)) from None
        template_name = request.template or profile.get("downlink_template") or DEFAULT_TEMPLATE
        template = templates.get(template_name)
        if template is None:
            raise EncodeError(f"There is no downlink template {template_name!r}; choose one of {', '.join(templates)}.")
        used = template_placeholders(template)
        values = self._template_values(template_name, used, request)
        body = render_template(template, values)
        qos_name = _qos_name(profile.get("pull_qos")) or DEFAULT_QOS
        if qos_name not in QOS_NAMES:
            raise EncodeError(f"Pull QoS must be one of {', '.join(QOS_NAMES)}, not {qos_name!r}.")
        # Never retained: a retained downlink would be sent again each time the network server reconnects.
        return OutgoingMessage(topic, body, QOS_NAMES.index(qos_name), False)

    def _template_values(self, template_name: str, used: set[str], request: DownlinkRequest) -> dict:
        values: dict = {"confirmed": bool(request.confirmed)}
        f_port = request.f_port
        if isinstance(f_port, str) and f_port.strip().isdigit():
            f_port = int(f_port)
        if f_port is not None:
            if isinstance(f_port, bool) or not isinstance(f_port, int) or not MIN_F_PORT <= f_port <= MAX_F_PORT:
                raise EncodeError(
                    f"FPort {f_port!r} is out of range: LoRaWAN application ports are {MIN_F_PORT} to "
                    f"{MAX_F_PORT} (0 carries MAC commands, 224 is the test port, 225 to 255 are reserved)."
                )
            values["fPort"] = f_port
        elif "fPort" in used:
            raise EncodeError(
                f"The {template_name} template needs an FPort; enter one from {MIN_F_PORT} to {MAX_F_PORT}."
            )
        if used & _PAYLOAD_PLACEHOLDERS:
            payload = request.payload
            if not payload:
                raise EncodeError("There is no payload; enter the bytes to send.")
            if len(payload) > MAX_DOWNLINK_BYTES:
                raise EncodeError(
                    f"The payload is {len(payload)} bytes; LoRaWAN carries at most {MAX_DOWNLINK_BYTES} in one "
                    "downlink (the largest any region allows, at its fastest data rates; slower ones allow less)."
                )
            values["bytes"] = list(payload)
            values["base64"] = base64.b64encode(payload).decode()
            values["hex"] = payload.hex()
        if "deviceEui" in used:
            dev_eui = upper_hex(request.dev_eui)
            if not dev_eui:
                raise EncodeError(f"The {template_name} template needs the device EUI; enter it.")
            if not re.fullmatch(r"[0-9A-F]{16}", dev_eui):
                raise EncodeError(f"The device EUI {request.dev_eui!r} is not 16 hex digits.")
            values["deviceEui"] = dev_eui
        if "deviceId" in used:
            if not request.device_id:
                raise EncodeError(f"The {template_name} template needs the device id; enter it.")
            values["deviceId"] = request.device_id
        if "decoded" in used:
            if request.decoded is None:
                raise EncodeError(f"The {template_name} template needs a JSON object to send; enter it.")
            values["decoded"] = request.decoded
        return values


# ----- helpers --------------------------------------------------------------------------------

_IMPORTED_KEYS = {
    "host": "host",
    "port": "port",
    "ssl": "ssl",
    "token": "token",
    "password": "password",
    "clientId": "integration_client_id",
    "cleanSession": "clean_session",
    "keepAliveIntervalS": "keep_alive_interval_s",
    "connectionTimeoutS": "connection_timeout_s",
    "autoreconnectIntervalS": "autoreconnect_interval_s",
    "maxInflight": "max_inflight",
    "pendingQueueMaxSize": "pending_queue_max_size",
    "integrationInitializationRetryIntervalS": "integration_initialization_retry_interval_s",
    "pendingQueueOnErrorProcessingRetryIntervalS": "pending_queue_on_error_processing_retry_interval_s",
    "pushQos": "push_qos",
    "pullQos": "pull_qos",
    "pushRetained": "push_retained",
    "pushTopic": "push_topic",
    "pullTopic": "pull_topic",
    "clientKeyPassword": "key_password",
    "mqttVersion": "mqtt_version",
}
_PEM_KEYS = (
    (("caCertificate",), "ca_file", "tektelic-ca.pem"),
    (("clientCertificate",), "cert_file", "tektelic-client-cert.pem"),
    (("clientPrivateKey",), "key_file", "tektelic-client-key.pem"),
)

_SAMPLE_VALUES = {
    "fPort": 1,
    "bytes": [0],
    "base64": "AA==",
    "hex": "00",
    "deviceEui": "0000000000000000",
    "deviceId": "device",
    "confirmed": False,
    "decoded": {},
}


def _save_pem_files(config: dict, pem_dir) -> dict:
    return save_pem_texts(
        config,
        _PEM_KEYS,
        pem_dir,
        not_pem="In the integration configuration, {key} is not PEM text (-----BEGIN …).",
        no_folder="The integration configuration carries {key} as text; choose a folder to save it in, or save "
        "it to a file yourself and choose that file.",
    )


def check_client_id(label: str, client_id: str | None, mqtt_version: str) -> None:
    """Tektelic's documented limits: 23 characters for MQTT 3.1, 256 for 3.1.1 and 5."""
    limit = MAX_CLIENT_ID_MQTT_31 if mqtt_version == MqttVersion.V31.value else MAX_CLIENT_ID
    if client_id and len(client_id) > limit:
        raise ProfileError(f"{label} has {len(client_id)} characters; MQTT {mqtt_version} allows at most {limit}.")


def check_host(host: str) -> str:
    """The host name or IP alone; a port, scheme or path is refused with a sentence."""
    host = host.strip()
    if "://" in host:
        raise ProfileError(f"Enter the host without a scheme such as mqtt:// ({host!r}); use SSL for TLS.")
    if "/" in host or any(c.isspace() for c in host):
        raise ProfileError(f"The host {host!r} is not a host name or IP address.")
    bracketed = re.fullmatch(r"\[([^\]]+)\](?::(\d+))?", host)
    if bracketed:
        if bracketed.group(2):
            raise ProfileError(
                f"The host may not include a port ({host!r}); enter {bracketed.group(1)} as host and "
                f"{bracketed.group(2)} under Port."
            )
        host = bracketed.group(1)
    if ":" in host:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            name, _, port = host.rpartition(":")
            if port.isdigit() and name:
                raise ProfileError(
                    f"The host may not include a port ({host!r}); enter {name} as host and {port} under Port."
                ) from None
            raise ProfileError(f"The host {host!r} is not a host name or IP address.") from None
    return host


def _qos_name(value):
    """QoS as Tektelic names it; the levels 0, 1, 2 (numbers or text) are accepted too."""
    if type(value) is int and 0 <= value <= 2:
        return QOS_NAMES[value]
    if isinstance(value, str):
        value = value.strip().upper()
        return QOS_NAMES[int(value)] if value in ("0", "1", "2") else value or None
    return value


def _lower_first(exc: Exception) -> str:
    text = str(exc)
    return text[:1].lower() + text[1:]


_MAX_U32 = 0xFFFFFFFF


def _int_in(value, maximum: int) -> int | None:
    """A whole number from 0 to `maximum`, else None: out of range it is not what the field holds,
    and an integer beyond 64 bits could not even be written out as JSON."""
    number = to_int(value)
    return number if number is not None and 0 <= number <= maximum else None


def _text(value) -> str | None:
    """Text of an id: strings as they are, numbers as text, {"id": …} objects (REST style) by their id."""
    if type(value) is dict:
        value = value.get("id")
    if type(value) is str:
        return value or None
    if type(value) is int:
        return str(value)
    return None


def _converter_errors(errors) -> str | None:
    """The converter's `errors`: a list (of texts or objects), or one text (some decoders set a string)."""
    if not errors:
        return None
    if type(errors) is str:
        return errors
    if type(errors) is not list:
        return orjson.dumps(errors).decode()
    parts = [item if type(item) is str else orjson.dumps(item).decode() for item in errors if item not in (None, "")]
    return "; ".join(parts) or None


def _byte_array(values) -> bytes | None:
    """A JSON array of numbers 0..255 as bytes, or None (a JSON true/false in it reads as 1/0)."""
    if type(values) is not list:
        return None
    try:
        return bytes(values)  # C speed; raises for anything but whole numbers 0..255
    except (TypeError, ValueError):
        return None


def _from_base64_strict(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


PLATFORM = TektelicPlatform()

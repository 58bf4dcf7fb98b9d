"""What every platform module provides: data (its profile fields) plus pure functions.

A platform is a `Platform` instance with:
- `fields`: the fields of its connection profile (they drive the wizards and the CLI options);
- `connection(profile)`: the profile as a ConnectionConfig, subscriptions included;
- `parse(topic, payload, properties)`: one message body as normalized events;
- `encode_downlink(profile, request)`: the platform's exact downlink message.
Profiles are plain dicts of field values (JSON-storable; secrets are resolved before use).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import orjson

from app.events import Event, error_event
from app.mqtt.config import ConfigError, ConnectionConfig, MqttVersion, TlsSettings, parse_url
from app.payload import json_error_text


class DecodeError(ValueError):
    """A message that is not what the platform sends; the text says what and where."""


class ProfileError(ConfigError):
    """A profile value outside the platform's documented limits, as a sentence."""


class EncodeError(ValueError):
    """A downlink that cannot be built (bad port, payload too long, missing device ...)."""


@dataclass(frozen=True, slots=True)
class ProfileField:
    name: str  # key in the profile dict; CLI option --name-with-dashes
    label: str
    kind: str = "text"  # text, secret, int, float, bool, choice, file, textarea
    default: object = None
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    help: str = ""  # from the platform's own docs
    required: bool = False
    placeholder: str = ""
    advanced: bool = False  # shown under "Advanced" in the wizard

    def check(self, value):
        """Returns the value converted to the field's type; raises ProfileError with a sentence."""
        if value is None or value == "":
            if self.required:
                raise ProfileError(f"{self.label} is required.")
            return self.default
        if self.kind == "int":
            try:
                value = int(value)
            except (TypeError, ValueError):
                raise ProfileError(f"{self.label} must be a whole number, not {value!r}.") from None
        elif self.kind == "float":
            try:
                value = float(value)
            except (TypeError, ValueError):
                raise ProfileError(f"{self.label} must be a number, not {value!r}.") from None
        elif self.kind == "bool":
            if isinstance(value, str):
                value = value.strip().lower() in ("1", "true", "yes", "on")
            value = bool(value)
        elif self.kind == "choice":
            by_lower = {str(c).lower(): c for c in self.choices}
            value = by_lower.get(str(value).lower(), value)
            if value not in self.choices:
                raise ProfileError(f"{self.label} must be one of {', '.join(self.choices)}, not {value!r}.")
        else:
            value = str(value)
        if self.kind in ("int", "float"):
            if self.minimum is not None and value < self.minimum:
                raise ProfileError(f"{self.label} must be at least {self.minimum:g} (got {value}).")
            if self.maximum is not None and value > self.maximum:
                raise ProfileError(f"{self.label} must be at most {self.maximum:g} (got {value}).")
        return value


@dataclass(frozen=True, slots=True)
class DownlinkRequest:
    device_id: str | None = None
    dev_eui: str | None = None
    f_port: int | None = None
    payload: bytes | None = None  # the frame payload (raw bytes)
    decoded: object = None  # a JSON object for the platform's encoder/driver instead of bytes
    confirmed: bool = False
    priority: str | None = None
    replace: bool = False  # TTS: replace the queue instead of appending
    flush_queue: bool = False  # ThingPark FlushDownlinkQueue
    command: str | None = None  # Drogue command name
    correlation_ids: tuple[str, ...] = ()
    template: str | None = None  # Tektelic body template name
    content_type: str | None = None


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False
    properties: dict = field(default_factory=dict)  # MQTT 5: content_type, user_properties


class Platform:
    name = "generic"
    label = "Generic MQTT"
    description = ""
    fields: tuple[ProfileField, ...] = ()
    # Named, editable downlink body templates (Tektelic); empty elsewhere.
    downlink_templates: dict[str, str] = {}

    def field(self, name: str) -> ProfileField:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)

    def defaults(self) -> dict:
        return {f.name: f.default for f in self.fields}

    def validate(self, profile: dict) -> dict:
        """The profile with every value checked and converted; missing values take the field's
        default; unknown keys are kept."""
        out = dict(profile)
        for f in self.fields:
            value = profile.get(f.name)
            if (value is None or value == "") and f.default is not None:
                value = f.default
            out[f.name] = f.check(value)
        return out

    def parser_for(self, profile: dict) -> Platform:
        """A parser that knows the profile (e.g. ThingPark's topic pattern); by default itself."""
        return self

    def row_parser(self, profile: dict):
        """None, or a fast path for the live table: f(topic, payload, ts, row_id) -> (row in
        app.store.ROW_FIELDS order, received_at, correlation_ids), or None to leave the message to
        parse_or_error. It must build exactly the row parse_or_error's event gives."""
        return None

    def credentials_provider(self, profile: dict):
        """None, or a callable returning (username, password, expires_at) fresh for each connect
        (akenza's device JWTs expire)."""
        return None

    def connection(self, profile: dict) -> ConnectionConfig:
        raise NotImplementedError

    def parse(self, topic: str, payload: bytes, properties: dict | None = None) -> list[Event]:
        raise NotImplementedError

    def encode_downlink(self, profile: dict, request: DownlinkRequest) -> OutgoingMessage:
        raise EncodeError(f"{self.label} profiles cannot send downlinks.")

    # Which profile field the CLI's --topic-pattern fills (ThingPark's downlink pattern,
    # Tektelic's pullTopic ...); None if the platform has no such field.
    topic_pattern_field: str | None = None

    def parse_or_error(self, topic: str, payload: bytes, properties: dict | None = None) -> list[Event]:
        """parse(), with a message that is not what the platform sends as one `error` event."""
        try:
            return self.parse(topic, payload, properties)
        except DecodeError as exc:
            return [error_event(self.name, topic, str(exc))]


# ----- helpers the platform modules share ---------------------------------------------------

MAX_BODY = 4 * 1024 * 1024  # a platform message larger than this is not one


def load_json_object(payload: bytes, what: str) -> dict:
    """The body as a JSON object, or a DecodeError that says what is wrong and where."""
    if not payload:
        raise DecodeError(f"The message is empty; a {what} is a JSON object.")
    if len(payload) > MAX_BODY:
        raise DecodeError(f"The message is {len(payload):,} bytes, too large to be a {what}.")
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(f"The message is not valid JSON: {json_error_text(exc, payload)}.") from None
    if not isinstance(doc, dict):
        raise DecodeError(f"The message is JSON but not an object ({type(doc).__name__}); a {what} is an object.")
    return doc


def json_type(value) -> str:
    """'a number', 'an array' ...: how error sentences name what a message held instead."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def to_int(value) -> int | None:
    """JSON numbers or numeric strings ('868300000', '1') as int; None if absent or not numeric."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if -(2**63) < value < 2**63 else None
    try:
        f = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    if f != f or abs(f) >= 2**63:  # NaN, infinities and what no 64-bit column can hold
        return None
    return int(f)


def to_float(value) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        f = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return f if f == f and abs(f) != float("inf") else None


def upper_hex(value) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    return value.replace(":", "").replace("-", "").upper()


def broker_fields(
    default_url: str = "", *, username_help: str = "", password_help: str = ""
) -> tuple[ProfileField, ...]:
    """The connection fields most platforms share; a platform adds or replaces its own."""
    return (
        ProfileField(
            "url",
            "Broker",
            required=True,
            default=default_url or None,
            placeholder="mqtts://broker.example.com:8883",
            help="mqtt://, mqtts://, ws:// or wss:// with host and optional port.",
        ),
        ProfileField("username", "Username", help=username_help),
        ProfileField("password", "Password", "secret", help=password_help),
        ProfileField(
            "client_id", "Client id", help="Left empty, one is generated and kept for the session.", advanced=True
        ),
        ProfileField(
            "mqtt_version",
            "MQTT version",
            "choice",
            default="3.1.1",
            choices=tuple(v.value for v in MqttVersion),
            advanced=True,
        ),
        ProfileField("keepalive", "Keepalive (s)", "int", default=60, minimum=0, maximum=65535, advanced=True),
        ProfileField(
            "clean_session",
            "Clean session",
            "bool",
            default=True,
            advanced=True,
            help="Off: the broker keeps the subscriptions and queues QoS 1/2 messages while away.",
        ),
        ProfileField(
            "ca_file",
            "CA certificate",
            "file",
            advanced=True,
            help="Empty: the operating system's trusted certificates.",
        ),
        ProfileField(
            "cert_file", "Client certificate", "file", advanced=True, help="PEM, DER or a PKCS#12 (.p12/.pfx) bundle."
        ),
        ProfileField("key_file", "Client private key", "file", advanced=True),
        ProfileField("key_password", "Key password", "secret", advanced=True),
        ProfileField("verify_certificate", "Verify the broker's certificate", "bool", default=True, advanced=True),
    )


def tls_from_profile(profile: dict) -> TlsSettings:
    return TlsSettings(
        ca_file=profile.get("ca_file") or None,
        cert_file=profile.get("cert_file") or None,
        key_file=profile.get("key_file") or None,
        key_password=profile.get("key_password") or None,
        verify_certificate=profile.get("verify_certificate", True) is not False,
        verify_hostname=profile.get("verify_certificate", True) is not False,
    )


def config_from_profile(profile: dict, subscriptions=(), **overrides) -> ConnectionConfig:
    """A ConnectionConfig from the shared broker fields; overrides win."""
    values = dict(
        username=profile.get("username") or None,
        password=profile.get("password") or None,
        client_id=profile.get("client_id") or "",
        mqtt_version=MqttVersion(profile.get("mqtt_version") or "3.1.1"),
        keepalive=int(profile.get("keepalive") or 60),
        clean_session=profile.get("clean_session", True) is not False,
        tls=tls_from_profile(profile),
        subscriptions=tuple(subscriptions),
    )
    values.update(overrides)
    url = values.pop("url", None) or profile.get("url")
    if not url:
        raise ProfileError("The broker address is missing; enter it as mqtts://host:port.")
    return parse_url(url, **values)

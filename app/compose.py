"""The downlink composer's model: one form per platform, built into the exact message to send.

Qt-free so that what the window previews, copies as a mosquitto_pub command and sends is one
object made in one place: `Composition.build()` turns the form's values and the payload into a
DownlinkRequest and hands it to the platform's own `encode_downlink` (app/platforms/), which
checks ports, lengths and ids and writes the body. The preview shows that OutgoingMessage, the
copied command publishes that OutgoingMessage, and Send hands that OutgoingMessage to the outbox;
nothing is encoded twice. An EncodeError is kept as its sentence, with the form field it is about
when the sentence names one, for the window to show inline.

What the form asks per platform (FIELDS) follows each encoder's DownlinkRequest use:
- tts: device, f_port, frm_payload (bytes) or decoded_payload (a JSON object for the
  application's formatter), priority, confirmed, push or replace, clear the queue (replace with
  nothing), correlation ids;
- thingpark: DevEUI, FPort 1..224, payload_hex or a decoded payload for the driver, Confirmed,
  FlushDownlinkQueue, CorrelationID;
- drogue: device, command name, an FPort that makes the command `port:<n>` (Drogue's The Things
  Stack integration), the MQTT 5 content type;
- tektelic: DevEUI, device id, FPort, confirmed and which downlink template of the profile
  writes the body (a template using {decoded} takes the payload as a JSON object);
- akenza: the console is the device: the device id (another only with an uplink secret), the
  uplink sub-topic and the MQTT 5 content type;
- generic: topic, QoS, retain and the MQTT 5 properties (content type, user properties, message
  expiry, response topic). The generic encoder writes topic, QoS and content type; retain and
  the other properties are set on its message here, since a generic publish is just that.

The byte count is checked against the platform's limit (the encoders refuse beyond it) and,
for LoRaWAN platforms, against the maximum application payload for the device's data rate and
region from its last uplink (app/lorawan.py), or "unknown" when no uplink said.

Each composition has the id its downlink will have in the outbox (app.outbox.new_downlink_id),
and the request is tagged with it before encoding (app.outbox.tag_request: TTS gets
`uplink-console:downlink:<id>` among its correlation ids, ThingPark the id as CorrelationID when
the user gave none), so the preview already shows the body the outbox sends and delivery
tracking matches; the meta handed to send_downlink is app.outbox.meta_for_request's, with that id.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import shlex
from dataclasses import dataclass

import orjson

from app import platforms
from app.lorawan import DownlinkLimit, downlink_limit
from app.mqtt.config import ConnectionConfig, MqttVersion, validate_topic_name
from app.outbox import meta_for_request, new_downlink_id, tag_request
from app.payload import PayloadError, decode, is_printable_text
from app.platforms.base import DownlinkRequest, EncodeError, OutgoingMessage

LORAWAN_MAX_PAYLOAD = 242  # the largest FRMPayload any region allows (its fastest data rates)


@dataclass(frozen=True, slots=True)
class ComposeField:
    name: str
    label: str
    kind: str = "text"  # text, int, bool, choice, lines
    default: object = None
    choices: tuple = ()
    help: str = ""
    placeholder: str = ""
    minimum: int | None = None
    maximum: int | None = None


_BYTES_OR_DECODED_HELP = "Bytes from the payload editor, or the editor's JSON object for the platform to encode."

FIELDS: dict[str, tuple[ComposeField, ...]] = {
    "tts": (
        ComposeField("device_id", "Device", placeholder="dev1", help="The end device id in the application."),
        ComposeField("f_port", "FPort", "int", 1, minimum=1, maximum=233, help="1 to 233 (224 is the test port)."),
        ComposeField(
            "payload_mode",
            "Send as",
            "choice",
            "frm_payload",
            ("frm_payload", "decoded_payload"),
            help="frm_payload: the bytes; decoded_payload: a JSON object the application's downlink formatter encodes.",
        ),
        ComposeField(
            "priority",
            "Priority",
            "choice",
            None,
            ("LOWEST", "LOW", "BELOW_NORMAL", "NORMAL", "ABOVE_NORMAL", "HIGH", "HIGHEST"),
        ),
        ComposeField("confirmed", "Confirmed", "bool", False, help="The device acknowledges it (an ack event)."),
        ComposeField(
            "operation",
            "Queue",
            "choice",
            "push",
            ("push", "replace"),
            help="push: after what is queued; replace: instead of the device's whole queue.",
        ),
        ComposeField("clear_queue", "Clear the queue", "bool", False, help="Replace the queue with nothing."),
        ComposeField(
            "correlation_ids",
            "Correlation ids",
            "lines",
            "",
            placeholder="my-app:request:42",
            help="Your own, one per line or comma; the console adds its own to follow the downlink.",
        ),
    ),
    "thingpark": (
        ComposeField("dev_eui", "DevEUI", placeholder="0018B20000000B20", help="16 hex digits."),
        ComposeField("f_port", "FPort", "int", 1, minimum=1, maximum=224, help="1 to 224."),
        ComposeField(
            "payload_mode",
            "Send as",
            "choice",
            "payload_hex",
            ("payload_hex", "payload"),
            help="payload_hex: the bytes; payload: the editor's JSON for the device's driver.",
        ),
        ComposeField("confirmed", "Confirmed", "bool", False),
        ComposeField("flush_queue", "Flush the downlink queue", "bool", False, help="FlushDownlinkQueue: 1."),
        ComposeField(
            "validity_time",
            "Valid until",
            placeholder="empty: no limit; 30m, 2h, or 2026-12-01T18:00+01:00",
            help="ValidityTime: ThingPark drops the downlink if it cannot send it by then.",
        ),
        ComposeField(
            "correlation_id",
            "CorrelationID",
            placeholder="empty: the console's downlink id",
            help="16 hex digits; ThingPark's Sent and Rejected reports name it.",
        ),
    ),
    "drogue": (
        ComposeField("device_id", "Device", placeholder="device1"),
        ComposeField("command", "Command", placeholder="set-led", help="The command name the device receives."),
        ComposeField(
            "f_port",
            "LoRaWAN FPort",
            "int",
            None,
            minimum=1,
            maximum=223,
            help="For a device behind The Things Stack: the command becomes port:<n>.",
        ),
        ComposeField(
            "content_type", "Content type", placeholder="application/json", help="An MQTT 5 property (empty: none)."
        ),
    ),
    "tektelic": (
        ComposeField("dev_eui", "DevEUI", placeholder="647FDA0000000000", help="16 hex digits."),
        ComposeField("device_id", "Device id", help="Only for a template that uses {deviceId}."),
        ComposeField("f_port", "FPort", "int", 1, minimum=1, maximum=223, help="1 to 223."),
        ComposeField(
            "template", "Body template", "choice", None, help="The profile's body template the network server reads."
        ),
        ComposeField("confirmed", "Confirmed", "bool", False),
    ),
    "akenza": (
        ComposeField("device_id", "Device", help="This connection's device; another only with an uplink secret."),
        ComposeField("subtopic", "Sub-topic", placeholder="sensors/room1", help="Appended to /up/…/{id}/."),
        ComposeField(
            "content_type",
            "Content type",
            "choice",
            "",
            ("", "application/json", "text/plain", "application/xml", "text/csv", "application/octet-stream"),
            help="An MQTT 5 property; empty: the profile's (akenza then reads JSON).",
        ),
    ),
    "generic": (
        ComposeField("topic", "Topic", placeholder="devices/dev1/down"),
        ComposeField("qos", "QoS", "choice", 0, (0, 1, 2)),
        ComposeField("retain", "Retain", "bool", False, help="The broker keeps it for later subscribers."),
        ComposeField("content_type", "Content type", placeholder="application/json", help="MQTT 5."),
        ComposeField(
            "user_properties", "User properties", "lines", "", placeholder="name=value", help="MQTT 5; one per line."
        ),
        ComposeField("message_expiry", "Message expiry (s)", "int", None, minimum=0, help="MQTT 5."),
        ComposeField("response_topic", "Response topic", help="MQTT 5."),
    ),
}

# Words in an encoder's sentence -> the form field it is about (checked in this order).
_FIELD_WORDS = (
    ("validitytime", ("validity_time",)),
    ("correlation", ("correlation_ids", "correlation_id")),
    ("content type", ("content_type",)),
    ("deveui", ("dev_eui",)),
    ("device eui", ("dev_eui",)),
    ("fport", ("f_port",)),
    ("template", ("template",)),
    ("command", ("command",)),
    ("device", ("device_id",)),
    ("topic", ("topic",)),
    ("priority", ("priority",)),
)


def fields_for(platform_name: str, profile: dict | None = None) -> tuple[ComposeField, ...]:
    """The form's fields, with defaults from the profile (TTS priority, Tektelic templates, akenza
    device, generic topic and QoS)."""
    profile = profile or {}
    out = []
    for f in FIELDS.get(platform_name, FIELDS["generic"]):
        if platform_name == "tts" and f.name == "priority":
            f = dataclasses.replace(f, default=str(profile.get("downlink_priority") or "NORMAL").upper())
        elif platform_name == "tektelic" and f.name == "template":
            names = tuple(_tektelic_templates(profile))
            f = dataclasses.replace(f, choices=names, default=profile.get("downlink_template") or names[0])
        elif platform_name == "akenza" and f.name == "device_id":
            f = dataclasses.replace(f, default=profile.get("device_id") or "")
        elif platform_name == "akenza" and f.name == "subtopic":
            f = dataclasses.replace(f, default=profile.get("uplink_subtopic") or "")
        elif platform_name == "akenza" and f.name == "content_type":
            f = dataclasses.replace(f, default=profile.get("content_type") or "")
        elif platform_name == "generic" and f.name == "topic":
            f = dataclasses.replace(f, default=profile.get("publish_topic") or "")
        elif platform_name == "generic" and f.name == "qos":
            f = dataclasses.replace(f, default=int(profile.get("qos") or 0))
        out.append(f)
    return tuple(out)


def _tektelic_templates(profile: dict) -> dict[str, str]:
    try:
        return platforms.get("tektelic").templates(profile)
    except Exception:  # a profile with a template text that does not parse: the built-in ones
        return dict(platforms.get("tektelic").downlink_templates)


@dataclass(frozen=True, slots=True)
class PayloadState:
    data: bytes | None  # None: the text is not valid in its format
    error: str | None
    platform_limit: int | None
    lorawan: DownlinkLimit | None
    lorawan_applies: bool

    @property
    def size(self) -> int | None:
        return None if self.data is None else len(self.data)

    def count_text(self) -> str:
        """'12 bytes · platform at most 242 · LoRaWAN 51 bytes at DR0 (EU868)' and the like."""
        if self.data is None:
            return "—"
        parts = [f"{len(self.data):,} byte{'s' if len(self.data) != 1 else ''}"]
        if self.platform_limit is not None:
            parts.append(f"platform limit {self.platform_limit}")
        if self.lorawan_applies:
            if self.lorawan is None:
                parts.append("LoRaWAN limit unknown (no uplink with its data rate yet)")
            else:
                parts.append(f"LoRaWAN limit {self.lorawan.describe()}")
        return " · ".join(parts)

    def over_hint(self) -> str | None:
        """What over_limit says, short, for the line under the byte count (which shows the limits)."""
        if self.data is None:
            return None
        n = len(self.data)
        if self.platform_limit is not None and n > self.platform_limit:
            return "More than this platform sends in one downlink."
        if self.lorawan_applies and self.lorawan is not None and n > self.lorawan.max_payload:
            return (
                "Too long for the data rate the device last used: it may never arrive unless the device moves to "
                "a faster one."
            )
        return None

    def over_limit(self) -> str | None:
        """A sentence when the payload is longer than a limit that applies; else None."""
        if self.data is None:
            return None
        n = len(self.data)
        if self.platform_limit is not None and n > self.platform_limit:
            return f"The payload is {n} bytes; this platform sends at most {self.platform_limit}."
        if self.lorawan_applies and self.lorawan is not None and n > self.lorawan.max_payload:
            return (
                f"The payload is {n} bytes, more than the {self.lorawan.describe()} the device last used: it may "
                "never arrive unless the device moves to a faster data rate."
            )
        return None


@dataclass(frozen=True, slots=True)
class Composed:
    message: OutgoingMessage | None
    error: str | None = None
    field: str | None = None  # the form field the error is about, "payload", or None
    meta: dict | None = None


class Composition:
    """The state of one composer: the form's values, the payload as typed, the device's radio."""

    def __init__(self, platform_name: str, profile: dict | None = None, config: ConnectionConfig | None = None):
        self.platform_name = platform_name if platform_name in FIELDS else "generic"
        self.platform = platforms.get(self.platform_name)
        self.profile = dict(profile or {})
        self.config = config
        self.fields = fields_for(self.platform_name, self.profile)
        self.values: dict = {f.name: f.default for f in self.fields}
        self.payload_format = "hex"
        self.payload_text = ""
        self.radio: tuple | None = None  # (spreading factor, bandwidth Hz, frequency Hz) of the last uplink
        self.renew()

    # ----- state
    def renew(self) -> None:
        """New ids for the next downlink (after one was sent)."""
        self.downlink_id = new_downlink_id()

    def field(self, name: str) -> ComposeField | None:
        return next((f for f in self.fields if f.name == name), None)

    def set(self, name: str, value) -> None:
        self.values[name] = value

    def set_payload(self, text: str, fmt: str) -> None:
        self.payload_text, self.payload_format = text, fmt

    def set_radio(self, spreading_factor, bandwidth_hz, frequency_hz) -> None:
        self.radio = (spreading_factor, bandwidth_hz, frequency_hz)

    def prefill(self, *, device_id=None, dev_eui=None, f_port=None, radio=None) -> None:
        """Reply: the device, DevEUI and FPort of an uplink or a device row, where the form has them."""
        names = {f.name for f in self.fields}
        if device_id and "device_id" in names:
            self.values["device_id"] = device_id
        if dev_eui and "dev_eui" in names:
            self.values["dev_eui"] = dev_eui
        if device_id and self.platform_name == "thingpark" and not dev_eui and len(str(device_id)) == 16:
            self.values["dev_eui"] = device_id
        if f_port is not None and "f_port" in names:
            f = self.field("f_port")
            if (f.minimum is None or f_port >= f.minimum) and (f.maximum is None or f_port <= f.maximum):
                self.values["f_port"] = f_port
                if self.platform_name == "drogue" and not self.values.get("command"):
                    self.values["command"] = f"port:{f_port}"
        if radio is not None:
            self.set_radio(*radio)

    def form_values(self) -> dict:
        """The values as a template saves them (JSON-able)."""
        return {k: v for k, v in self.values.items() if v not in (None, "")}

    def apply_values(self, values: dict) -> None:
        for f in self.fields:
            if f.name in values:
                self.values[f.name] = values[f.name]

    # ----- the payload
    def lorawan_applies(self) -> bool:
        if self.platform_name in ("akenza", "generic"):
            return False
        if self.platform_name == "drogue":
            return self.values.get("f_port") not in (None, "") or str(self.values.get("command") or "").startswith(
                "port:"
            )
        return True

    def payload_state(self) -> PayloadState:
        try:
            data, error = decode(self.payload_text, self.payload_format), None
        except PayloadError as exc:
            data, error = None, str(exc)
        limit = LORAWAN_MAX_PAYLOAD if self.lorawan_applies() else None
        lorawan = downlink_limit(*self.radio) if self.radio else None
        return PayloadState(data, error, limit, lorawan, self.lorawan_applies())

    def uses_decoded(self) -> bool:
        mode = self.values.get("payload_mode")
        if mode in ("decoded_payload", "payload"):
            return True
        if self.platform_name == "tektelic":
            template = _tektelic_templates(self.profile).get(self.values.get("template") or "")
            return bool(template) and "{decoded}" in template
        return False

    # ----- building
    def _int(self, name: str) -> int | None:
        value = self.values.get(name)
        if value is None or value == "":
            return None
        if isinstance(value, bool):
            raise _FieldError(name, f"{self.field(name).label} must be a whole number.")
        try:
            return int(str(value).strip())
        except ValueError:
            raise _FieldError(name, f"{self.field(name).label} must be a whole number, not {value!r}.") from None

    def _text(self, name: str) -> str | None:
        value = self.values.get(name)
        text = "" if value is None else str(value).strip()
        return text or None

    def _lines(self, name: str) -> list[str]:
        text = str(self.values.get(name) or "")
        return [part.strip() for line in text.splitlines() for part in line.split(",") if part.strip()]

    def request(self, data: bytes | None) -> DownlinkRequest:
        """The DownlinkRequest for the form and the payload bytes (raises _FieldError)."""
        p = self.platform_name
        payload, decoded = data, None
        if self.uses_decoded() and data is not None:
            try:
                decoded = orjson.loads(data) if data else None
            except orjson.JSONDecodeError:
                raise _FieldError(
                    "payload", "To send a decoded payload, write it as JSON (switch the editor to JSON)."
                ) from None
            if decoded is None:
                raise _FieldError("payload", "Enter the JSON object to send as the decoded payload.")
            payload = None
        values = {
            "device_id": self._text("device_id"),
            "dev_eui": self._text("dev_eui"),
            "f_port": self._int("f_port") if self.field("f_port") else None,
            "payload": payload,
            "decoded": decoded,
            "confirmed": bool(self.values.get("confirmed")),
        }
        if p == "tts":
            cids = self._lines("correlation_ids")
            values.update(
                priority=self._text("priority"),
                replace=self.values.get("operation") == "replace" or bool(self.values.get("clear_queue")),
                correlation_ids=tuple(cids),
            )
            if self.values.get("clear_queue"):
                values.update(payload=None, decoded=None)
        elif p == "thingpark":
            values.update(
                validity_time=validity_time_text(self._text("validity_time")),
                flush_queue=bool(self.values.get("flush_queue")),
                correlation_ids=(self._text("correlation_id"),) if self._text("correlation_id") else (),
            )
        elif p == "drogue":
            values.update(command=self._text("command"), content_type=self._text("content_type"))
            if values["f_port"] is not None and values["command"] == f"port:{values['f_port']}":
                values["command"] = None  # the encoder makes it from the FPort
        elif p == "tektelic":
            values.update(template=self._text("template"))
        elif p in ("akenza", "generic"):
            values.update(content_type=self._text("content_type"), f_port=None)
        return DownlinkRequest(**values)

    def profile_for_encoder(self) -> dict:
        profile = dict(self.profile)
        if self.platform_name == "akenza":
            subtopic = self._text("subtopic")
            profile["uplink_subtopic"] = subtopic or ""
        elif self.platform_name == "generic":
            profile["publish_topic"] = self._text("topic") or ""
            profile["qos"] = self._int("qos") or 0
        return profile

    def build(self) -> Composed:
        """The exact message, or the sentence that says why there is none (and the field it is about)."""
        state = self.payload_state()
        if state.error is not None:
            return Composed(None, state.error, "payload")
        try:
            request = self.request(state.data if (state.data or not self._empty_means_none()) else None)
            tagged = tag_request(self.platform_name, request, self.downlink_id)
            message = self.platform.encode_downlink(self.profile_for_encoder(), tagged)
            if self.platform_name == "generic":
                message = self._generic_extras(message)
        except _FieldError as exc:
            return Composed(None, exc.sentence, exc.field)
        except EncodeError as exc:
            sentence = str(exc)
            return Composed(None, sentence, self._field_of(sentence))
        return Composed(message, None, None, self._meta(message, request))

    def _empty_means_none(self) -> bool:
        # An empty editor is "no payload" (the encoders then ask for one, or TTS clears the queue),
        # except where an empty body is a message of its own (a Drogue command, a generic publish).
        return self.platform_name not in ("drogue", "generic")

    def _generic_extras(self, message: OutgoingMessage) -> OutgoingMessage:
        try:
            validate_topic_name(message.topic)
        except Exception as exc:
            raise _FieldError("topic", str(exc)) from None
        properties = dict(message.properties)
        pairs = []
        for line in str(self.values.get("user_properties") or "").splitlines():
            if not line.strip():
                continue
            name, sep, value = line.partition("=")
            if not sep or not name.strip():
                raise _FieldError(
                    "user_properties", f"Write each user property as name=value; {line.strip()!r} is not."
                )
            pairs.append((name.strip(), value.strip()))
        if pairs:
            properties["user_properties"] = pairs
        expiry = self._int("message_expiry")
        if expiry is not None:
            if expiry < 0:
                raise _FieldError("message_expiry", "Message expiry is a number of seconds, 0 or more.")
            properties["message_expiry"] = expiry
        response_topic = self._text("response_topic")
        if response_topic:
            try:
                validate_topic_name(response_topic)
            except Exception as exc:
                raise _FieldError("response_topic", str(exc)) from None
            properties["response_topic"] = response_topic
        if properties and not self._mqtt5():
            raise _FieldError(
                "content_type" if "content_type" in properties else "user_properties",
                "MQTT 5 properties need an MQTT 5 connection; set the connection's MQTT version to 5 or leave them "
                "empty.",
            )
        return dataclasses.replace(message, retain=bool(self.values.get("retain")), properties=properties)

    def _mqtt5(self) -> bool:
        if self.config is not None:
            return self.config.mqtt_version == MqttVersion.V5
        return str(self.profile.get("mqtt_version") or "") == "5"

    def _field_of(self, sentence: str) -> str | None:
        lower = sentence.lower().replace(" ", "")
        names = {f.name for f in self.fields}
        for words, fields in _FIELD_WORDS:
            if words.replace(" ", "") in lower:
                for name in fields:
                    if name in names:
                        return name
        if "payload" in lower:
            return "payload"
        return None

    def _meta(self, message: OutgoingMessage, request: DownlinkRequest) -> dict:
        """What the outbox keeps beside the message, for the Downlinks view and delivery matching."""
        meta = meta_for_request(self.platform_name, request, id=self.downlink_id)
        if request.command:
            meta["command"] = request.command
        return meta


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|hours?|d|days?)\s*$", re.IGNORECASE)
_SECONDS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hour": 3600, "hours": 3600, "d": 86400}


def validity_time_text(text: str | None, now: dt.datetime | None = None) -> str | None:
    """The composer's "Valid until": a duration from now (30m, 2h, 1d) becomes the ISO 8601 time
    ThingPark reads; an ISO time is passed on for the encoder to check; empty is no limit."""
    if not text:
        return None
    match = _DURATION.match(text)
    if match is None:
        return text
    unit = match.group(2).lower()
    seconds = float(match.group(1)) * _SECONDS.get(unit, _SECONDS.get(unit.rstrip("s"), 86400))
    moment = (now or dt.datetime.now(dt.UTC)) + dt.timedelta(seconds=seconds)
    return moment.astimezone().isoformat(timespec="milliseconds")


class _FieldError(Exception):
    def __init__(self, field: str, sentence: str) -> None:
        super().__init__(sentence)
        self.field, self.sentence = field, sentence


# ----- showing the message ---------------------------------------------------------------------


def body_text(payload: bytes) -> str:
    """The body as the preview shows it: indented JSON, text, or spaced hex for binary."""
    if payload[:1] in (b"{", b"["):
        try:
            return orjson.dumps(orjson.loads(payload), option=orjson.OPT_INDENT_2).decode()
        except orjson.JSONDecodeError:
            pass
    if is_printable_text(payload):
        return payload.decode("utf-8")
    return payload.hex(" ")


def exact_body_text(payload: bytes) -> str:
    """The body as it goes out: its text when it is UTF-8 text, else spaced hex of every byte."""
    if is_printable_text(payload):
        return payload.decode("utf-8")
    return payload.hex(" ")


def properties_text(properties: dict) -> str:
    if not properties:
        return "none"
    parts = []
    for name, value in properties.items():
        if name == "user_properties":
            parts.extend(f"user property {k}={v}" for k, v in value)
        else:
            parts.append(f"{name.replace('_', ' ')}: {value}")
    return "; ".join(parts)


def preview_rows(message: OutgoingMessage) -> list[tuple[str, str]]:
    return [
        ("Topic", message.topic),
        ("QoS", str(message.qos)),
        ("Retain", "yes" if message.retain else "no"),
        ("Properties", properties_text(message.properties)),
        ("Body", f"{len(message.payload):,} bytes"),
    ]


_MOSQUITTO_VERSION = {MqttVersion.V5: "mqttv5", MqttVersion.V31: "mqttv31"}
_PROPERTY_NAMES = {
    "content_type": "content-type",
    "message_expiry": "message-expiry-interval",
    "response_topic": "response-topic",
    "correlation_data": "correlation-data",
}


def mosquitto_pub_command(message: OutgoingMessage, config: ConnectionConfig | None) -> str:
    """A shell command that publishes exactly this message with mosquitto_pub (the password left
    out: it reads $MQTT_PASSWORD). Lines that cannot be expressed say so as # comments."""
    q = shlex.quote
    notes: list[str] = []
    args = ["mosquitto_pub"]
    if config is not None:
        args += ["-h", q(config.host), "-p", str(config.effective_port)]
        if config.transport.uses_websockets:
            notes.append("# mosquitto_pub speaks MQTT over TCP only; this connection uses websockets.")
        version = _MOSQUITTO_VERSION.get(config.mqtt_version)
        if version:
            args += ["-V", version]
        if config.client_id:
            args += ["-i", q(config.client_id)]
        if config.username:
            args += ["-u", q(config.username)]
        if config.password or config.username:
            notes.append("# The password is left out: set it first with  read -rs MQTT_PASSWORD; export MQTT_PASSWORD")
            args += ["-P", '"$MQTT_PASSWORD"']
        if config.transport.uses_tls:
            tls = config.tls
            args += ["--cafile", q(tls.ca_file)] if tls.ca_file else ["--tls-use-os-certs"]
            if tls.cert_file:
                if str(tls.cert_file).lower().endswith((".p12", ".pfx")):
                    notes.append(
                        "# mosquitto_pub reads PEM only: convert the PKCS#12 bundle with openssl pkcs12 first."
                    )
                args += ["--cert", q(tls.cert_file)]
                if tls.key_file:
                    args += ["--key", q(tls.key_file)]
            if not tls.verify_certificate or not tls.verify_hostname:
                args.append("--insecure")
    else:
        notes.append("# Add -h HOST -p PORT (and -u USER -P PASSWORD) for the broker.")
    args += ["-t", q(message.topic), "-q", str(message.qos)]
    if message.retain:
        args.append("-r")
    if message.properties and "-V" not in args:
        args += ["-V", "mqttv5"]  # properties exist only in MQTT 5 (no config given: assume it)
    for name, value in message.properties.items():
        if name == "user_properties":
            for key, val in value:
                args += ["-D", "publish", "user-property", q(str(key)), q(str(val))]
        elif name in _PROPERTY_NAMES:
            args += ["-D", "publish", _PROPERTY_NAMES[name], q(str(value))]
    payload = message.payload
    if not payload:
        args.append("-n")
        command = " ".join(args)
    elif is_printable_text(payload) and "\x00" not in payload.decode("utf-8"):
        args += ["-m", q(payload.decode("utf-8"))]
        command = " ".join(args)
    else:
        octal = "".join(f"\\{b:03o}" for b in payload)
        command = f"printf '{octal}' | {' '.join(args)} -s"
    return "\n".join([*notes, command])

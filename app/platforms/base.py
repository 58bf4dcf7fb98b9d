"""What every platform module provides: data (its profile fields) plus pure functions.

A platform is a `Platform` instance with:
- `fields`: the fields of its connection profile (they drive the wizards and the CLI options);
- `connection(profile)`: the profile as a ConnectionConfig, subscriptions included;
- `parse(topic, payload, properties)`: one message body as normalized events;
- `encode_downlink(profile, request)`: the platform's exact downlink message.
Profiles are plain dicts of field values (JSON-storable; secrets are resolved before use).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from array import array
from dataclasses import dataclass, field
from itertools import accumulate

import orjson

from app.events import Event, error_event
from app.mqtt.config import ConfigError, ConnectionConfig, MqttVersion, TlsSettings, parse_url
from app.payload import json_error_text

log = logging.getLogger(__name__)


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
    advanced: bool = False  # shown under "More options" on its wizard page
    page: str = ""  # the wizard page that asks for it (app/wizard_flow.py names each platform's pages)
    choice_labels: tuple[str, ...] = ()  # for a choice: how the wizard words each choice, same order

    def choice_label(self, choice) -> str:
        """How the wizard shows one of the choices (the choice itself when it has no label)."""
        try:
            return self.choice_labels[self.choices.index(choice)]
        except (ValueError, IndexError):
            return str(choice)

    def range_text(self) -> str:
        """The documented range of a number field in words ("1 to 100", "at least 1"), or ""."""
        if self.kind not in ("int", "float"):
            return ""
        low, high = self.minimum, self.maximum
        if low is not None and high is not None:
            return f"{low:,g} to {high:,g}"
        if low is not None:
            return f"at least {low:,g}"
        if high is not None:
            return f"at most {high:,g}"
        return ""

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
    validity_time: str | None = None  # ThingPark ValidityTime: ISO 8601 with its offset


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

    def body_problem_for(self, payload: bytes, properties: dict | None = None) -> str | None:
        """body_problem(), for a platform that knows when a body is not read as JSON at all."""
        return body_problem(payload)

    def parse_or_error(self, topic: str, payload: bytes, properties: dict | None = None) -> list[Event]:
        """parse(), never raising: at least one event, and a message that is not what the platform
        sends (too large, nested too deeply, a value beyond what the table holds, anything parse()
        trips over) as one `error` event whose text says why."""
        try:
            problem = self.body_problem_for(payload, properties)
            if problem is None:
                events = self.parse(topic, payload, properties)
                if type(events) is list and events:
                    return events  # event_row takes whatever is in them
                problem = f"The console's {self.name} parser gave no event for this message."
        except DecodeError as exc:
            problem = str(exc)
        except Exception as exc:  # a parser bug must not end the session: the message becomes a row
            log.debug("%s parser failed on a message on %r", self.name, topic, exc_info=True)
            problem = unexpected_error_text(self.name, exc)
        return [error_event(self.name, topic if type(topic) is str else None, problem)]


def unexpected_error_text(platform: str, exc: BaseException) -> str:
    """The error row's sentence for an exception a parser did not mean to raise."""
    if isinstance(exc, RecursionError):
        return "The message is nested too deeply to be read."
    detail = " ".join(str(exc).split())
    detail = f": {detail[:160]}{'…' if len(detail) > 160 else ''}" if detail else ""
    return f"The console's {platform} parser failed on this message ({type(exc).__name__}{detail})."


# ----- the body guard: what no platform message is ---------------------------------------------

MAX_BODY = 4 * 1024 * 1024  # a platform message larger than this is not one
# JSON nested deeper than this is refused before any parser sees it. Real messages nest a handful
# of levels (a TTS uplink: 6, a ThingPark uplink: 4; device-decoded objects rarely 10), so 128 is
# ten times what any platform sends, and well inside what reads a decoded object afterwards:
# orjson.dumps (254 levels; every row's decoded object is written with it), orjson.loads (1024),
# msgspec and Python's own recursion limit (1000), which the details view and exports walk with.
MAX_DEPTH = 128


def too_large_text(size: int) -> str:
    return f"The message is {size:,} bytes, too large: a platform message is at most {MAX_BODY // 2**20} MiB."


def body_problem(payload: bytes) -> str | None:
    """A sentence if no platform message is like this body (larger than MAX_BODY, or JSON nested
    deeper than MAX_DEPTH), else None. Nearly free for ordinary bodies: fewer opening brackets
    than MAX_DEPTH prove the depth without a scan (~0.35 us for the 933-byte TTS uplink sample)."""
    size = len(payload)
    if size > MAX_BODY:
        return too_large_text(size)
    if size <= MAX_DEPTH:
        return None
    if type(payload) is not bytes:
        payload = bytes(payload)
    # bytes.replace finds with memchr: twice as fast as bytes.count for a handful of brackets.
    if size - len(payload.replace(b"{", b"").replace(b"[", b"")) <= MAX_DEPTH:
        return None
    depth = json_depth(payload)
    if depth > MAX_DEPTH:
        return f"The message nests JSON {depth:,} levels deep; at most {MAX_DEPTH} levels are accepted."
    return None


_ESCAPED_BACKSLASH, _ESCAPED_QUOTE = b"\\\\", b'\\"'
_JSON_STRING = re.compile(rb'"[^"]*"')  # once escaped quotes are gone, every string is "..."
# Outside strings a JSON text has only these bytes; a parser stops at the first other one.
_NOT_JSON = re.compile(rb"[^\t\n\r 0-9truefalsnE{}\[\]:,.+\-]")
_BRACKET_STEPS = bytes.maketrans(b"{[}]", b"\x01\x01\xff\xff")
_NOT_BRACKETS = bytes(sorted(set(range(256)) - set(b"{[}]")))


def json_depth(payload: bytes) -> int:
    """How deep a JSON parser reading this body would nest before it stops: brackets inside
    strings do not count, and neither does anything after the first byte that cannot be JSON
    (a binary body full of bracket bytes is not deep: a parser gives up at its first byte) or
    after the end of the first value. Each step runs in C (replace, a regex, translate,
    accumulate, array.index): ~10 ms for a 1 MB body, and only bodies with more than MAX_DEPTH
    brackets get here."""
    data = bytes(payload)
    if b"\\" in data:
        # Escaped backslashes first, so that in \\" the quote still ends the string.
        data = data.replace(_ESCAPED_BACKSLASH, b"").replace(_ESCAPED_QUOTE, b"")
    data = _JSON_STRING.sub(b"0", data)
    stop = _NOT_JSON.search(data)  # an unterminated string's quote stops it too
    if stop is not None:
        data = data[: stop.start()]
    if data.lstrip()[:1] not in (b"{", b"["):
        return 0  # a number, a string, a literal: one value, and a parser reads no further
    steps = array("b")
    steps.frombytes(data.translate(_BRACKET_STEPS, _NOT_BRACKETS))
    depths = array("i", accumulate(steps))
    # The first value ends where the depth is back at 0; a parser reads nothing after it.
    try:
        end = depths.index(0)
    except ValueError:
        end = len(depths)
    return max(depths[:end], default=0)


# ----- JSON numbers beyond a 64-bit float ------------------------------------------------------


class OutOfRange(float):
    """A JSON number no 64-bit float holds (1e400, a 400-digit integer), as it was written.

    orjson refuses a whole document for one such number; load_json_object reads the rest and puts
    this marker (±infinity, with the text and where it was) in its place, so the sentence can name
    the field."""

    def __new__(cls, text: str, path: str):
        self = super().__new__(cls, "-inf" if text.startswith("-") else "inf")
        self.text = text
        self.path = path
        return self

    def sentence(self) -> str:
        return f"{self.path or 'The message'} is {_clip_text(self.text)}, beyond any 64-bit floating-point number."


_MAX_OUT_OF_RANGE = 16  # numbers replaced before a message is refused as a whole
_NUMBER = re.compile(rb"-?[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?")
_TOKEN_TAG = "\x00oor" + os.urandom(6).hex() + ":"  # no device sends this string


def json_loads(payload: bytes) -> tuple[object, list[OutOfRange]]:
    """orjson.loads, except that numbers beyond a 64-bit float become OutOfRange markers (listed
    in document order) instead of refusing the document. Other errors raise orjson.JSONDecodeError;
    more than 16 such numbers raise DecodeError."""
    data = payload if type(payload) is bytes else bytes(payload)
    texts: list[str] = []
    while True:
        try:
            doc = orjson.loads(data)
            break
        except orjson.JSONDecodeError as exc:
            if not exc.msg.startswith("number is infinity"):
                raise
            if len(texts) >= _MAX_OUT_OF_RANGE:
                raise DecodeError(
                    f"The message holds more than {_MAX_OUT_OF_RANGE} numbers beyond any 64-bit floating-point number."
                ) from None
            start = exc.pos if data.isascii() else len(data.decode("utf-8", "replace")[: exc.pos].encode())
            number = _NUMBER.match(data, start)
            if number is None:
                raise
            token = orjson.dumps(f"{_TOKEN_TAG}{len(texts)}")
            texts.append(number.group().decode("ascii"))
            data = data[: number.start()] + token + data[number.end() :]
    if not texts:
        return doc, []
    return _put_markers(doc, texts)


def _put_markers(doc, texts: list[str]) -> tuple[object, list[OutOfRange]]:
    tag, found = _TOKEN_TAG, []

    def marker(token: str, path: str) -> OutOfRange:
        index = int(token[len(tag) :])
        m = OutOfRange(texts[index], path)
        found.append((index, m))
        return m

    if type(doc) is str:
        return (marker(doc, "") if doc.startswith(tag) else doc), [m for _, m in found]
    stack = [(doc, "")]
    while stack:  # no recursion: the document may nest up to orjson's 1024 levels
        node, path = stack.pop()
        for key, value in node.items() if type(node) is dict else enumerate(node):
            where = (f"{path}.{key}" if path else key) if type(key) is str else f"{path}[{key}]"
            if type(value) is str:
                if value.startswith(tag):
                    node[key] = marker(value, where)
            elif type(value) is dict or type(value) is list:
                stack.append((value, where))
    found.sort(key=lambda pair: pair[0])  # document order, as orjson met them
    return doc, [m for _, m in found]


def first_out_of_range(value) -> OutOfRange | None:
    """The first OutOfRange marker inside a JSON value (a decoded object), or None."""
    stack = [value]
    while stack:
        node = stack.pop()
        if type(node) is OutOfRange:
            return node
        if type(node) is dict:
            stack.extend(reversed(list(node.values())))
        elif type(node) is list:
            stack.extend(reversed(node))
    return None


# ----- helpers the platform modules share ---------------------------------------------------


def load_json_object(payload: bytes, what: str, *, out_of_range: list | None = None) -> dict:
    """The body as a JSON object, or a DecodeError that says what is wrong and where.

    A number beyond any 64-bit float is refused with its field named; or, given a list as
    out_of_range, kept as an OutOfRange marker and listed there (the caller then refuses it only
    where it reads it: TTS, whose fast path skips the fields it does not read)."""
    if not payload:
        raise DecodeError(f"The message is empty; a {what} is a JSON object.")
    if len(payload) > MAX_BODY:
        raise DecodeError(too_large_text(len(payload)))
    try:
        doc, markers = json_loads(payload)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(f"The message is not valid JSON: {json_error_text(exc, payload)}.") from None
    if markers:
        if out_of_range is None or type(doc) is not dict:
            raise DecodeError(markers[0].sentence())
        out_of_range.extend(markers)
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
    """JSON numbers or numeric strings ('868300000', '1') as int; None if absent, not numeric or
    beyond 64 bits. For what a message shows, not for the live table: parsers use int_field."""
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


# ----- numeric fields: what the table's columns hold, or a DecodeError naming the field ----------

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
NONE_INT = -(2**62)  # app.store.NONE_INT: the integer columns' "missing"
U32_MAX = 2**32 - 1
# (lowest, highest, what the range is): limits the LoRaWAN specification itself sets.
F_PORT = (0, 255, "any LoRaWAN FPort (0 to 255)")  # FPort is one byte on air
F_CNT = (0, U32_MAX, "any LoRaWAN frame counter (0 to 4,294,967,295)")  # FCnt is 32 bits (1.0.x and 1.1)
_INT64 = (INT64_MIN, INT64_MAX, "what a 64-bit integer holds")
_INF = float("inf")


def _clip_text(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text):,} characters)"


def shown_value(value) -> str:
    """A value as an error sentence quotes it: numbers as written, text quoted, all cut short."""
    if type(value) is OutOfRange:
        return _clip_text(value.text)
    if isinstance(value, str):
        return repr(value) if len(value) <= 40 else repr(value[:40]) + "…"
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 256:
        return f"a {value.bit_length():,}-bit number"
    try:
        return _clip_text(repr(value))
    except ValueError:  # an integer too long for repr
        return "a number of thousands of digits"


def _numeric_text(value: str) -> float | None:
    """float() of a numeric string, None if it is not one (words such as 'nan' or 'inf' are not)."""
    try:
        number = float(value)
    except ValueError:
        return None
    if number - number != 0.0 and not any(c.isdigit() for c in value):
        return None
    return number


def int_field(value, where: str, limit: tuple[int, int, str] | None = None) -> int | None:
    """A message's integer field for the table: JSON numbers or numeric strings as int (fractions
    cut, like to_int); None when absent (null) or not numeric at all (a word, an object: left out
    as before, FORMATS.md lets fields be missing). A number the table cannot hold -- beyond 64
    bits, beyond `limit` (F_PORT, F_CNT) or exactly NONE_INT -- raises DecodeError naming `where`."""
    value_type = type(value)
    if value_type is int:
        number = value
    elif value is None or value_type is bool:
        return None
    elif value_type is str:
        try:
            number = int(value)
        except ValueError:
            real = _numeric_text(value)
            if real is None:
                return None
            number = _whole(real, value, where, limit)
    elif isinstance(value, float):
        number = _whole(value, value, where, limit)
    elif isinstance(value, int):
        number = int(value)
    else:
        return None
    lo, hi, what = limit or _INT64
    if not lo <= number <= hi:
        raise DecodeError(f"{where} is {shown_value(value)}, beyond {what}.")
    if number == NONE_INT:
        raise DecodeError(f"{where} is {number}, the one 64-bit value the console keeps to mean 'missing'.")
    return number


def _whole(real: float, value, where: str, limit) -> int:
    # Strictly inside +-2**63: a float of that size is an integer rounded on the way (orjson reads
    # -9223372036854775809 as -2**63), and infinities and NaN are no integer at all.
    if not -9.223372036854775808e18 < real < 9.223372036854775808e18:
        raise DecodeError(f"{where} is {shown_value(value)}, beyond {(limit or _INT64)[2]}.")
    return int(real)


def float_field(value, where: str) -> float | None:
    """A message's number field for the table (RSSI, SNR ...): JSON numbers or numeric strings as
    float; None when absent or not numeric at all. A number no 64-bit float holds (1e400, an
    integer of 400 digits, 'Infinity', a NaN) raises DecodeError naming `where`."""
    value_type = type(value)
    if value_type is float:
        if value - value == 0.0:
            return value
    elif value is None or value_type is bool:
        return None
    elif value_type is int:
        try:
            return float(value)
        except OverflowError:
            pass
    elif value_type is str:
        number = _numeric_text(value)
        if number is None or number - number == 0.0:
            return number
    elif isinstance(value, float):  # OutOfRange
        if value - value == 0.0:
            return float(value)
    else:
        return None
    raise DecodeError(f"{where} is {shown_value(value)}, beyond any 64-bit floating-point number.")


def upper_hex(value) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    return value.replace(":", "").replace("-", "").upper()


def assign_pages(fields: tuple[ProfileField, ...], pages: dict[str, tuple[str, ...]]) -> tuple[ProfileField, ...]:
    """The fields with each one's wizard page set from {page: (field names, ...)}; every field
    gets exactly one page, and a name that is no field is a mistake (ValueError)."""
    page_of: dict[str, str] = {}
    for page, names in pages.items():
        for name in names:
            if name in page_of:
                raise ValueError(f"Field {name!r} is on two wizard pages ({page_of[name]!r} and {page!r}).")
            page_of[name] = page
    known = {f.name for f in fields}
    unknown = sorted(set(page_of) - known)
    if unknown:
        raise ValueError(f"No such field for a wizard page: {', '.join(unknown)}.")
    missing = [f.name for f in fields if f.name not in page_of]
    if missing:
        raise ValueError(f"Fields without a wizard page: {', '.join(missing)}.")
    return tuple(dataclasses.replace(f, page=page_of[f.name]) for f in fields)


VERIFY_HELP = (
    "Off only for a test broker whose certificate cannot be verified: without the check, anyone in between "
    "could pose as the broker."
)
ALLOW_EXPIRED_HELP = (
    "Off: an expired CA or client certificate is refused before connecting, with a sentence saying which. "
    "On: the connection uses it anyway, and the sidebar shows that this connection does."
)
# Every platform's (the ones with certificate fields of their own too): the knowing override.
ALLOW_EXPIRED_FIELD = ProfileField(
    "allow_expired",
    "Connect even though a certificate has expired",
    "bool",
    default=False,
    advanced=True,
    help=ALLOW_EXPIRED_HELP,
)


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
        ProfileField("username", "Username", help=username_help or "Empty for a broker that takes anonymous clients."),
        ProfileField(
            "password",
            "Password",
            "secret",
            help=password_help or "Kept in the system keyring, never in the settings file.",
        ),
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
            help="3.1.1 works with every broker; 5 adds properties (content types, user properties); 3.1 is for "
            "old brokers; 3.1.1-then-3.1 tries 3.1.1 first.",
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
        ProfileField(
            "key_file",
            "Client private key",
            "file",
            advanced=True,
            help="The client certificate's private key (PEM or DER: PKCS#1, SEC1 or PKCS#8, encrypted or not).",
        ),
        ProfileField(
            "key_password", "Key password", "secret", advanced=True, help="Only for an encrypted key or PKCS#12 bundle."
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
    )


def tls_from_profile(profile: dict) -> TlsSettings:
    return TlsSettings(
        ca_file=profile.get("ca_file") or None,
        cert_file=profile.get("cert_file") or None,
        key_file=profile.get("key_file") or None,
        key_password=profile.get("key_password") or None,
        verify_certificate=profile.get("verify_certificate", True) is not False,
        verify_hostname=profile.get("verify_certificate", True) is not False,
        allow_expired=profile.get("allow_expired") is True,
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


def save_pem_texts(config: dict, entries, pem_dir, *, not_pem: str, no_folder: str) -> dict:
    """Certificates and keys a platform's configuration body carries as PEM text, written to files
    (folder 0700, files 0600 from the first byte) for the profile's file fields.

    entries: (body keys tried in order, profile field, file name); not_pem and no_folder: the
    platform's sentences, with {key} for the body key. Returns {profile field: path}."""
    import os
    from pathlib import Path

    paths = {}
    for keys, name, filename in entries:
        key = next((k for k in keys if config.get(k)), None)
        if key is None:
            continue
        text = config[key]
        if not isinstance(text, str) or "-----BEGIN" not in text:
            raise ProfileError(not_pem.format(key=key))
        if pem_dir is None:
            raise ProfileError(no_folder.format(key=key))
        path = Path(pem_dir) / filename
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as file:
                file.write(text if text.endswith("\n") else text + "\n")
        except OSError as exc:
            raise ProfileError(f"{key} cannot be saved to {path} ({exc.strerror}).") from None
        paths[name] = str(path)
    return paths

"""Drogue Cloud MQTT integration: an application's device events as CloudEvents, commands back.

Subscribe to `app/<application>` (or `$share/<group>/app/<application>`). In structured content
mode (the default, and the only one on MQTT 3.1.1) each message is a CloudEvent as JSON. In
binary mode (MQTT 5, requested with the SUBSCRIBE user property content-mode=binary) the payload
is the event's data, the MQTT content type is its datacontenttype, and every other attribute is
an MQTT 5 user property named like the attribute (no `ce-` prefix). Commands are published to
`command/<application>/<device>/<command>`; for devices behind The Things Stack the command
`port:<n>` sends the raw payload on FPort n.
"""

from __future__ import annotations

import datetime as dt
from urllib.parse import unquote

import orjson

from app.events import Event, utc_now_iso
from app.mqtt.config import ConnectionConfig, Subscription, TlsSettings
from app.payload import PayloadError, from_base64
from app.platforms.base import (
    MAX_BODY,
    DecodeError,
    DownlinkRequest,
    EncodeError,
    OutgoingMessage,
    Platform,
    ProfileError,
    ProfileField,
    assign_pages,
    body_problem,
    broker_fields,
    config_from_profile,
    load_json_object,
    too_large_text,
    upper_hex,
)

# Drogue's public sandbox (the project's own docs and examples); self-hosted: your integration endpoint.
DEFAULT_URL = "mqtts://mqtt-integration.sandbox.drogue.cloud:443"
DEVICE_EVENT = "io.drogue.event.v1"
CONNECTION_EVENT = "io.drogue.connection.v1"
REGISTRY_EVENT = "io.drogue.registry.v1"
REQUIRED_ATTRIBUTES = ("specversion", "id", "source", "type")
SPEC_VERSIONS = ("1.0", "0.3")
BINARY_MODE_PROPERTY = ("content-mode", "binary")
# orjson, which writes every event, refuses values nested deeper than 254 levels.
TOO_DEEP = "The event's data is nested more than 254 levels deep; the console cannot show or store it."

_SHARED = {f.name: f for f in broker_fields()}
_TOPIC_UNSAFE = ("/", "+", "#", "\x00")


class DroguePlatform(Platform):
    name = "drogue"
    label = "Drogue Cloud"
    description = "Drogue Cloud's MQTT integration: an application's events as CloudEvents, commands to devices."
    topic_pattern_field = None
    fields = (
        ProfileField(
            "url",
            "Broker",
            required=True,
            default=DEFAULT_URL,
            placeholder=DEFAULT_URL,
            help="The MQTT integration endpoint: TLS on 443 (Drogue's sandbox) or 8883; plain mqtt:// only "
            "on a deployment without TLS.",
        ),
        ProfileField(
            "application",
            "Application",
            required=True,
            help="Its events arrive on app/<application>. Drogue refuses wildcards here.",
        ),
        ProfileField(
            "auth_mode",
            "Authentication",
            "choice",
            default="api-key",
            choices=("anonymous", "token", "api-key"),
            choice_labels=(
                "Anonymous: only what anonymous users may read",
                "OAuth2 access token",
                "User name and API key",
            ),
            help="anonymous sees only what anonymous users may read; an OAuth2 access token (token) is short-lived, "
            "so enter a fresh one before connecting; api-key is your user name and an API key made for it.",
        ),
        ProfileField("username", "User name", help="API-key mode: the name of the user the API key belongs to."),
        ProfileField("api_key", "API key", "secret", help="API-key mode: an API key created for that user."),
        ProfileField("access_token", "Access token", "secret", help="Token mode: your OAuth2 access token."),
        ProfileField(
            "token_as",
            "Send the token as",
            "choice",
            default="username",
            choices=("username", "password"),
            advanced=True,
            help="Either, not both. MQTT 3.1.1 cannot send a password alone, so there it must be the username.",
        ),
        ProfileField(
            "share_group",
            "Shared subscription group",
            advanced=True,
            help="Optional: subscribe as $share/<group>/app/<application>. Members of one group share a Kafka "
            "consumer group, so each event reaches only one of them.",
        ),
        ProfileField(
            "content_mode",
            "Content mode",
            "choice",
            default="structured",
            choices=("structured", "binary"),
            choice_labels=(
                "Structured: the whole CloudEvent as JSON",
                "Binary: the device's data, the attributes as MQTT 5 properties",
            ),
            help="structured (the default) sends each event as one CloudEvent JSON document; binary (MQTT 5 only) "
            "sends the device's data as it is, with the CloudEvent attributes as MQTT 5 user properties.",
        ),
        ProfileField(
            "mqtt_version",
            "MQTT version",
            "choice",
            default="5",
            choices=("3.1.1", "5"),
            help="5 (recommended) allows binary content mode and a token sent as the password; 3.1.1 receives "
            "structured events only.",
        ),
        ProfileField(
            "qos",
            "QoS",
            "int",
            default=1,
            minimum=0,
            maximum=2,
            advanced=True,
            help="Drogue delivers at QoS 0 or 1; QoS 2 is downgraded to 1, so it is requested as 1.",
        ),
        ProfileField(
            "client_id",
            "Client id",
            advanced=True,
            help="Left empty, one is generated. Drogue also uses it as the Kafka consumer group of a "
            "non-shared subscription: keep the same id to resume where the last session stopped.",
        ),
        _SHARED["keepalive"],
        _SHARED["clean_session"],
        _SHARED["ca_file"],
        _SHARED["verify_certificate"],
        _SHARED["allow_expired"],
    )
    fields = assign_pages(
        fields,
        {
            "endpoint": (
                "url",
                "application",
                "share_group",
                "qos",
                "client_id",
                "keepalive",
                "clean_session",
                "ca_file",
                "verify_certificate",
                "allow_expired",
            ),
            "auth": ("auth_mode", "username", "api_key", "access_token", "token_as"),
            "format": ("content_mode", "mqtt_version"),
        },
    )

    def connection(self, profile: dict) -> ConnectionConfig:
        settings = self.validate({**self.defaults(), **profile})
        application = settings["application"]
        check_name(application, "The application name", ProfileError, wildcards_refused=True)
        v5 = settings["mqtt_version"] == "5"
        topic = f"app/{application}"
        if settings.get("share_group"):
            check_name(settings["share_group"], "The share group", ProfileError)
            topic = f"$share/{settings['share_group']}/{topic}"
        user_properties = ()
        if settings["content_mode"] == "binary":
            if not v5:
                raise ProfileError(
                    "Binary content mode sends the CloudEvent attributes as MQTT 5 user properties; "
                    "set the MQTT version to 5 or use structured mode."
                )
            user_properties = (BINARY_MODE_PROPERTY,)
        username, password = credentials(settings, v5)
        tls = TlsSettings(
            ca_file=settings.get("ca_file") or None,
            verify_certificate=settings["verify_certificate"] is not False,
            verify_hostname=settings["verify_certificate"] is not False,
            allow_expired=settings.get("allow_expired") is True,
        )
        subscription = Subscription(topic, min(settings["qos"], 1), user_properties=user_properties)
        return config_from_profile(settings, [subscription], username=username, password=password, tls=tls)

    def body_problem_for(self, payload: bytes, properties: dict | None = None) -> str | None:
        """In binary mode the body is the device's data, read as JSON only when its content type
        says JSON: other data (octet-stream, CBOR, text) may hold any bytes, brackets included,
        and only its size is limited."""
        if binary_mode_attributes(properties) is not None:
            content_type = properties.get("content_type")
            if not isinstance(content_type, str) or not is_json_type(content_type):
                return too_large_text(len(payload)) if len(payload) > MAX_BODY else None
        return body_problem(payload)

    def parse(self, topic: str, payload: bytes, properties: dict | None = None) -> list[Event]:
        attributes = binary_mode_attributes(properties)
        if attributes is not None:
            return [event_from_binary(attributes, payload, properties, topic)]
        return [event_from_structured(load_cloudevent(payload), topic)]

    def encode_downlink(self, profile: dict, request: DownlinkRequest) -> OutgoingMessage:
        """A command: any payload to `command/<application>/<device>/<command>`.

        Without a command name but with an FPort, the command is `port:<f_port>`, which Drogue's
        The Things Stack integration sends as the raw payload on that FPort. The body is
        request.payload, or request.decoded as JSON, or empty (a command may carry nothing).
        """
        try:
            settings = self.validate({**self.defaults(), **profile})
        except ProfileError as exc:
            raise EncodeError(str(exc)) from None
        application = settings["application"]
        check_name(application, "The application name", EncodeError)
        if not request.device_id:
            raise EncodeError("Enter the device to send the command to.")
        check_name(request.device_id, "The device name", EncodeError)
        command = request.command
        if request.f_port is not None:
            if not 1 <= request.f_port <= 223:
                raise EncodeError(f"FPort {request.f_port} is out of range; application data uses 1 to 223.")
            if command and command != f"port:{request.f_port}":
                raise EncodeError(
                    f"Give either a command ({command!r}) or an FPort ({request.f_port}); "
                    f"an FPort is sent as the command port:{request.f_port}."
                )
            command = f"port:{request.f_port}"
        if not command:
            raise EncodeError("Enter the command name (or an FPort, for a device behind The Things Stack).")
        check_name(command, "The command name", EncodeError)
        if request.payload is not None:
            body = bytes(request.payload)
        elif request.decoded is not None:
            body = orjson.dumps(request.decoded)
        else:
            body = b""
        properties = {}
        if request.content_type:
            if settings["mqtt_version"] != "5":
                raise EncodeError(
                    "A content type is an MQTT 5 property; switch the profile to MQTT 5 or leave it empty."
                )
            properties["content_type"] = request.content_type
        topic = f"command/{application}/{request.device_id}/{command}"
        return OutgoingMessage(topic, body, min(settings["qos"], 1), False, properties)


# ----- profile ------------------------------------------------------------------------------


def check_name(value: str, what: str, error: type[Exception], *, wildcards_refused: bool = False) -> None:
    if not value:
        raise error(f"{what} is empty.")
    wildcard = next((c for c in "+#" if c in value), None)
    if wildcard is not None and wildcards_refused:
        raise error(f"{what} {value!r} contains the wildcard {wildcard}; Drogue refuses wildcard subscriptions.")
    bad = next((c for c in _TOPIC_UNSAFE if c in value), None)
    if bad is None:
        return
    shown = "a NUL character" if bad == "\x00" else repr(bad)
    raise error(f"{what} {value!r} contains {shown}, which cannot be part of one MQTT topic level.")


def credentials(settings: dict, v5: bool) -> tuple[str | None, str | None]:
    mode = settings["auth_mode"]
    if mode == "anonymous":
        return None, None
    if mode == "token":
        token = settings.get("access_token")
        if not token:
            raise ProfileError("Enter the OAuth2 access token (or choose API-key authentication).")
        if settings["token_as"] == "password":
            if not v5:
                raise ProfileError(
                    "MQTT 3.1.1 cannot send a password without a username; send the token as the username."
                )
            return None, token
        return token, None
    if not settings.get("username"):
        raise ProfileError("Enter the user name the API key belongs to.")
    if not settings.get("api_key"):
        raise ProfileError("Enter the API key (it is the MQTT password).")
    return settings["username"], settings["api_key"]


# ----- CloudEvents --------------------------------------------------------------------------


def load_cloudevent(payload: bytes) -> dict:
    event = load_json_object(payload, "Drogue CloudEvent")
    if "specversion" not in event:
        raise DecodeError(
            "The message is JSON but not a CloudEvent (it has no specversion). Drogue sends structured "
            "CloudEvents; in binary mode the attributes are MQTT 5 user properties, and they are missing here."
        )
    return event


def binary_mode_attributes(properties: dict | None) -> dict[str, str] | None:
    """The CloudEvent attributes from MQTT 5 user properties, or None when the message is structured."""
    if not isinstance(properties, dict):
        return None
    pairs = properties.get("user_properties")
    if not isinstance(pairs, list | tuple):
        return None
    attributes: dict[str, str] = {}
    for pair in pairs:
        if isinstance(pair, list | tuple) and len(pair) == 2 and isinstance(pair[0], str) and isinstance(pair[1], str):
            name = pair[0].lower()
            # The CloudEvents HTTP binding's ce- prefix: not what Drogue sends on MQTT, but harmless.
            attributes.setdefault(name.removeprefix("ce-"), pair[1])
    return attributes if "specversion" in attributes else None


def check_required(attributes: dict, mode: str) -> None:
    for name in REQUIRED_ATTRIBUTES:
        value = attributes.get(name)
        if not isinstance(value, str) or not value:
            state = "missing" if value is None else "not a non-empty string"
            raise DecodeError(f"The {mode} CloudEvent's required attribute {name!r} is {state}.")
    if attributes["specversion"] not in SPEC_VERSIONS:
        raise DecodeError(f"The CloudEvent has specversion {attributes['specversion']!r}; Drogue sends 1.0.")


def event_from_structured(event: dict, topic: str) -> Event:
    check_required(event, "structured")
    has_data, has_base64 = "data" in event, "data_base64" in event
    if has_data and has_base64:
        raise DecodeError("The CloudEvent has both data and data_base64; a CloudEvent carries at most one.")
    content_type = event.get("datacontenttype")
    content_type = content_type if isinstance(content_type, str) else None
    payload, decoded = None, None
    if has_base64:
        encoded = event["data_base64"]
        if not isinstance(encoded, str):
            raise DecodeError("The CloudEvent's data_base64 is not a string.")
        try:
            payload = from_base64(encoded)
        except PayloadError as exc:
            raise DecodeError(f"The CloudEvent's data_base64 is not base64: {exc}") from None
        decoded = json_data(payload, content_type)
    elif has_data:
        decoded = event["data"]
        # The data's bytes as the device sent them (Drogue re-serializes JSON compactly, as here).
        if decoded is None:
            payload = None
        elif isinstance(decoded, str) and not is_json_type(content_type):
            payload = decoded.encode("utf-8", "surrogatepass")
        else:
            try:
                payload = orjson.dumps(decoded)
            except TypeError:
                raise DecodeError(TOO_DEEP) from None
    return make_event(event, payload, decoded, topic)


def event_from_binary(attributes: dict[str, str], payload: bytes, properties: dict, topic: str) -> Event:
    check_required(attributes, "binary-mode")
    if len(payload) > MAX_BODY:
        raise DecodeError(too_large_text(len(payload)))
    content_type = properties.get("content_type")
    content_type = content_type if isinstance(content_type, str) else None
    return make_event(attributes, bytes(payload), json_data(payload, content_type), topic)


def make_event(attributes: dict, payload: bytes | None, decoded: object, topic: str) -> Event:
    event_type = attributes["type"]
    application = text_attribute(attributes, "application")
    device = text_attribute(attributes, "device")
    if application is None or device is None:
        from_source = source_names(attributes["source"])
        application, device = application or from_source[0], device or from_source[1]
    sender = text_attribute(attributes, "sender")
    if event_type == DEVICE_EVENT:
        kind = "uplink"
    elif event_type == CONNECTION_EVENT:
        kind = "status"
    else:
        kind = "event"
    f_port = None
    if kind == "uplink":
        # Drogue's TTN endpoint puts the FPort in the lorawanport extension and in the subject (channel).
        port_text = text_attribute(attributes, "lorawanport") or text_attribute(attributes, "subject")
        if port_text and len(port_text) <= 3 and port_text.isascii() and port_text.isdigit():
            f_port = int(port_text) if int(port_text) <= 255 else None
    return Event(
        platform="drogue",
        kind=kind,
        received_at=utc_iso(text_attribute(attributes, "time")) or utc_now_iso(),
        application_id=application,
        device_id=device,
        dev_addr=upper_hex(text_attribute(attributes, "hwaddr")),
        f_port=f_port,
        payload_hex=payload.hex() if payload is not None else None,
        decoded=decoded,
        # A gateway publishing on behalf of the device is the event's sender.
        gateway_id=sender if sender and sender != device else None,
        correlation_ids=[attributes["id"]],
        topic=topic,
    )


def text_attribute(attributes: dict, name: str) -> str | None:
    value = attributes.get(name)
    return value if isinstance(value, str) and value else None


def source_names(source: str) -> tuple[str | None, str | None]:
    """(application, device) from drogue://<app>/<device>, percent-decoded; (None, None) otherwise."""
    if not source.startswith("drogue://"):
        return None, None
    parts = source[len("drogue://") :].split("/")
    application = unquote(parts[0]) or None
    device = unquote(parts[1]) if len(parts) > 1 and parts[1] else None
    return application, device


def is_json_type(content_type: str | None) -> bool:
    if content_type is None:
        return True  # CloudEvents: data without a datacontenttype is JSON
    media = content_type.split(";", 1)[0].strip().lower()
    return media in ("application/json", "text/json") or media.endswith("+json")


def json_data(data: bytes, content_type: str | None) -> object:
    """The data as JSON when its content type is JSON and it parses; None otherwise (the device's
    data is whatever the device sent; Drogue passes it on either way). DecodeError only for JSON
    too deeply nested to be written out again."""
    if not data or content_type is None or not is_json_type(content_type):
        return None
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    if data.count(b"[") + data.count(b"{") >= 255:
        try:
            orjson.dumps(value)
        except TypeError:
            raise DecodeError(TOO_DEEP) from None
    return value


def utc_iso(text: str | None) -> str | None:
    """An RFC 3339 time as UTC ISO 8601 with Z; None when absent or unreadable."""
    if not text:
        return None
    try:
        moment = dt.datetime.fromisoformat(text.strip().upper())
    except (ValueError, OverflowError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    try:
        return moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
    except (ValueError, OverflowError):
        return None


PLATFORM = DroguePlatform()

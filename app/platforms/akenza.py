"""akenza MQTT device connector: the console connects as one akenza DEVICE.

akenza is not an application-side integration: the broker mqtt.akenza.io only takes devices.
So the console plays the device. It authenticates either with a device JWT (client id = device id,
password = a JWT signed with the device's RS256 or ES256 private key) or with the device
connector's uplink secret, publishes uplinks to `/up/device/id/{deviceId}` (JWT) or
`/up/{secret}/id/{deviceId}`, and subscribes to the device's downlinks under
`/down/device/id/{deviceId}/#` (the uplink-secret downlink topic is unconfirmed, so editable).

A JWT expires: `credentials_provider(profile)` hands out a fresh one whenever the current one is
close to expiry, for a session to call before every (re)connect.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import jwt
import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from app.events import Event, utc_now_iso
from app.mqtt.config import ConfigError, ConnectionConfig, Subscription, TlsSettings, validate_topic_filter
from app.payload import json_error_text
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
    json_loads,
    too_large_text,
)
from app.tls import TlsConfigError, load_private_key

DEFAULT_URL = "mqtts://mqtt.akenza.io:8883"
DEFAULT_AUDIENCE_BASE = "https://akenza.io"
DEFAULT_USERNAME = "uplink-console"
JWT_DOWNLINK_TOPIC = "/down/device/id/{deviceId}/#"
# The akenza page gives /up/<secret>/id/<deviceId>/# for this mode's downlinks, which repeats the
# uplink topic; its own downlink.py example subscribes to /down/…, so that is the default.
SECRET_DOWNLINK_TOPIC = "/down/{secret}/id/{deviceId}/#"
# The MIME types akenza accepts in the MQTT 5 ContentType property.
CONTENT_TYPES = ("application/json", "text/plain", "application/octet-stream", "application/xml", "text/csv")
# A provider mints a new token once the current one has less than this left.
REFRESH_MARGIN_S = 120.0

_SHARED = {f.name: f for f in broker_fields()}
_TOPIC_UNSAFE = ("/", "+", "#", "\x00")

Credentials = tuple[str | None, str | None, float | None]  # username, password, expires_at (epoch s)


class AkenzaPlatform(Platform):
    name = "akenza"
    label = "akenza"
    description = "Connect as an akenza MQTT device (JWT or uplink secret): publish uplinks, receive downlinks."
    topic_pattern_field = "downlink_topic"
    fields = (
        ProfileField(
            "url",
            "Broker",
            required=True,
            default=DEFAULT_URL,
            placeholder=DEFAULT_URL,
            help="mqtts://mqtt.akenza.io:8883 (TLS, recommended), mqtt://mqtt.akenza.io:1883 or "
            "wss://mqtt.akenza.io:443/mqtt. akenza's certificate chains to ISRG Root X1 (Let's Encrypt); "
            "older systems may need that root as the CA certificate.",
        ),
        ProfileField(
            "auth_mode",
            "Authentication",
            "choice",
            default="jwt",
            choices=("jwt", "uplink-secret"),
            choice_labels=(
                "Device credentials: a JWT signed with the device's private key",
                "Uplink secret: the device connector's id and secret",
            ),
            help="As chosen when the device connector was created in akenza (jwt or uplink-secret): device "
            "credentials sign a token with the device's own private key; an uplink secret is shared by the connector.",
        ),
        ProfileField(
            "device_id",
            "Device id",
            required=True,
            help="The akenza device id. With a JWT it is also the MQTT client id.",
        ),
        ProfileField(
            "jwt_key_file",
            "Device private key",
            "file",
            help="JWT mode: the RSA-2048 or EC P-256 private key (PEM or DER) whose public key or "
            "certificate is registered for the device in akenza.",
        ),
        ProfileField("jwt_key_password", "Private key password", "secret", help="Only for an encrypted key."),
        ProfileField(
            "jwt_algorithm",
            "Signing algorithm",
            "choice",
            default="auto",
            choices=("auto", "RS256", "ES256"),
            advanced=True,
            help="auto: RS256 for an RSA key, ES256 for an EC P-256 key.",
        ),
        ProfileField(
            "token_lifetime_minutes",
            "Token lifetime (minutes)",
            "int",
            default=60,
            minimum=5,
            maximum=24 * 60,
            advanced=True,
            help="exp - iat. akenza's examples use 20 to 60 minutes; a fresh token is made before every "
            "connection and whenever the current one has less than 2 minutes left.",
        ),
        ProfileField(
            "audience_base",
            "Audience base",
            default=DEFAULT_AUDIENCE_BASE,
            advanced=True,
            help="The token's aud is this + /devices/{deviceId}. Private cloud: https://<customer>.akenza.io.",
        ),
        ProfileField(
            "include_sub",
            "Add the sub claim",
            "bool",
            default=False,
            advanced=True,
            help="sub = the device id, as akenza's Java and C++ examples do; the Python example leaves it out.",
        ),
        ProfileField(
            "include_kid",
            "Add the key id (kid)",
            "bool",
            default=True,
            advanced=True,
            help="Header kid = SHA-256 of the public key (DER); needed when the device has several keys.",
        ),
        ProfileField(
            "username",
            "Username",
            default=DEFAULT_USERNAME,
            help="JWT mode: any name; akenza ignores it, but MQTT 3.1.1 sends a password only with a username.",
        ),
        ProfileField("connector_id", "Device connector id", help="Uplink-secret mode: the MQTT username."),
        ProfileField(
            "uplink_secret",
            "Uplink secret",
            "secret",
            help="Uplink-secret mode: the device connector secret. It is the MQTT password and part of the topics.",
        ),
        ProfileField(
            "downlink_topic",
            "Downlink topic",
            advanced=True,
            placeholder=SECRET_DOWNLINK_TOPIC,
            help="Topic filter for the downlinks; {deviceId} and {secret} are filled in. Empty: "
            f"{JWT_DOWNLINK_TOPIC} with a JWT (documented) or {SECRET_DOWNLINK_TOPIC} with an uplink secret "
            "(unconfirmed: akenza's page writes /up/<secret>/id/<deviceId>/# for this mode, which looks like "
            "a documentation error; change it here if your downlinks arrive elsewhere).",
        ),
        ProfileField(
            "uplink_subtopic",
            "Uplink sub-topic",
            help="Optional, appended to the uplink topic: alerts → akenza topic alerts, "
            "alerts/critical → alerts_critical.",
        ),
        ProfileField(
            "content_type",
            "Content type",
            "choice",
            choices=CONTENT_TYPES,
            help="MQTT 5 only. Empty: no ContentType property, and akenza reads the message as JSON.",
        ),
        ProfileField("qos", "QoS", "int", default=0, minimum=0, maximum=2, advanced=True),
        ProfileField(
            "mqtt_version",
            "MQTT version",
            "choice",
            default="3.1.1",
            choices=("3.1.1", "5"),
            advanced=True,
            help="3.1.1 or 5; a content type other than JSON needs 5.",
        ),
        ProfileField(
            "client_id",
            "Client id",
            advanced=True,
            help="Uplink-secret mode only (a JWT connection always uses the device id); empty: generated.",
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
            "device": (
                "url",
                "device_id",
                "auth_mode",
                "qos",
                "mqtt_version",
                "keepalive",
                "clean_session",
                "ca_file",
                "verify_certificate",
                "allow_expired",
            ),
            "jwt": (
                "jwt_key_file",
                "jwt_key_password",
                "username",
                "jwt_algorithm",
                "token_lifetime_minutes",
                "audience_base",
                "include_sub",
                "include_kid",
            ),
            "secret": ("connector_id", "uplink_secret", "client_id"),
            "messages": ("uplink_subtopic", "content_type", "downlink_topic"),
        },
    )

    def connection(self, profile: dict) -> ConnectionConfig:
        settings = checked_profile(profile)
        device_id = settings["device_id"]
        if settings["auth_mode"] == "jwt":
            username, password, client_id = settings["username"], _mint(settings, None)[0], device_id
        else:
            username, password = settings["connector_id"], settings["uplink_secret"]
            client_id = settings.get("client_id") or ""
        tls = TlsSettings(
            ca_file=settings.get("ca_file") or None,
            verify_certificate=settings["verify_certificate"] is not False,
            verify_hostname=settings["verify_certificate"] is not False,
            allow_expired=settings.get("allow_expired") is True,
        )
        subscription = Subscription(downlink_filter(settings), settings["qos"])
        return config_from_profile(
            settings, [subscription], username=username, password=password, client_id=client_id, tls=tls
        )

    def credentials_provider(self, profile: dict) -> Callable[..., Credentials]:
        return credentials_provider(profile)

    def body_problem_for(self, payload: bytes, properties: dict | None = None) -> str | None:
        """A body whose content type akenza does not read as JSON (text/plain, octet-stream,
        XML, CSV) may hold any bytes: only its size is limited."""
        content_type = properties.get("content_type") if isinstance(properties, dict) else None
        if isinstance(content_type, str) and content_type.strip() and not is_json_type(media_type(content_type)):
            return too_large_text(len(payload)) if len(payload) > MAX_BODY else None
        return body_problem(payload)

    def parse(self, topic: str, payload: bytes, properties: dict | None = None) -> list[Event]:
        direction, device_id, sub_levels = split_topic(topic)
        body = decode_body(payload, properties)
        if sub_levels:
            # akenza stores sub-topic data as its own topic; show that name next to the data.
            joiner = "_" if direction == "up" else "/"
            body = {"topic": joiner.join(sub_levels), "data": body}
        return [
            Event(
                platform=self.name,
                kind="uplink" if direction == "up" else "event",
                received_at=utc_now_iso(),
                device_id=device_id,
                payload_hex=payload.hex(),
                decoded=body,
                topic=topic,
            )
        ]

    def encode_downlink(self, profile: dict, request: DownlinkRequest) -> OutgoingMessage:
        """The message the console, as the device, publishes: an akenza UPLINK.

        akenza has no application-side downlink over MQTT; what this console sends is what the
        device sends: the body (request.payload bytes, or request.decoded as JSON) to
        `/up/device/id/{deviceId}[/{sub-topic}]` with a JWT or `/up/{secret}/id/{deviceId}[/…]`
        with an uplink secret, and the MQTT 5 ContentType property when a content type is set
        (request.content_type, else the profile's). Without one akenza reads the body as JSON, so
        a non-JSON body then is refused here. request.f_port has no meaning for MQTT devices.
        """
        # Building the message needs no key or connector id; the device may come with the request.
        merged = {**profile, "device_id": profile.get("device_id") or request.device_id}
        try:
            settings = checked_profile(merged, for_connection=False)
        except ProfileError as exc:
            raise EncodeError(str(exc)) from None
        device_id = settings["device_id"]
        if request.device_id and request.device_id != device_id:
            if settings["auth_mode"] == "jwt":
                raise EncodeError(
                    f"This connection is device {device_id!r}; its token cannot publish for "
                    f"{request.device_id!r}. Open a profile for that device."
                )
            check_topic_level(request.device_id, "The device id", EncodeError)
            device_id = request.device_id
        if request.payload is not None:
            body = bytes(request.payload)
        elif request.decoded is not None:
            body = orjson.dumps(request.decoded)
        else:
            raise EncodeError("Enter the uplink payload to publish (JSON unless a content type says otherwise).")
        content_type = request.content_type or settings["content_type"]
        properties = {}
        if content_type:
            if settings["mqtt_version"] != "5":
                raise EncodeError(
                    "A content type is an MQTT 5 property; switch the profile to MQTT 5 or leave it empty."
                )
            if media_type(content_type) not in CONTENT_TYPES:
                raise EncodeError(f"akenza accepts the content types {', '.join(CONTENT_TYPES)}; not {content_type!r}.")
            properties["content_type"] = content_type
        if not content_type or is_json_type(media_type(content_type)):
            try:
                orjson.loads(body)
            except orjson.JSONDecodeError as exc:
                reason = (
                    f"the content type is {content_type}"
                    if content_type
                    else "akenza reads a message without a content type as JSON"
                )
                raise EncodeError(
                    f"The payload is not JSON ({json_error_text(exc, body)}), but {reason}; "
                    "send JSON or set another content type (MQTT 5)."
                ) from None
        return OutgoingMessage(uplink_topic(settings, device_id), body, settings["qos"], False, properties)


# ----- profile ------------------------------------------------------------------------------


def checked_profile(profile: dict, *, for_connection: bool = True) -> dict:
    """The profile with every field converted and the mode's own rules checked (ProfileError).
    Without `for_connection`, only what the topics and the message need."""
    # Keys the profile does not have take the field defaults (a profile saved before a field existed).
    settings = PLATFORM.validate({**PLATFORM.defaults(), **profile})
    check_topic_level(settings["device_id"], "The device id", ProfileError)
    if settings["auth_mode"] == "jwt":
        if for_connection and not settings.get("jwt_key_file"):
            raise ProfileError("Choose the device's private key file; JWT mode signs its password with it.")
        settings["audience_base"] = checked_audience_base(settings["audience_base"])
    else:
        if for_connection and not settings.get("connector_id"):
            raise ProfileError("Enter the device connector id; it is the username in uplink-secret mode.")
        if not settings.get("uplink_secret"):
            raise ProfileError("Enter the device connector's uplink secret; it is the password and part of the topic.")
        check_topic_level(settings["uplink_secret"], "The uplink secret", ProfileError)
    if settings["content_type"] and settings["mqtt_version"] != "5":
        raise ProfileError("A content type is an MQTT 5 property; set the MQTT version to 5 or leave it empty.")
    settings["uplink_subtopic"] = checked_subtopic(settings.get("uplink_subtopic") or "")
    return settings


def check_topic_level(value: str, what: str, error: type[Exception]) -> None:
    if not value:
        raise error(f"{what} is empty.")
    bad = next((c for c in _TOPIC_UNSAFE if c in value), None)
    if bad is not None:
        shown = "a NUL character" if bad == "\x00" else repr(bad)
        raise error(f"{what} {value!r} contains {shown}, which cannot be part of one MQTT topic level.")


def checked_audience_base(base: str) -> str:
    base = base.strip().rstrip("/")
    parts = urlsplit(base)
    if parts.scheme != "https" or not parts.netloc or parts.path or parts.query or parts.fragment:
        raise ProfileError(
            f"The audience base must look like https://akenza.io or https://<customer>.akenza.io, not {base!r}."
        )
    return base


def checked_subtopic(subtopic: str) -> str:
    subtopic = subtopic.strip().strip("/")
    if not subtopic:
        return ""
    for level in subtopic.split("/"):
        if not level:
            raise ProfileError(f"The uplink sub-topic {subtopic!r} has an empty level (//).")
        if "+" in level or "#" in level or "\x00" in level:
            raise ProfileError(f"The uplink sub-topic {subtopic!r} may not contain +, # or NUL.")
    return subtopic


def downlink_filter(settings: dict) -> str:
    jwt_mode = settings["auth_mode"] == "jwt"
    pattern = (settings.get("downlink_topic") or "").strip()
    pattern = pattern or (JWT_DOWNLINK_TOPIC if jwt_mode else SECRET_DOWNLINK_TOPIC)
    if "{secret}" in pattern and jwt_mode:
        raise ProfileError("The downlink topic uses {secret}, but JWT mode has no uplink secret.")
    topic = pattern.replace("{deviceId}", settings["device_id"])
    if not jwt_mode:
        topic = topic.replace("{secret}", settings["uplink_secret"])
    if "{" in topic and "}" in topic[topic.index("{") :]:
        raise ProfileError(f"The downlink topic {pattern!r} has a placeholder other than {{deviceId}} or {{secret}}.")
    try:
        validate_topic_filter(topic)
    except ConfigError as exc:
        raise ProfileError(f"The downlink topic is not a valid topic filter: {exc}") from None
    return topic


def uplink_topic(settings: dict, device_id: str) -> str:
    middle = "device" if settings["auth_mode"] == "jwt" else settings["uplink_secret"]
    topic = f"/up/{middle}/id/{device_id}"
    return f"{topic}/{settings['uplink_subtopic']}" if settings["uplink_subtopic"] else topic


# ----- device JWT ---------------------------------------------------------------------------


def signing_key(settings: dict):
    """The private key and the JWT algorithm it signs with; ProfileError for anything akenza cannot verify."""
    key, path = _private_key(settings["jwt_key_file"], settings.get("jwt_key_password") or None)
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < 2048:
            raise ProfileError(f"The key {path} is RSA-{key.key_size}; akenza needs RSA-2048 (or an EC P-256 key).")
        algorithm, kind = "RS256", f"an RSA-{key.key_size} key"
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        if not isinstance(key.curve, ec.SECP256R1):
            raise ProfileError(
                f"The key {path} is on the curve {key.curve.name}; akenza's ES256 needs P-256 (secp256r1)."
            )
        algorithm, kind = "ES256", "an EC P-256 key"
    else:
        raise ProfileError(f"The key {path} is neither RSA nor EC; akenza signs device tokens with RS256 or ES256.")
    chosen = settings.get("jwt_algorithm") or "auto"
    if chosen != "auto" and chosen != algorithm:
        raise ProfileError(
            f"The key {path} is {kind}, which signs {algorithm}, but the algorithm is set to {chosen}; "
            f"choose {algorithm} or auto."
        )
    return key, algorithm


def _private_key(value: str, password: str | None):
    """(the key, how sentences name it) from a key file or a certificate-manager entry
    ("store:<id>", app/cert_store.py; its password from the keyring unless one is given)."""
    from app.cert_store import CertificateStore, entry_id_of

    entry_id = entry_id_of(value)
    if entry_id is None:
        try:
            return load_private_key(value, password), value
        except TlsConfigError as exc:
            raise ProfileError(str(exc)) from None
    try:
        store = CertificateStore()
        entry = store.get(entry_id)
        contents = store.contents(entry_id, password=password)
    except KeyError:
        raise ProfileError(
            "The device key chosen for this connection was deleted from the certificate manager; choose "
            "another in the connection's settings."
        ) from None
    except (ValueError, OSError) as exc:  # app.certs.CertError sentences, a missing file, the keyring
        raise ProfileError(str(exc)) from None
    if contents.key is None:
        raise ProfileError(f"'{entry.name}' holds no private key; choose the device's private key.")
    return contents.key, f"'{entry.name}'"


def public_key_fingerprint(key) -> str:
    """akenza's kid: SHA-256 (hex) of the DER SubjectPublicKeyInfo."""
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def _mint(settings: dict, now: float | None, signer: tuple | None = None) -> tuple[str, float]:
    key, algorithm = signer or signing_key(settings)
    issued_at = int(time.time() if now is None else now)
    expires_at = issued_at + 60 * settings["token_lifetime_minutes"]
    claims = {
        "iat": issued_at,
        "exp": expires_at,
        "aud": f"{settings['audience_base']}/devices/{settings['device_id']}",
    }
    if settings["include_sub"]:
        claims["sub"] = settings["device_id"]
    headers = {"kid": public_key_fingerprint(key)} if settings["include_kid"] else None
    return jwt.encode(claims, key, algorithm=algorithm, headers=headers), float(expires_at)


def mint_device_jwt(profile: dict, now: float | None = None) -> str:
    """A device JWT for the profile (JWT mode), issued at `now` (epoch seconds; default: the clock)."""
    settings = checked_profile(profile)
    if settings["auth_mode"] != "jwt":
        raise ProfileError("This profile uses an uplink secret; device tokens are only for JWT mode.")
    return _mint(settings, now)[0]


def credentials_provider(profile: dict, refresh_margin: float = REFRESH_MARGIN_S) -> Callable[..., Credentials]:
    """A callable `(now=None) -> (username, password, expires_at)` for a session to call before every
    (re)connect: in JWT mode it mints a new token when the current one has less than `refresh_margin`
    seconds left; in uplink-secret mode the credentials never expire (expires_at None)."""
    settings = checked_profile(profile)
    if settings["auth_mode"] != "jwt":
        fixed = (settings["connector_id"], settings["uplink_secret"], None)
        return lambda now=None: fixed
    # Loaded once: loading an RSA key checks it (tens of ms), and the session calls this on its loop.
    signer = signing_key(settings)
    current: list = [None, 0.0]  # token, expires_at

    def credentials(now: float | None = None) -> Credentials:
        moment = time.time() if now is None else now
        if current[0] is None or current[1] - moment < refresh_margin:
            current[0], current[1] = _mint(settings, moment, signer)
        return settings["username"], current[0], current[1]

    return credentials


# ----- messages -----------------------------------------------------------------------------


def split_topic(topic: str) -> tuple[str, str, list[str]]:
    """('up' | 'down', device id, sub-topic levels) of an akenza device topic; DecodeError otherwise."""
    levels = topic.split("/")
    if len(levels) < 5 or levels[0] or levels[1] not in ("up", "down") or not levels[2] or levels[3] != "id":
        raise DecodeError(
            f"The topic {topic!r} is not an akenza device topic; those look like /up/device/id/<deviceId>[/…] "
            "or /down/device/id/<deviceId>/… (with the uplink secret in place of 'device')."
        )
    if not levels[4]:
        raise DecodeError(f"The topic {topic!r} has no device id after /id/.")
    return levels[1], levels[4], [level for level in levels[5:] if level]


def media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def is_json_type(media: str) -> bool:
    return media == "application/json" or media.endswith("+json")


def decode_body(payload: bytes, properties: dict | None) -> object:
    """The body as JSON when akenza reads it as JSON (no content type, or a JSON one); None for the
    other content types akenza accepts; DecodeError for anything else."""
    if len(payload) > MAX_BODY:
        raise DecodeError(too_large_text(len(payload)))
    content_type = properties.get("content_type") if isinstance(properties, dict) else None
    if not isinstance(content_type, str) or not content_type.strip():
        content_type = None
    media = media_type(content_type) if content_type else None
    if media is not None and not is_json_type(media):
        if media not in CONTENT_TYPES:
            raise DecodeError(
                f"The content type {content_type!r} is not one akenza accepts ({', '.join(CONTENT_TYPES)})."
            )
        return None
    reading = f"says {content_type}" if content_type else "has no content type, so akenza reads it as JSON"
    if not payload:
        raise DecodeError(f"The message is empty, but it {reading}.")
    try:
        body, out_of_range = json_loads(payload)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(f"The message {reading}, but it is not JSON: {json_error_text(exc, payload)}.") from None
    if out_of_range:  # 1e400: akenza stores the body as it is, the console cannot
        raise DecodeError(out_of_range[0].sentence())
    check_nesting(body, payload)
    return body


def check_nesting(value: object, raw: bytes) -> None:
    """DecodeError for JSON nested deeper than orjson writes (254 levels): every event is written with it."""
    if raw.count(b"[") + raw.count(b"{") < 255:
        return
    try:
        orjson.dumps(value)
    except TypeError:
        raise DecodeError(
            "The JSON is nested more than 254 levels deep; the console cannot show or store it."
        ) from None


PLATFORM = AkenzaPlatform()

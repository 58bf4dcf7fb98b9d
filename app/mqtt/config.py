"""What a session needs to know to connect: plain data, validated, built from a URL or a form."""

from __future__ import annotations

import dataclasses
import enum
import secrets
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit


class ConfigError(ValueError):
    """A connection setting that cannot work; the message is a sentence for the user."""


class Transport(enum.StrEnum):
    TCP = "tcp"
    TLS = "tls"
    WS = "ws"
    WSS = "wss"

    @property
    def uses_tls(self) -> bool:
        return self in (Transport.TLS, Transport.WSS)

    @property
    def uses_websockets(self) -> bool:
        return self in (Transport.WS, Transport.WSS)


class MqttVersion(enum.StrEnum):
    V31 = "3.1"
    V311 = "3.1.1"
    V5 = "5"
    # Try 3.1.1; if the broker refuses the protocol version, try 3.1 (Tektelic's default).
    V311_THEN_31 = "3.1.1-then-3.1"


URL_SCHEMES = {
    "mqtt": Transport.TCP,
    "tcp": Transport.TCP,
    "mqtts": Transport.TLS,
    "ssl": Transport.TLS,
    "tls": Transport.TLS,
    "ws": Transport.WS,
    "wss": Transport.WSS,
}
DEFAULT_PORTS = {Transport.TCP: 1883, Transport.TLS: 8883, Transport.WS: 80, Transport.WSS: 443}


@dataclass(frozen=True, slots=True)
class TlsSettings:
    ca_file: str | None = None  # None: the operating system's trust store
    cert_file: str | None = None  # client certificate (PEM/DER) or a PKCS#12 bundle
    key_file: str | None = None  # client key (PEM/DER, PKCS#1/PKCS#8, may be encrypted)
    key_password: str | None = field(default=None, repr=False)  # a secret: never in a repr or a log line
    verify_certificate: bool = True  # off only by an explicit, visible choice
    verify_hostname: bool = True
    # Expired certificates (the client's, the chosen CA, the broker's) accepted: only by an
    # explicit choice that stays visible on the connection.
    allow_expired: bool = False


@dataclass(frozen=True, slots=True)
class Subscription:
    topic: str
    qos: int = 0
    # MQTT 5 only: SUBSCRIBE user properties, e.g. Drogue's ("content-mode", "binary").
    user_properties: tuple[tuple[str, str], ...] = ()
    no_local: bool = False

    def __post_init__(self) -> None:
        validate_topic_filter(self.topic)
        if self.qos not in (0, 1, 2):
            raise ConfigError(f"QoS must be 0, 1 or 2, not {self.qos}.")


def validate_topic_filter(topic: str) -> None:
    if not topic:
        raise ConfigError("The topic filter is empty; enter a topic such as sensors/# .")
    if len(topic.encode()) > 65535:
        raise ConfigError("The topic filter is longer than MQTT allows (65,535 bytes).")
    levels = topic.split("/")
    if topic.startswith("$share/"):
        if len(levels) < 3 or not levels[1] or not levels[2:] or not "/".join(levels[2:]):
            raise ConfigError(
                "A shared subscription looks like $share/<group>/<filter>; the group or filter is missing."
            )
        if "+" in levels[1] or "#" in levels[1]:
            raise ConfigError("The share group name may not contain + or #.")
        levels = levels[2:]
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            raise ConfigError(f"'#' must be a whole level at the end of the filter: {topic!r}.")
        if "+" in level and level != "+":
            raise ConfigError(f"'+' must be a whole level of the filter: {topic!r}.")


def validate_topic_name(topic: str) -> None:
    if not topic:
        raise ConfigError("The topic to publish to is empty.")
    if "+" in topic or "#" in topic:
        raise ConfigError(f"You cannot publish to a topic with wildcards (+ or #): {topic!r}.")


def generate_client_id(prefix: str = "uplink-console") -> str:
    # 23 characters at most: the MQTT 3.1 limit, and what every broker accepts.
    return f"{prefix[:10]}-{secrets.token_hex(6)}"


@dataclass(frozen=True, slots=True)
class ConnectionConfig:
    host: str
    port: int | None = None  # None: the transport's default port
    transport: Transport = Transport.TCP
    websocket_path: str = "/mqtt"
    username: str | None = None
    password: str | None = field(default=None, repr=False)  # a secret: never in a repr or a log line
    client_id: str = ""  # empty: generated once per session and kept across reconnects
    mqtt_version: MqttVersion = MqttVersion.V311
    keepalive: int = 60
    clean_session: bool = True
    # MQTT 5 session expiry for persistent sessions (seconds); 3.x sessions last until cleaned.
    session_expiry: int = 7 * 24 * 3600
    connect_timeout: float = 10.0
    reconnect_interval: float = 1.0  # first retry delay; doubles up to reconnect_max_interval
    reconnect_max_interval: float = 60.0
    tls: TlsSettings = field(default_factory=TlsSettings)
    subscriptions: tuple[Subscription, ...] = ()

    def __post_init__(self) -> None:
        if not self.host or any(c.isspace() for c in self.host):
            raise ConfigError("Enter the broker's host name or address, for example broker.example.com.")
        if self.port is not None and not 1 <= self.port <= 65535:
            raise ConfigError(f"Port {self.port} is out of range; use 1 to 65535.")
        if not 0 <= self.keepalive <= 65535:
            raise ConfigError("Keepalive must be between 0 and 65,535 seconds.")
        if self.connect_timeout <= 0:
            raise ConfigError("The connect timeout must be more than 0 seconds.")
        if self.reconnect_interval <= 0 or self.reconnect_max_interval < self.reconnect_interval:
            raise ConfigError("The reconnect interval must be positive and not above the maximum interval.")
        if self.password and not self.username and self.mqtt_version != MqttVersion.V5:
            raise ConfigError("MQTT 3.x cannot send a password without a username; enter a username too.")
        if self.mqtt_version == MqttVersion.V31 and len(self.client_id) > 23:
            raise ConfigError("MQTT 3.1 allows client ids of at most 23 characters.")

    @property
    def effective_port(self) -> int:
        return self.port if self.port is not None else DEFAULT_PORTS[self.transport]

    def replace(self, **changes) -> ConnectionConfig:
        return dataclasses.replace(self, **changes)

    def describe(self) -> str:
        """The address as a URL, without secrets, for status lines and logs."""
        scheme = {Transport.TCP: "mqtt", Transport.TLS: "mqtts", Transport.WS: "ws", Transport.WSS: "wss"}[
            self.transport
        ]
        user = f"{self.username}@" if self.username else ""
        path = self.websocket_path if self.transport.uses_websockets else ""
        return f"{scheme}://{user}{self.host}:{self.effective_port}{path}"


def parse_url(url: str, **overrides) -> ConnectionConfig:
    """mqtt://, mqtts://, ws://, wss:// with optional user[:password]@ and port (and path for ws)."""
    url = url.strip()
    if "://" not in url:
        url = "mqtt://" + url
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"The broker address {url!r} is not a valid URL ({exc}).") from None
    transport = URL_SCHEMES.get(parts.scheme.lower())
    if transport is None:
        raise ConfigError(f"Unknown scheme {parts.scheme!r} in {url!r}; use mqtt://, mqtts://, ws:// or wss://.")
    if not parts.hostname:
        raise ConfigError(f"The broker address {url!r} has no host name.")
    values: dict = {"host": parts.hostname, "port": port, "transport": transport}
    if parts.username:
        values["username"] = unquote(parts.username)
    if parts.password:
        values["password"] = unquote(parts.password)
    if transport.uses_websockets and parts.path and parts.path != "/":
        values["websocket_path"] = parts.path
    values.update({k: v for k, v in overrides.items() if v is not None})
    return ConnectionConfig(**values)

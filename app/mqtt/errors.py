"""Every way a connection can fail, as one sentence that says what happened and what to do."""

from __future__ import annotations

import socket
import ssl

import paho.mqtt.client as paho
from paho.mqtt.reasoncodes import ReasonCode

from app.mqtt.config import ConnectionConfig


class SessionError(Exception):
    """A failure the user can act on. `fatal`: retrying cannot help until a setting changes."""

    def __init__(self, message: str, *, fatal: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.fatal = fatal

    def __str__(self) -> str:
        return self.message


# MQTT 3.1/3.1.1 CONNACK return codes.
_V3_CONNACK = {
    1: ("the broker does not accept this MQTT version", "choose another MQTT version", True),
    2: ("the broker rejected the client id", "use a shorter client id of letters and digits", True),
    3: ("the broker says the MQTT service is unavailable", "try again later", False),
    4: ("the user name or password is wrong", "check the credentials (API key, token or password)", True),
    5: (
        "the broker did not accept these credentials (not authorized)",
        "check the user name and password, API key or token, and its rights",
        True,
    ),
}
# MQTT 5 CONNACK reason codes.
_V5_CONNACK = {
    0x80: ("the broker gave no reason", "try again, or check the broker's log", False),
    0x81: ("the broker could not parse the CONNECT packet", "try another MQTT version", True),
    0x82: ("the broker reported a protocol error", "try another MQTT version", True),
    0x83: ("the broker rejected the connection for an implementation-specific reason", "check the broker's log", True),
    0x84: ("the broker does not accept MQTT 5", "choose MQTT 3.1.1", True),
    0x85: ("the broker rejected the client id", "use a shorter client id of letters and digits", True),
    0x86: ("the user name or password is wrong", "check the credentials (API key, token or password)", True),
    0x87: (
        "the broker did not accept these credentials (not authorized)",
        "check the user name and password, API key or token, and its rights",
        True,
    ),
    0x88: ("the broker says the MQTT service is unavailable", "try again later", False),
    0x89: ("the broker is busy", "try again later", False),
    0x8A: ("this client is banned by the broker", "ask the broker's operator", True),
    0x8C: ("the broker does not support this authentication method", "check the credentials", True),
    0x90: ("the will topic was rejected", "change the will topic", True),
    0x95: ("a packet was too large for the broker", "send less data", True),
    0x97: ("a quota was exceeded", "try again later", False),
    0x99: ("the payload format was invalid", "check the message", True),
    0x9A: ("retained messages are not supported", "publish without retain", True),
    0x9B: ("the QoS is not supported", "choose a lower QoS", True),
    0x9C: ("the broker asks to use another server", "connect to the other server", True),
    0x9D: ("the broker has moved", "connect to its new address", True),
    0x9F: ("the connection rate limit was exceeded", "wait a little", False),
}


def reason_value(rc) -> int:
    """The number of a paho ReasonCode, MQTTErrorCode or plain int."""
    return rc.value if isinstance(rc, ReasonCode) else int(rc)


def connack_error(rc, config: ConnectionConfig) -> SessionError:
    # paho 2 maps MQTT 3.x return codes onto the MQTT 5 reason codes, but accept both.
    value = reason_value(rc)
    table = _V5_CONNACK if value >= 0x80 else _V3_CONNACK
    what, todo, fatal = table.get(
        value, (f"for a reason this console does not know (reason 0x{value:02X})", "check the broker's log", True)
    )
    return SessionError(f"{config.describe()} refused the connection: {what}. Please {todo}.", fatal=fatal)


def is_protocol_version_refusal(rc) -> bool:
    return reason_value(rc) in (1, 0x84)


_TRUST_CODES = {18, 19, 20, 21, 2}  # self-signed, self-signed in chain, no local issuer, unable to verify leaf


def describe_exception(exc: BaseException, config: ConnectionConfig) -> SessionError:
    """Turns a low-level exception from connect() into a SessionError sentence."""
    if isinstance(exc, SessionError):
        return exc
    host, port, where = config.host, config.effective_port, config.describe()
    if isinstance(exc, ssl.SSLCertVerificationError):
        code, msg = exc.verify_code, exc.verify_message or str(exc)
        if code == 10 or "expired" in msg:
            return SessionError(
                f"The TLS certificate of {host} has expired ({msg}). The broker's operator must renew it; "
                "until then you can connect only by turning certificate verification off.",
                fatal=True,
            )
        if code == 9 or "not yet valid" in msg:
            return SessionError(
                f"The TLS certificate of {host} is not valid yet ({msg}). Check this computer's clock.", fatal=True
            )
        if code == 62 or "Hostname mismatch" in msg or "IP address mismatch" in msg:
            return SessionError(
                f"The TLS certificate of the broker is not valid for the name {host!r} ({msg}). Connect with the "
                "host name the certificate was issued for, or turn hostname verification off.",
                fatal=True,
            )
        if code in _TRUST_CODES or "issuer" in msg or "self-signed" in msg or "self signed" in msg:
            return SessionError(
                f"The TLS certificate of {host} is not trusted ({msg}). Choose the CA certificate that signed it "
                "in the TLS settings.",
                fatal=True,
            )
        return SessionError(f"The TLS certificate of {host} was rejected: {msg}.", fatal=True)
    if isinstance(exc, ssl.SSLError):
        reason = (exc.reason or str(exc)).upper()
        if "CERTIFICATE_REQUIRED" in reason:
            return SessionError(
                f"{where} requires a client certificate. Choose your certificate and private key in the TLS settings.",
                fatal=True,
            )
        if "UNKNOWN_CA" in reason or "BAD_CERTIFICATE" in reason or "CERTIFICATE_UNKNOWN" in reason:
            return SessionError(
                f"{where} rejected the client certificate ({exc.reason}). "
                "Use a certificate signed by a CA the broker trusts.",
                fatal=True,
            )
        if "WRONG_VERSION_NUMBER" in reason or "RECORD_LAYER_FAILURE" in reason or "PACKET_LENGTH_TOO_LONG" in reason:
            return SessionError(
                f"{host}:{port} did not answer with TLS. It may be a plain MQTT port: use mqtt:// (usually 1883), "
                "or the TLS port (usually 8883).",
                fatal=True,
            )
        return SessionError(f"The TLS handshake with {host}:{port} failed ({exc.reason or exc}).")
    if isinstance(exc, socket.gaierror):
        return SessionError(
            f"The host name {host!r} could not be found. Check the spelling and this computer's network connection."
        )
    if isinstance(exc, ConnectionRefusedError):
        return SessionError(
            f"{host}:{port} refused the connection: nothing is listening on that port. "
            "Check the port and that the broker is running."
        )
    if isinstance(exc, TimeoutError | socket.timeout):
        return SessionError(
            f"{host}:{port} did not answer within {config.connect_timeout:g} seconds. "
            "Check the address, the port and any firewall in between."
        )
    if type(exc).__name__ == "WebsocketConnectionError":
        return SessionError(
            f"The websocket handshake with {where} failed ({exc}). Check the path (often /mqtt) and that this "
            "port serves MQTT over websockets."
        )
    if isinstance(exc, ConnectionResetError | BrokenPipeError | ConnectionAbortedError):
        if config.transport.uses_tls:
            hint = "This port may not speak TLS: try mqtt:// (usually port 1883) or the broker's TLS port."
        else:
            hint = "This port may require TLS: try mqtts:// (usually port 8883), or check the port."
        return SessionError(f"{host}:{port} closed the connection during the handshake. {hint}")
    if isinstance(exc, OSError) and exc.strerror:
        return SessionError(f"Could not connect to {host}:{port}: {exc.strerror}.")
    text = str(exc) or type(exc).__name__
    return SessionError(f"The connection to {where} failed: {text}.")


# ----- after the connection was up, and the MQTT handshake ------------------------------------

KEEPALIVE_TIMEOUT = 0x8D

# The broker's DISCONNECT reason codes (MQTT 5): what happened, and what to do.
_DISCONNECT = {
    0x00: ("it closed the connection normally", "The console reconnects by itself"),
    0x04: ("it closed the connection and published this client's will message", "The console reconnects by itself"),
    0x80: ("it gave no reason", "If this repeats, check the broker's log"),
    0x81: ("it could not parse a packet from this client", "If this repeats, try another MQTT version"),
    0x82: ("it saw a breach of the MQTT protocol", "If this repeats, try another MQTT version"),
    0x83: ("it rejected something for an implementation-specific reason", "Check the broker's log"),
    0x87: (
        "this client is not authorized for what it did",
        "Check the credentials and their rights to the subscribed and published topics",
    ),
    0x89: ("it is too busy", "The console retries; if this persists, try again later"),
    0x8B: ("it is shutting down", "The console reconnects once it is back"),
    0x8C: ("it does not accept this authentication method", "Check the credentials settings"),
    KEEPALIVE_TIMEOUT: (
        "it heard nothing from this client within the keepalive interval",
        "The network may be slow or down; a shorter keepalive can help",
    ),
    0x8E: (
        "another client connected with the same client id and took the session over",
        "Give each client its own client id, or leave it empty to have one generated",
    ),
    0x8F: ("a topic filter was not valid for it", "Check the subscriptions' topic filters"),
    0x90: ("a topic to publish to was not valid for it", "Check the topic and the broker's topic rules"),
    0x93: (
        "this client sent more unacknowledged QoS 1/2 messages than it allows",
        "Publish fewer QoS 1 or 2 messages at once",
    ),
    0x94: ("this client used a topic alias it does not accept", "Check the broker's log"),
    0x95: ("a packet was larger than it accepts", "Send smaller messages"),
    0x96: ("this client sent messages faster than it allows", "Publish more slowly"),
    0x97: ("this client used up its quota", "Wait, or ask the broker's operator for a larger quota"),
    0x98: ("an administrator disconnected this client", "Ask the broker's operator before connecting again"),
    0x99: ("a message's payload did not match its declared format", "Check the payload and its format indicator"),
    0x9A: ("it does not support retained messages", "Publish without retain"),
    0x9B: ("it does not support the QoS used", "Use a lower QoS"),
    0x9C: ("it asks this client to use another server", "Connect to the server its operator names"),
    0x9D: ("it has moved to another address", "Connect to its new address"),
    0x9E: ("it does not support shared subscriptions", "Subscribe without $share/"),
    0x9F: ("this client connected too often", "Wait a little before connecting again"),
    0xA0: ("the longest connection time it allows has passed", "The console reconnects by itself"),
    0xA1: ("it does not support subscription identifiers", "Subscribe without them"),
    0xA2: ("it does not support wildcard subscriptions", "Subscribe to exact topics, without + or #"),
}

# SUBACK refusal codes (0x80 is also MQTT 3.x's only "failure").
_SUBACK = {
    0x80: ("the broker gave no reason", "Check the topic filter and this client's rights to it"),
    0x83: ("the broker gave an implementation-specific reason", "Check the topic filter and the broker's log"),
    0x87: (
        "this client is not authorized to subscribe to it",
        "Check the credentials' rights, or choose a topic they may read",
    ),
    0x8F: ("the broker considers the topic filter invalid", "Check the filter and the broker's topic rules"),
    0x91: ("its packet identifier was already in use", "Subscribe again"),
    0x97: ("this client's subscription quota is used up", "Remove another subscription or ask for a larger quota"),
    0x9E: ("the broker does not support shared subscriptions", "Subscribe without $share/"),
    0xA1: ("the broker does not support subscription identifiers", "Subscribe without one"),
    0xA2: ("the broker does not support wildcard subscriptions", "Subscribe to exact topics, without + or #"),
}

# PUBACK/PUBREC refusal codes (MQTT 5).
_PUBACK = {
    0x80: ("the broker gave no reason", "Check the topic and this client's rights to it"),
    0x83: ("the broker gave an implementation-specific reason", "Check the topic, the payload and the broker's log"),
    0x87: (
        "this client is not authorized to publish to it",
        "Check the credentials' rights, or choose a topic they may write",
    ),
    0x90: ("the broker considers the topic name invalid", "Check the topic and the broker's topic rules"),
    0x91: ("its packet identifier was already in use", "Publish again"),
    0x97: ("this client's quota is used up", "Wait, or ask the broker's operator for a larger quota"),
    0x99: ("the payload does not match its declared format", "Check the payload and its format indicator"),
}

# paho's own error codes, as they surface from publish, subscribe and a lost connection.
_PAHO = {
    paho.MQTT_ERR_NOMEM: ("this computer ran out of memory", "Close other programs, then try again"),
    paho.MQTT_ERR_PROTOCOL: (
        "the broker sent data that breaks the MQTT protocol",
        "If this repeats, try another MQTT version",
    ),
    paho.MQTT_ERR_INVAL: ("the request was not valid", "Check the topic and the message"),
    paho.MQTT_ERR_NO_CONN: ("the connection is not up", "Wait until it is connected again, then retry"),
    paho.MQTT_ERR_CONN_REFUSED: ("the broker refused the connection", "Check the connection settings"),
    paho.MQTT_ERR_NOT_FOUND: ("the message was not found", "Try again"),
    paho.MQTT_ERR_CONN_LOST: ("the connection was lost", "Wait until it is connected again, then retry"),
    paho.MQTT_ERR_TLS: ("the TLS layer failed", "Check the TLS settings"),
    paho.MQTT_ERR_PAYLOAD_SIZE: ("the message is larger than MQTT allows", "Send a smaller payload"),
    paho.MQTT_ERR_NOT_SUPPORTED: ("this MQTT version does not support it", "Switch the connection to MQTT 5"),
    paho.MQTT_ERR_AUTH: ("authentication failed", "Check the credentials"),
    paho.MQTT_ERR_ACL_DENIED: ("the broker denied access", "Check this client's rights"),
    paho.MQTT_ERR_UNKNOWN: ("the MQTT library failed for an unknown reason", "Try again; reconnect if it repeats"),
    paho.MQTT_ERR_ERRNO: ("the operating system reported a socket error", "Check the network"),
    paho.MQTT_ERR_QUEUE_SIZE: ("too many messages are waiting to be sent", "Wait until the queue drains, then retry"),
    paho.MQTT_ERR_KEEPALIVE: ("the broker did not answer within the keepalive interval", "Check the network"),
}


def _unknown(value: int) -> tuple[str, str]:
    return (f"for a reason this console does not know (reason 0x{value:02X})", "Check the broker's log")


def broker_disconnect(rc, config: ConnectionConfig) -> str:
    """The broker ended the connection with a DISCONNECT packet carrying this reason code."""
    value = reason_value(rc)
    what, todo = _DISCONNECT.get(value) or _unknown(value)
    return f"The broker at {config.describe()} ended the connection: {what}. {todo}."


def no_answer(seconds: float) -> str:
    """The broker went silent on a connection that worked: a ping or a CONNECT went unanswered."""
    return f"No answer from the broker for {max(1, int(seconds))} s; the network may be down. Reconnecting…"


def connection_broke(error: BaseException, config: ConnectionConfig) -> str:
    """A socket error on a connection that was up."""
    if isinstance(error, ssl.SSLError):
        detail = f"a TLS error: {error.reason or error}"
    elif isinstance(error, ConnectionResetError):
        detail = "it was reset by the broker or something in between"
    elif isinstance(error, OSError) and error.strerror:
        detail = error.strerror[:1].lower() + error.strerror[1:]
    else:
        detail = str(error) or type(error).__name__
    return f"The connection to {config.describe()} broke ({detail}); the network may be down. Reconnecting…"


def disconnect_reason(
    exc: BaseException | None,
    config: ConnectionConfig,
    *,
    from_broker: bool = False,
    silent_for: float | None = None,
    socket_error: BaseException | None = None,
) -> str:
    """Why a connection that was up has ended. `exc` is what ended it (an aiomqtt MqttCodeError with
    a reason code, a socket error, or None for a normal close); `from_broker`: the broker sent a
    DISCONNECT packet; `silent_for`: how long the broker had not answered when the client gave up;
    `socket_error`: the error the socket reported, if any."""
    rc = getattr(exc, "rc", None)
    if rc is not None:
        value = reason_value(rc)
        # paho reports what it detected itself with DISCONNECT reason codes too: tell them apart.
        client_side = not isinstance(rc, ReasonCode)
        if from_broker and not client_side and value != 0:
            return broker_disconnect(rc, config)
        if value == (paho.MQTT_ERR_KEEPALIVE if client_side else KEEPALIVE_TIMEOUT):
            return no_answer(silent_for if silent_for is not None else config.keepalive)
    cause = socket_error
    if cause is None and isinstance(exc, OSError | ValueError):
        cause = exc
    if cause is not None:
        return connection_broke(cause, config)
    if rc is not None:
        if value == (paho.MQTT_ERR_PROTOCOL if client_side else 0x82):
            return (
                f"The broker at {config.describe()} sent data that breaks the MQTT protocol, so the connection "
                "was closed; if this repeats, try another MQTT version. Reconnecting…"
            )
        if client_side and value in _PAHO and value != paho.MQTT_ERR_CONN_LOST:
            what, todo = _PAHO[value]
            return f"The connection to {config.describe()} ended: {what}. {todo}."
    elif exc is not None:
        return f"Lost the connection to {config.describe()}. Reconnecting…"
    return f"The broker at {config.describe()} closed the connection. Reconnecting…"


def handshake_failure(
    config: ConnectionConfig,
    *,
    rc=None,
    from_broker: bool = False,
    waited: float | None = None,
    cause: BaseException | None = None,
    ever_connected: bool = False,
) -> SessionError:
    """The TCP (and TLS) connection was up, but no CONNACK came: the broker closed the connection
    (rc: paho's reason, from_broker: a DISCONNECT packet), a socket error (cause), or silence for
    `waited` seconds."""
    where = config.describe()
    if cause is not None:
        return describe_exception(cause, config)
    if from_broker and rc is not None:
        return SessionError(broker_disconnect(rc, config))
    if rc is None or reason_value(rc) == KEEPALIVE_TIMEOUT:
        waited = config.connect_timeout if waited is None else waited
        if ever_connected:
            return SessionError(no_answer(waited))
        return SessionError(
            f"{where} accepted the connection but did not complete the MQTT handshake within "
            f"{round(waited, 1):g} seconds. Check that the port speaks MQTT and the transport is right."
        )
    if config.transport.uses_tls:
        hint = "Check the MQTT version, the client id and the credentials, and the broker's log."
    else:
        hint = (
            "This port may require TLS (mqtts://, usually port 8883); otherwise check the MQTT version "
            "and the broker's log."
        )
    return SessionError(f"{where} closed the connection during the MQTT handshake without saying why. {hint}")


def subscribe_refusal(topic: str, rc) -> SessionError:
    """The broker answered a SUBSCRIBE with a refusal code (0x80 or above)."""
    value = reason_value(rc)
    what, todo = _SUBACK.get(value) or _unknown(value)
    return SessionError(f"The broker refused the subscription to {topic!r}: {what}. {todo}.")


def publish_refusal(topic: str, rc) -> SessionError:
    """The broker answered a QoS 1/2 PUBLISH with a refusal code (MQTT 5)."""
    value = reason_value(rc)
    what, todo = _PUBACK.get(value) or _unknown(value)
    return SessionError(f"The broker refused the message to {topic!r}: {what}. {todo}.")


def library_error(action: str, rc) -> SessionError:
    """paho refused a request locally (action: "Publishing to 'a/b'", "Subscribing to 'a/#'")."""
    value = reason_value(rc)
    what, todo = _PAHO.get(value) or (f"the MQTT library failed (error {value})", "Try again")
    return SessionError(f"{action} failed: {what}. {todo}.")

"""Every way a connection can fail, as one sentence that says what happened and what to do."""

from __future__ import annotations

import socket
import ssl

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
    0x80: ("the broker reported an unspecified error", "try again or check the broker's log", False),
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


def connack_error(rc, config: ConnectionConfig) -> SessionError:
    # paho 2 maps MQTT 3.x return codes onto the MQTT 5 reason codes, but accept both.
    value = rc.value if isinstance(rc, ReasonCode) else int(rc)
    table = _V5_CONNACK if value >= 0x80 else _V3_CONNACK
    what, todo, fatal = table.get(
        value, (f"the broker refused the connection (code {value})", "check the settings", True)
    )
    return SessionError(f"{config.describe()} refused the connection: {what}. Please {todo}.", fatal=fatal)


def is_protocol_version_refusal(rc) -> bool:
    value = rc.value if isinstance(rc, ReasonCode) else int(rc)
    return value in (1, 0x84)


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
    if "timed out" in text.lower():
        return SessionError(
            f"{where} accepted the connection but did not complete the MQTT handshake within "
            f"{config.connect_timeout:g} seconds. Check that the port speaks MQTT and the transport is right."
        )
    return SessionError(f"The connection to {where} failed: {text}.")


def disconnect_reason(exc: BaseException | None, config: ConnectionConfig) -> str:
    if exc is None:
        return f"The broker at {config.describe()} closed the connection."
    rc = getattr(exc, "rc", None)
    if isinstance(rc, ReasonCode) and rc.value >= 0x80:
        return f"The broker at {config.describe()} disconnected this client: {rc}."
    inner = exc.__cause__ or exc.__context__
    if isinstance(inner, OSError | ssl.SSLError):
        return describe_exception(inner, config).message
    return f"Lost the connection to {config.describe()}."

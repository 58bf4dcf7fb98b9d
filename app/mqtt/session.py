"""The MQTT session: one broker connection that stays up by itself.

An async API over aiomqtt. State is explicit (disconnected, connecting, connected,
reconnecting, failed) and observed through a callback. Received messages go to a sink
callable straight from the socket reader, without aiomqtt's per-message queue and task
switch: the session is the hot path of the whole console.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import NamedTuple

import aiomqtt
import paho.mqtt.client as paho
from aiomqtt.exceptions import MqttCodeError, MqttConnectError, MqttError
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from app.mqtt.config import (
    ConfigError,
    ConnectionConfig,
    MqttVersion,
    Subscription,
    generate_client_id,
    validate_topic_name,
)
from app.mqtt.errors import (
    SessionError,
    connack_error,
    describe_exception,
    disconnect_reason,
    is_protocol_version_refusal,
)

log = logging.getLogger(__name__)


class SessionState(enum.StrEnum):
    DISCONNECTED = "disconnected"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class StateChange:
    state: SessionState
    error: str | None = None  # the last error, as a sentence
    retry_in: float | None = None  # seconds until the next attempt, when reconnecting
    attempt: int = 0
    mqtt_version: str | None = None  # the version actually in use once connected


class ReceivedMessage(NamedTuple):
    """A tuple: cheap to create on the receive path and to pickle across the engine process."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    properties: dict | None  # MQTT 5 properties that were present, else None
    received_at: float  # wall clock, time.time()
    mono: float  # time.monotonic(), for latency measurements


def properties_to_dict(props: Properties | None) -> dict | None:
    if props is None:
        return None
    out: dict = {}
    for attr, key in _PROPERTY_NAMES:
        if hasattr(props, attr):
            value = getattr(props, attr)
            if attr == "UserProperty":
                value = [list(kv) for kv in value]
            out[key] = value
    return out or None


_PROPERTY_NAMES = (
    ("ContentType", "content_type"),
    ("UserProperty", "user_properties"),
    ("PayloadFormatIndicator", "payload_format_indicator"),
    ("MessageExpiryInterval", "message_expiry_interval"),
    ("ResponseTopic", "response_topic"),
    ("CorrelationData", "correlation_data"),
    ("SubscriptionIdentifier", "subscription_identifier"),
)

_PROTOCOLS = {
    MqttVersion.V31: aiomqtt.ProtocolVersion.V31,
    MqttVersion.V311: aiomqtt.ProtocolVersion.V311,
    MqttVersion.V5: aiomqtt.ProtocolVersion.V5,
}

# How many packets one socket-readable callback may process before yielding to the loop.
_READ_BURST = 256


def _take_qos0_publishes(data: bytes, pos: int, deliver: Callable[[str, bytes, bool], None]) -> int:
    """Decodes the complete MQTT 3.x QoS 0 PUBLISH packets at data[pos:]; returns where it stopped
    (at the first packet of another kind, an incomplete one, or the end)."""
    n = len(data)
    while pos < n:
        first = data[pos]
        if first & 0xF6 != 0x30:  # PUBLISH (type 3) with QoS 0; DUP and RETAIN bits may be set
            return pos
        i = pos + 1
        length = 0
        shift = 0
        while True:
            if i >= n:
                return pos
            b = data[i]
            i += 1
            length |= (b & 0x7F) << shift
            if b < 0x80:
                break
            shift += 7
            if shift > 21:  # malformed: let paho report it
                return pos
        end = i + length
        if end > n or length < 2:
            return pos
        topic_end = i + 2 + ((data[i] << 8) | data[i + 1])
        if topic_end > end:
            return pos
        try:
            topic = data[i + 2 : topic_end].decode()
        except UnicodeDecodeError:
            return pos  # paho's path replaces the bad bytes and logs
        deliver(topic, data[topic_end:end], bool(first & 1))
        pos = end
    return pos


class _Client(aiomqtt.Client):
    """aiomqtt.Client with three changes, each for a measured reason:

    - messages go to `sink` directly from paho's callback (no Message copy, queue or task);
    - one readable event drains up to _READ_BURST packets, not one: under load that saves an
      event-loop iteration (a select() call, or a Qt event on qasync) per message;
    - the original exception of a failed connect() is kept, so the user gets a sentence about
      the certificate, DNS or port rather than aiomqtt's flattened string.
    """

    def __init__(self, *args, sink: Callable[[paho.MQTTMessage], None], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._sink = sink
        self.connect_exception: BaseException | None = None
        self.handshake_failed_rc = None
        self.handshake_socket_error: BaseException | None = None
        # paho swallows socket errors during the handshake (e.g. the TLS alert of a broker that
        # wants a client certificate arrives on the first read): note them until connected.
        paho_client = self._client
        plain_recv = paho_client._sock_recv  # noqa: SLF001

        def recv_noting_errors(bufsize: int) -> bytes:
            try:
                return plain_recv(bufsize)
            except BlockingIOError:
                raise
            except (OSError, ValueError) as exc:
                self.handshake_socket_error = exc
                raise

        paho_client._sock_recv = recv_noting_errors  # noqa: SLF001

    def handshake_done(self, fast_publish: Callable[[str, bytes, bool], None] | None = None) -> None:
        """Switches the receive path to its fast form once connected.

        fast_publish (MQTT 3.x only): QoS 0 PUBLISH packets waiting complete in the read buffer
        are decoded here and handed to it directly; every other packet (QoS 1/2, acks, pings,
        MQTT 5) still goes through paho. paho's Python packet decoder costs ~20 us a message;
        this loop ~3 us: under a flood the receive path was two thirds of the engine's time.
        """
        paho_client = self._client
        paho_client.__dict__.pop("_sock_recv", None)
        # paho reads a packet with three or four recv() calls (type, length bytes, body); one
        # recv() of up to 64 KiB serves many packets. Measured: +15% messages/s on loopback.
        plain_recv = paho_client._sock_recv  # noqa: SLF001
        buffer = self._buffer = [b"", 0]
        monotonic = time.monotonic

        def buffered_recv(bufsize: int) -> bytes:
            data, pos = buffer
            chunks = 0
            while True:
                if pos >= len(data):
                    buffer[0], buffer[1] = b"", 0  # all consumed (also if recv raises below)
                    data = plain_recv(65536)  # BlockingIOError when nothing is waiting; b"" on close
                    if not data:
                        return data
                    pos = 0
                    chunks += 1
                # paho replaces its reader-state dict after every packet: look it up each time.
                if fast_publish is None or bufsize != 1 or paho_client._in_packet["command"] or chunks > 8:  # noqa: SLF001
                    break
                # paho is about to read a new packet: first take every complete QoS 0 PUBLISH.
                new_pos = _take_qos0_publishes(data, pos, fast_publish)
                if new_pos != pos:
                    paho_client._last_bytes_received = monotonic()  # noqa: SLF001 - keepalive
                pos = new_pos
                if pos < len(data):
                    break  # another kind of packet, or an incomplete one: paho's turn
            out = data[pos : pos + bufsize]
            buffer[0], buffer[1] = data, pos + len(out)
            return out

        paho_client._sock_recv = buffered_recv  # noqa: SLF001
        # paho matches every message against per-topic callbacks (none here) under two locks,
        # and logs every packet: together ~15% of the receive path, measured with py-spy.
        paho_client._handle_on_message = self._sink  # noqa: SLF001
        paho_client.disable_logger()

    def buffered(self) -> bool:
        """Whether received bytes wait in the read buffer (the socket will not signal them)."""
        buffer = getattr(self, "_buffer", None)
        return buffer is not None and buffer[1] < len(buffer[0])

    def _client_connect(self) -> None:
        try:
            super()._client_connect()
        except BaseException as exc:
            self.connect_exception = exc
            raise

    def _on_message(self, client, userdata, message) -> None:  # noqa: ARG002
        self._sink(message)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties=None) -> None:
        if not self._connected.done():
            # Dropped during the MQTT handshake (e.g. a 3.1-only broker refusing 3.1.1, where
            # paho closes the socket instead of reporting the CONNACK): fail now, not at timeout.
            self.handshake_failed_rc = reason_code
            self._connected.set_exception(MqttCodeError(reason_code, "Disconnected during handshake"))
            return
        super()._on_disconnect(client, userdata, flags, reason_code, properties)

    def _on_socket_open(self, client, userdata, sock) -> None:  # noqa: ARG002
        loop = self._loop

        def on_readable() -> None:
            try:
                for _ in range(_READ_BURST):
                    if client._sock is None:  # noqa: SLF001
                        return
                    rc = client._packet_read()  # noqa: SLF001
                    if rc == paho.MQTT_ERR_AGAIN:
                        pending = getattr(client._sock, "pending", None)  # noqa: SLF001
                        if pending is None or pending() == 0:
                            return
                    elif rc > 0:
                        client._loop_rc_handle(rc)  # noqa: SLF001
                        return
                if self.buffered():
                    # The burst ended with packets still in the read buffer: the socket will not
                    # wake us for them, so come back after the loop's other work.
                    loop.call_soon(on_readable)
            except Exception as exc:  # noqa: BLE001 - a broken socket: report it as a disconnect
                if not self._disconnected.done():
                    self._disconnected.set_exception(exc)

        def create_misc_task() -> None:
            self._misc_task = loop.create_task(self._misc_loop())

        loop.call_soon_threadsafe(loop.add_reader, sock.fileno(), on_readable)
        loop.call_soon_threadsafe(create_misc_task)


class MqttSession:
    """A broker connection that reconnects forever with capped exponential backoff.

    All methods must be called on the event loop the session was started on.
    """

    def __init__(
        self,
        config: ConnectionConfig,
        *,
        on_message: Callable[[ReceivedMessage], None] | None = None,
        on_state: Callable[[StateChange], None] | None = None,
        ssl_context_factory: Callable[[], object] | None = None,
        credentials: Callable[[], tuple[str | None, str | None]] | None = None,
    ) -> None:
        self.config = config
        # A persistent session must present the same client id on every reconnect.
        self.client_id = config.client_id or generate_client_id()
        self._on_message = on_message
        self._on_state = on_state
        self._ssl_context_factory = ssl_context_factory
        # Called before every connect attempt for (username, password): short-lived tokens
        # such as akenza's device JWTs are minted fresh for each (re)connect.
        self._credentials = credentials
        self._subscriptions: dict[str, Subscription] = {s.topic: s for s in config.subscriptions}
        self._client: _Client | None = None
        self._task: asyncio.Task | None = None
        self._state = StateChange(SessionState.DISCONNECTED)
        self._connected_event = asyncio.Event()
        self._version_in_use: MqttVersion | None = None
        self.messages_received = 0

    # ----- observation
    @property
    def state(self) -> SessionState:
        return self._state.state

    @property
    def last_change(self) -> StateChange:
        return self._state

    @property
    def subscriptions(self) -> list[Subscription]:
        return list(self._subscriptions.values())

    @property
    def is_v5(self) -> bool:
        return (self._version_in_use or self.config.mqtt_version) == MqttVersion.V5

    def _set_state(self, state: SessionState, **kw) -> None:
        self._state = StateChange(state, **kw)
        if state == SessionState.CONNECTED:
            self._connected_event.set()
        else:
            self._connected_event.clear()
        log.info("session %s: %s %s", self.config.describe(), state, kw.get("error") or "")
        if self._on_state is not None:
            try:
                self._on_state(self._state)
            except Exception:  # an observer must not kill the session
                log.exception("state observer failed")

    # ----- lifecycle
    async def start(self) -> None:
        if self._task is not None and not self._task.done():
            return
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"mqtt {self.config.describe()}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._state.state != SessionState.FAILED:
            self._set_state(SessionState.DISCONNECTED)

    async def wait_connected(self, timeout: float | None = None) -> None:
        """Waits until connected; raises SessionError if the session fails meanwhile."""

        async def wait() -> None:
            while self._state.state != SessionState.CONNECTED:
                if self._state.state == SessionState.FAILED:
                    raise SessionError(self._state.error or "The connection failed.", fatal=True)
                if self._task is None or self._task.done():
                    raise SessionError("The session is not running; connect first.")
                await asyncio.sleep(0.02)

        await asyncio.wait_for(wait(), timeout)

    async def __aenter__(self) -> MqttSession:
        await self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    def _versions(self) -> list[MqttVersion]:
        if self.config.mqtt_version == MqttVersion.V311_THEN_31:
            return [MqttVersion.V311, MqttVersion.V31]
        return [self.config.mqtt_version]

    def _make_client(self, version: MqttVersion, tls_context) -> _Client:
        cfg = self.config
        v5 = version == MqttVersion.V5
        connect_props = None
        clean_start = paho.MQTT_CLEAN_START_FIRST_ONLY
        if v5:
            connect_props = Properties(PacketTypes.CONNECT)
            if cfg.clean_session:
                clean_start = True
            else:
                clean_start = False
                connect_props.SessionExpiryInterval = cfg.session_expiry
        username, password = cfg.username, cfg.password
        if self._credentials is not None:
            username, password = self._credentials()
        client = _Client(
            cfg.host,
            cfg.effective_port,
            username=username,
            password=password,
            identifier=self.client_id,
            protocol=_PROTOCOLS[version],
            clean_session=None if v5 else cfg.clean_session,
            clean_start=clean_start,
            transport="websockets" if cfg.transport.uses_websockets else "tcp",
            websocket_path=cfg.websocket_path if cfg.transport.uses_websockets else None,
            timeout=cfg.connect_timeout,
            keepalive=cfg.keepalive,
            tls_context=tls_context,
            tls_insecure=(not cfg.tls.verify_hostname or not cfg.tls.verify_certificate) if tls_context else None,
            properties=connect_props,
            max_queued_incoming_messages=0,
            sink=self._deliver,
        )
        client._client.connect_timeout = cfg.connect_timeout  # noqa: SLF001 - socket connect + TLS handshake
        return client

    def _deliver(self, message: paho.MQTTMessage) -> None:
        self.messages_received += 1
        if self._on_message is not None:
            props = message.properties if self.is_v5 else None
            try:
                topic = message.topic
            except UnicodeDecodeError:
                topic = message._topic.decode("utf-8", "replace")  # noqa: SLF001
            self._on_message(
                ReceivedMessage(
                    topic,
                    message.payload,
                    message.qos,
                    bool(message.retain),
                    properties_to_dict(props) if props is not None else None,
                    time.time(),
                    time.monotonic(),
                )
            )

    def _deliver_fast(self, topic: str, payload: bytes, retain: bool) -> None:
        """A QoS 0 PUBLISH decoded by the fast path (MQTT 3.x, so no properties)."""
        self.messages_received += 1
        if self._on_message is not None:
            self._on_message(ReceivedMessage(topic, payload, 0, retain, None, time.time(), time.monotonic()))

    async def _build_tls(self):
        if not self.config.transport.uses_tls:
            return None
        factory = self._ssl_context_factory
        if factory is None:
            from app.tls import build_ssl_context

            def factory():
                return build_ssl_context(self.config.tls)

        # Reading key files and the system trust store blocks: keep it off the loop.
        return await asyncio.get_running_loop().run_in_executor(None, factory)

    async def _run(self) -> None:
        cfg = self.config
        attempt = 0
        delay = cfg.reconnect_interval
        last_error: str | None = None
        ever_connected = False
        try:
            tls_context = await self._build_tls()
        except (ValueError, OSError) as exc:  # TlsConfigError is a ValueError
            self._set_state(SessionState.FAILED, error=str(exc))
            return
        while True:
            self._set_state(
                SessionState.CONNECTING if attempt == 0 else SessionState.RECONNECTING,
                error=last_error,
                attempt=attempt,
            )
            error: SessionError | None = None
            for version in self._versions():
                try:
                    await self._connect_and_serve(version, tls_context)
                except _Connected as lost:
                    error = lost.error
                    attempt, delay = 0, cfg.reconnect_interval
                    ever_connected = True
                    break
                except _FallBack:
                    continue  # try the next MQTT version right away
                except SessionError as exc:
                    error = exc
                    break
            assert error is not None
            last_error = error.message
            # A setting that never worked will not start working: stop and say so. Once a
            # connection has worked, a refusal may be the broker being reconfigured: keep trying.
            if error.fatal and not ever_connected:
                self._set_state(SessionState.FAILED, error=error.message, attempt=attempt)
                return
            attempt += 1
            wait = min(delay, cfg.reconnect_max_interval) * random.uniform(0.8, 1.2)
            self._set_state(SessionState.RECONNECTING, error=error.message, retry_in=wait, attempt=attempt)
            await asyncio.sleep(wait)
            delay = min(delay * 2, cfg.reconnect_max_interval)

    async def _connect_and_serve(self, version: MqttVersion, tls_context) -> None:
        cfg = self.config
        try:
            client = self._make_client(version, tls_context)
        except (ValueError, OSError) as exc:  # e.g. a credentials provider that cannot mint a token
            raise SessionError(str(exc), fatal=True) from None
        try:
            await client.__aenter__()
        except MqttConnectError as exc:
            if self._may_fall_back(version) and is_protocol_version_refusal(exc.rc):
                raise _FallBack from None
            raise connack_error(exc.rc, cfg) from None
        except MqttError as exc:
            if client.handshake_failed_rc is not None and self._may_fall_back(version):
                raise _FallBack from None
            cause = client.connect_exception or client.handshake_socket_error or exc
            raise describe_exception(cause, cfg) from None
        except OSError as exc:
            raise describe_exception(exc, cfg) from None
        client.handshake_done(None if version == MqttVersion.V5 else self._deliver_fast)

        self._client = client
        self._version_in_use = version
        try:
            # "Connected" once the subscriptions are in place: an observer that publishes on
            # "connected" must not lose messages to the gap.
            refused = []
            for sub in list(self._subscriptions.values()):
                try:
                    await self._subscribe_on(client, sub)
                except SessionError as exc:
                    refused.append(exc.message)
            self._set_state(SessionState.CONNECTED, mqtt_version=str(version), error=" ".join(refused) or None)
            try:
                # shield: cancelling stop() must not cancel aiomqtt's own future, so the finally
                # below can still say goodbye to the broker.
                await asyncio.shield(client._disconnected)  # noqa: SLF001
            except Exception as exc:  # noqa: BLE001
                raise _Connected(SessionError(disconnect_reason(exc, cfg))) from None
            raise _Connected(SessionError(disconnect_reason(None, cfg)))
        except MqttError as exc:
            raise _Connected(SessionError(disconnect_reason(exc, cfg))) from None
        finally:
            self._client = None
            if not client._disconnected.done():  # noqa: SLF001 - stopping: say goodbye to the broker
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(client.__aexit__(None, None, None), 2)

    def _may_fall_back(self, version: MqttVersion) -> bool:
        versions = self._versions()
        return version in versions and versions.index(version) < len(versions) - 1

    # ----- subscriptions
    async def subscribe(self, sub: Subscription | str, qos: int = 0) -> int | None:
        """Adds a subscription (kept across reconnects). Returns the granted QoS if connected now."""
        if isinstance(sub, str):
            sub = Subscription(sub, qos)
        if sub.user_properties and not self.is_v5:
            raise SessionError("Subscription properties need MQTT 5; switch the connection to MQTT 5.")
        self._subscriptions[sub.topic] = sub
        client = self._client
        if client is None:
            return None
        return await self._subscribe_on(client, sub)

    async def _subscribe_on(self, client: _Client, sub: Subscription) -> int:
        if self.is_v5:
            props = None
            if sub.user_properties:
                props = Properties(PacketTypes.SUBSCRIBE)
                props.UserProperty = list(sub.user_properties)
            result = await client.subscribe(
                sub.topic, options=SubscribeOptions(qos=sub.qos, noLocal=sub.no_local), properties=props
            )
        else:
            result = await client.subscribe(sub.topic, sub.qos)
        code = result[0]
        value = code.value if hasattr(code, "value") else int(code)
        if value >= 0x80:
            self._subscriptions.pop(sub.topic, None)
            raise SessionError(
                f"The broker refused the subscription to {sub.topic!r} ({code}). "
                "Check the topic and this client's rights."
            )
        return value

    async def unsubscribe(self, topic: str) -> None:
        self._subscriptions.pop(topic, None)
        client = self._client
        if client is not None:
            await client.unsubscribe(topic)

    # ----- publishing
    async def publish(
        self,
        topic: str,
        payload: bytes | str,
        *,
        qos: int = 0,
        retain: bool = False,
        content_type: str | None = None,
        user_properties: Iterable[tuple[str, str]] = (),
        message_expiry: int | None = None,
        response_topic: str | None = None,
        correlation_data: bytes | None = None,
    ) -> None:
        validate_topic_name(topic)
        if qos not in (0, 1, 2):
            raise ConfigError(f"QoS must be 0, 1 or 2, not {qos}.")
        client = self._client
        if client is None:
            raise SessionError(f"Not connected to {self.config.describe()}; connect first, then publish.")
        user_properties = list(user_properties)
        props = None
        wants_props = content_type or user_properties or message_expiry or response_topic or correlation_data
        if wants_props:
            if not self.is_v5:
                raise SessionError(
                    "Message properties (content type, user properties, expiry) need MQTT 5; "
                    "switch the connection to MQTT 5 or leave them empty."
                )
            props = Properties(PacketTypes.PUBLISH)
            if content_type:
                props.ContentType = content_type
            if user_properties:
                props.UserProperty = user_properties
            if message_expiry:
                props.MessageExpiryInterval = int(message_expiry)
            if response_topic:
                props.ResponseTopic = response_topic
            if correlation_data:
                props.CorrelationData = correlation_data
        try:
            await client.publish(topic, payload, qos=qos, retain=retain, properties=props)
        except MqttError as exc:
            raise SessionError(f"Publishing to {topic!r} failed: {exc}.") from None


class _Connected(Exception):  # noqa: N818 - control flow: a connection that was up has ended
    def __init__(self, error: SessionError) -> None:
        super().__init__(error.message)
        self.error = error


class _FallBack(Exception):  # noqa: N818 - control flow: try the next MQTT version
    pass

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
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import NamedTuple

import aiomqtt
import paho.mqtt.client as paho
from aiomqtt.exceptions import MqttCodeError, MqttConnectError, MqttError
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
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
    KEEPALIVE_TIMEOUT,
    SessionError,
    connack_error,
    describe_exception,
    disconnect_reason,
    handshake_failure,
    is_protocol_version_refusal,
    library_error,
    publish_refusal,
    reason_value,
    subscribe_refusal,
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
    dup: bool = False  # the MQTT DUP flag: the broker redelivers a QoS 1/2 message it may have sent before


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

# How many packets one socket-readable callback may process before yielding to the loop, and
# for how long: under a flood the fast path drains whole 64 KiB reads per packet paho asks for,
# and without a time bound one callback ran for seconds (capture's once-a-second flush, timers and
# pings waited that long).
_READ_BURST = 256
_READ_BURST_SECONDS = 0.02

# The fast path's sink: (topic, payload, retain, received_at). received_at is time.time() when
# the bytes were taken from the read buffer, the same float object for every message of one pass.
FastSink = Callable[[str, bytes, bool, float], None]


def _take_qos0_publishes(data: bytes, pos: int, deliver: FastSink, received_at: float) -> int:
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
        deliver(topic, data[topic_end:end], first & 1 == 1, received_at)
        pos = end
    return pos


class _LibraryLog(logging.LoggerAdapter):
    """What paho and aiomqtt log, all at DEBUG to "app.mqtt.session.library": the session words every
    failure as a sentence itself, so their raw lines ("failed to receive on socket: [Errno 104] …") must
    not reach a console at ERROR. The application's logging configuration decides where they go."""

    def log(self, level, msg, *args, **kwargs) -> None:  # noqa: ARG002 - every level becomes DEBUG
        if self.logger.isEnabledFor(logging.DEBUG):
            self.logger.debug(msg, *args, **kwargs)


_LIBRARY_LOG = _LibraryLog(logging.getLogger(__name__ + ".library"), {})


class _NoConnack(Exception):  # noqa: N818 - the MQTT handshake ended without a CONNACK
    def __init__(self, rc=None, *, from_broker: bool = False, waited: float | None = None, cause=None) -> None:
        super().__init__("no CONNACK")
        self.rc = rc  # paho's reason when the connection was closed; None: nothing came in time
        self.from_broker = from_broker  # the broker sent a DISCONNECT packet
        self.waited = waited  # seconds since CONNECT was sent
        self.cause = cause  # the socket error, if one was seen


class _RecordingContext:
    """An SSLContext that notes every socket it wraps: the attempt must be able to close it even
    when the TLS handshake in the connect thread fails or is interrupted."""

    __slots__ = ("_context", "_record")

    def __init__(self, context, record: Callable[[object], None]) -> None:
        object.__setattr__(self, "_context", context)
        object.__setattr__(self, "_record", record)

    def wrap_socket(self, *args, **kwargs):
        sock = self._context.wrap_socket(*args, **kwargs)
        self._record(sock)
        return sock

    def __getattr__(self, name: str):
        return getattr(self._context, name)

    def __setattr__(self, name: str, value) -> None:  # paho's tls_insecure_set sets check_hostname
        setattr(self._context, name, value)


class _Client(aiomqtt.Client):
    """aiomqtt.Client with these changes:

    - messages go to `sink` directly from paho's callback (no Message copy, queue or task);
    - one readable event drains up to _READ_BURST packets, not one: under load that saves an
      event-loop iteration (a select() call, or a Qt event on qasync) per message (measured);
    - open() replaces `async with`: the TCP connection is made on the event loop (so stop() and
      timeouts end it at once), and a failed or abandoned attempt closes its socket, reader, writer
      and ping task right away instead of leaving them to paho's keepalive (a minute);
    - a failed handshake is reported with what is known (paho's reason, the socket error, the time
      waited), so the user gets a sentence about the certificate, DNS or port, not aiomqtt's string;
    - no future is left holding an exception nobody awaits, and nothing is logged above DEBUG.
    """

    def __init__(self, *args, sink: Callable[[paho.MQTTMessage], None], **kwargs) -> None:
        super().__init__(*args, logger=_LIBRARY_LOG, **kwargs)
        self._sink = sink
        self._loop_thread = threading.get_ident()
        self._closed = False  # the attempt is over: callbacks from paho are ignored from now on
        self._sockets: list = []  # every socket object of this attempt, to close them all
        self._tcp: socket.socket | None = None  # connected on the loop, handed to paho once
        self._thread: asyncio.Future | None = None  # paho's connect(), in the default executor
        self._connect_sent_at: float | None = None
        self._publish_refusals: dict[int, object] = {}
        self.handshake_socket_error: BaseException | None = None
        self.socket_error: BaseException | None = None  # once connected
        self.disconnect_from_broker = False  # the connection ended with the broker's DISCONNECT
        self.silent_for: float | None = None  # seconds without an answer when the keepalive gave up
        paho_client = self._client
        paho_client._create_socket_connection = self._take_tcp  # noqa: SLF001
        if paho_client._ssl_context is not None:  # noqa: SLF001
            paho_client._ssl_context = _RecordingContext(paho_client._ssl_context, self._sockets.append)  # noqa: SLF001
        # paho swallows socket errors during the handshake (e.g. the TLS alert of a broker that
        # wants a client certificate arrives on the first read): note them until connected.
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

    # ----- connecting
    async def open(self) -> None:
        """Connects and waits for the CONNACK. Raises the socket, TLS or websocket error, an
        MqttConnectError for a refusal, or _NoConnack; whatever happens, including cancellation,
        a failed attempt leaves no socket, reader, writer or task behind."""
        loop = self._loop
        try:
            await self._open_tcp()
            # TLS and websocket handshakes and the CONNECT packet: paho's blocking code, in a thread.
            thread = self._thread = loop.run_in_executor(None, self._client_connect)
            thread.add_done_callback(self._after_thread)
            try:
                await asyncio.shield(thread)
            except asyncio.CancelledError:
                if not thread.done():
                    # Wake the thread (its blocking reads fail at once) and let it end, so the
                    # sockets are closed when stop() returns.
                    self._abort()
                    with contextlib.suppress(asyncio.CancelledError):
                        await asyncio.wait([thread], timeout=self.timeout)
                raise
            self._connect_sent_at = time.monotonic()
            try:
                await asyncio.wait_for(self._connected, self.timeout)
            except TimeoutError:
                raise _NoConnack(waited=self.timeout) from None
        except BaseException:
            self._abort()
            raise

    async def _open_tcp(self) -> None:
        loop = self._loop
        infos = await loop.getaddrinfo(self._hostname, self._port, type=socket.SOCK_STREAM)
        first_error: OSError | None = None
        for family, kind, proto, _name, address in infos:
            sock = socket.socket(family, kind, proto)
            self._sockets.append(sock)
            try:
                sock.setblocking(False)
                async with asyncio.timeout(self.timeout):
                    await loop.sock_connect(sock, address)
            except OSError as exc:  # TimeoutError included
                self._close_socket(sock)
                first_error = first_error or exc
                continue
            sock.settimeout(self.timeout)  # paho's TLS and websocket handshakes block up to this
            self._tcp = sock
            return
        raise first_error or OSError(f"no address found for {self._hostname}")

    def _take_tcp(self) -> socket.socket:
        """paho's _create_socket_connection (in the connect thread): the socket connected on the loop."""
        sock, self._tcp = self._tcp, None
        if sock is None or self._closed:
            raise ConnectionAbortedError("the connection attempt was given up")
        return sock

    def _interrupt(self) -> None:
        """Makes blocking reads and writes on this attempt's sockets fail, from any thread."""
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                socket.socket.shutdown(sock, socket.SHUT_RDWR)

    def _after_thread(self, thread: asyncio.Future) -> None:
        if not thread.cancelled():
            thread.exception()  # retrieved here too: nobody may await it any more
        if self._closed:  # given up while the thread ran: finish the cleanup
            self._abort()

    def _close_socket(self, sock) -> None:
        fd = sock.fileno()
        if fd >= 0:
            self._loop.remove_reader(fd)
            self._loop.remove_writer(fd)
        sock.close()

    def _abort(self) -> None:
        """Ends the attempt or connection now: closes its sockets, stops its reader, writer and
        ping task, and marks its futures' exceptions as retrieved. Idempotent; on the loop."""
        self._closed = True
        thread = self._thread
        if thread is not None and not thread.done():
            # paho's connect() still uses the sockets in its thread: make its reads and writes
            # fail now; _after_thread() closes everything once it has returned.
            self._interrupt()
            return
        paho_client = self._client
        with contextlib.suppress(Exception):
            paho_client._sock_close()  # noqa: SLF001 - removes the reader and writer first
        for sock in self._sockets:
            with contextlib.suppress(Exception):
                self._close_socket(sock)
        self._sockets.clear()
        self._tcp = None
        misc = self._misc_task
        if misc is not None and not misc.done():
            misc.cancel()
        for future in (self._connected, self._disconnected):
            if future.done() and not future.cancelled():
                future.exception()

    async def close(self, goodbye_timeout: float = 2.0) -> None:
        """Says goodbye (DISCONNECT) if the connection is still up, then ends it as _abort()."""
        try:
            paho_client = self._client
            up = not self._closed and paho_client._sock is not None and not self._disconnected.done()  # noqa: SLF001
            if up and paho_client.disconnect() == paho.MQTT_ERR_SUCCESS:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self._disconnected, goodbye_timeout)
        finally:
            self._abort()
        misc = self._misc_task
        if misc is not None and not misc.done():
            await asyncio.wait([misc], timeout=1)  # its cancellation takes one loop iteration

    # ----- connected
    def handshake_done(self, fast_publish: FastSink | None = None) -> None:
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
        wall_clock = time.time

        def buffered_recv(bufsize: int) -> bytes:
            data, pos = buffer
            chunks = 0
            while True:
                if pos >= len(data):
                    buffer[0], buffer[1] = b"", 0  # all consumed (also if recv raises below)
                    try:
                        data = plain_recv(65536)  # BlockingIOError when nothing is waiting; b"" on close
                    except BlockingIOError:
                        raise
                    except OSError as exc:  # paho turns it into "connection lost": keep the reason
                        self.socket_error = exc
                        raise
                    if not data:
                        return data
                    pos = 0
                    chunks += 1
                # paho replaces its reader-state dict after every packet: look it up each time.
                if fast_publish is None or bufsize != 1 or paho_client._in_packet["command"] or chunks > 8:  # noqa: SLF001
                    break
                # paho is about to read a new packet: first take every complete QoS 0 PUBLISH.
                new_pos = _take_qos0_publishes(data, pos, fast_publish, wall_clock())
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

    async def publish(self, topic, payload=None, qos=0, retain=False, properties=None, *, timeout=None) -> None:
        """aiomqtt's publish, plus the broker's refusal of a QoS 1/2 message (MQTT 5 PUBACK/PUBREC)."""
        info = self._client.publish(topic, payload, qos, retain, properties)
        if info.rc != paho.MQTT_ERR_SUCCESS:
            raise MqttCodeError(info.rc, "Could not publish message")
        try:
            if not info.is_published():
                confirmation = asyncio.Event()
                with self._pending_call(info.mid, confirmation, self._pending_publishes):
                    await self._wait_for(confirmation.wait(), timeout=timeout)
        finally:
            refusal = self._publish_refusals.pop(info.mid, None)
        if refusal is not None:
            raise MqttCodeError(refusal, "Publish refused")

    # ----- paho's callbacks
    def _on_message(self, client, userdata, message) -> None:  # noqa: ARG002
        self._sink(message)

    def _on_connect(self, client, userdata, flags, reason_code, properties=None) -> None:
        if not self._closed:
            super()._on_connect(client, userdata, flags, reason_code, properties)

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        if reason_code is not None and reason_code.value >= 0x80:
            self._publish_refusals[mid] = reason_code
        super()._on_publish(client, userdata, mid, reason_code, properties)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties=None) -> None:
        if threading.get_ident() != self._loop_thread:  # e.g. sending CONNECT failed in the connect thread
            self._loop.call_soon_threadsafe(self._on_disconnect, client, userdata, flags, reason_code, properties)
            return
        if self._closed:
            return
        from_broker = bool(flags.is_disconnect_packet_from_server)
        if not self._connected.done():
            # Dropped during the MQTT handshake (e.g. a 3.1-only broker refusing 3.1.1, where
            # paho closes the socket instead of reporting the CONNACK): fail now, not at timeout.
            sent = self._connect_sent_at
            waited = time.monotonic() - sent if sent is not None else None
            cause = self.handshake_socket_error
            self._connected.set_exception(_NoConnack(reason_code, from_broker=from_broker, waited=waited, cause=cause))
            return
        self.disconnect_from_broker = from_broker
        if not from_broker and reason_code.value == KEEPALIVE_TIMEOUT:
            # paho gave up waiting for the broker: for how long since the unanswered ping?
            ping_t = client._ping_t  # noqa: SLF001
            self.silent_for = time.monotonic() - ping_t if ping_t > 0 else float(client.keepalive)
        super()._on_disconnect(client, userdata, flags, reason_code, properties)

    def _fail(self, exc: BaseException) -> None:
        """A reader or writer callback raised: the attempt or connection has failed."""
        if self._closed:
            return
        if not self._connected.done():
            self._connected.set_exception(_NoConnack(cause=exc))
        elif not self._disconnected.done():
            self._disconnected.set_exception(exc)

    def _in_loop(self, callback: Callable[[], None]) -> None:
        if threading.get_ident() == self._loop_thread:
            callback()
        else:
            self._loop.call_soon_threadsafe(callback)

    def _on_socket_open(self, client, userdata, sock) -> None:  # noqa: ARG002
        loop = self._loop

        monotonic = time.monotonic

        def on_readable() -> None:
            try:
                until = monotonic() + _READ_BURST_SECONDS
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
                    if monotonic() > until:
                        break
                pending = getattr(client._sock, "pending", None)  # noqa: SLF001 - TLS: decrypted, unread
                if self.buffered() or (pending is not None and pending() > 0):
                    # The burst ended with packets still in the read buffer: the socket will not
                    # wake us for them, so come back after the loop's other work.
                    loop.call_soon(on_readable)
            except Exception as exc:  # noqa: BLE001 - a broken socket: report it as a disconnect
                self._fail(exc)

        def start() -> None:
            # Called from the connect thread: by now the attempt may be over, the socket closed.
            if self._closed or client._sock is not sock:  # noqa: SLF001
                return
            loop.add_reader(sock.fileno(), on_readable)
            self._misc_task = loop.create_task(self._misc_loop())

        loop.call_soon_threadsafe(start)

    def _on_socket_close(self, client, userdata, sock) -> None:  # noqa: ARG002
        fd = sock.fileno()
        misc = self._misc_task

        def stop() -> None:
            if fd >= 0:
                self._loop.remove_reader(fd)
            if misc is not None and not misc.done():
                misc.cancel()

        self._in_loop(stop)

    def _on_socket_register_write(self, client, userdata, sock) -> None:  # noqa: ARG002
        loop = self._loop

        def on_writable() -> None:
            try:
                client.loop_write()
            except Exception as exc:  # noqa: BLE001 - a broken socket: report it as a disconnect
                self._fail(exc)

        def register() -> None:
            # In order with unregistering (both on the loop), and only if paho still wants it.
            if not self._closed and client._sock is sock and client._registered_write:  # noqa: SLF001
                loop.add_writer(sock.fileno(), on_writable)

        self._in_loop(register)

    def _on_socket_unregister_write(self, client, userdata, sock) -> None:  # noqa: ARG002
        fd = sock.fileno()
        if fd >= 0:
            self._in_loop(lambda: self._loop.remove_writer(fd))


class MqttSession:
    """A broker connection that reconnects forever with capped exponential backoff.

    All methods must be called on the event loop the session was started on.
    """

    def __init__(
        self,
        config: ConnectionConfig,
        *,
        on_message: Callable[[ReceivedMessage], None] | None = None,
        on_fast_message: FastSink | None = None,
        on_state: Callable[[StateChange], None] | None = None,
        ssl_context_factory: Callable[[], object] | None = None,
        credentials: Callable[[], tuple[str | None, str | None]] | None = None,
    ) -> None:
        self.config = config
        # A persistent session must present the same client id on every reconnect.
        self.client_id = config.client_id or generate_client_id()
        self._on_message = on_message
        # QoS 0 messages of MQTT 3.x that the fast path decodes go here, when given, instead of
        # to on_message as ReceivedMessage (and are not counted in messages_received): for a sink
        # that wants no object per message (capture). Every other message goes to on_message.
        self._on_fast_message = on_fast_message
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
        self._ever_connected = False
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
                    bool(message.dup),
                )
            )

    def _deliver_fast(self, topic: str, payload: bytes, retain: bool, received_at: float) -> None:  # noqa: ARG002
        """A QoS 0 PUBLISH decoded by the fast path (MQTT 3.x, so no properties, and no DUP flag)."""
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
                    ever_connected = self._ever_connected = True
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
            await client.open()  # on failure it has closed everything of the attempt
        except MqttConnectError as exc:
            if self._may_fall_back(version) and is_protocol_version_refusal(exc.rc):
                raise _FallBack from None
            raise connack_error(exc.rc, cfg) from None
        except _NoConnack as exc:
            dropped = exc.rc is not None and reason_value(exc.rc) != KEEPALIVE_TIMEOUT
            if dropped and self._may_fall_back(version):
                raise _FallBack from None
            raise handshake_failure(
                cfg,
                rc=exc.rc,
                from_broker=exc.from_broker,
                waited=exc.waited,
                cause=exc.cause,
                ever_connected=self._ever_connected,
            ) from None
        except (OSError, ValueError) as exc:  # socket, DNS, TLS and websocket errors
            raise describe_exception(exc, cfg) from None
        client.handshake_done(None if version == MqttVersion.V5 else (self._on_fast_message or self._deliver_fast))

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
                if client._disconnected.done():  # noqa: SLF001
                    break
            if not client._disconnected.done():  # noqa: SLF001
                self._set_state(SessionState.CONNECTED, mqtt_version=str(version), error=" ".join(refused) or None)
            try:
                # shield: cancelling stop() must not cancel aiomqtt's own future, so the finally
                # below can still say goodbye to the broker.
                await asyncio.shield(client._disconnected)  # noqa: SLF001
            except Exception as exc:  # noqa: BLE001
                raise _Connected(SessionError(self._lost(client, exc))) from None
            raise _Connected(SessionError(self._lost(client, None)))
        finally:
            self._client = None
            await client.close()  # says goodbye if still connected (stop()); closes the socket

    def _lost(self, client: _Client, exc: BaseException | None) -> str:
        return disconnect_reason(
            exc,
            self.config,
            from_broker=client.disconnect_from_broker,
            silent_for=client.silent_for,
            socket_error=client.socket_error,
        )

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
        try:
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
        except MqttCodeError as exc:
            raise library_error(f"Subscribing to {sub.topic!r}", exc.rc) from None
        except MqttError:  # no SUBACK within the timeout
            raise SessionError(
                f"The broker did not confirm the subscription to {sub.topic!r} within {client.timeout:g} seconds; "
                "it is kept and made again on the next connection."
            ) from None
        code = result[0]
        value = reason_value(code)
        if value >= 0x80:
            self._subscriptions.pop(sub.topic, None)
            raise subscribe_refusal(sub.topic, code)
        return value

    async def unsubscribe(self, topic: str) -> None:
        self._subscriptions.pop(topic, None)
        client = self._client
        if client is not None:
            try:
                await client.unsubscribe(topic)
            except MqttCodeError as exc:
                raise library_error(f"Unsubscribing from {topic!r}", exc.rc) from None
            except MqttError:  # no UNSUBACK within the timeout
                raise SessionError(
                    f"The broker did not confirm the end of the subscription to {topic!r} within "
                    f"{client.timeout:g} seconds; it is not made again on the next connection."
                ) from None

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
        except MqttCodeError as exc:
            if isinstance(exc.rc, ReasonCode):
                raise publish_refusal(topic, exc.rc) from None
            raise library_error(f"Publishing to {topic!r}", exc.rc) from None
        except MqttError:  # no PUBACK/PUBCOMP within the timeout
            raise SessionError(
                f"The broker did not confirm the message to {topic!r} within {client.timeout:g} seconds; "
                "it may not have arrived. Check the connection and publish again if needed."
            ) from None
        except ValueError as exc:  # paho: a payload above MQTT's 256 MB, a topic it cannot encode
            if "large" in str(exc):
                raise SessionError(
                    f"The message to {topic!r} is larger than MQTT allows (256 MB); send a smaller payload."
                ) from None
            raise SessionError(
                f"The topic {topic!r} cannot be sent over MQTT (it may be longer than 65,535 bytes); "
                "use a shorter topic."
            ) from None


class _Connected(Exception):  # noqa: N818 - control flow: a connection that was up has ended
    def __init__(self, error: SessionError) -> None:
        super().__init__(error.message)
        self.error = error


class _FallBack(Exception):  # noqa: N818 - control flow: try the next MQTT version
    pass

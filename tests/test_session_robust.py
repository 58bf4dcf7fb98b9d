"""The session failing cleanly: no socket or future left behind by a failed attempt, no library
line on stderr, and every failure worded as a sentence. Real sockets and a real mosquitto only."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from app.devbroker import Mosquitto
from app.mqtt.config import ConnectionConfig, MqttVersion, Subscription, Transport, parse_url
from app.mqtt.errors import (
    SessionError,
    broker_disconnect,
    disconnect_reason,
    library_error,
    publish_refusal,
    subscribe_refusal,
)
from app.mqtt.session import MqttSession, SessionState, StateChange

pytestmark = pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts sockets in /proc/self/fd")

# A listener on 127.0.0.1 in a process of its own, so that this process's sockets are the session's:
# "accepts" takes every connection and never sends a byte; "never-accepts" listens with the smallest
# backlog and never calls accept(), so the kernel soon stops completing connections; "drops" closes
# each connection as soon as it is accepted.
_LISTENER = r"""
import socket, sys, time
mode = sys.argv[1]
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(0 if mode == "never-accepts" else 64)
print(s.getsockname()[1], flush=True)
held = []
while True:
    if mode == "never-accepts":
        time.sleep(3600)
    c, _ = s.accept()
    if mode == "drops":
        c.close()
    else:
        held.append(c)
"""


@contextlib.contextmanager
def listener(mode: str):
    proc = subprocess.Popen([sys.executable, "-c", _LISTENER, mode], stdout=subprocess.PIPE, text=True)
    try:
        yield int(proc.stdout.readline())
    finally:
        proc.kill()
        proc.wait(5)
        proc.stdout.close()


def open_sockets() -> int:
    n = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
                n += 1
    return n


def fast_retries(port: int, **kw) -> ConnectionConfig:
    values = {"connect_timeout": 0.5, "reconnect_interval": 0.05, "reconnect_max_interval": 0.1, **kw}
    return ConnectionConfig("127.0.0.1", port, **values)


async def until(predicate, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


def failures(states: list[StateChange]) -> list[str]:
    return [s.error for s in states if s.state == SessionState.RECONNECTING and s.retry_in is not None]


def assert_sentence(text: str) -> None:
    assert text and text.endswith((".", "…")), text
    for bare in ("code:", "[code", "Unspecified error", "Traceback", "MqttCodeError", "ReasonCode"):
        assert bare not in text, text


@pytest.mark.parametrize("mode", ["accepts", "never-accepts"])
async def test_black_holed_listener_leaves_at_most_one_socket(mode):
    """Each failed attempt closes its socket at once; stop() in the middle of one leaves none."""
    with listener(mode) as port:
        baseline = open_sockets()
        states: list[StateChange] = []
        session = MqttSession(fast_retries(port), on_state=states.append)
        most = 0
        await session.start()
        try:
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline and len(failures(states)) < 4:
                most = max(most, open_sockets() - baseline)
                await asyncio.sleep(0.005)
            assert len(failures(states)) >= 4, states
            # stop() while an attempt is pending: a quarter of the way into its timeout.
            await until(lambda: states[-1].retry_in is None, 2)
            await asyncio.sleep(0.12)
            most = max(most, open_sockets() - baseline)
            started = time.monotonic()
        finally:
            await session.stop()
        stop_took = time.monotonic() - started
        after = open_sockets()
    assert most <= 1, f"{most} sockets of attempts open at once"
    assert after <= baseline, f"{after - baseline} sockets left after stop()"
    assert stop_took < 0.3
    for text in failures(states):
        assert_sentence(text)
    expected = "did not complete the MQTT handshake" if mode == "accepts" else "did not answer within"
    assert any(expected in text for text in failures(states)), failures(states)


async def test_stop_during_the_tls_handshake_is_immediate_and_leaves_no_socket():
    """The TLS handshake runs in a thread with a blocking socket: stop() wakes it at once."""
    with listener("accepts") as port:
        baseline = open_sockets()
        states: list[StateChange] = []
        cfg = fast_retries(port, connect_timeout=10, transport=Transport.TLS)
        session = MqttSession(cfg, on_state=states.append)
        await session.start()
        await asyncio.sleep(0.5)  # the ClientHello is out; no answer will ever come
        assert open_sockets() - baseline == 1
        started = time.monotonic()
        await session.stop()
        stop_took = time.monotonic() - started
        after = open_sockets()
    assert stop_took < 0.5, f"stop() took {stop_took:.2f} s"
    assert after <= baseline
    assert [s.state for s in states] == [SessionState.CONNECTING, SessionState.DISCONNECTED]


async def test_failed_attempts_leave_no_unretrieved_future_or_pending_task(caplog, capfd):
    caplog.set_level(logging.DEBUG)
    for mode in ("drops", "accepts"):
        with listener(mode) as port:
            states: list[StateChange] = []
            for version in (MqttVersion.V311, MqttVersion.V5, MqttVersion.V311_THEN_31):
                states.clear()
                session = MqttSession(fast_retries(port, mqtt_version=version), on_state=states.append)
                await session.start()
                await until(lambda: len(failures(states)) >= 3, 5)  # noqa: B023 - awaited right here
                await asyncio.sleep(0.1)  # stop during an attempt or a retry wait
                await session.stop()
                del session
                gc.collect()
                await asyncio.sleep(0.05)
                gc.collect()
    noise = ("never retrieved", "destroyed but it is pending", "Exception in callback")
    logged = [r.getMessage() for r in caplog.records if r.name == "asyncio" or r.levelno >= logging.WARNING]
    assert not [m for m in logged if any(n in m for n in noise)], logged
    err = capfd.readouterr().err
    assert not any(n in err for n in noise), err


async def test_library_lines_stay_off_stderr(broker, caplog, capfd):
    """mqtt:// to a TLS port: paho logs "failed to receive on socket: [Errno 104]" at ERROR; it must
    reach only our log, at DEBUG, and not a console handler (as the CLI's basicConfig installs)."""
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.WARNING)
    root = logging.getLogger()
    root.addHandler(console)
    caplog.set_level(logging.DEBUG, logger="app.mqtt.session")
    states: list[StateChange] = []
    try:
        session = MqttSession(
            parse_url(f"mqtt://127.0.0.1:{broker.ports.tls}", reconnect_interval=0.1), on_state=states.append
        )
        async with session:
            await until(lambda: len(failures(states)) >= 2, 10)
    finally:
        root.removeHandler(console)
    err = capfd.readouterr().err
    assert "failed to receive" not in err and "Errno" not in err, err
    assert err.strip() == "", err
    library = [r for r in caplog.records if r.name.startswith("app.mqtt.session.library")]
    assert all(r.levelno == logging.DEBUG for r in library)
    for text in failures(states):
        assert_sentence(text)
        assert "may require TLS" in text, text


async def test_keepalive_timeout_on_a_stalled_link_is_worded_as_no_answer(own_broker, topic):
    """A broker that stops answering on an established connection (SIGSTOP: the kernel still holds
    the connection, nothing answers): the keepalive gives up, and says so; after SIGCONT the session
    is back by itself."""
    states: list[StateChange] = []
    cfg = parse_url(
        own_broker.url("plain"),
        keepalive=1,
        connect_timeout=2,
        reconnect_interval=0.2,
        reconnect_max_interval=0.5,
        subscriptions=(Subscription(topic + "/#", 1),),
    )
    session = MqttSession(cfg, on_state=states.append)
    pid = own_broker.proc.pid
    async with session:
        await session.wait_connected(10)
        stopped_at = time.monotonic()
        os.kill(pid, signal.SIGSTOP)
        try:
            await until(lambda: failures(states), 6)
            detected = time.monotonic() - stopped_at
            await until(lambda: len(failures(states)) >= 3, 10)  # attempts against the stalled broker
        finally:
            os.kill(pid, signal.SIGCONT)
        first, *later = failures(states)
        await until(lambda: session.state == SessionState.CONNECTED, 15)
    assert first.startswith("No answer from the broker for "), first
    seconds = int(first.removeprefix("No answer from the broker for ").split(" ")[0])
    assert 1 <= seconds <= 3 and detected < 4.5, (first, detected)
    assert "the network may be down" in first
    for text in [first, *later]:
        assert "disconnected this client" not in text
        assert_sentence(text)
    # A reconnect to the stalled broker gets no CONNACK either: the same sentence, not "code 141".
    assert all(t.startswith("No answer from the broker for ") for t in later), later


class ScriptedBroker:
    """Just enough of an MQTT 3.1.1/5 broker on 127.0.0.1 to send what mosquitto 2.0.11 does not:
    a DISCONNECT 0x8E (session taken over) to the older of two clients with the same client id,
    as MQTT 5 section 3.1.4 prescribes (mosquitto only closes the socket), and SUBACK refusals
    (mosquitto grants every subscription and applies its ACL on delivery). Filters under denied/
    get 0x87 (0x80 on MQTT 3.x), $share/ filters 0x9E; everything else is granted."""

    def __init__(self) -> None:
        self.clients: dict[bytes, asyncio.StreamWriter] = {}
        self.server: asyncio.Server | None = None
        self.port = 0

    async def __aenter__(self) -> ScriptedBroker:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc) -> None:
        for writer in list(self.clients.values()):
            writer.close()
        self.server.close()
        await self.server.wait_closed()

    @staticmethod
    def _varint(data: bytes, pos: int) -> tuple[int, int]:
        value = shift = 0
        while True:
            byte = data[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                return value, pos
            shift += 7

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        client_id, v5 = None, False
        try:
            while True:
                first = (await reader.readexactly(1))[0]
                length = shift = 0
                while True:
                    byte = (await reader.readexactly(1))[0]
                    length |= (byte & 0x7F) << shift
                    shift += 7
                    if byte < 0x80:
                        break
                body = await reader.readexactly(length)
                kind = first & 0xF0
                if kind == 0x10:  # CONNECT
                    name_end = 2 + int.from_bytes(body[:2])
                    v5 = body[name_end] == 5
                    pos = name_end + 4
                    if v5:
                        props, pos = self._varint(body, pos)
                        pos += props
                    client_id = body[pos + 2 : pos + 2 + int.from_bytes(body[pos : pos + 2])]
                    older = self.clients.pop(client_id, None)
                    if older is not None:
                        if v5:
                            older.write(b"\xe0\x02\x8e\x00")  # DISCONNECT, session taken over
                        older.close()
                    self.clients[client_id] = writer
                    writer.write(b"\x20\x03\x00\x00\x00" if v5 else b"\x20\x02\x00\x00")
                elif kind == 0x80:  # SUBSCRIBE
                    pos = 2
                    if v5:
                        props, pos = self._varint(body, pos)
                        pos += props
                    codes = []
                    while pos < len(body):
                        end = pos + 2 + int.from_bytes(body[pos : pos + 2])
                        topic, qos = body[pos + 2 : end].decode(), body[end] & 3
                        if topic.startswith("denied/"):
                            codes.append(0x87 if v5 else 0x80)
                        elif topic.startswith("$share/"):
                            codes.append(0x9E if v5 else 0x80)
                        else:
                            codes.append(qos)
                        pos = end + 1
                    ack = body[:2] + (b"\x00" if v5 else b"") + bytes(codes)
                    writer.write(bytes([0x90, len(ack)]) + ack)
                elif kind == 0xC0:  # PINGREQ
                    writer.write(b"\xd0\x00")
                elif kind == 0xE0:  # DISCONNECT
                    break
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            if client_id is not None and self.clients.get(client_id) is writer:
                del self.clients[client_id]
            writer.close()


async def test_mqtt5_session_takeover_is_worded():
    async with ScriptedBroker() as broker:
        states_a: list[StateChange] = []
        cfg = ConnectionConfig("127.0.0.1", broker.port, client_id="takeover-test", mqtt_version=MqttVersion.V5)
        a = MqttSession(cfg.replace(reconnect_interval=5), on_state=states_a.append)
        b = MqttSession(cfg.replace(reconnect_interval=5))
        async with a:
            await a.wait_connected(10)
            async with b:
                await b.wait_connected(10)
                await until(lambda: failures(states_a), 5)
    [text] = failures(states_a)
    assert text.startswith(f"The broker at mqtt://127.0.0.1:{broker.port} ended the connection: "), text
    assert "another client connected with the same client id" in text, text
    assert "own client id" in text  # what to do
    assert_sentence(text)


@pytest.mark.parametrize("version", [MqttVersion.V311, MqttVersion.V5])
async def test_takeover_by_mosquitto_is_worded(broker, version):
    """mosquitto 2.0.11 closes the older connection without a DISCONNECT: a worded close, no code."""
    states_a: list[StateChange] = []
    cfg = parse_url(broker.url("plain"), client_id=f"takeover-{version}", mqtt_version=version, reconnect_interval=5)
    a = MqttSession(cfg, on_state=states_a.append)
    b = MqttSession(cfg)
    async with a:
        await a.wait_connected(10)
        async with b:
            await b.wait_connected(10)
            await until(lambda: failures(states_a), 5)
    [text] = failures(states_a)
    assert text == f"The broker at {cfg.describe()} closed the connection. Reconnecting…", text


@pytest.mark.parametrize("version", [MqttVersion.V311, MqttVersion.V5])
async def test_refused_subscriptions_are_worded(version):
    async with ScriptedBroker() as broker:
        subs = (Subscription("denied/#", 1), Subscription("$share/g/t/#", 1), Subscription("ok/#", 1))
        cfg = ConnectionConfig("127.0.0.1", broker.port, mqtt_version=version, subscriptions=subs)
        session = MqttSession(cfg)
        async with session:
            await session.wait_connected(10)
            connected = session.last_change
            with pytest.raises(SessionError) as info:
                await session.subscribe(Subscription("denied/later", 0))
            assert await session.subscribe(Subscription("ok/later", 2)) == 2
            assert [s.topic for s in session.subscriptions] == ["ok/#", "ok/later"]
    refusals = connected.error
    assert refusals.startswith("The broker refused the subscription to 'denied/#': "), refusals
    assert "The broker refused the subscription to '$share/g/t/#': " in refusals
    if version == MqttVersion.V5:
        assert "not authorized to subscribe" in refusals and "does not support shared subscriptions" in refusals
        assert "not authorized to subscribe" in str(info.value)
    else:
        assert "gave no reason" in refusals
    for text in (refusals, str(info.value)):
        assert_sentence(text)


class _AclBroker(Mosquitto):
    """The plain listener with an ACL: anonymous clients may publish to allowed/# only."""

    def _write_config(self) -> None:
        super()._write_config()
        acl = self.dir / "acl"
        acl.write_text("topic readwrite allowed/#\n")
        self.conf.write_text(self.conf.read_text() + f"acl_file {acl}\n")


async def test_refused_message_is_worded(tmp_path, pki):
    """MQTT 5 PUBACK 0x87 (mosquitto then drops the connection; the session comes back by itself)."""
    b = _AclBroker(tmp_path / "acl-broker", pki=pki, full=False)
    b.start()
    try:
        cfg = parse_url(b.url("plain"), mqtt_version=MqttVersion.V5, reconnect_interval=0.1)
        session = MqttSession(cfg)
        async with session:
            await session.wait_connected(10)
            await session.publish("allowed/x", b"1", qos=1)
            with pytest.raises(SessionError) as info:
                await session.publish("secret/x", b"1", qos=1)
            await asyncio.sleep(0.3)
            await session.wait_connected(10)
            await session.publish("allowed/x", b"2", qos=1)
    finally:
        b.stop()
    text = str(info.value)
    assert text.startswith("The broker refused the message to 'secret/x': this client is not authorized"), text
    assert_sentence(text)


def _codes_for(packet_type: int) -> list[int]:
    return [code for code, names in ReasonCode.names.items() if any(packet_type in kinds for kinds in names.values())]


def test_every_disconnect_and_suback_reason_code_is_a_sentence():
    cfg = ConnectionConfig("broker.example.com", 8883, transport=Transport.TLS)
    disconnect = _codes_for(PacketTypes.DISCONNECT)
    assert {0x04, 0x8B, 0x8D, 0x8E, 0x98, 0x9C, 0xA2} <= set(disconnect)
    seen = set()
    for code in disconnect:
        text = broker_disconnect(ReasonCode(PacketTypes.DISCONNECT, identifier=code), cfg)
        assert_sentence(text)
        assert "does not know" not in text, text
        assert text.startswith("The broker at mqtts://broker.example.com:8883 ended the connection: "), text
        seen.add(text)
        # The same packet reaches the session as an aiomqtt error flagged "from the broker".
        exc = type("MqttCodeError", (Exception,), {})()
        exc.rc = ReasonCode(PacketTypes.DISCONNECT, identifier=code)
        reason = disconnect_reason(exc, cfg, from_broker=True)
        assert_sentence(reason)
    assert len(seen) == len(disconnect), "each reason its own sentence"
    suback = [c for c in _codes_for(PacketTypes.SUBACK) if c >= 0x80]
    assert set(suback) == {0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2}
    for code in suback:
        text = subscribe_refusal("a/#", ReasonCode(PacketTypes.SUBACK, identifier=code)).message
        assert_sentence(text)
        assert "does not know" not in text, text
    for code in (c for c in _codes_for(PacketTypes.PUBACK) if c >= 0x80):
        text = publish_refusal("a/b", ReasonCode(PacketTypes.PUBACK, identifier=code)).message
        assert_sentence(text)
        assert "does not know" not in text, text
    for rc in MQTTErrorCode:
        if rc > 0:
            text = library_error("Publishing to 'a/b'", rc).message
            assert_sentence(text)
            assert "error " not in text, text


def test_client_side_disconnects_are_not_blamed_on_the_broker():
    """paho reports what it detected itself with DISCONNECT reason codes (keepalive 0x8D, connection
    lost as 0x80, protocol error 0x82): those are not the broker disconnecting this client."""
    cfg = ConnectionConfig("broker.example.com", keepalive=30)

    def lost(code: int, **kw) -> str:
        exc = type("MqttCodeError", (Exception,), {})()
        exc.rc = ReasonCode(PacketTypes.DISCONNECT, identifier=code)
        text = disconnect_reason(exc, cfg, **kw)
        assert_sentence(text)
        assert "ended the connection" not in text, text
        return text

    assert lost(0x8D, silent_for=31.7) == "No answer from the broker for 31 s; the network may be down. Reconnecting…"
    assert lost(0x8D).startswith("No answer from the broker for 30 s")
    assert lost(0x80) == "The broker at mqtt://broker.example.com:1883 closed the connection. Reconnecting…"
    assert "(it was reset" in lost(0x80, socket_error=ConnectionResetError(104, "Connection reset by peer"))
    assert "breaks the MQTT protocol" in lost(0x82)
    assert disconnect_reason(None, cfg).endswith("closed the connection. Reconnecting…")

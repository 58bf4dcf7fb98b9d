"""Redelivery shown, not hidden: a message mosquitto redelivers with the MQTT DUP flag is marked
in `capture` output ("dup": true) and in the engine's column batches (the window's store).

The redelivery is made deterministic with a raw MQTT 3.1.1 client on a plain socket: it
subscribes at QoS 1 in a persistent session, receives a PUBLISH, never acknowledges it and drops
the connection. The next client with the same client id and a persistent session gets that
message again, with DUP set (it was in flight), and the messages queued meanwhile without it.
"""

from __future__ import annotations

import json
import signal
import socket
import struct
import time
import uuid
from pathlib import Path

import orjson

from app import platforms
from app.mqtt.config import Subscription, parse_url
from app.mqtt.session import MqttSession, ReceivedMessage
from app.store import EventStore
from tests.conftest import until
from tests.test_capture import read_lines, start_capture, wait_connected, wait_for
from tests.test_session import publish_with_paho

SAMPLES = Path(__file__).parent / "samples"
DUP_BIT = 0x08


def _remaining_length(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _packet(first: int, body: bytes) -> bytes:
    return bytes([first]) + _remaining_length(len(body)) + body


def _text(s: str) -> bytes:
    data = s.encode()
    return struct.pack("!H", len(data)) + data


class UnackingSubscriber:
    """An MQTT 3.1.1 subscriber on a raw socket that never sends PUBACK."""

    def __init__(self, port: int, client_id: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buffer = b""
        flags = 0x00  # clean session off: the broker keeps the session and its in-flight messages
        self.sock.sendall(_packet(0x10, _text("MQTT") + bytes([4, flags]) + struct.pack("!H", 60) + _text(client_id)))
        first, body = self.read_packet()
        assert first == 0x20 and body[1] == 0, f"CONNACK refused: {body!r}"

    def subscribe(self, topic_filter: str) -> None:
        self.sock.sendall(_packet(0x82, struct.pack("!H", 1) + _text(topic_filter) + b"\x01"))
        first, body = self.read_packet()
        assert first == 0x90 and body[2] == 1, f"SUBACK: {body!r}"

    def read_packet(self) -> tuple[int, bytes]:
        while True:
            if len(self.buffer) >= 2:
                length, shift, i = 0, 0, 1
                while i < len(self.buffer):
                    b = self.buffer[i]
                    length |= (b & 0x7F) << shift
                    i += 1
                    if b < 0x80:
                        if len(self.buffer) >= i + length:
                            first, body = self.buffer[0], self.buffer[i : i + length]
                            self.buffer = self.buffer[i + length :]
                            return first, body
                        break
                    shift += 7
            chunk = self.sock.recv(65536)
            assert chunk, "the broker closed the connection"
            self.buffer += chunk

    def receive_publish(self) -> tuple[int, str, bytes]:
        """(first byte, topic, payload) of the next PUBLISH, not acknowledged."""
        first, body = self.read_packet()
        assert first >> 4 == 3, f"expected a PUBLISH, got packet type {first >> 4}"
        topic_len = struct.unpack("!H", body[:2])[0]
        topic = body[2 : 2 + topic_len].decode()
        rest = body[2 + topic_len :]
        if first & 0x06:
            rest = rest[2:]  # packet identifier
        return first, topic, rest

    def drop(self) -> None:
        """Ends the connection without DISCONNECT and without acknowledging anything."""
        self.sock.close()


def leave_one_in_flight(port: int, client_id: str, topic_filter: str, topic: str, payload: bytes) -> None:
    """The broker sends payload to client_id's persistent session, which never acknowledges it."""
    raw = UnackingSubscriber(port, client_id)
    try:
        raw.subscribe(topic_filter)
        publish_with_paho(port, topic, [payload], qos=1)
        first, got_topic, got = raw.receive_publish()
        assert (got_topic, got) == (topic, payload)
        assert first & 0x06 == 0x02 and not first & DUP_BIT  # QoS 1, first delivery
    finally:
        raw.drop()
    time.sleep(0.2)  # the broker notices the dropped connection


def test_capture_marks_the_redelivered_message(broker, tmp_path, topic):
    client_id = f"dup-capture-{uuid.uuid4().hex[:8]}"
    port = broker.ports.plain
    leave_one_in_flight(port, client_id, topic + "/#", topic + "/m", b"in flight")
    publish_with_paho(port, topic + "/m", [b"queued"], qos=1)  # waits in the session, never sent
    out = tmp_path / "cap.jsonl"
    proc = start_capture(
        "--url",
        broker.url("plain"),
        "--topic",
        topic + "/#",
        "--qos",
        "1",
        "--session",
        "persistent",
        "--client-id",
        client_id,
        "--out",
        str(out),
    )
    try:
        wait_connected(proc)
        assert wait_for(lambda: len(read_lines(out)) == 2, 10.0), read_lines(out)
        publish_with_paho(port, topic + "/m", [b"live"], qos=1)
        publish_with_paho(port, topic + "/q0", [b"live qos 0"], qos=0)  # the fast path's line
        assert wait_for(lambda: len(read_lines(out)) == 4, 10.0), read_lines(out)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(10)
    assert proc.returncode == 0
    lines = read_lines(out)
    assert {line["payload"]: line["dup"] for line in lines} == {
        "in flight": True,
        "queued": False,
        "live": False,
        "live qos 0": False,
    }
    for line in lines:  # every key of a raw line, dup a boolean on each
        assert list(line) == ["time", "topic", "qos", "retain", "dup", "payload", "payload_encoding", "properties"]
        assert line["qos"] == (0 if line["payload"] == "live qos 0" else 1)
    # Raw bytes as a user greps them: exactly one line says it was a redelivery.
    assert out.read_bytes().count(b'"dup":true') == 1


async def test_session_reports_dup_in_received_message(broker, topic):
    client_id = f"dup-session-{uuid.uuid4().hex[:8]}"
    port = broker.ports.plain
    leave_one_in_flight(port, client_id, topic + "/#", topic + "/m", b"again")
    got: list[ReceivedMessage] = []
    cfg = parse_url(
        broker.url("plain"), client_id=client_id, clean_session=False, subscriptions=(Subscription(topic + "/#", 1),)
    )
    async with MqttSession(cfg, on_message=got.append) as session:
        await session.wait_connected(10)
        await until(lambda: len(got) == 1)
        await session.publish(topic + "/m", b"fresh", qos=1)
        await until(lambda: len(got) == 2)
    assert [(m.payload, m.dup) for m in got] == [(b"again", True), (b"fresh", False)]


def tts_uplink(f_cnt: int) -> bytes:
    doc = json.loads((SAMPLES / "tts_up_1.json").read_text())
    doc["uplink_message"]["f_cnt"] = f_cnt
    return orjson.dumps(doc)


async def test_engine_batches_carry_the_dup_column_into_the_store(broker):
    from app.mqtt.process import EngineProcess, ProcessSession

    tts = platforms.get("tts")
    app_id = f"dupapp{uuid.uuid4().hex[:6]}"
    uplinks = f"v3/{app_id}/devices/dev1/up"
    port = broker.ports.plain
    client_id = f"dup-engine-{uuid.uuid4().hex[:8]}"
    leave_one_in_flight(port, client_id, f"v3/{app_id}/devices/+/up", uplinks, tts_uplink(7))
    publish_with_paho(port, uplinks, [tts_uplink(8)], qos=1)  # queued meanwhile: not a redelivery

    profile = {"url": f"mqtt://127.0.0.1:{port}", "app": app_id, "password": "NNSXS.TEST", "upstream": "all"}
    config = tts.connection(profile).replace(
        client_id=client_id, clean_session=False, subscriptions=(Subscription(f"v3/{app_id}/devices/+/up", 1),)
    )
    batches: list = []
    engine = EngineProcess()
    history_name = f"dup test {app_id}"
    try:
        session = ProcessSession(
            engine,
            config,
            on_batch=batches.append,
            on_state=lambda c: None,
            platform="tts",
            profile=profile,
            history_name=history_name,
        )
        await session.start()
        await until(lambda: sum(len(b["f_cnt"]) for b in batches) == 2, 20)
        publish_with_paho(port, uplinks, [tts_uplink(9)], qos=1)
        await until(lambda: sum(len(b["f_cnt"]) for b in batches) == 3, 20)
        await session.stop()
    finally:
        engine.close()
    # As the window's table takes them: every batch appended to its EventStore.
    store = EventStore()
    for batch in batches:
        store.append_columns(batch)
    marks = {store.value(p, "f_cnt"): store.is_dup(p) for p in range(store.base, store.end)}
    assert marks == {7: True, 8: False, 9: False}
    # Only a batch holding a redelivery has the column at all.
    assert [("dup" in b) for b in batches].count(True) >= 1
    assert all(list(b["dup"]) == [1 if f == 7 else 0 for f in b["f_cnt"]] for b in batches if "dup" in b)
    # The history keeps the flag: a reopened connection marks the same row.
    from app.history import HistoryReader, history_path

    with HistoryReader(history_path(history_name)) as reader:
        await until(lambda: reader.count() == 3, 20)
        reopened = EventStore()
        reopened.reserve_below(10)
        for batch in reader.load_newest_first(10, first=1):
            reopened.prepend_columns(batch)
    assert {reopened.value(p, "f_cnt"): reopened.is_dup(p) for p in range(reopened.base, reopened.end)} == marks


def test_dup_bit_absent_from_qos0_is_not_a_redelivery():
    """The fast path (QoS 0, MQTT 3.x) never marks dup: MQTT requires DUP 0 on QoS 0."""
    from app.mqtt.session import _take_qos0_publishes

    got = []
    packet = _packet(0x30 | DUP_BIT, _text("a/b") + b"x")  # a broker that sets it anyway
    end = _take_qos0_publishes(packet, 0, lambda *args: got.append(args), 1.0)
    assert end == len(packet) and got == [("a/b", b"x", False, 1.0)]


def test_capture_line_for_redelivery_matches_its_dict():
    from app.capture import LineMaker, message_record

    msg = ReceivedMessage("t/x", b'{"a": 1}', 1, False, None, time.time(), time.monotonic(), True)
    line = LineMaker().line(msg)
    assert json.loads(line) == message_record(msg) and json.loads(line)["dup"] is True


async def test_raw_message_log_items_carry_dup(broker, topic):
    """A session without a platform sends ReceivedMessage items (the window's raw message log)."""
    from app.mqtt.process import EngineProcess, ProcessSession

    port = broker.ports.plain
    client_id = f"dup-raw-{uuid.uuid4().hex[:8]}"
    leave_one_in_flight(port, client_id, topic + "/#", topic + "/m", b"redelivered")
    config = parse_url(
        broker.url("plain"), client_id=client_id, clean_session=False, subscriptions=(Subscription(topic + "/#", 1),)
    )
    items: list = []
    engine = EngineProcess()
    try:
        session = ProcessSession(engine, config, on_batch=items.extend, on_state=lambda c: None)
        await session.start()
        await until(lambda: len(items) == 1, 20)
        await session.publish(topic + "/m", b"first time", qos=1)
        await until(lambda: len(items) == 2, 20)
        await session.stop()
    finally:
        engine.close()
    assert [(m.payload, m.dup) for m in items] == [(b"redelivered", True), (b"first time", False)]

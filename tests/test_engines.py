"""The session in the engine process and on a background thread: the same API, the same results."""

from __future__ import annotations

import asyncio
import threading

import pytest

from app.mqtt.config import Subscription, parse_url
from app.mqtt.errors import SessionError
from app.mqtt.process import EngineGone, EngineProcess, ProcessSession
from app.mqtt.session import SessionState
from app.mqtt.worker import BackgroundSession, EngineThread, MessageBuffer
from tests.conftest import until


@pytest.fixture(scope="module")
def engine_process():
    engine = EngineProcess()
    yield engine
    engine.close()


async def test_process_session_roundtrip(engine_process, broker, topic):
    buffer, states = MessageBuffer(), []
    cfg = parse_url(broker.url("plain"), subscriptions=(Subscription(topic + "/#", 1),))
    s = ProcessSession(engine_process, cfg, on_batch=buffer.push_many, on_state=states.append)
    await s.start()
    await s.wait_connected(10)
    assert await s.subscribe(Subscription(topic + "/more", 2)) == 2
    for i in range(300):
        await s.publish(topic + "/x", f"m{i}".encode(), qos=1)
    await until(lambda: buffer.total == 300)
    got = buffer.drain()
    assert [m.payload for m in got] == [f"m{i}".encode() for i in range(300)]
    assert got[0].topic == topic + "/x" and got[0].qos == 1
    await s.stop()
    assert states[-1].state == SessionState.DISCONNECTED
    assert any(c.state == SessionState.CONNECTED for c in states)


async def test_process_session_errors_are_sentences(engine_process, broker):
    states = []
    cfg = parse_url(broker.url("auth"), username=broker.USER, password="wrong")
    s = ProcessSession(engine_process, cfg, on_batch=lambda b: None, on_state=states.append)
    await s.start()
    with pytest.raises(SessionError, match="did not accept these credentials"):
        await s.wait_connected(10)
    await until(lambda: any(c.state == SessionState.FAILED for c in states))
    with pytest.raises(SessionError, match="Not connected"):
        await s.publish("a/b", b"x")
    await s.stop()


async def test_a_dead_engine_process_is_reported_not_hung():
    engine = EngineProcess()
    s = ProcessSession(engine, parse_url("mqtt://127.0.0.1:1"), on_batch=lambda b: None, on_state=lambda c: None)
    engine.process.kill()
    engine.process.join(5)
    with pytest.raises(EngineGone, match="engine has stopped"):
        await asyncio.wait_for(s.start(), 10)
    engine.close()


async def test_thread_session_roundtrip(broker, topic):
    engine = EngineThread()
    buffer = MessageBuffer()
    cfg = parse_url(broker.url("plain"), subscriptions=(Subscription(topic + "/#", 1),))
    s = BackgroundSession(engine, cfg, on_message=buffer.push)
    try:
        await s.start()
        await s.wait_connected(10)
        await s.publish(topic + "/x", b"hello", qos=1)
        await until(lambda: buffer.total == 1)
        assert buffer.drain()[0].payload == b"hello"
        await s.stop()
    finally:
        engine.close()


def test_message_buffer_single_producer_single_consumer():
    buf = MessageBuffer()
    n = 200_000
    got: list = []

    def produce():
        for i in range(0, n, 100):
            buf.push_many(list(range(i, i + 100)))

    t = threading.Thread(target=produce)
    t.start()
    while len(got) < n:
        got.extend(buf.drain())
    t.join()
    assert got == list(range(n))

"""The wizard's connection test (app/connection_test.py) against the real mosquitto: every answer
it can give, from a real connection in the engine process, worded as the session words it."""

from __future__ import annotations

import asyncio
import random
import socket
import threading

import paho.mqtt.client as paho
import pytest

from app import connection_test, platforms
from app.devbroker import free_port
from app.mqtt.config import Subscription, TlsSettings, parse_url
from app.mqtt.process import EngineProcess
from app.progress import Cancelled, Progress
from app.simulate import tts as simulate

# Imported as a module: a function called test_connection here would be collected as a test.
run_test = connection_test.test_connection


@pytest.fixture(scope="module")
def engine():
    engine = EngineProcess()
    yield engine
    engine.close()


class Publisher:
    """Publishes `payload` to `topic` every 0.1 s from a paho client until stopped: a message
    arrives during the test whenever the test's subscription is in place."""

    def __init__(self, port: int, topic: str, payload: bytes) -> None:
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.stop_event = threading.Event()
        self.sent = 0

        def run() -> None:
            while not self.stop_event.wait(0.1):
                self.client.publish(topic, payload, qos=0)
                self.sent += 1

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(5)
        self.client.disconnect()
        self.client.loop_stop()


def _generic(url: str, topic: str, **kw):
    return parse_url(url, subscriptions=(Subscription(topic, 0),), **kw)


async def test_password_connection_that_hears_nothing_is_quiet_and_says_that_is_normal(engine, broker, topic):
    config = _generic(broker.url("auth"), topic + "/#", username=broker.USER, password=broker.PASSWORD)
    result = await run_test(config, None, None, timeout=1.0, engine=engine)
    assert result.kind == "quiet", result
    assert result.ok and result.messages == 0
    assert "nothing arrived in 1 s" in result.sentence and "works" in result.sentence
    assert topic + "/#" in result.sentence


async def test_a_tts_application_that_receives_says_what_arrived(engine, broker):
    profile = {
        "url": f"mqtt://127.0.0.1:{broker.ports.plain}",
        "app": simulate.APP_ID,
        "tenant": simulate.TENANT,
        "password": "NNSXS.TEST",
    }
    tts = platforms.get("tts")
    config = tts.connection(profile)
    body = simulate.tts_uplink(3, 7, rnd=random.Random(1))
    publisher = Publisher(broker.ports.plain, simulate.tts_topic(3), body)
    try:
        result = await run_test(config, "tts", tts.validate(profile), timeout=10.0, engine=engine)
    finally:
        publisher.stop()
    assert result.kind == "receiving", result
    assert result.ok and result.messages >= 1
    assert "receiving" in result.sentence and f"an uplink of device {simulate.device_id(3)}" in result.sentence


async def test_wrong_password_is_credentials_with_the_platform_hint(engine, broker):
    profile = {
        "url": f"mqtt://127.0.0.1:{broker.ports.auth}",
        "app": simulate.APP_ID,
        "tenant": simulate.TENANT,
        "password": "NNSXS.WRONG",
    }
    config = platforms.get("tts").connection(profile)
    result = await run_test(config, "tts", profile, timeout=1.0, engine=engine)
    assert result.kind == "credentials", result
    assert not result.ok and result.headline == "Wrong credentials"
    assert "credentials" in result.sentence and "API key" in result.sentence


async def test_client_certificate_with_an_encrypted_key_connects(engine, broker, pki, topic):
    tls = TlsSettings(
        ca_file=str(pki.ca),
        cert_file=str(pki.client_cert),
        key_file=str(pki.client_key_encrypted),
        key_password=pki.client_key_password,
    )
    result = await run_test(_generic(broker.url("mtls"), topic, tls=tls), None, None, timeout=0.5, engine=engine)
    assert result.kind == "quiet", result


async def test_wrong_key_password_is_a_certificate_problem_that_names_the_key(engine, broker, pki, topic):
    tls = TlsSettings(
        ca_file=str(pki.ca), cert_file=str(pki.client_cert), key_file=str(pki.client_key_encrypted), key_password="no"
    )
    result = await run_test(_generic(broker.url("mtls"), topic, tls=tls), None, None, timeout=0.5, engine=engine)
    assert result.kind == "certificate", result
    assert "key password" in result.sentence and "client-encrypted.key" in result.sentence


async def test_missing_client_certificate_says_the_broker_wants_one(engine, broker, pki, topic):
    config = _generic(broker.url("mtls"), topic, tls=TlsSettings(ca_file=str(pki.ca)))
    result = await run_test(config, None, None, timeout=0.5, engine=engine)
    assert result.kind == "certificate", result
    assert "client certificate" in result.sentence


async def test_wrong_ca_is_a_certificate_problem_about_trust(engine, broker, pki, topic):
    config = _generic(broker.url("tls"), topic, tls=TlsSettings(ca_file=str(pki.other_ca)))
    result = await run_test(config, None, None, timeout=0.5, engine=engine)
    assert result.kind == "certificate", result
    assert "not trusted" in result.sentence and "CA certificate" in result.sentence


async def test_expired_server_certificate_says_expired(engine, broker, pki, topic):
    config = _generic(broker.url("expired"), topic, tls=TlsSettings(ca_file=str(pki.ca)))
    result = await run_test(config, None, None, timeout=0.5, engine=engine)
    assert result.kind == "certificate", result
    assert "expired" in result.sentence


async def test_unknown_host(engine, topic):
    result = await run_test(_generic("mqtt://no-such-host.invalid:1883", topic), None, None, 0.5, engine=engine)
    assert result.kind == "host", result
    assert "could not be found" in result.sentence and result.headline == "Host not found"


async def test_nothing_listening(engine, topic):
    result = await run_test(_generic(f"mqtt://127.0.0.1:{free_port()}", topic), None, None, 0.5, engine=engine)
    assert result.kind == "refused", result
    assert "nothing is listening" in result.sentence


async def test_a_port_that_never_answers_times_out(engine, topic):
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(5)  # accepts the TCP connection (backlog) but never speaks MQTT
    try:
        config = _generic(f"mqtt://127.0.0.1:{silent.getsockname()[1]}", topic, connect_timeout=1.0)
        result = await run_test(config, None, None, 0.5, engine=engine)
    finally:
        silent.close()
    assert result.kind == "timeout", result
    assert "1 seconds" in result.sentence or "within" in result.sentence


async def test_cancel_stops_the_test_and_its_session(engine, broker, topic):
    seen = []
    progress = Progress(lambda done, total, text: seen.append(text))
    config = _generic(broker.url("plain"), topic)
    task = asyncio.ensure_future(run_test(config, None, None, timeout=30.0, progress=progress, engine=engine))
    while not any("Waiting for the first message" in text for text in seen):
        await asyncio.sleep(0.05)
    progress.cancel()
    with pytest.raises(Cancelled):
        await asyncio.wait_for(task, 5)
    assert any(text.startswith("Connecting to") for text in seen)


async def test_a_test_with_its_own_engine_closes_it(broker, topic):
    before = {t.name for t in threading.enumerate()}
    result = await run_test(_generic(broker.url("plain"), topic), None, None, timeout=0.3)
    assert result.kind == "quiet"
    await asyncio.sleep(0.2)
    assert not any(t.name == "engine-reader" and t.is_alive() for t in threading.enumerate() if t.name not in before)


@pytest.mark.parametrize(
    ("sentence", "kind"),
    [
        ("The host name 'x' could not be found. Check the spelling.", "host"),
        ("127.0.0.1:1 refused the connection: nothing is listening on that port.", "refused"),
        ("mqtt://a:1 refused the connection: the user name or password is wrong. Please check.", "credentials"),
        (
            "mqtt://a:1 refused the connection: the broker did not accept these credentials (not authorized).",
            "credentials",
        ),
        ("The TLS certificate of a is not trusted (self-signed certificate).", "certificate"),
        ("mqtts://a:1 requires a client certificate. Choose your certificate.", "certificate"),
        ("a:1 did not answer within 10 seconds. Check the address.", "timeout"),
        ("mqtt://a:1 refused the connection: the broker rejected the client id.", "other"),
    ],
)
def test_classify_reads_the_sessions_sentences(sentence, kind):
    assert connection_test.classify(sentence) == kind

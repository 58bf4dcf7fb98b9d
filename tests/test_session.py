"""The session against a real mosquitto: transports, TLS, credentials, errors, reconnects."""

from __future__ import annotations

import asyncio
import time

import paho.mqtt.client as paho
import pytest

from app.mqtt.config import ConnectionConfig, MqttVersion, Subscription, TlsSettings, parse_url
from app.mqtt.errors import SessionError
from app.mqtt.session import MqttSession, SessionState


def publish_with_paho(port: int, topic: str, payloads, qos: int = 1) -> None:
    c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="test-publisher")
    c.connect("127.0.0.1", port)
    c.loop_start()
    try:
        for p in payloads:
            c.publish(topic, p, qos=qos).wait_for_publish(5)
    finally:
        c.disconnect()
        c.loop_stop()


async def roundtrip(cfg: ConnectionConfig, topic: str, *, qos: int = 1, **publish_kw):
    got = []
    session = MqttSession(cfg.replace(subscriptions=(Subscription(topic + "/#", qos),)), on_message=got.append)
    async with session:
        await session.wait_connected(10)
        await session.publish(topic + "/x", b"hello \x00\xff", qos=qos, **publish_kw)
        for _ in range(200):
            if got:
                break
            await asyncio.sleep(0.01)
    assert session.state == SessionState.DISCONNECTED
    assert len(got) == 1, "the message published on the session came back through its subscription"
    return got[0]


def tls(pki, **kw) -> TlsSettings:
    return TlsSettings(ca_file=str(pki.ca), **kw)


@pytest.mark.parametrize("version", [MqttVersion.V31, MqttVersion.V311, MqttVersion.V5, MqttVersion.V311_THEN_31])
async def test_plain_tcp_each_mqtt_version(broker, topic, version):
    msg = await roundtrip(parse_url(broker.url("plain"), mqtt_version=version), topic)
    assert msg.topic == topic + "/x"
    assert msg.payload == b"hello \x00\xff"
    assert msg.qos == 1 and msg.retain is False


async def test_tls_with_ca_file(broker, pki, topic):
    msg = await roundtrip(parse_url(broker.url("tls"), tls=tls(pki)), topic)
    assert msg.payload == b"hello \x00\xff"


@pytest.mark.parametrize("key", ["plain", "encrypted", "p12"])
async def test_client_certificate(broker, pki, topic, key):
    if key == "p12":
        settings = tls(pki, cert_file=str(pki.client_p12), key_password=pki.client_key_password)
    else:
        settings = tls(
            pki,
            cert_file=str(pki.client_cert),
            key_file=str(pki.client_key if key == "plain" else pki.client_key_encrypted),
            key_password=pki.client_key_password if key == "encrypted" else None,
        )
    msg = await roundtrip(parse_url(broker.url("mtls"), tls=settings), topic)
    assert msg.payload.startswith(b"hello")


@pytest.mark.parametrize("kind", ["ws", "wss"])
async def test_websockets(broker, pki, topic, kind):
    cfg = parse_url(broker.url(kind) + "/mqtt", tls=tls(pki) if kind == "wss" else None)
    assert cfg.websocket_path == "/mqtt"
    msg = await roundtrip(cfg, topic)
    assert msg.payload.startswith(b"hello")


async def test_password_listener(broker, topic):
    cfg = parse_url(broker.url("auth"), username=broker.USER, password=broker.PASSWORD)
    assert (await roundtrip(cfg, topic)).payload.startswith(b"hello")


async def test_mqtt5_properties_arrive(broker, topic):
    cfg = parse_url(broker.url("plain"), mqtt_version=MqttVersion.V5)
    msg = await roundtrip(cfg, topic, content_type="application/json", user_properties=[("a", "1"), ("b", "2")])
    assert msg.properties["content_type"] == "application/json"
    assert msg.properties["user_properties"] == [["a", "1"], ["b", "2"]]


async def test_properties_on_mqtt3_are_refused_with_a_sentence(broker, topic):
    session = MqttSession(parse_url(broker.url("plain")))
    async with session:
        await session.wait_connected(10)
        with pytest.raises(SessionError, match="need MQTT 5"):
            await session.publish(topic, b"x", content_type="text/plain")


async def test_shared_subscription_splits_messages(broker, topic):
    got_a, got_b = [], []
    url = broker.url("plain")
    subs = (Subscription(f"$share/grp/{topic}/#", 1),)
    a = MqttSession(parse_url(url, subscriptions=subs, mqtt_version=MqttVersion.V5), on_message=got_a.append)
    b = MqttSession(parse_url(url, subscriptions=subs, mqtt_version=MqttVersion.V5), on_message=got_b.append)
    async with a, b:
        await a.wait_connected(10)
        await b.wait_connected(10)
        await asyncio.sleep(0.2)
        await asyncio.to_thread(publish_with_paho, broker.ports.plain, topic + "/m", [str(i) for i in range(40)])
        deadline = time.monotonic() + 5
        while len(got_a) + len(got_b) < 40 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
    assert len(got_a) + len(got_b) == 40, "each message reached exactly one member"
    assert got_a and got_b, "both members got a share"
    assert not {m.payload for m in got_a} & {m.payload for m in got_b}


async def expect_failure(cfg: ConnectionConfig, match: str) -> str:
    session = MqttSession(cfg.replace(reconnect_interval=0.1, connect_timeout=5))
    async with session:
        with pytest.raises(SessionError) as info:
            await session.wait_connected(10)
    assert info.value.fatal
    text = str(info.value)
    assert match in text, text
    assert "Traceback" not in text and text.endswith(".")
    return text


async def test_wrong_password(broker):
    cfg = parse_url(broker.url("auth"), username=broker.USER, password="wrong")
    await expect_failure(cfg, "did not accept these credentials")


async def test_wrong_ca(broker, pki):
    cfg = parse_url(broker.url("tls"), tls=TlsSettings(ca_file=str(pki.other_ca)))
    await expect_failure(cfg, "is not trusted")


async def test_expired_server_certificate(broker, pki):
    await expect_failure(parse_url(broker.url("expired"), tls=tls(pki)), "has expired")


async def test_hostname_mismatch(broker, pki):
    # The server certificate names 'localhost' only.
    await expect_failure(parse_url(broker.url("tls", host="127.0.0.1"), tls=tls(pki)), "not valid for the name")


async def test_hostname_check_can_be_turned_off_explicitly(broker, pki, topic):
    cfg = parse_url(broker.url("tls", host="127.0.0.1"), tls=tls(pki, verify_hostname=False))
    assert (await roundtrip(cfg, topic)).payload.startswith(b"hello")


async def test_missing_client_certificate(broker, pki):
    await expect_failure(parse_url(broker.url("mtls"), tls=tls(pki)), "requires a client certificate")


async def test_wrong_key_password(broker, pki):
    settings = tls(pki, cert_file=str(pki.client_cert), key_file=str(pki.client_key_encrypted), key_password="nope")
    await expect_failure(parse_url(broker.url("mtls"), tls=settings), "key password")


async def test_encrypted_key_without_password(broker, pki):
    settings = tls(pki, cert_file=str(pki.client_cert), key_file=str(pki.client_key_encrypted))
    await expect_failure(parse_url(broker.url("mtls"), tls=settings), "protected by a password")


async def retrying_error(cfg: ConnectionConfig) -> str:
    states = []
    session = MqttSession(cfg.replace(reconnect_interval=0.1, connect_timeout=3), on_state=states.append)
    async with session:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not any(s.error for s in states):
            await asyncio.sleep(0.02)
    errors = [s.error for s in states if s.error]
    assert errors, states
    assert any(s.state == SessionState.RECONNECTING for s in states), "a passing failure is retried"
    return errors[0]


async def test_connection_refused_is_retried_with_a_sentence():
    from app.devbroker import free_port

    text = await retrying_error(parse_url(f"mqtt://127.0.0.1:{free_port()}"))
    assert "refused the connection: nothing is listening" in text


async def test_unknown_host():
    text = await retrying_error(parse_url("mqtt://no-such-host.invalid:1883"))
    assert "could not be found" in text


async def test_tls_to_a_plain_port(broker):
    text = await retrying_error(parse_url(f"mqtts://localhost:{broker.ports.plain}"))
    assert "may not speak TLS" in text


async def test_reconnects_and_resubscribes_after_broker_restart(own_broker, topic):
    got, states = [], []
    cfg = parse_url(own_broker.url("plain"), reconnect_interval=0.2, subscriptions=(Subscription(topic + "/#", 1),))
    session = MqttSession(cfg, on_message=got.append, on_state=states.append)
    async with session:
        await session.wait_connected(10)
        await asyncio.to_thread(own_broker.restart)
        deadline = time.monotonic() + 15
        while session.state != SessionState.CONNECTED and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert session.state == SessionState.CONNECTED
        await asyncio.sleep(0.3)  # the resubscription completes right after CONNACK
        await asyncio.to_thread(publish_with_paho, own_broker.ports.plain, topic + "/after", [b"back"])
        deadline = time.monotonic() + 5
        while not got and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
    assert [m.payload for m in got] == [b"back"]
    seen = [s.state for s in states]
    assert SessionState.RECONNECTING in seen
    lost = next(s for s in states if s.state == SessionState.RECONNECTING)
    assert lost.error and "Traceback" not in lost.error


@pytest.mark.parametrize("version", [MqttVersion.V311, MqttVersion.V5])
async def test_persistent_session_loses_nothing_across_a_restart(own_broker, topic, version):
    got = []
    cfg = parse_url(
        own_broker.url("plain"),
        client_id=f"persist-{version.replace('.', '')}",
        clean_session=False,
        mqtt_version=version,
        reconnect_interval=2.5,
        reconnect_max_interval=2.5,
        subscriptions=(Subscription(topic + "/#", 1),),
    )
    session = MqttSession(cfg, on_message=got.append)
    async with session:
        await session.wait_connected(10)
        await asyncio.to_thread(publish_with_paho, own_broker.ports.plain, topic + "/m", [b"before"])
        await asyncio.sleep(0.3)
        await asyncio.to_thread(own_broker.restart)
        # Published while the broker is back but our session is still waiting to reconnect.
        assert session.state != SessionState.CONNECTED
        gap = [f"gap-{i}".encode() for i in range(50)]
        await asyncio.to_thread(publish_with_paho, own_broker.ports.plain, topic + "/m", gap)
        deadline = time.monotonic() + 15
        while len(got) < 51 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
    assert [m.payload for m in got] == [b"before", *gap]


async def test_subscribe_while_connected_and_unsubscribe(broker, topic):
    got = []
    session = MqttSession(parse_url(broker.url("plain")), on_message=got.append)
    async with session:
        await session.wait_connected(10)
        granted = await session.subscribe(Subscription(topic + "/a", 2))
        assert granted == 2
        await session.publish(topic + "/a", b"1", qos=1)
        await asyncio.sleep(0.2)
        await session.unsubscribe(topic + "/a")
        await session.publish(topic + "/a", b"2", qos=1)
        await asyncio.sleep(0.2)
    assert [m.payload for m in got] == [b"1"]


async def test_publish_while_disconnected_says_so():
    session = MqttSession(parse_url("mqtt://127.0.0.1:1"))
    with pytest.raises(SessionError, match="Not connected"):
        await session.publish("a/b", b"x")


async def test_a_refusal_after_a_working_connection_is_retried(own_broker, topic):
    """Credentials that worked once: a refusal after a broker restart is retried, not fatal."""
    states = []
    cfg = parse_url(
        own_broker.url("auth"),
        username=own_broker.USER,
        password=own_broker.PASSWORD,
        reconnect_interval=0.2,
        reconnect_max_interval=0.5,
    )
    session = MqttSession(cfg, on_state=states.append)
    async with session:
        await session.wait_connected(10)
        passwd = own_broker.dir / "passwd"
        saved = passwd.read_text()
        passwd.write_text("")  # the broker comes back knowing no users
        await asyncio.to_thread(own_broker.restart)
        deadline = time.monotonic() + 10
        while not any(s.error and "did not accept" in s.error for s in states) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert session.state != SessionState.FAILED
        passwd.write_text(saved)
        await asyncio.to_thread(own_broker.restart)
        deadline = time.monotonic() + 15
        while session.state != SessionState.CONNECTED and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert session.state == SessionState.CONNECTED


@pytest.mark.parametrize("kind", ["plain", "tls", "ws"])
async def test_receive_path_keeps_every_message_intact_and_in_order(broker, pki, topic, kind):
    """The receive fast path (QoS 0 on MQTT 3.x) and paho's path (QoS 1/2) interleaved: sizes
    from empty to several read buffers, UTF-8 topics, the retain flag; nothing lost, doubled or
    reordered."""
    import random

    rnd = random.Random(7)
    sizes = [0, 1, 2, 127, 128, 16383, 16384, 70_000, 200_000] + [rnd.randrange(2000) for _ in range(400)]
    sent = [
        (f"{topic}/ü/{i}", rnd.randbytes(n), i % 7 == 3 and 1 or (i % 11 == 5 and 2 or 0)) for i, n in enumerate(sizes)
    ]
    got = []
    cfg = parse_url(
        broker.url(kind), tls=tls(pki) if kind == "tls" else None, subscriptions=(Subscription(topic + "/#", 2),)
    )
    session = MqttSession(cfg, on_message=got.append)

    def publish_all():
        c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="burst-publisher")
        c.connect("127.0.0.1", broker.ports.plain)
        c.loop_start()
        infos = [c.publish(t, p, qos=q) for t, p, q in sent]
        for info in infos:
            info.wait_for_publish(10)
        c.publish(topic + "/retained", b"kept", qos=0, retain=True).wait_for_publish(5)
        c.disconnect()
        c.loop_stop()

    async with session:
        await session.wait_connected(10)
        await asyncio.to_thread(publish_all)
        deadline = time.monotonic() + 20
        while len(got) < len(sent) + 1 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.2)
    by_qos = {0: [], 1: [], 2: []}
    for t, p, q in sent:
        by_qos[q].append((t, p))
    received = {0: [], 1: [], 2: []}
    for m in got:
        if m.topic != topic + "/retained":
            received[m.qos].append((m.topic, m.payload))
    for q in (0, 1, 2):
        mismatch = next((i for i, (a, b) in enumerate(zip(received[q], by_qos[q], strict=False)) if a != b), None)
        assert received[q] == by_qos[q], (
            f"QoS {q}: got {len(received[q])} of {len(by_qos[q])}, first difference at {mismatch}: "
            f"{received[q][mismatch][0] if mismatch is not None else ''} vs "
            f"{by_qos[q][mismatch][0] if mismatch is not None else ''}"
        )  # order within a QoS is kept
    assert len(got) == len(sent) + 1
    [live] = [m for m in got if m.topic == topic + "/retained"]
    # a retained message delivered live carries retain=0 (MQTT 3.1.1 section 3.3.1.3)
    assert live.payload == b"kept" and live.retain is False
    # a new subscriber gets it with the retain flag set
    late = []
    again = MqttSession(
        parse_url(
            broker.url(kind),
            tls=tls(pki) if kind == "tls" else None,
            subscriptions=(Subscription(topic + "/retained", 0),),
        ),
        on_message=late.append,
    )
    async with again:
        await again.wait_connected(10)
        deadline = time.monotonic() + 5
        while not late and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
    assert late and late[0].retain is True and late[0].payload == b"kept"

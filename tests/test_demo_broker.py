"""The demo's embedded broker and the demo itself: mosquitto and the amqtt fallback (chosen by
hiding mosquitto from PATH) each carry a simulated stream to a real subscriber; start_demo() gives
five connections that the engine's own session opens and fills with rows of their platform, the
downlinks the console sends answered; stop() ends the broker and the simulators."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from app import embedded_broker, platforms
from app.demo import PLATFORMS, DemoSettings, DemoUnavailable, start_demo
from app.embedded_broker import AMQTT, MOSQUITTO, EmbeddedBroker, chosen_kind
from app.mqtt.config import MqttVersion, Subscription
from app.mqtt.session import MqttSession
from app.platforms.base import DownlinkRequest
from app.simulate.fleet import FleetOptions
from app.simulate.run import local_config, make_simulator, run


@pytest.fixture
def no_mosquitto(monkeypatch, tmp_path):
    """A PATH without mosquitto (and no sbin folders to find it in), as on a machine without it."""
    bare = tmp_path / "bin"
    bare.mkdir()
    monkeypatch.setenv("PATH", str(bare))
    monkeypatch.setattr(embedded_broker, "SBIN_DIRS", ())
    monkeypatch.delenv(embedded_broker.CHOICE_ENV, raising=False)


def test_mosquitto_is_chosen_when_installed_and_amqtt_when_it_is_hidden(monkeypatch, tmp_path):
    monkeypatch.delenv(embedded_broker.CHOICE_ENV, raising=False)
    assert chosen_kind() == MOSQUITTO
    monkeypatch.setenv(embedded_broker.CHOICE_ENV, "amqtt")
    assert chosen_kind() == AMQTT
    monkeypatch.delenv(embedded_broker.CHOICE_ENV)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(embedded_broker, "SBIN_DIRS", ())
    assert chosen_kind() == AMQTT
    with pytest.raises(ValueError, match="mosquitto or amqtt"):
        EmbeddedBroker(tmp_path, "nanomq")


def subscribe_and_count(port: int, topic_filter: str, parser, version=paho.MQTTv311):
    counts: Counter = Counter()
    ready = threading.Event()
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"demo-test-sub-{port}", protocol=version)
    client.on_subscribe = lambda *a: ready.set()

    def on_message(c, u, msg):
        for event in parser.parse_or_error(msg.topic, msg.payload):
            counts[event.kind] += 1

    client.on_message = on_message
    client.connect("127.0.0.1", port)
    client.loop_start()
    client.subscribe(topic_filter, 0)
    assert ready.wait(10)
    return client, counts


@pytest.mark.parametrize("kind", [MOSQUITTO, AMQTT])
def test_each_embedded_broker_carries_a_simulated_stream_to_a_real_subscriber(kind, tmp_path):
    with EmbeddedBroker(tmp_path / kind, kind) as broker:
        assert broker.running and broker.url.startswith("mqtt://127.0.0.1:")
        assert broker.mqtt5 is (kind == MOSQUITTO)
        sim = make_simulator("tts", FleetOptions(devices=10, seed=4, rate=100), app="broker-test")
        parser = platforms.get("tts")
        client, counts = subscribe_and_count(broker.port, "v3/broker-test@ttn/devices/+/+", parser)
        try:
            result = run(sim, local_config(broker.url), max_messages=2000, paced=False)
            for _ in range(200):
                if sum(counts.values()) >= 2000:
                    break
                threading.Event().wait(0.05)
        finally:
            client.loop_stop()
            client.disconnect()
        assert result.messages == 2000
        assert sum(counts.values()) == 2000, counts
        assert counts["error"] == result.counts["malformed"]
        assert counts["uplink"] == result.counts["uplink"] and counts["join"] == result.counts["join"]
    assert not broker.running


def test_the_fallback_broker_refuses_mqtt5_so_drogue_binary_mode_is_not_offered(tmp_path, no_mosquitto):
    with EmbeddedBroker(tmp_path / "b") as broker:
        assert broker.kind == AMQTT and not broker.mqtt5
        refused = threading.Event()
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id="v5-probe", protocol=paho.MQTTv5)
        client.on_connect = lambda c, u, f, reason, p: reason.is_failure and refused.set()
        client.on_disconnect = lambda *a: refused.set()
        client.connect("127.0.0.1", broker.port)
        client.loop_start()
        try:
            assert refused.wait(10)
        finally:
            client.loop_stop()


async def open_connections(demo, on_event):
    """Each demo connection opened with the engine's own session, as the window opens it."""
    sessions = []
    for connection in demo.connections():
        plat = platforms.get(connection["platform"])
        parser = plat.parser_for(connection["values"])
        config = plat.connection(connection["values"])

        def on_message(msg, parser=parser, name=connection["platform"]):
            for event in parser.parse_or_error(msg.topic, msg.payload, msg.properties):
                on_event(name, event)

        session = MqttSession(config, on_message=on_message)
        await session.start()
        sessions.append((connection, plat, session))
    for _, _, session in sessions:
        await session.wait_connected(15)
    return sessions


async def demo_round(demo, *, expect_binary: bool):
    events: list = []
    sessions = await open_connections(demo, lambda name, event: events.append((name, event)))
    try:
        by_name = {c["platform"]: (c, plat, s) for c, plat, s in sessions}
        # Downlinks the console sends, through each platform's own encoder and the session.
        tts_conn, tts, tts_session = by_name["tts"]
        device = "env-sensor-001"
        push = tts.encode_downlink(
            tts_conn["values"],
            DownlinkRequest(device, f_port=9, payload=b"\x09", confirmed=True, correlation_ids=("demo-1",)),
        )
        tp_conn, tp, tp_session = by_name["thingpark"]
        tp_eui = "70B3D57ED0050000"
        tp_down = tp.encode_downlink(
            tp_conn["values"],
            DownlinkRequest(dev_eui=tp_eui, f_port=2, payload=b"\x02", correlation_ids=("00000000000000D1",)),
        )
        dr_conn, dr, dr_session = by_name["drogue"]
        command = dr.encode_downlink(dr_conn["values"], DownlinkRequest(device_id="gps-tracker-002", command="locate"))

        async def send_downlinks() -> None:
            await tts_session.publish(push.topic, push.payload)
            await tp_session.publish(tp_down.topic, tp_down.payload, qos=tp_down.qos)
            await dr_session.publish(command.topic, command.payload, qos=command.qos)

        await asyncio.sleep(1.0)
        await send_downlinks()

        def seen() -> bool:
            per = Counter(name for name, e in events if e.kind in ("uplink", "status"))
            kinds = {(name, e.kind) for name, e in events}
            return (
                all(per[p] >= 3 for p in PLATFORMS)
                and ("tts", "downlink_ack") in kinds
                and any(name == "thingpark" and e.correlation_ids == ["00000000000000D1"] for name, e in events)
                and any(
                    name == "drogue" and isinstance(e.decoded, dict) and e.decoded.get("command") == "locate"
                    for name, e in events
                )
            )

        for attempt in range(1, 301):
            if seen():
                break
            if attempt % 50 == 0:  # a simulator that subscribed late missed them (QoS 0): again
                await send_downlinks()
            await asyncio.sleep(0.1)
        assert seen(), sorted(Counter((name, e.kind) for name, e in events).items())
    finally:
        for _, _, session in sessions:
            await session.stop()
    tts_reports = [e for name, e in events if name == "tts" and e.kind.startswith("downlink")]
    # Each push answered queued, sent, ack, in that order (a push sent again is answered again).
    kinds = [e.kind for e in tts_reports]
    assert kinds[:3] == ["downlink_queued", "downlink_sent", "downlink_ack"], kinds
    assert all("demo-1" in e.correlation_ids for e in tts_reports)
    errors = [(name, e.error) for name, e in events if e.kind == "error"]
    uplinks = [e for _, e in events if e.kind == "uplink"]
    assert len(errors) < len(uplinks) / 5, errors  # the deliberate malformed ones only: a few percent
    assert all(error for _, error in errors)
    drogue = next(c for c in demo.connections() if c["platform"] == "drogue")
    assert (drogue["values"]["content_mode"] == "binary") is expect_binary
    assert (drogue["values"]["mqtt_version"] == "5") is expect_binary
    return events


def test_the_demo_with_mosquitto_streams_all_five_platforms_and_answers_downlinks(tmp_path, monkeypatch):
    monkeypatch.delenv(embedded_broker.CHOICE_ENV, raising=False)
    demo = start_demo(tmp_path / "demo", DemoSettings(rate=8.0))
    try:
        assert demo.broker.kind == MOSQUITTO and demo.running
        connections = demo.connections()
        assert [c["platform"] for c in connections] == list(PLATFORMS)
        assert all(c["demo"] is True and c["url"] == demo.url for c in connections)
        assert len({c["name"] for c in connections}) == 5
        drogue = connections[-1]
        assert drogue["subscriptions"][0]["user_properties"] == [["content-mode", "binary"]]
        asyncio.run(demo_round(demo, expect_binary=True))
    finally:
        demo.stop()
    assert not demo.running and not demo.broker.running
    assert (tmp_path / "demo" / "broker").is_dir()  # the demo's files stay in its own folder


def test_the_demo_without_mosquitto_runs_on_amqtt_with_drogue_in_structured_mode(tmp_path, no_mosquitto):
    demo = start_demo(tmp_path / "demo", DemoSettings(rate=8.0))
    try:
        assert demo.broker.kind == AMQTT and demo.running
        asyncio.run(demo_round(demo, expect_binary=False))
    finally:
        demo.stop()
    assert not demo.running


def test_drogue_binary_mode_arrives_with_its_attributes_as_mqtt5_user_properties(broker):
    """On an MQTT 5 broker the engine's session gets the binary-mode event's content type and
    user properties, and the Drogue parser reads the device, the FPort and the data from them."""
    sim = make_simulator("drogue", FleetOptions(devices=4, seed=8, rate=50), app="binary-test", content_mode="binary")
    values = {**platforms.get("drogue").defaults(), **sim.profile(broker.url())}
    plat = platforms.get("drogue")
    config = plat.connection(values)
    assert config.mqtt_version == MqttVersion.V5
    assert config.subscriptions == (Subscription("app/binary-test", 1, (("content-mode", "binary"),)),)
    events: list = []

    async def scenario():
        session = MqttSession(
            config, on_message=lambda m: events.extend(plat.parse_or_error(m.topic, m.payload, m.properties))
        )
        async with session:
            await session.wait_connected(10)
            stop = threading.Event()
            thread = threading.Thread(
                target=lambda: run(
                    sim, local_config(broker.url(), mqtt5=True), max_messages=200, stop=stop, paced=False
                )
            )
            thread.start()
            for _ in range(200):
                if len(events) >= 200:
                    break
                await asyncio.sleep(0.05)
            stop.set()
            thread.join(10)

    asyncio.run(scenario())
    uplinks = [e for e in events if e.kind == "uplink"]
    assert len(uplinks) >= 150
    assert all(e.device_id and e.f_port and isinstance(e.decoded, dict) for e in uplinks)
    assert all(e.error for e in events if e.kind == "error")


def test_a_demo_folder_that_cannot_be_made_is_one_sentence(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the demo folder would go")
    with pytest.raises(DemoUnavailable, match="cannot create its folder .*UPLINK_CONSOLE_DATA_DIR"):
        start_demo(blocker / "demo")


def test_the_demo_lives_under_the_data_dir_apart_from_the_users_files(tmp_path, monkeypatch):
    from app.demo import demo_dir
    from app.history import data_dir

    monkeypatch.setenv("UPLINK_CONSOLE_DATA_DIR", str(tmp_path / "data"))
    assert demo_dir() == data_dir() / "demo"


# ----- the local mosquitto's ports ----------------------------------------------------------


def test_free_ports_are_below_the_range_of_outgoing_connections_and_never_repeat():
    from app import devbroker

    low, _high = devbroker._ephemeral_range()
    ports = [devbroker.free_port() for _ in range(50)]
    assert len(set(ports)) == 50
    if low > 12000:
        assert all(10000 <= p < low for p in ports), ports


def test_a_port_taken_before_the_first_start_moves_the_broker_to_free_ones(tmp_path):
    import socket

    from app.devbroker import Mosquitto
    from tests.test_session import publish_with_paho

    broker = Mosquitto(tmp_path / "b", full=False)
    taken = broker.ports.plain
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", taken))
    squatter.listen()
    try:
        broker.start()
        try:
            assert broker.ports.plain != taken
            assert f"listener {broker.ports.plain} 127.0.0.1" in broker.conf.read_text()
            publish_with_paho(broker.ports.plain, "t/moved", [b"reached"])  # it listens there
            first = broker.ports
            broker.restart()
            assert broker.ports == first, "a restart keeps the ports its clients know"
        finally:
            broker.stop()
    finally:
        squatter.close()

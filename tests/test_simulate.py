"""The simulators: every message parses with its platform's own parser into the events the frame
says (malformed ones into error events), the fleet drifts, skips, resets and rejoins over a long
seeded run, the simulators answer downlinks as their platforms do, and `simulate` as a real
process publishes to mosquitto and prints what it sent."""

from __future__ import annotations

import datetime as dt
import os
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict

import orjson
import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from app import platforms
from app.platforms.base import DownlinkRequest
from app.simulate.fleet import JOIN, MALFORMED, UPLINK, Fleet, FleetOptions
from app.simulate.run import local_config, make_simulator, run
from app.simulate.tektelic import DECODED_TYPES

START = dt.datetime(2026, 3, 1, 8, 0, tzinfo=dt.UTC)
CASES = [
    ("tts", {}),
    ("tektelic", {}),
    ("akenza", {}),
    ("thingpark", {}),
    ("drogue", {"content_mode": "structured"}),
    ("drogue", {"content_mode": "binary"}),
]
# The event kind each platform reports for a join frame (None: the platform publishes nothing).
JOIN_KIND = {"tts": "join", "tektelic": None, "akenza": None, "thingpark": "join", "drogue": "status"}


def simulator(platform: str, seed: int = 11, devices: int = 16, **settings):
    sim = make_simulator(platform, FleetOptions(devices=devices, seed=seed, rate=20), **settings)
    sim.fleet.start = START
    return sim


def console_parser(sim):
    plat = platforms.get(sim.platform)
    values = plat.validate({**plat.defaults(), **sim.profile("mqtt://127.0.0.1:1883")})
    plat.connection(values)  # the demo connection itself is valid
    return plat.parser_for(values)


@pytest.mark.parametrize(("platform", "settings"), CASES, ids=[f"{p}-{s.get('content_mode', '')}" for p, s in CASES])
def test_every_message_parses_with_its_platform_parser(platform, settings):
    sim = simulator(platform, **settings)
    parser = console_parser(sim)
    kinds = Counter()
    for frame in sim.fleet.frames(4000):
        messages = sim.messages(frame)
        if frame.kind == JOIN and JOIN_KIND[platform] is None:
            assert messages == []
            continue
        assert messages, frame
        for message in messages:
            events = parser.parse_or_error(message.topic, message.payload, message.properties)
            assert len(events) == 1
            event = events[0]
            kinds[event.kind] += 1
            if frame.kind == MALFORMED:
                assert event.kind == "error" and event.error, message.payload[:120]
                continue
            assert event.kind != "error", (event.error, message.payload[:300])
            assert event.error is None, event.error
            if frame.kind == JOIN:
                assert event.kind == JOIN_KIND[platform]
                continue
            assert event.kind == "uplink"
            device = frame.device
            if platform in ("tts", "tektelic", "thingpark"):
                assert event.f_cnt == frame.f_cnt
                assert event.f_port == frame.f_port
                if platform == "tektelic" and device.type.name in DECODED_TYPES:
                    assert event.payload_hex is None and event.decoded == frame.decoded  # a decoding converter
                else:
                    assert event.payload_hex == frame.payload.hex()
                assert event.dev_eui == device.dev_eui
                assert event.gateways == len(frame.receptions)
                assert event.spreading_factor == frame.spreading_factor
                assert event.frequency_hz == frame.frequency_hz
            if platform in ("tts", "tektelic"):
                assert event.rssi == frame.best.rssi
            if platform == "tts":
                assert event.device_id == device.device_id and event.decoded == frame.decoded
            if platform == "thingpark":
                assert event.decoded == frame.decoded
            if platform in ("akenza", "drogue"):
                assert event.device_id == device.device_id
            if platform == "drogue":
                assert event.decoded == frame.decoded and event.f_port == frame.f_port
    assert kinds["uplink"] > 3000
    assert kinds["error"] == sim.fleet.counts[MALFORMED] > 0


def test_a_long_seeded_run_drifts_skips_resets_rejoins_and_bursts():
    fleet = Fleet(FleetOptions(devices=20, seed=5, rate=10), start=START)
    frames = list(fleet.frames(20000))
    by_device = defaultdict(list)
    for frame in frames:
        by_device[frame.device.index].append(frame)
    gaps = resets = rejoins = 0
    for device_frames in by_device.values():
        previous = None
        for frame in device_frames:
            if frame.kind == JOIN:
                rejoins += 1
                previous = None
                continue
            if frame.kind != UPLINK:
                continue
            if previous is not None:
                step = frame.f_cnt - previous
                if step > 1:
                    gaps += 1
                elif frame.f_cnt == 0:
                    resets += 1
                else:
                    assert step == 1, (previous, frame.f_cnt)
            previous = frame.f_cnt
    assert gaps > 50 and resets > 10 and rejoins > 10, (gaps, resets, rejoins)
    assert fleet.counts["burst"] > 100 and fleet.counts[MALFORMED] > 50
    # Radio values move per device, and differ between devices.
    spreads, levels, sfs = [], [], set()
    for device_frames in by_device.values():
        rssi = [f.best.rssi for f in device_frames if f.kind == UPLINK]
        spreads.append(max(rssi) - min(rssi))
        levels.append(statistics.mean(rssi))
        sfs |= {(f.device.index, f.spreading_factor) for f in device_frames if f.kind == UPLINK}
    assert min(spreads) >= 6, spreads
    assert max(levels) - min(levels) > 15, levels
    assert len({sf for _, sf in sfs}) >= 4  # ADR spreads the fleet over several spreading factors
    per_device_sfs = Counter(index for index, _ in sfs)
    assert max(per_device_sfs.values()) >= 2  # and moves at least one device between them
    gateway_counts = Counter(len(f.receptions) for f in frames if f.kind == UPLINK)
    assert gateway_counts[1] > 0 and sum(n for k, n in gateway_counts.items() if k >= 2) > 1000
    assert max(gateway_counts) <= 4
    # Periodic devices report on a clock (small spread); bursty ones do not.
    for device_frames in by_device.values():
        device = device_frames[0].device
        times = [f.time.timestamp() for f in device_frames]
        intervals = [b - a for a, b in zip(times, times[1:], strict=False)]
        spread = statistics.pstdev(intervals) / statistics.mean(intervals)
        if device.type.bursty:
            assert spread > 0.5, (device.device_id, spread)
        else:
            assert spread < 0.1, (device.device_id, spread)


def test_the_same_seed_gives_the_same_messages_and_another_seed_others():
    def bodies(seed):
        sim = simulator("tts", seed=seed)
        return [m.payload for frame in sim.fleet.frames(500) for m in sim.messages(frame)]

    assert bodies(3) == bodies(3)
    assert bodies(3) != bodies(4)


def answers_parsed(sim, outgoing, parser):
    out = []
    for answer in sim.answer(outgoing.topic, outgoing.payload, outgoing.properties):
        events = parser.parse_or_error(answer.message.topic, answer.message.payload, answer.message.properties)
        out.append((answer.delay_s, events[0]))
    return out


def test_tts_answers_a_push_with_queued_sent_and_ack_carrying_the_correlation_ids():
    sim = simulator("tts")
    parser = console_parser(sim)
    device = sim.fleet.devices[0]
    tts = platforms.get("tts")
    request = DownlinkRequest(
        device_id=device.device_id, f_port=15, payload=b"\xbe\xef", confirmed=True, correlation_ids=("my-id-1",)
    )
    outgoing = tts.encode_downlink({"app": "uplink-demo", "tenant": "ttn"}, request)
    assert outgoing.topic in [t.replace("+", device.device_id) for t in sim.listen()]
    answered = answers_parsed(sim, outgoing, parser)
    assert [e.kind for _, e in answered] == ["downlink_queued", "downlink_sent", "downlink_ack"]
    assert [d for d, _ in answered] == sorted(d for d, _ in answered)
    for _, event in answered:
        assert "my-id-1" in event.correlation_ids
        assert event.device_id == device.device_id and event.f_port == 15 and event.payload_hex == "beef"
    # Unconfirmed: no ack, as on TTS; an FPort TTS refuses: down/failed.
    unconfirmed = tts.encode_downlink(
        {"app": "uplink-demo", "tenant": "ttn"}, DownlinkRequest(device.device_id, f_port=1, payload=b"\x01")
    )
    assert [e.kind for _, e in answers_parsed(sim, unconfirmed, parser)] == ["downlink_queued", "downlink_sent"]
    body = orjson.dumps({"downlinks": [{"f_port": 0, "frm_payload": "AQ==", "correlation_ids": ["bad-port"]}]})
    failed = sim.answer(f"v3/uplink-demo@ttn/devices/{device.device_id}/down/push", body)
    event = parser.parse_or_error(failed[0].message.topic, failed[0].message.payload)[0]
    assert event.kind == "downlink_failed" and "bad-port" in event.correlation_ids and event.error


def test_thingpark_answers_a_downlink_with_downlink_sent_and_its_correlation_id():
    sim = simulator("thingpark", failure_rate=0.0)
    parser = console_parser(sim)
    device = sim.fleet.devices[3]
    thingpark = platforms.get("thingpark")
    request = DownlinkRequest(
        dev_eui=device.dev_eui, f_port=2, payload=b"\x01\x02", correlation_ids=("0123456789ABCDEF",)
    )
    outgoing = thingpark.encode_downlink(thingpark.defaults(), request)
    ((delay, event),) = answers_parsed(sim, outgoing, parser)
    assert delay > 0
    assert event.kind == "downlink_sent" and event.correlation_ids == ["0123456789ABCDEF"]
    assert event.dev_eui == device.dev_eui and event.f_port == 2
    failing = simulator("thingpark", failure_rate=1.0)
    ((_, event),) = answers_parsed(failing, outgoing, console_parser(failing))
    assert event.kind == "downlink_failed" and "B0" in event.error and event.correlation_ids == ["0123456789ABCDEF"]


@pytest.mark.parametrize("mode", ["structured", "binary"])
def test_drogue_answers_a_command_with_the_device_response(mode):
    sim = simulator("drogue", content_mode=mode)
    parser = console_parser(sim)
    device = sim.fleet.devices[1]
    drogue = platforms.get("drogue")
    request = DownlinkRequest(device_id=device.device_id, command="setInterval", payload=b'{"s": 60}')
    outgoing = drogue.encode_downlink({"application": "uplink-demo"}, request)
    ((_, event),) = answers_parsed(sim, outgoing, parser)
    assert event.kind == "uplink" and event.device_id == device.device_id
    assert event.decoded == {"command": "setInterval", "status": "ok", "payload_hex": b'{"s": 60}'.hex()}


def test_akenza_answers_the_console_device_and_not_the_fleet():
    sim = simulator("akenza")
    parser = console_parser(sim)
    akenza = platforms.get("akenza")
    values = akenza.validate({**akenza.defaults(), **sim.profile("mqtt://127.0.0.1:1883")})
    outgoing = akenza.encode_downlink(values, DownlinkRequest(decoded={"hello": 1}))
    ((_, event),) = answers_parsed(sim, outgoing, parser)
    assert event.kind == "event" and event.device_id == values["device_id"]
    assert event.decoded["data"]["status"] == "stored"
    fleet_uplink = sim.messages(next(f for f in sim.fleet.frames(50) if f.kind == UPLINK))[0]
    assert sim.answer(fleet_uplink.topic, fleet_uplink.payload) == []


# ----- against a real broker -----------------------------------------------------------------


def test_simulators_answer_downlinks_published_on_a_real_broker(broker):
    """A console-side paho client pushes a TTS downlink and a ThingPark downlink; the running
    simulators answer on the broker with the reports the console subscribes to."""
    url = broker.url()
    stop = threading.Event()
    tts = simulator("tts", app="sim-answers", seed=2)
    thingpark = simulator(
        "thingpark",
        uplink_pattern="simans/{DevEUI}/up",
        downlink_pattern="simans/{DevEUI}/down",
        failure_rate=0.0,
    )
    results = {}
    threads = [
        threading.Thread(target=lambda s=s: results.setdefault(s.platform, run(s, local_config(url), stop=stop)))
        for s in (tts, thingpark)
    ]
    received: list = []
    got = threading.Event()
    tts_parser, tp_parser = console_parser(tts), console_parser(thingpark)

    def on_message(client, userdata, msg):
        parser = tts_parser if msg.topic.startswith("v3/") else tp_parser
        for event in parser.parse_or_error(msg.topic, msg.payload):
            if event.correlation_ids and event.kind.startswith("downlink"):
                received.append(event)
        kinds = {e.kind for e in received}
        if {"downlink_queued", "downlink_sent", "downlink_ack"} <= kinds and len(received) >= 4:
            got.set()

    console = paho.Client(CallbackAPIVersion.VERSION2, client_id="sim-answers-console")
    console.on_message = on_message
    console.connect("127.0.0.1", broker.ports.plain)
    console.loop_start()
    try:
        console.subscribe("v3/sim-answers@ttn/devices/+/down/#", 0)
        console.subscribe("simans/+/up", 0)
        for thread in threads:
            thread.start()
        time.sleep(1.0)  # the simulators subscribe as they connect
        device = tts.fleet.devices[0]
        push = platforms.get("tts").encode_downlink(
            {"app": "sim-answers", "tenant": "ttn"},
            DownlinkRequest(device.device_id, f_port=7, payload=b"\x07", confirmed=True, correlation_ids=("push-42",)),
        )
        console.publish(push.topic, push.payload, 0)
        tp_device = thingpark.fleet.devices[0]
        downlink = platforms.get("thingpark").encode_downlink(
            {"downlink_topic_pattern": "simans/{DevEUI}/down"},
            DownlinkRequest(
                dev_eui=tp_device.dev_eui, f_port=3, payload=b"\x03", correlation_ids=("00000000000000AB",)
            ),
        )
        console.publish(downlink.topic, downlink.payload, 0)
        assert got.wait(20), [(e.kind, e.correlation_ids) for e in received]
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)
        console.loop_stop()
        console.disconnect()
    tts_events = [e for e in received if e.platform == "tts"]
    assert [e.kind for e in tts_events] == ["downlink_queued", "downlink_sent", "downlink_ack"]
    assert all("push-42" in e.correlation_ids for e in tts_events)
    (sent,) = [e for e in received if e.platform == "thingpark"]
    assert sent.kind == "downlink_sent" and sent.correlation_ids == ["00000000000000AB"]
    assert results["tts"].downlinks == 1 and results["thingpark"].downlinks == 1
    assert results["tts"].counts["answer"] == 3 and results["tts"].counts["uplink"] > 0


def test_simulate_command_publishes_to_mosquitto_and_prints_its_counts(broker, tmp_path):
    url = broker.url()
    received = Counter()
    subscriber = paho.Client(CallbackAPIVersion.VERSION2, client_id="simulate-cli-sub")
    subscribed = threading.Event()
    subscriber.on_subscribe = lambda *a: subscribed.set()
    subscriber.on_message = lambda c, u, msg: received.update([msg.topic.split("/")[-1]])
    subscriber.connect("127.0.0.1", broker.ports.plain)
    subscriber.loop_start()
    subscriber.subscribe("v3/sim-cli@ttn/devices/+/+", 0)
    assert subscribed.wait(10)
    env = {**os.environ, "UPLINK_CONSOLE_LOG_DIR": str(tmp_path)}
    argv = [sys.executable, "-m", "app.cli", "simulate", "--platform", "tts", "--url", url, "--app", "sim-cli"]
    try:
        done = subprocess.run(
            [*argv, "--devices", "6", "--rate", "0", "--messages", "3000", "--seed", "9", "--json"],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
        )
        assert done.returncode == 0, done.stderr
        counts = orjson.loads(done.stdout.strip().splitlines()[-1])
        assert counts["platform"] == "tts" and counts["messages"] == 3000
        assert counts["by_kind"]["uplink"] + counts["by_kind"].get("join", 0) + counts["by_kind"]["malformed"] == 3000
        deadline = time.monotonic() + 10
        while received["up"] + received["join"] < 3000 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert received["up"] + received["join"] == 3000
        # Human-readable, paced, stopped by --duration.
        done = subprocess.run(
            [*argv, "--rate", "20", "--duration", "1.5"], capture_output=True, text=True, timeout=60, env=env
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("Sent ") and " tts messages in " in done.stdout
        # A broker that is not there: one sentence, exit 1.
        done = subprocess.run(
            [sys.executable, "-m", "app.cli", "simulate", "--platform", "tts", "--url", "mqtt://127.0.0.1:1"],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )
        assert done.returncode == 1 and "refused the connection" in done.stderr and "Traceback" not in done.stderr
    finally:
        subscriber.loop_stop()
        subscriber.disconnect()


def test_simulate_stops_cleanly_on_ctrl_c_and_prints_what_it_sent(broker, tmp_path):
    import signal

    env = {**os.environ, "UPLINK_CONSOLE_LOG_DIR": str(tmp_path)}
    publishing = threading.Event()
    watcher = paho.Client(CallbackAPIVersion.VERSION2, client_id="simulate-ctrl-c-watcher")
    watcher.on_message = lambda *a: publishing.set()
    subscribed = threading.Event()
    watcher.on_subscribe = lambda *a: subscribed.set()
    watcher.connect("127.0.0.1", broker.ports.plain)
    watcher.loop_start()
    watcher.subscribe("ctrlc/+/up", 0)
    assert subscribed.wait(10)
    argv = [sys.executable, "-m", "app.cli", "simulate", "--platform", "thingpark", "--url", broker.url()]
    argv += ["--uplink-pattern", "ctrlc/{DevEUI}/up", "--rate", "20", "--json"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        # Interrupted once it publishes (its Ctrl-C handler is in place by then).
        assert publishing.wait(60)
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        watcher.loop_stop()
        watcher.disconnect()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    counts = orjson.loads(out.strip())
    assert counts["platform"] == "thingpark" and counts["messages"] > 0 and "Traceback" not in err


def test_simulate_uses_the_shared_connection_options_tls_and_password(broker, tmp_path):
    env = {**os.environ, "UPLINK_CONSOLE_LOG_DIR": str(tmp_path)}
    password = tmp_path / "password"
    password.write_text(broker.PASSWORD + "\n")
    base = [sys.executable, "-m", "app.cli", "simulate", "--platform", "drogue", "--app", "sim-tls"]
    base += ["--rate", "0", "--messages", "300", "--json"]

    def simulate(*extra):
        return subprocess.run([*base, *extra], capture_output=True, text=True, timeout=60, env=env)

    done = simulate("--url", broker.url("tls"), "--ca", str(broker.pki.ca))
    assert done.returncode == 0, done.stderr
    assert orjson.loads(done.stdout)["messages"] == 300
    done = simulate("--url", broker.url("auth"), "--username", broker.USER, "--password-file", str(password))
    assert done.returncode == 0, done.stderr
    done = simulate("--url", broker.url("auth"), "--username", "somebody-else", "--password-file", str(password))
    assert done.returncode == 1 and "refused the simulator" in done.stderr and broker.PASSWORD not in done.stderr
    done = simulate("--url", broker.url("tls"))
    assert done.returncode == 1 and "not trusted" in done.stderr and "--ca" in done.stderr
    done = simulate("--url", broker.url("plain"), "--content-mode", "binary", "--mqtt-version", "3.1.1")
    assert done.returncode == 2 and "MQTT 5" in done.stderr

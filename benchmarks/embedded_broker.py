"""Which broker can the demo embed where mosquitto is not installed? Each candidate measured here
in the same run as mosquitto: start-up time, messages/s carried from a paho publisher to a paho
subscriber (850-byte bodies, QoS 0, loopback), and whether MQTT 5 works end to end (a v5 CONNECT,
a content type and user properties arriving at the subscriber), printed as ratios to mosquitto.

    .venv/bin/python benchmarks/embedded_broker.py [--messages 20000] [--broker-python PY]

It ends with the publisher `simulate` uses, paho, against the engine's own session (aiomqtt),
both publishing the same bodies into mosquitto, as messages/s a subscriber received and a ratio.

--broker-python runs the pip-installed candidates (amqtt, iotcore) with another interpreter, so
they can be measured from a scratch venv before one of them becomes a dependency.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import paho.mqtt.client as paho  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402
from paho.mqtt.packettypes import PacketTypes  # noqa: E402
from paho.mqtt.properties import Properties  # noqa: E402

from app.devbroker import Mosquitto, free_port  # noqa: E402
from app.simulate.tts import tts_uplink  # noqa: E402

AMQTT_RUNNER = """
import asyncio, sys
from amqtt.broker import Broker
async def main():
    config = {"listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{sys.argv[1]}"}},
              "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}}}
    broker = Broker(config)
    await broker.start()
    await asyncio.Event().wait()
asyncio.run(main())
"""

IOTCORE_RUNNER = """
import sys
from iotcore.iotcore import IotCoreBroker
IotCoreBroker(config_path=sys.argv[1]).run_forever()
"""

RUMQTTD_TOML = """id = 0
[router]
id = 0
max_connections = 1000
max_outgoing_packet_count = 200
max_segment_size = 104857600
max_segment_count = 10
[v4.1]
name = "v4"
listen = "127.0.0.1:{v4}"
next_connection_delay_ms = 1
    [v4.1.connections]
    connection_timeout_ms = 60000
    max_payload_size = 262144
    max_inflight_count = 100
    dynamic_filters = true
[v5.1]
name = "v5"
listen = "127.0.0.1:{v5}"
next_connection_delay_ms = 1
    [v5.1.connections]
    connection_timeout_ms = 60000
    max_payload_size = 262144
    max_inflight_count = 100
"""


def port_open(port: int) -> bool:
    import socket

    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def start_process(argv: list[str], ports: list[int], timeout: float = 20.0) -> tuple[subprocess.Popen, float]:
    started = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            lines = proc.stderr.read().decode(errors="replace").strip().splitlines() or ["no output"]
            raise RuntimeError(f"it exited at start: {lines[-1][:200]}")
        if all(port_open(p) for p in ports):
            return proc, time.perf_counter() - started
        time.sleep(0.01)
    proc.kill()
    raise RuntimeError(f"{argv} did not open {ports} in {timeout} s")


def throughput(port: int, messages: int, version: int, timeout: float = 60.0) -> tuple[float, float]:
    """(messages/s a paho subscriber receives while a paho publisher sends `messages` bodies, the
    share of them it received); the publisher stays connected until they arrived or `timeout`."""
    protocol = paho.MQTTv5 if version == 5 else paho.MQTTv311
    received = [0]
    done = threading.Event()

    def on_message(client, userdata, msg):
        received[0] += 1
        if received[0] >= messages:
            done.set()

    sub = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-sub-{port}", protocol=protocol)
    sub.on_message = on_message
    subscribed = threading.Event()
    sub.on_subscribe = lambda *a: subscribed.set()
    sub.connect("127.0.0.1", port)
    sub.loop_start()
    sub.subscribe("bench/#", 0)
    subscribed.wait(10)
    pub = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{port}", protocol=protocol)
    pub.max_queued_messages_set(0)
    pub.connect("127.0.0.1", port)
    pub.loop_start()
    body = tts_uplink(1, 1)
    started = time.perf_counter()
    for i in range(messages):
        pub.publish(f"bench/{i % 50}", body, 0)
    done.wait(timeout)
    elapsed = time.perf_counter() - started
    pub.loop_stop()
    sub.loop_stop()
    pub.disconnect()
    sub.disconnect()
    return received[0] / elapsed, received[0] / messages


def mqtt5_works(port: int) -> str:
    """'yes' when a v5 publish arrives with its content type and user properties, else why not."""
    got: list = []
    arrived = threading.Event()

    def on_message(client, userdata, msg):
        got.append(msg)
        arrived.set()

    try:
        sub = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"v5-sub-{port}", protocol=paho.MQTTv5)
        sub.on_message = on_message
        subscribed = threading.Event()
        sub.on_subscribe = lambda *a: subscribed.set()
        connected = threading.Event()
        reasons: list = []

        def on_connect(client, userdata, flags, reason, properties):
            reasons.append(reason)
            connected.set()

        sub.on_connect = on_connect
        sub.connect("127.0.0.1", port)
        sub.loop_start()
        if not connected.wait(5):
            return "no CONNACK to an MQTT 5 CONNECT"
        if reasons[0].is_failure:
            return f"refused MQTT 5 ({reasons[0]})"
        sub_props = Properties(PacketTypes.SUBSCRIBE)
        sub_props.UserProperty = [("content-mode", "binary")]
        sub.subscribe("v5check/#", 0, properties=sub_props)
        subscribed.wait(5)
        pub = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"v5-pub-{port}", protocol=paho.MQTTv5)
        pub.connect("127.0.0.1", port)
        pub.loop_start()
        props = Properties(PacketTypes.PUBLISH)
        props.ContentType = "application/json"
        props.UserProperty = [("specversion", "1.0"), ("type", "io.drogue.event.v1")]
        pub.publish("v5check/x", b'{"temp": 1}', 0, properties=props)
        ok = arrived.wait(5)
        pub.loop_stop()
        sub.loop_stop()
        if not ok:
            return "the MQTT 5 message did not arrive"
        properties = getattr(got[0], "properties", None)
        content_type = getattr(properties, "ContentType", None)
        users = getattr(properties, "UserProperty", None)
        if content_type != "application/json" or not users:
            return f"properties lost (content type {content_type!r}, user properties {users!r})"
        return "yes"
    except Exception as exc:  # the verdict is the point: any failure is a "no"
        return f"failed ({type(exc).__name__}: {exc})"


def publisher_comparison(port: int, messages: int) -> tuple[float, float]:
    """(paho, engine session) messages/s into mosquitto, counted at a paho subscriber."""
    import asyncio

    from app.mqtt.config import parse_url
    from app.mqtt.session import MqttSession

    body = tts_uplink(1, 1)

    def counting_subscriber():
        got, done = [0], threading.Event()
        sub = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"cmp-sub-{time.monotonic_ns()}")

        def on_message(*_):
            got[0] += 1
            if got[0] >= messages:
                done.set()

        ready = threading.Event()
        sub.on_message = on_message
        sub.on_subscribe = lambda *a: ready.set()
        sub.connect("127.0.0.1", port)
        sub.loop_start()
        sub.subscribe("cmp/#", 0)
        ready.wait(10)
        return sub, done

    sub, done = counting_subscriber()
    pub = paho.Client(CallbackAPIVersion.VERSION2, client_id="cmp-paho")
    pub.max_queued_messages_set(0)
    pub.connect("127.0.0.1", port)
    pub.loop_start()
    started = time.perf_counter()
    for i in range(messages):
        pub.publish(f"cmp/{i % 10}", body, 0)
    done.wait(60)
    paho_rate = messages / (time.perf_counter() - started)
    pub.loop_stop()
    sub.loop_stop()

    sub, done = counting_subscriber()

    async def with_session() -> float:
        session = MqttSession(parse_url(f"mqtt://127.0.0.1:{port}"))
        async with session:
            await session.wait_connected(10)
            started = time.perf_counter()
            for i in range(messages):
                await session.publish(f"cmp/{i % 10}", body, qos=0)
            await asyncio.get_running_loop().run_in_executor(None, done.wait, 60)
            return messages / (time.perf_counter() - started)

    session_rate = asyncio.run(with_session())
    sub.loop_stop()
    return paho_rate, session_rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--broker-python", default=sys.executable)
    args = parser.parse_args()
    results = {}
    work = Path(tempfile.mkdtemp(prefix="broker-bench-"))
    try:
        started = time.perf_counter()
        mosquitto = Mosquitto(work / "mosquitto", full=False).start()
        results["mosquitto"] = {"startup_s": time.perf_counter() - started, "port": mosquitto.ports.plain}
        procs = [mosquitto]
        try:
            port = free_port()
            proc, startup = start_process([args.broker_python, "-c", AMQTT_RUNNER, str(port)], [port])
            procs.append(proc)
            results["amqtt"] = {"startup_s": startup, "port": port}
        except RuntimeError as exc:
            results["amqtt"] = {"error": str(exc)}
        try:
            v4, v5 = free_port(), free_port()
            toml = work / "rumqttd.toml"
            toml.write_text(RUMQTTD_TOML.format(v4=v4, v5=v5))
            proc, startup = start_process([args.broker_python, "-c", IOTCORE_RUNNER, str(toml)], [v4, v5])
            procs.append(proc)
            results["iotcore"] = {"startup_s": startup, "port": v4, "port_v5": v5}
        except RuntimeError as exc:
            results["iotcore"] = {"error": str(exc)}
        for result in results.values():
            if "error" in result:
                continue
            result["msg_per_s_v311"], result["delivered"] = throughput(result["port"], args.messages, 4)
            v5_port = result.get("port_v5", result["port"])
            result["mqtt5"] = mqtt5_works(v5_port)
            v5 = throughput(v5_port, args.messages, 5) if result["mqtt5"] == "yes" else (None, None)
            result["msg_per_s_v5"] = v5[0]
        paho_rate, session_rate = publisher_comparison(mosquitto.ports.plain, args.messages)
        for proc in procs:
            if isinstance(proc, Mosquitto):
                proc.stop()
            else:
                proc.kill()
                proc.wait()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    ref = results["mosquitto"]
    print(
        f"{'broker':10} {'start-up':>10} {'msg/s 3.1.1':>12} {'x mosq':>7} {'arrived':>8} "
        f"{'msg/s 5':>10} {'x mosq':>7}  MQTT 5"
    )
    for name, r in results.items():
        if "error" in r:
            print(f"{name:10} failed: {r['error']}")
            continue
        both_v5 = r["msg_per_s_v5"] and ref["msg_per_s_v5"]
        v5_ratio = f"{r['msg_per_s_v5'] / ref['msg_per_s_v5']:.2f}" if both_v5 else "-"
        v5_rate = f"{r['msg_per_s_v5']:.0f}" if r["msg_per_s_v5"] else "-"
        print(
            f"{name:10} {r['startup_s'] * 1000:8.0f}ms {r['msg_per_s_v311']:12.0f} "
            f"{r['msg_per_s_v311'] / ref['msg_per_s_v311']:7.2f} {r['delivered']:8.1%} "
            f"{v5_rate:>10} {v5_ratio:>7}  {r['mqtt5']}"
        )
    print(
        f"publisher into mosquitto: paho {paho_rate:.0f} msg/s, the engine's session {session_rate:.0f} msg/s "
        f"(session/paho {session_rate / paho_rate:.2f})"
    )
    shown = {k: {kk: vv for kk, vv in v.items() if kk not in ("port", "port_v5")} for k, v in results.items()}
    print(json.dumps(shown))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()

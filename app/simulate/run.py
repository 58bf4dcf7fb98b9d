"""Drives one platform simulator against a broker: publishes its messages paced by the fleet's
clock, subscribes to the downlink topics it answers and publishes the answers when they fall due,
and counts what it sent. Used by `uplink-console simulate` and by the demo (app/demo.py).

Before it disconnects, a run publishes one empty message to `uplink-simulate/flush/<client id>`
and waits for it to come back through its own subscription: brokers route one client's messages
in order, so then every message has been routed (amqtt drops what it has not yet routed when the
publisher disconnects: 60% of a 2,000-message burst here without this).

paho, not the engine's aiomqtt session: one client publishing from this thread while paho's
network thread writes is the faster path from Python (benchmarks/embedded_broker.py, the same
1.5 kB bodies into mosquitto, two runs: paho 10,221 and 18,397 msg/s, the session 7,722 and
5,409, 0.29-0.76x), and a simulator needs
neither the session's reconnect logic nor its parse pipeline.

Measured with `simulate --rate 0 --messages 20000` on this 2-core machine at a load average of
4-6 (about half of what an idle one gives), messages/s into mosquitto / amqtt:
tts (1.5 kB) 6,392 / 3,826; tektelic (830 B) 5,587 / 4,449; thingpark (855 B) 4,416 / 4,675;
drogue (420 B) 6,489 / 3,428; akenza (70 B) 4,563 / 1,658 (its subscription to the uplink topics,
where it hears the console's device, brings every message back to it too). Building messages in
Python is the limit, not the broker; the demo needs a few a second per platform.
"""

from __future__ import annotations

import heapq
import itertools
import ssl
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from app.mqtt.config import ConnectionConfig, MqttVersion, Transport, generate_client_id
from app.simulate.akenza import AkenzaSimulator
from app.simulate.base import Message, Simulator
from app.simulate.drogue import DrogueSimulator
from app.simulate.fleet import Fleet, FleetOptions
from app.simulate.tektelic import TektelicSimulator
from app.simulate.thingpark import ThingParkSimulator
from app.simulate.tts import TtsSimulator

SIMULATORS: dict[str, type[Simulator]] = {
    "tts": TtsSimulator,
    "tektelic": TektelicSimulator,
    "akenza": AkenzaSimulator,
    "thingpark": ThingParkSimulator,
    "drogue": DrogueSimulator,
}
PLATFORMS = tuple(SIMULATORS)
FLUSH_TIMEOUT_S = 15.0


class SimulateError(RuntimeError):
    """A sentence for the user: the broker refused, could not be reached, …"""


def make_simulator(platform: str, options: FleetOptions, **settings) -> Simulator:
    if platform not in SIMULATORS:
        raise ValueError(f"There is no simulator for {platform!r}; choose one of {', '.join(PLATFORMS)}.")
    return SIMULATORS[platform](Fleet(options), **{k: v for k, v in settings.items() if v is not None})


@dataclass
class RunResult:
    platform: str
    counts: Counter = field(default_factory=Counter)  # messages by kind: uplink, join, malformed, answer
    fleet: dict = field(default_factory=dict)  # gap, reset, rejoin, burst frames
    downlinks: int = 0  # downlinks and commands received and answered
    bytes: int = 0
    elapsed_s: float = 0.0

    @property
    def messages(self) -> int:
        return sum(self.counts.values())

    def to_dict(self) -> dict:
        rate = self.messages / self.elapsed_s if self.elapsed_s > 0 else 0.0
        return {
            "platform": self.platform,
            "messages": self.messages,
            "by_kind": dict(sorted(self.counts.items())),
            "events": {k: v for k, v in sorted(self.fleet.items()) if k in ("gap", "reset", "rejoin", "burst")},
            "downlinks_answered": self.downlinks,
            "bytes": self.bytes,
            "seconds": round(self.elapsed_s, 3),
            "msg_per_s": round(rate, 1),
        }

    def summary(self) -> str:
        d = self.to_dict()
        kinds = ", ".join(f"{n} {k}" for k, n in d["by_kind"].items()) or "nothing"
        events = ", ".join(f"{n} {k}" for k, n in d["events"].items())
        return (
            f"Sent {d['messages']} {self.platform} messages in {d['seconds']:g} s ({d['msg_per_s']:g}/s): {kinds}"
            + (f"; fleet: {events}" if events else "")
            + f"; answered {self.downlinks} downlinks."
        )


def _client(config: ConnectionConfig, mqtt5: bool) -> paho.Client:
    transport = "websockets" if config.transport.uses_websockets else "tcp"
    client = paho.Client(
        CallbackAPIVersion.VERSION2,
        client_id=config.client_id or generate_client_id("uplink-simulate"),
        protocol=paho.MQTTv5 if mqtt5 else paho.MQTTv31 if config.mqtt_version == MqttVersion.V31 else paho.MQTTv311,
        transport=transport,
    )
    client.max_queued_messages_set(0)
    client.max_inflight_messages_set(1000)
    if config.transport.uses_websockets:
        client.ws_set_options(path=config.websocket_path)
    if config.transport.uses_tls:
        from app.tls import build_ssl_context

        client.tls_set_context(build_ssl_context(config.tls))
        if not config.tls.verify_hostname:
            client.tls_insecure_set(True)
    if config.username or config.password:
        client.username_pw_set(config.username, config.password)
    return client


def _properties(message: Message) -> Properties | None:
    if message.content_type is None and not message.user_properties:
        return None
    props = Properties(PacketTypes.PUBLISH)
    if message.content_type is not None:
        props.ContentType = message.content_type
    if message.user_properties:
        props.UserProperty = list(message.user_properties)
    return props


def _received_properties(msg) -> dict:
    props = getattr(msg, "properties", None)
    out: dict = {}
    if props is None:
        return out
    content_type = getattr(props, "ContentType", None)
    if content_type is not None:
        out["content_type"] = content_type
    users = getattr(props, "UserProperty", None)
    if users:
        out["user_properties"] = [list(pair) for pair in users]
    return out


def connect(config: ConnectionConfig, mqtt5: bool, timeout: float = 10.0) -> paho.Client:
    """A connected, looping paho client; SimulateError in a sentence when the broker says no."""
    client = _client(config, mqtt5)
    outcome: list = []
    connected = threading.Event()

    def on_connect(client, userdata, flags, reason, properties):
        outcome.append(reason)
        connected.set()

    client.on_connect = on_connect
    where = config.describe()
    try:
        client.connect(config.host, config.effective_port, keepalive=config.keepalive or 60)
    except ConnectionRefusedError:
        raise SimulateError(f"{where} refused the connection; check the address and that the broker runs.") from None
    except ssl.SSLCertVerificationError as exc:
        raise SimulateError(
            f"The certificate of {where} is not trusted ({exc.verify_message}); give its CA with --ca, "
            "or --insecure to skip the check."
        ) from None
    except ssl.SSLError as exc:
        reason = exc.reason or exc
        raise SimulateError(f"The TLS handshake with {where} failed ({reason}); check the port and --ca.") from None
    except OSError as exc:
        raise SimulateError(f"Cannot reach {where} ({exc.strerror or exc}); check the address.") from None
    client.loop_start()
    if not connected.wait(timeout):
        client.loop_stop()
        raise SimulateError(f"{where} did not answer the MQTT connect within {timeout:g} s.")
    if outcome[0].is_failure:
        client.loop_stop()
        raise SimulateError(f"{where} refused the simulator: {outcome[0]}; check the username and password.")
    return client


def run(
    simulator: Simulator,
    config: ConnectionConfig,
    *,
    duration: float | None = None,
    max_messages: int | None = None,
    stop: threading.Event | None = None,
    paced: bool = True,
    linger_s: float = 0.0,
    qos: int = 0,
) -> RunResult:
    """Publish until `duration` seconds, `max_messages` messages or `stop`, whichever comes first;
    with `paced` False, as fast as the broker takes them. `linger_s`: keep answering downlinks that
    long after the last uplink; `qos`: of every publish and subscription. Raises SimulateError for
    a broker that cannot be used."""
    stop = stop or threading.Event()
    mqtt5 = config.mqtt_version == MqttVersion.V5 or simulator.needs_mqtt5
    if simulator.needs_mqtt5 and config.mqtt_version not in (MqttVersion.V5,):
        config = config.replace(mqtt_version=MqttVersion.V5)
    if not config.client_id:
        config = config.replace(client_id=generate_client_id("uplink-simulate"))
    client = connect(config, mqtt5)
    result = RunResult(simulator.platform)
    answers: list = []  # heap of (due monotonic, n, Message)
    lock = threading.Lock()
    order = itertools.count()

    flushed = threading.Event()
    flush_topic = "uplink-simulate/flush/" + "".join("_" if c in "+#/\x00" else c for c in config.client_id)

    def on_message(client, userdata, msg):
        if msg.topic == flush_topic:
            flushed.set()
            return
        try:
            replies = simulator.answer(msg.topic, msg.payload, _received_properties(msg))
        except Exception:  # a downlink the simulator cannot read is not answered
            return
        if replies:
            now = time.monotonic()
            with lock:
                result.downlinks += 1
                for reply in replies:
                    heapq.heappush(answers, (now + reply.delay_s, next(order), reply.message))

    client.on_message = on_message
    for topic in [*simulator.listen(), flush_topic]:
        client.subscribe(topic, qos)

    last = None

    def publish(message: Message):
        result.counts[message.kind] += 1
        result.bytes += len(message.payload)
        return client.publish(message.topic, message.payload, qos, properties=_properties(message) if mqtt5 else None)

    fleet = simulator.fleet
    started = time.monotonic()
    end = started + duration if duration is not None else None
    pending = []  # messages of the current frame not yet published
    frame_due = started
    try:
        while not stop.is_set():
            now = time.monotonic()
            if end is not None and now >= end:
                break
            if max_messages is not None and result.messages - result.counts["answer"] >= max_messages:
                break
            with lock:
                due_answers = []
                while answers and answers[0][0] <= now:
                    due_answers.append(heapq.heappop(answers)[2])
            for message in due_answers:
                last = publish(message)
            if not pending:
                frame = fleet.next_frame()
                pending = simulator.messages(frame)
                frame_due = started + (frame.time - fleet.start).total_seconds() if paced else now
                if not pending:
                    continue
            wait = frame_due - now
            if wait > 0:
                with lock:
                    next_answer = answers[0][0] - now if answers else wait
                limit = min(wait, next_answer, 0.25, (end - now) if end is not None else wait)
                stop.wait(max(limit, 0.0))
                continue
            for message in pending:
                last = publish(message)
            pending = []
        if linger_s > 0 and not stop.is_set():
            linger_end = time.monotonic() + linger_s
            while time.monotonic() < linger_end and not stop.is_set():
                now = time.monotonic()
                with lock:
                    due_answers = []
                    while answers and answers[0][0] <= now:
                        due_answers.append(heapq.heappop(answers)[2])
                for message in due_answers:
                    last = publish(message)
                stop.wait(0.05)
        if last is not None:
            # A broker may drop what it has not routed yet when its publisher leaves (amqtt does):
            # a marker on the simulator's own topic comes back once everything before it is routed.
            client.publish(flush_topic, b"", 0)
            flushed.wait(FLUSH_TIMEOUT_S)
    finally:
        result.elapsed_s = time.monotonic() - started
        result.fleet = dict(fleet.counts)
        client.disconnect()
        client.loop_stop()
    return result


def local_config(url: str, mqtt5: bool = False) -> ConnectionConfig:
    """The connection for a broker given as a URL alone (the demo's own broker)."""
    from app.mqtt.config import parse_url

    config = parse_url(url)
    if config.transport not in (Transport.TCP, Transport.TLS, Transport.WS, Transport.WSS):
        raise SimulateError(f"Cannot simulate over {url!r}.")
    return config.replace(mqtt_version=MqttVersion.V5 if mqtt5 else MqttVersion.V311)

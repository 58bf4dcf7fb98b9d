"""The demo, engine half: an embedded broker on a free loopback port, the five platform simulators
publishing to it and answering downlinks, and one ready connection per platform for the window.
No Qt here.

    from app.demo import start_demo, demo_dir
    demo = start_demo(demo_dir())          # broker up, simulators running (their own process)
    for connection in demo.connections():  # one per platform, in PLATFORMS order
        ...                                # open it in the window, marked as demo (connection["demo"])
    demo.stop()                            # simulators, then the broker (also on interpreter exit)

Each connection is a dict: "name" (e.g. "Demo: The Things Stack"), "platform" (registry name),
"url" (the demo broker), "values" (the platform profile values, the placeholder credentials
included: the demo broker takes anyone, so they are no secrets and need no keyring), "credentials"
{"username", "password"} and "subscriptions" [{"topic", "qos", "user_properties"}] as the
platform's connection() makes them, "demo": True. The window makes a Profile from "platform" and
"values" without saving it (app.profiles.new_profile), so the user's saved connections never see it.

The demo's data (its broker's files, its history) lives in `demo_dir()` (<data dir>/demo), apart
from the user's own: point the demo connections' history there. Simulators run in one spawned
process (the GIL is the window's), five threads in it, one per platform, each its own paho client.
Drogue runs in binary content mode on MQTT 5 where the broker has it (mosquitto) and in structured
mode on MQTT 3.1.1 otherwise (amqtt), see app/embedded_broker.py.
"""

from __future__ import annotations

import atexit
import logging
import multiprocessing
import threading
from dataclasses import dataclass, field
from pathlib import Path

from app.devbroker import BrokerUnavailable
from app.embedded_broker import EmbeddedBroker
from app.simulate.fleet import FleetOptions

log = logging.getLogger(__name__)

PLATFORMS = ("tts", "tektelic", "akenza", "thingpark", "drogue")
LABELS = {
    "tts": "The Things Stack",
    "tektelic": "Tektelic",
    "akenza": "akenza",
    "thingpark": "ThingPark",
    "drogue": "Drogue Cloud",
}


class DemoUnavailable(RuntimeError):
    """The demo cannot start; the text is one sentence saying why and what to do."""


@dataclass(frozen=True)
class DemoSettings:
    devices: int = 8  # per platform
    rate: float = 3.0  # messages a second per platform
    seed: int = 1
    thingpark_failure_rate: float = 0.1

    def fleet(self, platform: str) -> FleetOptions:
        # A fleet of its own per platform (its own seed), so the five tables do not mirror each other.
        return FleetOptions(devices=self.devices, rate=self.rate, seed=self.seed * 100 + PLATFORMS.index(platform))


def demo_dir() -> Path:
    """<data dir>/demo: the demo's broker files and history, apart from the user's."""
    from app.history import data_dir

    return data_dir() / "demo"


def simulator_settings(platform: str, mqtt5: bool, settings: DemoSettings) -> dict:
    if platform == "drogue":
        return {"content_mode": "binary" if mqtt5 else "structured"}
    if platform == "thingpark":
        return {"failure_rate": settings.thingpark_failure_rate}
    return {}


def build_simulators(mqtt5: bool, settings: DemoSettings) -> dict:
    from app.simulate.run import make_simulator

    return {p: make_simulator(p, settings.fleet(p), **simulator_settings(p, mqtt5, settings)) for p in PLATFORMS}


def run_simulators(
    url: str,
    mqtt5: bool,
    settings: DemoSettings,
    stop_event,
    log_file: str | None = None,
    broker_pid: int | None = None,
) -> None:
    """The simulator process: the five platforms on `url` until `stop_event` (a multiprocessing
    Event), or until the console is gone — then the demo's mosquitto (`broker_pid`) ends with it."""
    from app.embedded_broker import end_with_parent

    end_with_parent(also_end_pid=broker_pid)
    logging.basicConfig(level=logging.WARNING, filename=log_file)
    from app.simulate.run import SimulateError, local_config, run

    stop = threading.Event()
    simulators = build_simulators(mqtt5, settings)

    def drive(platform: str) -> None:
        simulator = simulators[platform]
        config = local_config(url, mqtt5=simulator.needs_mqtt5).replace(client_id=f"uplink-demo-{platform}")
        while not stop.is_set():
            try:
                run(simulator, config, stop=stop)
            except SimulateError as exc:  # the broker went away: try again shortly
                log.warning("demo simulator %s: %s", platform, exc)
                stop.wait(1.0)

    threads = [threading.Thread(target=drive, args=(p,), name=f"demo-{p}", daemon=True) for p in PLATFORMS]
    for thread in threads:
        thread.start()
    stop_event.wait()
    stop.set()
    for thread in threads:
        thread.join(5)


@dataclass
class Demo:
    directory: Path
    broker: EmbeddedBroker
    settings: DemoSettings
    _process: object = None
    _stop_event: object = None
    _connections: list = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.broker.url

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.is_alive() and self.broker.running

    def connections(self) -> list[dict]:
        """One connection per platform (see the module docstring), ready for the window."""
        if not self._connections:
            simulators = build_simulators(self.broker.mqtt5, self.settings)  # as the process built them
            self._connections = [self._connection(p, simulators[p]) for p in PLATFORMS]
        return [dict(c) for c in self._connections]

    def _connection(self, platform: str, simulator) -> dict:
        from app import platforms

        plat = platforms.get(platform)
        values = plat.validate({**plat.defaults(), **simulator.profile(self.url)})
        config = plat.connection(values)
        return {
            "name": f"Demo: {LABELS[platform]}",
            "platform": platform,
            "url": self.url,
            "values": values,
            "credentials": {"username": config.username, "password": config.password},
            "subscriptions": [
                {"topic": s.topic, "qos": s.qos, "user_properties": [list(p) for p in s.user_properties]}
                for s in config.subscriptions
            ],
            "demo": True,
        }

    def stop(self) -> None:
        if self._stop_event is not None:
            self._stop_event.set()
        if self._process is not None:
            self._process.join(8)
            if self._process.is_alive():
                self._process.terminate()
                self._process.join(5)
            self._process = None
        self.broker.stop()

    def __enter__(self) -> Demo:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def start_demo(
    directory: Path | str | None = None, settings: DemoSettings | None = None, broker_kind: str | None = None
) -> Demo:
    """The broker up on a free loopback port and the five simulators publishing to it.

    `directory`: the demo's own folder (default demo_dir()); `broker_kind`: mosquitto or amqtt
    (default: mosquitto when installed, app.embedded_broker.chosen_kind). Raises
    DemoUnavailable, in a sentence, when its folder cannot be written or no broker starts."""
    directory = Path(directory) if directory is not None else demo_dir()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "broker").mkdir(exist_ok=True)
    except OSError as exc:
        raise DemoUnavailable(
            f"The demo cannot create its folder {directory} ({exc.strerror or exc}); "
            "set UPLINK_CONSOLE_DATA_DIR to a folder you can write."
        ) from None
    settings = settings or DemoSettings()
    try:
        broker = EmbeddedBroker(directory / "broker", broker_kind).start()
    except BrokerUnavailable as exc:
        raise DemoUnavailable(str(exc)) from None
    ctx = multiprocessing.get_context("spawn")  # fork is unsafe in a process running Qt threads
    stop_event = ctx.Event()
    process = ctx.Process(
        target=run_simulators,
        args=(broker.url, broker.mqtt5, settings, stop_event, str(directory / "simulators.log"), broker.mosquitto_pid),
        name="uplink-demo-simulators",
        daemon=True,
    )
    try:
        process.start()
    except Exception:
        broker.stop()
        raise
    demo = Demo(directory, broker, settings, process, stop_event)
    atexit.register(demo.stop)
    return demo

"""The demo's own MQTT broker, on a free loopback port: mosquitto when it is installed, otherwise
amqtt, which installs from the package index with the console.

Why these two (benchmarks/embedded_broker.py on this 2-core machine: paho publisher and
subscriber, 850-byte bodies, QoS 0, all candidates in one run; first an idle machine, then one
with a load average of 4):

    broker      start-up   msg/s 3.1.1   x mosquitto   arrived   MQTT 5
    mosquitto      52 ms        14,464          1.00             yes (12,046 msg/s)
    amqtt 0.12    165 ms         9,070          0.63             no: refuses protocol level 5
    iotcore 0.4   103 ms             1          0.00             no CONNACK on its v5 listener
    (loaded)
    mosquitto      62 ms         8,824          1.00    100.0%   yes (5,983 msg/s)
    amqtt 0.12    688 ms         3,378          0.38    100.0%   no
    iotcore 0.4   604 ms             0          0.00      0.0%   no

- mosquitto is the reference and speaks MQTT 5; app/devbroker.py already runs it on loopback.
- amqtt is pure Python (nothing to build, so it also goes into the packaged program), starts in
  well under a second and carries 3-9k messages/s, hundreds of times what the demo publishes
  (five simulators at a few messages a second each). It speaks MQTT 3.1.1 only, and it drops what
  it has not routed yet when a publisher disconnects (app.simulate.run waits for that).
- iotcore (rumqttd compiled into a wheel) was measured too: it barely delivered anything to a
  paho subscriber here and never answered an MQTT 5 CONNECT, and its own runner re-executes
  sys.executable, which in a packaged program is the console itself.
- mqttools' broker speaks only MQTT 5 and refuses any username or password, so the TTS, Tektelic
  and akenza connections (which always send credentials) could not log in.

amqtt runs in a process of its own (spawned, like the engine process, so it also works in the
packaged program once multiprocessing.freeze_support() has run) and never on the window's GIL.

Where the broker lacks MQTT 5 (amqtt), `EmbeddedBroker.mqtt5` is False and the demo's Drogue
simulator and connection use structured content mode over MQTT 3.1.1, the mode Drogue itself
uses on 3.1.1; binary mode (the attributes as MQTT 5 user properties) is shown with mosquitto.

Nothing here listens beyond 127.0.0.1, and both brokers take any client without a password: the
demo's credentials are placeholders.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import signal
import socket
import time
from pathlib import Path

from app.devbroker import BrokerUnavailable, Mosquitto, free_port

log = logging.getLogger(__name__)

MOSQUITTO = "mosquitto"
AMQTT = "amqtt"
KINDS = (MOSQUITTO, AMQTT)


# Debian and Ubuntu install mosquitto in /usr/sbin, which is not on a desktop user's PATH.
SBIN_DIRS = ("/usr/sbin", "/usr/local/sbin")
# Set to mosquitto or amqtt to choose the demo's broker instead of detecting it.
CHOICE_ENV = "UPLINK_CONSOLE_DEMO_BROKER"


def mosquitto_on_path() -> bool:
    """True when a mosquitto binary can be run: on PATH, or in the sbin folders Debian uses."""
    if shutil.which("mosquitto"):
        return True
    return any(os.access(os.path.join(d, "mosquitto"), os.X_OK) for d in SBIN_DIRS)


def chosen_kind() -> str:
    """The broker the demo uses here: the one CHOICE_ENV names, else mosquitto if installed, else amqtt."""
    named = (os.environ.get(CHOICE_ENV) or "").strip().lower()
    if named in KINDS:
        return named
    return MOSQUITTO if mosquitto_on_path() else AMQTT


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def end_with_parent(also_end_pid: int | None = None) -> None:
    """In a spawned child: when the process that started it is gone (the console was killed, even
    with SIGKILL), end this process too — and `also_end_pid` first (the demo's mosquitto, which the
    console started as a plain subprocess and cannot end once it is dead). Every OS: it waits on
    multiprocessing's sentinel of the parent, in a daemon thread."""
    import threading
    from multiprocessing.connection import wait

    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        wait([parent.sentinel])
        if also_end_pid:
            try:
                os.kill(also_end_pid, signal.SIGTERM)
            except OSError:
                pass
        os._exit(0)

    threading.Thread(target=watch, name="end-with-parent", daemon=True).start()


def run_amqtt(port: int, log_file: str | None = None) -> None:
    """The amqtt broker on 127.0.0.1:port until the process is ended (the spawned child's target)."""
    import asyncio

    end_with_parent()

    logging.basicConfig(
        level=logging.WARNING,
        filename=log_file,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # amqtt logs every refused packet at ERROR with a traceback; the demo needs none of it on stderr.
    logging.getLogger("amqtt").setLevel(logging.CRITICAL)
    logging.getLogger("transitions").setLevel(logging.CRITICAL)

    async def serve() -> None:
        from amqtt.broker import Broker

        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}", "max_connections": 200}},
            # Only what the demo needs: anyone may connect (the demo's passwords are placeholders).
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        }
        broker = Broker(config)
        await broker.start()
        await asyncio.Event().wait()

    asyncio.run(serve())


class EmbeddedBroker:
    """A broker for the demo: `start()`, then `url`, `mqtt5`, `kind`; `stop()` ends it."""

    def __init__(self, directory: Path, kind: str | None = None) -> None:
        if kind is not None and kind not in KINDS:
            raise ValueError(f"The embedded broker is {' or '.join(KINDS)}, not {kind!r}.")
        self.directory = Path(directory)
        self.kind = kind or chosen_kind()
        self.port: int | None = None
        self.startup_s: float | None = None
        self._mosquitto: Mosquitto | None = None
        self._process = None

    @property
    def mqtt5(self) -> bool:
        return self.kind == MOSQUITTO

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("The embedded broker has not been started.")
        return f"mqtt://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        if self._mosquitto is not None:
            return self._mosquitto.proc is not None and self._mosquitto.proc.poll() is None
        return self._process is not None and self._process.is_alive()

    def start(self, timeout: float = 15.0) -> EmbeddedBroker:
        if self.running:
            return self
        self.directory.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        if self.kind == MOSQUITTO:
            self._mosquitto = Mosquitto(self.directory / "mosquitto", full=False).start(timeout)
            self.port = self._mosquitto.ports.plain
        else:
            self._start_amqtt(timeout)
        self.startup_s = time.perf_counter() - started
        log.info("demo broker %s on port %s in %.0f ms", self.kind, self.port, self.startup_s * 1000)
        return self

    @property
    def mosquitto_pid(self) -> int | None:
        """The pid of the demo's mosquitto (None for amqtt, which ends itself with the console)."""
        proc = self._mosquitto.proc if self._mosquitto is not None else None
        return proc.pid if proc is not None else None

    def _start_amqtt(self, timeout: float) -> None:
        try:
            import amqtt.broker  # noqa: F401 - fail here, in a sentence, rather than in the child
        except ImportError:
            if mosquitto_on_path():
                raise BrokerUnavailable(
                    f"amqtt is not installed, and {CHOICE_ENV} asks the demo for it; install the console with its "
                    f"dependencies (pip install uplink-console), or unset {CHOICE_ENV} to use mosquitto."
                ) from None
            raise BrokerUnavailable(
                "Neither mosquitto nor amqtt is installed, so the demo has no broker; install the console "
                "with its dependencies (pip install uplink-console) or install mosquitto."
            ) from None
        port = free_port()
        ctx = multiprocessing.get_context("spawn")  # fork is unsafe in a process running Qt threads
        log_file = str(self.directory / "amqtt.log")
        self._process = ctx.Process(target=run_amqtt, args=(port, log_file), name="uplink-demo-broker", daemon=True)
        self._process.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self._process.is_alive():
                detail = _tail(Path(log_file))
                self._process = None
                raise BrokerUnavailable(f"The demo broker (amqtt) stopped as it started{detail}.")
            if _port_open(port):
                self.port = port
                return
            time.sleep(0.02)
        self.stop()
        raise BrokerUnavailable(f"The demo broker (amqtt) did not open its port within {timeout:g} s.")

    def stop(self) -> None:
        if self._mosquitto is not None:
            self._mosquitto.stop()
            self._mosquitto = None
        if self._process is not None:
            if self._process.is_alive():
                self._process.terminate()
                self._process.join(5)
                if self._process.is_alive():
                    self._process.kill()
                    self._process.join(5)
            self._process = None

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _tail(path: Path) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return f" ({text[-1][:200]})" if text else ""


def start_embedded_broker(directory: Path | str, kind: str | None = None) -> EmbeddedBroker:
    """An EmbeddedBroker already started: `kind` None picks as chosen_kind() does."""
    return EmbeddedBroker(Path(directory), kind).start()


__all__ = [
    "AMQTT",
    "MOSQUITTO",
    "BrokerUnavailable",
    "EmbeddedBroker",
    "chosen_kind",
    "mosquitto_on_path",
    "start_embedded_broker",
]

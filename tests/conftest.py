"""Shared fixtures: a real mosquitto with TLS, websockets, passwords and MQTT 5, per session."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from app.devbroker import Mosquitto, generate_pki

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# History files and settings of this run go to a temporary folder, never the user's.
os.environ["UPLINK_CONSOLE_DATA_DIR"] = tempfile.mkdtemp(prefix="uplink-tests-data-")
os.environ["UPLINK_CONSOLE_LOG_DIR"] = tempfile.mkdtemp(prefix="uplink-tests-log-")
# Saved connections and their secrets too: a config folder of this run, and keyrings.alt's file
# keyring (a real backend) in a folder of this run, for this process and every one it starts.
os.environ["UPLINK_CONSOLE_CONFIG_DIR"] = tempfile.mkdtemp(prefix="uplink-tests-config-")
os.environ["PYTHON_KEYRING_BACKEND"] = "keyrings.alt.file.PlaintextKeyring"
os.environ["KEYRING_PROPERTY_FILE_PATH"] = str(Path(tempfile.mkdtemp(prefix="uplink-tests-keyring-")) / "keyring.cfg")


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    return generate_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def broker(tmp_path_factory, pki):
    """One full broker for the whole run (tests use their own topics)."""
    b = Mosquitto(tmp_path_factory.mktemp("mosquitto"), pki=pki)
    b.start()
    yield b
    b.stop()


@pytest.fixture
def own_broker(tmp_path: Path, pki):
    """A broker of this test's own, for tests that stop and restart it."""
    b = Mosquitto(tmp_path / "own-broker", pki=pki)
    b.start()
    yield b
    b.stop()


@pytest.fixture
def topic(request) -> str:
    """A topic prefix no other test uses."""
    return "test/" + request.node.name.replace("[", "_").replace("]", "_").replace("/", "_")


@pytest.fixture
def loop(qapp):
    """qasync's selector loop on the test's QApplication, as the window runs it."""
    import asyncio

    import qasync

    loop = qasync.QSelectorEventLoop(qapp)
    asyncio.set_event_loop(loop)
    yield loop
    loop.close()
    asyncio.set_event_loop(None)


async def until(predicate, timeout: float = 15.0) -> None:
    """Waits (on the running loop) until predicate() is true; fails the test after timeout."""
    import asyncio
    import time

    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)

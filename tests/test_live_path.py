"""The live path survives anything: hostile uplinks, a stuck or dead engine, a history that
cannot be written. Real mosquitto, the real window offscreen, the real engine process."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import threading
import time
from pathlib import Path

import paho.mqtt.client as paho
import pytest

from app.simulate import tts as simulate
from tests.conftest import until
from tests.test_workspace import publish_uplinks, tts_connection

# ----- hostile bodies ------------------------------------------------------------------------


def _sample(i: int) -> dict:
    return json.loads(simulate.tts_uplink(0, i, rnd=random.Random(i)))


def _with(path: tuple, raw_value: str, i: int) -> bytes:
    """A valid simulated uplink whose value at path is replaced by raw JSON text."""
    doc = _sample(i)
    marker = "__HOSTILE__"
    node = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = marker
    return json.dumps(doc).replace(f'"{marker}"', raw_value).encode()


def _deep(n: int) -> str:
    return '{"a":' * n + "1" + "}" * n


BIG = "99999999999999999999"  # beyond 64 bits
NUMERIC_PATHS = [
    ("uplink_message", "f_port"),
    ("uplink_message", "f_cnt"),
    ("uplink_message", "settings", "frequency"),
    ("uplink_message", "settings", "data_rate", "lora", "spreading_factor"),
    ("uplink_message", "settings", "data_rate", "lora", "bandwidth"),
    ("uplink_message", "rx_metadata", 0, "rssi"),
    ("uplink_message", "rx_metadata", 0, "snr"),
]


def hostile_bodies() -> list[tuple[str, bytes]]:
    out = []
    for i, path in enumerate(NUMERIC_PATHS):
        out.append((f"{path[-1]} beyond 64 bits", _with(path, BIG, 1000 + i)))
        out.append((f"{path[-1]} beyond float range", _with(path, "1e400", 1100 + i)))
        out.append((f"{path[-1]} of the wrong type", _with(path, '{"x": [1]}', 1200 + i)))
    out.append(("nesting 100k deep at the top", _deep(100_000).encode()))
    out.append(
        ("nesting 100k deep in decoded_payload", _with(("uplink_message", "decoded_payload"), _deep(100_000), 3))
    )
    out.append(
        ("nesting 100k deep in rx_metadata", _with(("uplink_message", "rx_metadata"), "[" * 100_000 + "]" * 100_000, 4))
    )
    out.append(("ids of the wrong type", _with(("end_device_ids",), "[1, 2]", 5)))
    out.append(("invalid UTF-8", b'{"end_device_ids": {"device_id": "\xff\xfe"}, "uplink_message": {}}'))
    out.append(("not JSON", b"\x00\x01\x02 binary"))
    out.append(("huge body", b'{"x": "' + b"a" * (5 * 1024 * 1024) + b'"}'))
    return out


def publish_mixed(port: int, valid: int, hostile: list[tuple[str, bytes]], topic: str) -> None:
    """valid simulated uplinks on four devices with the hostile bodies spread among them, QoS 1
    so the broker delivers every one (the window's subscription is QoS 0: the order holds)."""
    c = paho.Client(paho.CallbackAPIVersion.VERSION2)
    c.connect("127.0.0.1", port)
    c.loop_start()
    every = max(1, valid // (len(hostile) + 1))
    pending = list(hostile)
    for i in range(valid):
        d = i % 4
        c.publish(simulate.tts_topic(d), simulate.tts_uplink(d, i // 4, rnd=random.Random(i)), qos=1).wait_for_publish(
            5
        )
        if i % every == 0 and pending:
            c.publish(topic, pending.pop(0)[1], qos=1).wait_for_publish(10)
    for _, body in pending:
        c.publish(topic, body, qos=1).wait_for_publish(10)
    time.sleep(0.3)
    c.disconnect()
    c.loop_stop()


def test_hostile_uplinks_among_valid_ones_keep_every_row_and_the_connection(qtbot, loop, broker, tmp_path, monkeypatch):
    from app.history import HistoryReader, history_path
    from ui.application import Heartbeat
    from ui.connection.page import history_name_for
    from ui.main_window import MainWindow

    monkeypatch.setenv("UPLINK_CONSOLE_DATA_DIR", str(tmp_path))
    profile, config = tts_connection(broker)
    window = MainWindow()
    qtbot.addWidget(window)
    window.show()
    hostile = hostile_bodies()
    valid = 400
    states = []
    window.connection_state_changed.connect(lambda page, change: states.append(change.state))
    hostile_topic = simulate.tts_topic(9)  # a device of its own: its rows are the hostile ones

    async def scenario():
        window.connect_platform("tts", profile, config)
        await until(lambda: window.bridge.connected)
        heartbeat = Heartbeat()
        await asyncio.to_thread(publish_mixed, broker.ports.plain, valid, hostile, hostile_topic)
        ws = window.workspace
        await until(lambda: len(ws.store) >= valid + len(hostile), 60)
        await asyncio.sleep(0.5)  # nothing more is coming
        heartbeat.timer.stop()
        assert heartbeat.p99() < 1000, heartbeat.p99()
        store = ws.store
        assert len({len(col) for col in store.cols.values()}) == 1, "columns of different lengths"
        rows = [store.row(p) for p in range(store.base, store.end)]
        good = [r for r in rows if r["topic"] != hostile_topic]
        bad = [r for r in rows if r["topic"] == hostile_topic]
        assert len(good) == valid and all(r["kind"] == "uplink" for r in good)
        assert len(bad) == len(hostile), [r["error"] for r in bad]
        # A value the table cannot hold is an error row that names the field.
        for (what, _), row in zip(hostile, bad, strict=True):
            if "beyond 64 bits" in what and what.split()[0] in ("f_port", "f_cnt"):
                assert row["kind"] == "error" and what.split()[0] in row["error"].replace(" ", "_"), (what, row)
            if "nesting" in what or "huge" in what:
                assert row["kind"] == "error", (what, row)
        # Never dropped: connected once, and still.
        assert window.bridge.connected
        assert "reconnecting" not in states, states
        assert window.state_label.text().startswith("Connected")
        # The history thread survived and stored every row.
        await until(lambda: _history_count(history_name_for("tts", config)) == valid + len(hostile), 15)
        window.disconnect()
        await until(lambda: window.bridge.last_state.state == "disconnected")

    def _history_count(name: str) -> int:
        reader = HistoryReader(history_path(name))
        try:
            return reader.count()
        finally:
            reader.close()

    loop.run_until_complete(scenario())
    window.close()


# ----- the engine watched --------------------------------------------------------------------


@pytest.mark.parametrize("how", ["hang", "crash"])
def test_engine_that_stops_answering_or_dies_is_restarted_and_resumes(qtbot, loop, broker, tmp_path, monkeypatch, how):
    from ui.main_window import MainWindow

    monkeypatch.setenv("UPLINK_CONSOLE_DATA_DIR", str(tmp_path))
    profile, config = tts_connection(broker)
    window = MainWindow()
    qtbot.addWidget(window)
    window.heartbeat_timeout = 2.0
    window.show()
    states = []
    window.connection_state_changed.connect(lambda page, change: states.append(change.state))

    async def scenario():
        window.connect_platform("tts", profile, config)
        await until(lambda: window.bridge.connected)
        await asyncio.to_thread(publish_uplinks, broker.ports.plain, 20)
        ws = window.workspace
        await until(lambda: len(ws.store) == 20)
        old = window.bridge.engine
        t0 = time.monotonic()
        os.kill(old.pid, signal.SIGSTOP if how == "hang" else signal.SIGKILL)
        await until(lambda: window.notices.text("engine") is not None, 15)
        detected = time.monotonic() - t0
        assert detected < 8, detected
        text = window.notices.text("engine")
        assert ("stopped answering" in text) if how == "hang" else ("stopped unexpectedly" in text), text
        assert "started again and the connection resumed" in text
        # Not "Connected" while there is no engine delivering.
        assert "reconnecting" in states[-3:] or not window.state_label.text().startswith("Connected")
        await until(lambda: window.bridge.connected and window.bridge.engine is not old, 20)
        assert window.bridge.engine.pid != old.pid
        assert old.process.exitcode is not None  # the stuck one is gone, not left stopped
        await asyncio.to_thread(publish_uplinks, broker.ports.plain, 20)
        await until(lambda: len(ws.store) == 40, 15)
        assert window.state_label.text().startswith("Connected")
        assert window.notices.text("engine") is not None  # still visible after "connected"
        window.disconnect()
        await until(lambda: window.bridge.last_state.state == "disconnected")

    loop.run_until_complete(scenario())
    window.close()


# ----- the history's own failures ------------------------------------------------------------


def _can_mount() -> bool:
    if os.geteuid() != 0:
        return False
    probe = Path(os.environ.get("TMPDIR", "/tmp")) / f"uplink-mount-probe-{os.getpid()}"
    probe.mkdir(exist_ok=True)
    try:
        ok = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(probe)], capture_output=True)
        if ok.returncode != 0:
            return False
        subprocess.run(["umount", str(probe)], capture_output=True)
        return True
    finally:
        probe.rmdir()


needs_mount = pytest.mark.skipif(not _can_mount(), reason="mounting a small file system needs root and CAP_SYS_ADMIN")


@pytest.fixture
def small_disk(tmp_path):
    """A 3 MB tmpfs of this test's own (read-only and full disks are made from it)."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mnt)], check=True)
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


@needs_mount
def test_read_only_history_shows_its_past_rows_and_says_so(qtbot, loop, broker, small_disk, monkeypatch):
    from ui.main_window import MainWindow

    monkeypatch.setenv("UPLINK_CONSOLE_DATA_DIR", str(small_disk / "data"))
    profile, config = tts_connection(broker)
    first = MainWindow()
    qtbot.addWidget(first)

    async def fill():
        first.connect_platform("tts", profile, config)
        await until(lambda: first.bridge.connected)
        await asyncio.to_thread(publish_uplinks, broker.ports.plain, 30)
        await until(lambda: len(first.workspace.store) == 30)
        first.disconnect()
        await until(lambda: first.bridge.last_state.state == "disconnected")

    loop.run_until_complete(fill())
    first.close()
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)

    window = MainWindow()
    qtbot.addWidget(window)
    window.show()

    async def reopen():
        window.connect_platform("tts", profile, config)
        await until(lambda: window.bridge.connected)
        await until(lambda: len(window.workspace.store) == 30)  # the past, read from a read-only disk
        await asyncio.sleep(0.5)
        text = window.notices.text("history")
        assert text is not None and "read-only" in text and "Past rows are shown" in text, text
        assert window.notices.isVisible()
        await asyncio.to_thread(publish_uplinks, broker.ports.plain, 10)
        await until(lambda: len(window.workspace.store) == 40)  # the table goes on
        assert window.notices.text("history") == text
        window.disconnect()
        await until(lambda: window.bridge.last_state.state == "disconnected")
        assert window.notices.text("history") == text  # state changes never wipe it

    loop.run_until_complete(reopen())
    window.close()


def _fill(folder: Path) -> None:
    with open(folder / "filler", "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass


@needs_mount
@pytest.mark.parametrize("when", ["before connecting", "while connected"])
def test_full_disk_keeps_its_notice_and_the_table_going(qtbot, loop, broker, small_disk, monkeypatch, when):
    from ui.main_window import MainWindow

    data = small_disk / "data"
    data.mkdir()
    monkeypatch.setenv("UPLINK_CONSOLE_DATA_DIR", str(data))
    profile, config = tts_connection(broker)
    if when == "before connecting":
        _fill(small_disk)
    window = MainWindow()
    qtbot.addWidget(window)
    window.show()

    async def scenario():
        window.connect_platform("tts", profile, config)
        await until(lambda: window.bridge.connected)
        if when == "while connected":
            await until(lambda: (data / "history").is_dir())
            await asyncio.sleep(0.3)
            _fill(small_disk)
        await asyncio.to_thread(publish_uplinks, broker.ports.plain, 600)
        await until(lambda: len(window.workspace.store) == 600, 30)
        await until(lambda: window.notices.text("history") is not None, 15)
        await asyncio.sleep(0.5)  # after "connected" and every batch: still there
        text = window.notices.text("history")
        assert "full" in text, text
        assert window.state_label.text().startswith("Connected")
        window.disconnect()
        await until(lambda: window.bridge.last_state.state == "disconnected")
        assert window.notices.text("history") == text

    loop.run_until_complete(scenario())
    window.close()


def test_history_thread_survives_a_writer_that_raises_and_never_blocks_the_stream(tmp_path, monkeypatch):
    """In this process: the engine's history thread with a writer that raises what nobody
    expected, then one that hangs (a disk that stopped answering)."""
    from app.events import error_event
    from app.history import HistoryWriter
    from app.mqtt import process
    from app.store import event_row

    monkeypatch.setenv("UPLINK_CONSOLE_DATA_DIR", str(tmp_path))
    notices = []
    real_append = HistoryWriter.append
    calls = {"n": 0}
    release = threading.Event()

    def append(self, rows, raws=None, dup_ids=None):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OverflowError("Python int too large to convert to SQLite INTEGER")
        if calls["n"] >= 4:
            release.wait(30)  # stuck
        return real_append(self, rows, raws, dup_ids)

    monkeypatch.setattr(HistoryWriter, "append", append)
    monkeypatch.setattr(process, "HISTORY_BACKLOG_ROWS", 50)
    history = process._HistoryThread("raising", lambda key, text: notices.append((key, text)))
    assert history.ready.wait(10) and history.failed is None
    next_id = history.next_id

    def batch(n):
        nonlocal next_id
        rows = [event_row(error_event("tts", "t", "x"), time.time(), next_id + i) for i in range(n)]
        next_id += n
        return rows, [("t", b"x", None, None, ()) for _ in rows]

    for _ in range(3):
        history.put(*batch(10))
    deadline = time.monotonic() + 10
    while calls["n"] < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert any(key == "history-batch" and "could not save 10 rows" in text for key, text in notices), notices
    assert history.failed is None and history.thread.is_alive()  # the next batch was stored
    # Now the writer hangs: put() returns at once, and past the backlog rows are counted, not queued.
    t0 = time.monotonic()
    for _ in range(20):
        history.put(*batch(10))
    assert time.monotonic() - t0 < 0.5
    assert history.dropped_rows > 0
    assert any(key == "history-behind" and "falling behind" in text for key, text in notices), notices
    release.set()
    deadline = time.monotonic() + 10
    while not any("missed" in text for _, text in notices) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert any(key == "history-behind" and "missed" in text for key, text in notices), notices
    # Caught up: later batches do not say it again.
    said = len(notices)
    for _ in range(5):
        history.put(*batch(10))
        time.sleep(0.05)
    history.close()
    assert len(notices) == said, notices[said:]


# ----- verification off is visible -----------------------------------------------------------


def test_connection_without_certificate_checks_is_marked_in_the_window(qtbot, loop, broker, tmp_path, monkeypatch):
    from app.mqtt.config import TlsSettings, Transport
    from ui.main_window import MainWindow

    monkeypatch.setenv("UPLINK_CONSOLE_DATA_DIR", str(tmp_path))
    profile, config = tts_connection(broker)
    insecure = config.replace(
        port=broker.ports.tls,
        transport=Transport.TLS,
        tls=TlsSettings(verify_certificate=False, verify_hostname=False),
    )
    window = MainWindow()
    qtbot.addWidget(window)
    window.show()

    async def scenario():
        window.connect_platform("tts", profile, insecure)
        await until(lambda: window.bridge.connected)
        await asyncio.sleep(0.3)
        text = window.notices.text("verification")
        assert text is not None and "not verified" in text and str(broker.ports.tls) in text, text
        assert "not verified" in window.state_label.text()
        assert "not verified" in window.current.summary.text()
        # A verified connection in the same window: the mark and the notice go.
        states = []
        window.bridge.state_changed.connect(lambda change: states.append(change.state))
        window.connect_platform("tts", profile, config)
        await until(lambda: "disconnected" in states and states[-1] == "connected")
        assert window.notices.text("verification") is None
        assert "not verified" not in window.state_label.text()
        window.disconnect()
        await until(lambda: window.bridge.last_state.state == "disconnected")

    loop.run_until_complete(scenario())
    window.close()


def test_a_stopped_engine_never_blocks_a_caller_and_is_reported(tmp_path):
    """A large call to an engine that does not read its pipe returns at once (a writer thread
    sends), and the watchdog still reports the engine."""
    from app.mqtt.process import EngineGone, EngineProcess

    lost = []
    engine = EngineProcess(on_lost=lost.append, heartbeat_timeout=2.0)
    try:
        fut = engine.call("wait_connected", 0, 0.1)  # the engine answers: it is alive
        fut.exception(10)
        os.kill(engine.pid, signal.SIGSTOP)
        t0 = time.monotonic()
        big = engine.call("publish", 1, "t", b"x" * (4 * 1024 * 1024), {})
        assert time.monotonic() - t0 < 0.5
        deadline = time.monotonic() + 10
        while not lost and time.monotonic() < deadline:
            time.sleep(0.05)
        assert lost and "stopped answering" in lost[0], lost
        assert isinstance(big.exception(5), EngineGone)
    finally:
        engine.close()
    assert engine.process.exitcode is not None


def test_rows_keep_unique_ids_and_runtime_subscriptions_survive_an_engine_restart(
    qtbot, loop, broker, topic, tmp_path, monkeypatch
):
    from app.mqtt.config import Subscription, parse_url
    from app.store import NONE_INT
    from tests.test_session import publish_with_paho
    from ui.main_window import MainWindow

    monkeypatch.setenv("UPLINK_CONSOLE_DATA_DIR", str(tmp_path))
    profile, config = tts_connection(broker)
    window = MainWindow()
    qtbot.addWidget(window)
    window.heartbeat_timeout = 2.0

    async def scenario():
        tts = window.connect_platform("tts", profile, config)
        raw = window.connect_with(parse_url(broker.url("plain"), subscriptions=(Subscription(topic + "/a", 0),)))
        await until(lambda: tts.bridge.connected and raw.bridge.connected)
        raw.add_subscription(Subscription(topic + "/b", 0))  # at runtime
        await asyncio.sleep(0.3)
        await asyncio.to_thread(publish_uplinks, broker.ports.plain, 20000, 20)
        await until(lambda: len(tts.workspace.store) == 20000, 60)
        # Killed while its history may still be behind the table.
        os.kill(tts.bridge.engine.pid, signal.SIGKILL)
        os.kill(raw.bridge.engine.pid, signal.SIGKILL)
        await until(lambda: tts.notices.text("engine") is not None and raw.notices.text("engine") is not None, 15)
        await until(lambda: tts.bridge.connected and raw.bridge.connected, 20)
        await asyncio.to_thread(publish_uplinks, broker.ports.plain, 200, 20)
        await until(lambda: len(tts.workspace.store) == 20200, 15)
        store = tts.workspace.store
        ids = [i for i in store.cols["id"][store.room :] if i != NONE_INT]
        assert len(ids) == len(set(ids)), "an id names two rows"
        await asyncio.to_thread(publish_with_paho, broker.ports.plain, topic + "/b", [b"after the restart"])
        await until(lambda: any(m.payload == b"after the restart" for m in raw.log_model.rows), 10)
        tts.disconnect()
        raw.disconnect()
        await until(lambda: tts.last_change.state == "disconnected" and raw.last_change.state == "disconnected")

    loop.run_until_complete(scenario())
    window.close()

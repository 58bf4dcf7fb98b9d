"""The uplink workspace: a platform connection end to end in the real window, offscreen."""

from __future__ import annotations

import asyncio
import random
import time

import paho.mqtt.client as paho

from app import platforms
from app.mqtt.config import Transport
from app.simulate import tts as simulate
from app.store import EventStore, Filter, columns_from_rows, event_row
from tests.conftest import until
from ui.workspace.uplink_table import COL, UplinkTableModel


def tts_rows(n: int, devices: int = 5, start: int = 0) -> dict:
    tts = platforms.get("tts")
    rows = []
    for i in range(start, start + n):
        d = i % devices
        for e in tts.parse(simulate.tts_topic(d), simulate.tts_uplink(d, i // devices)):
            rows.append(event_row(e, 1_700_000_000 + i))
    return columns_from_rows(rows)


def test_uplink_model_under_insert_trim_filter(qapp, qtmodeltester):
    model = UplinkTableModel(EventStore(max_rows=300, trim_chunk=30))
    qtmodeltester.check(model)
    model.ingest([tts_rows(200)])
    # Stored at once, shown at the next announce (at most every announce_interval).
    assert len(model.store) == 200 and model.rowCount() == 0
    qtmodeltester.check(model)
    model.announce()
    assert model.rowCount() == 200
    qtmodeltester.check(model)
    model.set_filter(Filter(device=simulate.dev_eui(2)))
    assert model.rowCount() == 40
    assert {model.index(r, COL["dev_eui"]).data() for r in range(model.rowCount())} == {simulate.dev_eui(2)}
    model.ingest([tts_rows(200, start=200)])  # 400 rows: the oldest 100 are trimmed
    assert model.rowCount() == 40
    qtmodeltester.check(model)
    model.announce()
    qtmodeltester.check(model)
    assert len(model.store) == 300
    assert model.rowCount() == 60
    model.set_filter(Filter())
    assert model.rowCount() == 300
    assert model.index(0, COL["f_cnt"]).data() == "20"  # row 100 of device 0 -> fCnt 100 // 5
    model.set_paused(True)
    model.ingest([tts_rows(10, start=400)])
    assert model.rowCount() == 300 and model.held_rows == 10
    model.set_paused(False)
    assert model.held_rows == 0 and model.store.total_appended == 410
    qtmodeltester.check(model)
    model.announce()
    assert model.rowCount() == 310 and model.rows_shown_total == 410  # 10 over: less than a trim chunk
    qtmodeltester.check(model)


def test_rows_reach_the_view_at_most_every_announce_interval(qtbot):
    model = UplinkTableModel(EventStore())
    model.announce_interval = 0.3
    inserts = []
    model.rowsInserted.connect(lambda *a: inserts.append(time.monotonic()))
    t0 = time.monotonic()
    for i in range(12):  # 12 batches over ~0.6 s
        model.ingest([tts_rows(10, start=i * 10)])
        qtbot.wait(50)
    qtbot.waitUntil(lambda: model.rowCount() == 120, timeout=2000)
    assert model.rows_shown_total == 120
    assert 2 <= len(inserts) <= 4, inserts  # not one per batch
    gaps = [b - a for a, b in zip([t0, *inserts], inserts, strict=False)][1:]
    assert all(g >= 0.25 for g in gaps), gaps


def test_refilling_the_device_list_does_not_refilter(qtbot):
    from ui.workspace.filter_bar import FilterBar

    bar = FilterBar()
    qtbot.addWidget(bar)
    emitted = []
    bar.filter_changed.connect(emitted.append)
    bar.update_devices(["A", "B"])
    bar.update_devices(["A", "B", "C"])
    qtbot.wait(400)  # longer than the typing debounce
    assert emitted == []


def publish_uplinks(port: int, n: int, devices: int = 4) -> None:
    c = paho.Client(paho.CallbackAPIVersion.VERSION2)
    c.connect("127.0.0.1", port)
    c.loop_start()
    for i in range(n):
        d = i % devices
        c.publish(simulate.tts_topic(d), simulate.tts_uplink(d, i // devices, rnd=random.Random(i)), qos=0)
    time.sleep(0.3)
    c.disconnect()
    c.loop_stop()


def tts_connection(broker):
    tts = platforms.get("tts")
    profile = tts.validate({"app": simulate.APP_ID, "tenant": simulate.TENANT, "password": "NNSXS.test"})
    config = tts.connection(profile).replace(
        host="127.0.0.1", port=broker.ports.plain, transport=Transport.TCP, username=None, password=None
    )
    return profile, config


def test_platform_connection_shows_uplinks_devices_details_and_history(qtbot, loop, broker, tmp_path, monkeypatch):
    from ui.main_window import MainWindow

    monkeypatch.setenv("UPLINK_CONSOLE_DATA_DIR", str(tmp_path))
    profile, config = tts_connection(broker)
    window = MainWindow()
    qtbot.addWidget(window)
    window.show()

    async def scenario():
        window.connect_platform("tts", profile, config)
        await until(lambda: window.bridge.connected)
        await asyncio.to_thread(publish_uplinks, broker.ports.plain, 40)
        ws = window.workspace
        await until(lambda: ws.model.rowCount() == 40)
        assert len(ws.tracker) == 4
        assert ws.model.index(0, COL["platform"]).data() == "TTS"
        assert ws.model.index(0, COL["kind"]).data() == "uplink"
        # the device filter, as selecting a device in the devices view does
        ws.select_device(simulate.dev_eui(1))
        assert ws.model.rowCount() == 10
        # details of a row: the raw message comes back from the history file
        ws.view.selectRow(3)
        pos = ws.view.selected_position()
        row = ws.store.row(pos)
        assert row["id"] is not None
        await until(lambda: ws.history.raw(row["id"]) is not None, 5)
        ws.show_details(pos)
        raw = ws.history.raw(row["id"])
        assert raw.topic == simulate.tts_topic(1)
        window.disconnect()
        await until(lambda: window.bridge.last_state.state == "disconnected")

    loop.run_until_complete(scenario())
    window.close()

    # A new window on the same connection shows the past.
    window2 = MainWindow()
    qtbot.addWidget(window2)

    async def reopen():
        window2.connect_platform("tts", profile, config)
        await until(lambda: window2.workspace.model.rowCount() == 40)
        assert window2.workspace.store.value(window2.workspace.store.base, "device_id") == simulate.device_id(0)
        window2.disconnect()
        await until(lambda: window2.bridge.last_state is not None and window2.bridge.last_state.state == "disconnected")

    loop.run_until_complete(reopen())
    window2.close()


def test_flood_keeps_the_window_responsive_and_history_bounded(qtbot, loop, broker, tmp_path, monkeypatch):
    """A burst of uplinks: every row reaches the table, the GUI heartbeat stays loosely bounded
    (the tight numbers belong to `uplink-console bench ingest`), and the history file respects
    its retention."""
    from app.history import HistoryReader, Retention, history_path
    from ui.application import Heartbeat
    from ui.connection.page import history_name_for
    from ui.main_window import MainWindow

    monkeypatch.setenv("UPLINK_CONSOLE_DATA_DIR", str(tmp_path))
    profile, config = tts_connection(broker)
    window = MainWindow(retention=Retention(max_age_days=None, max_rows=1000, max_bytes=None))
    qtbot.addWidget(window)
    window.show()
    n = 5000

    async def scenario():
        window.connect_platform("tts", profile, config)
        await until(lambda: window.bridge.connected)
        heartbeat = Heartbeat()
        await asyncio.to_thread(publish_uplinks, broker.ports.plain, n, 20)
        await until(lambda: window.workspace.model.rowCount() == n, 60)
        heartbeat.timer.stop()
        assert heartbeat.p99() < 1000, heartbeat.p99()
        assert len(window.workspace.tracker) == 20
        window.disconnect()
        await until(lambda: window.bridge.last_state.state == "disconnected")

    loop.run_until_complete(scenario())
    window.close()
    reader = HistoryReader(history_path(history_name_for("tts", config)))
    try:
        assert 800 <= reader.count() <= 1000  # the oldest go in chunks: at the limit or a little below
        assert reader.max_id() is not None
    finally:
        reader.close()

"""Reopening a connection with a long history: the history is read newest first for the replay,
every row arrives, and the window that replays ~200k rows shows the newest first, stays
responsive and ends up with the history's rows in order, its devices counted as if they had
come in order; a reconnect does not replay them again (benchmarks/reopen.py measures the times
at 1,000,000 rows)."""

from __future__ import annotations

import asyncio
import time

import pytest

from app.history import HistoryReader, HistoryWriter, Retention, history_path
from app.platforms.tts_fast import uplink_row
from app.simulate import tts as simulate
from app.store import F
from tests.conftest import until

DEVICES = 20


def simulated_rows(n: int, first_id: int, t0: float) -> list[tuple]:
    """n TTS uplink rows (real fast-path rows of DEVICES devices, their id, ts and f_cnt varied)."""
    bases = []
    for d in range(DEVICES):
        row, _received_at, _cids = uplink_row(simulate.tts_topic(d), simulate.tts_uplink(d, 1), t0, 1)
        bases.append(row)
    id_i, ts_i, fcnt_i = F["id"], F["ts"], F["f_cnt"]
    out = []
    for k in range(n):
        row = list(bases[k % DEVICES])
        row[id_i], row[ts_i], row[fcnt_i] = first_id + k, t0 + k * 1e-3, k // DEVICES
        out.append(tuple(row))
    return out


def write_history(path, n: int, gaps: bool = False) -> list[int]:
    """A history of n rows (no raw messages: the replay reads the row columns only); its ids."""
    writer = HistoryWriter(path, Retention(max_age_days=None, max_rows=None, max_bytes=None))
    ids = []
    t0 = time.time() - 3600
    try:
        done = 0
        while done < n:
            size = min(10_000, n - done)
            start = writer.take_ids(size + (3 if gaps else 0))[0]  # reserved ids never written: gaps
            rows = simulated_rows(size, start, t0 + done * 1e-3)
            writer.append(rows)
            ids.extend(r[0] for r in rows)
            done += size
    finally:
        writer.close()
    return ids


@pytest.mark.parametrize("gaps", [False, True])
def test_the_replay_reads_the_newest_rows_first_and_every_row_once(tmp_path, gaps):
    ids = write_history(tmp_path / "h.sqlite3", 45_000, gaps=gaps)
    with HistoryReader(tmp_path / "h.sqlite3") as reader:
        batches = list(reader.load_newest_first(40_000, first=500, chunk=7_000))
    got = [list(b["id"]) for b in batches]
    assert got[0] == ids[-500:], "the first batch is the newest rows"
    assert [len(b) for b in got] == [500, *[7_000] * 5, 4_500]
    for newer, older in zip(got, got[1:], strict=False):
        assert older[-1] < newer[0], "each batch is older than the one before"
    for batch in got:
        assert batch == sorted(batch)
    assert sorted(i for b in got for i in b) == ids[-40_000:]
    for b in batches:  # column batches as append_columns takes them
        assert len({len(col) for col in b.values()}) == 1


def test_the_replay_of_a_history_shorter_than_asked_or_empty(tmp_path):
    ids = write_history(tmp_path / "h.sqlite3", 1_234)
    with HistoryReader(tmp_path / "h.sqlite3") as reader:
        assert [i for b in reader.load_newest_first(10_000, first=100, chunk=500) for i in b["id"]] == sorted(
            ids[-100:]
        ) + sorted(ids[-600:-100]) + sorted(ids[-1_100:-600]) + sorted(ids[:-1_100])
        assert list(reader.load_newest_first(0)) == []
    with HistoryReader(tmp_path / "missing.sqlite3") as reader:
        assert list(reader.load_newest_first(100)) == []


def test_rows_written_or_trimmed_during_the_replay_are_neither_read_twice_nor_missed(tmp_path):
    path = tmp_path / "h.sqlite3"
    ids = write_history(path, 30_000)
    writer = HistoryWriter(path, Retention(max_age_days=None, max_rows=None, max_bytes=None))
    try:
        with HistoryReader(path) as reader:
            replay = reader.load_newest_first(30_000, first=1_000, chunk=5_000)
            first = list(next(replay)["id"])
            new = writer.take_ids(2_000)  # live rows arrive meanwhile: the live path shows them, not the replay
            writer.append(simulated_rows(2_000, new[0], time.time()))
            writer.retention = Retention(max_age_days=None, max_rows=20_000, max_bytes=None)
            writer.enforce_retention()  # retention meanwhile: the oldest rows are gone before they are read
            rest = [i for b in replay for i in b["id"]]
    finally:
        writer.close()
    assert first == ids[-1_000:]
    assert not set(rest) & set(new) and not set(rest) & set(first)
    assert sorted(first + rest) == ids[-(20_000 - 2_000) :], "every row still in the file, once"


async def _reopen(window, broker, name: str, rows: int) -> dict:
    from app import platforms
    from app.mqtt.config import Transport
    from ui.application import Heartbeat

    tts = platforms.get("tts")
    profile = tts.validate({"app": simulate.APP_ID, "tenant": simulate.TENANT, "password": "NNSXS.test"})
    config = tts.connection(profile).replace(
        host="127.0.0.1", port=broker.ports.plain, transport=Transport.TCP, username=None, password=None
    )
    heartbeat = Heartbeat()
    t0 = time.monotonic()
    page = window.connect_platform("tts", profile, config, history_name=name)
    ws = page.workspace
    await until(lambda: ws.model.rowCount() > 0, timeout=60)
    first = [ws.store.value(ws.model.position(r), "id") for r in range(ws.model.rowCount())]
    await until(lambda: ws.model.rowCount() >= rows, timeout=240)
    took = time.monotonic() - t0
    await until(lambda: page.bridge.connected, timeout=60)
    await until(lambda: not ws.history_loading and ws._devices_recount is None and ws.model._recount is None, 60)
    heartbeat.timer.stop()
    return {"page": page, "seconds": took, "first": first, "stall_max_ms": max(heartbeat.lateness_ms, default=0.0)}


def test_the_window_reopens_a_history_of_200k_rows(qapp, loop, broker):
    from ui.main_window import MainWindow

    name = "reopen test 200k"
    ids = write_history(history_path(name), 200_000)
    window = MainWindow(max_rows=1_000_000)
    window.resize(1200, 800)
    window.show()
    try:
        result = loop.run_until_complete(_reopen(window, broker, name, 200_000))
        page = result["page"]
        ws = page.workspace
        store = ws.store
        assert result["first"] == ids[-len(result["first"]) :] and len(result["first"]) < 200_000, (
            "the newest rows show first"
        )
        assert list(store.cols["id"][store.room :]) == ids, "every row of the history, once, in order"
        assert ws.model.rowCount() == 200_000
        assert len(ws.tracker) == DEVICES and ws.devices.model.rowCount() == DEVICES
        from app.devices import DeviceTracker

        in_order = DeviceTracker()
        in_order.update(store.columns(store.base, store.end))
        for key in in_order:
            a, b = ws.tracker.stats(key), in_order.stats(key)
            assert (a.uplinks, a.missed, a.resets, a.duplicates) == (b.uplinks, b.missed, b.resets, b.duplicates), (
                "counted as if the rows had come in order"
            )
        assert a.uplinks == 200_000 // DEVICES
        assert "loading" not in ws.count_label.text()
        # Reconnecting goes on from the rows shown: the history is not replayed into them again.
        page.reconnect()
        loop.run_until_complete(until(lambda: page.bridge.connected, timeout=60))
        loop.run_until_complete(asyncio.sleep(1.0))
        assert list(store.cols["id"][store.room :]) == ids and not ws.history_loading
        # Loose: the replay is batched (20,000 rows a batch, the model announced on a timer), so the
        # window never waits for the whole history; on a loaded CI machine a turn may still be slow.
        assert result["stall_max_ms"] < 5_000, result
    finally:
        window.close()
        with HistoryReader(history_path(name)) as reader:
            assert reader.count() == 200_000  # nothing lost from the file


def test_the_engine_replays_newest_first_beside_the_live_session(qapp, loop, broker):
    """With history_newest_first the bridge gets the history's newest 2,000 rows first, then ever
    older batches, one a tick, while the live session is already connected and delivering."""
    from app import platforms
    from app.mqtt.config import Transport
    from ui.bridge import HISTORY_BATCHES_PER_TICK, SessionBridge

    name = "reopen test newest first"
    ids = write_history(history_path(name), 200_000)
    tts = platforms.get("tts")
    profile = tts.validate({"app": simulate.APP_ID, "tenant": simulate.TENANT, "password": "NNSXS.test"})
    config = tts.connection(profile).replace(
        host="127.0.0.1", port=broker.ports.plain, transport=Transport.TCP, username=None, password=None
    )
    bridge = SessionBridge()
    bridge.history_newest_first = True
    history: list[list[int]] = []  # ids of each history_arrived emission's batches
    ticks: list[int] = []
    live: list[int] = []
    connected_after: list[int] = []  # history batches received when the session came up

    def on_history(batches) -> None:
        ticks.append(len(batches))
        history.extend(list(b["id"]) for b in batches)

    bridge.history_arrived.connect(on_history)
    bridge.messages_arrived.connect(lambda batches: live.extend(i for b in batches for i in b["id"]))
    # Batches the engine had sent (pushed into the bridge's buffer) when the session came up.
    bridge.state_changed.connect(
        lambda change: change.state == "connected" and connected_after.append(bridge.history_buffer.total)
    )

    async def scenario():
        await bridge.connect_to(config, "tts", profile, name, 200_000)
        await until(lambda: bridge.connected, timeout=60)
        from paho.mqtt import publish as paho_publish

        paho_publish.single(
            simulate.tts_topic(3), simulate.tts_uplink(3, 99), hostname="127.0.0.1", port=broker.ports.plain
        )
        await until(lambda: sum(len(b) for b in history) >= 200_000 and live, timeout=180)
        await bridge.disconnect_from()

    try:
        loop.run_until_complete(scenario())
    finally:
        bridge.shutdown()
    assert history[0] == ids[-2_000:], "the newest rows come first"
    assert [i for batch in reversed(history) for i in batch] == ids, "then every older row, once"
    assert connected_after and connected_after[0] < len(history), "the live session does not wait for the replay"
    assert live and min(live) > ids[-1], "live rows come after the history"
    assert max(ticks) <= HISTORY_BATCHES_PER_TICK


def test_bench_reopen_prints_its_line(tmp_path):
    """`uplink-console bench reopen` (public interface) on a small history: its last line's keys."""
    import os
    import re
    import subprocess
    import sys

    env = os.environ | {"QT_QPA_PLATFORM": "offscreen"}
    out = subprocess.run(
        [sys.executable, "-m", "ui.launcher", "bench", "reopen", "--rows", "30000", "--timeout", "120"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    last = out.stdout.strip().splitlines()[-1]
    values = dict(re.findall(r"(\w+)=(\S+)", last))
    assert list(values) == [
        "reopen_rows",
        "replayed",
        "reopen_first_rows_ms",
        "reopen_newest_ms",
        "reopen_all_s",
        "reopen_settled_s",
        "reopen_live_ms",
        "stall_max_ms",
        "stall_p99_ms",
        "replay_ratio",
    ], last
    assert values["reopen_rows"] == values["replayed"] == "30000"
    for key in ("reopen_newest_ms", "reopen_all_s", "reopen_settled_s", "reopen_live_ms"):
        assert values[key] != "nan", last
    assert float(values["reopen_newest_ms"]) <= float(values["reopen_all_s"]) * 1000 + 1

"""Reopening a connection with a long history: when the newest rows show, when the rest is in,
and whether the window stays responsive meanwhile.

A connection's history (app/history.py, one SQLite file) is replayed into the table when the
connection opens: newest batch first (HistoryReader.load_newest_first, in the engine process),
the live session starting right after the first batch, each older batch put above the rows
shown (UplinkTableModel.prepend_history). This builds a history of --rows TTS uplinks
(simulated, with their raw messages, as the engine stores them), then opens the real main window
(offscreen) on a local mosquitto with a TTS connection that uses it, and measures, from the
moment the connection is opened:

- first_rows_ms: the first replayed row in the table model;
- newest_ms: the newest history row in the table model (what the user looks for first);
- all_s: every row the window replays (min(table rows, what the page asks for)) in the model;
- settled_s: also indexed for search, duplicates and device statistics counted again in order
  (the workspace no longer says "loading");
- live_ms: the connection's live session connected (live rows can arrive);
- stall_max_ms / stall_p99_ms: the heartbeat's (a 10 ms timer on the GUI loop) worst and p99
  lateness from the connect until settled: how long the window froze.

For reference, the same run times a bare read of the same rows (HistoryReader.load_recent into
column batches, in this process, nothing else): the replay's all_s over that is `replay_ratio`.
Last line:

    reopen_rows=N replayed=K reopen_first_rows_ms=F reopen_newest_ms=W reopen_all_s=A
    reopen_settled_s=T reopen_live_ms=L stall_max_ms=S stall_p99_ms=P replay_ratio=R

    uplink-console bench reopen [--rows 1000000] [--history FILE]
    (from a checkout: QT_QPA_PLATFORM=offscreen .venv/bin/python benchmarks/reopen.py …)

--history keeps the built history at FILE (and reuses it on the next run when its row count matches).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from pathlib import Path

HISTORY_NAME = "reopen bench"
DEVICES = 50
BUILD_BATCH = 5000


def build_history(path: Path, rows: int, span_s: float = 3600.0) -> None:
    """rows TTS uplinks over the last span_s seconds (inside the default 30-day retention), with
    raw messages, appended as the engine appends them."""
    from app.history import HistoryWriter, Retention
    from app.platforms.tts_fast import uplink_row
    from app.simulate import tts as simulate

    path.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    now = time.time()
    writer = HistoryWriter(path, Retention(max_age_days=None, max_rows=None, max_bytes=None))
    try:
        t0 = time.monotonic()
        done = 0
        while done < rows:
            n = min(BUILD_BATCH, rows - done)
            ids = writer.take_ids(n)
            batch, raws = [], []
            for k, row_id in enumerate(ids):
                i = done + k
                d = i % DEVICES
                topic = simulate.tts_topic(d)
                body = simulate.tts_uplink(d, i // DEVICES, gateways=1 + i % 2)
                row, received_at, cids = uplink_row(topic, body, now - span_s + span_s * i / rows, row_id)
                batch.append(row)
                raws.append((topic, body, None, received_at, cids))
            writer.append(batch, raws)
            done += n
            if done % 100_000 == 0:
                print(f"  {done:,} rows written ({time.monotonic() - t0:.0f} s)", flush=True)
    finally:
        writer.close()


def bare_read(path: Path, limit: int) -> float:
    from app.history import HistoryReader

    t0 = time.perf_counter()
    n = 0
    with HistoryReader(path) as reader:
        for batch in reader.load_recent(limit):
            n += len(batch["ts"])
    return time.perf_counter() - t0


def measure(port: int, replay_rows: int, table_rows: int, newest_id: int, timeout: float) -> dict:
    import qasync
    from PySide6.QtWidgets import QApplication

    from ui.application import Heartbeat
    from ui.bench import local_tts
    from ui.main_window import MainWindow

    app = QApplication.instance() or QApplication(["uplink-console-reopen"])
    loop = qasync.QSelectorEventLoop(app)
    asyncio.set_event_loop(loop)
    window = MainWindow(max_rows=table_rows)
    window.resize(1400, 900)
    window.show()
    profile, config = local_tts(port)
    out: dict = {}

    async def scenario() -> None:
        await asyncio.sleep(0.5)  # the window is up and idle
        heartbeat = Heartbeat()
        t0 = time.monotonic()
        page = window.connect_platform("tts", profile, config, history_name=HISTORY_NAME)
        ws = page.workspace
        deadline = t0 + timeout
        first = newest = live = all_in = None
        while time.monotonic() < deadline:
            now = time.monotonic()
            model = ws.model
            shown = model.rowCount()
            if first is None and shown:
                first = now
            if newest is None and shown and _newest_shown(ws, newest_id):
                newest = now
            if live is None and page.bridge.connected:
                live = now
            if all_in is None and shown >= replay_rows:
                all_in = now
            if all_in is not None and newest is not None and live is not None and _settled(ws):
                break
            await asyncio.sleep(0.005)
        done = time.monotonic()
        heartbeat.timer.stop()
        out.update(
            first_rows_ms=_ms(first, t0),
            newest_ms=_ms(newest, t0),
            all_s=(all_in - t0) if all_in is not None else float("nan"),
            settled_s=(done - t0) if _settled(ws) else float("nan"),
            live_ms=_ms(live, t0),
            shown=ws.model.rowCount(),
        )
        out["stall_max_ms"] = max(heartbeat.lateness_ms, default=0.0)
        out["stall_p99_ms"] = heartbeat.p99()
        window.close()

    loop.run_until_complete(scenario())
    return out


def measure_bridge(port: int, replay_rows: int, newest_id: int, timeout: float) -> dict:
    """The engine's newest-first replay as the window's bridge delivers it (SessionBridge with
    history_newest_first): when the newest rows arrive, when all have, when the live session is
    up, and the heartbeat meanwhile (the bridge's own work only: the table's prepend is not in it)."""
    import qasync
    from PySide6.QtWidgets import QApplication

    from ui.application import Heartbeat
    from ui.bench import local_tts
    from ui.bridge import SessionBridge

    app = QApplication.instance() or QApplication(["uplink-console-reopen"])
    loop = qasync.QSelectorEventLoop(app)
    asyncio.set_event_loop(loop)
    profile, config = local_tts(port)
    bridge = SessionBridge()
    bridge.history_newest_first = True
    got = {"rows": 0, "newest": None, "live": None}

    def on_history(batches) -> None:
        for b in batches:
            got["rows"] += len(b["id"])
            if got["newest"] is None and len(b["id"]) and b["id"][-1] == newest_id:
                got["newest"] = time.monotonic()

    bridge.history_arrived.connect(on_history)
    out: dict = {}

    async def scenario() -> None:
        await asyncio.sleep(0.5)
        heartbeat = Heartbeat()
        t0 = time.monotonic()
        task = asyncio.ensure_future(bridge.connect_to(config, "tts", profile, HISTORY_NAME, replay_rows))
        deadline = t0 + timeout
        while time.monotonic() < deadline:
            if got["live"] is None and bridge.connected:
                got["live"] = time.monotonic()
            if got["rows"] >= replay_rows and got["live"] is not None:
                break
            await asyncio.sleep(0.005)
        done = time.monotonic()
        heartbeat.timer.stop()
        await task
        await bridge.disconnect_from()
        out.update(
            first_rows_ms=_ms(got["newest"], t0),
            newest_ms=_ms(got["newest"], t0),
            all_s=(done - t0) if got["rows"] >= replay_rows else float("nan"),
            live_ms=_ms(got["live"], t0),
            shown=got["rows"],
            stall_max_ms=max(heartbeat.lateness_ms, default=0.0),
            stall_p99_ms=heartbeat.p99(),
        )

    try:
        loop.run_until_complete(scenario())
    finally:
        bridge.shutdown()
    return out


def _settled(ws) -> bool:
    """The replay is over and everything counted again after it is done."""
    return (
        not ws.history_loading
        and ws._devices_recount is None
        and ws.model._recount is None
        and ws.model.history_behind == 0
    )


def _newest_shown(ws, newest_id: int) -> bool:
    """Whether the row with the history's newest id is in the model (shown rows only)."""
    model = ws.model
    n = model.rowCount()
    if not n:
        return False
    store = ws.store
    ids = store.cols["id"]
    # The model shows store rows up to its announced count; the newest is among the last or first.
    for row in (n - 1, 0):
        pos = model.position(row)
        if pos >= 0 and store.base <= pos < store.end and ids[pos - store.zero] == newest_id:
            return True
    return False


def _ms(t: float | None, t0: float) -> float:
    return (t - t0) * 1000 if t is not None else float("nan")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="uplink-console bench reopen", description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000, help="rows in the history (default 1,000,000)")
    ap.add_argument("--table-rows", type=int, default=1_000_000, help="rows the table keeps (default 1,000,000)")
    ap.add_argument("--history", type=Path, default=None, help="keep (and reuse) the built history here")
    ap.add_argument("--timeout", type=float, default=300.0)
    ap.add_argument(
        "--replay",
        type=int,
        default=None,
        help="rows to replay (default: what a page asks for, min(table rows, HISTORY_ROWS_AT_START))",
    )
    ap.add_argument(
        "--bridge",
        action="store_true",
        help="measure the engine's newest-first replay at the window's bridge instead of the window's table",
    )
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="uplink-reopen-"))
    from ui.bench import isolate

    isolate(work)

    from app.devbroker import Mosquitto
    from app.history import HistoryReader, history_path
    from ui.connection.page import HISTORY_ROWS_AT_START

    target = history_path(HISTORY_NAME)
    cached = args.history
    if cached is not None and cached.exists():
        with HistoryReader(cached) as reader:
            reuse = reader.count() == args.rows
    else:
        reuse = False
    if not reuse:
        built = cached or target
        print(f"building a history of {args.rows:,} TTS uplinks …", flush=True)
        t0 = time.monotonic()
        build_history(built, args.rows)
        print(f"built in {time.monotonic() - t0:.0f} s ({built.stat().st_size / 1e6:,.0f} MB)", flush=True)
    if cached is not None:
        shutil.copyfile(cached, target)  # the run may trim or extend it: the kept copy stays as built
    with HistoryReader(target) as reader:
        newest_id = reader.max_id()
        stored = reader.count()
    replay = min(stored, args.table_rows, args.replay or HISTORY_ROWS_AT_START)
    print(
        f"history: {stored:,} rows ({target.stat().st_size / 1e6:,.0f} MB); the window replays {replay:,} "
        f"(table keeps {args.table_rows:,}, a page asks for {HISTORY_ROWS_AT_START:,})",
        flush=True,
    )
    reference = bare_read(target, replay)
    print(f"reference: a bare read of those {replay:,} rows into column batches takes {reference:.2f} s", flush=True)
    with Mosquitto(work / "broker", full=False) as broker:
        if args.bridge:
            result = measure_bridge(broker.ports.plain, replay, newest_id, args.timeout)
        else:
            result = measure(broker.ports.plain, replay, args.table_rows, newest_id, args.timeout)
    ratio = result["all_s"] / reference if reference else float("nan")
    where = "at the bridge (newest first)" if args.bridge else "in the table"
    print(
        f"first rows {where} after {result['first_rows_ms']:.0f} ms, the newest after "
        f"{result['newest_ms']:.0f} ms, all {result['shown']:,} after {result['all_s']:.2f} s"
        + (f" (indexed and counted after {result['settled_s']:.2f} s)" if "settled_s" in result else "")
        + f"; live session connected after {result['live_ms']:.0f} ms"
    )
    print(
        f"heartbeat lateness during the replay: max {result['stall_max_ms']:.0f} ms, "
        f"p99 {result['stall_p99_ms']:.0f} ms"
    )
    print(
        f"{'bridge_' if args.bridge else ''}"
        f"reopen_rows={stored} replayed={result['shown']} reopen_first_rows_ms={result['first_rows_ms']:.0f} "
        f"reopen_newest_ms={result['newest_ms']:.0f} reopen_all_s={result['all_s']:.2f} "
        + (f"reopen_settled_s={result['settled_s']:.2f} " if "settled_s" in result else "")
        + f"reopen_live_ms={result['live_ms']:.0f} stall_max_ms={result['stall_max_ms']:.0f} "
        f"stall_p99_ms={result['stall_p99_ms']:.0f} replay_ratio={ratio:.2f}"
    )
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

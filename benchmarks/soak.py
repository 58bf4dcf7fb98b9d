"""Soak: the real window for an hour of traffic, watched for anything that grows.

A short benchmark shows speed; leaks, handles left open, timers or tasks that pile up, and a GUI
that gets slower as its tables fill only show over a long run. This one runs the real main window
(offscreen) with one connection per platform (The Things Stack, Tektelic, akenza, ThingPark,
Drogue) to a local mosquitto (app/devbroker.py), fed by the five platform simulators (app/demo.py
`run_simulators`, a process of their own) at --rate messages a second in all, for --minutes. The
table retention (rows kept per connection, and the history's row limit) is set so each
connection reaches it at half time: from then on memory must be flat.

Every --interval seconds it samples, in the window's process: resident memory, open file
descriptors, OS threads, Python threads, Qt timers (QTimer objects under the window and how many
are active), QObjects under the window, asyncio tasks, the heartbeat (a 10 ms timer on the GUI
loop: how late it fires is how long the GUI was frozen; p99 and max of the interval), and the rows
received and kept; and the resident memory and descriptors of the window's child processes (the
engines). The samples go to soak.csv, a chart to soak.png (pyqtgraph's ImageExporter: the
project's own chart library), and a summary is printed. Last line:

    soak_minutes=M rss_growth_mb=G rss_growth_mb_per_h=S fd_growth=F thread_growth=T task_growth=A
    timer_growth=Q stall_p99_ms=P

(growth: last quarter's median minus the median of the quarter after retention was reached; the
heartbeat p99 over the whole run after the first 10 s.)

    QT_QPA_PLATFORM=offscreen .venv/bin/python benchmarks/soak.py [--minutes 60] [--rate 1000] [--out DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import gc
import math
import multiprocessing
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PLATFORMS = ("tts", "tektelic", "akenza", "thingpark", "drogue")
DEVICES_PER_PLATFORM = 40
WARMUP_S = 10.0  # the heartbeat's first seconds (engines starting, pages built) are not counted
HEARTBEAT_MS = 10
BIN_MS = 0.5  # heartbeat histogram resolution (constant memory however long the run)
COLUMNS = (
    "t_s",
    "rss_mb",
    "engines_rss_mb",
    "fds",
    "engines_fds",
    "os_threads",
    "py_threads",
    "qt_timers",
    "qt_timers_active",
    "qobjects",
    "asyncio_tasks",
    "gui_thread_cpu_pct",
    "heartbeat_p99_ms",
    "heartbeat_max_ms",
    "rows_received",
    "rows_kept",
    "history_rows",
    "retention_reached",
)


# ----- process figures (Linux /proc; the benchmark runs where the CI does) ---------------------


def _statm_rss_mb(pid: int | str = "self") -> float:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6
    except (OSError, ValueError, IndexError):
        return 0.0


def _fd_count(pid: int | str = "self") -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def _os_threads() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return threading.active_count()


def _children(pid: int | str = "self") -> list[int]:
    out = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children") as f:
                out.extend(int(p) for p in f.read().split())
        except OSError:
            continue
    return out


def engine_pids(exclude: set[int]) -> list[int]:
    """The window's child processes that are engines (not the broker or the simulators)."""
    pids = []
    for pid in _children():
        if pid in exclude:
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read()
        except OSError:
            continue
        if b"multiprocessing" in cmd or b"spawn_main" in cmd:
            pids.append(pid)
    return pids


# ----- the heartbeat: a histogram, so an hour of 10 ms beats costs no memory -------------------


class Heartbeat:
    def __init__(self) -> None:
        from PySide6.QtCore import Qt, QTimer

        self.interval = HEARTBEAT_MS / 1000
        self.window: list[float] = []  # lateness since the last sample (ms)
        self.bins: dict[int, int] = {}  # whole run after warm-up: lateness bin -> count
        self.started = time.monotonic()
        self._last = self.started
        self.timer = QTimer()
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.setInterval(HEARTBEAT_MS)
        self.timer.timeout.connect(self._beat)
        self.timer.start()

    def _beat(self) -> None:
        now = time.monotonic()
        late = max(0.0, (now - self._last - self.interval) * 1000)
        self._last = now
        self.window.append(late)
        if now - self.started >= WARMUP_S:
            b = int(late / BIN_MS)
            self.bins[b] = self.bins.get(b, 0) + 1

    def take(self) -> tuple[float, float]:
        """(p99, max) of the lateness since the last call."""
        values, self.window = sorted(self.window), []
        if not values:
            return 0.0, 0.0
        return values[min(len(values) - 1, int(len(values) * 0.99))], values[-1]

    def quantile(self, q: float) -> float:
        total = sum(self.bins.values())
        if not total:
            return 0.0
        seen = 0
        for b in sorted(self.bins):
            seen += self.bins[b]
            if seen >= q * total:
                return (b + 1) * BIN_MS
        return (max(self.bins) + 1) * BIN_MS


# ----- the run ---------------------------------------------------------------------------------


def simulators_main(url: str, rate_per_platform: float, devices: int, stop_event) -> None:
    from app.demo import DemoSettings, run_simulators

    run_simulators(url, True, DemoSettings(devices=devices, rate=rate_per_platform, seed=3), stop_event)


def connections(url: str, rate_per_platform: float, devices: int) -> list[tuple[str, dict, object]]:
    from app import platforms
    from app.demo import DemoSettings, build_simulators

    sims = build_simulators(True, DemoSettings(devices=devices, rate=rate_per_platform, seed=3))
    out = []
    for name in PLATFORMS:
        plat = platforms.get(name)
        values = plat.validate({**plat.defaults(), **sims[name].profile(url)})
        out.append((name, values, plat.connection(values)))
    return out


def soak(args, work: Path) -> tuple[list[dict], dict]:
    import qasync
    from PySide6.QtCore import QObject, QTimer
    from PySide6.QtWidgets import QApplication

    from app.devbroker import Mosquitto
    from app.history import Retention
    from ui.main_window import MainWindow

    duration = args.minutes * 60
    per_platform = args.rate / len(PLATFORMS)
    keep_rows = max(1000, int(per_platform * duration / 2))
    print(
        f"{len(PLATFORMS)} connections at {per_platform:g} msg/s each for {args.minutes:g} min; "
        f"{keep_rows:,} rows kept per connection (reached at about half time)",
        flush=True,
    )
    broker = Mosquitto(work / "broker", full=False)
    broker.__enter__()
    url = f"mqtt://127.0.0.1:{broker.ports.plain}"
    ctx = multiprocessing.get_context("spawn")
    stop_event = ctx.Event()
    sims = ctx.Process(
        target=simulators_main, args=(url, per_platform, DEVICES_PER_PLATFORM, stop_event), name="soak-simulators"
    )
    app = QApplication.instance() or QApplication(["uplink-console-soak"])
    loop = qasync.QSelectorEventLoop(app)
    asyncio.set_event_loop(loop)
    retention = Retention(max_age_days=None, max_rows=keep_rows, max_bytes=None)
    window = MainWindow(max_rows=keep_rows, retention=retention)
    window.resize(1400, 900)
    window.show()
    samples: list[dict] = []
    info: dict = {"keep_rows": keep_rows, "retention_at_s": None}

    async def scenario() -> None:
        for name, values, config in connections(url, per_platform, DEVICES_PER_PLATFORM):
            window.connect_platform(name, values, config, key=f"soak:{name}", history_name=f"soak {name}")
            await asyncio.sleep(1.0)  # each engine starts before the next page is built
        pages = [window.pages[f"soak:{name}"] for name in PLATFORMS]
        deadline = time.monotonic() + 30
        while not all(p.bridge.connected for p in pages):
            if time.monotonic() > deadline:
                raise RuntimeError("the connections to the local broker did not come up within 30 s")
            await asyncio.sleep(0.1)
        sims.start()
        exclude = {sims.pid}
        heartbeat = Heartbeat()
        start = time.monotonic()
        next_sample = start
        last_print = start
        while True:
            now = time.monotonic()
            if now >= next_sample:
                row = sample(now - start, pages, heartbeat, exclude, keep_rows)
                samples.append(row)
                if row["retention_reached"] and info["retention_at_s"] is None:
                    info["retention_at_s"] = row["t_s"]
                    if args.trace_memory:
                        info["snapshot"] = tracemalloc.take_snapshot()
                next_sample += args.interval
                if now - last_print >= 60 or now - start >= duration:
                    last_print = now
                    print(
                        f"{row['t_s'] / 60:5.1f} min: rss {row['rss_mb']:.0f} MB "
                        f"(engines {row['engines_rss_mb']:.0f}), "
                        f"{row['fds']} fds, {row['os_threads']} threads, {row['qt_timers']} timers, "
                        f"{row['asyncio_tasks']} tasks, heartbeat p99 {row['heartbeat_p99_ms']:.1f} ms, "
                        f"{row['rows_received']:,} rows received, {row['rows_kept']:,} kept",
                        flush=True,
                    )
                if now - start >= duration:
                    break
            await asyncio.sleep(max(0.05, next_sample - time.monotonic()))
        heartbeat.timer.stop()
        if args.trace_memory and "snapshot" in info:
            gc.collect()
            grown = tracemalloc.take_snapshot().compare_to(info.pop("snapshot"), "lineno")
            print("memory allocated since retention was reached, by line (tracemalloc):")
            for stat in grown[:15]:
                print(f"  {stat}")
        info["stall_p99_ms"] = heartbeat.quantile(0.99)
        info["stall_p999_ms"] = heartbeat.quantile(0.999)
        info["stall_max_ms"] = heartbeat.quantile(1.0)
        window.close()

    cpu_mark = [time.thread_time(), time.monotonic()]  # the GUI thread's CPU time: load-independent

    def sample(t: float, pages, heartbeat: Heartbeat, exclude: set[int], keep: int) -> dict:
        p99, worst = heartbeat.take()
        cpu, wall = time.thread_time(), time.monotonic()
        gui_cpu = (cpu - cpu_mark[0]) / max(wall - cpu_mark[1], 1e-6) * 100
        cpu_mark[:] = [cpu, wall]
        timers = window.findChildren(QTimer)
        engines = engine_pids(exclude)
        stores = [p.workspace.store for p in pages]
        history_rows = 0
        for p in pages:
            reader = p.workspace.history
            if reader is not None:
                try:
                    history_rows += reader.count()
                except Exception:  # noqa: BLE001 - a figure, not a failure
                    pass
        return {
            "t_s": round(t, 1),
            "rss_mb": round(_statm_rss_mb(), 1),
            "engines_rss_mb": round(sum(_statm_rss_mb(pid) for pid in engines), 1),
            "fds": _fd_count(),
            "engines_fds": sum(_fd_count(pid) for pid in engines),
            "os_threads": _os_threads(),
            "py_threads": threading.active_count(),
            "qt_timers": len(timers),
            "qt_timers_active": sum(1 for timer in timers if timer.isActive()),
            "qobjects": len(window.findChildren(QObject)),
            "asyncio_tasks": len(asyncio.all_tasks(loop)),
            "gui_thread_cpu_pct": round(gui_cpu, 1),
            "heartbeat_p99_ms": round(p99, 2),
            "heartbeat_max_ms": round(worst, 2),
            "rows_received": sum(s.total_appended for s in stores),
            "rows_kept": sum(len(s) for s in stores),
            "history_rows": history_rows,
            "retention_reached": int(all(s.total_appended >= keep for s in stores)),
        }

    try:
        loop.run_until_complete(scenario())
    finally:
        stop_event.set()
        if sims.pid is not None:
            sims.join(10)
            if sims.is_alive():
                sims.terminate()
                sims.join(5)
        try:
            window.close()
        except RuntimeError:
            pass
        broker.__exit__(None, None, None)
    info["chart"] = draw(samples, Path(args.out) / "soak.png", info, app)
    return samples, info


# ----- output ----------------------------------------------------------------------------------


def write_csv(samples: list[dict], path: Path) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(samples)


def draw(samples: list[dict], path: Path, info: dict, app) -> Path | None:
    """Five stacked charts over minutes: memory, handles and threads, timers and tasks, the
    heartbeat, rows. pyqtgraph's ImageExporter renders them offscreen."""
    if not samples:
        return None
    import pyqtgraph as pg
    import pyqtgraph.exporters
    from PySide6.QtCore import Qt

    pg.setConfigOptions(antialias=True, background="w", foreground="k")
    layout = pg.GraphicsLayoutWidget()
    layout.resize(1200, 1300)
    minutes = [s["t_s"] / 60 for s in samples]
    charts = [
        ("Resident memory (MB)", [("window", "rss_mb", "#1f77b4"), ("engines", "engines_rss_mb", "#ff7f0e")]),
        (
            "Handles and threads",
            [
                ("window fds", "fds", "#1f77b4"),
                ("engine fds", "engines_fds", "#ff7f0e"),
                ("OS threads", "os_threads", "#2ca02c"),
            ],
        ),
        (
            "Qt timers, asyncio tasks",
            [
                ("QTimers", "qt_timers", "#1f77b4"),
                ("active", "qt_timers_active", "#ff7f0e"),
                ("asyncio tasks", "asyncio_tasks", "#2ca02c"),
            ],
        ),
        (
            "Heartbeat lateness (ms), GUI thread CPU (%)",
            [
                ("p99", "heartbeat_p99_ms", "#1f77b4"),
                ("max", "heartbeat_max_ms", "#d62728"),
                ("GUI CPU %", "gui_thread_cpu_pct", "#9467bd"),
            ],
        ),
        ("Rows (thousands)", [("received", "rows_received", "#1f77b4"), ("kept", "rows_kept", "#2ca02c")]),
    ]
    retention_min = info["retention_at_s"] / 60 if info.get("retention_at_s") is not None else None
    for i, (title, series) in enumerate(charts):
        plot = layout.addPlot(row=i, col=0, title=title)
        plot.getAxis("left").setWidth(56)  # room for "1500": offscreen, pyqtgraph hides labels that do not fit
        plot.showGrid(x=True, y=True, alpha=0.3)
        plot.addLegend(offset=(-10, 5))
        for label, key, color in series:
            scale = 1000 if title.startswith("Rows") else 1
            plot.plot(minutes, [s[key] / scale for s in samples], pen=pg.mkPen(color, width=2), name=label)
        if retention_min is not None:
            plot.addItem(pg.InfiniteLine(retention_min, angle=90, pen=pg.mkPen("#888", style=Qt.PenStyle.DashLine)))
        if i == len(charts) - 1:
            plot.setLabel("bottom", "minutes (dashed: retention reached)")
        if title.startswith("Heartbeat"):
            plot.addItem(pg.InfiniteLine(50, angle=0, pen=pg.mkPen("#d62728", style=Qt.PenStyle.DotLine)))
    layout.show()  # offscreen: laid out at its size, never on a screen
    app.processEvents()
    exporter = pyqtgraph.exporters.ImageExporter(layout.scene())
    exporter.parameters()["width"] = 1200
    exporter.export(str(path))
    layout.close()
    return path


def chart_from(csv_path: Path) -> int:
    """Draws soak.png again beside a soak.csv (the run's samples), e.g. after a change to draw()."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtWidgets import QApplication

    with open(csv_path, newline="") as f:
        samples = [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]
    reached = next((s["t_s"] for s in samples if s["retention_reached"]), None)
    app = QApplication.instance() or QApplication(["soak-chart"])
    out = draw(samples, csv_path.with_name("soak.png"), {"retention_at_s": reached}, app)
    print(f"chart: {out}")
    return 0 if out else 1


def _median(rows: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in rows) if rows else math.nan


def summarize(samples: list[dict], info: dict) -> dict:
    """Growth after retention: the last quarter's median minus the median of the quarter that
    follows the moment every connection reached its retention (medians: one GC pass or one
    batch in flight does not decide)."""
    if not samples:
        return {}
    t_end = samples[-1]["t_s"]
    t_ret = info.get("retention_at_s")
    if t_ret is None:
        t_ret = t_end / 2
    span = max(t_end - t_ret, 1.0)
    after = [s for s in samples if t_ret <= s["t_s"] <= t_ret + span / 4]
    last = [s for s in samples if s["t_s"] >= t_end - span / 4]
    out = {"retention_at_min": t_ret / 60, "retention_reached": info.get("retention_at_s") is not None}
    for key in (
        "rss_mb",
        "engines_rss_mb",
        "fds",
        "engines_fds",
        "os_threads",
        "qt_timers",
        "qobjects",
        "asyncio_tasks",
    ):
        out[f"{key}_growth"] = _median(last, key) - _median(after, key)
        out[f"{key}_start"] = samples[0][key]
        out[f"{key}_max"] = max(s[key] for s in samples)
    hours = span * 0.75 / 3600  # between the two quarters' middles
    out["rss_growth_mb_per_h"] = out["rss_mb_growth"] / hours if hours > 0 else math.nan
    out["rows_received"] = samples[-1]["rows_received"]
    out["rate"] = samples[-1]["rows_received"] / t_end if t_end else 0.0
    out.update({k: info[k] for k in ("stall_p99_ms", "stall_p999_ms", "stall_max_ms") if k in info})
    out["worst_interval_p99_ms"] = max(s["heartbeat_p99_ms"] for s in samples)
    out["gui_cpu_pct"] = _median(samples[1:] or samples, "gui_thread_cpu_pct")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="benchmarks/soak.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--rate", type=float, default=1000.0, help="messages a second over the five platforms")
    ap.add_argument("--interval", type=float, default=5.0, help="seconds between samples")
    ap.add_argument(
        "--trace-memory",
        action="store_true",
        help="trace Python allocations (slower): print what grew after retention was reached",
    )
    ap.add_argument("--out", default=None, help="folder for soak.csv and soak.png (default: a temp dir)")
    ap.add_argument("--chart-from", default=None, help="only draw soak.png (beside it) from a soak.csv written before")
    args = ap.parse_args(argv)
    if args.chart_from:
        return chart_from(Path(args.chart_from))
    if args.minutes <= 0 or args.rate <= 0 or args.interval <= 0:
        ap.error("--minutes, --rate and --interval must be more than 0")
    work = Path(tempfile.mkdtemp(prefix="uplink-soak-"))
    args.out = args.out or str(work)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    from ui.bench import isolate

    isolate(work)
    gc.collect()
    if args.trace_memory:
        tracemalloc.start(4)
    try:
        samples, info = soak(args, work)
    finally:  # the histories (up to ~2.3 GB after an hour at 1,000 msg/s) and the broker's files
        for sub in ("data", "broker"):
            shutil.rmtree(work / sub, ignore_errors=True)
    write_csv(samples, Path(args.out) / "soak.csv")
    s = summarize(samples, info)
    if not s:
        print("no samples were taken", file=sys.stderr)
        return 1
    print(f"samples: {Path(args.out) / 'soak.csv'}; chart: {info.get('chart')}")
    print(
        f"{s['rows_received']:,} rows received ({s['rate']:,.0f}/s); retention ({info['keep_rows']:,} rows per "
        f"connection) {'reached at' if s['retention_reached'] else 'NOT reached; growth measured from'} "
        f"{s['retention_at_min']:.1f} min"
    )
    print(
        f"window memory: {s['rss_mb_start']:.0f} MB at start, peak {s['rss_mb_max']:.0f} MB, growth after retention "
        f"{s['rss_mb_growth']:+.1f} MB ({s['rss_growth_mb_per_h']:+.1f} MB/h); "
        f"engines {s['engines_rss_mb_growth']:+.1f} MB"
    )
    print(
        f"growth after retention: fds {s['fds_growth']:+.0f} (engines {s['engines_fds_growth']:+.0f}), OS threads "
        f"{s['os_threads_growth']:+.0f}, QTimers {s['qt_timers_growth']:+.0f}, QObjects {s['qobjects_growth']:+.0f}, "
        f"asyncio tasks {s['asyncio_tasks_growth']:+.0f}"
    )
    print(
        f"heartbeat lateness after the first {WARMUP_S:.0f} s: p99 {s['stall_p99_ms']:.1f} ms, p99.9 "
        f"{s['stall_p999_ms']:.1f} ms, max {s['stall_max_ms']:.1f} ms (worst {args.interval:g} s window's p99: "
        f"{s['worst_interval_p99_ms']:.1f} ms); the GUI thread busy {s['gui_cpu_pct']:.0f}% of the time (median)"
    )
    print(
        f"soak_minutes={args.minutes:g} rss_growth_mb={s['rss_mb_growth']:.1f} "
        f"rss_growth_mb_per_h={s['rss_growth_mb_per_h']:.1f} fd_growth={s['fds_growth']:.0f} "
        f"thread_growth={s['os_threads_growth']:.0f} task_growth={s['asyncio_tasks_growth']:.0f} "
        f"timer_growth={s['qt_timers_growth']:.0f} stall_p99_ms={s['stall_p99_ms']:.1f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Starting the window: QApplication, qasync's selector loop, options, the smoke test.

Without a connection to open (no --url, --platform or --profile), the window opens the saved
connections marked "open on start"; when nothing is saved yet (a first start) it starts the demo
(ui/demo/), which `--demo` starts in any case. `--smoke-test` counts the rows that reached the
tables, in total and per platform ("platforms"); with `--demo` it fails (exit status 1, one
sentence on stderr) unless rows of every platform arrived, so an installer's smoke test shows
the whole path from broker to table working.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import time

from app import __version__


def build_parser(platform=None) -> argparse.ArgumentParser:
    from app.cli import add_connection_options, commands_summary

    p = argparse.ArgumentParser(
        prog="uplink-console",
        usage="uplink-console [window options]  |  uplink-console COMMAND [ARGS …]",
        description="Uplink Console: the desktop MQTT console. Without a command it opens the window.",
        epilog=commands_summary(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"uplink-console {__version__}")
    p.add_argument(
        "--smoke-test",
        type=float,
        metavar="SECONDS",
        help="open the window offscreen, run SECONDS, print one JSON line of measurements, exit",
    )
    p.add_argument(
        "--demo",
        action="store_true",
        help="start the demo: a broker and simulated devices of all five platforms on this computer, "
        "one connection each (also what a first start shows when no connection is saved yet)",
    )
    p.add_argument(
        "--max-rows",
        type=int,
        default=None,
        help="rows kept in memory by the message log and the uplink table (default 200,000 / 1,000,000)",
    )
    g = p.add_argument_group("history (every event of a platform connection, on disk)")
    g.add_argument("--history-days", type=float, default=None, help="delete events older than this (default 30)")
    g.add_argument(
        "--history-max-mb", type=float, default=None, help="keep the history file below this size (default 2048)"
    )
    g.add_argument(
        "--history-max-rows", type=int, default=None, help="keep at most this many events (default 5,000,000)"
    )
    add_connection_options(p, platform)
    return p


def rss_mb() -> float:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6
    except OSError:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 1e6 if sys.platform == "darwin" else peak / 1e3


class Heartbeat:
    """A 10 ms timer on the GUI loop; how late it fires is how long the GUI was frozen."""

    def __init__(self, interval_ms: int = 10) -> None:
        from PySide6.QtCore import Qt, QTimer

        self.interval = interval_ms / 1000
        self.lateness_ms: list[float] = []
        self._last = time.monotonic()
        self.timer = QTimer()
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self._beat)
        self.timer.start()

    def _beat(self) -> None:
        now = time.monotonic()
        self.lateness_ms.append(max(0.0, (now - self._last - self.interval) * 1000))
        self._last = now

    def p99(self) -> float:
        if not self.lateness_ms:
            return 0.0
        values = sorted(self.lateness_ms)
        return round(values[min(len(values) - 1, int(len(values) * 0.99))], 1)


def run(argv: list[str]) -> int:
    from app.cli import UsageError, connection_from_args, open_saved_profile, platform_named_in, setup_logging
    from app.mqtt.config import ConfigError
    from app.profiles import ProfileStoreError
    from app.secrets import SecretError

    started = time.monotonic()
    args = build_parser(platform_named_in(argv)).parse_args(argv)
    setup_logging(verbose=bool(os.environ.get("UPLINK_CONSOLE_DEBUG")))
    config = platform = profile = saved = None
    if args.url or args.platform or args.profile:
        try:
            # --profile NAME: the saved connection, its secrets from the keyring; the other
            # connection options given with it override its values.
            saved = open_saved_profile(args.profile) if args.profile else None
            config, platform, _credentials, profile = connection_from_args(args, saved=saved)
        except (SecretError, ProfileStoreError) as exc:
            print(f"uplink-console: {exc}", file=sys.stderr)
            return 1
        except (UsageError, ConfigError, ValueError) as exc:
            print(f"uplink-console: {exc}", file=sys.stderr)
            return 2
    stored = saved[0] if saved is not None else None
    if args.smoke_test is not None:
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

    import qasync
    from PySide6.QtGui import QIcon
    from PySide6.QtWidgets import QApplication

    import resources
    from ui.main_window import MainWindow, history_name_for_profile

    app = QApplication.instance() or QApplication([sys.argv[0]])
    app.setApplicationName("Uplink Console")
    app.setOrganizationName("Uplink Console")
    app.setApplicationVersion(__version__)
    app.setStyle("Fusion")
    app.setWindowIcon(QIcon(resources.path("uplink-console.svg")))
    with open(resources.path("style.qss")) as f:
        app.setStyleSheet(f.read())
    # The engine thread and the GUI share one GIL: a short switch interval keeps the GUI from
    # waiting 5 ms for every call back into Python while the engine is busy.
    sys.setswitchinterval(0.0005)
    # The selector loop on every OS: the default Windows (IOCP) loop has no add_reader.
    loop = qasync.QSelectorEventLoop(app)
    asyncio.set_event_loop(loop)

    # The saved connection's limits, each overridden by its option when given.
    history_days = args.history_days if args.history_days is not None else stored and stored.history_days
    history_max_mb = args.history_max_mb if args.history_max_mb is not None else stored and stored.history_max_mb
    history_max_rows = (
        args.history_max_rows if args.history_max_rows is not None else stored and stored.history_max_rows
    )
    max_rows = args.max_rows if args.max_rows is not None else stored and stored.max_rows
    retention = None
    if history_days is not None or history_max_mb is not None or history_max_rows is not None:
        from app.history import Retention

        default = Retention()
        retention = Retention(
            max_age_days=history_days if history_days is not None else default.max_age_days,
            max_rows=history_max_rows if history_max_rows is not None else default.max_rows,
            max_bytes=int(history_max_mb * 1024**2) if history_max_mb is not None else default.max_bytes,
        )
    window = MainWindow(max_rows=max_rows or None, retention=retention)
    if config is not None and platform is not None:
        # The engine process mints fresh credentials itself (akenza JWTs) from the profile;
        # a generic saved connection goes through the generic platform the same way.
        if stored is not None:
            window.connect_platform(
                stored.platform,
                profile,
                config,
                key=stored.id,
                title=stored.name,
                history_name=history_name_for_profile(stored.id),
            )
        else:
            window.connect_platform(platform.name, profile, config)
    elif config is not None:
        window.connect_with(config)
    elif not args.demo:
        # The saved connections marked "open on start"; none saved yet: the demo.
        window.open_on_start(demo_if_none_saved=True)
    if args.demo:
        window.demo.start()
    window.show()

    done = asyncio.Event()
    app.aboutToQuit.connect(done.set)
    status = 0

    def stop_on_signal(signum: int) -> None:
        # Ctrl+C in the terminal of `make run`, or a TERM at logout: the window closes as if the
        # user closed it, so its connections end and the demo's broker and simulators stop.
        nonlocal status
        status = 128 + signum
        window.close()
        app.quit()

    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, stop_on_signal, signum)
        except (NotImplementedError, RuntimeError, ValueError):  # Windows: the default handling
            pass
    if args.smoke_test is not None:
        heartbeat = Heartbeat()

        def report() -> None:
            nonlocal status
            rows, first, last = window.rows_in_tables()
            result = {
                "rows": rows,
                "first_row_at": first,
                "last_row_at": last,
                "stall_p99_ms": heartbeat.p99(),
                "rss_mb": round(rss_mb(), 1),
                "platforms": rows_per_platform(window),
            }
            demo = window.demo
            if demo.state != "idle" or args.demo:
                result["demo"] = demo_summary(demo, started, first)
            print(json.dumps(result), flush=True)
            if args.demo:
                problem = demo_problem(demo, result["platforms"], args.smoke_test)
                if problem:
                    print(f"uplink-console: {problem}", file=sys.stderr, flush=True)
                    status = 1
            window.close()
            app.quit()

        loop.call_later(args.smoke_test, report)
    logging.getLogger(__name__).debug("window up")
    from ui.bridge import cancel_spawned

    with loop:
        loop.run_until_complete(done.wait())
        cancel_spawned(loop)
    return status


SMOKE_PLATFORMS = ("tts", "tektelic", "akenza", "thingpark", "drogue")


def rows_per_platform(window) -> dict[str, int]:
    """Rows that reached each platform's tables (every open platform connection, demo or not)."""
    counts = dict.fromkeys(SMOKE_PLATFORMS, 0)
    for page in window.pages.values():
        if page.platform_name:
            counts[page.platform_name] = counts.get(page.platform_name, 0) + page.rows_in_tables()[0]
    return counts


def demo_summary(demo, started: float, first_row_at: float | None) -> dict:
    """The demo's state and broker, when it was ready and when its first row arrived (seconds
    since the console started)."""
    running = demo.demo

    def since(t):
        return round(t - started, 2) if t is not None else None

    return {
        "state": demo.state,
        "broker": running.broker.kind if running is not None else None,
        "mqtt5": running.broker.mqtt5 if running is not None else None,
        "ready_s": since(demo.ready_at),
        "first_row_s": since(first_row_at),
    }


def demo_problem(demo, platforms: dict[str, int], seconds: float) -> str | None:
    """Why a `--demo --smoke-test` failed, in a sentence; None when rows of every platform arrived."""
    if demo.state == "failed":
        return f"The demo could not start: {demo.error}"
    if demo.state != "running":
        return f"The demo was still starting after {seconds:g} s; give the smoke test more seconds."
    missing = [name for name in SMOKE_PLATFORMS if not platforms.get(name)]
    if missing:
        return (
            f"No demo rows reached the table of {', '.join(missing)} within {seconds:g} s; the log file "
            "says why (run with UPLINK_CONSOLE_DEBUG=1 for more)."
        )
    return None

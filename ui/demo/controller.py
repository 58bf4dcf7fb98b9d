"""Starts the demo for the window, opens its connections, and stops it with the window.

app.demo.start_demo() blocks for a moment (mosquitto starts in ~50 ms, amqtt in a spawned process
in ~1-2 s, the simulators' process is spawned too), so it runs on a worker thread
(ui.common.background.BackgroundOp) while the banner says "Starting the demo…". Then each of the
demo's connections opens on a page of its own, exactly as a connection given on the command line
opens (MainWindow.connect_platform), with keys "demo:<platform>" that no saved connection can
have: the sidebar marks them, Save is not offered, and nothing of them reaches the profiles file
or the keyring (their placeholder credentials stay in memory).

Each demo starts with fresh tables: the demo's history files (named "demo <platform>") are
deleted before its connections open, so a table never mixes the rows of an earlier run, and a
smoke test counts only rows that arrived now.

Closing the window stops the demo (simulators, then the broker); so does "Stop the demo" in the
banner, on a worker thread, since the simulators' process takes up to a few seconds to end.
"""

from __future__ import annotations

import logging
import threading
import time

from PySide6.QtCore import QObject, QTimer, Signal

from ui.demo.banner import DemoBanner

log = logging.getLogger(__name__)

DEMO_KEY_PREFIX = "demo:"
OPEN_PAUSE_MS = 100  # between opening two demo connections (see _open_next)


def is_demo_key(key: str | None) -> bool:
    return bool(key) and key.startswith(DEMO_KEY_PREFIX)


def demo_history_name(platform: str) -> str:
    """The demo connection's history (and outbox) name: one per platform, never a saved connection's."""
    return f"demo {platform}"


def demo_retention():
    """The demo's history keeps a day and at most 500,000 events per platform: it is a demo."""
    from app.history import Retention

    return Retention(max_age_days=1.0, max_rows=500_000, max_bytes=256 * 1024**2)


class DemoController(QObject):
    """state: idle → starting → running → (stopping →) idle; failed when it could not start."""

    state_changed = Signal(str)
    opened = Signal(list)  # the demo's pages, once their connections are opening

    def __init__(self, window) -> None:
        super().__init__(window)
        self.window = window
        self.state = "idle"
        self.demo = None  # app.demo.Demo while running
        self.error: str | None = None
        self.started_at: float | None = None  # time.monotonic() of the last start()
        self.ready_at: float | None = None  # when its connections began opening
        self.keys: list[str] = []
        self._op = None
        self._lock = threading.Lock()
        self._closing = False
        self._pages: list = []  # the demo's pages opened so far
        self._started_here = None  # the Demo the worker made, kept for a window closing meanwhile
        self.banner = DemoBanner()
        self.banner.connect_own.connect(self.show_platforms)
        self.banner.stop_requested.connect(self.stop)
        self.banner.retry_requested.connect(self.start)
        window.stack.currentChanged.connect(lambda _index: self._update_banner())
        window.welcome.demo.connect(self.start)

    # ----- what the window asks
    @property
    def running(self) -> bool:
        return self.state == "running"

    def start(self) -> None:
        """Starts the demo (or shows it, when it runs already)."""
        if self.state == "running":
            self.show()
            return
        if self.state in ("starting", "stopping") or self._closing:
            return
        from ui.common.background import BackgroundOp

        self._set_state("starting")
        self.error = None
        self.started_at, self.ready_at = time.monotonic(), None
        self._op = BackgroundOp(
            self.window,
            self._start_work,
            title="Start the demo",
            on_success=self._started,
            on_failure=self._failed,
            cancellable=False,
            show_progress=False,  # the banner says it
            failure_box=False,  # the banner says it
        )
        self._op.cancelled.connect(lambda: self._failed("The demo was stopped while it started."))
        self._op.start()

    def show(self) -> None:
        """Shows the demo's first connection."""
        page = next((self.window.pages[k] for k in self.keys if k in self.window.pages), None)
        if page is not None:
            self.window.show_page(page)

    def show_platforms(self) -> None:
        """The welcome page, whose tiles open each platform's wizard ("Connect your own platform…")."""
        window = self.window
        window.sidebar.list.blockSignals(True)
        window.sidebar.list.setCurrentItem(None)
        window.sidebar.list.blockSignals(False)
        window.show_page_for("")

    def stop(self) -> None:
        """Closes the demo's connections and stops it (on a worker thread: it takes a few seconds)."""
        if self.state != "running":
            return
        from ui.common.background import BackgroundOp

        demo, self.demo = self.demo, None
        self._close_pages()
        self._set_state("stopping")
        op = BackgroundOp(
            self.window,
            lambda _progress: demo.stop(),
            title="Stop the demo",
            cancellable=False,
            show_progress=False,
            failure_box=False,
        )
        op.finished.connect(lambda: self._set_state("idle"))
        op.start()

    def shutdown(self) -> None:
        """The window is closing: stop the demo now (also one still starting)."""
        self._closing = True
        op = self._op
        if op is not None and op.running:
            op.wait(30)  # start_demo() ends by itself (its broker's start-up is bounded)
        with self._lock:
            demos = [d for d in (self.demo, self._started_here) if d is not None]
            self.demo = self._started_here = None
        for demo in {id(d): d for d in demos}.values():
            try:
                demo.stop()
            except Exception:  # noqa: BLE001 - the window closes whatever happens here
                log.exception("the demo did not stop cleanly")
        self.keys = []
        self.state = "idle"

    # ----- the worker and its end
    def _start_work(self, _progress):
        from app.demo import demo_dir, start_demo

        demo = start_demo(demo_dir())
        with self._lock:
            self._started_here = demo
        demo.connections()  # made here, off the GUI thread, and kept by the demo
        return demo

    def _started(self, demo) -> None:
        with self._lock:
            self._started_here = None
            closing = self._closing
        if closing:
            demo.stop()
            return
        self.demo = demo
        self.ready_at = time.monotonic()
        self.keys = []
        self._pages = []
        self._set_state("running")
        self._open_next(list(demo.connections()))

    def _open_next(self, connections: list) -> None:
        """Opens one connection, shows the first, and leaves the others to the next turns of the
        loop: building a page takes 0.3-0.6 s here, so the window keeps answering in between."""
        if self.state != "running" or self.demo is None:
            return
        if not connections:
            self.opened.emit(list(self._pages))
            return
        window = self.window
        shown = window.stack.currentWidget()
        try:
            page = self._open_connection(connections[0])
        except Exception as exc:  # noqa: BLE001 - one sentence in the banner, the traceback in the log
            from ui.common.background import failure_sentence

            self._failed_while_opening(failure_sentence(exc, "Opening the demo's connections"))
            return
        self._pages.append(page)
        if len(self._pages) > 1:  # the user stays where they are (connect_platform shows each page)
            if shown is window.welcome:
                self.show_platforms()
            elif shown in window.pages.values():
                window.show_page(shown)
        # A pause between pages lets the asyncio loop start this page's engine before the next is built.
        QTimer.singleShot(OPEN_PAUSE_MS, lambda: self._open_next(connections[1:]))

    def _failed_while_opening(self, sentence: str) -> None:
        demo, self.demo = self.demo, None
        self._close_pages()
        if demo is not None:
            demo.stop()
        self._failed(sentence)

    def _failed(self, sentence: str) -> None:
        self.error = sentence
        self._set_state("failed")  # the banner says why, with Try again

    def _open_connection(self, connection: dict):
        """One of the demo's connections (app.demo's dict), on a page of its own, connecting."""
        from app import platforms
        from ui.main_window import _delete_history

        window = self.window
        name = connection["platform"]
        plat = platforms.get(name)
        values = connection["values"]
        config = plat.connection(values)
        key = DEMO_KEY_PREFIX + name
        history = demo_history_name(name)
        if key not in window.pages:
            _delete_history(history)  # fresh tables: the demo's rows of an earlier run are gone
            _delete_outbox(history)
            window._add_page(key, connection["name"], raw=False, retention=demo_retention())
        self.keys.append(key)
        return window.connect_platform(name, values, config, key=key, title=connection["name"], history_name=history)

    def _close_pages(self) -> None:
        window = self.window
        for key in self.keys:
            page = window.pages.pop(key, None)
            if page is None:
                continue
            page.shutdown()
            window.stack.removeWidget(page)
            page.deleteLater()
        self.keys, self._pages = [], []
        if window.current is None:
            window.show_page_for("")
        window.refresh_sidebar()

    # ----- the banner
    def _set_state(self, state: str) -> None:
        self.state = state
        banner = self.banner
        if state == "starting":
            banner.show_starting()
        elif state == "running":
            banner.show_running(self.demo.broker.kind if self.demo is not None else None)
        elif state == "stopping":
            banner.show_stopping()
        elif state == "failed":
            banner.show_failed(self.error or "")
        self.window.welcome.set_demo_state(state)
        self._update_banner()
        self.state_changed.emit(state)

    def _update_banner(self) -> None:
        """Shown while the demo starts or stops, above the demo's own connections, and on the
        welcome page when it could not start (not above the user's own connections)."""
        current = self.window.current
        on_demo = current is not None and is_demo_key(current.key)
        shown = (
            self.state in ("starting", "stopping")
            or (self.state == "running" and on_demo)
            or (self.state == "failed" and current is None)
        )
        self.banner.setVisible(shown)

    # ----- the sidebar
    def sidebar_entry(self, page):
        """A demo connection's row: the platform's name, marked DEMO (the mark says the rest)."""
        from app.demo import LABELS
        from ui.connection.sidebar import Entry

        label = LABELS.get(page.platform_name or "", page.title)
        return Entry(page.key, label, page.platform_name, "simulated", saved=False, demo=True)

    # ----- the smoke test's view
    def rows_per_platform(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for key in self.keys:
            page = self.window.pages.get(key)
            if page is not None and page.platform_name:
                counts[page.platform_name] = counts.get(page.platform_name, 0) + page.rows_in_tables()[0]
        return counts


def _delete_outbox(name: str) -> None:
    from app.outbox import OutboxError, outbox_path

    try:
        path = outbox_path(name)
    except OutboxError:
        return
    from app.history import remove_database

    for problem in remove_database(path):
        log.warning("demo outbox not deleted: %s", problem)

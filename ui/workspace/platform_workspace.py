"""The uplink workspace of a platform connection: devices, the live table, details and charts.

"All history" searches the connection's history file on a worker thread of its own (its own
read-only connection), a page at a time; a new filter cancels it, and pages of a cancelled search
that arrive late are dropped by their generation number."""

from __future__ import annotations

import gc
import logging
import threading
import time

from PySide6.QtCore import QObject, Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from app.store import EventStore, Filter
from ui.workspace.filter_bar import FilterBar
from ui.workspace.uplink_table import UplinkTableModel, UplinkTableView

DEFAULT_RETAINED_ROWS = 1_000_000
log = logging.getLogger(__name__)


class _HistoryRelay(QObject):
    """Hands a history search's pages from its thread to the GUI thread (queued signals)."""

    rows = Signal(int, object)  # generation, rows (newest first)
    done = Signal(int, int, object)  # generation, rows found, failure sentence or None


class PlatformWorkspace(QWidget):
    notice = Signal(str, object)  # a lasting notice: (key, sentence), or (key, None) once over

    def __init__(self, max_rows: int = DEFAULT_RETAINED_ROWS, parent=None) -> None:
        super().__init__(parent)
        from app.devices import DeviceTracker
        from ui.workspace.charts import RadioCharts
        from ui.workspace.details_pane import DetailsPane
        from ui.workspace.devices_view import DevicesView

        self.store = EventStore(max_rows=max_rows)
        self.model = UplinkTableModel(self.store)
        self.view = UplinkTableView(self.model)
        self.view.setColumnHidden(1, True)  # Platform: one connection, one platform
        self.filter_bar = FilterBar()
        self.tracker = DeviceTracker()
        self.devices = DevicesView(self.tracker)
        # The side pane shows what tells a healthy device from a sick one; the header's context
        # menu brings back the rest (DevEUI, platform, best values, duplicates, gateway).
        for col in (1, 2, 7, 8, 10, 11, 13):
            self.devices.table.setColumnHidden(col, True)
        self.details = DetailsPane()
        self.charts = RadioCharts()
        self.history = None  # a HistoryReader once the connection has a history file
        # Device rows repaint once a second (their ages tick then anyway), not every batch.
        self._devices_changed: set[str] = set()
        self._frozen_at = 0
        self.platform_name: str | None = None
        self.charted: list[str] = []

        self.pause_button = QPushButton("Pause")
        self.pause_button.setCheckable(True)
        self.pause_button.setToolTip("Freeze the table; messages keep arriving and are shown on resume")
        self.pause_button.toggled.connect(self._pause)
        self.export_button = QPushButton("Export…")
        self.export_button.setToolTip("Save the rows of the current filter as CSV or JSON lines")
        self.export_button.clicked.connect(self.export)
        self.clear_button = QPushButton("Clear")
        self.clear_button.clicked.connect(self.clear)
        self.count_label = QLabel("Waiting for messages…")
        self.count_label.setObjectName("hint")

        top = QHBoxLayout()
        top.addWidget(self.filter_bar, 1)
        top.addWidget(self.pause_button)
        top.addWidget(self.export_button)
        top.addWidget(self.clear_button)
        table_box = QWidget()
        tl = QVBoxLayout(table_box)
        tl.setContentsMargins(0, 0, 0, 0)
        tl.addLayout(top)
        tl.addWidget(self.view, 1)
        under = QHBoxLayout()
        under.addWidget(self.count_label, 1)
        under.addWidget(self.filter_bar.hide_duplicates)
        under.addWidget(self.filter_bar.hidden)
        tl.addLayout(under)

        self.bottom = QTabWidget()
        self.bottom.addTab(self.details, "Details")
        self.bottom.addTab(self.charts, "Radio charts")
        center = QSplitter(Qt.Orientation.Vertical)
        center.addWidget(table_box)
        center.addWidget(self.bottom)
        center.setStretchFactor(0, 3)
        center.setStretchFactor(1, 2)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(self.devices)
        split.addWidget(center)
        split.setStretchFactor(1, 1)
        split.setSizes([470, 1000])
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(split)

        self.filter_bar.filter_changed.connect(self.apply_filter)
        self.view.position_selected.connect(self.show_details)
        self.devices.device_selected.connect(self.select_device)
        self.model.rows_changed.connect(self._update_count)
        self.model.rows_rejected.connect(self._rows_rejected)
        self.model.search_state.connect(self._search_state)
        self.model.refilter_needed.connect(lambda: self.apply_filter(self.model.filter))
        self._history_relay = _HistoryRelay(self)
        self._history_relay.rows.connect(self._history_rows)
        self._history_relay.done.connect(self._history_done)
        self._history_generation = 0
        self._history_cancel: threading.Event | None = None
        self.history_searching = False
        self._progress_shown_at = 0.0
        self._devices_pending: list[dict] = []
        self._devices_timer = QTimer(self)
        self._devices_timer.setSingleShot(True)
        self._devices_timer.setInterval(1)
        self._devices_timer.timeout.connect(self._take_devices)
        # History replayed newest first: loading until history_finished; then the device
        # statistics are counted again over every row in order (_recount_devices, in slices).
        self.history_loading = False
        self._history_loaded = self._history_expected = 0  # rows of the replay shown, rows it brings
        self._devices_recount = None  # [next position, the new tracker]
        self._devices_recount_timer = QTimer(self)
        self._devices_recount_timer.setSingleShot(True)
        self._devices_recount_timer.timeout.connect(self._recount_devices_step)
        self._tick = QTimer(self)
        self._tick.setInterval(1000)
        self._tick.timeout.connect(self._refresh_devices_list)
        self._tick.start()

    # ----- history
    def open_history(self, name: str) -> None:
        from app.history import HistoryReader, history_path

        self.close_history()
        try:
            self.history = HistoryReader(history_path(name))
        except Exception as exc:  # noqa: BLE001 - the live view works without history
            self.history = None
            self.notice.emit("history-read", f"The history of this connection cannot be read: {exc}")

    def close_history(self) -> None:
        self._cancel_history_search()
        if self.history is not None:
            self.history.close()
            self.history = None

    # ----- data in
    def ingest(self, batches: list[dict]) -> None:
        start = self.store.end
        batches = self.model.ingest(batches)  # a batch the store refused is left out of the statistics too
        # Device statistics in a slice of their own, a moment later: the GUI loop gets to run
        # (timers, a repaint) between the table insert and this (~2.5 us a row, measured).
        self._devices_pending.extend(batches)
        if not self._devices_timer.isActive():
            self._devices_timer.start()
        if self.charted and not self.model.paused:
            self._append_charts(start)

    # ----- history replayed newest first (reopening a connection)
    def begin_history(self, rows: int) -> None:
        """A replay of up to `rows` rows of history starts (prepend_history, then history_finished)."""
        if rows <= 0:
            return
        try:  # how many rows the replay brings (the meta row count: no scan)
            stored = self.history.count() if self.history is not None else rows
        except Exception:  # noqa: BLE001 - then the replay says itself
            stored = rows
        if not stored:
            return  # a new connection (the demo's, say): nothing to load, nothing to say
        self.model.reserve_history(rows, min(rows, stored))
        self.history_loading = True
        self._history_loaded = 0
        self._history_expected = min(rows, stored)
        self._update_count()

    def prepend_history(self, batches: list[dict]) -> None:
        """Replayed rows, older than every row shown, above them."""
        first = self._history_loaded == 0
        batches = self.model.prepend_history(batches)
        self._history_loaded += sum(len(b["ts"]) for b in batches)
        if not batches and len(self.store) >= self.store.max_rows:
            self._history_expected = self._history_loaded  # the table is full: no more of it fits
        if batches:
            self._update_count()
        if self.history_loading and not first:
            return  # counted in order once the replay is over (history_finished): not twice
        # The newest rows' devices show at once (out of order, so counted again at the end).
        self._devices_pending.extend(batches)
        if not self._devices_timer.isActive():
            self._devices_timer.start()

    def history_finished(self) -> None:
        """The replay is over: duplicates and device statistics are counted again in order, the
        charts and an "All history" search see the older rows."""
        if not self.history_loading:
            return
        self.history_loading = False
        self.model.history_complete()
        from app.devices import DeviceTracker

        self._devices_recount = [self.store.base, DeviceTracker(self.tracker.sixteen_bit_platforms)]
        self._devices_recount_timer.start(0)
        if self.charted:
            self._chart_selected()
        if self.filter_bar.history_on and self.history is not None:
            self.apply_filter(self.model.filter)  # the rows it found on disk may be in memory now
        self._update_count()

    def _recount_devices_step(self) -> None:
        if self._devices_recount is None:
            return
        pos, tracker = self._devices_recount
        store = self.store
        pos = max(pos, store.base)
        deadline = time.monotonic() + 0.008
        try:
            while pos < store.end and time.monotonic() < deadline:
                hi = min(store.end, pos + 2048)
                tracker.update(store.columns(pos, hi))
                pos = hi
        except Exception as exc:  # noqa: BLE001 - the statistics counted so far stay
            log.exception("counting the device statistics again failed")
            self._devices_recount = None
            self.notice.emit("devices", f"Device statistics could not be counted again in order ({exc}).")
            return
        if pos < store.end:
            self._devices_recount[0] = pos
            self._devices_recount_timer.start(0)
            return
        # Every row in memory is counted: the batches waiting for the old tracker are among them;
        # rows held by a pause are not in the store yet.
        self._devices_recount = None
        self._devices_pending = []
        for b in self.model._held:
            tracker.update(b)
        self.tracker.adopt(tracker)
        self._devices_changed = set()
        self.devices.refresh(set())
        self._update_count()

    def _take_devices(self) -> None:
        batches, self._devices_pending = self._devices_pending, []
        for b in batches:
            try:
                self._devices_changed |= self.tracker.update(b)
            except Exception as exc:  # noqa: BLE001 - the table goes on without these statistics
                log.exception("device statistics failed")
                self.notice.emit("devices", f"Device statistics skipped {len(b.get('ts', ())):,} rows ({exc}).")

    def _rows_rejected(self, total: int, why: str) -> None:
        self.notice.emit(
            "table",
            f"{total:,} received rows could not be added to the table ({why}); the rows after them are shown. "
            "Please report it.",
        )

    def _append_charts(self, start: int) -> None:
        from ui.workspace.charts import series_from_store

        for key in self.charted:
            positions = self.store.matching(Filter(device=key), start=start)
            if len(positions):
                self.charts.append(key, *series_from_store(self.store, positions))

    # ----- actions
    def apply_filter(self, flt: Filter) -> None:
        from app.search import QueryError

        bar = self.filter_bar
        t0 = time.perf_counter()
        try:
            self.model.set_filter(flt, regex=bar.regex_on, hide_duplicates=bar.duplicates_hidden)
        except QueryError as exc:
            bar.result.setText("invalid expression")
            bar.result.setToolTip(str(exc))
            self.notice.emit("search", str(exc))
            return
        self.notice.emit("search", None)
        self._search_history(flt)
        bar.result.setToolTip("")
        ms = (time.perf_counter() - t0) * 1000
        bar.result.setText("searching…" if self.model.searching else (f"{ms:.0f} ms" if not flt.is_empty else ""))
        bar.show_hidden(self.model.duplicates_in_memory if bar.duplicates_hidden else 0)

    # ----- "All history"
    def _cancel_history_search(self) -> None:
        self._history_generation += 1
        if self._history_cancel is not None:
            self._history_cancel.set()
            self._history_cancel = None
        self.history_searching = False

    def _search_history(self, flt: Filter) -> None:
        """Also searches the history on disk for older rows, when "All history" is on."""
        import numpy as np

        from app.search import Query, search_history
        from app.store import NONE_INT

        self._cancel_history_search()
        if not self.filter_bar.history_on or self.history is None or flt.is_empty:
            return
        if self.history_loading:
            return  # the rows the replay brings would be found twice: history_finished searches
        query = Query(flt.text, self.filter_bar.regex_on)
        ids = np.frombuffer(self.store.cols["id"], dtype=np.int64)[self.store.room :]
        ids = ids[ids != NONE_INT]
        before = int(ids.min()) if len(ids) else None
        del ids
        generation = self._history_generation
        cancel = self._history_cancel = threading.Event()
        relay = self._history_relay
        path = self.history.path
        self.history_searching = True

        def work() -> None:
            from app.history import HistoryReader

            found, failure = 0, None
            try:
                with HistoryReader(path) as reader:
                    found = search_history(
                        reader, flt, query, before, cancel.is_set, lambda rows: relay.rows.emit(generation, rows)
                    )
            except Exception as exc:  # noqa: BLE001 - told as a sentence, the live table goes on
                from ui.common.background import failure_sentence

                failure = failure_sentence(exc, "Searching the history on disk")
            relay.done.emit(generation, found, failure)

        threading.Thread(target=work, name="history-search", daemon=True).start()

    def _history_rows(self, generation: int, rows) -> None:
        if generation == self._history_generation:
            self.model.add_history_rows(rows)

    def _history_done(self, generation: int, found: int, failure) -> None:
        if generation != self._history_generation:
            return
        self.history_searching = False
        self._history_cancel = None
        if failure:
            self.notice.emit("history-search", failure)
        self._update_count()

    def _search_state(self, running: bool, progress: float) -> None:
        bar = self.filter_bar
        if running:
            # A label's new text lays the bar out again: a few times a second is enough.
            now = time.monotonic()
            if now - self._progress_shown_at >= 0.25:
                self._progress_shown_at = now
                bar.result.setText(f"searching… {progress:.0%}")
        elif self.model.search_seconds is not None:
            bar.result.setText(f"{self.model.search_seconds * 1000:.0f} ms")

    def select_device(self, key) -> None:
        self.filter_bar.set_device(key)
        self.charted = [key] if key else []
        self._chart_selected()

    def _chart_selected(self) -> None:
        from ui.workspace.charts import series_from_store

        series = {}
        for key in self.charted:
            series[key] = series_from_store(self.store, self.store.matching(Filter(device=key)))
        self.charts.set_devices(series)

    def show_details(self, pos) -> None:
        if pos is None or 0 <= pos < self.store.base:
            self.details.show_event(None)
            return
        row = self.model.row_at(pos)
        raw = None
        if self.history is not None and row.get("id") is not None:
            try:
                raw = self.history.raw(row["id"])
            except Exception:  # noqa: BLE001 - details without the raw body are still useful
                raw = None
        self.details.show_event(row, raw)
        if raw is None and self.history is not None and row.get("id") is not None:
            # Written by the engine's history thread a moment after the row arrived: look again.
            QTimer.singleShot(400, self, lambda: self._retry_details(pos))  # not after the page is gone

    def _retry_details(self, pos: int) -> None:
        if self.view.selected_position() == pos and (pos < 0 or pos >= self.store.base):
            row = self.model.row_at(pos)
            try:
                raw = self.history.raw(row["id"]) if self.history is not None else None
            except Exception:  # noqa: BLE001
                raw = None
            if raw is not None:
                self.details.show_event(row, raw)

    def _pause(self, paused: bool) -> None:
        self.model.set_paused(paused)
        self.pause_button.setText("Resume" if paused else "Pause")
        self._update_count()

    def clear(self) -> None:
        self._cancel_history_search()
        self._devices_recount = None
        self.history_loading = False  # the rest of a replay is not taken (the model drops it)
        self._history_loaded = self._history_expected = 0
        self.model.clear()
        self._devices_pending = []
        self.tracker.clear()
        self._devices_changed = set()
        self.devices.refresh(set())
        self.details.show_event(None)
        self.charts.set_devices({})

    def export(self) -> None:
        from app.export import RangeExtras
        from ui.export.export_dialog import run_export

        positions = self.model.visible if self.model.visible is not None else range(self.store.base, self.store.end)
        # The platform's own receive time and the correlation ids are kept in the history only.
        extra = RangeExtras(self.history.extras) if self.history is not None else None
        run_export(self, self.store, positions, f"uplinks-{time.strftime('%Y%m%d-%H%M%S')}", extra=extra)

    def _update_count(self) -> None:
        shown = self.model.rowCount()
        total = len(self.store)
        text = f"{total:,} rows in memory" if self.model.visible is None else f"{shown:,} of {total:,} rows match"
        if self.model.history_rows or self.history_searching:
            text += f" (with {self.model.history_rows:,} older from the history on disk"
            text += ", still searching)" if self.history_searching else ")"
        if self.history_loading:
            text += " · loading older rows from the history…"
            if self._history_expected > self._history_loaded:
                text += f" {self._history_loaded:,} of {self._history_expected:,}"
        elif self._devices_recount is not None:
            text += " · counting the history's devices…"
        if self.model.paused:
            text += f" · paused, {self.model.held_rows:,} waiting"
        self.count_label.setText(text + f" · {len(self.tracker):,} devices")
        if self.filter_bar.duplicates_hidden:
            self.filter_bar.show_hidden(self.model.duplicates_in_memory)

    def _refresh_devices_list(self) -> None:
        self._take_devices()
        if self.store.total_appended - self._frozen_at > 100_000:
            # A full collection walks every element of the store's million-entry lists (~250 ms
            # at 1M rows, measured); the store holds no reference cycles, so take what exists
            # now out of the collector's view.
            gc.freeze()
            self._frozen_at = self.store.total_appended
        if self._devices_changed:
            changed, self._devices_changed = self._devices_changed, set()
            self.devices.refresh(changed)
        self.filter_bar.update_devices(self.store.devices())

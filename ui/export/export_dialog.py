"""Export the current filter's rows to CSV or JSON lines without blocking the window.

The rows are copied out of the store on the GUI thread, a batch (≤ 4096 rows, a few ms) per
timer tick: the GUI thread is the only one that appends to and trims the store, so each batch
is a consistent copy even while rows keep arriving. A worker thread turns the batches into
text and writes the file (app/export.py), reporting progress through a Qt signal. The copying
runs at most AHEAD batches ahead of the writer, so an export takes little extra memory; a row
trimmed from the store before its batch was copied (the window would have to receive rows
faster than the export writes them) is skipped, and the final message says how many were.
"""

from __future__ import annotations

import queue
import threading
import time
from array import array
from collections.abc import Callable, Sequence
from pathlib import Path

from PySide6.QtCore import QObject, QStandardPaths, QTimer, Signal
from PySide6.QtWidgets import QFileDialog, QMessageBox, QProgressDialog, QWidget

from app.export import ExportCancelled, ExportError, batch_size, export_batches, take_rows
from ui.common.background import progress_dialog, show_failure

FILTERS = {"csv": "CSV (*.csv)", "jsonl": "JSON lines (*.jsonl)"}
FILE_FILTER = ";;".join(FILTERS.values())
SUFFIXES = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl"}
AHEAD = 16  # batches copied ahead of the writer (at most 64k rows: little memory, few GC-tracked lists)
TICK_BUDGET = 0.006  # seconds of GUI time a copying tick may take

_last_folder: str | None = None
_jobs: set[ExportJob] = set()  # running exports (kept alive until they end)
_CANCEL = object()


class ExportJob(QObject):
    """One export: copies batches on the GUI thread, writes them on a worker thread."""

    progressed = Signal(int, int)  # done, total (emitted by the worker; delivered on the GUI thread)
    status = Signal(str)  # "Exported 123,456 rows to …" or "Export cancelled …"
    failed = Signal(str)  # what went wrong and what to do
    finished = Signal()  # after status or failed
    _ended = Signal(object)  # worker -> GUI thread: ("ok", rows) | ("cancelled", None) | ("error", message)

    def __init__(
        self,
        store,
        positions: Sequence[int],
        path,
        fmt: str,
        parent: QWidget | None = None,
        *,
        extra=None,
        show_progress: bool = True,
    ) -> None:
        super().__init__()
        self.store = store
        # A copy: the view's position list changes as rows arrive and leave.
        self.positions = positions if isinstance(positions, range) else array("q", positions)
        self.total = len(self.positions)
        self.path = Path(path)
        self.fmt = fmt
        self.extra = extra
        self.parent_widget = parent
        self.done = False
        self.written: int | None = None
        self.skipped = 0
        self.error: str | None = None
        self.cancelled = False
        self.message = ""
        self._size = batch_size(self.total)
        self._next = 0  # next position index to copy
        self._queue: queue.Queue = queue.Queue()
        self._cancel = threading.Event()
        self._thread = threading.Thread(target=self._work, name="export", daemon=True)
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self._copy)
        self._ended.connect(self._finish)
        self._progress: QProgressDialog | None = None
        self._error_box: QMessageBox | None = None
        if show_progress:
            self._progress = progress_dialog(
                parent, "Export", f"Exporting {self.total:,} rows…", self.total, self.cancel
            )
            self.progressed.connect(self._show_progress)

    # ----- control
    def start(self) -> None:
        _jobs.add(self)
        self._copy()  # the first batch now, so what the user saw is what gets exported
        self._thread.start()

    def cancel(self) -> None:
        """Stops the export; the partial file is removed (an existing file is left as it was)."""
        if self.done or self._cancel.is_set():
            return
        self._cancel.set()
        self._timer.stop()
        self._queue.put(_CANCEL)  # wakes the worker if it waits for a batch
        if self._progress is not None:
            self._progress.setLabelText("Cancelling…")

    def wait(self, timeout: float | None = None) -> bool:
        """Blocks until the worker has stopped (for shutdown); True if it has."""
        if self._thread.is_alive():
            self._thread.join(timeout)
        return not self._thread.is_alive()

    # ----- GUI thread: copying batches out of the store
    def _copy(self) -> None:
        if self._cancel.is_set() or self._next > self.total:
            return
        deadline = time.perf_counter() + TICK_BUDGET
        while self._next < self.total and self._queue.qsize() < AHEAD:
            chunk = self.positions[self._next : self._next + self._size]
            self._queue.put(take_rows(self.store, chunk))
            self._next += len(chunk)
            if time.perf_counter() > deadline:
                break
        if self._next >= self.total:
            self._next = self.total + 1  # the end is queued
            self._queue.put(None)
        else:
            self._timer.start(0 if self._queue.qsize() < AHEAD else 10)

    # ----- worker thread
    def _batches(self):
        while True:
            item = self._queue.get()
            if item is None:
                return
            if item is _CANCEL or self._cancel.is_set():
                raise ExportCancelled
            yield item

    def _report(self, done: int, total: int) -> bool:
        self.progressed.emit(done, total)
        return not self._cancel.is_set()

    def _work(self) -> None:
        try:
            written = export_batches(self._batches(), self.total, self.path, self.fmt, self._report, extra=self.extra)
            result = ("ok", written)
        except ExportCancelled:
            result = ("cancelled", None)
        except ExportError as e:
            result = ("error", str(e))
        except Exception as e:  # a bug, or the extra callback failing: say so rather than hang
            result = ("error", f"The export failed ({type(e).__name__}: {e}). Nothing was written to {self.path}.")
        self._ended.emit(result)

    # ----- GUI thread: progress and the end
    def _show_progress(self, done: int, total: int) -> None:
        if self.done or self._progress is None or self._cancel.is_set():
            return
        try:
            self._progress.setValue(min(done, self._progress.maximum()))
        except RuntimeError:  # the window (and with it the dialog) is gone
            self._progress = None

    def _finish(self, result) -> None:
        kind, value = result
        self.done = True
        self._timer.stop()
        self._thread.join(5)
        self._close_progress()
        name = self.path.name
        if kind == "ok":
            self.written = value
            self.skipped = self.total - value
            self.message = f"Exported {value:,} rows to {self.path}"
            if self.skipped:
                self.message += (
                    f" ({self.skipped:,} rows had already left the window, which keeps only the newest, "
                    "and were skipped)"
                )
            self.status.emit(self.message)
        elif kind == "cancelled":
            self.cancelled = True
            self.message = f"Export cancelled: {name} was not written."
            self.status.emit(self.message)
        else:
            self.error = self.message = value
            self._show_error(value)
            self.failed.emit(value)
        self.finished.emit()
        _jobs.discard(self)

    def _close_progress(self) -> None:
        dlg, self._progress = self._progress, None
        if dlg is None:
            return
        try:
            dlg.canceled.disconnect(self.cancel)
            dlg.hide()
            dlg.deleteLater()
        except (RuntimeError, TypeError):
            pass

    def _show_error(self, message: str) -> None:
        self._error_box = show_failure(self.parent_widget, "Export failed", message)


# ----- entry points --------------------------------------------------------------------------


def run_export(
    parent: QWidget | None,
    store,
    positions: Sequence[int],
    default_name: str,
    *,
    status: Callable[[str], None] | None = None,
    extra=None,
) -> ExportJob | None:
    """Asks for a file, then exports the rows at `positions` (absolute) in the background.

    status(message) gets the closing sentence (default: the parent window's status bar); errors
    are shown in a message box. extra(row_id) -> (received_at, correlation_ids) | None, called
    on the worker thread. Returns the running job, or None when there was nothing to do.
    """
    say = status or _status_bar_of(parent)
    if not len(positions):
        say("Nothing to export: no rows match the filter.")
        return None
    chosen = ask_export_path(parent, default_name)
    if chosen is None:
        return None
    path, fmt = chosen
    job = ExportJob(store, positions, path, fmt, parent, extra=extra)
    job.status.connect(say)
    job.start()
    return job


def ask_export_path(parent: QWidget | None, default_name: str) -> tuple[Path, str] | None:
    """The file to export to and its format ("csv" or "jsonl"), or None if the user cancelled."""
    global _last_folder
    default = Path(default_name)
    default_fmt = SUFFIXES.get(default.suffix.lower())
    if default_fmt is None:
        default_fmt = "csv"
        default = default.with_name(f"{default.name}.csv")
    folder = _last_folder or QStandardPaths.writableLocation(QStandardPaths.StandardLocation.DocumentsLocation)
    start = str(Path(folder or Path.home()) / default.name)
    name, chosen_filter = QFileDialog.getSaveFileName(parent, "Export rows", start, FILE_FILTER, FILTERS[default_fmt])
    if not name:
        return None
    path = Path(name)
    fmt = SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        # No known extension typed: the chosen filter decides, and its extension is added.
        fmt = "jsonl" if chosen_filter == FILTERS["jsonl"] else "csv"
        path = path.with_name(f"{path.name}.{fmt}")
        if path.exists():
            answer = QMessageBox.question(
                parent,
                "Export rows",
                f"{path.name} already exists. Replace it?",
                QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
            )
            if answer != QMessageBox.StandardButton.Yes:
                return None
    _last_folder = str(path.parent)
    return path, fmt


def cancel_all(timeout: float = 5.0) -> None:
    """Cancels running exports and waits for their workers (call when the window closes)."""
    for job in list(_jobs):
        job.cancel()
    deadline = time.monotonic() + timeout
    for job in list(_jobs):
        job.wait(max(0.0, deadline - time.monotonic()))


def _status_bar_of(parent) -> Callable[[str], None]:
    def show(message: str) -> None:
        bar = getattr(parent, "statusBar", None)
        if callable(bar):
            try:
                bar().showMessage(message, 15000)
            except RuntimeError:
                pass

    return show

"""Long operations without a frozen window: one place for progress, cancel, success and failure.

Modelled on Anki's `QueryOp`: the work is a plain function taking an `app.progress.Progress`
(run on a thread) or a coroutine function taking one (run on the GUI's asyncio loop, for work
that awaits the engine, such as a connection test). A progress dialog appears only if the work
takes longer than SHOW_AFTER_MS, with a Cancel button; the end is a signal and, on failure, one
sentence in a non-blocking message box (never a traceback: that goes to the log file).

    op = BackgroundOp(window, import_certificate, title="Import certificate",
                      label="Reading the file…", on_success=show_it).start()

The export (ui/export/export_dialog.py) copies rows on the GUI thread and writes on a worker,
so it keeps its own job but shows its progress and failures with the helpers below.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
from collections.abc import Callable

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import QMessageBox, QProgressDialog, QWidget

from app.progress import Cancelled, Progress

log = logging.getLogger(__name__)
SHOW_AFTER_MS = 300  # quicker operations finish before a dialog would flash up
_running: set[BackgroundOp] = set()  # kept alive until they end


def failure_sentence(exc: BaseException, what: str) -> str:
    """An exception as the sentence a user reads. The console's own errors are sentences
    already; anything else is worded here and its traceback goes to the log file."""
    module = type(exc).__module__ or ""
    if module.startswith("app.") or module == "app":
        return str(exc) or f"{what} failed."
    if isinstance(exc, OSError) and exc.strerror:
        where = f" ({exc.filename})" if exc.filename else ""
        return f"{what} failed: {exc.strerror}{where}."
    if isinstance(exc, TimeoutError):
        return f"{what} took too long and was stopped; try again."
    log.error("%s failed", what, exc_info=(type(exc), exc, exc.__traceback__))
    return f"{what} failed ({type(exc).__name__}: {exc}). The details are in the log file; please report it."


def progress_dialog(
    parent: QWidget | None, title: str, label: str, maximum: int = 0, on_cancel: Callable[[], None] | None = None
) -> QProgressDialog:
    """The one progress dialog look: window-modal, shown after SHOW_AFTER_MS, Cancel if wanted
    (maximum 0: a busy indicator)."""
    dlg = QProgressDialog(label, "Cancel" if on_cancel else "", 0, max(0, maximum), parent)
    dlg.setWindowTitle(title)
    dlg.setWindowModality(Qt.WindowModality.WindowModal)
    dlg.setMinimumDuration(SHOW_AFTER_MS)
    dlg.setAutoClose(False)
    dlg.setAutoReset(False)
    if on_cancel is None:
        dlg.setCancelButton(None)
    else:
        dlg.canceled.connect(on_cancel)
    return dlg


def show_failure(parent: QWidget | None, title: str, sentence: str) -> QMessageBox:
    """A warning box that does not block the window (open(), not exec())."""
    try:
        box = QMessageBox(QMessageBox.Icon.Warning, title, sentence, QMessageBox.StandardButton.Ok, parent)
    except RuntimeError:  # the parent window is gone
        box = QMessageBox(QMessageBox.Icon.Warning, title, sentence, QMessageBox.StandardButton.Ok)
    box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    box.open()
    return box


class BackgroundOp(QObject):
    succeeded = Signal(object)  # the work's result
    failed = Signal(str)  # the sentence
    cancelled = Signal()
    finished = Signal()  # after one of the three
    _progressed = Signal(int, int, str)  # from the worker thread, delivered on the GUI thread
    _ended = Signal(str, object)  # ("ok", result) | ("cancelled", None) | ("error", sentence)

    def __init__(
        self,
        parent: QWidget | None,
        work: Callable,
        *,
        title: str,
        label: str = "",
        on_success: Callable[[object], None] | None = None,
        on_failure: Callable[[str], None] | None = None,
        cancellable: bool = True,
        show_progress: bool = True,
        failure_box: bool = True,
    ) -> None:
        super().__init__()
        self.parent_widget = parent
        self.work = work
        self.title = title
        self.progress = Progress(self._progressed.emit)
        self.result = None
        self.error: str | None = None
        self.state = "new"  # running, ok, error, cancelled
        self._failure_box = failure_box
        self._task: asyncio.Future | None = None
        self._thread: threading.Thread | None = None
        self._dialog: QProgressDialog | None = None
        if show_progress:
            self._dialog = progress_dialog(parent, title, label or f"{title}…", 0, self.cancel if cancellable else None)
        self._progressed.connect(self._show_progress)
        self._ended.connect(self._finish)
        if on_success is not None:
            self.succeeded.connect(on_success)
        if on_failure is not None:
            self.failed.connect(on_failure)

    @property
    def running(self) -> bool:
        return self.state == "running"

    def start(self) -> BackgroundOp:
        _running.add(self)
        self.state = "running"
        if inspect.iscoroutinefunction(self.work):
            self._task = asyncio.ensure_future(self._run_coroutine())
        else:
            self._thread = threading.Thread(target=self._run_thread, name=f"op {self.title}", daemon=True)
            self._thread.start()
        return self

    def cancel(self) -> None:
        if self.state != "running":
            return
        self.progress.cancel()
        if self._task is not None:
            self._task.cancel()
        if self._dialog is not None:
            self._dialog.setLabelText("Cancelling…")

    def wait(self, timeout: float | None = None) -> bool:
        """Blocks until a thread-run operation has stopped (for shutdown); True if it has."""
        if self._thread is not None and self._thread.is_alive():
            self._thread.join(timeout)
        return self._thread is None or not self._thread.is_alive()

    # ----- running
    def _outcome(self, exc: BaseException) -> tuple[str, object]:
        if isinstance(exc, Cancelled | asyncio.CancelledError) or self.progress.cancelled:
            return "cancelled", None
        return "error", failure_sentence(exc, self.title)

    def _run_thread(self) -> None:
        try:
            outcome = ("ok", self.work(self.progress))
        except BaseException as exc:  # noqa: BLE001 - every end is reported, none escapes the thread
            outcome = self._outcome(exc)
        self._ended.emit(*outcome)

    async def _run_coroutine(self) -> None:
        try:
            outcome = ("ok", await self.work(self.progress))
        except BaseException as exc:  # noqa: BLE001
            outcome = self._outcome(exc)
        self._finish(*outcome)

    # ----- the GUI side
    def _show_progress(self, done: int, total: int, text: str) -> None:
        dlg = self._dialog
        if dlg is None or self.state != "running" or self.progress.cancelled:
            return
        try:
            if total and dlg.maximum() != total:
                dlg.setMaximum(total)
            if total:
                dlg.setValue(min(done, total))
            if text:
                dlg.setLabelText(text)
        except RuntimeError:  # the window (and with it the dialog) is gone
            self._dialog = None

    def _finish(self, kind: str, value) -> None:
        if self.state != "running":
            return
        self._close_dialog()
        if kind == "ok":
            self.state, self.result = "ok", value
            self.succeeded.emit(value)
        elif kind == "cancelled":
            self.state = "cancelled"
            self.cancelled.emit()
        else:
            self.state, self.error = "error", value
            if self._failure_box:
                show_failure(self.parent_widget, self.title, value)
            self.failed.emit(value)
        self.finished.emit()
        _running.discard(self)

    def _close_dialog(self) -> None:
        dlg, self._dialog = self._dialog, None
        if dlg is None:
            return
        try:
            dlg.hide()
            dlg.deleteLater()
        except RuntimeError:
            pass


def cancel_all(timeout: float = 5.0) -> None:
    """Cancels running operations and waits for their threads (when the window closes)."""
    import time

    for op in list(_running):
        op.cancel()
    deadline = time.monotonic() + timeout
    for op in list(_running):
        op.wait(max(0.0, deadline - time.monotonic()))

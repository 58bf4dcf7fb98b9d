"""Progress and cancellation for long operations, without Qt.

The work itself is a plain function (or coroutine) that takes a `Progress` and calls
`report(done, total, text)` now and then; `report` answers False once the user cancelled, and
`check()` raises `Cancelled` then. The window's `ui.common.background.BackgroundOp` shows the
progress, the cancel button and the closing sentence; tests drive the same functions directly.
"""

from __future__ import annotations

import threading
from collections.abc import Callable


class Cancelled(Exception):  # noqa: N818 - reads as what happened: the operation was cancelled
    """The user cancelled the operation."""


class Progress:
    """Thread-safe: the worker reports, the window reads and cancels."""

    def __init__(self, on_report: Callable[[int, int, str], None] | None = None) -> None:
        self._cancel = threading.Event()
        self._on_report = on_report
        self.done = 0
        self.total = 0
        self.text = ""

    def report(self, done: int, total: int = 0, text: str = "") -> bool:
        """Tells how far the work is (total 0: unknown); False once the user has cancelled."""
        self.done, self.total = done, total
        if text:
            self.text = text
        if self._on_report is not None:
            self._on_report(done, total, self.text)
        return not self._cancel.is_set()

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def check(self) -> None:
        """Raises Cancelled if the user has cancelled: call it between steps."""
        if self._cancel.is_set():
            raise Cancelled

    def wait(self, seconds: float) -> bool:
        """Sleeps up to `seconds`, waking at once on cancel; True if cancelled."""
        return self._cancel.wait(seconds)

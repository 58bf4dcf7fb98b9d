"""The log file: where tracebacks and library log lines go, so the terminal shows only our sentences.

`<user log dir>/uplink-console.log` (platformdirs), or `$UPLINK_CONSOLE_LOG_DIR/uplink-console.log`;
rotated at 1 MiB with three old files kept. The file and its folder are created by the first line
logged, so a run that logs nothing leaves nothing behind. A log that cannot be written is
remembered (`LogFile.error`) and never reported on stderr by the logging module itself.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
from dataclasses import dataclass
from pathlib import Path

LOG_DIR_ENV = "UPLINK_CONSOLE_LOG_DIR"
LOG_NAME = "uplink-console.log"
MAX_BYTES = 1024 * 1024
BACKUP_COUNT = 3
# Their lines go to the file only: the session turns what matters into sentences already.
LIBRARY_LOGGERS = ("mqtt", "aiomqtt", "paho", "asyncio")
FORMAT = "%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"


def log_dir() -> Path:
    override = os.environ.get(LOG_DIR_ENV)
    if override:
        return Path(override).expanduser()
    from platformdirs import user_log_dir

    return Path(user_log_dir("uplink-console", appauthor=False))


def log_path(name: str = LOG_NAME) -> Path:
    return log_dir() / name


class _Handler(logging.handlers.RotatingFileHandler):
    """Opens the file (and makes its folder) on the first line; a failure is kept, not printed."""

    def __init__(self, path: Path) -> None:
        self.error: BaseException | None = None
        super().__init__(
            path, maxBytes=MAX_BYTES, backupCount=BACKUP_COUNT, encoding="utf-8", delay=True, errors="backslashreplace"
        )

    def _open(self):
        Path(self.baseFilename).parent.mkdir(parents=True, exist_ok=True)
        return super()._open()

    def emit(self, record: logging.LogRecord) -> None:
        if self.error is None:
            super().emit(record)

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 (logging's name)
        import sys

        self.error = sys.exc_info()[1] or OSError("the log file cannot be written")


@dataclass
class LogFile:
    path: Path
    handler: logging.Handler

    @property
    def error(self) -> str | None:
        """Why the file could not be written (a short reason), or None."""
        exc = getattr(self.handler, "error", None)
        if exc is None:
            return None
        return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__

    @property
    def written(self) -> bool:
        return self.error is None and getattr(self.handler, "stream", None) is not None

    def flush(self) -> None:
        try:
            self.handler.flush()
        except Exception:
            pass


_installed: list[tuple[logging.Handler, int]] = []


def install(verbose: bool = False, name: str = LOG_NAME) -> LogFile:
    """Makes the log file the root logger's only destination of ours (replacing an earlier one)."""
    uninstall()
    root = logging.getLogger()
    try:
        path = log_path(name)
        handler: logging.Handler = _Handler(path)
    except Exception as exc:  # e.g. no home folder to put the log in
        path = Path(os.environ.get(LOG_DIR_ENV) or "~") / name
        handler = logging.NullHandler()
        handler.error = exc  # type: ignore[attr-defined]
    handler.setFormatter(logging.Formatter(FORMAT))
    _installed.append((handler, root.level))
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.WARNING)
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.WARNING)
    logging.captureWarnings(True)  # warnings.warn() lines, too, go to the file
    return LogFile(path, handler)


_QUIET = logging.NullHandler()


def uninstall() -> None:
    """Detaches the log file (after a command, and between tests that run commands in-process).

    A NullHandler stays on the root logger, so a line logged later (at interpreter exit, say) is
    dropped rather than printed raw on stderr by the logging module's last-resort handler.
    """
    root = logging.getLogger()
    if _installed:
        logging.captureWarnings(False)
    while _installed:
        handler, level = _installed.pop()
        root.removeHandler(handler)
        root.setLevel(level)
        try:
            handler.close()
        except Exception:
            pass
    if _QUIET not in root.handlers:
        root.addHandler(_QUIET)

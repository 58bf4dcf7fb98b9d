"""Headless capture: subscribe, write one JSON line per message (or per normalized event)."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import errno
import os
import signal
import sys
from pathlib import Path

import orjson

from app.mqtt.config import ConnectionConfig
from app.mqtt.session import MqttSession, ReceivedMessage, SessionState, StateChange
from app.payload import is_printable_text

FLUSH_INTERVAL = 0.5  # seconds; the issue promises at least once a second


def _json_default(value):
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode()
    raise TypeError(type(value).__name__)


def message_record(msg: ReceivedMessage) -> dict:
    payload = msg.payload
    if is_printable_text(payload):
        text, encoding = payload.decode("utf-8"), "text"
    else:
        text, encoding = base64.b64encode(payload).decode(), "base64"
    return {
        "time": dt.datetime.fromtimestamp(msg.received_at, dt.UTC).isoformat().replace("+00:00", "Z"),
        "topic": msg.topic,
        "qos": msg.qos,
        "retain": msg.retain,
        "payload": text,
        "payload_encoding": encoding,
        "properties": msg.properties,
    }


class OutputError(ValueError):
    """The --out file cannot be opened for writing; the text says why and what to do (exit 2)."""


def _shown(path) -> str:
    """A file name that is not UTF-8 as the bytes typed (\\xff), not as surrogate escapes."""
    return str(path).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _output_sentence(path: str, exc: OSError) -> str:
    p = Path(path).expanduser()
    path = _shown(path)
    if isinstance(exc, IsADirectoryError) or p.is_dir():
        return f"--out {path} is a folder; give a file name, e.g. --out {_shown(p / 'capture.jsonl')}."
    if isinstance(exc, NotADirectoryError):
        blocker = next((a for a in p.parents if a.exists() and not a.is_dir()), None)
        if blocker is not None:
            return f"--out {path} lies under {_shown(blocker)}, which is a file, not a folder; choose another --out."
    if isinstance(exc, FileNotFoundError) and not p.parent.exists():
        return f"The folder {_shown(p.parent)} does not exist; create it first or choose another --out."
    if isinstance(exc, PermissionError):
        return f"You may not write to {path} (permission denied); choose another --out."
    if exc.errno == errno.EROFS:
        return f"{path} is on a read-only file system; choose another --out."
    return f"--out {path} cannot be opened for writing ({exc.strerror or exc}); choose another --out."


def open_output(path: str):
    """The binary file capture appends to ('-': standard output); OutputError with a sentence if it cannot be."""
    if path == "-":
        if sys.stdout is None:
            raise OutputError("There is no standard output to write to; give a file with --out FILE.jsonl.")
        return sys.stdout.buffer
    try:
        return open(Path(path).expanduser(), "ab")  # noqa: SIM115
    except OSError as exc:
        raise OutputError(_output_sentence(path, exc)) from None


class JsonlWriter:
    """Collects lines from the receive path and writes them in batches, flushing regularly."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._file = open_output(path)
        self._pending: list[bytes] = []
        self.lines = 0
        self.error: OSError | None = None  # the first write that failed; nothing is kept after it

    def add(self, record: dict) -> None:
        if self.error is None:  # once writing failed, lines would only pile up in memory
            self._pending.append(orjson.dumps(record, default=_json_default) + b"\n")

    def flush(self) -> None:
        """Writes what is pending; an OSError (disk full, closed pipe) is kept in .error and re-raised."""
        if self.error is not None:
            raise self.error
        try:
            if self._pending:
                pending, self._pending = self._pending, []
                self._file.write(b"".join(pending))
                self.lines += len(pending)
            self._file.flush()
        except OSError as exc:
            self.error = exc
            self._pending = []
            raise

    def close(self) -> None:
        try:
            self.flush()
        except OSError:
            pass  # already in .error; run_capture reports it
        if self._file is sys.stdout.buffer:
            if self.error is not None:
                _discard_stdout()  # else Python's exit tries to flush the dead pipe and prints a traceback
            return
        try:
            os.fsync(self._file.fileno())
        except OSError:
            pass
        try:
            self._file.close()
        except OSError:
            pass  # the data it could not write is in .error already


def _discard_stdout() -> None:
    try:
        fd = os.open(os.devnull, os.O_WRONLY)
        os.dup2(fd, sys.stdout.fileno())
        os.close(fd)
    except (OSError, ValueError):
        pass


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


async def run_capture(config: ConnectionConfig, out: str, platform=None, credentials=None) -> int:
    """Runs until SIGINT/SIGTERM (exit 0) or a failure no retry can fix (exit 1)."""
    writer = JsonlWriter(out)
    stop = asyncio.Event()
    failed: list[str] = []

    if platform is None:

        def on_message(msg: ReceivedMessage) -> None:
            writer.add(message_record(msg))
    else:

        def on_message(msg: ReceivedMessage) -> None:
            for event in platform.parse_or_error(msg.topic, msg.payload, msg.properties):
                writer.add(event.to_dict())

    def on_state(change: StateChange) -> None:
        if change.state == SessionState.CONNECTED:
            topics = ", ".join(s.topic for s in config.subscriptions)
            _say(f"Connected to {config.describe()} (MQTT {change.mqtt_version}); subscribed to {topics}.")
        elif change.state == SessionState.RECONNECTING and change.retry_in is not None:
            what = (change.error or "The connection was lost.").removesuffix("Reconnecting…").rstrip()
            _say(f"{what} Reconnecting in {change.retry_in:.0f} s.")
        elif change.state == SessionState.FAILED:
            failed.append(change.error or "The connection failed.")
            stop.set()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # Windows: Ctrl+C raises KeyboardInterrupt instead
            pass

    async def flusher() -> None:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL)
            try:
                writer.flush()
            except OSError as exc:
                where = "standard output" if out == "-" else out
                failed.append(f"Cannot write to {where} ({exc.strerror or exc}); stopped capturing.")
                stop.set()
                return

    session = MqttSession(config, on_message=on_message, on_state=on_state, credentials=credentials)
    _say(f"Connecting to {config.describe()} …")
    flush_task = loop.create_task(flusher())
    try:
        await session.start()
        await stop.wait()
    finally:
        await session.stop()
        flush_task.cancel()
        writer.close()
    if writer.error is not None and not failed:
        where = "standard output" if out == "-" else out
        failed.append(f"Cannot write to {where} ({writer.error.strerror or writer.error}); stopped capturing.")
    if failed:
        _say(failed[0])
        return 1
    _say(f"Wrote {writer.lines} line{'s' if writer.lines != 1 else ''} to {out}.")
    return 0

"""Headless capture: subscribe, write one JSON line per message (or per normalized event)."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
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


class JsonlWriter:
    """Collects lines from the receive path and writes them in batches, flushing regularly."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._file = sys.stdout.buffer if path == "-" else open(Path(path).expanduser(), "ab")  # noqa: SIM115
        self._pending: list[bytes] = []
        self.lines = 0

    def add(self, record: dict) -> None:
        self._pending.append(orjson.dumps(record, default=_json_default) + b"\n")

    def flush(self) -> None:
        if self._pending:
            pending, self._pending = self._pending, []
            self._file.write(b"".join(pending))
            self.lines += len(pending)
        self._file.flush()

    def close(self) -> None:
        self.flush()
        if self._file is not sys.stdout.buffer:
            try:
                os.fsync(self._file.fileno())
            except OSError:
                pass
            self._file.close()


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
            _say(f"{change.error} Retrying in {change.retry_in:.0f} s.")
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
            writer.flush()

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
    if failed:
        _say(failed[0])
        return 1
    _say(f"Wrote {writer.lines} line{'s' if writer.lines != 1 else ''} to {out}.")
    return 0

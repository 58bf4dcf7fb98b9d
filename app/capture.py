"""Headless capture: subscribe, write one JSON line per message (or per normalized event).

A raw line is {"time", "topic", "qos", "retain", "dup", "payload", "payload_encoding",
"properties"}: "dup" is true when the broker redelivered the message with the MQTT DUP flag (a
QoS 1/2 message it may have sent before, e.g. in flight when it restarted). A normalized event
(--platform) gets "dup": true only when its message was redelivered.

Capture must keep up with a firehose on one core, so a raw line is built as bytes from
precomputed JSON fragments (the time once per read from the socket, the topic once per topic,
qos/retain/dup as constants) and the payload is never parsed: text is escaped by orjson, anything
else is base64. QoS 0 messages of MQTT 3.x come straight from the session's packet decoder
(MqttSession's on_fast_message) without a ReceivedMessage, and the lines of one read from the
socket are written with one write (benchmarks/capture_speed.py measures it against mosquitto_sub).
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import errno
import os
import signal
import sys
import time
from pathlib import Path

import orjson

from app.mqtt.config import ConnectionConfig
from app.mqtt.session import MqttSession, ReceivedMessage, SessionState, StateChange
from app.payload import is_printable_text

FLUSH_INTERVAL = 0.5  # seconds; the issue promises at least once a second (lines are written sooner)


def _json_default(value):
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode()
    text = getattr(value, "text", None)  # a number beyond a float a parser kept as its text
    if isinstance(value, float) and isinstance(text, str):
        return text
    raise TypeError(type(value).__name__)


def _iso_time(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).isoformat().replace("+00:00", "Z")


def message_record(msg: ReceivedMessage) -> dict:
    """The raw line as a dict: what `message_line` writes (the reference it is tested against)."""
    payload = msg.payload
    if is_printable_text(payload):
        text, encoding = payload.decode("utf-8"), "text"
    else:
        text, encoding = base64.b64encode(payload).decode(), "base64"
    return {
        "time": _iso_time(msg.received_at),
        "topic": msg.topic,
        "qos": msg.qos,
        "retain": msg.retain,
        "dup": msg.dup,
        "payload": text,
        "payload_encoding": encoding,
        "properties": msg.properties,
    }


# ----- raw lines from fragments ----------------------------------------------------------------

# An ASCII payload is text (app.payload.is_printable_text) unless it holds a control character
# other than tab, line feed and carriage return: bytes.translate deleting those is the cheapest
# test measured (0.3 us for 200 bytes; a regex search 1.7 us, decode + str.translate 9 us).
_ASCII_CONTROL = bytes([*range(0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F])
_TEXT_END = b',"payload_encoding":"text","properties":'
_BASE64_END = b',"payload_encoding":"base64","properties":'
_NO_PROPERTIES = b"null}\n"
_TEXT_LINE_END = _TEXT_END + _NO_PROPERTIES
# (qos, retain, dup) -> the fragment between the topic and the payload
_FLAGS = {
    (qos, retain, dup): b',"qos":%d,"retain":%s,"dup":%s,"payload":'
    % (qos, b"true" if retain else b"false", b"true" if dup else b"false")
    for qos in (0, 1, 2)
    for retain in (False, True)
    for dup in (False, True)
}
_TOPIC_CACHE_LIMIT = 20_000


def payload_fragment(payload: bytes) -> tuple[bytes, bytes]:
    """(the payload as a JSON string, the payload_encoding fragment that follows it)."""
    if payload.isascii():
        if len(payload.translate(None, _ASCII_CONTROL)) == len(payload):
            return orjson.dumps(payload.decode("ascii")), _TEXT_END
    elif is_printable_text(payload):
        return orjson.dumps(payload.decode("utf-8")), _TEXT_END
    return b'"' + base64.b64encode(payload) + b'"', _BASE64_END


class LineMaker:
    """Builds raw lines as bytes; caches the JSON of topics and the time of the current read."""

    def __init__(self) -> None:
        self._topics: dict[str, bytes] = {}
        self._second = -1
        self._second_text = b""

    def topic(self, topic: str) -> bytes:
        fragment = self._topics.get(topic)
        if fragment is None:
            if len(self._topics) >= _TOPIC_CACHE_LIMIT:  # a topic per message: do not grow forever
                self._topics.clear()
            fragment = self._topics[topic] = orjson.dumps(topic)
        return fragment

    def head(self, t: float) -> bytes:
        """b'{"time":"<ISO 8601 UTC>","topic":' for time.time() t, as datetime.isoformat writes it."""
        second = int(t)
        micro = round((t - second) * 1e6)
        if micro >= 1_000_000:
            second, micro = second + 1, micro - 1_000_000
        if second != self._second:
            self._second = second
            self._second_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)).encode()
        fraction = b".%06d" % micro if micro else b""
        return b'{"time":"' + self._second_text + fraction + b'Z","topic":'

    def line(self, msg: ReceivedMessage) -> bytes:
        text, end = payload_fragment(msg.payload)
        props = msg.properties
        tail = _NO_PROPERTIES if props is None else orjson.dumps(props, default=_json_default) + b"}\n"
        flags = _FLAGS[msg.qos, bool(msg.retain), bool(msg.dup)]
        return b"".join((self.head(msg.received_at), self.topic(msg.topic), flags, text, end, tail))


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
    """Collects lines from the receive path and writes what waits with one write.

    `pending` is a list of byte fragments whose concatenation is whole lines; the receive path
    extends it directly. schedule (optional) is called when the first fragment after a write
    arrives: run_capture writes then after the current read from the socket is handled."""

    def __init__(self, path: str, schedule=None) -> None:
        self.path = path
        self._file = open_output(path)
        self.pending: list[bytes] = []
        self.schedule = schedule
        self.lines = 0
        self.error: OSError | None = None  # the first write that failed; nothing is kept after it

    def add(self, record: dict) -> None:
        self.add_line(orjson.dumps(record, default=_json_default, option=orjson.OPT_NON_STR_KEYS) + b"\n")

    def add_line(self, line: bytes) -> None:
        if self.error is None:  # once writing failed, lines would only pile up in memory
            if not self.pending and self.schedule is not None:
                self.schedule()
            self.pending.append(line)

    def flush(self) -> None:
        """Writes what is pending; an OSError (disk full, closed pipe) is kept in .error and re-raised."""
        pending = self.pending
        if self.error is not None:
            pending.clear()
            raise self.error
        try:
            if pending:
                data = b"".join(pending)
                pending.clear()  # the same list: the receive path holds it
                self._file.write(data)
                self.lines += data.count(b"\n")  # a JSON line holds no other newline
            self._file.flush()
        except OSError as exc:
            self.error = exc
            pending.clear()
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
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    failed: list[str] = []
    where = "standard output" if out == "-" else out

    def write_pending() -> None:
        try:
            writer.flush()
        except OSError as exc:
            if not failed:
                failed.append(f"Cannot write to {where} ({exc.strerror or exc}); stopped capturing.")
            stop.set()

    writer = JsonlWriter(out, schedule=lambda: loop.call_soon(write_pending))
    on_fast_message = None

    if platform is None:
        maker = LineMaker()
        make_line = maker.line
        add_line = writer.add_line

        def on_message(msg: ReceivedMessage) -> None:
            add_line(make_line(msg))

        # QoS 0 over MQTT 3.x, straight from the packet decoder: no ReceivedMessage, no call per
        # fragment; the time is formatted once per read from the socket.
        # The common case (printable ASCII) inline: a function call costs as much as its test.
        pending = writer.pending
        extend = pending.extend
        head_at = maker.head
        topics = maker._topics  # noqa: SLF001 - read here, filled by maker.topic
        topic_fragment = maker.topic
        dumps = orjson.dumps
        control = _ASCII_CONTROL
        qos0 = (_FLAGS[0, False, False], _FLAGS[0, True, False])
        read_at = [None, b""]  # the received_at of the current read, and its head fragment

        def on_fast_message(topic: str, payload: bytes, retain: bool, received_at: float) -> None:
            if not pending:
                if writer.error is not None:  # writing failed: keep nothing (flush cleared pending)
                    return
                loop.call_soon(write_pending)
            if received_at is not read_at[0]:
                read_at[0], read_at[1] = received_at, head_at(received_at)
            topic_json = topics.get(topic) or topic_fragment(topic)
            if payload.isascii() and len(payload.translate(None, control)) == len(payload):
                extend((read_at[1], topic_json, qos0[retain], dumps(payload.decode("ascii")), _TEXT_LINE_END))
            else:
                text, end = payload_fragment(payload)
                extend((read_at[1], topic_json, qos0[retain], text, end, _NO_PROPERTIES))
    else:

        def on_message(msg: ReceivedMessage) -> None:
            for event in platform.parse_or_error(msg.topic, msg.payload, msg.properties):
                record = event.to_dict()
                if msg.dup:
                    record["dup"] = True
                writer.add(record)

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

    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # Windows: Ctrl+C raises KeyboardInterrupt instead
            pass

    async def flusher() -> None:
        while not stop.is_set():
            await asyncio.sleep(FLUSH_INTERVAL)
            write_pending()

    session = MqttSession(
        config, on_message=on_message, on_fast_message=on_fast_message, on_state=on_state, credentials=credentials
    )
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
        failed.append(f"Cannot write to {where} ({writer.error.strerror or writer.error}); stopped capturing.")
    if failed:
        _say(failed[0])
        return 1
    _say(f"Wrote {writer.lines} line{'s' if writer.lines != 1 else ''} to {out}.")
    return 0

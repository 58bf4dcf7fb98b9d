"""Sessions in a child process: the GUI process keeps its interpreter lock to itself.

Measured on the 2-core machines this runs on: with the session on a thread of the GUI process,
socket reading and the window's painting fight over one GIL, and every call Qt makes into Python
while painting (a thousand per repaint) waits for it; the GUI then stalls for 60-300 ms under a
flood. In a child process the socket work, MQTT decoding and platform parsing run on the other
core, and the GUI process only unpickles finished batches.

Protocol (tuples over a multiprocessing Pipe):
    parent -> child: (call_id, op, *args)       ops: start, stop, subscribe, unsubscribe, publish, exit,
                                                     downlink_send, downlink_cancel, downlink_retry, downlinks
    child -> parent: ("reply", call_id, ok, result_or_error_sentence)
                     ("state", session_id, StateChange)
                     ("batch", session_id, [item, ...])   items: ReceivedMessage, or event tuples
                     ("history", session_id, column batch)   replayed history, newest batch first
                     ("history", session_id, None)           the replay is over
                     ("downlinks", outbox key, [entry dict, ...])   every change of that outbox
                     ("downlink_notice", outbox key, sentence or None)

Outboxes (app/outbox.py) live here too, one OutboxRunner per connection key (the session's history
name): it drains while that connection's session is connected and follows delivery on the events
the session's parser already makes (only downlink_* kinds reach it; the uplink path is untouched).
A window may put a downlink in the outbox while no session runs: it waits for the next connection.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import itertools
import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Callable

from app.mqtt.config import ConnectionConfig, Subscription
from app.mqtt.session import StateChange

log = logging.getLogger(__name__)
FLUSH_INTERVAL = 0.02  # seconds between batches from the child
ENGINE_NICENESS = 10  # the engine outruns a bare paho subscriber ~1.4x: it can yield to the window
HISTORY_NICENESS = 15  # the history thread yields to the receive loop (Linux)
# Rows the history may lag behind a burst before further rows go unsaved (~1.4 KB each on disk;
# in memory here the rows and raw bodies, ~1 KB each for TTS): a burst of minutes is absorbed.
HISTORY_BACKLOG_ROWS = 300_000
HEARTBEAT_INTERVAL = 1.0  # seconds between the window's pings of its engine
HEARTBEAT_TIMEOUT = 10.0  # an engine silent this long is stopped and started again
ENGINE_LOG_NAME = "uplink-console-engine.log"
PREVIOUS_WRITER_WAIT = 30.0  # seconds a new session waits for the last one's history to finish
MAX_BATCH = 4000  # send early when this many items are waiting


class EngineGone(RuntimeError):
    pass


# ----- child side --------------------------------------------------------------------------


def engine_main(conn) -> None:
    """Entry point of the engine process."""
    # The engine's tracebacks and library lines go to the log file, like the window's: the
    # window shows sentences (notices, states), never a traceback on the terminal.
    from app import logfile

    # A file of its own: two processes rotating one file would push each other's lines away.
    logfile.install(verbose=bool(os.environ.get("UPLINK_CONSOLE_DEBUG")), name=ENGINE_LOG_NAME)
    if hasattr(os, "nice"):
        # When both cores are busy the window's repaints come first: a frozen window is worse
        # than a batch arriving a few milliseconds later (the engine has headroom, see bench).
        try:
            os.nice(ENGINE_NICENESS)
        except OSError:
            pass
    try:
        asyncio.run(_serve(conn))
    except KeyboardInterrupt:
        pass


class _HistoryThread:
    """Appends a session's rows to its SQLite history on a thread of the engine process.

    SQLite does its work without the interpreter lock, so most of the ~12 us a row costs runs
    beside the receive loop instead of in it, and at a lower scheduling priority: during a burst
    the live view comes first and the history catches up after (measured: with the history
    writer competing equally, a 200k burst reached the table 20% slower).

    The live path never waits for it: `put` only appends to a queue. Past HISTORY_BACKLOG_ROWS
    rows waiting (a disk slower than the stream, a writer stuck on a lock) further batches are
    not saved, counted, and the window is told in a lasting notice; the table goes on. Every
    failure of the writer is caught: a batch it cannot store is skipped and reported, a file it
    cannot write any more stops the history with a sentence (the table goes on)."""

    def __init__(self, name: str, notify: Callable[[str, str | None], None], retention=None) -> None:
        import queue

        self.name = name
        self.retention = retention
        self.notify = notify  # (notice key, sentence or None to withdraw it)
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self.ready = threading.Event()
        self.next_id: int | None = None
        self.failed: str | None = None
        self.read_only = False
        self.queued_rows = 0  # counted by the engine's loop only
        self.taken_rows = 0  # counted by this thread only
        self.dropped_rows = 0
        self.behind = False  # rows are being dropped now (set by put, cleared by the thread)
        self.last_id = 0  # the largest id queued (a later session of the same history starts above it)
        self.thread = threading.Thread(target=self._main, name="engine-history", daemon=True)
        self.thread.start()

    def _open(self):
        from app.history import HistoryError, HistoryWriter, data_dir, history_path

        try:
            path = history_path(self.name)
            if self.retention is None:
                writer = HistoryWriter.open_or_recover(path)
            else:
                writer = HistoryWriter.open_or_recover(path, self.retention)
            self.next_id = writer.next_id
            if writer.recovered_from is not None:
                self.notify(
                    "history-recovered",
                    f"The history file was damaged; it was kept as {writer.recovered_from} and a new one started.",
                )
            return writer
        except (HistoryError, OSError) as exc:
            reason = _unwritable_folder()
            self.read_only = reason is not None
            if reason is not None:
                self.failed = (
                    f"History is read-only: {reason}. Past rows are shown; new rows are not saved. Point "
                    "UPLINK_CONSOLE_DATA_DIR at a writable folder to keep them."
                )
            elif _disk_full(exc):
                self.failed = (
                    f"History is off for this connection: the disk holding {data_dir()} is full. New rows are "
                    "shown but not saved; free some space and connect again."
                )
            else:
                self.failed = f"History is off for this connection: {exc}"
        except Exception as exc:  # noqa: BLE001 - the live view works without history
            log.exception("history could not be opened")
            self.failed = f"History is off for this connection: the file could not be opened ({exc!r})."
        self.notify("history", self.failed)
        return None

    def _main(self) -> None:
        if hasattr(os, "setpriority") and hasattr(threading, "get_native_id"):
            try:  # Linux: a thread id here sets this thread's priority only
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), HISTORY_NICENESS)
            except OSError:
                pass
        writer = self._open()
        self.ready.set()
        while True:
            item = self.queue.get()
            if item is None:
                break
            rows, raws, dup_ids = item
            self.taken_rows += len(rows)
            if writer is None:
                continue
            writer = self._write(writer, rows, raws, dup_ids)
            if self.behind and self.queued_rows == self.taken_rows:
                self.behind = False  # one notice per episode: caught up
                self.notify(
                    "history-behind",
                    f"History missed {self.dropped_rows:,} rows while it was behind (the disk was slower than "
                    "the stream); they are in the table but not saved.",
                )
        if writer is not None:
            try:
                writer.close()
            except Exception:  # noqa: BLE001
                log.exception("history close failed")

    def _write(self, writer, rows: list, raws: list, dup_ids=None):
        """Writes one batch; returns the writer to go on with, or None when history stopped."""
        from app.history import HistoryCorrupt, HistoryError

        try:
            writer.take_ids(len(rows))
            writer.append(rows, raws, dup_ids)
            return writer
        except HistoryCorrupt:
            try:
                moved = writer.recover()
                self.notify(
                    "history-recovered", f"The history file was damaged; it was kept as {moved} and a new one started."
                )
                writer.append(rows, raws, dup_ids)
                return writer
            except Exception as exc:  # noqa: BLE001
                return self._stop(writer, exc)
        except HistoryError as exc:
            return self._stop(writer, exc)
        except Exception as exc:  # noqa: BLE001 - a batch it cannot store must not stop the others
            log.exception("history could not store a batch")
            self.notify(
                "history-batch",
                f"History could not save {len(rows):,} rows ({type(exc).__name__}: {exc}); they are in the "
                "table, and later rows are saved.",
            )
            return writer

    def _stop(self, writer, exc: BaseException):
        if _disk_full(exc):
            from app.history import data_dir

            self.failed = (
                f"History stopped: the disk holding {data_dir()} is full. New rows are shown but not saved; "
                "free some space and connect again."
            )
        else:
            self.failed = f"History stopped: {exc} New rows are shown but not saved until you connect again."
        log.warning("%s", self.failed)
        self.notify("history", self.failed)
        try:
            writer.close()
        except Exception:  # noqa: BLE001
            pass
        return None

    def put(self, rows: list, raws: list, dup_ids=None) -> None:
        """Never blocks the live path (see the class's docstring)."""
        if self.failed is not None:
            return
        if self.queued_rows - self.taken_rows > HISTORY_BACKLOG_ROWS:
            first = not self.behind
            self.behind = True
            self.dropped_rows += len(rows)
            if first:
                self.notify(
                    "history-behind",
                    "History is falling behind the stream (the disk is slower than the messages arrive): "
                    "rows are shown but not all are saved until it catches up.",
                )
            return
        self.queued_rows += len(rows)
        last = rows[-1][0]
        if last is not None:
            self.last_id = last
        self.queue.put((rows, raws, dup_ids))

    def close(self) -> None:
        self.queue.put(None)
        self.thread.join(10)


def _disk_full(exc: BaseException) -> bool:
    import errno

    seen = 0
    while exc is not None and seen < 5:
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            return True
        if getattr(exc, "sqlite_errorname", "") == "SQLITE_FULL" or "is full" in str(exc):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def _unwritable_folder() -> str | None:
    """Why the history folder cannot be written at all (a read-only mount, no permission), or None."""
    import errno
    import tempfile

    from app.history import data_dir

    folder = data_dir() / "history"
    try:
        with tempfile.TemporaryFile(dir=folder if folder.is_dir() else data_dir()):
            return None
    except OSError as probe:
        if probe.errno == errno.EROFS:
            return f"{folder} is on a read-only file system"
        if probe.errno in (errno.EACCES, errno.EPERM):
            return f"{folder} cannot be written (permission denied)"
        return None


class _Channel:
    """One session's outgoing side in the engine: pending items, history, column batches."""

    __slots__ = ("sid", "items", "raws", "dups", "columns", "history", "next_id", "outbox", "outbox_publish")

    def __init__(self, sid: int, columns: bool, history: _HistoryThread | None, outbox=None) -> None:
        self.sid = sid
        self.outbox = outbox  # app.outbox.OutboxRunner of the connection, or None
        self.outbox_publish = None  # what this session attached to it
        self.items: list = []
        self.raws: list = []
        self.dups: list[int] = []  # positions in items of rows from a message with the MQTT DUP flag
        self.columns = columns
        self.history = history
        self.next_id = history.next_id if history is not None and history.next_id is not None else None


async def _serve(conn) -> None:
    from app.events import error_event
    from app.mqtt.errors import SessionError
    from app.mqtt.session import MqttSession
    from app.store import columns_from_rows, event_row

    loop = asyncio.get_running_loop()
    inbox: asyncio.Queue = asyncio.Queue()  # operations, in order
    send_lock = threading.Lock()  # the loop, history loading and the history thread all send

    def send(msg) -> None:
        try:
            with send_lock:
                conn.send(msg)
        except (OSError, EOFError, BrokenPipeError):
            loop.call_soon_threadsafe(inbox.put_nowait, (0, "exit"))

    def read_commands() -> None:
        while True:
            try:
                msg = conn.recv()
            except (EOFError, OSError):
                msg = (0, "exit")
            if msg[1] == "ping":
                # Answered by the loop itself: a loop that is stuck does not answer.
                loop.call_soon_threadsafe(send, ("reply", msg[0], True, None))
                continue
            loop.call_soon_threadsafe(inbox.put_nowait, msg)
            if msg[1] == "exit":
                return

    threading.Thread(target=read_commands, name="engine-commands", daemon=True).start()
    sessions: dict[int, MqttSession] = {}
    channels: dict[int, _Channel] = {}
    histories: dict[str, _HistoryThread] = {}  # the latest writer of each history file
    outboxes: dict = {}  # outbox key -> app.outbox.OutboxRunner

    async def outbox_for(key: str):
        from app.outbox import OutboxRunner

        runner = outboxes.get(key)
        if runner is None:
            runner = OutboxRunner(
                key,
                lambda entries: send(("downlinks", key, entries)),
                on_problem=lambda sentence: send(("downlink_notice", key, sentence)),
            )
            await runner.open()
            outboxes[key] = runner
        return runner

    def flush(ch: _Channel) -> None:
        items = ch.items
        if not items:
            return
        ch.items = []
        if ch.columns:
            # Transposed here, on the engine's core: the GUI process only extends arrays. A row
            # the table cannot hold is replaced by an error row in `items` itself, so the history
            # stores what the table shows.
            dup = None
            dups, ch.dups = ch.dups, []
            if dups:  # a redelivery: the batch gets a dup column (none when nothing was redelivered)
                dup = bytearray(len(items))
                for i in dups:
                    dup[i] = 1
            columns = columns_from_rows(items, dup=dup)
            if ch.history is not None:
                raws, ch.raws = ch.raws, []
                ch.history.put(items, raws, [items[i][0] for i in dups] if dups else None)
            send(("batch", ch.sid, columns))
        else:
            send(("batch", ch.sid, items))

    async def flusher() -> None:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL)
            for ch in list(channels.values()):
                flush(ch)

    def make_sinks(ch: _Channel, platform_name: str | None, profile: dict):
        if platform_name:
            from app import platforms

            platform = platforms.get(platform_name)
            parse = platform.parser_for(profile).parse_or_error
            fast = platform.row_parser(profile)
            keep_raw = ch.next_id is not None
            track = ch.outbox.observe if ch.outbox is not None else None
            from app.outbox import DOWNLINK_KINDS

            def add_error(msg, text: str) -> None:
                event = error_event(platform_name, msg.topic, text)
                ch.items.append(event_row(event, msg.received_at, ch.next_id))
                if keep_raw:
                    ch.raws.append((msg.topic, msg.payload, msg.properties, event.received_at, ()))
                    ch.next_id += 1

            def take(msg) -> None:
                # Neither parser raises, and both refuse bodies too large or too deeply nested
                # before decoding them (app/platforms/base.py body_problem).
                ts = msg.received_at
                payload = msg.payload
                if fast is not None and msg.properties is None:
                    parsed = fast(msg.topic, payload, ts, ch.next_id)
                    if parsed is not None:
                        row, received_at, cids = parsed
                        ch.items.append(row)
                        if keep_raw:
                            ch.raws.append((msg.topic, payload, None, received_at, cids))
                            ch.next_id += 1
                        return
                for event in parse(msg.topic, payload, msg.properties):
                    ch.items.append(event_row(event, ts, ch.next_id))
                    if keep_raw:
                        ch.raws.append((msg.topic, payload, msg.properties, event.received_at, event.correlation_ids))
                        ch.next_id += 1
                    if track is not None and event.kind in DOWNLINK_KINDS:
                        track(event)  # the outbox's own thread does the work; the row stays in the table

            def on_message(msg) -> None:
                # Called from the socket reader: whatever a message holds, it must not raise
                # (that would tear the connection down) and must leave items and raws paired.
                n_items, n_raws, next_id = len(ch.items), len(ch.raws), ch.next_id
                try:
                    take(msg)
                except Exception as exc:  # noqa: BLE001 - one odd message becomes one error row
                    log.exception("a message could not be processed")
                    del ch.items[n_items:], ch.raws[n_raws:]
                    ch.next_id = next_id
                    add_error(
                        msg,
                        f"The message could not be processed ({type(exc).__name__}: {exc}); it is kept "
                        "as an error row. Please report it with the raw message.",
                    )
                if msg.dup:
                    ch.dups.extend(range(n_items, len(ch.items)))
                if len(ch.items) >= MAX_BATCH:
                    flush(ch)
        else:

            def on_message(msg) -> None:
                ch.items.append(msg)
                if len(ch.items) >= MAX_BATCH:
                    flush(ch)

        def on_state(change: StateChange) -> None:
            flush(ch)
            send(("state", ch.sid, change))
            if ch.outbox is not None:
                ch.outbox.set_connected(change.state == "connected", ch.outbox_publish)

        return on_message, on_state

    def history_failed(sid: int, exc: Exception) -> None:
        from app.history import HistoryError

        if isinstance(exc, HistoryError | OSError):
            send(("notice", sid, "history-read", f"The history of this connection could not be read: {exc}"))
        else:  # the live view works without the past
            log.error("history could not be loaded", exc_info=exc)
            send(("notice", sid, "history-read", f"The history of this connection could not be read ({exc!r})."))

    # Newest-first replays in progress: session id -> (the reader's batches, an event set to stop).
    replays: dict[int, tuple] = {}

    def replay_first(sid: int, name: str, limit: int) -> None:
        """Opens the replay and sends its first (newest) batch; the rest follows in replay_rest."""
        from app.history import HistoryReader, history_path

        try:
            reader = HistoryReader(history_path(name))
            batches = reader.load_newest_first(limit)
            replays[sid] = (reader, batches, threading.Event())
            for batch in batches:
                send(("history", sid, batch))
                break
        except Exception as exc:  # noqa: BLE001 - one sentence for the window
            replays.pop(sid, None)
            history_failed(sid, exc)

    def replay_rest(sid: int) -> None:
        """The older batches, beside the live session (each older than every row sent before it)."""
        entry = replays.get(sid)
        if entry is None:
            return
        reader, batches, stopping = entry
        try:
            for batch in batches:
                if stopping.is_set():
                    break
                send(("history", sid, batch))
        except Exception as exc:  # noqa: BLE001 - one sentence for the window
            history_failed(sid, exc)
        finally:
            replays.pop(sid, None)
            reader.close()
            send(("history", sid, None))  # the replay is over

    async def start(
        sid: int,
        config,
        platform_name,
        profile,
        history_name,
        history_rows,
        retention=None,
        first_id: int = 0,
        newest_first: bool = False,
    ) -> None:
        """first_id: the lowest history id this session may hand out (the window already holds
        rows up to it, e.g. from an engine that was replaced before its history caught up).
        newest_first: the history (up to history_rows) is replayed as "history" messages, newest
        batch first, and the live session starts right after the first one (the window puts
        replayed rows above its rows, so live rows and older history never need to interleave);
        without it nothing is replayed."""
        history = None
        if platform_name and history_name:
            previous = histories.get(history_name)
            if previous is not None and previous.thread.is_alive():
                # The last session of this history is still writing its backlog: one writer per file.
                await loop.run_in_executor(None, previous.thread.join, PREVIOUS_WRITER_WAIT)
            if previous is not None:
                first_id = max(first_id, previous.last_id + 1)
            if history_rows and newest_first:
                await loop.run_in_executor(None, replay_first, sid, history_name, history_rows)
                if sid in replays:
                    loop.run_in_executor(None, replay_rest, sid)
                else:
                    send(("history", sid, None))  # nothing (more) to replay
            if previous is not None and previous.thread.is_alive():
                send(
                    (
                        "notice",
                        sid,
                        "history",
                        "History is off for this connection: the previous connection to it is still saving its "
                        "backlog. New rows are shown but not saved; connect again in a minute.",
                    )
                )
            else:
                history = histories[history_name] = _HistoryThread(
                    history_name, lambda key, text: send(("notice", sid, key, text)), retention
                )
                await loop.run_in_executor(None, history.ready.wait, 10)
        runner = None
        if platform_name and history_name:
            try:
                runner = await outbox_for(history_name)
            except Exception as exc:  # noqa: BLE001 - the live view works without the outbox
                log.exception("outbox could not be opened")
                send(("notice", sid, "outbox", f"Downlinks cannot be sent from this connection: {exc}"))
        ch = channels[sid] = _Channel(sid, bool(platform_name), history, runner)
        if ch.next_id is not None and first_id > ch.next_id:
            ch.next_id = first_id
        on_message, on_state = make_sinks(ch, platform_name, profile or {})
        credentials = None
        if platform_name:
            from app import platforms

            provider = platforms.get(platform_name).credentials_provider(profile or {})
            if provider is not None:
                credentials = _first_two(provider)
        session = MqttSession(config, on_message=on_message, on_state=on_state, credentials=credentials)
        sessions[sid] = session
        if runner is not None:
            from app.outbox import session_publisher

            ch.outbox_publish = session_publisher(session)
            runner.attach(ch.outbox_publish)
        await session.start()

    async def stop(sid: int) -> None:
        replay = replays.get(sid)
        if replay is not None:
            replay[2].set()  # the replay stops after the batch it is reading
        session = sessions.pop(sid, None)
        ch = channels.get(sid)
        if ch is not None and ch.outbox is not None:
            ch.outbox.detach(ch.outbox_publish)  # a newer session of the same connection keeps its own
        if session is not None:
            await session.stop()
        ch = channels.pop(sid, None)
        if ch is not None:
            flush(ch)
            if ch.history is not None:
                await loop.run_in_executor(None, ch.history.close)

    flush_task = loop.create_task(flusher())
    try:
        while True:
            call_id, op, *args = await inbox.get()
            if op == "exit":
                break
            try:
                result = None
                if op == "start":
                    await start(*args)
                elif op == "stop":
                    await stop(args[0])
                elif op == "downlink_send":
                    result = await (await outbox_for(args[0])).send(args[1], args[2])
                elif op == "downlink_cancel":
                    result = await (await outbox_for(args[0])).cancel(args[1])
                elif op == "downlink_retry":
                    result = await (await outbox_for(args[0])).retry(args[1])
                elif op == "downlinks":
                    result = await (await outbox_for(args[0])).entries()
                else:
                    session = sessions.get(args[0])
                    if session is None:
                        raise SessionError("That connection is closed; connect again.")
                    if op == "subscribe":
                        result = await session.subscribe(args[1])
                    elif op == "unsubscribe":
                        await session.unsubscribe(args[1])
                    elif op == "publish":
                        topic, payload, kw = args[1:]
                        await session.publish(topic, payload, **kw)
                    elif op == "wait_connected":
                        await session.wait_connected(args[1])
                    else:
                        raise ValueError(f"unknown engine operation {op!r}")
                send(("reply", call_id, True, result))
            except Exception as exc:  # noqa: BLE001 - every failure goes back as a sentence
                text = str(exc) or type(exc).__name__
                if isinstance(exc, TimeoutError):
                    text = "Timed out."
                send(("reply", call_id, False, (type(exc).__name__, text)))
    finally:
        flush_task.cancel()
        for sid in list(sessions):
            try:
                await asyncio.wait_for(stop(sid), 5)
            except Exception:  # noqa: BLE001
                pass
        for runner in list(outboxes.values()):
            try:
                await asyncio.wait_for(runner.close(), 5)
            except Exception:  # noqa: BLE001
                pass


def _first_two(provider):
    def credentials():
        result = provider()
        return result[0], result[1]

    return credentials


# ----- parent side -------------------------------------------------------------------------


class EngineProcess:
    """The parent's handle on the engine process; thread-safe; async calls from any loop.

    A watchdog thread pings the engine every HEARTBEAT_INTERVAL; an engine that has not answered
    for `heartbeat_timeout` seconds, or whose process ended, is reported once to `on_lost` with a
    sentence (the owner then starts a new engine and resumes its sessions: see ui/bridge.py)."""

    def __init__(self, on_lost: Callable[[str], None] | None = None, heartbeat_timeout: float | None = None) -> None:
        ctx = multiprocessing.get_context("spawn")  # fork is unsafe in a process running Qt threads
        self._conn, child_conn = ctx.Pipe(duplex=True)
        self.process = ctx.Process(target=engine_main, args=(child_conn,), name="uplink-engine", daemon=True)
        self.process.start()
        child_conn.close()
        # Every message to the engine goes through one writer thread: a caller (the GUI thread)
        # never blocks on a pipe that a stopped engine does not read.
        import queue

        self._outbox: queue.SimpleQueue = queue.SimpleQueue()
        self._writer = threading.Thread(target=self._write, name="engine-writer", daemon=True)
        self._calls: dict[int, concurrent.futures.Future] = {}
        self._ids = itertools.count(1)
        self._sinks: dict[int, tuple[Callable, Callable, Callable | None]] = {}
        # outbox key -> (on_entries(list of entry dicts), on_notice(sentence or None) or None)
        self._downlink_sinks: dict[str, tuple[Callable, Callable | None]] = {}
        self._closed = False
        self._closing = False  # close() was called: an ending engine is no surprise
        self.on_lost = on_lost
        self.heartbeat_timeout = HEARTBEAT_TIMEOUT if heartbeat_timeout is None else heartbeat_timeout
        self.last_answer = time.monotonic()  # of any message from the engine
        self.lost: str | None = None  # the sentence, once the engine is lost
        self._stop_watch = threading.Event()
        # At interpreter exit multiprocessing terminates daemon children: that is no surprise.
        # (atexit runs handlers last-registered first, so this runs before multiprocessing's.)
        atexit.register(self._exiting)
        self._reader = threading.Thread(target=self._read, name="engine-reader", daemon=True)
        self._reader.start()
        self._writer.start()
        self._watchdog = threading.Thread(target=self._watch, name="engine-watchdog", daemon=True)
        self._watchdog.start()

    def _exiting(self) -> None:
        self._closing = True
        self._stop_watch.set()

    @property
    def pid(self) -> int | None:
        return self.process.pid

    def new_session_id(self) -> int:
        return next(self._ids)

    def register(
        self,
        sid: int,
        on_batch: Callable,
        on_state: Callable,
        on_notice: Callable | None = None,
        on_history: Callable | None = None,
    ) -> None:
        """on_notice(key, sentence or None): a lasting notice of that session, None withdraws it.
        on_history(column batch): replayed history, newest batch first (see ProcessSession)."""
        self._sinks[sid] = (on_batch, on_state, on_notice, on_history)

    def unregister(self, sid: int) -> None:
        self._sinks.pop(sid, None)

    # ----- downlinks (app/outbox.py): the outbox of a connection key lives in the engine
    def watch_downlinks(self, key: str, on_entries: Callable[[list], None], on_notice: Callable | None = None) -> None:
        """on_entries(list of entry dicts) for every change of that outbox, on the reader thread."""
        self._downlink_sinks[key] = (on_entries, on_notice)

    def unwatch_downlinks(self, key: str) -> None:
        self._downlink_sinks.pop(key, None)

    async def send_downlink(self, key: str, message, meta: dict | None = None) -> dict:
        """Puts the downlink in the outbox of `key`; its entry dict. OutboxFull when it is full."""
        return await self.run("downlink_send", key, message, dict(meta or {}))

    async def cancel_downlink(self, key: str, downlink_id: str) -> dict:
        return await self.run("downlink_cancel", key, downlink_id)

    async def retry_downlink(self, key: str, downlink_id: str) -> dict:
        return await self.run("downlink_retry", key, downlink_id)

    async def downlinks(self, key: str) -> list[dict]:
        return await self.run("downlinks", key)

    def _send(self, msg) -> None:
        self._outbox.put(msg)

    def _write(self) -> None:
        while True:
            msg = self._outbox.get()
            if msg is None:
                return
            try:
                self._conn.send(msg)
            except (OSError, EOFError, ValueError) as exc:
                if msg[1] != "ping":
                    self._fail(msg[0], EngineGone(self.lost or f"The connection engine has stopped ({exc})."))
                if self._closing or self.lost:
                    return

    def _fail(self, call_id: int, exc: Exception) -> None:
        fut = self._calls.pop(call_id, None)
        if fut is not None:
            try:
                fut.set_exception(exc)
            except concurrent.futures.InvalidStateError:
                pass

    def call(self, op: str, *args) -> concurrent.futures.Future:
        fut: concurrent.futures.Future = concurrent.futures.Future()
        if self._closed or self.lost:
            fut.set_exception(EngineGone(self.lost or "The connection engine has stopped; restart the console."))
            return fut
        call_id = next(self._ids)
        self._calls[call_id] = fut
        self._send((call_id, op, *args))
        return fut

    async def run(self, op: str, *args):
        return await asyncio.wrap_future(self.call(op, *args))

    def _watch(self) -> None:
        last_tick = time.monotonic()
        while not self._stop_watch.wait(HEARTBEAT_INTERVAL):
            if self._closing:
                return
            if self._closed or not self.process.is_alive():
                self._lose_ended()
                return
            now = time.monotonic()
            if now - last_tick > 3 * HEARTBEAT_INTERVAL:
                # This process itself was stopped (Ctrl+Z, a paused VM): the engine's silence is ours.
                self.last_answer = now
            last_tick = now
            silent = now - self.last_answer
            if silent > self.heartbeat_timeout:
                self._lose(f"The connection engine stopped answering for {silent:.0f} s.")
                return
            self._send((next(self._ids), "ping"))

    def _lose_ended(self) -> None:
        self.process.join(1)
        code = self.process.exitcode
        how = "" if code is None else f" (exit status {code})" if code >= 0 else f" (signal {-code})"
        self._lose(f"The connection engine has stopped unexpectedly{how}.")

    def _lose(self, sentence: str) -> None:
        if self.lost or self._closing:
            return
        self.lost = sentence
        log.warning("%s", sentence)
        if self.process.is_alive():
            self.process.kill()  # a writer blocked on the pipe then fails at once
        for call_id in list(self._calls):
            self._fail(call_id, EngineGone(sentence))
        if self.on_lost is not None:
            try:
                self.on_lost(sentence)
            except Exception:  # noqa: BLE001 - the owner's problem, not the watchdog's
                log.exception("engine-lost observer failed")

    def _read(self) -> None:
        sink = fut = value = None
        while True:
            try:
                msg = self._conn.recv()
            except (EOFError, OSError):
                break
            self.last_answer = time.monotonic()
            kind = msg[0]
            try:
                if kind == "batch":
                    sink = self._sinks.get(msg[1])
                    if sink is not None:
                        sink[0](msg[2])
                elif kind == "history":
                    sink = self._sinks.get(msg[1])
                    if sink is not None and sink[3] is not None:
                        sink[3](msg[2])
                elif kind == "state":
                    sink = self._sinks.get(msg[1])
                    if sink is not None:
                        sink[1](msg[2])
                elif kind == "notice":
                    sink = self._sinks.get(msg[1])
                    if sink is not None and sink[2] is not None:
                        sink[2](msg[2], msg[3])
                elif kind == "downlinks" or kind == "downlink_notice":
                    sink = self._downlink_sinks.get(msg[1])
                    if sink is not None:
                        if kind == "downlinks":
                            sink[0](msg[2])
                        elif sink[1] is not None:
                            sink[1](msg[2])
                elif kind == "reply":
                    _, call_id, ok, value = msg
                    fut = self._calls.pop(call_id, None)
                    if fut is None:
                        continue
                    try:
                        if ok:
                            fut.set_result(value)
                        else:
                            fut.set_exception(_rebuild_error(*value))
                    except concurrent.futures.InvalidStateError:
                        pass  # failed meanwhile (the engine was declared lost)
            except Exception:  # noqa: BLE001 - a sink's failure must not stop every other message
                log.exception("engine message %r could not be delivered", kind)
            # Released now, while the window still holds its own references: kept until the next
            # message (or this thread's end), this thread could hold the last reference to a
            # future (through its callbacks, a window's event loop) or a sink (a Qt object's
            # method) and free it off the GUI thread (seen: a qasync loop freed here left a Qt
            # timer on a dead object, and a later window crashed).
            msg = sink = fut = value = None
        self._closed = True
        if not self._closing:
            self._lose_ended()
        for call_id in list(self._calls):
            self._fail(call_id, EngineGone(self.lost or "The connection engine has stopped; restart the console."))

    def close(self, timeout: float = 3.0) -> None:
        self._closing = True
        self._stop_watch.set()
        atexit.unregister(self._exiting)
        if not self._closed and not self.lost:
            self._send((0, "exit"))
        self._outbox.put(None)
        if self.lost:
            timeout = 0  # it does not answer: no goodbye to wait for
        else:
            self._writer.join(timeout)
        self.process.join(timeout)
        if self.process.is_alive():
            self.process.kill()  # SIGKILL also ends a stopped (SIGSTOP) process
            self.process.join(2)
        self._closed = True
        self._conn.close()


def _rebuild_error(kind: str, text: str) -> Exception:
    from app.mqtt.config import ConfigError
    from app.mqtt.errors import SessionError

    if kind == "ConfigError":
        return ConfigError(text)
    if kind == "TimeoutError":
        return TimeoutError(text)
    if kind in ("OutboxFull", "OutboxError"):
        from app.outbox import OutboxError, OutboxFull

        return OutboxFull(text) if kind == "OutboxFull" else OutboxError(text)
    return SessionError(text)


class ProcessSession:
    """One session in the engine process, with the same async API as MqttSession."""

    def __init__(
        self,
        engine: EngineProcess,
        config: ConnectionConfig,
        *,
        on_batch: Callable[[list], None],
        on_state: Callable[[StateChange], None],
        platform: str | None = None,
        profile: dict | None = None,
        history_name: str | None = None,
        history_rows: int = 0,
        on_notice: Callable[[str, str | None], None] | None = None,
        retention=None,
        first_id: int = 0,
        on_history: Callable[[dict], None] | None = None,
    ) -> None:
        """history_name: keep every event in that profile's SQLite history (platform sessions).
        on_history (with history_rows): first up to history_rows of its newest rows go there as
        column batches, newest batch first (the first holds the newest 2,000 rows, each later one
        the rows just older than the one before), the live session starting right after the
        first: the newest rows show at once and a million rows of history never hold the live
        rows back. on_history gets None once the replay is over (complete, stopped or failed)."""
        self.engine = engine
        self.config = config
        self.platform = platform
        self.profile = profile
        self.history_name = history_name
        self.history_rows = history_rows
        self.retention = retention  # app.history.Retention, or None for its defaults
        self.first_id = first_id  # the lowest history id this session may hand out
        self.history_newest_first = on_history is not None
        self.id = engine.new_session_id()
        engine.register(self.id, on_batch, on_state, on_notice, on_history)

    async def start(self) -> None:
        await self.engine.run(
            "start",
            self.id,
            self.config,
            self.platform,
            self.profile,
            self.history_name,
            self.history_rows,
            self.retention,
            self.first_id,
            self.history_newest_first,
        )

    async def stop(self) -> None:
        try:
            await self.engine.run("stop", self.id)
        finally:
            self.engine.unregister(self.id)

    async def subscribe(self, sub: Subscription | str, qos: int = 0):
        if isinstance(sub, str):
            sub = Subscription(sub, qos)
        return await self.engine.run("subscribe", self.id, sub)

    async def unsubscribe(self, topic: str) -> None:
        await self.engine.run("unsubscribe", self.id, topic)

    async def publish(self, topic: str, payload, **kw) -> None:
        await self.engine.run("publish", self.id, topic, payload, kw)

    async def wait_connected(self, timeout: float | None = None) -> None:
        await self.engine.run("wait_connected", self.id, timeout)

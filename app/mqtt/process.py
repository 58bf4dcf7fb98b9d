"""Sessions in a child process: the GUI process keeps its interpreter lock to itself.

Measured on the 2-core machines this runs on: with the session on a thread of the GUI process,
socket reading and the window's painting fight over one GIL, and every call Qt makes into Python
while painting (a thousand per repaint) waits for it; the GUI then stalls for 60-300 ms under a
flood. In a child process the socket work, MQTT decoding and platform parsing run on the other
core, and the GUI process only unpickles finished batches.

Protocol (tuples over a multiprocessing Pipe):
    parent -> child: (call_id, op, *args)       ops: start, stop, subscribe, unsubscribe, publish, exit
    child -> parent: ("reply", call_id, ok, result_or_error_sentence)
                     ("state", session_id, StateChange)
                     ("batch", session_id, [item, ...])   items: ReceivedMessage, or event tuples
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import logging
import multiprocessing
import os
import threading
from collections.abc import Callable

from app.mqtt.config import ConnectionConfig, Subscription
from app.mqtt.session import StateChange

log = logging.getLogger(__name__)
FLUSH_INTERVAL = 0.02  # seconds between batches from the child
ENGINE_NICENESS = 10  # the engine outruns a bare paho subscriber ~1.4x: it can yield to the window
HISTORY_NICENESS = 15  # the history thread yields to the receive loop (Linux)
HISTORY_BACKLOG = 1024  # batches (of up to MAX_BATCH rows) the history may lag behind a burst
MAX_BATCH = 4000  # send early when this many items are waiting


class EngineGone(RuntimeError):
    pass


# ----- child side --------------------------------------------------------------------------


def engine_main(conn) -> None:
    """Entry point of the engine process."""
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("mqtt").setLevel(logging.CRITICAL)
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
    writer competing equally, a 200k burst reached the table 20% slower). Bounded: past
    HISTORY_BACKLOG batches the receive loop waits (and TCP slows the broker) rather than memory
    growing without end."""

    def __init__(self, name: str, notify: Callable[[str], None], retention=None) -> None:
        import queue

        self.name = name
        self.retention = retention
        self.notify = notify
        self.queue: queue.Queue = queue.Queue(maxsize=HISTORY_BACKLOG)
        self.ready = threading.Event()
        self.next_id: int | None = None
        self.failed: str | None = None
        self.thread = threading.Thread(target=self._main, name="engine-history", daemon=True)
        self.thread.start()

    def _main(self) -> None:
        from app.history import HistoryCorrupt, HistoryError, HistoryWriter, history_path

        if hasattr(os, "setpriority") and hasattr(threading, "get_native_id"):
            try:  # Linux: a thread id here sets this thread's priority only
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), HISTORY_NICENESS)
            except OSError:
                pass

        try:
            if self.retention is None:
                writer = HistoryWriter.open_or_recover(history_path(self.name))
            else:
                writer = HistoryWriter.open_or_recover(history_path(self.name), self.retention)
            self.next_id = writer.next_id
        except (HistoryError, OSError) as exc:
            self.failed = f"History is off for this connection: {exc}"
            self.notify(self.failed)
            writer = None
        self.ready.set()
        while True:
            item = self.queue.get()
            if item is None:
                break
            if writer is None:
                continue
            rows, raws = item
            try:
                writer.take_ids(len(rows))
                writer.append(rows, raws)
            except HistoryCorrupt:
                try:
                    writer.recover()
                    writer.append(rows, raws)
                except (HistoryError, OSError) as exc:
                    self.notify(f"History stopped: {exc}")
                    writer = None
            except (HistoryError, OSError, ValueError) as exc:
                self.notify(f"History stopped: {exc}")
                writer = None
        if writer is not None:
            writer.close()

    def put(self, rows: list, raws: list) -> None:
        if self.failed is None:
            self.queue.put((rows, raws))

    def close(self) -> None:
        self.queue.put(None)
        self.thread.join(10)


class _Channel:
    """One session's outgoing side in the engine: pending items, history, column batches."""

    __slots__ = ("sid", "items", "raws", "columns", "history", "next_id")

    def __init__(self, sid: int, columns: bool, history: _HistoryThread | None) -> None:
        self.sid = sid
        self.items: list = []
        self.raws: list = []
        self.columns = columns
        self.history = history
        self.next_id = history.next_id if history is not None and history.next_id is not None else None


async def _serve(conn) -> None:
    from app.mqtt.errors import SessionError
    from app.mqtt.session import MqttSession
    from app.store import columns_from_rows, event_row

    loop = asyncio.get_running_loop()
    inbox: asyncio.Queue = asyncio.Queue()

    def read_commands() -> None:
        while True:
            try:
                msg = conn.recv()
            except (EOFError, OSError):
                msg = (0, "exit")
            loop.call_soon_threadsafe(inbox.put_nowait, msg)
            if msg[1] == "exit":
                return

    threading.Thread(target=read_commands, name="engine-commands", daemon=True).start()
    sessions: dict[int, MqttSession] = {}
    channels: dict[int, _Channel] = {}

    def send(msg) -> None:
        try:
            conn.send(msg)
        except (OSError, EOFError, BrokenPipeError):
            loop.call_soon(inbox.put_nowait, (0, "exit"))

    def flush(ch: _Channel) -> None:
        items = ch.items
        if not items:
            return
        ch.items = []
        if ch.columns:
            if ch.history is not None:
                raws, ch.raws = ch.raws, []
                ch.history.put(items, raws)
            # Transposed here, on the engine's core: the GUI process only extends arrays.
            send(("batch", ch.sid, columns_from_rows(items)))
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

            if ch.next_id is not None:

                def on_message(msg) -> None:
                    ts = msg.received_at
                    if fast is not None and msg.properties is None:
                        parsed = fast(msg.topic, msg.payload, ts, ch.next_id)
                        if parsed is not None:
                            row, received_at, cids = parsed
                            ch.items.append(row)
                            ch.raws.append((msg.topic, msg.payload, None, received_at, cids))
                            ch.next_id += 1
                            if len(ch.items) >= MAX_BATCH:
                                flush(ch)
                            return
                    for event in parse(msg.topic, msg.payload, msg.properties):
                        ch.items.append(event_row(event, ts, ch.next_id))
                        ch.raws.append(
                            (msg.topic, msg.payload, msg.properties, event.received_at, event.correlation_ids)
                        )
                        ch.next_id += 1
                    if len(ch.items) >= MAX_BATCH:
                        flush(ch)
            else:

                def on_message(msg) -> None:
                    ts = msg.received_at
                    if fast is not None and msg.properties is None:
                        parsed = fast(msg.topic, msg.payload, ts, None)
                        if parsed is not None:
                            ch.items.append(parsed[0])
                            if len(ch.items) >= MAX_BATCH:
                                flush(ch)
                            return
                    for event in parse(msg.topic, msg.payload, msg.properties):
                        ch.items.append(event_row(event, ts))
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

        return on_message, on_state

    def load_history(sid: int, name: str, limit: int) -> None:
        from app.history import HistoryError, HistoryReader, history_path

        try:
            reader = HistoryReader(history_path(name))
            try:
                for batch in reader.load_recent(limit):
                    send(("batch", sid, batch))
            finally:
                reader.close()
        except (HistoryError, OSError) as exc:
            send(("notice", sid, f"The history of this connection could not be read: {exc}"))

    async def start(sid: int, config, platform_name, profile, history_name, history_rows, retention=None) -> None:
        history = None
        if platform_name and history_name:
            if history_rows:
                await loop.run_in_executor(None, load_history, sid, history_name, history_rows)
            history = _HistoryThread(history_name, lambda text: send(("notice", sid, text)), retention)
            await loop.run_in_executor(None, history.ready.wait, 10)
        ch = channels[sid] = _Channel(sid, bool(platform_name), history)
        on_message, on_state = make_sinks(ch, platform_name, profile or {})
        credentials = None
        if platform_name:
            from app import platforms

            provider = platforms.get(platform_name).credentials_provider(profile or {})
            if provider is not None:
                credentials = _first_two(provider)
        session = MqttSession(config, on_message=on_message, on_state=on_state, credentials=credentials)
        sessions[sid] = session
        await session.start()

    async def stop(sid: int) -> None:
        session = sessions.pop(sid, None)
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


def _first_two(provider):
    def credentials():
        result = provider()
        return result[0], result[1]

    return credentials


# ----- parent side -------------------------------------------------------------------------


class EngineProcess:
    """The parent's handle on the engine process; thread-safe; async calls from any loop."""

    def __init__(self) -> None:
        ctx = multiprocessing.get_context("spawn")  # fork is unsafe in a process running Qt threads
        self._conn, child_conn = ctx.Pipe(duplex=True)
        self.process = ctx.Process(target=engine_main, args=(child_conn,), name="uplink-engine", daemon=True)
        self.process.start()
        child_conn.close()
        self._send_lock = threading.Lock()
        self._calls: dict[int, concurrent.futures.Future] = {}
        self._ids = itertools.count(1)
        self._sinks: dict[int, tuple[Callable, Callable]] = {}
        self._closed = False
        self._reader = threading.Thread(target=self._read, name="engine-reader", daemon=True)
        self._reader.start()

    def new_session_id(self) -> int:
        return next(self._ids)

    def register(self, sid: int, on_batch: Callable, on_state: Callable, on_notice: Callable | None = None) -> None:
        self._sinks[sid] = (on_batch, on_state, on_notice)

    def unregister(self, sid: int) -> None:
        self._sinks.pop(sid, None)

    def call(self, op: str, *args) -> concurrent.futures.Future:
        fut: concurrent.futures.Future = concurrent.futures.Future()
        if self._closed:
            fut.set_exception(EngineGone("The connection engine has stopped; restart the console."))
            return fut
        call_id = next(self._ids)
        self._calls[call_id] = fut
        try:
            with self._send_lock:
                self._conn.send((call_id, op, *args))
        except (OSError, EOFError) as exc:
            self._calls.pop(call_id, None)
            fut.set_exception(EngineGone(f"The connection engine has stopped ({exc}); restart the console."))
        return fut

    async def run(self, op: str, *args):
        return await asyncio.wrap_future(self.call(op, *args))

    def _read(self) -> None:
        while True:
            try:
                msg = self._conn.recv()
            except (EOFError, OSError):
                break
            kind = msg[0]
            if kind == "batch":
                sink = self._sinks.get(msg[1])
                if sink is not None:
                    sink[0](msg[2])
            elif kind == "state":
                sink = self._sinks.get(msg[1])
                if sink is not None:
                    sink[1](msg[2])
            elif kind == "notice":
                sink = self._sinks.get(msg[1])
                if sink is not None and len(sink) > 2 and sink[2] is not None:
                    sink[2](msg[2])
            elif kind == "reply":
                _, call_id, ok, value = msg
                fut = self._calls.pop(call_id, None)
                if fut is None or fut.done():
                    continue
                if ok:
                    fut.set_result(value)
                else:
                    fut.set_exception(_rebuild_error(*value))
        self._closed = True
        for fut in self._calls.values():
            if not fut.done():
                fut.set_exception(EngineGone("The connection engine has stopped; restart the console."))
        self._calls.clear()

    def close(self, timeout: float = 3.0) -> None:
        if not self._closed:
            try:
                with self._send_lock:
                    self._conn.send((0, "exit"))
            except (OSError, EOFError):
                pass
        self.process.join(timeout)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(1)
        self._closed = True
        self._conn.close()


def _rebuild_error(kind: str, text: str) -> Exception:
    from app.mqtt.config import ConfigError
    from app.mqtt.errors import SessionError

    if kind == "ConfigError":
        return ConfigError(text)
    if kind == "TimeoutError":
        return TimeoutError(text)
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
        on_notice: Callable[[str], None] | None = None,
        retention=None,
    ) -> None:
        """history_name: keep every event in that profile's SQLite history (platform sessions),
        first sending up to history_rows of its newest rows as batches."""
        self.engine = engine
        self.config = config
        self.platform = platform
        self.profile = profile
        self.history_name = history_name
        self.history_rows = history_rows
        self.retention = retention  # app.history.Retention, or None for its defaults
        self.id = engine.new_session_id()
        engine.register(self.id, on_batch, on_state, on_notice)

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

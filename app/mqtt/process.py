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
import threading
import time
from collections.abc import Callable

from app.mqtt.config import ConnectionConfig, Subscription
from app.mqtt.session import StateChange

log = logging.getLogger(__name__)
FLUSH_INTERVAL = 0.02  # seconds between batches from the child
MAX_BATCH = 4000  # send early when this many items are waiting


class EngineGone(RuntimeError):
    pass


# ----- child side --------------------------------------------------------------------------


def engine_main(conn) -> None:
    """Entry point of the engine process."""
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("mqtt").setLevel(logging.CRITICAL)
    try:
        asyncio.run(_serve(conn))
    except KeyboardInterrupt:
        pass


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
    pending: dict[int, list] = {}
    as_columns: set[int] = set()  # sessions whose items are event rows, sent as column batches

    def send(msg) -> None:
        try:
            conn.send(msg)
        except (OSError, EOFError, BrokenPipeError):
            loop.call_soon(inbox.put_nowait, (0, "exit"))

    def flush(session_id: int) -> None:
        items = pending.get(session_id)
        if items:
            pending[session_id] = []
            if session_id in as_columns:
                # Transposed here, on the engine's core: the GUI process only extends arrays.
                send(("batch", session_id, columns_from_rows(items)))
            else:
                send(("batch", session_id, items))

    async def flusher() -> None:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL)
            for sid in list(pending):
                flush(sid)

    def make_sinks(sid: int, platform_name: str | None, profile: dict):
        items: list = []
        pending[sid] = items
        if platform_name:
            from app import platforms

            parse = platforms.get(platform_name).parser_for(profile).parse_or_error
            as_columns.add(sid)

            def on_message(msg) -> None:
                batch = pending[sid]
                ts = msg.received_at
                for event in parse(msg.topic, msg.payload, msg.properties):
                    batch.append(event_row(event, ts))
                if len(batch) >= MAX_BATCH:
                    flush(sid)
        else:

            def on_message(msg) -> None:
                batch = pending[sid]
                batch.append(msg)
                if len(batch) >= MAX_BATCH:
                    flush(sid)

        def on_state(change: StateChange) -> None:
            flush(sid)
            send(("state", sid, change))

        return on_message, on_state

    flush_task = loop.create_task(flusher())
    try:
        while True:
            call_id, op, *args = await inbox.get()
            if op == "exit":
                break
            try:
                result = None
                if op == "start":
                    sid, config, platform_name, profile = args
                    on_message, on_state = make_sinks(sid, platform_name, profile or {})
                    credentials = None
                    if platform_name:
                        from app import platforms

                        provider = platforms.get(platform_name).credentials_provider(profile or {})
                        if provider is not None:
                            credentials = _first_two(provider)
                    session = MqttSession(config, on_message=on_message, on_state=on_state, credentials=credentials)
                    sessions[sid] = session
                    await session.start()
                elif op == "stop":
                    session = sessions.pop(args[0], None)
                    if session is not None:
                        await session.stop()
                        flush(args[0])
                    pending.pop(args[0], None)
                    as_columns.discard(args[0])
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
        for session in sessions.values():
            try:
                await asyncio.wait_for(session.stop(), 2)
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

    def register(self, sid: int, on_batch: Callable[[list], None], on_state: Callable[[StateChange], None]) -> None:
        self._sinks[sid] = (on_batch, on_state)

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
    ) -> None:
        self.engine = engine
        self.config = config
        self.platform = platform
        self.profile = profile
        self.id = engine.new_session_id()
        engine.register(self.id, on_batch, on_state)

    async def start(self) -> None:
        await self.engine.run("start", self.id, self.config, self.platform, self.profile)

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


def wait_for_process_start(engine: EngineProcess, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not engine.process.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)

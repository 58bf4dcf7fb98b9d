"""The one place where engine events become Qt signals.

Sessions run in the engine process (app/mqtt/process.py; UPLINK_CONSOLE_ENGINE=thread runs them
on a thread of this process instead, for comparison). Batches land in a lock-free buffer; a
timer on the GUI thread drains it every BATCH_INTERVAL_MS and emits one signal per batch, so the
GUI does one model insert per batch whatever the message rate. State changes cross threads as
queued signals.

The engine process is watched (a heartbeat, see EngineProcess): one that stops answering or
ends is reported in one sentence, replaced by a new one, and the connection is resumed there.

Downlinks go through the connection's outbox, which lives in the engine process (app/outbox.py has
the contract): send_downlink / cancel_downlink / retry_downlink / downlinks(), and
`downlink_changed(dict)` for every new entry and transition (each carries all its transitions so
far), collected on the engine's reader thread and emitted on the same timer as the message batches:
downlinks change a few times each, never per uplink.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
import weakref

from PySide6.QtCore import QObject, QTimer, Signal

from app.mqtt.config import ConnectionConfig, Subscription
from app.mqtt.process import EngineGone, EngineProcess, ProcessSession
from app.mqtt.session import ReceivedMessage, SessionState, StateChange
from app.mqtt.worker import BackgroundSession, EngineThread, MessageBuffer

log = logging.getLogger(__name__)
# Inserts into the table model ~20 times a second whatever the rate: small slices of GUI work
# (the uplink table shows them at most every ANNOUNCE_INTERVAL: each insert repaints it).
BATCH_INTERVAL_MS = 50
RESTARTS_PER_MINUTE = 3  # an engine lost more often than this is not started again
# Replayed history reaches the owner one batch a tick, of at most HISTORY_ROWS_PER_TICK rows (the
# engine's 20,000-row batches are cut, newest part first): putting 10,000 rows above a million
# costs the GUI thread ~20 ms (most of it moving the columns' memory), a whole batch ~35 ms.
HISTORY_BATCHES_PER_TICK = 1
HISTORY_ROWS_PER_TICK = 10_000


def _cut_newest_first(batch: dict, rows: int) -> list[dict]:
    """A column batch (rows oldest first) as batches of at most `rows` rows, the newest first."""
    n = len(batch["ts"])
    out = []
    for hi in range(n, 0, -rows):
        lo = max(0, hi - rows)
        out.append({name: col[lo:hi] for name, col in batch.items()})
    return out


class SessionBridge(QObject):
    state_changed = Signal(object)  # StateChange
    # object, not list: PySide would convert a list (of column batches) element by element.
    messages_arrived = Signal(object)  # list of ReceivedMessage or column batches, one emission per tick
    # A lasting notice of the connection: (key, sentence), or (key, None) when it no longer holds.
    notice = Signal(str, object)
    # An outbox entry (app/outbox.py's entry dict) that is new or changed state.
    downlink_changed = Signal(dict)
    # Replayed history when the owner set history_newest_first: a list of column batches, each
    # older than every row delivered before it (newest first), HISTORY_BATCHES_PER_TICK a tick.
    history_arrived = Signal(object)
    # The replay is over (complete, failed, or cut short by a new session or a lost engine).
    history_finished = Signal()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.engine_kind = os.environ.get("UPLINK_CONSOLE_ENGINE", "process")
        self.engine: EngineProcess | EngineThread | None = None  # started at the first connect
        self.session: BackgroundSession | ProcessSession | None = None
        self.heartbeat_timeout: float | None = None  # None: EngineProcess's default
        # () -> the lowest history id a new session may hand out (the owner's table holds the ids
        # below it); None: the history file decides.
        self.id_floor = None
        self.buffer = MessageBuffer()
        # The owner puts history_arrived batches above its rows: then the engine replays the
        # history newest first beside the live session (else there is no replay).
        self.history_newest_first = False
        self.history_buffer = MessageBuffer()
        self.history_loading = False  # a replay is under way (history_finished not emitted yet)
        self.last_state: StateChange | None = None
        self.restarts: list[float] = []  # monotonic times the engine was replaced
        self._session_args: tuple | None = None  # what the current session was started with
        # The connection whose outbox send_downlink uses: the session's history name (set by
        # connect_to), or set by the owner before the first connect.
        self.outbox_key: str | None = None
        self._downlinks_lock = threading.Lock()
        self._downlinks_pending: list[dict] = []  # entries in the order they changed, from the reader thread
        # Emitted from the engine's threads; Qt queues them to the GUI thread.
        self._state_from_engine.connect(self._on_event_state)
        self._notice_from_engine.connect(self.notice)
        self._engine_lost.connect(self._replace_engine)
        self.timer = QTimer(self)
        self.timer.setInterval(BATCH_INTERVAL_MS)
        self.timer.timeout.connect(self._drain)
        self.timer.start()

    _state_from_engine = Signal(object)
    _notice_from_engine = Signal(str, object)
    _engine_lost = Signal(object, str)  # the engine, the sentence

    # ----- engine side (runs on the engine thread)
    def _engine_on_message(self, msg: ReceivedMessage) -> None:
        self.buffer.push(msg)

    def _engine_on_state(self, change: StateChange) -> None:
        self._state_from_engine.emit(change)

    # ----- GUI side
    def _on_event_state(self, change: StateChange) -> None:
        self.last_state = change
        self.state_changed.emit(change)

    def _drain(self) -> None:
        if len(self.buffer):
            self.messages_arrived.emit(self.buffer.drain())
        if len(self.history_buffer):
            # A bounded slice a tick: a million rows of history never make one long GUI turn.
            items = self.history_buffer.drain(HISTORY_BATCHES_PER_TICK)
            batches = [b for b in items if b is not None]
            if batches and len(batches[-1]["ts"]) > HISTORY_ROWS_PER_TICK:
                # The newest part now, the older parts next (each older than what came before).
                newest, *older = _cut_newest_first(batches[-1], HISTORY_ROWS_PER_TICK)
                batches[-1] = newest
                self.history_buffer.push_front(older)
            if batches:
                self.history_arrived.emit(batches)
            if len(batches) < len(items):
                self._end_history()
        if self._downlinks_pending:
            with self._downlinks_lock:
                pending, self._downlinks_pending = self._downlinks_pending, []
            for entry in pending:
                self.downlink_changed.emit(entry)

    def drop_history(self) -> None:
        """Ends the replay under way (if any) at once: its batches not shown yet are dropped and
        history_finished is emitted now, before the owner starts the next one."""
        self.history_buffer = MessageBuffer()
        self._end_history()

    def _end_history(self) -> None:
        if self.history_loading:
            self.history_loading = False
            self.history_finished.emit()

    @property
    def connected(self) -> bool:
        return self.last_state is not None and self.last_state.state == "connected"

    def _new_engine(self) -> EngineProcess:
        import weakref

        engine: EngineProcess | None = None
        # Called on the engine's watchdog thread, which may outlive this bridge: a weak reference,
        # so the bridge is never freed there (Qt objects are freed on the GUI thread).
        bridge = weakref.ref(self)

        def lost(sentence: str) -> None:
            owner = bridge()
            if owner is not None:
                owner._engine_lost.emit(engine, sentence)

        engine = EngineProcess(on_lost=lost, heartbeat_timeout=self.heartbeat_timeout)
        if self.outbox_key is not None:
            self._watch_outbox(engine, self.outbox_key)
        return engine

    def _watch_outbox(self, engine: EngineProcess, key: str) -> None:
        """Entries of `key`'s outbox from the engine's reader thread into the pending dict (the
        bridge held weakly: the reader thread must never free a Qt object)."""
        bridge = weakref.ref(self)

        def on_entries(entries: list) -> None:
            owner = bridge()
            if owner is None:
                return
            with owner._downlinks_lock:
                owner._downlinks_pending.extend(entries)

        def on_notice(sentence) -> None:
            owner = bridge()
            if owner is not None:
                owner._notice_from_engine.emit("outbox", sentence)

        engine.watch_downlinks(key, on_entries, on_notice)

    async def connect_to(
        self,
        config: ConnectionConfig,
        platform: str | None = None,
        profile: dict | None = None,
        history_name: str | None = None,
        history_rows: int = 0,
        retention=None,
    ) -> None:
        """platform None: raw messages (ReceivedMessage items); else column batches of events,
        kept in the history file `history_name` (its newest history_rows sent first)."""
        await self.disconnect_from()
        self._session_args = (config, platform, profile, history_name, retention)
        if platform and history_name:
            self._set_outbox_key(history_name)
        if self.engine_kind == "thread":
            if self.engine is None:
                self.engine = EngineThread()
            self.session = BackgroundSession(
                self.engine, config, on_message=self._engine_on_message, on_state=self._engine_on_state
            )
        else:
            if self.engine is None or self.engine.lost:
                self.engine = self._new_engine()
            self.session = self._process_session(history_rows)
        await self.session.start()

    def _process_session(self, history_rows: int) -> ProcessSession:
        config, platform, profile, history_name, retention = self._session_args
        session: ProcessSession | None = None
        on_history = None
        # What an earlier session replayed must not reach this one: its replay ends here.
        self.drop_history()
        if platform is not None and history_rows and self.history_newest_first:
            on_history = self.history_buffer.push
            self.history_loading = True
        else:
            history_rows = 0  # an owner that does not take history_arrived gets no replay

        def on_notice(key: str, text) -> None:
            # A session being replaced (its history draining) must not speak for the new one.
            if session is self.session:
                self._notice_from_engine.emit(key, text)
            else:
                log.info("notice of an earlier session: %s %s", key, text)

        session = ProcessSession(
            self.engine,
            config,
            on_batch=self.buffer.push_many if platform is None else self.buffer.push,
            on_state=self._engine_on_state,
            platform=platform,
            profile=profile,
            history_name=history_name,
            history_rows=history_rows,
            on_notice=on_notice,
            retention=retention,
            first_id=self.id_floor() if self.id_floor is not None else 0,
            on_history=on_history,
        )
        return session

    def _replace_engine(self, engine: EngineProcess, sentence: str) -> None:
        """On the GUI thread: the engine `engine` is lost; start another and resume the session."""
        if engine is not self.engine:
            return  # an engine replaced (or shut down) already
        self._end_history()  # what it was replaying stops here
        old, self.engine = self.engine, None
        old.close()
        had_session = isinstance(self.session, ProcessSession)
        self.session = None
        now = time.monotonic()
        self.restarts = [t for t in self.restarts if now - t < 60] + [now]
        if not had_session:
            return  # nothing to resume: the next connect starts a new engine
        if len(self.restarts) > RESTARTS_PER_MINUTE:
            sentence = (
                f"{sentence} It stopped {len(self.restarts)} times within a minute, so it is not started "
                "again; connect again to retry, and report it if it keeps happening."
            )
            self.notice.emit("engine", sentence)
            self._on_event_state(StateChange(SessionState.FAILED, error=sentence))
            return
        resumed = f"{sentence} It was started again and the connection resumed."
        self.notice.emit("engine", resumed)
        self._on_event_state(StateChange(SessionState.RECONNECTING, error=resumed))
        self.engine = self._new_engine()
        self.session = session = self._process_session(0)  # the table already shows the past

        def failed(text: str) -> None:
            failure = f"{sentence} Starting it again failed: {text} Connect again to retry."
            if self.session is session:
                self.session = None
            self.notice.emit("engine", failure)
            self._on_event_state(StateChange(SessionState.FAILED, error=failure))

        spawn(self.session.start(), failed)
        if self.outbox_key is not None:
            spawn(self._resend_downlinks())

    async def _resend_downlinks(self) -> None:
        """After an engine was replaced: every entry again, so a change the lost engine stored but
        could not announce still reaches the window."""
        entries = await self.downlinks()
        with self._downlinks_lock:
            self._downlinks_pending.extend(entries)

    async def disconnect_from(self) -> None:
        session, self.session = self.session, None
        if session is not None:
            try:
                await session.stop()
            except EngineGone:
                pass  # nothing left to stop
            finally:
                if self.history_loading:
                    self.history_buffer.push(None)  # the replay stopped: over once its last batch is shown

    def _remember_subscriptions(self, change) -> None:
        """Keeps the settings a resumed session starts with in step with runtime (un)subscribes."""
        if self._session_args is None:
            return
        config, *rest = self._session_args
        subs = {s.topic: s for s in config.subscriptions}
        change(subs)
        self._session_args = (config.replace(subscriptions=tuple(subs.values())), *rest)

    async def subscribe(self, sub: Subscription) -> None:
        if self.session is None:
            raise RuntimeError("Connect first.")
        self._remember_subscriptions(lambda subs: subs.__setitem__(sub.topic, sub))
        await self.session.subscribe(sub)

    async def unsubscribe(self, topic: str) -> None:
        self._remember_subscriptions(lambda subs: subs.pop(topic, None))
        if self.session is not None:
            await self.session.unsubscribe(topic)

    async def publish(self, topic: str, payload: bytes, **kw) -> None:
        if self.session is None:
            from app.mqtt.errors import SessionError

            raise SessionError("Not connected; connect first, then publish.")
        await self.session.publish(topic, payload, **kw)

    # ----- downlinks (see app/outbox.py for the entry dicts and meta keys)
    def _set_outbox_key(self, key: str) -> None:
        if key == self.outbox_key:
            return
        old, self.outbox_key = self.outbox_key, key
        if isinstance(self.engine, EngineProcess):
            if old is not None:
                self.engine.unwatch_downlinks(old)
            self._watch_outbox(self.engine, key)

    def _outbox_engine(self) -> tuple[EngineProcess, str]:
        from app.outbox import OutboxError

        if self.outbox_key is None:
            raise OutboxError("Choose or connect a saved connection first: downlinks wait in that connection's outbox.")
        if self.engine_kind == "thread":
            raise OutboxError(
                "Downlinks need the engine process; start the console without UPLINK_CONSOLE_ENGINE=thread."
            )
        if self.engine is None or self.engine.lost:
            self.engine = self._new_engine()
        return self.engine, self.outbox_key

    async def send_downlink(self, message, meta: dict | None = None) -> dict:
        """Puts the downlink in the connection's outbox (sent at once when connected, else when the
        connection is up again); returns its entry dict. Raises OutboxFull (a sentence)."""
        engine, key = self._outbox_engine()
        meta = dict(meta or {})
        if not meta.get("platform") and self._session_args is not None and self._session_args[1]:
            meta["platform"] = self._session_args[1]
        return await engine.send_downlink(key, message, meta)

    async def cancel_downlink(self, downlink_id: str) -> dict:
        engine, key = self._outbox_engine()
        return await engine.cancel_downlink(key, downlink_id)

    async def retry_downlink(self, downlink_id: str) -> dict:
        engine, key = self._outbox_engine()
        return await engine.retry_downlink(key, downlink_id)

    async def downlinks(self) -> list[dict]:
        """Every entry kept in the connection's outbox, oldest first."""
        engine, key = self._outbox_engine()
        return await engine.downlinks(key)

    def shutdown(self) -> None:
        self.timer.stop()
        if self.engine is None:
            return
        if isinstance(self.engine, EngineThread) and self.session is not None:
            try:
                self.engine.submit(self.session.session.stop()).result(3)
            except Exception:  # noqa: BLE001 - closing anyway
                log.debug("stop on shutdown failed", exc_info=True)
        engine, self.engine = self.engine, None
        engine.close()  # the engine process stops its sessions itself


_spawned: weakref.WeakSet[asyncio.Task] = weakref.WeakSet()


def cancel_spawned(loop: asyncio.AbstractEventLoop, timeout: float = 2.0) -> int:
    """At exit, before the loop closes: cancels the tasks spawn() started that are still waiting
    (a connect, a downlink's answer) and lets them end, so none is destroyed while pending.
    Returns how many there were."""
    pending = [t for t in _spawned if not t.done()]
    for task in pending:
        task.cancel()
    if pending and not loop.is_closed():
        try:
            loop.run_until_complete(asyncio.wait(pending, timeout=timeout))
        except Exception:  # noqa: BLE001 - leaving anyway
            log.debug("spawned tasks did not end at exit", exc_info=True)
    return len(pending)


def spawn(coro, on_error=None) -> asyncio.Task:
    """Runs a coroutine on the GUI loop; errors go to on_error as sentences, never as tracebacks."""

    async def guarded():
        try:
            return await coro
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001
            log.debug("task failed", exc_info=True)
            if on_error is not None:
                on_error(str(exc) or type(exc).__name__)

    task = asyncio.ensure_future(guarded())
    _spawned.add(task)
    return task

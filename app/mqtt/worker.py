"""Sessions on their own asyncio loop in a background thread.

The GUI thread runs Qt; the socket work, packet decoding and parsing run here, so a flood of
messages never freezes the window and never waits for a repaint. Callers on any other loop
(qasync's, in the UI) await the same async API through `asyncio.wrap_future`.
"""

from __future__ import annotations

import asyncio
import collections
import threading
from collections.abc import Callable, Coroutine
from typing import Any

from app.mqtt.config import ConnectionConfig, Subscription
from app.mqtt.session import MqttSession, ReceivedMessage, StateChange


class MessageBuffer:
    """Single producer (the session thread), single consumer (a UI timer); lock-free."""

    __slots__ = ("_items", "total")

    def __init__(self) -> None:
        self._items: collections.deque = collections.deque()
        self.total = 0

    def push(self, item) -> None:
        self._items.append(item)
        self.total += 1

    def push_many(self, items: list) -> None:
        self._items.extend(items)
        self.total += len(items)

    def push_front(self, items: list) -> None:
        """Puts items back before the rest, in their order (the consumer's own, from its thread)."""
        self._items.extendleft(reversed(items))

    def drain(self, limit: int | None = None) -> list:
        items = self._items
        n = len(items) if limit is None else min(limit, len(items))
        popleft = items.popleft
        return [popleft() for _ in range(n)]

    def __len__(self) -> int:
        return len(self._items)


class EngineThread:
    """One background thread with its own event loop, shared by all sessions of a window."""

    def __init__(self, name: str = "uplink-engine") -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def submit(self, coro: Coroutine) -> Any:
        """Schedules coro on the engine loop; returns a concurrent.futures.Future."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    async def run(self, coro: Coroutine) -> Any:
        """Awaits coro (running on the engine loop) from another event loop."""
        return await asyncio.wrap_future(self.submit(coro))

    def call_soon(self, fn: Callable, *args) -> None:
        self.loop.call_soon_threadsafe(fn, *args)

    def close(self, timeout: float = 5.0) -> None:
        if not self.loop.is_running():
            return

        async def shutdown() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        try:
            self.submit(shutdown()).result(timeout)
        except Exception:  # noqa: BLE001 - closing anyway
            pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout)


class BackgroundSession:
    """An MqttSession living on an EngineThread, driven from another loop with the same API."""

    def __init__(
        self,
        engine: EngineThread,
        config: ConnectionConfig,
        *,
        on_message: Callable[[ReceivedMessage], None] | None = None,
        on_state: Callable[[StateChange], None] | None = None,
    ) -> None:
        self.engine = engine
        self.session = MqttSession(config, on_message=on_message, on_state=on_state)

    @property
    def config(self) -> ConnectionConfig:
        return self.session.config

    @property
    def state(self):
        return self.session.state

    async def start(self) -> None:
        await self.engine.run(self.session.start())

    async def stop(self) -> None:
        await self.engine.run(self.session.stop())

    async def subscribe(self, sub: Subscription | str, qos: int = 0):
        return await self.engine.run(self.session.subscribe(sub, qos))

    async def unsubscribe(self, topic: str) -> None:
        await self.engine.run(self.session.unsubscribe(topic))

    async def publish(self, topic: str, payload, **kw) -> None:
        await self.engine.run(self.session.publish(topic, payload, **kw))

    async def wait_connected(self, timeout: float | None = None) -> None:
        await self.engine.run(self.session.wait_connected(timeout))

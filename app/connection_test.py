"""The wizard's connection test: connect for real, subscribe, wait for the first message, and
say in plain words what happened.

The session runs where every session runs, in the engine process (app/mqtt/process.py), with
the platform's parser and credentials (akenza mints its JWT there), but without a history file.
The test does not retry the way a session does: the first failure is the answer. It is
classified by the session's own sentences (app/mqtt/errors.py), so the user reads the same
words the window would show later, led by a short headline:

    receiving    connected, and a message arrived
    quiet        connected and subscribed, nothing arrived within the timeout (often normal)
    credentials  the broker refused the user name, password, key or token (or a subscription)
    certificate  a TLS certificate or key problem, and which (the broker's, or the client's)
    host         the host name could not be found
    refused      nothing is listening on that port
    timeout      no answer in time
    other        anything else, in the session's words

Cancellable at every step: `progress.cancelled` (app.progress.Progress) is checked every
POLL_S, and cancelling the task itself (BackgroundOp does) stops the session too.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from dataclasses import dataclass

from app.mqtt.config import ConnectionConfig
from app.mqtt.session import SessionState, StateChange
from app.progress import Cancelled

log = logging.getLogger(__name__)

KINDS = ("receiving", "quiet", "credentials", "certificate", "host", "timeout", "refused", "other")
DEFAULT_TIMEOUT_S = 10.0  # how long to wait for the first message once connected
MAX_CONNECT_TIMEOUT_S = 10.0  # a profile's own connect timeout (Tektelic: 30 s) is capped for the test
POLL_S = 0.1
HEADLINES = {
    "receiving": "Connected and receiving",
    "quiet": "Connected, nothing received yet",
    "credentials": "Wrong credentials",
    "certificate": "Certificate problem",
    "host": "Host not found",
    "timeout": "Timed out",
    "refused": "Nothing is listening there",
    "other": "Could not connect",
}
# A platform's own hint after the session's sentence: where its credentials come from.
_CREDENTIAL_HINTS = {
    "tts": "Check the API key (NNSXS.…), that it has the right to read application traffic, and the "
    "application and tenant IDs: the username is {application ID}@{tenant ID}.",
    "tektelic": "Use the same token (username) and password as the MQTT_V2 integration.",
    "akenza": "In JWT mode the device's public key must be registered in akenza; in uplink-secret mode use "
    "the device connector's id and secret.",
    "thingpark": "Use the same username and password as the ThingPark connection.",
    "drogue": "An access token expires quickly; an API key lasts: use your user name and an API key.",
}
_QUIET_HINTS = {
    "tts": "A quiet application is normal: devices often send every few minutes or hours. Send an uplink, "
    "or use Simulate uplink in The Things Stack Console, to see one arrive.",
    "tektelic": "A quiet integration is normal: uplinks arrive when a device sends.",
    "akenza": "akenza sends this device's downlinks here; none may be queued right now, which is normal.",
    "thingpark": "A quiet connection is normal: uplinks arrive when a device sends.",
    "drogue": "A quiet application is normal: events arrive when a device sends.",
    "generic": "Nothing may be publishing on these topics right now, which is normal.",
}


@dataclass(frozen=True, slots=True)
class ConnectionTestResult:
    kind: str  # one of KINDS
    sentence: str  # what happened and what to do, in plain words
    messages: int = 0  # messages received during the test

    @property
    def ok(self) -> bool:
        """The connection works (a quiet one too)."""
        return self.kind in ("receiving", "quiet")

    @property
    def headline(self) -> str:
        return HEADLINES.get(self.kind, HEADLINES["other"])


def classify(sentence: str | None) -> str:
    """The kind of a session's failure sentence (app/mqtt/errors.py and app/tls.py wordings)."""
    text = (sentence or "").lower()
    if "could not be found" in text:
        return "host"
    if "nothing is listening" in text:
        return "refused"
    if (
        "certificate" in text
        or "tls handshake" in text
        or "did not answer with tls" in text
        or "private key" in text
        or "key password" in text
        or "pkcs#12" in text
    ):
        return "certificate"
    if (
        "user name or password is wrong" in text
        or "did not accept these credentials" in text
        or "not authorized" in text
        or "authentication" in text
        or "refused the subscription" in text
        or "jwt" in text
        or "token" in text
    ):
        return "credentials"
    if "did not answer within" in text or "did not complete the mqtt handshake" in text or "timed out" in text:
        return "timeout"
    if "no answer from the broker" in text:
        return "timeout"
    return "other"


def _failure(kind: str, sentence: str, platform_name: str | None) -> ConnectionTestResult:
    if kind == "credentials" and platform_name in _CREDENTIAL_HINTS:
        sentence = f"{sentence} {_CREDENTIAL_HINTS[platform_name]}"
    return ConnectionTestResult(kind, sentence)


def _topics(config: ConnectionConfig) -> str:
    topics = [s.topic for s in config.subscriptions]
    if not topics:
        return "no topic"
    shown = ", ".join(topics[:2]) + (f" and {len(topics) - 2} more" if len(topics) > 2 else "")
    return shown


def _rows(batch) -> tuple[int, str | None, str | None]:
    """How many messages a batch holds, and the kind and device of its first (column batches
    of a platform session, or a list of raw messages)."""
    if isinstance(batch, dict):
        kinds = batch.get("kind") or []
        devices = batch.get("device_id") or []
        count = len(batch.get("ts") or kinds)
        return count, (kinds[0] if kinds else None), (devices[0] if devices else None)
    if isinstance(batch, list):
        return len(batch), None, None
    return 1, None, None


async def test_connection(
    config: ConnectionConfig,
    platform_name: str | None,
    profile: dict | None,
    timeout: float = DEFAULT_TIMEOUT_S,
    progress=None,
    *,
    engine=None,
) -> ConnectionTestResult:
    """Connects with `config` in the engine process, subscribes to its subscriptions and waits up
    to `timeout` seconds for the first message. `progress`: an app.progress.Progress (or None);
    `engine`: an EngineProcess to use (else one is started for the test and closed after).
    Raises app.progress.Cancelled when the user cancels."""
    from app.mqtt.process import EngineProcess, ProcessSession

    # The engine's reader thread calls the sinks below, and may hold the last reference to them
    # after the test: they reference no loop and no Qt object, only a queue and a dict under a
    # lock, which any thread may free.
    states: queue.SimpleQueue[StateChange] = queue.SimpleQueue()
    received = {"count": 0, "kind": None, "device": None, "first_at": None}
    lock = threading.Lock()

    def report(done: float, total: float, text: str) -> None:
        if progress is not None and not progress.report(int(done * 10), int(total * 10), text):
            raise Cancelled

    def on_state(change: StateChange) -> None:  # on the engine's reader thread
        states.put(change)

    def on_batch(batch) -> None:  # on the engine's reader thread
        count, kind, device = _rows(batch)
        with lock:
            if received["count"] == 0:
                received["kind"], received["device"] = kind, device
                received["first_at"] = time.monotonic()
            received["count"] += count

    if config.connect_timeout > MAX_CONNECT_TIMEOUT_S:
        config = config.replace(connect_timeout=MAX_CONNECT_TIMEOUT_S)
    where = config.describe()
    own_engine = engine is None
    report(0, 0, "Starting the connection engine…")
    if own_engine:
        engine = EngineProcess()  # ~25 ms: the child starts on its own
    session = None
    try:
        session = ProcessSession(
            engine, config, on_batch=on_batch, on_state=on_state, platform=platform_name, profile=profile
        )
        await session.start()
        result = await _connect(config, states, report, platform_name, where)
        if result is not None:
            return result
        return await _wait_for_message(config, timeout, states, received, lock, report, platform_name, where)
    finally:
        if session is not None:
            try:
                await asyncio.wait_for(asyncio.shield(session.stop()), 5)
            except Exception:  # noqa: BLE001 - the test's answer matters, not the goodbye
                log.debug("connection test session did not stop cleanly", exc_info=True)
        if own_engine and engine is not None:
            await _close(engine)


async def _connect(config, states, report, platform_name, where) -> ConnectionTestResult | None:
    """Waits for the session to connect; a result when it did not (None: connected)."""
    # A version fallback (3.1.1, then 3.1) may take two attempts.
    limit = config.connect_timeout * 2 + 5
    started = time.monotonic()
    while True:
        elapsed = time.monotonic() - started
        if elapsed > limit:
            return ConnectionTestResult(
                "timeout",
                f"{where} did not answer within {limit:.0f} seconds. Check the address, the port and any "
                "firewall in between.",
            )
        report(0, 0, f"Connecting to {where}…")
        change = await _next_state(states)
        if change is None:
            continue
        if change.state == SessionState.CONNECTED:
            if change.error:  # connected, but a subscription was refused
                return _failure("credentials", f"Connected to {where}, but {_lower_first(change.error)}", platform_name)
            return None
        if change.state in (SessionState.FAILED, SessionState.RECONNECTING) and change.error:
            return _failure(classify(change.error), change.error, platform_name)
        if change.state == SessionState.DISCONNECTED:
            return ConnectionTestResult("other", f"The connection to {where} ended before it was up.")


async def _next_state(states: queue.SimpleQueue) -> StateChange | None:
    """The next state change from the engine, waiting up to POLL_S; None if none came."""
    try:
        return states.get_nowait()
    except queue.Empty:
        await asyncio.sleep(POLL_S)
    try:
        return states.get_nowait()
    except queue.Empty:
        return None


async def _wait_for_message(
    config, timeout, states, shared, lock, report, platform_name, where
) -> ConnectionTestResult:
    started = time.monotonic()
    topics = _topics(config)
    while True:
        elapsed = time.monotonic() - started
        with lock:
            received = dict(shared)
        if received["count"]:
            after = max(0.0, (received["first_at"] or time.monotonic()) - started)
            what = ""
            if received["kind"]:
                what = f" (a{'n' if received['kind'][:1] in 'aeiou' else ''} {received['kind'].replace('_', ' ')}"
                what += f" of device {received['device']})" if received["device"] else ")"
            count = received["count"]
            return ConnectionTestResult(
                "receiving",
                f"Connected to {where} and receiving: the first message{what} arrived after {after:.1f} s"
                + (f"; {count} messages so far." if count > 1 else "."),
                count,
            )
        if elapsed >= timeout:
            hint = _QUIET_HINTS.get(platform_name or "generic", _QUIET_HINTS["generic"])
            return ConnectionTestResult(
                "quiet",
                f"Connected to {where} and subscribed to {topics}, but nothing arrived in {timeout:.0f} s. "
                f"{hint} The connection itself works.",
            )
        report(elapsed, timeout, f"Connected. Waiting for the first message… {elapsed:.0f} of {timeout:.0f} s")
        change = await _next_state(states)
        if change is None:
            continue
        if change.state in (SessionState.RECONNECTING, SessionState.FAILED) and change.error:
            kind = classify(change.error)
            return _failure(kind if kind != "timeout" else "other", change.error, platform_name)


async def _close(engine) -> None:
    """Closes the test's own engine on a thread of its own (a join of up to seconds must not hold
    the window's loop), waiting for it without an executor."""
    loop = asyncio.get_running_loop()
    closed = loop.create_future()

    def close() -> None:
        try:
            engine.close()
        finally:
            loop.call_soon_threadsafe(lambda: closed.done() or closed.set_result(None))

    threading.Thread(target=close, name="connection-test-close", daemon=True).start()
    await asyncio.shield(closed)


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]

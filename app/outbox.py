"""The outbox: every downlink waits here until the broker has it, then is followed to its end.

Why a file per connection, and why SQLite: a downlink typed while the broker is away, or in the
second before the app is killed, must not be lost; and the window's engine and the `send` command
may use one connection's outbox at the same time. SQLite in WAL mode gives both processes one
ordered queue with atomic claims, and synchronous=FULL makes every state change that matters
(added, handed over, cancelled) survive a power cut. Writes are rare (one per downlink and per
platform event about it), so FULL costs nothing that shows.

File: <data dir>/outbox/<slug of the connection key>.sqlite (app.history.profile_slug; the key is
the connection's history name, "profile <id>" for a saved connection, so the window and the
commands share it). A file SQLite cannot read is kept aside as <name>.corrupt-<time> and a new one
started; `Outbox.recovered_from` says where it went.

Contract (what the window, ui/bridge.py, and the commands rely on)
-----------------------------------------------------------------
Entry dict (plain JSON-able), one per downlink:
    id              16 lowercase hex digits, unique; also the correlation id the console adds:
                    TTS `uplink-console:downlink:<id>` in correlation_ids, ThingPark CorrelationID
                    <ID> (uppercase) when the user gave none
    state           "outbox" | "handed-over" | "queued" | "sent" | "acknowledged" |
                    "not-acknowledged" | "failed" | "no-news" | "cancelled" (app/delivery.py)
    topic, qos, retain, properties (MQTT 5: content_type, user_properties ...)
    payload_hex     the frame payload (what the device gets) as lowercase hex, else None
    size            bytes of the MQTT message body
    device_id, dev_eui, f_port, f_cnt (learned from the platform), platform, connection
    confirmed, correlation_ids, attempt (1, then 2... after a retry)
    reason          the platform's reason (failed), or why it still waits, else None
    transitions     [[state, ISO time, detail or None], ...] every change, oldest first
    created_at      ISO time
    waiting         true while it is in the outbox (cancel is possible)
    retryable       true when retry is possible (failed, no-news, not-acknowledged, cancelled)

SessionBridge (ui/bridge.py), all awaitable on the window's loop, all work in the engine process:
    send_downlink(message: OutgoingMessage, meta: dict) -> entry    raises OutboxFull (a sentence)
    cancel_downlink(id) -> entry      only while it waits; OutboxError (a sentence) otherwise
    retry_downlink(id) -> entry       failed / no-news / not-acknowledged / cancelled: a new attempt
    downlinks() -> [entry, ...]       every entry kept for the connection, oldest first
    signal downlink_changed(dict)     every new entry and every transition, once each and in order
                                      (from this window, the `send` command, or delivery events),
                                      emitted on the bridge's batch timer
meta keys (all optional but platform): platform, device_id, dev_eui, f_port, payload_hex,
    confirmed, correlation_ids (the user's own), no_news_after (seconds), id (from
    new_downlink_id() when the request was tagged with tag_request() before encoding, so the
    preview shows the exact body that goes out). meta_for_request() builds it from a
    DownlinkRequest.

Exactly once, in order
----------------------
A drainer (OutboxRunner, in the engine process or the `send`/`outbox flush` command) claims the
oldest waiting entry in one transaction (UPDATE … WHERE state='outbox' AND claimed_by IS NULL)
with its process token, publishes it, and marks it handed over when the broker has it: PUBACK for
QoS 1/2; for QoS 0 (TTS allows only QoS 0) when paho has written the whole packet to the socket of
a connected session (aiomqtt's publish returns then). While one entry is claimed by a live
process, nobody claims the next one: entries leave in order, one at a time, whichever process
sends them. A publish that fails because the connection went away releases the claim (the entry
waits for the next connection); one refused while connected (not authorized, too large, no PUBACK)
becomes "failed" with the sentence, to be retried by the user.

A claim whose owner process is dead (pid and start time no longer match, or the claim is older
than CLAIM_LEASE) goes back to waiting and is published again. What that means for a kill
between the socket write and the commit of "handed-over": that one downlink is published twice
(at least once, never lost). The window is one PUBACK round trip plus one fsync, and only the entry
in flight at the moment of the kill can be affected (tests/test_outbox.py: in 5 runs killing
`outbox flush` mid-way through 400 downlinks, 0 to 1 came twice, always side by side). The same
can happen when a connection is lost with a QoS 1 PUBACK outstanding (the broker may have the
message; MQTT cannot say), so it is sent again on the next connection; across a mosquitto restart
the tests see every downlink published exactly once, in order.
A publish is given up the moment its connection is lost, so a dead connection never holds up the
entries behind it for the publish timeout.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import datetime as dt
import logging
import os
import secrets
import sqlite3
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import orjson

from app import delivery
from app.delivery import (
    ANSWERED,
    CANCELLED,
    EVENT_STATES,
    FAILED,
    HANDED_OVER,
    NO_NEWS,
    OUTBOX,
    RETRYABLE,
    Tracked,
    console_correlation_id,
)

log = logging.getLogger(__name__)

DEFAULT_CAPACITY = 1_000  # waiting downlinks per connection (like Tektelic's pendingQueueMaxSize)
CAPACITY_ENV = "UPLINK_CONSOLE_OUTBOX_CAPACITY"
NO_NEWS_ENV = "UPLINK_CONSOLE_DOWNLINK_TIMEOUT"  # seconds; overrides delivery.DEFAULT_NO_NEWS_AFTER
KEEP_DONE = 1_000  # entries past the outbox kept for the Downlinks view (oldest go first)
CLAIM_LEASE = 300.0  # seconds: no publish takes this long (the session times out long before)
POLL_INTERVAL = 0.5  # seconds between looks for changes made by other processes
EXPIRE_INTERVAL = 5.0  # seconds between no-news checks
BUSY_TIMEOUT_MS = 10_000
DOWNLINK_KINDS = frozenset(EVENT_STATES)
SCHEMA_VERSION = 1


class OutboxError(Exception):
    """One sentence: what went wrong with the outbox and what to do."""


class OutboxFull(OutboxError):  # noqa: N818 - the name the contract gives
    pass


# ----- ids and tags ------------------------------------------------------------------------


def new_downlink_id() -> str:
    """16 hex digits: short, unique, and a valid ThingPark CorrelationID (64-bit hex)."""
    return secrets.token_hex(8)


def tag_request(platform: str, request, downlink_id: str):
    """The DownlinkRequest with the console's correlation id added, so the encoded message (and the
    composer's preview) carries it: TTS gets `uplink-console:downlink:<id>` appended, ThingPark the
    id as CorrelationID unless the user gave one; other platforms have no place for it."""
    if platform == "tts":
        tag = console_correlation_id(downlink_id)
        if tag not in request.correlation_ids:
            return dataclasses.replace(request, correlation_ids=(*request.correlation_ids, tag))
    elif platform == "thingpark" and not request.correlation_ids:
        return dataclasses.replace(request, correlation_ids=(downlink_id.upper(),))
    return request


def tag_message(platform: str, message, downlink_id: str, user_ids=()) -> tuple:
    """(message, correlation ids) with the console's tag in the body (idempotent: a message built
    from tag_request() comes back unchanged). A body that is not the platform's JSON is left as is."""
    user_ids = [str(i) for i in user_ids or ()]
    if platform not in ("tts", "thingpark"):
        return message, user_ids
    try:
        doc = orjson.loads(message.payload)
    except orjson.JSONDecodeError:
        return message, user_ids
    changed = False
    ids: list[str] = []
    if platform == "tts" and isinstance(doc, dict) and isinstance(doc.get("downlinks"), list):
        tag = console_correlation_id(downlink_id)
        for item in doc["downlinks"]:
            if not isinstance(item, dict):
                continue
            own = item.get("correlation_ids")
            own = list(own) if isinstance(own, list) else []
            if tag not in own:
                own.append(tag)
                changed = True
            item["correlation_ids"] = own
            ids += [i for i in own if i not in ids]
    elif platform == "thingpark" and isinstance(doc, dict) and isinstance(doc.get("DevEUI_downlink"), dict):
        body = doc["DevEUI_downlink"]
        current = body.get("CorrelationID")
        if not user_ids and current != downlink_id.upper():
            body["CorrelationID"] = downlink_id.upper()
            changed = True
        ids = [str(body.get("CorrelationID"))]
    if not ids:
        return message, user_ids
    if changed:
        message = dataclasses.replace(message, payload=orjson.dumps(doc))
    return message, ids


def meta_for_request(platform: str, request, **extra) -> dict:
    """The meta dict of a DownlinkRequest (what delivery tracking matches on)."""
    payload = request.payload
    dev_eui = request.dev_eui
    if platform == "thingpark" and not dev_eui and request.device_id:
        dev_eui = request.device_id
    if dev_eui:
        dev_eui = "".join(c for c in str(dev_eui) if c not in " :-").upper()
    meta = {
        "platform": platform,
        "device_id": request.device_id,
        "dev_eui": dev_eui or None,
        "f_port": request.f_port,
        "payload_hex": bytes(payload).hex() if payload is not None else None,
        "confirmed": bool(request.confirmed),
        "correlation_ids": [i for i in request.correlation_ids if not str(i).startswith("uplink-console:")],
    }
    meta.update(extra)
    return meta


# ----- where, and who ----------------------------------------------------------------------


def outbox_path(connection_key: str) -> Path:
    """<data dir>/outbox/<slug>.sqlite (the folder is created)."""
    from app.history import connection_folder, profile_slug

    directory = connection_folder(connection_key, "outbox")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutboxError(
            f"The outbox folder {directory} cannot be created ({exc.strerror or exc}); point "
            "UPLINK_CONSOLE_DATA_DIR at a writable folder."
        ) from None
    return directory / f"{profile_slug(connection_key)}.sqlite"


def _start_time(pid: int) -> str:
    """The process's start time in clock ticks since boot (Linux), or "" where unknown: with the
    pid it names one process, even after the pid is reused."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        return stat[stat.rindex(b")") + 2 :].split()[19].decode()
    except (OSError, ValueError, IndexError):
        return ""


_TOKEN: str | None = None


def process_token() -> str:
    """ "<pid>:<start time>" of this process (the claimant of the entries it publishes)."""
    global _TOKEN
    pid = os.getpid()
    if _TOKEN is None or not _TOKEN.startswith(f"{pid}:"):
        _TOKEN = f"{pid}:{_start_time(pid)}"
    return _TOKEN


def claim_owner_alive(token: str) -> bool:
    pid_text, _, start = token.partition(":")
    try:
        pid = int(pid_text)
    except ValueError:
        return False
    if pid == os.getpid():
        return token == process_token()
    if start:
        return _start_time(pid) == start
    if os.name == "posix":
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return True  # elsewhere only the lease ends a claim


# ----- the store ---------------------------------------------------------------------------

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)",
    """CREATE TABLE IF NOT EXISTS downlinks (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        ord INTEGER NOT NULL,
        rev INTEGER NOT NULL,
        created_at TEXT NOT NULL,
        connection TEXT NOT NULL,
        platform TEXT NOT NULL,
        topic TEXT NOT NULL,
        payload BLOB NOT NULL,
        qos INTEGER NOT NULL,
        retain INTEGER NOT NULL,
        properties TEXT NOT NULL,
        device_id TEXT,
        dev_eui TEXT,
        f_port INTEGER,
        f_cnt INTEGER,
        payload_hex TEXT,
        correlation_ids TEXT NOT NULL,
        confirmed INTEGER NOT NULL,
        state TEXT NOT NULL,
        reason TEXT,
        transitions TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        claimed_by TEXT,
        claimed_at REAL,
        no_news_after REAL,
        changed_at REAL NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS downlinks_waiting ON downlinks(state, ord)",
    "CREATE INDEX IF NOT EXISTS downlinks_rev ON downlinks(rev)",
)
_COLUMNS = (
    "seq, id, ord, rev, created_at, connection, platform, topic, payload, qos, retain, properties, device_id, "
    "dev_eui, f_port, f_cnt, payload_hex, correlation_ids, confirmed, state, reason, transitions, attempt, "
    "claimed_by, claimed_at, no_news_after, changed_at"
)
_NAMES = tuple(n.strip() for n in _COLUMNS.split(","))


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _properties_json(properties: dict | None) -> bytes:
    def default(value):
        if isinstance(value, bytes | bytearray):
            return {"hex": bytes(value).hex()}
        if isinstance(value, tuple):
            return list(value)
        raise TypeError(type(value).__name__)

    return orjson.dumps(dict(properties or {}), default=default)


def _properties_from(text) -> dict:
    props = orjson.loads(text) if text else {}
    data = props.get("correlation_data")
    if isinstance(data, dict) and "hex" in data:
        props["correlation_data"] = bytes.fromhex(data["hex"])
    return props


def _capacity() -> int:
    value = os.environ.get(CAPACITY_ENV)
    if value:
        try:
            return max(1, int(value))
        except ValueError:
            log.warning("%s=%r is not a number; using %d", CAPACITY_ENV, value, DEFAULT_CAPACITY)
    return DEFAULT_CAPACITY


def _no_news_after(platform: str, meta: dict) -> float | None:
    if not delivery.reports_delivery(platform):
        return None
    value = meta.get("no_news_after")
    if value is None:
        value = os.environ.get(NO_NEWS_ENV)
    if value not in (None, ""):
        try:
            return max(0.0, float(value))
        except (TypeError, ValueError):
            log.warning("no-news timeout %r is not a number; using the default", value)
    return delivery.DEFAULT_NO_NEWS_AFTER.get(platform)


@dataclass(frozen=True, slots=True)
class Claim:
    """An entry this process may publish now."""

    id: str
    topic: str
    payload: bytes
    qos: int
    retain: bool
    properties: dict


def _describe_db_error(exc: BaseException, path: Path, doing: str) -> OutboxError:
    text = str(exc)
    if isinstance(exc, sqlite3.OperationalError) and "locked" in text:
        return OutboxError(
            f"The outbox {path.name} stayed locked by another console process while {doing}; try again in a moment."
        )
    if "full" in text or getattr(exc, "sqlite_errorname", "") == "SQLITE_FULL":
        return OutboxError(
            f"The disk holding {path.parent} is full, so the outbox could not be written; free some space."
        )
    return OutboxError(f"The outbox {path} could not be {doing} ({text or type(exc).__name__}).")


class Outbox:
    """One connection's outbox file; one instance per thread (sqlite3 connections are not shared)."""

    def __init__(self, connection_key: str, *, capacity: int | None = None, path: Path | None = None) -> None:
        self.key = connection_key
        self.capacity = capacity if capacity is not None else _capacity()
        self.path = Path(path) if path is not None else outbox_path(connection_key)
        self.recovered_from: Path | None = None
        try:
            self.db = self._open()
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
                raise _describe_db_error(exc, self.path, "opened") from None
            from app.history import move_aside

            log.warning("outbox %s unreadable (%s); kept aside", self.path, exc)
            self.recovered_from = move_aside(self.path)
            try:
                self.db = self._open()
            except sqlite3.DatabaseError as again:
                raise _describe_db_error(again, self.path, "opened") from None
        except OSError as exc:
            raise _describe_db_error(exc, self.path, "opened") from None

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
        try:
            db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise OutboxError(
                    f"The outbox {self.path} was written by a newer Uplink Console; update the console to use it."
                )
            db.execute("BEGIN IMMEDIATE")
            for statement in _SCHEMA:
                db.execute(statement)
            db.execute("INSERT OR IGNORE INTO meta VALUES ('rev', 0)")
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            db.execute("COMMIT")
            db.execute("SELECT count(*) FROM downlinks").fetchone()  # reads a page: a damaged file fails here
        except BaseException:
            db.close()
            raise
        return db

    def close(self) -> None:
        try:
            self.db.close()
        except sqlite3.Error:
            pass

    # ----- transactions
    def _write(self, doing: str, work: Callable[[sqlite3.Connection], object], *, durable: bool = True):
        """One write transaction. durable=False for what is worthless after a crash anyway (a claim:
        its owner is dead then, and the entry waits again): no fsync of its own, which halves the
        fsyncs per downlink sent; the next durable commit syncs it with its own."""
        db = self.db
        if not durable:
            db.execute("PRAGMA synchronous=NORMAL")
        try:
            db.execute("BEGIN IMMEDIATE")
            result = work(db)
            db.execute("COMMIT")
            return result
        except BaseException as exc:
            if db.in_transaction:  # also when COMMIT itself failed (a full disk): the next write starts clean
                try:
                    db.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            if isinstance(exc, sqlite3.Error | OSError):
                raise _describe_db_error(exc, self.path, doing) from None
            raise
        finally:
            if not durable:
                db.execute("PRAGMA synchronous=FULL")

    @staticmethod
    def _next_rev(db) -> int:
        db.execute("UPDATE meta SET value = value + 1 WHERE key = 'rev'")
        return db.execute("SELECT value FROM meta WHERE key = 'rev'").fetchone()[0]

    def _row(self, db, downlink_id: str) -> dict | None:
        row = db.execute(f"SELECT {_COLUMNS} FROM downlinks WHERE id = ?", (downlink_id,)).fetchone()
        return dict(zip(_NAMES, row, strict=True)) if row is not None else None

    def _move(self, db, row: dict, state: str, detail: str | None, **columns) -> None:
        transitions = orjson.loads(row["transitions"])
        transitions.append([state, now_iso(), detail])
        sets = {"state": state, "transitions": orjson.dumps(transitions).decode(), "changed_at": time.time()}
        sets.update(columns)
        sets["rev"] = self._next_rev(db)
        assignments = ", ".join(f"{k} = ?" for k in sets)
        db.execute(f"UPDATE downlinks SET {assignments} WHERE id = ?", (*sets.values(), row["id"]))

    # ----- adding
    def add(self, message, meta: dict | None = None) -> dict:
        """Puts a downlink at the end of the outbox; returns its entry. OutboxFull when
        `capacity` downlinks are waiting already (nothing is dropped to make room)."""
        meta = dict(meta or {})
        platform = str(meta.get("platform") or "generic")
        downlink_id = str(meta.get("id") or new_downlink_id())
        message, correlation_ids = tag_message(platform, message, downlink_id, meta.get("correlation_ids") or ())
        payload = bytes(message.payload) if message.payload is not None else b""
        payload_hex = meta.get("payload_hex")
        if payload_hex is None and platform in ("generic", "drogue", "akenza"):
            payload_hex = payload.hex()
        dev_eui = meta.get("dev_eui")
        created = now_iso()
        no_news_after = _no_news_after(platform, meta)
        if platform == "tts" and message.payload.startswith(b'{"downlinks":[]'):
            no_news_after = None  # clearing the queue: the network reports nothing about it

        def work(db) -> None:
            waiting = db.execute("SELECT count(*) FROM downlinks WHERE state = ?", (OUTBOX,)).fetchone()[0]
            if waiting >= self.capacity:
                raise OutboxFull(
                    f"The outbox of this connection is full ({waiting:,} downlinks waiting, the limit is "
                    f"{self.capacity:,}); connect so they are sent, or cancel some, then send this one again."
                )
            order = db.execute("SELECT coalesce(max(ord), 0) + 1 FROM downlinks").fetchone()[0]
            db.execute(
                f"INSERT INTO downlinks ({_COLUMNS}) VALUES ({', '.join('?' * len(_NAMES))})",
                (
                    None,
                    downlink_id,
                    order,
                    self._next_rev(db),
                    created,
                    self.key,
                    platform,
                    message.topic,
                    payload,
                    int(message.qos),
                    int(bool(message.retain)),
                    _properties_json(message.properties).decode(),
                    meta.get("device_id"),
                    str(dev_eui).upper() if dev_eui else None,
                    meta.get("f_port"),
                    None,
                    payload_hex.lower() if isinstance(payload_hex, str) else None,
                    orjson.dumps(list(correlation_ids)).decode(),
                    int(bool(meta.get("confirmed"))),
                    OUTBOX,
                    None,
                    orjson.dumps([[OUTBOX, created, None]]).decode(),
                    1,
                    None,
                    None,
                    no_news_after,
                    time.time(),
                ),
            )
            self._prune(db)

        try:
            self._write("written", work)
        except OutboxError:
            if self.entry(downlink_id) is not None:
                raise OutboxError(
                    f"This downlink (id {downlink_id}) is in the outbox already; compose it again to send another."
                ) from None
            raise
        return self.entry(downlink_id)

    def _prune(self, db) -> None:
        done = db.execute("SELECT count(*) FROM downlinks WHERE state != ?", (OUTBOX,)).fetchone()[0]
        if done > KEEP_DONE:
            db.execute(
                "DELETE FROM downlinks WHERE seq IN (SELECT seq FROM downlinks WHERE state != ? ORDER BY seq LIMIT ?)",
                (OUTBOX, done - KEEP_DONE),
            )

    # ----- draining
    def claim_next(self, owner: str) -> Claim | None:
        """The oldest waiting entry, claimed for `owner`; None when none waits or another live
        process is publishing one now (entries leave one at a time, in order)."""

        def work(db) -> Claim | None:
            for downlink_id, claimed_by, claimed_at in db.execute(
                "SELECT id, claimed_by, claimed_at FROM downlinks WHERE state = ? AND claimed_by IS NOT NULL",
                (OUTBOX,),
            ).fetchall():
                if claim_owner_alive(claimed_by) and time.time() - (claimed_at or 0) < CLAIM_LEASE:
                    return None  # in flight (ours or another process's)
                row = self._row(db, downlink_id)
                self._move(
                    db,
                    row,
                    OUTBOX,
                    "The console process that was sending it stopped before the broker confirmed it; "
                    "it is sent again (it may arrive twice).",
                    claimed_by=None,
                    claimed_at=None,
                )
            row = db.execute(
                "SELECT id, topic, payload, qos, retain, properties FROM downlinks WHERE state = ? "
                "AND claimed_by IS NULL ORDER BY ord LIMIT 1",
                (OUTBOX,),
            ).fetchone()
            if row is None:
                return None
            db.execute(
                "UPDATE downlinks SET claimed_by = ?, claimed_at = ? WHERE id = ? AND state = ? AND claimed_by IS NULL",
                (owner, time.time(), row[0], OUTBOX),
            )
            return Claim(row[0], row[1], bytes(row[2]), row[3], bool(row[4]), _properties_from(row[5]))

        return self._write("read", work, durable=False)

    def handed_over(self, downlink_id: str, owner: str) -> dict | None:
        """The broker has it (PUBACK, or the QoS 0 packet written): state handed-over."""

        def work(db) -> None:
            row = self._row(db, downlink_id)
            if row is None or row["claimed_by"] != owner:
                return
            if row["state"] == OUTBOX:
                detail = None
                if not delivery.reports_delivery(row["platform"]):
                    detail = "The broker has it; this platform reports nothing more over MQTT."
                self._move(db, row, HANDED_OVER, detail, claimed_by=None, claimed_at=None, reason=None)
            else:  # a platform event moved it on already
                db.execute("UPDATE downlinks SET claimed_by = NULL, claimed_at = NULL WHERE id = ?", (downlink_id,))

        self._write("written", work)
        return self.entry(downlink_id)

    def release(self, downlink_id: str, owner: str, reason: str | None = None) -> None:
        """Not published (the connection went away): it waits again, first in line."""

        def work(db) -> None:
            sets = "claimed_by = NULL, claimed_at = NULL"
            args: list = []
            if reason:
                sets += ", reason = ?, rev = ?"
                args += [f"Not sent yet: {reason}", self._next_rev(db)]
            db.execute(
                f"UPDATE downlinks SET {sets} WHERE id = ? AND claimed_by = ?",
                (*args, downlink_id, owner),
            )

        self._write("written", work, durable=False)

    def release_all(self, owner: str) -> None:
        self._write(
            "written",
            lambda db: db.execute(
                "UPDATE downlinks SET claimed_by = NULL, claimed_at = NULL WHERE claimed_by = ?", (owner,)
            ),
        )

    def fail(self, downlink_id: str, owner: str, reason: str) -> dict | None:
        """Refused by the broker while connected: failed, with its sentence."""

        def work(db) -> None:
            row = self._row(db, downlink_id)
            if row is not None and row["claimed_by"] == owner and row["state"] == OUTBOX:
                self._move(db, row, FAILED, reason, claimed_by=None, claimed_at=None, reason=reason)

        self._write("written", work)
        return self.entry(downlink_id)

    # ----- the user's actions
    def cancel(self, downlink_id: str) -> dict:
        def work(db) -> None:
            row = self._row(db, downlink_id)
            if row is None:
                raise OutboxError(f"There is no downlink {downlink_id} in this connection's outbox.")
            if row["state"] != OUTBOX:
                raise OutboxError(
                    f"Only a downlink still in the outbox can be cancelled; this one is {row['state']} already."
                )
            if row["claimed_by"] and claim_owner_alive(row["claimed_by"]):
                raise OutboxError(
                    "This downlink is being handed to the broker right now; it can no longer be cancelled."
                )
            self._move(db, row, CANCELLED, "Cancelled by the user.", claimed_by=None, claimed_at=None)

        self._write("written", work)
        return self.entry(downlink_id)

    def retry(self, downlink_id: str) -> dict:
        """A failed, unanswered, refused or cancelled downlink goes to the end of the outbox again."""

        def work(db) -> None:
            row = self._row(db, downlink_id)
            if row is None:
                raise OutboxError(f"There is no downlink {downlink_id} in this connection's outbox.")
            if row["state"] not in RETRYABLE:
                raise OutboxError(
                    f"This downlink is {row['state']}; only a failed, unanswered, not acknowledged or cancelled one "
                    "can be sent again."
                )
            waiting = db.execute("SELECT count(*) FROM downlinks WHERE state = ?", (OUTBOX,)).fetchone()[0]
            if waiting >= self.capacity:
                raise OutboxFull(
                    f"The outbox of this connection is full ({waiting:,} downlinks waiting); connect so they are "
                    "sent, or cancel some, then retry."
                )
            order = db.execute("SELECT coalesce(max(ord), 0) + 1 FROM downlinks").fetchone()[0]
            attempt = row["attempt"] + 1
            self._move(db, row, OUTBOX, f"Attempt {attempt}.", ord=order, attempt=attempt, reason=None, f_cnt=None)

        self._write("written", work)
        return self.entry(downlink_id)

    # ----- delivery
    def observe(self, event) -> list[dict]:
        """Applies one platform event (downlink_* kinds); returns the entries it moved."""
        if event.kind not in DOWNLINK_KINDS:
            return []

        def work(db) -> str | None:
            rows = db.execute(
                "SELECT id, state, platform, device_id, dev_eui, f_port, payload_hex, f_cnt, correlation_ids, ord "
                "FROM downlinks WHERE platform = ? AND state NOT IN (?, ?, ?, ?) ORDER BY seq DESC LIMIT ?",
                (event.platform, *sorted(ANSWERED), 2 * KEEP_DONE),
            ).fetchall()
            tracked = [
                Tracked(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], tuple(orjson.loads(r[8])), r[9]) for r in rows
            ]
            target = delivery.match(event, tracked)
            if target is None:
                return None
            change = delivery.change_for(event, target)
            if change is None:
                return None
            row = self._row(db, target.id)
            extra: dict = {}
            if change.f_cnt is not None and row["f_cnt"] is None:
                extra["f_cnt"] = change.f_cnt
            if row["state"] == OUTBOX:
                # Published (by this or another process) and answered before the hand-over was stored.
                self._move(db, row, HANDED_OVER, None)
                row = self._row(db, target.id)
            if change.state == FAILED:
                extra["reason"] = change.detail
            elif row["state"] == NO_NEWS:
                extra["reason"] = None
            self._move(db, row, change.state, change.detail, **extra)
            return target.id

        moved = self._write("written", work)
        return [self.entry(moved)] if moved else []

    def expire(self, now: float | None = None) -> int:
        """Downlinks in flight with no news within their timeout become no-news; returns how many."""
        now = time.time() if now is None else now

        def work(db) -> int:
            count = 0
            for r in db.execute(
                "SELECT id, platform, state, confirmed, no_news_after, changed_at FROM downlinks "
                "WHERE state IN (?, ?, ?) AND no_news_after IS NOT NULL",
                (HANDED_OVER, delivery.QUEUED, delivery.SENT),
            ).fetchall():
                downlink_id, platform, state, confirmed, after, changed_at = r
                if not delivery.expects_news(platform, state, bool(confirmed)) or now - changed_at < after:
                    continue
                minutes = after / 60
                span = f"{minutes:g} min" if after >= 60 else f"{after:g} s"
                self._move(
                    db,
                    self._row(db, downlink_id),
                    NO_NEWS,
                    f"No news from the network for {span} after it was {state}; it may still arrive.",
                    reason=f"No news for {span} after {state}.",
                )
                count += 1
            return count

        return self._write("written", work)

    # ----- reading
    def entry(self, downlink_id: str) -> dict | None:
        try:
            row = self._row(self.db, downlink_id)
        except sqlite3.Error as exc:
            raise _describe_db_error(exc, self.path, "read") from None
        return entry_dict(row) if row is not None else None

    def entries(self, limit: int | None = None) -> list[dict]:
        """Every entry kept, oldest first (at most `limit`, the newest ones)."""
        sql = f"SELECT {_COLUMNS} FROM downlinks ORDER BY seq DESC"
        args: tuple = ()
        if limit is not None:
            sql += " LIMIT ?"
            args = (limit,)
        try:
            rows = self.db.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise _describe_db_error(exc, self.path, "read") from None
        return [entry_dict(dict(zip(_NAMES, r, strict=True))) for r in reversed(rows)]

    def waiting(self) -> int:
        return self.db.execute("SELECT count(*) FROM downlinks WHERE state = ?", (OUTBOX,)).fetchone()[0]

    def revision(self) -> int:
        return self.db.execute("SELECT value FROM meta WHERE key = 'rev'").fetchone()[0]

    def changed_since(self, rev: int) -> tuple[list[dict], int, int]:
        """(entries changed after revision `rev`, the revision now, how many wait unclaimed)."""
        try:
            db = self.db
            db.execute("BEGIN")
            try:
                now = db.execute("SELECT value FROM meta WHERE key = 'rev'").fetchone()[0]
                rows = []
                if now != rev:
                    rows = db.execute(f"SELECT {_COLUMNS} FROM downlinks WHERE rev > ? ORDER BY rev", (rev,)).fetchall()
                waiting = db.execute(
                    "SELECT count(*) FROM downlinks WHERE state = ? AND claimed_by IS NULL", (OUTBOX,)
                ).fetchone()[0]
            finally:
                db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise _describe_db_error(exc, self.path, "read") from None
        return [entry_dict(dict(zip(_NAMES, r, strict=True))) for r in rows], now, waiting


def entry_dict(row: dict) -> dict:
    """The contract's entry dict of a stored row."""
    payload = bytes(row["payload"])
    state = row["state"]
    return {
        "id": row["id"],
        "state": state,
        "topic": row["topic"],
        "payload_hex": row["payload_hex"],
        "size": len(payload),
        "qos": row["qos"],
        "retain": bool(row["retain"]),
        "properties": orjson.loads(row["properties"]),
        "device_id": row["device_id"],
        "dev_eui": row["dev_eui"],
        "f_port": row["f_port"],
        "f_cnt": row["f_cnt"],
        "platform": row["platform"],
        "connection": row["connection"],
        "confirmed": bool(row["confirmed"]),
        "correlation_ids": orjson.loads(row["correlation_ids"]),
        "attempt": row["attempt"],
        "reason": row["reason"],
        "transitions": orjson.loads(row["transitions"]),
        "created_at": row["created_at"],
        "waiting": state == OUTBOX,
        "retryable": state in RETRYABLE,
    }


def publish_arguments(properties: dict) -> dict:
    """MqttSession.publish keyword arguments of an entry's MQTT 5 properties."""
    kw: dict = {}
    if properties.get("content_type"):
        kw["content_type"] = properties["content_type"]
    if properties.get("user_properties"):
        kw["user_properties"] = [tuple(p) for p in properties["user_properties"]]
    expiry = properties.get("message_expiry", properties.get("message_expiry_interval"))
    if expiry:
        kw["message_expiry"] = int(expiry)
    if properties.get("response_topic"):
        kw["response_topic"] = properties["response_topic"]
    if properties.get("correlation_data"):
        data = properties["correlation_data"]
        kw["correlation_data"] = data.encode() if isinstance(data, str) else bytes(data)
    return kw


# ----- the drainer -------------------------------------------------------------------------


class OutboxRunner:
    """One connection's outbox in a process that publishes (the engine, or a command): drains it in
    order while a session is connected, applies delivery events, expires unanswered downlinks, and
    reports every change (also those other processes make) to `notify`.

    Every SQLite call runs on a thread of its own, never on the event loop: the receive path and the
    window never wait for a disk. Call everything on the loop that created the runner.
    """

    def __init__(
        self,
        connection_key: str,
        notify: Callable[[list[dict]], None] | None = None,
        *,
        on_problem: Callable[[str | None], None] | None = None,
        capacity: int | None = None,
        poll_interval: float = POLL_INTERVAL,
    ) -> None:
        self.key = connection_key
        self.notify = notify
        self.on_problem = on_problem
        self.capacity = capacity
        self.poll_interval = poll_interval
        self.owner = process_token()
        self.box: Outbox | None = None
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="outbox")
        self._publish: Callable[[Claim], Awaitable[None]] | None = None
        self._connected = False
        self._generation = 0  # counts connections: a publish that outlived its own is not a refusal
        self._lost: asyncio.Event | None = None  # set while not connected
        self._wake: asyncio.Event | None = None
        self._changed: asyncio.Event | None = None
        self._tasks: list[asyncio.Task] = []
        self._rev = 0
        self._announced: dict[str, tuple] = {}  # id -> (transitions, reason) announced: each change once
        self._problem: str | None = None
        self.handed_over = 0  # entries this runner handed to the broker
        self.closed = False

    async def _db(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def open(self) -> OutboxRunner:
        self._wake, self._changed, self._lost = asyncio.Event(), asyncio.Event(), asyncio.Event()
        self._lost.set()
        self.box = await self._db(lambda: Outbox(self.key, capacity=self.capacity))
        if self.box.recovered_from is not None:
            self._report(
                f"The outbox file was damaged; it was kept as {self.box.recovered_from} and a new one started. "
                "Downlinks that waited in it were not sent."
            )
        self._rev = await self._db(self.box.revision)
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._drain_loop()), loop.create_task(self._watch_loop())]
        return self

    # ----- the session
    def attach(self, publish: Callable[[Claim], Awaitable[None]]) -> None:
        """publish(claim) must return once the broker has the message (see the module)."""
        self._publish = publish

    def detach(self, publish=None) -> None:
        if publish is None or self._publish is publish:
            self._publish = None
            self._connected = False
            if self._lost is not None:
                self._lost.set()

    def set_connected(self, up: bool, publish=None) -> None:
        """The session's state; `publish` (what it attached) lets a replaced session's last word
        ("disconnected") pass without stopping its successor's drain."""
        if publish is not None and publish is not self._publish:
            return
        if up and not self._connected:
            self._generation += 1
        self._connected = up
        if self._lost is not None:
            if up:
                self._lost.clear()
            else:
                self._lost.set()
        if up and self._wake is not None:
            self._wake.set()

    def observe(self, event) -> None:
        """A platform event, from the receive path: only downlink_* kinds cost anything."""
        if event.kind not in DOWNLINK_KINDS or self.box is None or self.closed:
            return
        future = asyncio.get_running_loop().run_in_executor(self._executor, self.box.observe, event)
        future.add_done_callback(self._after_write)

    def _after_write(self, future) -> None:
        if future.cancelled():
            return
        exc = future.exception()
        if exc is not None:
            self._report(str(exc) if isinstance(exc, OutboxError) else f"The outbox could not be updated ({exc!r}).")
        else:
            self._announce(future.result())
        if self._changed is not None:
            self._changed.set()

    def _announce(self, entries: list[dict]) -> None:
        """Tells `notify` about each change once (a change seen by the watcher and by the call that
        made it is announced by whichever comes first)."""
        fresh = []
        for entry in entries:
            if entry is None:
                continue
            seen = (len(entry["transitions"]), entry["reason"])
            before = self._announced.get(entry["id"])
            if before is not None and (before[0] > seen[0] or before == seen):
                continue  # older than, or the same as, what was announced
            self._announced[entry["id"]] = seen
            fresh.append(entry)
        if len(self._announced) > 4 * KEEP_DONE:
            self._announced = dict(list(self._announced.items())[-2 * KEEP_DONE :])
        if fresh and self.notify is not None:
            try:
                self.notify(fresh)
            except Exception:  # noqa: BLE001
                log.exception("outbox observer failed")

    # ----- the user's actions
    async def send(self, message, meta: dict | None = None) -> dict:
        entry = await self._db(self.box.add, message, meta)
        self._announce([entry])
        self._changed.set()
        self._wake.set()
        return entry

    async def cancel(self, downlink_id: str) -> dict:
        entry = await self._db(self.box.cancel, downlink_id)
        self._announce([entry])
        self._changed.set()
        return entry

    async def retry(self, downlink_id: str) -> dict:
        entry = await self._db(self.box.retry, downlink_id)
        self._announce([entry])
        self._changed.set()
        self._wake.set()
        return entry

    async def entries(self) -> list[dict]:
        return await self._db(self.box.entries)

    async def entry(self, downlink_id: str) -> dict | None:
        return await self._db(self.box.entry, downlink_id)

    async def waiting(self) -> int:
        return await self._db(self.box.waiting)

    def kick(self) -> None:
        if self._wake is not None:
            self._wake.set()

    # ----- loops
    def _report(self, sentence: str | None) -> None:
        if sentence == self._problem:
            return
        self._problem = sentence
        if sentence:
            log.warning("outbox %s: %s", self.key, sentence)
        if self.on_problem is not None:
            try:
                self.on_problem(sentence)
            except Exception:  # noqa: BLE001
                log.exception("outbox problem observer failed")

    async def _drain_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self._drain()
            except asyncio.CancelledError:
                raise
            except OutboxError as exc:
                self._report(str(exc))
                await asyncio.sleep(1)
                self._wake.set()
            except Exception as exc:  # noqa: BLE001 - the drainer must outlive one bad entry
                log.exception("outbox drain failed")
                self._report(f"The outbox could not send a downlink ({type(exc).__name__}: {exc}).")
                await asyncio.sleep(1)
                self._wake.set()

    async def _drain(self) -> None:
        while self._connected and self._publish is not None and not self.closed:
            claim = await self._db(self.box.claim_next, self.owner)
            if claim is None:
                return
            publish = self._publish
            if publish is None or not self._connected:
                await self._db(self.box.release, claim.id, self.owner, None)
                return
            generation = self._generation
            try:
                await self._publish_while_connected(publish, claim)
            except asyncio.CancelledError:
                self._executor.submit(self.box.release, claim.id, self.owner, None)
                raise
            except Exception as exc:  # noqa: BLE001 - every failure is a sentence on the entry
                sentence = str(exc) or type(exc).__name__
                await asyncio.sleep(0.2)  # the session's state change for a lost connection comes first
                if self._connected and self._publish is publish and self._generation == generation:
                    # Refused on a connection that stayed up: sending it again would not help.
                    self._announce([await self._db(self.box.fail, claim.id, self.owner, sentence)])
                    self._changed.set()
                    continue
                await self._db(self.box.release, claim.id, self.owner, sentence)
                self._changed.set()
                return
            self._announce([await self._db(self.box.handed_over, claim.id, self.owner)])
            self.handed_over += 1
            self._changed.set()

    async def _publish_while_connected(self, publish, claim: Claim) -> None:
        """publish(claim), given up as soon as the connection it went out on is lost (its PUBACK
        can no longer come: waiting for the publish timeout would hold up every entry behind it)."""
        task = asyncio.ensure_future(publish(claim))
        lost = asyncio.ensure_future(self._lost.wait())
        try:
            done, _ = await asyncio.wait({task, lost}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            task.cancel()
            raise
        finally:
            lost.cancel()
        if task not in done:
            # The PUBACK and the end of the connection often arrive in one read: the publish may
            # have its confirmation already and only need a loop iteration to finish.
            await asyncio.wait({task}, timeout=0.1)
        if task.done() and not task.cancelled() and task.exception() is None:
            return
        if task.done():
            task.result()  # its own error (a refusal, or the library's "not connected")
        task.cancel()
        task.add_done_callback(lambda t: t.cancelled() or t.exception())
        raise ConnectionError("the connection was lost before the broker confirmed it")

    async def _watch_loop(self) -> None:
        last_expire = 0.0
        while True:
            try:
                await asyncio.wait_for(self._changed.wait(), self.poll_interval)
            except TimeoutError:
                pass
            self._changed.clear()
            try:
                now = time.monotonic()
                if now - last_expire >= EXPIRE_INTERVAL:
                    last_expire = now
                    await self._db(self.box.expire)
                changes, self._rev, waiting = await self._db(self.box.changed_since, self._rev)
                if self._problem is not None:
                    self._report(None)
            except asyncio.CancelledError:
                raise
            except OutboxError as exc:
                self._report(str(exc))
                continue
            except Exception as exc:  # noqa: BLE001
                log.exception("outbox watch failed")
                self._report(f"The outbox could not be read ({type(exc).__name__}: {exc}).")
                continue
            if changes:
                self._announce(changes)
            if waiting and self._connected:
                self._wake.set()

    async def close(self) -> None:
        self.closed = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass
        if self.box is not None:
            box = self.box
            try:
                await self._db(box.release_all, self.owner)
            except Exception:  # noqa: BLE001
                log.debug("releasing claims failed", exc_info=True)
            # Flush the last changes to the observer before going.
            try:
                changes, self._rev, _ = await self._db(box.changed_since, self._rev)
                self._announce(changes)
            except Exception:  # noqa: BLE001
                pass
            await self._db(box.close)
        self._executor.shutdown(wait=False)


def session_publisher(session) -> Callable[[Claim], Awaitable[None]]:
    """publish(claim) over an app.mqtt.session.MqttSession (returns when the broker has it)."""

    async def publish(claim: Claim) -> None:
        await session.publish(
            claim.topic, claim.payload, qos=claim.qos, retain=claim.retain, **publish_arguments(claim.properties)
        )

    return publish

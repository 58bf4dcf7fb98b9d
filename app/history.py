"""Event history: every normalized event, kept in one SQLite file per profile.

The engine process appends each batch of event rows (`HistoryWriter.append`, one transaction per
batch, one prepared INSERT run by executemany); the GUI process reads the same file through a
read-only connection (`HistoryReader`): the newest rows when a connection opens
(`load_newest_first`, read in the engine process, newest batch first, as column batches the
window puts above its rows; `load_recent` reads them oldest first), searches over the whole
history, and the raw message of one row for the details pane. WAL journaling lets the reader
read while the writer appends.

One table, `events`: a column per `app.store.ROW_FIELDS` (id is the rowid, so ids are in
arrival order), then what the in-memory row does not keep: the platform's received_at text,
correlation ids (JSON), the raw topic (NULL when it is the row's topic), the raw MQTT payload and
the MQTT 5 properties (JSON). `device_key` (DevEUI, else device id) is a virtual column: nothing
in the table, indexed for device searches. There is no index on ts: rows arrive in time order, so
retention by age is a binary search over ids, and inserts (the engine's hot path) skip a b-tree.
A one-row counter in `meta` keeps the row count, so neither retention nor count() scans.

Retention (age, rows, bytes) deletes the oldest rows. The writer checks the row count and the
used size after every append (microseconds) and the age every few seconds, deletes in bounded
chunks so a large backlog never stalls the engine, and leaves freed pages in the file for the
next inserts (the file does not shrink; `vacuum()` does that, when asked). WAL checkpoints (copy
into the file, fsync) run on a thread of the writer's own, not in append().
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import math
import os
import re
import sqlite3
import threading
import time
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson

from app.store import ROW_FIELDS, Filter, columns_from_rows

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
APP_NAME = "uplink-console"
DATA_DIR_ENV = "UPLINK_CONSOLE_DATA_DIR"

PAGE_SIZE = 16384  # rows are ~1.4 KB: fewer, larger WAL writes per batch
WRITER_CACHE_KIB = 32 * 1024
READER_CACHE_KIB = 64 * 1024
JOURNAL_SIZE_LIMIT = 64 * 1024 * 1024  # the WAL file is cut back to this after a checkpoint
BUSY_TIMEOUT_MS = 2000
CHECKPOINT_INTERVAL = 0.5  # seconds between the checkpoint thread's passes (when something was written)

RETENTION_AGE_INTERVAL = 5.0  # seconds between age checks made by append()
RETENTION_CHUNK = 5_000  # most rows one automatic retention pass deletes (~70 ms here: append() stays short)
# Reopening a connection (load_newest_first): the newest rows in a small first batch, shown at
# once; the rest in batches of a size the window appends in a few milliseconds each.
REPLAY_FIRST_ROWS = 2_000
REPLAY_CHUNK_ROWS = 20_000
RETENTION_SLACK = 0.01  # automatic passes delete this fraction below a limit, so they run rarely


class HistoryError(Exception):
    """The history file cannot be used; str() is a sentence for the user."""


class HistoryCorrupt(HistoryError):
    """The file is damaged or not a history; `HistoryWriter.open_or_recover` starts a fresh one."""


class HistoryVersionError(HistoryError):
    """The file was written by a newer version of the console; it is left alone."""


@dataclass(frozen=True, slots=True)
class RawRecord:
    """What the details pane needs that the in-memory row does not keep.

    Creating a frozen dataclass costs ~2 us; `HistoryWriter.append` also takes plain tuples in
    this field order, which cost ~0.05 us, for the engine's hot path."""

    topic: str
    payload: bytes  # the MQTT message body as received
    properties: dict | None  # MQTT 5 properties (as the session's ReceivedMessage.properties)
    received_at: str | None  # the event's received_at text (platform's own time string)
    correlation_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Retention:
    max_age_days: float | None = 30.0
    max_rows: int | None = 5_000_000
    max_bytes: int | None = 2 * 1024**3


# ----- where the files live ------------------------------------------------------------------


def data_dir() -> Path:
    """The per-user data directory; UPLINK_CONSOLE_DATA_DIR overrides it (tests, benchmarks)."""
    override = os.environ.get(DATA_DIR_ENV)
    if override:
        return Path(override)
    import platformdirs

    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


_WINDOWS_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)), *(f"lpt{i}" for i in range(10))}


def profile_slug(profile_name: str) -> str:
    """A file name stem for a profile: readable, lowercase ASCII letters, digits, '-' and '_', and
    a short hash of the exact name, so "Prod", "prod" and "pröd" never share a file (Windows and
    macOS file names ignore case) and no name can be a reserved Windows device name."""
    ascii_name = unicodedata.normalize("NFKD", profile_name).encode("ascii", "ignore").decode()
    readable = re.sub(r"[^a-z0-9_]+", "-", ascii_name.lower()).strip("-_")[:40].strip("-_") or "profile"
    if readable in _WINDOWS_RESERVED:
        readable += "_"
    digest = hashlib.sha256(profile_name.encode("utf-8", "surrogatepass")).hexdigest()[:10]
    return f"{readable}-{digest}"


DEMO_PREFIX = "demo "  # the demo's connections (ui/demo): their files live under data_dir()/demo


def connection_folder(connection_name: str, kind: str) -> Path:
    """data_dir()/<kind> for a connection's files (history, outbox), or data_dir()/demo/<kind> for
    the demo's, which stay apart from the user's own."""
    if connection_name.startswith(DEMO_PREFIX):
        return data_dir() / "demo" / kind
    return data_dir() / kind


def history_path(profile_name: str) -> Path:
    """data_dir()/history/<slug>.sqlite3 (the demo's under data_dir()/demo; the directory is created)."""
    directory = connection_folder(profile_name, "history")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HistoryError(f"The history folder {directory} cannot be created ({exc.strerror or exc}).") from exc
    return directory / f"{profile_slug(profile_name)}.sqlite3"


def remove_database(path: Path) -> list[str]:
    """Deletes an SQLite file with its -wal and -shm companions; the sentences of those that
    could not be deleted (none when all went, or were not there)."""
    problems = []
    for suffix in ("", "-wal", "-shm"):
        part = Path(path).with_name(Path(path).name + suffix)
        try:
            part.unlink(missing_ok=True)
        except OSError as exc:
            problems.append(f"{part} could not be deleted ({exc.strerror or exc})")
    return problems


def move_aside(path: Path) -> Path:
    """Renames a damaged history (and its -wal/-shm files) to <name>.corrupt-<timestamp>."""
    path = Path(path)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
    try:
        path.replace(target)
        for suffix in ("-wal", "-shm"):
            side = path.with_name(path.name + suffix)
            if side.exists():
                side.replace(target.with_name(target.name + suffix))
    except OSError as exc:
        raise HistoryError(
            f"The damaged history file {path} could not be moved aside ({exc.strerror or exc}); "
            "close other Uplink Console windows and try again."
        ) from exc
    return target


# ----- schema ----------------------------------------------------------------------------------

_COLUMN_TYPES = {
    "id": "INTEGER PRIMARY KEY",
    "ts": "REAL",
    "f_port": "INTEGER",
    "f_cnt": "INTEGER",
    "payload": "BLOB",
    "decoded": "BLOB",
    "rssi": "REAL",
    "snr": "REAL",
    "gateways": "INTEGER",
    "spreading_factor": "INTEGER",
    "bandwidth_hz": "INTEGER",
    "frequency_hz": "INTEGER",
}
RAW_COLUMNS = ("received_at", "correlation_ids", "raw_topic", "raw_payload", "properties")
_RAW_TYPES = ("TEXT", "TEXT", "TEXT", "BLOB", "TEXT")

# The MQTT DUP flag of the message a row came from: 1 for a broker redelivery, else NULL. Added
# to files made before it (ALTER TABLE on the writer's open: a schema change only, instant on a
# file of any size; older consoles ignore the column). A replay finds a batch's flagged rows by
# its rowid range, over pages the batch's own query has just read.
_DUP_SCHEMA = ("ALTER TABLE events ADD COLUMN dup INTEGER",)

_SCHEMA = [
    "CREATE TABLE events (\n    "
    + ",\n    ".join(
        [f"{name} {_COLUMN_TYPES.get(name, 'TEXT')}" for name in ROW_FIELDS]
        + [f"{name} {kind}" for name, kind in zip(RAW_COLUMNS, _RAW_TYPES, strict=True)]
        # DevEUI, else device id: exactly `dev_eui or device_id`, like app.store's device key.
        + ["device_key TEXT GENERATED ALWAYS AS (coalesce(nullif(dev_eui, ''), device_id)) VIRTUAL"]
    )
    + "\n)",
    "CREATE INDEX events_device ON events(device_key)",
    *_DUP_SCHEMA,
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID",
    "INSERT INTO meta (key, value) VALUES ('rows', 0)",
]

_ROW_SELECT = ", ".join(ROW_FIELDS)
_INSERT_ROWS = f"INSERT INTO events ({_ROW_SELECT}) VALUES ({', '.join('?' * len(ROW_FIELDS))})"
# JSON arrives as orjson bytes and is stored as TEXT; the raw topic is stored only when it is
# not the row's topic (the second '?' of nullif is the row's topic again).
_INSERT_FULL = (
    f"INSERT INTO events ({_ROW_SELECT}, {', '.join(RAW_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(ROW_FIELDS))}, ?, CAST(? AS TEXT), nullif(?, ?), ?, CAST(? AS TEXT))"
)
_TOPIC = ROW_FIELDS.index("topic")
_TEXT_COLS = ("device_id", "dev_eui", "topic", "gateway_id", "error")  # searched as text (any case)
_TEXT_IDX = tuple(ROW_FIELDS.index(name) for name in _TEXT_COLS)
_DECODED = ROW_FIELDS.index("decoded")
_PAYLOAD = ROW_FIELDS.index("payload")


def _json_default(value):
    if isinstance(value, bytes | bytearray | memoryview):  # MQTT 5 correlation data
        return {"$bytes": bytes(value).hex()}
    if isinstance(value, tuple | set | frozenset):
        return list(value)
    return str(value)


def _from_json(value):
    if isinstance(value, dict):
        if len(value) == 1 and "$bytes" in value and isinstance(value["$bytes"], str):
            try:
                return bytes.fromhex(value["$bytes"])
            except ValueError:
                return value
        return {k: _from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    return value


def _dump_properties(props) -> bytes:
    try:
        return orjson.dumps(props, default=_json_default, option=orjson.OPT_NON_STR_KEYS)
    except TypeError:  # e.g. an integer beyond 64 bits: keep what can be shown
        return orjson.dumps({"unreadable": repr(props)})


# ----- errors ----------------------------------------------------------------------------------


def _error(exc: Exception, path: Path, doing: str) -> HistoryError:
    """An sqlite3 error as a HistoryError with a sentence."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    detail = str(exc) or type(exc).__name__
    if name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")):
        return HistoryCorrupt(f"The history file {path} is damaged ({detail}); it cannot be {doing}.")
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
        return HistoryError(f"The history file {path} is busy ({detail}): another Uplink Console may be writing it.")
    if name.startswith("SQLITE_FULL"):
        return HistoryError(f"The disk holding {path} is full; the history cannot grow.")
    if name.startswith(("SQLITE_CANTOPEN", "SQLITE_PERM", "SQLITE_READONLY", "SQLITE_AUTH")):
        return HistoryError(f"The history file {path} cannot be {doing} ({detail}); check its permissions.")
    return HistoryError(f"The history file {path} could not be {doing} ({detail}).")


def _has_dup_column(db: sqlite3.Connection) -> bool:
    return any(r[1] == "dup" for r in db.execute("PRAGMA table_info(events)"))


def _dup_flags(db: sqlite3.Connection, rows: list[tuple], has_column: bool = True) -> list[bool] | None:
    """The DUP flag of each row (rows in id order), or None when none of them has it (or the
    file has no dup column: has_column, from _has_dup_column once per read)."""
    if not rows or not has_column:
        return None
    lo, hi = rows[0][0], rows[-1][0]
    flagged = {r[0] for r in db.execute("SELECT id FROM events WHERE dup = 1 AND id BETWEEN ? AND ?", (lo, hi))}
    if not flagged:
        return None
    return [r[0] in flagged for r in rows]


def _check_version(db: sqlite3.Connection, path: Path) -> int:
    """The file's schema version (0: empty file); refuses newer versions and foreign databases."""
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise HistoryVersionError(
            f"The history file {path} was written by a newer Uplink Console (format {version}; this "
            f"version reads format {SCHEMA_VERSION}); update the console to open it."
        )
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if version == 0 and tables:
        raise HistoryCorrupt(f"The file {path} is an SQLite database but not an Uplink Console history.")
    if version and not {"events", "meta"} <= tables:
        raise HistoryCorrupt(f"The history file {path} is damaged: its tables are missing.")
    return version


# ----- writing ---------------------------------------------------------------------------------


class HistoryWriter:
    """Appends event rows to one history file; used by one thread (the engine's) at a time.

    One writer per file: ids come from `take_ids`, and a second writer would hand out the same."""

    def __init__(self, path: Path, retention: Retention = Retention()) -> None:
        self.path = Path(path)
        self.retention = retention
        self.retention_interval = RETENTION_AGE_INTERVAL
        self.retention_chunk = RETENTION_CHUNK
        self._db: sqlite3.Connection | None = None
        self._rows = 0
        self._last_age_check = -math.inf  # monotonic time of append()'s last age check
        self._behind = False  # the last automatic pass stopped at its chunk: continue next append
        self._dirty = threading.Event()  # something was committed since the last checkpoint
        self._stopping = threading.Event()
        self._checkpointer: threading.Thread | None = None
        self._checkpoint_failed = False  # the thread gave up: append() turns SQLite's own checkpoints on
        self.recovered_from: Path | None = None  # set by open_or_recover when it moved a file aside
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise HistoryError(f"The history folder {self.path.parent} cannot be created ({exc}).") from exc
        try:
            self._open()
        except BaseException:
            self._close_quietly()
            raise

    @classmethod
    def open_or_recover(cls, path: Path, retention: Retention = Retention()) -> HistoryWriter:
        """Opens the history; a damaged one is moved aside (<name>.corrupt-<timestamp>) and a fresh one
        started (`recovered_from` tells where the old one went). A newer version's file is refused."""
        try:
            return cls(path, retention)
        except HistoryCorrupt as exc:
            moved = move_aside(Path(path))
            log.warning("%s Moved it to %s and started a new history.", exc, moved)
            writer = cls(path, retention)
            writer.recovered_from = moved
            return writer

    def recover(self) -> Path:
        """After HistoryCorrupt from append() (damage deep in a file that opened): moves the file aside,
        starts a fresh one and returns where the old one went. Ids continue from this writer's, so
        ids the GUI already holds never name a different row."""
        next_id = self.next_id
        self._close_quietly()
        moved = move_aside(self.path)
        log.warning("The history file %s was damaged; moved it to %s and started a new one.", self.path, moved)
        self._stopping = threading.Event()
        self._open()
        self.next_id = max(self.next_id, next_id)
        self.recovered_from = moved
        return moved

    def _open(self) -> None:
        try:
            db = self._db = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000
            )
            version = _check_version(db, self.path)
            if version == 0:
                # Only takes effect on a new file, before the first table.
                db.execute(f"PRAGMA page_size = {PAGE_SIZE}")
            mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise HistoryError(f"The history file {self.path} cannot use write-ahead logging (it got {mode}).")
            for pragma in (
                "synchronous = NORMAL",
                f"cache_size = -{WRITER_CACHE_KIB}",
                "temp_store = MEMORY",
                "secure_delete = OFF",  # this build of SQLite may default to ON: zeroing deleted rows costs writes
                f"journal_size_limit = {JOURNAL_SIZE_LIMIT}",
                "foreign_keys = OFF",
            ):
                db.execute(f"PRAGMA {pragma}")
            if version == 0:
                db.execute("BEGIN IMMEDIATE")
                if _check_version(db, self.path) == 0:  # nobody created it meanwhile
                    for statement in _SCHEMA:
                        db.execute(statement)
                    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                db.execute("COMMIT")
            elif not _has_dup_column(db):  # a file from before the DUP flag was kept
                db.execute("BEGIN IMMEDIATE")
                if not _has_dup_column(db):
                    for statement in _DUP_SCHEMA:
                        db.execute(statement)
                db.execute("COMMIT")
            self.next_id = (db.execute("SELECT max(id) FROM events").fetchone()[0] or 0) + 1
            self._rows = self._read_count()
            self._page_size = db.execute("PRAGMA page_size").fetchone()[0]
            # Checkpoints (copying the WAL into the file, then fsync) run on a thread of their own,
            # off the engine's loop; sqlite3 releases the GIL while it does them.
            db.execute("PRAGMA wal_autocheckpoint = 0")
        except sqlite3.Error as exc:
            raise _error(exc, self.path, "opened") from exc
        self._checkpointer = threading.Thread(target=self._checkpoint_loop, name="history-checkpoint", daemon=True)
        self._checkpointer.start()

    def _checkpoint_loop(self) -> None:
        db = None
        try:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=1.0)
            while not self._stopping.wait(CHECKPOINT_INTERVAL):
                if self._dirty.is_set():
                    self._dirty.clear()
                    db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error as exc:
            log.warning("History checkpoints stopped (%s); the writer checkpoints itself from now on.", exc)
            self._checkpoint_failed = True
        finally:
            if db is not None:
                db.close()

    def _read_count(self) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE key = 'rows'").fetchone()
        if row is None or not isinstance(row[0], int) or row[0] < 0:  # repair a lost counter
            n = self._db.execute("SELECT count(*) FROM events").fetchone()[0]
            self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('rows', ?)", (n,))
            return n
        return row[0]

    # ----- ids and rows
    next_id: int

    def take_ids(self, n: int) -> range:
        """Reserves n ids (contiguous, increasing) for rows the caller appends later."""
        ids = range(self.next_id, self.next_id + n)
        self.next_id += n
        return ids

    @property
    def count(self) -> int:
        """Rows in the file."""
        return self._rows

    def append(self, rows: list[tuple], raws: list | None = None, dup_ids=None) -> None:
        """Stores rows (ROW_FIELDS order, id filled, None for missing) with their raw records
        (RawRecord, or tuples in its field order; None: no raw data) in one transaction;
        dup_ids: the ids of the rows whose message had the MQTT DUP flag.

        Raises HistoryError (nothing of this batch stored); HistoryCorrupt when the file is damaged."""
        if not rows:
            return
        if rows[0][0] is None or rows[-1][0] is None:
            raise ValueError("append: rows need their ids (from take_ids)")
        db = self._live()
        if self._checkpoint_failed:
            self._checkpoint_failed = False
            try:
                db.execute("PRAGMA wal_autocheckpoint = 1000")
            except sqlite3.Error as exc:
                raise _error(exc, self.path, "written") from exc
        if raws is None:
            sql, params = _INSERT_ROWS, rows
        elif len(raws) != len(rows):
            raise ValueError(f"append: {len(rows)} rows but {len(raws)} raw records")
        else:
            sql = _INSERT_FULL
            dumps, dump_props = orjson.dumps, _dump_properties
            if type(raws[0]) is RawRecord:
                params = (
                    (
                        *row,
                        r.received_at,
                        dumps(r.correlation_ids, default=str) if r.correlation_ids else None,
                        r.topic,
                        row[_TOPIC],
                        r.payload,
                        dump_props(r.properties) if r.properties else None,
                    )
                    for row, r in zip(rows, raws, strict=True)
                )
            else:  # tuples: topic, payload, properties, received_at, correlation_ids
                params = (
                    (
                        *row,
                        received_at,
                        dumps(cids, default=str) if cids else None,
                        topic,
                        row[_TOPIC],
                        payload,
                        dump_props(props) if props else None,
                    )
                    for row, (topic, payload, props, received_at, cids) in zip(rows, raws, strict=True)
                )
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany(sql, params)
                if dup_ids:
                    db.executemany("UPDATE events SET dup = 1 WHERE id = ?", [(i,) for i in dup_ids])
                db.execute("UPDATE meta SET value = value + ? WHERE key = 'rows'", (len(rows),))
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        except sqlite3.IntegrityError as exc:
            try:
                self.next_id = max(self.next_id, (db.execute("SELECT max(id) FROM events").fetchone()[0] or 0) + 1)
            except sqlite3.Error:
                pass
            raise HistoryError(
                f"History rows were not stored: their ids are already in {self.path} "
                "(is another Uplink Console writing this profile's history?)."
            ) from exc
        except sqlite3.Error as exc:
            raise _error(exc, self.path, "written") from exc
        self._rows += len(rows)
        self._dirty.set()
        last = rows[-1][0]
        if isinstance(last, int) and last >= self.next_id:
            self.next_id = last + 1
        try:
            self._auto_retention()
        except (HistoryError, sqlite3.Error) as exc:  # the batch is stored; the next append tries again
            log.warning("History retention failed: %s", exc)

    # ----- retention
    def _auto_retention(self) -> None:
        now = time.monotonic()
        check_age = now - self._last_age_check >= self.retention_interval
        if check_age:
            self._last_age_check = now
        if check_age or self._behind or self._over_rows() or self._over_bytes():
            self._enforce(check_age or self._behind, self.retention_chunk, RETENTION_SLACK)

    def _over_rows(self) -> bool:
        limit = self.retention.max_rows
        return limit is not None and self._rows > limit

    def _used_bytes(self) -> int:
        """Bytes in pages that hold data (free pages stay in the file for the next inserts)."""
        db = self._db
        pages = db.execute("PRAGMA page_count").fetchone()[0] - db.execute("PRAGMA freelist_count").fetchone()[0]
        return pages * self._page_size

    def _over_bytes(self) -> bool:
        limit = self.retention.max_bytes
        return limit is not None and self._used_bytes() > limit

    def enforce_retention(self) -> int:
        """Deletes the oldest rows beyond the age, row and size limits; returns how many.

        Cheap when there is nothing to do (two rowid lookups, two header reads). append() calls
        it itself: the row and size limits after every batch, the age every few seconds, at most
        `retention_chunk` rows a time and down to 1% under a limit, so it runs rarely."""
        return self._enforce(True, None, 0.0)

    def _enforce(self, check_age: bool, budget: int | None, slack: float) -> int:
        db = self._live()
        r = self.retention
        left = math.inf if budget is None else budget
        deleted = 0
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                if check_age and r.max_age_days is not None and left > 0:
                    boundary = self._first_recent_id(time.time() - r.max_age_days * 86400.0)
                    if boundary is not None:
                        n = self._delete_oldest(left, below_id=boundary)
                        deleted += n
                        left -= n
                if r.max_rows is not None and left > 0:
                    rows = self._rows - deleted
                    if rows > r.max_rows:
                        target = max(0, r.max_rows - int(r.max_rows * slack))
                        deleted_now = self._delete_oldest(min(rows - target, left))
                        deleted += deleted_now
                        left -= deleted_now
                if r.max_bytes is not None and left > 0:
                    target_bytes = r.max_bytes - int(r.max_bytes * slack)
                    for _ in range(32):  # freed pages lag the estimate (index pages): a few rounds
                        used = self._used_bytes()
                        rows = self._rows - deleted
                        if used <= r.max_bytes or rows <= 0 or left <= 0:
                            break
                        per_row = used / rows
                        want = max(1, math.ceil((used - target_bytes) / per_row))
                        n = self._delete_oldest(min(want, rows, left))
                        deleted += n
                        left -= n
                        if not n:
                            break
                        if slack:  # automatic pass: one estimate is enough; the next append continues
                            break
                if deleted:
                    db.execute("UPDATE meta SET value = value - ? WHERE key = 'rows'", (deleted,))
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise _error(exc, self.path, "trimmed") from exc
        self._rows -= deleted
        if deleted:
            self._dirty.set()
        self._behind = budget is not None and left <= 0
        return deleted

    def _first_recent_id(self, cutoff: float) -> int | None:
        """The id before which every row is older than cutoff (None: the oldest row is not).

        Rows are appended in time order, so this is a binary search over ids (a few dozen rowid
        lookups) instead of an index on ts that every insert would pay for."""
        db = self._db
        first = db.execute("SELECT id, ts FROM events ORDER BY id LIMIT 1").fetchone()
        if first is None or first[1] is None or first[1] >= cutoff:
            return None
        lo, hi = first[0] + 1, max(self.next_id, first[0] + 1)  # ids < lo: old; the row at hi: recent
        while lo < hi:
            mid = (lo + hi) // 2
            found = db.execute("SELECT id, ts FROM events WHERE id >= ? ORDER BY id LIMIT 1", (mid,)).fetchone()
            if found is None or found[0] >= hi:
                hi = mid
            elif found[1] is not None and found[1] < cutoff:
                lo = found[0] + 1
            else:
                hi = found[0]
        return hi

    def _delete_oldest(self, n: float, below_id: int | None = None) -> int:
        """Deletes the n oldest rows (only those below below_id when given)."""
        if n <= 0:
            return 0
        if math.isinf(n):
            if below_id is None:
                return self._db.execute("DELETE FROM events").rowcount
            return self._db.execute("DELETE FROM events WHERE id < ?", (below_id,)).rowcount
        cond = "id <= coalesce((SELECT id FROM events ORDER BY id LIMIT 1 OFFSET ?), (SELECT max(id) FROM events))"
        if below_id is None:
            return self._db.execute(f"DELETE FROM events WHERE {cond}", (int(n) - 1,)).rowcount
        return self._db.execute(f"DELETE FROM events WHERE id < ? AND {cond}", (below_id, int(n) - 1)).rowcount

    def vacuum(self) -> None:
        """Rewrites the file without its free pages (slow: seconds per GB; the reader may keep reading)."""
        try:
            self._live().execute("VACUUM")
        except sqlite3.Error as exc:
            raise _error(exc, self.path, "compacted") from exc

    # ----- life
    def _live(self) -> sqlite3.Connection:
        if self._db is None:
            raise HistoryError(f"The history file {self.path} is closed.")
        return self._db

    def _stop_checkpointer(self) -> None:
        self._stopping.set()
        if self._checkpointer is not None:
            self._checkpointer.join()
            self._checkpointer = None

    def _close_quietly(self) -> None:
        self._stop_checkpointer()
        db, self._db = self._db, None
        if db is not None:
            try:
                db.close()
            except sqlite3.Error:
                pass

    def close(self) -> None:
        """Closes the file; the last connection to close folds the WAL into it."""
        self._stop_checkpointer()
        db, self._db = self._db, None
        if db is None:
            return
        try:
            db.execute("PRAGMA optimize")
        except sqlite3.Error:
            pass
        try:
            db.close()
        except sqlite3.Error as exc:
            raise _error(exc, self.path, "closed") from exc

    def __enter__(self) -> HistoryWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ----- reading ---------------------------------------------------------------------------------


def _text_test(text: str):
    """Per-row text test, the same as app.store's column-wide one: the needle (any case) in device
    id, DevEUI, topic, gateway id or error; in the decoded JSON (ASCII letters in any case); or,
    when it is hex (spaces allowed), as bytes in the payload."""
    needle = text.lower()
    pattern = re.compile(re.escape(text.encode()), re.IGNORECASE)
    payload_bytes = _hex_bytes(needle)

    def test(row: tuple) -> bool:
        for i in _TEXT_IDX:
            v = row[i]
            if v is not None and needle in v.lower():
                return True
        decoded = row[_DECODED]
        if decoded and pattern.search(decoded):
            return True
        payload = row[_PAYLOAD]
        return payload_bytes is not None and payload is not None and payload_bytes in payload

    return test


def _hex_bytes(needle: str) -> bytes | None:
    hex_needle = needle.replace(" ", "")
    if hex_needle and len(hex_needle) % 2 == 0 and all(ch in "0123456789abcdef" for ch in hex_needle):
        return bytes.fromhex(hex_needle)
    return None


def _text_prefilter(text: str, params: dict) -> str:
    """SQL that keeps every row the text test keeps (and few others), so the scan runs in C.

    LIKE folds ASCII letters only, so it is exact for a string of ASCII characters; a value with
    any other character, or a NUL (length in characters != length in bytes), always goes on to
    the Python test. lower() (ASCII only) of the decoded bytes then a byte search is exactly the
    bytes regex's IGNORECASE; the payload test is a byte search too."""
    needle = text.lower()
    params["nb"] = text.encode().lower()
    if len(needle) < 10_000:  # SQLite refuses LIKE patterns over 50,000 bytes
        params["pat"] = "%" + needle.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        match = "{c} LIKE :pat ESCAPE '\\'"
    else:
        params["n"] = needle
        match = "instr(lower({c}), :n)"
    parts = [match.format(c=c) + f" OR length({c}) <> length(CAST({c} AS BLOB))" for c in _TEXT_COLS]
    parts.append("instr(CAST(lower(decoded) AS BLOB), :nb)")
    payload_bytes = _hex_bytes(text.lower())
    if payload_bytes is not None:
        params["hx"] = payload_bytes
        parts.append("instr(payload, :hx)")
    return "(" + " OR ".join(parts) + ")"


def _writable(folder: Path) -> bool:
    """Whether files can be created in folder (False on a read-only mount, or without permission)."""
    import tempfile

    try:
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


class HistoryReader:
    """Reads a history file while its writer appends (read-only connection, WAL).

    A file that does not exist yet reads as empty until the writer creates it. Errors are
    HistoryError (HistoryCorrupt for a damaged file, HistoryVersionError for a newer one)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._db: sqlite3.Connection | None = None
        self._closed = False
        self._lock = threading.Lock()  # one connection, even when two threads ask for it first
        self._connect()

    def _connect(self) -> sqlite3.Connection | None:
        """The connection, or None while there is no history in the file yet."""
        if self._db is not None:
            return self._db
        with self._lock:
            return self._open()

    def _open(self) -> sqlite3.Connection | None:
        if self._db is not None:
            return self._db
        if self._closed:
            raise HistoryError(f"The history file {self.path} is closed.")
        if not self.path.exists():
            return None
        db = None
        try:
            uri = self.path.resolve().as_uri() + "?mode=ro"
            if not _writable(self.path.parent):
                # Even a read-only connection to a WAL file needs to create its -shm file; on a
                # read-only mount nobody can write the file either, so it is read as immutable
                # (rows still in a -wal file that was never checkpointed are not seen).
                uri += "&immutable=1"
            db = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False, timeout=5.0)
            if not _check_version(db, self.path):
                db.close()
                return None
            for pragma in ("query_only = ON", f"cache_size = -{READER_CACHE_KIB}", "temp_store = MEMORY"):
                db.execute(f"PRAGMA {pragma}")
        except sqlite3.Error as exc:
            if db is not None:
                db.close()
            raise _error(exc, self.path, "read") from exc
        except BaseException:
            if db is not None:
                db.close()
            raise
        self._db = db
        return db

    def _query(self, sql: str, params=()) -> list:
        db = self._connect()
        if db is None:
            return []
        try:
            return db.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise _error(exc, self.path, "read") from exc

    def count(self) -> int:
        rows = self._query("SELECT value FROM meta WHERE key = 'rows'")
        return int(rows[0][0]) if rows else 0

    def max_id(self) -> int | None:
        rows = self._query("SELECT max(id) FROM events")
        return rows[0][0] if rows else None

    def row(self, row_id: int) -> dict | None:
        rows = self._query(f"SELECT {_ROW_SELECT} FROM events WHERE id = ?", (row_id,))
        return dict(zip(ROW_FIELDS, rows[0], strict=True)) if rows else None

    def raw(self, row_id: int) -> RawRecord | None:
        """The raw message of a row; None when the id is not (or no longer) in the history or the
        row was stored without one."""
        rows = self._query(
            "SELECT coalesce(raw_topic, topic), raw_payload, properties, received_at, correlation_ids "
            "FROM events WHERE id = ?",
            (row_id,),
        )
        if not rows or rows[0][1] is None:
            return None
        topic, payload, props, received_at, cids = rows[0]
        try:
            properties = _from_json(orjson.loads(props)) if props else None
            correlation_ids = tuple(orjson.loads(cids)) if cids else ()
        except orjson.JSONDecodeError as exc:
            raise HistoryCorrupt(f"The history file {self.path} is damaged: row {row_id} has unreadable JSON.") from exc
        return RawRecord(topic or "", bytes(payload), properties, received_at, correlation_ids)

    def extras(self, first_id: int, last_id: int) -> dict[int, tuple[str | None, tuple[str, ...]]]:
        """{id: (received_at, correlation_ids)} of the rows first_id..last_id that have them (one
        query: exports look rows up a range at a time)."""
        rows = self._query(
            "SELECT id, received_at, correlation_ids FROM events WHERE id BETWEEN ? AND ? "
            "AND (received_at IS NOT NULL OR correlation_ids IS NOT NULL)",
            (first_id, last_id),
        )
        out = {}
        for row_id, received_at, cids in rows:
            try:
                out[row_id] = (received_at, tuple(orjson.loads(cids)) if cids else ())
            except orjson.JSONDecodeError:
                out[row_id] = (received_at, ())
        return out

    def load_recent(self, limit: int, chunk: int = 20_000) -> Iterator[dict]:
        """The newest `limit` rows, oldest first, in batches of `chunk` rows as
        app.store.columns_from_rows() makes them (for EventStore.append_columns)."""
        db = self._connect()
        if db is None or limit <= 0:
            return
        try:
            # One statement, so one snapshot: the row count and the id range.
            stored, lo, hi = db.execute(
                "SELECT (SELECT value FROM meta WHERE key = 'rows'), (SELECT min(id) FROM events), "
                "(SELECT max(id) FROM events)"
            ).fetchone()
            if hi is None:
                return
            if stored != hi - lo + 1:  # ids with gaps (reserved, never written): step over `limit` rowids
                first = db.execute(
                    "SELECT id FROM events WHERE id <= ? ORDER BY id DESC LIMIT 1 OFFSET ?", (hi, limit - 1)
                ).fetchone()
                lo = first[0] if first is not None else lo
            else:
                lo = max(lo, hi - limit + 1)
            cur = db.execute(f"SELECT {_ROW_SELECT} FROM events WHERE id BETWEEN ? AND ? ORDER BY id", (lo, hi))
            try:
                has_dup = _has_dup_column(db)
                while rows := cur.fetchmany(chunk):
                    yield columns_from_rows(rows, dup=_dup_flags(db, rows, has_dup))
            finally:
                cur.close()
        except sqlite3.Error as exc:
            raise _error(exc, self.path, "read") from exc

    def load_newest_first(
        self, limit: int, first: int = REPLAY_FIRST_ROWS, chunk: int = REPLAY_CHUNK_ROWS
    ) -> Iterator[dict]:
        """The newest `limit` rows as column batches, the newest batch first: the first batch holds
        the newest `first` rows, each later one the `chunk` rows just before the previous batch
        (inside a batch, rows oldest first, as EventStore.append_columns takes them).

        For reopening a connection with a long history: the newest rows reach the window in the
        first few milliseconds of the replay instead of at its end (load_recent reads oldest
        first). Each batch is one rowid-range query (a b-tree seek, then a scan), so a batch
        costs the same wherever it is in a file of millions of rows; rows the writer appends
        meanwhile have larger ids and are not read (the live session delivers them), rows
        retention deletes meanwhile are simply not found."""
        db = self._connect()
        if db is None or limit <= 0:
            return
        try:
            top = db.execute("SELECT max(id) FROM events").fetchone()[0]
            if top is None:
                return
            before, left, size = top + 1, limit, max(1, min(first, limit))
            has_dup = _has_dup_column(db)  # a file from before the flag has none to read
            while left > 0:
                rows = db.execute(
                    f"SELECT {_ROW_SELECT} FROM events WHERE id < ? ORDER BY id DESC LIMIT ?", (before, min(size, left))
                ).fetchall()
                if not rows:
                    return
                left -= len(rows)
                before = rows[-1][0]
                rows.reverse()
                yield columns_from_rows(rows, dup=_dup_flags(db, rows, has_dup))
                size = chunk
        except sqlite3.Error as exc:
            raise _error(exc, self.path, "read") from exc

    def search(self, flt: Filter, limit: int = 10_000, before_id: int | None = None) -> list[tuple]:
        """Rows (ROW_FIELDS order, None for missing) that pass flt, newest first, at most `limit`,
        only ids below `before_id` when given (the next page). Same rules as EventStore.matching."""
        db = self._connect()
        if db is None or limit <= 0:
            return []
        where = []
        params: dict = {}
        if flt.device is not None:
            where.append("device_key = :device")
            params["device"] = flt.device
        if flt.kinds:
            names = []
            for i, kind in enumerate(sorted(flt.kinds)):
                params[f"k{i}"] = kind
                names.append(f":k{i}")
            where.append(f"kind IN ({', '.join(names)})")
        if flt.f_port is not None:
            where.append("f_port = :f_port")
            params["f_port"] = flt.f_port
        if flt.gateway:
            where.append("gateway_id = :gateway")
            params["gateway"] = flt.gateway
        if before_id is not None:
            where.append("id < :before")
            params["before"] = before_id
        test = None
        if flt.text:
            where.append(_text_prefilter(flt.text, params))
            test = _text_test(flt.text)
        sql = f"SELECT {_ROW_SELECT} FROM events"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC"
        try:
            if test is None:
                params["limit"] = limit
                return db.execute(sql + " LIMIT :limit", params).fetchall()
            out: list[tuple] = []
            cur = db.execute(sql, params)
            try:
                while len(out) < limit and (rows := cur.fetchmany(1000)):
                    out.extend(filter(test, rows))
            finally:
                cur.close()
            return out[:limit]
        except sqlite3.Error as exc:
            raise _error(exc, self.path, "searched") from exc

    def close(self) -> None:
        self._closed = True
        db, self._db = self._db, None
        if db is not None:
            db.close()

    def __enter__(self) -> HistoryReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

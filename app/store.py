"""The in-memory uplink store: a million normalized events in columns, with device indexes.

Rows arrive in column batches (see `columns_from_rows`, built in the engine process). Numbers
live in `array`s (8 bytes a value, no Python object per cell; missing = NONE_INT or NaN),
repeated strings (device, gateway, kind, topic ...) are interned so a million rows share a few
thousand string objects, and the frame payload and the decoded object are kept as bytes (the
decoded object as JSON; missing = b""). Every row has an absolute position (`base + index`)
that survives trimming, so indexes and selections stay valid while the oldest rows go.

Filters run column-wide in C (map/compress over arrays) rather than a Python call per row.

Nothing a message holds can break the columns: columns_from_rows turns a row with a value the
table cannot hold into an error row (in the caller's list, so the history stores the same), and
append_columns takes a batch whole or not at all.
"""

from __future__ import annotations

import bisect
import math
import operator
import re
import time
from array import array
from dataclasses import dataclass
from itertools import compress, count, repeat

import orjson

ROW_FIELDS = (
    "id",  # history id (SQLite rowid), NONE_INT if not stored
    "ts",  # receive time, epoch seconds
    "platform",
    "kind",
    "application_id",
    "device_id",
    "dev_eui",
    "dev_addr",
    "f_port",
    "f_cnt",
    "payload",  # frame payload bytes (b"" when none)
    "decoded",  # decoded object as JSON bytes (b"" when none)
    "rssi",
    "snr",
    "gateway_id",
    "gateways",
    "spreading_factor",
    "bandwidth_hz",
    "frequency_hz",
    "error",
    "topic",
)
F = {name: i for i, name in enumerate(ROW_FIELDS)}
NONE_INT = -(2**62)  # "missing" in integer columns
INT_COLS = ("id", "f_port", "f_cnt", "gateways", "spreading_factor", "bandwidth_hz", "frequency_hz")
FLOAT_COLS = ("ts", "rssi", "snr")
STR_COLS = ("platform", "kind", "application_id", "device_id", "dev_eui", "dev_addr", "gateway_id", "error", "topic")
BYTES_COLS = ("payload", "decoded")
INTERNED = ("platform", "kind", "application_id", "device_id", "dev_eui", "dev_addr", "gateway_id", "topic")
# Per-row flags the store keeps beside ROW_FIELDS, one byte a row (array('B'), 0/1). They are not
# in the row tuple: the history's table and every parser's row are built from ROW_FIELDS, and a
# file written before a flag existed must stay readable. A batch without a flag's column means 0.
#   dup: the broker delivered the message with the MQTT DUP flag (a QoS 1/2 redelivery).
FLAG_COLS = ("dup",)
# Slots set aside at the front of the columns for a replayed history (EventStore.reserve_below).
# Moving a column of a million rows costs milliseconds, and the window's process does it several
# times slower than a quiet one; so the slots for a long replay are allocated once, by a thread,
# into new columns the store takes over when they are ready (_RoomBuilder); a short replay's are
# allocated at once. ROOM_SPARE more slots take the rows that arrive while the thread works.
ROOM_BUILD_MIN = 65_536  # fewer expected rows: slots allocated at once, in the first prepend
ROOM_SPARE = 131_072
ROOM_BUILD_STEP = 65_536  # slots a column grows by at a time in the thread (short holds of the GIL)
ROOM_BUILD_PAUSE = 0.001  # seconds the thread sleeps after each step of a column


_N_FIELDS = len(ROW_FIELDS)
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_NONE_TYPE = type(None)
_STR_TYPES = frozenset((str, _NONE_TYPE))
_BYTES_TYPES = frozenset((bytes, _NONE_TYPE))
_IDENTITY = ("application_id", "device_id", "dev_eui", "dev_addr")  # kept in an error row when text


def event_row(event, ts: float, row_id: int | None = None) -> tuple:
    """A normalized Event as a row tuple (ROW_FIELDS order, None for missing). Never raises:
    a decoded object that cannot be written as JSON (a number beyond a float, a key that is not
    text, nesting beyond orjson's 254 levels) makes the row an error row that says so, and an
    event that is not an Event at all one that says that. Values of the wrong type are left to
    columns_from_rows, which checks every row anyway."""
    try:
        payload = None
        payload_hex = event.payload_hex
        if payload_hex:
            try:
                payload = bytes.fromhex(payload_hex)
            except (ValueError, TypeError):
                payload = None
        decoded = None
        if event.decoded is not None:
            try:
                # orjson's bytes keep a 4 KiB allocation whatever their length; a row lives for hours,
                # so copy to the exact size (measured: 4.1 KB -> 77 bytes a row).
                decoded = bytes(memoryview(orjson.dumps(event.decoded)))
            except TypeError as exc:  # orjson.JSONEncodeError is a TypeError
                return _event_error_row(event, ts, row_id, _undumpable_text(event.decoded, exc))
        return (
            row_id,
            ts,
            event.platform,
            event.kind,
            event.application_id,
            event.device_id,
            event.dev_eui,
            event.dev_addr,
            event.f_port,
            event.f_cnt,
            payload,
            decoded,
            event.rssi,
            event.snr,
            event.gateway_id,
            event.gateways,
            event.spreading_factor,
            event.bandwidth_hz,
            event.frequency_hz,
            event.error,
            event.topic,
        )
    except Exception as exc:
        return _event_error_row(event, ts, row_id, f"The parser gave no readable event ({type(exc).__name__}).")


def _undumpable_text(decoded, exc: Exception) -> str:
    from app.platforms.base import first_out_of_range  # the parsers' marker for 1e400

    marker = first_out_of_range(decoded)
    if marker is not None:
        return f"The decoded object cannot be stored: {marker.sentence()}"
    reason = " ".join(str(exc).split())[:120] or type(exc).__name__
    return f"The decoded object cannot be stored as JSON ({reason})."


def _event_error_row(event, ts, row_id, text: str) -> tuple:
    values = dict.fromkeys(ROW_FIELDS)
    for name in ("platform", *_IDENTITY, "topic"):
        value = getattr(event, name, None)
        values[name] = value if type(value) is str else None
    values.update(id=row_id, ts=ts, kind="error", error=text)
    return tuple(values[name] for name in ROW_FIELDS)


class _Unfit(Exception):
    """A batch with a value the columns cannot hold: columns_from_rows repairs it row by row."""


def columns_from_rows(rows: list[tuple], dup=None) -> dict:
    """Rows (tuples in ROW_FIELDS order, None for missing) -> normalized columns + device keys,
    ready for EventStore.append_columns: numbers as array('q')/array('d') (one buffer each across
    the process pipe, a memcpy into the store), text and bytes as lists.

    dup: one truth value per row (the MQTT DUP flag of the message the row came from), or None
    when no row was redelivered; given, the batch has a "dup" column (array('B') of 0/1). A
    row repaired into an error row keeps its flag: it is still the same message.

    Runs in the engine process, so the GUI process only extends arrays. Never produces what
    append_columns cannot take: a row with a value the table cannot hold (an integer beyond 64
    bits or equal to NONE_INT, a number that is not finite, text that is not str or not valid
    Unicode, bytes that are not bytes, the wrong number of fields) is replaced IN PLACE in
    `rows` by an error row (same id, ts, platform and topic, kind "error", a sentence naming the
    field), so the caller's history writer, given the same list, stores what the table shows.

    The happy path checks column-wide in C (array.fromlist, set, fsum) and scans row by row only
    when one of those fails (benchmarks/parse_fast.py measures a 4,000-row batch)."""
    if not rows:
        return {}
    flags = None
    if dup is not None:
        flags = array("B", map(bool, dup))
        if len(flags) != len(rows):
            raise ValueError(f"A batch of {len(rows):,} rows came with {len(flags):,} DUP flags.")
    cols = _columns_repaired(rows)
    if flags is not None:
        cols["dup"] = flags
    return cols


def _columns_repaired(rows: list[tuple]) -> dict:
    try:
        return _columns(rows, checked=False)
    except Exception:
        pass
    if type(rows) is not list:
        rows = list(rows)
    for i, row in enumerate(rows):
        problem = row_problem(row)
        if problem is not None:
            rows[i] = _unfit_error_row(row, problem)
    try:
        return _columns(rows, checked=True)
    except Exception:  # row_problem missed something: no row of this batch is trusted
        for i, row in enumerate(rows):
            rows[i] = _unfit_error_row(row, "The row could not be stored; the message is kept as this error row.")
        return _columns(rows, checked=True)


def _columns(rows, checked: bool) -> dict:
    columns = list(zip(*rows, strict=True))
    if len(columns) != _N_FIELDS:
        raise _Unfit
    cols: dict = {}
    for name in INT_COLS:
        col = columns[F[name]]
        if NONE_INT in col:
            raise _Unfit
        values = array("q")
        values.fromlist([NONE_INT if v is None else v for v in col])  # all or nothing: TypeError, OverflowError
        cols[name] = values
    for name in FLOAT_COLS:
        col = columns[F[name]]
        values = array("d")
        values.fromlist([math.nan if v is None else v for v in col])
        if not checked:
            # NaN stands for None; a NaN or an infinity sent as a value is refused: fsum is NaN or
            # infinite then (or raises), and it runs in C over the values that are not None.
            total = math.fsum(compress(col, map(operator.is_not, col, repeat(None))))
            if total - total != 0.0:
                raise _Unfit
        cols[name] = values
    for name in STR_COLS:
        col = columns[F[name]]
        distinct = set(col)  # interned columns repeat a few values: their types are checked once each
        if not set(map(type, distinct)) <= _STR_TYPES:
            raise _Unfit
        "\n".join(filter(None, distinct)).encode()  # a lone surrogate: the history could not store it
        cols[name] = list(col)
    for name in BYTES_COLS:
        col = columns[F[name]]
        if not set(map(type, col)) <= _BYTES_TYPES:
            raise _Unfit
        cols[name] = [b"" if v is None else v for v in col]
    cols["device_key"] = [e or d for e, d in zip(cols["dev_eui"], cols["device_id"], strict=True)]
    return {name: cols[name] for name in (*ROW_FIELDS, "device_key")}


def row_problem(row) -> str | None:
    """Why the table cannot hold this row (naming the first field that does not fit), or None."""
    try:
        n = len(row)
    except TypeError:
        return f"The row is {type(row).__name__}, not a tuple of {_N_FIELDS} fields."
    if n != _N_FIELDS:
        return f"The row has {n} fields instead of {_N_FIELDS}."
    for name, value in zip(ROW_FIELDS, row, strict=True):
        why = _value_problem(name, value)
        if why is not None:
            return f"The {name} value {_shown(value)} cannot be stored ({why}); the message is kept as this error row."
    return None


def _value_problem(name: str, value) -> str | None:
    if value is None:
        return None
    if name in INT_COLS:
        if not isinstance(value, int):
            return "not a whole number"
        if not INT64_MIN <= value <= INT64_MAX:
            return "beyond the table's 64-bit integers"
        if value == NONE_INT:
            return "the one 64-bit value the table keeps to mean missing"
    elif name in FLOAT_COLS:
        if not isinstance(value, int | float):
            return "not a number"
        try:
            if not math.isfinite(value):
                return "not a finite number"
        except OverflowError:
            return "beyond the table's 64-bit floating-point numbers"
    elif name in STR_COLS:
        if type(value) is not str:
            return "not text"
        try:
            value.encode()
        except UnicodeEncodeError:
            return "text with a lone surrogate, not valid Unicode"
    elif type(value) is not bytes:
        return "not bytes"
    return None


def _shown(value) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 256:
        return f"(a {value.bit_length():,}-bit integer)"
    try:
        text = repr(value)
    except Exception:
        text = f"<{type(value).__name__}>"
    return text if len(text) <= 60 else f"{text[:60]}…"


def _unfit_error_row(row, problem: str) -> tuple:
    values = dict.fromkeys(ROW_FIELDS)
    try:
        given = dict(zip(ROW_FIELDS, row, strict=False))  # a row of the wrong length too
    except TypeError:
        given = {}
    row_id = given.get("id")
    if _value_problem("id", row_id) is not None:
        row_id = None
    ts = given.get("ts")
    if ts is None or _value_problem("ts", ts) is not None:
        ts = time.time()
    values.update(id=row_id, ts=ts, kind="error", error=problem)
    for name in ("platform", *_IDENTITY, "topic"):
        value = given.get(name)
        values[name] = value if _value_problem(name, value) is None else None
    return tuple(values[name] for name in ROW_FIELDS)


@dataclass(frozen=True, slots=True)
class Filter:
    device: str | None = None  # device key (DevEUI, else device id), exact
    kinds: frozenset[str] = frozenset()  # empty: every kind
    f_port: int | None = None
    gateway: str | None = None
    text: str = ""  # in device id, DevEUI, topic, error, decoded JSON (any case), payload hex

    @property
    def is_empty(self) -> bool:
        return not (self.device or self.kinds or self.f_port is not None or self.gateway or self.text)


def _batch_rows(batch: dict) -> int:
    """The rows in a column batch; ValueError with a sentence when a column is missing or of
    another length."""
    try:
        n = len(batch["ts"])
        for name in (*ROW_FIELDS, "device_key"):
            if len(batch[name]) != n:
                raise ValueError(f"its {name} column has {len(batch[name]):,} values, not {n:,}")
        for name in FLAG_COLS:
            flags = batch.get(name)
            if flags is not None and len(flags) != n:
                raise ValueError(f"its {name} column has {len(flags):,} values, not {n:,}")
    except (KeyError, TypeError, ValueError) as exc:
        what = f"it has no {exc.args[0]} column" if isinstance(exc, KeyError) else str(exc)
        raise ValueError(f"A batch of rows could not be added to the table: {what}.") from None
    return n


class EventStore:
    def __init__(self, max_rows: int = 1_000_000, trim_chunk: int | None = None) -> None:
        self.max_rows = max_rows
        # Trim in chunks: deleting the front of a column moves the whole column.
        self.trim_chunk = trim_chunk if trim_chunk is not None else max(1, max_rows // 100)
        self.base = 0  # absolute position of the oldest row
        # Slots at the front of every column that hold no row yet (reserve_below): a replayed
        # history fills them from the top down, in place, instead of moving every column down
        # for each batch. The column index of position p is p - zero.
        self.room = 0
        self._expected = 0  # older rows still to come that slots are set aside for
        self._room_build: _RoomBuilder | None = None
        # Positions below this were held by rows trimmed away: a prepend never takes them again
        # (what is keyed by position, the search index say, may still name those rows).
        self._floor = 0
        self.cols: dict[str, list | array] = {}
        for name in INT_COLS:
            self.cols[name] = array("q")
        for name in FLOAT_COLS:
            self.cols[name] = array("d")
        for name in (*STR_COLS, *BYTES_COLS):
            self.cols[name] = []
        for name in FLAG_COLS:
            self.cols[name] = array("B")
        self._intern: dict = {}
        self.device_index: dict[str, array] = {}  # device key -> absolute positions
        self.total_appended = 0

    def __len__(self) -> int:
        return len(self.cols["ts"]) - self.room

    @property
    def zero(self) -> int:
        """The absolute position of column index 0 (the oldest row's index is room)."""
        return self.base - self.room

    @property
    def end(self) -> int:
        """Absolute position after the last row."""
        return self.base + len(self)

    # ----- writing
    def append_columns(self, batch: dict, trim: bool = True) -> int:
        """Appends a column batch; returns how many of the oldest rows were trimmed.

        All or nothing: a batch with a column missing or of another length, or a value a column
        cannot take, raises ValueError with a sentence, and the columns, the device index and
        total_appended are as they were. trim=False leaves trimming to an explicit `trim()`, so a
        Qt model can announce it. A flag column (FLAG_COLS) the batch does not have is all 0."""
        if not batch:
            return 0
        n = _batch_rows(batch)
        c = self.cols
        setdefault = self._intern.setdefault
        start = self.end
        size = len(c["ts"])
        index = self.device_index
        try:
            for name in INT_COLS:
                c[name].extend(batch[name])
            for name in FLOAT_COLS:
                c[name].extend(batch[name])
            for name in INTERNED:
                col = batch[name]
                c[name].extend(map(setdefault, col, col))
            c["error"].extend(batch["error"])
            c["payload"].extend(batch["payload"])
            c["decoded"].extend(batch["decoded"])
            for name in FLAG_COLS:
                flags = batch.get(name)
                if flags is None:
                    c[name].frombytes(bytes(n))
                elif type(flags) is array and flags.typecode == "B":
                    c[name].extend(flags)
                else:  # a list of bools or ints from elsewhere: 0/1, nothing else
                    c[name].extend(map(bool, flags))
            for pos, key in zip(count(start), batch["device_key"]):
                if key is not None:
                    positions = index.get(key)
                    if positions is None:
                        positions = index[setdefault(key, key)] = array("q")
                    positions.append(pos)
        except Exception as exc:
            self._undo_append(size, start, batch["device_key"])
            detail = " ".join(str(exc).split())[:160]
            raise ValueError(
                f"A batch of {n:,} rows could not be added to the table ({type(exc).__name__}: {detail}); "
                "the table is as it was."
            ) from exc
        self.total_appended += n
        return self._trim() if trim else 0

    def reserve_below(self, n: int, expected: int | None = None) -> None:
        """An empty store starts its positions at n: room for n older rows prepended later
        (prepend_columns), so the positions of the rows appended meanwhile never change.
        Slots are set aside in front of the columns for the `expected` rows (default n) the
        replay brings, which prepends fill in place instead of moving every column each time:
        for a long replay, new columns with the slots are built by a thread and taken over at
        a prepend once ready (until then prepends move the columns, small by then).
        release_room() gives back what is left."""
        if len(self) == 0 and n > self.base:
            self.release_room()
            self.base = n
            self._expected = max(0, min(n if expected is None else expected, n, self.max_rows))
            if self._expected >= ROOM_BUILD_MIN:
                layout = [(name, col.typecode if type(col) is array else None) for name, col in self.cols.items()]
                self._room_build = _RoomBuilder(layout, self._expected + ROOM_SPARE)

    @property
    def room_building(self) -> bool:
        """Whether a thread is still building the slots of a replay (reserve_below)."""
        return self._room_build is not None and not self._room_build.done.is_set()

    def release_room(self) -> None:
        """Gives back the slots set aside for older rows (one move of every column; nothing when
        none are left), and stops a thread building them; later prepends move the columns."""
        self._expected = 0
        self._stop_room_build()
        self._drop_slots()

    def end_replay(self) -> None:
        """The replay is over: no more slots are set aside. What is left of them stays (giving it
        back moves every column) unless the replay was cut short and left many."""
        self._expected = 0
        self._stop_room_build()
        if self.room > max(ROOM_SPARE, len(self) // 4):
            self._drop_slots()

    def _drop_slots(self) -> None:
        if self.room:
            for col in self.cols.values():
                del col[: self.room]
            self.room = 0

    def _stop_room_build(self) -> None:
        if self._room_build is not None:
            self._room_build.stop.set()
            self._room_build = None

    def _take_room(self) -> None:
        """Takes over the columns the thread built: their slots, then a copy of the columns'
        contents at their end (same length: nothing moves)."""
        built = self._room_build
        self._room_build = None
        c = self.cols
        n = len(c["ts"])
        if built.columns is None or n > built.size:
            return  # stopped, or too late (more rows came than it has spare slots): moves go on
        for name, col in c.items():
            new = built.columns[name]
            new[built.size - n :] = col
            c[name] = new
        self.room += built.size - n

    def _grow_room(self, k: int) -> None:
        """Slots for the rows still expected, at least k, in front of the columns (a short
        replay: one move of small columns)."""
        slots = max(k, self._expected) - self.room
        if slots <= 0:
            return
        for col in self.cols.values():
            if type(col) is array:
                col[0:0] = array(col.typecode, bytes(col.itemsize * slots))
            else:
                col[0:0] = [None] * slots
        self.room += slots

    def prepend_columns(self, batch: dict) -> int:
        """Puts a batch of rows older than every row held (a history replayed newest batch
        first) before them: the rows held keep their positions, base moves down. Takes the
        newest of the batch's rows that fit under max_rows and above position 0, and none once
        rows were trimmed (they were newer), and returns how many (the store's first rows are
        then those). A malformed batch raises ValueError as append_columns does, and nothing
        changes."""
        if not batch:
            return 0
        n = _batch_rows(batch)
        k = min(n, self.max_rows - len(self), self.base - self._floor)
        if k <= 0:
            return 0
        cut = n - k
        # Every new column is built first: a value a column cannot take fails here, before any
        # column changed (a prepend cannot be undone as cheaply as an append).
        setdefault = self._intern.setdefault
        new: dict = {}
        try:
            for name in INT_COLS:
                new[name] = array("q", batch[name][cut:])
            for name in FLOAT_COLS:
                new[name] = array("d", batch[name][cut:])
            for name in INTERNED:
                col = batch[name][cut:]
                new[name] = list(map(setdefault, col, col))
            for name in ("error", "payload", "decoded"):
                new[name] = list(batch[name][cut:])
            for name in FLAG_COLS:
                flags = batch.get(name)
                new[name] = array("B", bytes(k)) if flags is None else array("B", map(bool, flags[cut:]))
        except Exception as exc:
            detail = " ".join(str(exc).split())[:160]
            raise ValueError(
                f"A batch of {n:,} rows could not be added to the table ({type(exc).__name__}: {detail}); "
                "the table is as it was."
            ) from exc
        c = self.cols
        if self._room_build is not None and self._room_build.done.is_set():
            self._take_room()
        if k > self.room and self._room_build is None and self._expected > self.room:
            self._grow_room(k)
        if k <= self.room:  # into the slots set aside: nothing moves
            i0, i1 = self.room - k, self.room
            for name, values in new.items():
                c[name][i0:i1] = values
            self.room = i0
        else:
            self._drop_slots()
            for name, values in new.items():
                c[name][0:0] = values
        self._expected = max(0, self._expected - k)
        base = self.base - k
        keyed: dict = {}
        for pos, key in zip(count(base), batch["device_key"][cut:]):
            if key is not None:
                positions = keyed.get(key)
                if positions is None:
                    positions = keyed[key] = array("q")
                positions.append(pos)
        index = self.device_index
        for key, positions in keyed.items():
            old = index.get(key)
            if old is not None:
                positions.extend(old)
            index[setdefault(key, key)] = positions
        self.base = base
        self.total_appended += k
        return k

    def _undo_append(self, size: int, start: int, keys) -> None:
        """Cuts every column back to `size` rows and the device index back to before `start`."""
        for col in self.cols.values():
            del col[size:]
        index = self.device_index
        try:
            touched = set(keys)
        except TypeError:  # unhashable keys: look at every device
            touched = set(index)
        for key in touched:
            positions = index.get(key) if isinstance(key, str) else None
            if positions is None:
                continue
            cut = bisect.bisect_left(positions, start)
            if cut == 0:
                del index[key]
            elif cut < len(positions):
                del positions[cut:]

    def excess(self) -> int:
        """How many of the oldest rows `trim()` would remove now (0 until a whole chunk is over)."""
        excess = len(self) - self.max_rows
        return excess if excess > 0 and excess >= self.trim_chunk else 0

    def trim(self) -> int:
        return self._trim()

    def append_rows(self, rows: list[tuple]) -> int:
        return self.append_columns(columns_from_rows(rows))

    def _trim(self) -> int:
        excess = self.excess()
        if not excess:
            return 0
        for col in self.cols.values():
            del col[: self.room + excess]  # the slots left for older rows go too: none fit now
        self.room = self._expected = 0
        self._stop_room_build()
        self.base += excess
        self._floor = self.base
        for key, positions in list(self.device_index.items()):
            cut = bisect.bisect_left(positions, self.base)
            if cut == len(positions):
                del self.device_index[key]
            elif cut:
                del positions[:cut]
        return excess

    def set_max_rows(self, n: int) -> int:
        self.max_rows = max(1, n)
        self.trim_chunk = min(self.trim_chunk, max(1, n // 100))
        return self._trim()

    def clear(self) -> None:
        self.base = self.end
        self.room = self._expected = 0
        self._stop_room_build()
        for col in self.cols.values():
            del col[:]
        self.device_index.clear()

    # ----- reading
    def value(self, pos: int, name: str):
        v = self.cols[name][pos - self.zero]
        if name in INT_COLS:
            return None if v == NONE_INT else v
        if name in FLOAT_COLS:
            return None if v != v else v
        if name in BYTES_COLS:
            return v or None
        return v

    def row(self, pos: int) -> dict:
        return {name: self.value(pos, name) for name in ROW_FIELDS}

    def columns(self, start: int, stop: int) -> dict:
        """The rows start..stop-1 as a column batch (what append_columns takes, device_key too)."""
        zero = self.zero
        i0, i1 = max(self.room, start - zero), max(self.room, min(stop, self.end) - zero)
        batch = {name: col[i0:i1] for name, col in self.cols.items()}
        batch["device_key"] = [e or d for e, d in zip(batch["dev_eui"], batch["device_id"], strict=True)]
        return batch

    def is_dup(self, pos: int) -> bool:
        """Whether the row's message came with the MQTT DUP flag (a broker redelivery)."""
        return bool(self.cols["dup"][pos - self.zero])

    def matching(self, flt: Filter, start: int | None = None, stop: int | None = None) -> array:
        """Absolute positions of the rows that pass flt, in order (only from start on and before
        stop, when given)."""
        lo = self.base if start is None else max(start, self.base)
        hi = self.end if stop is None else min(stop, self.end)
        if lo >= hi:
            return array("q")
        if flt.device is not None:
            positions = self.device_index.get(flt.device)
            if positions is None:
                return array("q")
            cand = positions[bisect.bisect_left(positions, lo) : bisect.bisect_left(positions, hi)]
            if flt.is_empty or not self._masks(flt, 0, probe=True):
                return cand
            # Few rows: test each candidate.
            keep = self._row_test(flt)
            zero = self.zero
            return array("q", [p for p in cand if keep(p - zero)])
        span = (lo - self.zero, hi - self.zero)
        masks = self._masks(flt, span)
        if not masks:
            return array("q", range(lo, hi))
        mask = masks[0]
        for m in masks[1:]:
            mask = map(operator.and_, mask, m)
        return array("q", compress(range(lo, hi), mask))

    def _masks(self, flt: Filter, span: tuple[int, int] | int, probe: bool = False) -> list:
        """Boolean iterables over the column indexes span (i0, i1), or from i0 to the end, one per
        condition (probe: just say whether any)."""
        c = self.cols
        i0, i1 = span if isinstance(span, tuple) else (span, len(c["ts"]))
        out = []
        if flt.kinds:
            out.append(None if probe else map(flt.kinds.__contains__, _part(c["kind"], i0, i1)))
        if flt.f_port is not None:
            out.append(None if probe else map(operator.eq, _part(c["f_port"], i0, i1), repeat(flt.f_port)))
        if flt.gateway:
            out.append(None if probe else map(operator.eq, _part(c["gateway_id"], i0, i1), repeat(flt.gateway)))
        if flt.text:
            out.append(None if probe else self._text_mask(flt.text, i0, i1))
        return out

    def _text_mask(self, text: str, i0: int, i1: int):
        c = self.cols
        needle = text.lower()
        # Interned columns: decide once per distinct value, then look the answer up per row.
        masks = []
        for name in ("device_id", "dev_eui", "topic", "gateway_id"):
            col = _part(c[name], i0, i1)
            hits = {v for v in set(col) if v is not None and needle in v.lower()}
            if hits:
                masks.append(map(hits.__contains__, _part(c[name], i0, i1)))
        pattern = re.compile(re.escape(text.encode()), re.IGNORECASE)
        masks.append(map(bool, map(pattern.search, _part(c["decoded"], i0, i1))))
        errors = _part(c["error"], i0, i1)
        masks.append(map(lambda e: e is not None and needle in e.lower(), errors))
        hex_needle = needle.replace(" ", "")
        if hex_needle and len(hex_needle) % 2 == 0 and all(ch in "0123456789abcdef" for ch in hex_needle):
            masks.append(map(operator.contains, _part(c["payload"], i0, i1), repeat(bytes.fromhex(hex_needle))))
        mask = masks[0]
        for m in masks[1:]:
            mask = map(operator.or_, mask, m)
        return mask

    def _row_test(self, flt: Filter):
        c = self.cols
        tests = []
        if flt.kinds:
            tests.append(lambda i: c["kind"][i] in flt.kinds)
        if flt.f_port is not None:
            tests.append(lambda i: c["f_port"][i] == flt.f_port)
        if flt.gateway:
            tests.append(lambda i: c["gateway_id"][i] == flt.gateway)
        if flt.text:
            needle = flt.text.lower()
            pattern = re.compile(re.escape(flt.text.encode()), re.IGNORECASE)
            hex_needle = needle.replace(" ", "")

            def text_test(i: int) -> bool:
                for name in ("device_id", "dev_eui", "topic", "gateway_id", "error"):
                    v = c[name][i]
                    if v is not None and needle in v.lower():
                        return True
                if pattern.search(c["decoded"][i]):
                    return True
                return bool(hex_needle) and hex_needle in c["payload"][i].hex()

            tests.append(text_test)
        return lambda i: all(t(i) for t in tests)

    def devices(self) -> list[str]:
        return sorted(self.device_index)


def _part(col, i0: int, i1: int):
    return col if i0 == 0 and i1 >= len(col) else col[i0:i1]


class _RoomBuilder:
    """Builds, in a thread, columns of `size` empty slots (zeros, None) of the store's layout,
    a step at a time: each step holds the GIL for a fraction of a millisecond, so the GUI
    thread hardly notices. `columns` is set (None when stopped) before `done`."""

    def __init__(self, layout: list[tuple[str, str | None]], size: int) -> None:
        import threading

        self.size = size
        self.columns: dict | None = None
        self.done = threading.Event()
        self.stop = threading.Event()
        threading.Thread(target=self._build, args=(layout,), name="store-room", daemon=True).start()

    def _build(self, layout: list[tuple[str, str | None]]) -> None:
        try:
            cols = {name: array(code) if code else [] for name, code in layout}
            left = self.size
            while left > 0:
                if self.stop.is_set():
                    return
                step = min(left, ROOM_BUILD_STEP)
                for col in cols.values():
                    if type(col) is array:
                        col.frombytes(bytes(col.itemsize * step))
                    else:
                        col.extend(repeat(None, step))
                    time.sleep(ROOM_BUILD_PAUSE)  # the GIL back to the GUI thread, now busy connecting
                left -= step
            self.columns = cols
        finally:
            self.done.set()

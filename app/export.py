"""Exporting rows of the event store to CSV or JSON lines, fast and atomically.

The rows to export are absolute store positions (the current filter), read in batches:
`take_rows` copies the raw column values of one batch (slices of the columns when the
positions are close together, else just the cells needed), and `export_batches` turns batches
into text and writes them. `export_rows` does both on one thread; the export dialog runs
`take_rows` on the GUI thread (the only thread that appends to and trims the store, so each
batch is a consistent copy) and `export_batches` on a worker thread.

Speed: no per-row dict, orjson.dumps or csv.writer call (each costs several µs a row). Each
column is encoded on its own, runs of repeated columns (device, gateway and radio, topic ...)
once per distinct combination, and a batch's lines are one join of the encoded cells. The
output is checked against orjson and the csv module (byte for byte) in tests/test_export.py.

The file is written under a temporary name in the target folder and renamed over the target at
the end, so a cancelled or failed export never leaves a half-written file under the chosen name
(and an existing file of that name stays as it was).
"""

from __future__ import annotations

import datetime as dt
import errno
import operator
import os
import re
import secrets
from binascii import hexlify
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson

from app.events import EVENT_KEYS
from app.store import NONE_INT, ROW_FIELDS

FORMATS = ("csv", "jsonl")
OUT_KEYS = ("time", "id", *EVENT_KEYS)  # the CSV header and the JSON key order
MAX_BATCH = 4096  # rows a batch: short C calls, so the GUI thread gets the GIL often
_CACHE_LIMIT = 50_000  # encoded values kept a column run (then the cache starts over)

# The store columns an export reads: all of them.
_NEEDED = ROW_FIELDS
# The output, left to right: single columns, and runs of columns with few distinct value
# combinations (device, gateway, radio settings ...), each run encoded once per combination.
_LAYOUT = (
    "time",
    "id",
    ("platform", "kind"),
    "received_at",
    ("application_id", "device_id", "dev_eui", "dev_addr", "f_port"),
    "f_cnt",
    "payload_hex",
    "decoded",
    "rssi",
    "snr",
    ("gateway_id", "gateways", "spreading_factor", "bandwidth_hz", "frequency_hz"),
    "correlation_ids",
    ("error", "topic"),
)
assert tuple(k for part in _LAYOUT for k in ((part,) if isinstance(part, str) else part)) == OUT_KEYS
_RUNS = tuple(part for part in _LAYOUT if not isinstance(part, str))
_INT_COLS = frozenset(("f_port", "gateways", "spreading_factor", "bandwidth_hz", "frequency_hz"))
_EPOCH = dt.datetime(1970, 1, 1)
# What goes before each part of _LAYOUT on a line, and what ends the line.
_JSONL_BEFORE = tuple(
    (b"{" if i == 0 else b",") + (b'"' + part.encode() + b'":' if isinstance(part, str) else b"")
    for i, part in enumerate(_LAYOUT)
)
_CSV_BEFORE = ("",) + (",",) * (len(_LAYOUT) - 1)
_MS_JSON = tuple(b'.%03dZ"' % ms for ms in range(1000))
_MS_CSV = tuple(f".{ms:03d}Z" for ms in range(1000))
_CSV_SPECIAL = re.compile(r'[,"\r\n]').search

Progress = Callable[[int, int], "bool | None"]
Extra = Callable[[int], "tuple[str | None, Sequence[str] | None] | None"]


class ExportError(Exception):
    """The export could not be written; the message says what to do."""


class ExportCancelled(Exception):
    """The export was cancelled; nothing was left under the target name."""


# ----- reading ---------------------------------------------------------------------------


@dataclass(slots=True)
class RowBatch:
    """The raw column values of one batch of positions (those still in the store), in order."""

    requested: int  # positions the batch covered, including those no longer in the store
    cols: dict  # column name -> sequence of raw store values
    pick: list[int] | None = None  # indexes into cols to take, in order (None: all of them)

    @property
    def rows(self) -> int:
        return len(self.cols["ts"]) if self.pick is None else len(self.pick)


def batch_size(total: int) -> int:
    """Rows a batch for an export of `total` rows: about 1 % of it, at most MAX_BATCH."""
    return max(64, min(MAX_BATCH, total // 100))


def take_rows(store, positions: Sequence[int]) -> RowBatch:
    """Copies the values at absolute `positions` (one batch; call it where the store is written).

    Positions below `store.base` (trimmed, or not there yet) or past its end are left out. Works
    on anything with the EventStore reading interface (`cols`, `base`, and `room` when it has one).
    """
    cols = store.cols
    room = getattr(store, "room", 0)
    zero = store.base - room
    length = len(cols["ts"])
    requested = len(positions)
    rel = [p - zero for p in positions]
    if rel and (min(rel) < room or max(rel) >= length):
        rel = [i for i in rel if room <= i < length]
    if not rel:
        return RowBatch(requested, {name: () for name in _NEEDED})
    lo = min(rel)
    hi = max(rel) + 1
    if hi - lo <= 4 * len(rel):
        # Close together: slice the span (cheap) and pick the rows on the writing side.
        span = {name: cols[name][lo:hi] for name in _NEEDED}
        contiguous = hi - lo == len(rel) and rel[0] == lo and all(map(operator.lt, rel, rel[1:]))
        return RowBatch(requested, span, None if contiguous else [i - lo for i in rel])
    get = _getter(rel)
    return RowBatch(requested, {name: get(cols[name]) for name in _NEEDED})


def _getter(indexes: list[int]) -> Callable[[Sequence], Sequence]:
    if len(indexes) == 1:
        i = indexes[0]
        return lambda col: (col[i],)
    return operator.itemgetter(*indexes)


def iter_batches(store, positions: Sequence[int]) -> Iterable[RowBatch]:
    """take_rows over `positions`, batch by batch (for a store no other thread writes to)."""
    size = batch_size(len(positions))
    for start in range(0, len(positions), size):
        yield take_rows(store, positions[start : start + size])


# ----- writing ---------------------------------------------------------------------------


class RangeExtras:
    """An `extra` for export_rows backed by a range lookup (e.g. HistoryReader.extras): rows come
    in id order, so one lookup serves the next `span` ids. A lookup that fails (the history was
    removed, is locked ...) gives rows without extras rather than a failed export."""

    def __init__(self, fetch: Callable[[int, int], dict], span: int = 5000) -> None:
        self.fetch = fetch
        self.span = span
        self._lo = self._hi = 0
        self._cache: dict = {}
        self.failed: Exception | None = None

    def __call__(self, row_id: int):
        if not (self._lo <= row_id < self._hi):
            self._lo, self._hi = row_id, row_id + self.span
            try:
                self._cache = self.fetch(row_id, self._hi - 1) if self.failed is None else {}
            except Exception as exc:  # noqa: BLE001 - any history trouble: export without extras
                self.failed = exc
                self._cache = {}
        return self._cache.get(row_id)


def export_rows(
    store, positions: Sequence[int], path, fmt: str, progress: Progress | None = None, *, extra: Extra | None = None
) -> int:
    """Writes the rows at absolute `positions` (in that order) to `path` as "csv" or "jsonl".

    progress(done, total) is called about every 1 % and at the end; returning False cancels:
    the partial file is deleted and ExportCancelled raised. extra(row_id) may return
    (received_at, correlation_ids) for a row with a history id. Returns the rows written
    (positions already trimmed from the store are skipped). Raises ExportError, with a sentence
    saying what to do, when the file cannot be written.
    """
    return export_batches(iter_batches(store, positions), len(positions), path, fmt, progress, extra=extra)


def export_batches(
    batches: Iterable[RowBatch],
    total: int,
    path,
    fmt: str,
    progress: Progress | None = None,
    *,
    extra: Extra | None = None,
) -> int:
    """Writes `batches` (from take_rows) to `path`; see export_rows. total: positions in all of them."""
    if fmt not in FORMATS:
        raise ValueError(f"Unknown export format {fmt!r}; choose csv or jsonl.")
    path = Path(path)
    if path.is_dir():
        raise ExportError(f"{path} is a folder: choose a file name to export to.")
    encoder = _Encoder(fmt, extra)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.part")
    try:
        # "x": a new file with the usual permissions (umask), never one that already exists.
        f = open(tmp, "xb")  # noqa: SIM115 - closed by the with below
    except OSError as e:
        raise ExportError(_explain(e, path)) from e
    written = done = 0
    try:
        with f:
            f.write(encoder.header())
            step = max(1, total // 100)
            next_report = step
            if progress is not None and progress(0, total) is False:
                raise ExportCancelled
            for batch in batches:
                if batch.rows:
                    f.write(encoder.encode(batch))
                    written += batch.rows
                done += batch.requested
                if progress is not None and next_report <= done < total:
                    next_report = done + step
                    if progress(done, total) is False:
                        raise ExportCancelled
            f.flush()
            try:
                os.fsync(f.fileno())  # the data on disk before the rename makes it the file
            except OSError as e:
                if e.errno not in (errno.EINVAL, errno.ENOTSUP):  # a file system without fsync
                    raise
        if progress is not None and progress(total, total) is False:
            raise ExportCancelled
        try:
            os.replace(tmp, path)
        except PermissionError as e:
            raise ExportError(
                f"Could not replace {path}: it may be open in another program (close it there) or the folder is "
                "read-only. Then export again, or choose another name."
            ) from e
    except OSError as e:
        _remove(tmp)
        raise ExportError(_explain(e, path)) from e
    except BaseException:
        _remove(tmp)
        raise
    return written


def _remove(tmp: Path) -> None:
    try:
        tmp.unlink()
    except OSError:
        pass


def _explain(e: OSError, path: Path) -> str:
    folder = path.parent
    if e.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        return f"The disk holding {folder} is full: free some space or choose another folder, then export again."
    if isinstance(e, PermissionError) or e.errno == errno.EROFS:
        return f"You may not write to {folder}: choose another folder (for example your Documents folder)."
    if isinstance(e, FileNotFoundError):
        return f"The folder {folder} does not exist: choose an existing folder."
    if isinstance(e, IsADirectoryError):
        return f"{path} is a folder: choose a file name to export to."
    reason = e.strerror or str(e)
    return f"Could not write {path} ({reason}): choose another file or folder and export again."


# ----- encoding --------------------------------------------------------------------------


class _Cache(dict):
    """value -> encoded value, computed on first use."""

    __slots__ = ("encode",)

    def __init__(self, encode: Callable) -> None:
        super().__init__()
        self.encode = encode

    def __missing__(self, key):
        out = self.encode(key)
        if len(self) >= _CACHE_LIMIT:  # not so few distinct values after all
            self.clear()
        self[key] = out
        return out


def _json_value(v) -> bytes:
    try:
        return orjson.dumps(v)
    except orjson.JSONEncodeError:  # a string with a lone surrogate
        return orjson.dumps(v.encode("utf-8", "replace").decode()) if isinstance(v, str) else b"null"


def _json_int(v: int) -> bytes:
    return b"null" if v == NONE_INT else b"%d" % v


def _json_decoded(data: bytes) -> bytes:
    """The stored decoded JSON, checked with orjson (kept as it is: orjson wrote it, compact)."""
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        return _json_value(data.decode("utf-8", "replace"))  # not JSON after all: keep it as text
    if b"\n" in data or b"\r" in data:  # not compact: would break the line
        return orjson.dumps(value)
    return data


def _csv_str(v) -> str:
    """A CSV field as the csv module writes it (QUOTE_MINIMAL); None is empty."""
    if v is None:
        return ""
    if _CSV_SPECIAL(v):
        return '"' + v.replace('"', '""') + '"'
    return v


def _csv_int(v: int) -> str:
    return "" if v == NONE_INT else str(v)


class _Encoder:
    """Raw column batches -> output bytes, for one format (one per export: it caches values)."""

    def __init__(self, fmt: str, extra: Extra | None) -> None:
        self.json = fmt == "jsonl"
        self.extra = extra
        self.runs = [(names, _Cache(self._run_encoder(names))) for names in _RUNS]
        self.floats = {name: _Cache(_json_value if self.json else repr) for name in ("rssi", "snr")}

    def _run_encoder(self, names: tuple[str, ...]) -> Callable[[tuple], bytes | str]:
        """values of a run of columns -> their encoded cells, joined (JSON: with the keys)."""
        if self.json:
            cells = [(b'"' + n.encode() + b'":', _json_int if n in _INT_COLS else _json_value) for n in names]
            return lambda values: b",".join([key + enc(v) for (key, enc), v in zip(cells, values, strict=True)])
        encoders = [_csv_int if n in _INT_COLS else _csv_str for n in names]
        return lambda values: ",".join([enc(v) for enc, v in zip(encoders, values, strict=True)])

    def header(self) -> bytes:
        return b"" if self.json else ",".join(OUT_KEYS).encode() + b"\r\n"

    def encode(self, batch: RowBatch) -> bytes:
        cols = batch.cols
        if batch.pick is not None:
            get = _getter(batch.pick)
            cols = {name: get(col) for name, col in cols.items()}
        json = self.json
        out: dict = {}
        for names, cache in self.runs:
            out[names] = list(map(cache.__getitem__, zip(*[cols[name] for name in names], strict=True)))
        missing = b"null" if json else ""
        for name, cache in self.floats.items():
            out[name] = _floats(cols[name], cache, missing)
        ids = cols["id"]
        out["time"] = times = _iso_times(cols["ts"], json)
        if json:
            out["id"] = _ints(ids, b"%d".__mod__, missing)
            out["f_cnt"] = _ints(cols["f_cnt"], b"%d".__mod__, missing)
            payload = cols["payload"]
            out["payload_hex"] = hexes = list(map(b'"%b"'.__mod__, map(hexlify, payload)))
            if b"" in payload:
                out["payload_hex"] = [h if p else b"null" for h, p in zip(hexes, payload, strict=True)]
            out["decoded"] = _json_decoded_column(cols["decoded"])
            correlation = [b"[]"] * len(times)
        else:
            out["id"] = _ints(ids, str, missing)
            out["f_cnt"] = _ints(cols["f_cnt"], str, missing)
            out["payload_hex"] = list(map(bytes.hex, cols["payload"]))
            special = _CSV_SPECIAL
            texts = [d.decode("utf-8", "replace") for d in cols["decoded"]]
            out["decoded"] = ['"' + t.replace('"', '""') + '"' if special(t) else t for t in texts]
            correlation = [""] * len(times)
        received = times
        if self.extra is not None:
            received = list(times)
            self._add_extra(ids, received, correlation)
        out["received_at"] = received
        out["correlation_ids"] = correlation
        columns = [out[part] for part in _LAYOUT]
        if json:
            return b"".join(_interleave(columns, _JSONL_BEFORE, b"}\n"))
        return "".join(_interleave(columns, _CSV_BEFORE, "\r\n")).encode("utf-8", "replace")

    def _add_extra(self, ids: Sequence[int], received: list, correlation: list) -> None:
        extra = self.extra
        json = self.json
        for i, row_id in enumerate(ids):
            if row_id == NONE_INT:
                continue
            got = extra(row_id)
            if not got:
                continue
            at, corr = got
            if at:
                received[i] = _json_value(at) if json else _csv_str(at)
            if corr:
                correlation[i] = _json_value(list(corr)) if json else _csv_str(" ".join(corr))


def _interleave(columns: list[list], before: tuple, end) -> list:
    """One flat list, line by line: before[0], columns[0][i], before[1], columns[1][i] ..., end.

    Filled a column at a time by strided slice assignment, then joined once: much faster than
    formatting each line.
    """
    n = len(columns[0])
    width = 2 * len(columns) + 1
    flat = [end] * (n * width)
    for j, (text, col) in enumerate(zip(before, columns, strict=True)):
        flat[2 * j :: width] = [text] * n
        flat[2 * j + 1 :: width] = col
    return flat


def _json_decoded_column(col: Sequence[bytes]) -> list[bytes]:
    """The stored decoded JSON (orjson wrote it: compact), checked with one orjson parse a batch."""
    present = [d for d in col if d]
    if present:
        blob = b"[" + b",".join(present) + b"]"
        try:
            ok = len(orjson.loads(blob)) == len(present) and b"\n" not in blob and b"\r" not in blob
        except orjson.JSONDecodeError:
            ok = False
        if not ok:  # one of them is not compact JSON: look at each
            return [_json_decoded(d) if d else b"null" for d in col]
    return [d or b"null" for d in col]


def _ints(col: Sequence[int], fmt: Callable[[int], bytes | str], missing: bytes | str) -> list:
    out = list(map(fmt, col))
    if NONE_INT in col:
        return [missing if v == NONE_INT else o for v, o in zip(col, out, strict=True)]
    return out


def _floats(col: Sequence[float], cache: _Cache, missing: bytes | str) -> list:
    total = sum(col)
    if total == total:  # no NaN (missing) among them
        return list(map(cache.__getitem__, col))
    return [cache[v] if v == v else missing for v in col]


def _iso_times(ts: Sequence[float], json: bool) -> list:
    """ISO 8601 UTC with milliseconds ("2024-05-01T12:00:00.123Z"), JSON-quoted bytes or CSV text."""
    out: list = []
    append = out.append
    missing = b"null" if json else ""
    suffixes = _MS_JSON if json else _MS_CSV
    lo = hi = 0  # the second (in ms) `prefix` is for
    prefix = b"" if json else ""
    for t in ts:
        try:
            # Rounded to the microsecond, then cut to the millisecond, as datetime does.
            m = round(t * 1_000_000) // 1000
        except (ValueError, OverflowError):  # NaN (missing) or infinite
            append(missing)
            continue
        if not lo <= m < hi:
            try:
                iso = (_EPOCH + dt.timedelta(milliseconds=m - m % 1000)).isoformat()
            except OverflowError:  # past year 9999
                append(missing)
                continue
            prefix = b'"' + iso.encode() if json else iso
            lo = m - m % 1000
            hi = lo + 1000
        append(prefix + suffixes[m - lo])
    return out


def iso_ms(ts: float) -> str | None:
    """One time as the export writes it (ISO 8601 UTC with milliseconds), None when missing."""
    return _iso_times((ts,), False)[0] or None


__all__ = [
    "FORMATS",
    "OUT_KEYS",
    "ExportCancelled",
    "ExportError",
    "RowBatch",
    "batch_size",
    "export_batches",
    "export_rows",
    "iso_ms",
    "iter_batches",
    "take_rows",
]

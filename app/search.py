"""Search that answers while you type: free text (any case) or a regular expression over the
uplink table's payload hex, decoded values, device ids, DevEUIs, topics, gateways and errors.

Why this shape. Measured here with benchmarks/search_options.py (1,000,000 rows of a simulated
400-device fleet, the rows `uplink-console bench search` uses) on 2 cores shared with other
work: the first figures at a load average of ~6, those in brackets at ~14 (ratios are from one
run, so they hold; absolute times move 2-3x with the load):
- The reference, one per-row pass of `bytes.lower() + in` over the decoded column: 640 ms
  [1.0-2.5 s]. Today's search (EventStore.matching, every field of every row, on the GUI thread
  per keystroke): 580-1,300 ms [1.2-4.1 s].
- A joined lowercase buffer (decoded JSON, payload hex and error of each row: 67 MB) and
  bytes.count: 18-70 ms [35-111 ms], a full pass however rare the text: about 0.03-0.1 of the
  reference, at the limit on its own. numpy over the same buffer (a compare per needle byte):
  75-80 ms [80-450 ms]. One re.finditer pass: 80 ms for a common word [88-385 ms].
- SQLite FTS5 with the trigram tokenizer (what substring search needs): 143 us a row to build
  [loaded], 4.3x the text's size; its queries are quick (0.0-87 ms per 100,000 rows). But every
  row would have to be written to it on the engine's hot path (~30,000 rows/s in a flood: more
  than the engine has), and over the history it would change the file's schema. Not chosen;
  "search all history" pages through HistoryReader instead (search_history below).
- Chosen: the joined buffer cut into pieces of up to PIECE_ROWS rows, with a 256-bit signature
  per row (which hashed pairs of bytes its text holds; numpy, ~0.24 us a row) and, for the columns
  that repeat a few thousand values (device id, DevEUI, topic, gateway), a small integer code per
  row. A search tests each distinct repeated value once (then one numpy gather per piece), and
  looks at the text only of the rows whose signature holds every pair of the needle (or, when
  they are many, finds every occurrence of the needle's rarest byte with numpy). At 1M rows: a
  rare value 9 ms, a device id 15 ms, a payload fragment 7 ms, nothing found 12 ms, a word in a
  fifth of the rows 47 ms, one letter 45 ms [32-153 ms; median 0.019 of the reference]. A regular
  expression is narrowed by the plain text every match holds ("^0917" -> rows holding 0917, found
  as above, then the pattern on each): 8-25 ms, "temp.*23\\.2" 125 ms (temp is in a fifth of the
  rows); one without such text ("a|b") is one re pass per piece, 330-540 ms [1.9-3.6 s]: not 10x
  faster than the scan, but in slices like the rest.
- Building the index: ~1.3 us a row in its parts (row text 0.46, join 0.19, offsets 0.08,
  signatures 0.24, codes 4 x 0.065), 2.8-3 us a row measured with the merging of pieces [7 us],
  on the GUI thread in slices of at most INDEX_SLICE rows as rows are announced; 123 bytes a row
  of memory (text 67, signature 32, offsets 8, codes 16). The row text and signatures could be
  made in the engine process instead (columns_from_rows runs there) and shipped with the batch.
- Pieces are searched newest first, one piece per step (`SearchJob.step`), so the caller runs a
  search in slices between repaints, shows the newest matches first and drops a job the moment
  the text changes: nothing here blocks for more than a piece.

Everything is Qt-free; ui/workspace drives it from a timer. Rows appended after a job started are
matched row by row (`Query.matches_row`), which is also the reference the tests compare with.
"""

from __future__ import annotations

import binascii
import re
from dataclasses import dataclass, field

import numpy as np

from app.store import NONE_INT, EventStore

PIECE_ROWS = 16_384  # rows per index piece: one search step, ~1 MB of text
INDEX_SLICE = 1_024  # most rows indexed in one catch_up slice (1-3 ms, so a flood stalls the window less)
CODED = ("device_id", "dev_eui", "topic", "gateway_id")  # repeated values, tested once each
TEXT = ("decoded", "payload", "error")  # per-row text, in the buffer
FIELD_SEP = b"\n"  # between the fields of a row (and after its last): ^ and $ of a regex match there
_SIG_BITS = 256  # signature bits a row
_VERIFY_SHARE = 8  # more than 1/_VERIFY_SHARE of a piece's rows are candidates: scan the piece text


def _pair_hash() -> np.ndarray:
    pairs = np.arange(65536, dtype=np.uint64)
    return ((pairs * np.uint64(2654435761)) >> np.uint64(13)).astype(np.uint8)  # 0..255


_PAIR_HASH = _pair_hash()


class QueryError(ValueError):
    """The search text cannot be used (an invalid regular expression); str() is a sentence."""


@dataclass(frozen=True)
class Query:
    """What the user typed: text (matched in any case) or a regular expression (regex=True)."""

    text: str
    regex: bool = False
    needle: bytes = field(init=False, repr=False, compare=False)
    pattern: re.Pattern | None = field(init=False, repr=False, compare=False)  # bytes, for the buffer
    str_pattern: re.Pattern | None = field(init=False, repr=False, compare=False)  # for coded values
    literals: tuple = field(init=False, repr=False, compare=False)  # bytes every row a regex matches holds

    def __post_init__(self) -> None:
        needle = self.text.lower().encode("utf-8", "surrogatepass")
        pattern = str_pattern = None
        if self.regex:
            try:
                pattern = re.compile(self.text.encode("utf-8", "surrogatepass"), re.IGNORECASE | re.MULTILINE)
                str_pattern = re.compile(self.text, re.IGNORECASE | re.MULTILINE)
            except re.error as exc:
                raise QueryError(
                    f"The regular expression is not valid ({exc.msg} at position {exc.pos}); "
                    "correct it or switch the .* button off to search for the text as typed."
                ) from None
        object.__setattr__(self, "literals", _required_literals(pattern) if pattern is not None else ())
        object.__setattr__(self, "needle", needle)
        object.__setattr__(self, "pattern", pattern)
        object.__setattr__(self, "str_pattern", str_pattern)

    @property
    def empty(self) -> bool:
        return not self.text

    def value_matches(self, value: str | None) -> bool:
        """Whether one repeated value (a device id, a topic …) matches."""
        if not value:
            return False
        if self.str_pattern is not None:
            return self.str_pattern.search(value) is not None
        return self.text.lower() in value.lower()

    def text_matches(self, text: bytes, start: int = 0, end: int | None = None) -> bool:
        """Whether a row's lowercase text (row_text) matches."""
        end = len(text) if end is None else end
        if self.pattern is not None:
            # Up to the last field's end: "$" matches there, not again after the final separator.
            return self.pattern.search(text, start, end - 1 if end > start else end) is not None
        return text.find(self.needle, start, end) >= 0

    def matches_row(self, row: dict) -> bool:
        """The per-row test (a row as EventStore.row gives it): the reference the index agrees with."""
        if self.empty:
            return True
        if any(self.value_matches(row.get(name)) for name in CODED):
            return True
        return self.text_matches(row_text(row.get("decoded"), row.get("payload"), row.get("error")))


def _required_literals(pattern: re.Pattern) -> tuple[bytes, ...]:
    """The runs of plain characters (two bytes or more) every match of pattern holds, lowercase
    as the index's text is: "temp.*23\\.2" -> (b"temp", b"23.2"). Only the pattern's top level
    counts (a branch, a repeat or a group ends a run)."""
    try:
        from re import _constants, _parser  # the parser re itself uses (private: any failure means no literal)

        items = _parser.parse(pattern.pattern, pattern.flags).data
        runs, run = [], bytearray()
        for op, value in [*items, (None, None)]:
            if op is _constants.LITERAL and 0 <= value < 256:
                run.append(value)
                continue
            if len(run) >= 2:
                runs.append(bytes(run).lower())
            run = bytearray()
        return tuple(sorted(runs, key=len, reverse=True)[:4])
    except Exception:
        return ()


def _lower_bytes(data: bytes) -> bytes:
    return data.lower() if data.isascii() else data.decode("utf-8", "replace").lower().encode()


def row_text(decoded: bytes | None, payload: bytes | None, error: str | None) -> bytes:
    """One row's searchable text: decoded JSON, payload hex and error, lowercase, each field
    followed by FIELD_SEP."""
    return b"%s\n%s\n%s\n" % (
        _lower_bytes(decoded) if decoded else b"",
        binascii.hexlify(payload) if payload else b"",
        error.lower().encode("utf-8", "surrogatepass") if error else b"",
    )


class _Codes(dict):
    """value -> small integer; new values get the next code (values[code] is the value)."""

    def __init__(self) -> None:
        super().__init__()
        self.values: list = []

    def __missing__(self, value):
        code = self[value] = len(self.values)
        self.values.append(value)
        return code


@dataclass(slots=True)
class Piece:
    """Index of the rows start .. start+n-1 (absolute store positions). Never changed once made
    (a merge makes a new piece), so a search may keep using the pieces it started with."""

    start: int
    buf: bytes  # the rows' row_text, one after the other
    ends: np.ndarray  # int64: end offset of each row in buf
    sig: np.ndarray  # uint8 (n, _SIG_BITS // 8): pair signatures
    codes: dict  # column name -> uint32 array of codes

    @property
    def n(self) -> int:
        return len(self.ends)

    @property
    def end(self) -> int:
        return self.start + len(self.ends)

    def starts(self) -> np.ndarray:
        out = np.empty_like(self.ends)
        out[0] = 0
        out[1:] = self.ends[:-1]
        return out


def _signatures(buf: bytes, starts: np.ndarray) -> np.ndarray:
    """(n, 32) uint8: bit h of row r is set when the row's text holds a pair of bytes hashing to h.
    A pair across two rows marks the first (a false candidate at worst, never a missed row)."""
    n = len(starts)
    if len(buf) < 2:
        return np.zeros((n, _SIG_BITS // 8), dtype=np.uint8)
    b = np.frombuffer(buf, dtype=np.uint8)
    h = _PAIR_HASH[(b[:-1].astype(np.uint16) << 8) | b[1:]].astype(np.intp)
    row_of_pair = np.repeat(np.arange(n, dtype=np.intp), np.diff(np.append(starts, len(h))))
    bits = np.zeros(n * _SIG_BITS, dtype=bool)
    bits[row_of_pair * _SIG_BITS + h] = True
    return np.packbits(bits.reshape(n, _SIG_BITS), axis=1, bitorder="little")


def _needle_signature(needle: bytes) -> dict[int, int]:
    """{byte of the signature: bits every matching row has there}."""
    want: dict[int, int] = {}
    for a, b in zip(needle, needle[1:], strict=False):
        h = int(_PAIR_HASH[(a << 8) | b])
        want[h >> 3] = want.get(h >> 3, 0) | (1 << (h & 7))
    return want


class SearchIndex:
    """The search index of one EventStore, kept up with it by catch_up() (call it after appends;
    it notices trimming and clearing itself)."""

    def __init__(self, store: EventStore) -> None:
        self.store = store
        self.pieces: list[Piece] = []
        self.codes = {name: _Codes() for name in CODED}
        self._lowered: dict[str, list[str]] = {name: [] for name in CODED}
        self.end = store.base  # absolute position after the last indexed row
        self.byte_counts = np.zeros(256, dtype=np.int64)  # how often each byte is in the text

    @property
    def behind(self) -> int:
        """Rows of the store not indexed yet (appended since the last catch_up)."""
        return self.store.end - max(self.end, self.store.base)

    @property
    def start(self) -> int:
        """Absolute position of the oldest indexed row (end when nothing is indexed)."""
        return self.pieces[0].start if self.pieces else self.end

    @property
    def behind_below(self) -> int:
        """Rows prepended to the store (EventStore.prepend_columns) not indexed yet."""
        self._forget_trimmed()
        return max(0, min(self.start, self.store.end) - self.store.base) if self.end > self.store.base else 0

    def catch_up_below(self, max_rows: int = INDEX_SLICE) -> int:
        """Indexes up to max_rows of the rows prepended below the oldest indexed one, the
        newest of them first; returns how many. Searches started before do not see them."""
        store = self.store
        self._forget_trimmed()
        if self.end <= store.base:
            return 0  # nothing indexed above: catch_up indexes from the store's base
        hi = min(self.start, self.end)
        lo = max(store.base, hi - max_rows)
        if hi <= lo:
            return 0
        piece = self._make_piece(lo, hi)
        first = self.pieces[0] if self.pieces else None
        if first is not None and first.start == hi and first.n + piece.n <= PIECE_ROWS:
            self.pieces[0] = _merge(piece, first)
        else:
            self.pieces.insert(0, piece)
        return hi - lo

    def catch_up(self, max_rows: int | None = None) -> int:
        """Indexes up to max_rows of the rows appended since (None: all of them, a slice at a
        time); returns how many it indexed."""
        if max_rows is None:
            done = 0
            while step := self.catch_up(INDEX_SLICE):
                done += step
            return done
        store = self.store
        self._forget_trimmed()
        lo = max(self.end, store.base)
        hi = min(store.end, lo + max_rows)
        if hi <= lo:
            return 0
        self._add_piece(lo, hi)
        self.end = hi
        return hi - lo

    def _forget_trimmed(self) -> None:
        base = self.store.base
        if self.end < base:  # cleared, or trimmed past everything indexed
            self.pieces = []
            self.end = base
            return
        while self.pieces and self.pieces[0].end <= base:
            del self.pieces[0]

    def _add_piece(self, lo: int, hi: int) -> None:
        piece = self._make_piece(lo, hi)
        last = self.pieces[-1] if self.pieces else None
        if last is not None and last.end == lo and last.n + piece.n <= PIECE_ROWS:
            piece = _merge(last, piece)
            self.pieces[-1] = piece
        else:
            self.pieces.append(piece)

    def _make_piece(self, lo: int, hi: int) -> Piece:
        store = self.store
        c = store.cols
        i0, i1 = lo - store.zero, hi - store.zero
        texts = list(map(row_text, c["decoded"][i0:i1], c["payload"][i0:i1], c["error"][i0:i1]))
        buf = b"".join(texts)
        ends = np.cumsum(np.fromiter(map(len, texts), dtype=np.int64, count=len(texts)))
        starts = np.empty_like(ends)
        starts[0] = 0
        starts[1:] = ends[:-1]
        codes = {}
        for name in CODED:
            table = self.codes[name]
            known = len(table.values)
            codes[name] = np.fromiter(map(table.__getitem__, c[name][i0:i1]), dtype=np.uint32, count=i1 - i0)
            self._lowered[name].extend(v.lower() if v else "" for v in table.values[known:])
        self.byte_counts += np.bincount(np.frombuffer(buf, dtype=np.uint8), minlength=256)
        return Piece(lo, buf, ends, _signatures(buf, starts), codes)

    def lookup(self, query: Query) -> dict[str, np.ndarray]:
        """Per coded column, a bool table over its codes: which values match (None: none do)."""
        out = {}
        for name in CODED:
            if query.str_pattern is not None:
                values = self.codes[name].values
                hits = np.fromiter(map(query.value_matches, values), dtype=bool, count=len(values))
            else:
                needle = query.text.lower()
                lowered = self._lowered[name]
                hits = np.fromiter((needle in v for v in lowered), dtype=bool, count=len(lowered))
            if hits.any():
                out[name] = hits
        return out

    def search(self, query: Query) -> SearchJob:
        """A job over the rows indexed now, newest piece first (see SearchJob)."""
        return SearchJob(self, query, list(self.pieces), self.end)


def _merge(a: Piece, b: Piece) -> Piece:
    return Piece(
        a.start,
        a.buf + b.buf,
        np.concatenate((a.ends, b.ends + len(a.buf))),
        np.concatenate((a.sig, b.sig)),
        {name: np.concatenate((a.codes[name], b.codes[name])) for name in a.codes},
    )


def search_piece(piece: Piece, query: Query, tables: dict[str, np.ndarray], rarest: int = 0) -> np.ndarray:
    """Absolute positions (int64, ascending) of the piece's rows that match."""
    mask = np.zeros(piece.n, dtype=bool)
    for name, table in tables.items():
        mask |= table[piece.codes[name]]
    buf, ends = piece.buf, piece.ends
    if query.pattern is not None and query.literals:
        # Only the rows that hold every literal of the pattern can match: those found as for
        # plain text, then the pattern run on each of them alone.
        held = ~mask
        for literal in query.literals:
            cand, held = held, np.zeros(piece.n, dtype=bool)
            _plain_rows(piece, literal, held, rarest if literal is query.literals[0] else 0, cand)
        search = query.pattern.search
        starts = piece.starts()
        rows = np.flatnonzero(held)
        spans = zip(rows.tolist(), starts[rows].tolist(), ends[rows].tolist(), strict=True)
        mask[[r for r, s, e in spans if search(buf, s, e - 1) is not None]] = True
    elif query.pattern is not None:
        _regex_rows(piece, query.pattern, mask)
    else:
        _plain_rows(piece, query.needle, mask, rarest, ~mask)
    return np.flatnonzero(mask) + piece.start


def _plain_rows(piece: Piece, needle: bytes, mask: np.ndarray, rarest: int, cand: np.ndarray) -> None:
    """Sets mask for the rows among cand (bool) whose text holds needle."""
    buf, ends = piece.buf, piece.ends
    for byte, bits in _needle_signature(needle).items():
        cand &= (piece.sig[:, byte] & bits) == bits
    cand = np.flatnonzero(cand)
    if len(cand) * _VERIFY_SHARE <= piece.n:
        find = buf.find
        starts = piece.starts()
        spans = zip(cand.tolist(), starts[cand].tolist(), ends[cand].tolist(), strict=True)
        mask[[r for r, s, e in spans if find(needle, s, e) >= 0]] = True
    else:
        _dense_rows(piece, needle, mask, min(rarest, len(needle) - 1))


def _dense_rows(piece: Piece, needle: bytes, mask: np.ndarray, rarest: int = 0) -> None:
    """Every occurrence of needle in the piece at once (numpy: where its rarest byte is, then
    which of those have the others around it), for needles in many of the piece's rows."""
    b = np.frombuffer(piece.buf, dtype=np.uint8)
    size = len(needle)
    if not size or size > len(b):
        mask[:] |= not size
        return
    at = np.flatnonzero(b[rarest : len(b) - size + 1 + rarest] == needle[rarest])
    for k in range(size):
        if k != rarest:
            at = at[b[at + k] == needle[k]]
    first = np.searchsorted(piece.ends, at, side="right")
    last = np.searchsorted(piece.ends, at + (size - 1), side="right")
    mask[first[first == last]] = True  # a match inside one row's text


def _regex_rows(piece: Piece, pattern: re.Pattern, mask: np.ndarray) -> None:
    """Rows with a match of pattern inside their own text. A match the buffer finds across a
    row's end is checked again within that row alone, so the answer is the per-row one."""
    buf, ends = piece.buf, piece.ends
    n = len(ends)
    search = pattern.search
    pos, total = 0, len(buf)
    while pos <= total:
        m = search(buf, pos)
        if m is None:
            return
        row = int(np.searchsorted(ends, m.start(), side="right"))
        if row >= n:
            return
        start = int(ends[row - 1]) if row else 0
        end = int(ends[row])
        # Within the row up to its last field's end (as Query.text_matches), else ask the row alone.
        if m.end() <= end - 1 and m.start() <= end - 1 or search(buf, start, end - 1) is not None:
            mask[row] = True
        pos = end


class SearchJob:
    """One search over the index as it was when the job started, newest rows first.

    step() searches the next piece (newest first) and returns its matches (absolute positions,
    ascending, older than everything returned before); done is True after the oldest piece.
    Rows the index did not hold when the job started (at or after `end`) are not searched:
    the caller matches those row by row as they arrive (Query.matches_row)."""

    def __init__(self, index: SearchIndex, query: Query, pieces: list[Piece], end: int) -> None:
        self.query = query
        self.end = end
        self._pieces = pieces
        self._next = len(pieces) - 1
        self._tables = index.lookup(query) if not query.empty else {}
        counts = index.byte_counts
        needle = query.literals[0] if query.literals else query.needle
        self._rarest = min(range(len(needle)), key=lambda k: counts[needle[k]]) if needle else 0
        self.matched = 0

    @property
    def done(self) -> bool:
        return self._next < 0

    @property
    def progress(self) -> float:
        total = len(self._pieces)
        return 1.0 if not total else (total - 1 - self._next) / total

    def step(self, base: int = 0) -> np.ndarray:
        """The next piece's matches (positions below `base`, trimmed meanwhile, left out)."""
        if self._next < 0:
            return np.empty(0, dtype=np.int64)
        piece = self._pieces[self._next]
        self._next -= 1
        if piece.end <= base:
            self._next = -1  # everything older is gone too
            return np.empty(0, dtype=np.int64)
        found = search_piece(piece, self.query, self._tables, self._rarest)
        if base > piece.start:
            found = found[found >= base]
        self.matched += len(found)
        return found

    def run(self, base: int = 0) -> np.ndarray:
        """All matches at once, ascending (tests, benchmarks)."""
        parts = []
        while not self.done:
            parts.append(self.step(base))
        return np.concatenate(parts[::-1]) if parts else np.empty(0, dtype=np.int64)


def reference_positions(store: EventStore, query: Query, start: int | None = None) -> list[int]:
    """The per-row scan: every row from start on tested on its own (what the index must equal)."""
    lo = store.base if start is None else max(start, store.base)
    return [pos for pos in range(lo, store.end) if query.matches_row(store.row(pos))]


_HEX_TEXT = re.compile(r"[0-9a-f]*")
HISTORY_PAGE = 2_000  # rows a history query returns at a time (a cancel is seen between pages)
HISTORY_LIMIT = 100_000  # most older matches a history search shows


def search_history(reader, flt, query: Query, before_id: int | None, cancelled, deliver, limit: int = HISTORY_LIMIT):
    """ "Search all history": the rows of a HistoryReader (app/history.py) with ids below
    before_id (the oldest row in memory) that pass flt and query, newest first, handed to
    deliver(rows) a page at a time (rows as tuples in ROW_FIELDS order), until the oldest row,
    `limit` rows, or cancelled() is true. Runs on a worker thread (SQLite releases the GIL while
    it reads). Returns how many rows it delivered.

    Plain ASCII text that is not hex lets SQLite's own text search pick the candidates
    (HistoryReader.search, a LIKE pass in C); anything else pages through every row. Either way each
    row is checked with Query.matches_row, so the answer is the table's answer."""
    from app.store import ROW_FIELDS, Filter

    others = Filter(device=flt.device, kinds=flt.kinds, f_port=flt.f_port, gateway=flt.gateway)
    sql_filter = others
    text = query.text
    if not query.regex and text.isascii() and not _HEX_TEXT.fullmatch(text.lower()):
        # The history's LIKE test finds every row this one does when the text is ASCII and could
        # not be payload hex; otherwise (hex at any nibble, letters beyond ASCII) every row is tested.
        sql_filter = Filter(device=flt.device, kinds=flt.kinds, f_port=flt.f_port, gateway=flt.gateway, text=text)
    delivered = 0
    cursor = before_id
    while delivered < limit and not cancelled():
        page = reader.search(sql_filter, limit=HISTORY_PAGE, before_id=cursor)
        if not page:
            break
        cursor = page[-1][0]
        rows = [row for row in page if query.matches_row(dict(zip(ROW_FIELDS, row, strict=True)))]
        if rows and not cancelled():
            rows = rows[: limit - delivered]
            deliver(rows)
            delivered += len(rows)
        if len(page) < HISTORY_PAGE:
            break
    return delivered


def other_conditions(flt) -> bool:
    """Whether an app.store.Filter has conditions besides its text."""
    return bool(flt.device or flt.kinds or flt.f_port is not None or flt.gateway)


__all__ = [
    "INDEX_SLICE",
    "NONE_INT",
    "PIECE_ROWS",
    "Piece",
    "Query",
    "QueryError",
    "SearchIndex",
    "SearchJob",
    "reference_positions",
    "row_text",
    "search_piece",
]

"""The live uplink table: every platform's normalized events in the same columns.

The model is a window onto an EventStore (app/store.py): no per-row Python objects, display
text built only for visible cells (one multiData call per cell), inserts and trims announced
once per batch. A filter turns the model into a view of matching absolute positions.

Free-text search runs through app.search (an index kept up as rows arrive) in slices on the GUI
loop: a slice takes at most SEARCH_SLICE seconds, matches are shown newest first (older ones are
inserted above as the search goes back in time, at most every SEARCH_PUBLISH seconds), and a new
filter drops the search in flight. Rows arriving meanwhile are matched as they are announced.

Rows delivered twice are marked, never dropped: a row with the MQTT DUP flag, and a platform-level
duplicate (same device and frame counter as one of the device's last REPEAT_WINDOW uplinks), say
so in the Kind column; "hide duplicates" leaves both out of the view and counts them.
"""

from __future__ import annotations

import bisect
import datetime as dt
import logging
import math
import time
from array import array
from collections import deque

import numpy as np
import orjson
from PySide6.QtCore import QAbstractTableModel, QModelIndex, Qt, QTimer, Signal
from PySide6.QtGui import QBrush, QColor, QFontDatabase, QIcon, QPainter, QPalette, QPixmap
from PySide6.QtWidgets import QStyledItemDelegate, QTableView

from app.search import INDEX_SLICE, Query, SearchIndex, search_piece
from app.store import NONE_INT, EventStore, Filter
from ui.common.labels import KIND_COLORS, KIND_LABELS, PLATFORM_LABELS
from ui.common.tables import FollowingTableView

ANNOUNCE_INTERVAL = 0.2  # seconds between view inserts while rows stream in
SEARCH_SLICE = 0.008  # seconds of search work per turn of the GUI loop
FIRST_SLICE = 0.004  # the slice run at once when the filter changes (the view repaints after it)
SEARCH_PUBLISH = 0.15  # seconds between inserts of older matches while a search goes on
REPEAT_WINDOW = 64  # uplinks of a device whose frame counters tell a platform-level duplicate
DUP_TOOLTIP = "redelivered by the broker (MQTT DUP flag)"
REPEAT_TOOLTIP = "same device and frame counter as an earlier row (a platform-level duplicate)"

COLUMNS = (
    ("time", "Time"),
    ("platform", "Platform"),
    ("kind", "Kind"),
    ("device", "Device"),
    ("dev_eui", "DevEUI"),
    ("f_port", "FPort"),
    ("f_cnt", "FCnt"),
    ("payload", "Payload"),
    ("decoded", "Decoded"),
    ("rssi", "RSSI"),
    ("snr", "SNR"),
    ("gateway", "Gateway"),
    ("sf", "SF / BW"),
    ("frequency", "Frequency"),
)
COL = {key: i for i, (key, _) in enumerate(COLUMNS)}
_DISPLAY = Qt.ItemDataRole.DisplayRole
_DECORATION = Qt.ItemDataRole.DecorationRole
_ALIGN = Qt.ItemDataRole.TextAlignmentRole
_FONT = Qt.ItemDataRole.FontRole
_BACKGROUND = Qt.ItemDataRole.BackgroundRole
_FOREGROUND = Qt.ItemDataRole.ForegroundRole
_TOOLTIP = Qt.ItemDataRole.ToolTipRole
_RIGHT = int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
_NUMERIC = {COL["f_port"], COL["f_cnt"], COL["rssi"], COL["snr"], COL["frequency"]}
_MONO = {COL["payload"], COL["dev_eui"]}
_LEFT = int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
_KIND_COL = COL["kind"]
_TEXT = QPalette.ColorRole.Text
_HIGHLIGHTED_TEXT = QPalette.ColorRole.HighlightedText

log = logging.getLogger(__name__)


def _kind_icon(color: str) -> QIcon:
    pix = QPixmap(10, 10)
    pix.fill(Qt.GlobalColor.transparent)
    p = QPainter(pix)
    p.setRenderHint(QPainter.RenderHint.Antialiasing)
    p.setBrush(QColor(color))
    p.setPen(Qt.PenStyle.NoPen)
    p.drawEllipse(1, 1, 8, 8)
    p.end()
    return QIcon(pix)


def decoded_summary(data: bytes, limit: int = 80) -> str:
    """`{"temperature": 21.5, "humidity": 40}` -> `temperature=21.5 humidity=40`."""
    if not data:
        return ""
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError:
        return data[:limit].decode("utf-8", "replace")
    if isinstance(obj, dict):
        parts = []
        size = 0
        for k, v in obj.items():
            text = f"{k}={_short(v)}"
            parts.append(text)
            size += len(text) + 1
            if size > limit:
                break
        out = " ".join(parts)
    else:
        out = _short(obj, limit)
    return out if len(out) <= limit else out[: limit - 1] + "…"


def _short(v, limit: int = 24) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, dict | list):
        text = orjson.dumps(v).decode()
        return text if len(text) <= limit else text[: limit - 1] + "…"
    return str(v)


class UplinkTableModel(QAbstractTableModel):
    rows_changed = Signal()  # after every insert/trim/filter, for counters
    rows_rejected = Signal(int, str)  # rows the store refused so far, and why the last were
    search_state = Signal(bool, float)  # a search is running, how far back it got (0..1)
    # Hidden duplicates changed after a replay's recount while rows found on disk ("All
    # history") are shown: the owner applies the filter again (which searches the disk again).
    refilter_needed = Signal()

    def __init__(self, store: EventStore | None = None, parent=None) -> None:
        self.rejected_rows = 0
        super().__init__(parent)
        self.store = store if store is not None else EventStore()
        self.filter = Filter()
        self.visible: array | None = None  # absolute positions when a filter is active
        # Rows announced to Qt when unfiltered: the store grows before beginInsertRows is called,
        # and Qt must not see the new rows until then.
        self._count = len(self.store)
        self.paused = False
        self._held: list[dict] = []  # batches that arrived while paused
        self.first_row_at: float | None = None
        self.last_row_at: float | None = None
        self.rows_shown_total = 0  # rows that reached the model (for the smoke test)
        self.history_rows_shown = 0  # rows of a replayed history put above them (prepend_history)
        self._icons = {k: _kind_icon(c) for k, c in KIND_COLORS.items()}
        self.error_background = QBrush(QColor(207, 34, 46, 28))
        self._mono = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
        self._decoded_cache: dict[int, str] = {}
        self.payload_chars = 48
        # Rows appended to the store reach the view at most every announce_interval seconds.
        self.announce_interval = ANNOUNCE_INTERVAL
        self._announced_end = self.store.end  # absolute position after the last announced row
        self._last_announce = 0.0
        self._announce_timer = QTimer(self)
        self._announce_timer.setSingleShot(True)
        self._announce_timer.timeout.connect(self.announce)
        # Search: the index, the query of the current filter, the job in flight.
        self.search_index = SearchIndex(self.store)
        # Rows found in the history on disk ("All history"), older than every row in memory: a
        # store of their own, shown above the rest (older_order: its positions, oldest first).
        self.older = EventStore(max_rows=2**40)
        self.older_order = array("q")
        self.query: Query | None = None
        self.hide_duplicates = False
        self._job = None
        self._job_end = 0  # rows from here on are matched as they are announced
        self._pending: list[np.ndarray] = []  # older matches not inserted yet (newest first)
        self._published_at = 0.0
        self.search_started_at = 0.0
        self.search_seconds: float | None = None  # how long the last search took to finish
        self._work_timer = QTimer(self)
        self._work_timer.setSingleShot(True)
        self._work_timer.timeout.connect(self._work)
        # Platform-level duplicates: absolute positions, and each device's recent frame counters.
        self.repeats = array("q")
        self._recent: dict[str, tuple[deque, set]] = {}
        self._repeats_end = self.store.end
        self._duplicates = None  # (store base, end, repeats) -> duplicate_positions()
        # History replayed newest first (prepend_history): rows put above the rows held.
        self._matched_lo = self.store.end  # a search view holds the matches from here on
        self._below_timer = QTimer(self)  # indexes prepended rows in slices
        self._below_timer.setSingleShot(True)
        self._below_timer.timeout.connect(self._index_below)
        self._below_published = 0.0
        self.taking_history = False  # a replay's batches are taken (reserve_history .. clear)
        self._recount = None  # the exact pass over all rows for repeats (after a replay), in slices
        self._recount_timer = QTimer(self)
        self._recount_timer.setSingleShot(True)
        self._recount_timer.timeout.connect(self._recount_step)

    # ----- Qt model API
    def rowCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: B008, N802
        if parent.isValid():
            return 0
        return len(self.older_order) + (len(self.visible) if self.visible is not None else self._count)

    def columnCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: B008, N802
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section, orientation, role=_DISPLAY):  # noqa: N802
        if orientation == Qt.Orientation.Horizontal and role == _DISPLAY:
            return COLUMNS[section][1]
        return None

    def position(self, row: int) -> int:
        """The absolute store position shown at `row`; a row found in the history on disk (above
        the rows in memory) is -1 - its position in `older`."""
        older = len(self.older_order)
        if row < older:
            return -1 - self.older_order[row]
        row -= older
        return self.visible[row] if self.visible is not None else self.store.base + row

    def row_of(self, pos: int) -> int | None:
        older = len(self.older_order)
        if self.visible is None:
            r = pos - self.store.base
            return r + older if 0 <= r < self._count else None
        i = bisect.bisect_left(self.visible, pos)
        return i + older if i < len(self.visible) and self.visible[i] == pos else None

    def locate(self, pos: int) -> tuple[EventStore, int]:
        """(the store holding the row at pos, its index in that store's columns)."""
        if pos >= 0:
            return self.store, pos - self.store.zero
        return self.older, -1 - pos - self.older.zero

    def kind_at(self, pos: int) -> str:
        s, i = self.locate(pos)
        return s.cols["kind"][i]

    def row_at(self, pos: int) -> dict:
        """The row at pos as EventStore.row gives it, with "dup" and "repeat" (delivered twice)."""
        s, i = self.locate(pos)
        row = s.row(s.zero + i)
        row["dup"] = s.is_dup(s.zero + i)
        row["repeat"] = pos >= 0 and self.is_repeat(pos)
        return row

    def display(self, pos: int, col: int) -> str:
        s, i = self.locate(pos)
        c = s.cols
        if col == 0:
            return dt.datetime.fromtimestamp(c["ts"][i]).strftime("%H:%M:%S.%f")[:-3]
        if col == 1:
            return PLATFORM_LABELS.get(c["platform"][i], c["platform"][i])
        if col == 2:
            label = KIND_LABELS.get(c["kind"][i], c["kind"][i])
            if c["dup"][i]:
                return f"{label} · DUP"
            if self.repeats and pos >= 0 and self.is_repeat(pos):
                return f"{label} · again"
            return label
        if col == 3:
            return c["device_id"][i] or ""
        if col == 4:
            return c["dev_eui"][i] or ""
        if col == 5:
            v = c["f_port"][i]
            return "" if v == NONE_INT else str(v)
        if col == 6:
            v = c["f_cnt"][i]
            return "" if v == NONE_INT else str(v)
        if col == 7:
            p = c["payload"][i]
            n = self.payload_chars // 2
            return p[:n].hex() + ("…" if len(p) > n else "")
        if col == 8:
            if c["error"][i]:
                return c["error"][i]
            text = self._decoded_cache.get(pos)
            if text is None:
                if len(self._decoded_cache) > 4000:
                    self._decoded_cache.clear()
                text = self._decoded_cache[pos] = decoded_summary(c["decoded"][i])
            return text
        if col == 9:
            v = c["rssi"][i]
            return "" if math.isnan(v) else f"{v:g}"
        if col == 10:
            v = c["snr"][i]
            return "" if math.isnan(v) else f"{v:g}"
        if col == 11:
            g, n = c["gateway_id"][i], c["gateways"][i]
            if g is None:
                return ""
            return f"{g} (+{n - 1})" if n != NONE_INT and n > 1 else g
        if col == 12:
            sf, bw = c["spreading_factor"][i], c["bandwidth_hz"][i]
            if sf == NONE_INT:
                return ""
            return f"SF{sf}/{bw // 1000}k" if bw != NONE_INT else f"SF{sf}"
        v = c["frequency_hz"][i]
        return "" if v == NONE_INT else f"{v / 1e6:.3f} MHz"

    def multiData(self, index: QModelIndex, span) -> None:  # noqa: N802
        row, col = index.row(), index.column()
        if not index.isValid() or row >= self.rowCount():
            for rd in span:
                rd.clearData()
            return
        pos = self.position(row)
        for rd in span:
            role = rd.role()
            if role == _DISPLAY:
                rd.setData(self.display(pos, col))
            elif role == _DECORATION and col == 2:
                rd.setData(self._icons.get(self.kind_at(pos)))
            elif role == _ALIGN and col in _NUMERIC:
                rd.setData(_RIGHT)
            elif role == _FONT and col in _MONO:
                rd.setData(self._mono)
            elif role == _BACKGROUND and self.kind_at(pos) == "error":
                rd.setData(self.error_background)
            else:
                rd.clearData()

    def data(self, index: QModelIndex, role=_DISPLAY):
        if not index.isValid() or index.row() >= self.rowCount():
            return None
        pos = self.position(index.row())
        if role == _DISPLAY:
            return self.display(pos, index.column())
        if role == _TOOLTIP and index.column() == COL["kind"]:
            s, i = self.locate(pos)
            notes = []
            if s.cols["dup"][i]:
                notes.append(DUP_TOOLTIP)
            if pos >= 0 and self.is_repeat(pos):
                notes.append(REPEAT_TOOLTIP)
            if pos < 0:
                notes.append("found in the history on disk (no longer in memory)")
            return "; ".join(notes) or None
        if role == _TOOLTIP and index.column() in (COL["decoded"], COL["payload"]):
            s, i = self.locate(pos)
            if index.column() == COL["payload"]:
                return s.cols["payload"][i].hex(" ")
            return s.cols["error"][i] or s.cols["decoded"][i].decode("utf-8", "replace")[:2000]
        if role == _DECORATION and index.column() == COL["kind"]:
            return self._icons.get(self.kind_at(pos))
        return None

    # ----- feeding
    def ingest(self, batches: list[dict]) -> list[dict]:
        """Appends column batches to the store; the view learns of them at the next announce().
        Returns the batches the store took (all of them, unless one was refused)."""
        if not batches:
            return []
        if self.paused:
            self._held.extend(batches)
            return batches
        taken = []
        for b in batches:
            try:
                self.store.append_columns(b, trim=False)
                taken.append(b)
            except Exception as exc:  # noqa: BLE001 - one bad batch must not stop the others
                # The store takes a batch whole or not at all, so the table stays consistent.
                log.exception("a batch could not be added to the table")
                self.rejected_rows += len(b.get("ts", ())) if isinstance(b, dict) else 0
                self.rows_rejected.emit(self.rejected_rows, f"{type(exc).__name__}: {exc}")
        self._announce_soon()
        return taken

    # ----- history replayed newest first (reopening a connection)
    def reserve_history(self, n: int, expected: int | None = None) -> None:
        """Before a replay into an empty table: its rows' positions start at n, so n older rows
        can be put above the live rows that arrive meanwhile; the store sets slots aside for the
        `expected` rows (default n) the replay brings, filled in place as batches come."""
        store = self.store
        if len(store) == 0 and not self._held and n > 0:
            store.reserve_below(n, expected)
            self._announced_end = self._repeats_end = self._matched_lo = store.end
            self.search_index.catch_up(0)  # the index starts where the store does
            self.taking_history = True

    def prepend_history(self, batches: list[dict]) -> list[dict]:
        """Replayed history, each batch older than every row held, above the rows shown (the
        rows shown keep their places: a view scrolled up holds still). Returns the rows the
        store took, as batches (the newest part of a batch when the table filled up)."""
        taken = []
        store = self.store
        if not self.taking_history:
            return taken  # cleared meanwhile: the user asked for an empty table
        for b in batches:
            try:
                k = store.prepend_columns(b)
            except Exception as exc:  # noqa: BLE001 - one bad batch must not stop the others
                log.exception("a batch of history could not be added to the table")
                self.rejected_rows += len(b.get("ts", ())) if isinstance(b, dict) else 0
                self.rows_rejected.emit(self.rejected_rows, f"{type(exc).__name__}: {exc}")
                continue
            if not k:
                continue
            n = len(b["ts"])
            taken.append(b if k == n else {name: col[n - k :] for name, col in b.items()})
            lo, hi = store.base, store.base + k
            self.repeats[0:0] = self._repeat_pass(lo, hi, {})
            self.history_rows_shown += k  # not in rows_shown_total: the rows that arrive now (msg/s)
            skip = len(self.older_order)
            if self.visible is None:
                self.beginInsertRows(QModelIndex(), skip, skip + k - 1)
                self._count += k
                self.endInsertRows()
                continue
            self._count += k
            if self.query is None:
                self._insert_above(self._without_duplicates(store.matching(self.filter, start=lo, stop=hi)))
            # A text search matches these rows once they are indexed (_index_below).
        if taken:
            now = time.monotonic()
            if self.first_row_at is None:
                self.first_row_at = now
            self.last_row_at = now
            if not self._below_timer.isActive():
                self._below_timer.start(0)
            self.rows_changed.emit()
        return taken

    def _insert_above(self, positions) -> None:
        """Rows older than every row the filtered view shows, above them (below the rows found
        in the history on disk)."""
        if not len(positions) or self.visible is None:
            return
        if not isinstance(positions, array):
            out = array("q")
            out.frombytes(np.ascontiguousarray(positions, dtype=np.int64).tobytes())
            positions = out
        skip = len(self.older_order)
        self.beginInsertRows(QModelIndex(), skip, skip + len(positions) - 1)
        positions.extend(self.visible)
        self.visible = positions
        self.endInsertRows()

    def _index_below(self) -> None:
        """One slice of indexing the prepended rows; a text search shows their matches (at most
        every SEARCH_PUBLISH seconds, and when the index is complete)."""
        index = self.search_index
        index.catch_up_below(INDEX_SLICE)
        more = index.behind_below > 0
        now = time.monotonic()
        if self.query is not None and (not more or now - self._below_published >= SEARCH_PUBLISH):
            self._below_published = now
            self._match_below()  # starts the timer again while matches below remain
        if more and not self._below_timer.isActive():
            self._below_timer.start(0)

    def _match_below(self) -> None:
        """Shows the matches of the search among the rows indexed below the ones it searched,
        the newest piece first, for at most SEARCH_SLICE (then again from a timer)."""
        if self.query is None or self._job is not None or self._work_timer.isActive() or self.visible is None:
            return  # a search in flight (or not started) covers what is indexed when its job starts
        index = self.search_index
        lo = max(index.start, self.store.base)
        if lo >= self._matched_lo:
            return
        tables = index.lookup(self.query)
        deadline = time.monotonic() + SEARCH_SLICE
        parts = []
        pieces = index.pieces
        i = bisect.bisect_right([p.start for p in pieces], self._matched_lo - 1) - 1
        while i >= 0 and self._matched_lo > lo:
            piece = pieces[i]
            found = search_piece(piece, self.query, tables)
            parts.append(found[(found < self._matched_lo) & (found >= lo)])
            self._matched_lo = max(piece.start, lo)
            i -= 1
            if time.monotonic() >= deadline:
                break
        if parts:
            found = np.concatenate(parts[::-1])
            self._insert_above(self._without_duplicates(self._other_conditions(found)))
            self.rows_changed.emit()
        if self._matched_lo > lo and not self._below_timer.isActive():
            self._below_timer.start(0)  # the rest in the next slices (_index_below matches on)

    @property
    def history_behind(self) -> int:
        """Prepended rows not searchable yet, and (with a search shown) not yet searched."""
        index = self.search_index
        behind = index.behind_below
        if self.query is not None and self.visible is not None:
            behind += max(0, self._matched_lo - max(index.start, self.store.base))
        return behind

    def history_complete(self) -> None:
        """The replay is over: counts the platform-level duplicates once more over every row in
        order (a batch was counted on its own as it came), in slices; the result replaces the
        first count when the pass reaches the newest row."""
        self.store.end_replay()  # no more slots set aside for older rows
        self._recount = [self.store.base, {}, array("q")]
        self._recount_timer.start(0)

    def _recount_step(self) -> None:
        if self._recount is None:
            return
        store = self.store
        pos, recent, found = self._recount
        if pos < store.base:  # trimmed meanwhile
            pos = store.base
            cut = bisect.bisect_left(found, pos)
            del found[:cut]
        deadline = time.monotonic() + SEARCH_SLICE
        while pos < self._repeats_end and time.monotonic() < deadline:
            hi = min(self._repeats_end, pos + 8192)
            found.extend(self._repeat_pass(pos, hi, recent))
            pos = hi
        if pos < self._repeats_end:
            self._recount[0] = pos
            self._recount_timer.start(0)
            return
        self._recount = None
        del found[: bisect.bisect_left(found, store.base)]  # rows trimmed between slices
        changed = found != self.repeats[bisect.bisect_left(self.repeats, store.base) :]
        self.repeats, self._recent = found, recent
        self._duplicates = None
        if changed and self.hide_duplicates and self.older_order:
            self.refilter_needed.emit()  # the rows found on disk: searched again by the owner
        elif changed and self.hide_duplicates:
            self.set_filter(self.filter, regex=self.query.regex if self.query else False)
        elif changed and self.rowCount():
            self.dataChanged.emit(self.index(0, _KIND_COL), self.index(self.rowCount() - 1, _KIND_COL))  # "· again"
        self.rows_changed.emit()

    def _announce_soon(self) -> None:
        # Always from the timer, never inside ingest: the repaint that follows an insert then
        # does not add to the ingest's time in one turn of the GUI loop.
        if not self._announce_timer.isActive():
            wait = self._last_announce + self.announce_interval - time.monotonic()
            self._announce_timer.start(max(1, int(wait * 1000)))

    def announce(self) -> None:
        """Shows the rows appended since the last announce: one insert and at most one trim.

        Every insert makes Qt lay out and repaint the whole view (~15-30 ms for this table): under
        a flood that happens at most every announce_interval, not for every batch."""
        self._announce_timer.stop()
        self._last_announce = time.monotonic()
        store = self.store
        old_end = max(self._announced_end, store.base)
        added = store.end - old_end
        if added <= 0:
            return
        self._announced_end = store.end
        self._find_repeats()
        self._keep_index_up()
        now = time.monotonic()
        if self.first_row_at is None:
            self.first_row_at = now
        self.last_row_at = now
        self.rows_shown_total += added
        first = self.rowCount()
        if self.visible is None:
            self.beginInsertRows(QModelIndex(), first, first + added - 1)
            self._count += added
            self.endInsertRows()
        else:
            new = self._matching_new(old_end, store.end)
            if len(new):
                self.beginInsertRows(QModelIndex(), first, first + len(new) - 1)
                self.visible.extend(new)
                self.endInsertRows()
        self._trim()
        self.rows_changed.emit()

    def _trim(self) -> None:
        store = self.store
        excess = store.excess()
        if not excess:
            return
        new_base = store.base + excess
        self._decoded_cache.clear()
        cut_repeats = bisect.bisect_left(self.repeats, new_base)
        if cut_repeats:
            del self.repeats[:cut_repeats]
        if self.visible is None:
            skip = len(self.older_order)
            self.beginRemoveRows(QModelIndex(), skip, skip + excess - 1)
            store.trim()
            self._count -= excess
            self.endRemoveRows()
            return
        cut = bisect.bisect_left(self.visible, new_base)
        if cut:
            skip = len(self.older_order)
            self.beginRemoveRows(QModelIndex(), skip, skip + cut - 1)
            store.trim()
            del self.visible[:cut]
            self.endRemoveRows()
        else:
            store.trim()
        self._count = len(store)

    def set_filter(self, flt: Filter, regex: bool = False, hide_duplicates: bool | None = None) -> None:
        """Shows the rows that pass flt (its text as a regular expression when regex). A text is
        searched in slices (search_state tells when it is done); an invalid regular expression
        raises app.search.QueryError before anything changes."""
        query = Query(flt.text, regex) if flt.text else None
        self._stop_search()
        if hide_duplicates is not None:
            self.hide_duplicates = hide_duplicates
        self.beginResetModel()
        self._count = len(self.store)
        self.rows_shown_total += self.store.end - max(self._announced_end, self.store.base)
        self._announced_end = self.store.end
        self._find_repeats()
        self._forget_older()
        self.filter = flt
        self.query = query
        self.search_seconds = None
        done = False
        if query is not None:
            self.visible = array("q")
            self._job_end = self.store.end
            self.search_started_at = time.monotonic()
            self._published_at = self.search_started_at
            # The first slice before the view repaints: a short search costs one repaint, not two.
            done = self._advance(FIRST_SLICE)
            if self._pending:
                self.visible = self._older_positions() + self.visible
            if not done:
                self._work_timer.start(0)
        elif flt.is_empty and not self.hide_duplicates:
            self.visible = None
        else:
            self.visible = self._without_duplicates(self.store.matching(flt))
        self._decoded_cache.clear()
        self.endResetModel()
        self.rows_changed.emit()
        if query is not None and done:
            self._finish_search()
        elif query is not None:
            self.search_state.emit(True, 0.0)

    def _forget_older(self) -> None:
        self.older.clear()
        del self.older_order[:]

    def add_history_rows(self, rows: list[tuple]) -> int:
        """Shows rows found in the history on disk (ROW_FIELDS tuples, newest first, each page
        older than the one before) above the rows shown. Returns how many."""
        from app.store import columns_from_rows

        if not rows:
            return 0
        first = self.older.end
        self.older.append_columns(columns_from_rows(list(reversed(rows))))
        added = array("q", range(first, self.older.end))
        self.beginInsertRows(QModelIndex(), 0, len(added) - 1)
        added.extend(self.older_order)
        self.older_order = added
        self.endInsertRows()
        self.rows_changed.emit()
        return len(rows)

    @property
    def history_rows(self) -> int:
        return len(self.older_order)

    @property
    def searching(self) -> bool:
        return self.query is not None and self._work_timer.isActive()

    def _stop_search(self) -> None:
        self._work_timer.stop()
        self._job = None
        self._pending = []

    def _advance(self, budget: float = SEARCH_SLICE) -> bool:
        """Search work for at most budget seconds: index what is not indexed yet, then search
        pieces newest first. True once the search is over."""
        index = self.search_index
        deadline = time.monotonic() + budget
        while time.monotonic() < deadline:
            if self._job is None:
                if index.end < self._job_end and index.behind:
                    index.catch_up(min(INDEX_SLICE, self._job_end - index.end))
                    continue
                self._job = index.search(self.query)
                self._matched_lo = index.start  # older rows (prepended later): _match_below
            job = self._job
            if job.done:
                return True
            found = job.step(self.store.base)
            found = found[found < self._job_end]
            if len(found):
                self._pending.append(found)
        return False

    def _work(self) -> None:
        """One slice of the search in flight; matches are inserted above the rows shown, at
        most every SEARCH_PUBLISH seconds (each insert repaints the view)."""
        if self.query is None:
            return
        t0 = time.monotonic()
        done = self._advance()
        if self._pending and (done or t0 - self._published_at >= SEARCH_PUBLISH):
            self._publish_older()
        if done:
            self._finish_search()
            return
        self._work_timer.start(0)
        self.search_state.emit(True, self._job.progress if self._job is not None else 0.0)

    def _finish_search(self) -> None:
        self._job = None
        self.search_seconds = time.monotonic() - self.search_started_at
        self._match_below()
        self.rows_changed.emit()
        self.search_state.emit(False, 1.0)

    def _older_positions(self) -> array:
        """The matches found since the last insert, as the view shows them (ascending)."""
        pending, self._pending = self._pending, []
        self._published_at = time.monotonic()
        found = np.concatenate(pending[::-1])
        found = found[found >= self.store.base]
        positions = self._without_duplicates(self._other_conditions(found))
        older = array("q")
        older.frombytes(np.ascontiguousarray(positions, dtype=np.int64).tobytes())
        return older

    def _publish_older(self) -> None:
        older = self._older_positions()
        if not len(older) or self.visible is None:
            return
        skip = len(self.older_order)  # below the rows from the history on disk
        self.beginInsertRows(QModelIndex(), skip, skip + len(older) - 1)
        older.extend(self.visible)
        self.visible = older
        self.endInsertRows()
        self.rows_changed.emit()

    def _other_conditions(self, positions: np.ndarray) -> np.ndarray:
        """positions (ascending) that also pass the filter's conditions besides its text."""
        flt = self.filter
        if flt.device is not None:
            keyed = self.store.device_index.get(flt.device)
            if keyed is None:
                return positions[:0]
            positions = positions[np.isin(positions, np.frombuffer(keyed, dtype=np.int64), assume_unique=True)]
        if flt.kinds or flt.f_port is not None or flt.gateway:
            store = self.store
            keep = store._row_test(Filter(kinds=flt.kinds, f_port=flt.f_port, gateway=flt.gateway))
            zero = store.zero
            positions = np.fromiter((p for p in positions.tolist() if keep(p - zero)), dtype=np.int64)
        return positions

    def _matching_new(self, lo: int, hi: int) -> array:
        """The rows lo..hi-1 (just announced) that pass the filter, as the view shows them."""
        if self.query is None:
            return self._without_duplicates(self.store.matching(self.filter, start=lo))
        index = self.search_index
        while index.behind and index.end < hi:
            index.catch_up(hi - index.end)
        tables = index.lookup(self.query)
        parts = []
        for piece in reversed(index.pieces):
            if piece.end <= lo:
                break
            found = search_piece(piece, self.query, tables)
            parts.append(found[(found >= lo) & (found < hi)])
        found = np.concatenate(parts[::-1]) if parts else np.empty(0, dtype=np.int64)
        positions = self._without_duplicates(self._other_conditions(found))
        out = array("q")
        out.frombytes(np.ascontiguousarray(positions, dtype=np.int64).tobytes())
        return out

    def _keep_index_up(self) -> None:
        """Indexes the rows just announced (a flood's backlog in slices, from the work timer)."""
        if self.query is None or not self.searching:
            self.search_index.catch_up(INDEX_SLICE)
            if self.search_index.behind and not self._work_timer.isActive():
                QTimer.singleShot(0, self._index_more)

    def _index_more(self) -> None:
        if self.search_index.behind:
            self.search_index.catch_up(INDEX_SLICE)
            if self.search_index.behind:
                QTimer.singleShot(0, self._index_more)

    # ----- duplicates
    def _find_repeats(self) -> None:
        """Marks the uplinks announced since that repeat a frame counter of one of the device's
        last REPEAT_WINDOW uplinks (a join starts the device's counters afresh)."""
        store = self.store
        lo = max(self._repeats_end, store.base)
        hi = store.end
        self._repeats_end = hi
        if hi > lo:
            self.repeats.extend(self._repeat_pass(lo, hi, self._recent))

    def _repeat_pass(self, lo: int, hi: int, recent: dict) -> array:
        """The repeats among the rows lo..hi-1, in order, after the device counters in recent
        (which it moves on); their positions, ascending."""
        store = self.store
        c = store.cols
        i0, i1 = lo - store.zero, hi - store.zero
        found = array("q")
        pos = lo
        kinds, counters_col = c["kind"][i0:i1], c["f_cnt"][i0:i1]
        euis, ids = c["dev_eui"][i0:i1], c["device_id"][i0:i1]
        for kind, fc, eui, dev in zip(kinds, counters_col, euis, ids, strict=True):
            if kind == "uplink" and fc != NONE_INT:
                key = eui or dev
                seen = recent.get(key)
                if seen is None:
                    seen = recent[key] = (deque(), set())
                order, counters = seen
                if fc in counters:
                    found.append(pos)
                else:
                    order.append(fc)
                    counters.add(fc)
                    if len(order) > REPEAT_WINDOW:
                        counters.discard(order.popleft())
            elif kind == "join":
                recent.pop(eui or dev, None)
            pos += 1
        return found

    def is_repeat(self, pos: int) -> bool:
        i = bisect.bisect_left(self.repeats, pos)
        return i < len(self.repeats) and self.repeats[i] == pos

    def duplicate_positions(self) -> np.ndarray:
        """Absolute positions (ascending) of the rows in memory delivered twice: the DUP flag or a
        platform-level repeat (computed again only when rows came or went)."""
        store = self.store
        key = (store.base, store.end, len(self.repeats))
        if self._duplicates is not None and self._duplicates[0] == key:
            return self._duplicates[1]
        found = self._duplicate_positions()
        self._duplicates = (key, found)
        return found

    def _duplicate_positions(self) -> np.ndarray:
        store = self.store
        flagged = np.flatnonzero(np.frombuffer(store.cols["dup"], dtype=np.uint8)) + store.zero
        repeats = np.frombuffer(self.repeats, dtype=np.int64) if len(self.repeats) else np.empty(0, dtype=np.int64)
        if not len(repeats):
            return flagged
        return np.union1d(flagged, repeats[repeats >= store.base])

    @property
    def duplicates_in_memory(self) -> int:
        return len(self.duplicate_positions())

    def _without_duplicates(self, positions):
        """positions (array('q') or numpy, ascending) without the duplicates when they are hidden."""
        if not self.hide_duplicates:
            return positions
        dups = self.duplicate_positions()
        if not len(dups) or not len(positions):
            return positions
        values = np.frombuffer(positions, dtype=np.int64) if isinstance(positions, array) else positions
        kept = values[~np.isin(values, dups, assume_unique=True)]
        if isinstance(positions, array):
            out = array("q")
            out.frombytes(np.ascontiguousarray(kept).tobytes())
            return out
        return kept

    def set_paused(self, paused: bool) -> None:
        self.paused = paused
        if not paused and self._held:
            held, self._held = self._held, []
            self.ingest(held)

    @property
    def held_rows(self) -> int:
        return sum(len(b.get("ts", ())) for b in self._held)

    def clear(self) -> None:
        self._stop_search()
        self.beginResetModel()
        self._forget_older()
        self.store.clear()
        self._count = 0
        self._announced_end = self.store.end
        self._repeats_end = self.store.end
        del self.repeats[:]
        self._recent.clear()
        self.search_index.catch_up(0)
        self._matched_lo = self.store.end
        self._recount = None
        self.taking_history = False
        self._decoded_cache.clear()
        self.visible = None if self.filter.is_empty and not self.hide_duplicates else array("q")
        self._held.clear()
        self.endResetModel()
        self.rows_changed.emit()


class UplinkDelegate(QStyledItemDelegate):
    """Paints a cell straight from the store: background, kind dot, text (elided only when it
    cannot fit). The style's generic item painting asks the model for ten roles and lays text out
    through QTextLayout for every cell; this does the same drawing for less (measured offscreen,
    same rows: a full repaint of the live table 12-20 ms -> ~11 ms), which is what a flood costs
    the GUI thread every time the table moves."""

    def __init__(self, model: UplinkTableModel, view: QTableView) -> None:
        super().__init__(view)
        self.model = model
        self._dots = {k: _kind_icon(c).pixmap(10, 10) for k, c in KIND_COLORS.items()}
        self._mono = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
        self._widest = {False: 0, True: 0}  # per font (proportional, mono), measured at first paint
        self._selection = view.selectionModel()
        self._alternate = view.alternatingRowColors()

    def paint(self, painter: QPainter, option, index: QModelIndex) -> None:
        model = self.model
        row, col = index.row(), index.column()
        if row >= model.rowCount():
            return
        pos = model.position(row)
        kind = model.kind_at(pos)
        rect = option.rect
        palette = option.palette
        # Plain int tests: Qt's flag enums cost microseconds a test in Python.
        selected = self._selection.isRowSelected(row)
        if selected:
            painter.fillRect(rect, palette.highlight())
        elif kind == "error":
            painter.fillRect(rect, model.error_background)
        elif row & 1 and self._alternate:
            painter.fillRect(rect, palette.alternateBase())
        x, w = rect.x() + 4, rect.width() - 8
        if col == _KIND_COL:
            dot = self._dots.get(kind)
            if dot is not None:
                painter.drawPixmap(x, rect.y() + (rect.height() - 10) // 2, dot)
            x += 16
            w -= 16
        text = model.display(pos, col)
        if not text or w <= 0:
            return
        mono = col in _MONO
        painter.setFont(self._mono if mono else option.font)
        painter.setPen(palette.color(_HIGHLIGHTED_TEXT if selected else _TEXT))
        widest = self._widest[mono] or self._measure(painter, mono)
        if len(text) * widest > w:  # might not fit: measure and elide
            text = painter.fontMetrics().elidedText(text, Qt.TextElideMode.ElideRight, w)
        painter.drawText(x, rect.y(), w, rect.height(), _RIGHT if col in _NUMERIC else _LEFT, text)

    def _measure(self, painter: QPainter, mono: bool) -> float:
        # An upper bound of a character's width (the widest common letter): a text whose length
        # times this fits surely fits; longer ones are measured and elided if they must be.
        self._widest[mono] = widest = max(1.0, painter.fontMetrics().horizontalAdvance("W"))
        return widest


class UplinkTableView(FollowingTableView):
    position_selected = Signal(object)  # absolute store position, or None
    send_downlink_requested = Signal(int)  # right-click → "Send downlink…": the row's absolute store position

    def __init__(self, model: UplinkTableModel, parent=None) -> None:
        super().__init__(model, parent)
        self.horizontalHeader().setStretchLastSection(False)
        fm = self.fontMetrics()
        mono_w = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
        from PySide6.QtGui import QFontMetrics

        mfm = QFontMetrics(mono_w)
        widths = {
            "time": fm.horizontalAdvance("00:00:00.000") + 14,
            "platform": fm.horizontalAdvance("ThingPark") + 14,
            "kind": fm.horizontalAdvance("down failed") + 34,
            "device": fm.horizontalAdvance("eui-0004a30b001c0530") + 14,
            "dev_eui": mfm.horizontalAdvance("0004A30B001C0530") + 14,
            "f_port": fm.horizontalAdvance("FPort") + 14,
            "f_cnt": fm.horizontalAdvance("000000") + 14,
            "payload": mfm.horizontalAdvance("0" * 24) + 14,
            "decoded": fm.horizontalAdvance("temperature=21.5 humidity=40 battery=3.6") + 14,
            "rssi": fm.horizontalAdvance("-120.0") + 14,
            "snr": fm.horizontalAdvance("-12.5") + 14,
            "gateway": fm.horizontalAdvance("eui-b827ebfffe000000 (+2)") + 14,
            "sf": fm.horizontalAdvance("SF12/125k") + 14,
            "frequency": fm.horizontalAdvance("868.100 MHz") + 14,
        }
        for key, w in widths.items():
            self.setColumnWidth(COL[key], w)
        model.payload_chars = 24
        self.setItemDelegate(UplinkDelegate(model, self))
        model.modelReset.connect(self._after_reset)
        self.selectionModel().currentRowChanged.connect(self._current_changed)
        self.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.customContextMenuRequested.connect(self._row_menu)

    def _row_menu(self, pos) -> None:
        """Reply: "Send downlink…" on a row opens the composer for its device (the page listens)."""
        from PySide6.QtWidgets import QMenu

        index = self.indexAt(pos)
        if not index.isValid():
            return
        position = self.model().position(index.row())
        if position < 0:  # a row found in the history on disk: not in the table's store
            return
        menu = QMenu(self)
        menu.addAction("Send downlink…", lambda: self.send_downlink_requested.emit(position))
        menu.exec(self.viewport().mapToGlobal(pos))

    def _after_reset(self) -> None:
        self.scrollToBottom()

    def _current_changed(self, current: QModelIndex, previous: QModelIndex) -> None:
        if current.isValid():
            self.position_selected.emit(self.model().position(current.row()))
        else:
            self.position_selected.emit(None)

    def selected_position(self) -> int | None:
        idx = self.currentIndex()
        return self.model().position(idx.row()) if idx.isValid() else None

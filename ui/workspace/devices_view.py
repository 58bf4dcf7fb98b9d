"""The Devices view: one live row per device seen, with loss, resets and radio quality.

`DevicesModel` shows the `DeviceStats` a `DeviceTracker` keeps (the rows are those objects, so
a repaint reads live numbers). Filtering (text over device id / DevEUI) and sorting happen in the
model itself: a proxy would compare display text and call into Python per comparison.
"""

from __future__ import annotations

import datetime as dt
import time

from PySide6.QtCore import QAbstractTableModel, QModelIndex, Qt, QTimer, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMenu,
    QPushButton,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from app.devices import DeviceStats, DeviceTracker, format_age
from ui.common.tables import configure_table

COLUMNS = (
    "Device",
    "DevEUI",
    "Platform",
    "Last seen",
    "Uplinks",
    "Loss % (missed)",
    "Resets",
    "Duplicates",
    "Best RSSI",
    "Mean RSSI",
    "Best SNR",
    "Mean SNR",
    "Last SF",
    "Last gateway",
)
HEADER_TIPS = (
    "Device id",
    "DevEUI",
    "The platform the device's events came from",
    "Time since the device was last heard from (grey after an hour)",
    "Distinct uplink frames received",
    "Uplinks lost to frame-counter gaps, as a share of those sent (the count in brackets); over 5 % in colour",
    "Frame counter restarts: a device reboot, or a rejoin",
    "Frames received again with a counter already seen",
    "Strongest RSSI of any uplink",
    "Mean RSSI over the uplinks",
    "Best SNR of any uplink",
    "Mean SNR over the uplinks",
    "Spreading factor of the latest uplink",
    "Gateway of the latest uplink (the one that heard it best)",
)
COL_DEVICE, COL_EUI, COL_PLATFORM, COL_LAST_SEEN, COL_UPLINKS, COL_LOSS = range(6)
NUMERIC_COLS = frozenset(range(COL_UPLINKS, COL_UPLINKS + 9))  # right-aligned
LOSS_WARN_PERCENT = 5.0
STALE_AFTER_S = 3600.0
WARN_COLOR = QColor("#d9480f")
STALE_COLOR = QColor(128, 128, 128)

_DISPLAY = Qt.ItemDataRole.DisplayRole
_ALIGN = Qt.ItemDataRole.TextAlignmentRole
_FORE = Qt.ItemDataRole.ForegroundRole
_TOOLTIP = Qt.ItemDataRole.ToolTipRole
_USER = Qt.ItemDataRole.UserRole
_FLAGS = Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable | Qt.ItemFlag.ItemNeverHasChildren
_NO_FLAGS = Qt.ItemFlag.NoItemFlags
_RIGHT = int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)


def _text_key(value: str | None):
    return None if value is None else value.casefold()


def _neg(value: float) -> float | None:
    return None if value != value else -value


# Sort key per column: numbers by value, text case-insensitively; None sorts last either way.
# "Last seen" sorts by age, so ascending means the most recently heard device first.
SORT_KEYS = (
    lambda s: _text_key(s.device_id),
    lambda s: _text_key(s.dev_eui),
    lambda s: _text_key(s.platform),
    lambda s: _neg(s.last_seen),
    lambda s: s.uplinks,
    lambda s: s.loss_percent,
    lambda s: s.resets,
    lambda s: s.duplicates,
    lambda s: s.best_rssi,
    lambda s: s.mean_rssi,
    lambda s: s.best_snr,
    lambda s: s.mean_snr,
    lambda s: s.last_sf,
    lambda s: _text_key(s.last_gateway),
)


def _db(value: float | None, digits: int, unit: str) -> str:
    return "" if value is None else f"{value:z.{digits}f} {unit}"


def display_text(s: DeviceStats, col: int, now: float) -> str:
    if col == COL_DEVICE:
        return s.device_id or ""
    if col == COL_EUI:
        return s.dev_eui or ""
    if col == COL_PLATFORM:
        return s.platform or ""
    if col == COL_LAST_SEEN:
        return format_age(now - s.last_seen)
    if col == COL_UPLINKS:
        return f"{s.uplinks:,}"
    if col == COL_LOSS:
        loss = s.loss_percent
        if loss is None:
            return ""
        return f"{loss:.1f} % ({s.missed:,})" if s.missed else "0.0 %"
    if col == 6:
        return f"{s.resets:,}"
    if col == 7:
        return f"{s.duplicates:,}"
    if col == 8:
        return _db(s.best_rssi, 0, "dBm")
    if col == 9:
        return _db(s.mean_rssi, 1, "dBm")
    if col == 10:
        return _db(s.best_snr, 1, "dB")
    if col == 11:
        return _db(s.mean_snr, 1, "dB")
    if col == 12:
        return "" if s.last_sf is None else f"SF{s.last_sf}"
    return s.last_gateway or ""


def _when(epoch: float) -> str:
    if epoch != epoch:
        return "?"
    return dt.datetime.fromtimestamp(epoch).strftime("%Y-%m-%d %H:%M:%S")


def tooltip_text(s: DeviceStats, col: int) -> str | None:
    if col in (COL_DEVICE, COL_EUI, COL_PLATFORM):
        lines = [
            f"Device: {s.device_id or '?'}",
            f"DevEUI: {s.dev_eui or '?'}",
            f"Application: {s.application_id or '?'}",
            f"Platform: {s.platform or '?'}",
            f"First seen: {_when(s.first_seen)}",
            f"Last seen: {_when(s.last_seen)}",
            f"Joins: {s.joins:,}   Errors: {s.errors:,}",
            f"Last fCnt: {'-' if s.last_f_cnt is None else s.last_f_cnt}"
            f"   Last FPort: {'-' if s.last_f_port is None else s.last_f_port}",
        ]
        return "\n".join(lines)
    if col == COL_LAST_SEEN:
        return _when(s.last_seen)
    if col == COL_LOSS and s.uplinks:
        return f"{s.missed:,} uplinks missed of {s.uplinks + s.missed:,} sent (fCnt gaps)"
    if col in (8, 9) and s.last_rssi is not None:
        return f"Last RSSI: {s.last_rssi:.0f} dBm"
    if col in (10, 11) and s.last_snr is not None:
        return f"Last SNR: {s.last_snr:.1f} dB"
    return None


class DevicesModel(QAbstractTableModel):
    """Rows are the tracker's live DeviceStats, filtered and sorted here.

    Feed it with `update(batch)` (tracker.update + refresh) or call `refresh(changed_keys)` after
    updating the tracker yourself; call `tick()` once a second so the ages move.
    """

    counts_changed = Signal(int, int)  # devices shown, devices seen

    def __init__(self, tracker: DeviceTracker | None = None, parent=None) -> None:
        super().__init__(parent)
        self.tracker = tracker if tracker is not None else DeviceTracker()
        self.rows: list[DeviceStats] = []  # visible rows, in display order
        self._row_of: dict[str, int] = {}  # key -> row, for the visible rows
        self._known = 0  # tracker keys taken in so far (tracker.keys(self._known) are new)
        self._generation = self.tracker.generation
        self._filter = ""  # casefolded
        self.sort_column = -1  # -1: first-seen order
        self.sort_order = Qt.SortOrder.AscendingOrder
        self._stale: set[str] = set()  # keys shown grey (not heard from for STALE_AFTER_S)
        self.clock = time.time  # replaceable in tests

    # ----- Qt model API
    def rowCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: B008, N802
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: B008, N802
        return 0 if parent.isValid() else len(COLUMNS)

    def flags(self, index: QModelIndex) -> Qt.ItemFlag:
        # The base class asks rowCount and columnCount (two calls into Python) for every cell painted.
        return _FLAGS if index.isValid() else _NO_FLAGS

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):  # noqa: N802
        if orientation == Qt.Orientation.Horizontal:
            if role == _DISPLAY:
                return COLUMNS[section]
            if role == _TOOLTIP:
                return HEADER_TIPS[section]
        return None

    def _foreground(self, s: DeviceStats, col: int, now: float):
        if col == COL_LOSS:
            loss = s.loss_percent
            if loss is not None and loss > LOSS_WARN_PERCENT:
                return WARN_COLOR
        if now - s.last_seen > STALE_AFTER_S:
            return STALE_COLOR
        return None

    def multiData(self, index: QModelIndex, span) -> None:  # noqa: N802
        """All the roles a delegate asks for in one call into Python (see ui/message_log.py)."""
        row, col = index.row(), index.column()
        if not index.isValid() or row >= len(self.rows):
            for rd in span:
                rd.clearData()
            return
        s = self.rows[row]
        now = self.clock()
        for rd in span:
            role = rd.role()
            if role == _DISPLAY:
                rd.setData(display_text(s, col, now))
            elif role == _ALIGN and col in NUMERIC_COLS:
                rd.setData(_RIGHT)
            elif role == _FORE:
                color = self._foreground(s, col, now)
                if color is None:
                    rd.clearData()
                else:
                    rd.setData(color)
            else:
                rd.clearData()

    def data(self, index: QModelIndex, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        row, col = index.row(), index.column()
        if row >= len(self.rows):
            return None
        s = self.rows[row]
        if role == _DISPLAY:
            return display_text(s, col, self.clock())
        if role == _ALIGN and col in NUMERIC_COLS:
            return _RIGHT
        if role == _FORE:
            return self._foreground(s, col, self.clock())
        if role == _TOOLTIP:
            return tooltip_text(s, col)
        if role == _USER:
            return s.key
        return None

    def sort(self, column: int, order=Qt.SortOrder.AscendingOrder) -> None:
        """Stable, by value (not text), None last in both orders; column -1: first-seen order."""
        self.sort_column = column if 0 <= column < len(COLUMNS) else -1
        self.sort_order = order
        self._apply_order(self._ordered(self.rows))

    # ----- lookups
    def key_at(self, row: int) -> str | None:
        return self.rows[row].key if 0 <= row < len(self.rows) else None

    def row_of(self, key: str | None) -> int | None:
        return self._row_of.get(key)

    @property
    def filter_text(self) -> str:
        return self._filter

    # ----- feeding
    def update(self, batch: dict) -> set[str]:
        """Takes a column batch into the tracker and shows the result; returns the changed keys."""
        changed = self.tracker.update(batch)
        self.refresh(changed)
        return changed

    def refresh(self, changed_keys) -> None:
        """Shows what the tracker changed: one insert for the new devices, one dataChanged span."""
        tracker = self.tracker
        if tracker.generation != self._generation:
            self.reset()
            return
        new_keys = tracker.keys(self._known)
        self._known += len(new_keys)
        old_count = len(self.rows)
        if changed_keys and old_count:
            row_of = self._row_of
            rows = [r for r in map(row_of.get, changed_keys) if r is not None]
            if rows:
                self.dataChanged.emit(self.index(min(rows), 0), self.index(max(rows), len(COLUMNS) - 1))
        if new_keys:
            stats = tracker.stats
            new = [s for s in map(stats, new_keys) if self._matches(s)]
            if new:
                # New devices go to the bottom; a sorted view puts them in place on the next tick().
                self.beginInsertRows(QModelIndex(), old_count, old_count + len(new) - 1)
                self.rows.extend(new)
                for row, s in enumerate(new, old_count):
                    self._row_of[s.key] = row
                self.endInsertRows()
            self.counts_changed.emit(len(self.rows), len(tracker))

    def tick(self) -> None:
        """Once a second: the ages move, newly stale rows turn grey, a sorted view re-sorts."""
        if not self.rows:
            return
        if self.sort_column >= 0:
            self._apply_order(self._ordered(self.rows))
        last = len(self.rows) - 1
        self.dataChanged.emit(self.index(0, COL_LAST_SEEN), self.index(last, COL_LAST_SEEN), [_DISPLAY])
        cutoff = self.clock() - STALE_AFTER_S
        stale = {s.key for s in self.rows if s.last_seen < cutoff}
        flipped = stale ^ self._stale
        self._stale = stale
        if flipped:
            rows = [self._row_of[k] for k in flipped if k in self._row_of]
            if rows:
                self.dataChanged.emit(self.index(min(rows), 0), self.index(max(rows), len(COLUMNS) - 1))

    def set_filter(self, text: str) -> None:
        needle = text.strip().casefold()
        if needle != self._filter:
            self._filter = needle
            self.reset()

    def reset(self) -> None:
        """Rebuilds the rows from the tracker (filter changed, tracker cleared)."""
        self.beginResetModel()
        tracker = self.tracker
        self._generation = tracker.generation
        keys = tracker.keys()
        self._known = len(keys)
        rows = [s for s in map(tracker.stats, keys) if self._matches(s)]
        self.rows = self._ordered(rows)
        self._row_of = {s.key: i for i, s in enumerate(self.rows)}
        self._stale = set()
        self.endResetModel()
        self.counts_changed.emit(len(self.rows), len(tracker))

    def clear(self) -> None:
        self.tracker.clear()
        self.reset()

    # ----- internals
    def _matches(self, s: DeviceStats) -> bool:
        needle = self._filter
        if not needle:
            return True
        return any(v is not None and needle in v.casefold() for v in (s.device_id, s.dev_eui, s.key))

    def _ordered(self, rows: list[DeviceStats]) -> list[DeviceStats]:
        base = sorted(rows, key=_first_seen)
        if self.sort_column < 0:
            return base
        get = SORT_KEYS[self.sort_column]
        values = list(map(get, base))
        present = [(v, s) for v, s in zip(values, base, strict=True) if v is not None]
        missing = [s for v, s in zip(values, base, strict=True) if v is None]
        # sorted() is stable with reverse=True too: ties stay in first-seen order.
        present.sort(key=_first, reverse=self.sort_order == Qt.SortOrder.DescendingOrder)
        return [s for _, s in present] + missing

    def _apply_order(self, ordered: list[DeviceStats]) -> None:
        if ordered == self.rows:  # identity comparison first, so this is cheap
            return
        self.layoutAboutToBeChanged.emit()
        old_rows = self.rows
        self.rows = ordered
        self._row_of = {s.key: i for i, s in enumerate(ordered)}
        old = self.persistentIndexList()
        if old:
            new = []
            for idx in old:
                row = idx.row()
                key = old_rows[row].key if 0 <= row < len(old_rows) else None
                new_row = self._row_of.get(key)
                new.append(QModelIndex() if new_row is None else self.index(new_row, idx.column()))
            self.changePersistentIndexList(old, new)
        self.layoutChanged.emit()


def _first_seen(s: DeviceStats) -> int:
    return s.index


def _first(pair: tuple):
    return pair[0]


class DevicesView(QWidget):
    """The devices table with a text filter and a device count; selecting a row picks a device."""

    device_selected = Signal(object)  # device key, or None when the selection is cleared
    send_downlink_requested = Signal(str)  # right-click → "Send downlink…": the device key

    def __init__(self, source: DevicesModel | DeviceTracker | None = None, parent=None) -> None:
        """source: the model to show, or a tracker to show through a model of its own."""
        super().__init__(parent)
        if isinstance(source, DevicesModel):
            self.model = source
        else:
            self.model = DevicesModel(source, parent=self)
        self.tracker = self.model.tracker
        self.selected_key: str | None = None

        self.filter_box = QLineEdit()
        self.filter_box.setPlaceholderText("Filter by device id or DevEUI")
        self.filter_box.setClearButtonEnabled(True)
        self.filter_box.textChanged.connect(self.model.set_filter)
        self.count_label = QLabel()
        self.count_label.setObjectName("hint")
        self.show_all = QPushButton("Show all")
        self.show_all.setToolTip("Clear the device selection: every device's messages")
        self.show_all.setEnabled(False)
        self.show_all.clicked.connect(self.clear_selection)

        self.table = QTableView()
        t = self.table
        t.setModel(self.model)
        configure_table(t)
        hh = t.horizontalHeader()
        hh.setDefaultAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
        hh.setStretchLastSection(True)
        hh.setSortIndicatorClearable(True)  # a third click goes back to first-seen order
        hh.setSortIndicator(-1, Qt.SortOrder.AscendingOrder)
        t.setSortingEnabled(True)
        fm, hfm = t.fontMetrics(), hh.fontMetrics()
        for col, sample in enumerate(
            (
                "eui-0004a30b001c0530 ",
                "0004A30B001C0530 ",
                "thingpark",
                "59 min ago",
                "0,000,000",
                "100.0 % (00,000)",
                "000",
                "000",
                "-120 dBm",
                "-120.0 dBm",
                "-20.0 dB",
                "-20.0 dB",
                "SF12",
            )
        ):
            # Room for the header text and its sort arrow too.
            width = max(fm.horizontalAdvance(sample), hfm.horizontalAdvance(COLUMNS[col]) + 22)
            t.setColumnWidth(col, width + 12)

        # Two short rows rather than one long one: the view often sits in a narrow side pane.
        top = QHBoxLayout()
        top.addWidget(QLabel("<b>Devices</b>"))
        top.addWidget(self.count_label, 1)
        top.addWidget(self.show_all)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addLayout(top)
        lay.addWidget(self.filter_box)
        lay.addWidget(t, 1)
        # Right-click on the header: choose the columns.
        hh.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        hh.customContextMenuRequested.connect(self._column_menu)
        # Right-click on a device: reply to it ("Send downlink…"; the page opens the composer).
        t.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        t.customContextMenuRequested.connect(self._device_menu)

        self.timer = QTimer(self)
        self.timer.setInterval(1000)
        self.timer.timeout.connect(self.model.tick)

        t.selectionModel().selectionChanged.connect(self._on_selection)
        self.model.modelReset.connect(self._after_reset)
        self.model.counts_changed.connect(self._update_count)
        self._update_count()

    # ----- feeding (see DevicesModel)
    def refresh(self, changed_keys) -> None:
        """After tracker.update(...): shows new and changed devices (a cleared tracker: starts over)."""
        self.model.refresh(changed_keys)

    def update(self, batch: dict) -> set[str]:
        return self.model.update(batch)

    # ----- selection
    def select_key(self, key: str | None) -> None:
        """Selects a device's row (None or a hidden device: clears the selection)."""
        row = self.model.row_of(key)
        if row is None:
            self.clear_selection()
            return
        self.table.selectRow(row)
        self.table.scrollTo(self.model.index(row, 0))

    def clear_selection(self) -> None:
        self.table.clearSelection()
        self._set_selected(None)

    def _on_selection(self, *args) -> None:
        rows = self.table.selectionModel().selectedRows()
        self._set_selected(self.model.key_at(rows[0].row()) if rows else None)

    def _set_selected(self, key: str | None) -> None:
        self.show_all.setEnabled(key is not None)
        if key != self.selected_key:
            self.selected_key = key
            self.device_selected.emit(key)

    def _after_reset(self) -> None:
        # A reset drops the selection without a signal: put it back if the device is still shown.
        row = self.model.row_of(self.selected_key)
        if row is None:
            self._set_selected(None)
        else:
            self.table.selectRow(row)

    def _update_count(self, *args) -> None:
        shown, total = len(self.model.rows), len(self.model.tracker)
        if not total:
            self.count_label.setText("No devices yet")
            return
        noun = "device" if total == 1 else "devices"
        self.count_label.setText(f"{total:,} {noun}" if shown == total else f"{shown:,} of {total:,} {noun}")

    def _device_menu(self, pos) -> None:
        index = self.table.indexAt(pos)
        key = self.model.key_at(index.row()) if index.isValid() else None
        if key is None:
            return
        menu = QMenu(self)
        menu.addAction("Send downlink…", lambda: self.send_downlink_requested.emit(key))
        menu.exec(self.table.viewport().mapToGlobal(pos))

    def _column_menu(self, pos) -> None:
        menu = QMenu(self)
        for col, title in enumerate(COLUMNS):
            action = menu.addAction(title)
            action.setCheckable(True)
            action.setChecked(not self.table.isColumnHidden(col))
            action.setEnabled(col != COL_DEVICE)  # one column always stays
            action.toggled.connect(lambda on, c=col: self.table.setColumnHidden(c, not on))
        menu.exec(self.table.horizontalHeader().mapToGlobal(pos))

    # ----- the age clock runs only while the view is visible
    def showEvent(self, event) -> None:  # noqa: N802
        super().showEvent(event)
        self.model.tick()
        self.timer.start()

    def hideEvent(self, event) -> None:  # noqa: N802
        super().hideEvent(event)
        self.timer.stop()

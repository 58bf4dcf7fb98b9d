"""The raw message log: a bounded table model fed in batches, and a view that follows the tail."""

from __future__ import annotations

import datetime as dt
import time

from PySide6.QtCore import QAbstractTableModel, QModelIndex, Qt
from PySide6.QtGui import QFontDatabase

from app.mqtt.session import ReceivedMessage
from app.payload import preview
from ui.common.tables import FollowingTableView

COLUMNS = ("Time", "Topic", "QoS", "Retain", "Size", "Payload")
DEFAULT_MAX_ROWS = 200_000
_DISPLAY = Qt.ItemDataRole.DisplayRole
_ALIGN = Qt.ItemDataRole.TextAlignmentRole
_FONT = Qt.ItemDataRole.FontRole
_RIGHT = int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)


class MessageLogModel(QAbstractTableModel):
    """Rows are the ReceivedMessage objects themselves; display text is built on demand.

    Bounded: when full, the oldest rows go (one beginRemoveRows per batch).
    """

    def __init__(self, max_rows: int = DEFAULT_MAX_ROWS, parent=None) -> None:
        super().__init__(parent)
        self.max_rows = max_rows
        self.rows: list[ReceivedMessage] = []
        self.payload_as_hex = False
        # Characters of payload preview worth building: what fits the column. Text shaping is
        # most of a repaint's cost, and a repaint happens ten times a second under load.
        self.preview_chars = 120
        self.total_inserted = 0
        self.first_row_at: float | None = None  # time.monotonic() of the first inserted row
        self.last_row_at: float | None = None
        self._mono = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)

    # ----- Qt model API
    def rowCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: B008, N802
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: B008, N802
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):  # noqa: N802
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section]
        return None

    def _display(self, msg: ReceivedMessage, col: int) -> str:
        if col == 0:
            return dt.datetime.fromtimestamp(msg.received_at).strftime("%H:%M:%S.%f")[:-3]
        if col == 1:
            return msg.topic
        if col == 2:
            return str(msg.qos)
        if col == 3:
            return "R" if msg.retain else ""
        if col == 4:
            return f"{len(msg.payload):,}"
        n = self.preview_chars
        return msg.payload[: n // 3 + 1].hex(" ") if self.payload_as_hex else preview(msg.payload, n)

    def multiData(self, index: QModelIndex, span) -> None:  # noqa: N802
        """All the roles a delegate asks for, in one call into Python instead of about seven:
        under a flood this is most of what a repaint costs."""
        row, col = index.row(), index.column()
        if not index.isValid() or row >= len(self.rows):
            for rd in span:
                rd.clearData()
            return
        msg = self.rows[row]
        for rd in span:
            role = rd.role()
            if role == _DISPLAY:
                rd.setData(self._display(msg, col))
            elif role == _ALIGN and col in (2, 3, 4):
                rd.setData(_RIGHT)
            elif role == _FONT and col == 5 and self.payload_as_hex:
                rd.setData(self._mono)
            else:
                rd.clearData()

    def data(self, index: QModelIndex, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        row, col = index.row(), index.column()
        if row >= len(self.rows):
            return None
        msg = self.rows[row]
        if role == Qt.ItemDataRole.DisplayRole:
            return self._display(msg, col)
        elif role == Qt.ItemDataRole.ToolTipRole and col in (1, 5):
            return msg.topic if col == 1 else preview(msg.payload, 2000)
        elif role == Qt.ItemDataRole.TextAlignmentRole and col in (2, 3, 4):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        elif role == Qt.ItemDataRole.FontRole and col == 5 and self.payload_as_hex:
            return self._mono
        return None

    # ----- feeding
    def append_batch(self, batch: list[ReceivedMessage]) -> None:
        if not batch:
            return
        now = time.monotonic()
        if self.first_row_at is None:
            self.first_row_at = now
        self.last_row_at = now
        self.total_inserted += len(batch)
        if len(batch) > self.max_rows:
            batch = batch[-self.max_rows :]
        overflow = len(self.rows) + len(batch) - self.max_rows
        if overflow > 0:
            self.beginRemoveRows(QModelIndex(), 0, overflow - 1)
            del self.rows[:overflow]
            self.endRemoveRows()
        start = len(self.rows)
        self.beginInsertRows(QModelIndex(), start, start + len(batch) - 1)
        self.rows.extend(batch)
        self.endInsertRows()

    def clear(self) -> None:
        self.beginResetModel()
        self.rows.clear()
        self.endResetModel()

    def set_payload_as_hex(self, on: bool) -> None:
        self.payload_as_hex = on
        if self.rows:
            self.dataChanged.emit(self.index(0, 5), self.index(len(self.rows) - 1, 5))

    def set_max_rows(self, n: int) -> None:
        self.max_rows = max(1, n)
        overflow = len(self.rows) - self.max_rows
        if overflow > 0:
            self.beginRemoveRows(QModelIndex(), 0, overflow - 1)
            del self.rows[:overflow]
            self.endRemoveRows()


class MessageLogView(FollowingTableView):
    def __init__(self, model: MessageLogModel, parent=None) -> None:
        super().__init__(model, parent)
        hh = self.horizontalHeader()
        hh.setStretchLastSection(True)
        fm = self.fontMetrics()
        for col, sample in (
            (0, "00:00:00.000 "),
            (1, "v3/app@ttn/devices/eui-0000/up   "),
            (2, "QoS "),
            (3, "Retain "),
            (4, "000,000 "),
        ):
            self.setColumnWidth(col, fm.horizontalAdvance(sample) + 16)
        hh.sectionResized.connect(self._fit_preview)
        self._fit_preview()

    def _fit_preview(self, *args) -> None:
        width = max(self.columnWidth(5), self.viewport().width() - sum(self.columnWidth(c) for c in range(5)))
        self.model().preview_chars = max(16, width // max(1, self.fontMetrics().averageCharWidth()) + 4)

    def resizeEvent(self, event) -> None:  # noqa: N802
        super().resizeEvent(event)
        self._fit_preview()

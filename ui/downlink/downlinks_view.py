"""The Downlinks view: one row per downlink of the connection, and the whole life of the selected one.

Fed by SessionBridge.downlinks() when the connection opens and by its `downlink_changed` signal
for every new entry and transition (entry dicts, app/outbox.py's contract). Changes are kept in a
dict and announced to the view on a timer (at most 5 times a second, like the uplink table):
one insert for all new rows and one dataChanged for the changed ones, never a repaint per entry.

The detail pane lists every transition of the selected downlink with its time and the platform's
reason; Cancel works while the downlink waits in the outbox, Retry for one that failed, was not
acknowledged, had no news or was cancelled (app.delivery.RETRYABLE).
"""

from __future__ import annotations

import datetime as dt
import inspect

from PySide6.QtCore import QAbstractTableModel, QModelIndex, Qt, QTimer, Signal
from PySide6.QtGui import QBrush, QColor, QFontDatabase
from PySide6.QtWidgets import (
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSplitter,
    QTableView,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.payload import preview
from ui.common.tables import configure_table

ANNOUNCE_INTERVAL_MS = 200

COLUMNS = ("Created", "Device", "FPort", "Payload", "State", "Last change")
# state -> (mark, words, colour)
STATES = {
    "outbox": ("◷", "in the outbox", "#9a6700"),
    "handed-over": ("→", "handed over", "#0969da"),
    "queued": ("⋯", "queued", "#8250df"),
    "sent": ("↓", "sent", "#8250df"),
    "acknowledged": ("✓", "acknowledged", "#1a7f37"),
    "not-acknowledged": ("✗", "not acknowledged", "#bc4c00"),
    "failed": ("✗", "failed", "#cf222e"),
    "no-news": ("?", "no news", "#6e7781"),
    "cancelled": ("⊘", "cancelled", "#6e7781"),
}
RETRYABLE = frozenset({"failed", "no-news", "not-acknowledged", "cancelled"})


def state_text(state: str | None) -> str:
    mark, words, _ = STATES.get(state or "", ("•", state or "?", None))
    return f"{mark} {words}"


def local_time(iso: str | None, precise: bool = False) -> str:
    """Local time of day (with milliseconds when precise); the date too when it is not today."""
    if not iso:
        return ""
    try:
        when = dt.datetime.fromisoformat(str(iso).replace("Z", "+00:00")).astimezone()
    except ValueError:
        return str(iso)
    text = when.strftime("%H:%M:%S.%f")[:-3] if precise else when.strftime("%H:%M:%S")
    return text if when.date() == dt.date.today() else f"{when:%Y-%m-%d} {text}"


def payload_text(entry: dict) -> str:
    hex_text = entry.get("payload_hex")
    if hex_text:
        try:
            return preview(bytes.fromhex(hex_text), 48)
        except ValueError:
            return hex_text
    size = entry.get("size")
    return f"({size} bytes of body)" if size is not None else ""


def last_change(entry: dict) -> str | None:
    transitions = entry.get("transitions") or []
    return transitions[-1][1] if transitions else entry.get("created_at")


class DownlinksModel(QAbstractTableModel):
    counts_changed = Signal()

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.rows: list[dict] = []
        self.row_of_id: dict[str, int] = {}
        self._pending: dict[str, dict] = {}
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(ANNOUNCE_INTERVAL_MS)
        self._timer.timeout.connect(self.announce)
        self._mono = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)

    def rowCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: B008, N802
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: B008, N802
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):  # noqa: N802
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section]
        return None

    def data(self, index: QModelIndex, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        entry = self.rows[index.row()]
        col = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            return self.display(entry, col)
        if role == Qt.ItemDataRole.ForegroundRole and col == 4:
            color = STATES.get(entry.get("state"), (None, None, None))[2]
            return QBrush(QColor(color)) if color else None
        if role == Qt.ItemDataRole.FontRole and col == 3:
            return self._mono
        if role == Qt.ItemDataRole.ToolTipRole and col == 4 and entry.get("reason"):
            return entry["reason"]
        if role == Qt.ItemDataRole.TextAlignmentRole and col == 2:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    @staticmethod
    def display(entry: dict, col: int) -> str:
        if col == 0:
            return local_time(entry.get("created_at"))
        if col == 1:
            return entry.get("device_id") or entry.get("dev_eui") or entry.get("topic") or ""
        if col == 2:
            f_port = entry.get("f_port")
            return "" if f_port is None else str(f_port)
        if col == 3:
            return payload_text(entry)
        if col == 4:
            return state_text(entry.get("state"))
        return local_time(last_change(entry))

    # ----- feeding
    def load(self, entries: list[dict]) -> None:
        """Every entry of the connection (downlinks(), oldest first): the table starts over,
        keeping any change that arrived meanwhile and is newer than the list read."""
        known = {e["id"]: e for e in self.rows}
        known.update(self._pending)
        self._pending.clear()
        self.beginResetModel()
        self.rows = [_newer(known.get(e["id"]), dict(e)) for e in entries if e.get("id")]
        self.row_of_id = {e["id"]: i for i, e in enumerate(self.rows)}
        self.endResetModel()
        self.counts_changed.emit()

    def upsert(self, entry: dict) -> None:
        """A new entry or a transition: shown at the next announce."""
        ident = entry.get("id")
        if not ident:
            return
        self._pending[ident] = _newer(self._pending.get(ident), dict(entry))
        if not self._timer.isActive():
            self._timer.start()

    def announce(self) -> None:
        self._timer.stop()
        if not self._pending:
            return
        pending, self._pending = self._pending, {}
        new = []
        changed_rows = []
        for ident, entry in pending.items():
            row = self.row_of_id.get(ident)
            if row is None:
                new.append(entry)
            else:
                self.rows[row] = _newer(self.rows[row], entry)
                changed_rows.append(row)
        if changed_rows:
            self.dataChanged.emit(self.index(min(changed_rows), 0), self.index(max(changed_rows), len(COLUMNS) - 1))
        if new:
            start = len(self.rows)
            self.beginInsertRows(QModelIndex(), start, start + len(new) - 1)
            for entry in new:
                self.row_of_id[entry["id"]] = len(self.rows)
                self.rows.append(entry)
            self.endInsertRows()
        self.counts_changed.emit()

    def entry(self, row: int) -> dict | None:
        return self.rows[row] if 0 <= row < len(self.rows) else None


def _newer(known: dict | None, entry: dict) -> dict:
    """Of two copies of one downlink, the later: the one with more transitions (the engine's
    notifications, the reply to Send and a reload can reach the window in any order)."""
    if known is None:
        return entry
    return entry if len(entry.get("transitions") or ()) >= len(known.get("transitions") or ()) else known


class DownlinksView(QWidget):
    """The table, the selected downlink's transitions, and Cancel / Retry."""

    cancel_requested = Signal(str)
    retry_requested = Signal(str)
    problem = Signal(str)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.model = DownlinksModel(self)
        self.table = QTableView()
        self.table.setModel(self.model)
        configure_table(self.table)
        hh = self.table.horizontalHeader()
        hh.setDefaultAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
        hh.setStretchLastSection(True)
        fm = self.table.fontMetrics()
        samples = ("00:00:00", "eui-0004a30b001c05", "FPort", "00 00 00 00 00 00", "✗ not acknowledged")
        for col, sample in enumerate(samples):
            self.table.setColumnWidth(col, fm.horizontalAdvance(sample) + 18)
        self.count = QLabel("No downlinks yet")
        self.count.setObjectName("hint")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Take the downlink back while it waits in the outbox")
        self.retry_button = QPushButton("Retry")
        self.retry_button.setToolTip("Send it again as a new attempt")
        self.cancel_button.clicked.connect(self._cancel)
        self.retry_button.clicked.connect(self._retry)
        self.detail_title = QLabel("Select a downlink to see every step it took.")
        self.detail_title.setWordWrap(True)
        self.detail_title.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.transitions = QTreeWidget()
        self.transitions.setColumnCount(3)
        self.transitions.setHeaderLabels(("Time", "State", "What the platform said"))
        self.transitions.setRootIsDecorated(False)
        self.transitions.setAlternatingRowColors(True)
        self.transitions.header().setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        self.transitions.header().setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        self.message = QLabel()
        self.message.setWordWrap(True)
        self.message.setStyleSheet("color: #b00020;")
        self.message.hide()

        top = QHBoxLayout()
        top.addWidget(QLabel("<b>Downlinks</b>"))
        top.addWidget(self.count, 1)
        top.addWidget(self.cancel_button)
        top.addWidget(self.retry_button)
        detail = QWidget()
        dl = QVBoxLayout(detail)
        dl.setContentsMargins(0, 0, 0, 0)
        dl.addWidget(self.detail_title)
        dl.addWidget(self.transitions, 1)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(self.table)
        split.addWidget(detail)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 2)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addLayout(top)
        lay.addWidget(self.message)
        lay.addWidget(split, 1)

        self.table.selectionModel().currentRowChanged.connect(self._show_selected)
        self.model.counts_changed.connect(self._refresh)
        self.model.dataChanged.connect(self._refresh)
        self.problem.connect(self.show_problem)
        self.bridge = None
        self._spawn = None
        self._refresh()

    # ----- wiring to a connection
    def attach(self, bridge, spawn) -> None:
        """Follows a SessionBridge: its downlink_changed signal, and Cancel / Retry through it."""
        self.bridge, self._spawn = bridge, spawn
        signal = getattr(bridge, "downlink_changed", None)
        if signal is not None:
            signal.connect(self.model.upsert)

    def reload(self) -> None:
        """Every downlink the connection's outbox keeps (when a connection opens)."""
        fetch = getattr(self.bridge, "downlinks", None)
        if fetch is None:
            return

        async def go():
            try:
                result = fetch()
                if inspect.isawaitable(result):
                    result = await result
            except Exception as exc:
                self.show_problem(f"The downlinks of this connection could not be read: {exc}")
                return
            self.model.load(list(result or []))

        self._run(go())

    def _run(self, coro) -> None:
        if self._spawn is not None:
            self._spawn(coro)
        else:
            import asyncio

            asyncio.ensure_future(coro)

    def _call(self, name: str, ident: str) -> None:
        method = getattr(self.bridge, name, None)
        if method is None:
            self.show_problem("This connection cannot change its downlinks (its engine is not running).")
            return

        async def go():
            try:
                result = method(ident)
                if inspect.isawaitable(result):
                    result = await result
            except Exception as exc:
                self.show_problem(str(exc) or f"That did not work ({type(exc).__name__}).")
                return
            if isinstance(result, dict):
                self.model.upsert(result)
            self.show_problem("")

        self._run(go())

    # ----- selection and buttons
    def selected_entry(self) -> dict | None:
        index = self.table.currentIndex()
        return self.model.entry(index.row()) if index.isValid() else None

    def _cancel(self) -> None:
        entry = self.selected_entry()
        if entry is not None:
            self.cancel_requested.emit(entry["id"])
            if self.bridge is not None:
                self._call("cancel_downlink", entry["id"])

    def _retry(self) -> None:
        entry = self.selected_entry()
        if entry is not None:
            self.retry_requested.emit(entry["id"])
            if self.bridge is not None:
                self._call("retry_downlink", entry["id"])

    def show_problem(self, text: str) -> None:
        self.message.setText(text)
        self.message.setVisible(bool(text))

    def _refresh(self, *args) -> None:
        n = len(self.model.rows)
        if not n:
            self.count.setText(
                "No downlinks yet: send one with “Send downlink…”, or right-click an uplink or a device."
            )
        else:
            waiting = sum(1 for e in self.model.rows if e.get("state") == "outbox")
            text = f"{n:,} downlink{'s' if n != 1 else ''}"
            self.count.setText(text + (f" · {waiting:,} waiting in the outbox" if waiting else ""))
        self._show_selected()

    def _show_selected(self, *args) -> None:
        entry = self.selected_entry()
        state = entry.get("state") if entry else None
        self.cancel_button.setEnabled(bool(entry) and entry.get("waiting", state == "outbox"))
        self.retry_button.setEnabled(bool(entry) and entry.get("retryable", state in RETRYABLE))
        self.transitions.clear()
        if entry is None:
            self.detail_title.setText("Select a downlink to see every step it took.")
            return
        who = entry.get("device_id") or entry.get("dev_eui") or ""
        port = f" · FPort {entry['f_port']}" if entry.get("f_port") is not None else ""
        attempt = f" · attempt {entry['attempt']}" if (entry.get("attempt") or 1) > 1 else ""
        reason = f"<br><span style='color:#b00020'>{_escape(entry['reason'])}</span>" if entry.get("reason") else ""
        self.detail_title.setText(
            f"<b>{_escape(who)}</b>{port}{attempt} · {state_text(state)}<br>"
            f"<span style='font-family:monospace'>{_escape(entry.get('topic') or '')}</span>{reason}"
        )
        for transition in entry.get("transitions") or []:
            when, detail = (
                (transition[1] if len(transition) > 1 else None),
                (transition[2] if len(transition) > 2 else None),
            )
            item = QTreeWidgetItem([local_time(when, precise=True), state_text(transition[0]), detail or ""])
            item.setToolTip(0, str(when or ""))
            color = STATES.get(transition[0], (None, None, None))[2]
            if color:
                item.setForeground(1, QBrush(QColor(color)))
            if detail:
                item.setToolTip(2, detail)
            self.transitions.addTopLevelItem(item)


def _escape(text) -> str:
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")

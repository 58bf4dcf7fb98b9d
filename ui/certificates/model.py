"""The manager's list: one row per stored entry, with its status, name, kind, subject and expiry.

A few dozen rows that change only when the user imports, renames or deletes something, so the
model is reset from the library on `changed` (no row-by-row bookkeeping, no timer). Every cell
is precomputed at reset: painting never reads a file or the keyring.
"""

from __future__ import annotations

from PySide6.QtCore import QAbstractTableModel, QModelIndex, Qt
from PySide6.QtGui import QColor

from ui.certificates.library import CertificateLibrary, expiry_cell, status_look, status_sentence

ENTRY_ID_ROLE = Qt.ItemDataRole.UserRole
STATUS_ROLE = Qt.ItemDataRole.UserRole + 1
SORT_ROLE = Qt.ItemDataRole.UserRole + 2
COLUMNS = ("Status", "Name", "Kind", "Expires")  # the subject: in the name's tooltip and the details


class _Row:
    __slots__ = ("cells", "color", "id", "sort", "status", "subject", "tooltip")

    def __init__(self, entry) -> None:
        self.id = entry.id
        self.status = entry.status()
        mark, word, color = status_look(self.status)
        main = entry.main
        if self.status == "expiring" and main.days_left_at() is not None:
            word = f"Expires in {main.days_left_at()} d"
        self.color = QColor(color)
        self.cells = (f"{mark} {word}", entry.name, entry.kind, expiry_cell(entry))
        self.subject = main.subject
        not_after = main.not_after.timestamp() if main.not_after is not None else float("inf")
        self.sort = (_STATUS_ORDER.get(self.status, 9), entry.name.lower(), entry.kind, not_after)
        self.tooltip = status_sentence(main, self.status)


_STATUS_ORDER = {"expired": 0, "not-yet-valid": 1, "expiring": 2, "valid": 3, "key": 4, "request": 5}


class CertificateListModel(QAbstractTableModel):
    def __init__(self, library: CertificateLibrary, parent=None) -> None:
        super().__init__(parent)
        self.library = library
        self._rows: list[_Row] = []
        library.changed.connect(self.reload)
        self.reload()

    def reload(self) -> None:
        entries = sorted(self.library.entries(), key=lambda e: (e.name.lower(), e.id))
        self.beginResetModel()
        self._rows = [_Row(e) for e in entries]
        self.endResetModel()

    # ----- Qt's model interface
    def rowCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: N802, B008
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: N802, B008
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section: int, orientation, role=Qt.ItemDataRole.DisplayRole):  # noqa: N802
        if (
            orientation == Qt.Orientation.Horizontal
            and role == Qt.ItemDataRole.DisplayRole
            and 0 <= section < len(COLUMNS)
        ):
            return COLUMNS[section]
        return None

    def data(self, index: QModelIndex, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid() or not (0 <= index.row() < len(self._rows)):
            return None
        row = self._rows[index.row()]
        column = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            return row.cells[column]
        if role == Qt.ItemDataRole.ForegroundRole and column in (0, 3) and row.status not in ("key", "request"):
            return row.color
        if role == Qt.ItemDataRole.ToolTipRole:
            return row.subject or row.tooltip if column == 1 else row.tooltip
        if role == ENTRY_ID_ROLE:
            return row.id
        if role == STATUS_ROLE:
            return row.status
        if role == SORT_ROLE:
            return row.sort[column]
        return None

    # ----- lookups
    def entry_id(self, row: int) -> str | None:
        return self._rows[row].id if 0 <= row < len(self._rows) else None

    def row_of(self, entry_id: str) -> int:
        for i, row in enumerate(self._rows):
            if row.id == entry_id:
                return i
        return -1

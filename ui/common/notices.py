"""Lasting notices of a connection: a strip of sentences that stay until what they say is over.

The status bar's error line is overwritten by every state change ("connected" clears it), so a
history that is off, a disk that filled up or a certificate that is not verified would flash for
a millisecond and be gone. A notice is keyed ("history", "verification", "engine" ...): setting a
key again replaces its sentence, `resolve(key)` removes it, `clear()` empties the strip when the
window connects somewhere else. State changes never touch it.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QStyle, QToolButton, QVBoxLayout, QWidget

LEVELS = ("info", "warning", "error")
_ICON = {
    "info": QStyle.StandardPixmap.SP_MessageBoxInformation,
    "warning": QStyle.StandardPixmap.SP_MessageBoxWarning,
    "error": QStyle.StandardPixmap.SP_MessageBoxCritical,
}
_STYLE = {
    "info": "background: #ddf4ff; border: 1px solid #54aeff; color: #0a3069;",
    "warning": "background: #fff8c5; border: 1px solid #d4a72c; color: #4d2d00;",
    "error": "background: #ffebe9; border: 1px solid #ff8182; color: #82071e;",
}


class _NoticeRow(QFrame):
    dismissed = Signal(str)

    def __init__(self, key: str, parent=None) -> None:
        super().__init__(parent)
        self.key = key
        self.setObjectName("notice")
        lay = QHBoxLayout(self)
        lay.setContentsMargins(8, 3, 4, 3)
        self.mark = QLabel()
        self.text = QLabel()
        self.text.setWordWrap(True)
        self.text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.close_button = QToolButton()
        self.close_button.setText("✕")
        self.close_button.setAutoRaise(True)
        self.close_button.setToolTip("Hide this notice")
        self.close_button.clicked.connect(lambda: self.dismissed.emit(self.key))
        lay.addWidget(self.mark, 0, Qt.AlignmentFlag.AlignTop)
        lay.addWidget(self.text, 1)
        lay.addWidget(self.close_button, 0, Qt.AlignmentFlag.AlignTop)

    def show_notice(self, text: str, level: str, dismissable: bool) -> None:
        if getattr(self, "shown", None) == (text, level, dismissable):
            return  # the same again: no restyle (a repeated notice costs nothing)
        self.shown = (text, level, dismissable)
        self.level = level
        size = self.fontMetrics().height()
        self.mark.setPixmap(self.style().standardIcon(_ICON[level]).pixmap(size, size))
        self.text.setText(text)
        self.setToolTip(text)
        self.setStyleSheet(f"QFrame#notice {{ {_STYLE[level]} border-radius: 3px; }} QLabel {{ border: none; }}")
        self.close_button.setVisible(dismissable)


class NoticeBar(QWidget):
    """The strip; hidden while it holds no notice."""

    changed = Signal()

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._rows: dict[str, _NoticeRow] = {}
        self._lay = QVBoxLayout(self)
        self._lay.setContentsMargins(0, 2, 0, 2)
        self._lay.setSpacing(2)
        self.setVisible(False)

    def notify(self, key: str, text: str | None, level: str = "warning", dismissable: bool = False) -> None:
        """Shows `text` under `key` (replacing what the key said); None resolves the key."""
        if text is None:
            self.resolve(key)
            return
        if level not in LEVELS:
            raise ValueError(f"notice level {level!r}")
        row = self._rows.get(key)
        if row is None:
            row = self._rows[key] = _NoticeRow(key, self)
            row.dismissed.connect(self.resolve)
            self._lay.addWidget(row)
        row.show_notice(" ".join(str(text).split()), level, dismissable)
        self.setVisible(True)
        self.changed.emit()

    def resolve(self, key: str) -> None:
        row = self._rows.pop(key, None)
        if row is not None:
            row.setParent(None)
            row.deleteLater()
            self.setVisible(bool(self._rows))
            self.changed.emit()

    def clear(self) -> None:
        for key in list(self._rows):
            self.resolve(key)

    def text(self, key: str) -> str | None:
        row = self._rows.get(key)
        return row.text.text() if row is not None else None

    def keys(self) -> list[str]:
        return list(self._rows)

    def texts(self) -> dict[str, str]:
        return {key: row.text.text() for key, row in self._rows.items()}

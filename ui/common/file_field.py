"""A path field with a browse button (certificates, keys, platform files)."""

from __future__ import annotations

from PySide6.QtWidgets import QFileDialog, QHBoxLayout, QLineEdit, QToolButton, QWidget


class FileField(QWidget):
    def __init__(self, caption: str, filters: str, parent=None) -> None:
        super().__init__(parent)
        self.edit = QLineEdit()
        self.edit.setPlaceholderText("none")
        self.edit.setClearButtonEnabled(True)
        browse = QToolButton()
        browse.setText("…")
        browse.setToolTip(f"Choose the {caption.lower()}")
        browse.clicked.connect(lambda: self._browse(caption, filters))
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.edit)
        lay.addWidget(browse)

    def _browse(self, caption: str, filters: str) -> None:
        path, _ = QFileDialog.getOpenFileName(self, caption, self.edit.text(), filters)
        if path:
            self.edit.setText(path)

    def value(self) -> str | None:
        return self.edit.text().strip() or None

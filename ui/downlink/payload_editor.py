"""The payload editor: one text box with a format switch, its reason inline and a byte count.

The text stays as typed; the bytes are what app.payload.decode makes of it in the chosen format.
Switching the format converts the text through the bytes (app.payload.convert), so what is sent
never changes by switching; a switch that would lose something (bytes that are not UTF-8 shown as
text, bytes that are not JSON shown as JSON) or that starts from invalid input is refused, the
switch goes back, and the sentence says why. Invalid input is marked red with the reason under
it (its position, counted in characters of what was typed), and `valid` is False so the
composer keeps Send disabled.
"""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtGui import QFontDatabase
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QPlainTextEdit, QVBoxLayout, QWidget

from app.payload import FORMAT_LABELS, FORMATS, PayloadError, convert, decode

FORMAT_CHOICES = (
    ("hex", "Hex"),
    ("base64", "Base64"),
    ("text", "UTF-8 text"),
    ("json", "JSON"),
    ("bytes", "Byte array"),
)
PLACEHOLDERS = {
    "hex": "01 02 ff   (spaces, colons and 0x allowed)",
    "base64": "AQL/",
    "text": "any text, sent as UTF-8",
    "json": '{"led": true}',
    "bytes": "[1, 2, 255]",
}
REASON_STYLE = "color: #b00020;"
INVALID_STYLE = "QPlainTextEdit { border: 1px solid #cf222e; }"


class PayloadEditor(QWidget):
    changed = Signal()  # text or format changed (valid or not)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.format_box = QComboBox()
        for key, label in FORMAT_CHOICES:
            self.format_box.addItem(label, key)
        self.format_box.setToolTip("Switching converts the payload; the bytes stay the same")
        self.edit = QPlainTextEdit()
        self.edit.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.edit.setTabChangesFocus(True)
        self.edit.setMinimumHeight(70)
        self.reason = QLabel()
        self.reason.setWordWrap(True)
        self.reason.setStyleSheet(REASON_STYLE)
        self.reason.hide()
        self.count = QLabel()
        self.count.setWordWrap(True)
        top = QHBoxLayout()
        top.setContentsMargins(0, 0, 0, 0)
        label = QLabel("Payload")
        top.addWidget(label)
        top.addWidget(self.format_box)
        top.addStretch(1)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addLayout(top)
        lay.addWidget(self.edit, 1)
        lay.addWidget(self.reason)
        lay.addWidget(self.count)
        self._format = "hex"
        self._switch_problem: str | None = None
        self.edit.setPlaceholderText(PLACEHOLDERS["hex"])
        self.format_box.currentIndexChanged.connect(self._format_chosen)
        self.edit.textChanged.connect(self._text_changed)
        self._check()

    # ----- reading
    @property
    def format(self) -> str:
        return self._format

    def text(self) -> str:
        return self.edit.toPlainText()

    def payload(self) -> bytes | None:
        """The bytes, or None while the text is not valid in its format."""
        try:
            return decode(self.text(), self._format)
        except PayloadError:
            return None

    def error(self) -> str | None:
        try:
            decode(self.text(), self._format)
        except PayloadError as exc:
            return str(exc)
        return None

    @property
    def valid(self) -> bool:
        return self.error() is None

    # ----- writing
    def set_payload(self, text: str, fmt: str) -> None:
        """Shows `text` in format `fmt` as it is (a template's payload, as it was typed)."""
        if fmt not in FORMATS:
            fmt = "hex"
        self._format = fmt
        self.format_box.blockSignals(True)
        self.format_box.setCurrentIndex(self.format_box.findData(fmt))
        self.format_box.blockSignals(False)
        self.edit.setPlaceholderText(PLACEHOLDERS[fmt])
        self._switch_problem = None
        self.edit.setPlainText(text)
        self._check()
        self.changed.emit()

    def switch_to(self, fmt: str) -> bool:
        """Converts the text to another format; False (and the reason shown) when it cannot be."""
        index = self.format_box.findData(fmt)
        if index < 0:
            return False
        self.format_box.setCurrentIndex(index)
        return self._format == fmt

    def set_count_text(self, text: str, over: bool = False) -> None:
        self.count.setText(text)
        self.count.setStyleSheet(REASON_STYLE if over else "")

    # ----- reacting
    def _format_chosen(self, index: int) -> None:
        target = self.format_box.itemData(index)
        if target == self._format:
            return
        text = self.text()
        try:
            converted = convert(text, self._format, target) if text.strip() else ""
        except PayloadError as exc:
            self.format_box.blockSignals(True)
            self.format_box.setCurrentIndex(self.format_box.findData(self._format))
            self.format_box.blockSignals(False)
            self._switch_problem = f"Still {FORMAT_LABELS[self._format]}: {exc}"
            self._check()
            return
        self._format = target
        self._switch_problem = None
        self.edit.setPlaceholderText(PLACEHOLDERS[target])
        self.edit.blockSignals(True)
        self.edit.setPlainText(converted)
        self.edit.blockSignals(False)
        self._check()
        self.changed.emit()

    def _text_changed(self) -> None:
        self._switch_problem = None
        self._check()
        self.changed.emit()

    def _check(self) -> None:
        error = self.error()
        shown = error or self._switch_problem
        self.reason.setText(shown or "")
        self.reason.setVisible(bool(shown))
        self.edit.setStyleSheet(INVALID_STYLE if error else "")

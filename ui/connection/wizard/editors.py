"""One editor per profile field, by its kind: what the wizard's pages are generated from.

Each editor holds a widget and says when its value changed; the page hands the value to the
flow (app/wizard_flow.py), which decides everything else. The TLS files (ca_file, cert_file,
key_file, akenza's jwt_key_file) are a CertificatePicker (ui/certificates/picker.py): an entry
of the certificate manager ("store:<id>"), a file on disk, or none. Numbers are typed as text, so that
a value outside the platform's range is explained by its own sentence instead of being
clamped silently by a spin box.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QFontDatabase
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.platforms.base import ProfileField
from ui.certificates.picker import FIELD_ROLES, CertificatePicker
from ui.common.file_field import FileField

CERTIFICATE_FILES = "Certificates (*.pem *.crt *.cer *.der *.p12 *.pfx);;All files (*)"
KEY_FILES = "Private keys (*.pem *.key *.der *.p8 *.p12 *.pfx);;All files (*)"
_NONE = "(none)"


def _file_filter(f: ProfileField) -> str:
    return KEY_FILES if "key" in f.name else CERTIFICATE_FILES


def _shown(value) -> str:
    return "" if value is None else str(value)


class FieldEditor(QObject):
    """The widget for one field, and its row: label, editor, hint and the reason it is wrong."""

    changed = Signal(str, object)  # field name, new value

    def __init__(self, f: ProfileField, value, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.field = f
        self.name = f.name
        self._quiet = False
        self.picker: CertificatePicker | None = None
        self.label = QLabel(f.label)
        self.label.setObjectName("wizardLabel")
        self.widget = self._make(f)
        self.label.setBuddy(self.widget)
        self.hint = QLabel()
        self.hint.setObjectName("wizardHint")
        self.hint.setWordWrap(True)
        self.hint.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.error = QLabel()
        self.error.setObjectName("wizardError")
        self.error.setWordWrap(True)
        self.error.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.error.hide()
        self.box = QWidget()  # editor, hint and error stacked: the row's right side
        lay = QVBoxLayout(self.box)
        lay.setContentsMargins(0, 0, 0, 2)
        lay.setSpacing(2)
        lay.addWidget(self.widget)
        lay.addWidget(self.hint)
        lay.addWidget(self.error)
        self.set_value(value)

    # ----- building

    def _make(self, f: ProfileField) -> QWidget:
        if f.kind == "bool":
            self.check = QCheckBox(f.label)
            self.check.toggled.connect(lambda on: self._emit(bool(on)))
            self.label.setText("")
            return self.check
        if f.kind == "choice":
            self.combo = QComboBox()
            if not f.required and f.default is None:
                self.combo.addItem(_NONE, None)
            for choice in f.choices:
                self.combo.addItem(f.choice_label(choice), choice)
            self.combo.currentIndexChanged.connect(lambda i: self._emit(self.combo.itemData(i)))
            return self.combo
        if f.kind == "file" and f.name in FIELD_ROLES:
            self.picker = self.file = CertificatePicker(FIELD_ROLES[f.name], caption=f.label)
            self.file.edit.setPlaceholderText(f.placeholder or "the file's path: type it or choose it with …")
            self.picker.changed.connect(lambda value: self._emit(value or ""))
            return self.picker
        if f.kind == "file":
            self.file = FileField(f.label, _file_filter(f))
            self.file.edit.setPlaceholderText(f.placeholder or "none: choose a file with …")
            self.file.edit.textChanged.connect(lambda text: self._emit(text))
            return self.file
        if f.kind == "textarea":
            self.area = QPlainTextEdit()
            self.area.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
            self.area.setPlaceholderText(f.placeholder)
            self.area.setMinimumHeight(70)
            self.area.setMaximumHeight(110)
            self.area.textChanged.connect(lambda: self._emit(self.area.toPlainText()))
            return self.area
        self.line = QLineEdit()
        self.line.textChanged.connect(lambda text: self._emit(text))
        if f.kind != "secret":
            return self.line
        self.line.setEchoMode(QLineEdit.EchoMode.Password)
        show = QToolButton()
        show.setText("Show")
        show.setCheckable(True)
        show.setToolTip(f"Show the {f.label.lower()} as you type it")
        show.toggled.connect(
            lambda on: self.line.setEchoMode(QLineEdit.EchoMode.Normal if on else QLineEdit.EchoMode.Password)
        )
        self.show_button = show
        holder = QWidget()
        row = QHBoxLayout(holder)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.line, 1)
        row.addWidget(show)
        return holder

    def _emit(self, value) -> None:
        if not self._quiet:
            self.changed.emit(self.name, value)

    # ----- value

    def value(self):
        kind = self.field.kind
        if kind == "bool":
            return self.check.isChecked()
        if kind == "choice":
            return self.combo.currentData()
        if kind == "file" and self.picker is not None:
            return self.picker.value() or ""
        if kind == "file":
            return self.file.edit.text()
        if kind == "textarea":
            return self.area.toPlainText()
        return self.line.text()

    def set_value(self, value) -> None:
        """Shows the value without reporting it as a change."""
        self._quiet = True
        try:
            kind = self.field.kind
            if kind == "bool":
                self.check.setChecked(bool(value))
            elif kind == "choice":
                index = self.combo.findData(value)
                if index < 0 and value not in (None, ""):
                    self.combo.addItem(str(value), value)  # a stored value the field no longer lists
                    index = self.combo.count() - 1
                self.combo.setCurrentIndex(max(index, 0))
            elif kind == "file" and self.picker is not None:
                self.picker.set_value(value)
            elif kind == "file":
                if self.file.edit.text() != _shown(value):
                    self.file.edit.setText(_shown(value))
            elif kind == "textarea":
                if self.area.toPlainText() != _shown(value):
                    self.area.setPlainText(_shown(value))
            elif self.line.text() != _shown(value):
                self.line.setText(_shown(value))
        finally:
            self._quiet = False

    # ----- state from the flow

    def set_placeholder(self, text: str) -> None:
        if self.field.kind in ("text", "secret", "int", "float"):
            self.line.setPlaceholderText(text)

    def set_hint(self, text: str) -> None:
        self.hint.setText(text)
        self.hint.setVisible(bool(text))
        self.widget.setToolTip(text)

    def set_locked(self, sentence: str | None, hint: str) -> None:
        self.widget.setEnabled(sentence is None)
        self.set_hint(sentence if sentence else hint)

    def set_problem(self, sentence: str | None) -> None:
        self.error.setText(sentence or "")
        self.error.setVisible(bool(sentence))

"""A platform's connection form, generated from its profile fields (app/platforms/*.fields)."""

from __future__ import annotations

from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QScrollArea,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from app.mqtt.config import ConfigError, ConnectionConfig
from app.platforms.base import Platform, ProfileField
from ui.connection.connection_bar import FileField

_INT32 = 2**31 - 1


def field_widget(f: ProfileField, value):
    """An editor for one field, and a function that reads it back."""
    value = f.default if value is None else value
    tip = f.help
    if f.kind == "bool":
        w = QCheckBox(f.label)
        w.setChecked(bool(value))
        w.setToolTip(tip)
        return w, w.isChecked
    if f.kind == "choice":
        w = QComboBox()
        w.addItems([str(c) for c in f.choices])
        if value is not None:
            w.setCurrentText(str(value))
        w.setToolTip(tip)
        return w, w.currentText
    if f.kind == "int" and (f.maximum is None or f.maximum <= _INT32) and (f.minimum is None or f.minimum >= -_INT32):
        w = QSpinBox()
        w.setRange(
            int(f.minimum if f.minimum is not None else -_INT32), int(f.maximum if f.maximum is not None else _INT32)
        )
        w.setValue(int(value) if value not in (None, "") else int(f.minimum or 0))
        w.setToolTip(tip)
        return w, w.value
    if f.kind == "float":
        w = QDoubleSpinBox()
        w.setDecimals(3)
        w.setRange(f.minimum if f.minimum is not None else -1e12, f.maximum if f.maximum is not None else 1e12)
        w.setValue(float(value) if value not in (None, "") else float(f.minimum or 0))
        w.setToolTip(tip)
        return w, w.value
    if f.kind == "file":
        w = FileField(f.label, "All files (*)")
        w.edit.setText(str(value or ""))
        w.setToolTip(tip)
        return w, lambda: w.value() or ""
    if f.kind == "textarea":
        w = QPlainTextEdit(str(value or ""))
        w.setMaximumHeight(90)
        w.setToolTip(tip)
        return w, w.toPlainText
    w = QLineEdit(str(value) if value is not None else "")
    if f.kind == "secret":
        w.setEchoMode(QLineEdit.EchoMode.Password)
    w.setPlaceholderText(f.placeholder or ("required" if f.required else ""))
    w.setToolTip(tip)
    return w, w.text


class ProfileDialog(QDialog):
    """Fill in a platform's connection; OK only when the platform accepts it."""

    def __init__(self, platform: Platform, profile: dict | None = None, parent=None) -> None:
        super().__init__(parent)
        self.platform = platform
        self.setWindowTitle(f"Connect to {platform.label}")
        self.setMinimumWidth(560)
        self.profile: dict = {}
        self.config: ConnectionConfig | None = None
        self._readers = {}
        profile = profile or {}
        intro = QLabel(platform.description or f"Connection settings for {platform.label}.")
        intro.setWordWrap(True)
        basic = QFormLayout()
        advanced_box = QGroupBox("Advanced")
        advanced_box.setCheckable(True)
        advanced_box.setChecked(False)
        advanced = QFormLayout(advanced_box)
        advanced_inner = QWidget()
        advanced_inner.setLayout(advanced)
        box_lay = QVBoxLayout()
        box_lay.addWidget(advanced_inner)
        advanced_box.setLayout(box_lay)
        advanced_box.toggled.connect(advanced_inner.setVisible)
        advanced_inner.setVisible(False)
        for f in platform.fields:
            w, read = field_widget(f, profile.get(f.name))
            self._readers[f.name] = read
            form = advanced if f.advanced else basic
            if f.kind == "bool":
                form.addRow("", w)
            else:
                label = QLabel(f.label + (" *" if f.required else ""))
                label.setToolTip(f.help)
                form.addRow(label, w)
            if f.help and not f.advanced and f.kind != "bool":
                hint = QLabel(f.help)
                hint.setObjectName("hint")
                hint.setWordWrap(True)
                form.addRow("", hint)
        self.error = QLabel()
        self.error.setObjectName("warning")
        self.error.setWordWrap(True)
        self.error.hide()
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Connect")
        buttons.accepted.connect(self._accept)
        buttons.rejected.connect(self.reject)
        body = QWidget()
        body_lay = QVBoxLayout(body)
        body_lay.addWidget(intro)
        body_lay.addLayout(basic)
        body_lay.addWidget(advanced_box)
        body_lay.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(body)
        lay = QVBoxLayout(self)
        lay.addWidget(scroll, 1)
        lay.addWidget(self.error)
        lay.addWidget(buttons)
        self.resize(620, 640)

    def values(self) -> dict:
        out = {}
        for name, read in self._readers.items():
            v = read()
            out[name] = v.strip() if isinstance(v, str) and self.platform.field(name).kind != "textarea" else v
        return out

    def _accept(self) -> None:
        try:
            profile = self.platform.validate(self.values())
            config = self.platform.connection(profile)
        except (ConfigError, ValueError) as exc:
            self.error.setText(str(exc))
            self.error.show()
            return
        self.profile, self.config = profile, config
        self.accept()

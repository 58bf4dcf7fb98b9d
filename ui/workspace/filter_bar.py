"""Filter and search over the uplink table: device, kind, FPort, gateway, free text (or a regular
expression: the ".*" button), "Hide duplicates" with the count of rows it hides, and "All history"
(the search also reads the connection's history on disk)."""

from __future__ import annotations

from PySide6.QtCore import QTimer, Signal
from PySide6.QtGui import QAction, QIntValidator
from PySide6.QtWidgets import QCheckBox, QComboBox, QHBoxLayout, QLabel, QLineEdit, QMenu, QToolButton, QWidget

from app.events import KINDS
from app.store import Filter
from ui.common.labels import KIND_LABELS


class FilterBar(QWidget):
    filter_changed = Signal(object)  # Filter

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.device = QComboBox()
        self.device.setEditable(True)
        self.device.setMinimumWidth(120)
        self.device.lineEdit().setPlaceholderText("any device (DevEUI or id)")
        self.device.lineEdit().setClearButtonEnabled(True)
        self.device.setToolTip("Show one device: its DevEUI, or its device id when it has none")
        self.kinds_button = QToolButton()
        self.kinds_button.setText("All kinds")
        self.kinds_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        menu = QMenu(self.kinds_button)
        self.kind_actions: dict[str, QAction] = {}
        for kind in KINDS:
            act = menu.addAction(KIND_LABELS.get(kind, kind))
            act.setCheckable(True)
            act.toggled.connect(self._kinds_toggled)
            self.kind_actions[kind] = act
        self.kinds_button.setMenu(menu)
        self.f_port = QLineEdit()
        self.f_port.setPlaceholderText("FPort")
        self.f_port.setValidator(QIntValidator(0, 255))
        self.f_port.setMaximumWidth(60)
        self.f_port.setMinimumWidth(52)
        self.gateway = QLineEdit()
        self.gateway.setPlaceholderText("gateway")
        self.gateway.setMaximumWidth(150)
        self.gateway.setMinimumWidth(70)
        self.gateway.setClearButtonEnabled(True)
        self.text = QLineEdit()
        self.text.setPlaceholderText("search payload hex, decoded values, device, topic, errors…")
        self.text.setClearButtonEnabled(True)
        self.text.setMinimumWidth(120)
        self.regex = QToolButton()
        self.regex.setText(".*")
        self.regex.setCheckable(True)
        self.regex.setToolTip("A regular expression (any case; ^ and $ match at the start and end of each field)")
        self.regex.toggled.connect(lambda *_: self.apply())
        self.all_history = QCheckBox("All history")
        self.all_history.setToolTip("Also search the rows of this connection's history on disk, beyond those in memory")
        self.all_history.toggled.connect(lambda *_: self.apply())
        self.hide_duplicates = QCheckBox("Hide duplicates")
        self.hide_duplicates.setToolTip(
            "Leave out rows delivered twice: redelivered by the broker (MQTT DUP flag), or with the same device "
            "and frame counter as an earlier row. They are kept, only not shown."
        )
        self.hide_duplicates.toggled.connect(lambda *_: self.apply())
        self.hidden = QLabel()
        self.hidden.setObjectName("hint")
        self.result = QLabel()
        self.result.setObjectName("hint")
        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(250)
        self._debounce.timeout.connect(self.apply)
        for edit in (self.f_port, self.gateway, self.text, self.device.lineEdit()):
            edit.textChanged.connect(self._debounce.start)
        self.device.activated.connect(lambda *_: self.apply())

        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(QLabel("Filter"))
        lay.addWidget(self.device)
        lay.addWidget(self.kinds_button)
        lay.addWidget(self.f_port)
        lay.addWidget(self.gateway)
        lay.addWidget(self.text, 1)
        lay.addWidget(self.regex)
        lay.addWidget(self.all_history)
        lay.addWidget(self.result)
        # hide_duplicates and hidden are laid out by the page (next to the row count).

    def _kinds_toggled(self, *_):
        chosen = [KIND_LABELS.get(k, k) for k, a in self.kind_actions.items() if a.isChecked()]
        self.kinds_button.setText(", ".join(chosen) if chosen else "All kinds")
        self.apply()

    def current(self) -> Filter:
        port = self.f_port.text().strip()
        return Filter(
            device=self.device.currentText().strip() or None,
            kinds=frozenset(k for k, a in self.kind_actions.items() if a.isChecked()),
            f_port=int(port) if port else None,
            gateway=self.gateway.text().strip() or None,
            text=self.text.text().strip(),
        )

    @property
    def regex_on(self) -> bool:
        return self.regex.isChecked()

    @property
    def duplicates_hidden(self) -> bool:
        return self.hide_duplicates.isChecked()

    @property
    def history_on(self) -> bool:
        return self.all_history.isChecked()

    def show_hidden(self, count: int) -> None:
        """The rows "Hide duplicates" hides now (shown only while it is on)."""
        self.hidden.setText(f"{count:,} hidden" if self.duplicates_hidden else "")

    def apply(self) -> None:
        self.filter_changed.emit(self.current())

    def set_device(self, key: str | None) -> None:
        self.device.blockSignals(True)
        self.device.setEditText(key or "")
        self.device.blockSignals(False)
        self.apply()

    def update_devices(self, keys: list[str]) -> None:
        if self.device.count() == len(keys):
            return
        text = self.device.currentText()
        # The editable combo's line edit signals on its own: refilling the list is not an edit
        # (it used to re-filter, i.e. reset the table, whenever a new device appeared).
        edit = self.device.lineEdit()
        self.device.blockSignals(True)
        edit.blockSignals(True)
        self.device.clear()
        self.device.addItems(keys)
        self.device.setEditText(text)
        edit.blockSignals(False)
        self.device.blockSignals(False)

    def clear(self) -> None:
        for w in (self.f_port, self.gateway, self.text):
            w.blockSignals(True)
            w.clear()
            w.blockSignals(False)
        for a in self.kind_actions.values():
            a.blockSignals(True)
            a.setChecked(False)
            a.blockSignals(False)
        self.kinds_button.setText("All kinds")
        self.set_device(None)

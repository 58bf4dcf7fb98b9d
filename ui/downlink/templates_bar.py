"""The composer's templates row: choose a saved downlink of this connection, apply it, save the
form as one, or delete one. The templates live in app/downlink_templates.py (one atomic JSON
file per connection); a file that could not be read is kept aside and its sentence shown here."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QInputDialog, QLabel, QPushButton, QVBoxLayout, QWidget

from app.downlink_templates import DownlinkTemplate, TemplateError, TemplateStore


class TemplatesBar(QWidget):
    apply_requested = Signal(object)  # DownlinkTemplate
    problem = Signal(str)  # a sentence ("" clears it)

    def __init__(self, store: TemplateStore, parent=None) -> None:
        super().__init__(parent)
        self.store = store
        self.choice = QComboBox()
        self.choice.setMinimumWidth(180)
        self.choice.setPlaceholderText("No templates saved")
        self.apply_button = QPushButton("Apply")
        self.apply_button.setToolTip("Fill the form and the payload from the chosen template")
        self.save_button = QPushButton("Save as template…")
        self.delete_button = QPushButton("Delete")
        self.note = QLabel()
        self.note.setObjectName("hint")
        self.note.setWordWrap(True)
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(QLabel("Saved downlinks"))
        row.addWidget(self.choice, 1)
        row.addWidget(self.apply_button)
        row.addWidget(self.delete_button)
        row.addWidget(self.save_button)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addLayout(row)
        lay.addWidget(self.note)
        self.apply_button.clicked.connect(self._apply)
        self.delete_button.clicked.connect(self._delete)
        self.choice.activated.connect(self._apply)
        self.refresh()
        if store.load_problem:
            self.note.setText(store.load_problem)
        self.note.setVisible(bool(store.load_problem))
        # what the composer fills in before saving: a callable returning a DownlinkTemplate (name ignored)
        self.current_template = None
        self.save_button.clicked.connect(self._save_asked)

    def refresh(self, select: str | None = None) -> None:
        self.choice.blockSignals(True)
        self.choice.clear()
        for name in self.store.names():
            self.choice.addItem(name)
        if select is not None:
            self.choice.setCurrentIndex(self.choice.findText(select))
        self.choice.blockSignals(False)
        has = self.choice.count() > 0
        self.choice.setPlaceholderText("Choose a saved downlink" if has else "None saved for this connection yet")
        self.apply_button.setEnabled(has)
        self.delete_button.setEnabled(has)

    def selected(self) -> DownlinkTemplate | None:
        name = self.choice.currentText()
        return self.store.get(name) if name else None

    def _apply(self, *args) -> None:
        template = self.selected()
        if template is not None:
            self.apply_requested.emit(template)
            self._say(f"Applied {template.name}.")

    def _save_asked(self) -> None:
        current = self.choice.currentText()
        name, ok = QInputDialog.getText(self, "Save as template", "Name of the template:", text=current)
        if ok:
            self.save_named(name)

    def save_named(self, name: str) -> DownlinkTemplate | None:
        """Saves the composer's form as template `name` (replacing one of that name)."""
        if self.current_template is None:
            return None
        draft = self.current_template()
        try:
            saved = self.store.save(
                DownlinkTemplate(name, draft.fields, draft.payload_format, draft.payload_text, draft.platform)
            )
        except TemplateError as exc:
            self.problem.emit(str(exc))
            return None
        self.refresh(select=saved.name)
        self._say(f"Saved {saved.name}.")
        self.problem.emit("")
        return saved

    def _delete(self) -> None:
        template = self.selected()
        if template is None:
            return
        try:
            self.store.delete(template.name)
        except TemplateError as exc:
            self.problem.emit(str(exc))
            return
        self.refresh()
        self._say(f"Deleted {template.name}.")

    def _say(self, text: str) -> None:
        self.note.setText(text)
        self.note.setVisible(True)

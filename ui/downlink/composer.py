"""The downlink composer window: the platform's form, the payload editor, templates, the preview
of the exact message, and Send.

Every change rebuilds the message through app.compose (the platform's own encoder); the preview
shows that message, and Send hands that same message to the connection's outbox through the
`sender` the page gives (SessionBridge.send_downlink). Send stays disabled while the payload is
not valid in its format or the encoder refuses the form; the reason is shown next to the field
it is about (or under the form), as the encoder's own sentence. A refused send (a full outbox,
an engine that is gone) is shown the same way and the form keeps what was typed.
"""

from __future__ import annotations

import inspect

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from app.compose import ComposeField, Composition
from app.downlink_templates import DownlinkTemplate, TemplateStore
from ui.downlink.payload_editor import REASON_STYLE, PayloadEditor
from ui.downlink.preview import PreviewPane
from ui.downlink.templates_bar import TemplatesBar

CHOICE_LABELS = {
    "frm_payload": "frm_payload (bytes)",
    "decoded_payload": "decoded_payload (JSON for the formatter)",
    "payload_hex": "payload_hex (bytes)",
    "payload": "payload (JSON for the driver)",
    "push": "push (append)",
    "replace": "replace the queue",
    "": "(the connection's)",
}


def send_error_text(exc: BaseException) -> str:
    """One sentence for a refused send; the engine's errors are sentences already."""
    text = " ".join(str(exc).split())
    if text and text[-1:] in ".!?":
        return text
    if text:
        return f"The downlink was not queued: {text}."
    return f"The downlink was not queued ({type(exc).__name__}); try again, or reconnect."


class ComposerDialog(QDialog):
    sent = Signal(object)  # the outbox entry (dict) Send returned

    def __init__(
        self,
        platform_name: str,
        profile: dict | None,
        *,
        config=None,
        connection_key: str = "adhoc",
        title: str = "",
        sender=None,
        spawn=None,
        templates: TemplateStore | None = None,
        parent=None,
    ) -> None:
        super().__init__(parent)
        self.composition = Composition(platform_name, profile, config)
        self.sender = sender
        self._spawn = spawn
        self.setWindowTitle(f"Send downlink — {title}" if title else "Send downlink")
        self.setModal(False)
        self.resize(1180, 700)
        self.widgets: dict[str, QWidget] = {}
        self.reasons: dict[str, QLabel] = {}
        self.hints: dict[str, QLabel] = {}
        self._building = False
        self._sending = False

        head = QLabel(f"<b>{self.composition.platform.label}</b>")
        self.templates = TemplatesBar(templates or TemplateStore(connection_key))
        self.templates.current_template = self.draft_template
        self.templates.apply_requested.connect(self.apply_template)
        self.templates.problem.connect(self._template_problem)

        form_box = QWidget()
        self.grid = QGridLayout(form_box)
        self.grid.setContentsMargins(0, 0, 0, 0)
        self.grid.setColumnStretch(1, 1)
        self.grid.setHorizontalSpacing(10)
        self.grid.setVerticalSpacing(2)
        for row, f in enumerate(self.composition.fields):
            self._add_field(row, f)

        self.editor = PayloadEditor()
        self.editor.changed.connect(self._payload_changed)
        self.preview = PreviewPane()
        self.preview.config = config

        self.problem = QLabel()
        self.problem.setWordWrap(True)
        self.problem.setStyleSheet(REASON_STYLE)
        self.status = QLabel()
        self.status.setObjectName("hint")
        self.status.setWordWrap(True)
        self.send_button = QPushButton("Send")
        self.send_button.setDefault(True)
        self.send_button.setMinimumWidth(110)
        self.send_button.clicked.connect(self.send)
        close = QPushButton("Close")
        close.setAutoDefault(False)
        close.clicked.connect(self.close)

        left = QWidget()
        ll = QVBoxLayout(left)
        ll.setContentsMargins(0, 0, 6, 0)
        ll.addWidget(head)
        ll.addWidget(self.templates)
        ll.addSpacing(4)
        ll.addWidget(form_box)
        ll.addSpacing(6)
        ll.addWidget(self.editor, 1)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(left)
        split.addWidget(self.preview)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 2)
        split.setSizes([660, 500])
        bottom = QHBoxLayout()
        texts = QVBoxLayout()
        texts.addWidget(self.problem)
        texts.addWidget(self.status)
        bottom.addLayout(texts, 1)
        bottom.addWidget(self.send_button, 0, Qt.AlignmentFlag.AlignTop)
        bottom.addWidget(close, 0, Qt.AlignmentFlag.AlignTop)
        lay = QVBoxLayout(self)
        lay.addWidget(split, 1)
        lay.addLayout(bottom)
        self.rebuild()

    # ----- the form
    def _add_field(self, row: int, f: ComposeField) -> None:
        value = self.composition.values.get(f.name)
        if f.kind == "bool":
            widget = QCheckBox(f.label)
            widget.setChecked(bool(value))
            widget.toggled.connect(lambda on, n=f.name: self._changed(n, on))
            label = QLabel("")
        elif f.kind == "choice":
            widget = QComboBox()
            for choice in f.choices:
                widget.addItem(CHOICE_LABELS.get(choice, str(choice)), choice)
            widget.setCurrentIndex(max(0, widget.findData(value)))
            widget.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
            widget.currentIndexChanged.connect(lambda i, n=f.name, w=widget: self._changed(n, w.itemData(i)))
            label = QLabel(f.label)
        elif f.kind == "lines":
            widget = QPlainTextEdit()
            widget.setPlaceholderText(f.placeholder)
            widget.setTabChangesFocus(True)
            widget.setFixedHeight(widget.fontMetrics().lineSpacing() * 3 + 12)
            widget.setPlainText("" if value is None else str(value))
            widget.textChanged.connect(lambda n=f.name, w=widget: self._changed(n, w.toPlainText()))
            label = QLabel(f.label)
        else:
            widget = QLineEdit("" if value is None else str(value))
            widget.setPlaceholderText(f.placeholder)
            if f.kind == "int":
                widget.setMaximumWidth(120)
            widget.textChanged.connect(lambda text, n=f.name: self._changed(n, text))
            label = QLabel(f.label)
        widget.setToolTip(f.help)
        widget.setObjectName(f"field_{f.name}")
        hint = QLabel(f.help)
        hint.setObjectName("hint")
        hint.setWordWrap(True)
        reason = QLabel()
        reason.setWordWrap(True)
        reason.setStyleSheet(REASON_STYLE)
        reason.hide()
        box = QWidget()
        bl = QVBoxLayout(box)
        bl.setContentsMargins(0, 0, 0, 4)
        bl.setSpacing(0)
        line = QHBoxLayout()
        line.setSpacing(8)
        line.addWidget(widget, 0 if f.kind in ("int", "bool", "choice") else 1)
        if f.kind == "choice":
            line.addStretch(1)
            bl.addLayout(line)
            bl.addWidget(hint)
            line = None
        elif f.kind in ("int", "bool"):
            line.addWidget(hint, 1)
        else:
            bl.addLayout(line)
            bl.addWidget(hint)
            line = None
        if line is not None:
            bl.addLayout(line)
        bl.addWidget(reason)
        hint.setVisible(bool(f.help))
        label.setContentsMargins(0, 4, 0, 0)  # level with the text inside the widget
        self.grid.addWidget(label, row, 0, Qt.AlignmentFlag.AlignTop)
        self.grid.addWidget(box, row, 1)
        self.widgets[f.name] = widget
        self.reasons[f.name] = reason
        self.hints[f.name] = hint

    def set_field(self, name: str, value) -> None:
        """Puts a value into the form's widget (and so the composition)."""
        widget = self.widgets.get(name)
        if widget is None:
            return
        if isinstance(widget, QCheckBox):
            widget.setChecked(bool(value))
        elif isinstance(widget, QComboBox):
            index = widget.findData(value)
            if index < 0 and value is not None:
                index = widget.findData(type(widget.itemData(0))(value)) if widget.count() else -1
            if index >= 0:
                widget.setCurrentIndex(index)
        elif isinstance(widget, QPlainTextEdit):
            widget.setPlainText("" if value is None else str(value))
        else:
            widget.setText("" if value is None else str(value))
        self.composition.set(name, self._widget_value(name))

    def _widget_value(self, name: str):
        widget = self.widgets[name]
        if isinstance(widget, QCheckBox):
            return widget.isChecked()
        if isinstance(widget, QComboBox):
            return widget.currentData()
        if isinstance(widget, QPlainTextEdit):
            return widget.toPlainText()
        return widget.text()

    def _changed(self, name: str, value) -> None:
        self.composition.set(name, value)
        if self.composition.platform_name == "drogue" and name == "f_port":
            command = self.widgets["command"]
            text = str(value or "").strip()
            if not command.text() or command.text().startswith("port:"):
                command.setText(f"port:{text}" if text else "")
        if name == "clear_queue":
            self.editor.setEnabled(not value)
        self.rebuild()

    def _payload_changed(self) -> None:
        self.composition.set_payload(self.editor.text(), self.editor.format)
        self.rebuild()

    # ----- prefill and templates
    def prefill(self, *, device_id=None, dev_eui=None, f_port=None, radio=None) -> None:
        """Reply: the device, DevEUI and FPort of an uplink or a device (and its radio, for the limit)."""
        self.composition.prefill(device_id=device_id, dev_eui=dev_eui, f_port=f_port, radio=radio)
        self.status.clear()  # what it said was about the previous downlink
        for name in ("device_id", "dev_eui", "f_port", "command"):
            if name in self.widgets:
                self._set_widget_quietly(name, self.composition.values.get(name))
        self.rebuild()

    def _set_widget_quietly(self, name: str, value) -> None:
        widget = self.widgets[name]
        widget.blockSignals(True)
        try:
            self.set_field(name, value)
        finally:
            widget.blockSignals(False)

    def draft_template(self) -> DownlinkTemplate:
        return DownlinkTemplate(
            "",
            self.composition.form_values(),
            self.editor.format,
            self.editor.text(),
            self.composition.platform_name,
        )

    def apply_template(self, template: DownlinkTemplate) -> None:
        for f in self.composition.fields:
            if f.name in template.fields:
                self._set_widget_quietly(f.name, template.fields[f.name])
        self.editor.set_payload(template.payload_text, template.payload_format)
        self.composition.set_payload(self.editor.text(), self.editor.format)
        self.rebuild()

    def _template_problem(self, text: str) -> None:
        if text:
            self.status.setText(text)
            self.status.setStyleSheet(REASON_STYLE)
        else:
            self.status.setStyleSheet("")

    # ----- building and sending
    def rebuild(self) -> None:
        composed = self.composition.build()
        self.composed = composed
        state = self.composition.payload_state()
        over = state.over_hint()
        count = state.count_text() if state.data is not None else ""
        self.editor.set_count_text(count + (f"\n⚠ {over}" if over else ""), over=bool(over))
        for name, reason in self.reasons.items():
            mine = composed.error if composed.field == name else None
            reason.setText(mine or "")
            reason.setVisible(bool(mine))
        shown_below = composed.error if composed.field not in self.reasons and composed.field != "payload" else None
        if composed.field == "payload" and composed.error != state.error:
            shown_below = composed.error  # the payload is valid hex but not what the platform takes
        self.problem.setText(shown_below or "")
        self.problem.setVisible(bool(shown_below))
        self.preview.show_message(composed.message, composed.error)
        self.send_button.setEnabled(composed.message is not None and not self._sending and self.sender is not None)
        if self.sender is None:
            self.send_button.setToolTip("Open a connection to send")

    def send(self) -> None:
        composed = self.composed
        if composed.message is None or self.sender is None or self._sending:
            return
        self._sending = True
        self.send_button.setEnabled(False)
        self.status.setStyleSheet("")
        self.status.setText("Queuing…")

        async def go():
            try:
                result = self.sender(composed.message, dict(composed.meta or {}))
                if inspect.isawaitable(result):
                    result = await result
            except Exception as exc:
                self._sent_failed(send_error_text(exc))
                return
            self._sent(result)

        if self._spawn is not None:
            self._spawn(go())
        else:
            import asyncio

            asyncio.ensure_future(go())

    def _sent(self, entry) -> None:
        self._sending = False
        state = entry.get("state") if isinstance(entry, dict) else None
        ident = entry.get("id") if isinstance(entry, dict) else None
        where = f" (downlink {ident}, {state})" if ident else ""
        self.status.setStyleSheet("")
        self.status.setText(f"Queued to {self.composed.message.topic}{where}; the Downlinks tab follows it.")
        self.composition.renew()  # the next downlink gets ids of its own
        self.rebuild()
        self.sent.emit(entry)

    def _sent_failed(self, sentence: str) -> None:
        self._sending = False
        self.status.setText(sentence)
        self.status.setStyleSheet(REASON_STYLE)
        self.rebuild()

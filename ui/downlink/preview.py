"""The composer's preview: the exact topic, QoS, retain flag, properties and body that Send hands
over, and "Copy as mosquitto_pub command" for the same message (password left out).

It shows the OutgoingMessage app.compose built through the platform's encoder: nothing here
encodes anything, so the preview is what is sent."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QFontDatabase, QGuiApplication
from PySide6.QtWidgets import (
    QCheckBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
)

from app.compose import body_text, exact_body_text, mosquitto_pub_command, properties_text
from app.platforms.base import OutgoingMessage


class PreviewPane(QGroupBox):
    def __init__(self, parent=None) -> None:
        super().__init__("What will be sent", parent)
        mono = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
        self.topic = QLabel()
        self.topic.setFont(mono)
        self.topic.setWordWrap(True)
        self.topic.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.qos = QLabel()
        self.properties = QLabel()
        self.properties.setWordWrap(True)
        self.properties.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.size = QLabel()
        self.indent = QCheckBox("Indent JSON")
        self.indent.setChecked(True)
        self.indent.setToolTip("Off: the body exactly as its bytes go out (binary as hex)")
        self.indent.toggled.connect(lambda on: self.show_message(self.message))
        self.body = QPlainTextEdit()
        self.body.setReadOnly(True)
        self.body.setFont(mono)
        self.body.setLineWrapMode(QPlainTextEdit.LineWrapMode.WidgetWidth)
        self.copy_button = QPushButton("Copy as mosquitto_pub command")
        self.copy_button.setToolTip("The same topic, body, QoS and properties; the password is left out")
        self.copy_button.clicked.connect(self.copy_command)
        self.copied = QLabel()
        self.copied.setObjectName("hint")
        self.copied.setWordWrap(True)
        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.addRow("Topic", self.topic)
        form.addRow("QoS · retain", self.qos)
        form.addRow("Properties", self.properties)
        size_row = QHBoxLayout()
        size_row.addWidget(self.size, 1)
        size_row.addWidget(self.indent)
        form.addRow("Body", size_row)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(self.body, 1)
        lay.addWidget(self.copy_button)
        lay.addWidget(self.copied)
        self.message: OutgoingMessage | None = None
        self.config = None
        self.show_message(None)

    def show_message(self, message: OutgoingMessage | None, why_not: str | None = None) -> None:
        self.message = message
        self.copy_button.setEnabled(message is not None)
        self.copied.clear()
        if message is None:
            for label in (self.topic, self.qos, self.properties, self.size):
                label.setText("—")
            self.body.setPlainText(f"Nothing is sent until this is fixed:\n{why_not}" if why_not else "")
            self.body.setEnabled(False)
            return
        self.body.setEnabled(True)
        self.topic.setText(message.topic)
        self.qos.setText(f"QoS {message.qos} · {'retained' if message.retain else 'not retained'}")
        self.properties.setText(properties_text(message.properties))
        self.size.setText(f"{len(message.payload):,} bytes")
        self.body.setPlainText(
            body_text(message.payload) if self.indent.isChecked() else exact_body_text(message.payload)
        )

    def command(self) -> str | None:
        return mosquitto_pub_command(self.message, self.config) if self.message is not None else None

    def copy_command(self) -> None:
        command = self.command()
        if command is None:
            return
        QGuiApplication.clipboard().setText(command)
        if "$MQTT_PASSWORD" in command:
            self.copied.setText("Copied. The password is not in it: the command reads $MQTT_PASSWORD.")
        else:
            self.copied.setText("Copied.")

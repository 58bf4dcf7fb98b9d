"""Subscriptions and publishing."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
)

from app.mqtt.config import ConfigError, Subscription
from app.payload import PayloadError, decode


def qos_combo() -> QComboBox:
    box = QComboBox()
    for q in (0, 1, 2):
        box.addItem(f"QoS {q}", q)
    return box


class SubscriptionsPanel(QGroupBox):
    subscribe_requested = Signal(object)  # Subscription
    unsubscribe_requested = Signal(str)
    invalid = Signal(str)

    def __init__(self, parent=None) -> None:
        super().__init__("Subscriptions", parent)
        self.topic = QLineEdit("#")
        self.topic.setPlaceholderText("topic filter, e.g. sensors/+/temperature")
        self.topic.setToolTip("Topic filter: + matches one level, # the rest; $share/<group>/<filter> to share")
        self.qos = qos_combo()
        add = QPushButton("Subscribe")
        add.clicked.connect(self._add)
        self.topic.returnPressed.connect(self._add)
        self.list = QListWidget()
        self.list.setToolTip("Active subscriptions (kept across reconnects)")
        remove = QPushButton("Unsubscribe")
        remove.clicked.connect(self._remove)
        row = QHBoxLayout()
        row.addWidget(self.topic, 1)
        row.addWidget(self.qos)
        row.addWidget(add)
        lay = QVBoxLayout(self)
        lay.addLayout(row)
        lay.addWidget(self.list, 1)
        lay.addWidget(remove, 0, Qt.AlignmentFlag.AlignRight)

    def _add(self) -> None:
        try:
            sub = Subscription(self.topic.text().strip(), self.qos.currentData())
        except ConfigError as exc:
            self.invalid.emit(str(exc))
            return
        self.subscribe_requested.emit(sub)

    def _remove(self) -> None:
        item = self.list.currentItem()
        if item is not None:
            self.unsubscribe_requested.emit(item.data(Qt.ItemDataRole.UserRole))

    def show_subscriptions(self, subs: list[Subscription]) -> None:
        self.list.clear()
        for s in subs:
            item = QListWidgetItem(f"{s.topic}    (QoS {s.qos})")
            item.setData(Qt.ItemDataRole.UserRole, s.topic)
            self.list.addItem(item)


class PublishPanel(QGroupBox):
    publish_requested = Signal(str, bytes, dict)  # topic, payload, options
    invalid = Signal(str)

    def __init__(self, parent=None) -> None:
        super().__init__("Publish", parent)
        self.topic = QLineEdit()
        self.topic.setPlaceholderText("topic, e.g. devices/node-1/down")
        self.format = QComboBox()
        for label, key in (("Text", "text"), ("JSON", "json"), ("Hex", "hex"), ("Base64", "base64")):
            self.format.addItem(label, key)
        self.payload = QPlainTextEdit()
        self.payload.setPlaceholderText("payload")
        self.payload.setMaximumHeight(110)
        self.qos = qos_combo()
        self.retain = QCheckBox("Retain")
        self.content_type = QLineEdit()
        self.content_type.setPlaceholderText("content type (MQTT 5)")
        send = QPushButton("Publish")
        send.clicked.connect(self._send)
        opts = QHBoxLayout()
        opts.addWidget(self.format)
        opts.addWidget(self.qos)
        opts.addWidget(self.retain)
        opts.addStretch(1)
        opts.addWidget(send)
        form = QFormLayout(self)
        form.addRow("Topic", self.topic)
        form.addRow("Payload", self.payload)
        form.addRow("", opts)
        form.addRow("Content type", self.content_type)

    def _send(self) -> None:
        topic = self.topic.text().strip()
        if not topic:
            self.invalid.emit("Enter the topic to publish to.")
            return
        try:
            body = decode(self.payload.toPlainText(), self.format.currentData())
        except PayloadError as exc:
            self.invalid.emit(str(exc))
            return
        options = {"qos": self.qos.currentData(), "retain": self.retain.isChecked()}
        if self.content_type.text().strip():
            options["content_type"] = self.content_type.text().strip()
        self.publish_requested.emit(topic, body, options)

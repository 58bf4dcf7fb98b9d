"""Connection bar (broker, credentials, version, TLS) and the TLS settings dialog."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from app.mqtt.config import ConfigError, ConnectionConfig, MqttVersion, TlsSettings, parse_url
from ui.common.file_field import FileField

VERSION_LABELS = {
    MqttVersion.V311: "MQTT 3.1.1",
    MqttVersion.V5: "MQTT 5",
    MqttVersion.V31: "MQTT 3.1",
    MqttVersion.V311_THEN_31: "3.1.1, else 3.1",
}


class TlsDialog(QDialog):
    def __init__(self, settings: TlsSettings, parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("TLS settings")
        self.setMinimumWidth(520)
        certs = "Certificates (*.pem *.crt *.cer *.der);;All files (*)"
        self.ca = FileField("CA certificate", certs)
        self.ca.edit.setPlaceholderText("the system's trusted certificates")
        self.cert = FileField("Client certificate", "Certificates (*.pem *.crt *.cer *.der *.p12 *.pfx);;All files (*)")
        self.key = FileField("Client private key", "Keys (*.key *.pem *.der);;All files (*)")
        self.key_password = QLineEdit()
        self.key_password.setEchoMode(QLineEdit.EchoMode.Password)
        self.key_password.setPlaceholderText("only if the key or .p12 is encrypted")
        self.verify = QCheckBox("Verify the broker's certificate")
        self.verify_host = QCheckBox("Verify that the certificate matches the host name")
        self.warning = QLabel("Verification is off: anyone on the network path can read and change this traffic.")
        self.warning.setObjectName("warning")
        self.warning.setWordWrap(True)
        self.ca.edit.setText(settings.ca_file or "")
        self.cert.edit.setText(settings.cert_file or "")
        self.key.edit.setText(settings.key_file or "")
        self.key_password.setText(settings.key_password or "")
        self.verify.setChecked(settings.verify_certificate)
        self.verify_host.setChecked(settings.verify_hostname)
        self.verify.toggled.connect(self._update)
        self.verify_host.toggled.connect(self._update)
        form = QFormLayout()
        form.addRow("CA certificate", self.ca)
        form.addRow("Client certificate", self.cert)
        form.addRow("Client private key", self.key)
        form.addRow("Key password", self.key_password)
        form.addRow(self.verify)
        form.addRow(self.verify_host)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(self.warning)
        lay.addWidget(buttons)
        self._update()

    def _update(self) -> None:
        self.verify_host.setEnabled(self.verify.isChecked())
        self.warning.setVisible(not (self.verify.isChecked() and self.verify_host.isChecked()))

    def settings(self) -> TlsSettings:
        return TlsSettings(
            ca_file=self.ca.value(),
            cert_file=self.cert.value(),
            key_file=self.key.value(),
            key_password=self.key_password.text() or None,
            verify_certificate=self.verify.isChecked(),
            verify_hostname=self.verify.isChecked() and self.verify_host.isChecked(),
        )


class ConnectionBar(QWidget):
    """Raw MQTT: broker URL, credentials, MQTT version, TLS and the connect button.

    Platform connections are set up in their wizards and opened from the sidebar; this bar is
    the quick connection to any broker, whose messages the raw page shows as they are."""

    connect_requested = Signal(object)  # ConnectionConfig (raw MQTT)
    disconnect_requested = Signal()
    invalid = Signal(str)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.tls = TlsSettings()
        self.url = QLineEdit("mqtt://localhost:1883")
        self.url.setPlaceholderText("mqtt://host:1883, mqtts://host:8883, ws://host/mqtt, wss://…")
        self.url.setToolTip("Broker address: mqtt://, mqtts:// (TLS), ws:// or wss:// (websockets), with port and path")
        self.url.setMinimumWidth(260)
        self.username = QLineEdit()
        self.username.setPlaceholderText("username")
        self.password = QLineEdit()
        self.password.setPlaceholderText("password / API key")
        self.password.setEchoMode(QLineEdit.EchoMode.Password)
        self.client_id = QLineEdit()
        self.client_id.setPlaceholderText("client id (auto)")
        self.version = QComboBox()
        for v, label in VERSION_LABELS.items():
            self.version.addItem(label, v)
        self.persistent = QCheckBox("Persistent session")
        self.persistent.setToolTip("Keep subscriptions and queued QoS 1/2 messages at the broker while away")
        self.keepalive = QSpinBox()
        self.keepalive.setRange(0, 65535)
        self.keepalive.setValue(60)
        self.keepalive.setSuffix(" s")
        self.keepalive.setToolTip("Keepalive interval")
        self.tls_button = QPushButton("TLS…")
        self.tls_button.setToolTip("CA certificate, client certificate and key, verification")
        self.tls_button.clicked.connect(self._edit_tls)
        self.button = QPushButton("Connect")
        self.button.setDefault(True)
        self.button.setMinimumWidth(100)
        self.button.clicked.connect(self._clicked)
        self.url.returnPressed.connect(self._clicked)
        self.password.returnPressed.connect(self._clicked)
        self._connected_look = False

        lay = QHBoxLayout(self)
        lay.setContentsMargins(6, 6, 6, 6)
        self.broker_label = QLabel("Broker")
        lay.addWidget(self.broker_label)
        lay.addWidget(self.url, 3)
        lay.addWidget(self.username, 1)
        lay.addWidget(self.password, 1)
        lay.addWidget(self.client_id, 1)
        lay.addWidget(self.version)
        lay.addWidget(self.keepalive)
        lay.addWidget(self.persistent)
        lay.addWidget(self.tls_button)
        lay.addWidget(self.button)

    def _edit_tls(self) -> None:
        dlg = TlsDialog(self.tls, self)
        if dlg.exec() == QDialog.DialogCode.Accepted:
            self.tls = dlg.settings()
            self._update_tls_button()

    def _update_tls_button(self) -> None:
        t = self.tls
        custom = t.ca_file or t.cert_file
        insecure = not (t.verify_certificate and t.verify_hostname)
        self.tls_button.setText("TLS ⚠" if insecure else ("TLS ✓" if custom else "TLS…"))
        self.tls_button.setToolTip(
            "Certificate verification is OFF" if insecure else "CA certificate, client certificate and key"
        )

    def config(self) -> ConnectionConfig:
        return parse_url(
            self.url.text(),
            username=self.username.text().strip() or None,
            password=self.password.text() or None,
            client_id=self.client_id.text().strip() or "",
            mqtt_version=self.version.currentData(),
            keepalive=self.keepalive.value(),
            clean_session=not self.persistent.isChecked(),
            tls=self.tls,
        )

    def load(self, config: ConnectionConfig) -> None:
        self.url.setText(config.describe().replace(f"{config.username}@", "") if config.username else config.describe())
        self.username.setText(config.username or "")
        self.password.setText(config.password or "")
        self.client_id.setText(config.client_id)
        self.version.setCurrentIndex(max(0, self.version.findData(config.mqtt_version)))
        self.persistent.setChecked(not config.clean_session)
        self.keepalive.setValue(config.keepalive)
        self.tls = config.tls
        self._update_tls_button()

    @property
    def raw_widgets(self) -> tuple:
        return (
            self.broker_label,
            self.url,
            self.username,
            self.password,
            self.client_id,
            self.version,
            self.keepalive,
            self.persistent,
            self.tls_button,
        )

    def _clicked(self) -> None:
        if self._connected_look:
            self.disconnect_requested.emit()
            return
        try:
            cfg = self.config()
        except ConfigError as exc:
            self.invalid.emit(str(exc))
            return
        self.connect_requested.emit(cfg)

    def set_connected_look(self, active: bool) -> None:
        """active: a session exists (connecting, connected or retrying): the button disconnects."""
        self._connected_look = active
        self.button.setText("Disconnect" if active else "Connect")
        for w in (
            self.url,
            self.username,
            self.password,
            self.client_id,
            self.version,
            self.keepalive,
            self.persistent,
            self.tls_button,
        ):
            w.setEnabled(not active)

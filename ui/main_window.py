"""The main window: connection bar, subscriptions, publishing, the live message log."""

from __future__ import annotations

import time

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QPushButton,
    QSplitter,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from app import __version__
from app.mqtt.config import ConnectionConfig, Subscription
from app.mqtt.session import SessionState, StateChange
from ui.bridge import SessionBridge, spawn
from ui.common.notices import NoticeBar
from ui.connection.connection_bar import ConnectionBar
from ui.raw.message_log import MessageLogModel, MessageLogView
from ui.raw.side_panels import PublishPanel, SubscriptionsPanel

OPEN_WINDOWS: list = []  # windows opened with File > New window (kept alive here)
HISTORY_ROWS_AT_START = 200_000  # rows of history shown when a connection opens


# How each kind of lasting notice looks: (level, whether the user may hide it).
NOTICE_STYLE = {
    "history": ("warning", False),
    "history-read": ("warning", False),
    "history-behind": ("warning", False),
    "history-batch": ("warning", True),
    "history-recovered": ("info", True),
    "verification": ("warning", False),
    "engine": ("warning", True),
    "table": ("error", True),
    "devices": ("warning", True),
}


def verification_notice(config: ConnectionConfig) -> str | None:
    """The lasting notice a connection without certificate checks gets, or None."""
    if not config.transport.uses_tls:
        return None
    tls = config.tls
    if tls.verify_certificate and tls.verify_hostname:
        return None
    what = "certificate" if not tls.verify_certificate else "host name in the certificate"
    return (
        f"The broker's {what} is not verified for {config.host}:{config.effective_port}: anyone on the network "
        "path could pose as the broker and read this connection's messages and credentials. Turn verification "
        "on in the TLS settings (choose the CA certificate that signed the broker's) when you can."
    )


def history_name_for(platform: str, config: ConnectionConfig) -> str:
    """One history file per platform, broker and account."""
    return f"{platform} {config.describe()}"


STATE_STYLE = {
    SessionState.DISCONNECTED: ("Disconnected", "#6b6b6b"),
    SessionState.CONNECTING: ("Connecting…", "#9a6700"),
    SessionState.CONNECTED: ("Connected", "#1a7f37"),
    SessionState.RECONNECTING: ("Reconnecting…", "#bc4c00"),
    SessionState.FAILED: ("Failed", "#cf222e"),
}


class MainWindow(QMainWindow):
    def __init__(self, max_rows: int | None = None, retention=None) -> None:
        super().__init__()
        self.max_rows = max_rows
        self.retention = retention  # app.history.Retention for platform connections (None: defaults)
        self.setWindowTitle("Uplink Console")
        self.resize(1440, 900)
        self.bridge = SessionBridge(self)
        self.subscriptions: dict[str, Subscription] = {}
        self.config: ConnectionConfig | None = None

        self.connection_bar = ConnectionBar()
        self.subscriptions_panel = SubscriptionsPanel()
        self.publish_panel = PublishPanel()
        self.log_model = MessageLogModel(**({"max_rows": max_rows} if max_rows else {}))
        self.log_view = MessageLogView(self.log_model)

        # log toolbar
        self.count_label = QLabel("No messages yet")
        self.count_label.setObjectName("hint")
        hex_box = QCheckBox("Payload as hex")
        hex_box.toggled.connect(self.log_model.set_payload_as_hex)
        clear = QPushButton("Clear")
        clear.clicked.connect(self.log_model.clear)
        log_bar = QHBoxLayout()
        log_bar.addWidget(QLabel("<b>Messages</b>"))
        log_bar.addWidget(self.count_label, 1)
        log_bar.addWidget(hex_box)
        log_bar.addWidget(clear)
        log_box = QWidget()
        log_lay = QVBoxLayout(log_box)
        log_lay.setContentsMargins(0, 0, 0, 0)
        log_lay.addLayout(log_bar)
        log_lay.addWidget(self.log_view, 1)

        left = QWidget()
        left_lay = QVBoxLayout(left)
        left_lay.setContentsMargins(0, 0, 0, 0)
        left_lay.addWidget(self.subscriptions_panel, 1)
        left_lay.addWidget(self.publish_panel)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(left)
        split.addWidget(log_box)
        split.setStretchFactor(1, 1)
        split.setSizes([340, 940])

        # Raw MQTT shows the message log; a platform connection shows its uplink workspace.
        self.pages = QStackedWidget()
        self.pages.addWidget(split)
        self.workspace = None  # created at the first platform connection
        self.platform_name: str | None = None
        self.profiles: dict[str, dict] = {}  # the last profile used per platform, this run
        central = QWidget()
        lay = QVBoxLayout(central)
        lay.setContentsMargins(6, 0, 6, 0)
        lay.addWidget(self.connection_bar)
        self.notices = NoticeBar()
        lay.addWidget(self.notices)
        lay.addWidget(self.pages, 1)
        self.setCentralWidget(central)

        # status bar: state, last error, rate
        self.state_label = QLabel()
        self.state_label.setObjectName("stateLabel")
        self.error_label = QLabel()
        self.error_label.setObjectName("warning")
        self.error_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.rate_label = QLabel()
        sb = self.statusBar()
        sb.addWidget(self.state_label)
        sb.addWidget(self.error_label, 1)
        sb.addPermanentWidget(self.rate_label)
        self._show_state(StateChange(SessionState.DISCONNECTED))

        file_menu = self.menuBar().addMenu("&File")
        new_window = QAction("New window", self)
        new_window.setShortcut(QKeySequence.StandardKey.New)
        new_window.setToolTip("Another window for another connection: each has its own table and devices")
        new_window.triggered.connect(self.open_new_window)
        file_menu.addAction(new_window)
        export_action = QAction("Export rows…", self)
        export_action.triggered.connect(self._export)
        file_menu.addAction(export_action)
        file_menu.addSeparator()
        quit_action = QAction("Quit", self)
        quit_action.setShortcut(QKeySequence.StandardKey.Quit)
        quit_action.triggered.connect(self.close)
        file_menu.addAction(quit_action)
        help_menu = self.menuBar().addMenu("&Help")
        about = QAction("About Uplink Console", self)
        about.triggered.connect(self._about)
        help_menu.addAction(about)

        # wiring
        self.connection_bar.connect_requested.connect(self.connect_with)
        self.connection_bar.platform_connect_requested.connect(self.ask_platform_connection)
        self.connection_bar.disconnect_requested.connect(self.disconnect)
        self.connection_bar.invalid.connect(self.show_error)
        self.subscriptions_panel.subscribe_requested.connect(self.add_subscription)
        self.subscriptions_panel.unsubscribe_requested.connect(self.remove_subscription)
        self.subscriptions_panel.invalid.connect(self.show_error)
        self.publish_panel.publish_requested.connect(self.publish)
        self.publish_panel.invalid.connect(self.show_error)
        self.bridge.state_changed.connect(self._show_state)
        self.bridge.notice.connect(self.show_notice)
        self.bridge.messages_arrived.connect(self._on_event_batches)

        self._rate_timer = QTimer(self)
        self._rate_timer.setInterval(1000)
        self._rate_timer.timeout.connect(self._update_rate)
        self._rate_timer.start()
        self._last_total, self._last_tick = 0, time.monotonic()
        self.add_subscription(Subscription("#", 0), quiet=True)

    # ----- actions
    def open_new_window(self) -> MainWindow:
        window = MainWindow(self.max_rows, self.retention)
        OPEN_WINDOWS.append(window)
        window.destroyed.connect(lambda *_: OPEN_WINDOWS.remove(window) if window in OPEN_WINDOWS else None)
        window.show()
        return window

    def _export(self) -> None:
        if self.workspace is None or self.platform_name is None:
            self.show_error("Export works on the uplink table of a platform connection; connect to a platform first.")
            return
        self.workspace.export()

    def _about(self) -> None:
        from PySide6.QtWidgets import QMessageBox

        from app import platforms

        names = ", ".join(p.label for p in platforms.available() if p.name != "generic")
        QMessageBox.about(
            self,
            "About Uplink Console",
            f"<b>Uplink Console {__version__}</b><p>A desktop MQTT console that speaks {names} natively, "
            "and any MQTT broker.</p>",
        )

    def _on_event_batches(self, items: list) -> None:
        if self.platform_name is None:
            self.log_model.append_batch(items)
        elif self.workspace is not None:
            self.workspace.ingest(items)

    def ask_platform_connection(self, name: str) -> None:
        from app import platforms
        from ui.connection.profile_dialog import ProfileDialog

        platform = platforms.get(name)
        dialog = ProfileDialog(platform, self.profiles.get(name), self)
        if dialog.exec() == QDialog.DialogCode.Accepted:
            self.connect_platform(name, dialog.profile, dialog.config)

    def connect_platform(self, name: str, profile: dict, config: ConnectionConfig) -> None:
        from app import platforms
        from ui.workspace.platform_workspace import PlatformWorkspace

        if self.workspace is None:
            self.workspace = PlatformWorkspace(**({"max_rows": self.max_rows} if self.max_rows else {}))
            self.workspace.notice.connect(self.show_notice)
            self.pages.addWidget(self.workspace)
        self.profiles[name] = profile
        self.platform_name = name
        self.workspace.platform_name = name
        self.pages.setCurrentWidget(self.workspace)
        idx = self.connection_bar.platform.findData(name)
        self.connection_bar.platform.setCurrentIndex(idx)
        unverified = verification_notice(config)
        summary = f"{platforms.get(name).label} · {config.describe()}"
        self.connection_bar.show_summary(summary + (" · ⚠ not verified" if unverified else ""))
        self.config = config
        self.connection_bar.set_connected_look(True)
        self.error_label.clear()
        self._notices_for(config)
        history_name = history_name_for(name, config)
        self.workspace.open_history(history_name)
        rows = min(self.workspace.store.max_rows, HISTORY_ROWS_AT_START)
        spawn(self.bridge.connect_to(config, name, profile, history_name, rows, self.retention), self.show_error)

    def rows_in_tables(self) -> tuple[int, float | None, float | None]:
        """Rows that reached the message log and the uplink table, with the first and last times."""
        models = [self.log_model] + ([self.workspace.model] if self.workspace is not None else [])
        rows = self.log_model.total_inserted + (self.workspace.model.rows_shown_total if self.workspace else 0)
        firsts = [m.first_row_at for m in models if m.first_row_at is not None]
        lasts = [m.last_row_at for m in models if m.last_row_at is not None]
        return rows, min(firsts) if firsts else None, max(lasts) if lasts else None

    def connect_with(self, config: ConnectionConfig) -> None:
        self.platform_name = None
        self.pages.setCurrentIndex(0)
        if config.subscriptions:
            self.subscriptions = {s.topic: s for s in config.subscriptions}
            self.subscriptions_panel.show_subscriptions(list(self.subscriptions.values()))
        config = config.replace(subscriptions=tuple(self.subscriptions.values()))
        self.config = config
        self.connection_bar.set_connected_look(True)
        self.error_label.clear()
        self._notices_for(config)
        spawn(self.bridge.connect_to(config), self.show_error)

    def disconnect(self) -> None:
        spawn(self.bridge.disconnect_from(), self.show_error)

    def add_subscription(self, sub: Subscription, quiet: bool = False) -> None:
        self.subscriptions[sub.topic] = sub
        self.subscriptions_panel.show_subscriptions(list(self.subscriptions.values()))
        if self.bridge.session is not None:
            spawn(self.bridge.subscribe(sub), self.show_error)
        elif not quiet:
            self.statusBar().showMessage(f"Will subscribe to {sub.topic} when connected.", 4000)

    def remove_subscription(self, topic: str) -> None:
        self.subscriptions.pop(topic, None)
        self.subscriptions_panel.show_subscriptions(list(self.subscriptions.values()))
        spawn(self.bridge.unsubscribe(topic), self.show_error)

    def publish(self, topic: str, payload: bytes, options: dict) -> None:
        async def go():
            await self.bridge.publish(topic, payload, **options)
            self.statusBar().showMessage(f"Published {len(payload):,} bytes to {topic}.", 4000)

        spawn(go(), self.show_error)

    def _notices_for(self, config: ConnectionConfig) -> None:
        """A new connection: the old one's notices are over; this one's start with its settings."""
        self.notices.clear()
        self.show_notice("verification", verification_notice(config))

    def show_notice(self, key: str, text: str | None) -> None:
        """A lasting notice (None: it no longer holds); see ui/common/notices.py."""
        level, dismissable = NOTICE_STYLE.get(key, ("warning", True))
        if key == "engine" and text is not None and "not started again" in text:
            level, dismissable = "error", False
        self.notices.notify(key, text, level, dismissable)

    def show_error(self, text: str) -> None:
        """One line in the status bar (the whole text in its tooltip)."""
        line = " ".join(str(text).split())
        self.error_label.setToolTip(str(text))
        self.error_label.setText(line if len(line) <= 220 else line[:219] + "…")

    # ----- engine events
    def _show_state(self, change: StateChange) -> None:
        text, color = STATE_STYLE[change.state]
        if change.state == SessionState.CONNECTED and change.mqtt_version:
            text = f"Connected · MQTT {change.mqtt_version}"
        if change.state == SessionState.CONNECTED and self.config is not None and verification_notice(self.config):
            text += " · ⚠ not verified"
            color = "#9a6700"
        elif change.state == SessionState.RECONNECTING and change.retry_in is not None:
            text = f"Reconnecting in {change.retry_in:.0f} s (attempt {change.attempt})"
        self.state_label.setText(text)
        self.state_label.setStyleSheet(f"background: {color}; color: white;")
        if change.error:
            self.show_error(change.error)  # when connected: a subscription the broker refused
        elif change.state == SessionState.CONNECTED:
            self.error_label.clear()
        where = self.config.describe() if self.config else ""
        self.setWindowTitle(f"Uplink Console — {where}" if where else "Uplink Console")
        active = change.state not in (SessionState.DISCONNECTED, SessionState.FAILED)
        self.connection_bar.set_connected_look(
            active
            or self.bridge.session is not None
            and change.state != SessionState.FAILED
            and change.state != SessionState.DISCONNECTED
        )

    def _update_rate(self) -> None:
        now = time.monotonic()
        total = self.rows_in_tables()[0]
        rate = (total - self._last_total) / max(now - self._last_tick, 1e-6)
        self._last_total, self._last_tick = total, now
        shown = len(self.log_model.rows)
        if self.log_model.total_inserted:
            self.count_label.setText(
                f"{self.log_model.total_inserted:,} received · {shown:,} shown "
                f"(newest {self.log_model.max_rows:,} kept)"
            )
        self.rate_label.setText(f"{rate:,.0f} msg/s")

    def closeEvent(self, event) -> None:  # noqa: N802
        from ui.export.export_dialog import cancel_all

        cancel_all(5.0)
        self.bridge.shutdown()
        if self.workspace is not None:
            self.workspace.close_history()
        super().closeEvent(event)

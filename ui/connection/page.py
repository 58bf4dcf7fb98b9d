"""One open connection: its engine session, its lasting notices and its page.

A platform connection shows its uplink workspace; a raw MQTT connection shows the connection
bar, subscriptions, the publish box and the message log. Each page keeps its own session (a
bridge with its engine process), table and state, so several connections stay open at once and
switching between them (the window's sidebar) is instant and loses nothing.

A platform page also sends downlinks: "Send downlink…" in its header (and "Send downlink…" on a
right-click of an uplink row or a device, pre-filled from it) opens the composer
(ui/downlink/composer.py), which hands the message to this page's outbox through the bridge; the
"Downlinks" tab beside Details and Radio charts follows every downlink of the connection.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import QCheckBox, QHBoxLayout, QLabel, QPushButton, QSplitter, QVBoxLayout, QWidget

from app.mqtt.config import ConnectionConfig, Subscription
from app.mqtt.session import SessionState, StateChange
from ui.bridge import SessionBridge, spawn
from ui.common.notices import NoticeBar

# Rows of history replayed when a connection opens (newest first, beside the live rows; the
# table's own row limit applies).
HISTORY_ROWS_AT_START = 1_000_000

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
    "keyring": ("warning", False),
}


def history_name_for(platform: str, config: ConnectionConfig) -> str:
    """One history file per platform, broker and account (a saved connection: per profile id)."""
    return f"{platform} {config.describe()}"


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


class ConnectionPage(QWidget):
    """key: what identifies it in the sidebar (a saved profile's id, or "raw"/"adhoc:<platform>")."""

    state_changed = Signal(object, object)  # (page, StateChange)
    error_changed = Signal(object, str)  # (page, the last error sentence, "" when cleared)
    message = Signal(str)  # a passing message for the status bar

    def __init__(self, key: str, title: str, *, raw: bool, max_rows: int | None = None, retention=None) -> None:
        super().__init__()
        self.key = key
        self.title = title
        self.raw = raw
        self.max_rows = max_rows
        self.retention = retention
        self.bridge = SessionBridge(self)
        self.config: ConnectionConfig | None = None
        self.platform_name: str | None = None
        self.profile: dict | None = None
        self.history_name: str | None = None
        self.last_change = StateChange(SessionState.DISCONNECTED)
        self.last_error = ""
        self.subscriptions: dict[str, Subscription] = {}
        self.workspace = None
        self.log_model = None
        self.notices = NoticeBar()
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        if raw:
            self._build_raw(lay)
        else:
            self._build_platform(lay)
        if self.workspace is not None:
            self.bridge.id_floor = self._id_floor
        self.bridge.state_changed.connect(self._on_state)
        self.bridge.notice.connect(self.show_notice)
        self.bridge.messages_arrived.connect(self._on_batches)

    # ----- building
    def _build_platform(self, lay: QVBoxLayout) -> None:
        from ui.workspace.platform_workspace import PlatformWorkspace

        header = QHBoxLayout()
        header.setContentsMargins(6, 4, 6, 0)
        self.title_label = QLabel()
        self.title_label.setTextFormat(Qt.TextFormat.RichText)
        self.summary = QLabel()
        self.summary.setObjectName("hint")
        self.connect_button = QPushButton("Connect")
        self.connect_button.setMinimumWidth(100)
        self.connect_button.clicked.connect(self._toggle)
        self.downlink_button = QPushButton("Send downlink…")
        self.downlink_button.setToolTip(
            "Compose a downlink for this platform; right-click an uplink or a device to reply to it"
        )
        self.downlink_button.clicked.connect(lambda: self.open_composer())
        header.addWidget(self.title_label)
        header.addWidget(self.summary, 1)
        header.addWidget(self.downlink_button)
        header.addWidget(self.connect_button)
        lay.addLayout(header)
        lay.addWidget(self.notices)
        self.workspace = PlatformWorkspace(**({"max_rows": self.max_rows} if self.max_rows else {}))
        self.workspace.notice.connect(self.show_notice)
        self.bridge.history_newest_first = True
        self.bridge.history_arrived.connect(self.workspace.prepend_history)
        self.bridge.history_finished.connect(self.workspace.history_finished)
        lay.addWidget(self.workspace, 1)
        self._add_downlinks()
        self._show_title()

    def _add_downlinks(self) -> None:
        from ui.downlink.downlinks_view import DownlinksView

        self.composer = None
        self.downlinks_view = DownlinksView()
        self.downlinks_view.attach(self.bridge, spawn)
        self.downlinks_tab = self.workspace.bottom.addTab(self.downlinks_view, "Downlinks")
        self.workspace.view.send_downlink_requested.connect(self.reply_to_row)
        self.workspace.devices.send_downlink_requested.connect(self.reply_to_device)

    def _build_raw(self, lay: QVBoxLayout) -> None:
        from ui.connection.connection_bar import ConnectionBar
        from ui.raw.message_log import MessageLogModel, MessageLogView
        from ui.raw.side_panels import PublishPanel, SubscriptionsPanel

        self.connection_bar = ConnectionBar()
        self.subscriptions_panel = SubscriptionsPanel()
        self.publish_panel = PublishPanel()
        self.log_model = MessageLogModel(**({"max_rows": self.max_rows} if self.max_rows else {}))
        self.log_view = MessageLogView(self.log_model)
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
        lay.addWidget(self.connection_bar)
        lay.addWidget(self.notices)
        lay.addWidget(split, 1)

        self.connection_bar.connect_requested.connect(self.connect_with)
        self.connection_bar.disconnect_requested.connect(self.disconnect)
        self.connection_bar.invalid.connect(self.show_error)
        self.subscriptions_panel.subscribe_requested.connect(self.add_subscription)
        self.subscriptions_panel.unsubscribe_requested.connect(self.remove_subscription)
        self.subscriptions_panel.invalid.connect(self.show_error)
        self.publish_panel.publish_requested.connect(self.publish)
        self.publish_panel.invalid.connect(self.show_error)
        self._count_timer = QTimer(self)
        self._count_timer.setInterval(1000)
        self._count_timer.timeout.connect(self._update_count)
        self._count_timer.start()
        self.add_subscription(Subscription("#", 0), quiet=True)

    # ----- connecting
    def connect_platform(self, name: str, profile: dict, config: ConnectionConfig, history_name: str | None = None):
        """Connects (or reconnects, with new settings) this page's platform session."""
        self.platform_name = name
        self.profile = profile
        self.config = config
        self.workspace.platform_name = name
        self.history_name = history_name or history_name_for(name, config)
        self._new_connection(config)
        self.workspace.open_history(self.history_name)
        # A table that shows rows already (a reconnect) goes on from them: the history is
        # replayed only into an empty one.
        store = self.workspace.store
        empty = not len(store) and not self.workspace.model.held_rows
        replays = self.bridge.engine_kind == "process"  # the thread engine (tests) keeps no history
        rows = min(store.max_rows, HISTORY_ROWS_AT_START) if empty and replays else 0
        self.bridge.drop_history()  # what an earlier session was replaying ends before this one's
        self.workspace.begin_history(rows)
        if self.composer is not None:
            self.composer.close()
            self.composer = None  # the next one is built for the new settings

        async def go():
            await self.bridge.connect_to(config, name, profile, self.history_name, rows, self.retention)
            self.downlinks_view.reload()

        spawn(go(), self.show_error)

    def connect_with(self, config: ConnectionConfig) -> None:
        """A raw MQTT connection with the bar's (or these) settings."""
        if config.subscriptions:
            self.subscriptions = {s.topic: s for s in config.subscriptions}
            self.subscriptions_panel.show_subscriptions(list(self.subscriptions.values()))
        config = config.replace(subscriptions=tuple(self.subscriptions.values()))
        self.config = config
        self._new_connection(config)
        spawn(self.bridge.connect_to(config), self.show_error)

    def _new_connection(self, config: ConnectionConfig) -> None:
        self.notices.clear()
        self.show_notice("verification", verification_notice(config))
        self.show_error("")
        self._set_connected_look(True)
        self._show_title()

    def reconnect(self) -> None:
        if self.raw:
            if self.config is not None:
                self.connect_with(self.config)
        elif self.config is not None and self.platform_name is not None:
            self.connect_platform(self.platform_name, self.profile or {}, self.config, self.history_name)

    def disconnect(self) -> None:
        spawn(self.bridge.disconnect_from(), self.show_error)

    def _toggle(self) -> None:
        if self.active:
            self.disconnect()
        else:
            self.reconnect()

    @property
    def active(self) -> bool:
        """A session exists and is not over (connecting, connected or retrying)."""
        return self.bridge.session is not None and self.last_change.state not in (
            SessionState.DISCONNECTED,
            SessionState.FAILED,
        )

    # ----- downlinks
    def open_composer(self, prefill: dict | None = None):
        """The composer for this connection's platform (one per page; a reply pre-fills it)."""
        from ui.downlink.composer import ComposerDialog

        if self.platform_name is None:
            self.message.emit("Connect first: the composer builds the platform's message from the connection.")
            return None
        if self.composer is None:
            self.composer = ComposerDialog(
                self.platform_name,
                self.profile,
                config=self.config,
                connection_key=self.key,
                title=self.title,
                sender=getattr(self.bridge, "send_downlink", None),
                spawn=lambda coro: spawn(coro, self.show_error),
                parent=self,
            )
            self.composer.sent.connect(self._downlink_sent)
        if prefill:
            self.composer.prefill(**prefill)
        self.composer.show()
        self.composer.raise_()
        self.composer.activateWindow()
        return self.composer

    def _downlink_sent(self, entry) -> None:
        if isinstance(entry, dict):
            self.downlinks_view.model.upsert(entry)
        self.workspace.bottom.setCurrentWidget(self.downlinks_view)

    def reply_to_row(self, position: int) -> None:
        """Right-click → Send downlink… on an uplink row: its device, DevEUI, FPort and radio."""
        from app.store import NONE_INT

        store = self.workspace.store
        try:
            row = store.row(position)
        except IndexError:
            return

        def value(name):
            v = row.get(name)
            return None if v == NONE_INT or v is None else v

        self.open_composer(
            {
                "device_id": value("device_id"),
                "dev_eui": value("dev_eui"),
                "f_port": value("f_port"),
                "radio": (value("spreading_factor"), value("bandwidth_hz"), value("frequency_hz")),
            }
        )

    def reply_to_device(self, key: str) -> None:
        """Right-click → Send downlink… on a device: its ids, last FPort and its last uplink's radio."""
        stats = self.workspace.tracker.stats(key)
        if stats is None:
            return
        self.open_composer(
            {
                "device_id": stats.device_id,
                "dev_eui": stats.dev_eui,
                "f_port": stats.last_f_port,
                "radio": self._last_radio(key),
            }
        )

    def _last_radio(self, key: str) -> tuple | None:
        """(SF, bandwidth, frequency) of the device's newest uplink in the table that has them."""
        from app.store import NONE_INT

        store = self.workspace.store
        cols = store.cols
        kinds, sfs = cols["kind"], cols["spreading_factor"]
        positions = store.device_index.get(key) or ()
        for pos in reversed(positions):
            if pos < store.base:
                break  # trimmed away
            i = pos - store.zero
            if kinds[i] == "uplink" and sfs[i] != NONE_INT:
                bw, freq = cols["bandwidth_hz"][i], cols["frequency_hz"][i]
                return (sfs[i], None if bw == NONE_INT else bw, None if freq == NONE_INT else freq)
        return None

    # ----- raw MQTT
    def add_subscription(self, sub: Subscription, quiet: bool = False) -> None:
        self.subscriptions[sub.topic] = sub
        self.subscriptions_panel.show_subscriptions(list(self.subscriptions.values()))
        if self.bridge.session is not None:
            spawn(self.bridge.subscribe(sub), self.show_error)
        elif not quiet:
            self.message.emit(f"Will subscribe to {sub.topic} when connected.")

    def remove_subscription(self, topic: str) -> None:
        self.subscriptions.pop(topic, None)
        self.subscriptions_panel.show_subscriptions(list(self.subscriptions.values()))
        spawn(self.bridge.unsubscribe(topic), self.show_error)

    def publish(self, topic: str, payload: bytes, options: dict) -> None:
        async def go():
            await self.bridge.publish(topic, payload, **options)
            self.message.emit(f"Published {len(payload):,} bytes to {topic}.")

        spawn(go(), self.show_error)

    def _update_count(self) -> None:
        m = self.log_model
        if m.total_inserted:
            self.count_label.setText(
                f"{m.total_inserted:,} received · {len(m.rows):,} shown (newest {m.max_rows:,} kept)"
            )

    # ----- what arrives
    def _on_batches(self, items: list) -> None:
        if self.raw:
            self.log_model.append_batch(items)
        elif self.workspace is not None:
            self.workspace.ingest(items)

    def _on_state(self, change: StateChange) -> None:
        self.last_change = change
        if change.error:
            self.show_error(change.error)  # when connected: a subscription the broker refused
        elif change.state == SessionState.CONNECTED:
            self.show_error("")
        self._set_connected_look(
            change.state not in (SessionState.DISCONNECTED, SessionState.FAILED)
            or self.bridge.session is not None
            and change.state not in (SessionState.FAILED, SessionState.DISCONNECTED)
        )
        self.state_changed.emit(self, change)

    def show_error(self, text: str) -> None:
        self.last_error = str(text or "")
        self.error_changed.emit(self, self.last_error)

    def show_notice(self, key: str, text: str | None) -> None:
        """A lasting notice (None: it no longer holds); see ui/common/notices.py."""
        level, dismissable = NOTICE_STYLE.get(key, ("warning", True))
        if key == "engine" and text is not None and "not started again" in text:
            level, dismissable = "error", False
        self.notices.notify(key, text, level, dismissable)

    def _set_connected_look(self, active: bool) -> None:
        if self.raw:
            self.connection_bar.set_connected_look(active)
        else:
            self.connect_button.setText("Disconnect" if active else "Connect")

    def _show_title(self) -> None:
        if self.raw:
            return
        from app import platforms

        label = platforms.get(self.platform_name).label if self.platform_name else ""
        self.title_label.setText(f"<b>{self.title}</b>")
        if self.config is not None:
            mark = " · ⚠ not verified" if verification_notice(self.config) else ""
            self.summary.setText(f"{label} · {self.config.describe()}{mark}")

    def _id_floor(self) -> int:
        """One above the largest history id this page's table holds: a new session (a reconnect,
        a restarted engine) never hands out an id that already names a row here."""
        import numpy as np

        from app.store import NONE_INT

        store = self.workspace.store
        ids = np.frombuffer(store.cols["id"], dtype=np.int64)[store.room :]  # not the slots set aside
        top = int(ids.max()) if len(ids) else NONE_INT
        return top + 1 if top != NONE_INT else 0

    # ----- reading
    def rows_in_tables(self) -> tuple[int, float | None, float | None]:
        """Rows that reached this page's table, with the first and last times."""
        model = self.log_model if self.raw else self.workspace.model
        rows = model.total_inserted if self.raw else model.rows_shown_total
        return rows, model.first_row_at, model.last_row_at

    def shutdown(self) -> None:
        if getattr(self, "composer", None) is not None:
            self.composer.close()
        self.bridge.shutdown()
        if self.workspace is not None:
            self.workspace.close_history()

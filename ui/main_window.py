"""The main window: the sidebar of connections, the open connections' pages, the status bar.

Several connections stay open at once, each on its own page (ui/connection/page.py) with its own
session, table and notices; the sidebar switches between them instantly. With nothing open the
window shows the welcome page: a tile per platform that opens its wizard.
"""

from __future__ import annotations

import logging
import time

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QCheckBox,
    QInputDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QSplitter,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from app import __version__
from app.mqtt.config import ConfigError, ConnectionConfig, Subscription
from app.mqtt.session import SessionState, StateChange
from ui.common.notices import NoticeBar
from ui.connection.page import ConnectionPage, verification_notice
from ui.connection.sidebar import ConnectionSidebar, Entry
from ui.connection.welcome import WelcomePage
from ui.demo import is_demo_key

log = logging.getLogger(__name__)
RAW_KEY = "raw"  # the quick-connect raw MQTT page

STATE_STYLE = {
    SessionState.DISCONNECTED: ("Disconnected", "#6b6b6b"),
    SessionState.CONNECTING: ("Connecting…", "#9a6700"),
    SessionState.CONNECTED: ("Connected", "#1a7f37"),
    SessionState.RECONNECTING: ("Reconnecting…", "#bc4c00"),
    SessionState.FAILED: ("Failed", "#cf222e"),
}


def history_name_for_profile(profile_id: str) -> str:
    """A saved connection's history follows its id: renaming it keeps its past."""
    return f"profile {profile_id}"


def _preload_pages() -> None:
    # Plain imports (a packaged build sees them): the modules a connection page builds on.
    try:
        import ui.downlink.composer
        import ui.downlink.downlinks_view
        import ui.workspace.charts
        import ui.workspace.details_pane
        import ui.workspace.devices_view
        import ui.workspace.platform_workspace  # noqa: F401
    except Exception:  # noqa: BLE001 - imported again (and reported) when a page needs them
        log.debug("preloading the connection page's modules failed", exc_info=True)


class MainWindow(QMainWindow):
    connection_state_changed = Signal(object, object)  # (ConnectionPage, StateChange)

    def __init__(self, max_rows: int | None = None, retention=None, profiles=None, secrets=None) -> None:
        super().__init__()
        self.max_rows = max_rows
        self.retention = retention  # app.history.Retention for connections without their own (None: defaults)
        self.heartbeat_timeout: float | None = None  # the engines' (None: their default)
        self.setWindowTitle("Uplink Console")
        self.resize(1440, 900)
        self.pages: dict[str, ConnectionPage] = {}
        self._profiles = profiles
        self._secrets = secrets

        self.sidebar = ConnectionSidebar()
        self.welcome = WelcomePage()
        self.stack = QStackedWidget()
        self.stack.addWidget(self.welcome)
        self.window_notices = NoticeBar()  # about the window itself: the profiles file, the keyring
        center = QWidget()
        center_lay = QVBoxLayout(center)
        center_lay.setContentsMargins(0, 0, 6, 0)
        center_lay.addWidget(self.window_notices)
        center_lay.addWidget(self.stack, 1)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(self.sidebar)
        split.addWidget(center)
        split.setStretchFactor(1, 1)
        # The sidebar keeps room for a connection's name and state; the page's widgets shrink first.
        self.sidebar.setMinimumWidth(210)
        split.setCollapsible(0, False)
        split.setSizes([260, 1180])
        self.setCentralWidget(split)
        # The demo (ui/demo/): its banner above the pages, its entries on the welcome page and in Help.
        from ui.demo import DemoController

        self.demo = DemoController(self)
        center_lay.insertWidget(1, self.demo.banner)

        # status bar: the shown connection's state, its last error, its rate
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
        self._show_state(None)

        self._build_menus()
        self.sidebar.selected.connect(self.show_page_for)
        self.sidebar.open_requested.connect(self.open_connection)
        self.sidebar.disconnect_requested.connect(self._disconnect_key)
        self.sidebar.new_requested.connect(self.new_connection)
        self.sidebar.quick_raw_requested.connect(self.quick_connect)
        self.sidebar.edit_requested.connect(self.edit_connection)
        self.sidebar.duplicate_requested.connect(self.duplicate_connection)
        self.sidebar.rename_requested.connect(self.rename_connection)
        self.sidebar.delete_requested.connect(self.delete_connection)
        self.sidebar.save_requested.connect(self.save_open_connection)
        self.welcome.platform_chosen.connect(self.new_connection)
        self.welcome.quick_raw.connect(self.quick_connect)

        self._rate_timer = QTimer(self)
        self._rate_timer.setInterval(1000)
        self._rate_timer.timeout.connect(self._update_rate)
        self._rate_timer.start()
        self._last_total, self._last_tick = 0, time.monotonic()
        self.refresh_sidebar()
        # The connection page's modules (the workspace, pyqtgraph, the composer: ~0.3-0.5 s of
        # imports) load in the first idle moment, not when the user opens a connection.
        QTimer.singleShot(0, self, _preload_pages)

    def _build_menus(self) -> None:
        from app import platforms

        file_menu = self.menuBar().addMenu("&File")
        new_menu = file_menu.addMenu("New connection")
        for p in platforms.available():
            if p.name != "generic":
                new_menu.addAction(f"{p.label}…", lambda n=p.name: self.new_connection(n))
        new_menu.addSeparator()
        new_menu.addAction("Any MQTT broker (saved)…", lambda: self.new_connection("generic"))
        quick = QAction("Quick connect (raw MQTT)", self)
        quick.setShortcut(QKeySequence.StandardKey.New)
        quick.triggered.connect(self.quick_connect)
        file_menu.addAction(quick)
        export_action = QAction("Export rows…", self)
        export_action.triggered.connect(self._export)
        file_menu.addAction(export_action)
        file_menu.addSeparator()
        quit_action = QAction("Quit", self)
        quit_action.setShortcut(QKeySequence.StandardKey.Quit)
        quit_action.triggered.connect(self.close)
        file_menu.addAction(quit_action)
        self._build_tools_menu()
        help_menu = self.menuBar().addMenu("&Help")
        demo_action = QAction("Open the demo", self)
        demo_action.setToolTip("Simulated devices of every platform on a broker on this computer")
        demo_action.triggered.connect(self.demo.start)
        help_menu.addAction(demo_action)
        help_menu.addSeparator()
        about = QAction("About Uplink Console", self)
        about.triggered.connect(self._about)
        help_menu.addAction(about)

    def _build_tools_menu(self) -> None:
        """Tools: the certificate manager (and, later, other tools)."""
        self.tools_menu = self.menuBar().addMenu("&Tools")
        certificates = QAction("Certificates…", self)
        certificates.setToolTip("Import, inspect, convert, fetch and generate certificates and keys")
        certificates.triggered.connect(self.show_certificates)
        self.tools_menu.addAction(certificates)
        import weakref

        from ui.certificates.library import shared_library

        window = weakref.ref(self)  # the certificates say which saved connections use them
        shared_library().profiles = lambda: window().profile_store if window() is not None else None

    def show_certificates(self):
        """The certificate manager (one, non-modal), knowing the saved connections."""
        from ui.certificates.manager import show_manager

        return show_manager(self, profiles=self.profile_store)

    # ----- the stores (made at first use: a window in a test may never need them)
    @property
    def profile_store(self):
        if self._profiles is None:
            from app.profiles import ProfileStore

            self._profiles = ProfileStore()
            if self._profiles.load_problem:
                self.window_notices.notify("profiles", self._profiles.load_problem, "error", True)
        return self._profiles

    @property
    def secret_store(self):
        if self._secrets is None:
            from app.secrets import SecretStore

            self._secrets = SecretStore()
            if not self._secrets.available and self._secrets.problem:
                self.window_notices.notify("keyring", self._secrets.problem, "warning", True)
        return self._secrets

    # ----- the shown connection (what the tests and the status bar look at)
    @property
    def current(self) -> ConnectionPage | None:
        w = self.stack.currentWidget()
        return w if isinstance(w, ConnectionPage) else None

    def _shown(self) -> ConnectionPage:
        page = self.current
        if page is None:
            raise AttributeError("no connection is shown")
        return page

    @property
    def bridge(self):
        return self._shown().bridge

    @property
    def workspace(self):
        return self._shown().workspace

    @property
    def notices(self) -> NoticeBar:
        return self._shown().notices

    @property
    def config(self) -> ConnectionConfig | None:
        page = self.current
        return page.config if page is not None else None

    @property
    def platform_name(self) -> str | None:
        page = self.current
        return page.platform_name if page is not None else None

    def raw_page(self) -> ConnectionPage:
        """The quick-connect raw MQTT page (made on first use)."""
        page = self.pages.get(RAW_KEY)
        if page is None:
            page = self._add_page(RAW_KEY, "Raw MQTT", raw=True)
            if self.current is None:
                self.show_page(page)
        return page

    @property
    def log_model(self):
        return self.raw_page().log_model

    @property
    def publish_panel(self):
        return self.raw_page().publish_panel

    @property
    def connection_bar(self):
        return self.raw_page().connection_bar

    @property
    def subscriptions(self) -> dict[str, Subscription]:
        return self.raw_page().subscriptions

    # ----- pages
    def _add_page(self, key: str, title: str, *, raw: bool, max_rows=None, retention=None) -> ConnectionPage:
        page = ConnectionPage(
            key, title, raw=raw, max_rows=max_rows or self.max_rows, retention=retention or self.retention
        )
        page.bridge.heartbeat_timeout = self.heartbeat_timeout
        page.state_changed.connect(self._page_state)
        page.error_changed.connect(self._page_error)
        page.message.connect(lambda text: self.statusBar().showMessage(text, 4000))
        self.pages[key] = page
        self.stack.addWidget(page)
        self.refresh_sidebar()
        return page

    def show_page(self, page: ConnectionPage) -> None:
        self.stack.setCurrentWidget(page)
        self.sidebar.select(page.key, emit=False)
        self._show_state(page)
        self.setWindowTitle(f"Uplink Console — {page.title}")

    def show_page_for(self, key: str) -> None:
        page = self.pages.get(key)
        if page is not None:
            self.show_page(page)
        else:
            self.stack.setCurrentWidget(self.welcome)
            self._show_state(None)
            self.setWindowTitle("Uplink Console")

    def refresh_sidebar(self) -> None:
        from app.profiles import broker_of

        entries = []
        saved_ids = set()
        if self._profiles is not None or _profiles_exist():
            for p in self.profile_store.profiles():
                saved_ids.add(p.id)
                entries.append(Entry(p.id, p.name, p.platform, broker_of(p)))
        for key, page in self.pages.items():
            if is_demo_key(key):
                entries.append(self.demo.sidebar_entry(page))
            elif key not in saved_ids:
                broker = page.config.describe() if page.config is not None else "not connected"
                entries.append(Entry(key, page.title, page.platform_name, broker, saved=False))
        self.sidebar.set_entries(entries)
        for key, page in self.pages.items():
            text, color = _state_text(page.last_change)
            self.sidebar.set_state(key, text, color)

    # ----- connecting
    def connect_platform(
        self,
        name: str,
        profile: dict,
        config: ConnectionConfig,
        *,
        key: str | None = None,
        title: str | None = None,
        history_name: str | None = None,
    ) -> ConnectionPage:
        """Opens (or reconnects with these settings) a platform connection, e.g. one given on the
        command line: key None for one that is not saved, a saved profile's id for that one."""
        from app import platforms

        key = key or f"adhoc:{name}"
        page = self.pages.get(key) or self._add_page(key, title or platforms.get(name).label, raw=False)
        page.connect_platform(name, profile, config, history_name)
        self.show_page(page)
        self.refresh_sidebar()
        return page

    def connect_with(self, config: ConnectionConfig) -> ConnectionPage:
        """A raw MQTT connection on the quick-connect page."""
        page = self.raw_page()
        page.connection_bar.load(config)
        page.connect_with(config)
        self.show_page(page)
        self.refresh_sidebar()
        return page

    def quick_connect(self) -> None:
        self.show_page(self.raw_page())

    def disconnect(self) -> None:
        page = self.current
        if page is not None:
            page.disconnect()

    def _disconnect_key(self, key: str) -> None:
        page = self.pages.get(key)
        if page is not None:
            page.disconnect()

    def open_connection(self, key: str) -> ConnectionPage | None:
        """Connects a saved connection (or reconnects an open one) and shows it."""
        page = self.pages.get(key)
        if page is not None and (page.raw or key.startswith("adhoc:") or is_demo_key(key)):
            page.reconnect()
            self.show_page(page)
            return page
        try:
            profile = self.profile_store.get(key)
        except KeyError as exc:
            self.show_error(str(exc).strip("'\""))
            return None
        from app import platforms
        from app.secrets import resolve

        platform = platforms.get(profile.platform)
        try:
            values = platform.validate(resolve(profile, self.secret_store))
            config = platform.connection(values)
        except (ConfigError, ValueError) as exc:
            self.show_error(f"{profile.name} cannot connect: {exc} Choose Edit to complete its settings.")
            if page is not None:
                self.show_page(page)
            return None
        if page is None:
            page = self._add_page(
                key, profile.name, raw=False, max_rows=profile.max_rows, retention=profile.retention()
            )
        page.title = profile.name
        page.connect_platform(profile.platform, values, config, history_name_for_profile(profile.id))
        if not self.secret_store.available and self.secret_store.problem:
            page.show_notice("keyring", self.secret_store.problem)
        self.show_page(page)
        return page

    def has_saved_connections(self) -> bool:
        """Whether the user has saved a connection (a window that never saved one has no profiles file)."""
        if self._profiles is None and not _profiles_exist():
            return False
        return bool(self.profile_store.profiles())

    def open_on_start(self, demo_if_none_saved: bool = False) -> list[ConnectionPage]:
        """Connects every saved connection marked "open on start"; shows the first. With nothing
        saved yet and `demo_if_none_saved`, starts the demo instead (a first start of the console)."""
        opened = []
        if not self.has_saved_connections():
            if demo_if_none_saved:
                self.demo.start()
            return opened
        for p in self.profile_store.profiles():
            if p.open_on_start:
                page = self.open_connection(p.id)
                if page is not None:
                    opened.append(page)
        if opened:
            self.show_page(opened[0])
        return opened

    # ----- saved connections
    def new_connection(self, platform_name: str) -> None:
        result = self._run_wizard(platform_name, None)
        if result is None:
            return
        profile = self._save_result(result, None)
        if profile is not None:
            self.refresh_sidebar()
            self.open_connection(profile.id)

    def edit_connection(self, key: str) -> None:
        try:
            existing = self.profile_store.get(key)
        except KeyError:
            return
        result = self._run_wizard(existing.platform, existing)
        if result is None:
            return
        profile = self._save_result(result, existing)
        if profile is None:
            return
        self.refresh_sidebar()
        page = self.pages.get(key)
        if page is not None:
            page.title = profile.name
            if page.active:
                self.open_connection(key)  # reconnect with the new settings

    def _run_wizard(self, platform_name: str, existing):
        from ui.connection.wizard import open_wizard

        taken = {p.name.lower() for p in self.profile_store.profiles() if existing is None or p.id != existing.id}
        return open_wizard(self, platform_name, existing=existing, secrets=self.secret_store, taken_names=taken)

    def _save_result(self, result, existing):
        from app.wizard_flow import save_result

        try:
            return save_result(result, self.profile_store, self.secret_store, existing=existing)
        except (ConfigError, ValueError, OSError) as exc:
            self.show_error(f"The connection could not be saved: {exc}")
            return None

    def duplicate_connection(self, key: str) -> None:
        try:
            original = self.profile_store.get(key)
            copy = self.profile_store.duplicate(original.id)
            self.secret_store.copy(original.id, copy.id, original.secret_fields())
        except (KeyError, ConfigError, ValueError, OSError) as exc:
            self.show_error(f"The connection could not be duplicated: {exc}")
            return
        self.refresh_sidebar()
        self.sidebar.select(copy.id)

    def rename_connection(self, key: str) -> None:
        try:
            profile = self.profile_store.get(key)
        except KeyError:
            return
        name, ok = QInputDialog.getText(self, "Rename connection", "New name:", text=profile.name)
        if not ok or not name.strip() or name.strip() == profile.name:
            return
        try:
            self.profile_store.rename(profile.id, name.strip())
        except (ConfigError, ValueError, OSError) as exc:
            self.show_error(f"The connection could not be renamed: {exc}")
            return
        page = self.pages.get(key)
        if page is not None:
            page.title = name.strip()
            page._show_title()
        self.refresh_sidebar()

    def delete_connection(self, key: str, *, confirm: bool = True, with_history: bool | None = None) -> bool:
        try:
            profile = self.profile_store.get(key)
        except KeyError:
            return False
        if confirm:
            box = QMessageBox(
                QMessageBox.Icon.Question,
                "Delete connection",
                f"Delete the connection “{profile.name}” and its secrets from the keyring?",
                QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel,
                self,
            )
            history_box = QCheckBox("Also delete its history (the events kept on disk)")
            box.setCheckBox(history_box)
            if box.exec() != QMessageBox.StandardButton.Yes:
                return False
            with_history = history_box.isChecked()
        page = self.pages.pop(key, None)
        if page is not None:
            page.shutdown()
            self.stack.removeWidget(page)
            page.deleteLater()
            self.stack.setCurrentWidget(self.welcome)
        try:
            self.secret_store.delete_profile(profile)
            self.profile_store.delete(profile.id)
        except (ConfigError, ValueError, OSError) as exc:
            self.show_error(f"The connection could not be deleted: {exc}")
            return False
        if with_history:
            _delete_history(history_name_for_profile(profile.id))
        self.refresh_sidebar()
        self._show_state(self.current)
        return True

    def save_open_connection(self, key: str) -> None:
        """Keeps an open connection that is not saved (e.g. from the command line) as a profile."""
        from app import platforms
        from app.profiles import new_profile

        page = self.pages.get(key)
        if page is None or page.platform_name is None or page.profile is None or is_demo_key(key):
            return  # the demo's connections are never saved
        platform = platforms.get(page.platform_name)
        name, ok = QInputDialog.getText(
            self, "Save connection", "Name:", text=self.profile_store.unique_name(page.title)
        )
        if not ok or not name.strip():
            return
        secret_names = {f.name for f in platform.fields if f.kind == "secret"}
        values = {k: v for k, v in page.profile.items() if k not in secret_names}
        try:
            profile = self.profile_store.add(new_profile(name.strip(), page.platform_name, values))
            for field in secret_names:
                if page.profile.get(field):
                    self.secret_store.set(profile.id, field, str(page.profile[field]))
        except (ConfigError, ValueError, OSError) as exc:
            self.show_error(f"The connection could not be saved: {exc}")
            return
        # The open page is now that profile's.
        del self.pages[key]
        page.key, page.title = profile.id, profile.name
        self.pages[profile.id] = page
        page._show_title()
        self.refresh_sidebar()
        self.sidebar.select(profile.id, emit=False)

    # ----- menus
    def _export(self) -> None:
        page = self.current
        if page is None or page.workspace is None or page.platform_name is None:
            self.show_error("Export works on the uplink table of a platform connection; open one first.")
            return
        page.workspace.export()

    def _about(self) -> None:
        from app import platforms

        names = ", ".join(p.label for p in platforms.available() if p.name != "generic")
        QMessageBox.about(
            self,
            "About Uplink Console",
            f"<b>Uplink Console {__version__}</b><p>A desktop MQTT console that speaks {names} natively, "
            "and any MQTT broker.</p>",
        )

    # ----- status
    def show_error(self, text: str) -> None:
        """One line in the status bar (the whole text in its tooltip)."""
        line = " ".join(str(text).split())
        self.error_label.setToolTip(str(text))
        self.error_label.setText(line if len(line) <= 220 else line[:219] + "…")

    def _page_error(self, page: ConnectionPage, text: str) -> None:
        if page is self.current:
            self.show_error(text)

    def _page_state(self, page: ConnectionPage, change: StateChange) -> None:
        text, color = _state_text(change)
        self.sidebar.set_state(page.key, text, color)
        if page is self.current:
            self._show_state(page)
        self.connection_state_changed.emit(page, change)

    def _show_state(self, page: ConnectionPage | None) -> None:
        if page is None:
            self.state_label.setText("No connection")
            self.state_label.setStyleSheet("background: #6b6b6b; color: white;")
            self.show_error("")
            return
        change = page.last_change
        text, color = STATE_STYLE[change.state]
        if change.state == SessionState.CONNECTED and change.mqtt_version:
            text = f"Connected · MQTT {change.mqtt_version}"
        if change.state == SessionState.CONNECTED and page.config is not None and verification_notice(page.config):
            text += " · ⚠ not verified"
            color = "#9a6700"
        elif change.state == SessionState.RECONNECTING and change.retry_in is not None:
            text = f"Reconnecting in {change.retry_in:.0f} s (attempt {change.attempt})"
        self.state_label.setText(text)
        self.state_label.setStyleSheet(f"background: {color}; color: white;")
        self.show_error(page.last_error)

    def rows_in_tables(self) -> tuple[int, float | None, float | None]:
        """Rows that reached every open connection's table, with the first and last times."""
        rows, firsts, lasts = 0, [], []
        for page in self.pages.values():
            n, first, last = page.rows_in_tables()
            rows += n
            if first is not None:
                firsts.append(first)
            if last is not None:
                lasts.append(last)
        return rows, min(firsts) if firsts else None, max(lasts) if lasts else None

    def _update_rate(self) -> None:
        now = time.monotonic()
        page = self.current
        total = page.rows_in_tables()[0] if page is not None else 0
        rate = (total - self._last_total) / max(now - self._last_tick, 1e-6) if total >= self._last_total else 0
        self._last_total, self._last_tick = total, now
        self.rate_label.setText(f"{rate:,.0f} msg/s" if page is not None else "")

    def closeEvent(self, event) -> None:  # noqa: N802
        from ui.common.background import cancel_all as cancel_operations
        from ui.export.export_dialog import cancel_all

        cancel_all(5.0)
        cancel_operations(5.0)
        for page in self.pages.values():
            page.shutdown()
        self.demo.shutdown()  # its simulators and broker, after the connections to them
        super().closeEvent(event)


def _state_text(change: StateChange) -> tuple[str, str]:
    text, color = STATE_STYLE[change.state]
    return ("" if change.state == SessionState.DISCONNECTED else text.rstrip("…")), color


def _profiles_exist() -> bool:
    """Whether a profiles file exists (a window that never needs the store does not make one)."""
    try:
        from app.profiles import ProfileStore, config_dir
    except ImportError:
        return False
    del ProfileStore
    return (config_dir() / "profiles.json").exists()


def _delete_history(name: str) -> None:
    from app.history import HistoryError, history_path

    try:
        path = history_path(name)
    except HistoryError:
        return
    from app.history import remove_database

    for problem in remove_database(path):
        log.warning("history not deleted: %s", problem)

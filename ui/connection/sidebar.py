"""The sidebar of connections: every saved connection (and any open one not saved), its platform,
broker and live state, with New, Edit, Duplicate, Rename, Delete and Connect/Disconnect.

The sidebar only shows and asks; the window does what is asked (it owns the profile store, the
keyring and the open connections). Entries are (key, name, platform, broker); key is a saved
profile's id, or the key of an open connection that is not saved ("raw", "adhoc:tts" ...).

A saved connection whose chosen certificates expire within 30 days, or have expired, carries a
mark in words at the start of its second line (and the sentences in its tooltip), as does one
that connects with an expired certificate on purpose (`allow_expired`). The sidebar reads a
connection's settings through `profile_lookup` (key -> app.profiles.Profile or None), or else
from the saved connections the window gave the certificate library. The marks are worked out
when the entries change (ui/certificates/expiry.py: files read on a worker thread and cached),
never while painting.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from PySide6.QtCore import QPoint, QRect, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QColor, QFont, QFontMetrics, QPainter, QPalette
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMenu,
    QPushButton,
    QStyle,
    QStyledItemDelegate,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ui.common.labels import PLATFORM_COLORS, PLATFORM_LABELS

KEY_ROLE = Qt.ItemDataRole.UserRole
DEMO_COLOR = "#8250df"  # the demo's mark, as its banner (ui/demo/banner.py)
ENTRY_ROLE = Qt.ItemDataRole.UserRole + 1


@dataclass
class Entry:
    key: str
    name: str
    platform: str | None  # None: raw MQTT
    broker: str
    saved: bool = True
    state: str = ""  # "Connected", "Reconnecting…" … ("" when closed)
    state_color: str = "#6b6b6b"
    certificate: object | None = None  # a ui.certificates.expiry.CertificateMark, or None
    demo: bool = False  # one of the demo's connections (ui/demo/): marked DEMO, never saved


class _EntryDelegate(QStyledItemDelegate):
    """Two lines: a platform badge, the name in bold; the broker and the state below."""

    def sizeHint(self, option, index) -> QSize:  # noqa: N802 - Qt's name
        h = option.fontMetrics.height()
        return QSize(220, 2 * h + 14)

    def paint(self, painter: QPainter, option, index) -> None:
        entry: Entry = index.data(ENTRY_ROLE)
        if entry is None:
            return super().paint(painter, option, index)
        painter.save()
        style = option.widget.style() if option.widget else None
        if style is not None:
            style.drawPrimitive(QStyle.PrimitiveElement.PE_PanelItemViewItem, option, painter, option.widget)
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        pal = option.palette
        text_color = pal.color(QPalette.ColorRole.HighlightedText if selected else QPalette.ColorRole.Text)
        hint_color = text_color if selected else pal.color(QPalette.ColorRole.PlaceholderText)
        r = option.rect.adjusted(6, 5, -6, -5)
        h = option.fontMetrics.height()
        # platform badge
        badge = QRect(r.left(), r.top() + 2, 34, 2 * h - 2)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(QColor(PLATFORM_COLORS.get(entry.platform or "raw", "#57606a")))
        painter.drawRoundedRect(badge, 5, 5)
        small = QFont(option.font)
        small.setPointSizeF(max(6.5, option.font.pointSizeF() * 0.8))
        small.setBold(True)
        painter.setFont(small)
        painter.setPen(QColor("white"))
        painter.drawText(badge, Qt.AlignmentFlag.AlignCenter, _badge_text(entry.platform))
        # line 1: a state dot and the name; line 2: the broker, and the state in words at the right
        x = badge.right() + 8
        top = QRect(x, r.top(), r.right() - x, h)
        bottom = QRect(x, r.top() + h + 3, r.right() - x, h)
        painter.setPen(Qt.PenStyle.NoPen)
        if entry.state:
            painter.setBrush(QColor(entry.state_color))
            painter.drawEllipse(QPoint(top.right() - 4, top.center().y() + 1), 4, 4)
        bold = QFont(option.font)
        bold.setBold(True)
        painter.setFont(bold)
        painter.setPen(text_color)
        name = entry.name + ("" if entry.saved or entry.demo else "  (not saved)")
        name_rect = top.adjusted(0, 0, -14 if entry.state else 0, 0)
        painter.drawText(
            name_rect,
            Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
            QFontMetrics(bold).elidedText(name, Qt.TextElideMode.ElideRight, name_rect.width()),
        )
        painter.setFont(option.font)
        fm = option.fontMetrics
        state_w = fm.horizontalAdvance(entry.state) + 8 if entry.state else 0
        if entry.state:
            painter.setPen(QColor(entry.state_color) if not selected else text_color)
            painter.drawText(bottom, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter, entry.state)
        broker_rect = bottom.adjusted(0, 0, -state_w, 0)
        marks = [(m.text, m.color) for m in (entry.certificate,) if m is not None]
        if entry.demo:
            marks.insert(0, ("DEMO", DEMO_COLOR))
        for text, color in marks:  # line 2 starts with the marks: pills with words in them
            painter.setFont(small)
            pill_w = min(QFontMetrics(small).horizontalAdvance(text) + 10, broker_rect.width())
            pill = QRect(broker_rect.left(), broker_rect.top(), pill_w, h)
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(QColor(color))
            painter.drawRoundedRect(pill, 4, 4)
            painter.setPen(QColor("white"))
            painter.drawText(
                pill,
                Qt.AlignmentFlag.AlignCenter,
                QFontMetrics(small).elidedText(text, Qt.TextElideMode.ElideRight, pill_w - 6),
            )
            painter.setFont(option.font)
            broker_rect = broker_rect.adjusted(pill_w + 6, 0, 0, 0)
        painter.setPen(hint_color)
        painter.drawText(
            broker_rect,
            Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
            fm.elidedText(entry.broker, Qt.TextElideMode.ElideMiddle, broker_rect.width()),
        )
        painter.restore()


def _tooltip(e: Entry) -> str:
    text = f"{e.name}\n{PLATFORM_LABELS.get(e.platform or 'generic', 'MQTT')} · {e.broker}"
    if e.demo:
        text += "\nThe demo: simulated devices on this computer, not saved"
    if e.certificate is not None:
        text += "\n" + e.certificate.tooltip
    return text


def _badge_text(platform: str | None) -> str:
    return {"tts": "TTS", "tektelic": "TEK", "akenza": "AKZ", "thingpark": "TPK", "drogue": "DRG"}.get(
        platform or "", "MQTT"
    )


class ConnectionSidebar(QWidget):
    selected = Signal(str)  # key (the window shows that connection)
    open_requested = Signal(str)  # key: connect it (double click, Connect)
    disconnect_requested = Signal(str)
    new_requested = Signal(str)  # platform name ("generic" for a plain MQTT broker): the wizard
    quick_raw_requested = Signal()  # raw MQTT without saving
    edit_requested = Signal(str)
    duplicate_requested = Signal(str)
    rename_requested = Signal(str)
    delete_requested = Signal(str)
    save_requested = Signal(str)  # an open connection that is not saved

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        from app import platforms

        self._entries: dict[str, Entry] = {}
        self.profile_lookup: Callable[[str], object | None] | None = None  # key -> Profile (the window's)
        self._expiry = None  # ui.certificates.expiry.ExpiryWatcher, made when a profile is first looked up
        title = QLabel("<b>Connections</b>")
        self.new_button = QToolButton()
        self.new_button.setText("New")
        self.new_button.setToolTip("Set up a new connection: choose the platform")
        self.new_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.new_button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        new_menu = QMenu(self.new_button)
        for p in platforms.available():
            if p.name == "generic":
                continue
            act = new_menu.addAction(f"{p.label}…")
            act.triggered.connect(lambda _=False, name=p.name: self.new_requested.emit(name))
        new_menu.addSeparator()
        act = new_menu.addAction("Any MQTT broker (saved)…")
        act.triggered.connect(lambda: self.new_requested.emit("generic"))
        act = new_menu.addAction("Quick connect: raw MQTT, not saved")
        act.triggered.connect(self.quick_raw_requested.emit)
        self.new_button.setMenu(new_menu)
        head = QHBoxLayout()
        head.setContentsMargins(0, 0, 0, 0)
        head.addWidget(title, 1)
        head.addWidget(self.new_button)

        self.list = QListWidget()
        self.list.setItemDelegate(_EntryDelegate(self.list))
        self.list.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.list.customContextMenuRequested.connect(self._context_menu)
        self.list.currentItemChanged.connect(self._current_changed)
        self.list.itemDoubleClicked.connect(lambda item: self.open_requested.emit(item.data(KEY_ROLE)))
        self.empty_hint = QLabel("No saved connections yet.\nChoose New, or a platform on the right.")
        self.empty_hint.setObjectName("hint")
        self.empty_hint.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty_hint.setWordWrap(True)

        self.connect_button = QPushButton("Connect")
        self.connect_button.setToolTip("Connect the selected connection (or double-click it)")
        self.connect_button.clicked.connect(self._connect_clicked)
        self.more_button = QToolButton()
        self.more_button.setText("More")
        self.more_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.more_menu = QMenu(self.more_button)
        self.actions: dict[str, QAction] = {}
        for name, text, signal in (
            ("edit", "Edit…", self.edit_requested),
            ("duplicate", "Duplicate", self.duplicate_requested),
            ("rename", "Rename…", self.rename_requested),
            ("save", "Save…", self.save_requested),
            ("delete", "Delete…", self.delete_requested),
        ):
            act = QAction(text, self)
            act.triggered.connect(lambda _=False, s=signal: self._emit_for_current(s))
            self.actions[name] = act
            self.more_menu.addAction(act)
        self.more_button.setMenu(self.more_menu)
        buttons = QHBoxLayout()
        buttons.setContentsMargins(0, 0, 0, 0)
        buttons.addWidget(self.connect_button, 1)
        buttons.addWidget(self.more_button)

        lay = QVBoxLayout(self)
        lay.setContentsMargins(6, 6, 0, 6)
        lay.addLayout(head)
        lay.addWidget(self.list, 1)
        lay.addWidget(self.empty_hint, 1)
        lay.addLayout(buttons)
        self._update_buttons()

    # ----- contents
    def set_entries(self, entries: list[Entry]) -> None:
        """Replaces the list, keeping the selection and the states shown."""
        current = self.current_key()
        for e in entries:
            old = self._entries.get(e.key)
            if old is not None and not e.state:
                e.state, e.state_color = old.state, old.state_color
        self._entries = {e.key: e for e in entries}
        for e in entries:
            e.certificate = self._certificate_mark(e)
        self.list.blockSignals(True)
        self.list.clear()
        for e in entries:
            item = QListWidgetItem(e.name)
            item.setData(KEY_ROLE, e.key)
            item.setData(ENTRY_ROLE, e)
            item.setToolTip(_tooltip(e))
            self.list.addItem(item)
        self.list.blockSignals(False)
        self.empty_hint.setVisible(not entries)
        self.list.setVisible(bool(entries))
        if current is not None and current in self._entries:
            self.select(current, emit=False)
        self._update_buttons()

    def entries(self) -> list[Entry]:
        return list(self._entries.values())

    # ----- certificate marks
    def _certificate_mark(self, entry: Entry):
        if not entry.saved:
            return None
        try:
            profile = (self.profile_lookup or self._window_profile)(entry.key)
        except (KeyError, LookupError, OSError, ValueError):
            return None
        values = getattr(profile, "values", None)
        if not isinstance(values, dict):
            return None
        return self.expiry.mark_for(values)

    def _window_profile(self, key: str):
        """Without a `profile_lookup`: the saved connection from the window's profile store, which
        the window hands to the certificate library (ui/main_window.py _build_tools_menu)."""
        store = self.expiry.library.profile_store()
        return store.get(key) if store is not None else None

    @property
    def expiry(self):
        """The watcher that works out the marks (made at first use)."""
        if self._expiry is None:
            from ui.certificates.expiry import ExpiryWatcher

            self._expiry = ExpiryWatcher(parent=self)
            self._expiry.updated.connect(self.refresh_certificate_marks)
            self._expiry.library.changed.connect(self.refresh_certificate_marks)
            self._expiry_timer = QTimer(self)  # days count down while the window stays open
            self._expiry_timer.setInterval(3600 * 1000)
            self._expiry_timer.timeout.connect(self.refresh_certificate_marks)
            self._expiry_timer.start()
        return self._expiry

    def refresh_certificate_marks(self) -> None:
        """Works the marks out again (a file was read, the certificate store or a profile changed)."""
        for i in range(self.list.count()):
            item = self.list.item(i)
            entry = self._entries.get(item.data(KEY_ROLE))
            if entry is None:
                continue
            mark = self._certificate_mark(entry)
            if mark != entry.certificate:
                entry.certificate = mark
                item.setData(ENTRY_ROLE, entry)
                item.setToolTip(_tooltip(entry))

    def set_state(self, key: str, text: str, color: str) -> None:
        entry = self._entries.get(key)
        if entry is None:
            return
        entry.state, entry.state_color = text, color
        for i in range(self.list.count()):
            item = self.list.item(i)
            if item.data(KEY_ROLE) == key:
                item.setData(ENTRY_ROLE, entry)
                self.list.update(self.list.indexFromItem(item))
        self._update_buttons()

    def select(self, key: str, emit: bool = True) -> None:
        for i in range(self.list.count()):
            item = self.list.item(i)
            if item.data(KEY_ROLE) == key:
                if not emit:
                    self.list.blockSignals(True)
                self.list.setCurrentItem(item)
                self.list.blockSignals(False)
                break
        self._update_buttons()

    def current_key(self) -> str | None:
        item = self.list.currentItem()
        return item.data(KEY_ROLE) if item is not None else None

    # ----- asking
    def _current_changed(self, item, _previous) -> None:
        self._update_buttons()
        if item is not None:
            self.selected.emit(item.data(KEY_ROLE))

    def _connect_clicked(self) -> None:
        key = self.current_key()
        if key is None:
            return
        entry = self._entries[key]
        if entry.state and entry.state not in ("Disconnected", "Failed"):
            self.disconnect_requested.emit(key)
        else:
            self.open_requested.emit(key)

    def _emit_for_current(self, signal) -> None:
        key = self.current_key()
        if key is not None:
            signal.emit(key)

    def _update_buttons(self) -> None:
        key = self.current_key()
        entry = self._entries.get(key) if key else None
        self.connect_button.setEnabled(entry is not None)
        self.more_button.setEnabled(entry is not None)
        live = entry is not None and entry.state and entry.state not in ("Disconnected", "Failed")
        self.connect_button.setText("Disconnect" if live else "Connect")
        saved = entry is not None and entry.saved
        for name in ("edit", "duplicate", "rename", "delete"):
            self.actions[name].setEnabled(bool(saved))
        self.actions["save"].setEnabled(
            entry is not None and not entry.saved and not entry.demo and entry.platform is not None
        )
        self.actions["save"].setVisible(entry is not None and not entry.saved and not entry.demo)

    def _context_menu(self, pos) -> None:
        item = self.list.itemAt(pos)
        if item is None:
            return
        self.list.setCurrentItem(item)
        menu = QMenu(self)
        menu.addAction(self.connect_button.text(), self._connect_clicked)
        menu.addSeparator()
        for act in self.actions.values():
            if act.isVisible():
                menu.addAction(act)
        menu.exec(self.list.viewport().mapToGlobal(pos))

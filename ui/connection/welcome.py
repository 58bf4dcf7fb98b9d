"""The welcome page: what the window shows before any connection is open, one tile per platform,
and the demo one click away (simulated devices of every platform on this computer, see ui/demo/)."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QFrame, QGridLayout, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from ui.common.labels import PLATFORM_COLORS

# What a first-time user reads on each tile: who it is for, in the platform's own words.
TILE_TEXT = {
    "tts": "The Things Network and The Things Industries: uplinks, joins and downlinks of an application.",
    "tektelic": "Tektelic KonaServer's MQTT_V2 integration. Paste the integration's JSON to skip the typing.",
    "akenza": "akenza device connector: the console is the device, with its JWT or uplink secret.",
    "thingpark": "Actility ThingPark's MQTT connection. Paste the connection's JSON to skip the typing.",
    "drogue": "Drogue Cloud's MQTT integration: CloudEvents, structured or binary.",
}


DEMO_TEXT = (
    "<b>See it work first.</b> The demo runs a broker and simulated devices of all five platforms on this "
    "computer: uplinks streaming, devices, charts, errors, and downlinks the devices answer. Nothing to set up."
)
DEMO_STARTING_TEXT = (
    "<b>The demo is starting.</b> A broker and simulated devices of all five platforms, on this computer; "
    "their connections appear on the left in a moment."
)
DEMO_RUNNING_TEXT = (
    "<b>The demo is running.</b> Its connections are on the left, marked DEMO: simulated devices of all five "
    "platforms on this computer."
)


class _Tile(QFrame):
    clicked = Signal()

    def __init__(self, title: str, text: str, color: str, button: str, parent=None) -> None:
        super().__init__(parent)
        self.setObjectName("tile")
        self.setStyleSheet(
            f"QFrame#tile {{ border: 1px solid palette(mid); border-left: 5px solid {color}; border-radius: 4px; }}"
        )
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        self.setMinimumWidth(240)
        name = QLabel(f"<b>{title}</b>")
        body = QLabel(text)
        body.setWordWrap(True)
        body.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        # Word-wrapped labels in a grid get the height of one line unless told: room for four.
        body.setMinimumHeight(body.fontMetrics().lineSpacing() * 4 + 4)
        self.button = QPushButton(button)
        self.button.clicked.connect(self.clicked.emit)
        lay = QVBoxLayout(self)
        lay.addWidget(name)
        lay.addWidget(body, 1)
        lay.addWidget(self.button, 0, Qt.AlignmentFlag.AlignLeft)

    def mouseReleaseEvent(self, event) -> None:  # noqa: N802 - Qt's name
        if event.button() == Qt.MouseButton.LeftButton:
            self.clicked.emit()
        super().mouseReleaseEvent(event)


class WelcomePage(QWidget):
    platform_chosen = Signal(str)  # the wizard of that platform ("generic": any MQTT broker)
    quick_raw = Signal()
    demo = Signal()

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        from app import platforms

        heading = QLabel("<h2>Connect to your devices</h2>")
        intro = QLabel(
            "Choose your network server or platform: the console asks for exactly what it needs, checks it "
            "against a real connection, and keeps it (secrets in your system's keyring). Saved connections "
            "appear on the left and open with a double-click."
        )
        intro.setWordWrap(True)
        self.demo_box = self._demo_box()
        grid = QGridLayout()
        grid.setSpacing(10)
        self.tiles: dict[str, _Tile] = {}
        names = [p.name for p in platforms.available() if p.name != "generic"]
        for i, name in enumerate(names):
            p = platforms.get(name)
            tile = _Tile(p.label, TILE_TEXT.get(name, p.description), PLATFORM_COLORS.get(name, "#57606a"), "Set up…")
            tile.clicked.connect(lambda n=name: self.platform_chosen.emit(n))
            self.tiles[name] = tile
            grid.addWidget(tile, i // 3, i % 3)
        generic = _Tile(
            "Any MQTT broker",
            "Mosquitto, HiveMQ, EMQX … with TLS, client certificates and websockets: a raw message log, "
            "subscriptions and a publish box.",
            PLATFORM_COLORS["generic"],
            "Quick connect",
        )
        generic.clicked.connect(self.quick_raw.emit)
        self.tiles["raw"] = generic
        n = len(names)
        grid.addWidget(generic, n // 3, n % 3)
        for c in range(3):
            grid.setColumnStretch(c, 1)
        box = QWidget()
        box.setMaximumWidth(1000)
        inner = QVBoxLayout(box)
        inner.addWidget(heading)
        inner.addWidget(intro)
        inner.addSpacing(8)
        inner.addLayout(grid)
        inner.addSpacing(12)
        inner.addWidget(self.demo_box)
        inner.addStretch(1)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(24, 16, 24, 16)
        lay.addWidget(box, 0, Qt.AlignmentFlag.AlignHCenter)
        lay.addStretch(1)

    def _demo_box(self) -> QFrame:
        box = QFrame()
        box.setObjectName("demoEntry")
        box.setStyleSheet(
            "QFrame#demoEntry { background: #fbefff; border: 1px solid #c297ff; border-radius: 4px; }"
            " QFrame#demoEntry QLabel { border: none; background: transparent; color: #3e1f79; }"
        )
        self.demo_text = QLabel(DEMO_TEXT)
        self.demo_text.setWordWrap(True)
        self.demo_button = QPushButton("Open the demo")
        self.demo_button.setToolTip("Start a broker and simulated devices of every platform on this computer")
        self.demo_button.clicked.connect(self.demo.emit)
        lay = QHBoxLayout(box)
        lay.setContentsMargins(12, 8, 10, 8)
        lay.addWidget(self.demo_text, 1)
        lay.addWidget(self.demo_button, 0, Qt.AlignmentFlag.AlignVCenter)
        return box

    def set_demo_state(self, state: str) -> None:
        """The demo's entry follows the demo (ui/demo/controller.py states): while it starts or
        runs, the entry says so instead of offering to start another."""
        text, button, enabled = {
            "starting": (DEMO_STARTING_TEXT, "Starting…", False),
            "running": (DEMO_RUNNING_TEXT, "Show the demo", True),
            "stopping": (DEMO_TEXT, "Stopping…", False),
        }.get(state, (DEMO_TEXT, "Open the demo", True))
        self.demo_text.setText(text)
        self.demo_button.setText(button)
        self.demo_button.setEnabled(enabled)

"""The strip above a demo connection that says what the user is looking at.

A person trying the console for the first time lands in the demo (no saved connection yet), so
the strip has to say, without being read twice, that these devices are simulated on this
computer, and offer the way out: "Connect your own platform…" leads to the platforms' wizards.
It also shows the demo starting (a broker and a process of simulators take a second or two) and,
when it could not start, the sentence saying why with "Try again".
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QProgressBar, QPushButton, QSizePolicy

STARTING_TEXT = "<b>Starting the demo…</b> an MQTT broker on this computer and simulated devices of the five platforms."
RUNNING_TEXT = (
    "<b>This is a demo with simulated devices.</b> Devices of all five platforms are simulated on this "
    "computer and publish to a broker here{broker}. Explore the uplinks, devices, charts and downlinks; "
    "nothing leaves this computer."
)
FAILED_TEXT = "<b>The demo could not start.</b> {sentence}"

_STYLE = (
    "QFrame#demoBanner { background: #fbefff; border: 1px solid #c297ff; border-radius: 4px; }"
    " QFrame#demoBanner QLabel { color: #3e1f79; border: none; background: transparent; }"
    " QFrame#demoBanner QLabel#demoPill { background: #8250df; color: white; border-radius: 3px; padding: 1px 6px;"
    " font-weight: bold; }"
)


class DemoBanner(QFrame):
    """Hidden until the controller shows one of its three states."""

    connect_own = Signal()  # "Connect your own platform…"
    stop_requested = Signal()
    retry_requested = Signal()

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setObjectName("demoBanner")
        self.setStyleSheet(_STYLE)
        self.state = "hidden"
        self.pill = QLabel("DEMO")
        self.pill.setObjectName("demoPill")
        self.pill.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Fixed)
        self.text = QLabel()
        self.text.setWordWrap(True)
        self.text.setTextFormat(Qt.TextFormat.RichText)
        self.busy = QProgressBar()
        self.busy.setRange(0, 0)  # a busy indicator: starting has no steps worth counting
        self.busy.setTextVisible(False)
        self.busy.setFixedSize(90, 10)
        self.connect_button = QPushButton("Connect your own platform…")
        self.connect_button.setDefault(True)
        self.connect_button.setToolTip("Set up a connection to your own network server or broker")
        self.connect_button.clicked.connect(self.connect_own.emit)
        self.stop_button = QPushButton("Stop the demo")
        self.stop_button.setToolTip("Close the demo's connections and stop its broker and simulated devices")
        self.stop_button.clicked.connect(self.stop_requested.emit)
        self.retry_button = QPushButton("Try again")
        self.retry_button.clicked.connect(self.retry_requested.emit)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(10, 6, 8, 6)
        lay.setSpacing(10)
        lay.addWidget(self.pill, 0, Qt.AlignmentFlag.AlignVCenter)
        lay.addWidget(self.text, 1)
        lay.addWidget(self.busy, 0, Qt.AlignmentFlag.AlignVCenter)
        lay.addWidget(self.retry_button)
        lay.addWidget(self.connect_button)
        lay.addWidget(self.stop_button)
        self.setVisible(False)

    def show_starting(self) -> None:
        self._show("starting", STARTING_TEXT, busy=True, stop=False, retry=False)

    def show_running(self, broker: str | None = None) -> None:
        where = f" ({broker})" if broker else ""
        self._show("running", RUNNING_TEXT.format(broker=where), busy=False, stop=True, retry=False)

    def show_stopping(self) -> None:
        self._show("stopping", "<b>Stopping the demo…</b>", busy=True, stop=False, retry=False)

    def show_failed(self, sentence: str) -> None:
        from html import escape

        self._show("failed", FAILED_TEXT.format(sentence=escape(sentence)), busy=False, stop=False, retry=True)

    def _show(self, state: str, text: str, *, busy: bool, stop: bool, retry: bool) -> None:
        self.state = state
        self.text.setText(text)
        self.busy.setVisible(busy)
        self.stop_button.setVisible(stop)
        self.retry_button.setVisible(retry)
        self.stop_button.setEnabled(True)

    @property
    def text_shown(self) -> str:
        """The banner's sentence as plain text (what a reader sees)."""
        from PySide6.QtGui import QTextDocument

        doc = QTextDocument()
        doc.setHtml(self.text.text())
        return doc.toPlainText()

"""The wizard's pages: settings pages generated from the platform's fields, and the three written
by hand (import a configuration body, test the connection, name it).

Every page reads and writes the one WizardFlow (app/wizard_flow.py); validity is the flow's
(`isComplete` asks it, `completeChanged` follows every edit), so Next waits until the platform
accepts the page, with the reason next to the field.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QFontDatabase
from PySide6.QtWidgets import (
    QCheckBox,
    QFileDialog,
    QFormLayout,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QStyle,
    QToolButton,
    QVBoxLayout,
    QWidget,
    QWizardPage,
)

from app import connection_test
from app.progress import Progress
from app.wizard_flow import PROBLEMS, PageSpec, WizardFlow
from ui.common.background import BackgroundOp
from ui.connection.wizard.editors import FieldEditor

log = logging.getLogger(__name__)
MAX_IMPORT_FILE = 4 * 1024 * 1024  # a configuration body with its certificates is a few KiB
_BOX = {
    "info": "background: #ddf4ff; border: 1px solid #54aeff; color: #0a3069;",
    "ok": "background: #dafbe1; border: 1px solid #4ac26b; color: #044f1e;",
    "warning": "background: #fff8c5; border: 1px solid #d4a72c; color: #4d2d00;",
    "error": "background: #ffebe9; border: 1px solid #ff8182; color: #82071e;",
}
_ICONS = {
    "info": QStyle.StandardPixmap.SP_MessageBoxInformation,
    "ok": QStyle.StandardPixmap.SP_DialogApplyButton,
    "warning": QStyle.StandardPixmap.SP_MessageBoxWarning,
    "error": QStyle.StandardPixmap.SP_MessageBoxCritical,
}


class MessageBox(QFrame):
    """A tinted box with an icon and a sentence (page notes, import and test outcomes)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("wizardBox")
        lay = QHBoxLayout(self)
        lay.setContentsMargins(8, 6, 8, 6)
        self.icon = QLabel()
        self.text = QLabel()
        self.text.setWordWrap(True)
        self.text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        lay.addWidget(self.icon, 0, Qt.AlignmentFlag.AlignTop)
        lay.addWidget(self.text, 1)
        self.level = ""
        self.hide()

    def show_text(self, text: str, level: str = "info") -> None:
        if not text:
            self.hide()
            return
        if level != self.level:
            self.level = level
            size = self.fontMetrics().height()
            self.icon.setPixmap(self.style().standardIcon(_ICONS[level]).pixmap(size, size))
            self.setStyleSheet(f"QFrame#wizardBox {{ {_BOX[level]} border-radius: 4px; }} QLabel {{ border: none; }}")
        self.text.setText(text)
        self.show()


def _plain(text: str) -> QLabel:
    label = QLabel(text)
    label.setWordWrap(True)
    return label


class FieldGrid(QGridLayout):
    """Label and field side by side, like a form. A grid, not a QFormLayout: QFormLayout gives a
    field whose wrapped hint grows later (a reason shown under it) the height of one line, so
    the texts overlap (measured with PySide6 6.12)."""

    def __init__(self) -> None:
        super().__init__()
        self.setColumnStretch(1, 1)
        self.setHorizontalSpacing(12)
        self.setVerticalSpacing(8)
        self.rows: dict[QWidget, QWidget] = {}  # field -> its label

    def addRow(self, label: QWidget, field: QWidget) -> None:  # noqa: N802 - QFormLayout's name
        row = self.rowCount()
        self.addWidget(label, row, 0, Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
        self.addWidget(field, row, 1)
        self.rows[field] = label

    def setRowVisible(self, field: QWidget, visible: bool) -> None:  # noqa: N802 - QFormLayout's name
        field.setVisible(visible)
        self.rows[field].setVisible(visible)


class FieldsPage(QWizardPage):
    """A page of the platform's fields: the main ones, then "More options" (advanced fields)."""

    def __init__(self, flow: WizardFlow, spec: PageSpec, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.flow = flow
        self.spec = spec
        self.setTitle(spec.title)
        self.setSubTitle(spec.subtitle)
        self.editors: dict[str, FieldEditor] = {}
        self.note = MessageBox()
        body = QWidget()
        self.main_form = self._form()
        self.more_form = self._form()
        self.more_box = QWidget()
        self.more_box.setLayout(self.more_form)
        self.more_button = QToolButton()
        self.more_button.setCheckable(True)
        self.more_button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.more_button.setAutoRaise(True)
        self.more_button.toggled.connect(self._show_more)
        self._more_decided = False
        for f in flow.page_fields(spec.id):
            editor = FieldEditor(f, flow.values.get(f.name), self)
            editor.changed.connect(self._changed)
            self.editors[f.name] = editor
            form = self.more_form if f.advanced else self.main_form
            form.addRow(editor.label, editor.box)
        lay = QVBoxLayout(body)
        lay.setContentsMargins(0, 0, 6, 0)
        lay.addLayout(self.main_form)
        lay.addWidget(self.more_button)
        lay.addWidget(self.more_box)
        lay.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setWidget(body)
        self.problem = MessageBox()
        self.waiting = QLabel()
        self.waiting.setObjectName("wizardHint")
        self.waiting.setWordWrap(True)
        outer = QVBoxLayout(self)
        outer.addWidget(self.note)
        outer.addWidget(scroll, 1)
        outer.addWidget(self.problem)
        outer.addWidget(self.waiting)
        self.refresh()

    @staticmethod
    def _form() -> FieldGrid:
        return FieldGrid()

    def initializePage(self) -> None:  # noqa: N802 - Qt's name
        self.sync()

    def sync(self) -> None:
        """Shows the flow's values: other pages (or an import) may have changed them."""
        for name, editor in self.editors.items():
            editor.set_value(self.flow.values.get(name))
        self.refresh()

    def _changed(self, name: str, value) -> None:
        changed = self.flow.set(name, value)
        for other in changed - {name}:
            editor = self.editors.get(other)
            if editor is not None:
                editor.set_value(self.flow.values.get(other))
        self.refresh()

    def _show_more(self, on: bool) -> None:
        self.more_box.setVisible(on)
        arrow = Qt.ArrowType.DownArrow if on else Qt.ArrowType.RightArrow
        self.more_button.setArrowType(arrow)

    def refresh(self) -> None:
        flow = self.flow
        problems = flow.page_problems(self.spec.id)
        advanced_shown = 0
        all_advanced = True
        advanced_wrong = False
        for name, editor in self.editors.items():
            shown = flow.visible(name)
            form = self.more_form if editor.field.advanced else self.main_form
            form.setRowVisible(editor.box, shown)
            if not shown:
                continue
            if editor.field.advanced:
                advanced_shown += 1
                advanced_wrong = advanced_wrong or name in problems
            else:
                all_advanced = False
            editor.set_placeholder(flow.placeholder(name))
            editor.set_locked(flow.locked(name), flow.hint(name))
            quiet = flow.is_missing(name) and name not in flow.touched
            editor.set_problem(None if quiet else problems.get(name))
        self.more_button.setVisible(advanced_shown > 0 and not all_advanced)
        self.more_button.setText(f"More options ({advanced_shown})")
        if not self._more_decided or advanced_wrong:
            self._more_decided = True
            open_more = all_advanced or advanced_wrong
            self.more_button.setChecked(open_more)
            self._show_more(open_more or (all_advanced and advanced_shown > 0))
        if all_advanced:  # nothing to tuck away: the fields are the page
            self.more_box.setVisible(True)
            self.more_form.setContentsMargins(0, 0, 0, 0)
        self.note.show_text(flow.note(self.spec.id), "info")
        sentence = flow.page_problem(self.spec.id)
        if sentence:
            self.problem.show_text(sentence, "error")
        else:
            self.problem.show_text(flow.tls_warning(self.spec.id) or "", "warning")
        waiting = flow.waiting_for(self.spec.id)
        self.waiting.setText(f"Still needed: {', '.join(waiting)}." if waiting else "")
        self.waiting.setVisible(bool(waiting))
        self.completeChanged.emit()

    def isComplete(self) -> bool:  # noqa: N802 - Qt's name
        return self.flow.page_complete(self.spec.id)


class ImportPage(QWizardPage):
    """Paste or open a platform's configuration body; Next fills the wizard from it."""

    def __init__(self, flow: WizardFlow, spec: PageSpec, parent: QWidget | None = None, certificates_dir=None) -> None:
        super().__init__(parent)
        self.flow = flow
        self.spec = spec
        self.certificates_dir = certificates_dir
        self.imported_text: str | None = None
        self.setTitle(spec.title)
        self.setSubTitle(spec.subtitle)
        self.text = QPlainTextEdit()
        self.text.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.text.setPlaceholderText(_IMPORT_PLACEHOLDERS.get(flow.platform_name, "{ … }"))
        self.text.setTabChangesFocus(True)
        self.open_button = QPushButton("Open file…")
        self.open_button.clicked.connect(self._open)
        self.fill_button = QPushButton("Fill in the wizard")
        self.fill_button.setEnabled(False)
        self.fill_button.clicked.connect(self.fill)
        self.text.textChanged.connect(lambda: self.fill_button.setEnabled(bool(self.text.toPlainText().strip())))
        self.outcome = MessageBox()
        buttons = QHBoxLayout()
        buttons.addWidget(self.open_button)
        buttons.addWidget(self.fill_button)
        buttons.addStretch(1)
        lay = QVBoxLayout(self)
        lay.addWidget(self.text, 1)
        lay.addLayout(buttons)
        lay.addWidget(self.outcome)

    def _open(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open a configuration body", "", "JSON (*.json);;All files (*)")
        if path:
            self.open_file(path)

    def open_file(self, path: str) -> bool:
        try:
            size = Path(path).stat().st_size
            if size > MAX_IMPORT_FILE:
                self.outcome.show_text(
                    f"{path} is {size:,} bytes; a configuration body is a few KiB. Choose the body itself.", "error"
                )
                return False
            data = Path(path).read_bytes()
        except OSError as exc:
            self.outcome.show_text(f"{path} cannot be read ({exc.strerror}).", "error")
            return False
        self.text.setPlainText(data.decode("utf-8", "replace").removeprefix("\ufeff"))
        return self.fill()

    def fill(self) -> bool:
        """Imports the text; True when the wizard was filled in."""
        text = self.text.toPlainText()
        try:
            filled = self.flow.import_text(text, self.certificates_dir)
        except PROBLEMS as exc:
            self.outcome.show_text(f"This could not be imported: {exc}", "error")
            return False
        self.imported_text = text
        name = self.flow.imported_name
        what = ", ".join(filled) if filled else "the defaults"
        source = f" from “{name}”" if name else ""
        self.outcome.show_text(
            f"Filled in{source}: {what}. Check them on the next pages; nothing is saved until the last one.", "ok"
        )
        return True

    def validatePage(self) -> bool:  # noqa: N802 - Qt's name
        text = self.text.toPlainText()
        if not text.strip() or text == self.imported_text:
            return True
        return self.fill()


def _shape(doc: dict) -> str:
    return "Paste the body here; it looks like this:\n\n" + json.dumps(doc, indent=2, ensure_ascii=False)


# What to paste, shown in the empty box: the shape of each platform's body (values elided).
_IMPORT_PLACEHOLDERS = {
    "tektelic": _shape(
        {
            "name": "my_mqtt_v2",
            "type": "MQTT_V2",
            "configuration": {
                "host": "broker.example.com",
                "port": 8883,
                "ssl": True,
                "token": "…",
                "password": "…",
                "pushTopic": "…",
                "pullTopic": "…",
            },
        }
    ),
    "thingpark": _shape(
        {
            "connectorId": "actility-mqtt-iot",
            "name": "My MQTT connection",
            "configuration": {
                "hostName": "broker.example.com:8883",
                "protocol": "SSL",
                "username": "…",
                "password": "…",
                "uplinkTopicPattern": "mqtt/things/{DevEUI}/uplink",
                "downlinkTopicPattern": "mqtt/things/{DevEUI}/downlink",
            },
        }
    ),
}


class _Relay:
    """The test's progress: to the background operation (cancel) and to this page's bar."""

    def __init__(self, progress: Progress, show) -> None:
        self.progress = progress
        self.show = show

    @property
    def cancelled(self) -> bool:
        return self.progress.cancelled

    def report(self, done: int, total: int = 0, text: str = "") -> bool:
        if self.show is not None:
            try:
                self.show(done, total, text)
            except RuntimeError:  # the page is gone (the wizard was closed): only cancel matters
                self.show = None
        return self.progress.report(done, total, text)


class ConnectionTestPage(QWizardPage):
    """Connects for real, waits for the first message, and says what happened."""

    def __init__(self, flow: WizardFlow, spec: PageSpec, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.flow = flow
        self.spec = spec
        self.engine = None  # an EngineProcess to share (tests); None: one per test
        self.timeout = connection_test.DEFAULT_TIMEOUT_S
        self.op: BackgroundOp | None = None
        self.setTitle(spec.title)
        self.setSubTitle(spec.subtitle)
        self.summary = _plain("")
        self.summary.setObjectName("wizardHint")
        self.headline = QLabel()
        font = self.headline.font()
        font.setPointSizeF(font.pointSizeF() * 1.15)
        font.setBold(True)
        self.headline.setFont(font)
        self.outcome = MessageBox()
        self.bar = QProgressBar()
        self.bar.setTextVisible(False)
        self.status = QLabel()
        self.status.setObjectName("wizardHint")
        self.again = QPushButton("Test again")
        self.again.clicked.connect(self.start)
        self.cancel_button = QPushButton("Cancel the test")
        self.cancel_button.clicked.connect(self.cancel)
        # A broker whose certificate no trusted CA signed (a self-hosted one): fetch what it
        # presents, let the user trust it knowingly, and test again with it as the CA.
        self.trust_button = QPushButton("See the broker's certificate and trust it…")
        self.trust_button.setToolTip(
            "Connects without trusting the broker, shows the certificates it presents, and adds its CA to the "
            "certificate manager only if you choose to."
        )
        self.trust_button.clicked.connect(self.offer_trust)
        self.trust_button.hide()
        self.trust_dialog = None
        self.save_anyway = QCheckBox("Save this connection anyway (I will fix it later)")
        self.save_anyway.toggled.connect(self._save_anyway)
        self.save_anyway.hide()
        buttons = QHBoxLayout()
        buttons.addWidget(self.again)
        buttons.addWidget(self.cancel_button)
        buttons.addWidget(self.trust_button)
        buttons.addStretch(1)
        lay = QVBoxLayout(self)
        lay.addWidget(self.summary)
        lay.addSpacing(6)
        lay.addWidget(self.headline)
        lay.addWidget(self.bar)
        lay.addWidget(self.status)
        lay.addWidget(self.outcome)
        lay.addLayout(buttons)
        lay.addWidget(self.save_anyway)
        lay.addStretch(1)

    @property
    def running(self) -> bool:
        return self.op is not None and self.op.running

    def initializePage(self) -> None:  # noqa: N802 - Qt's name
        self.setSubTitle(
            "The console connects with these settings, subscribes, and waits up to "
            f"{self.timeout:g} seconds for the first message."
        )
        lines = self.flow.summary()
        self.summary.setText("\n".join(f"• {line}" for line in lines))
        self.summary.setVisible(bool(lines))
        if self.flow.test_result is not None:
            self._show_result(self.flow.test_result)  # the values have not changed since
        else:
            self.start()

    def cleanupPage(self) -> None:  # noqa: N802 - Qt's name (Back)
        self.cancel()

    def start(self) -> None:
        if self.running:
            return
        self.flow.set_test_result(None)
        self.save_anyway.blockSignals(True)
        self.save_anyway.setChecked(False)
        self.save_anyway.blockSignals(False)
        self.save_anyway.hide()
        self.outcome.hide()
        try:
            config = self.flow.connection_config()
            profile = self.flow.profile()
        except PROBLEMS as exc:
            self._show_result(connection_test.ConnectionTestResult("other", str(exc)))
            return
        platform_name = self.flow.platform_name if self.flow.platform_name != "generic" else None
        engine, timeout = self.engine, self.timeout

        async def work(progress: Progress):
            relay = _Relay(progress, self._progressed)
            return await connection_test.test_connection(config, platform_name, profile, timeout, relay, engine=engine)

        self.headline.setText(f"Connecting to {config.describe()}…")
        self.status.setText("Starting…")
        self.bar.setRange(0, 0)
        self.bar.show()
        self.status.show()
        self.again.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.op = BackgroundOp(
            self,
            work,
            title="Connection test",
            show_progress=False,
            failure_box=False,
            on_success=self._show_result,
            on_failure=lambda sentence: self._show_result(connection_test.ConnectionTestResult("other", sentence)),
        )
        self.op.cancelled.connect(self._cancelled)
        self.op.start()
        self.completeChanged.emit()

    def cancel(self) -> None:
        if self.running:
            self.op.cancel()

    def abandon(self) -> None:
        """The wizard closes: stop the test, and let nothing it says later reach this page."""
        if not self.running:
            return
        for signal in (self.op.succeeded, self.op.failed, self.op.cancelled):
            try:
                signal.disconnect()
            except (RuntimeError, TypeError):
                pass
        self.op.cancel()

    def _progressed(self, done: int, total: int, text: str) -> None:
        if total:  # connected: waiting for the first message, done and total in tenths of seconds
            self.headline.setText("Connected. Waiting for the first message…")
            self.bar.setRange(0, total)
            self.bar.setValue(min(done, total))
            self.status.setText(f"{done / 10:.0f} of {total / 10:.0f} s. Cancel stops waiting.")
        else:
            self.bar.setRange(0, 0)
            if text:
                self.status.setText(text)

    def _stopped(self) -> None:
        self.bar.hide()
        self.status.hide()
        self.again.setEnabled(True)
        self.cancel_button.setEnabled(False)

    def _show_result(self, result) -> None:
        self._stopped()
        self.flow.set_test_result(result)
        self.headline.setText(result.headline)
        level = "ok" if result.kind == "receiving" else "info" if result.kind == "quiet" else "error"
        sentence = result.sentence
        where = None if result.ok else self.flow.fix_page(result.kind)
        if where:
            sentence += f" Back on “{where}” you can change it."
        self.outcome.show_text(sentence, level)
        self.save_anyway.setVisible(not result.ok)
        self.trust_button.setVisible(self._untrusted_broker(result))
        self.completeChanged.emit()

    def _untrusted_broker(self, result) -> bool:
        """The test failed because no trusted CA signed the broker's certificate, and this
        connection has a CA certificate setting to adopt one into."""
        return (
            result.kind == "certificate"
            and "not trusted" in result.sentence
            and "ca_file" in self.flow.fields
            and self.flow.visible("ca_file")
        )

    def offer_trust(self) -> None:
        """The certificate manager's fetch dialog, on this broker: trusting its CA makes it this
        connection's CA certificate and tests again."""
        from ui.certificates.dialogs import FetchDialog
        from ui.certificates.library import shared_library

        try:
            config = self.flow.connection_config()
        except PROBLEMS as exc:
            self.outcome.show_text(str(exc), "error")
            return
        host = f"[{config.host}]" if ":" in config.host else config.host
        dialog = FetchDialog(shared_library(), self, address=f"{host}:{config.effective_port}")
        dialog.setWindowTitle("Trust this broker's certificate")
        dialog.trusted.connect(self._trusted)
        self.trust_dialog = dialog
        dialog.open()
        dialog.fetch()

    def _trusted(self, entry) -> None:
        self.flow.set("ca_file", entry.reference)
        self.flow.touched.add("ca_file")
        wizard = self.wizard()
        for page_id in wizard.pageIds() if wizard is not None else ():
            page = wizard.page(page_id)
            if isinstance(page, FieldsPage):
                page.sync()
        if self.trust_dialog is not None:
            self.trust_dialog.accept()
        self.trust_button.hide()
        self.start()

    def _cancelled(self) -> None:
        self._stopped()
        self.flow.set_test_result(None)
        self.headline.setText("Test cancelled")
        self.outcome.show_text("The connection was not tested. Test again, or save it untested.", "warning")
        self.save_anyway.show()
        self.completeChanged.emit()

    def _save_anyway(self, on: bool) -> None:
        self.flow.save_anyway = on
        self.completeChanged.emit()

    def isComplete(self) -> bool:  # noqa: N802 - Qt's name
        return not self.running and self.flow.page_complete(self.spec.id)


class FinishPage(QWizardPage):
    """The connection's name (unique) and whether it opens when the console starts."""

    def __init__(self, flow: WizardFlow, spec: PageSpec, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.flow = flow
        self.spec = spec
        self.suggested = ""
        self.setTitle(spec.title)
        self.setSubTitle(spec.subtitle)
        self.summary = _plain("")
        self.summary.setObjectName("wizardHint")
        self.name = QLineEdit(flow.name)
        self.name.setPlaceholderText("for example Field trial, north site")
        self.name.textChanged.connect(self._renamed)
        self.error = QLabel()
        self.error.setObjectName("wizardError")
        self.error.setWordWrap(True)
        self.error.hide()
        self.open_on_start = QCheckBox("Open this connection when the console starts")
        self.open_on_start.setChecked(flow.open_on_start)
        self.open_on_start.toggled.connect(lambda on: setattr(self.flow, "open_on_start", on))
        self.untested = MessageBox()
        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        name_box = QWidget()
        name_lay = QVBoxLayout(name_box)
        name_lay.setContentsMargins(0, 0, 0, 0)
        name_lay.addWidget(self.name)
        name_lay.addWidget(self.error)
        form.addRow("Name", name_box)
        form.addRow("", self.open_on_start)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addSpacing(8)
        lay.addWidget(self.summary)
        lay.addWidget(self.untested)
        lay.addStretch(1)
        self.registerField("name", self.name)

    def initializePage(self) -> None:  # noqa: N802 - Qt's name
        current = self.name.text().strip()
        if not current or current == self.suggested:
            self.suggested = self.flow.suggested_name()
            self.name.setText(self.suggested)
        lines = self.flow.summary()
        self.summary.setText("\n".join(["This connection:", *(f"• {line}" for line in lines)]) if lines else "")
        result = self.flow.test_result
        if result is None:
            self.untested.show_text("The connection was not tested; it is saved as it is.", "warning")
        elif not result.ok:
            self.untested.show_text(f"The test failed ({result.headline.lower()}); it is saved as it is.", "warning")
        else:
            self.untested.hide()
        self._renamed(self.name.text())

    def _renamed(self, text: str) -> None:
        self.flow.name = text.strip()
        problem = self.flow.name_problem(text)
        self.error.setText(problem or "")
        self.error.setVisible(bool(problem))
        self.completeChanged.emit()

    def isComplete(self) -> bool:  # noqa: N802 - Qt's name
        return self.flow.page_complete(self.spec.id)

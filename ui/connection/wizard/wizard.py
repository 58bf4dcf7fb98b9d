"""The connection wizard: one QWizard for every platform, its pages generated from the flow.

The flow (app/wizard_flow.py) is the navigation map and the judge of every page; this class
only attaches a page widget per flow page and asks the flow which page comes next, so pages
that do not apply (akenza's uplink-secret page in JWT mode, certificates without TLS) are
skipped. Finishing hands back a WizardResult; saving it is the caller's (app.profiles and
app.secrets, through app.wizard_flow.save_result), once, after the wizard closed, the way
Picard's setup wizard saves in accept().
"""

from __future__ import annotations

from PySide6.QtCore import QSize
from PySide6.QtWidgets import QWidget, QWizard, QWizardPage

from app.wizard_flow import WizardFlow, WizardResult
from ui.connection.wizard.pages import ConnectionTestPage, FieldsPage, FinishPage, ImportPage

STYLE = """
QLabel#wizardHint { color: #57606a; }
QLabel#wizardError { color: #b00020; }
QLabel#wizardLabel { padding-top: 4px; }
"""


class ConnectionWizard(QWizard):
    def __init__(
        self,
        flow: WizardFlow,
        parent: QWidget | None = None,
        *,
        engine=None,
        certificates_dir=None,
        test_timeout: float | None = None,
    ) -> None:
        super().__init__(parent)
        self.flow = flow
        self.wizard_result: WizardResult | None = None
        label = flow.platform.label
        self.setWindowTitle(f"Edit “{flow.name}”" if flow.editing and flow.name else f"New {label} connection")
        self.setWizardStyle(QWizard.WizardStyle.ModernStyle)
        self.setOption(QWizard.WizardOption.NoBackButtonOnStartPage, True)
        self.setOption(QWizard.WizardOption.NoCancelButtonOnLastPage, False)
        self.setButtonText(QWizard.WizardButton.FinishButton, "Save")
        self.setStyleSheet(STYLE)
        self.page_ids: dict[str, int] = {}
        self.pages: dict[str, QWizardPage] = {}
        for number, spec in enumerate(flow.all_pages()):
            if spec.kind == "import":
                page = ImportPage(flow, spec, certificates_dir=certificates_dir)
            elif spec.kind == "test":
                page = ConnectionTestPage(flow, spec)
                page.engine = engine
                if test_timeout is not None:
                    page.timeout = test_timeout
            elif spec.kind == "finish":
                page = FinishPage(flow, spec)
            else:
                page = FieldsPage(flow, spec)
            self.setPage(number, page)
            self.page_ids[spec.id] = number
            self.pages[spec.id] = page
        self.setStartId(self.page_ids[flow.first_id()])
        # Back does not initialize a page again: a later page may have changed its values.
        self.currentIdChanged.connect(self._entered)
        self.setMinimumSize(QSize(680, 560))
        self.resize(780, 680)

    def current_key(self) -> str | None:
        number = self.currentId()
        return next((key for key, n in self.page_ids.items() if n == number), None)

    def nextId(self) -> int:  # noqa: N802 - Qt's name
        key = self.current_key()
        following = self.flow.next_id(key) if key is not None else None
        return self.page_ids[following] if following is not None else -1

    def _entered(self, number: int) -> None:
        page = self.page(number)
        if isinstance(page, FieldsPage):
            page.sync()

    def accept(self) -> None:
        self.wizard_result = self.flow.result()
        super().accept()

    def reject(self) -> None:
        test = self.pages.get("test")
        if isinstance(test, ConnectionTestPage):
            test.abandon()
        super().reject()

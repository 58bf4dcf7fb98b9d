"""The certificate manager window (Tools → Certificates…, and Manage… beside every TLS field).

Non-modal and one per owner window: opening it again raises the one already open. The list
on the left (status in a mark and words as well as a colour), the chosen entry's details on the
right; Import (file picker, or files dropped anywhere on the window), Generate, Fetch from broker,
Convert/Export, Rename and Delete above. What the store says about itself (an index that was
damaged and rebuilt) and how each action ended stay in the notice strip at the top.

Questions go through replaceable callables (`password_prompt`, `confirm`, `ask_name`) so tests
answer them without modal dialogs.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QSortFilterProxyModel, Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QInputDialog,
    QLabel,
    QMessageBox,
    QPushButton,
    QSplitter,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from ui.certificates.details import DetailsPane
from ui.certificates.dialogs import (
    ExportDialog,
    FetchDialog,
    GenerateDialog,
    Importer,
    ask_password,
    choose_import_files,
    export_choices,
)
from ui.certificates.library import CertificateLibrary, shared_library
from ui.certificates.model import COLUMNS, ENTRY_ID_ROLE, SORT_ROLE, CertificateListModel
from ui.common.notices import NoticeBar
from ui.common.tables import configure_table

DROP_HINT = (
    "Drop certificate and key files here to import them: PEM, DER, PKCS#7 (.p7b) and PKCS#12 (.p12, .pfx), "
    "keys encrypted or not."
)


def _join_names(names: list[str]) -> str:
    quoted = [f"“{n}”" for n in names]
    if len(quoted) <= 1:
        return "".join(quoted)
    return ", ".join(quoted[:-1]) + " and " + quoted[-1]


class CertificateManager(QWidget):
    entry_selected = Signal(object)  # the StoredEntry shown (None: nothing chosen)

    def __init__(self, library: CertificateLibrary | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent, Qt.WindowType.Window)
        self.library = library or shared_library()
        self.setWindowTitle("Certificates — Uplink Console")
        self.resize(1240, 660)
        self.setAcceptDrops(True)
        self.password_prompt: Callable[[str, str, bool], str | None] = lambda f, s, w: ask_password(self, f, s, w)
        self.confirm: Callable[[str, str], bool] = self._confirm_box
        self.ask_name: Callable[[str, str, str], str | None] = self._name_box
        self.importer: Importer | None = None
        self.dialog = None  # the export / generate / fetch dialog open now

        self.notices = NoticeBar()
        self.import_button = QPushButton("Import…")
        self.import_button.setToolTip("Import certificates or keys from files (or drop the files on this window)")
        self.import_button.clicked.connect(self.import_from_picker)
        self.generate_button = QPushButton("Generate…")
        self.generate_button.setToolTip("Make a key pair with a self-signed certificate, e.g. for akenza devices")
        self.generate_button.clicked.connect(self.open_generate)
        self.fetch_button = QPushButton("Fetch from broker…")
        self.fetch_button.setToolTip("Read the certificates a broker presents, and trust its CA if you choose to")
        self.fetch_button.clicked.connect(self.open_fetch)
        self.export_button = QPushButton("Convert / Export…")
        self.export_button.setToolTip("Write the chosen entry as PKCS#8, PEM, DER, PEM parts or a bundle")
        self.export_button.clicked.connect(self.open_export)
        self.rename_button = QPushButton("Rename…")
        self.rename_button.clicked.connect(self.rename_current)
        self.delete_button = QPushButton("Delete…")
        self.delete_button.clicked.connect(self.delete_current)
        bar = QHBoxLayout()
        bar.setContentsMargins(0, 0, 0, 0)
        for button in (self.import_button, self.generate_button, self.fetch_button):
            bar.addWidget(button)
        bar.addStretch(1)
        for button in (self.export_button, self.rename_button, self.delete_button):
            bar.addWidget(button)

        self.model = CertificateListModel(self.library, self)
        self.proxy = QSortFilterProxyModel(self)
        self.proxy.setSourceModel(self.model)
        self.proxy.setSortRole(SORT_ROLE)
        self.table = QTableView()
        self.table.setModel(self.proxy)
        configure_table(self.table)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(1, Qt.SortOrder.AscendingOrder)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        header = self.table.horizontalHeader()
        header.setStretchLastSection(False)
        self.table.setStyleSheet("QTableView::item { padding: 0px 8px 0px 4px; }")  # room between columns
        for column in range(len(COLUMNS)):  # the name takes what the others leave
            mode = QHeaderView.ResizeMode.Stretch if column == 1 else QHeaderView.ResizeMode.ResizeToContents
            header.setSectionResizeMode(column, mode)
        self.table.selectionModel().currentRowChanged.connect(lambda *_: self._show_current())
        self.table.doubleClicked.connect(lambda *_: self.open_export())
        self.empty_hint = QLabel(
            "No certificates yet. Import the files your broker or platform gave you, fetch a broker's CA, "
            "or generate a key pair for an akenza device."
        )
        self.empty_hint.setObjectName("hint")
        self.empty_hint.setWordWrap(True)
        self.empty_hint.setAlignment(Qt.AlignmentFlag.AlignCenter)
        left = QWidget()
        left_lay = QVBoxLayout(left)
        left_lay.setContentsMargins(0, 0, 0, 0)
        left_lay.addWidget(self.table, 1)
        left_lay.addWidget(self.empty_hint, 1)
        self.details = DetailsPane(self.library)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(left)
        split.addWidget(self.details)
        split.setStretchFactor(0, 1)
        split.setStretchFactor(1, 1)
        split.setSizes([660, 580])
        self.drop_hint = QLabel(DROP_HINT)
        self.drop_hint.setObjectName("hint")
        self.drop_hint.setWordWrap(True)

        lay = QVBoxLayout(self)
        lay.addWidget(self.notices)
        lay.addLayout(bar)
        lay.addWidget(split, 1)
        lay.addWidget(self.drop_hint)
        self.library.changed.connect(self._after_change)
        self._after_change()

    # ----- the list
    def current_entry(self):
        index = self.table.currentIndex()
        if not index.isValid():
            return None
        return self.library.get(index.siblingAtColumn(0).data(ENTRY_ID_ROLE))

    def select(self, entry_id: str) -> bool:
        row = self.model.row_of(entry_id)
        if row < 0:
            return False
        index = self.proxy.mapFromSource(self.model.index(row, 0))
        self.table.setCurrentIndex(index)
        self.table.selectRow(index.row())
        self.table.scrollTo(index)
        return True

    def _after_change(self) -> None:
        """The model reloaded itself; keep (or make) a selection and refresh the rest."""
        shown = self.details.entry.id if self.details.entry is not None else None
        if not (shown and self.select(shown)) and self.proxy.rowCount() and not self.table.currentIndex().isValid():
            self.table.selectRow(0)
            self.table.setCurrentIndex(self.proxy.index(0, 0))
        self._show_current()
        empty = self.proxy.rowCount() == 0
        self.table.setVisible(not empty)
        self.empty_hint.setVisible(empty)
        notice = self.library.notice()
        if notice:
            self.notices.notify("store", notice, "error" if self.library.problem else "warning", dismissable=True)
        else:
            self.notices.resolve("store")

    def _show_current(self) -> None:
        entry = self.current_entry()
        self.details.show_entry(entry)
        for button in (self.export_button, self.rename_button, self.delete_button):
            button.setEnabled(entry is not None)
        self.export_button.setEnabled(entry is not None and bool(export_choices(entry)))
        self.entry_selected.emit(entry)

    # ----- import
    def import_from_picker(self) -> None:
        paths = choose_import_files(self)
        if paths:
            self.import_paths(paths)

    def import_paths(self, paths) -> Importer:
        """Imports the files (a password is asked for through `password_prompt` when one is
        needed); the last one imported is selected, failures are listed in the notices."""
        if self.importer is None or not self.importer.busy:
            self.importer = Importer(self, self.library, lambda f, s, w: self.password_prompt(f, s, w))
            self.importer.imported.connect(self._imported)
            self.importer.failed.connect(self._import_failed)
            self.notices.resolve("import")
            self.notices.resolve("import-failed")
        self.importer.import_paths(paths)
        return self.importer

    def _imported(self, entry) -> None:
        self.select(entry.id)
        importer = self.importer
        already = {e.id for e in importer.already} if importer else set()
        new = [e.name for e in importer.entries if e.id not in already] if importer else [entry.name]
        old = [e.name for e in importer.already] if importer else []
        sentences = [f"Imported {_join_names(new)}."] if new else []
        if old:
            was = "was" if len(old) == 1 else "were"
            sentences.append(f"{_join_names(old)} {was} in the certificate manager already (the same file).")
        self.notices.notify("import", " ".join(sentences), "info", dismissable=True)

    def _import_failed(self, sentence: str) -> None:
        failures = self.importer.errors if self.importer else [sentence]
        self.notices.notify("import-failed", " ".join(failures), "error", dismissable=True)

    def dragEnterEvent(self, event) -> None:  # noqa: N802 - Qt's name
        if self._dropped_paths(event.mimeData()):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragMoveEvent(self, event) -> None:  # noqa: N802
        self.dragEnterEvent(event)

    def dropEvent(self, event) -> None:  # noqa: N802
        paths = self._dropped_paths(event.mimeData())
        if not paths:
            event.ignore()
            return
        event.acceptProposedAction()
        self.import_paths(paths)

    @staticmethod
    def _dropped_paths(mime) -> list[str]:
        if mime is None or not mime.hasUrls():
            return []
        return [url.toLocalFile() for url in mime.urls() if url.isLocalFile() and Path(url.toLocalFile()).is_file()]

    # ----- the other actions
    def open_generate(self) -> GenerateDialog:
        dialog = GenerateDialog(self.library, self)
        dialog.generated.connect(self._generated)
        self._open(dialog)
        return dialog

    def _generated(self, entries: list) -> None:
        certificate = next((e for e in entries if e.certificates), entries[0] if entries else None)
        if certificate is not None:
            self.select(certificate.id)
        self.notices.notify("import", f"Generated {_join_names([e.name for e in entries])}.", "info", dismissable=True)

    def open_fetch(self, address: str = "") -> FetchDialog:
        dialog = FetchDialog(self.library, self, address)
        dialog.trusted.connect(lambda entry: self.select(entry.id))
        self._open(dialog)
        return dialog

    def open_export(self) -> ExportDialog | None:
        entry = self.current_entry()
        if entry is None or not export_choices(entry):
            return None
        dialog = ExportDialog(self.library, entry, self)
        dialog.accepted.connect(lambda: self._exported(dialog))
        self._open(dialog)
        return dialog

    def _exported(self, dialog: ExportDialog) -> None:
        files = ", ".join(str(p) for p in dialog.written)
        self.notices.notify("export", f"Written: {files}.", "info", dismissable=True)

    def _open(self, dialog) -> None:
        self.dialog = dialog
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.setWindowModality(Qt.WindowModality.WindowModal)
        dialog.open()

    def rename_current(self) -> None:
        entry = self.current_entry()
        if entry is None:
            return
        name = self.ask_name("Rename", f"New name for “{entry.name}”:", entry.name)
        if name is None or not name.strip() or name.strip() == entry.name:
            return
        try:
            with self.library.lock:
                self.library.store.rename(entry.id, name.strip())
        except (ValueError, OSError, KeyError) as exc:
            self.notices.notify("rename", str(exc) or "The entry could not be renamed.", "error", dismissable=True)
            return
        self.notices.resolve("rename")
        self.library.announce()

    def delete_current(self) -> bool:
        """Deletes the chosen entry after asking; when saved connections use it, the question
        names them and says what happens to them. True when deleted."""
        entry = self.current_entry()
        if entry is None:
            return False
        users = self.library.users(entry.id)
        if users is None:
            question = (
                f"Delete “{entry.name}” from the certificate manager? Saved connections that use it will not "
                "connect until you choose another certificate in their settings."
            )
        elif users:
            several = len(users) > 1
            question = (
                f"“{entry.name}” is used by the saved connection{'s' if several else ''} {_join_names(users)}. "
                f"If you delete it, {'they' if several else 'it'} will not connect until you choose another "
                "certificate in the connection's settings. Delete it anyway?"
            )
        else:
            question = (
                f"Delete “{entry.name}” from the certificate manager? Its stored file and its password in the "
                "keyring are removed; the file you imported it from is not touched."
            )
        if not self.confirm("Delete certificate", question):
            return False
        try:
            with self.library.lock:
                self.library.store.delete(entry.id)
        except (ValueError, OSError, KeyError) as exc:
            self.notices.notify("delete", str(exc) or "The entry could not be deleted.", "error", dismissable=True)
            return False
        self.notices.resolve("delete")
        self.details.show_entry(None)
        self.library.announce()
        return True

    # ----- the default questions
    def _confirm_box(self, title: str, text: str) -> bool:
        box = QMessageBox(
            QMessageBox.Icon.Question,
            title,
            text,
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel,
            self,
        )
        box.setDefaultButton(QMessageBox.StandardButton.Cancel)
        return box.exec() == QMessageBox.StandardButton.Yes

    def _name_box(self, title: str, label: str, text: str) -> str | None:
        name, ok = QInputDialog.getText(self, title, label, text=text)
        return name if ok else None


def show_manager(
    parent: QWidget | None, library: CertificateLibrary | None = None, profiles=None
) -> CertificateManager:
    """Shows the manager of `parent` (made at first use), raised and focused. `profiles` (an
    app.profiles.ProfileStore) lets it say which saved connections use an entry."""
    library = library or shared_library()
    if profiles is not None:
        library.profiles = profiles
    manager = None
    if parent is not None:
        for child in parent.findChildren(CertificateManager):
            if child.library is library and child.parent() is parent:
                manager = child
                break
    if manager is None:
        manager = CertificateManager(library, parent)
    manager.show()
    manager.raise_()
    manager.activateWindow()
    return manager

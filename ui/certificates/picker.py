"""The TLS field of every connection wizard: a certificate from the store, a file on disk, or none.

    picker = CertificatePicker("ca")        # "ca" | "certificate" | "key"
    picker.changed.connect(lambda value: ...)   # "store:<id>", a path, or None
    picker.set_value("store:0123456789abcdef")

The combo lists "None", the store's entries that fit the role (name and expiry), and "A file on
disk…", which shows the old path field. Import… adds a file to the store on the spot and picks
it; Manage… opens the certificate manager. A reference to an entry that was deleted stays the
value (shown as such) until the user chooses another, so nothing saved is lost silently.

When a client certificate entry holds its private key too (a PKCS#12), `includes_key` is true,
`key_included` is emitted and the note under the combo says that the key field may stay empty.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from ui.certificates.dialogs import IMPORT_FILTERS, Importer, ask_password
from ui.certificates.library import (
    CertificateLibrary,
    date_text,
    fits_role,
    has_certificate,
    has_key,
    shared_library,
    status_look,
)
from ui.common.background import show_failure
from ui.common.file_field import FileField

NONE_DATA = "__none__"
FILE_DATA = "__file__"
ROLES = ("ca", "certificate", "key")
ROLE_WORDS = {"ca": "CA certificate", "certificate": "client certificate", "key": "private key"}
FIELD_ROLES = {"ca_file": "ca", "cert_file": "certificate", "key_file": "key", "jwt_key_file": "key"}
_FILE_FILTERS = {
    "ca": "Certificates (*.pem *.crt *.cer *.der *.p7b);;All files (*)",
    "certificate": "Certificates (*.pem *.crt *.cer *.der *.p12 *.pfx);;All files (*)",
    "key": "Private keys (*.pem *.key *.der *.p8 *.p12 *.pfx);;All files (*)",
}


def entry_label(entry) -> str:
    """ "Broker CA — until 2027-03-01" / "… — expired 2026-11-20" (status in words, not colour)."""
    main = entry.main
    status = entry.status()
    if main.not_after is None:
        return f"{entry.name} — {entry.kind}"
    if status == "expired":
        return f"{entry.name} — ✕ expired {date_text(main.not_after)}"
    if status == "expiring":
        return f"{entry.name} — ⚠ expires {date_text(main.not_after)} ({main.days_left_at()} days)"
    if status == "not-yet-valid":
        return f"{entry.name} — not valid before {date_text(main.not_before)}"
    return f"{entry.name} — until {date_text(main.not_after)}"


class CertificatePicker(QWidget):
    changed = Signal(object)  # "store:<id>", a path, or None
    key_included = Signal(bool)  # a client certificate entry that holds its key too

    def __init__(
        self,
        role: str,
        library: CertificateLibrary | None = None,
        parent: QWidget | None = None,
        *,
        caption: str | None = None,
    ) -> None:
        super().__init__(parent)
        if role not in ROLES:
            raise ValueError(f"role {role!r}: one of {ROLES}")
        self.role = role
        self.library = library or shared_library()
        self.password_prompt = lambda f, s, w: ask_password(self, f, s, w)
        self.importer: Importer | None = None
        self._quiet = False
        self._pinned: str | None = None  # a chosen reference the role's list would not show (deleted, say)
        self.combo = QComboBox()
        self.combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.combo.setMinimumContentsLength(28)
        self.combo.setToolTip(f"A {ROLE_WORDS[role]} from the certificate manager, or a file on disk")
        self.import_button = QPushButton("Import…")
        self.import_button.setToolTip(f"Import a {ROLE_WORDS[role]} file into the certificate manager and use it")
        self.import_button.clicked.connect(self.import_from_picker)
        self.manage_button = QPushButton("Manage…")
        self.manage_button.setToolTip("Open the certificate manager")
        self.manage_button.clicked.connect(self.open_manager)
        self.file = FileField(caption or ROLE_WORDS[role].capitalize(), _FILE_FILTERS[role])
        self.edit = self.file.edit  # the path (what older code and tests type into)
        self.edit.textChanged.connect(self._path_typed)
        self.note = QLabel()
        self.note.setObjectName("wizardHint")
        self.note.setWordWrap(True)
        self.note.hide()
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.combo, 1)
        row.addWidget(self.import_button)
        row.addWidget(self.manage_button)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(3)
        lay.addLayout(row)
        lay.addWidget(self.file)
        lay.addWidget(self.note)
        self._fill()
        self._select(NONE_DATA)
        self.combo.currentIndexChanged.connect(self._combo_changed)
        self.library.changed.connect(self._store_changed)

    # ----- the combo
    def _fill(self) -> None:
        """Fills the combo: None, the fitting entries, the chosen reference even when it does not
        fit or was deleted (`_pinned`), a file on disk."""
        self.combo.blockSignals(True)
        self.combo.clear()
        self.combo.addItem("None", NONE_DATA)
        listed = set()
        for entry in self.library.entries():
            if fits_role(entry, self.role) or entry.reference == self._pinned:
                self._add_entry(entry)
                listed.add(entry.reference)
        if self._pinned and self._pinned not in listed:
            self.combo.addItem("A deleted certificate: choose another", self._pinned)
        self.combo.addItem("A file on disk…", FILE_DATA)
        self.combo.blockSignals(False)

    def _add_entry(self, entry) -> None:
        self.combo.addItem(entry_label(entry), entry.reference)
        _mark, word, _color = status_look(entry.status())
        self.combo.setItemData(self.combo.count() - 1, f"{entry.kind}; {word.lower()}", Qt.ItemDataRole.ToolTipRole)

    def _select(self, data: str) -> None:
        if self.combo.findData(data) < 0:
            self._pinned = data
            self._fill()
        self.combo.blockSignals(True)
        self.combo.setCurrentIndex(max(0, self.combo.findData(data)))
        self.combo.blockSignals(False)
        self._update_view()

    def _mode(self) -> str:
        data = self.combo.currentData()
        return data if data in (NONE_DATA, FILE_DATA) else "entry"

    def _combo_changed(self, _index: int) -> None:
        self._update_view()
        if self._mode() == FILE_DATA:
            self.file.edit.setFocus()
        self._emit()

    def _path_typed(self, text: str) -> None:
        if self._quiet:
            return
        if text.strip() and self._mode() != FILE_DATA:
            self._select(FILE_DATA)  # typing (or an older caller setting) a path means a file on disk
        self._emit()

    def _store_changed(self) -> None:
        current = self.combo.currentData()
        self._fill()
        self._select(current)

    def _update_view(self) -> None:
        mode = self._mode()
        self.file.setVisible(mode == FILE_DATA)
        entry = self.chosen_entry()
        note = ""
        if mode == "entry" and entry is None:
            note = "This certificate was deleted from the certificate manager; choose another, or import it again."
        elif entry is not None:
            status = entry.status()
            if status == "expired":
                note = f"✕ {entry.name} has expired; the broker will refuse it. Renew it, or choose another."
            elif status == "expiring":
                note = f"⚠ {entry.name} expires in {entry.main.days_left_at()} days; renew it soon."
            elif status == "not-yet-valid":
                since = date_text(entry.main.not_before)
                note = f"{entry.name} is not valid yet; the broker will refuse it until {since}."
            if self.role == "certificate" and has_key(entry) and has_certificate(entry):
                note = (note + " " if note else "") + (
                    "It holds its private key too: leave the client private key empty."
                )
            if self.role == "certificate" and not entry.certificates:
                note = "This entry holds no certificate; choose a client certificate."
            if self.role == "ca" and not entry.certificates:
                note = "This entry holds no certificate; choose the broker's CA certificate."
            if self.role == "key" and not has_key(entry):
                note = "This entry holds no private key; choose the key."
        self.note.setText(note)
        self.note.setVisible(bool(note))
        self.key_included.emit(self.includes_key)

    # ----- value
    @property
    def includes_key(self) -> bool:
        entry = self.chosen_entry()
        return self.role == "certificate" and entry is not None and has_key(entry) and has_certificate(entry)

    def chosen_entry(self):
        data = self.combo.currentData()
        if data in (NONE_DATA, FILE_DATA, None):
            return None
        return self.library.get(_entry_id(data))

    def value(self) -> str | None:
        mode = self._mode()
        if mode == NONE_DATA:
            return None
        if mode == FILE_DATA:
            return self.file.edit.text().strip() or None
        return self.combo.currentData()

    def set_value(self, value) -> None:
        """Shows a reference ("store:<id>"), a path or None, without emitting `changed`."""
        from app.cert_store import entry_id_of

        text = "" if value is None else str(value).strip()
        self._quiet = True
        try:
            if entry_id_of(text):
                self._select(text)
            elif text:
                if self.file.edit.text() != text:
                    self.file.edit.setText(text)
                self._select(FILE_DATA)
            else:
                if self.file.edit.text():
                    self.file.edit.setText("")
                if self._mode() != FILE_DATA:
                    self._select(NONE_DATA)
        finally:
            self._quiet = False

    def choose_entry(self, entry_id: str) -> None:
        """Picks a store entry as the user would (emits `changed`)."""
        from app.cert_store import reference

        self._fill()
        self._select(reference(entry_id))
        self._emit()

    def _emit(self) -> None:
        if not self._quiet:
            self.changed.emit(self.value())

    # ----- buttons
    def import_from_picker(self) -> None:
        from PySide6.QtWidgets import QFileDialog

        path, _ = QFileDialog.getOpenFileName(self, f"Import a {ROLE_WORDS[self.role]}", "", IMPORT_FILTERS)
        if path:
            self.import_paths([path])

    def import_paths(self, paths) -> Importer:
        """Imports into the store and picks what was imported (asking for a password through
        `password_prompt` when the file needs one)."""
        self.importer = Importer(self, self.library, lambda f, s, w: self.password_prompt(f, s, w))
        self.importer.imported.connect(lambda entry: self.choose_entry(entry.id))
        self.importer.failed.connect(lambda sentence: show_failure(self, "Import certificate", sentence))
        self.importer.import_paths(paths)
        return self.importer

    def open_manager(self):
        from ui.certificates.manager import show_manager

        return show_manager(self.window(), self.library)


def _entry_id(reference_text: str) -> str | None:
    from app.cert_store import entry_id_of

    return entry_id_of(reference_text)

"""Everything about one stored entry: what each certificate or key in it is, for how long it is
valid, its fingerprint (selectable, with a Copy button), and which saved connections use it.

An entry may hold several items (a CA bundle, a PKCS#12 with its chain); a chooser above the
fields picks the item shown, the entry's main item first. The fields come from the store's
index (`StoredEntry.items`), so showing an entry reads no file and asks no password.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QFontDatabase, QGuiApplication
from PySide6.QtWidgets import (
    QComboBox,
    QFrame,
    QGridLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from ui.certificates.library import (
    CertificateLibrary,
    date_text,
    days_text,
    fingerprint_lines,
    status_look,
    status_sentence,
)

_KIND_WORDS = {
    "ca-certificate": "CA certificate",
    "certificate": "Certificate",
    "private-key": "Private key",
    "csr": "Certificate request (CSR)",
}
_FIELDS = (
    ("kind", "What it is"),
    ("subject", "Subject"),
    ("issuer", "Issuer"),
    ("sans", "Names (SAN)"),
    ("serial", "Serial number"),
    ("validity", "Valid"),
    ("key", "Key"),
    ("usage", "Key usage"),
    ("eku", "Extended key usage"),
    ("role", "CA or leaf"),
    ("encrypted", "Stored"),
    ("container", "Imported as"),
    ("users", "Used by"),
)


def item_title(item, index: int) -> str:
    what = _KIND_WORDS.get(item.kind, item.kind)
    subject = item.subject.split(",")[0] if item.subject else f"{item.key_type} {item.key_bits}"
    return f"{index + 1}. {what}: {subject}"


def key_text(item) -> str:
    if not item.key_type:
        return ""
    size = f"{item.key_bits}-bit" if item.key_bits else ""
    curve = f" ({item.curve})" if item.curve else ""
    return " ".join(p for p in (item.key_type, size) if p) + curve


def validity_text(item) -> str:
    if item.not_after is None:
        return "Keys do not expire." if item.kind == "private-key" else ""
    left = days_text(item.days_left_at())
    return f"{date_text(item.not_before)} to {date_text(item.not_after)} ({left})"


def role_text(item) -> str:
    if item.kind == "private-key":
        return ""
    if item.is_ca:
        return "CA: it signs other certificates" + (" (self-signed root)" if item.self_signed else "")
    return "Leaf: a broker's or a client's own certificate" + (" (self-signed)" if item.self_signed else "")


def stored_text(entry, item) -> str:
    if item.kind != "private-key":
        return ""
    if entry.has_password:
        return "Encrypted; its password is kept in the keyring"
    if item.encrypted:
        return "Encrypted"
    return "Not encrypted (anyone who can read your files can use it)"


class DetailsPane(QWidget):
    """Shows one entry (or none); `show_entry(None)` empties it."""

    def __init__(self, library: CertificateLibrary, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.library = library
        self.entry = None
        self.title = QLabel()
        self.title.setObjectName("certTitle")
        self.title.setWordWrap(True)
        self.title.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.status = QLabel()
        self.status.setObjectName("certStatus")
        self.status.setWordWrap(True)
        self.item_choice = QComboBox()
        self.item_choice.setToolTip("This entry holds several certificates or keys; choose the one to show")
        self.item_choice.currentIndexChanged.connect(self._show_item)
        self.values: dict[str, QLabel] = {}
        self._labels: dict[str, QLabel] = {}
        grid = QGridLayout()
        grid.setColumnStretch(1, 1)
        grid.setHorizontalSpacing(12)
        grid.setVerticalSpacing(6)
        for row, (key, label) in enumerate(_FIELDS):
            name = QLabel(label)
            name.setObjectName("certFieldName")
            name.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
            value = QLabel()
            value.setWordWrap(True)
            value.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            grid.addWidget(name, row, 0, Qt.AlignmentFlag.AlignTop)
            grid.addWidget(value, row, 1)
            self.values[key] = value
            self._labels[key] = name
        fp_row = grid.rowCount()
        fp_name = QLabel("SHA-256")
        fp_name.setObjectName("certFieldName")
        self.fingerprint = _Fingerprint()
        self.fingerprint.setToolTip("Compare it with `openssl x509 -fingerprint -sha256 -noout -in FILE`")
        self.copy_fingerprint = QPushButton("Copy")
        self.copy_fingerprint.setAutoDefault(False)
        self.copy_fingerprint.setToolTip("Copy the fingerprint to the clipboard")
        self.copy_fingerprint.clicked.connect(self._copy_fingerprint)
        fp_side = QVBoxLayout()  # the Copy button under the field's name keeps the pane narrow
        fp_side.setContentsMargins(0, 0, 0, 0)
        fp_side.setSpacing(3)
        fp_side.addWidget(fp_name)
        fp_side.addWidget(self.copy_fingerprint, 0, Qt.AlignmentFlag.AlignLeft)
        grid.addLayout(fp_side, fp_row, 0, Qt.AlignmentFlag.AlignTop)
        grid.addWidget(self.fingerprint, fp_row, 1, Qt.AlignmentFlag.AlignTop)
        self._fp_name = fp_name

        body = QWidget()
        body_lay = QVBoxLayout(body)
        body_lay.setContentsMargins(10, 8, 10, 8)
        body_lay.addWidget(self.title)
        body_lay.addWidget(self.status)
        body_lay.addWidget(self.item_choice)
        body_lay.addLayout(grid)
        body_lay.addStretch(1)
        self.empty = QLabel("Choose a certificate or key on the left to see what it is.")
        self.empty.setObjectName("hint")
        self.empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty.setWordWrap(True)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setWidget(body)
        self._body = scroll
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.empty, 1)
        lay.addWidget(scroll, 1)
        self.show_entry(None)

    # ----- showing
    def show_entry(self, entry) -> None:
        self.entry = entry
        self.empty.setVisible(entry is None)
        self._body.setVisible(entry is not None)
        if entry is None:
            return
        self.title.setText(f"<b>{_escape(entry.name)}</b> — {_escape(entry.kind)}")
        status = entry.status()
        mark, word, color = status_look(status)
        self.status.setText(f"{mark} {status_sentence(entry.main, status)}")
        self.status.setStyleSheet(f"color: {color}; font-weight: bold;")
        self.item_choice.blockSignals(True)
        self.item_choice.clear()
        items = list(entry.items)
        main_index = next((i for i, it in enumerate(items) if it is entry.main or it == entry.main), 0)
        for i, item in enumerate(items):
            self.item_choice.addItem(item_title(item, i))
        self.item_choice.setCurrentIndex(main_index)
        self.item_choice.setVisible(len(items) > 1)
        self.item_choice.blockSignals(False)
        self._show_item(main_index)

    def _show_item(self, index: int) -> None:
        entry = self.entry
        if entry is None or not (0 <= index < len(entry.items)):
            return
        item = entry.items[index]
        users = self.library.users(entry.id)
        texts = {
            "kind": _KIND_WORDS.get(item.kind, item.kind),
            "subject": item.subject,
            "issuer": item.issuer if item.kind != "private-key" else "",
            "sans": ", ".join(item.sans),
            "serial": item.serial,
            "validity": validity_text(item),
            "key": key_text(item),
            "usage": ", ".join(item.key_usage),
            "eku": ", ".join(item.extended_key_usage),
            "role": role_text(item),
            "encrypted": stored_text(entry, item),
            "container": f"{item.container}, from {entry.filename}" if entry.filename else item.container,
            "users": "" if users is None else (", ".join(users) or "No saved connection uses it."),
        }
        if item.kind == "private-key" and item.key_format:
            texts["key"] += f", {item.key_format}"
        for key, value in self.values.items():
            text = texts.get(key, "")
            value.setText(text)
            value.setVisible(bool(text))
            self._labels[key].setVisible(bool(text))
        self.fingerprint.setText(item.sha256)
        self._fp_name.setText("SHA-256 of the public key" if item.kind == "private-key" else "SHA-256 fingerprint")
        self._fp_name.setWordWrap(True)

    def _copy_fingerprint(self) -> None:
        QGuiApplication.clipboard().setText(self.fingerprint.text())

    def field_text(self, key: str) -> str:
        """What a field shows (for tests and screen readers' sake, one place to ask)."""
        return self.values[key].text()


class _Fingerprint(QLabel):
    """The fingerprint in a fixed font, in two lines of 16 bytes, selectable; `text()` is the
    fingerprint itself (as `openssl` prints it), whatever the lines."""

    def __init__(self) -> None:
        super().__init__()
        self.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self._value = ""

    def setText(self, text: str) -> None:  # noqa: N802 - Qt's name
        self._value = text
        super().setText(fingerprint_lines(text))

    def text(self) -> str:
        return self._value


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")

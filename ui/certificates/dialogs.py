"""The manager's conversations: importing (asking for a password when a file needs one),
converting and exporting, generating a key pair for akenza, fetching a broker's chain.

Reading big files, generating RSA keys and talking to a broker run through BackgroundOp, so
the window never freezes; every failure arrives as the engine's sentence (CertError), shown
inline or in a message box, never a traceback.

Each question the user answers goes through a replaceable callable (`password_prompt`,
`confirm`), which is how the tests answer it without a modal dialog.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QFontDatabase, QGuiApplication
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QFrame,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QStackedWidget,
    QToolButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ui.certificates.library import (
    CertificateLibrary,
    date_text,
    days_text,
    fingerprint_lines,
    has_certificate,
    has_key,
    status_look,
)
from ui.common.background import BackgroundOp

log = logging.getLogger(__name__)

IMPORT_FILTERS = (
    "Certificates and keys (*.pem *.crt *.cer *.der *.key *.p7b *.p7c *.p12 *.pfx *.p8);;"
    "PKCS#12 bundles (*.p12 *.pfx);;All files (*)"
)
IMPORT_SUFFIXES = (".pem", ".crt", ".cer", ".der", ".key", ".p7b", ".p7c", ".p12", ".pfx", ".p8")

# (filename, sentence, wrong) -> the password, or None when the user gave up
PasswordPrompt = Callable[[str, str, bool], "str | None"]

_BOX = {
    "info": "background: #ddf4ff; border: 1px solid #54aeff; color: #0a3069;",
    "warning": "background: #fff8c5; border: 1px solid #d4a72c; color: #4d2d00;",
    "error": "background: #ffebe9; border: 1px solid #ff8182; color: #82071e;",
    "ok": "background: #dafbe1; border: 1px solid #4ac26b; color: #044f1e;",
}


def tinted(text: str, level: str) -> QLabel:
    """A sentence in a tinted box (the wizard's look)."""
    label = QLabel(text)
    label.setWordWrap(True)
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    label.setContentsMargins(8, 6, 8, 6)
    set_tint(label, level)
    return label


def set_tint(label: QLabel, level: str) -> None:
    label.setStyleSheet(f"QLabel {{ {_BOX[level]} border-radius: 4px; padding: 4px; }}")


def ask_password(parent: QWidget | None, filename: str, sentence: str, wrong: bool) -> str | None:
    """The default prompt: a password line, the engine's sentence above it."""
    title = "Wrong password" if wrong else "Password needed"
    label = f"{sentence}\n\nPassword for {filename}:"
    text, ok = QInputDialog.getText(parent, title, label, QLineEdit.EchoMode.Password)
    return text if ok else None


def _fixed_font():
    return QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)


# ----- import ---------------------------------------------------------------------------------


class Importer(QObject):
    """Imports files one after the other, asking for a password when a file needs one (again,
    saying so, after a wrong one). `imported` for each entry, `failed` for each sentence."""

    imported = Signal(object)  # StoredEntry
    failed = Signal(str)
    finished = Signal()

    def __init__(
        self,
        parent_widget: QWidget | None,
        library: CertificateLibrary,
        password_prompt: PasswordPrompt | None = None,
        *,
        failure_box: bool = False,
    ) -> None:
        super().__init__(parent_widget)
        self.parent_widget = parent_widget
        self.library = library
        self.password_prompt = password_prompt or (lambda f, s, w: ask_password(parent_widget, f, s, w))
        self.failure_box = failure_box
        self.entries: list = []  # what was imported (or was there already)
        self.already: list = []  # the same file was in the store already: its entry
        self.errors: list[str] = []
        self._queue: list[str] = []
        self.op: BackgroundOp | None = None

    @property
    def busy(self) -> bool:
        return bool(self._queue) or (self.op is not None and self.op.running)

    def import_paths(self, paths) -> None:
        self._queue.extend(str(p) for p in paths)
        if self.op is None or not self.op.running:
            self._next()

    def _next(self) -> None:
        if not self._queue:
            self.op = None
            self.finished.emit()
            return
        self._start(self._queue.pop(0), None)

    def _start(self, path: str, password: str | None) -> None:
        library = self.library

        def work(progress):
            from app.certs import PasswordNeeded, WrongPassword

            progress.report(0, 0, f"Reading {Path(path).name}…")
            try:
                with library.lock:
                    before = {e.id for e in library.store.entries()}
                    entry = library.store.import_file(path, password=password)
                    return ("again" if entry.id in before else "ok", entry)
            except WrongPassword as exc:
                return ("wrong", str(exc))
            except PasswordNeeded as exc:
                return ("password", str(exc))

        self.op = BackgroundOp(
            self.parent_widget,
            work,
            title="Import certificate",
            label=f"Reading {Path(path).name}…",
            on_success=lambda result: self._done(path, result),
            on_failure=self._failed,
            failure_box=self.failure_box,
            cancellable=False,
        )
        self.op.start()

    def _done(self, path: str, result) -> None:
        kind, value = result
        if kind == "again":
            self.already.append(value)
        if kind in ("ok", "again"):
            self.entries.append(value)
            self.library.announce()
            self.imported.emit(value)
            self._next()
            return
        password = self.password_prompt(Path(path).name, value, kind == "wrong")
        if password is None:
            self._failed(f"{Path(path).name} was not imported: it needs its password.")
            return
        self._start(path, password)

    def _failed(self, sentence: str) -> None:
        self.errors.append(sentence)
        self.failed.emit(sentence)
        self._next()


def choose_import_files(parent: QWidget | None) -> list[str]:
    paths, _ = QFileDialog.getOpenFileNames(parent, "Import certificates or keys", "", IMPORT_FILTERS)
    return paths


# ----- convert / export -----------------------------------------------------------------------

EXPORT_CHOICES = {
    "pkcs8": "Private key as PKCS#8 PEM (what ThingPark accepts)",
    "pem": "PEM: certificates, then the key, in one file",
    "der": "DER (binary): the certificate, or the key alone",
    "pem-parts": "PEM parts: certificate, chain and key as separate files",
    "bundle": "The chain as one PEM bundle",
}
_SUFFIX = {"pkcs8": ".key", "pem": ".pem", "der": ".der", "bundle": "-bundle.pem"}


def export_choices(entry) -> list[str]:
    """The forms an entry can be written in (app.certs.convert's)."""
    key, n_certs = has_key(entry), sum(1 for i in entry.items if i.is_certificate)
    choices = []
    if key:
        choices.append("pkcs8")
    if n_certs or key:
        choices += ["pem", "der"]
    if (key and n_certs) or n_certs > 1:
        choices.append("pem-parts")
    if n_certs:
        choices.append("bundle")
    return choices


def writes_key(to: str, entry) -> bool:
    """Whether that form writes the entry's private key (and so needs the password choice)."""
    if not has_key(entry):
        return False
    if to == "der":
        return not has_certificate(entry)
    return to in ("pkcs8", "pem", "pem-parts")


class ExportDialog(QDialog):
    """Writes an entry in another form. A key is written encrypted with the password typed
    here, or unencrypted only when "Write the key without a password" is ticked on purpose."""

    def __init__(self, library: CertificateLibrary, entry, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.library = library
        self.entry = entry
        self.written: list[Path] = []
        self.setWindowTitle(f"Convert or export “{entry.name}”")
        self.setMinimumWidth(560)
        self.form = QComboBox()
        for to in export_choices(entry):
            self.form.addItem(EXPORT_CHOICES[to], to)
        self.form.currentIndexChanged.connect(self._form_changed)
        self.path = QLineEdit()
        self.path.setPlaceholderText("Where to write it")
        browse = QToolButton()
        browse.setText("…")
        browse.setToolTip("Choose where to write it")
        browse.clicked.connect(self._browse)
        path_row = QHBoxLayout()
        path_row.setContentsMargins(0, 0, 0, 0)
        path_row.addWidget(self.path, 1)
        path_row.addWidget(browse)
        self.password = QLineEdit()
        self.password.setEchoMode(QLineEdit.EchoMode.Password)
        self.password.setPlaceholderText("The password the written key will need")
        self.password_again = QLineEdit()
        self.password_again.setEchoMode(QLineEdit.EchoMode.Password)
        self.password_again.setPlaceholderText("The same again")
        self.no_encryption = QCheckBox("Write the key without a password")
        self.no_encryption.setToolTip(
            "Anyone who can read the written file can then use the key; tick it only when the other side "
            "cannot take an encrypted key."
        )
        self.no_encryption.toggled.connect(self._update)
        self.problem = tinted("", "error")
        self.problem.hide()
        form = self.fields = QFormLayout()
        form.addRow("Form", self.form)
        form.addRow("Write to", path_row)
        form.addRow("Key password", self.password)  # rows shown only when the form writes a key
        form.addRow("Repeat it", self.password_again)
        form.addRow("", self.no_encryption)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.export_button = buttons.addButton("Export", QDialogButtonBox.ButtonRole.AcceptRole)
        buttons.accepted.connect(self.export)
        buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(self.problem)
        lay.addStretch(1)
        lay.addWidget(buttons)
        self._form_changed()

    def choose(self, to: str) -> None:
        index = self.form.findData(to)
        if index < 0:
            raise ValueError(f"{self.entry.name} cannot be written as {to}")
        self.form.setCurrentIndex(index)

    def _form_changed(self, *_args) -> None:
        to = self.form.currentData()
        safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in self.entry.name).strip("-") or "certificate"
        current = self.path.text().strip()
        if not current or self._suggested == current:
            base = Path.home() / (safe if to == "pem-parts" else safe + _SUFFIX.get(to, ".pem"))
            self.path.setText(str(base))
            self._suggested = str(base)
        self._update()

    _suggested = ""

    def _update(self, *_args) -> None:
        key = writes_key(self.form.currentData(), self.entry)
        for row in (self.password, self.password_again, self.no_encryption):
            self.fields.setRowVisible(row, key)
        plain = self.no_encryption.isChecked()
        self.password.setEnabled(not plain)
        self.password_again.setEnabled(not plain)
        self.problem.hide()

    def _browse(self) -> None:
        to = self.form.currentData()
        if to == "pem-parts":
            path = QFileDialog.getExistingDirectory(self, "Folder for the PEM parts", self.path.text())
        else:
            path, _ = QFileDialog.getSaveFileName(self, "Write to", self.path.text())
        if path:
            self.path.setText(path)

    def _say(self, sentence: str) -> None:
        self.problem.setText(sentence)
        self.problem.show()

    def export(self) -> bool:
        """Writes it; on a problem says why inline and stays open. True when written."""
        from app.certs import CertError

        to = self.form.currentData()
        target = self.path.text().strip()
        if not target:
            self._say("Choose where to write it.")
            return False
        out_password, no_encryption = None, False
        if writes_key(to, self.entry):
            if self.no_encryption.isChecked():
                no_encryption = True
            else:
                if not self.password.text():
                    self._say("Type a password for the key, or tick “Write the key without a password”.")
                    return False
                if self.password.text() != self.password_again.text():
                    self._say("The two passwords differ; type the same one twice.")
                    return False
                out_password = self.password.text()
        try:
            with self.library.lock:
                self.written = list(
                    self.library.store.export(
                        self.entry.id,
                        to,
                        Path(target).expanduser(),
                        out_password=out_password,
                        no_encryption=no_encryption,
                    )
                )
        except (CertError, OSError, KeyError) as exc:
            self._say(_sentence(exc, "The export failed."))
            return False
        self.accept()
        return True


def _sentence(exc: BaseException, fallback: str) -> str:
    if isinstance(exc, KeyError):
        return "That entry is no longer in the certificate manager."
    if isinstance(exc, OSError) and exc.strerror and not type(exc).__module__.startswith("app"):
        where = f" ({exc.filename})" if exc.filename else ""
        return f"{fallback[:-1]}: {exc.strerror}{where}."
    return str(exc) or fallback


# ----- generate -------------------------------------------------------------------------------

KEY_TYPES = {"ec-p256": "EC P-256 (ES256, smaller and faster)", "rsa2048": "RSA-2048 (RS256)"}
AKENZA_SENTENCE = (
    "Paste this into akenza: register the public key below (or the certificate, when akenza asks for one) "
    "as the device's credentials. The private key stays in the certificate manager as “{key}”; choose it "
    "as the device's private key in the akenza connection's settings."
)


def _text_box(text: str, max_lines: int = 12) -> QPlainTextEdit:
    """A read-only PEM box as tall as its text (up to max_lines, then it scrolls)."""
    box = QPlainTextEdit(text.strip())
    box.setReadOnly(True)
    box.setFont(_fixed_font())
    box.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
    lines = min(text.strip().count("\n") + 1, max_lines)
    margins = int(box.document().documentMargin() * 2) + box.frameWidth() * 2 + 4
    box.setFixedHeight(box.fontMetrics().lineSpacing() * lines + margins)
    return box


class GenerateDialog(QDialog):
    """A key pair with a self-signed certificate (and optionally a CSR), kept in the store;
    then the public key and the certificate to paste into akenza, with Copy buttons."""

    generated = Signal(list)  # the new StoredEntry list

    def __init__(self, library: CertificateLibrary, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.library = library
        self.entries: list = []
        self.result_texts: dict[str, str] = {}
        self.op: BackgroundOp | None = None
        self.setWindowTitle("Generate a key pair and certificate")
        self.setMinimumWidth(640)
        self.pages = QStackedWidget()
        # --- the question
        ask = QWidget()
        self.name = QLineEdit()
        self.name.setPlaceholderText("How the certificate manager lists it, e.g. akenza sensor 12")
        self.cn = QLineEdit()
        self.cn.setPlaceholderText("The certificate's common name, e.g. the akenza device id")
        self.cn.textChanged.connect(self._cn_changed)
        self.key_type = QComboBox()
        for kind, label in KEY_TYPES.items():
            self.key_type.addItem(label, kind)
        self.days = QSpinBox()
        self.days.setRange(1, 36500)
        self.days.setValue(365)
        self.days.setSuffix(" days")
        self.with_csr = QCheckBox(
            "Also make a certificate signing request (CSR), for a broker that signs client certificates"
        )
        ask_form = QFormLayout(ask)
        ask_form.addRow(
            _wrapped(
                "A new private key and a self-signed certificate, as akenza's device credentials need. "
                "The key is kept by the certificate manager (readable by you only)."
            )
        )
        ask_form.addRow("Name", self.name)
        ask_form.addRow("Common name", self.cn)
        ask_form.addRow("Key type", self.key_type)
        ask_form.addRow("Valid for", self.days)
        ask_form.addRow("", self.with_csr)
        self.problem = tinted("", "error")
        self.problem.hide()
        ask_form.addRow(self.problem)
        self.pages.addWidget(ask)
        # --- the result
        self.result_page = QWidget()
        self.result_lay = QVBoxLayout(self.result_page)
        self.result_lay.setContentsMargins(0, 0, 0, 0)
        self.pages.addWidget(self.result_page)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.generate_button = self.buttons.addButton("Generate", QDialogButtonBox.ButtonRole.AcceptRole)
        self.buttons.accepted.connect(self.generate)
        self.buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addWidget(self.pages, 1)
        lay.addWidget(self.buttons)
        self._name_typed = False
        self.name.textEdited.connect(lambda _t: setattr(self, "_name_typed", True))

    def _cn_changed(self, text: str) -> None:
        if not self._name_typed:
            self.name.setText(text)

    def generate(self) -> None:
        cn = self.cn.text().strip()
        name = self.name.text().strip() or cn
        if not cn:
            self._say("Type the common name (for akenza, the device id is a good one).")
            return
        kind = self.key_type.currentData()
        days = self.days.value()
        with_csr = self.with_csr.isChecked()
        library = self.library

        def work(progress):
            from app import certs

            progress.report(0, 0, "Generating the key…")
            key = certs.generate_key(kind)
            cert = certs.self_signed_certificate(key, cn, days)
            csr = certs.certificate_request(key, cn) if with_csr else None
            with library.lock:
                entries = library.store.add_generated(key, cert, name, csr=csr)
            return {
                "entries": entries,
                "public_key": certs.public_key_pem(key),
                "certificate": certs.certificates_pem([cert]).decode(),
                "csr": csr.decode() if isinstance(csr, bytes) else (csr or ""),
            }

        self.generate_button.setEnabled(False)
        self.problem.hide()
        self.op = BackgroundOp(
            self,
            work,
            title="Generate a key pair",
            label="Generating the key…",
            on_success=self._show_result,
            on_failure=self._failed,
            failure_box=False,
            cancellable=False,
        ).start()

    def _say(self, sentence: str) -> None:
        self.problem.setText(sentence)
        self.problem.show()

    def _failed(self, sentence: str) -> None:
        self.generate_button.setEnabled(True)
        self._say(sentence)

    def _show_result(self, result: dict) -> None:
        self.entries = list(result["entries"])
        self.result_texts = {k: result[k] for k in ("public_key", "certificate", "csr") if result.get(k)}
        self.library.announce()
        self.generated.emit(self.entries)
        key_entry = next((e for e in self.entries if e.has_key and not e.certificates), None)
        key_name = key_entry.name if key_entry is not None else "the private key"
        self.result_lay.addWidget(tinted(AKENZA_SENTENCE.format(key=key_name), "ok"))
        self.boxes: dict[str, QPlainTextEdit] = {}
        for key, title in (
            ("public_key", "Public key (PEM)"),
            ("certificate", "Self-signed certificate (PEM)"),
            ("csr", "Certificate signing request (PEM)"),
        ):
            text = self.result_texts.get(key)
            if not text:
                continue
            head = QHBoxLayout()
            label = QLabel(f"<b>{title}</b>")
            if key == "csr":
                label.setToolTip("Send it to whoever signs your broker's client certificates")
            copy = QPushButton("Copy")
            copy.setToolTip(f"Copy the {title.split(' (')[0].lower()} to the clipboard")
            copy.clicked.connect(lambda _=False, t=text: QGuiApplication.clipboard().setText(t))
            head.addWidget(label, 1)
            if key == "csr":
                save = QPushButton("Save…")
                save.setToolTip("Write the CSR to a file")
                save.clicked.connect(lambda _=False, t=text: self._save_text(t, "request.csr"))
                head.addWidget(save)
            head.addWidget(copy)
            setattr(self, f"copy_{key}", copy)
            self.result_lay.addLayout(head)
            box = _text_box(text, 6 if key == "csr" else 12)
            self.boxes[key] = box
            self.result_lay.addWidget(box)
        self.result_lay.addStretch(1)
        self.pages.setCurrentWidget(self.result_page)
        self.buttons.clear()
        close = self.buttons.addButton(QDialogButtonBox.StandardButton.Close)
        close.clicked.connect(self.accept)
        self.adjustSize()

    def _save_text(self, text: str, suggested: str) -> None:
        from app.profiles import write_file_atomically

        path, _ = QFileDialog.getSaveFileName(self, "Save", str(Path.home() / suggested))
        if not path:
            return
        try:
            write_file_atomically(Path(path), text.encode(), mode=0o644)
        except OSError as exc:
            self._say(_sentence(exc, "Saving failed."))


def _wrapped(text: str) -> QLabel:
    label = QLabel(text)
    label.setWordWrap(True)
    return label


# ----- fetch from a broker --------------------------------------------------------------------

NOT_TRUSTED = (
    "Not trusted yet. This is what the broker presented, unchecked: anyone between you and it could have "
    "presented another. Compare the fingerprint with the one your broker's administrator gives you, then "
    "trust it."
)


def chain_to_trust(chain: list, items: list) -> tuple[list, str]:
    """The certificates "Trust" adopts and the button's words: the chain's CA certificates when
    the broker presented them, else its own certificate (a self-signed broker)."""
    cas = [cert for cert, item in zip(chain, items, strict=False) if item.is_ca]
    if cas:
        return cas, "Trust this CA" if len(cas) == 1 else f"Trust these {len(cas)} CA certificates"
    return chain[-1:], "Trust this broker's certificate"


class FetchDialog(QDialog):
    """Connects to host:port over TLS without trusting it, shows the chain it presents (inspected),
    and adopts its CA into the store only when the user says so."""

    trusted = Signal(object)  # the new StoredEntry

    def __init__(self, library: CertificateLibrary, parent: QWidget | None = None, address: str = "") -> None:
        super().__init__(parent)
        self.library = library
        self.chain: list = []
        self.items: list = []
        self.host = ""
        self.entry = None
        self.op: BackgroundOp | None = None
        self.setWindowTitle("Fetch a broker's certificates")
        self.setMinimumSize(860, 520)
        self.address = QLineEdit(address)
        self.address.setPlaceholderText("broker.example.com:8883")
        self.address.returnPressed.connect(self.fetch)
        self.fetch_button = QPushButton("Fetch")
        self.fetch_button.setDefault(True)
        self.fetch_button.clicked.connect(self.fetch)
        row = QHBoxLayout()
        row.addWidget(QLabel("Broker"))
        row.addWidget(self.address, 1)
        row.addWidget(self.fetch_button)
        self.state = QLabel(
            "The console connects over TLS, reads the certificates the broker presents and hangs up; "
            "nothing is trusted until you choose to."
        )
        self.state.setWordWrap(True)
        self.state.setObjectName("hint")
        self.warning = tinted(NOT_TRUSTED, "warning")
        self.warning.hide()
        self.tree = QTreeWidget()
        self.tree.setHeaderLabels(["Certificate", "Valid until"])
        self.tree.setRootIsDecorated(False)
        self.tree.setAlternatingRowColors(True)
        self.tree.setWordWrap(True)
        self.tree.hide()
        self.name = QLineEdit()
        self.name.setPlaceholderText("Name in the certificate manager")
        self.trust_button = QPushButton("Trust this CA")
        self.trust_button.clicked.connect(self.trust)
        trust_row = QHBoxLayout()
        trust_row.addWidget(QLabel("Name"))
        trust_row.addWidget(self.name, 1)
        trust_row.addWidget(self.trust_button)
        self.trust_box = QFrame()
        self.trust_box.setLayout(trust_row)
        self.trust_box.hide()
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        buttons.accepted.connect(self.accept)
        lay = QVBoxLayout(self)
        lay.addLayout(row)
        lay.addWidget(self.state)
        lay.addWidget(self.warning)
        lay.addWidget(self.tree, 1)
        lay.addWidget(self.trust_box)
        lay.addWidget(buttons)

    def fetch(self) -> None:
        from app.certs import CertError, parse_host_port

        try:
            host, port = parse_host_port(self.address.text())
        except CertError as exc:
            self._state(str(exc), error=True)
            return
        self.host = host

        def work(progress):
            from app import certs

            progress.report(0, 0, f"Connecting to {host}:{port}…")
            chain = certs.fetch_chain(host, port)
            items = certs.read(certs.certificates_pem(chain), name=f"{host}:{port}").items()
            return chain, items

        self.fetch_button.setEnabled(False)
        self._state(f"Connecting to {host}:{port}…")
        self.op = BackgroundOp(
            self,
            work,
            title="Fetch certificates",
            label=f"Connecting to {host}:{port}…",
            on_success=lambda result: self._show_chain(host, port, *result),
            on_failure=self._failed,
            failure_box=False,
        ).start()

    def _state(self, text: str, error: bool = False) -> None:
        self.state.setText(text)
        self.state.setStyleSheet("color: #cf222e;" if error else "")

    def _failed(self, sentence: str) -> None:
        self.fetch_button.setEnabled(True)
        self._state(sentence, error=True)

    def _show_chain(self, host: str, port: int, chain: list, items: list) -> None:
        self.fetch_button.setEnabled(True)
        self.chain, self.items = list(chain), [i for i in items if i.kind in ("certificate", "ca-certificate")]
        n = len(self.chain)
        self._state(f"{host}:{port} presented {n} certificate{'s' if n != 1 else ''} (the broker's own first).")
        self.tree.clear()
        for position, item in enumerate(self.items):
            mark, word, color = status_look(item.status())
            role = "CA" if item.is_ca else ("broker" if position == 0 else "intermediate")
            title = f"{position + 1}. {item.subject} ({role})\n    issued by {item.issuer}"
            if item.sans:
                title += "\n    names: " + ", ".join(item.sans)
            title += "\n    SHA-256 " + fingerprint_lines(item.sha256).replace("\n", "\n                 ")
            until = f"{mark} {date_text(item.not_after)}\n{days_text(item.days_left_at())}"
            row = QTreeWidgetItem([title, until])
            row.setFont(0, _fixed_font())
            row.setForeground(1, _color(color))
            row.setToolTip(0, item.sha256)
            row.setData(0, Qt.ItemDataRole.UserRole, item.sha256)
            self.tree.addTopLevelItem(row)
        self.tree.resizeColumnToContents(0)
        self.tree.show()
        self.warning.show()
        self.to_trust, words = chain_to_trust(self.chain, self.items)
        self.trust_button.setText(words)
        self.trust_button.setEnabled(bool(self.to_trust))
        if not self.name.text().strip():
            self.name.setText(f"{host} CA" if words.startswith("Trust this CA") else host)
        self.trust_box.show()

    def trust(self) -> None:
        from app.certs import CertError

        if not getattr(self, "to_trust", None):
            return
        name = self.name.text().strip() or self.host
        try:
            with self.library.lock:
                self.entry = self.library.store.trust(self.to_trust, name)
        except (CertError, OSError) as exc:
            self._state(_sentence(exc, "The certificate could not be kept."), error=True)
            return
        self.library.announce()
        self.trusted.emit(self.entry)
        self.warning.setText(
            f"“{self.entry.name}” is now in the certificate manager. Choose it as the CA certificate in the "
            "connection's settings to connect to this broker with it."
        )
        set_tint(self.warning, "ok")
        self.trust_button.setEnabled(False)


def _color(name: str):
    from PySide6.QtGui import QBrush, QColor

    return QBrush(QColor(name))

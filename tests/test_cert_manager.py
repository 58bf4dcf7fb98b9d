"""The certificate manager, the wizards' certificate picker and the sidebar's expiry mark, driven
like a user would (pytest-qt, offscreen): a real store in a temp folder, the real keyring backend
of conftest, certificates generated per run, the real mosquitto's TLS listener for fetching."""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent, QGuiApplication
from PySide6.QtWidgets import QApplication

from app.devbroker import make_cert, make_key, write_pem

NOW = dt.datetime.now(dt.UTC)


# ----- fixtures and helpers -------------------------------------------------------------------


@pytest.fixture
def library(tmp_path):
    """A store of this test's own, shared by every widget the test makes."""
    from app.cert_store import CertificateStore
    from app.secrets import SecretStore
    from ui.certificates.library import CertificateLibrary, use_library

    lib = CertificateLibrary(CertificateStore(tmp_path / "certificates", SecretStore()))
    use_library(lib)
    yield lib
    use_library(None)


@pytest.fixture
def manager(qtbot, library):
    from ui.certificates.manager import CertificateManager

    m = CertificateManager(library)
    qtbot.addWidget(m)
    m.show()
    return m


class Prompt:
    """Answers the password questions in turn and remembers what was asked."""

    def __init__(self, *answers) -> None:
        self.answers = list(answers)
        self.asked: list[tuple[str, str, bool]] = []

    def __call__(self, filename: str, sentence: str, wrong: bool):
        self.asked.append((filename, sentence, wrong))
        return self.answers.pop(0) if self.answers else None


def wait_imported(qtbot, importer, timeout=15000) -> None:
    qtbot.waitUntil(lambda: not importer.busy, timeout=timeout)


def cert_pair(cn: str, days: float, *, ca=False, client=True):
    key = make_key()
    cert = make_cert(
        cn,
        key,
        ca=ca,
        client=client and not ca,
        not_before=NOW - dt.timedelta(days=30),
        not_after=NOW + dt.timedelta(days=days, hours=1),
    )
    return key, cert


def fingerprint(cert: x509.Certificate) -> str:
    return ":".join(f"{b:02X}" for b in cert.fingerprint(hashes.SHA256()))


def table_rows(manager) -> dict[str, tuple[str, ...]]:
    """name -> the row's cells, as the list shows them."""
    model = manager.proxy
    rows = {}
    for r in range(model.rowCount()):
        cells = tuple(model.index(r, c).data() for c in range(model.columnCount()))
        rows[cells[1]] = cells
    return rows


# ----- the list model -------------------------------------------------------------------------


def test_list_model_passes_qtmodeltester_with_several_kinds(qtmodeltester, library, pki):
    from ui.certificates.model import STATUS_ROLE, CertificateListModel

    store = library.store
    store.import_file(pki.ca)
    store.import_file(pki.expired_cert)
    store.import_file(pki.client_p12, password=pki.client_key_password)
    store.import_file(pki.client_key)
    key = make_key()
    later = make_cert("later", key, not_before=NOW + dt.timedelta(days=3), not_after=NOW + dt.timedelta(days=400))
    store.import_bytes(later.public_bytes(serialization.Encoding.PEM), "later.pem")
    model = CertificateListModel(library)
    qtmodeltester.check(model, force_py=True)
    assert model.rowCount() == 5
    statuses = sorted(model.index(r, 0).data(STATUS_ROLE) for r in range(5))
    assert statuses == ["expired", "expiring", "expiring", "key", "not-yet-valid"]  # the test PKI lives 30 days
    later_row = next(r for r in range(5) if model.index(r, 0).data(STATUS_ROLE) == "not-yet-valid")
    assert model.index(later_row, 0).data() == "◷ Not yet valid"
    assert "Not valid before" in model.index(later_row, 0).data(Qt.ItemDataRole.ToolTipRole)
    expired_row = next(r for r in range(5) if model.index(r, 0).data(STATUS_ROLE) == "expired")
    # the status is in words and a mark, and in a colour too
    assert model.index(expired_row, 0).data() == "✕ Expired"
    assert model.index(expired_row, 0).data(Qt.ItemDataRole.ForegroundRole).name() == "#cf222e"
    assert "days ago" in model.index(expired_row, 3).data()
    library.store.delete(library.entries()[0].id)
    library.announce()
    assert model.rowCount() == 4
    qtmodeltester.check(model, force_py=True)


# ----- import ---------------------------------------------------------------------------------


def test_import_pem_der_and_pkcs12_asking_the_password_again_when_wrong(qtbot, manager, library, pki, tmp_path):
    ca = x509.load_pem_x509_certificate(pki.ca.read_bytes())
    der = tmp_path / "ca.der"
    der.write_bytes(ca.public_bytes(serialization.Encoding.DER))
    _key, expiring = cert_pair("soon-expiring-client", 10)
    soon = write_pem(tmp_path / "soon.pem", expiring)
    _key, lasting = cert_pair("long-lived-ca", 400, ca=True)
    lasting_der = tmp_path / "lasting.der"
    lasting_der.write_bytes(lasting.public_bytes(serialization.Encoding.DER))
    prompt = Prompt("not-the-password", pki.client_key_password)
    manager.password_prompt = prompt
    importer = manager.import_paths([pki.client_cert, der, soon, lasting_der, pki.client_p12])
    wait_imported(qtbot, importer)
    assert importer.errors == []
    # the PKCS#12 asked twice: first that it needs one, then that the one given was wrong
    assert [(f, wrong) for f, _s, wrong in prompt.asked] == [("client.p12", False), ("client.p12", True)]
    assert "password" in prompt.asked[0][1].lower() and "password" in prompt.asked[1][1].lower()
    entries = {e.filename: e for e in library.entries()}
    assert set(entries) == {"client.pem", "ca.der", "soon.pem", "lasting.der", "client.p12"}
    p12 = entries["client.p12"]
    assert p12.has_key and p12.has_password
    assert library.store.password(p12.id) == pki.client_key_password  # kept in the keyring
    assert pki.client_key_password.encode() not in (library.store.directory / "index.json").read_bytes()
    rows = table_rows(manager)
    assert rows[entries["lasting.der"].name][0] == "✓ Valid"
    assert rows[entries["lasting.der"].name][2] == "CA certificate"
    assert rows[entries["soon.pem"].name][0] == "⚠ Expires in 10 d"
    assert "(10 days left)" in rows[entries["soon.pem"].name][3]
    assert "Imported" in manager.notices.text("import")
    # the last imported is selected and its details shown; the fingerprint as openssl prints it
    assert manager.details.entry.id == p12.id
    manager.select(entries["ca.der"].id)
    details = manager.details
    assert details.fingerprint.text() == fingerprint(ca)
    assert "Uplink Console Test CA" in details.field_text("subject")
    assert details.field_text("role").startswith("CA")
    assert details.field_text("users") == ""  # the saved connections are not known here: not claimed
    details.copy_fingerprint.click()
    assert QGuiApplication.clipboard().text() == fingerprint(ca)
    if shutil.which("openssl"):
        out = subprocess.run(
            ["openssl", "x509", "-fingerprint", "-sha256", "-noout", "-in", str(pki.ca)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert out.strip().split("=", 1)[1] == details.fingerprint.text()
    # the PKCS#12's details: several items, the key encrypted with its password in the keyring
    manager.select(p12.id)
    assert details.item_choice.isVisibleTo(manager) and details.item_choice.count() == 2
    details.item_choice.setCurrentIndex(1)
    assert details.field_text("kind") == "Private key"
    assert "keyring" in details.field_text("encrypted")
    assert details.field_text("key").startswith("RSA 2048-bit")
    # the same file again is the same entry, and said so
    again = manager.import_paths([lasting_der])
    wait_imported(qtbot, again)
    assert len(library.entries()) == 5
    assert "in the certificate manager already" in manager.notices.text("import")


def test_a_cancelled_password_question_imports_nothing_and_says_so(qtbot, manager, library, pki):
    manager.password_prompt = Prompt()  # the user closes the question
    importer = manager.import_paths([pki.client_key_encrypted])
    wait_imported(qtbot, importer)
    assert library.entries() == []
    assert "client-encrypted.key was not imported" in manager.notices.text("import-failed")


def test_a_file_that_is_no_certificate_is_refused_with_a_sentence(qtbot, manager, library, tmp_path):
    junk = tmp_path / "notes.pem"
    junk.write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all\n")
    importer = manager.import_paths([junk])
    wait_imported(qtbot, importer)
    assert library.entries() == []
    sentence = manager.notices.text("import-failed")
    assert "notes.pem" in sentence.lower() and "Traceback" not in sentence and sentence.endswith(".")


def test_files_dropped_on_the_window_are_imported(qtbot, manager, library, pki):
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(pki.ca)), QUrl.fromLocalFile(str(pki.client_key))])
    enter = QDragEnterEvent(
        manager.rect().center(),
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    QApplication.sendEvent(manager, enter)
    assert enter.isAccepted()
    drop = QDropEvent(
        QPointF(manager.rect().center()),
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    QApplication.sendEvent(manager, drop)
    assert drop.isAccepted()
    wait_imported(qtbot, manager.importer)
    assert sorted(e.kind for e in library.entries()) == ["CA certificate", "private key"]
    # something that is not a file is not taken
    text_only = QMimeData()
    text_only.setText("hello")
    refused = QDragEnterEvent(
        manager.rect().center(),
        Qt.DropAction.CopyAction,
        text_only,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    QApplication.sendEvent(manager, refused)
    assert not refused.isAccepted()


def test_a_damaged_index_is_shown_in_the_manager(qtbot, tmp_path, pki):
    from app.cert_store import CertificateStore
    from app.secrets import SecretStore
    from ui.certificates.library import CertificateLibrary
    from ui.certificates.manager import CertificateManager

    folder = tmp_path / "certificates"
    CertificateStore(folder, SecretStore()).import_file(pki.ca)
    (folder / "index.json").write_text("{ this is not json")
    lib = CertificateLibrary(CertificateStore(folder, SecretStore()))
    m = CertificateManager(lib)
    qtbot.addWidget(m)
    assert "damaged" in m.notices.text("store") and "rebuilt" in m.notices.text("store")
    assert m.proxy.rowCount() == 1


# ----- convert / export -----------------------------------------------------------------------


def test_convert_an_encrypted_key_to_pkcs8_needs_a_password_or_a_deliberate_tick(
    qtbot, manager, library, pki, tmp_path
):
    from app import certs

    manager.password_prompt = Prompt(pki.client_key_password)
    wait_imported(qtbot, manager.import_paths([pki.client_key_encrypted]))
    entry = library.entries()[0]
    manager.select(entry.id)
    dialog = manager.open_export()
    assert dialog.form.currentData() == "pkcs8"  # a key's first choice
    assert dialog.password.isVisibleTo(dialog) and not dialog.no_encryption.isChecked()  # never the default
    out = tmp_path / "thingpark.key"
    dialog.path.setText(str(out))
    assert not dialog.export()
    assert "Write the key without a password" in dialog.problem.text() and not out.exists()
    dialog.password.setText("new-pass-1")
    dialog.password_again.setText("new-pass-2")
    assert not dialog.export() and "differ" in dialog.problem.text()
    dialog.password_again.setText("new-pass-1")
    assert dialog.export()
    data = out.read_bytes()
    assert data.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert (out.stat().st_mode & 0o777) == 0o600
    original = serialization.load_pem_private_key(pki.client_key.read_bytes(), None)
    back = certs.read(data, password="new-pass-1")
    assert back.key_format == "PKCS#8" and certs.key_matches(
        x509.load_pem_x509_certificate(pki.client_cert.read_bytes()), back.key
    )
    assert back.key.private_numbers() == original.private_numbers()
    if shutil.which("openssl"):
        subprocess.run(
            ["openssl", "pkey", "-in", str(out), "-passin", "pass:new-pass-1", "-noout"],
            check=True,
            capture_output=True,
        )
    assert "Written" in manager.notices.text("export") and str(out) in manager.notices.text("export")
    # unencrypted only when ticked on purpose
    plain = tmp_path / "plain.key"
    dialog = manager.open_export()
    dialog.path.setText(str(plain))
    dialog.no_encryption.setChecked(True)
    assert not dialog.password.isEnabled()
    assert dialog.export()
    assert plain.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    if shutil.which("openssl"):
        subprocess.run(["openssl", "pkey", "-in", str(plain), "-noout"], check=True, capture_output=True)


def test_pkcs12_to_pem_parts_and_certificate_to_der(qtbot, manager, library, pki, tmp_path):
    manager.password_prompt = Prompt(pki.client_key_password)
    wait_imported(qtbot, manager.import_paths([pki.client_p12]))
    entry = library.entries()[0]
    manager.select(entry.id)
    dialog = manager.open_export()
    assert [dialog.form.itemData(i) for i in range(dialog.form.count())] == [
        "pkcs8",
        "pem",
        "der",
        "pem-parts",
        "bundle",
    ]
    dialog.choose("pem-parts")
    folder = tmp_path / "parts"
    folder.mkdir()
    dialog.path.setText(str(folder))
    dialog.password.setText("parts-pass")
    dialog.password_again.setText("parts-pass")
    assert dialog.export(), dialog.problem.text()
    names = sorted(p.name for p in dialog.written)
    assert names == ["certificate.pem", "key.pem"]
    client = x509.load_pem_x509_certificate(pki.client_cert.read_bytes())
    assert x509.load_pem_x509_certificate((folder / "certificate.pem").read_bytes()) == client
    serialization.load_pem_private_key((folder / "key.pem").read_bytes(), b"parts-pass")
    dialog = manager.open_export()
    dialog.choose("der")
    assert not dialog.password.isVisibleTo(dialog)  # DER writes the certificate: no key question
    der = tmp_path / "client.der"
    dialog.path.setText(str(der))
    assert dialog.export()
    assert x509.load_der_x509_certificate(der.read_bytes()) == client


# ----- generate -------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "algorithm"), [("ec-p256", "ES256"), ("rsa2048", "RS256")])
def test_generate_shows_a_public_key_that_verifies_the_device_jwt(qtbot, manager, library, kind, algorithm):
    dialog = manager.open_generate()
    dialog.cn.setText("akenza-device-0042")
    assert dialog.name.text() == "akenza-device-0042"  # the name follows the common name until typed
    dialog.key_type.setCurrentIndex(dialog.key_type.findData(kind))
    dialog.with_csr.setChecked(True)
    dialog.generate_button.click()
    qtbot.waitUntil(lambda: dialog.op is not None and not dialog.op.running, timeout=30000)
    assert dialog.op.state == "ok", dialog.op.error
    assert dialog.pages.currentWidget() is dialog.result_page
    public_pem = dialog.boxes["public_key"].toPlainText()
    assert public_pem.startswith("-----BEGIN PUBLIC KEY-----")
    assert dialog.boxes["public_key"].isReadOnly()
    assert dialog.boxes["certificate"].toPlainText().startswith("-----BEGIN CERTIFICATE-----")
    assert dialog.boxes["csr"].toPlainText().startswith("-----BEGIN CERTIFICATE REQUEST-----")
    dialog.copy_public_key.click()
    assert QGuiApplication.clipboard().text().strip() == public_pem
    # the key kept in the store signs the device's JWT; the shown public key verifies it
    key_entry = next(e for e in dialog.entries if e.has_key and not e.certificates)
    key = library.store.contents(key_entry.id).key
    token = jwt.encode({"sub": "akenza-device-0042", "aud": "akenza.io"}, key, algorithm=algorithm)
    claims = jwt.decode(token, public_pem, algorithms=[algorithm], audience="akenza.io")
    assert claims["sub"] == "akenza-device-0042"
    cert = x509.load_pem_x509_certificate(dialog.boxes["certificate"].toPlainText().encode())
    assert (
        cert.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .strip()
        == public_pem.encode()
    )
    with pytest.raises(jwt.InvalidSignatureError):
        other = make_key("rsa" if algorithm == "RS256" else "ec")
        jwt.decode(jwt.encode({"sub": "x"}, other, algorithm=algorithm), public_pem, algorithms=[algorithm])
    # the manager lists them and shows the certificate
    names = set(table_rows(manager))
    assert {"akenza-device-0042", "akenza-device-0042 (private key)"} <= names
    assert manager.details.entry.certificates
    assert "Generated" in manager.notices.text("import")


def test_generate_without_a_common_name_says_what_to_type(qtbot, manager, library):
    dialog = manager.open_generate()
    dialog.generate_button.click()
    assert "common name" in dialog.problem.text() and dialog.problem.isVisibleTo(dialog)
    assert library.entries() == []


# ----- rename and delete ----------------------------------------------------------------------


def test_delete_names_the_connections_that_use_it_and_asks(qtbot, manager, library, pki, tmp_path):
    from app.cert_store import reference, secret_id
    from app.profiles import ProfileStore, new_profile

    manager.password_prompt = Prompt(pki.client_key_password)
    wait_imported(qtbot, manager.import_paths([pki.client_p12, pki.ca]))
    p12 = next(e for e in library.entries() if e.has_key)
    profiles = ProfileStore(tmp_path / "config")
    profiles.add(
        new_profile("Plant broker", "generic", {"url": "mqtts://127.0.0.1:8883", "cert_file": reference(p12.id)})
    )
    library.profiles = profiles
    manager.select(p12.id)
    assert manager.details.field_text("users") == "Plant broker"
    asked = []
    manager.confirm = lambda title, text: asked.append(text) or False
    assert not manager.delete_current()
    assert "“Plant broker”" in asked[0] and "will not connect" in asked[0]
    assert library.get(p12.id) is not None  # refused: still there
    manager.confirm = lambda title, text: asked.append(text) or True
    assert manager.delete_current()
    assert library.get(p12.id) is None and not p12.path.exists()
    assert library.store.secrets.get(secret_id(p12.id), "key_password") is None  # its password too
    assert manager.proxy.rowCount() == 1
    # one nobody uses: the details and the question say so plainly
    manager.select(library.entries()[0].id)
    assert manager.details.field_text("users") == "No saved connection uses it."
    assert manager.delete_current()
    assert "Delete “" in asked[-1] and "not touched" in asked[-1]


def test_rename_shows_at_once(qtbot, manager, library, pki):
    library.store.import_file(pki.ca)
    library.announce()
    entry = library.entries()[0]
    manager.select(entry.id)
    manager.ask_name = lambda title, label, text: "  Plant CA  "
    manager.rename_current()
    assert library.get(entry.id).name == "Plant CA"
    assert "Plant CA" in table_rows(manager)
    assert "Plant CA" in manager.details.title.text()


# ----- fetch ----------------------------------------------------------------------------------


def test_fetch_shows_the_chain_untrusted_and_trusts_it_on_request(qtbot, manager, library, broker, pki):
    dialog = manager.open_fetch(f"127.0.0.1:{broker.ports.tls}")
    assert not dialog.warning.isVisibleTo(dialog)
    dialog.fetch_button.click()
    qtbot.waitUntil(lambda: dialog.op is not None and not dialog.op.running, timeout=20000)
    assert dialog.op.state == "ok", dialog.op.error
    assert dialog.warning.isVisibleTo(dialog) and dialog.warning.text().startswith("Not trusted yet")
    server = x509.load_pem_x509_certificate(pki.server_cert.read_bytes())
    assert dialog.chain[0] == server
    assert dialog.tree.topLevelItemCount() == len(dialog.chain)
    assert dialog.tree.topLevelItem(0).data(0, Qt.ItemDataRole.UserRole) == fingerprint(server)
    assert fingerprint(server)[:47] in dialog.tree.topLevelItem(0).text(0)  # shown, in two lines
    assert "CN=localhost" in dialog.tree.topLevelItem(0).text(0)
    assert library.entries() == []  # nothing trusted by looking
    dialog.trust_button.click()
    entry = dialog.entry
    assert entry is not None and entry.origin == "fetched"
    assert library.get(entry.id) is not None and manager.details.entry.id == entry.id
    assert "now in the certificate manager" in dialog.warning.text()


def test_fetch_from_a_port_without_tls_says_so(qtbot, manager, broker):
    dialog = manager.open_fetch(f"127.0.0.1:{broker.ports.plain}")
    dialog.fetch()
    qtbot.waitUntil(lambda: dialog.op is not None and not dialog.op.running, timeout=20000)
    assert dialog.op.state == "error"
    assert "TLS" in dialog.state.text() and "Traceback" not in dialog.state.text()
    dialog.address.setText("127.0.0.1:99999")
    dialog.fetch()
    assert "port" in dialog.state.text()


# ----- the picker in the wizard ---------------------------------------------------------------


def _generic_tls_page(qtbot):
    from ui.connection.wizard import make_wizard

    w = make_wizard(None, "generic")
    qtbot.addWidget(w)
    w.show()
    page = w.currentPage()
    page.editors["url"].line.setText("mqtts://127.0.0.1:8883")
    w.next()
    topics = w.currentPage().editors["topics"]
    (topics.area.setPlainText if topics.field.kind == "textarea" else topics.line.setText)("t/#")
    w.next()
    assert w.current_key() == "tls"
    return w


def test_the_picker_round_trips_a_store_reference_through_a_wizard_page(qtbot, library, pki):
    from app.cert_store import reference
    from ui.certificates.picker import CertificatePicker

    ca = library.store.import_file(pki.ca)
    key_only = library.store.import_file(pki.client_key)
    client_only = library.store.import_file(pki.client_cert)
    library.announce()
    w = _generic_tls_page(qtbot)
    editor = w.currentPage().editors["ca_file"]
    picker = editor.picker
    assert isinstance(picker, CertificatePicker) and picker.role == "ca"
    labels = [picker.combo.itemText(i) for i in range(picker.combo.count())]
    assert labels[0] == "None" and labels[-1] == "A file on disk…"
    expires = ca.main.not_after.strftime("%Y-%m-%d")
    assert f"{ca.name} — ⚠ expires {expires} ({ca.main.days_left_at()} days)" in labels  # the test PKI: 30 days
    assert not any(label.startswith((key_only.name, client_only.name)) for label in labels)  # a key, a client
    picker.choose_entry(ca.id)
    assert w.flow.values["ca_file"] == reference(ca.id)
    assert editor.value() == reference(ca.id)
    w.back()
    w.next()
    assert w.currentPage().editors["ca_file"].picker.value() == reference(ca.id)
    # the old path field still works, typed or set
    editor.set_value(str(pki.ca))
    assert picker.value() == str(pki.ca) and picker.file.isVisibleTo(w)
    picker.combo.setCurrentIndex(0)
    assert w.flow.values["ca_file"] in ("", None) and not picker.file.isVisibleTo(w)
    picker.edit.setText(str(pki.other_ca))
    assert w.flow.values["ca_file"] == str(pki.other_ca)
    # a reference to a deleted entry stays the value, said as such
    editor.set_value(reference("0123456789abcdef"))
    assert picker.value() == reference("0123456789abcdef")
    assert "deleted" in picker.combo.currentText() and "deleted" in picker.note.text()
    # akenza's device key is a key picker too
    from app import platforms
    from ui.connection.wizard.editors import FieldEditor

    jwt_editor = FieldEditor(platforms.get("akenza").field("jwt_key_file"), None)
    assert jwt_editor.picker.role == "key"


def test_the_picker_imports_on_the_spot_and_a_pkcs12_makes_the_key_unnecessary(qtbot, library, pki):
    from app.cert_store import reference

    w = _generic_tls_page(qtbot)
    editor = w.currentPage().editors["cert_file"]
    picker = editor.picker
    assert picker.role == "certificate"
    seen = []
    picker.key_included.connect(seen.append)
    picker.password_prompt = Prompt(pki.client_key_password)
    wait_imported(qtbot, picker.import_paths([pki.client_p12]))
    entry = next(e for e in library.entries() if e.has_key)
    assert w.flow.values["cert_file"] == reference(entry.id)
    assert picker.includes_key and seen[-1] is True
    assert "leave the client private key empty" in picker.note.text()
    # the key field's picker lists the same PKCS#12 (it holds a key) and hears of the import
    key_picker = w.currentPage().editors["key_file"].picker
    assert key_picker.combo.findData(reference(entry.id)) > 0
    # a certificate alone: the key is still needed
    library.store.import_file(pki.client_cert)
    library.announce()
    alone = next(e for e in library.entries() if e.filename == "client.pem")
    picker.choose_entry(alone.id)
    assert not picker.includes_key and seen[-1] is False
    assert "private key" not in picker.note.text()
    # Manage… opens the manager over the (modal) wizard, once
    manager = picker.open_manager()
    assert manager.parent() is w and manager.isVisible()
    assert w.currentPage().editors["ca_file"].picker.open_manager() is manager
    manager.close()


# ----- the sidebar's mark ---------------------------------------------------------------------


def test_sidebar_marks_a_certificate_expiring_in_10_days_an_expired_file_and_the_override(
    qtbot, library, pki, tmp_path
):
    from app.cert_store import reference
    from app.profiles import ProfileStore, new_profile
    from ui.connection.sidebar import ConnectionSidebar, Entry

    _key, soon = cert_pair("client-renew-me", 10)
    entry = library.store.import_bytes(soon.public_bytes(serialization.Encoding.PEM), "soon.pem", name="Field client")
    library.announce()
    expired_file = pki.expired_cert
    profiles = ProfileStore(tmp_path / "config")
    url = {"url": "mqtts://127.0.0.1:8883"}
    soon_profile = profiles.add(new_profile("Soon", "generic", {**url, "cert_file": reference(entry.id)}))
    expired_profile = profiles.add(new_profile("Old CA", "generic", {**url, "ca_file": str(expired_file)}))
    override_profile = profiles.add(
        new_profile("Override", "generic", {**url, "ca_file": str(expired_file), "allow_expired": True})
    )
    _key, lasting = cert_pair("long-lived-ca", 400, ca=True)
    lasting_file = write_pem(tmp_path / "lasting-ca.pem", lasting)
    fine_profile = profiles.add(new_profile("Fine", "generic", {**url, "ca_file": str(lasting_file)}))
    sidebar = ConnectionSidebar()
    qtbot.addWidget(sidebar)
    sidebar.resize(300, 400)
    sidebar.show()
    sidebar.profile_lookup = profiles.get
    sidebar.set_entries([Entry(p.id, p.name, "generic", "mqtts://127.0.0.1:8883") for p in profiles.profiles()])
    marks = lambda: {e.name: e.certificate for e in sidebar.entries()}  # noqa: E731
    mark = marks()["Soon"]
    assert mark is not None and mark.level == "expiring" and mark.text == "⚠ 10 d"
    when = soon.not_valid_after_utc.strftime("%Y-%m-%d")
    assert f"The client certificate “Field client” expires in 10 days (on {when})." in mark.tooltip
    # files are read off the GUI thread: the marks arrive a moment later
    qtbot.waitUntil(lambda: marks()["Old CA"] is not None, timeout=10000)
    assert marks()["Old CA"].level == "expired" and marks()["Old CA"].text == "✕ expired"
    assert "The CA certificate “expired.pem” expired on" in marks()["Old CA"].tooltip
    assert marks()["Override"].text == "✕ expired, override on"
    assert "connects with an expired certificate" in marks()["Override"].tooltip
    assert marks()["Fine"] is None
    items = {sidebar.list.item(i).data(Qt.ItemDataRole.UserRole): sidebar.list.item(i) for i in range(4)}
    assert "expires in 10 days" in items[soon_profile.id].toolTip()
    assert "expired on" in items[expired_profile.id].toolTip()
    assert "override" in items[override_profile.id].toolTip()
    assert items[fine_profile.id].toolTip().count("\n") == 1
    sidebar.grab()  # paints the marks (nothing is read while painting)
    # deleting the entry from the store takes the mark away
    library.store.delete(entry.id)
    library.announce()
    assert marks()["Soon"] is None


# ----- the window ---------------------------------------------------------------------------


def test_tools_menu_opens_one_manager_that_knows_the_saved_connections(qtbot, library, pki, tmp_path):
    from app.cert_store import reference
    from app.profiles import ProfileStore, new_profile
    from app.secrets import SecretStore
    from ui.main_window import MainWindow

    entry = library.store.import_file(pki.ca)
    profiles = ProfileStore(tmp_path / "config")
    profiles.add(new_profile("Lab", "generic", {"url": "mqtts://127.0.0.1:1", "ca_file": reference(entry.id)}))
    window = MainWindow(profiles=profiles, secrets=SecretStore())
    qtbot.addWidget(window)
    actions = [a.text() for a in window.tools_menu.actions()]
    assert actions == ["Certificates…"]
    window.tools_menu.actions()[0].trigger()
    manager = window.show_certificates()
    assert window.show_certificates() is manager  # one instance
    assert manager.isVisible() and not manager.isModal()
    manager.select(entry.id)
    assert manager.details.field_text("users") == "Lab"
    window.close()


def test_the_window_sidebar_marks_an_expiring_certificate_without_more_wiring(qtbot, library, tmp_path):
    from app.cert_store import reference
    from app.profiles import ProfileStore, new_profile
    from app.secrets import SecretStore
    from ui.main_window import MainWindow

    _key, soon = cert_pair("client-renew-me", 10)
    entry = library.store.import_bytes(soon.public_bytes(serialization.Encoding.PEM), "soon.pem", name="Renew me")
    profiles = ProfileStore(tmp_path / "config")
    saved = profiles.add(
        new_profile("Lab", "generic", {"url": "mqtts://127.0.0.1:1", "cert_file": reference(entry.id)})
    )
    window = MainWindow(profiles=profiles, secrets=SecretStore())
    qtbot.addWidget(window)
    [shown] = window.sidebar.entries()
    assert shown.key == saved.id and shown.certificate is not None
    assert shown.certificate.text == "⚠ 10 d" and "“Renew me” expires in 10 days" in shown.certificate.tooltip
    window.close()

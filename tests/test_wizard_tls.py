"""Certificates in the connection wizards: the certificate manager's entries chosen on the TLS
page ("store:<id>"), a PKCS#12 whose password lives only in the keyring connecting to the
client-certificate listener, expiry said on the page (and refused unless allowed knowingly), a
self-hosted broker's CA adopted from the test page, and akenza's device key from the store.

Real parts: the test mosquitto (TLS, client-certificate and expired-certificate listeners), the
default certificate store of this run (the engine process resolves references through it) and
the file keyring conftest sets up."""

from __future__ import annotations

import datetime as dt

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from PySide6.QtWidgets import QWizard

from app import cert_store
from app.cert_store import CertificateStore
from app.devbroker import make_cert, make_key, write_pem
from app.mqtt.process import EngineProcess
from app.platforms import akenza
from app.wizard_flow import flow_for
from tests.conftest import until
from ui.certificates.library import CertificateLibrary, use_library
from ui.connection.wizard import make_wizard
from ui.connection.wizard.pages import ConnectionTestPage, FieldsPage


@pytest.fixture
def engine():
    engine = EngineProcess()
    yield engine
    engine.close()


@pytest.fixture
def store():
    """The run's default store (the one the engine process reads references from), shown to the
    window's pickers through a library of its own."""
    store = CertificateStore()
    use_library(CertificateLibrary(store))
    yield store
    use_library(None)


def _wizard(qtbot, platform: str, engine):
    w = make_wizard(None, platform, engine=engine, test_timeout=0.5)
    qtbot.addWidget(w)
    w.show()
    return w


def _next(w) -> str:
    button = w.button(QWizard.WizardButton.NextButton)
    here = w.current_key()
    assert button.isEnabled(), (here, w.flow.page_problems(here), w.flow.page_problem(here))
    button.click()
    return w.current_key()


def _to_tls_page(w, url: str, topic: str) -> FieldsPage:
    assert w.current_key() == "broker"
    w.currentPage().editors["url"].line.setText(url)
    assert _next(w) == "topics"
    w.currentPage().editors["topics"].line.setText(topic)
    assert _next(w) == "tls"
    return w.currentPage()


async def _answer(w, timeout: float = 20.0):
    page = w.currentPage()
    assert isinstance(page, ConnectionTestPage)
    await until(lambda: not page.running and page.headline.text() and not page.headline.text().endswith("…"), timeout)
    return w.flow.test_result


def _short_lived(tmp_path, pki_dir, days_left: float, name: str):
    """A client certificate signed by a fresh CA, valid for `days_left` more days (negative:
    expired), and its key: written as PEM files."""
    ca_key = make_key()
    ca = make_cert("Short-lived CA", ca_key, ca=True, not_after=dt.datetime.now(dt.UTC) + dt.timedelta(days=400))
    key = make_key()
    now = dt.datetime.now(dt.UTC)
    cert = make_cert(
        name,
        key,
        ca,
        ca_key,
        client=True,
        not_before=now - dt.timedelta(days=100),
        not_after=now + dt.timedelta(days=days_left),
    )
    return write_pem(tmp_path / f"{name}.pem", cert), write_pem(tmp_path / f"{name}.key", key)


# ----- the flow, without Qt --------------------------------------------------------------------


def test_a_certificate_expiring_within_30_days_is_said_on_the_page_but_does_not_hold_it(tmp_path, pki, store):
    cert, key = _short_lived(tmp_path, pki.dir, 10, "expiring-client")
    flow = flow_for("generic")
    flow.set("url", "mqtts://localhost:8883")
    flow.set("cert_file", str(cert))
    flow.set("key_file", str(key))
    assert flow.page_problem("tls") is None
    warning = flow.tls_warning("tls")
    assert warning and "expiring-client" in warning and "days" in warning, warning

    entry = store.import_file(cert)  # the same certificate from the store says the same
    flow.set("cert_file", entry.reference)
    warning_from_store = flow.tls_warning("tls")
    assert warning_from_store and "expiring-client" in warning_from_store


def test_an_expired_client_certificate_is_refused_unless_allowed_knowingly(tmp_path, pki, store):
    cert, key = _short_lived(tmp_path, pki.dir, -3, "expired-client")
    flow = flow_for("generic")
    flow.set("url", "mqtts://localhost:8883")
    flow.set("cert_file", str(cert))
    flow.set("key_file", str(key))
    problem = flow.page_problem("tls")
    assert problem and "expired" in problem and "expired-client" in problem, problem
    assert not flow.page_complete("tls")
    assert flow.tls_warning("tls") is None  # the problem is what the page says

    flow.set("allow_expired", True)
    assert flow.page_problem("tls") is None and flow.page_complete("tls")
    warning = flow.tls_warning("tls")
    assert warning and "use it anyway" in warning
    assert flow.profile()["allow_expired"] is True  # kept with the connection, where the sidebar shows it


def test_a_deleted_store_entry_is_a_sentence_on_the_field(pki, store):
    entry = store.import_file(pki.ca)
    flow = flow_for("generic")
    flow.set("url", "mqtts://localhost:8883")
    flow.set("ca_file", entry.reference)
    assert flow.page_problem("tls") is None and "ca_file" not in flow.page_problems("tls")
    store.delete(entry.id)
    problem = flow.page_problems("tls").get("ca_file") or flow.page_problem("tls")
    assert problem and "deleted from the certificate manager" in problem, problem


def test_akenza_device_key_from_the_store_signs_with_its_password_from_the_keyring(tmp_path, store):
    key = make_key()  # EC P-256: ES256
    path = write_pem(tmp_path / "device.key", key, "device-key-pass")
    entry = store.import_file(path, password="device-key-pass")
    flow = flow_for("akenza")
    flow.set("auth_mode", "jwt")
    flow.set("jwt_key_file", entry.reference)
    assert flow.problem("jwt_key_file") is None
    signer, algorithm = akenza.signing_key({"jwt_key_file": entry.reference, "jwt_algorithm": "auto"})
    assert algorithm == "ES256"
    token = jwt.encode({"sub": "device-1"}, signer, algorithm="ES256")
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert jwt.decode(token, public, algorithms=["ES256"])["sub"] == "device-1"


# ----- the window ------------------------------------------------------------------------------


def test_pkcs12_from_the_store_with_its_password_only_in_the_keyring_connects_to_mtls(
    qtbot, loop, engine, broker, pki, store, topic, tmp_path
):
    # A PKCS#12 of its own for this test, protected by a password the wizard never sees.
    key = serialization.load_pem_private_key(pki.client_key.read_bytes(), None)
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(pki.client_cert.read_bytes())
    p12 = pkcs12.serialize_key_and_certificates(
        b"client", key, cert, None, serialization.BestAvailableEncryption(b"p12-pass-only-in-keyring")
    )
    (tmp_path / "client-from-store.p12").write_bytes(p12)
    bundle = store.import_file(tmp_path / "client-from-store.p12", password="p12-pass-only-in-keyring")
    ca = store.import_file(pki.ca)
    assert bundle.has_password and store.password(bundle.id) == "p12-pass-only-in-keyring"

    w = _wizard(qtbot, "generic", engine)
    page = _to_tls_page(w, broker.url("mtls"), topic)
    page.editors["ca_file"].picker.choose_entry(ca.id)
    page.editors["cert_file"].picker.choose_entry(bundle.id)
    assert w.flow.values["cert_file"] == bundle.reference
    # Nothing wrong; the test PKI's certificates live 30 days, so the page says they expire soon.
    assert page.problem.level == "warning" and "expires on" in page.problem.text.text(), page.problem.text.text()

    async def scenario():
        assert _next(w) == "test"
        result = await _answer(w)
        assert result.kind == "quiet", result
        _next(w)

    loop.run_until_complete(scenario())
    finish = w.currentPage()
    finish.name.setText(f"mTLS from the store {topic}")
    w.button(QWizard.WizardButton.FinishButton).click()
    result = w.wizard_result
    assert result.values["cert_file"] == bundle.reference and result.values["ca_file"] == ca.reference
    assert not result.values.get("key_file")
    assert "key_password" not in result.secrets  # the password stays with the store's entry


def test_choosing_a_stored_certificate_fills_in_its_stored_key(store):
    from app import certs

    key = certs.generate_key("ec-p256")
    key_entry, cert_entry = store.add_generated(key, certs.self_signed_certificate(key, "pair-device"), "pair-device")
    other_key = certs.generate_key("ec-p256")
    lonely = store.add_generated(other_key, certs.self_signed_certificate(other_key, "lonely"), "lonely")[1]
    store.delete(lonely.id)  # the certificate gone, its key stays: a key of nothing here
    flow = flow_for("generic")
    flow.set("url", "mqtts://localhost:8883")
    changed = flow.set("cert_file", cert_entry.reference)
    assert "key_file" in changed and flow.values["key_file"] == key_entry.reference, "its key, found by matching"
    flow.set("cert_file", "")
    changed = flow.set("cert_file", cert_entry.reference)
    assert "key_file" not in changed, "a key chosen already is never replaced"
    assert store.key_for(key_entry.id) is None, "a key entry has no key to look for"
    third = certs.generate_key("rsa2048")
    stray = store.import_bytes(certs.certificates_pem([certs.self_signed_certificate(third, "stray")]), "stray.pem")
    assert store.key_for(stray.id) is None, "no stored key belongs to it"
    fresh = flow_for("generic")
    assert "key_file" not in fresh.set("cert_file", stray.reference)


def test_a_certificate_and_key_imported_apart_connect_to_mtls_once_the_certificate_is_chosen(
    qtbot, loop, engine, broker, pki, store, topic
):
    ca = store.import_file(pki.ca)
    key = store.import_file(pki.client_key)
    cert = store.import_file(pki.client_cert)
    w = _wizard(qtbot, "generic", engine)
    page = _to_tls_page(w, broker.url("mtls"), topic)
    page.editors["ca_file"].picker.choose_entry(ca.id)
    page.editors["cert_file"].picker.choose_entry(cert.id)
    assert w.flow.values["key_file"] == key.reference
    assert page.editors["key_file"].picker.value() == key.reference, "the key field shows it"

    async def scenario():
        assert _next(w) == "test"
        result = await _answer(w)
        assert result.kind == "quiet", result

    loop.run_until_complete(scenario())


def test_an_untrusted_self_hosted_broker_is_adopted_from_the_test_page(qtbot, loop, engine, broker, store, topic):
    w = _wizard(qtbot, "generic", engine)
    _to_tls_page(w, broker.url("tls"), topic)  # no CA chosen: the system's, which never signed the test CA

    async def scenario():
        assert _next(w) == "test"
        page = w.currentPage()
        result = await _answer(w)
        assert result.kind == "certificate" and "not trusted" in result.sentence, result
        assert page.trust_button.isVisibleTo(w)
        page.trust_button.click()
        dialog = page.trust_dialog
        await until(lambda: dialog.trust_box.isVisible(), 15)
        assert "presented" in dialog.state.text()
        shown = [dialog.tree.topLevelItem(i).text(0) for i in range(dialog.tree.topLevelItemCount())]
        assert len(shown) == 2 and "CN=localhost" in shown[0] and "Uplink Console Test CA" in shown[1], shown
        assert dialog.trust_button.text() == "Trust this CA"
        dialog.trust()
        await until(lambda: w.flow.test_result is not None and not page.running, 20)
        return page

    page = loop.run_until_complete(scenario())
    assert w.flow.test_result.kind == "quiet", w.flow.test_result
    reference = w.flow.values["ca_file"]
    entry_id = cert_store.entry_id_of(reference)
    adopted = store.get(entry_id)  # the CA (an earlier import of the same bytes is the same entry)
    assert [item.is_ca for item in adopted.certificates] == [True]
    assert "Uplink Console Test CA" in adopted.certificates[0].subject
    assert not page.trust_button.isVisibleTo(w)


def test_a_broker_certificate_trusted_as_the_ca_must_cover_the_brokers_host(tmp_path, store):
    key = make_key()
    self_signed = make_cert("broker.internal", key, dns=("broker.internal",))  # not a CA: the broker's own
    entry = store.import_file(write_pem(tmp_path / "self-signed.pem", self_signed))
    flow = flow_for("generic")
    flow.set("ca_file", entry.reference)
    flow.set("url", "mqtts://broker.internal:8883")
    assert flow.page_problem("tls") is None
    assert not (flow.tls_warning("tls") or "").count("not for")
    flow.set("url", "mqtts://10.1.2.3:8883")
    warning = flow.tls_warning("tls")
    assert warning and "is for broker.internal, not for 10.1.2.3" in warning, warning

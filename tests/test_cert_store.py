"""The certificate store (app/cert_store.py) on real files and the real (file) keyring, and
app/tls.py with store references connecting to the test mosquitto: a PKCS#12 whose password is
held only in the keyring, deleted entries, expired certificates refused or knowingly allowed."""

from __future__ import annotations

import datetime as dt
import os
import ssl
import stat

import orjson
import pytest
from cryptography import x509

from app import cert_store, certs, tls
from app.cert_store import CertificateStore, CertStoreError, entry_id_of, reference
from app.certs import CertError, PasswordNeeded
from app.devbroker import make_cert, make_key
from app.mqtt.config import TlsSettings, parse_url
from app.secrets import SecretStore
from tests.test_session import roundtrip

P12_PASSWORD = "p12 pässword"


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def secrets() -> SecretStore:
    store = SecretStore()
    assert store.available, store.problem
    return store


@pytest.fixture
def store(tmp_path, secrets) -> CertificateStore:
    return CertificateStore(tmp_path / "certificates", secrets=secrets)


@pytest.fixture
def p12_bytes(pki) -> bytes:
    key = certs.read(pki.client_key.read_bytes()).key
    client = x509.load_pem_x509_certificate(pki.client_cert.read_bytes())
    return certs.pkcs12_bytes(key, [client], P12_PASSWORD)


def test_import_keeps_the_file_0600_and_the_password_only_in_the_keyring(store, secrets, p12_bytes, tmp_path):
    entry = store.import_bytes(p12_bytes, "client.p12", password=P12_PASSWORD)
    assert entry.kind == "certificate and key (PKCS#12)" and entry.has_password
    assert entry.main.subject.startswith("CN=uplink-console-client")
    assert entry.path.read_bytes() == p12_bytes  # kept exactly as imported: still encrypted
    assert mode(entry.path) == 0o600 and mode(store.index_path) == 0o600 and mode(store.directory) == 0o700
    assert secrets.get(cert_store.secret_id(entry.id), cert_store.PASSWORD_FIELD) == P12_PASSWORD
    for path in store.directory.iterdir():
        assert P12_PASSWORD.encode() not in path.read_bytes(), path
    index = orjson.loads(store.index_path.read_bytes())
    assert index["entries"][0]["id"] == entry.id and index["entries"][0]["filename"] == "client.p12"
    # A fresh store reads the list from the index, and opens the file with the keyring's password.
    again = CertificateStore(store.directory, secrets=secrets)
    (listed,) = again.entries()
    assert listed.items == entry.items and listed.name == entry.name
    contents = again.contents(entry.id)
    assert contents.key is not None and certs.key_matches(contents.leaf, contents.key)
    assert again.password(entry.id) == P12_PASSWORD
    assert not list(store.directory.glob(".*.tmp"))


def test_wrong_or_missing_password_is_refused_and_nothing_is_stored(store, p12_bytes):
    with pytest.raises(PasswordNeeded):
        store.import_bytes(p12_bytes, "client.p12")
    with pytest.raises(CertError, match="wrong"):
        store.import_bytes(p12_bytes, "client.p12", password="nope")
    with pytest.raises(CertError):
        store.import_bytes(b"not a certificate", "notes.txt")
    assert store.entries() == []
    assert not store.directory.exists() or [p.name for p in store.directory.iterdir()] == []


def test_the_same_file_twice_is_one_entry(store, pki):
    first = store.import_file(pki.ca)
    second = store.import_file(pki.ca, name="another name")
    assert second.id == first.id and len(store.entries()) == 1 and store.get(first.id).name == first.name
    other = store.import_file(pki.other_ca)
    assert other.id != first.id and len(store.entries()) == 2
    assert first.kind == "CA certificate" and first.status() in ("valid", "expiring")


def test_kinds_and_statuses(store, pki, tmp_path):
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(pki.ca.read_bytes() + pki.other_ca.read_bytes())
    assert store.import_file(bundle).kind == "CA bundle (2)"
    assert store.import_file(pki.client_cert).kind == "client certificate"
    key_entry = store.import_file(pki.client_key_encrypted, password=pki.client_key_password)
    assert key_entry.kind == "private key" and key_entry.status() == "key" and key_entry.has_password
    expired = store.import_file(pki.expired_cert)
    assert expired.status() == "expired" and expired.kind == "server certificate"
    csr = certs.certificate_request(certs.generate_key("ec-p256"), "dev")
    assert store.import_bytes(csr, "dev.csr").kind == "certificate request"


def test_a_corrupt_index_is_kept_aside_and_rebuilt_from_the_files(store, secrets, p12_bytes, pki):
    p12 = store.import_bytes(p12_bytes, "client.p12", password=P12_PASSWORD)
    ca = store.import_file(pki.ca)
    broken = b'{"version": 1, "entries": [{"id": "trunc'
    store.index_path.write_bytes(broken)
    rebuilt = CertificateStore(store.directory, secrets=secrets)
    assert rebuilt.notice and "damaged" in rebuilt.notice and "rebuilt" in rebuilt.notice
    asides = list(store.directory.glob("index.json.corrupt-*"))
    assert len(asides) == 1 and asides[0].read_bytes() == broken and asides[0].name in rebuilt.notice
    assert {e.id for e in rebuilt.entries()} == {p12.id, ca.id}
    assert rebuilt.get(p12.id).has_password and rebuilt.contents(p12.id).key is not None
    assert orjson.loads(store.index_path.read_bytes())["version"] == cert_store.INDEX_VERSION
    assert CertificateStore(store.directory, secrets=secrets).notice is None  # the new index is sound


def test_a_stored_file_the_index_missed_is_listed_again_with_a_notice(store, secrets, p12_bytes, pki):
    """An import cut off between writing its file and the index: the next start lists the file."""
    ca = store.import_file(pki.ca)
    p12 = store.import_bytes(p12_bytes, "client.p12", password=P12_PASSWORD)
    index = orjson.loads(store.index_path.read_bytes())
    index["entries"] = [e for e in index["entries"] if e["id"] != p12.id]
    store.index_path.write_bytes(orjson.dumps(index))
    again = CertificateStore(store.directory, secrets=secrets)
    assert {e.id for e in again.entries()} == {ca.id, p12.id}
    assert again.notice and "1 stored certificate file was missing" in again.notice, again.notice
    assert again.get(p12.id).has_password and again.contents(p12.id).key is not None
    assert again.get(ca.id).name == store.get(ca.id).name, "the listed entries keep their names"
    assert CertificateStore(store.directory, secrets=secrets).notice is None, "saved: said once"


def test_a_file_whose_password_is_gone_is_left_in_place_and_counted(store, secrets, p12_bytes):
    entry = store.import_bytes(p12_bytes, "client.p12", password=P12_PASSWORD)
    secrets.delete(cert_store.secret_id(entry.id), cert_store.PASSWORD_FIELD)
    store.index_path.write_text("[]")
    rebuilt = CertificateStore(store.directory, secrets=secrets)
    assert rebuilt.entries() == [] and "1 could not be read" in rebuilt.notice
    assert entry.path.exists()


def test_a_failed_write_leaves_the_index_and_folder_as_they_were(store, pki, monkeypatch):
    store.import_file(pki.ca)
    before = store.index_path.read_bytes()
    files_before = sorted(p.name for p in store.directory.iterdir())

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(CertStoreError, match="cannot be stored|cannot be saved"):
        store.import_file(pki.other_ca)
    monkeypatch.undo()
    assert store.index_path.read_bytes() == before
    assert sorted(p.name for p in store.directory.iterdir()) == files_before
    assert len(CertificateStore(store.directory, secrets=store.secrets).entries()) == 1


def test_delete_removes_the_file_and_the_keyring_secret(store, secrets, p12_bytes):
    entry = store.import_bytes(p12_bytes, "client.p12", password=P12_PASSWORD)
    store.rename(entry.id, "Gateway 7 client")
    assert CertificateStore(store.directory, secrets=secrets).get(entry.id).name == "Gateway 7 client"
    store.delete(entry.id)
    assert not entry.path.exists()
    assert secrets.get(cert_store.secret_id(entry.id), cert_store.PASSWORD_FIELD) is None
    with pytest.raises(KeyError):
        store.get(entry.id)
    assert CertificateStore(store.directory, secrets=secrets).entries() == []


def test_references(store, pki):
    entry = store.import_file(pki.ca)
    ref = reference(entry.id)
    assert ref == "store:" + entry.id == entry.reference and entry_id_of(ref) == entry.id
    assert entry_id_of("/etc/ssl/ca.pem") is None and entry_id_of(None) is None
    assert store.path_for(ref) == str(entry.path) and store.path_for("/x/ca.pem") == "/x/ca.pem"
    store.delete(entry.id)
    with pytest.raises(KeyError):
        store.path_for(ref)


def test_generated_and_trusted_entries(store, secrets, broker, pki):
    key = certs.generate_key("ec-p256")
    cert = certs.self_signed_certificate(key, "akenza-dev-1")
    csr = certs.certificate_request(key, "akenza-dev-1")
    key_entry, cert_entry, csr_entry = store.add_generated(key, cert, "akenza-dev-1", password="kp", csr=csr)
    assert {e.origin for e in (key_entry, cert_entry, csr_entry)} == {"generated"}
    assert key_entry.kind == "private key" and key_entry.has_password
    assert b"ENCRYPTED PRIVATE KEY" in key_entry.path.read_bytes()
    assert certs.key_matches(store.contents(cert_entry.id).leaf, store.contents(key_entry.id).key)
    assert csr_entry.kind == "certificate request"
    chain = certs.fetch_chain("localhost", broker.ports.tls)
    trusted = store.trust(chain[1:] or chain, "Test broker CA")
    assert trusted.origin == "fetched" and trusted.name == "Test broker CA"


def test_a_generated_key_is_kept_encrypted_with_a_password_only_in_the_keyring(store, secrets, tmp_path):
    key = certs.generate_key("rsa2048")
    key_entry, cert_entry = store.add_generated(key, certs.self_signed_certificate(key, "dev-7"), "dev-7")
    data = key_entry.path.read_bytes()
    assert b"ENCRYPTED PRIVATE KEY" in data and key_entry.has_password, "nothing readable on disk"
    kept = secrets.get(cert_store.secret_id(key_entry.id), cert_store.PASSWORD_FIELD)
    assert kept and len(kept) >= 24
    again = CertificateStore(store.directory, secrets=secrets)
    assert certs.key_matches(again.contents(cert_entry.id).leaf, again.contents(key_entry.id).key)
    # Without a keyring that keeps it, an encrypted key could not be opened after a restart.
    secrets.available = False
    other = certs.generate_key("ec-p256")
    plain = CertificateStore(tmp_path / "elsewhere", secrets=secrets).add_generated(
        other, certs.self_signed_certificate(other, "dev-8"), "dev-8"
    )[0]
    assert b"ENCRYPTED" not in plain.path.read_bytes() and not plain.has_password
    assert oct(plain.path.stat().st_mode & 0o777) == "0o600"


def test_export_in_every_form(store, p12_bytes, tmp_path):
    entry = store.import_bytes(p12_bytes, "client.p12", password=P12_PASSWORD)
    with pytest.raises(CertError, match="--no-encryption"):
        store.export(entry.id, "pkcs8", tmp_path / "k.pem")
    assert not (tmp_path / "k.pem").exists()
    (key_path,) = store.export(entry.id, "pkcs8", tmp_path / "k.pem", out_password="out")
    assert mode(key_path) == 0o600 and certs.read(key_path.read_bytes(), password="out").key is not None
    parts = store.export(entry.id, "pem-parts", tmp_path / "parts", no_encryption=True)
    assert [p.name for p in parts] == ["parts-certificate.pem", "parts-key.pem"]
    assert mode(parts[1]) == 0o600
    (tmp_path / "folder").mkdir()
    in_folder = store.export(entry.id, "pem-parts", tmp_path / "folder", no_encryption=True)
    assert [p.name for p in in_folder] == ["certificate.pem", "key.pem"]
    (der,) = store.export(entry.id, "der", tmp_path / "c.der")
    assert x509.load_der_x509_certificate(der.read_bytes()) == store.contents(entry.id).leaf
    (bundle,) = store.export(entry.id, "bundle", tmp_path / "b.pem")
    assert b"PRIVATE KEY" not in bundle.read_bytes()


# ----- tls.py with references ---------------------------------------------------------------


@pytest.fixture
def default_store(secrets) -> CertificateStore:
    """The user's store (the data folder of this test run), which the session's TLS opens."""
    return CertificateStore(secrets=secrets)


async def test_stored_pkcs12_with_its_password_only_in_the_keyring_connects_to_mtls(
    default_store, broker, pki, topic, p12_bytes
):
    client = default_store.import_bytes(p12_bytes, "client.p12", password=P12_PASSWORD)
    ca = default_store.import_file(pki.ca)
    settings = TlsSettings(ca_file=reference(ca.id), cert_file=reference(client.id))
    assert settings.key_password is None and settings.key_file is None
    msg = await roundtrip(parse_url(broker.url("mtls"), tls=settings), topic)
    assert msg.payload.startswith(b"hello")


def test_stored_key_and_certificate_as_two_references_and_mixed_with_paths(default_store, pki):
    cert = default_store.import_file(pki.client_cert)
    key = default_store.import_file(pki.client_key_encrypted, password=pki.client_key_password)
    for settings in (
        TlsSettings(ca_file=str(pki.ca), cert_file=reference(cert.id), key_file=reference(key.id)),
        TlsSettings(ca_file=str(pki.ca), cert_file=str(pki.client_cert), key_file=reference(key.id)),
        TlsSettings(
            ca_file=str(pki.ca),
            cert_file=reference(cert.id),
            key_file=str(pki.client_key_encrypted),
            key_password=pki.client_key_password,
        ),
    ):
        assert isinstance(tls.build_ssl_context(settings), ssl.SSLContext)
    wrong_key = default_store.import_bytes(certs.private_key_pem(make_key(), None), "other.key")
    with pytest.raises(tls.TlsConfigError, match="does not belong"):
        tls.build_ssl_context(TlsSettings(cert_file=reference(cert.id), key_file=reference(wrong_key.id)))
    with pytest.raises(tls.TlsConfigError, match="needs its private key"):
        tls.build_ssl_context(TlsSettings(cert_file=reference(cert.id)))


def test_a_deleted_entry_is_a_sentence_naming_the_settings(default_store, pki):
    ca = default_store.import_file(pki.other_ca)
    default_store.delete(ca.id)
    with pytest.raises(tls.TlsConfigError) as exc:
        tls.build_ssl_context(TlsSettings(ca_file=reference(ca.id)))
    text = str(exc.value)
    assert "was deleted from the certificate manager" in text and "connection's settings" in text


def test_an_expired_client_certificate_or_ca_is_refused_before_connecting(default_store, pki, tmp_path):
    now = dt.datetime.now(dt.UTC)
    key = make_key()
    old = make_cert("old-client", key, not_before=now - dt.timedelta(days=30), not_after=now - dt.timedelta(days=2))
    old_ca = make_cert(
        "Old CA", key, ca=True, not_before=now - dt.timedelta(days=30), not_after=now - dt.timedelta(days=1)
    )
    client = default_store.import_bytes(certs.certificates_pem([old]) + certs.private_key_pem(key, None), "old.pem")
    (tmp_path / "old-ca.pem").write_bytes(certs.certificates_pem([old_ca]))
    with pytest.raises(tls.TlsConfigError, match="client certificate.*'old-client' expired"):
        tls.build_ssl_context(TlsSettings(cert_file=reference(client.id)))
    with pytest.raises(tls.TlsConfigError, match="CA certificate.*'Old CA' expired"):
        tls.build_ssl_context(TlsSettings(ca_file=str(tmp_path / "old-ca.pem")))
    assert tls.build_ssl_context(TlsSettings(cert_file=reference(client.id), allow_expired=True))
    # A bundle with one expired CA among valid ones is not refused.
    (tmp_path / "mixed.pem").write_bytes(certs.certificates_pem([old_ca]) + pki.ca.read_bytes())
    assert tls.build_ssl_context(TlsSettings(ca_file=str(tmp_path / "mixed.pem")))


def _handshake(port: int, settings: TlsSettings) -> None:
    import socket

    ctx = tls.build_ssl_context(settings)
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        ctx.wrap_socket(raw, server_hostname="localhost"),
    ):
        pass


def test_allowing_expired_certificates_knowingly_accepts_the_expired_broker(broker, pki):
    with pytest.raises(ssl.SSLCertVerificationError, match="expired"):
        _handshake(broker.ports.expired, TlsSettings(ca_file=str(pki.ca)))
    _handshake(broker.ports.expired, TlsSettings(ca_file=str(pki.ca), allow_expired=True))
    with pytest.raises(ssl.SSLCertVerificationError):  # still verified: the wrong CA is still wrong
        _handshake(broker.ports.expired, TlsSettings(ca_file=str(pki.other_ca), allow_expired=True))


def test_a_stale_key_password_in_the_settings_gives_way_to_the_keyrings(default_store, p12_bytes, pki):
    client = default_store.import_bytes(p12_bytes, "client.p12", password=P12_PASSWORD)
    settings = TlsSettings(ca_file=str(pki.ca), cert_file=reference(client.id), key_password="an old password")
    assert isinstance(tls.build_ssl_context(settings), ssl.SSLContext)
    # Without a password kept for it, a wrong one in the settings is said to be wrong.
    default_store.secrets.delete(cert_store.secret_id(client.id), cert_store.PASSWORD_FIELD)
    with pytest.raises(tls.TlsConfigError, match="wrong"):
        tls.build_ssl_context(settings)
    with pytest.raises(tls.TlsConfigError, match="needs its password"):
        tls.build_ssl_context(TlsSettings(cert_file=reference(client.id)))


def test_reload_sees_what_another_store_added(store, secrets, pki):
    other = CertificateStore(store.directory, secrets=secrets)
    added = other.import_file(pki.ca)
    with pytest.raises(KeyError):
        store.get(added.id)
    store.reload()
    assert store.get(added.id).name == added.name


def test_the_chain_of_the_client_certificate_listener_is_fetched_too(broker, pki):
    chain = certs.fetch_chain("localhost", broker.ports.mtls)
    assert chain[0] == x509.load_pem_x509_certificate(pki.server_cert.read_bytes())

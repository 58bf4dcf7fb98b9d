"""Certificates and keys in any common form, turned into an ssl.SSLContext with clear errors.

Accepts PEM or DER certificates, PKCS#12 bundles (.p12/.pfx) and PEM/DER private keys in
PKCS#1, SEC1 or PKCS#8 form, encrypted or not: the formats the peers' users report being
refused. Everything is read with `cryptography`, checked (key matches certificate, password
right), then handed to OpenSSL re-encrypted with a one-time password, so an unencrypted key
never touches the disk.

ca_file, cert_file and key_file may also be references to the certificate manager's store
("store:<id>", app/cert_store.py): read through the store, any form it holds (a stored PKCS#12 or
a PEM with certificate and key works as cert_file alone), with the key password from the
keyring when the settings carry none. An expired client certificate or CA is refused with a
sentence before connecting unless the settings allow expired certificates (allow_expired), which
also lets OpenSSL accept them.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from app import certs as certs_engine
from app.cert_store import entry_id_of
from app.mqtt.config import TlsSettings


class TlsConfigError(ValueError):
    """A certificate or key problem, as a sentence that says what to do."""


PKCS12_SUFFIXES = (".p12", ".pfx")


def _read(path: str, what: str) -> bytes:
    try:
        return Path(path).expanduser().read_bytes()
    except FileNotFoundError:
        raise TlsConfigError(f"The {what} file {path} does not exist; choose the file again.") from None
    except OSError as exc:
        raise TlsConfigError(f"The {what} file {path} cannot be read ({exc.strerror}).") from None


def load_certificates(path: str, what: str = "certificate") -> list[x509.Certificate]:
    data = _read(path, what)
    try:
        if b"-----BEGIN" in data:
            certs = x509.load_pem_x509_certificates(data)
        else:
            certs = [x509.load_der_x509_certificate(data)]
    except ValueError:
        certs = _other_forms(data)  # PKCS#7 bundles, PEM with other blocks between the certificates
        if not certs:
            raise TlsConfigError(f"The {what} file {path} does not contain a certificate in PEM or DER form.") from None
    if not certs:
        raise TlsConfigError(f"The {what} file {path} contains no certificate.")
    return certs


def _other_forms(data: bytes) -> list[x509.Certificate]:
    try:
        return certs_engine.read(data).certificates
    except certs_engine.CertError:
        return []


def load_private_key(path: str, password: str | None):
    data = _read(path, "private key")
    pw = password.encode() if password else None
    loaders = (serialization.load_pem_private_key,) if b"-----BEGIN" in data else (serialization.load_der_private_key,)
    for loader in loaders:
        try:
            return loader(data, password=pw)
        except TypeError as exc:
            if "encrypted" in str(exc) and pw is None:
                raise TlsConfigError(
                    f"The private key {path} is protected by a password; enter the key password."
                ) from None
            if pw is not None and "not encrypted" in str(exc):
                # A password for an unencrypted key: harmless, load without it.
                return loader(data, password=None)
            raise TlsConfigError(f"The private key {path} could not be read ({exc}).") from None
        except ValueError as exc:
            if pw is not None and ("decrypt" in str(exc).lower() or "password" in str(exc).lower()):
                raise TlsConfigError(f"The key password for {path} is wrong; enter it again.") from None
            raise TlsConfigError(
                f"The file {path} does not contain a private key in PEM or DER form (PKCS#1, SEC1 or PKCS#8)."
            ) from None
        except Exception as exc:  # cryptography raises UnsupportedAlgorithm for odd keys
            raise TlsConfigError(f"The private key {path} uses an unsupported format ({exc}).") from None
    raise AssertionError("unreachable")


def load_pkcs12(path: str, password: str | None):
    data = _read(path, "PKCS#12")
    try:
        key, cert, extra = pkcs12.load_key_and_certificates(data, password.encode() if password else None)
    except ValueError:
        raise TlsConfigError(
            f"The PKCS#12 file {path} could not be opened: the password is wrong or the file is damaged."
        ) from None
    if cert is None or key is None:
        raise TlsConfigError(f"The PKCS#12 file {path} must contain both a certificate and its private key.")
    return key, [cert, *extra]


def _public_bytes(key) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def check_key_matches(cert: x509.Certificate, key, cert_path: str, key_path: str) -> None:
    if cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) != _public_bytes(key):
        raise TlsConfigError(
            f"The private key {key_path} does not belong to the certificate {cert_path}; choose the matching pair."
        )


# OpenSSL's X509_V_FLAG_NO_CHECK_TIME: certificates are not checked against the clock.
_NO_CHECK_TIME = 0x200000

_ROLES = {"ca_file": "CA certificate", "cert_file": "client certificate", "key_file": "private key"}


class _Store:
    """The certificate store, opened only when a setting refers to it."""

    def __init__(self, store=None) -> None:
        self._store = store

    def _open(self):
        if self._store is None:
            from app.cert_store import CertificateStore

            try:
                self._store = CertificateStore()
            except OSError as exc:
                raise TlsConfigError(f"The certificate manager cannot be opened: {exc}") from None
        return self._store

    def contents(self, value: str, field: str, password: str | None):
        """(entry, Contents) of a reference; TlsConfigError sentences when it is gone or unreadable."""
        store = self._open()
        entry_id = entry_id_of(value)
        try:
            entry = store.get(entry_id)
        except KeyError:
            raise TlsConfigError(
                f"The {_ROLES[field]} chosen for this connection ({value}) was deleted from the certificate "
                "manager; choose another in the connection's settings."
            ) from None
        try:
            try:
                return entry, store.contents(entry_id, password=password or None)
            except certs_engine.WrongPassword:
                kept = store.password(entry_id) if password and entry.has_password else None
                if not kept or kept == password:
                    raise
                # A key password left in the settings from before: the one kept with the entry opens it.
                return entry, store.contents(entry_id, password=kept)
        except certs_engine.PasswordNeeded:
            raise TlsConfigError(
                f"The {_ROLES[field]} '{entry.name}' needs its password, and none is kept for it; enter the key "
                "password in the connection's settings or import it again with its password."
            ) from None
        except certs_engine.WrongPassword:
            raise TlsConfigError(
                f"The key password for '{entry.name}' is wrong; enter it again in the connection's settings."
            ) from None
        except certs_engine.CertError as exc:
            raise TlsConfigError(str(exc)) from None
        except OSError as exc:  # the stored file is missing, or the keyring failed
            raise TlsConfigError(str(exc)) from None


def _refuse_expired(certificates: list, what: str, allow_expired: bool) -> None:
    """An expired certificate chosen in the settings, refused before connecting (a CA bundle
    only when all of it has expired)."""
    if allow_expired or not certificates:
        return
    problems = [certs_engine.expiry_problem(c) for c in certificates]
    if all(status == "expired" for status, _ in problems):
        _, sentence = problems[0]
        if sentence.startswith("The certificate "):  # "The client certificate 'x' expired on …"
            sentence = f"The {what} " + sentence[len("The certificate ") :]
        raise TlsConfigError(sentence)


def build_ssl_context(tls: TlsSettings, store=None) -> ssl.SSLContext:
    """Blocking (reads files): call it off the GUI thread. `store`: a CertificateStore for
    "store:<id>" references (default: the user's)."""
    stored = _Store(store)
    allow_expired = getattr(tls, "allow_expired", False)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if tls.verify_certificate:
        ctx.check_hostname = tls.verify_hostname
        ctx.verify_mode = ssl.CERT_REQUIRED
        if allow_expired:
            ctx.verify_flags |= _NO_CHECK_TIME
        if tls.ca_file:
            if entry_id_of(tls.ca_file):
                entry, contents = stored.contents(tls.ca_file, "ca_file", None)
                ca_certs = contents.certificates
                if not ca_certs:
                    raise TlsConfigError(
                        f"'{entry.name}' holds no certificate, so it cannot be the CA certificate; choose a CA "
                        "certificate in the connection's settings."
                    )
                shown = f"'{entry.name}'"
            else:
                ca_certs = load_certificates(tls.ca_file, "CA certificate")
                shown = tls.ca_file
            _refuse_expired(ca_certs, "CA certificate", allow_expired)
            pem = "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in ca_certs)
            try:
                ctx.load_verify_locations(cadata=pem)
            except ssl.SSLError as exc:
                raise TlsConfigError(f"The CA certificate {shown} was refused by OpenSSL ({exc}).") from None
        else:
            ctx.load_default_certs()
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE

    if tls.cert_file:
        chain, key, cert_shown, key_shown = _client_pair(tls, stored)
        check_key_matches(chain[0], key, cert_shown, key_shown)
        _refuse_expired(chain[:1], "client certificate", allow_expired)
        _load_chain(ctx, chain, key)
    elif tls.key_file:
        raise TlsConfigError("A private key was given without its client certificate; choose the certificate too.")
    return ctx


def _client_pair(tls: TlsSettings, stored: _Store):
    """(chain leaf first, key, how the certificate and key are named in sentences)."""
    key = None
    if entry_id_of(tls.cert_file):
        entry, contents = stored.contents(tls.cert_file, "cert_file", None if tls.key_file else tls.key_password)
        chain = contents.chain()
        if not chain:
            raise TlsConfigError(
                f"'{entry.name}' holds no certificate, so it cannot be the client certificate; choose one in the "
                "connection's settings."
            )
        cert_shown = key_shown = f"'{entry.name}'"
        key = contents.key
    elif tls.cert_file.lower().endswith(PKCS12_SUFFIXES):
        key, chain = load_pkcs12(tls.cert_file, tls.key_password)
        return chain, key, tls.cert_file, tls.cert_file
    else:
        if not tls.key_file:
            raise TlsConfigError("A client certificate needs its private key; choose the key file too.")
        chain = load_certificates(tls.cert_file, "client certificate")
        cert_shown = key_shown = tls.cert_file
    if tls.key_file:
        if entry_id_of(tls.key_file):
            key_entry, key_contents = stored.contents(tls.key_file, "key_file", tls.key_password)
            if key_contents.key is None:
                raise TlsConfigError(
                    f"'{key_entry.name}' holds no private key; choose the key in the connection's settings."
                )
            key, key_shown = key_contents.key, f"'{key_entry.name}'"
        else:
            key, key_shown = load_private_key(tls.key_file, tls.key_password), tls.key_file
    if key is None:
        raise TlsConfigError("A client certificate needs its private key; choose the key file too.")
    return chain, key, cert_shown, key_shown


def _load_chain(ctx: ssl.SSLContext, chain: list[x509.Certificate], key) -> None:
    one_time = secrets.token_urlsafe(24)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(one_time.encode()),
    )
    certs_pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain)
    with tempfile.TemporaryDirectory(prefix="uplink-tls-") as tmp:
        os.chmod(tmp, 0o700)
        cert_path, key_path = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
        for path, data in ((cert_path, certs_pem), (key_path, key_pem)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        try:
            ctx.load_cert_chain(cert_path, key_path, password=one_time)
        except ssl.SSLError as exc:
            raise TlsConfigError(f"OpenSSL refused the client certificate or key ({exc.reason or exc}).") from None


@dataclass(frozen=True, slots=True)
class CertificateSummary:
    subject: str
    issuer: str
    not_before: dt.datetime
    not_after: dt.datetime
    serial: str
    sha256: str
    key_type: str
    is_ca: bool
    dns_names: tuple[str, ...]

    @property
    def expired(self) -> bool:
        return self.not_after < dt.datetime.now(dt.UTC)


def summarize(cert: x509.Certificate) -> CertificateSummary:
    pub = cert.public_key()
    if isinstance(pub, rsa.RSAPublicKey):
        key_type = f"RSA {pub.key_size}"
    elif isinstance(pub, ec.EllipticCurvePublicKey):
        key_type = f"EC {pub.curve.name}"
    else:
        key_type = type(pub).__name__
    try:
        is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    try:
        dns = tuple(
            cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
        )
    except x509.ExtensionNotFound:
        dns = ()
    return CertificateSummary(
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        serial=format(cert.serial_number, "X"),
        sha256=cert.fingerprint(hashes.SHA256()).hex(":").upper(),
        key_type=key_type,
        is_ca=is_ca,
        dns_names=dns,
    )

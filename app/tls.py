"""Certificates and keys in any common form, turned into an ssl.SSLContext with clear errors.

Accepts PEM or DER certificates, PKCS#12 bundles (.p12/.pfx) and PEM/DER private keys in
PKCS#1, SEC1 or PKCS#8 form, encrypted or not: the formats the peers' users report being
refused. Everything is read with `cryptography`, checked (key matches certificate, password
right), then handed to OpenSSL re-encrypted with a one-time password, so an unencrypted key
never touches the disk.
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
        raise TlsConfigError(f"The {what} file {path} does not contain a certificate in PEM or DER form.") from None
    if not certs:
        raise TlsConfigError(f"The {what} file {path} contains no certificate.")
    return certs


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


def build_ssl_context(tls: TlsSettings) -> ssl.SSLContext:
    """Blocking (reads files): call it off the GUI thread."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if tls.verify_certificate:
        ctx.check_hostname = tls.verify_hostname
        ctx.verify_mode = ssl.CERT_REQUIRED
        if tls.ca_file:
            certs = load_certificates(tls.ca_file, "CA certificate")
            pem = "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in certs)
            try:
                ctx.load_verify_locations(cadata=pem)
            except ssl.SSLError as exc:
                raise TlsConfigError(f"The CA certificate {tls.ca_file} was refused by OpenSSL ({exc}).") from None
        else:
            ctx.load_default_certs()
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE

    if tls.cert_file:
        if tls.cert_file.lower().endswith(PKCS12_SUFFIXES):
            key, chain = load_pkcs12(tls.cert_file, tls.key_password)
            key_path = tls.cert_file
        else:
            if not tls.key_file:
                raise TlsConfigError("A client certificate needs its private key; choose the key file too.")
            chain = load_certificates(tls.cert_file, "client certificate")
            key = load_private_key(tls.key_file, tls.key_password)
            key_path = tls.key_file
        check_key_matches(chain[0], key, tls.cert_file, key_path)
        _load_chain(ctx, chain, key)
    elif tls.key_file:
        raise TlsConfigError("A private key was given without its client certificate; choose the certificate too.")
    return ctx


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

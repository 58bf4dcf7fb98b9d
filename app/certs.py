"""Certificates and keys as the user has them: read any common form, say what is inside, check it,
convert it, generate it, and fetch what a broker presents.

The peers' users are refused encrypted keys and PKCS#12 bundles, ThingPark takes only PKCS#8 keys,
akenza devices need a key pair and a certificate, and self-hosted brokers come with self-signed
CAs. So one reader takes every form (PEM with any mix of blocks, DER, PKCS#7, PKCS#12; keys as
PKCS#1, SEC1 or PKCS#8, encrypted or not) and every failure is a CertError: one sentence that says
what is wrong with the file and what to do. Everything here works on bytes and `cryptography`
objects; the only I/O is fetch_chain's socket. The certificate store (app/cert_store.py) keeps
files; app/tls.py turns them into an SSLContext.

Item.status() is "valid", "expiring" (under EXPIRY_WARNING_DAYS), "expired", "not-yet-valid" for
certificates, "key" for a private key and "request" for a certificate request.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
import socket
import ssl
import warnings
from dataclasses import asdict, dataclass, field

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import pkcs7, pkcs12
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

EXPIRY_WARNING_DAYS = 30

# What cryptography warns about in a user's file (a negative serial number, BER instead of DER)
# is not the user's to fix and would only clutter a command's output: it is read all the same.
warnings.filterwarnings("ignore", category=CryptographyDeprecationWarning, module=r"app\.certs")
warnings.filterwarnings("ignore", category=UserWarning, module=r"app\.certs")
KEY_TYPES = ("rsa2048", "ec-p256")
# What cryptography raises for a malformed file, besides ValueError.
_UNREADABLE = (
    ValueError,
    TypeError,
    UnsupportedAlgorithm,
    x509.InvalidVersion,
    x509.DuplicateExtension,
    x509.UnsupportedGeneralNameType,
)


class CertError(ValueError):
    """A certificate or key problem, as one sentence for the user that says what to do."""


class PasswordNeeded(CertError):
    """The file is encrypted and no password was given."""


class WrongPassword(CertError):
    """The password given does not open the file."""


# ----- what is inside ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Item:
    """One certificate, private key or certificate request found in a file."""

    kind: str  # "ca-certificate" | "certificate" | "private-key" | "csr"
    subject: str = ""
    issuer: str = ""
    sans: tuple[str, ...] = ()
    serial: str = ""
    not_before: dt.datetime | None = None
    not_after: dt.datetime | None = None
    days_left: int | None = None
    sha256: str = ""
    key_type: str = ""
    key_bits: int = 0
    curve: str | None = None
    key_usage: tuple[str, ...] = ()
    extended_key_usage: tuple[str, ...] = ()
    is_ca: bool = False
    self_signed: bool = False
    encrypted: bool = False
    key_format: str | None = None
    container: str = "PEM"

    @property
    def is_certificate(self) -> bool:
        return self.kind in ("ca-certificate", "certificate")

    @property
    def common_name(self) -> str:
        """The CN of the subject (or the whole subject when it has none)."""
        for part in _split_rfc4514(self.subject):
            if part.upper().startswith("CN="):
                return part[3:]
        return self.subject

    def status(self, now: dt.datetime | None = None) -> str:
        if self.kind == "private-key":
            return "key"
        if self.kind == "csr":
            return "request"
        return _validity_status(self.not_before, self.not_after, now)

    def days_left_at(self, now: dt.datetime | None = None) -> int | None:
        if self.not_after is None:
            return None
        return (self.not_after - (now or _now())).days

    def as_json(self) -> dict:
        data = asdict(self)
        for key in ("not_before", "not_after"):
            data[key] = data[key].isoformat() if data[key] is not None else None
        for key in ("sans", "key_usage", "extended_key_usage"):
            data[key] = list(data[key])
        data["days_left"] = self.days_left_at()
        data["status"] = self.status()
        return data

    @classmethod
    def from_json(cls, data: dict) -> Item:
        """The inverse of as_json (the store's index); unknown keys are ignored."""
        known = {f for f in cls.__dataclass_fields__}
        values = {k: v for k, v in data.items() if k in known}
        for key in ("not_before", "not_after"):
            if values.get(key):
                values[key] = dt.datetime.fromisoformat(values[key])
        for key in ("sans", "key_usage", "extended_key_usage"):
            values[key] = tuple(values.get(key) or ())
        if values.get("not_after"):
            values["days_left"] = (values["not_after"] - _now()).days  # as of now, not of when it was saved
        return cls(**values)


@dataclass
class Contents:
    """Everything read from one file."""

    certificates: list[x509.Certificate] = field(default_factory=list)
    key: object | None = None  # a cryptography private key
    csrs: list[x509.CertificateSigningRequest] = field(default_factory=list)
    container: str = "PEM"  # "PEM" | "DER" | "PKCS#7" | "PKCS#12"
    key_encrypted: bool = False
    key_format: str | None = None  # "PKCS#1" | "SEC1" | "PKCS#8" | "DSA"

    def items(self) -> list[Item]:
        out = [certificate_item(c, self.container) for c in self.certificates]
        if self.key is not None:
            out.append(
                key_item(self.key, encrypted=self.key_encrypted, key_format=self.key_format, container=self.container)
            )
        out.extend(csr_item(r, self.container) for r in self.csrs)
        return out

    @property
    def leaf(self) -> x509.Certificate | None:
        """The certificate a key belongs to: the one matching the key, else the first non-CA one, else the first."""
        if not self.certificates:
            return None
        if self.key is not None:
            for cert in self.certificates:
                if key_matches(cert, self.key):
                    return cert
        for cert in self.certificates:
            if not _is_ca(cert):
                return cert
        return self.certificates[0]

    def chain(self) -> list[x509.Certificate]:
        """The certificates leaf first, then each one's issuer in turn (a PKCS#7 bundle is a
        sorted set, not a chain), then any others in file order."""
        leaf = self.leaf
        if leaf is None:
            return []
        ordered = [leaf]
        rest = [c for c in self.certificates if c is not leaf]
        while rest:
            issuer = next((c for c in rest if c.subject == ordered[-1].issuer and _issued_by(ordered[-1], c)), None)
            if issuer is None or ordered[-1].subject == ordered[-1].issuer:
                break
            ordered.append(issuer)
            rest.remove(issuer)
        return ordered + rest


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _validity_status(not_before, not_after, now=None) -> str:
    now = now or _now()
    if not_before is not None and now < not_before:
        return "not-yet-valid"
    if not_after is not None and now > not_after:
        return "expired"
    if not_after is not None and not_after - now < dt.timedelta(days=EXPIRY_WARNING_DAYS):
        return "expiring"
    return "valid"


def _split_rfc4514(name: str) -> list[str]:
    return [p.strip() for p in re.split(r"(?<!\\),", name) if p.strip()]


def _colon_hex(data: bytes) -> str:
    return data.hex(":").upper()


def _spki(public_key) -> bytes:
    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _key_info(public_key) -> tuple[str, int, str | None]:
    if isinstance(public_key, rsa.RSAPublicKey):
        return "RSA", public_key.key_size, None
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return "EC", public_key.curve.key_size, _curve_name(public_key.curve)
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return "Ed25519", 256, None
    if isinstance(public_key, ed448.Ed448PublicKey):
        return "Ed448", 456, None
    if isinstance(public_key, dsa.DSAPublicKey):
        return "DSA", public_key.key_size, None
    return type(public_key).__name__.removesuffix("PublicKey").lstrip("_"), 0, None


_CURVE_NAMES = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}


def _curve_name(curve) -> str:
    return _CURVE_NAMES.get(curve.name, curve.name)


def _ext(cert_or_csr, cls):
    try:
        return cert_or_csr.extensions.get_extension_for_class(cls).value
    except x509.ExtensionNotFound:
        return None
    except _UNREADABLE:  # a malformed extension: show the rest
        return None


def _is_ca(cert: x509.Certificate) -> bool:
    bc = _ext(cert, x509.BasicConstraints)
    if bc is not None:
        return bool(bc.ca)
    # A version 1 certificate (no extensions) signed by itself is a root CA of the old kind.
    return cert.version == x509.Version.v1 and _self_signed(cert)


def _self_signed(cert: x509.Certificate) -> bool:
    if cert.subject != cert.issuer:
        return False
    try:
        cert.verify_directly_issued_by(cert)
    except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
        return False
    return True


def _sans(ext) -> tuple[str, ...]:
    if ext is None:
        return ()
    out = []
    for name in ext:
        if isinstance(name, x509.DNSName):
            out.append(f"DNS:{name.value}")
        elif isinstance(name, x509.IPAddress):
            out.append(f"IP:{name.value}")
        elif isinstance(name, x509.RFC822Name):
            out.append(f"email:{name.value}")
        elif isinstance(name, x509.UniformResourceIdentifier):
            out.append(f"URI:{name.value}")
        elif isinstance(name, x509.DirectoryName):
            out.append(f"DirName:{name.value.rfc4514_string()}")
        else:
            out.append(f"othername:{getattr(name, 'type_id', name)}")
    return tuple(out)


_KEY_USAGE_NAMES = (
    ("digital_signature", "digitalSignature"),
    ("content_commitment", "nonRepudiation"),
    ("key_encipherment", "keyEncipherment"),
    ("data_encipherment", "dataEncipherment"),
    ("key_agreement", "keyAgreement"),
    ("key_cert_sign", "keyCertSign"),
    ("crl_sign", "cRLSign"),
)


def _key_usage(ku) -> tuple[str, ...]:
    if ku is None:
        return ()
    out = [label for attr, label in _KEY_USAGE_NAMES if getattr(ku, attr)]
    if ku.key_agreement:
        if ku.encipher_only:
            out.append("encipherOnly")
        if ku.decipher_only:
            out.append("decipherOnly")
    return tuple(out)


def _oid_name(oid) -> str:
    name = getattr(oid, "_name", "")
    return name if name and name != "Unknown OID" else oid.dotted_string


def _eku(ext) -> tuple[str, ...]:
    return tuple(_oid_name(o) for o in ext) if ext is not None else ()


def certificate_item(cert: x509.Certificate, container: str = "PEM") -> Item:
    key_type, bits, curve = _key_info(cert.public_key())
    not_before, not_after = cert.not_valid_before_utc, cert.not_valid_after_utc
    is_ca = _is_ca(cert)
    return Item(
        kind="ca-certificate" if is_ca else "certificate",
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        sans=_sans(_ext(cert, x509.SubjectAlternativeName)),
        serial=format(cert.serial_number, "X"),
        not_before=not_before,
        not_after=not_after,
        days_left=(not_after - _now()).days,
        sha256=_colon_hex(cert.fingerprint(hashes.SHA256())),
        key_type=key_type,
        key_bits=bits,
        curve=curve,
        key_usage=_key_usage(_ext(cert, x509.KeyUsage)),
        extended_key_usage=_eku(_ext(cert, x509.ExtendedKeyUsage)),
        is_ca=is_ca,
        self_signed=_self_signed(cert),
        container=container,
    )


def key_item(key, *, encrypted: bool = False, key_format: str | None = None, container: str = "PEM") -> Item:
    public = key.public_key()
    key_type, bits, curve = _key_info(public)
    digest = hashes.Hash(hashes.SHA256())
    digest.update(_spki(public))
    return Item(
        kind="private-key",
        sha256=_colon_hex(digest.finalize()),
        key_type=key_type,
        key_bits=bits,
        curve=curve,
        encrypted=encrypted,
        key_format=key_format,
        container=container,
    )


def csr_item(csr: x509.CertificateSigningRequest, container: str = "PEM") -> Item:
    key_type, bits, curve = _key_info(csr.public_key())
    digest = hashes.Hash(hashes.SHA256())
    digest.update(csr.public_bytes(serialization.Encoding.DER))
    return Item(
        kind="csr",
        subject=csr.subject.rfc4514_string(),
        sans=_sans(_ext(csr, x509.SubjectAlternativeName)),
        sha256=_colon_hex(digest.finalize()),
        key_type=key_type,
        key_bits=bits,
        curve=curve,
        key_usage=_key_usage(_ext(csr, x509.KeyUsage)),
        extended_key_usage=_eku(_ext(csr, x509.ExtendedKeyUsage)),
        container=container,
    )


# ----- reading ----------------------------------------------------------------------------------

_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 #]+)-----\r?\n(.*?)-----END \1-----", re.DOTALL)
_PEM_BEGIN = re.compile(rb"-----BEGIN ([A-Z0-9 #]+)-----")
_CERT_LABELS = {b"CERTIFICATE", b"X509 CERTIFICATE", b"TRUSTED CERTIFICATE"}
_CSR_LABELS = {b"CERTIFICATE REQUEST", b"NEW CERTIFICATE REQUEST"}
_PKCS7_LABELS = {b"PKCS7", b"CMS", b"PKCS #7 SIGNED DATA"}
_KEY_FORMATS = {
    b"PRIVATE KEY": "PKCS#8",
    b"ENCRYPTED PRIVATE KEY": "PKCS#8",
    b"RSA PRIVATE KEY": "PKCS#1",
    b"EC PRIVATE KEY": "SEC1",
    b"DSA PRIVATE KEY": "DSA",
    b"OPENSSH PRIVATE KEY": "OpenSSH",
}
_IGNORED_LABELS = {b"EC PARAMETERS", b"DH PARAMETERS", b"X509 CRL"}
_PUBLIC_LABELS = {b"PUBLIC KEY", b"RSA PUBLIC KEY"}


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _password_bytes(password: str | None) -> bytes | None:
    return password.encode("utf-8") if password else None


def read(data: bytes, *, password: str | None = None, name: str = "the file") -> Contents:
    """Everything in one file: PEM (any mix of blocks), DER, PKCS#7 or PKCS#12. CertError when it
    is empty, truncated, damaged or holds nothing usable; PasswordNeeded / WrongPassword for an
    encrypted key or PKCS#12 without / with a wrong password."""
    if not data or not data.strip():
        raise CertError(f"{_cap(name)} is empty; choose the certificate or key file itself.")
    contents = _read_pem(data, password, name) if b"-----BEGIN" in data else _read_der(data, password, name)
    try:  # cryptography parses some fields only when asked: ask now, so a bad field is a sentence here
        contents.items()
    except _UNREADABLE as exc:
        raise CertError(f"{_cap(name)} holds a certificate with a malformed field ({_clip(str(exc))}).") from None
    return contents


def _clip(text: str, limit: int = 100) -> str:
    text = " ".join(text.split()).rstrip(".")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _read_pem(data: bytes, password: str | None, name: str) -> Contents:
    contents = Contents(container="PEM")
    blocks = list(_PEM_BLOCK.finditer(data))
    begun = _PEM_BEGIN.findall(data)
    if len(begun) > len(blocks):
        ended = {m.group(1) for m in blocks}
        missing = next((label for label in begun if label not in ended), begun[-1])
        raise CertError(
            f"{_cap(name)} is cut short: its '-----BEGIN {missing.decode()}-----' block has no end line; "
            "copy or download the whole file again."
        )
    public_only = False
    for block in blocks:
        label, pem = block.group(1), block.group(0)
        if label in _CERT_LABELS:
            if label == b"TRUSTED CERTIFICATE":
                raise CertError(
                    f"{_cap(name)} is in OpenSSL's 'TRUSTED CERTIFICATE' form; convert it with "
                    "`openssl x509 -in FILE -out ca.pem` and choose ca.pem."
                )
            try:
                contents.certificates.append(
                    x509.load_pem_x509_certificate(pem.replace(b"X509 CERTIFICATE", b"CERTIFICATE"))
                )
            except _UNREADABLE:
                raise CertError(f"A certificate in {name} is damaged; copy or download the file again.") from None
        elif label in _CSR_LABELS:
            try:
                contents.csrs.append(
                    x509.load_pem_x509_csr(pem.replace(b"NEW CERTIFICATE REQUEST", b"CERTIFICATE REQUEST"))
                )
            except _UNREADABLE:
                raise CertError(f"A certificate request in {name} is damaged; copy the file again.") from None
        elif label in _PKCS7_LABELS:
            contents.container = "PKCS#7"
            contents.certificates.extend(_pkcs7_pem(pem, name))
        elif label in _KEY_FORMATS:
            if contents.key is not None:
                raise CertError(f"{_cap(name)} holds more than one private key; keep one key per file.")
            if label == b"OPENSSH PRIVATE KEY":
                raise CertError(
                    f"{_cap(name)} is an SSH key, not a TLS key; use the key that belongs to the client certificate."
                )
            encrypted = label == b"ENCRYPTED PRIVATE KEY" or b"Proc-Type: 4,ENCRYPTED" in pem
            contents.key = _load_key(pem, serialization.load_pem_private_key, password, name, encrypted)
            contents.key_encrypted = encrypted
            contents.key_format = _KEY_FORMATS[label]
        elif label in _PUBLIC_LABELS:
            public_only = True
        elif label in _IGNORED_LABELS:
            continue
        else:
            raise CertError(
                f"{_cap(name)} holds a '{label.decode()}' block, which is not a certificate, key "
                "or certificate request."
            )
    if not (contents.certificates or contents.key is not None or contents.csrs):
        if public_only:
            raise CertError(f"{_cap(name)} holds only a public key; a certificate or the private key is needed here.")
        raise CertError(f"{_cap(name)} holds no certificate, private key or certificate request.")
    return contents


def _pkcs7_pem(pem: bytes, name: str) -> list[x509.Certificate]:
    try:
        if pem.startswith(b"-----BEGIN PKCS7-----"):
            return pkcs7.load_pem_pkcs7_certificates(pem)
        der = _pem_body(pem)
        return pkcs7.load_der_pkcs7_certificates(der)
    except _UNREADABLE:
        raise CertError(f"The PKCS#7 bundle in {name} is damaged or holds no certificates.") from None


def _pem_body(pem: bytes) -> bytes:
    import base64

    lines = [ln for ln in pem.splitlines()[1:-1] if b":" not in ln]
    return base64.b64decode(b"".join(lines))


def _load_key(data: bytes, loader, password: str | None, name: str, encrypted: bool | None):
    pw = _password_bytes(password)
    try:
        return loader(data, password=pw if encrypted is not False else None)
    except TypeError as exc:
        if "not encrypted" in str(exc):
            return loader(data, password=None)
        raise PasswordNeeded(f"The private key in {name} is protected by a password; enter its password.") from None
    except ValueError as exc:
        if pw is not None and encrypted is not False:
            raise WrongPassword(f"The password for the private key in {name} is wrong; enter it again.") from None
        if "unsupported" in str(exc).lower():
            raise CertError(f"The private key in {name} uses a format or cipher that cannot be read ({exc}).") from None
        raise CertError(f"The private key in {name} is damaged; copy or download the file again.") from None
    except UnsupportedAlgorithm as exc:
        raise CertError(f"The private key in {name} uses an algorithm that cannot be read ({exc}).") from None


def _der_header(data: bytes, offset: int = 0) -> tuple[int, int, int] | None:
    """(tag, header length, content length) of the DER element at offset, or None."""
    if len(data) < offset + 2:
        return None
    tag, first = data[offset], data[offset + 1]
    if first < 0x80:
        return tag, 2, first
    count = first & 0x7F
    if count == 0 or count > 4 or len(data) < offset + 2 + count:
        return None
    return tag, 2 + count, int.from_bytes(data[offset + 2 : offset + 2 + count], "big")


def _looks_like_pkcs12(data: bytes) -> bool:
    """PFX ::= SEQUENCE { version INTEGER (3), authSafe ContentInfo, ... }"""
    outer = _der_header(data)
    if outer is None or outer[0] != 0x30:
        return False
    pos = outer[1]
    return data[pos : pos + 3] == b"\x02\x01\x03"


def _der_key_format(data: bytes) -> tuple[str | None, bool]:
    """(format, encrypted) of a DER private key, from its structure."""
    outer = _der_header(data)
    if outer is None or outer[0] != 0x30:
        return None, False
    pos = outer[1]
    first = _der_header(data, pos)
    if first is None:
        return None, False
    if first[0] == 0x30:  # EncryptedPrivateKeyInfo: SEQUENCE { AlgorithmIdentifier, OCTET STRING }
        return "PKCS#8", True
    if first[0] != 0x02:
        return None, False
    version = data[pos + first[1] : pos + first[1] + first[2]]
    second = _der_header(data, pos + first[1] + first[2])
    second_tag = second[0] if second else None
    if version == b"\x00" and second_tag == 0x30:
        return "PKCS#8", False
    if version == b"\x01" and second_tag == 0x04:
        return "SEC1", False
    if version == b"\x00" and second_tag == 0x02:
        return "PKCS#1", False
    return None, False


def _read_der(data: bytes, password: str | None, name: str) -> Contents:
    header = _der_header(data)
    if header is None or header[0] != 0x30:
        raise CertError(
            f"{_cap(name)} is not a certificate or key: it is neither PEM text nor DER "
            "(choose a .pem, .crt, .cer, .der, .key, .p7b, .p12 or .pfx file)."
        )
    if header[1] + header[2] > len(data):
        raise CertError(f"{_cap(name)} is cut short; copy or download the whole file again.")
    try:
        return Contents(certificates=[x509.load_der_x509_certificate(data)], container="DER")
    except _UNREADABLE:
        pass
    try:
        return Contents(csrs=[x509.load_der_x509_csr(data)], container="DER")
    except _UNREADABLE:
        pass
    if _looks_like_pkcs12(data):
        return _read_pkcs12(data, password, name)
    try:
        certs = pkcs7.load_der_pkcs7_certificates(data)
    except _UNREADABLE:
        certs = None
    if certs:
        return Contents(certificates=list(certs), container="PKCS#7")
    key_format, encrypted = _der_key_format(data)
    if key_format is not None:
        key = _load_key(data, serialization.load_der_private_key, password, name, encrypted)
        return Contents(key=key, container="DER", key_encrypted=encrypted, key_format=key_format)
    raise CertError(
        f"{_cap(name)} is neither a certificate, a private key, a certificate request, PKCS#7 nor PKCS#12; "
        "choose the certificate or key file itself."
    )


def _read_pkcs12(data: bytes, password: str | None, name: str) -> Contents:
    attempts = [_password_bytes(password)] if password else [None, b""]
    for pw in attempts:
        try:
            p12 = pkcs12.load_pkcs12(data, pw)
        except ValueError:
            continue
        except UnsupportedAlgorithm as exc:
            raise CertError(f"{_cap(name)} uses an encryption that cannot be read ({exc}).") from None
        certs = [p12.cert.certificate] if p12.cert is not None else []
        certs += [c.certificate for c in p12.additional_certs]
        if not certs and p12.key is None:
            raise CertError(f"The PKCS#12 file {name} holds neither a certificate nor a key.")
        return Contents(
            certificates=certs,
            key=p12.key,
            container="PKCS#12",
            key_encrypted=bool(pw) and p12.key is not None,
            key_format="PKCS#8" if p12.key is not None else None,
        )
    if password:
        raise WrongPassword(
            f"The password for the PKCS#12 file {name} is wrong (or the file is damaged); enter it again."
        )
    raise PasswordNeeded(f"The PKCS#12 file {name} is protected by a password; enter its password.")


# ----- checks -----------------------------------------------------------------------------------


def _describe(cert) -> str:
    item = cert if isinstance(cert, Item) else certificate_item(cert)
    return f"'{item.common_name}'"


def _date(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def expiry_problem(cert, now: dt.datetime | None = None) -> tuple[str, str | None]:
    """(status, sentence or None) for a certificate or certificate Item: valid, expiring (under
    EXPIRY_WARNING_DAYS days), expired or not-yet-valid."""
    item = cert if isinstance(cert, Item) else certificate_item(cert)
    now = now or _now()
    status = item.status(now)
    who = _describe(item)
    if status == "expired":
        ago = (now - item.not_after).days
        when = "today" if ago == 0 else f"{ago} day{'s' if ago != 1 else ''} ago"
        return status, (
            f"The certificate {who} expired on {_date(item.not_after)} ({when}); renew it, or allow expired "
            "certificates knowingly in the connection's settings."
        )
    if status == "not-yet-valid":
        return status, (
            f"The certificate {who} is valid only from {_date(item.not_before)}; check this computer's clock, "
            "or wait until then."
        )
    if status == "expiring":
        left = (item.not_after - now).days
        when = "within a day" if left == 0 else f"in {left} day{'s' if left != 1 else ''}"
        return status, f"The certificate {who} expires on {_date(item.not_after)} ({when}); renew it soon."
    return status, None


def key_matches(cert, key) -> bool:
    """Whether the private key belongs to the certificate (or certificate request)."""
    return _spki(cert.public_key()) == _spki(key.public_key())


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
        return False
    return True


def chain_problem(chain: list, trusted: list) -> str | None:
    """None when the chain (leaf first, intermediates after) leads by signatures to one of the
    trusted CA certificates; else a sentence naming where it stops."""
    if not chain:
        return "There is no certificate to check; choose the certificate file."
    if not trusted:
        return "No CA certificate is chosen to check the chain against; choose the CA certificate."
    trusted_prints = {c.fingerprint(hashes.SHA256()) for c in trusted}
    pool = list(chain[1:]) + list(trusted)
    current = chain[0]
    seen: set[bytes] = set()
    for _ in range(16):
        if current.fingerprint(hashes.SHA256()) in trusted_prints:
            return None
        seen.add(current.fingerprint(hashes.SHA256()))
        for candidate in trusted:
            if _issued_by(current, candidate):
                return None
        step = next(
            (c for c in pool if c.fingerprint(hashes.SHA256()) not in seen and _issued_by(current, c)),
            None,
        )
        if step is None:
            cas = ", ".join(_describe(c) for c in trusted[:3]) + (" …" if len(trusted) > 3 else "")
            issuer = current.issuer.rfc4514_string()
            return (
                f"The certificate {_describe(current)} was issued by '{issuer}', which does not lead to the chosen CA "
                f"({cas}); choose the CA that signed it, or add the missing intermediate certificate."
            )
        current = step
    return "The certificate chain is longer than 16 certificates or loops; check the chain file."


def _dns_match(pattern: str, host: str) -> bool:
    pattern, host = pattern.lower().rstrip("."), host.lower().rstrip(".")
    if pattern == host:
        return True
    if pattern.startswith("*.") and "*" not in pattern[2:]:
        head, _, rest = host.partition(".")
        return bool(head) and rest == pattern[2:] and rest.count(".") >= 1
    return False


def hostname_problem(cert, host: str) -> str | None:
    """None when the certificate covers host (DNS names with a left-most wildcard, IP addresses;
    the subject CN only when there are no SANs, as OpenSSL does); else a sentence."""
    host = host.strip().strip("[]")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    san = _ext(cert, x509.SubjectAlternativeName)
    dns = san.get_values_for_type(x509.DNSName) if san is not None else []
    ips = san.get_values_for_type(x509.IPAddress) if san is not None else []
    if ip is not None:
        if any(ip == a for a in ips):
            return None
    elif any(_dns_match(d, host) for d in dns):
        return None
    names = [*dns, *(str(a) for a in ips)]
    if not names:
        cns = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
        if ip is None and any(_dns_match(str(cn), host) for cn in cns):
            return None
        names = [str(cn) for cn in cns]
    covered = ", ".join(names[:6]) + (" …" if len(names) > 6 else "") if names else "no host name at all"
    return (
        f"The certificate {_describe(cert)} is for {covered}, not for {host}; connect with a name it covers, "
        "or ask the broker's operator for a certificate that covers this name."
    )


# ----- writing ----------------------------------------------------------------------------------


def private_key_pem(key, password: str | None) -> bytes:
    """PKCS#8 PEM; encrypted (AES-256, PBKDF2) when password is given."""
    encryption = (
        serialization.BestAvailableEncryption(password.encode("utf-8")) if password else serialization.NoEncryption()
    )
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)


def private_key_der(key, password: str | None) -> bytes:
    encryption = (
        serialization.BestAvailableEncryption(password.encode("utf-8")) if password else serialization.NoEncryption()
    )
    return key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, encryption)


def certificates_pem(certs) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def certificate_der(cert) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def public_key_pem(key_or_cert) -> str:
    """The SubjectPublicKeyInfo PEM ('BEGIN PUBLIC KEY') of a private key, public key or certificate."""
    public = key_or_cert.public_key() if hasattr(key_or_cert, "public_key") else key_or_cert
    return public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def pkcs12_bytes(key, certs, password: str | None, friendly_name: str = "uplink-console") -> bytes:
    encryption = (
        serialization.BestAvailableEncryption(password.encode("utf-8")) if password else serialization.NoEncryption()
    )
    cert = certs[0] if certs else None
    return pkcs12.serialize_key_and_certificates(friendly_name.encode(), key, cert, list(certs[1:]) or None, encryption)


CONVERSIONS = ("pkcs8", "pem", "der", "pem-parts", "bundle")


@dataclass(frozen=True)
class Part:
    """One file a conversion writes: its role ("key", "certificate", "chain", "bundle"), a file
    name suffix and whether it holds a private key (written 0600)."""

    role: str
    suffix: str
    data: bytes
    secret: bool = False


def _key_protection(out_password: str | None, no_encryption: bool) -> str | None:
    if out_password:
        return out_password
    if no_encryption:
        return None
    raise CertError(
        "Writing the private key needs a choice: give a password for it (--out-password-file), or say "
        "that it may be written unencrypted (--no-encryption)."
    )


def convert(contents: Contents, to: str, *, out_password: str | None = None, no_encryption: bool = False) -> list[Part]:
    """What a conversion writes: pkcs8 (the key as PKCS#8 PEM), pem (certificates, then the key,
    in one PEM file), der (the leaf certificate, or the key alone, as DER), pem-parts (certificate,
    chain and key as separate PEM files), bundle (every certificate as one PEM bundle). A private
    key is written encrypted with out_password, or unencrypted only with no_encryption."""
    if to not in CONVERSIONS:
        raise CertError(f"Cannot convert to '{to}'; choose one of {', '.join(CONVERSIONS)}.")
    chain = contents.chain()
    key = contents.key
    if to == "pkcs8":
        if key is None:
            raise CertError("There is no private key in this file to write as PKCS#8; choose the key file.")
        return [Part("key", ".key.pem", private_key_pem(key, _key_protection(out_password, no_encryption)), True)]
    if to == "bundle":
        if not chain:
            raise CertError("There is no certificate in this file to write as a bundle.")
        return [Part("bundle", ".pem", certificates_pem(chain))]
    if to == "der":
        if chain:
            return [Part("certificate", ".der", certificate_der(chain[0]))]
        if key is not None:
            return [Part("key", ".key.der", private_key_der(key, _key_protection(out_password, no_encryption)), True)]
        raise CertError("There is no certificate or key in this file to write as DER.")
    if to == "pem":
        if not chain and key is None:
            raise CertError("There is no certificate or key in this file to write as PEM.")
        data = certificates_pem(chain)
        if key is not None:
            data += private_key_pem(key, _key_protection(out_password, no_encryption))
        return [Part("pem", ".pem", data, key is not None)]
    # pem-parts
    parts: list[Part] = []
    if chain:
        parts.append(Part("certificate", "certificate.pem", certificates_pem(chain[:1])))
        if len(chain) > 1:
            parts.append(Part("chain", "chain.pem", certificates_pem(chain[1:])))
    if key is not None:
        parts.append(Part("key", "key.pem", private_key_pem(key, _key_protection(out_password, no_encryption)), True))
    if not parts:
        raise CertError("There is no certificate or key in this file to write as PEM parts.")
    return parts


# ----- generating -------------------------------------------------------------------------------


def generate_key(kind: str):
    """A new private key: "rsa2048" or "ec-p256"."""
    if kind == "rsa2048":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if kind == "ec-p256":
        return ec.generate_private_key(ec.SECP256R1())
    raise CertError(f"The key type '{kind}' is not offered; choose rsa2048 or ec-p256.")


def _signing_hash(key):
    return None if isinstance(key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey) else hashes.SHA256()


def _subject(cn: str) -> x509.Name:
    cn = (cn or "").strip()
    if not cn:
        raise CertError("The certificate needs a name (common name); enter one, such as the device's id.")
    if len(cn) > 64:
        raise CertError("The common name is longer than 64 characters, which certificates do not allow; shorten it.")
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _client_usage(key) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=isinstance(key, rsa.RSAPrivateKey),
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def self_signed_certificate(key, cn: str, days: int = 365) -> x509.Certificate:
    """A self-signed client certificate for the key (akenza device credentials)."""
    if days < 1 or days > 36500:
        raise CertError("The validity must be between 1 and 36500 days; choose another number of days.")
    name = _subject(cn)
    now = _now().replace(microsecond=0)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_client_usage(key), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, _signing_hash(key))
    )


def certificate_request(key, cn: str) -> bytes:
    """A CSR (PEM) for a client certificate, for brokers that sign their clients' certificates."""
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(_subject(cn))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_client_usage(key), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(key, _signing_hash(key))
    )
    return csr.public_bytes(serialization.Encoding.PEM)


# ----- fetching ---------------------------------------------------------------------------------


def parse_host_port(text: str, default_port: int = 8883) -> tuple[str, int]:
    """'host:port', '[v6]:port' or 'host' -> (host, port); CertError when it is not one."""
    text = (text or "").strip()
    if "://" in text:
        text = text.split("://", 1)[1].split("/", 1)[0]
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest.removeprefix(":")
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    else:
        host, port_text = text, ""
    if not host:
        raise CertError(f"'{text}' names no host; give it as HOST:PORT, such as broker.example.com:8883.")
    if not port_text:
        return host, default_port
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise CertError(f"'{port_text}' is not a port number; give it as HOST:PORT, such as broker.example.com:8883.")
    return host, int(port_text)


def fetch_chain(host: str, port: int, timeout: float = 10.0, server_name: str | None = None) -> list[x509.Certificate]:
    """The chain the server at host:port presents (leaf first), read over TLS WITHOUT trusting
    it: nothing is verified, so the user can look at it and decide."""
    where = f"{host}:{port}"
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    sni = server_name or host
    try:
        ipaddress.ip_address(sni)
        sni = None  # no SNI for an address
    except ValueError:
        pass
    try:
        with (
            socket.create_connection((host, port), timeout=timeout) as raw,
            ctx.wrap_socket(raw, server_hostname=sni) as tls,
        ):
            chain = _unverified_chain(tls)
    except socket.gaierror:
        raise CertError(f"The host name {host} cannot be found; check its spelling and the network.") from None
    except ConnectionRefusedError:
        raise CertError(f"Nothing accepts connections at {where}; check the host and the port.") from None
    except TimeoutError:
        raise CertError(
            f"{where} did not answer within {timeout:g} s; check the host, the port and any firewall."
        ) from None
    except ssl.SSLError as exc:
        reason = exc.reason or exc.__class__.__name__
        raise CertError(
            f"{where} did not complete a TLS handshake ({reason}); it may be a plain MQTT port (TLS is usually 8883)."
        ) from None
    except ConnectionResetError:
        raise CertError(
            f"{where} closed the connection during the TLS handshake; it may not be a TLS port (TLS is usually 8883)."
        ) from None
    except OSError as exc:
        raise CertError(f"Could not connect to {where} ({exc.strerror or exc}); check the host and the port.") from None
    if not chain:
        raise CertError(f"{where} presented no certificate.")
    return chain


def _unverified_chain(tls: ssl.SSLSocket) -> list[x509.Certificate]:
    getter = getattr(tls, "get_unverified_chain", None)  # Python 3.13
    if getter is None:
        sslobj = getattr(tls, "_sslobj", None)
        getter = getattr(sslobj, "get_unverified_chain", None)  # private on 3.12
    if getter is None:
        der = tls.getpeercert(binary_form=True)
        return [x509.load_der_x509_certificate(der)] if der else []
    out = []
    for entry in getter() or []:
        der = entry if isinstance(entry, bytes | bytearray) else entry.public_bytes(ssl._ssl.ENCODING_DER)
        out.append(x509.load_der_x509_certificate(bytes(der)))
    return out

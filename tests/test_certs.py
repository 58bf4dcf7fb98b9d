"""The certificate engine (app/certs.py) on certificates made per run by `cryptography` and, for
independence, by the `openssl` command: every form in and out with and without passwords, wrong
passwords, mismatched keys, expiry, chains, host names, generated akenza keys that sign JWTs, and
the chain fetched from the test mosquitto's TLS listener."""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs7, pkcs12

from app import certs
from app.certs import CertError, PasswordNeeded, WrongPassword
from app.devbroker import free_port, make_cert, make_key

OPENSSL = shutil.which("openssl")
needs_openssl = pytest.mark.skipif(OPENSSL is None, reason="the openssl command is not installed")
PASSWORD = "pässword with spaces"
NOW = dt.datetime.now(dt.UTC)


def openssl(*args: str, input: bytes | None = None) -> bytes:
    """Runs the openssl command; fails the test with its stderr when it fails."""
    result = subprocess.run([OPENSSL, *args], input=input, capture_output=True, timeout=60)
    assert result.returncode == 0, f"openssl {' '.join(args)}: {result.stderr.decode(errors='replace')}"
    return result.stdout


def openssl_fingerprint(path: Path, *, der: bool = False) -> str:
    form = ["-inform", "DER"] if der else []
    out = openssl("x509", "-in", str(path), *form, "-noout", "-fingerprint", "-sha256").decode().strip()
    assert "=" in out, out
    return out.split("=", 1)[1]


def openssl_public_pem(path: Path, password: str | None = None) -> str:
    args = ["pkey", "-in", str(path), "-pubout"]
    args += ["-passin", f"pass:{password}"] if password else ["-passin", "pass:"]
    return openssl(*args).decode()


@dataclass
class Material:
    """A CA, an intermediate, a leaf signed by the intermediate, its key, and an unrelated CA."""

    ca_key: object
    ca: x509.Certificate
    intermediate_key: object
    intermediate: x509.Certificate
    leaf_key: object
    leaf: x509.Certificate
    other_key: object
    other_ca: x509.Certificate


@pytest.fixture(scope="module")
def material() -> Material:
    ca_key, inter_key, leaf_key, other_key = make_key(), make_key(), make_key("rsa"), make_key()
    ca = make_cert("Test Root", ca_key, ca=True, not_after=NOW + dt.timedelta(days=400))
    inter = make_cert("Test Intermediate", inter_key, ca, ca_key, ca=True, not_after=NOW + dt.timedelta(days=300))
    leaf = make_cert(
        "device-1",
        leaf_key,
        inter,
        inter_key,
        client=True,
        dns=("broker.example.com", "*.mqtt.example.com"),
        ips=("127.0.0.1",),
        not_after=NOW + dt.timedelta(days=200),
    )
    other = make_cert("Other Root", other_key, ca=True, not_after=NOW + dt.timedelta(days=400))
    return Material(ca_key, ca, inter_key, inter, leaf_key, leaf, other_key, other)


def _pem(obj) -> bytes:
    return obj.public_bytes(serialization.Encoding.PEM)


# ----- reading every form ------------------------------------------------------------------


def test_a_pem_with_every_kind_of_block_gives_one_item_each(material):
    csr = certs.certificate_request(material.leaf_key, "device-1")
    data = _pem(material.leaf) + _pem(material.intermediate) + certs.private_key_pem(material.leaf_key, None) + csr
    contents = certs.read(data, name="mix.pem")
    kinds = [i.kind for i in contents.items()]
    assert kinds == ["certificate", "ca-certificate", "private-key", "csr"]
    leaf_item = contents.items()[0]
    assert leaf_item.subject == material.leaf.subject.rfc4514_string()
    assert leaf_item.issuer == material.intermediate.subject.rfc4514_string()
    assert leaf_item.sans == ("DNS:broker.example.com", "DNS:*.mqtt.example.com", "IP:127.0.0.1")
    assert leaf_item.serial == format(material.leaf.serial_number, "X")
    assert leaf_item.key_type == "RSA" and leaf_item.key_bits == 2048
    assert leaf_item.extended_key_usage == ("clientAuth",)
    assert not leaf_item.is_ca and not leaf_item.self_signed
    assert 198 <= leaf_item.days_left <= 200
    assert contents.key_format == "PKCS#8" and not contents.key_encrypted
    assert contents.leaf == material.leaf and contents.chain()[1] == material.intermediate
    ca_item = certs.read(_pem(material.ca)).items()[0]
    assert ca_item.is_ca and ca_item.self_signed and ca_item.curve == "P-256" and ca_item.key_bits == 256
    assert set(ca_item.key_usage) >= {"keyCertSign", "cRLSign"}


def test_as_json_has_the_keys_the_issue_names(material):
    for item in certs.read(_pem(material.leaf) + certs.private_key_pem(material.leaf_key, None)).items():
        data = item.as_json()
        for key in ("kind", "subject", "issuer", "not_after", "days_left", "sha256", "key_type", "key_bits"):
            assert key in data, key
        assert certs.Item.from_json(data) == item
    cert_json = certs.read(_pem(material.leaf)).items()[0].as_json()
    assert dt.datetime.fromisoformat(cert_json["not_after"]) == material.leaf.not_valid_after_utc


@pytest.mark.parametrize("traditional", [False, True])
@pytest.mark.parametrize("kind", ["rsa", "ec"])
def test_keys_in_every_pem_form_with_and_without_password(kind, traditional):
    key = make_key(kind)
    fmt = serialization.PrivateFormat.TraditionalOpenSSL if traditional else serialization.PrivateFormat.PKCS8
    expected_format = "PKCS#8" if not traditional else ("PKCS#1" if kind == "rsa" else "SEC1")
    plain = key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())
    encrypted = key.private_bytes(
        serialization.Encoding.PEM, fmt, serialization.BestAvailableEncryption(PASSWORD.encode())
    )
    read_plain = certs.read(plain)
    assert read_plain.key_format == expected_format and not read_plain.key_encrypted
    assert certs.read(plain, password="ignored for an unencrypted key").key is not None
    with pytest.raises(PasswordNeeded):
        certs.read(encrypted, name="k.pem")
    with pytest.raises(WrongPassword):
        certs.read(encrypted, password="wrong", name="k.pem")
    opened = certs.read(encrypted, password=PASSWORD)
    assert opened.key_encrypted and opened.key_format == expected_format
    assert certs.public_key_pem(opened.key) == certs.public_key_pem(key)
    item = opened.items()[0]
    assert item.kind == "private-key" and item.encrypted and item.status() == "key"


@pytest.mark.parametrize("kind", ["rsa", "ec"])
def test_der_keys_pkcs8_encrypted_and_traditional(kind):
    key = make_key(kind)
    der = serialization.Encoding.DER
    pkcs8 = key.private_bytes(der, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    trad = key.private_bytes(der, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption())
    enc = key.private_bytes(der, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(b"pw"))
    assert certs.read(pkcs8).key_format == "PKCS#8"
    assert certs.read(trad).key_format == ("PKCS#1" if kind == "rsa" else "SEC1")
    with pytest.raises(PasswordNeeded):
        certs.read(enc)
    with pytest.raises(WrongPassword):
        certs.read(enc, password="nope")
    opened = certs.read(enc, password="pw")
    assert opened.key_encrypted and opened.container == "DER"
    assert certs.public_key_pem(opened.key) == certs.public_key_pem(key)


def test_der_certificate_pkcs7_and_pkcs12(material):
    der = certs.read(certs.certificate_der(material.leaf))
    assert der.container == "DER" and der.certificates == [material.leaf]
    chain = [material.leaf, material.intermediate, material.ca]
    for encoding in (serialization.Encoding.PEM, serialization.Encoding.DER):
        bundle = pkcs7.serialize_certificates(chain, encoding)
        got = certs.read(bundle)
        assert got.container == "PKCS#7" and set(got.certificates) == set(chain)
        assert got.chain() == chain  # a PKCS#7 SET is sorted: the chain is found, not assumed in order
    with_pw = certs.pkcs12_bytes(material.leaf_key, [material.leaf, material.intermediate], PASSWORD)
    with pytest.raises(PasswordNeeded):
        certs.read(with_pw)
    with pytest.raises(WrongPassword):
        certs.read(with_pw, password="wrong")
    p12 = certs.read(with_pw, password=PASSWORD)
    assert p12.container == "PKCS#12" and p12.key_encrypted
    assert p12.certificates == [material.leaf, material.intermediate]
    assert certs.key_matches(p12.leaf, p12.key)
    no_pw = certs.read(certs.pkcs12_bytes(material.leaf_key, [material.leaf], None))
    assert no_pw.key is not None and not no_pw.key_encrypted
    ca_only = pkcs12.serialize_key_and_certificates(b"ca", None, material.ca, None, serialization.NoEncryption())
    assert [i.kind for i in certs.read(ca_only).items()] == ["ca-certificate"]


@pytest.mark.parametrize(
    "data, words",
    [
        (b"", "empty"),
        (b"   \n", "empty"),
        (b"hello, this is text\n", "neither PEM text nor DER"),
        (b"\x30\x82\x10\x00\x02\x01", "cut short"),
        (b"\x30\x03\x02\x01\x05", "neither a certificate"),
        (b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n", "damaged"),
        (b"-----BEGIN FOO-----\nAAAA\n-----END FOO-----\n", "'FOO' block"),
    ],
)
def test_files_that_are_not_certificates_are_one_sentence(data, words):
    with pytest.raises(CertError) as exc:
        certs.read(data, name="thing.pem")
    text = str(exc.value)
    assert words in text and text.endswith(".") and "\n" not in text


def test_truncated_files_say_so(material):
    pem = _pem(material.leaf)
    with pytest.raises(CertError, match="cut short"):
        certs.read(pem[: len(pem) // 2])
    der = certs.certificate_der(material.leaf)
    with pytest.raises(CertError, match="cut short"):
        certs.read(der[:-10])
    p12 = certs.pkcs12_bytes(material.leaf_key, [material.leaf], "x")
    with pytest.raises(CertError, match="cut short"):
        certs.read(p12[:200], password="x")


def test_a_public_key_alone_is_not_enough(material):
    with pytest.raises(CertError, match="only a public key"):
        certs.read(certs.public_key_pem(material.leaf_key).encode())


# ----- checks ------------------------------------------------------------------------------


def test_key_matches_only_its_own_certificate(material):
    assert certs.key_matches(material.leaf, material.leaf_key)
    assert not certs.key_matches(material.leaf, material.other_key)
    assert not certs.key_matches(material.ca, material.leaf_key)


def test_expiry_statuses_and_sentences():
    key = make_key()
    expired = make_cert("old", key, not_before=NOW - dt.timedelta(days=90), not_after=NOW - dt.timedelta(days=3))
    future = make_cert("future", key, not_before=NOW + dt.timedelta(days=2), not_after=NOW + dt.timedelta(days=90))
    soon = make_cert("soon", key, not_after=NOW + dt.timedelta(days=10))
    fine = make_cert("fine", key, not_after=NOW + dt.timedelta(days=100))
    status, sentence = certs.expiry_problem(expired)
    assert status == "expired" and "'old' expired on" in sentence and "3 days ago" in sentence
    assert "allow expired certificates knowingly" in sentence
    status, sentence = certs.expiry_problem(future)
    assert status == "not-yet-valid" and "clock" in sentence
    status, sentence = certs.expiry_problem(soon)
    assert status == "expiring" and ("in 9 days" in sentence or "in 10 days" in sentence)
    assert certs.expiry_problem(fine) == ("valid", None)
    assert certs.certificate_item(expired).days_left < 0
    # status at another moment: the same certificate seen 95 days on has expired
    assert certs.certificate_item(fine).status(NOW + dt.timedelta(days=95)) == "expiring"
    assert certs.certificate_item(fine).status(NOW + dt.timedelta(days=101)) == "expired"


def test_chain_leads_to_the_ca_or_says_where_it_stops(material):
    assert certs.chain_problem([material.leaf, material.intermediate], [material.ca]) is None
    assert certs.chain_problem([material.leaf], [material.intermediate]) is None
    assert certs.chain_problem([material.ca], [material.ca]) is None
    problem = certs.chain_problem([material.leaf, material.intermediate], [material.other_ca])
    assert "does not lead to the chosen CA" in problem and "'Other Root'" in problem
    missing = certs.chain_problem([material.leaf], [material.ca])
    assert "'Test Intermediate'" in missing or "Test Intermediate" in missing
    assert "intermediate" in missing


def test_a_forged_issuer_name_does_not_pass(material):
    """Same subject as the real CA, different key: the signature decides, not the name."""
    fake_key = make_key()
    fake_ca = make_cert("Test Root", fake_key, ca=True)
    assert certs.chain_problem([material.intermediate], [fake_ca]) is not None


def test_hostname_coverage(material):
    leaf = material.leaf
    assert certs.hostname_problem(leaf, "broker.example.com") is None
    assert certs.hostname_problem(leaf, "BROKER.example.com.") is None
    assert certs.hostname_problem(leaf, "eu1.mqtt.example.com") is None
    assert certs.hostname_problem(leaf, "127.0.0.1") is None
    for host in ("a.b.mqtt.example.com", "mqtt.example.com", "example.com", "127.0.0.2", "evil.com"):
        problem = certs.hostname_problem(leaf, host)
        assert problem and f"not for {host}" in problem and "broker.example.com" in problem, host
    cn_only = make_cert("legacy.example.com", make_key())
    assert certs.hostname_problem(cn_only, "legacy.example.com") is None
    assert "legacy.example.com" in certs.hostname_problem(cn_only, "other.example.com")


# ----- writing and converting --------------------------------------------------------------


def test_convert_refuses_an_unencrypted_key_unless_asked(material):
    contents = certs.read(
        certs.pkcs12_bytes(material.leaf_key, [material.leaf, material.intermediate], "pw"), password="pw"
    )
    for to in ("pkcs8", "pem", "pem-parts"):
        with pytest.raises(CertError, match="--no-encryption"):
            certs.convert(contents, to)
    parts = certs.convert(contents, "pem-parts", out_password="new")
    assert [p.role for p in parts] == ["certificate", "chain", "key"]
    assert [p.secret for p in parts] == [False, False, True]
    assert certs.read(parts[0].data).certificates == [material.leaf]
    assert certs.read(parts[1].data).certificates == [material.intermediate]
    with pytest.raises(PasswordNeeded):
        certs.read(parts[2].data)
    assert certs.key_matches(material.leaf, certs.read(parts[2].data, password="new").key)
    unencrypted = certs.convert(contents, "pkcs8", no_encryption=True)[0]
    assert b"BEGIN PRIVATE KEY" in unencrypted.data
    (der,) = certs.convert(contents, "der")
    assert x509.load_der_x509_certificate(der.data) == material.leaf
    (bundle,) = certs.convert(contents, "bundle")
    assert certs.read(bundle.data).certificates == [material.leaf, material.intermediate]
    with pytest.raises(CertError, match="no private key"):
        certs.convert(certs.read(_pem(material.ca)), "pkcs8")
    with pytest.raises(CertError, match="choose one of"):
        certs.convert(contents, "jks")


# ----- openssl, for independence -----------------------------------------------------------


@pytest.fixture(scope="module")
def openssl_files(tmp_path_factory):
    """Certificates and keys made by the openssl command in every form it writes."""
    if OPENSSL is None:
        pytest.skip("the openssl command is not installed")
    d = tmp_path_factory.mktemp("openssl")
    pw = f"pass:{PASSWORD}"
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(d / "ca.key"), "-out", str(d / "ca.pem"),
            "-days", "30", "-subj", "/CN=OpenSSL Test CA")  # fmt: skip
    openssl("genrsa", "-traditional", "-aes256", "-passout", pw, "-out", str(d / "rsa-trad-enc.pem"), "2048")
    openssl("ecparam", "-name", "prime256v1", "-genkey", "-out", str(d / "ec-sec1.pem"))
    openssl("pkcs8", "-topk8", "-in", str(d / "ec-sec1.pem"), "-passout", pw, "-out", str(d / "ec-pkcs8-enc.pem"))
    openssl("req", "-new", "-key", str(d / "rsa-trad-enc.pem"), "-passin", pw, "-subj", "/CN=openssl-client",
            "-out", str(d / "client.csr"))  # fmt: skip
    openssl("x509", "-req", "-in", str(d / "client.csr"), "-CA", str(d / "ca.pem"), "-CAkey", str(d / "ca.key"),
            "-CAcreateserial", "-days", "10", "-out", str(d / "client.pem"))  # fmt: skip
    openssl("x509", "-in", str(d / "client.pem"), "-outform", "DER", "-out", str(d / "client.der"))
    openssl("pkcs12", "-export", "-in", str(d / "client.pem"), "-inkey", str(d / "rsa-trad-enc.pem"), "-passin", pw,
            "-certfile", str(d / "ca.pem"), "-passout", pw, "-out", str(d / "client.p12"))  # fmt: skip
    openssl("pkcs12", "-export", "-in", str(d / "client.pem"), "-inkey", str(d / "rsa-trad-enc.pem"), "-passin", pw,
            "-passout", "pass:", "-out", str(d / "client-nopass.p12"))  # fmt: skip
    openssl("crl2pkcs7", "-nocrl", "-certfile", str(d / "client.pem"), "-certfile", str(d / "ca.pem"),
            "-out", str(d / "chain.p7b"))  # fmt: skip
    openssl("crl2pkcs7", "-nocrl", "-certfile", str(d / "client.pem"), "-certfile", str(d / "ca.pem"),
            "-outform", "DER", "-out", str(d / "chain-der.p7b"))  # fmt: skip
    openssl("pkey", "-in", str(d / "ec-sec1.pem"), "-outform", "DER", "-out", str(d / "ec-sec1.der"))
    openssl("pkcs8", "-topk8", "-nocrypt", "-in", str(d / "ec-sec1.pem"), "-outform", "DER",
            "-out", str(d / "ec-pkcs8.der"))  # fmt: skip
    openssl("rsa", "-in", str(d / "rsa-trad-enc.pem"), "-passin", pw, "-traditional", "-outform", "DER",
            "-out", str(d / "rsa-pkcs1.der"))  # fmt: skip
    return d


@needs_openssl
def test_fingerprints_equal_openssls(openssl_files, material, tmp_path):
    d = openssl_files
    assert certs.read((d / "client.pem").read_bytes()).items()[0].sha256 == openssl_fingerprint(d / "client.pem")
    der_item = certs.read((d / "client.der").read_bytes()).items()[0]
    assert der_item.sha256 == openssl_fingerprint(d / "client.der", der=True)
    ours = tmp_path / "leaf.pem"
    ours.write_bytes(_pem(material.leaf))
    assert certs.read(ours.read_bytes()).items()[0].sha256 == openssl_fingerprint(ours)


@needs_openssl
def test_every_openssl_form_reads(openssl_files):
    d = openssl_files
    ca = x509.load_pem_x509_certificate((d / "ca.pem").read_bytes())
    client = x509.load_pem_x509_certificate((d / "client.pem").read_bytes())
    trad = certs.read((d / "rsa-trad-enc.pem").read_bytes(), password=PASSWORD)
    assert trad.key_format == "PKCS#1" and trad.key_encrypted and certs.key_matches(client, trad.key)
    with pytest.raises(WrongPassword):
        certs.read((d / "rsa-trad-enc.pem").read_bytes(), password="wrong")
    with pytest.raises(PasswordNeeded):
        certs.read((d / "rsa-trad-enc.pem").read_bytes())
    sec1 = certs.read((d / "ec-sec1.pem").read_bytes())  # EC PARAMETERS then EC PRIVATE KEY
    assert sec1.key_format == "SEC1" and sec1.items()[0].curve == "P-256"
    assert certs.read((d / "ec-pkcs8-enc.pem").read_bytes(), password=PASSWORD).key_format == "PKCS#8"
    assert certs.read((d / "ec-pkcs8.der").read_bytes()).key_format == "PKCS#8"
    assert certs.read((d / "ec-sec1.der").read_bytes()).key_format == "SEC1"
    pkcs1 = certs.read((d / "rsa-pkcs1.der").read_bytes())
    assert pkcs1.key_format == "PKCS#1" and certs.key_matches(client, pkcs1.key)
    p12 = certs.read((d / "client.p12").read_bytes(), password=PASSWORD)
    assert p12.leaf == client and ca in p12.certificates and certs.key_matches(client, p12.key)
    with pytest.raises(WrongPassword):
        certs.read((d / "client.p12").read_bytes(), password="wrong")
    assert certs.read((d / "client-nopass.p12").read_bytes()).leaf == client
    for name in ("chain.p7b", "chain-der.p7b"):
        got = certs.read((d / name).read_bytes())
        assert got.container == "PKCS#7" and set(got.certificates) == {client, ca}
    csr = certs.read((d / "client.csr").read_bytes()).items()[0]
    assert csr.kind == "csr" and csr.subject == "CN=openssl-client" and csr.status() == "request"
    assert certs.chain_problem([client], [ca]) is None
    assert certs.read((d / "ca.pem").read_bytes()).items()[0].kind == "ca-certificate"


@needs_openssl
@pytest.mark.parametrize("password", [None, "new secret"])
def test_converted_keys_read_back_by_openssl(openssl_files, tmp_path, password):
    d = openssl_files
    source = certs.read((d / "rsa-trad-enc.pem").read_bytes(), password=PASSWORD)
    (part,) = certs.convert(source, "pkcs8", out_password=password, no_encryption=password is None)
    out = tmp_path / "key.pem"
    out.write_bytes(part.data)
    assert (b"ENCRYPTED PRIVATE KEY" in part.data) == (password is not None)
    assert openssl_public_pem(out, password) == certs.public_key_pem(source.key)
    if password:
        bad = subprocess.run([OPENSSL, "pkey", "-in", str(out), "-passin", "pass:wrong", "-noout"], capture_output=True)
        assert bad.returncode != 0
    parts = certs.convert(
        certs.read((d / "client.p12").read_bytes(), password=PASSWORD),
        "pem-parts",
        out_password=password,
        no_encryption=password is None,
    )
    for part in parts:
        path = tmp_path / part.suffix
        path.write_bytes(part.data)
        if part.role == "key":
            assert openssl_public_pem(path, password) == certs.public_key_pem(source.key)
        else:
            openssl("x509", "-in", str(path), "-noout")


@needs_openssl
def test_generated_certificate_and_csr_read_by_openssl(tmp_path):
    key = certs.generate_key("ec-p256")
    cert = certs.self_signed_certificate(key, "akenza-device-42", days=90)
    (tmp_path / "c.pem").write_bytes(certs.certificates_pem([cert]))
    (tmp_path / "r.csr").write_bytes(certs.certificate_request(key, "akenza-device-42"))
    subject = openssl("x509", "-in", str(tmp_path / "c.pem"), "-noout", "-subject").decode()
    assert "akenza-device-42" in subject
    openssl("req", "-in", str(tmp_path / "r.csr"), "-noout", "-verify")
    item = certs.certificate_item(cert)
    assert item.self_signed and not item.is_ca and 89 <= item.days_left <= 90
    assert item.sha256 == openssl_fingerprint(tmp_path / "c.pem")


# ----- generating for akenza -----------------------------------------------------------------


@pytest.mark.parametrize("kind, algorithm", [("rsa2048", "RS256"), ("ec-p256", "ES256")])
def test_generated_key_signs_a_jwt_that_verifies_with_the_shown_public_key(kind, algorithm):
    key = certs.generate_key(kind)
    shown = certs.public_key_pem(key)
    assert shown.startswith("-----BEGIN PUBLIC KEY-----")
    cert = certs.self_signed_certificate(key, "device-7")
    assert certs.public_key_pem(cert) == shown
    pem = certs.private_key_pem(key, None)
    token = jwt.encode({"sub": "device-7", "iat": int(NOW.timestamp())}, pem, algorithm=algorithm)
    assert jwt.decode(token, shown, algorithms=[algorithm])["sub"] == "device-7"
    other = certs.public_key_pem(certs.generate_key(kind))
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, other, algorithms=[algorithm])


def test_generate_refuses_what_it_cannot_make():
    with pytest.raises(CertError, match="rsa2048 or ec-p256"):
        certs.generate_key("dsa1024")
    key = certs.generate_key("ec-p256")
    with pytest.raises(CertError, match="common name"):
        certs.self_signed_certificate(key, "  ")
    with pytest.raises(CertError, match="64 characters"):
        certs.certificate_request(key, "x" * 65)
    with pytest.raises(CertError, match="between 1 and 36500"):
        certs.self_signed_certificate(key, "x", days=0)


# ----- fetching ------------------------------------------------------------------------------


def test_fetch_chain_from_the_tls_listener_without_trusting_it(broker, pki):
    chain = certs.fetch_chain("127.0.0.1", broker.ports.tls, timeout=10)
    server = x509.load_pem_x509_certificate(pki.server_cert.read_bytes())
    ca = x509.load_pem_x509_certificate(pki.ca.read_bytes())
    assert chain[0] == server
    assert certs.chain_problem(chain, [ca]) is None
    assert certs.chain_problem(chain, [x509.load_pem_x509_certificate(pki.other_ca.read_bytes())]) is not None
    assert certs.hostname_problem(chain[0], "localhost") is None
    assert certs.hostname_problem(chain[0], "127.0.0.1") is not None
    expired = certs.fetch_chain("localhost", broker.ports.expired)
    assert certs.expiry_problem(expired[0])[0] == "expired"


def test_fetch_errors_are_sentences(broker):
    with pytest.raises(CertError, match="Nothing accepts connections"):
        certs.fetch_chain("127.0.0.1", free_port(), timeout=5)
    with pytest.raises(CertError, match="TLS") as exc:
        certs.fetch_chain("127.0.0.1", broker.ports.plain, timeout=5)
    assert str(exc.value).endswith(")") or str(exc.value).endswith(".")
    with pytest.raises(CertError, match="cannot be found"):
        certs.fetch_chain("no-such-host.invalid", 8883, timeout=5)


def test_host_port_parsing():
    assert certs.parse_host_port("broker.example.com:8883") == ("broker.example.com", 8883)
    assert certs.parse_host_port("mqtts://broker:1234/x") == ("broker", 1234)
    assert certs.parse_host_port("[::1]:8883") == ("::1", 8883)
    assert certs.parse_host_port("broker") == ("broker", 8883)
    for bad in ("broker:http", "broker:0", ":8883", "broker:70000"):
        with pytest.raises(CertError):
            certs.parse_host_port(bad)


def test_damaged_files_of_every_form_are_sentences_never_other_errors(material, pki):
    """Every form cut at many points and with single bits flipped: read() either reads what is
    left or raises CertError with one sentence."""
    import random

    key_pem = certs.private_key_pem(material.leaf_key, "pw")
    forms = [
        _pem(material.leaf) + _pem(material.intermediate),
        certs.certificate_der(material.leaf),
        key_pem,
        material.ca_key.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
        ),
        pkcs7.serialize_certificates([material.leaf, material.ca], serialization.Encoding.DER),
        pkcs7.serialize_certificates([material.leaf], serialization.Encoding.PEM),
        certs.certificate_request(material.leaf_key, "device-1"),
        pki.client_p12.read_bytes(),
    ]
    rng = random.Random(20261201)
    tried = 0
    for data in forms:
        variants = [data[:cut] for cut in sorted(rng.sample(range(len(data)), 25))]
        for _ in range(25):
            flipped = bytearray(data)
            flipped[rng.randrange(len(flipped))] ^= 1 << rng.randrange(8)
            variants.append(bytes(flipped))
        for variant in variants:
            tried += 1
            try:
                certs.read(variant, password="pw" if b"ENCRYPTED" in variant else None)
            except CertError as exc:
                text = str(exc)
                assert text and text[0].isupper() and text.endswith(".") and "\n" not in text, text
    assert tried == len(forms) * 50

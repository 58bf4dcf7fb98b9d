"""`uplink-console cert …` as real processes (`python -m app.cli cert …`): inspect, convert,
generate and fetch, every bad input an exit status 2 with one sentence and never a traceback."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import jwt
import orjson
import pytest
from cryptography import x509

from app import certs
from app.devbroker import free_port, make_cert, make_key
from tests.test_certs import OPENSSL, needs_openssl, openssl, openssl_fingerprint, openssl_public_pem

ROOT = Path(__file__).resolve().parent.parent
EXE = [sys.executable, "-m", "app.cli", "cert"]
PREFIX = "uplink-console cert: "


@pytest.fixture
def env(tmp_path) -> dict:
    return {
        **os.environ,
        "UPLINK_CONSOLE_LOG_DIR": str(tmp_path / "log"),
        "UPLINK_CONSOLE_DATA_DIR": str(tmp_path / "data"),
    }


def cert(env, *argv, timeout: float = 60.0) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*EXE, *map(str, argv)], cwd=ROOT, env=env, capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL
    )


def ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, result.stderr.decode()
    assert result.stderr == b"", result.stderr.decode()
    return result.stdout.decode()


def refused(result: subprocess.CompletedProcess, *words: str, status: int = 2) -> str:
    """Exit status 2 (bad input) and one sentence on stderr, without a traceback."""
    err = result.stderr.decode()
    assert result.returncode == status, (result.returncode, err, result.stdout.decode())
    assert "Traceback" not in err and "internal error" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(PREFIX) and lines[0].endswith("."), err
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


@pytest.fixture
def password_file(tmp_path, pki) -> Path:
    path = tmp_path / "key-password.txt"
    path.write_text(pki.client_key_password + "\n")
    return path


@pytest.fixture
def wrong_password_file(tmp_path) -> Path:
    path = tmp_path / "wrong.txt"
    path.write_text("not the password\n")
    return path


# ----- inspect -----------------------------------------------------------------------------


def test_inspect_shows_one_block_per_item(env, pki, password_file):
    out = ok(cert(env, "inspect", pki.client_p12, "--password-file", password_file))
    leaf = x509.load_pem_x509_certificate(pki.client_cert.read_bytes())
    assert out.count("\ncertificate (PKCS#12)\n") == 1 and out.count("\nprivate key (PKCS#12)\n") == 1
    assert leaf.subject.rfc4514_string() in out and format(leaf.serial_number, "X") in out
    assert certs.certificate_item(leaf).sha256 in out
    assert "PKCS#8, encrypted" in out and "the certificate 'uplink-console-client'" in out
    assert "RSA 2048" in out and "clientAuth" in out


@needs_openssl
def test_inspect_json_fingerprints_equal_openssls(env, pki, tmp_path):
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(pki.ca.read_bytes() + pki.server_cert.read_bytes())
    data = orjson.loads(ok(cert(env, "inspect", bundle, "--json")))
    assert isinstance(data, list) and [d["kind"] for d in data] == ["ca-certificate", "certificate"]
    for item in data:
        for key in ("kind", "subject", "issuer", "not_after", "days_left", "sha256", "key_type", "key_bits"):
            assert key in item
        assert isinstance(item["days_left"], int) and item["key_type"] == "EC" and item["key_bits"] == 256
    assert data[0]["sha256"] == openssl_fingerprint(pki.ca)
    assert data[1]["sha256"] == openssl_fingerprint(pki.server_cert)
    assert data[1]["sans"] == ["DNS:localhost"]


def test_inspect_an_expired_certificate_says_so(env, pki):
    out = ok(cert(env, "inspect", pki.expired_cert))
    assert "EXPIRED" in out and "expired)" in out
    (item,) = orjson.loads(ok(cert(env, "inspect", pki.expired_cert, "--json")))
    assert item["status"] == "expired" and item["days_left"] < 0


def test_inspect_bad_input_is_one_sentence(env, pki, tmp_path, wrong_password_file, password_file):
    refused(cert(env, "inspect", pki.client_p12), "protected by a password", "--password-file")
    refused(cert(env, "inspect", pki.client_p12, "--password-file", wrong_password_file), "does not open")
    refused(cert(env, "inspect", pki.client_key_encrypted), "protected by a password")
    cut = tmp_path / "cut.pem"
    cut.write_bytes(pki.client_cert.read_bytes()[:300])
    refused(cert(env, "inspect", cut), "cut short")
    cut_p12 = tmp_path / "cut.p12"
    cut_p12.write_bytes(pki.client_p12.read_bytes()[:500])
    refused(cert(env, "inspect", cut_p12, "--password-file", password_file), "cut short")
    notes = tmp_path / "notes.txt"
    notes.write_text("hello, not a certificate\n")
    refused(cert(env, "inspect", notes), "not a certificate")
    empty = tmp_path / "empty.pem"
    empty.write_bytes(b"")
    refused(cert(env, "inspect", empty), "empty")
    refused(cert(env, "inspect", tmp_path / "missing.pem"), "does not exist")
    refused(cert(env, "inspect", tmp_path), "folder")
    refused(cert(env, "inspect", "/dev/zero"), "device")


def test_a_key_that_does_not_match_exits_2(env, pki, tmp_path):
    refused(cert(env, "inspect", pki.client_cert, "--key", pki.server_key), "does not belong")
    ok(cert(env, "inspect", pki.client_cert, "--key", pki.client_key))
    mixed = tmp_path / "mixed.pem"
    mixed.write_bytes(pki.client_cert.read_bytes() + pki.server_key.read_bytes())
    result = cert(env, "inspect", mixed)
    refused(result, "does not belong")
    assert b"NO: not the key" in result.stdout  # the blocks are still shown
    refused(
        cert(env, "convert", mixed, "--to", "pem", "--out", tmp_path / "x.pem", "--no-encryption"), "does not belong"
    )
    assert not (tmp_path / "x.pem").exists()


# ----- convert -----------------------------------------------------------------------------


def test_convert_needs_a_choice_for_the_key(env, pki, tmp_path, password_file):
    out = tmp_path / "key.pem"
    refused(
        cert(env, "convert", pki.client_key_encrypted, "--to", "pkcs8", "--out", out, "--password-file", password_file),
        "--no-encryption",
    )
    assert not out.exists()
    both = cert(
        env,
        "convert",
        pki.client_key,
        "--to",
        "pkcs8",
        "--out",
        out,
        "--no-encryption",
        "--out-password-file",
        password_file,
    )
    assert both.returncode == 2 and "not allowed with" in both.stderr.decode()


@needs_openssl
@pytest.mark.parametrize("encrypt", [True, False])
def test_convert_to_pkcs8_reads_back_in_openssl(env, tmp_path, encrypt):
    """A traditional (PKCS#1) encrypted key made by openssl, converted for ThingPark."""
    source = tmp_path / "rsa.pem"
    openssl("genrsa", "-traditional", "-aes128", "-passout", "pass:in-pass", "-out", str(source), "2048")
    assert b"Proc-Type: 4,ENCRYPTED" in source.read_bytes()
    (tmp_path / "in.txt").write_text("in-pass")
    (tmp_path / "out.txt").write_text("out-pass\n")
    out = tmp_path / "pkcs8.pem"
    protection = ["--out-password-file", tmp_path / "out.txt"] if encrypt else ["--no-encryption"]
    said = ok(
        cert(env, "convert", source, "--to", "pkcs8", "--out", out, "--password-file", tmp_path / "in.txt", *protection)
    )
    assert str(out) in said and ("NOT encrypted" in said) != encrypt
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    text = out.read_bytes()
    assert text.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----" if encrypt else b"-----BEGIN PRIVATE KEY-----")
    expected = openssl_public_pem(source, "in-pass")
    assert openssl_public_pem(out, "out-pass" if encrypt else None) == expected


@needs_openssl
def test_convert_pkcs12_to_pem_parts_and_der(env, pki, tmp_path, password_file):
    folder = tmp_path / "parts"
    folder.mkdir()
    said = ok(
        cert(
            env,
            "convert",
            pki.client_p12,
            "--to",
            "pem-parts",
            "--out",
            folder,
            "--password-file",
            password_file,
            "--no-encryption",
        )
    )
    assert sorted(p.name for p in folder.iterdir()) == ["certificate.pem", "key.pem"]
    for name in ("certificate.pem", "key.pem"):
        assert str(folder / name) in said
    assert openssl_fingerprint(folder / "certificate.pem") == openssl_fingerprint(pki.client_cert)
    assert openssl_public_pem(folder / "key.pem") == openssl_public_pem(pki.client_key)
    said = ok(
        cert(
            env,
            "convert",
            pki.client_p12,
            "--to",
            "pem-parts",
            "--out",
            tmp_path / "client",
            "--password-file",
            password_file,
            "--out-password-file",
            password_file,
        )
    )
    assert (tmp_path / "client-certificate.pem").exists() and (tmp_path / "client-key.pem").exists()
    assert openssl_public_pem(tmp_path / "client-key.pem", (password_file.read_text().strip())) == openssl_public_pem(
        pki.client_key
    )
    der = tmp_path / "client.der"
    ok(cert(env, "convert", pki.client_cert, "--to", "der", "--out", der))
    assert openssl_fingerprint(der, der=True) == openssl_fingerprint(pki.client_cert)
    back = tmp_path / "back.pem"
    ok(cert(env, "convert", der, "--to", "pem", "--out", back))
    assert back.read_bytes() == pki.client_cert.read_bytes()


def test_convert_refuses_to_overwrite_its_input_and_reports_unwritable_outputs(env, pki, tmp_path):
    copy = tmp_path / "ca.pem"
    copy.write_bytes(pki.ca.read_bytes())
    refused(cert(env, "convert", copy, "--to", "der", "--out", copy), "another file")
    assert copy.read_bytes() == pki.ca.read_bytes()
    refused(cert(env, "convert", copy, "--to", "der", "--out", "/proc/no-such/ca.der"), "cannot be written", status=1)


# ----- generate ----------------------------------------------------------------------------


def _pem_block(text: str, label: str) -> str:
    match = re.search(rf"-----BEGIN {label}-----\n.*?-----END {label}-----\n", text, re.DOTALL)
    assert match, f"no {label} in the output"
    return match.group(0)


@pytest.mark.parametrize("kind, algorithm", [("rsa2048", "RS256"), ("ec-p256", "ES256")])
def test_generate_an_akenza_key_whose_jwt_verifies_with_the_shown_public_key(env, tmp_path, kind, algorithm):
    key_file, cert_file, csr_file = tmp_path / "dev.key", tmp_path / "dev.pem", tmp_path / "dev.csr"
    out = ok(
        cert(
            env,
            "generate",
            "--type",
            kind,
            "--cn",
            "akenza-device-9",
            "--out-key",
            key_file,
            "--out-cert",
            cert_file,
            "--days",
            30,
            "--csr",
            csr_file,
            "--no-encryption",
        )
    )
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600 and "NOT encrypted" in out
    shown_public = _pem_block(out, "PUBLIC KEY")
    shown_cert = _pem_block(out, "CERTIFICATE")
    assert shown_cert.encode() == cert_file.read_bytes()
    token = jwt.encode({"sub": "akenza-device-9"}, key_file.read_bytes(), algorithm=algorithm)
    assert jwt.decode(token, shown_public, algorithms=[algorithm])["sub"] == "akenza-device-9"
    parsed = certs.read(cert_file.read_bytes()).items()[0]
    assert parsed.common_name == "akenza-device-9" and parsed.self_signed and 29 <= parsed.days_left <= 30
    assert parsed.sha256 in out
    request = certs.read(csr_file.read_bytes())
    assert certs.key_matches(request.csrs[0], certs.read(key_file.read_bytes()).key)
    if OPENSSL:
        assert openssl_public_pem(key_file) == shown_public
        openssl("req", "-in", str(csr_file), "-noout", "-verify")


def test_generate_with_a_password_and_its_refusals(env, tmp_path, password_file, pki):
    base = ["generate", "--type", "ec-p256", "--cn", "dev"]
    key_file, cert_file = tmp_path / "k.pem", tmp_path / "c.pem"
    refused(cert(env, *base, "--out-key", key_file, "--out-cert", cert_file), "--no-encryption", "--out-password-file")
    assert not key_file.exists() and not cert_file.exists()
    ok(cert(env, *base, "--out-key", key_file, "--out-cert", cert_file, "--out-password-file", password_file))
    assert b"ENCRYPTED PRIVATE KEY" in key_file.read_bytes()
    opened = certs.read(key_file.read_bytes(), password=pki.client_key_password)
    assert certs.key_matches(x509.load_pem_x509_certificate(cert_file.read_bytes()), opened.key)
    before = key_file.read_bytes()
    refused(
        cert(env, *base, "--out-key", key_file, "--out-cert", tmp_path / "c2.pem", "--no-encryption"), "already exists"
    )
    assert key_file.read_bytes() == before and not (tmp_path / "c2.pem").exists()
    refused(
        cert(env, *base[:-1], "x" * 80, "--out-key", tmp_path / "a", "--out-cert", tmp_path / "b", "--no-encryption"),
        "64 characters",
    )
    refused(
        cert(env, *base, "--out-key", tmp_path / "a", "--out-cert", tmp_path / "a", "--no-encryption"),
        "different files",
    )


# ----- fetch -------------------------------------------------------------------------------


def test_fetch_shows_the_brokers_chain_and_writes_it(env, broker, pki, tmp_path):
    out_file = tmp_path / "chain.pem"
    out = ok(cert(env, "fetch", f"localhost:{broker.ports.tls}", "--out", out_file))
    server = x509.load_pem_x509_certificate(pki.server_cert.read_bytes())
    assert certs.certificate_item(server).sha256 in out
    assert "nothing was verified or trusted" in out and "covers localhost" in out
    assert str(out_file) in out
    assert certs.read(out_file.read_bytes()).certificates[0] == server
    expired = ok(cert(env, "fetch", f"127.0.0.1:{broker.ports.expired}"))
    assert "EXPIRED" in expired and "not for 127.0.0.1" in expired


def test_fetch_failures_are_sentences(env, broker):
    refused(cert(env, "fetch", f"127.0.0.1:{free_port()}"), "Nothing accepts connections")
    refused(cert(env, "fetch", f"127.0.0.1:{broker.ports.plain}"), "TLS")
    refused(cert(env, "fetch", "localhost:notaport"), "not a port number")


def test_cert_help_lists_the_four_commands(env):
    out = ok(cert(env, "--help"))
    for command in ("inspect", "convert", "generate", "fetch"):
        assert command in out
    usage = cert(env)
    assert usage.returncode == 2 and "Traceback" not in usage.stderr.decode()


def test_a_certificate_made_elsewhere_is_inspected_the_same(env, tmp_path):
    key = make_key("rsa")
    made = make_cert("elsewhere", key, dns=("a.example.com",))
    path = tmp_path / "made.der"
    path.write_bytes(certs.certificate_der(made))
    (item,) = orjson.loads(ok(cert(env, "inspect", path, "--json")))
    assert item["subject"] == made.subject.rfc4514_string() and item["container"] == "DER"
    assert item["sans"] == ["DNS:a.example.com"] and item["key_bits"] == 2048

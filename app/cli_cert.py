"""`uplink-console cert …`: inspect, convert, generate and fetch certificates and keys.

The same engine as the certificate manager (app/certs.py), for scripts and for users who are
handed a file and need to know what it is, or need it in the one form a platform accepts
(ThingPark: PKCS#8; akenza: a key pair with a certificate to paste). Bad input — a wrong
password, a truncated or non-certificate file, a key that does not match — exits 2 with one
sentence (CertError is a ValueError, which app/cli.py's _run maps to 2); a file that cannot be
written exits 1. A private key is written unencrypted only when --no-encryption says so.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

import orjson

from app import certs
from app.certs import CertError, Contents, Item

PASSWORD_WHAT = "password"
CONVERT_TARGETS = ("pkcs8", "pem", "der", "pem-parts")

_KIND_LABELS = {
    "ca-certificate": "CA certificate",
    "certificate": "certificate",
    "private-key": "private key",
    "csr": "certificate request",
}
_STATUS_LABELS = {
    "valid": "valid",
    "expiring": f"expires within {certs.EXPIRY_WARNING_DAYS} days",
    "expired": "EXPIRED",
    "not-yet-valid": "NOT YET VALID",
}


def add_parsers(sub) -> None:
    """Registers the `cert` subcommands on the top-level subparsers."""
    c = sub.add_parser(
        "cert",
        help="inspect, convert, generate and fetch certificates and keys",
        description="Certificates and keys: what a file holds, the form a platform needs, a new key pair "
        "for akenza, and the chain a broker presents.",
    )
    csub = c.add_subparsers(dest="cert_command", required=True, metavar="COMMAND")

    i = csub.add_parser(
        "inspect",
        help="what a certificate, key, PKCS#7 or PKCS#12 file holds",
        description="One block per certificate, key or certificate request in FILE (PEM, DER, PKCS#7, PKCS#12).",
    )
    i.add_argument("file", metavar="FILE")
    i.add_argument("--password-file", help="file holding the password of an encrypted key or PKCS#12")
    i.add_argument("--key", dest="key_file", metavar="KEY", help="a private key file to check against the certificate")
    i.add_argument("--key-password-file", help="file holding the password of --key")
    i.add_argument("--json", action="store_true", help="a JSON list of objects, one per item")
    i.set_defaults(func=cmd_inspect)

    v = csub.add_parser(
        "convert",
        help="a key to PKCS#8, a PKCS#12 to PEM parts, a certificate to PEM or DER",
        description="Writes FILE in another form. A private key is written encrypted with --out-password-file, "
        "or unencrypted only with --no-encryption.",
    )
    v.add_argument("file", metavar="FILE")
    v.add_argument("--to", required=True, choices=CONVERT_TARGETS)
    v.add_argument(
        "--out", required=True, metavar="PATH", help="the file to write (pem-parts: a folder, or a name prefix)"
    )
    v.add_argument("--password-file", help="file holding the password of FILE")
    _add_key_protection(v)
    v.set_defaults(func=cmd_convert)

    g = csub.add_parser(
        "generate",
        help="a new key pair with a self-signed certificate (akenza devices), optionally a CSR",
        description="Generates an RSA-2048 or EC P-256 key and a self-signed client certificate, and prints the "
        "public key and the certificate to paste into akenza.",
    )
    g.add_argument("--type", required=True, choices=certs.KEY_TYPES, dest="key_type")
    g.add_argument("--cn", required=True, metavar="NAME", help="the certificate's common name (e.g. the device id)")
    g.add_argument("--out-key", required=True, dest="out_key_file", metavar="F", help="the private key file to write")
    g.add_argument("--out-cert", required=True, dest="out_cert_file", metavar="F", help="the certificate to write")
    g.add_argument("--days", type=int, default=365, metavar="N", help="validity in days (default 365)")
    g.add_argument("--csr", dest="csr_file", metavar="F", help="also write a certificate signing request")
    _add_key_protection(g)
    g.set_defaults(func=cmd_generate)

    f = csub.add_parser(
        "fetch",
        help="the certificate chain a broker presents, inspected, without trusting it",
        description="Connects to HOST:PORT over TLS without verifying anything and shows the chain it presents.",
    )
    f.add_argument("target", metavar="HOST:PORT")
    f.add_argument("--out", metavar="F", help="write the chain as a PEM bundle")
    f.add_argument("--timeout", type=float, default=10.0, help=argparse.SUPPRESS)
    f.set_defaults(func=cmd_fetch)


def _add_key_protection(p: argparse.ArgumentParser) -> None:
    group = p.add_mutually_exclusive_group()
    group.add_argument("--out-password-file", metavar="F", help="encrypt the written key with the password in F")
    group.add_argument(
        "--no-encryption", action="store_true", help="write the private key unencrypted (an explicit choice)"
    )


# ----- helpers ----------------------------------------------------------------------------------


def _cli():
    """app.cli, imported when first needed (it imports this module to register the commands)."""
    from app import cli

    return cli


def _shown(path: str) -> str:
    return _cli()._shown(path, limit=200)


def read_input_file(path: str, what: str = "certificate") -> bytes:
    """The file's bytes, bounded (app.cli.TLS_FILE_LIMIT); UsageError sentences for a missing file,
    a folder, a device or a file far too large to be a certificate."""
    cli = _cli()
    cli._check_tls_file(path, what)
    try:
        with open(Path(path).expanduser(), "rb") as f:
            data = cli._read_bounded(f, cli.TLS_FILE_LIMIT)
    except FileNotFoundError:
        raise cli.UsageError(f"The file {_shown(path)} does not exist; check the name.") from None
    except OSError as exc:
        raise cli.UsageError(f"The file {_shown(path)} cannot be read ({exc.strerror or exc}).") from None
    if len(data) > cli.TLS_FILE_LIMIT:
        raise cli.UsageError(
            f"The file {_shown(path)} is larger than {cli.TLS_FILE_LIMIT // 1024**2} MiB, so it is not a certificate "
            "or key file."
        )
    return data


def _password(path: str | None, what: str = PASSWORD_WHAT) -> str | None:
    return _cli()._read_secret_file(path, what) if path else None


def _read(path: str, password_file: str | None, option: str = "--password-file") -> Contents:
    data = read_input_file(path)
    name = _shown(path)
    try:
        return certs.read(data, password=_password(password_file), name=name)
    except certs.PasswordNeeded:
        raise certs.PasswordNeeded(
            f"{_cap(name)} is protected by a password; give a file holding it with {option} F."
        ) from None
    except certs.WrongPassword:
        raise certs.WrongPassword(
            f"The password in {_shown(password_file)} does not open {name}; check the password file ({option})."
        ) from None


def _out_password(args) -> str | None:
    if args.out_password_file:
        password = _password(args.out_password_file, "output password")
        if not password:
            raise _cli().UsageError(
                f"The output password file {_shown(args.out_password_file)} is empty; put the password in it, "
                "or give --no-encryption."
            )
        return password
    return None


def _write(parts, out: str, to: str) -> list[Path]:
    from app.cert_store import CertStoreError, write_parts

    try:
        return write_parts(parts, out, to)
    except CertStoreError as exc:
        raise _cli().RuntimeFailure(str(exc)) from None


def _stdout_text(text: str) -> None:
    out = _cli()._stdout()
    out.write(text.encode("utf-8"))
    out.flush()


def _when(moment: dt.datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC") if moment else "-"


def describe(item: Item, now: dt.datetime | None = None, *, key_note: str | None = None) -> str:
    """One inspect block: a heading, then 'label  value' lines."""
    rows: list[tuple[str, str]] = []
    if item.is_certificate:
        rows.append(("subject", item.subject or "(empty)"))
        rows.append(("issuer", item.issuer + (" (self-signed)" if item.self_signed else "")))
        if item.sans:
            rows.append(("names (SAN)", ", ".join(item.sans)))
        rows.append(("serial", item.serial))
        days = item.days_left_at(now)
        left = f"{days} day{'s' if abs(days) != 1 else ''} left" if days is not None and days >= 0 else "expired"
        rows.append(("valid from", _when(item.not_before)))
        rows.append(("valid until", f"{_when(item.not_after)} ({left})"))
        rows.append(("status", _STATUS_LABELS.get(item.status(now), item.status(now))))
        rows.append(("SHA-256", item.sha256))
    elif item.kind == "csr":
        rows.append(("subject", item.subject or "(empty)"))
        if item.sans:
            rows.append(("names (SAN)", ", ".join(item.sans)))
        rows.append(("SHA-256", item.sha256))
    else:
        form = item.key_format or item.container
        rows.append(("form", f"{form}, {'encrypted' if item.encrypted else 'not encrypted'}"))
        rows.append(("SHA-256 (public)", item.sha256))
    key = f"{item.key_type} {item.key_bits}" + (f" ({item.curve})" if item.curve else "")
    rows.append(("key", key))
    if item.key_usage:
        rows.append(("key usage", ", ".join(item.key_usage)))
    if item.extended_key_usage:
        rows.append(("extended usage", ", ".join(item.extended_key_usage)))
    if item.is_certificate:
        rows.append(("CA", "yes" if item.is_ca else "no"))
    if key_note:
        rows.append(("matches", key_note))
    width = max(len(label) for label, _ in rows)
    lines = [f"{_KIND_LABELS.get(item.kind, item.kind)} ({item.container})"]
    lines += [f"  {label:<{width}}  {value}" for label, value in rows]
    return "\n".join(lines)


def _mismatch(contents: Contents, name: str) -> str | None:
    if contents.key is None or not contents.certificates:
        return None
    if any(certs.key_matches(c, contents.key) for c in contents.certificates):
        return None
    return (
        f"The private key in {name} does not belong to any certificate in it; put the matching key and "
        "certificate together."
    )


# ----- commands ---------------------------------------------------------------------------------


def cmd_inspect(args) -> int:
    contents = _read(args.file, args.password_file)
    name = _shown(args.file)
    items = contents.items()
    problem = _mismatch(contents, name)
    other_key = None
    if args.key_file:
        other = _read(args.key_file, args.key_password_file, "--key-password-file")
        if other.key is None:
            raise CertError(f"{_cap(_shown(args.key_file))} holds no private key; give the key file with --key.")
        other_key = other.key
        items.append(certs.key_item(other.key, encrypted=other.key_encrypted, key_format=other.key_format))
        leaf = contents.leaf
        if leaf is None:
            raise CertError(f"{_cap(name)} holds no certificate to check the key {_shown(args.key_file)} against.")
        if not certs.key_matches(leaf, other.key):
            problem = (
                f"The private key {_shown(args.key_file)} does not belong to the certificate in {name}; "
                "choose the matching key."
            )
    if args.json:
        _stdout_text(orjson.dumps([i.as_json() for i in items], option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        now = dt.datetime.now(dt.UTC)
        leaf = contents.leaf
        blocks = []
        for item in items:
            note = None
            if item.kind == "private-key" and leaf is not None:
                key = other_key if other_key is not None and item is items[-1] else contents.key
                matched = key is not None and certs.key_matches(leaf, key)
                cn = certs.certificate_item(leaf).common_name
                note = f"the certificate '{cn}'" if matched else f"NO: not the key of the certificate '{cn}'"
            blocks.append(describe(item, now, key_note=note))
        count = len(items)
        header = f"{name}: {contents.container}, {count} item{'s' if count != 1 else ''}"
        _stdout_text(header + "\n\n" + "\n\n".join(blocks) + "\n")
    if problem:
        raise CertError(problem)
    return 0


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def cmd_convert(args) -> int:
    cli = _cli()
    if Path(args.out).expanduser().resolve() == Path(args.file).expanduser().resolve():
        raise cli.UsageError("--out names the file being converted; write the result to another file.")
    contents = _read(args.file, args.password_file)
    problem = _mismatch(contents, _shown(args.file))
    if problem:
        raise CertError(problem)
    parts = certs.convert(contents, args.to, out_password=_out_password(args), no_encryption=args.no_encryption)
    written = _write(parts, args.out, args.to)
    lines = []
    for part, path in zip(parts, written, strict=True):
        what = {
            "key": "private key (PKCS#8, " + ("encrypted" if args.out_password_file else "NOT encrypted") + ")",
            "certificate": "certificate",
            "chain": "chain (the other certificates)",
            "bundle": "certificates",
            "pem": "certificates" + (" and private key" if part.secret else ""),
        }[part.role]
        if args.to == "der" and part.role == "certificate" and len(contents.certificates) > 1:
            what += f" (the first of {len(contents.certificates)}; DER holds one)"
        lines.append(f"Wrote the {what} to {_shown(str(path))}.")
    _stdout_text("\n".join(lines) + "\n")
    return 0


def cmd_generate(args) -> int:
    cli = _cli()
    if not args.out_password_file and not args.no_encryption:
        raise cli.UsageError(
            "Choose how to write the private key: --out-password-file F to encrypt it with the password in F, "
            "or --no-encryption to write it unencrypted."
        )
    targets = [args.out_key_file, args.out_cert_file] + ([args.csr_file] if args.csr_file else [])
    if len({Path(t).expanduser().resolve() for t in targets}) != len(targets):
        raise cli.UsageError("--out-key, --out-cert and --csr must name different files.")
    for target in targets:
        if Path(target).expanduser().exists():
            raise cli.UsageError(
                f"{_shown(target)} already exists; choose another name or move it away (a key is never overwritten)."
            )
    password = _out_password(args)
    key = certs.generate_key(args.key_type)
    cert = certs.self_signed_certificate(key, args.cn, args.days)
    parts = [
        (args.out_key_file, certs.Part("key", "", certs.private_key_pem(key, password), True)),
        (args.out_cert_file, certs.Part("certificate", "", certs.certificates_pem([cert]))),
    ]
    if args.csr_file:
        parts.append((args.csr_file, certs.Part("csr", "", certs.certificate_request(key, args.cn))))
    for target, part in parts:
        _write([part], target, "single")
    item = certs.certificate_item(cert)
    out = [
        f"Wrote the private key ({item.key_type} {item.key_bits}, PKCS#8, "
        f"{'encrypted' if password else 'NOT encrypted'}) to {_shown(args.out_key_file)}.",
        f"Wrote the self-signed certificate for '{args.cn}', valid until {_when(item.not_after)}, "
        f"to {_shown(args.out_cert_file)}.",
    ]
    if args.csr_file:
        out.append(f"Wrote the certificate signing request to {_shown(args.csr_file)}.")
    out += [
        f"SHA-256 fingerprint: {item.sha256}",
        "",
        "Public key (paste into akenza when the device uses a public key):",
        certs.public_key_pem(key).rstrip(),
        "",
        "Certificate (paste into akenza when the device uses a certificate):",
        certs.certificates_pem([cert]).decode().rstrip(),
    ]
    _stdout_text("\n".join(out) + "\n")
    return 0


def cmd_fetch(args) -> int:
    host, port = certs.parse_host_port(args.target)
    chain = certs.fetch_chain(host, port, timeout=args.timeout)
    now = dt.datetime.now(dt.UTC)
    count = len(chain)
    lines = [
        f"{host}:{port} presented {count} certificate{'s' if count != 1 else ''} (nothing was verified or trusted):",
        "",
    ]
    for number, cert in enumerate(chain, 1):
        block = describe(certs.certificate_item(cert, "PEM"), now)
        heading, _, rest = block.partition("\n")
        lines.append(f"{number}. {heading.removesuffix(' (PEM)')}{' (the broker’s own)' if number == 1 else ''}")
        lines.append(rest)
        lines.append("")
    host_note = certs.hostname_problem(chain[0], host)
    lines.append(host_note or f"The broker's certificate covers {host}.")
    root = chain[-1]
    if certs.certificate_item(root).self_signed:
        lines.append(
            f"The chain ends at '{certs.certificate_item(root).common_name}', which signed itself: trust it only if "
            "you know this broker is yours or your provider's."
        )
    else:
        lines.append(
            f"The chain ends at '{certs.certificate_item(root).common_name}', issued by "
            f"'{root.issuer.rfc4514_string()}', which the broker did not send; that CA must be trusted separately."
        )
    if args.out:
        written = _write([certs.Part("bundle", "", certs.certificates_pem(chain))], args.out, "bundle")
        lines.append(
            f"Wrote the {count} certificate{'s' if count != 1 else ''} as a PEM bundle to {_shown(str(written[0]))}."
        )
    _stdout_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":  # pragma: no cover - `python -m app.cli cert …` is the entry point
    sys.exit(_cli().main(["cert", *sys.argv[1:]]))

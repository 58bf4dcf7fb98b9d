"""The certificate store: the certificates and keys the user imported, generated or fetched, kept
in the app data folder so a connection refers to them by id ("store:<id>") instead of to a file
that may move or vanish.

Each entry is the file exactly as imported (an encrypted key or PKCS#12 stays encrypted), named by
the SHA-256 of its bytes, so the same file imported twice is one entry. A key's password lives in
the keyring (app.secrets.SecretStore, id "certificate-<entry id>", field "key_password"), never in
the index or a file. The index (index.json) holds names and what each file contains, so the list
shows without any password; it is written atomically, files are 0600 and the folder 0700. A
corrupt index is kept aside as index.json.corrupt-<time>, the store is rebuilt from the files it
can read, and `notice` says so.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from app import certs
from app.certs import CertError, Contents, Item

log = logging.getLogger(__name__)

REFERENCE_PREFIX = "store:"
INDEX_NAME = "index.json"
INDEX_VERSION = 1
FILE_LIMIT = 16 * 1024 * 1024
PASSWORD_FIELD = "key_password"
ORIGINS = ("imported", "generated", "fetched", "converted")
_ID = re.compile(r"^[0-9a-f]{16}$")
_SUFFIXES = {".pem", ".crt", ".cer", ".der", ".key", ".p7b", ".p7c", ".p12", ".pfx", ".csr", ".req"}


def reference(entry_id: str) -> str:
    """What a profile's ca_file / cert_file / key_file holds for a stored entry."""
    return REFERENCE_PREFIX + entry_id


def entry_id_of(value: str | None) -> str | None:
    """The entry id when value is a store reference, else None."""
    if isinstance(value, str) and value.startswith(REFERENCE_PREFIX):
        return value[len(REFERENCE_PREFIX) :].strip() or None
    return None


def secret_id(entry_id: str) -> str:
    """The keyring id under which an entry's key password is kept."""
    return f"certificate-{entry_id}"


class CertStoreError(OSError):
    """The store's folder or files could not be read or written; the text is one sentence."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "The certificate store failed."


@dataclass
class StoredEntry:
    id: str
    name: str
    filename: str  # the original file name, as imported
    path: Path  # the stored file (0600)
    items: list[Item] = field(default_factory=list)
    imported_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    has_password: bool = False  # its password is kept in the keyring
    origin: str = "imported"  # "imported" | "generated" | "fetched" | "converted"
    container: str = "PEM"

    @property
    def reference(self) -> str:
        return reference(self.id)

    @property
    def certificates(self) -> list[Item]:
        return [i for i in self.items if i.is_certificate]

    @property
    def has_key(self) -> bool:
        return any(i.kind == "private-key" for i in self.items)

    @property
    def kind(self) -> str:
        """A summary for the list: "CA certificate", "CA bundle (3)", "client certificate",
        "private key", "certificate and key (PKCS#12)", "certificate request"…"""
        cert_items = self.certificates
        if self.has_key and cert_items:
            return "certificate and key (PKCS#12)" if self.container == "PKCS#12" else "certificate and key"
        if self.has_key:
            return "private key"
        if cert_items:
            if all(i.kind == "ca-certificate" for i in cert_items):
                return "CA certificate" if len(cert_items) == 1 else f"CA bundle ({len(cert_items)})"
            leaf = self.main
            if "clientAuth" in leaf.extended_key_usage or not leaf.extended_key_usage:
                label = "client certificate"
            else:
                label = "server certificate" if "serverAuth" in leaf.extended_key_usage else "certificate"
            return label if len(cert_items) == 1 else f"{label} with chain ({len(cert_items)})"
        if any(i.kind == "csr" for i in self.items):
            return "certificate request"
        return "empty"

    @property
    def main(self) -> Item:
        """The item the list shows: the leaf certificate, else the first item."""
        cert_items = self.certificates
        for item in cert_items:
            if item.kind == "certificate":
                return item
        if cert_items:
            return cert_items[0]
        return self.items[0]

    def status(self, now: dt.datetime | None = None) -> str:
        """The worst of its certificates' statuses (or "key" / "request")."""
        order = ("expired", "not-yet-valid", "expiring", "valid")
        statuses = {i.status(now) for i in self.certificates}
        for status in order:
            if status in statuses:
                return status
        return self.main.status(now) if self.items else "valid"

    def as_json(self) -> dict:
        return {
            "id": self.id,
            "name": self.name,
            "filename": self.filename,
            "stored": self.path.name,
            "imported_at": self.imported_at.isoformat(),
            "has_password": self.has_password,
            "origin": self.origin,
            "container": self.container,
            "items": [i.as_json() for i in self.items],
        }


def _default_directory() -> Path:
    from app.history import data_dir

    return data_dir() / "certificates"


def _entry_id(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def _suffix(filename: str, contents: Contents) -> str:
    suffix = Path(filename).suffix.lower()
    if suffix in _SUFFIXES:
        return suffix
    return {"PKCS#12": ".p12", "PKCS#7": ".p7b", "DER": ".der"}.get(contents.container, ".pem")


def _default_name(filename: str, items: list[Item]) -> str:
    for item in items:
        if item.is_certificate and item.kind == "certificate":
            return item.common_name or filename
    for item in items:
        if item.subject:
            return item.common_name
    return Path(filename).stem or filename or "certificate"


class CertificateStore:
    """The stored certificates and keys, in <data dir>/certificates."""

    def __init__(self, directory: Path | None = None, secrets=None) -> None:
        self.directory = Path(directory) if directory is not None else _default_directory()
        if secrets is None:
            from app.secrets import SecretStore

            secrets = SecretStore()
        self.secrets = secrets
        self.notice: str | None = None
        self._entries: dict[str, StoredEntry] = {}
        self._load()

    # ----- the index --------------------------------------------------------------------

    @property
    def index_path(self) -> Path:
        return self.directory / INDEX_NAME

    def _ensure_directory(self) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.chmod(self.directory, 0o700)
        except OSError as exc:
            raise CertStoreError(
                f"The certificate folder {self.directory} cannot be created ({exc.strerror or exc}); "
                "check that the app data folder is writable."
            ) from None

    def _load(self) -> None:
        self._entries = {}
        try:
            raw = self.index_path.read_bytes()
        except FileNotFoundError:
            if self.directory.is_dir() and any(self._stored_files()):
                self._rebuild("is missing")
            return
        except OSError as exc:
            raise CertStoreError(
                f"The certificate index {self.index_path} cannot be read ({exc.strerror or exc}); "
                "check its permissions."
            ) from None
        try:
            data = orjson.loads(raw)
            if not isinstance(data, dict) or not isinstance(data.get("entries"), list):
                raise ValueError("no entries")
            for record in data["entries"]:
                entry = self._entry_from_json(record)
                self._entries[entry.id] = entry
        except (ValueError, TypeError, KeyError, AttributeError):
            self._keep_aside_and_rebuild()
            return
        self._adopt_unlisted()

    def _adopt_unlisted(self) -> None:
        """Stored files the index does not list (an import cut off between writing the file and
        the index) are listed again, and the notice says so: nothing imported is lost silently."""
        listed = {e.path.name for e in self._entries.values()}
        unlisted = [p for p in self._stored_files() if p.name not in listed and p.stem not in self._entries]
        if not unlisted:
            return
        added = 0
        for path in sorted(unlisted):
            entry = self._entry_from_file(path)
            if entry is not None:
                self._entries[entry.id] = entry
                added += 1
        if not added:
            return
        self.notice = (
            f"{added} stored certificate file{'s were' if added != 1 else ' was'} missing from the certificate "
            "list (an import was interrupted) and listed again; check their names."
        )
        log.warning("certificate index: %d unlisted stored files listed again", added)
        try:
            self._save()
        except CertStoreError as exc:  # listed for this run; saved by the next change
            log.warning("%s", exc)

    def _entry_from_json(self, record: dict) -> StoredEntry:
        entry_id = record["id"]
        if not _ID.match(entry_id):
            raise ValueError("bad id")
        stored = record.get("stored") or entry_id
        if "/" in stored or "\\" in stored or stored.startswith("."):
            raise ValueError("bad file name")
        return StoredEntry(
            id=entry_id,
            name=str(record["name"]),
            filename=str(record.get("filename") or stored),
            path=self.directory / stored,
            items=[Item.from_json(i) for i in record["items"]],
            imported_at=dt.datetime.fromisoformat(record["imported_at"]),
            has_password=bool(record.get("has_password")),
            origin=str(record.get("origin") or "imported"),
            container=str(record.get("container") or "PEM"),
        )

    def _keep_aside_and_rebuild(self) -> None:
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        aside = self.directory / f"{INDEX_NAME}.corrupt-{stamp}"
        try:
            os.replace(self.index_path, aside)
        except OSError as exc:
            raise CertStoreError(
                f"The certificate index {self.index_path} is damaged and cannot be moved aside "
                f"({exc.strerror or exc}); move it away yourself and start again."
            ) from None
        self._rebuild(f"was damaged and is kept as {aside.name}")

    def _stored_files(self):
        try:
            children = list(self.directory.iterdir())
        except OSError:
            return []
        return [p for p in children if p.is_file() and _ID.match(p.stem) and not p.name.startswith(".")]

    def _entry_from_file(self, path: Path) -> StoredEntry | None:
        """An entry for a stored file found without its index record (None: it cannot be read)."""
        entry_id = path.stem
        try:
            data = path.read_bytes()
            password = self._keyring_password(entry_id)
            contents = certs.read(data, password=password, name=path.name)
            mtime = dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC)
        except (OSError, CertError):
            return None
        items = contents.items()
        return StoredEntry(
            id=entry_id,
            name=_default_name(path.name, items),
            filename=path.name,
            path=path,
            items=items,
            imported_at=mtime,
            has_password=bool(password),
            origin="imported",
            container=contents.container,
        )

    def _rebuild(self, what: str) -> None:
        unread = 0
        for path in sorted(self._stored_files()):
            entry = self._entry_from_file(path)
            if entry is None:
                unread += 1
                continue
            self._entries[entry.id] = entry
        count = len(self._entries)
        sentence = (
            f"The certificate list {what}; it was rebuilt from the {count} stored file{'s' if count != 1 else ''}"
        )
        if unread:
            sentence += f" ({unread} could not be read and stay in {self.directory})"
        self.notice = sentence + "; check the names of your certificates."
        log.warning("certificate index %s: rebuilt with %d entries, %d unread", what, count, unread)
        self._save()

    def _save(self) -> None:
        from app.profiles import write_file_atomically

        self._ensure_directory()
        data = {"version": INDEX_VERSION, "entries": [e.as_json() for e in self._entries.values()]}
        try:
            write_file_atomically(self.index_path, orjson.dumps(data, option=orjson.OPT_INDENT_2), 0o600)
        except OSError as exc:
            raise CertStoreError(
                f"The certificate list {self.index_path} cannot be saved ({exc.strerror or exc}); "
                "check that the app data folder is writable and not full."
            ) from None

    def _keyring_password(self, entry_id: str) -> str | None:
        try:
            return self.secrets.get(secret_id(entry_id), PASSWORD_FIELD) or None
        except OSError:
            return None

    # ----- reading ----------------------------------------------------------------------

    def reload(self) -> None:
        """Reads the index again (another window or process may have changed it)."""
        self.notice = None
        self._load()

    def entries(self) -> list[StoredEntry]:
        return sorted(self._entries.values(), key=lambda e: (e.name.lower(), e.imported_at))

    def get(self, entry_id: str) -> StoredEntry:
        """KeyError when there is no such entry."""
        return self._entries[entry_id]

    def find(self, value: str | None) -> StoredEntry | None:
        """The entry a reference names, or None (not a reference, or deleted)."""
        entry_id = entry_id_of(value)
        return self._entries.get(entry_id) if entry_id else None

    def password(self, entry_id: str) -> str | None:
        """The key password kept in the keyring (SecretError when the keyring cannot be read)."""
        self.get(entry_id)
        return self.secrets.get(secret_id(entry_id), PASSWORD_FIELD) or None

    def contents(self, entry_id: str, password: str | None = None) -> Contents:
        """What the entry holds, opened with password or else the one in the keyring."""
        entry = self.get(entry_id)
        try:
            data = entry.path.read_bytes()
        except FileNotFoundError:
            raise CertStoreError(
                f"The stored file of '{entry.name}' is missing from {self.directory}; import it again."
            ) from None
        except OSError as exc:
            raise CertStoreError(
                f"The stored file of '{entry.name}' cannot be read ({exc.strerror or exc}); check its permissions."
            ) from None
        if password is None and entry.has_password:
            password = self.password(entry_id)
        return certs.read(data, password=password, name=f"'{entry.name}'")

    def key_for(self, entry_id: str) -> StoredEntry | None:
        """The stored private key (an entry holding a key and no certificate) that belongs to the
        entry's certificate, or None: what a generated or separately imported pair needs when its
        certificate is chosen. Keys that cannot be opened (a password not in the keyring) are
        passed over."""
        entry = self.get(entry_id)
        if entry.has_key or not entry.certificates:
            return None
        try:
            leaf = self.contents(entry_id).leaf
        except (certs.CertError, CertStoreError, OSError):
            return None
        if leaf is None:
            return None
        for other in self.entries():
            if other.id == entry_id or not other.has_key or other.certificates:
                continue
            try:
                key = self.contents(other.id).key
            except Exception:  # noqa: BLE001 - a key that cannot be opened is not the one
                continue
            if key is not None and certs.key_matches(leaf, key):
                return other
        return None

    def path_for(self, value: str) -> str:
        """A reference -> its stored file's path (KeyError when deleted); a path -> unchanged."""
        entry_id = entry_id_of(value)
        if entry_id is None:
            return value
        return str(self.get(entry_id).path)

    # ----- adding -----------------------------------------------------------------------

    def import_file(self, path, *, password: str | None = None, name: str | None = None) -> StoredEntry:
        path = Path(path).expanduser()
        try:
            with open(path, "rb") as f:
                data = f.read(FILE_LIMIT + 1)
        except FileNotFoundError:
            raise CertStoreError(f"The file {path} does not exist; choose it again.") from None
        except IsADirectoryError:
            raise CertStoreError(f"{path} is a folder; choose the certificate or key file itself.") from None
        except OSError as exc:
            raise CertStoreError(f"The file {path} cannot be read ({exc.strerror or exc}).") from None
        if len(data) > FILE_LIMIT:
            raise CertError(
                f"The file {path.name} is larger than {FILE_LIMIT // 1024**2} MiB; a certificate or key file is a "
                "few KiB, so this is not the right file."
            )
        return self.import_bytes(data, path.name, password=password, name=name)

    def import_bytes(
        self,
        data: bytes,
        filename: str,
        *,
        password: str | None = None,
        name: str | None = None,
        origin: str = "imported",
    ) -> StoredEntry:
        """Reads the file (CertError when it cannot be), keeps it and its password; the same bytes
        give the entry already there."""
        contents = certs.read(data, password=password, name=filename or "the file")
        entry_id = _entry_id(data)
        existing = self._entries.get(entry_id)
        if existing is not None:
            return existing
        needs_password = bool(password) and (contents.key_encrypted or contents.container == "PKCS#12")
        items = contents.items()
        self._ensure_directory()
        path = self.directory / f"{entry_id}{_suffix(filename, contents)}"
        from app.profiles import write_file_atomically

        try:
            write_file_atomically(path, data, 0o600)
        except OSError as exc:
            raise CertStoreError(
                f"'{filename}' cannot be stored in {self.directory} ({exc.strerror or exc}); check that the "
                "app data folder is writable and not full."
            ) from None
        try:
            if needs_password:
                self.secrets.set(secret_id(entry_id), PASSWORD_FIELD, password)
        except OSError:
            path.unlink(missing_ok=True)
            raise
        entry = StoredEntry(
            id=entry_id,
            name=(name or "").strip() or _default_name(filename, items),
            filename=filename,
            path=path,
            items=items,
            has_password=needs_password,
            origin=origin,
            container=contents.container,
        )
        self._entries[entry_id] = entry
        try:
            self._save()
        except CertStoreError:
            del self._entries[entry_id]
            path.unlink(missing_ok=True)
            if needs_password:
                self._forget_password(entry_id)
            raise
        return entry

    def add_generated(
        self, key, cert, name: str, *, password: str | None = None, csr: bytes | None = None
    ) -> list[StoredEntry]:
        """A generated key (PKCS#8), its certificate and optionally its CSR, as entries of origin
        "generated": [key, certificate, (csr)]. The key is kept encrypted: with password when given,
        else with a random one kept only in the keyring (unencrypted, 0600, only when the keyring
        cannot keep it)."""
        base = (name or "").strip() or certs.certificate_item(cert).common_name
        chosen = password
        if chosen is None and getattr(self.secrets, "available", False):
            import secrets as random_secrets

            password = random_secrets.token_urlsafe(24)

        def keep_key(password):
            return self.import_bytes(
                certs.private_key_pem(key, password),
                f"{base}.key.pem",
                password=password,
                name=f"{base} (private key)",
                origin="generated",
            )

        try:
            key_entry = keep_key(password)
        except OSError as exc:
            if chosen is not None or password is None or isinstance(exc, CertStoreError):
                raise
            log.warning("the keyring could not keep a generated key's password (%s): kept unencrypted", exc)
            key_entry = keep_key(None)
        added = [
            key_entry,
            self.import_bytes(certs.certificates_pem([cert]), f"{base}.pem", name=base, origin="generated"),
        ]
        if csr:
            added.append(
                self.import_bytes(csr, f"{base}.csr", name=f"{base} (certificate request)", origin="generated")
            )
        return added

    def trust(self, certificates: list, name: str) -> StoredEntry:
        """Adopts certificates a broker presented (fetched): its CA, kept as a PEM bundle."""
        if not certificates:
            raise CertError("There is no certificate to trust; fetch the broker's chain first.")
        return self.import_bytes(
            certs.certificates_pem(certificates), f"{(name or 'fetched').strip()}.pem", name=name, origin="fetched"
        )

    # ----- changing ---------------------------------------------------------------------

    def rename(self, entry_id: str, name: str) -> None:
        entry = self.get(entry_id)
        name = (name or "").strip()
        if not name:
            raise CertError("A certificate needs a name; enter one.")
        old = entry.name
        entry.name = name
        try:
            self._save()
        except CertStoreError:
            entry.name = old
            raise

    def delete(self, entry_id: str) -> None:
        """Removes the entry, its file and its password in the keyring."""
        entry = self.get(entry_id)
        self._forget_password(entry_id, strict=True)
        del self._entries[entry_id]
        try:
            self._save()
        except CertStoreError:
            self._entries[entry_id] = entry
            raise
        try:
            entry.path.unlink(missing_ok=True)
        except OSError as exc:
            log.warning("stored certificate file %s not removed: %s", entry.path, exc)

    def _forget_password(self, entry_id: str, strict: bool = False) -> None:
        try:
            self.secrets.delete(secret_id(entry_id), PASSWORD_FIELD)
        except OSError:
            if strict:
                raise

    # ----- exporting --------------------------------------------------------------------

    def export(
        self,
        entry_id: str,
        to: str,
        out: Path,
        *,
        out_password: str | None = None,
        no_encryption: bool = False,
    ) -> list[Path]:
        """Writes the entry converted (certs.convert) to out; pem-parts: out is a folder or a
        name prefix. Keys 0600; every file written atomically. Returns the files written."""
        parts = certs.convert(self.contents(entry_id), to, out_password=out_password, no_encryption=no_encryption)
        return write_parts(parts, out, to)


def part_paths(parts: list[certs.Part], out: Path | str, to: str) -> list[Path]:
    """Where each part goes: out itself, or for pem-parts a file per part in the folder out (or
    next to the prefix out: '<prefix>-certificate.pem')."""
    folder = str(out).endswith(("/", os.sep))
    out = Path(out).expanduser()
    if to != "pem-parts":
        return [out for _ in parts]
    if folder or out.is_dir():
        return [out / p.suffix for p in parts]
    return [out.with_name(f"{out.name}-{p.suffix}") for p in parts]


def write_parts(parts: list[certs.Part], out: Path | str, to: str) -> list[Path]:
    from app.profiles import write_file_atomically

    paths = part_paths(parts, out, to)
    written: list[Path] = []
    for part, path in zip(parts, paths, strict=True):
        try:
            write_file_atomically(path, part.data, 0o600 if part.secret else 0o644)
        except IsADirectoryError:
            raise CertStoreError(f"{path} is a folder; give a file name to write to.") from None
        except OSError as exc:
            raise CertStoreError(f"{path} cannot be written ({exc.strerror or exc}); choose another place.") from None
        written.append(path)
    return written

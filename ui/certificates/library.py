"""One certificate store for the whole window, and the words and colours of its entries.

The manager, every wizard's certificate pickers and the sidebar's expiry marks look at the same
`CertificateLibrary`: whatever one of them imports, renames or deletes, the others hear through
`changed` and show at once. The store (app/cert_store.py) is opened at first use, so a window
that never touches certificates never creates its folder; a store that cannot be opened leaves
`problem` as a sentence and the pickers still take files on disk.

Statuses are shown in words and a mark as well as a colour, never by colour alone.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading

from PySide6.QtCore import QObject, Signal

log = logging.getLogger(__name__)

# status -> (mark, word, colour); the mark and word carry the meaning, the colour repeats it
STATUS_LOOK = {
    "valid": ("✓", "Valid", "#1a7f37"),
    "expiring": ("⚠", "Expires soon", "#9a6700"),
    "expired": ("✕", "Expired", "#cf222e"),
    "not-yet-valid": ("◷", "Not yet valid", "#bc4c00"),
    "key": ("●", "Key", "#57606a"),
    "request": ("●", "Request", "#57606a"),
}
TLS_VALUE_FIELDS = ("ca_file", "cert_file", "key_file", "jwt_key_file")


def status_look(status: str) -> tuple[str, str, str]:
    return STATUS_LOOK.get(status, ("?", status or "Unknown", "#57606a"))


def days_text(days: int | None) -> str:
    """ "in 12 days", "today", "3 days ago" (for expiry dates)."""
    if days is None:
        return ""
    if days == 0:
        return "today"
    if days == 1:
        return "tomorrow"
    if days > 0:
        return f"in {days} days"
    if days == -1:
        return "yesterday"
    return f"{-days} days ago"


def date_text(when: dt.datetime | None) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%d") if when is not None else ""


def status_sentence(item, status: str | None = None) -> str:
    """One line about an item's validity: "Valid until 2027-03-01 (in 89 days)." …"""
    status = status or item.status()
    if status == "key":
        return "A private key (keys do not expire)."
    if status == "request":
        return "A certificate signing request: send it to whoever signs your client certificates."
    if status == "not-yet-valid":
        return f"Not valid before {date_text(item.not_before)}; the broker will refuse it until then."
    left = days_text(item.days_left_at())
    if status == "expired":
        return f"Expired on {date_text(item.not_after)} ({left})."
    if status == "expiring":
        return f"Expires on {date_text(item.not_after)} ({left}): renew it soon."
    return f"Valid until {date_text(item.not_after)} ({left})."


def expiry_cell(entry) -> str:
    """The list's expiry column: date and days left (nothing for a key)."""
    item = entry.main
    if item.not_after is None:
        return ""
    days = item.days_left_at()
    if days is not None and days < 0:
        return f"{date_text(item.not_after)} ({days_text(days)})"
    return f"{date_text(item.not_after)} ({days} days left)" if days is not None else date_text(item.not_after)


def has_key(entry) -> bool:
    return entry.has_key


def has_certificate(entry) -> bool:
    return bool(entry.certificates)


def fits_role(entry, role: str) -> bool:
    """Whether a store entry can fill a TLS field: "ca" (CA certificates, or a self-signed or
    fetched broker certificate to trust), "certificate" (a client certificate, alone or with its
    key) or "key" (a private key, alone or in a pair)."""
    certificates = entry.certificates
    if role == "ca":
        if entry.has_key or not certificates:
            return False
        return (
            any(i.kind == "ca-certificate" for i in certificates)
            or entry.origin == "fetched"
            or all(i.self_signed for i in certificates)
        )
    if role == "certificate":
        return any(i.kind == "certificate" for i in certificates) or (bool(certificates) and entry.has_key)
    if role == "key":
        return entry.has_key
    return True


class CertificateLibrary(QObject):
    """The store, opened at first use, with a signal when anything in it changes."""

    changed = Signal()

    def __init__(self, store=None, profiles=None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._store = store
        # for "used by": an app.profiles.ProfileStore, or a callable returning one (the window's,
        # made when first needed); None: not known
        self.profiles = profiles
        self.problem: str | None = None
        self.lock = threading.RLock()  # the store is used from background operations too

    @property
    def store(self):
        """The CertificateStore; raises its error (a sentence) when it cannot be opened."""
        with self.lock:
            if self._store is None:
                from app.cert_store import CertificateStore

                self._store = CertificateStore()
            return self._store

    def available(self) -> bool:
        try:
            self.store  # noqa: B018 - opens it
        except (OSError, ValueError) as exc:
            self.problem = str(exc) or "The certificate store cannot be opened."
            return False
        self.problem = None
        return True

    def entries(self) -> list:
        if not self.available():
            return []
        with self.lock:
            return list(self.store.entries())

    def get(self, entry_id: str | None):
        if not entry_id or not self.available():
            return None
        with self.lock:
            try:
                return self.store.get(entry_id)
            except KeyError:
                return None

    def notice(self) -> str | None:
        """The store's own notice (a corrupt index kept aside), or why it cannot be opened."""
        if not self.available():
            return self.problem
        return getattr(self.store, "notice", None)

    def profile_store(self):
        source = self.profiles
        if source is not None and not hasattr(source, "profiles") and callable(source):
            source = source()
        return source

    def users(self, entry_id: str) -> list[str] | None:
        """Names of the saved connections whose settings refer to this entry; None when the
        saved connections are not known here."""
        from app.cert_store import reference

        store = self.profile_store()
        if store is None:
            return None
        wanted = reference(entry_id)
        try:
            profiles = store.profiles()
        except (OSError, ValueError) as exc:  # the profiles file cannot be read now
            log.warning("profiles not read for certificate users: %s", exc)
            return None
        return [p.name for p in profiles if any(p.values.get(f) == wanted for f in TLS_VALUE_FIELDS)]

    def announce(self) -> None:
        """Tells every view that the store changed (call on the GUI thread)."""
        self.changed.emit()


_shared: CertificateLibrary | None = None


def shared_library() -> CertificateLibrary:
    """The window's library (made at first use)."""
    global _shared
    if _shared is None:
        _shared = CertificateLibrary()
    return _shared


def use_library(library: CertificateLibrary | None) -> None:
    """Makes `library` the shared one (a window with its own stores, a test); None: a fresh one
    at next use."""
    global _shared
    _shared = library


def fingerprint_lines(fingerprint: str, per_line: int = 16) -> str:
    """ "AB:CD:…" in lines of `per_line` bytes, so a SHA-256 fits a narrow pane."""
    parts = fingerprint.split(":")
    return "\n".join(":".join(parts[i : i + per_line]) for i in range(0, len(parts), per_line))

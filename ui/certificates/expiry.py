"""What the sidebar marks on a saved connection: a chosen certificate that expires within 30
days (app.certs.EXPIRY_WARNING_DAYS), one that has expired, and the knowing override
(`allow_expired`) that lets the connection use an expired one anyway.

The sidebar repaints often, so nothing here runs in paint: a certificate of the store is read
from the store's index (already in memory), a file on disk is read once on a worker thread and
kept per (path, size, modification time); `updated` says when a file's answer arrived, and the
sidebar asks again. Days are counted at the time of asking, so a cached certificate still
counts down.
"""

from __future__ import annotations

import itertools
import logging
import os
import weakref
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QObject, Signal

from ui.certificates.library import CertificateLibrary, date_text, shared_library

log = logging.getLogger(__name__)
MAX_FILE_BYTES = 1024 * 1024  # a certificate file is a few KiB; anything bigger is not read for a mark
CHECKED_FIELDS = {"cert_file": "The client certificate", "ca_file": "The CA certificate"}
OVERRIDE_WORDS = "connects with an expired certificate"


@dataclass(frozen=True)
class CertificateMark:
    level: str  # "expiring" | "expired" | "override"
    text: str  # short, painted on the sidebar row (a mark and words, never colour alone)
    tooltip: str  # the sentences
    color: str


_COLORS = {"expiring": "#9a6700", "expired": "#cf222e", "override": "#bc4c00"}


def warning_days() -> int:
    try:
        from app.certs import EXPIRY_WARNING_DAYS
    except ImportError:  # pragma: no cover - the engine is always there
        return 30
    return EXPIRY_WARNING_DAYS


def _read_file_items(path: str) -> list:
    """The certificates in a file on disk, as app.certs Items ([] when it holds none or cannot
    be read); runs on the worker thread."""
    from app import certs

    try:
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError:
        return []
    if len(data) > MAX_FILE_BYTES:
        return []
    try:
        return [i for i in certs.read(data, name=Path(path).name).items() if i.is_certificate]
    except (certs.CertError, ValueError):
        pass
    # an encrypted key or PKCS#12 beside the certificate: the certificates of a PEM file alone
    try:
        from cryptography import x509

        return [certs.certificate_item(c) for c in x509.load_pem_x509_certificates(data)]
    except (ValueError, TypeError):
        return []


class _Relay(QObject):
    """Carries a file's answer from the worker thread to the GUI thread. It lives as long as the
    process, so the worker never holds (and never frees) a widget's object."""

    read = Signal(int, object, object)  # (watcher number, cache key, items)


_relay: _Relay | None = None
_watchers: weakref.WeakValueDictionary[int, ExpiryWatcher] = weakref.WeakValueDictionary()
_numbers = itertools.count(1)


def _deliver(number: int, key: tuple, items: list) -> None:
    watcher = _watchers.get(number)
    if watcher is not None:
        watcher._store_file(key, items)


def _relay_object() -> _Relay:
    global _relay
    if _relay is None:  # made on the GUI thread, by the first watcher
        _relay = _Relay()
        _relay.read.connect(_deliver)
    return _relay


_POOL: ThreadPoolExecutor | None = None


def _pool() -> ThreadPoolExecutor:
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=1, thread_name_prefix="certificate-expiry")
    return _POOL


class ExpiryWatcher(QObject):
    updated = Signal()  # a file's certificates were read: marks may have changed

    def __init__(self, library: CertificateLibrary | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._library = library
        self._files: dict[tuple, list] = {}  # (path, size, mtime_ns) -> items
        self._pending: set[tuple] = set()
        self.number = next(_numbers)
        _watchers[self.number] = self
        self._relay = _relay_object()

    @property
    def library(self) -> CertificateLibrary:
        return self._library or shared_library()

    # ----- the answer
    def mark_for(self, values: dict | None) -> CertificateMark | None:
        """The mark of a connection with these profile values, or None when all is well (or
        a file's answer is still coming)."""
        values = values or {}
        findings = []  # (days left, role words, name, item)
        for field, role in CHECKED_FIELDS.items():
            value = values.get(field)
            if not value:
                continue
            name, items = self._items(str(value))
            for item in items:
                days = item.days_left_at()
                if days is not None:
                    findings.append((days, role, name, item))
        override = values.get("allow_expired") is True
        worst = min(findings, key=lambda f: f[0], default=None)
        soon = warning_days()
        sentences = []
        for days, role, name, item in sorted(findings, key=lambda f: f[0]):
            when = date_text(item.not_after)
            if days < 0:
                sentences.append(f"{role} “{name}” expired on {when}.")
            elif days < soon:
                sentences.append(f"{role} “{name}” expires in {days} day{'s' if days != 1 else ''} (on {when}).")
        if override:
            sentences.append(f"The override is on: this connection {OVERRIDE_WORDS}.")
        if worst is not None and worst[0] < 0:
            text = "✕ expired" + (", override on" if override else "")
            return CertificateMark("expired", text, " ".join(sentences), _COLORS["expired"])
        if worst is not None and worst[0] < soon:
            text = f"⚠ {worst[0]} d" + (", override on" if override else "")
            return CertificateMark("expiring", text, " ".join(sentences), _COLORS["expiring"])
        if override:
            return CertificateMark("override", "⚠ override on", " ".join(sentences), _COLORS["override"])
        return None

    def _items(self, value: str) -> tuple[str, list]:
        from app.cert_store import entry_id_of

        entry_id = entry_id_of(value)
        if entry_id is not None:
            entry = self.library.get(entry_id)
            if entry is None:
                return value, []
            return entry.name, list(entry.certificates)
        return Path(value).name, self._file_items(value)

    def _file_items(self, path: str) -> list:
        try:
            st = os.stat(Path(path).expanduser())
        except OSError:
            return []
        key = (str(Path(path).expanduser()), st.st_size, st.st_mtime_ns)
        items = self._files.get(key)
        if items is not None:
            return items
        if key not in self._pending:
            self._pending.add(key)
            relay, number = self._relay, self.number
            future = _pool().submit(_read_file_items, key[0])
            future.add_done_callback(lambda f: relay.read.emit(number, key, [] if f.exception() else f.result()))
        return []

    def _store_file(self, key: tuple, items: list) -> None:
        self._pending.discard(key)
        self._files = {k: v for k, v in self._files.items() if k[0] != key[0]}  # older versions of the file
        self._files[key] = list(items)
        self.updated.emit()

    def pending(self) -> bool:
        return bool(self._pending)

"""Secrets of saved connections (passwords, API keys, key passphrases): the OS keyring, nowhere else.

Every field of kind "secret" is stored through `keyring` under the service "uplink-console" and
the user name f"{profile_id}/{field}" (ids never change, so renaming a connection keeps them).
Not in profiles.json, not in exports, not in log lines at any level, not in `profile show`,
not in error sentences: no message built here ever contains a value.

keyring picks the backend (the macOS Keychain, the Windows Credential Manager, Secret Service /
KWallet on Linux) and honours PYTHON_KEYRING_BACKEND. When none is usable (keyring's fail
backend, a chainer with nothing to chain, a backend of priority <= 0 such as the null one),
secrets are kept in this process's memory for this run only — never written in plain text — and
`problem` says in one sentence what is missing and how to get it. A keyring that is there but
fails (locked, D-Bus errors) raises SecretError with a sentence, never a traceback.
"""

from __future__ import annotations

import logging
import os
import sys

from app.profiles import Profile

log = logging.getLogger(__name__)

SERVICE = "uplink-console"
BACKEND_ENV = "PYTHON_KEYRING_BACKEND"
IN_KEYRING = "•••• (in keyring)"
THIS_RUN_ONLY = "•••• (this run only)"
NOT_SET = "(not set)"
UNREADABLE = "(cannot be read: the keyring is locked or unreachable)"

# Secrets kept for this run only when no keyring is usable: shared by every SecretStore of the
# process, gone when it ends.
_MEMORY: dict[tuple[str, str], str] = {}


class SecretError(OSError):
    """The keyring failed (locked, unreachable); the text is one sentence without any secret.

    An OSError: a service of the operating system failed, and callers that catch OSError for
    "could not save" catch this too."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "The keyring failed."


def _user(profile_id: str, field: str) -> str:
    return f"{profile_id}/{field}"


def _backend_name(backend) -> str:
    cls = type(backend)
    return f"{cls.__module__}.{cls.__qualname__}"


# Backends that keep secrets readable in a file: used only when chosen on purpose (the tests do,
# with PYTHON_KEYRING_BACKEND), never because keyring found nothing better.
PLAIN_TEXT_BACKENDS = frozenset({"keyrings.alt.file.PlaintextKeyring"})


def _usable(backend) -> bool:
    from keyring.backends import chainer, fail

    if backend is None or isinstance(backend, fail.Keyring):
        return False
    try:
        if isinstance(backend, chainer.ChainerBackend) and not backend.backends:
            return False
        return backend.priority > 0
    except Exception:  # a backend's priority raises when it is not viable here
        return False


def _plain_text_only(backend) -> bool:
    from keyring.backends import chainer

    if isinstance(backend, chainer.ChainerBackend):
        try:
            chained = list(backend.backends)
        except Exception:
            return False
        return bool(chained) and all(_backend_name(b) in PLAIN_TEXT_BACKENDS for b in chained)
    return _backend_name(backend) in PLAIN_TEXT_BACKENDS


def _chosen_on_purpose() -> bool:
    """PYTHON_KEYRING_BACKEND, or keyring's own keyringrc.cfg."""
    if os.environ.get(BACKEND_ENV):
        return True
    try:
        from keyring.util import platform_

        return (platform_.config_root() / "keyringrc.cfg").exists()
    except Exception:
        return False


def _missing_sentence() -> str:
    """What is missing, on this OS, and how to get it."""
    if sys.platform == "darwin":
        return (
            "The macOS Keychain cannot be reached; secrets are kept for this run only. Log in to a desktop "
            f"session so the login keychain is unlocked, or set {BACKEND_ENV}."
        )
    if sys.platform == "win32":
        return (
            "The Windows Credential Manager cannot be reached; secrets are kept for this run only. Reinstall "
            f"the console so its keyring support (pywin32-ctypes) is present, or set {BACKEND_ENV}."
        )
    return (
        "No keyring service is running (Secret Service / GNOME Keyring or KWallet); secrets are kept for this "
        f"run only. Install and unlock one (e.g. `apt install gnome-keyring`), or set {BACKEND_ENV}."
    )


def _clip(text: str, limit: int = 120) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class SecretStore:
    """The secrets of saved connections, in the keyring (or for this run only)."""

    def __init__(self) -> None:
        self.available = False
        self.problem: str | None = None
        self.backend_name = ""
        self._backend = None
        chosen = os.environ.get(BACKEND_ENV)
        try:
            import keyring

            backend = keyring.get_keyring()
        except Exception as exc:  # PYTHON_KEYRING_BACKEND naming a class that cannot be loaded, say
            log.debug("no keyring backend: %s", type(exc).__name__, exc_info=True)
            if chosen:
                self.problem = (
                    f"{BACKEND_ENV} names {_clip(chosen, 80)}, which cannot be loaded ({type(exc).__name__}); "
                    f"secrets are kept for this run only. Correct or unset {BACKEND_ENV}."
                )
            else:
                self.problem = _missing_sentence()
            return
        self.backend_name = _backend_name(backend)
        if _usable(backend) and _plain_text_only(backend) and not _chosen_on_purpose():
            self.problem = (
                "The only keyring found is keyrings.alt's plain-text file, which anyone who can read your "
                "files could read; secrets are kept for this run only. Install and unlock a keyring service "
                f"(e.g. `apt install gnome-keyring`), or choose that file on purpose with {BACKEND_ENV}."
            )
            log.debug("keyring backend %s not used: plain text", self.backend_name)
            return
        if _usable(backend):
            self._backend = backend
            self.available = True
            log.debug("keyring backend %s", self.backend_name)
            return
        if chosen:
            self.problem = (
                f"{BACKEND_ENV} selects {_clip(chosen, 80)}, which cannot store secrets; secrets are kept for "
                f"this run only. Unset {BACKEND_ENV} to use the system keyring, or name a working backend."
            )
        else:
            self.problem = _missing_sentence()
        log.debug("keyring backend %s is not usable", self.backend_name)

    # ----- errors

    def _failure(self, doing: str, field: str, exc: BaseException, value: str | None = None) -> SecretError:
        """A SecretError sentence for a keyring failure; the value is never part of it."""
        name = type(exc).__name__
        detail = _clip(str(exc))
        if value and value in str(exc):  # a backend that quotes what it was given: not a word of it
            detail = ""
        what = f"{name}: {detail}" if detail and detail != name else name
        if "Locked" in name or "locked" in detail.lower():
            todo = "unlock the keyring (log in to the desktop session or open its keyring manager) and try again"
        else:
            todo = "check that the keyring service is running and unlocked, and try again"
        log.debug("keyring failed to %s %s: %s", doing, field, name)
        return SecretError(f"The keyring could not {doing} the {field} ({what}); {todo}.")

    # ----- the API

    def get(self, profile_id: str, field: str) -> str | None:
        if not self.available:
            return _MEMORY.get((profile_id, field))
        try:
            return self._backend.get_password(SERVICE, _user(profile_id, field))
        except Exception as exc:
            raise self._failure("read", field, exc) from None

    def set(self, profile_id: str, field: str, value: str) -> None:
        """Stores the value (an empty one deletes the secret)."""
        if value is None or value == "":
            self.delete(profile_id, field)
            return
        if not isinstance(value, str):
            raise TypeError("a secret is text")
        if not self.available:
            _MEMORY[(profile_id, field)] = value
            return
        try:
            self._backend.set_password(SERVICE, _user(profile_id, field), value)
        except Exception as exc:
            raise self._failure("store", field, exc, value) from None
        log.debug("secret %s of %s stored", field, profile_id)

    def delete(self, profile_id: str, field: str) -> None:
        _MEMORY.pop((profile_id, field), None)
        if not self.available:
            return
        from keyring.errors import PasswordDeleteError

        try:
            self._backend.delete_password(SERVICE, _user(profile_id, field))
        except PasswordDeleteError:
            pass  # nothing stored: nothing to delete
        except Exception as exc:
            raise self._failure("delete", field, exc) from None

    def delete_profile(self, profile: Profile) -> None:
        """Every secret of the profile; tries them all, then raises the first failure."""
        first: SecretError | None = None
        for field in profile.secret_fields():
            try:
                self.delete(profile.id, field)
            except SecretError as exc:
                first = first or exc
        for key in [k for k in _MEMORY if k[0] == profile.id]:
            del _MEMORY[key]
        if first is not None:
            raise first

    def copy(self, from_id: str, to_id: str, fields) -> None:
        for field in fields:
            value = self.get(from_id, field)
            if value:
                self.set(to_id, field, value)

    def status(self, profile_id: str, field: str) -> str:
        """ "•••• (in keyring)", "•••• (this run only)" or "(not set)" — never the value."""
        try:
            value = self.get(profile_id, field)
        except SecretError:
            return UNREADABLE
        if not value:
            return NOT_SET
        return IN_KEYRING if self.available else THIS_RUN_ONLY


def resolve(profile: Profile, secrets: SecretStore) -> dict:
    """The profile's values with its secrets filled in: ready for platform.validate()/connection().
    SecretError when the keyring cannot be read."""
    values = dict(profile.values)
    for field in profile.secret_fields():
        value = secrets.get(profile.id, field)
        if value:
            values[field] = value
    return values


def forget_this_run() -> None:
    """Drops the secrets kept for this run only (tests)."""
    _MEMORY.clear()

"""Secrets through a real keyring backend (keyrings.alt's file keyring in a temp folder), and
what happens without one: kept for this run only, said in a sentence, never written anywhere."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keyring
import pytest
from keyring.backends import fail, null
from keyring.errors import KeyringLocked
from keyrings.alt.file import PlaintextKeyring

from app import secrets as secrets_module
from app.profiles import new_profile
from app.secrets import IN_KEYRING, NOT_SET, THIS_RUN_ONLY, UNREADABLE, SecretError, SecretStore, resolve

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def use_backend():
    """keyring.set_keyring for one test; the run's own backend (conftest) afterwards."""
    before = keyring.get_keyring()

    def use(backend):
        keyring.set_keyring(backend)
        return backend

    yield use
    keyring.set_keyring(before)
    secrets_module.forget_this_run()


@pytest.fixture
def file_keyring(tmp_path, use_backend):
    backend = PlaintextKeyring()
    backend.file_path = str(tmp_path / "keyring" / "keyring.cfg")
    return use_backend(backend)


def profile(platform="generic", **values):
    return new_profile("P", platform, {"url": "mqtt://localhost:1883", **values})


def test_secrets_live_in_the_keyring_by_profile_id_and_field(file_keyring):
    store = SecretStore()
    assert store.available and store.problem is None
    assert store.backend_name == "keyrings.alt.file.PlaintextKeyring"
    p = profile()
    assert store.get(p.id, "password") is None and store.status(p.id, "password") == NOT_SET
    store.set(p.id, "password", "s3cret value")
    assert store.get(p.id, "password") == "s3cret value"
    assert store.status(p.id, "password") == IN_KEYRING == "•••• (in keyring)"
    # Service "uplink-console", user "<id>/<field>": what another keyring tool shows.
    assert file_keyring.get_password("uplink-console", f"{p.id}/password") == "s3cret value"
    assert SecretStore().get(p.id, "password") == "s3cret value", "another store (another window) reads it"
    store.set(p.id, "password", "")  # empty: deleted
    assert store.get(p.id, "password") is None
    store.delete(p.id, "password")  # deleting what is not there is fine


def test_resolve_copy_and_delete_profile(file_keyring):
    store = SecretStore()
    p = profile(username="u")
    store.set(p.id, "password", "pw")
    store.set(p.id, "key_password", "kp")
    values = resolve(p, store)
    assert values == {**p.values, "password": "pw", "key_password": "kp"}
    assert "password" not in p.values, "resolve leaves the profile alone"
    copy = profile()
    store.copy(p.id, copy.id, p.secret_fields())
    assert resolve(copy, store)["password"] == "pw"
    store.delete_profile(p)
    assert store.get(p.id, "password") is None and store.get(p.id, "key_password") is None
    assert store.get(copy.id, "password") == "pw", "the copy keeps its own"


def test_secrets_persist_across_processes_with_the_backend_from_the_environment(tmp_path):
    env = {
        **os.environ,
        "PYTHON_KEYRING_BACKEND": "keyrings.alt.file.PlaintextKeyring",
        "KEYRING_PROPERTY_FILE_PATH": str(tmp_path / "kr.cfg"),
    }
    writer = (
        "from app.secrets import SecretStore; s = SecretStore(); assert s.available; s.set('abc', 'password', 'pw-1')"
    )
    reader = "from app.secrets import SecretStore; print(SecretStore().status('abc', 'password'))"
    subprocess.run([sys.executable, "-c", writer], cwd=ROOT, env=env, check=True)
    out = subprocess.run([sys.executable, "-c", reader], cwd=ROOT, env=env, check=True, capture_output=True, text=True)
    assert out.stdout.strip() == IN_KEYRING
    assert (tmp_path / "kr.cfg").exists()


def test_the_fail_backend_keeps_secrets_for_this_run_and_says_so(use_backend, tmp_path, monkeypatch):
    monkeypatch.delenv("PYTHON_KEYRING_BACKEND", raising=False)
    use_backend(fail.Keyring())
    store = SecretStore()
    assert not store.available
    assert "secrets are kept for this run only" in store.problem
    if sys.platform.startswith("linux"):
        assert store.problem == (
            "No keyring service is running (Secret Service / GNOME Keyring or KWallet); secrets are kept for "
            "this run only. Install and unlock one (e.g. `apt install gnome-keyring`), or set PYTHON_KEYRING_BACKEND."
        )
    p = profile()
    store.set(p.id, "password", "only-in-memory")
    assert store.get(p.id, "password") == "only-in-memory"
    assert store.status(p.id, "password") == THIS_RUN_ONLY == "•••• (this run only)"
    assert SecretStore().get(p.id, "password") == "only-in-memory", "one run: every store of the process"
    assert resolve(p, store)["password"] == "only-in-memory"
    store.delete_profile(p)
    assert store.get(p.id, "password") is None


def test_the_fail_backend_chosen_by_environment_names_the_variable(tmp_path):
    env = {**os.environ, "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring"}
    code = textwrap.dedent(
        """
        from app.secrets import SecretStore
        s = SecretStore()
        s.set("p", "password", "x")
        print(s.available, s.status("p", "password"))
        print(s.problem)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True, capture_output=True, text=True)
    first, problem = out.stdout.splitlines()
    assert first == f"False {THIS_RUN_ONLY}"
    assert problem.startswith("PYTHON_KEYRING_BACKEND selects keyring.backends.fail.Keyring, which cannot store")
    env["PYTHON_KEYRING_BACKEND"] = "no.such.Backend"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True, capture_output=True, text=True)
    assert "PYTHON_KEYRING_BACKEND names no.such.Backend, which cannot be loaded (ModuleNotFoundError)" in out.stdout


@pytest.mark.parametrize(
    ("platform", "start"),
    [
        ("darwin", "The macOS Keychain cannot be reached; secrets are kept for this run only."),
        ("win32", "The Windows Credential Manager cannot be reached; secrets are kept for this run only."),
        ("linux", "No keyring service is running (Secret Service / GNOME Keyring or KWallet);"),
    ],
)
def test_the_missing_keyring_sentence_fits_the_os(use_backend, monkeypatch, platform, start):
    monkeypatch.delenv("PYTHON_KEYRING_BACKEND", raising=False)
    monkeypatch.setattr(secrets_module.sys, "platform", platform)
    use_backend(fail.Keyring())
    problem = SecretStore().problem
    assert problem.startswith(start) and problem.endswith("PYTHON_KEYRING_BACKEND.")
    assert "\n" not in problem


def test_the_null_backend_is_not_a_keyring(use_backend):
    use_backend(null.Keyring())
    store = SecretStore()
    assert not store.available and "this run only" in store.problem


def test_a_plain_text_file_found_by_chance_is_not_used(use_backend, tmp_path, monkeypatch):
    monkeypatch.delenv("PYTHON_KEYRING_BACKEND", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "no-keyringrc"))  # no keyringrc.cfg choosing it
    backend = PlaintextKeyring()
    backend.file_path = str(tmp_path / "plain.cfg")
    use_backend(backend)
    store = SecretStore()
    assert not store.available
    assert store.problem.startswith("The only keyring found is keyrings.alt's plain-text file")
    store.set("p", "password", "x")
    assert not (tmp_path / "plain.cfg").exists(), "nothing written in plain text"


class LockedKeyring(PlaintextKeyring):
    """A keyring that is there but locked; its errors quote what they were given (some do)."""

    priority = 5

    def get_password(self, service, username):
        raise KeyringLocked("Failed to unlock the collection!")

    def set_password(self, service, username, password):
        raise KeyringLocked(f"cannot store {password} while locked")

    def delete_password(self, service, username):
        raise RuntimeError("org.freedesktop.DBus.Error.NoReply: Did not receive a reply")


def test_keyring_failures_are_sentences_without_the_secret(use_backend):
    use_backend(LockedKeyring())
    store = SecretStore()
    assert store.available
    with pytest.raises(SecretError) as info:
        store.set("p", "password", "TOP-SECRET-VALUE")
    text = str(info.value)
    assert "TOP-SECRET-VALUE" not in text and "TOP-SECRET-VALUE" not in repr(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__
    assert text == (
        "The keyring could not store the password (KeyringLocked); unlock the keyring (log in to the desktop "
        "session or open its keyring manager) and try again."
    )
    with pytest.raises(SecretError, match=r"could not read the password \(KeyringLocked: Failed to unlock"):
        store.get("p", "password")
    assert store.status("p", "password") == UNREADABLE
    with pytest.raises(SecretError, match="could not delete the password .*DBus.*check that the keyring service"):
        store.delete_profile(profile())
    with pytest.raises(SecretError):
        resolve(profile(), store)
    assert isinstance(info.value, OSError), "callers catching OSError for 'could not save' catch it too"

"""Saved connections: one versioned JSON file, `profiles.json`, in the user's config folder.

Why it is built this way (the peers' users lose every saved connection to one corrupt store,
MQTTX #1406; MQTT Explorer and MQTTX keep passwords in plain text):
- Secrets never enter this file: a platform's fields of kind "secret" go to the OS keyring
  (app/secrets.py), keyed by the profile's `id`, which never changes (so renaming keeps them).
- Every save is atomic: a temporary file in the same folder, created with mode 0600 before any
  byte is written, fsync'd, `os.replace`d over the old one, and the folder fsync'd. A crash or a
  full disk leaves the old file or the new one, never a mix.
- A file that cannot be read is never overwritten: it is kept aside as
  `profiles.json.corrupt-<YYYYmmdd-HHMMSS>`, whatever entries were valid are loaded, and
  `load_problem` says so in one sentence. A file from a newer console (a higher schema_version)
  is left alone: its connections are shown but saving is refused until the console is updated.
- Two windows (or a window and `uplink-console profile …`) share the file: each save takes a lock
  (fcntl/msvcrt on a `.lock` file), re-reads the file and merges by id — the last writer wins per
  profile, and what the other process added or changed meanwhile is kept.
- `schema_version` starts at 1; MIGRATIONS holds one step function per older version.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import datetime as dt
import difflib
import errno
import logging
import os
import re
import secrets as _random
import shutil
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from app import platforms as platform_registry
from app.platforms.base import ProfileError

log = logging.getLogger(__name__)

CONFIG_DIR_ENV = "UPLINK_CONSOLE_CONFIG_DIR"
APP_NAME = "uplink-console"
FILE_NAME = "profiles.json"
STORE_FORMAT = "uplink-console-profile-store"
EXPORT_FORMAT = "uplink-console-profiles"
SCHEMA_VERSION = 1
EXPORT_SCHEMA_VERSION = 1
MAX_FILE_BYTES = 16 * 1024 * 1024  # thousands of profiles are a few MiB; more is not this file
MAX_IMPORT_BYTES = 4 * 1024 * 1024  # a platform config body with its certificates is a few KiB
MAX_NAME = 200
LOCK_TIMEOUT_S = 10.0
_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")  # keyring user names are f"{id}/{field}"


class ProfileNotFound(ProfileError, KeyError):
    """No saved connection by that name or id; the text is a sentence naming the close matches."""

    def __str__(self) -> str:  # KeyError would show the sentence in quotes
        return str(self.args[0]) if self.args else "There is no such saved connection."


class ProfileStoreError(ProfileError):
    """The file cannot be written (disk, permissions, lock, a newer console's file): a runtime
    failure, not bad input."""


def config_dir() -> Path:
    """The per-user config folder; UPLINK_CONSOLE_CONFIG_DIR overrides it (tests, portable installs)."""
    override = os.environ.get(CONFIG_DIR_ENV)
    if override:
        return Path(override).expanduser()
    import platformdirs

    return Path(platformdirs.user_config_dir(APP_NAME, appauthor=False))


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


# ----- the profile --------------------------------------------------------------------------


@dataclass
class Profile:
    id: str  # stable, uuid4 hex, never changes (secrets and history are keyed by it)
    name: str  # unique (case-insensitively), user-visible
    platform: str  # app.platforms registry name
    values: dict = field(default_factory=dict)  # the platform's NON-secret field values
    open_on_start: bool = False
    history_days: float | None = None  # retention; None = the defaults of app.history.Retention
    history_max_mb: float | None = None
    history_max_rows: int | None = None
    max_rows: int | None = None  # rows kept in memory by the table
    created_at: str = ""
    updated_at: str = ""

    def retention(self):
        """An app.history.Retention from the profile's limits, or None when it sets none."""
        if self.history_days is None and self.history_max_mb is None and self.history_max_rows is None:
            return None
        from app.history import Retention

        default = Retention()
        return Retention(
            max_age_days=self.history_days if self.history_days is not None else default.max_age_days,
            max_rows=self.history_max_rows if self.history_max_rows is not None else default.max_rows,
            max_bytes=int(self.history_max_mb * 1024**2) if self.history_max_mb is not None else default.max_bytes,
        )

    def secret_fields(self) -> list[str]:
        """Names of the platform's fields of kind "secret" (kept in the keyring)."""
        return secret_fields_of(self.platform)

    def copy(self) -> Profile:
        return dataclasses.replace(self, values=copy.deepcopy(self.values))


OPTIONS = ("open_on_start", "history_days", "history_max_mb", "history_max_rows", "max_rows")


def secret_fields_of(platform: str) -> list[str]:
    try:
        return [f.name for f in platform_registry.get(platform).fields if f.kind == "secret"]
    except (KeyError, ModuleNotFoundError):
        return []


def new_profile(name: str, platform: str, values: dict, **options) -> Profile:
    """A profile with a fresh id and creation time (not yet added to a store)."""
    unknown = set(options) - set(OPTIONS)
    if unknown:
        raise TypeError(f"new_profile() got unknown options: {', '.join(sorted(unknown))}")
    stamp = now_iso()
    return Profile(
        id=uuid.uuid4().hex,
        name=name,
        platform=platform,
        values=dict(values or {}),
        created_at=stamp,
        updated_at=stamp,
        **options,
    )


def broker_of(profile: Profile) -> str:
    """The broker address for lists, from the stored values alone (no secrets, no key files read)."""
    v = profile.values
    if profile.platform == "tektelic":
        host = v.get("host") or "?"
        port = v.get("port") or (8883 if v.get("ssl") else 1883)
        host = f"[{host}]" if ":" in str(host) else host
        return f"{'mqtts' if v.get('ssl') else 'mqtt'}://{host}:{port}"
    if profile.platform == "thingpark":
        scheme = {"SSL": "mqtts", "WSS": "wss", "TCP": "mqtt"}.get(str(v.get("protocol") or "SSL").upper(), "mqtts")
        return f"{scheme}://{v.get('host_name') or '?'}"
    url = v.get("url")
    if not url:
        try:
            url = platform_registry.get(profile.platform).field("url").default
        except (KeyError, ModuleNotFoundError):
            url = None
    return str(url or "")


def _clip(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def check_name(name) -> str:
    """The name stripped; ProfileError for an empty, overlong or multi-line one."""
    if not isinstance(name, str) or not name.strip():
        raise ProfileError("Give the connection a name.")
    name = name.strip()
    if len(name) > MAX_NAME:
        raise ProfileError(f"The name has {len(name)} characters; use at most {MAX_NAME}.")
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise ProfileError("The name may not contain line breaks, tabs or other control characters.")
    return name


def _number(value, what: str, kind: type, minimum: float) -> float | int | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ProfileError(f"{what} must be a number, not {value!r}.")
    try:
        number = kind(value)
    except (TypeError, ValueError, OverflowError):
        raise ProfileError(f"{what} must be a number, not {_clip(repr(value), 40)}.") from None
    if kind is float and (number != number or number in (float("inf"), float("-inf"))):
        raise ProfileError(f"{what} must be a finite number.")
    if number < minimum:
        raise ProfileError(f"{what} must be at least {minimum:g} (got {number:g}).")
    return number


def checked(profile: Profile) -> Profile:
    """A copy with every value checked by its platform (ProfileError sentences), secrets refused.

    The platform's `validate()` converts and fills defaults; what it returns (minus secrets and
    empty values) is what is stored, so a later load needs no second check."""
    if not isinstance(profile.id, str) or not _ID.fullmatch(profile.id):
        raise ProfileError("The connection's id is not valid; make profiles with new_profile().")
    name = check_name(profile.name)
    if profile.platform not in platform_registry.NAMES:
        raise ProfileError(
            f"{_clip(repr(profile.platform), 40)} is not a platform; "
            f"choose one of {', '.join(platform_registry.NAMES)}."
        )
    platform = platform_registry.get(profile.platform)
    if not isinstance(profile.values, dict):
        raise ProfileError("The connection's values must be a JSON object of field names and values.")
    secret = set(secret_fields_of(profile.platform))
    for key, value in profile.values.items():
        if key in secret and value not in (None, ""):
            label = platform.field(key).label
            raise ProfileError(
                f"{label} is a secret and is kept in the keyring, never in the saved connection; "
                "store it with SecretStore.set (or `uplink-console profile set-secret`)."
            )
    plain = {k: v for k, v in profile.values.items() if k not in secret}
    try:
        validated = platform.validate(plain)
    except ProfileError:
        raise
    except (ValueError, TypeError) as exc:  # ConfigError is a ValueError
        raise ProfileError(f"{platform.label}: {exc}") from None
    values = {k: v for k, v in validated.items() if k not in secret and v is not None}
    try:
        orjson.dumps(values)
    except TypeError as exc:
        raise ProfileError(f"A value of the connection cannot be saved as JSON ({exc}).") from None
    out = dataclasses.replace(profile, name=name, values=values)
    out.open_on_start = bool(profile.open_on_start)
    out.history_days = _number(profile.history_days, "History days", float, 0.01)
    out.history_max_mb = _number(profile.history_max_mb, "The history size limit (MB)", float, 1.0)
    out.history_max_rows = _number(profile.history_max_rows, "The history row limit", int, 1)
    out.max_rows = _number(profile.max_rows, "Rows kept in memory", int, 1)
    return out


def profile_to_dict(profile: Profile) -> dict:
    return {
        "id": profile.id,
        "name": profile.name,
        "platform": profile.platform,
        "values": profile.values,
        "open_on_start": profile.open_on_start,
        "history_days": profile.history_days,
        "history_max_mb": profile.history_max_mb,
        "history_max_rows": profile.history_max_rows,
        "max_rows": profile.max_rows,
        "created_at": profile.created_at,
        "updated_at": profile.updated_at,
    }


def _lenient_option(entry: dict, name: str, kind: type):
    value = entry.get(name)
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return kind(value) if value > 0 else None


def profile_from_dict(entry) -> Profile:
    """A stored entry as a Profile; ValueError (a short reason) for an entry that is not one."""
    if not isinstance(entry, dict):
        raise ValueError(f"an entry is {type(entry).__name__}, not an object")
    pid, name, platform, values = entry.get("id"), entry.get("name"), entry.get("platform"), entry.get("values")
    if not isinstance(pid, str) or not _ID.fullmatch(pid):
        raise ValueError("an entry has no valid id")
    try:
        name = check_name(name)
    except ProfileError:
        raise ValueError("an entry has no valid name") from None
    if platform not in platform_registry.NAMES:
        raise ValueError(f"an entry names an unknown platform ({_clip(repr(platform), 30)})")
    if not isinstance(values, dict):
        raise ValueError("an entry's values are not an object")
    secret = set(secret_fields_of(platform))
    return Profile(
        id=pid,
        name=name,
        platform=platform,
        # A secret put here by hand is not taken: secrets come from the keyring only.
        values={k: v for k, v in values.items() if isinstance(k, str) and k not in secret},
        open_on_start=entry.get("open_on_start") is True,
        history_days=_lenient_option(entry, "history_days", float),
        history_max_mb=_lenient_option(entry, "history_max_mb", float),
        history_max_rows=_lenient_option(entry, "history_max_rows", int),
        max_rows=_lenient_option(entry, "max_rows", int),
        created_at=entry.get("created_at") if isinstance(entry.get("created_at"), str) else "",
        updated_at=entry.get("updated_at") if isinstance(entry.get("updated_at"), str) else "",
    )


# ----- schema migrations --------------------------------------------------------------------


def _v0_to_v1(doc: dict) -> dict:
    """Version 0 (before schema_version existed): entries under "profiles" or "connections",
    without ids or times, retention in a nested "history" object."""
    entries = doc.get("profiles", doc.get("connections"))
    if not isinstance(entries, list):
        raise ValueError("it holds no list of connections")
    stamp = now_iso()
    out = []
    for entry in entries:
        if isinstance(entry, dict):
            entry = dict(entry)
            entry.setdefault("id", uuid.uuid4().hex)
            entry.setdefault("created_at", stamp)
            entry.setdefault("updated_at", stamp)
            history = entry.pop("history", None)
            if isinstance(history, dict):
                entry.setdefault("history_days", history.get("days"))
                entry.setdefault("history_max_mb", history.get("max_mb"))
                entry.setdefault("history_max_rows", history.get("max_rows"))
        out.append(entry)
    return {"format": STORE_FORMAT, "schema_version": 1, "profiles": out}


# version N -> the step that makes a version N+1 document of it
MIGRATIONS: dict[int, Callable[[dict], dict]] = {0: _v0_to_v1}


def migrate(doc: dict, migrations: dict[int, Callable[[dict], dict]] | None = None) -> tuple[dict, int]:
    """(the document at SCHEMA_VERSION, the version it had). ValueError when a step is missing or fails."""
    steps = MIGRATIONS if migrations is None else migrations
    version = doc.get("schema_version", 0)
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise ValueError(f"its schema_version {_clip(repr(version), 20)} is not a version number")
    original = version
    while version < SCHEMA_VERSION:
        step = steps.get(version)
        if step is None:
            raise ValueError(f"there is no migration from schema version {version}")
        doc = step(doc)
        new_version = doc.get("schema_version")
        if new_version != version + 1:
            raise ValueError(f"the migration from schema version {version} did not give version {version + 1}")
        version = new_version
    return doc, original


# ----- files --------------------------------------------------------------------------------


def _fsync_directory(directory: Path) -> None:
    if os.name != "posix":
        return  # Windows cannot open a folder for fsync; NTFS journals the rename
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        log.debug("fsync of %s failed", directory, exc_info=True)
    finally:
        os.close(fd)


def write_file_atomically(path: Path, data: bytes, mode: int = 0o600) -> None:
    """`data` as the whole of `path`, or (on any failure) the old file untouched.

    The temporary file is made in the same folder (os.replace is atomic only within one file
    system) with `mode` from its creation, so not one byte is ever readable by others; then
    write, fsync, replace, and fsync of the folder so the rename itself survives a power cut.
    OSError on failure; no temporary file is left behind."""
    path = Path(path)
    directory = path.parent
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = directory / f".{path.name}.{os.getpid()}.{_random.token_hex(4)}.tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0) | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(tmp, flags, mode)
    try:
        try:
            if hasattr(os, "fchmod"):
                os.fchmod(fd, mode)  # the umask may have taken bits away; make it exact
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_directory(directory)


@contextlib.contextmanager
def file_lock(lock_path: Path, timeout: float = LOCK_TIMEOUT_S) -> Iterator[None]:
    """An exclusive lock between processes on `lock_path` (created 0600; left in place).

    fcntl.flock on POSIX, msvcrt.locking on Windows: the OS drops the lock when its holder
    dies, so a crashed window never leaves a stale lock. ProfileStoreError after `timeout`."""
    lock_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                _try_lock(fd)
                break
            except OSError as exc:
                if exc.errno not in _BUSY:
                    raise
                if time.monotonic() >= deadline:
                    raise ProfileStoreError(
                        f"Another Uplink Console has held {lock_path.name} for {timeout:.0f} s; "
                        "close other windows or commands that are saving connections and try again."
                    ) from None
                time.sleep(0.02)
        try:
            yield
        finally:
            _unlock(fd)
    finally:
        os.close(fd)


# flock says EWOULDBLOCK (= EAGAIN); msvcrt.locking says EACCES or EDEADLOCK.
_BUSY = {errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES, getattr(errno, "EDEADLOCK", errno.EDEADLK)}


if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _try_lock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)

    def _unlock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        with contextlib.suppress(OSError):
            msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _try_lock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)


def _os_reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


# ----- the store ----------------------------------------------------------------------------


@dataclass
class _Disk:
    """What reading the file gave."""

    profiles: list[Profile]
    problem: str | None = None
    untouchable: bool = False  # a newer console's file, or one that cannot be read now: never overwrite
    damaged: bool = False  # to be kept aside before the next write
    broken_entries: int = 0
    total_entries: int = 0
    reason: str = ""
    migrated_from: int | None = None
    raw: bytes = b""


class ProfileStore:
    """Every saved connection, in the user's order, backed by `<directory>/profiles.json`."""

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = Path(directory) if directory is not None else config_dir()
        self.path = self.directory / FILE_NAME
        self.lock_path = self.directory / (FILE_NAME + ".lock")
        self.load_problem: str | None = None
        self.read_only: str | None = None  # the sentence why saving is refused, or None
        self._profiles: list[Profile] = []
        self._changed: dict[str, Profile] = {}
        self._deleted: set[str] = set()
        self._order_changed = False
        self.reload()

    # ----- reading

    def reload(self) -> None:
        """Reads the file again (another window may have saved); unsaved changes are dropped."""
        self._changed.clear()
        self._deleted.clear()
        self._order_changed = False
        self.read_only = None
        if not self.path.exists():  # nothing to settle: no folder or lock file made just by looking
            disk = self._read()
        else:
            try:
                with self._locked():
                    disk = self._read()
                    self._settle(disk)
            except ProfileStoreError as exc:
                # No lock (a read-only folder, say) or no way to keep a damaged file aside: read
                # anyway and change nothing on disk.
                disk = self._read()
                if disk.damaged or disk.migrated_from is not None or disk.untouchable:
                    self.read_only = str(exc)
                    disk.problem = disk.problem or str(exc)
        self._profiles = disk.profiles
        self.load_problem = disk.problem
        if disk.untouchable:
            self.read_only = disk.problem

    def _read(self) -> _Disk:
        try:
            with open(self.path, "rb") as f:
                raw = f.read(MAX_FILE_BYTES + 1)
        except FileNotFoundError:
            return _Disk([])
        except OSError as exc:
            # Not corrupt, just unreadable now (permissions): nothing is moved; saving would lose it.
            sentence = (
                f"The saved connections in {self.path} cannot be read ({_os_reason(exc)}); "
                "none are shown and the file is left as it is."
            )
            return _Disk([], sentence, untouchable=True)
        if len(raw) > MAX_FILE_BYTES:
            return self._damaged(raw, f"it is larger than {MAX_FILE_BYTES // 2**20} MiB")
        try:
            doc = orjson.loads(raw.removeprefix(b"\xef\xbb\xbf"))
        except orjson.JSONDecodeError as exc:
            return self._damaged(raw, f"it is not valid JSON ({exc.msg} at character {exc.pos})")
        if not isinstance(doc, dict):
            return self._damaged(raw, f"it holds {type(doc).__name__}, not the console's object")
        version = doc.get("schema_version", 0)
        if isinstance(version, int) and not isinstance(version, bool) and version > SCHEMA_VERSION:
            profiles, broken, total = self._entries(doc.get("profiles"))
            sentence = (
                f"{self.path.name} was written by a newer Uplink Console (schema version {version}; this one "
                f"reads up to {SCHEMA_VERSION}), so its {len(profiles)} saved connection(s) are shown but "
                "no change is saved and the file is left as it is; update the console to edit them."
            )
            return _Disk(profiles, sentence, untouchable=True, raw=raw)
        try:
            doc, original = migrate(doc)
        except Exception as exc:  # a broken v0 document makes a migration step trip over anything
            return self._damaged(raw, str(exc) if isinstance(exc, ValueError) else "its old layout cannot be read")
        entries = doc.get("profiles")
        if not isinstance(entries, list):
            return self._damaged(raw, "it has no list of profiles")
        profiles, broken, total = self._entries(entries)
        disk = _Disk(profiles, raw=raw, migrated_from=original if original != SCHEMA_VERSION else None)
        if broken:
            disk.damaged, disk.broken_entries, disk.total_entries = True, broken, total
        return disk

    def _damaged(self, raw: bytes, reason: str) -> _Disk:
        return _Disk([], damaged=True, reason=reason, raw=raw)

    def _entries(self, entries) -> tuple[list[Profile], int, int]:
        if not isinstance(entries, list):
            return [], 0, 0
        profiles: list[Profile] = []
        ids: set[str] = set()
        broken = 0
        for entry in entries:
            try:
                profile = profile_from_dict(entry)
            except ValueError as exc:
                log.debug("profile entry skipped: %s", exc)
                broken += 1
                continue
            if profile.id in ids:
                broken += 1
                continue
            ids.add(profile.id)
            taken = {p.name.casefold() for p in profiles}
            if profile.name.casefold() in taken:
                profile.name = _first_free(taken, _numbered(profile.name))
            profiles.append(profile)
        return profiles, broken, len(entries)

    def _settle(self, disk: _Disk) -> None:
        """Under the lock: keeps a damaged file aside (and writes what was recovered), or writes a
        migrated one in the current layout (its old bytes kept as profiles.json.schema-<N>)."""
        if disk.damaged:
            aside = self._keep_aside()
            if disk.broken_entries:
                disk.problem = (
                    f"{disk.broken_entries} of the {disk.total_entries} saved connections in {self.path.name} "
                    f"could not be read; the file was kept aside as {aside.name} and the other "
                    f"{len(disk.profiles)} were loaded."
                )
            else:
                disk.problem = (
                    f"The saved connections could not be read ({disk.reason}); the file was kept aside as "
                    f"{aside.name} and the console starts without them."
                )
            if disk.profiles:
                self._write(disk.profiles)
        elif disk.migrated_from is not None:
            backup = self.path.with_name(f"{FILE_NAME}.schema-{disk.migrated_from}")
            if not backup.exists():
                write_file_atomically(backup, disk.raw)
            self._write(disk.profiles)

    def _keep_aside(self) -> Path:
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        aside = self.path.with_name(f"{FILE_NAME}.corrupt-{stamp}")
        n = 2
        while aside.exists():
            aside = self.path.with_name(f"{FILE_NAME}.corrupt-{stamp}-{n}")
            n += 1
        try:
            os.replace(self.path, aside)
        except OSError as exc:
            raise ProfileStoreError(
                f"The saved connections could not be read and could not be kept aside as {aside.name} "
                f"({_os_reason(exc)}); the file is left as it is and no change will be saved."
            ) from None
        _fsync_directory(self.directory)
        return aside

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        try:
            with file_lock(self.lock_path):
                yield
        except ProfileStoreError:
            raise
        except OSError as exc:
            raise ProfileStoreError(
                f"The saved connections cannot be locked in {self.directory} ({_os_reason(exc)}); "
                f"make the folder writable or set {CONFIG_DIR_ENV} to one that is."
            ) from None

    # ----- writing

    def _write(self, profiles: list[Profile]) -> None:
        doc = {
            "format": STORE_FORMAT,
            "schema_version": SCHEMA_VERSION,
            "saved_at": now_iso(),
            "profiles": [profile_to_dict(p) for p in profiles],
        }
        data = orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n"
        for stale in self.directory.glob(f".{FILE_NAME}.*.tmp"):  # left by a process killed mid-save
            with contextlib.suppress(OSError):
                stale.unlink()
        try:
            write_file_atomically(self.path, data)
        except OSError as exc:
            raise ProfileStoreError(
                f"The saved connections could not be written to {self.directory} ({_os_reason(exc)}); "
                "the file on disk is unchanged."
            ) from None

    def save(self) -> None:
        """Writes the changes: under the lock, re-reads the file and merges by id (this store's
        changes win for the profiles it changed; everything else on disk is kept)."""
        if self.read_only:
            self._forget_changes()
            raise ProfileStoreError(self.read_only)
        try:
            with self._locked():
                disk = self._read()
                if disk.untouchable:
                    self.read_only = disk.problem
                    raise ProfileStoreError(disk.problem)
                self._settle(disk)
                if disk.problem:
                    self.load_problem = disk.problem
                merged = self._merge(disk.profiles)
                self._write(merged)
        except ProfileStoreError:
            self._forget_changes()
            raise
        self._profiles = merged
        self._changed.clear()
        self._deleted.clear()
        self._order_changed = False

    def _forget_changes(self) -> None:
        """After a failed save: back to what is on disk, so memory never shows what was not saved."""
        self._changed.clear()
        self._deleted.clear()
        self._order_changed = False
        try:
            disk = self._read()
        except Exception:
            return
        if not disk.damaged:
            self._profiles = disk.profiles

    def _merge(self, on_disk: list[Profile]) -> list[Profile]:
        result = [p for p in on_disk if p.id not in self._deleted]
        index = {p.id: i for i, p in enumerate(result)}
        ours = [p for p in self._profiles if p.id in self._changed]
        for p in ours:
            if p.id in index:
                result[index[p.id]] = p
            else:
                index[p.id] = len(result)
                result.append(p)
        if self._order_changed:
            position = {p.id: i for i, p in enumerate(self._profiles)}
            result.sort(key=lambda p: (position.get(p.id, len(position)), 0))
        # Another process may have taken a name meanwhile: ours gives way.
        for p in ours:
            taken = {q.name.casefold() for q in result if q.id != p.id}
            if p.name.casefold() in taken:
                p.name = _first_free(taken, _numbered(p.name))
                log.info("a saved connection was renamed while merging: another window took its name")
        return result

    # ----- the API

    def profiles(self) -> list[Profile]:
        """Every saved connection, in the user's order (copies: change them through update())."""
        return [p.copy() for p in self._profiles]

    def _find(self, name_or_id: str) -> Profile | None:
        for p in self._profiles:
            if p.id == name_or_id:
                return p
        for p in self._profiles:
            if p.name == name_or_id:
                return p
        wanted = str(name_or_id).strip().casefold()
        for p in self._profiles:
            if p.name.casefold() == wanted:
                return p
        return None

    def get(self, name_or_id: str) -> Profile:
        found = self._find(name_or_id)
        if found is not None:
            return found.copy()
        raise ProfileNotFound(self._not_found_sentence(name_or_id))

    def _not_found_sentence(self, name_or_id) -> str:
        shown = _clip(str(name_or_id).encode("utf-8", "backslashreplace").decode("utf-8"), 60)
        names = [p.name for p in self._profiles]
        if not names:
            return f"There is no saved connection called {shown!r}; there are no saved connections yet."
        by_fold = {n.casefold(): n for n in names}
        close = difflib.get_close_matches(str(name_or_id).casefold(), list(by_fold), n=3, cutoff=0.75)
        close += [f for f in by_fold if str(name_or_id).casefold() in f and f not in close][: 3 - len(close)]
        if close:
            matches = " or ".join(repr(by_fold[c]) for c in close)
            return f"There is no saved connection called {shown!r}; did you mean {matches}?"
        if len(names) <= 5:
            return f"There is no saved connection called {shown!r}; the saved ones are {', '.join(map(repr, names))}."
        return f"There is no saved connection called {shown!r}; `uplink-console profile list` shows all {len(names)}."

    def _name_taken(self, name: str, except_id: str | None = None) -> Profile | None:
        """The other profile that has this name (case-insensitively), or None."""
        folded = name.casefold()
        return next((p for p in self._profiles if p.name.casefold() == folded and p.id != except_id), None)

    def add(self, profile: Profile) -> Profile:
        """Validates and saves a new profile; ProfileError for a taken name or a bad value."""
        good = checked(profile)
        if self._find_id(good.id) is not None:
            raise ProfileError(f"A saved connection with the id {good.id} exists already; make a new profile.")
        clash = self._name_taken(good.name)
        if clash is not None:
            raise ProfileError(
                f"A saved connection called {clash.name!r} exists already; choose another name "
                f"(e.g. {self.unique_name(good.name)!r})."
            )
        stamp = now_iso()
        good.created_at = good.created_at or stamp
        good.updated_at = stamp
        self._profiles.append(good)
        self._changed[good.id] = good
        self.save()
        return self.get(good.id)

    def _find_id(self, pid: str) -> Profile | None:
        return next((p for p in self._profiles if p.id == pid), None)

    def update(self, profile: Profile) -> None:
        """Validates and saves the changed profile (found by its id)."""
        current = self._find_id(profile.id)
        if current is None:
            raise ProfileNotFound(self._not_found_sentence(profile.id))
        good = checked(profile)
        clash = self._name_taken(good.name, except_id=good.id)
        if clash is not None:
            raise ProfileError(f"A saved connection called {clash.name!r} exists already; choose another name.")
        good.created_at = current.created_at or good.created_at
        good.updated_at = now_iso()
        self._profiles[self._profiles.index(current)] = good
        self._changed[good.id] = good
        self.save()

    def rename(self, id: str, new_name: str) -> None:  # noqa: A002 - the API's name
        current = self._find_id(id)
        if current is None:
            raise ProfileNotFound(self._not_found_sentence(id))
        self.update(dataclasses.replace(current.copy(), name=new_name))

    def duplicate(self, id: str, new_name: str | None = None) -> Profile:  # noqa: A002
        """A copy under a new id, named new_name or "Name (copy)", "Name (copy 2)" …; the caller
        copies the secrets (SecretStore.copy)."""
        current = self._find_id(id)
        if current is None:
            raise ProfileNotFound(self._not_found_sentence(id))
        if new_name is None:
            taken = {p.name.casefold() for p in self._profiles}
            new_name = _first_free(taken, _copies(current.name))
        options = {name: getattr(current, name) for name in OPTIONS}
        copy_ = new_profile(new_name, current.platform, copy.deepcopy(current.values), **options)
        return self.add(copy_)

    def delete(self, id: str) -> None:  # noqa: A002
        current = self._find_id(id)
        if current is None:
            raise ProfileNotFound(self._not_found_sentence(id))
        self._profiles.remove(current)
        self._changed.pop(id, None)
        self._deleted.add(id)
        self.save()
        self._remove_own_certificates(current)

    def move(self, id: str, index: int) -> None:  # noqa: A002
        """Puts a profile at `index` in the user's order (the sidebar's drag and drop)."""
        current = self._find_id(id)
        if current is None:
            raise ProfileNotFound(self._not_found_sentence(id))
        self._profiles.remove(current)
        self._profiles.insert(max(0, min(index, len(self._profiles))), current)
        self._order_changed = True
        self.save()

    def unique_name(self, wanted: str) -> str:
        """`wanted` if no saved connection has it (case-insensitively), else "wanted (2)", "wanted (3)" …"""
        wanted = (wanted or "").strip() or "Connection"
        return _first_free({p.name.casefold() for p in self._profiles}, _numbered(wanted))

    def certificates_dir(self) -> Path:
        """Where certificates and keys that arrive as text in an imported body are saved."""
        return self.directory / "certificates"

    def _remove_own_certificates(self, profile: Profile) -> None:
        """The folder an import made for this profile's certificates, unless a copy still uses it."""
        folder = self.certificates_dir() / profile.id
        if not folder.is_dir():
            return
        prefix = str(folder) + os.sep
        for other in self._profiles:
            if any(isinstance(v, str) and v.startswith(prefix) for v in other.values.values()):
                return
        shutil.rmtree(folder, ignore_errors=True)


_NUMBERED = re.compile(r"^(.*\S) \((\d{1,6})\)$")


def _numbered(name: str) -> Iterator[str]:
    """name, then "name (2)", "name (3)" …; a name that ends in a number already counts on from it."""
    yield name
    n = 2
    match = _NUMBERED.match(name)
    if match:
        name, n = match.group(1), int(match.group(2)) + 1
    while True:
        yield f"{name} ({n})"
        n += 1


def _copies(name: str) -> Iterator[str]:
    yield f"{name} (copy)"
    n = 2
    while True:
        yield f"{name} (copy {n})"
        n += 1


def _first_free(taken_folded: set[str], candidates: Iterator[str]) -> str:
    for candidate in candidates:
        if candidate.casefold() not in taken_folded:
            return candidate
    raise AssertionError("unreachable")


# ----- export and import --------------------------------------------------------------------


def export_document(profiles: list[Profile]) -> bytes:
    """The console's own export: JSON, no secrets (their field names under "secrets_not_included")."""
    entries = []
    for p in profiles:
        secret = p.secret_fields()
        entry = profile_to_dict(p)
        del entry["id"]  # an id belongs to one installation: an import makes a new one
        entry["values"] = {k: v for k, v in p.values.items() if k not in secret}
        entry["secrets_not_included"] = secret
        entries.append(entry)
    doc = {
        "format": EXPORT_FORMAT,
        "schema_version": EXPORT_SCHEMA_VERSION,
        "exported_at": now_iso(),
        "profiles": entries,
    }
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n"


IMPORTABLE = ("tektelic", "thingpark")


def detect_kind(doc) -> str | None:
    """ "console", "tektelic" or "thingpark" for a parsed document; None when it is none or
    could be either."""
    if not isinstance(doc, dict):
        return None
    if doc.get("format") == EXPORT_FORMAT:
        return "console"
    config = doc.get("configuration") if isinstance(doc.get("configuration"), dict) else doc
    tektelic = doc.get("type") == "MQTT_V2" or "pushTopic" in config or ("token" in config and "host" in config)
    thingpark = "connectorId" in doc or "hostName" in config or "uplinkTopicPattern" in config
    if tektelic == thingpark:
        return None
    return "tektelic" if tektelic else "thingpark"


def import_document(
    data: bytes,
    platform: str | None = None,
    name: str | None = None,
    *,
    certificates_dir: Path | None = None,
) -> list[tuple[Profile, dict]]:
    """[(profile not yet added, {secret field: value})] from the console's own export, a
    Tektelic `POST /api/integration` body (platform="tektelic") or a ThingPark `POST /connections`
    body (platform="thingpark"); with platform None the kind is detected when unambiguous.

    Secrets in the document come back in the dict, never in the values. Certificates and keys
    that a body carries as text are saved as files (the key 0600) under
    `certificates_dir/<profile id>/` (default: <config dir>/certificates)."""
    if len(data) > MAX_IMPORT_BYTES:
        raise ProfileError(
            f"The file is larger than {MAX_IMPORT_BYTES // 2**20} MiB; a configuration body is a few KiB."
        )
    try:
        doc = orjson.loads(bytes(data).removeprefix(b"\xef\xbb\xbf"))
    except orjson.JSONDecodeError as exc:
        raise ProfileError(f"The file is not valid JSON ({exc.msg} at character {exc.pos}).") from None
    if platform is not None and platform not in IMPORTABLE:
        raise ProfileError(
            f"Only Tektelic and ThingPark configuration bodies can be imported (--platform tektelic or thingpark), "
            f"not {_clip(repr(platform), 30)}; the console's own exports need no --platform."
        )
    kind = platform or detect_kind(doc)
    if kind is None:
        if isinstance(doc, dict) and doc.get("format") not in (None, EXPORT_FORMAT):
            raise ProfileError(f"The file's format {_clip(repr(doc.get('format')), 40)} is not one the console reads.")
        raise ProfileError(
            "The file is not an Uplink Console export and not clearly a Tektelic or ThingPark configuration; "
            "give --platform tektelic or --platform thingpark."
        )
    root = Path(certificates_dir) if certificates_dir is not None else config_dir() / "certificates"
    pairs = _import_own(doc) if kind == "console" else [_import_body(kind, doc, root)]
    if name is not None:
        if len(pairs) != 1:
            raise ProfileError(f"The file holds {len(pairs)} connections; --name applies to a file with one.")
        pairs[0][0].name = check_name(name)
    return pairs


def _split_secrets(platform: str, values: dict) -> tuple[dict, dict]:
    secret = set(secret_fields_of(platform))
    plain = {k: v for k, v in values.items() if k not in secret}
    found = {k: str(v) for k, v in values.items() if k in secret and v not in (None, "")}
    return plain, found


def _import_own(doc: dict) -> list[tuple[Profile, dict]]:
    version = doc.get("schema_version")
    if isinstance(version, bool) or not isinstance(version, int):
        raise ProfileError("The export has no schema_version; it was not written by Uplink Console.")
    if version > EXPORT_SCHEMA_VERSION:
        raise ProfileError(
            f"The export was written by a newer Uplink Console (schema version {version}); update the console "
            "to import it."
        )
    entries = doc.get("profiles")
    if not isinstance(entries, list):
        raise ProfileError("The export has no list of profiles.")
    pairs = []
    for number, entry in enumerate(entries, 1):
        if not isinstance(entry, dict):
            raise ProfileError(f"Connection {number} of the export is not an object.")
        platform = entry.get("platform")
        if platform not in platform_registry.NAMES:
            raise ProfileError(f"Connection {number} of the export names an unknown platform.")
        values = entry.get("values")
        if not isinstance(values, dict):
            raise ProfileError(f"Connection {number} of the export has no values object.")
        try:
            name = check_name(entry.get("name"))
        except ProfileError as exc:
            raise ProfileError(f"Connection {number} of the export: {exc}") from None
        plain, found = _split_secrets(platform, values)
        profile = new_profile(name, platform, plain)
        stored = profile_from_dict({**entry, "id": profile.id, "name": name, "values": plain})
        for option in OPTIONS:
            setattr(profile, option, getattr(stored, option))
        pairs.append((profile, found))
    return pairs


def _import_body(kind: str, doc, certificates_root: Path) -> tuple[Profile, dict]:
    platform = platform_registry.get(kind)
    profile = new_profile("imported", kind, {})
    pem_dir = certificates_root / profile.id
    if kind == "tektelic":
        values = platform.profile_from_integration_config(doc, pem_dir=pem_dir)
        config = doc.get("configuration") if isinstance(doc.get("configuration"), dict) else doc
        default_name = f"Tektelic {config.get('host') or ''}".strip()
    else:
        values = platform.profile_from_connection_config(doc, pem_dir=pem_dir)
        default_name = f"ThingPark {values.get('host_name') or ''}".strip()
    given = doc.get("name") if isinstance(doc, dict) else None
    try:
        profile.name = check_name(given)
    except ProfileError:
        profile.name = default_name
    plain, found = _split_secrets(kind, values)
    profile.values = {k: v for k, v in plain.items() if v is not None}
    return profile, found

"""Downlink templates: named downlinks a user saves per connection and sends again later.

A template is what the composer's form held (its fields and the payload as typed, in its
format), saved under a name for one connection. The composer saves, applies and deletes them;
`uplink-console send --profile NAME --template T` reads the same file.

The file: `<config dir>/downlink-templates/<connection key>.json`, where the config dir is
app.profiles.config_dir() (UPLINK_CONSOLE_CONFIG_DIR overrides it), the connection key is the
saved connection's profile id (or the window's key for a connection that is not saved, e.g.
"adhoc:tts"), with every character other than A-Z a-z 0-9 . _ - written as %XX. Its content:

    {
      "format": "uplink-console-downlink-templates",
      "version": 1,
      "connection": "<connection key>",
      "templates": [
        {
          "name": "Reboot",                 # unique per connection (compared without case)
          "platform": "tts",                # the platform the fields were written for
          "fields": {                       # the composer's field names (app/compose.py FIELDS):
            "device_id": "dev1",            #   they are DownlinkRequest's names where one exists
            "f_port": 10,                   #   (device_id, dev_eui, f_port, confirmed, priority,
            "confirmed": true               #   replace, flush_queue, command, correlation_ids,
          },                                #   template, content_type) plus payload_mode, topic,
                                            #   qos, retain, subtopic, user_properties ...
          "payload": {"format": "hex", "text": "01 02 ff"},   # app.payload FORMATS; as typed
          "saved_at": "2026-12-01T12:00:00Z"
        }
      ]
    }

Unknown keys are kept out of the way, not refused: a newer console's extra fields do not stop
an older one from reading its templates. Writes are atomic (app.profiles.write_file_atomically).
A file that cannot be read is never overwritten: it is kept aside as `<file>.corrupt-<time>`,
the templates that were valid in it are kept, and `load_problem` says so in one sentence.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from app.payload import FORMATS, PayloadError, decode
from app.profiles import config_dir, now_iso, write_file_atomically

FORMAT_NAME = "uplink-console-downlink-templates"
VERSION = 1
FOLDER = "downlink-templates"
MAX_NAME = 80


class TemplateError(ValueError):
    """A template that cannot be saved or used, as one sentence."""


@dataclass(frozen=True, slots=True)
class DownlinkTemplate:
    name: str
    fields: dict = field(default_factory=dict)
    payload_format: str = "hex"
    payload_text: str = ""
    platform: str | None = None
    saved_at: str | None = None

    def payload(self) -> bytes:
        """The payload bytes (PayloadError if the saved text is not valid in its format)."""
        return decode(self.payload_text, self.payload_format)

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "platform": self.platform,
            "fields": self.fields,
            "payload": {"format": self.payload_format, "text": self.payload_text},
            "saved_at": self.saved_at,
        }


def checked_name(name) -> str:
    text = " ".join(str(name or "").split())
    if not text:
        raise TemplateError("Give the template a name.")
    if len(text) > MAX_NAME:
        raise TemplateError(f"A template name is at most {MAX_NAME} characters; this one has {len(text)}.")
    return text


def template_from_dict(entry) -> DownlinkTemplate:
    """One entry of the file; TemplateError (a sentence) when it is not a template."""
    if not isinstance(entry, dict):
        raise TemplateError("an entry is not an object")
    if not isinstance(entry.get("name"), str):
        raise TemplateError("an entry has no name")
    name = checked_name(entry["name"])
    fields = entry.get("fields") or {}
    if not isinstance(fields, dict):
        raise TemplateError(f"the fields of {name!r} are not an object")
    payload = entry.get("payload") or {}
    if not isinstance(payload, dict):
        raise TemplateError(f"the payload of {name!r} is not an object")
    fmt = payload.get("format") or "hex"
    if fmt not in FORMATS:
        raise TemplateError(f"the payload format of {name!r} is {fmt!r}, not one of {', '.join(FORMATS)}")
    text = payload.get("text") or ""
    if not isinstance(text, str):
        raise TemplateError(f"the payload of {name!r} is not text")
    platform = entry.get("platform")
    saved_at = entry.get("saved_at")
    return DownlinkTemplate(
        name,
        dict(fields),
        fmt,
        text,
        platform if isinstance(platform, str) else None,
        saved_at if isinstance(saved_at, str) else None,
    )


def file_key(connection_key: str) -> str:
    """The connection key as a file name: A-Z a-z 0-9 . _ - kept, everything else %XX (UTF-8)."""
    return (
        re.sub(r"[^A-Za-z0-9._-]", lambda m: "".join(f"%{b:02X}" for b in m.group().encode()), connection_key).lstrip(
            "."
        )
        or "%2E"
    )


def templates_path(connection_key: str, directory: Path | None = None) -> Path:
    return Path(directory or config_dir()) / FOLDER / f"{file_key(connection_key)}.json"


class TemplateStore:
    """The templates of one connection, read at creation; save() and delete() write the file."""

    def __init__(self, connection_key: str, directory: Path | None = None) -> None:
        self.connection_key = connection_key
        self.path = templates_path(connection_key, directory)
        self.templates: list[DownlinkTemplate] = []
        self.load_problem: str | None = None
        self._unreadable = False
        self.reload()

    # ----- reading
    def reload(self) -> None:
        self.templates, self.load_problem, self._unreadable = [], None, False
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return
        except OSError as exc:
            self.load_problem = (
                f"The downlink templates in {self.path} cannot be read ({exc.strerror}); "
                "check the file's permissions. Saving a template is refused until then, so none are lost."
            )
            self._unreadable = True
            return
        try:
            doc = orjson.loads(raw)
            if not isinstance(doc, dict) or not isinstance(doc.get("templates"), list):
                raise TemplateError("it has no list of templates")
            if doc.get("format") not in (None, FORMAT_NAME):
                raise TemplateError(f"it is a {doc.get('format')!r} file")
        except (orjson.JSONDecodeError, TemplateError) as exc:
            self._keep_aside(f"it is not a templates file ({exc})")
            return
        bad = []
        seen = set()
        for entry in doc["templates"]:
            try:
                template = template_from_dict(entry)
            except TemplateError as exc:
                bad.append(str(exc))
                continue
            if template.name.casefold() in seen:
                bad.append(f"{template.name!r} is there twice")
                continue
            seen.add(template.name.casefold())
            self.templates.append(template)
        if bad:
            self._keep_aside(f"{len(bad)} of its entries could not be read: {bad[0]}", recovered=True)

    def _keep_aside(self, reason: str, recovered: bool = False) -> None:
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        n = 1
        while aside.exists():
            n += 1
            aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}-{n}")
        try:
            os.replace(self.path, aside)
        except OSError as exc:
            self.load_problem = (
                f"The downlink templates file {self.path} could not be read ({reason}) and could not be kept "
                f"aside ({exc.strerror}); saving a template is refused so that nothing in it is lost."
            )
            self._unreadable = True
            return
        kept = f"the {len(self.templates)} that could be read are kept" if recovered else "no template could be read"
        self.load_problem = (
            f"The downlink templates file could not be read ({reason}); it was kept aside as {aside.name} and {kept}."
        )
        if recovered and self.templates:
            self._write()

    # ----- finding
    def names(self) -> list[str]:
        return [t.name for t in self.templates]

    def get(self, name: str) -> DownlinkTemplate | None:
        wanted = " ".join(str(name).split()).casefold()
        return next((t for t in self.templates if t.name.casefold() == wanted), None)

    def find(self, name: str) -> DownlinkTemplate:
        """The template by name; TemplateError naming the ones there are otherwise."""
        template = self.get(name)
        if template is None:
            there = ", ".join(self.names()) or "none are saved"
            raise TemplateError(f"There is no downlink template {name!r} for this connection ({there}).")
        return template

    # ----- changing
    def save(self, template: DownlinkTemplate) -> DownlinkTemplate:
        """Adds the template, or replaces the one with its name; returns it as saved."""
        name = checked_name(template.name)
        if template.payload_format not in FORMATS:
            raise TemplateError(f"The payload format {template.payload_format!r} is not one of {', '.join(FORMATS)}.")
        try:
            orjson.dumps(template.fields)
        except TypeError as exc:
            raise TemplateError(f"The template's fields cannot be saved as JSON ({exc}).") from None
        try:
            template.payload()
        except PayloadError as exc:
            raise TemplateError(f"The payload cannot be saved as it is: {exc}") from None
        saved = DownlinkTemplate(
            name, dict(template.fields), template.payload_format, template.payload_text, template.platform, now_iso()
        )
        others = [t for t in self.templates if t.name.casefold() != name.casefold()]
        index = next((i for i, t in enumerate(self.templates) if t.name.casefold() == name.casefold()), None)
        if index is None:
            others.append(saved)
        else:
            others.insert(index, saved)
        self._commit(others)
        return saved

    def delete(self, name: str) -> None:
        template = self.find(name)
        self._commit([t for t in self.templates if t is not template])

    def _commit(self, templates: list[DownlinkTemplate]) -> None:
        if self._unreadable:
            raise TemplateError(self.load_problem or "The templates file cannot be read; nothing is saved.")
        previous = self.templates
        self.templates = templates
        try:
            self._write()
        except OSError as exc:
            self.templates = previous
            raise TemplateError(
                f"The downlink templates could not be saved to {self.path} ({exc.strerror}); free some space or "
                "check the folder's permissions and try again."
            ) from None

    def _write(self) -> None:
        doc = {
            "format": FORMAT_NAME,
            "version": VERSION,
            "connection": self.connection_key,
            "templates": [t.to_dict() for t in self.templates],
        }
        write_file_atomically(self.path, orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")


def load_templates(connection_key: str, directory: Path | None = None) -> TemplateStore:
    return TemplateStore(connection_key, directory)

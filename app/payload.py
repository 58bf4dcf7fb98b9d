"""Payload conversions between hex, base64, text, JSON and byte arrays, with sentences for errors."""

from __future__ import annotations

import base64
import binascii
import re

import orjson


class PayloadError(ValueError):
    """Input that is not what its format says; the message says what and where."""


FORMATS = ("hex", "base64", "text", "json", "bytes")
_HEX_SEPARATORS = re.compile(r"[\s:\-]|0x", re.IGNORECASE)


def from_hex(text: str) -> bytes:
    cleaned = _HEX_SEPARATORS.sub("", text)
    bad = re.search(r"[^0-9a-fA-F]", cleaned)
    if bad:
        raise PayloadError(f"Hex may contain only 0-9 and a-f; found {bad.group()!r} at position {bad.start() + 1}.")
    if len(cleaned) % 2:
        raise PayloadError(f"Hex needs an even number of digits; {len(cleaned)} were given (a digit is missing).")
    return bytes.fromhex(cleaned)


def from_base64(text: str) -> bytes:
    cleaned = "".join(text.split())
    if not cleaned:
        return b""
    urlsafe = "-" in cleaned or "_" in cleaned
    padded = cleaned + "=" * (-len(cleaned) % 4)
    try:
        if urlsafe:
            return base64.urlsafe_b64decode(padded)
        return base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError):
        bad = re.search(r"[^A-Za-z0-9+/=_\-]", cleaned)
        where = f"; {bad.group()!r} at position {bad.start() + 1} is not a base64 character" if bad else ""
        raise PayloadError(f"This is not valid base64{where}.") from None


def from_text(text: str) -> bytes:
    return text.encode("utf-8")


def from_json(text: str) -> bytes:
    """Validates and compacts JSON; the bytes are the JSON document."""
    try:
        return orjson.dumps(orjson.loads(text))
    except orjson.JSONDecodeError as exc:
        raise PayloadError(f"This is not valid JSON: {json_error_text(exc, text)}.") from None


def from_byte_array(values) -> bytes:
    """A list of integers 0..255 (Tektelic's data.bytes) or text like "[1, 2, 255]"."""
    if isinstance(values, str):
        try:
            values = orjson.loads(values)
        except orjson.JSONDecodeError:
            raise PayloadError("A byte array looks like [1, 2, 255].") from None
    if not isinstance(values, list):
        raise PayloadError("A byte array must be a list of numbers from 0 to 255.")
    out = bytearray()
    for i, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 255:
            raise PayloadError(f"Byte {i + 1} of the array is {v!r}; each must be a whole number from 0 to 255.")
        out.append(v)
    return bytes(out)


def decode(text: str, fmt: str) -> bytes:
    match fmt:
        case "hex":
            return from_hex(text)
        case "base64":
            return from_base64(text)
        case "text":
            return from_text(text)
        case "json":
            return from_json(text)
        case "bytes":
            return from_byte_array(text)
    raise PayloadError(f"Unknown payload format {fmt!r}; use one of {', '.join(FORMATS)}.")


def encode(data: bytes, fmt: str) -> str:
    match fmt:
        case "hex":
            return data.hex()
        case "base64":
            return base64.b64encode(data).decode()
        case "text":
            try:
                return data.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise PayloadError(
                    f"These bytes are not UTF-8 text (byte {exc.start + 1} is 0x{data[exc.start]:02x})."
                ) from None
        case "json":
            try:
                return orjson.dumps(orjson.loads(data), option=orjson.OPT_INDENT_2).decode()
            except orjson.JSONDecodeError as exc:
                raise PayloadError(f"These bytes are not JSON: {json_error_text(exc, data)}.") from None
        case "bytes":
            return "[" + ", ".join(str(b) for b in data) + "]"
    raise PayloadError(f"Unknown payload format {fmt!r}; use one of {', '.join(FORMATS)}.")


def json_error_text(exc: orjson.JSONDecodeError, doc) -> str:
    """'unexpected character at line 3, column 7' from an orjson error."""
    msg = str(exc.args[0]) if exc.args else str(exc)
    msg = msg.split(": line ")[0]
    pos = getattr(exc, "pos", None)
    if pos is None:
        return msg
    if isinstance(doc, bytes | bytearray | memoryview):
        doc = bytes(doc)[: pos + 1].decode("utf-8", "replace")
    else:
        doc = doc[: pos + 1]
    line = doc.count("\n", 0, pos) + 1
    col = pos - (doc.rfind("\n", 0, pos) + 1) + 1
    return f"{msg[:1].lower() + msg[1:]} at line {line}, column {col}"


_CONTROL_WHITESPACE = str.maketrans({"\r": " ", "\n": " ", "\t": " "})


def is_printable_text(data: bytes) -> bool:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return text.translate(_CONTROL_WHITESPACE).isprintable()


def preview(data: bytes, limit: int = 160) -> str:
    """A one-line preview: the text if it is text, else spaced hex. On the paint path: keep it cheap."""
    head = data[:limit]
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        # a multi-byte character cut at the limit is still text
        text = head[: exc.start].decode("utf-8") if len(data) > limit and exc.start >= limit - 3 else None
    if text is not None:
        text = text.translate(_CONTROL_WHITESPACE)
        if text.isprintable():
            return text + ("…" if len(data) > limit else "")
    return head[: limit // 3].hex(" ") + (" …" if len(data) > limit // 3 else "")

"""Payload conversions between hex, base64, text, JSON and byte arrays, with sentences for errors.

The downlink composer's payload editor (ui/downlink/payload_editor.py) keeps what the user typed
in one of FORMATS and converts it with `convert` when the format switch changes: through the
bytes, so a switch never changes what is sent, and a switch that cannot be lossless (bytes that
are not UTF-8 shown as text, bytes that are not JSON shown as JSON) refuses with the reason
instead. Every error is a PayloadError whose text says what is wrong and where (a position is
counted in characters of what was typed, from 1), so the editor can show it next to the input.
"""

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
    """Hex digits; spaces, colons, dashes and 0x prefixes between bytes are allowed."""
    pos = 0
    digits = []
    for match in _HEX_SEPARATORS.finditer(text):
        digits.append((pos, text[pos : match.start()]))
        pos = match.end()
    digits.append((pos, text[pos:]))
    for start, chunk in digits:
        bad = re.search(r"[^0-9a-fA-F]", chunk)
        if bad:
            raise PayloadError(
                f"Hex may contain only 0-9 and a-f; found {bad.group()!r} at position {start + bad.start() + 1}."
            )
    cleaned = "".join(chunk for _, chunk in digits)
    if len(cleaned) % 2:
        raise PayloadError(f"Hex needs an even number of digits; {len(cleaned)} were given (a digit is missing).")
    return bytes.fromhex(cleaned)


_BASE64_STANDARD = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
_BASE64_URLSAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def from_base64(text: str) -> bytes:
    """Standard or URL-safe base64 (not both mixed); whitespace is ignored and missing padding at
    the end is tolerated, but padding elsewhere, too much of it, or a group that cannot be whole
    is refused with the reason."""
    chars = [(i, c) for i, c in enumerate(text) if not c.isspace()]
    if not chars:
        return b""
    alphabet = None
    pad_at = None
    for i, c in chars:
        if c == "=":
            if pad_at is None:
                pad_at = i
            continue
        if pad_at is not None:
            raise PayloadError(
                f"This is not valid base64: '=' at position {pad_at + 1} is padding, which belongs only at the end."
            )
        if c in "+/" or c in "-_":
            kind = _BASE64_STANDARD if c in "+/" else _BASE64_URLSAFE
            if alphabet is not None and alphabet is not kind:
                raise PayloadError(
                    f"This is not valid base64: {c!r} at position {i + 1} mixes the standard (+/) and URL-safe "
                    "(-_) alphabets."
                )
            alphabet = kind
        elif c not in _BASE64_STANDARD:
            raise PayloadError(f"This is not valid base64; {c!r} at position {i + 1} is not a base64 character.")
    data = "".join(c for _, c in chars if c != "=")
    pads = len(chars) - len(data)
    if len(data) % 4 == 1:
        plural = "s" if len(data) != 1 else ""
        raise PayloadError(
            f"This is not valid base64: it has {len(data)} character{plural}, and base64 comes in groups of four "
            "where the last has at least two (a character is missing or one too many)."
        )
    if pads and (pads > 2 or (len(data) + pads) % 4):
        needed = -len(data) % 4
        raise PayloadError(
            f"This is not valid base64: the padding at the end is {pads} '=' where {needed or 'none'} "
            f"{'is' if needed == 1 else 'are'} needed."
        )
    padded = data + "=" * (-len(data) % 4)
    try:
        if alphabet is _BASE64_URLSAFE:
            return base64.urlsafe_b64decode(padded)
        return base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError):
        raise PayloadError("This is not valid base64.") from None


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
        if not values.strip():
            return b""
        try:
            values = orjson.loads(values)
        except orjson.JSONDecodeError as exc:
            raise PayloadError(
                f"A byte array looks like [1, 2, 255]; this one has {json_error_text(exc, values)}."
            ) from None
    if not isinstance(values, list):
        raise PayloadError("A byte array must be a list of numbers from 0 to 255, in brackets: [1, 2, 255].")
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


FORMAT_LABELS = {"hex": "hex", "base64": "base64", "text": "UTF-8 text", "json": "JSON", "bytes": "byte array"}


def convert(text: str, source: str, target: str) -> str:
    """What was typed in `source` format, shown in `target` format; the same bytes either way.

    PayloadError when the input is not valid `source` ("Fix the hex first: ...") or when the
    bytes cannot be shown as `target` without loss (not UTF-8, not JSON)."""
    if source == target:
        return text
    try:
        data = decode(text, source)
    except PayloadError as exc:
        raise PayloadError(f"Fix the {FORMAT_LABELS.get(source, source)} first: {_lower_first(str(exc))}") from None
    try:
        return encode(data, target)
    except PayloadError as exc:
        raise PayloadError(
            f"This cannot be shown as {FORMAT_LABELS.get(target, target)}: {_lower_first(str(exc))}"
        ) from None


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


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

"""The details of one event: header, raw message, frame payload, decoded object, gateways.

Only the visible tab is rendered: arrowing through a million rows costs one tab's work per
row, and bodies are capped (RENDER_LIMIT characters, HEX_LIMIT bytes of hex dump) so a
multi-megabyte message never freezes the window.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import re
from typing import Protocol

import orjson
from PySide6.QtCore import Qt
from PySide6.QtGui import QFont, QFontDatabase, QPalette, QTextOption
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFormLayout,
    QHeaderView,
    QLabel,
    QPlainTextEdit,
    QSizePolicy,
    QStackedWidget,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.reception import gateway_receptions

log = logging.getLogger(__name__)

RENDER_LIMIT = 256 * 1024  # characters of message body shown
HEX_LIMIT = 64 * 1024  # bytes shown as a hex dump (about 290 000 characters)
PARSE_LIMIT = 16 * 1024 * 1024  # larger bodies are shown as text, not parsed as JSON
TREE_LIMIT = 5000  # items in the decoded tree
VALUE_LIMIT = 2000  # characters of one decoded value
WARNING_STYLE = (  # {text}, {rgb}: a strong red on light themes, a light red on dark ones
    "QLabel {{ color: {text}; background: rgba({rgb}, 0.12); border: 1px solid rgba({rgb}, 0.55);"
    " border-radius: 3px; padding: 4px 6px; font-weight: bold; }}"
)


def warning_style(palette: QPalette) -> str:
    dark = palette.color(QPalette.ColorRole.Window).lightness() < 128
    return WARNING_STYLE.format(text="#ff8a80" if dark else "#b00020", rgb="255, 90, 90" if dark else "176, 0, 32")


EMPTY_TEXT = "Select a row to see its details."
NO_RAW_TEXT = (
    "The raw message of this event is not available: message history is off, or this message is no longer stored."
)
TAB_NAMES = ("Message", "Payload", "Decoded", "Gateways")


class RawMessage(Protocol):
    """What the history store gives back for a row (app.history.RawRecord)."""

    topic: str
    payload: bytes
    properties: dict | None
    received_at: str | None
    correlation_ids: tuple[str, ...]


# ----- formatting (pure functions, tested on their own) ---------------------------------------

_ASCII = bytes(b if 0x20 <= b < 0x7F else 0x2E for b in range(256))


def hex_dump(data: bytes, limit: int | None = HEX_LIMIT) -> str:
    """The classic dump: offset, 16 bytes in hex (two groups of 8), the same bytes as ASCII."""
    data = bytes(data)
    shown = data if limit is None else data[:limit]
    width = 4 if len(data) <= 0x10000 else 8
    lines = []
    for offset in range(0, len(shown), 16):
        chunk = shown[offset : offset + 16]
        hexes = chunk.hex(" ")
        if len(chunk) > 8:
            hexes = hexes[:23] + "  " + hexes[24:]
        lines.append(f"{offset:0{width}x}  {hexes:<48}  |{chunk.translate(_ASCII).decode('ascii')}|")
    return "\n".join(lines)


def size_text(n: int) -> str:
    if n < 1024:
        return f"{n} byte" + ("" if n == 1 else "s")
    if n < 1024 * 1024:
        return f"{n / 1024:.1f} KB".replace(".0 KB", " KB")
    return f"{n / (1024 * 1024):.1f} MB"


def printable_text(data: bytes) -> str | None:
    """The bytes as UTF-8 text if they are text a person can read (tabs and newlines allowed)."""
    try:
        text = bytes(data).decode("utf-8")
    except UnicodeDecodeError:
        return None
    if not text:
        return None
    stripped = text.replace("\n", "").replace("\r", "").replace("\t", "")
    return text if stripped.isprintable() else None


def format_body(payload: bytes, limit: int = RENDER_LIMIT) -> tuple[str, str, str]:
    """(text, kind, note): the body as indented JSON, text or a hex dump, capped at `limit`
    characters; kind is 'json', 'text', 'binary' or 'empty'; note says what was left out."""
    data = bytes(payload or b"")
    if not data:
        return "", "empty", ""
    if len(data) <= PARSE_LIMIT:
        pretty = _pretty_json(data)
        if pretty is not None:
            text, note = _cap(pretty, limit, "of the indented JSON")
            return text, "json", note
    head = data[: limit * 4]  # UTF-8: at most 4 bytes a character
    text = printable_text(head if len(head) == len(data) else _utf8_prefix(head))
    if text is not None:
        capped, note = _cap(text, limit, "of the text")
        if len(head) < len(data) and not note:
            note = f"Showing the first {size_text(len(head))} of {size_text(len(data))}."
        return capped, "text", note
    hex_limit = max(16, limit // 80 * 16)  # a dump line: 79 characters for 16 bytes
    note = ""
    if len(data) > hex_limit:
        note = f"Showing the first {size_text(hex_limit)} of {size_text(len(data))} as hex."
    return hex_dump(data, hex_limit), "binary", note


def _utf8_prefix(data: bytes) -> bytes:
    """Cuts a truncated UTF-8 sequence off the end, so a cut multi-byte character does not make text binary."""
    for back in range(1, 4):
        if len(data) >= back and data[-back] & 0xC0 == 0xC0:  # a lead byte
            return data[:-back]
        if len(data) >= back and data[-back] & 0xC0 != 0x80:  # ASCII: complete
            break
    return data


_LONG_NUMBER = re.compile(rb"[0-9]{20}")  # 2**64 has 20 digits


def _pretty_json(data: bytes) -> str | None:
    # orjson reads integers beyond 64 bits as floats (precision lost): the stdlib keeps them exact.
    if len(data) <= 4 * 1024 * 1024 and _LONG_NUMBER.search(data):
        try:
            return json.dumps(json.loads(data), indent=2, ensure_ascii=False)
        except (ValueError, RecursionError):
            return None
    try:
        return orjson.dumps(orjson.loads(data), option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode()
    except (orjson.JSONDecodeError, orjson.JSONEncodeError, TypeError):
        pass
    if len(data) > 1024 * 1024:
        return None
    try:  # what orjson refuses but the stdlib reads (NaN, Infinity)
        return json.dumps(json.loads(data), indent=2, ensure_ascii=False)
    except (ValueError, RecursionError):
        return None


def _cap(text: str, limit: int, what: str) -> tuple[str, str]:
    if len(text) <= limit:
        return text, ""
    cut = text.rfind("\n", 0, limit)
    cut = cut if cut > limit // 2 else limit
    return text[:cut] + "\n…", f"Showing the first {size_text(cut)} {what} ({size_text(len(text))} in all)."


def property_lines(properties: dict | None, limit: int = 50) -> list[str]:
    """MQTT 5 properties, one 'name: value' line each (user properties as 'key = value')."""
    if not properties:
        return []
    lines = []
    for name, value in properties.items():
        label = str(name).replace("_", " ")
        if name == "user_properties" and isinstance(value, (list, tuple)):
            for pair in value:
                if isinstance(pair, (list, tuple)) and len(pair) == 2:
                    lines.append(f"user property: {pair[0]} = {pair[1]}")
                else:
                    lines.append(f"user property: {pair}")
            continue
        if isinstance(value, (bytes, bytearray, memoryview)):
            value = bytes(value)
            text = printable_text(value)
            value = text if text is not None else "0x" + value[:256].hex()
        lines.append(f"{label}: {value}")
    if len(lines) > limit:
        lines = lines[:limit] + [f"… {len(lines) - limit} more"]
    return lines


def event_time_text(ts) -> str:
    """Epoch seconds as local date and time to the millisecond ('' when unknown)."""
    if ts is None or ts != ts:
        return ""
    try:
        moment = dt.datetime.fromtimestamp(float(ts)).astimezone()
    except (OverflowError, OSError, ValueError, TypeError):
        return ""
    return moment.strftime("%Y-%m-%d %H:%M:%S.") + f"{moment.microsecond // 1000:03d}"


_FRACTION = re.compile(r"(\.\d{1,6})\d*")


def reception_time_text(text, event_day: str = "") -> str:
    """A gateway's ISO time as local 'HH:MM:SS.mmm' (with the date when it is not event_day,
    'YYYY-MM-DD'); text that is not ISO 8601 as it is."""
    if not isinstance(text, str) or not text:
        return ""
    try:  # fromisoformat takes at most microseconds: TTS sends nanoseconds
        moment = dt.datetime.fromisoformat(_FRACTION.sub(r"\1", text.strip(), count=1).replace("Z", "+00:00"))
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=dt.UTC)
        moment = moment.astimezone()
    except (ValueError, OverflowError, OSError):
        return text
    shown = moment.strftime("%H:%M:%S.") + f"{moment.microsecond // 1000:03d}"
    day = moment.strftime("%Y-%m-%d")
    return shown if day == event_day else f"{day} {shown}"


def platform_label(name) -> str:
    try:
        from app import platforms

        return platforms.get(name).label
    except Exception:
        return str(name or "")


def header_lines(row: dict) -> tuple[str, str]:
    """(what, when and how): 'uplink · dev1 · DevEUI … · fPort 15 · fCnt 42' and
    'time · platform · SF7 BW125 · 868.5 MHz · RSSI … · SNR … · 3 gateways' (the parts present)."""
    what = [str(row.get("kind") or "event")]
    device = row.get("device_id")
    dev_eui = row.get("dev_eui")
    if device and device != dev_eui:
        what.append(str(device))
    if dev_eui:
        what.append(f"DevEUI {dev_eui}")
    if row.get("f_port") is not None:
        what.append(f"fPort {row['f_port']}")
    if row.get("f_cnt") is not None:
        what.append(f"fCnt {row['f_cnt']}")
    how = [event_time_text(row.get("ts")), platform_label(row.get("platform"))]
    sf, bw = row.get("spreading_factor"), row.get("bandwidth_hz")
    if sf is not None:
        how.append(f"SF{sf}" + (f" BW{bw // 1000:g}" if isinstance(bw, int) and bw >= 1000 else ""))
    freq = row.get("frequency_hz")
    if freq:
        how.append(f"{freq / 1e6:.6g} MHz")
    if row.get("rssi") is not None:
        how.append(f"RSSI {row['rssi']:g} dBm")
    if row.get("snr") is not None:
        how.append(f"SNR {row['snr']:g} dB")
    gateways = row.get("gateways")
    if gateways:
        how.append(f"{gateways} gateway{'s' if gateways != 1 else ''}")
    return SEPARATOR.join(what), SEPARATOR.join(p for p in how if p)


SEPARATOR = "  ·  "


# ----- the widget -----------------------------------------------------------------------------


def _mono_font() -> QFont:
    return QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)


def _text_view(mono: bool = True, wrap: bool = False) -> QPlainTextEdit:
    view = QPlainTextEdit()
    view.setReadOnly(True)
    view.setUndoRedoEnabled(False)
    view.setLineWrapMode(QPlainTextEdit.LineWrapMode.WidgetWidth if wrap else QPlainTextEdit.LineWrapMode.NoWrap)
    if mono:
        view.setFont(_mono_font())
    return view


def _muted(label: QLabel) -> QLabel:
    """Secondary text: the text colour, a little faded (readable in light and dark themes)."""
    c = label.palette().color(QPalette.ColorRole.WindowText)
    label.setStyleSheet(f"QLabel {{ color: rgba({c.red()}, {c.green()}, {c.blue()}, 170); }}")
    label.setWordWrap(True)
    return label


class _FitText(QPlainTextEdit):
    """A read-only monospace box as tall as its wrapped text, from one to max_lines lines."""

    def __init__(self, max_lines: int = 4) -> None:
        super().__init__()
        self.max_lines = max_lines
        self.setReadOnly(True)
        self.setUndoRedoEnabled(False)
        self.setFont(_mono_font())
        self.setLineWrapMode(QPlainTextEdit.LineWrapMode.WidgetWidth)
        self.setWordWrapMode(QTextOption.WrapMode.WrapAnywhere)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self._fit(1)

    def setPlainText(self, text: str) -> None:  # noqa: N802 (Qt's name)
        super().setPlainText(text)
        self._refit()

    def resizeEvent(self, event) -> None:  # noqa: N802
        super().resizeEvent(event)
        self._refit()

    def _refit(self) -> None:
        width = max(1, self.viewport().width() - 2 * int(self.document().documentMargin()))
        # A little narrower than the box: the estimate may wrap one line late, never early.
        per_line = max(1, width // max(1, self.fontMetrics().horizontalAdvance("0")) - 2)
        lines = sum(max(1, -(-len(line) // per_line)) for line in self.toPlainText()[:4096].split("\n"))
        self._fit(min(self.max_lines, max(1, lines)))

    def _fit(self, lines: int) -> None:
        margin = 2 * (self.frameWidth() + int(self.document().documentMargin()))
        self.setFixedHeight(self.fontMetrics().lineSpacing() * lines + margin + 2)


def _selectable(label: QLabel) -> QLabel:
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    label.setTextFormat(Qt.TextFormat.PlainText)
    label.setWordWrap(True)
    return label


class _Placeheld(QStackedWidget):
    """A tab's content, or a sentence in its place."""

    def __init__(self, content: QWidget) -> None:
        super().__init__()
        self.message = _muted(QLabel())
        self.message.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.message.setMargin(24)
        self.addWidget(content)
        self.addWidget(self.message)

    def show_content(self) -> None:
        self.setCurrentIndex(0)

    def show_message(self, text: str) -> None:
        self.message.setText(text)
        self.setCurrentIndex(1)

    @property
    def showing_message(self) -> bool:
        return self.currentIndex() == 1


DUP_LINE = "⟳  Redelivered by the broker (MQTT DUP flag): this message may have been shown once already."
REPEAT_LINE = "⟳  Same device and frame counter as an earlier row: a duplicate the platform forwarded again."


def redelivery_lines(row: dict) -> list[str]:
    """The details pane's lines about a row delivered twice ("dup": the MQTT DUP flag; "repeat":
    a platform-level duplicate, same device and frame counter as an earlier row)."""
    lines = []
    if row.get("dup"):
        lines.append(DUP_LINE)
    if row.get("repeat"):
        lines.append(REPEAT_LINE)
    return lines


class DetailsPane(QWidget):
    """show_event(row, raw): row is EventStore.row(pos) (a dict of ROW_FIELDS); raw is the stored
    message (topic, payload, properties, received_at, correlation_ids) or None."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._row: dict | None = None
        self._raw = None
        self._stale: set[int] = set()

        self.empty = _muted(QLabel(EMPTY_TEXT))
        self.empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty.setWordWrap(True)

        self.header = _selectable(QLabel())
        font = self.header.font()
        font.setBold(True)
        font.setPointSizeF(font.pointSizeF() * 1.1)
        self.header.setFont(font)
        self.subheader = _muted(_selectable(QLabel()))
        self.error = _selectable(QLabel())
        self.error.setObjectName("warning")
        self.error.setStyleSheet(warning_style(self.palette()))
        self.error.hide()
        # A message the broker delivered again (MQTT DUP flag) or a frame counter seen before.
        self.redelivery = _selectable(QLabel())
        self.redelivery.setObjectName("hint")
        self.redelivery.setWordWrap(True)
        self.redelivery.hide()

        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        self.tabs.addTab(self._build_message_tab(), "Message")
        self.tabs.addTab(self._build_payload_tab(), "Payload")
        self.tabs.addTab(self._build_decoded_tab(), "Decoded")
        self.tabs.addTab(self._build_gateways_tab(), "Gateways")
        self.tabs.currentChanged.connect(self._render_tab)

        content = QWidget()
        lay = QVBoxLayout(content)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(6)
        header = QVBoxLayout()
        header.setSpacing(1)
        header.addWidget(self.header)
        header.addWidget(self.subheader)
        lay.addLayout(header)
        lay.addWidget(self.error)
        lay.addWidget(self.redelivery)
        lay.addWidget(self.tabs, 1)

        self.stack = QStackedWidget()
        self.stack.addWidget(self.empty)
        self.stack.addWidget(content)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(6, 6, 6, 6)
        outer.addWidget(self.stack)

    def changeEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        super().changeEvent(event)
        if event.type() == event.Type.PaletteChange:
            self.error.setStyleSheet(warning_style(self.palette()))

    # ----- building

    def _build_message_tab(self) -> QWidget:
        page = QWidget()
        lay = QVBoxLayout(page)
        lay.setContentsMargins(4, 6, 4, 4)
        self.message_form = QFormLayout()
        self.message_form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        self.topic_label = _selectable(QLabel())
        self.topic_label.setFont(_mono_font())
        self.received_label = _selectable(QLabel())
        self.correlation_label = _selectable(QLabel())
        self.properties_label = _selectable(QLabel())
        self.message_form.addRow("Topic", self.topic_label)
        self.message_form.addRow("Received", self.received_label)
        self.message_form.addRow("Correlation IDs", self.correlation_label)
        self.message_form.addRow("MQTT 5 properties", self.properties_label)
        self.body_note = QLabel()
        self.body_view = _text_view()
        lay.addLayout(self.message_form)
        lay.addWidget(self.body_note)
        lay.addWidget(self.body_view, 1)
        self.message_page = _Placeheld(page)
        return self.message_page

    def _build_payload_tab(self) -> QWidget:
        page = QWidget()
        lay = QVBoxLayout(page)
        lay.setContentsMargins(4, 6, 4, 4)
        self.payload_summary = QLabel()
        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        self.payload_hex = _FitText()
        self.payload_text = _FitText()
        self.payload_base64 = _FitText()
        form.addRow("Hex", self.payload_hex)
        form.addRow("Text (UTF-8)", self.payload_text)
        form.addRow("Base64", self.payload_base64)
        self.payload_form = form
        self.hex_view = _text_view()
        lay.addWidget(self.payload_summary)
        lay.addLayout(form)
        lay.addWidget(self.hex_view, 1)
        self.payload_page = _Placeheld(page)
        return self.payload_page

    def _build_decoded_tab(self) -> QWidget:
        self.decoded_tree = QTreeWidget()
        self.decoded_tree.setColumnCount(2)
        self.decoded_tree.setHeaderLabels(["Key", "Value"])
        self.decoded_tree.setUniformRowHeights(True)
        self.decoded_tree.setAlternatingRowColors(True)
        self.decoded_tree.header().setSectionResizeMode(0, QHeaderView.ResizeMode.Interactive)
        self.decoded_tree.header().setStretchLastSection(True)
        self.decoded_tree.setFont(_mono_font())
        self.decoded_page = _Placeheld(self.decoded_tree)
        return self.decoded_page

    def _build_gateways_tab(self) -> QWidget:
        page = QWidget()
        lay = QVBoxLayout(page)
        lay.setContentsMargins(4, 6, 4, 4)
        self.gateways_summary = QLabel()
        self.gateway_table = QTableWidget(0, len(_GATEWAY_COLUMNS))
        self.gateway_table.setHorizontalHeaderLabels([c[0] for c in _GATEWAY_COLUMNS])
        self.gateway_table.verticalHeader().hide()
        self.gateway_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.gateway_table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.gateway_table.setAlternatingRowColors(True)
        header = self.gateway_table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)
        self.gateway_table.verticalHeader().setDefaultSectionSize(self.gateway_table.fontMetrics().height() + 8)
        self.gateway_table.setWordWrap(False)
        lay.addWidget(self.gateways_summary)
        lay.addWidget(self.gateway_table, 1)
        self.gateways_page = _Placeheld(page)
        return self.gateways_page

    # ----- showing

    def show_event(self, row: dict | None, raw: RawMessage | None = None) -> None:
        self._row, self._raw = row, raw
        if row is None:
            self.stack.setCurrentIndex(0)
            self._clear()
            return
        self.stack.setCurrentIndex(1)
        what, how = header_lines(row)
        self.header.setText(what)
        self.subheader.setText(how)
        error = row.get("error")
        self.error.setText(f"⚠  {error}" if error else "")
        self.error.setVisible(bool(error))
        notes = redelivery_lines(row)
        self.redelivery.setText("\n".join(notes))
        self.redelivery.setVisible(bool(notes))
        self._stale = set(range(self.tabs.count()))
        self._render_tab(self.tabs.currentIndex())

    def render_all(self) -> None:
        """Renders every tab now (normally a tab renders when it is first shown for a row)."""
        for index in range(self.tabs.count()):
            self._render_tab(index)

    def _clear(self) -> None:
        self._stale = set()
        self.body_view.clear()
        self.hex_view.clear()
        self.decoded_tree.clear()
        self.gateway_table.setRowCount(0)

    def _render_tab(self, index: int) -> None:
        if index not in self._stale or self._row is None:
            return
        self._stale.discard(index)
        pages = (self.message_page, self.payload_page, self.decoded_page, self.gateways_page)
        renderers = (self._render_message, self._render_payload, self._render_decoded, self._render_gateways)
        try:
            renderers[index]()
        except Exception as exc:  # a malformed row or record must not break row selection
            log.exception("Could not show the %s tab", TAB_NAMES[index])
            pages[index].show_message(f"This could not be shown: {exc}")

    def _render_message(self) -> None:
        raw = self._raw
        if raw is None:
            self.body_view.clear()
            self.message_page.show_message(NO_RAW_TEXT)
            return
        self.message_page.show_content()
        form = self.message_form
        self.topic_label.setText(str(getattr(raw, "topic", "") or ""))
        received = getattr(raw, "received_at", None)
        self.received_label.setText(str(received or ""))
        form.setRowVisible(self.received_label, bool(received))
        ids = tuple(getattr(raw, "correlation_ids", None) or ())
        shown_ids = list(ids[:20]) + ([f"… {len(ids) - 20} more"] if len(ids) > 20 else [])
        self.correlation_label.setText("\n".join(map(str, shown_ids)))
        form.setRowVisible(self.correlation_label, bool(ids))
        lines = property_lines(getattr(raw, "properties", None))
        self.properties_label.setText("\n".join(lines))
        form.setRowVisible(self.properties_label, bool(lines))

        payload = getattr(raw, "payload", b"") or b""
        if isinstance(payload, str):
            payload = payload.encode()
        text, kind, note = format_body(payload)
        description = {"json": "JSON", "text": "Text", "binary": "Binary", "empty": "Empty body"}[kind]
        summary = f"{description}, {size_text(len(payload))}" if kind != "empty" else description
        self.body_note.setText(f"{summary}. {note}" if note else summary)
        wrap = kind == "text"
        self.body_view.setLineWrapMode(
            QPlainTextEdit.LineWrapMode.WidgetWidth if wrap else QPlainTextEdit.LineWrapMode.NoWrap
        )
        self.body_view.setPlainText(text)

    def _render_payload(self) -> None:
        payload = bytes(self._row.get("payload") or b"")
        if not payload:
            self.hex_view.clear()
            self.payload_page.show_message("This event carries no frame payload.")
            return
        self.payload_page.show_content()
        note = ""
        if len(payload) > HEX_LIMIT:
            note = f" Showing the first {size_text(HEX_LIMIT)}."
        port = self._row.get("f_port")
        self.payload_summary.setText(
            f"{size_text(len(payload))}" + (f" on fPort {port}" if port is not None else "") + "." + note
        )
        self.hex_view.setPlainText(hex_dump(payload, HEX_LIMIT))
        head = payload[:HEX_LIMIT]
        more = "…" if len(payload) > HEX_LIMIT else ""
        self.payload_hex.setPlainText(head.hex().upper() + more)
        self.payload_base64.setPlainText(base64.b64encode(head).decode() + more)
        text = printable_text(payload) if len(payload) <= HEX_LIMIT else None
        self.payload_text.setPlainText(text or "")
        self.payload_form.setRowVisible(self.payload_text, text is not None)

    def _render_decoded(self) -> None:
        tree = self.decoded_tree
        tree.clear()
        data = self._row.get("decoded") or b""
        if not data:
            self.decoded_page.show_message("Nothing was decoded for this event.")
            return
        try:
            value = orjson.loads(data)
        except orjson.JSONDecodeError:
            try:
                value = json.loads(data)
            except (ValueError, RecursionError):
                value = bytes(data).decode("utf-8", "replace")
        self.decoded_page.show_content()
        tree.setUpdatesEnabled(False)
        try:
            budget = [TREE_LIMIT]
            items = _children(value, budget) if isinstance(value, (dict, list)) else [_item("value", value, budget)]
            tree.addTopLevelItems(items)
            if budget[0] < 0:
                tree.addTopLevelItem(QTreeWidgetItem([f"… only the first {TREE_LIMIT} values are shown", ""]))
            if TREE_LIMIT - budget[0] <= 200:
                tree.expandAll()
            else:
                tree.expandToDepth(0)
            tree.resizeColumnToContents(0)
            tree.setColumnWidth(0, min(tree.columnWidth(0) + 16, max(160, tree.width() // 2)))
        finally:
            tree.setUpdatesEnabled(True)

    def _render_gateways(self) -> None:
        table = self.gateway_table
        raw = self._raw
        if raw is None:
            table.setRowCount(0)
            self.gateways_page.show_message(NO_RAW_TEXT + " The per-gateway receptions are read from it.")
            return
        rows = gateway_receptions(self._row.get("platform") or "", getattr(raw, "payload", b"") or b"")
        if not rows:
            table.setRowCount(0)
            platform = self._row.get("platform")
            if platform in ("tts", "thingpark", "tektelic"):
                text = "This message carries no per-gateway reception data."
            else:
                text = f"{platform_label(platform) or 'This platform'} messages carry no per-gateway reception data."
            self.gateways_page.show_message(text)
            return
        self.gateways_page.show_content()
        n = len(rows)
        self.gateways_summary.setText(
            f"Received by {n} gateway{'s' if n != 1 else ''}, strongest signal first."
            if n > 1
            else "Received by 1 gateway."
        )
        table.setSortingEnabled(False)
        table.setRowCount(n)
        bold = table.font()
        bold.setBold(True)
        right = Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
        event_day = event_time_text(self._row.get("ts"))[:10]
        for r, reception in enumerate(rows):
            for c, (_title, key, fmt, align_right) in enumerate(_GATEWAY_COLUMNS):
                if key == "time":
                    item = QTableWidgetItem(reception_time_text(reception.get("time"), event_day))
                    item.setToolTip(str(reception.get("time") or ""))
                else:
                    item = QTableWidgetItem(fmt(reception, key))
                if align_right:
                    item.setTextAlignment(right)
                if r == 0 and n > 1:
                    item.setFont(bold)
                table.setItem(r, c, item)
        for c, (_title, key, _fmt, _align) in enumerate(_GATEWAY_COLUMNS):
            if key in _OPTIONAL_GATEWAY_KEYS:
                table.setColumnHidden(c, not any(key in reception for reception in rows))


# ----- helpers for the tabs -------------------------------------------------------------------


def _scalar_text(value) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    text = json.dumps(value, ensure_ascii=False) if isinstance(value, str) else str(value)
    return text if len(text) <= VALUE_LIMIT else text[:VALUE_LIMIT] + "…"


def _summary(value) -> str:
    if isinstance(value, dict):
        n = len(value)
        return f"{{{n} key{'s' if n != 1 else ''}}}"
    n = len(value)
    return f"[{n} item{'s' if n != 1 else ''}]"


def _item(key: str, value, budget: list[int]) -> QTreeWidgetItem:
    budget[0] -= 1
    if isinstance(value, (dict, list)):
        item = QTreeWidgetItem([key, _summary(value)])
        if budget[0] > 0:
            item.addChildren(_children(value, budget))
        elif value:
            budget[0] = -1  # its children are left out
        return item
    text = _scalar_text(value)
    item = QTreeWidgetItem([key, text])
    if len(text) > 80:
        item.setToolTip(1, text)
    return item


def _children(value, budget: list[int]) -> list[QTreeWidgetItem]:
    pairs = value.items() if isinstance(value, dict) else ((f"[{i}]", v) for i, v in enumerate(value))
    items = []
    for key, child in pairs:
        if budget[0] <= 0:
            budget[0] = -1
            break
        items.append(_item(str(key), child, budget))
    return items


def _number(reception: dict, key: str) -> str:
    value = reception.get(key)
    if value is None:
        return ""
    return f"{value:g}" if isinstance(value, float) else str(value)


def _plain(reception: dict, key: str) -> str:
    value = reception.get(key)
    return "" if value is None else str(value)


def _location(reception: dict, _key: str) -> str:
    lat, lon = reception.get("lat"), reception.get("lon")
    return "" if lat is None or lon is None else f"{lat:.5f}, {lon:.5f}"


# (title, key, formatter, right-aligned)
_GATEWAY_COLUMNS = (
    ("Gateway", "gateway_id", _plain, False),
    ("Name", "name", _plain, False),
    ("RSSI (dBm)", "rssi", _number, True),
    ("SNR (dB)", "snr", _number, True),
    ("Channel", "channel", _plain, True),
    ("Antenna", "antenna", _plain, True),
    ("Location", "lat", _location, False),
    ("Time", "time", _plain, False),
)
_OPTIONAL_GATEWAY_KEYS = ("name", "antenna", "lat")

"""The payload editor: every format to every other and back, the reasons for invalid input, and
the widget that refuses a switch that would lose something."""

from __future__ import annotations

import base64
import itertools

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.payload import FORMATS, PayloadError, convert, decode, encode

# One payload every format can show: UTF-8 text that is also a JSON document.
JSON_TEXT = '{"led": true, "level": 3, "name": "Küche"}'
JSON_BYTES = orjson.dumps(orjson.loads(JSON_TEXT))
AS = {
    "hex": JSON_BYTES.hex(),
    "base64": base64.b64encode(JSON_BYTES).decode(),
    "text": JSON_BYTES.decode(),
    "json": orjson.dumps(orjson.loads(JSON_BYTES), option=orjson.OPT_INDENT_2).decode(),
    "bytes": "[" + ", ".join(str(b) for b in JSON_BYTES) + "]",
}


@pytest.mark.parametrize(("source", "target"), list(itertools.permutations(FORMATS, 2)))
def test_every_pair_converts_both_ways_with_the_same_bytes(source, target):
    there = convert(AS[source], source, target)
    assert decode(there, target) == JSON_BYTES
    back = convert(there, target, source)
    assert decode(back, source) == JSON_BYTES
    assert back == AS[source] or source == "json" and orjson.loads(back) == orjson.loads(AS[source])


@pytest.mark.parametrize("target", ["hex", "base64", "bytes"])
def test_binary_bytes_go_between_the_binary_formats(target):
    data = bytes(range(256))
    for source in ("hex", "base64", "bytes"):
        assert decode(convert(encode(data, source), source, target), target) == data


def test_bytes_that_are_not_utf8_are_not_shown_as_text_and_say_where():
    with pytest.raises(PayloadError, match=r"UTF-8 text.*byte 2 is 0xff"):
        convert("41 ff", "hex", "text")


def test_text_that_is_not_json_is_not_shown_as_json():
    with pytest.raises(PayloadError, match=r"cannot be shown as JSON.*not JSON.*line 1, column 1"):
        convert("hello", "text", "json")


def test_switching_from_invalid_input_says_to_fix_it_first():
    with pytest.raises(PayloadError, match=r"Fix the hex first: hex needs an even number"):
        convert("abc", "hex", "base64")


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300), st.sampled_from(["hex", "base64", "bytes"]))
def test_any_bytes_round_trip_through_the_binary_formats(data, fmt):
    assert decode(encode(data, fmt), fmt) == data


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_any_text_round_trips_through_text_hex_and_base64(text):
    data = decode(text, "text")
    for fmt in ("hex", "base64", "bytes"):
        assert convert(convert(text, "text", fmt), fmt, "text") == text
    assert data == text.encode()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None)
@given(json_values)
def test_any_json_round_trips_through_every_format(value):
    text = orjson.dumps(value).decode()
    data = decode(text, "json")
    for fmt in FORMATS:
        shown = convert(text, "json", fmt)
        assert decode(shown, fmt) == data
        assert orjson.loads(convert(shown, fmt, "json")) == value


@pytest.mark.parametrize(
    ("fmt", "text", "reason"),
    [
        ("hex", "01 02 0", "even number of digits; 5 were given"),
        ("hex", "01 0g", "found 'g' at position 5"),
        ("hex", "0x01:0xZ2", "found 'Z' at position 8"),
        ("base64", "AQ!D", "'!' at position 3 is not a base64 character"),
        ("base64", "AQ==AQ==", "'=' at position 3 is padding, which belongs only at the end"),
        ("base64", "AQ=", "padding at the end is 1 '=' where 2 are needed"),
        ("base64", "AQ===", "padding at the end is 3 '='"),
        ("base64", "AQIDB", "5 characters, and base64 comes in groups of four"),
        ("base64", "A+-B", r"mixes the standard \(\+/\) and URL-safe \(-_\) alphabets"),
        ("json", '{"a": 1,\n  "b": }', "not valid JSON: .* at line 2, column 8"),
        ("json", '{"a": 1', "not valid JSON: .* at line 1, column 8"),
        ("bytes", "[1, 2, 256]", "Byte 3 of the array is 256"),
        ("bytes", "[1, true]", "Byte 2 of the array is True"),
        ("bytes", "1, 2", "looks like \\[1, 2, 255\\]"),
    ],
)
def test_each_invalid_input_gives_its_reason(fmt, text, reason):
    with pytest.raises(PayloadError, match=reason):
        decode(text, fmt)


def test_hex_separators_and_prefixes_are_allowed():
    assert decode("0x01 0x02:ff-10\n20", "hex") == b"\x01\x02\xff\x10\x20"
    assert decode("AQL/\n", "base64") == decode("AQL_", "base64") == b"\x01\x02\xff"
    assert decode("AQ", "base64") == b"\x01"  # missing padding at the end is tolerated


# ----- the widget ------------------------------------------------------------------------------


def test_editor_switches_without_changing_the_bytes(qtbot):
    from ui.downlink.payload_editor import PayloadEditor

    editor = PayloadEditor()
    qtbot.addWidget(editor)
    editor.edit.setPlainText("48 69 21")
    assert editor.payload() == b"Hi!" and editor.valid
    for fmt in ("base64", "text", "bytes", "hex"):
        assert editor.switch_to(fmt)
        assert editor.format == fmt and editor.payload() == b"Hi!"
    assert editor.text() == "486921"


def test_editor_marks_invalid_input_inline_and_refuses_a_lossy_switch(qtbot):
    from ui.downlink.payload_editor import PayloadEditor

    editor = PayloadEditor()
    qtbot.addWidget(editor)
    editor.show()
    editor.edit.setPlainText("01 0g")
    assert not editor.valid and editor.payload() is None
    assert editor.reason.isVisible() and "found 'g' at position 5" in editor.reason.text()
    assert not editor.switch_to("base64")  # invalid: stays hex
    assert editor.format == "hex" and editor.format_box.currentData() == "hex"
    editor.edit.setPlainText("ff fe")
    assert editor.valid and not editor.reason.isVisible()
    assert not editor.switch_to("text")  # not UTF-8
    assert editor.format == "hex" and editor.text() == "ff fe"
    assert "Still hex" in editor.reason.text() and "not UTF-8" in editor.reason.text()
    assert editor.switch_to("bytes") and editor.text() == "[255, 254]"

"""What no message may do to the live path: crash it, or break the table.

Every message goes the engine's way (app/mqtt/process.py): the TTS fast path if it takes it, else
parse_or_error -> event_row; the rows of a batch go through columns_from_rows into
EventStore.append_columns. Whatever the bytes, nothing raises, every column keeps the same length,
every message gives at least one row, and a message with a value the table cannot hold (an integer
beyond 64 bits, a number beyond a float, JSON nested 100,000 deep, 5 MiB) is an error row whose
text names the field or says why.
"""

from __future__ import annotations

import json
import math
from functools import cache
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app import platforms
from app.events import error_event
from app.history import HistoryReader, HistoryWriter, Retention
from app.platforms.base import MAX_BODY, MAX_DEPTH, NONE_INT, body_problem, json_depth
from app.platforms.tts_fast import uplink_row
from app.store import BYTES_COLS, FLOAT_COLS, INT_COLS, ROW_FIELDS, STR_COLS, EventStore, columns_from_rows, event_row

SAMPLES = Path(__file__).resolve().parent / "samples"
TS = 1_700_000_000.0
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
F = {name: i for i, name in enumerate(ROW_FIELDS)}


def tektelic_uplink() -> dict:
    meta = {
        "applicationId": "f8c1b0e0-da68-11ec-9f49-f7efa75f53dd",
        "deviceEui": "647FDA0300004AAB",
        "deviceName": "Device Name",
        "fPort": 10,
        "fCntUp": 142,
        "recvTime": 1345291148,
        "devAddr": "076d51cf",
        "dataRate": 7,
        "uLFreq": 866100000,
        "rfRegion": "EU868",
        "gatewayCount": 1,
        "gatewayRxInfo": [{"gwEui": "647FDAFFFE00CCCB", "rssi": -100, "snr": 9.5, "channel": 0}],
    }
    return {"data": {"bytes": [1, 2, 3]}, "errors": [], "warnings": [], "tektelicMetadata": meta}


def tts_uplink() -> dict:
    doc = orjson.loads((SAMPLES / "tts_up_1.json").read_bytes())
    doc["uplink_message"]["decoded_payload"] = {"temperature": 21.5}
    return doc


# platform -> (topic, base document, numeric fields: (path, kind)). Kinds: "port" (LoRaWAN FPort),
# "fcnt" (frame counter), "int" (a 64-bit column), "float" (RSSI, SNR ...), "json" (a number inside a
# decoded object), each with what the table holds; "tektelic-*": Tektelic leaves an out-of-range
# number out (tests/test_platform_tektelic.py), so only a number beyond a float is refused there.
PLATFORMS = {
    "tts": (
        "v3/app1@ttn/devices/dev1/up",
        tts_uplink,
        [
            (("uplink_message", "f_port"), "port"),
            (("uplink_message", "f_cnt"), "fcnt"),
            (("uplink_message", "rx_metadata", 0, "rssi"), "float"),
            (("uplink_message", "rx_metadata", 0, "snr"), "float"),
            (("uplink_message", "settings", "frequency"), "int"),
            (("uplink_message", "settings", "data_rate", "lora", "spreading_factor"), "int"),
            (("uplink_message", "settings", "data_rate", "lora", "bandwidth"), "int"),
            (("uplink_message", "decoded_payload", "temperature"), "json"),
        ],
    ),
    "thingpark": (
        "mqtt/things/0018B20000000B20/uplink",
        lambda: orjson.loads((SAMPLES / "thingpark_uplink_1.json").read_bytes()),
        [
            (("DevEUI_uplink", "FPort"), "port"),
            (("DevEUI_uplink", "FCntUp"), "fcnt"),
            (("DevEUI_uplink", "LrrRSSI"), "float"),
            (("DevEUI_uplink", "LrrSNR"), "float"),
            (("DevEUI_uplink", "SpFact"), "int"),
            (("DevEUI_uplink", "DevLrrCnt"), "int"),
            (("DevEUI_uplink", "Frequency"), "float"),
            (("DevEUI_uplink", "InstantPER"), "json"),
        ],
    ),
    "tektelic": (
        "push",
        tektelic_uplink,
        [
            (("tektelicMetadata", "fPort"), "tektelic-port"),
            (("tektelicMetadata", "fCntUp"), "tektelic-u32"),
            (("tektelicMetadata", "uLFreq"), "tektelic-u32"),
            (("tektelicMetadata", "gatewayCount"), "tektelic-u32"),
            (("tektelicMetadata", "gatewayRxInfo", 0, "rssi"), "tektelic-float"),
            (("tektelicMetadata", "gatewayRxInfo", 0, "snr"), "tektelic-float"),
            (("data", "bytes", 1), "json"),
        ],
    ),
    "akenza": (
        "/up/device/id/dev1",
        lambda: orjson.loads((SAMPLES / "akenza_uplink_1.json").read_bytes()),
        [(("temperature",), "json")],
    ),
    "drogue": (
        "app/app_id",
        lambda: orjson.loads((SAMPLES / "drogue_structured_1.json").read_bytes()),
        [(("data", "temp"), "json")],
    ),
}
NAMES = sorted(PLATFORMS)

BEYOND_FLOAT = ["1e400", "-1e400", "1E+309", "1" + "0" * 400, "-" + "9" * 400, '"1e400"', '"-1e999"']
BEYOND_INT64 = [
    "99999999999999999999",
    "-99999999999999999999",
    str(2**63),
    str(2**64),
    str(-(2**63) - 1),
    '"99999999999999999999"',
    str(NONE_INT),  # the integer columns' "missing"
]
BEYOND_PORT = ["256", "-1", '"300"']
BEYOND_FCNT = [str(2**32), "-1"]
HOSTILE = {
    "port": BEYOND_FLOAT + BEYOND_INT64 + BEYOND_PORT,
    "fcnt": BEYOND_FLOAT + BEYOND_INT64 + BEYOND_FCNT,
    "int": BEYOND_FLOAT + BEYOND_INT64,
    "float": BEYOND_FLOAT,
    "json": [v for v in BEYOND_FLOAT if not v.startswith('"')],  # a string in a decoded object is just text
    "tektelic-port": [v for v in BEYOND_FLOAT if not v.startswith('"')],
    "tektelic-u32": [v for v in BEYOND_FLOAT if not v.startswith('"')],
    "tektelic-float": [v for v in BEYOND_FLOAT if not v.startswith('"')],
}
# Values that may be refused or left out (Tektelic's rule), never anything else.
LEFT_OUT_OR_REFUSED = {
    "tektelic-port": BEYOND_INT64 + BEYOND_PORT + ['"1e400"', '"-1e999"'],
    "tektelic-u32": BEYOND_INT64 + BEYOND_FCNT + ['"1e400"', '"-1e999"'],
    "tektelic-float": [v for v in BEYOND_FLOAT if v not in HOSTILE["tektelic-float"]],
}
# What Tektelic shows when it leaves a number out: the column, and the value it falls back to.
TEKTELIC_LEFT_OUT = {
    "fPort": ("f_port", None),
    "fCntUp": ("f_cnt", None),
    "uLFreq": ("frequency_hz", None),
    "gatewayCount": ("gateways", 1),  # without a count: the gateways listed
    "rssi": ("rssi", None),
    "snr": ("snr", None),
}
PLACEHOLDER = "\u0001hostile\u0001"


def body_with(doc, replacements: dict) -> bytes:
    """doc as JSON with raw JSON text (any number, even 1e400) at the given paths."""
    doc = orjson.loads(orjson.dumps(doc))
    texts = {}
    for n, (path, raw) in enumerate(replacements.items()):
        node = doc
        for key in path[:-1]:
            node = node[key]
        token = f"{PLACEHOLDER}{n}"
        node[path[-1]] = token
        texts[orjson.dumps(token)] = raw if isinstance(raw, bytes) else raw.encode()
    body = orjson.dumps(doc)
    for token, raw in texts.items():
        body = body.replace(token, raw)
    return body


def receive(name: str, payload: bytes, topic: str | None = None, properties: dict | None = None, row_id: int = 1):
    """The rows of one message, the engine's way: body_problem, the fast path if the platform has one
    (and the message no MQTT 5 properties), else parse_or_error and event_row."""
    platform = platforms.get(name)
    profile = platform.defaults()
    parser = platform.parser_for(profile)
    fast = platform.row_parser(profile)
    topic = PLATFORMS[name][0] if topic is None and name in PLATFORMS else topic or "any/topic"
    problem = parser.body_problem_for(payload, properties)  # body_problem, unless the platform never reads it as JSON
    if problem is not None:
        rows = [event_row(error_event(name, topic, problem), TS, row_id)]
    else:
        rows = None
        if fast is not None and properties is None:
            parsed = fast(topic, payload, TS, row_id)
            if parsed is not None:
                rows = [parsed[0]]
        if rows is None:
            rows = [
                event_row(e, TS, row_id + i) for i, e in enumerate(parser.parse_or_error(topic, payload, properties))
            ]
    # Without body_problem in front, the fast path and parse_or_error give the same rows.
    alone = None
    if fast is not None and properties is None:
        parsed = fast(topic, payload, TS, row_id)
        alone = [parsed[0]] if parsed is not None else None
    if alone is None:
        alone = [event_row(e, TS, row_id + i) for i, e in enumerate(parser.parse_or_error(topic, payload, properties))]
    assert [without_time(r) for r in alone] == [without_time(r) for r in rows]
    return rows


def without_time(row: tuple) -> tuple:
    return row[:1] + row[2:]


def into_store(messages: list[list[tuple]], store: EventStore | None = None) -> EventStore:
    """One batch of every message's rows through columns_from_rows and append_columns."""
    store = store if store is not None else EventStore()
    rows = [r for msg in messages for r in msg]
    before = len(store)
    batch = columns_from_rows(rows)
    assert len(rows) == sum(len(m) for m in messages), "the rows are repaired in place, never dropped"
    store.append_columns(batch)
    lengths = {name: len(col) for name, col in store.cols.items()}
    assert len(set(lengths.values())) == 1, lengths
    assert len(store) == before + len(rows)
    for name in INT_COLS:
        assert store.cols[name].typecode == "q"
    for name in FLOAT_COLS:
        assert all(v != v or math.isfinite(v) for v in store.cols[name])
    for name in STR_COLS:
        assert all(v is None or type(v) is str for v in store.cols[name][before:])
    for name in BYTES_COLS:
        assert all(type(v) is bytes for v in store.cols[name][before:])
    return store


def error_texts(rows: list[tuple]) -> list[str]:
    return [r[F["error"]] for r in rows if r[F["kind"]] == "error"]


def assert_refused_naming(rows: list[tuple], *fields: str) -> None:
    texts = error_texts(rows)
    assert texts, f"an error row, not {rows}"
    assert any(field in text for text in texts for field in fields), (fields, texts)
    for text in texts:
        assert text.endswith(".") and "\n" not in text and len(text) < 1000, text


# ----- the findings, one by one ----------------------------------------------------------------------


def test_an_fport_beyond_64_bits_is_handed_over_by_the_fast_path_and_named_by_the_full_parser():
    topic, doc, _ = PLATFORMS["tts"]
    body = body_with(doc(), {("uplink_message", "f_port"): "99999999999999999999"})
    assert uplink_row(topic, body, TS, 1) is None
    [event] = platforms.get("tts").parse_or_error(topic, body)
    assert event.kind == "error"
    assert event.error == "uplink_message.f_port is 1e+20, beyond any LoRaWAN FPort (0 to 255)."
    # Among valid uplinks: the table takes the batch whole, the bad one as its error row.
    good = orjson.dumps(doc())
    messages = [receive("tts", good, row_id=1), receive("tts", body, row_id=2), receive("tts", good, row_id=3)]
    store = into_store(messages)
    assert [store.value(p, "kind") for p in range(3)] == ["uplink", "error", "uplink"]
    assert store.value(1, "id") == 2 and "f_port" in store.value(1, "error")
    assert [store.value(p, "f_port") for p in range(3)] == [15, None, 15]


def test_an_fport_beyond_64_bits_that_reaches_a_row_is_repaired_in_place_for_the_history_too(tmp_path):
    # A parser bug (or the fast path before these limits) puts the number in the row itself.
    topic, doc, _ = PLATFORMS["tts"]
    good = uplink_row(topic, orjson.dumps(doc()), TS, 1)[0]
    bad = (2, *good[1 : F["f_port"]], 99999999999999999999, *good[F["f_port"] + 1 :])
    rows = [good, bad, (3, *good[1:])]
    store = EventStore()
    store.append_columns(columns_from_rows(rows))
    assert rows[0] is good and rows[1] is not bad, "only the bad row is replaced, in the caller's list"
    assert rows[1][F["kind"]] == "error" and rows[1][F["id"]] == 2 and rows[1][F["topic"]] == topic
    assert "f_port" in rows[1][F["error"]] and "99999999999999999999" in rows[1][F["error"]]
    assert len(store) == 3 and store.value(1, "kind") == "error"
    # The same list, as the engine hands it to the history writer, is stored whole.
    with HistoryWriter(tmp_path / "h.sqlite3", Retention(max_age_days=None, max_rows=None, max_bytes=None)) as w:
        w.take_ids(3)
        w.append(rows)
    with HistoryReader(tmp_path / "h.sqlite3") as r:
        assert r.count() == 3 and r.row(2)["kind"] == "error"


@pytest.mark.parametrize("name", NAMES)
def test_json_nested_100000_deep_is_an_error_row_on_every_platform(name):
    deep = b"[" * 100_000 + b"]" * 100_000
    topic, doc, fields = PLATFORMS[name]
    for body in (deep, body_with(doc(), {fields[0][0]: deep})):
        if name == "tts":
            assert uplink_row(topic, body, TS, 1) is None  # msgspec would raise RecursionError
        rows = receive(name, body)
        assert_refused_naming(rows, "nests JSON")
        into_store([rows])
    assert "100,000 levels deep" in error_texts(receive(name, deep))[0]


def test_the_body_guard_words_size_and_depth():
    assert body_problem(b"x" * (5 * 2**20)) == (
        "The message is 5,242,880 bytes, too large: a platform message is at most 4 MiB."
    )
    assert body_problem(b"[" * 100_000 + b"]" * 100_000) == (
        "The message nests JSON 100,000 levels deep; at most 128 levels are accepted."
    )
    assert body_problem(b"[" * MAX_DEPTH + b"]" * MAX_DEPTH) is None
    assert body_problem(b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1)) is not None
    assert body_problem(b"x" * MAX_BODY) is None


@pytest.mark.parametrize(
    ("body", "depth"),
    [
        (b'{"a": "[[[[[[[[[["}', 1),  # brackets in strings do not nest
        (b'{"a": "\\"[[[[", "b": [1]}', 2),  # nor after an escaped quote
        (b'{"a": "\\\\", "b": [[1]]}', 3),  # an escaped backslash ends nothing
        (b'["\\"' + b"[" * 500, 1),  # an unterminated string: a parser stops there
        (b"\x00\xff" + b"[" * 500, 0),  # binary: no JSON parser reads past the first byte
        (b"[" * 200 + b"\xff" + b"[" * 5000, 200),  # nor past the first byte JSON cannot have
        (b"  \n[" + b'{"k":' * 300 + b"1" + b"}" * 300 + b"]", 301),
        (b"]]]]" + b"[" * 10, 0),  # a parser stops at the first closing bracket
        (b"[]" + b"[" * 500, 1),  # and after the first value
        (b'"text" ' + b"[" * 500, 0),
        (b"7" + b"[" * 500, 0),
    ],
)
def test_the_depth_is_what_a_json_parser_would_nest(body, depth):
    assert json_depth(body) == depth


def test_binary_data_full_of_brackets_is_not_refused_where_it_is_not_read_as_json():
    data = b"\x01" + b"[" * 10_000  # a Drogue binary-mode event's data or an akenza octet-stream uplink
    drogue = {
        "content_type": "application/octet-stream",
        "user_properties": [
            ("specversion", "1.0"),
            ("id", "1"),
            ("source", "drogue://app/dev"),
            ("type", "io.drogue.event.v1"),
        ],
    }
    [row] = receive("drogue", data, "app/app", drogue)
    assert row[F["kind"]] == "uplink" and row[F["payload"]] == data
    deep = b"[" * 10_000 + b"]" * 10_000
    [row] = receive("drogue", deep, "app/app", drogue)
    assert row[F["kind"]] == "uplink" and row[F["payload"]] == deep
    [row] = receive("akenza", deep, properties={"content_type": "application/octet-stream"})
    assert row[F["kind"]] == "uplink"
    [row] = receive("akenza", deep)  # no content type: akenza reads JSON
    assert "nests JSON" in row[F["error"]]


@pytest.mark.parametrize("name", [*NAMES, "generic"])
def test_a_body_over_4_mib_is_an_error_row(name):
    rows = receive(name, huge_body())
    assert_refused_naming(rows, "too large")
    into_store([rows])


@cache
def huge_body() -> bytes:
    return b'{"pad": "' + b"a" * (MAX_BODY + 10) + b'"}'


def test_a_parser_that_raises_anything_gives_an_error_row(monkeypatch):
    tts = platforms.get("tts")

    def broken(topic, payload, properties=None):
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(tts, "parse", broken)
    [event] = tts.parse_or_error("v3/a/devices/d/join", b"{}")
    assert event.kind == "error" and event.error == "The message is nested too deeply to be read."
    monkeypatch.setattr(tts, "parse", lambda *a: 1 / 0)
    [event] = tts.parse_or_error("v3/a/devices/d/join", b"{}")
    assert event.error == "The console's tts parser failed on this message (ZeroDivisionError: division by zero)."
    monkeypatch.setattr(tts, "parse", lambda *a: [])
    [event] = tts.parse_or_error("v3/a/devices/d/join", b"{}")
    assert event.kind == "error" and "no event" in event.error


def test_event_row_never_raises():
    from app.events import Event

    odd = [
        Event("tts", "uplink", payload_hex="zz", decoded={1: {2, 3}}),
        Event("tts", "uplink", payload_hex=17, decoded=[[[[[[[[]]]]]]]] * 2),
        Event("tts", "uplink", decoded={"k": 10**30}, f_port=10**30, device_id=5, topic="t"),
        object(),
    ]
    rows = [event_row(e, TS, 9) for e in odd]
    assert all(len(r) == len(ROW_FIELDS) and r[F["id"]] == 9 for r in rows)
    assert rows[0][F["kind"]] == "error" and "decoded object cannot be stored" in rows[0][F["error"]]
    assert rows[1][F["payload"]] is None and rows[1][F["kind"]] == "uplink"
    assert rows[3][F["kind"]] == "error"
    store = into_store([rows])
    assert store.value(2, "kind") == "error" and "decoded" in store.value(2, "error")


# ----- every numeric field, every hostile number --------------------------------------------------


HOSTILE_CASES = [
    (name, path, kind, raw)
    for name, (_, _, fields) in PLATFORMS.items()
    for path, kind in fields
    for raw in HOSTILE[kind] + LEFT_OUT_OR_REFUSED.get(kind, [])
]


@pytest.mark.parametrize(("name", "path", "kind", "raw"), HOSTILE_CASES)
def test_every_numeric_field_refuses_what_the_table_cannot_hold(name, path, kind, raw):
    _, doc, _ = PLATFORMS[name]
    body = body_with(doc(), {path: raw})
    rows = receive(name, body)
    store = into_store([rows])
    field = next(k for k in reversed(path) if isinstance(k, str))
    if raw in HOSTILE[kind] or error_texts(rows):  # else Tektelic left it out
        assert_refused_naming(rows, field)
    else:
        column, fallback = TEKTELIC_LEFT_OUT[field]
        assert store.value(0, column) == fallback


# ----- fuzzing ---------------------------------------------------------------------------------------


def all_paths(node, prefix=()):
    if prefix:
        yield prefix
    if isinstance(node, dict):
        for key, child in node.items():
            yield from all_paths(child, (*prefix, key))
    elif isinstance(node, list):
        for i, child in enumerate(node):
            yield from all_paths(child, (*prefix, i))


RAW_VALUES = st.sampled_from(
    [
        "null",
        "true",
        "0",
        "-1",
        "1.5",
        '""',
        '"x"',
        '"868100000"',
        "[]",
        "{}",
        "[1,[2]]",
        '{"a":{"b":1}}',
        *BEYOND_FLOAT,
        *BEYOND_INT64,
        "1e-400",
        '"\\ud800"',
        '"NaN"',
        '"inf"',
    ]
)
HOSTILE_RAW = set(BEYOND_FLOAT) | set(BEYOND_INT64)
DEEP = st.sampled_from([129, 1_000, 100_000]).flatmap(
    lambda depth: st.sampled_from([b"[" * depth + b"]" * depth, b'{"a":' * depth + b"1" + b"}" * depth])
)
BAD_UTF8 = st.sampled_from([b"\xff", b"\xed\xa0\x80", b"\xc3", b"\xf4\x90\x80\x80", b"\x80abc"])


@st.composite
def mutated_messages(draw):
    """(platform, body, what its error must name, whether other values changed too) from a sample
    with some values replaced: hostile numbers in the numeric fields, JSON nested deep, invalid
    UTF-8 in a string, and any JSON value anywhere."""
    name = draw(st.sampled_from(NAMES))
    _, doc_factory, fields = PLATFORMS[name]
    doc = doc_factory()
    paths = list(all_paths(doc))
    replacements, hostile, other = {}, [], False
    for _ in range(draw(st.integers(1, 3))):
        how = draw(st.sampled_from(["numeric", "any", "deep", "utf8"]))
        if how == "numeric":
            path, kind = draw(st.sampled_from(fields))
            raw, named = draw(st.sampled_from(HOSTILE[kind])), next(k for k in reversed(path) if isinstance(k, str))
        else:
            path = draw(st.sampled_from(paths))
            if how == "any":
                raw, named = draw(RAW_VALUES), None
            elif how == "deep":
                raw, named = draw(DEEP), "nests JSON"
            else:
                raw, named = b'"a' + draw(BAD_UTF8) + b'b"', "JSON"
        if any(path[: len(p)] == p or p[: len(path)] == path for p in replacements):
            continue  # one replacement inside another: the outer one wins
        replacements[path] = raw
        if named is None:
            other = True
        else:
            hostile.append(named)
    return name, body_with(doc, replacements), hostile, other


@FUZZ
@given(st.lists(mutated_messages(), min_size=1, max_size=6))
def test_fuzz_mutated_samples_never_break_the_table(messages):
    received = []
    for i, (name, body, hostile, other) in enumerate(messages):
        rows = receive(name, body, row_id=100 * i + 1)
        assert rows, "every message gives a row"
        if hostile and not other:
            assert_refused_naming(rows, *hostile)
        elif hostile:  # another change may be refused first, with its own sentence
            assert error_texts(rows), rows
        received.append(rows)
    into_store(received)


TOPICS = {name: spec[0] for name, spec in PLATFORMS.items()} | {"generic": "any/topic"}


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(sorted(TOPICS)), st.binary(max_size=1500)), min_size=1, max_size=8))
def test_fuzz_any_bytes_on_any_platform(messages):
    received = []
    for i, (name, body) in enumerate(messages):
        rows = receive(name, body, TOPICS[name], row_id=100 * i + 1)
        assert rows
        received.append(rows)
    into_store(received)


JSON_LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10)
)
JSON_VALUES = st.recursive(
    JSON_LEAVES, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
)


@FUZZ
@given(st.sampled_from(NAMES), st.data())
def test_fuzz_wrong_types_for_every_field(name, data):
    _, doc_factory, _ = PLATFORMS[name]
    doc = doc_factory()
    paths = list(all_paths(doc))
    chosen = data.draw(st.lists(st.sampled_from(paths), min_size=1, max_size=4, unique=True))
    replacements = {}
    for path in chosen:
        if not any(path[: len(p)] == p or p[: len(path)] == path for p in replacements):
            replacements[path] = json.dumps(data.draw(JSON_VALUES))  # the standard library writes any integer
    rows = receive(name, body_with(doc, replacements))
    assert rows
    into_store([rows])


@FUZZ
@given(st.sampled_from(NAMES), BAD_UTF8, st.data())
def test_fuzz_invalid_utf8_in_any_string(name, bad, data):
    _, doc_factory, _ = PLATFORMS[name]
    doc = doc_factory()
    strings = [p for p in all_paths(doc) if isinstance(get(doc, p), str)] or list(all_paths(doc))
    path = data.draw(st.sampled_from(strings))
    body = body_with(doc, {path: b'"' + bad + b'"'})
    rows = receive(name, body)
    assert_refused_naming(rows, "not valid JSON", "UTF-8")
    into_store([rows])


def get(doc, path):
    for key in path:
        doc = doc[key]
    return doc


def test_a_batch_of_every_kind_of_hostile_message_at_once():
    messages = []
    for i, (name, path, _, raw) in enumerate(HOSTILE_CASES):
        _, doc, _ = PLATFORMS[name]
        messages.append(receive(name, body_with(doc(), {path: raw}), row_id=10 * i + 1))
    messages.append(receive("tts", b"[" * 100_000 + b"]" * 100_000, row_id=99_999))
    messages.append(receive("tts", huge_body(), row_id=99_998))
    store = into_store(messages)
    assert len(store) == sum(len(m) for m in messages)

"""The TTS fast path builds exactly the rows the full parser builds, or hands the message over."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.platforms import get
from app.platforms.base import json_loads
from app.platforms.tts_fast import uplink_row
from app.simulate import tts as simulate
from app.store import ROW_FIELDS, event_row

TTS = get("tts")
SAMPLES = Path(__file__).resolve().parent / "samples"
TOPIC = "v3/app1@ttn/devices/dev1/up"
DECODED = ROW_FIELDS.index("decoded")


def full_row(topic: str, payload: bytes, ts: float = 12.5, row_id: int | None = 7):
    events = TTS.parse_or_error(topic, payload)
    return [(event_row(e, ts, row_id), e.received_at, e.correlation_ids) for e in events]


def same_as_full(topic: str, payload: bytes) -> bool:
    """Asserts the fast path's row equals the full parser's when it takes the message;
    returns whether it took it."""
    fast = uplink_row(topic, payload, 12.5, 7)
    if fast is None:
        return False
    (row, received_at, cids), (full, full_received_at, full_cids) = fast, *full_row(topic, payload)
    assert full[3] == "uplink", full
    for name, a, b in zip(ROW_FIELDS, row, full, strict=True):
        if name == "decoded" and a is not None and b is not None:
            assert orjson.loads(a) == orjson.loads(b)  # same JSON; the fast path keeps compact input as sent
        else:
            assert (name, a) == (name, b)
            assert type(a) is type(b), name
    doc, _ = json_loads(payload)  # orjson, reading past numbers beyond a float as the full parser does
    stamped = doc.get("received_at") is not None or (doc.get("uplink_message") or {}).get("received_at") is not None
    if stamped:  # else both take the current time
        assert received_at == full_received_at
    assert cids == full_cids
    return True


def test_the_published_sample_and_simulated_uplinks_take_the_fast_path():
    assert same_as_full(TOPIC, (SAMPLES / "tts_up_1.json").read_bytes())
    for d in range(5):
        for k in range(8):
            body = simulate.tts_uplink(d, k, gateways=1 + k % 3)
            assert same_as_full(simulate.tts_topic(d), body)


def test_other_topics_and_bodies_go_to_the_full_parser():
    up = (SAMPLES / "tts_up_1.json").read_bytes()
    assert uplink_row("v3/app1@ttn/devices/dev1/join", up, 1.0, None) is None
    assert uplink_row("capture/somewhere/up", up, 1.0, None) is None
    assert uplink_row(TOPIC, (SAMPLES / "tts_join_1.json").read_bytes(), 1.0, None) is None
    for junk in (b"", b"[]", b"{", b"\xff\xfe", b'{"uplink_message": null}', b'{"uplink_message": 5}'):
        assert uplink_row(TOPIC, junk, 1.0, None) is None


def test_shapes_the_fast_path_leaves_to_the_full_parser_are_worded_there():
    doc = orjson.loads(simulate.tts_uplink(1, 1))
    doc["uplink_message"]["decoded_payload_warnings"] = ["temperature out of range"]
    body = orjson.dumps(doc)
    assert uplink_row(TOPIC, body, 1.0, None) is None
    assert full_row(TOPIC, body)[0][0][ROW_FIELDS.index("error")] == "Decoder warnings: temperature out of range"
    doc["uplink_message"].pop("decoded_payload_warnings")
    doc["uplink_message"]["frm_payload"] = "not base64!"
    body = orjson.dumps(doc)
    assert uplink_row(TOPIC, body, 1.0, None) is None
    assert full_row(TOPIC, body)[0][0][ROW_FIELDS.index("kind")] == "error"


def test_pretty_printed_decoded_objects_are_stored_compact():
    doc = orjson.loads(simulate.tts_uplink(1, 1))
    body = orjson.dumps(doc, option=orjson.OPT_INDENT_2)
    row = uplink_row(TOPIC, body, 1.0, None)[0]
    assert row[DECODED] == orjson.dumps(doc["uplink_message"]["decoded_payload"])
    assert same_as_full(TOPIC, body)


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
    | st.sampled_from(["", "868100000", "-80", "AQID", "0x1F", "1e3", "4/5", "B827EBFFFE000003"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)
PATHS = [
    ("end_device_ids",),
    ("end_device_ids", "device_id"),
    ("end_device_ids", "application_ids"),
    ("end_device_ids", "application_ids", "application_id"),
    ("end_device_ids", "dev_eui"),
    ("end_device_ids", "dev_addr"),
    ("correlation_ids",),
    ("received_at",),
    ("uplink_message", "f_port"),
    ("uplink_message", "f_cnt"),
    ("uplink_message", "frm_payload"),
    ("uplink_message", "decoded_payload"),
    ("uplink_message", "decoded_payload_warnings"),
    ("uplink_message", "received_at"),
    ("uplink_message", "rx_metadata"),
    ("uplink_message", "rx_metadata", 0),
    ("uplink_message", "rx_metadata", 0, "rssi"),
    ("uplink_message", "rx_metadata", 0, "channel_rssi"),
    ("uplink_message", "rx_metadata", 0, "snr"),
    ("uplink_message", "rx_metadata", 0, "gateway_ids"),
    ("uplink_message", "rx_metadata", 0, "gateway_ids", "gateway_id"),
    ("uplink_message", "rx_metadata", 0, "gateway_ids", "eui"),
    ("uplink_message", "rx_metadata", 1, "rssi"),
    ("uplink_message", "rx_metadata", 1, "snr"),
    ("uplink_message", "settings"),
    ("uplink_message", "settings", "frequency"),
    ("uplink_message", "settings", "data_rate"),
    ("uplink_message", "settings", "data_rate", "lora"),
    ("uplink_message", "settings", "data_rate", "lora", "spreading_factor"),
    ("uplink_message", "settings", "data_rate", "lora", "bandwidth"),
    ("uplink_message", "settings", "data_rate", "lrfhss"),
]
BASE = orjson.loads(simulate.tts_uplink(3, 9, gateways=2))


def mutate(doc: dict, path: tuple, value, delete: bool) -> dict:
    """A copy with the value at path replaced (or deleted); unchanged where the path is gone."""
    doc = copy.deepcopy(doc)
    node = doc
    for key in path[:-1]:
        if isinstance(key, int) and isinstance(node, list) and key < len(node):
            node = node[key]
        elif isinstance(key, str) and isinstance(node, dict):
            node = node.setdefault(key, {})
        else:
            return doc
    last = path[-1]
    if isinstance(node, dict) and isinstance(last, str):
        if delete:
            node.pop(last, None)
        else:
            node[last] = value
    elif isinstance(node, list) and isinstance(last, int) and last < len(node):
        if delete:
            del node[last]
        else:
            node[last] = value
    return doc


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.tuples(st.sampled_from(PATHS), JSON_VALUES, st.booleans()), min_size=1, max_size=4),
    st.sampled_from(["v3/app1@ttn/devices/dev1/up", "v3/@ttn/devices//up", "v3/a/devices/b/up"]),
)
def test_any_mutated_uplink_gives_the_full_parsers_row_or_is_handed_over(changes, topic):
    doc = BASE
    for path, value, delete in changes:
        doc = mutate(doc, path, value, delete)
    same_as_full(topic, json.dumps(doc).encode())  # the standard library writes integers of any size


def test_the_mutations_do_reach_the_fast_path():
    # Not vacuous: ordinary variations are taken, not handed over.
    taken = 0
    for path, value in [
        (("uplink_message", "f_cnt"), 0),
        (("uplink_message", "rx_metadata", 0, "rssi"), None),
        (("end_device_ids", "dev_eui"), "70-b3-d5-7e-d0-05-00-03"),
        (("uplink_message", "settings", "frequency"), 868300000),
        (("uplink_message", "decoded_payload"), None),
        (("uplink_message", "frm_payload"), ""),
        (("end_device_ids", "application_ids"), None),
    ]:
        taken += same_as_full(TOPIC, orjson.dumps(mutate(BASE, path, value, False)))
    assert taken == 7


# ----- the limits: what the fast path hands over, and what both paths agree on -------------------

HOSTILE_AT = [
    (("uplink_message", "f_port"), "99999999999999999999", "f_port"),
    (("uplink_message", "f_port"), "256", "f_port"),
    (("uplink_message", "f_port"), "-1", "f_port"),
    (("uplink_message", "f_cnt"), str(2**32), "f_cnt"),
    (("uplink_message", "f_cnt"), "1e400", "f_cnt"),
    (("uplink_message", "settings", "frequency"), '"99999999999999999999"', "frequency"),
    (("uplink_message", "settings", "frequency"), str(2**64), "frequency"),
    (("uplink_message", "settings", "frequency"), str(-(2**62)), "frequency"),
    (("uplink_message", "settings", "data_rate", "lora", "spreading_factor"), str(2**63), "spreading_factor"),
    (("uplink_message", "settings", "data_rate", "lora", "bandwidth"), "-1e400", "bandwidth"),
    (("uplink_message", "rx_metadata", 0, "rssi"), "1e400", "rssi"),
    (("uplink_message", "rx_metadata", 1, "snr"), "-" + "9" * 400, "snr"),
    (("uplink_message", "decoded_payload", "temperature"), "1e400", "temperature"),
]


def with_raw(doc: dict, path: tuple, raw: str) -> bytes:
    """The document as JSON with raw text (1e400, a 400-digit integer) at path."""
    token = "\u0001raw\u0001"
    body = orjson.dumps(mutate(doc, path, token, False))
    return body.replace(orjson.dumps(token), raw.encode())


@pytest.mark.parametrize(("path", "raw", "field"), HOSTILE_AT)
def test_what_the_table_cannot_hold_is_handed_over_and_the_full_parser_names_the_field(path, raw, field):
    body = with_raw(BASE, path, raw)
    assert uplink_row(TOPIC, body, 1.0, None) is None
    [(row, _, _)] = full_row(TOPIC, body)
    assert row[ROW_FIELDS.index("kind")] == "error"
    assert field in row[ROW_FIELDS.index("error")], row


@pytest.mark.parametrize(
    ("path", "raw"),
    [
        (("uplink_message", "rx_metadata", 0, "timestamp"), "1e400"),
        (("uplink_message", "consumed_airtime"), "-1e400"),
        (("uplink_message", "settings", "data_rate", "lora", "coding_rate"), "1" + "0" * 400),
        (("uplink_message", "locations"), '{"user": {"latitude": 1e999}}'),
        (("uplink_message", "f_port"), "255"),
        (("uplink_message", "f_cnt"), str(2**32 - 1)),
        (("uplink_message", "settings", "frequency"), str(2**63 - 1)),
        (("uplink_message", "rx_metadata", 0, "rssi"), "99999999999999999999"),  # 1e20 is a float
        (("uplink_message", "decoded_payload", "temperature"), "1.5e3"),
        (("uplink_message", "decoded_payload", "temperature"), "123456789012345678901234567890"),
    ],
)
def test_numbers_the_row_does_not_need_or_can_hold_give_the_same_row_on_both_paths(path, raw):
    # msgspec skips what the structs do not name without reading its numbers; the full parser
    # ignores a number beyond a float where it does not read (see parse_tts_message).
    assert same_as_full(TOPIC, with_raw(BASE, path, raw))


def test_what_msgspec_would_skip_but_orjson_refuses_is_handed_over():
    ok = orjson.dumps(BASE)
    for body in (
        ok.replace(b'"session_key_id":"', b'"session_key_id":"\xff'),  # invalid UTF-8 in a skipped field
        ok.replace(b'"session_key_id":"', b'"session_key_id":"\xed\xa0\x80'),  # an encoded surrogate
        with_raw(BASE, ("uplink_message", "locations"), "[" * 200 + "]" * 200),  # deeper than MAX_DEPTH
        with_raw(BASE, ("uplink_message", "locations"), "[" * 2000 + "]" * 2000),  # deeper than orjson reads
        with_raw(BASE, ("uplink_message", "locations"), "[" * 100_000 + "]" * 100_000),  # msgspec: RecursionError
    ):
        assert uplink_row(TOPIC, body, 1.0, None) is None
        [(row, _, _)] = full_row(TOPIC, body)
        assert row[ROW_FIELDS.index("kind")] == "error"


def test_decoded_objects_are_rewritten_as_the_full_parser_writes_them():
    for raw in ("1.5e3", "2E-7", "1E+2"):  # exponents: as orjson writes the number
        body = with_raw(BASE, ("uplink_message", "decoded_payload", "temperature"), raw)
        row = uplink_row(TOPIC, body, 1.0, None)[0]
        assert row[DECODED] == full_row(TOPIC, body)[0][0][DECODED], raw
    for raw in ("123456789012345678901234567890", "-9223372036854775809"):
        # Beyond 64 bits: kept as sent (orjson reads both as the same float; checking every
        # decoded object for 20-digit runs would cost each message more than it is worth).
        body = with_raw(BASE, ("uplink_message", "decoded_payload", "temperature"), raw)
        row = uplink_row(TOPIC, body, 1.0, None)[0]
        assert orjson.loads(row[DECODED]) == orjson.loads(full_row(TOPIC, body)[0][0][DECODED]), raw


HOSTILE_RAW = st.sampled_from(
    ["1e400", "-1e400", "1" + "0" * 400, "99999999999999999999", str(2**63), str(-(2**62)), '"1e400"', '"9" ']
    + ["[" * 300 + "]" * 300, '"\\ud800"', "256", "-1", str(2**32), "1e-400", "-0", "0.0"]
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(PATHS), HOSTILE_RAW), min_size=1, max_size=3))
def test_hostile_numbers_anywhere_give_the_full_parsers_row_or_are_handed_over(changes):
    doc, raws = BASE, {}
    for i, (path, raw) in enumerate(changes):
        token = f"\u0001raw{i}\u0001"
        doc = mutate(doc, path, token, False)
        raws[orjson.dumps(token)] = raw.encode()
    body = orjson.dumps(doc)
    for token, raw in raws.items():
        body = body.replace(token, raw)
    same_as_full(TOPIC, body)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=3000), st.sampled_from([TOPIC, "v3/a/devices/b/up", "v3//devices//up", ""]))
def test_the_fast_path_never_raises_and_takes_only_what_the_full_parser_takes(payload, topic):
    same_as_full(topic, payload)
    prefix = orjson.dumps(BASE)[:-1]  # the bytes inside a real uplink, too
    same_as_full(TOPIC, prefix + b',"x":' + payload + b"}")

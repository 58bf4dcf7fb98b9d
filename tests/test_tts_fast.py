"""The TTS fast path builds exactly the rows the full parser builds, or hands the message over."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app import simulate
from app.platforms import get
from app.platforms.tts_fast import uplink_row
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
    doc = orjson.loads(payload)
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

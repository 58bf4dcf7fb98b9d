"""The Things Stack platform: its documented samples, fuzzing, profiles, downlinks and a real broker."""

from __future__ import annotations

import asyncio
import base64
import copy
import datetime as dt
import time
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.events import KINDS, Event
from app.mqtt.config import MqttVersion, Subscription, Transport
from app.mqtt.session import MqttSession
from app.platforms import DecodeError, DownlinkRequest, EncodeError, ProfileError
from app.platforms.tts import (
    DOWNLINK_PRIORITIES,
    MAX_DOWNLINK_PAYLOAD,
    PLATFORM,
    UPSTREAM_TOPICS,
)
from tests.test_session import publish_with_paho

# Copied verbatim from the platform's public docs and code; provenance in the project's samples/SOURCES.md.
SAMPLES = {
    "tts_down_ack_1.json": b"""\
{
  "end_device_ids": {
    "device_id": "dev1",
    "application_ids": {
      "application_id": "app1"
    },
    "dev_eui": "4200000000000000",
    "join_eui": "4200000000000000",
    "dev_addr": "00E6F42A"
  },
  "correlation_ids": ["my-correlation-id", "..."],
  "downlink_ack": {
    "session_key_id": "AWnj0318qrtJ7kbudd8Vmw==",
    "f_port": 15,
    "f_cnt": 11,
    "frm_payload": "vu8=",
    "confirmed": true,
    "priority": "NORMAL",
    "correlation_ids": ["my-correlation-id", "..."]
  }
}
""",
    "tts_down_push_1.json": b"""\
{
  "downlinks": [
    {
      "f_port": 15,
      "frm_payload": "vu8=",
      "priority": "NORMAL"
    }
  ]
}
""",
    "tts_down_push_2.json": b"""\
{
  "downlinks": [
    {
      "f_port": 15,
      "frm_payload": "vu8=",
      "priority": "HIGH",
      "confirmed": true,
      "correlation_ids": ["my-correlation-id"]
    }
  ]
}
""",
    "tts_down_push_4.json": b"""\
{"downlinks":[{"f_port":42,"frm_payload":"AQEB","confirmed":true},{"f_port":42,"frm_payload":"AgIC","confirmed":true}]}
""",
    "tts_join_1.json": b"""\
{
  "end_device_ids": {
    "device_id": "dev1",
    "application_ids": {
      "application_id": "app1"
    },
    "dev_eui": "4200000000000000",
    "join_eui": "4200000000000000",
    "dev_addr": "01DA1F15"
  },
  "correlation_ids": [
    "gs:conn:01D2CSNX7FJVKQPCVG612QF1TX",
    "gs:uplink:01D2CT834K2YD17ZWZ6357HC0Z",
    "ns:uplink:01D2CT834KNYD7BT2NHK5R1WVA",
    "rpc:/ttn.lorawan.v3.GsNs/HandleUplink:01D2CT834KJ4AVSD1SJ637NAV6",
    "as:up:01D2CT83AXQFQYQ35SR74CTWKH"
  ],
  "join_accept": {
    "session_key_id": "AWiZpAyXrAfEkUNkBljRoA=="
  }
}
""",
    "tts_join_3.json": b"""\
{"end_device_ids":{"device_id":"foo-device","application_ids":{"application_id":"foo-app"}},"join_accept":{"session_key_id":"ESIzRA==","received_at":"0001-01-01T00:00:00Z"}}
""",
    "tts_up_1.json": b"""\
{
  "end_device_ids": {
    "device_id": "dev1",
    "application_ids": {
      "application_id": "app1"
    },
    "dev_eui": "4200000000000000",
    "join_eui": "4200000000000000",
    "dev_addr": "01DA1F15"
  },
  "correlation_ids": [
    "gs:conn:01D2CSNX7FJVKQPCVG612QF1TX",
    "gs:uplink:01D2CV8HF62ME0D7MZWE38HHH8",
    "ns:uplink:01D2CV8HF6FYJHKZ45YY1DB3MR",
    "rpc:/ttn.lorawan.v3.GsNs/HandleUplink:01D2CV8HF6XR7ZFVK768PDG3J4",
    "as:up:01D2CV8HNGJ57G25BW0FCZNY07"
  ],
  "uplink_message": {
    "session_key_id": "AWiZpAyXrAfEkUNkBljRoA==",
    "f_port": 15,
    "frm_payload": "VGVtcGVyYXR1cmUgPSAwLjA=",
    "rx_metadata": [
      {
        "gateway_ids": {
          "gateway_id": "eui-0242020000247803",
          "eui": "0242020000247803"
        },
        "time": "2019-01-29T13:02:34.981Z",
        "timestamp": 1283325000,
        "rssi": -35,
        "snr": 5,
        "uplink_token": "CiIKIAoUZXVpLTAyNDIwMjAwMDAyNDc4MDMSCAJCAgAAJHgDEMj49+ME"
      }
    ],
    "settings": {
      "data_rate": {
        "lora": {
          "bandwidth": 125000,
          "spreading_factor": 7
        }
      },
      "coding_rate": "4/6",
      "frequency": "868500000",
      "gateway_channel_index": 2,
      "device_channel_index": 2
    }
  }
}
""",
}

SHARED_SAMPLES = Path(__file__).resolve().parent / "samples"
UID = "app1@tenant1"  # the uid of the documentation's examples


def topic_for(suffix: str, device: str = "dev1", uid: str = UID) -> str:
    return f"v3/{uid}/devices/{device}/{suffix}"


def sample(name: str) -> dict:
    return orjson.loads(SAMPLES[name])


def parse_one(suffix: str, body, device: str = "dev1") -> Event:
    payload = body if isinstance(body, bytes) else orjson.dumps(body)
    events = PLATFORM.parse(topic_for(suffix, device), payload)
    assert len(events) == 1, events
    return events[0]


def assert_one_sentence(text: str) -> None:
    assert text and "\n" not in text and text.endswith("."), repr(text)
    assert "Traceback" not in text


# ----- the documented samples --------------------------------------------------------------------


def test_the_embedded_samples_are_the_shared_originals():
    if not SHARED_SAMPLES.is_dir():
        pytest.skip("the shared samples directory is not on this machine")
    for name, body in SAMPLES.items():
        assert (SHARED_SAMPLES / name).read_bytes() == body, name


def test_uplink_sample():
    event = parse_one("up", SAMPLES["tts_up_1.json"])
    assert event.platform == "tts" and event.kind == "uplink"
    assert event.application_id == "app1" and event.device_id == "dev1"
    assert event.dev_eui == "4200000000000000" and event.dev_addr == "01DA1F15"
    assert event.f_port == 15
    assert event.f_cnt == 0, "f_cnt is left out when it is zero"
    assert event.payload_hex == "54656d7065726174757265203d20302e30"
    assert bytes.fromhex(event.payload_hex) == b"Temperature = 0.0"
    assert event.rssi == -35 and event.snr == 5
    assert event.gateway_id == "eui-0242020000247803" and event.gateways == 1
    assert event.spreading_factor == 7 and event.bandwidth_hz == 125000
    assert event.frequency_hz == 868500000 and type(event.frequency_hz) is int
    assert event.correlation_ids[0] == "gs:conn:01D2CSNX7FJVKQPCVG612QF1TX"
    assert event.correlation_ids[-1] == "as:up:01D2CV8HNGJ57G25BW0FCZNY07" and len(event.correlation_ids) == 5
    assert event.decoded is None and event.error is None
    assert event.topic == "v3/app1@tenant1/devices/dev1/up"
    # The sample has no received_at: the time of arrival stands in, as RFC 3339 UTC.
    arrived = dt.datetime.fromisoformat(event.received_at)
    assert abs((dt.datetime.now(dt.UTC) - arrived).total_seconds()) < 60
    orjson.loads(event.to_json())


def test_join_accept_samples():
    first = parse_one("join", SAMPLES["tts_join_1.json"])
    assert first.kind == "join"
    assert (first.application_id, first.device_id) == ("app1", "dev1")
    assert first.dev_eui == "4200000000000000" and first.dev_addr == "01DA1F15"
    assert first.correlation_ids[-1] == "as:up:01D2CT83AXQFQYQ35SR74CTWKH"
    assert first.payload_hex is None and first.f_port is None

    from_code = parse_one("join", SAMPLES["tts_join_3.json"], device="foo-device")
    assert (from_code.application_id, from_code.device_id) == ("foo-app", "foo-device")
    assert from_code.received_at == "0001-01-01T00:00:00Z", "received_at is kept as given"
    assert from_code.dev_eui is None and from_code.correlation_ids == []


def test_downlink_ack_sample():
    event = parse_one("down/ack", SAMPLES["tts_down_ack_1.json"])
    assert event.kind == "downlink_ack"
    assert event.dev_eui == "4200000000000000" and event.dev_addr == "00E6F42A"
    assert event.f_port == 15 and event.f_cnt == 11
    assert event.payload_hex == "beef"
    assert event.correlation_ids == ["my-correlation-id", "..."]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("tts_down_push_1.json", [(15, "beef", [])]),
        ("tts_down_push_2.json", [(15, "beef", ["my-correlation-id"])]),
        ("tts_down_push_4.json", [(42, "010101", []), (42, "020202", [])]),
    ],
)
def test_downlink_push_bodies_show_each_downlink(name, expected):
    events = PLATFORM.parse(topic_for("down/push"), SAMPLES[name])
    assert [(e.f_port, e.payload_hex, e.correlation_ids) for e in events] == expected
    assert {e.kind for e in events} == {"event"}
    assert {e.device_id for e in events} == {"dev1"} and {e.application_id for e in events} == {"app1"}


SAMPLE_TOPICS = {
    "tts_up_1.json": "up",
    "tts_join_1.json": "join",
    "tts_join_3.json": "join",
    "tts_down_ack_1.json": "down/ack",
    "tts_down_push_1.json": "down/push",
    "tts_down_push_2.json": "down/push",
    "tts_down_push_4.json": "down/push",
}


@pytest.mark.parametrize("name", sorted(SAMPLE_TOPICS))
def test_a_sample_off_its_topic_is_recognised_by_its_body(name):
    on_topic = PLATFORM.parse(topic_for(SAMPLE_TOPICS[name]), SAMPLES[name])
    elsewhere = PLATFORM.parse("capture/somewhere", SAMPLES[name])

    def comparable(e: Event):
        return (e.kind, e.dev_eui, e.f_port, e.f_cnt, e.payload_hex, e.rssi, e.correlation_ids)

    assert [comparable(e) for e in elsewhere] == [comparable(e) for e in on_topic]


OTHER_PLATFORM_SAMPLES = sorted(p.name for p in SHARED_SAMPLES.glob("*") if not p.name.startswith(("tts_", "SOURCES")))


@pytest.mark.parametrize("name", OTHER_PLATFORM_SAMPLES)
def test_other_platforms_samples_are_not_tts_messages(name):
    payload = (SHARED_SAMPLES / name).read_bytes()
    for suffix in ("up", "down/ack"):
        with pytest.raises(DecodeError) as info:
            PLATFORM.parse(topic_for(suffix), payload)
        assert_one_sentence(str(info.value))


# ----- rejections --------------------------------------------------------------------------------

UPLINK = sample("tts_up_1.json")


def with_changes(doc: dict, path: tuple, value) -> bytes:
    doc = copy.deepcopy(doc)
    node = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return orjson.dumps(doc)


@pytest.mark.parametrize(
    ("suffix", "payload", "says"),
    [
        ("up", b"", "empty"),
        ("up", b"\x00\xff\x10binary", "not valid JSON"),
        ("up", b'{"uplink_message": {"f_port": 1,\n "f_cnt": }}', "line 2, column"),
        ("up", b"[1, 2, 3]", "not an object"),
        ("up", b'"uplink"', "not an object"),
        ("up", b"{" + b" " * (5 * 1024 * 1024) + b"}", "too large"),
        ("up", SAMPLES["tts_join_1.json"], "carries uplink_message"),
        ("join", SAMPLES["tts_up_1.json"], "carries join_accept"),
        ("up", b'{"uplink_message": [1]}', "uplink_message should be a JSON object but is an array"),
        ("up", b'{"uplink_message": null}', "carries uplink_message"),
        ("up", with_changes(UPLINK, ("uplink_message", "frm_payload"), "not base64!"), "frm_payload is not valid"),
        ("up", with_changes(UPLINK, ("uplink_message", "frm_payload"), 12), "frm_payload should be base64 text"),
        ("up", with_changes(UPLINK, ("end_device_ids",), "dev1"), "end_device_ids should be a JSON object"),
        ("down/push", b'{"downlinks": {"f_port": 1}}', "downlinks should be a JSON array"),
        ("down/push", b'{"downlinks": [3]}', "downlinks[0] should be a JSON object"),
        ("down/failed", b'{"downlink_failed": {"downlink": 7}}', "downlink_failed.downlink should be"),
        ("unknown/suffix", b'{"temperature": 22}', "not a The Things Stack message"),
        ("up", b'{"DevEUI_uplink": {"DevEUI": "A81758FFFE04F27E", "FPort": "1"}}', "carries uplink_message"),
    ],
)
def test_what_is_not_a_tts_message_is_a_decode_error_that_says_why(suffix, payload, says):
    with pytest.raises(DecodeError) as info:
        PLATFORM.parse(topic_for(suffix), payload)
    assert says in str(info.value)
    assert_one_sentence(str(info.value))


def test_a_decode_error_becomes_an_error_event():
    (event,) = PLATFORM.parse_or_error(topic_for("up"), b"{not json")
    assert event.kind == "error" and event.platform == "tts" and "not valid JSON" in event.error


# ----- the shapes the server produces ------------------------------------------------------------


def test_fields_left_out_because_they_are_zero():
    body = {
        "end_device_ids": {"device_id": "dev1", "application_ids": {"application_id": "app1"}},
        "uplink_message": {
            "f_port": 3,
            "frm_payload": "AA==",
            "rx_metadata": [{"gateway_ids": {"gateway_id": "gw-1"}, "rssi": -101}],
            "settings": {"data_rate": {"lora": {"bandwidth": 125000, "spreading_factor": 12}}},
        },
    }
    event = parse_one("up", body)
    assert event.f_cnt == 0 and event.snr == 0.0, "zero counters and a 0 dB SNR are left out"
    assert event.payload_hex == "00" and event.rssi == -101 and event.gateway_id == "gw-1"
    assert event.frequency_hz is None and event.dev_eui is None and event.correlation_ids == []


def test_an_empty_frame_has_no_port_and_an_empty_payload():
    body = {"end_device_ids": {"device_id": "dev1"}, "uplink_message": {"f_cnt": 7}}
    event = parse_one("up", body)
    assert event.f_port is None and event.payload_hex == "" and event.f_cnt == 7
    assert event.gateways == 0 and event.rssi is None and event.snr is None and event.gateway_id is None


def test_without_end_device_ids_the_topic_names_the_device():
    event = parse_one("up", {"uplink_message": {"f_port": 2, "frm_payload": "AQ=="}}, device="from-topic")
    assert (event.application_id, event.device_id) == ("app1", "from-topic")


def test_numbers_as_strings():
    doc = copy.deepcopy(UPLINK)
    up = doc["uplink_message"]
    up.update(f_port="15", f_cnt="4242")
    up["rx_metadata"][0].update(rssi="-35.5", snr="7.25")
    up["settings"]["data_rate"]["lora"] = {"bandwidth": "250000", "spreading_factor": "9"}
    up["settings"]["frequency"] = "868100000"
    event = parse_one("up", doc)
    assert (event.f_port, event.f_cnt) == (15, 4242)
    assert (event.rssi, event.snr) == (-35.5, 7.25)
    assert (event.spreading_factor, event.bandwidth_hz, event.frequency_hz) == (9, 250000, 868100000)
    assert all(type(v) is int for v in (event.f_port, event.f_cnt, event.spreading_factor, event.frequency_hz))


def test_coding_rate_under_settings_or_under_the_lora_data_rate():
    older = copy.deepcopy(UPLINK)  # the sample: settings.coding_rate
    newer = copy.deepcopy(UPLINK)
    del newer["uplink_message"]["settings"]["coding_rate"]
    newer["uplink_message"]["settings"]["data_rate"]["lora"]["coding_rate"] = "4/6"
    for doc in (older, newer):
        doc["received_at"] = "2024-05-01T10:00:00.123456789Z"
    a, b = parse_one("up", older), parse_one("up", newer)
    assert a.to_dict() == b.to_dict()
    assert (b.spreading_factor, b.bandwidth_hz, b.frequency_hz) == (7, 125000, 868500000)


def test_best_gateway_is_the_strongest_across_rx_metadata():
    doc = copy.deepcopy(UPLINK)
    doc["uplink_message"]["rx_metadata"] = [
        {"gateway_ids": {"gateway_id": "far"}, "rssi": -118, "channel_rssi": -118, "snr": -9.5},
        {"gateway_ids": {"gateway_id": "near", "eui": "B827EBFFFE000001"}, "channel_rssi": -61, "snr": 9.75},
        {"gateway_ids": {"gateway_id": "middle"}, "rssi": -90, "snr": 3},
        {"gateway_ids": {"eui": "b827ebfffe000002"}},  # no signal figures at all
    ]
    event = parse_one("up", doc)
    assert (event.gateway_id, event.rssi, event.snr, event.gateways) == ("near", -61, 9.75, 4)

    doc["uplink_message"]["rx_metadata"] = [{"gateway_ids": {"eui": "b827ebfffe000002"}, "rssi": -80}]
    assert parse_one("up", doc).gateway_id == "B827EBFFFE000002", "a gateway without an id shows its EUI"


def test_decoded_payload_warnings_and_received_at():
    doc = copy.deepcopy(UPLINK)
    doc["received_at"] = "2024-05-01T10:00:00.123456789Z"
    doc["uplink_message"].update(
        decoded_payload={"temperature": 21.5, "ok": True},
        decoded_payload_warnings=["battery field missing"],
        received_at="2024-05-01T10:00:00.100000000Z",
    )
    event = parse_one("up", doc)
    assert event.decoded == {"temperature": 21.5, "ok": True}
    assert "battery field missing" in event.error
    assert event.received_at == "2024-05-01T10:00:00.123456789Z", "the envelope's time, exactly as given"
    del doc["received_at"]
    assert parse_one("up", doc).received_at == "2024-05-01T10:00:00.100000000Z"


def test_lowercase_eui_and_address_are_shown_uppercase():
    doc = copy.deepcopy(UPLINK)
    doc["end_device_ids"].update(dev_eui="70b3d57ed0001234", dev_addr="260b1a2f")
    event = parse_one("up", doc)
    assert (event.dev_eui, event.dev_addr) == ("70B3D57ED0001234", "260B1A2F")


@pytest.mark.parametrize(
    ("suffix", "key", "kind"),
    [
        ("down/queued", "downlink_queued", "downlink_queued"),
        ("down/sent", "downlink_sent", "downlink_sent"),
        ("down/ack", "downlink_ack", "downlink_ack"),
        ("down/nack", "downlink_nack", "downlink_nack"),
    ],
)
def test_downlink_events(suffix, key, kind):
    doc = sample("tts_down_ack_1.json")
    doc[key] = doc.pop("downlink_ack")
    doc["correlation_ids"] = ["my-correlation-id", "as:downlink:01HXYZ"]
    event = parse_one(suffix, doc)
    assert event.kind == kind
    assert (event.f_port, event.f_cnt, event.payload_hex) == (15, 11, "beef")
    assert event.correlation_ids == ["my-correlation-id", "...", "as:downlink:01HXYZ"], "own ids first, once each"


def test_downlink_failed_says_why():
    doc = {
        "end_device_ids": {"device_id": "dev1", "application_ids": {"application_id": "app1"}},
        "correlation_ids": ["as:downlink:01HXYZ"],
        "downlink_failed": {
            "downlink": {"f_port": 2, "frm_payload": "AQID", "priority": "NORMAL", "correlation_ids": ["mine"]},
            "error": {
                "namespace": "pkg/networkserver",
                "name": "application_downlink_too_long",
                "message_format": "application downlink of {length} bytes is longer than {max}",
                "attributes": {"length": 60, "max": 51},
                "code": 3,
            },
        },
    }
    event = parse_one("down/failed", doc)
    assert event.kind == "downlink_failed"
    assert (event.f_port, event.payload_hex) == (2, "010203")
    assert event.correlation_ids == ["mine", "as:downlink:01HXYZ"]
    assert event.error == (
        "application downlink of 60 bytes is longer than 51 (pkg/networkserver:application_downlink_too_long)"
    )
    del doc["downlink_failed"]["error"]
    assert "no reason" in parse_one("down/failed", doc).error


def test_invalidated_downlinks_are_failed_downlinks_each():
    doc = {
        "end_device_ids": {"device_id": "dev1", "application_ids": {"application_id": "app1"}},
        "downlink_queue_invalidated": {
            "downlinks": [{"f_port": 1, "frm_payload": "AQ==", "f_cnt": 4}, {"f_port": 2, "frm_payload": "Ag=="}],
            "last_f_cnt_down": 9,
        },
    }
    events = PLATFORM.parse(topic_for("down/invalidated"), orjson.dumps(doc))
    assert [(e.kind, e.f_port, e.payload_hex) for e in events] == [
        ("downlink_failed", 1, "01"),
        ("downlink_failed", 2, "02"),
    ]
    assert all("invalidated" in e.error and "9" in e.error for e in events)
    doc["downlink_queue_invalidated"]["downlinks"] = [{}]
    (empty,) = PLATFORM.parse(topic_for("down/invalidated"), orjson.dumps(doc))
    assert empty.kind == "downlink_failed" and empty.payload_hex is None
    doc["downlink_queue_invalidated"] = {}
    (only,) = PLATFORM.parse(topic_for("down/invalidated"), orjson.dumps(doc))
    assert only.kind == "downlink_failed" and only.f_port is None


def test_location_solved_and_service_data_keep_their_object():
    location = {
        "service": "lora-cloud-device-management-v1-wifi",
        "location": {"latitude": 52.3727, "longitude": 4.8936, "altitude": 2, "accuracy": 15, "source": "SOURCE_WIFI"},
    }
    event = parse_one("location/solved", {"end_device_ids": {"device_id": "dev1"}, "location_solved": location})
    assert event.kind == "location" and event.decoded == location and event.device_id == "dev1"
    data = {"service": "lora-cloud-device-management-v1", "data": {"stream_records": [[1, "AQ=="]]}}
    event = parse_one("service/data", {"end_device_ids": {"device_id": "dev1"}, "service_data": data})
    assert event.kind == "service_data" and event.decoded == data


# ----- fuzzing -----------------------------------------------------------------------------------

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=8,
)
SUFFIXES = st.sampled_from([*UPSTREAM_TOPICS, "down/push", "down/replace", "other"])


def parse_never_crashes(topic: str, payload: bytes) -> None:
    try:
        events = PLATFORM.parse(topic, payload)
    except DecodeError as exc:
        assert_one_sentence(str(exc))
        return
    assert isinstance(events, list) and events
    for event in events:
        assert event.platform == "tts" and event.kind in KINDS
        orjson.loads(event.to_json())


@FUZZ
@given(suffix=SUFFIXES, payload=st.binary(max_size=2000))
def test_fuzz_arbitrary_bytes(suffix, payload):
    parse_never_crashes(topic_for(suffix), payload)


@FUZZ
@given(suffix=SUFFIXES, value=JSON_VALUES)
def test_fuzz_arbitrary_json(suffix, value):
    parse_never_crashes(topic_for(suffix), orjson.dumps(value))


BODY_KEYS = [
    "uplink_message",
    "join_accept",
    "downlink_queued",
    "downlink_sent",
    "downlink_ack",
    "downlink_nack",
    "downlink_failed",
    "downlink_queue_invalidated",
    "service_data",
    "location_solved",
    "downlinks",
]


@FUZZ
@given(suffix=SUFFIXES, key=st.sampled_from(BODY_KEYS), value=JSON_VALUES, ids=JSON_VALUES)
def test_fuzz_tts_shaped_objects_with_random_contents(suffix, key, value, ids):
    parse_never_crashes(topic_for(suffix), orjson.dumps({"end_device_ids": ids, key: value}))


def all_paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for key, child in node.items():
            yield from all_paths(child, (*prefix, key))
    elif isinstance(node, list):
        for i, child in enumerate(node):
            yield from all_paths(child, (*prefix, i))


def mutated(doc, path, replacement, delete):
    if not path:
        return replacement
    doc = copy.deepcopy(doc)
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    if delete:
        del parent[path[-1]]
    else:
        parent[path[-1]] = replacement
    return doc


@FUZZ
@given(data=st.data())
def test_fuzz_real_samples_with_keys_removed_or_retyped(data):
    name = data.draw(st.sampled_from(sorted(SAMPLE_TOPICS)))
    doc = sample(name)
    for _ in range(data.draw(st.integers(1, 4))):
        path = data.draw(st.sampled_from(list(all_paths(doc))))
        delete = bool(path) and data.draw(st.booleans())
        doc = mutated(doc, path, data.draw(JSON_VALUES), delete)
    parse_never_crashes(topic_for(SAMPLE_TOPICS[name]), orjson.dumps(doc))


# ----- profile and connection --------------------------------------------------------------------

PROFILE = {
    "url": "mqtts://eu1.cloud.thethings.network:8883",
    "app": "app1",
    "tenant": "ttn",
    "password": "NNSXS.EXAMPLEKEY.SECRET",
}


def test_fields_document_what_tts_needs():
    names = {f.name for f in PLATFORM.fields}
    assert {"url", "app", "tenant", "password", "device", "upstream", "ca_file", "verify_certificate"} <= names
    assert "mqtt_version" not in names and "qos" not in names, "TTS has one MQTT version and one QoS"
    assert PLATFORM.field("app").required and not PLATFORM.field("tenant").required
    assert PLATFORM.field("password").kind == "secret" and "NNSXS" in PLATFORM.field("password").placeholder
    assert "read" in PLATFORM.field("password").help and "downlink" in PLATFORM.field("password").help
    assert "1883" in PLATFORM.field("url").help and "8883" in PLATFORM.field("url").help
    assert PLATFORM.field("url").default.startswith("mqtts://") and PLATFORM.field("url").default.endswith(":8883")
    assert "ttn" in PLATFORM.field("tenant").help and "Open Source" in PLATFORM.field("tenant").help


@pytest.mark.parametrize(
    ("app", "tenant", "username"),
    [("app1", "ttn", "app1@ttn"), ("app1", "", "app1"), ("app1", None, "app1"), ("app1@tenant1", "", "app1@tenant1")],
)
def test_username_forms(app, tenant, username):
    cfg = PLATFORM.connection({**PROFILE, "app": app, "tenant": tenant})
    assert cfg.username == username and cfg.password == "NNSXS.EXAMPLEKEY.SECRET"
    assert {s.topic.split("/")[1] for s in cfg.subscriptions} == {username}


def test_connection_subscribes_to_every_upstream_topic_at_qos_0():
    cfg = PLATFORM.connection(PROFILE)
    assert (cfg.host, cfg.effective_port, cfg.transport) == ("eu1.cloud.thethings.network", 8883, Transport.TLS)
    assert cfg.mqtt_version == MqttVersion.V311
    assert [s.topic for s in cfg.subscriptions] == [
        "v3/app1@ttn/devices/+/up",
        "v3/app1@ttn/devices/+/join",
        "v3/app1@ttn/devices/+/down/queued",
        "v3/app1@ttn/devices/+/down/sent",
        "v3/app1@ttn/devices/+/down/ack",
        "v3/app1@ttn/devices/+/down/nack",
        "v3/app1@ttn/devices/+/down/failed",
        "v3/app1@ttn/devices/+/down/invalidated",
        "v3/app1@ttn/devices/+/service/data",
        "v3/app1@ttn/devices/+/location/solved",
    ]
    assert {s.qos for s in cfg.subscriptions} == {0}


def test_device_filter_and_chosen_topics():
    cfg = PLATFORM.connection({**PROFILE, "device": "dev1", "upstream": "up, down/ack\njoin"})
    assert [s.topic for s in cfg.subscriptions] == [
        "v3/app1@ttn/devices/dev1/up",
        "v3/app1@ttn/devices/dev1/down/ack",
        "v3/app1@ttn/devices/dev1/join",
    ]


def test_plain_port_1883():
    cfg = PLATFORM.connection({**PROFILE, "url": "mqtt://localhost:1883", "tenant": ""})
    assert (cfg.transport, cfg.effective_port, cfg.username) == (Transport.TCP, 1883, "app1")


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"qos": 1}, "QoS 1"),
        ({"qos": "2"}, "QoS 2"),
        ({"mqtt_version": "5"}, "MQTT 5"),
        ({"mqtt_version": MqttVersion.V31}, "MQTT 3.1 "),
    ],
)
def test_qos_and_mqtt_version_are_refused_with_a_sentence(change, says):
    for check in (PLATFORM.validate, PLATFORM.connection):
        with pytest.raises(ProfileError) as info:
            check({**PROFILE, **change})
        text = str(info.value)
        assert "supports only MQTT 3.1.1 and QoS 0" in text and says in text
        assert_one_sentence(text)


def test_qos_0_and_mqtt_3_1_1_are_fine():
    assert PLATFORM.connection({**PROFILE, "qos": 0, "mqtt_version": "3.1.1"}).mqtt_version == MqttVersion.V311


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"app": ""}, "Application ID is required"),
        ({"app": "My App"}, "not a valid The Things Stack ID"),
        ({"app": "a-" * 18 + "b"}, "3 to 36 characters"),
        ({"app": "app1@ttn", "tenant": "other"}, "names tenant"),
        ({"tenant": "a/b"}, "may not contain"),
        ({"device": "dev/1"}, "not a valid The Things Stack ID"),
        ({"upstream": "up, uplinks"}, "Unknown upstream topic 'uplinks'"),
        ({"downlink_priority": "urgent"}, "Downlink priority must be one of LOWEST"),
        ({"password": ""}, "API key"),
    ],
)
def test_profile_errors(change, says):
    with pytest.raises(ProfileError) as info:
        PLATFORM.connection({**PROFILE, **change})
    assert says in str(info.value)
    assert_one_sentence(str(info.value))


# ----- downlinks ---------------------------------------------------------------------------------

DOC_PROFILE = {**PROFILE, "app": "app1", "tenant": "tenant1"}


def encode(**request):
    return PLATFORM.encode_downlink(DOC_PROFILE, DownlinkRequest(**{"device_id": "dev1", **request}))


def test_push_is_the_documented_body():
    out = encode(f_port=15, payload=bytes.fromhex("BEEF"), priority="normal")
    assert out.topic == "v3/app1@tenant1/devices/dev1/down/push"
    assert orjson.loads(out.payload) == sample("tts_down_push_1.json")
    assert (out.qos, out.retain) == (0, False)

    out = encode(
        f_port=15, payload=b"\xbe\xef", priority="HIGH", confirmed=True, correlation_ids=("my-correlation-id",)
    )
    assert orjson.loads(out.payload) == sample("tts_down_push_2.json")


def test_replace_and_clear_the_queue():
    out = encode(f_port=1, payload=b"\x01", replace=True)
    assert out.topic == "v3/app1@tenant1/devices/dev1/down/replace"
    assert orjson.loads(out.payload)["downlinks"][0]["frm_payload"] == "AQ=="
    cleared = encode(replace=True)
    assert cleared.topic.endswith("/down/replace") and orjson.loads(cleared.payload) == {"downlinks": []}


def test_decoded_payload_goes_to_the_formatter():
    body = orjson.loads(encode(f_port=7, decoded={"led": "on", "level": 3}).payload)
    assert body == {"downlinks": [{"f_port": 7, "decoded_payload": {"led": "on", "level": 3}, "priority": "NORMAL"}]}


def test_priority_default_comes_from_the_profile_and_any_case_is_accepted():
    out = PLATFORM.encode_downlink(
        {**DOC_PROFILE, "downlink_priority": "highest"}, DownlinkRequest("dev1", f_port=1, payload=b"")
    )
    assert orjson.loads(out.payload)["downlinks"][0]["priority"] == "HIGHEST"
    for given_as, sent_as in (("below normal", "BELOW_NORMAL"), ("Above-Normal", "ABOVE_NORMAL"), ("lowest", "LOWEST")):
        assert (
            orjson.loads(encode(f_port=1, payload=b"\x00", priority=given_as).payload)["downlinks"][0]["priority"]
            == sent_as
        )
    assert set(DOWNLINK_PRIORITIES) == {"LOWEST", "LOW", "BELOW_NORMAL", "NORMAL", "ABOVE_NORMAL", "HIGH", "HIGHEST"}


def test_the_profile_device_filter_is_the_default_device():
    out = PLATFORM.encode_downlink({**DOC_PROFILE, "device": "dev9"}, DownlinkRequest(f_port=1, payload=b"\x01"))
    assert out.topic == "v3/app1@tenant1/devices/dev9/down/push"


def test_a_downlink_needs_only_the_application_not_the_connection():
    out = PLATFORM.encode_downlink({"app": "app1"}, DownlinkRequest("dev1", f_port=1, payload=b"\x01"))
    assert out.topic == "v3/app1/devices/dev1/down/push"
    with pytest.raises(ProfileError, match="Application ID is required"):
        PLATFORM.encode_downlink({"tenant": "ttn"}, DownlinkRequest("dev1", f_port=1, payload=b"\x01"))


def test_largest_payload_is_accepted():
    out = encode(f_port=233, payload=bytes(MAX_DOWNLINK_PAYLOAD))
    assert len(base64.b64decode(orjson.loads(out.payload)["downlinks"][0]["frm_payload"])) == 242


@pytest.mark.parametrize(
    ("request_fields", "says"),
    [
        ({"device_id": None, "f_port": 1, "payload": b"\x01"}, "Enter the device id"),
        ({"device_id": "Dev 1", "f_port": 1, "payload": b"\x01"}, "not a valid The Things Stack ID"),
        ({"f_port": 0, "payload": b"\x01"}, "FPort 0 is out of range"),
        ({"f_port": 234, "payload": b"\x01"}, "FPort 234 is out of range"),
        ({"f_port": None, "payload": b"\x01"}, "Enter the FPort"),
        ({"f_port": 1, "payload": b"\x01", "priority": "URGENT"}, "is not one of LOWEST"),
        ({"f_port": 1, "payload": b"\x01", "correlation_ids": ("x" * 101,)}, "at most 100"),
        ({"f_port": 1, "payload": b"\x01", "correlation_ids": ("",)}, "is empty"),
        ({"f_port": 1, "payload": bytes(243)}, "at most 242 bytes"),
        ({"f_port": 1, "payload": b"\x01", "decoded": {"a": 1}}, "not both"),
        ({"f_port": 1}, "Enter a payload"),
        ({"f_port": 1, "decoded": [1, 2]}, "must be a JSON object"),
    ],
)
def test_downlink_errors_are_one_sentence(request_fields, says):
    with pytest.raises(EncodeError) as info:
        encode(**request_fields)
    assert says in str(info.value)
    assert_one_sentence(str(info.value))


def test_a_correlation_id_of_100_characters_is_fine():
    body = orjson.loads(encode(f_port=1, payload=b"\x01", correlation_ids=("x" * 100,)).payload)
    assert body["downlinks"][0]["correlation_ids"] == ["x" * 100]


def tts_echo(kind: str, pushed_item: dict, f_cnt: int) -> bytes:
    """What TTS publishes about a pushed downlink, shaped like the documented down/ack message."""
    echo = sample("tts_down_ack_1.json")
    del echo["downlink_ack"]
    own_ids = pushed_item.get("correlation_ids", [])
    echo["correlation_ids"] = [*own_ids, "as:downlink:01J0000000000000000000000"]
    echo[kind] = {**pushed_item, "session_key_id": "AWnj0318qrtJ7kbudd8Vmw==", "f_cnt": f_cnt}
    return orjson.dumps(echo)


@pytest.mark.parametrize(("kind", "suffix"), [("downlink_ack", "down/ack"), ("downlink_queued", "down/queued")])
def test_round_trip_push_then_the_servers_echo(kind, suffix):
    out = encode(f_port=42, payload=b"\x01\x02\xff", confirmed=True, correlation_ids=("order-17", "batch-3"))
    (item,) = orjson.loads(out.payload)["downlinks"]
    (event,) = PLATFORM.parse(topic_for(suffix), tts_echo(kind, item, f_cnt=5))
    assert event.kind == kind
    assert (event.f_port, bytes.fromhex(event.payload_hex), event.f_cnt) == (42, b"\x01\x02\xff", 5)
    assert event.correlation_ids[:2] == ["order-17", "batch-3"]


@settings(max_examples=200, deadline=None)
@given(
    f_port=st.integers(1, 233),
    payload=st.binary(max_size=MAX_DOWNLINK_PAYLOAD),
    correlation_ids=st.lists(st.text(min_size=1, max_size=100), max_size=3, unique=True),
    priority=st.sampled_from(DOWNLINK_PRIORITIES),
)
def test_round_trip_any_valid_downlink(f_port, payload, correlation_ids, priority):
    out = encode(f_port=f_port, payload=payload, correlation_ids=tuple(correlation_ids), priority=priority.lower())
    (item,) = orjson.loads(out.payload)["downlinks"]
    assert item["priority"] == priority
    (event,) = PLATFORM.parse(topic_for("down/ack"), tts_echo("downlink_ack", item, f_cnt=1))
    assert (event.f_port, event.payload_hex) == (f_port, payload.hex())
    assert event.correlation_ids[: len(correlation_ids)] == correlation_ids


# ----- through a real mosquitto ------------------------------------------------------------------


def local_config(profile: dict, broker):
    """The platform's own config and subscriptions, pointed at the anonymous test broker."""
    return PLATFORM.connection(profile).replace(
        host="localhost", port=broker.ports.plain, transport=Transport.TCP, username=None, password=None
    )


async def wait_until(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.01)
    return predicate()


async def test_an_uplink_through_mosquitto(broker):
    profile = {**PROFILE, "app": "e2e-uplink", "tenant": "ttn", "device": "dev1"}
    cfg = local_config(profile, broker)
    got = []
    async with MqttSession(cfg, on_message=got.append) as session:
        await session.wait_connected(10)
        await asyncio.sleep(0.3)  # let the SUBSCRIBEs land before publishing
        other_device = "v3/e2e-uplink@ttn/devices/dev2/up"
        this_device = "v3/e2e-uplink@ttn/devices/dev1/up"
        # Published in order by one client: when dev1's arrives, dev2's would have arrived first.
        await asyncio.to_thread(publish_with_paho, broker.ports.plain, other_device, [SAMPLES["tts_up_1.json"]])
        await asyncio.to_thread(publish_with_paho, broker.ports.plain, this_device, [SAMPLES["tts_up_1.json"]])
        assert await wait_until(lambda: got)
        await asyncio.sleep(0.1)
    assert [m.topic for m in got] == [this_device], "the device filter keeps other devices out"
    (event,) = PLATFORM.parse(got[0].topic, got[0].payload, got[0].properties)
    assert (event.kind, event.device_id, event.dev_eui, event.f_port) == ("uplink", "dev1", "4200000000000000", 15)
    assert (event.payload_hex, event.rssi, event.frequency_hz) == ("54656d7065726174757265203d20302e30", -35, 868500000)
    assert event.topic == this_device


async def test_a_downlink_through_mosquitto(broker):
    profile = {**PROFILE, "app": "e2e-downlink", "tenant": "ttn"}
    console = MqttSession(local_config(profile, broker))
    received = []
    server_side = MqttSession(
        local_config(profile, broker).replace(subscriptions=(Subscription("v3/e2e-downlink@ttn/devices/+/down/#"),)),
        on_message=received.append,
    )
    out = PLATFORM.encode_downlink(
        profile, DownlinkRequest("sensor-7", f_port=15, payload=b"\xbe\xef", priority="HIGH", confirmed=True)
    )
    async with console, server_side:
        await console.wait_connected(10)
        await server_side.wait_connected(10)
        await asyncio.sleep(0.3)
        await console.publish(out.topic, out.payload, qos=out.qos, retain=out.retain)
        assert await wait_until(lambda: received)
    (message,) = received
    assert message.topic == "v3/e2e-downlink@ttn/devices/sensor-7/down/push"
    assert message.payload == out.payload
    assert orjson.loads(message.payload) == {
        "downlinks": [{"f_port": 15, "frm_payload": "vu8=", "priority": "HIGH", "confirmed": True}]
    }

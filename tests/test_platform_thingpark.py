"""Actility ThingPark: samples, doc examples, fuzzing, topic patterns, downlinks, and a real mosquitto."""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app import platforms
from app.events import EVENT_KEYS, KINDS
from app.mqtt.config import Subscription, Transport
from app.mqtt.session import MqttSession
from app.platforms.base import MAX_BODY, DecodeError, DownlinkRequest, EncodeError, ProfileError
from app.platforms.thingpark import (
    MAX_DOWNLINK_PAYLOAD,
    PLATFORM,
    compile_topic_pattern,
    extract_topic_values,
    fill_topic_pattern,
    split_host_name,
    topic_filter_for,
)

# The shared samples live outside the repository for now; a copy under tests/samples wins.
SAMPLE_DIRS = (Path(__file__).parent / "samples",)
UPLINK_TOPIC = "mqtt/things/0018B20000000B20/uplink"


def sample(name: str) -> bytes:
    for directory in SAMPLE_DIRS:
        if (directory / name).is_file():
            return (directory / name).read_bytes()
    raise FileNotFoundError(f"sample {name} not found in {', '.join(map(str, SAMPLE_DIRS))}")


def parse_one(payload: bytes | dict, topic: str = UPLINK_TOPIC, parser=PLATFORM):
    if isinstance(payload, dict):
        payload = orjson.dumps(payload)
    events = parser.parse(topic, payload)
    assert len(events) == 1
    return events[0]


def profile(**values) -> dict:
    return {**PLATFORM.defaults(), "host_name": "broker.example.com:8883", **values}


# Examples from actility/tpx-iot-flow-doc docs/Message/uplink-message.md and downlink-message.md /
# location-message.md (the same repository as the samples), verbatim apart from re-indentation.
JOIN_REQUEST = {
    "DevEUI_uplink": {
        "Time": "2020-06-05T14:22:56.396+02:00",
        "DevEUI": "0018B20000000B20",
        "rawJoinRequest": "003246524144b21800200b000000b2180052ff36f5e390",
        "Lrrid": "3C200E92",
        "Chain": 1,
        "Channel": "LC3",
        "Spfact": 12,
        "SubBand": "G0",
        "MType": 0,
        "mic_hex": "36f5e390",
        "airtime": 1.482752,
        "Late": 0,
        "LrrLAT": 48.933865,
        "LrrLON": 1.195898,
        "Lrrs": {"Lrr": [{"Lrrid": "3C200E92", "LrrRSSI": -56.0, "LrrSNR": 8.75, "LrrESP": -56.543648}]},
        "DriverCfg": {
            "mod": {"pId": "adeunis", "mId": "field-test", "ver": "1"},
            "app": {"pId": "adeunis", "mId": "field-test", "ver": "1"},
        },
        "CustomerID": "100132373",
        "CustomerData": {"alr": {"pro": "ADRF/DEMO", "ver": "2"}},
        "ModelCfg": "1:TWA_100132373.12433.AS",
    }
}
DRIVER_PAYLOAD = {
    "messageType": "HEARTBEAT",
    "mode": "MOTION_TRACKING",
    "batteryVoltage": 3.85,
    "ackToken": 0,
    "firmwareVersion": "1.8.201",
    "bleFwVersion": "0.0.0",
    "resetCause": 40,
    "periodicPosition": False,
    "temperature": 24.8,
    "userAction": 0,
    "appState": 0,
    "moving": False,
    "onDemand": False,
    "payload": "0520be8800400108c9000000",
    "InstantPER": 0.0,
    "MeanPER": 0.0,
    "DevAddr": "055E1C4E",
    "AckRequested": 0,
    "rawMacCommands": "",
    "TxPower": 2.0,
    "NbTrans": 1,
    "Frequency": 867.9,
    "DynamicClass": "A",
}
LEGACY_UPLINK = {  # sendMetadata=true: the uplink without its DevEUI_uplink root
    "Time": "2020-01-06T12:46:54.285+01:00",
    "DevEUI": "20635F0108000E09",
    "FPort": 17,
    "FCntUp": 265,
    "ADRbit": 1,
    "MType": 2,
    "FCntDn": 9,
    "payload_hex": "0520be8800400108c9000000",
    "mic_hex": "3bcf2927",
    "Lrcid": "00000127",
    "LrrRSSI": -65.0,
    "LrrSNR": 9.5,
    "SpFact": 7,
    "SubBand": "G1",
    "Channel": "LC3",
    "DevLrrCnt": 2,
    "Lrrid": "08050376",
    "Late": 0,
    "LrrLAT": 43.615501,
    "LrrLON": 7.066182,
    "Lrrs": {
        "Lrr": [
            {"Lrrid": "08050376", "Chain": 0, "LrrRSSI": -65.0, "LrrSNR": 9.5, "LrrESP": -65.461838},
            {"Lrrid": "C0001BC3", "Chain": 0, "LrrRSSI": -69.0, "LrrSNR": 8.75, "LrrESP": -69.543648},
        ]
    },
    "CustomerID": "100002164",
    "CustomerData": {"alr": {"pro": "ABEE/APY", "ver": "1"}},
    "ModelCfg": "1:TWA_100002157.11278.AS",
    "DriverCfg": {"app": {"mId": "asset-tracker", "pId": "abeeway", "ver": "1"}, "id": "abeeway:asset-tracker:1"},
    "payload": DRIVER_PAYLOAD,
}
DECODE_FAILED_UPLINK = {
    "DevEUI_uplink": {
        "Time": "2022-02-09T12:45:00.380+00:00",
        "DevEUI": "70B3D531C00027C8",
        "FPort": 1,
        "FCntUp": 80,
        "payload_hex": "4c0500021d0f3701573c627f38385a553c313b343d3937301b2b292c201e221f161611120a0a0a07",
        "LrrRSSI": -52,
        "LrrSNR": 13,
        "SpFact": 12,
        "DevLrrCnt": 5,
        "Lrrid": "1000050A",
        "Frequency": 867.1,
        "payloadDecodedError": {"code": "com-5002", "message": "driver internal error: Error: Invalid fPort!"},
    }
}
DOWNLINK_REJECTED = {
    "DevEUI_downlink_Rejected": {
        "Time": "2019-08-22T16:48:02.000+02:00",
        "DevEUI": "0018B20000000D48",
        "FPort": 1,
        "DeliveryStatus": 350,
        "DownlinkRejectionCause": "Downlink counter value already used. Expected=1238",
        "CustomerID": "199983788",
    }
}
LOCATION = {
    "DevEUI_location": {
        "DevEUI": "000000000f1d8693",
        "DevAddr": "0405F519",
        "Lrcid": "00000065",
        "NwGeolocAlgo": 2,
        "NwGeolocAlgoUsed": 0,
        "Time": "2020-07-09T16:06:38.49+02:00",
        "DevLocTime": "2020-01-27T10:00:43.336+01:00",
        "DevLAT": 10.11212,
        "DevLON": 7.44464,
        "DevAlt": 50,
        "DevLocRadius": 100,
        "DevAltRadius": 50,
        "DevUlFCntUpUsed": 7010,
        "CustomerID": "100000507",
    }
}
DOC_EXAMPLES = [JOIN_REQUEST, LEGACY_UPLINK, {"DevEUI_uplink": LEGACY_UPLINK}, DECODE_FAILED_UPLINK]
DOC_EXAMPLES += [DOWNLINK_REJECTED, LOCATION]
SAMPLE_NAMES = (
    "thingpark_uplink_1.json",
    "thingpark_uplink_decoded_only_1.json",
    "thingpark_downlink_1.json",
    "thingpark_downlink_sent_1.json",
    "thingpark_downlink_3_mqtt_mosquitto.json",
    "thingpark_notification_1.json",
)


def test_registered_under_its_name():
    assert platforms.get("thingpark") is PLATFORM
    assert (PLATFORM.name, PLATFORM.label) == ("thingpark", "Actility ThingPark")
    assert PLATFORM.topic_pattern_field == "downlink_topic_pattern"
    assert PLATFORM.field(PLATFORM.topic_pattern_field).default == "mqtt/things/{DevEUI}/downlink"


# ----- samples and documented messages --------------------------------------------------------


def test_uplink_sample_with_numbers_as_strings():
    event = parse_one(sample("thingpark_uplink_1.json"))
    assert event.platform == "thingpark"
    assert event.kind == "uplink"
    assert event.received_at == "2018-10-03T15:38:46.882+02:00"
    assert event.dev_eui == "0018B20000000B20"
    assert event.device_id == "0018B20000000B20"  # ThingPark names a device by its DevEUI
    assert event.dev_addr == "04D2848E"
    assert (event.f_port, event.f_cnt) == (1, 1174)
    assert event.payload_hex == "9e1c4852512000220020e3831071"
    assert (event.rssi, event.snr, event.gateway_id, event.gateways) == (-80.0, 7.0, "004A18E3", 1)
    assert event.spreading_factor == 7
    assert event.frequency_hz == 868_100_000
    assert event.decoded is None and event.error is None
    assert event.topic == UPLINK_TOPIC


def test_numbers_as_json_numbers_give_the_same_event():
    doc = orjson.loads(sample("thingpark_uplink_1.json"))
    body = doc["DevEUI_uplink"]
    for key in ("FPort", "FCntUp", "SpFact", "DevLrrCnt"):
        body[key] = int(body[key])
    for key in ("LrrRSSI", "LrrSNR"):
        body[key] = float(body[key])
    body["Frequency"] = str(body["Frequency"])  # and the MHz as a string
    as_numbers = parse_one(doc).to_dict()
    as_strings = parse_one(sample("thingpark_uplink_1.json")).to_dict()
    assert as_numbers == as_strings
    assert isinstance(as_numbers["f_cnt"], int) and as_numbers["frequency_hz"] == 868_100_000


def test_spreading_factor_spelt_spfact():
    doc = orjson.loads(sample("thingpark_uplink_1.json"))
    doc["DevEUI_uplink"]["Spfact"] = doc["DevEUI_uplink"].pop("SpFact")
    assert parse_one(doc).spreading_factor == 7


@pytest.mark.parametrize(
    ("megahertz", "hertz"),
    [
        (868.1, 868_100_000),
        ("868.1", 868_100_000),
        (867.9, 867_900_000),
        (923.2, 923_200_000),
        (128.003, 128_003_000),  # 128.003 * 1e6 is 128002999.99999999: truncating loses a hertz
        (0, None),
        ("fast", None),
    ],
)
def test_frequency_megahertz_to_whole_hertz(megahertz, hertz):
    doc = orjson.loads(sample("thingpark_uplink_1.json"))
    doc["DevEUI_uplink"]["Frequency"] = megahertz
    assert parse_one(doc).frequency_hz == hertz


def test_join_request_has_no_fport_and_its_levels_only_in_lrrs():
    event = parse_one(JOIN_REQUEST)
    assert event.kind == "join"
    assert event.dev_eui == "0018B20000000B20"
    assert event.f_port is None
    assert event.payload_hex == "003246524144b21800200b000000b2180052ff36f5e390"
    assert event.spreading_factor == 12  # spelt Spfact in join requests
    assert (event.gateway_id, event.rssi, event.snr, event.gateways) == ("3C200E92", -56.0, 8.75, 1)


def test_legacy_uplink_without_root_equals_the_rooted_one():
    legacy = parse_one(LEGACY_UPLINK)
    rooted = parse_one({"DevEUI_uplink": LEGACY_UPLINK})
    assert legacy.to_dict() == rooted.to_dict()
    assert legacy.kind == "uplink"
    assert (legacy.dev_eui, legacy.f_port, legacy.f_cnt) == ("20635F0108000E09", 17, 265)
    assert legacy.decoded == DRIVER_PAYLOAD
    # DevLrrCnt says 2; the best gateway is the top-level Lrrid.
    assert (legacy.gateways, legacy.gateway_id, legacy.rssi, legacy.snr) == (2, "08050376", -65.0, 9.5)


def test_gateway_count_falls_back_to_the_lrr_list():
    body = copy.deepcopy(LEGACY_UPLINK)
    del body["DevLrrCnt"], body["LrrRSSI"], body["LrrSNR"], body["Lrrid"]
    event = parse_one(body)
    assert event.gateways == 2
    assert (event.gateway_id, event.rssi, event.snr) == ("08050376", -65.0, 9.5), "the best SNR of the list"


@pytest.mark.parametrize(
    ("lrrs", "gateways"),
    [
        ({"Lrr": [1, "x", None, {"Lrrid": 5, "LrrSNR": "bad"}]}, 4),
        ({"Lrr": "004A18E3"}, None),
        ({"Lrr": {}}, None),
        ([{"Lrrid": "004A18E3"}], None),
        ("Lrrs", None),
    ],
)
def test_odd_gateway_metadata_is_ignored_not_fatal(lrrs, gateways):
    event = parse_one({"DevEUI_uplink": {"DevEUI": "0018B20000000B20", "FPort": 1, "Lrrs": lrrs}})
    assert event.kind == "uplink" and event.gateways == gateways
    assert (event.gateway_id, event.rssi, event.snr) == (None, None, None)


def test_driver_decoding_error_is_the_events_error():
    event = parse_one(DECODE_FAILED_UPLINK)
    assert event.kind == "uplink"
    assert event.decoded is None
    assert "com-5002" in event.error and "driver internal error: Error: Invalid fPort!" in event.error
    assert event.payload_hex.startswith("4c0500021d")
    assert (event.rssi, event.snr, event.gateways, event.frequency_hz) == (-52.0, 13.0, 5, 867_100_000)


def test_decoded_only_sample_without_a_pattern():
    event = parse_one(sample("thingpark_uplink_decoded_only_1.json"))
    assert event.kind == "uplink"
    assert event.decoded == orjson.loads(sample("thingpark_uplink_decoded_only_1.json"))
    assert event.decoded["messageType"] == "HEARTBEAT"
    assert event.dev_eui is None and event.payload_hex is None
    assert event.received_at.endswith("Z"), "no Time in the body: the time it was received"


@pytest.mark.parametrize(
    ("pattern", "topic"),
    [
        ("mqtt/things/{DevEUI}/uplink", "mqtt/things/20635f0108000e09/uplink"),
        ("tp/dev-{DevEUI}/up", "tp/dev-20635F0108000E09/up"),
        ("{Tenant}/{DevEUI}-{FPort}/data", "acme/20635F0108000E09-17/data"),
    ],
)
def test_decoded_only_takes_the_deveui_from_the_topic(pattern, topic):
    parser = PLATFORM.parser_for(profile(uplink_topic_pattern=pattern))
    event = parse_one(sample("thingpark_uplink_decoded_only_1.json"), topic, parser)
    assert event.dev_eui == "20635F0108000E09"
    assert event.decoded["batteryVoltage"] == 3.85


def test_decoded_only_on_a_topic_thingpark_would_not_use_is_rejected():
    parser = PLATFORM.parser_for(profile(uplink_topic_pattern="tp/dev-{DevEUI}/up"))
    # tp/+/up matches this topic, the pattern does not: not ThingPark's.
    with pytest.raises(DecodeError, match="does not match the uplink pattern 'tp/dev-{DevEUI}/up'"):
        parser.parse("tp/other-20635F0108000E09/up", sample("thingpark_uplink_decoded_only_1.json"))


def test_decoded_only_with_a_bridge_topic_has_no_deveui():
    parser = PLATFORM.parser_for(profile(uplink_topic_pattern="tpx/things/ActilityGreengrassBridge/uplink"))
    event = parse_one(
        sample("thingpark_uplink_decoded_only_1.json"), "tpx/things/ActilityGreengrassBridge/uplink", parser
    )
    assert event.dev_eui is None and event.decoded["mode"] == "MOTION_TRACKING"


def test_bound_parser_reads_rooted_messages_like_the_plain_one():
    parser = PLATFORM.parser_for(profile(uplink_topic_pattern="elsewhere/{DevEUI}"))
    for name in SAMPLE_NAMES[:1] + SAMPLE_NAMES[2:]:
        assert (
            parser.parse(UPLINK_TOPIC, sample(name))[0].to_dict()
            == PLATFORM.parse(UPLINK_TOPIC, sample(name))[0].to_dict()
        )


def test_downlink_sent_sample_reports_a_failure():
    event = parse_one(sample("thingpark_downlink_sent_1.json"))
    assert event.kind == "downlink_failed"  # DeliveryStatus 0: not sent over the air
    assert "DeliveryStatus 0" in event.error and "RX1 B0 (too late for RX1)" in event.error
    assert "RX2" not in event.error, "00 is no error"
    assert event.received_at == "2019-08-22T16:48:02.000+02:00"
    assert (event.dev_eui, event.f_port, event.f_cnt) == ("0018B20000000D48", 1, 47)
    assert (event.gateway_id, event.spreading_factor, event.frequency_hz) == ("FF0106DE", 7, 868_300_000)
    assert event.correlation_ids == []


def test_downlink_sent_success():
    doc = orjson.loads(sample("thingpark_downlink_sent_1.json"))
    doc["DevEUI_downlink_Sent"].update(DeliveryStatus=1, DeliveryFailedCause1="00", CorrelationID="0123456789ABCDEF")
    event = parse_one(doc)
    assert event.kind == "downlink_sent"
    assert event.error is None
    assert event.correlation_ids == ["0123456789ABCDEF"]


def test_downlink_sent_status_as_string_and_other_slots():
    doc = orjson.loads(sample("thingpark_downlink_sent_1.json"))
    doc["DevEUI_downlink_Sent"].update(DeliveryStatus="0", DeliveryFailedCause1="C0", DeliveryFailedCause2="E0")
    event = parse_one(doc)
    assert event.kind == "downlink_failed"
    assert "RX1 C0 (LRC selected RX2)" in event.error and "RX2 E0 (max delay for Class C" in event.error


def test_downlink_rejected():
    event = parse_one(DOWNLINK_REJECTED)
    assert event.kind == "downlink_failed"
    assert event.error == "ThingPark rejected the downlink: Downlink counter value already used. Expected=1238."
    assert (event.dev_eui, event.f_port) == ("0018B20000000D48", 1)


def test_location():
    event = parse_one(LOCATION)
    assert event.kind == "location"
    assert event.dev_eui == "000000000F1D8693", "uppercased"
    assert event.dev_addr == "0405F519"
    assert event.received_at == "2020-07-09T16:06:38.49+02:00"
    assert event.decoded == {
        "latitude": 10.11212,
        "longitude": 7.44464,
        "altitude": 50.0,
        "accuracy": 100.0,
        "altitude_accuracy": 50.0,
        "time": "2020-01-27T10:00:43.336+01:00",
        "algorithm": 0,
    }


def test_notification_sample_is_a_status():
    event = parse_one(sample("thingpark_notification_1.json"))
    assert event.kind == "status"
    assert event.dev_eui == "000000000F1D8693"
    assert event.dev_addr == "0405F519"
    assert event.received_at == "2020-07-09T16:06:38.49+02:00"
    assert event.decoded == {"type": "join"}, "empty Var1/Var2 are left out"


def test_notification_devstatusans_names_battery_and_margin():
    doc = orjson.loads(sample("thingpark_notification_1.json"))
    doc["DevEUI_notification"].update(Type="devstatusans", Var1="254", Var2="-3")
    assert parse_one(doc).decoded == {"type": "devstatusans", "battery": 254, "margin": -3}


@pytest.mark.parametrize(
    ("name", "dev_eui", "f_port"),
    [
        ("thingpark_downlink_1.json", "0018B20000000B20", 1),
        ("thingpark_downlink_3_mqtt_mosquitto.json", "A81758FFFE04F27E", 8),
    ],
)
def test_downlink_request_seen_on_the_broker_is_an_event(name, dev_eui, f_port):
    event = parse_one(sample(name), "mqtt/things/A81758FFFE04F27E/downlink")
    assert event.kind == "event"
    assert (event.dev_eui, event.f_port) == (dev_eui, f_port)
    assert event.payload_hex == "9e1c4852512000220020e3831071"


def test_unknown_thingpark_report_is_shown_as_an_event():
    body = {"DevEUI": "0018b20000000b20", "Time": "2024-01-01T00:00:00Z", "Status": 3}
    event = parse_one({"DevEUI_multicast_summary": body})
    assert event.kind == "event"
    assert event.dev_eui == "0018B20000000B20"
    assert event.decoded == {"DevEUI_multicast_summary": body}


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"", "empty"),
        (b"\x00\xff\xfe binary", "not valid JSON"),
        (b'{"DevEUI_uplink": {"DevEUI": ', "not valid JSON"),
        (b"[1, 2]", "not an object"),
        (b'"DevEUI_uplink"', "not an object"),
        (b'{"DevEUI_uplink": [1]}', "DevEUI_uplink is an array"),
        (b'{"DevEUI_uplink": null}', "DevEUI_uplink is null"),
        (b'{"DevEUI_uplink": {"FPort": 1}}', "DevEUI_uplink has no DevEUI"),
        (b'{"DevEUI_uplink": {"DevEUI": 18}}', "DevEUI_uplink.DevEUI is 18"),
        (b'{"DevEUI_uplink": {"DevEUI": "0018B2000000XXXX"}}', "16 hex digits"),
        (b'{"DevEUI_uplink": {"DevEUI": "0018B20000000B20", "payload_hex": "9e1"}}', "payload_hex is '9e1'"),
        (b'{"DevEUI_uplink": {"DevEUI": "0018B20000000B20", "payload_hex": 12}}', "not an even number of hex"),
        (b'{"DevEUI_downlink_Sent": "sent"}', "DevEUI_downlink_Sent is a string"),
        (b'{"DevEUI_notification": {}}', "DevEUI_notification has no DevEUI"),
        (b'{"DevEUI_strange": 5}', "DevEUI_strange is a number"),
        (b'{"a":' + b"1" * (MAX_BODY + 1) + b"}", "too large"),
    ],
)
def test_messages_that_are_not_thingparks_are_rejected_with_a_sentence(payload, message):
    with pytest.raises(DecodeError, match=message.replace("[", r"\[")) as caught:
        PLATFORM.parse(UPLINK_TOPIC, payload)
    text = str(caught.value)
    assert text.endswith(".") and "\n" not in text
    [event] = PLATFORM.parse_or_error(UPLINK_TOPIC, payload)
    assert event.kind == "error" and event.error == text


# ----- fuzzing --------------------------------------------------------------------------------

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
BOUND_PARSER = PLATFORM.parser_for(profile(uplink_topic_pattern="mqtt/things/{DevEUI}/uplink"))
THINGPARK_KEYS = ["DevEUI_uplink", "DevEUI_downlink_Sent", "DevEUI_downlink_Rejected", "DevEUI_location"]
THINGPARK_KEYS += ["DevEUI_notification", "DevEUI_downlink", "DevEUI", "Time", "FPort", "payload_hex"]
THINGPARK_KEYS += ["Lrrs", "Lrr", "LrrRSSI", "Frequency", "SpFact", "DeliveryStatus", "payloadDecodedError"]
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.sampled_from(["0018B20000000B20", "868.1", "-80.5", "9e1c", "1e400", "nan", "00", "B0", "1"])
)


def json_documents(max_leaves: int):
    return st.recursive(
        json_scalars,
        lambda children: (
            st.lists(children, max_size=4)
            | st.dictionaries(st.sampled_from(THINGPARK_KEYS) | st.text(max_size=8), children, max_size=5)
        ),
        max_leaves=max_leaves,
    )


json_values = json_documents(25)
replacement_values = json_documents(6)
FUZZ_TOPICS = st.sampled_from([UPLINK_TOPIC, "mqtt/things/x/uplink", "", "a/b/c/d"]) | st.text(max_size=30)


def check_parses_or_rejects(topic: str, payload: bytes) -> None:
    for parser in (PLATFORM, BOUND_PARSER):
        try:
            events = parser.parse(topic, payload)
        except DecodeError as exc:
            reason = str(exc)
            assert reason.endswith(".") and "\n" not in reason and len(reason) < 1000, "one short sentence"
            continue
        assert events and all(event.kind in KINDS for event in events)
        for event in events:
            assert set(orjson.loads(event.to_json())) == set(EVENT_KEYS), "every event serializes"


@FUZZ
@given(FUZZ_TOPICS, st.binary(max_size=600))
def test_fuzz_arbitrary_bytes(topic, payload):
    check_parses_or_rejects(topic, payload)


@FUZZ
@given(FUZZ_TOPICS, json_values)
def test_fuzz_arbitrary_json(topic, value):
    check_parses_or_rejects(topic, orjson.dumps(value))
    check_parses_or_rejects(topic, orjson.dumps({"DevEUI_uplink": value}))


def all_paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for key, child in value.items():
            yield from all_paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from all_paths(child, (*prefix, index))


FUZZ_DOCUMENTS = [orjson.loads(sample(name)) for name in SAMPLE_NAMES] + DOC_EXAMPLES


@FUZZ
@given(st.sampled_from(FUZZ_DOCUMENTS), st.data())
def test_fuzz_mutated_real_messages(document, data):
    mutated = copy.deepcopy(document)
    for _ in range(data.draw(st.integers(1, 3))):
        paths = [path for path in all_paths(mutated) if path]
        if not paths:
            break
        path = data.draw(st.sampled_from(paths))
        parent = mutated
        for step in path[:-1]:
            parent = parent[step]
        if data.draw(st.booleans()) and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = data.draw(replacement_values)
    payload = orjson.dumps(mutated)
    check_parses_or_rejects(UPLINK_TOPIC, payload)
    check_parses_or_rejects(UPLINK_TOPIC, payload[: data.draw(st.integers(0, len(payload)))])


# ----- topic patterns -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "topic_filter"),
    [
        ("mqtt/things/{DevEUI}/uplink", "mqtt/things/+/uplink"),
        ("{DevEUI}", "+"),
        ("lora/dev-{DevEUI}/up", "lora/+/up"),
        ("/{AppID}/{DevEUI}/", "/+/+/"),
        ("x/{A}-{B}.json/y", "x/+/y"),
        ("tpx/things/ActilityGreengrassBridge/uplink", "tpx/things/ActilityGreengrassBridge/uplink"),
        ("$aws/things/{DevEUI}/shadow", "$aws/things/+/shadow"),
        ("a/{Dev EUI}/b", "a/+/b"),
    ],
)
def test_placeholders_become_plus(pattern, topic_filter):
    assert topic_filter_for(pattern) == topic_filter
    Subscription(topic_filter)  # a valid MQTT filter


def test_fill_and_extract_are_inverse():
    pattern = "acme/{Tenant}/dev-{DevEUI}.{FPort}/up/{DevEUI}"
    values = {"Tenant": "t1", "DevEUI": "0018B20000000B20", "FPort": "8"}
    topic = fill_topic_pattern(pattern, values)
    assert topic == "acme/t1/dev-0018B20000000B20.8/up/0018B20000000B20"
    assert extract_topic_values(pattern, topic) == values
    assert compile_topic_pattern(pattern).names == ("Tenant", "DevEUI", "FPort")


@pytest.mark.parametrize(
    ("pattern", "topic", "values"),
    [
        ("mqtt/things/{DevEUI}/uplink", "mqtt/things/ABC/uplink", {"DevEUI": "ABC"}),
        ("mqtt/things/{DevEUI}/uplink", "mqtt/things/ABC/downlink", None),
        ("mqtt/things/{DevEUI}/uplink", "mqtt/things/a/b/uplink", None),
        ("mqtt/things/{DevEUI}/uplink", "mqtt/things//uplink", None),
        ("lora/dev-{DevEUI}/up", "lora/dev-42/up", {"DevEUI": "42"}),
        ("lora/dev-{DevEUI}/up", "lora/device-42/up", None),
        ("lora/dev-{DevEUI}/up", "lora/dev-/up", None),
        ("x/{A}-{B}/y", "x/1-2-3/y", {"A": "1", "B": "2-3"}),
        ("a.b/{X}", "aXb/1", None),  # the dot is literal, not a regex wildcard
        ("{X}/same/{X}", "1/same/2", None),  # one placeholder, two values
        ("bridge/uplink", "bridge/uplink", {}),
    ],
)
def test_extract(pattern, topic, values):
    assert extract_topic_values(pattern, topic) == values


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("", "empty"),
        ("a/+/b", "wildcard"),
        ("a/#", "wildcard"),
        ("a/{DevEUI", "never closes"),
        ("a/DevEUI}/b", "without a '{'"),
        ("a/{}/b", "empty or nested"),
        ("a/{x{y}}/b", "empty or nested"),
        ("a/{A}{B}/b", "side by side"),
        (" a/{DevEUI}", "spaces"),
    ],
)
def test_odd_patterns_are_refused_with_a_sentence(pattern, message):
    with pytest.raises(ProfileError, match=message):
        compile_topic_pattern(pattern)


def test_fill_refuses_missing_values_and_topic_characters():
    with pytest.raises(EncodeError, match=r"needs a value for \{AppID\}"):
        fill_topic_pattern("{AppID}/{DevEUI}/down", {"DevEUI": "0018B20000000B20"})
    with pytest.raises(EncodeError, match="cannot be part of a topic"):
        fill_topic_pattern("a/{DevEUI}", {"DevEUI": "x/y"})


# ----- profile and connection -----------------------------------------------------------------


def test_connection_from_a_thingpark_configuration():
    config = PLATFORM.connection(
        profile(host_name="91.134.250.109:8883", protocol="SSL", username="mycompany", password="bar")
    )
    assert (config.host, config.port, config.transport) == ("91.134.250.109", 8883, Transport.TLS)
    assert (config.username, config.password) == ("mycompany", "bar")
    assert config.connect_timeout == 5.0, "connectionTimeout default 5000 ms"
    assert [(s.topic, s.qos) for s in config.subscriptions] == [("mqtt/things/+/uplink", 1)]


@pytest.mark.parametrize(
    ("protocol", "transport"),
    [("TCP", Transport.TCP), ("SSL", Transport.TLS), ("WSS", Transport.WSS), ("wss", Transport.WSS)],
)
def test_protocol_chooses_the_transport(protocol, transport):
    config = PLATFORM.connection(profile(protocol=protocol, websocket_path="/ws"))
    assert config.transport == transport
    if transport == Transport.WSS:
        assert config.websocket_path == "/ws"


def test_downlink_subscription_and_timeouts():
    config = PLATFORM.connection(
        profile(
            uplink_topic_pattern="tp/dev-{DevEUI}/up",
            subscribe_downlinks=True,
            qos=0,
            connection_timeout_ms=10000,
        )
    )
    assert [(s.topic, s.qos) for s in config.subscriptions] == [("tp/+/up", 0), ("mqtt/things/+/downlink", 0)]
    assert config.connect_timeout == 10.0
    assert PLATFORM.defaults()["action_timeout_ms"] == 1000


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("connection_timeout_ms", 10001, "at most 10000"),
        ("action_timeout_ms", 20000, "at most 10000"),
        ("connection_timeout_ms", 0, "at least 1"),
        ("protocol", "MQTT", "one of SSL, WSS, TCP"),
        ("qos", 3, "at most 2"),
        ("uplink_topic_pattern", "a/+/b", "wildcard"),
        ("downlink_topic_pattern", "a/{DevEUI", "never closes"),
        ("host_name", "broker.example.com", "has no port"),
        ("host_name", "broker.example.com:88830", "use a number from 1 to 65535"),
        ("host_name", "broker.example.com:https", "use a number from 1 to 65535"),
        ("host_name", "mqtts://broker.example.com:8883", "without a scheme"),
        ("host_name", "", "required"),
    ],
)
def test_profile_values_outside_the_documented_limits(field, value, message):
    with pytest.raises(ProfileError, match=message):
        PLATFORM.connection(profile(**{field: value}))


@pytest.mark.parametrize(
    ("host_name", "expected"),
    [("broker.example.com:8883", ("broker.example.com", 8883)), ("[2001:db8::1]:1883", ("2001:db8::1", 1883))],
)
def test_split_host_name(host_name, expected):
    assert split_host_name(host_name) == expected


def test_private_key_help_warns_about_pkcs8():
    assert "PKCS#8" in PLATFORM.field("key_file").help


# ----- downlinks ------------------------------------------------------------------------------


def encode(request: DownlinkRequest, **profile_values):
    message = PLATFORM.encode_downlink(profile(**profile_values), request)
    return message, orjson.loads(message.payload)["DevEUI_downlink"]


def test_downlink_body_and_topic():
    request = DownlinkRequest(dev_eui="a81758fffe04f27e", f_port=8, payload=bytes.fromhex("9E1C4852"), confirmed=True)
    message, body = encode(request, qos=2)
    assert message.topic == "mqtt/things/A81758FFFE04F27E/downlink"
    assert (message.qos, message.retain) == (2, False)
    assert dt.datetime.fromisoformat(body.pop("Time")).tzinfo is not None
    correlation_id = body.pop("CorrelationID")
    assert len(correlation_id) == 16 and int(correlation_id, 16) >= 0
    assert body == {
        "DevEUI": "A81758FFFE04F27E",
        "FPort": 8,
        "payload_hex": "9e1c4852",
        "Confirmed": 1,
        "FlushDownlinkQueue": 0,
    }


def test_each_downlink_gets_its_own_correlation_id_unless_given():
    request = DownlinkRequest(dev_eui="0018B20000000B20", f_port=1, payload=b"\x01")
    assert encode(request)[1]["CorrelationID"] != encode(request)[1]["CorrelationID"]
    given_id = DownlinkRequest(
        dev_eui="0018B20000000B20", f_port=1, payload=b"\x01", correlation_ids=("00ff00ff00ff00ff",)
    )
    assert encode(given_id)[1]["CorrelationID"] == "00FF00FF00FF00FF"


def test_decoded_payload_for_the_driver_and_flush():
    decoded = {"DownMessageType": "SET_PARAMETER", "ParameterName": "TRANSMIT_STRAT", "AckToken": 1}
    _, body = encode(DownlinkRequest(dev_eui="0018-B200-0000-0B20", f_port=1, decoded=decoded, flush_queue=True))
    assert body["payload"] == decoded and "payload_hex" not in body
    assert body["DevEUI"] == "0018B20000000B20"
    assert (body["Confirmed"], body["FlushDownlinkQueue"]) == (0, 1)


def test_downlink_topic_from_a_custom_pattern():
    message, _ = encode(
        DownlinkRequest(dev_eui="0018B20000000B20", f_port=1, payload=b"\x01"), downlink_topic_pattern="tp/{DevEUI}-dl"
    )
    assert message.topic == "tp/0018B20000000B20-dl"


@pytest.mark.parametrize(
    ("request_values", "message"),
    [
        ({"f_port": 1, "payload": b"\x01"}, "Enter the device's DevEUI"),
        ({"dev_eui": "0018B20000000B2", "f_port": 1, "payload": b"\x01"}, "DevEUI '0018B20000000B2' is not valid"),
        ({"dev_eui": "0018B2000000XB20", "f_port": 1, "payload": b"\x01"}, "16 hex digits"),
        ({"dev_eui": "0018B20000000B20", "payload": b"\x01"}, "Enter the FPort"),
        ({"dev_eui": "0018B20000000B20", "f_port": 0, "payload": b"\x01"}, "FPort 0 is out of range"),
        ({"dev_eui": "0018B20000000B20", "f_port": 225, "payload": b"\x01"}, "1 to 224"),
        ({"dev_eui": "0018B20000000B20", "f_port": 1}, "Enter a payload"),
        ({"dev_eui": "0018B20000000B20", "f_port": 1, "payload": b""}, "Enter a payload"),
        ({"dev_eui": "0018B20000000B20", "f_port": 1, "payload": b"\x01", "decoded": {"a": 1}}, "not both"),
        ({"dev_eui": "0018B20000000B20", "f_port": 1, "payload": bytes(243)}, f"at most {MAX_DOWNLINK_PAYLOAD} bytes"),
        ({"dev_eui": "0018B20000000B20", "f_port": 1, "payload": b"\x01", "correlation_ids": ("xyz",)}, "16 hex"),
        ({"dev_eui": "0018B20000000B20", "f_port": 1, "payload": b"\x01", "correlation_ids": ("1", "2")}, "single"),
    ],
)
def test_downlinks_that_cannot_be_built(request_values, message):
    with pytest.raises(EncodeError, match=message):
        PLATFORM.encode_downlink(profile(), DownlinkRequest(**request_values))


def test_port_and_length_limits_are_inclusive():
    for f_port in (1, 224):
        request = DownlinkRequest(dev_eui="0018B20000000B20", f_port=f_port, payload=bytes(MAX_DOWNLINK_PAYLOAD))
        assert encode(request)[1]["FPort"] == f_port


def test_downlink_pattern_with_a_placeholder_the_console_cannot_fill():
    request = DownlinkRequest(dev_eui="0018B20000000B20", f_port=1, payload=b"\x01")
    with pytest.raises(EncodeError, match=r"\{AppID\}"):
        PLATFORM.encode_downlink(profile(downlink_topic_pattern="{AppID}/{DevEUI}"), request)


def sent_report_for(downlink: dict) -> bytes:
    """ThingPark's DevEUI_downlink_Sent echo of a downlink, shaped like thingpark_downlink_sent_1.json."""
    report = orjson.loads(sample("thingpark_downlink_sent_1.json"))
    body = report["DevEUI_downlink_Sent"]
    body.update(
        DevEUI=downlink["DevEUI"],
        FPort=downlink["FPort"],
        CorrelationID=downlink["CorrelationID"],
        DeliveryStatus=1,
        DeliveryFailedCause1="00",
    )
    return orjson.dumps(report)


def test_round_trip_downlink_and_its_sent_report():
    request = DownlinkRequest(dev_eui="0018b20000000d48", f_port=42, payload=b"\xca\xfe")
    message, downlink = encode(request)
    event = parse_one(sent_report_for(downlink), "mqtt/things/0018B20000000D48/uplink")
    assert event.kind == "downlink_sent"
    assert event.dev_eui == downlink["DevEUI"] == "0018B20000000D48"
    assert event.f_port == downlink["FPort"] == 42
    assert event.correlation_ids == [downlink["CorrelationID"]]
    request_seen = parse_one(message.payload, message.topic)
    assert (request_seen.kind, request_seen.payload_hex, request_seen.correlation_ids) == (
        "event",
        "cafe",
        event.correlation_ids,
    )


# ----- through a real mosquitto ---------------------------------------------------------------


def broker_profile(broker, topic: str, **values) -> dict:
    return profile(
        host_name=f"127.0.0.1:{broker.ports.plain}",
        protocol="TCP",
        uplink_topic_pattern=f"{topic}/things/{{DevEUI}}/uplink",
        downlink_topic_pattern=f"{topic}/things/{{DevEUI}}/downlink",
        **values,
    )


async def wait_for(messages: list, count: int = 1, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while len(messages) < count and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.01)


async def test_uplink_published_by_thingpark_arrives_and_parses(broker, topic):
    console_profile = broker_profile(broker, topic)
    config = PLATFORM.connection(console_profile)
    parser = PLATFORM.parser_for(console_profile)
    received = []
    thingpark = MqttSession(PLATFORM.connection(console_profile).replace(subscriptions=()))
    async with MqttSession(config, on_message=received.append) as console, thingpark:
        await console.wait_connected(10)
        await thingpark.wait_connected(10)
        for subscription in config.subscriptions:  # returns once the broker has granted it
            await console.subscribe(subscription)
        uplink_topic = fill_topic_pattern(console_profile["uplink_topic_pattern"], {"DevEUI": "0018B20000000B20"})
        await thingpark.publish(uplink_topic, sample("thingpark_uplink_1.json"), qos=1)
        decoded_only_topic = uplink_topic.replace("0018B20000000B20", "20635F0108000E09")
        await thingpark.publish(decoded_only_topic, sample("thingpark_uplink_decoded_only_1.json"), qos=1)
        await wait_for(received, 2)
    assert [message.topic for message in received] == [uplink_topic, decoded_only_topic]
    uplink = parse_one(received[0].payload, received[0].topic, parser)
    assert (uplink.kind, uplink.dev_eui, uplink.f_cnt) == ("uplink", "0018B20000000B20", 1174)
    assert uplink.topic == uplink_topic
    decoded_only = parse_one(received[1].payload, received[1].topic, parser)
    assert (decoded_only.kind, decoded_only.dev_eui) == ("uplink", "20635F0108000E09")


async def test_downlink_published_by_the_console_reaches_thingparks_topic(broker, topic):
    console_profile = broker_profile(broker, topic, subscribe_downlinks=True)
    config = PLATFORM.connection(console_profile)
    downlink_filter = topic_filter_for(console_profile["downlink_topic_pattern"])
    at_thingpark, at_console = [], []
    thingpark = MqttSession(
        config.replace(subscriptions=(Subscription(downlink_filter, 1),)), on_message=at_thingpark.append
    )
    console = MqttSession(config, on_message=at_console.append)
    async with thingpark, console:
        await thingpark.wait_connected(10)
        await console.wait_connected(10)
        await thingpark.subscribe(downlink_filter, 1)
        for subscription in config.subscriptions:
            await console.subscribe(subscription)
        request = DownlinkRequest(dev_eui="a81758fffe04f27e", f_port=8, payload=bytes.fromhex("9e1c48"), confirmed=True)
        message = PLATFORM.encode_downlink(console_profile, request)
        await console.publish(message.topic, message.payload, qos=message.qos, retain=message.retain)
        await wait_for(at_thingpark)
        await wait_for(at_console)
    assert message.topic == f"{topic}/things/A81758FFFE04F27E/downlink"
    assert [(m.topic, m.payload) for m in at_thingpark] == [(message.topic, message.payload)]
    seen = parse_one(at_console[0].payload, at_console[0].topic)
    assert (seen.kind, seen.dev_eui, seen.f_port, seen.payload_hex) == (
        "event",
        "A81758FFFE04F27E",
        8,
        "9e1c48",
    )

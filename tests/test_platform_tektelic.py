"""Tektelic MQTT_V2: the public samples, profile import, parsing, fuzzing, downlink templates, a real broker."""

from __future__ import annotations

import asyncio
import json
import os
import re
import stat
import threading
import time
from pathlib import Path

import orjson
import paho.mqtt.client as paho
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.events import KINDS
from app.mqtt.config import MqttVersion, Transport
from app.mqtt.session import MqttSession
from app.platforms import get
from app.platforms.base import DecodeError, DownlinkRequest, EncodeError, ProfileError
from app.platforms.tektelic import (
    BUILTIN_TEMPLATES,
    PLATFORM,
    iso_from_epoch_any_unit,
    render_template,
    spreading_factor_and_bandwidth,
)

SAMPLES = Path(os.environ.get("UPLINK_CONSOLE_SAMPLES", Path(__file__).resolve().parent / "samples"))
if not SAMPLES.is_dir():
    pytest.skip(f"the platform samples are not at {SAMPLES}", allow_module_level=True)

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def sample(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


def repaired_metadata() -> dict:
    """The wiki's tektelicMetadata example made JSON: its // comments removed, the comma missing
    after deviceName added, and the gateway entry closed where the stored copy is cut off."""
    text = sample("tektelic_metadata_fragment_1.txt").decode()
    text = re.sub(r"^\s*//.*$", "", text, flags=re.MULTILINE)
    text = text.replace('"deviceName": "Device Name"\n', '"deviceName": "Device Name",\n')
    text = text[: text.rindex(",", 0, text.index('"code'))] + "}]}"
    return orjson.loads(text)


def converter_output(data: dict | None = None, **extra) -> dict:
    body = {
        "data": {"bytes": [1, 2, 3]} if data is None else data,
        "errors": [],
        "warnings": [],
        "tektelicMetadata": repaired_metadata(),
    }
    body.update(extra)
    return body


def parse_one(body) -> object:
    events = PLATFORM.parse("push", body if isinstance(body, bytes) else orjson.dumps(body))
    assert len(events) == 1
    return events[0]


def integration_config(**configuration) -> dict:
    doc = orjson.loads(sample("tektelic_mqtt_v2_integration_config_1.json"))
    doc["configuration"].update(configuration)
    return doc


def profile(**values) -> dict:
    return {**PLATFORM.defaults(), "host": "broker.example.com", "push_topic": "up", "pull_topic": "down", **values}


# ----- the samples ----------------------------------------------------------------------------


def test_registered_under_its_name():
    assert get("tektelic") is PLATFORM
    assert PLATFORM.name == "tektelic" and PLATFORM.label == "Tektelic (MQTT_V2)"
    assert PLATFORM.topic_pattern_field == "pull_topic"


def test_metadata_fragment_as_published_is_refused_with_where():
    # The wiki copy has // comments, a missing comma and is truncated: not a message.
    with pytest.raises(DecodeError, match=r"not valid JSON: .* at line 2, column 5\."):
        PLATFORM.parse("push", sample("tektelic_metadata_fragment_1.txt"))


def test_metadata_fragment_repaired_gives_every_field():
    event = parse_one(converter_output())
    assert event.platform == "tektelic" and event.kind == "uplink" and event.topic == "push"
    assert event.application_id == "f8c1b0e0-da68-11ec-9f49-f7efa75f53dd"
    assert event.device_id == "Device Name"
    assert event.dev_eui == "647FDA0300004AAB"
    assert event.dev_addr == "076D51CF"  # "076d51cf" shown uppercase
    assert event.f_port == 10
    assert event.f_cnt == 142
    assert event.received_at == "2012-08-18T11:59:08Z"  # recvTime 1345291148 is seconds
    assert event.frequency_hz == 866100000
    assert event.gateway_id == "647FDAFFFE00CCCB"
    assert event.rssi == -100 and event.snr == 9.5
    assert event.gateways == 1
    # dataRate 7 in US902 is RFU in the regional parameters: the spreading factor is unknown.
    assert event.spreading_factor is None and event.bandwidth_hz is None
    assert event.payload_hex == "010203" and event.decoded is None
    assert event.error is None


def test_passthrough_shape_as_published_is_refused():
    with pytest.raises(DecodeError, match="not valid JSON"):
        PLATFORM.parse("push", sample("tektelic_passthrough_v2_uplink_shape.txt"))


def test_passthrough_shape_filled_in_parses():
    code = sample("tektelic_passthrough_v2_uplink_shape.txt").decode()
    literal = code[code.index("\nreturn ") + len("\nreturn ") : code.rindex(";")]
    literal = literal.replace("input.tektelicMetadata", orjson.dumps(repaired_metadata()).decode())
    literal = literal.replace("arr", "[0, 127, 128, 255]")
    event = parse_one(literal.encode())
    assert event.payload_hex == "007f80ff"
    assert event.decoded is None
    assert event.dev_eui == "647FDA0300004AAB"


@pytest.mark.parametrize("name", ["tektelic_broker_downlink_1.json", "tektelic_broker_downlink_2_mosquitto.json"])
def test_broker_downlink_samples_are_shown_as_downlinks(name):
    event = parse_one(sample(name))
    assert event.kind == "downlink_queued"
    assert event.dev_eui == "647FDA0300000000"
    assert event.f_port == 10
    assert event.payload_hex == "010203"  # "AQID"


def test_integration_config_is_not_a_message():
    with pytest.raises(DecodeError, match=r"neither 'data' nor 'tektelicMetadata' \(it has name, type"):
        PLATFORM.parse("push", sample("tektelic_mqtt_v2_integration_config_1.json"))


# ----- importing the integration's configuration -----------------------------------------------


def test_integration_config_imports_into_a_valid_profile():
    imported = PLATFORM.profile_from_integration_config(integration_config())
    assert imported == PLATFORM.validate(imported)
    expected = {
        "host": "0.tcp.eu.ngrok.io",
        "port": 1883,
        "ssl": False,
        "token": "userT",
        "password": "userP",
        "mqtt_version": "3.1.1-then-3.1",  # "mqttVersion": null
        "clean_session": False,
        "keep_alive_interval_s": 60,
        "connection_timeout_s": 30,
        "autoreconnect_interval_s": 30,
        "max_inflight": 5,
        "pending_queue_max_size": 1000,
        "integration_initialization_retry_interval_s": 120,
        "pending_queue_on_error_processing_retry_interval_s": 60,
        "push_qos": "AT_LEAST_ONCE",
        "pull_qos": "AT_LEAST_ONCE",
        "push_retained": False,
        "push_topic": "pushTopic",
        "pull_topic": "pullTopic",
        "key_password": None,  # "clientKeyPassword": ""
        "client_id": None,
        "downlink_template": "passthrough",
    }
    assert {key: imported[key] for key in expected} == expected


def test_imported_profile_connects_as_configured():
    config = PLATFORM.connection(PLATFORM.profile_from_integration_config(integration_config()))
    assert (config.host, config.port, config.transport) == ("0.tcp.eu.ngrok.io", 1883, Transport.TCP)
    assert (config.username, config.password) == ("userT", "userP")
    assert config.mqtt_version == MqttVersion.V311_THEN_31
    assert config.keepalive == 60 and config.clean_session is False
    assert config.connect_timeout == 30 and config.reconnect_interval == 30
    assert [(s.topic, s.qos) for s in config.subscriptions] == [("pushTopic", 1)]


def test_the_configuration_object_alone_imports_too():
    configuration = integration_config()["configuration"]
    assert PLATFORM.profile_from_integration_config(configuration)["push_topic"] == "pushTopic"


def test_client_id_is_checked_but_not_reused():
    imported = PLATFORM.profile_from_integration_config(integration_config(clientId="tektelic-ns-1"))
    assert imported["integration_client_id"] == "tektelic-ns-1"
    assert not imported["client_id"], "the console must not take the network server's client id"
    with pytest.raises(ProfileError, match="would disconnect the network server"):
        PLATFORM.connection({**imported, "client_id": "tektelic-ns-1"})


@pytest.mark.parametrize(
    ("configuration", "message"),
    [
        (
            {"clientId": "c" * 24, "mqttVersion": "MQTT_VERSION_3_1"},
            "clientId has 24 characters; MQTT 3.1 allows at most 23.",
        ),
        ({"clientId": "c" * 257, "mqttVersion": "MQTT_VERSION_3_1_1"}, "MQTT 3.1.1 allows at most 256."),
        ({"pendingQueueMaxSize": 10001}, "pendingQueueMaxSize is refused: pending queue max size must be at most"),
        ({"maxInflight": 0}, "maxInflight is refused: max inflight must be at least 1 (got 0)."),
        ({"maxInflight": 101}, "maxInflight is refused: max inflight must be at most 100 (got 101)."),
        ({"host": "broker.example.com:1883"}, "enter broker.example.com as host and 1883 under Port."),
        ({"host": "mqtt://broker.example.com"}, "without a scheme"),
        ({"host": ""}, "has no host."),
        ({"pushTopic": ""}, "has no pushTopic"),
        ({"keepAliveIntervalS": 0}, "keepAliveIntervalS is refused"),
        ({"autoreconnectIntervalS": "soon"}, "must be a whole number, not 'soon'."),
        ({"mqttVersion": "MQTT_VERSION_5"}, "is not MQTT_VERSION_3_1 or MQTT_VERSION_3_1_1"),
        ({"pushQos": "SOMETIMES"}, "pushQos 'SOMETIMES' is not one of AT_MOST_ONCE, AT_LEAST_ONCE, EXACTLY_ONCE."),
    ],
)
def test_out_of_range_configurations_are_refused_with_a_sentence(configuration, message):
    with pytest.raises(ProfileError) as info:
        PLATFORM.profile_from_integration_config(integration_config(**configuration))
    text = str(info.value)
    assert message in text, text
    assert text.endswith(".") and "Traceback" not in text


def test_a_24_character_client_id_is_fine_on_mqtt_311():
    imported = PLATFORM.profile_from_integration_config(integration_config(clientId="c" * 24))
    assert imported["integration_client_id"] == "c" * 24


def test_another_integration_type_is_refused():
    with pytest.raises(ProfileError, match="This is a MQTT_BROKER integration"):
        PLATFORM.profile_from_integration_config({**integration_config(), "type": "MQTT_BROKER"})


def test_certificates_are_saved_to_files(tmp_path):
    ca = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    key = "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n"
    doc = integration_config(ssl=True, port=8883, caCertificate=ca, clientPrivateKey=key, clientKeyPassword="pw")
    imported = PLATFORM.profile_from_integration_config(doc, pem_dir=tmp_path)
    assert Path(imported["ca_file"]).read_text() == ca
    assert Path(imported["key_file"]).read_text() == key
    assert stat.S_IMODE(os.stat(imported["key_file"]).st_mode) == 0o600
    assert imported["key_password"] == "pw" and imported["cert_file"] is None
    config = PLATFORM.connection(imported)
    assert config.transport == Transport.TLS and config.tls.ca_file == imported["ca_file"]
    with pytest.raises(ProfileError, match="carries caCertificate as text; choose a folder"):
        PLATFORM.profile_from_integration_config(doc)
    with pytest.raises(ProfileError, match="caCertificate is not PEM text"):
        PLATFORM.profile_from_integration_config(integration_config(caCertificate="hello"), pem_dir=tmp_path)


# ----- the profile ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "accepted"),
    [
        ("broker.example.com", "broker.example.com"),
        ("  10.0.0.7 ", "10.0.0.7"),
        ("::1", "::1"),
        ("[fe80::1]", "fe80::1"),
    ],
)
def test_hosts_accepted(host, accepted):
    assert PLATFORM.validate(profile(host=host))["host"] == accepted


@pytest.mark.parametrize(
    ("host", "message"),
    [
        ("broker:1883", "may not include a port"),
        ("[::1]:8883", "enter ::1 as host and 8883 under Port"),
        ("mqtts://broker", "without a scheme"),
        ("broker/path", "not a host name"),
        ("a:b", "not a host name"),
    ],
)
def test_hosts_refused(host, message):
    with pytest.raises(ProfileError, match=re.escape(message)):
        PLATFORM.validate(profile(host=host))


def test_fields_carry_the_documented_ranges():
    assert (PLATFORM.field("max_inflight").minimum, PLATFORM.field("max_inflight").maximum) == (1, 100)
    assert (PLATFORM.field("pending_queue_max_size").minimum, PLATFORM.field("pending_queue_max_size").maximum) == (
        1,
        10000,
    )
    assert PLATFORM.field("push_qos").choices == ("AT_MOST_ONCE", "AT_LEAST_ONCE", "EXACTLY_ONCE")
    assert PLATFORM.field("password").kind == "secret" and PLATFORM.field("key_password").kind == "secret"
    assert "port is not allowed" in PLATFORM.field("host").help.lower()
    for field in PLATFORM.fields:
        assert field.help or field.kind in ("file", "secret", "bool"), field.name


def test_versions_and_qos_in_either_spelling():
    checked = PLATFORM.validate(profile(mqtt_version="MQTT_VERSION_3_1", push_qos=2, pull_qos="0"))
    assert checked["mqtt_version"] == "3.1"
    assert (checked["push_qos"], checked["pull_qos"]) == ("EXACTLY_ONCE", "AT_MOST_ONCE")
    config = PLATFORM.connection(checked)
    assert config.mqtt_version == MqttVersion.V31 and config.subscriptions[0].qos == 2


def test_client_id_length_follows_the_version():
    with pytest.raises(ProfileError, match="Client id has 24 characters; MQTT 3.1 allows at most 23."):
        PLATFORM.validate(profile(mqtt_version="3.1", client_id="x" * 24))
    assert PLATFORM.validate(profile(mqtt_version="5", client_id="x" * 256))["client_id"] == "x" * 256
    with pytest.raises(ProfileError, match="MQTT 5 allows at most 256"):
        PLATFORM.validate(profile(mqtt_version="5", client_id="x" * 257))


def test_connection_from_a_form():
    config = PLATFORM.connection(
        profile(ssl=True, port=None, token="u", password="p", autoreconnect_interval_s=120, clean_session=False)
    )
    assert config.transport == Transport.TLS and config.effective_port == 8883
    assert config.reconnect_interval == 120 and config.reconnect_max_interval >= 120
    assert config.clean_session is False


def test_push_topic_is_required_and_pull_topic_takes_no_wildcards():
    with pytest.raises(ProfileError, match="Push topic is required."):
        PLATFORM.validate(profile(push_topic=""))
    with pytest.raises(ProfileError, match="wildcards"):
        PLATFORM.validate(profile(pull_topic="down/#"))


# ----- parsing --------------------------------------------------------------------------------


def test_decoded_data_with_converter_errors():
    event = parse_one(converter_output({"temperature": 21.5}, errors=["Unable to decode header 0A", {"code": 3}]))
    assert event.decoded == {"temperature": 21.5}
    assert event.payload_hex is None
    assert event.error == 'Unable to decode header 0A; {"code":3}'
    assert event.kind == "uplink"


def test_application_id_in_rest_style():
    meta = {"applicationId": {"entityType": "APPLICATION", "id": "f2f3bef0"}, "deviceName": 7}
    event = parse_one({"data": {}, "tektelicMetadata": meta})
    assert (event.application_id, event.device_id) == ("f2f3bef0", "7")


def test_errors_as_one_string():
    # Tektelic's own decoders set errors = "Fatal decoder error" when they throw.
    assert parse_one(converter_output(errors="Fatal decoder error")).error == "Fatal decoder error"


def test_bytes_next_to_decoded_fields_give_both():
    event = parse_one(converter_output({"bytes": [10, 11], "temperature": 3}))
    assert event.payload_hex == "0a0b" and event.decoded == {"bytes": [10, 11], "temperature": 3}


def test_numbers_as_strings_and_milliseconds():
    meta = {
        "deviceEui": "647fda0300004aab",
        "fPort": "12",
        "fCntUp": "7",
        "uLFreq": "868300000",
        "recvTime": "1700000000123",
        "dataRate": "5",
        "rfRegion": "EU868",
        "gatewayRxInfo": [{"gwEui": "aa", "rssi": "-120", "snr": "-3"}, {"gatewayName": "roof", "rssi": "-80"}],
    }
    event = parse_one({"data": {"bytes": []}, "tektelicMetadata": meta})
    assert (event.f_port, event.f_cnt, event.frequency_hz) == (12, 7, 868300000)
    assert event.received_at == "2023-11-14T22:13:20.123Z"
    assert (event.spreading_factor, event.bandwidth_hz) == (7, 125000)
    assert (event.gateway_id, event.rssi, event.snr) == ("roof", -80.0, None)
    assert event.gateways == 2, "without gatewayCount: the gateways listed"
    assert event.device_id == "647FDA0300004AAB", "without deviceName: the EUI"
    assert event.payload_hex == ""


def test_out_of_range_numbers_are_left_out():
    # Found by fuzzing: 1e30 read as an integer could not be written out as JSON by the console.
    meta = {"fPort": 1e30, "fCntUp": -1, "uLFreq": "1e400", "gatewayCount": 2**70, "recvTime": 1e30}
    event = parse_one(json.dumps({"data": {}, "tektelicMetadata": meta}).encode())
    assert (event.f_port, event.f_cnt, event.frequency_hz, event.gateways) == (None, None, None, None)
    assert orjson.loads(event.to_json())["kind"] == "uplink"


def test_no_metadata_and_missing_fields_are_not_errors():
    event = parse_one({"data": {"level": 1}})
    assert event.decoded == {"level": 1}
    assert event.dev_eui is None and event.f_port is None and event.gateways is None
    assert event.received_at.endswith("Z"), "the console's own time when recvTime is missing"


@pytest.mark.parametrize(
    ("data_rate", "region", "expected"),
    [
        ("SF7BW125", None, (7, 125000)),
        ("sf12bw500", "US902", (12, 500000)),
        (5, "EU868", (7, 125000)),
        (0, "EU868", (12, 125000)),
        (6, "EU868", (7, 250000)),
        (0, "US902", (10, 125000)),
        (4, "US915", (8, 500000)),
        (6, "AU915", (8, 500000)),
        ("DR2", "AS923-1", (10, 125000)),
        (7, "US902", (None, None)),
        (7, "EU868", (None, None)),  # FSK
        (3, None, (None, None)),
        (3, "MARS", (None, None)),
        ({"sf": 7}, "EU868", (None, None)),
        ("SF99BW125", "EU868", (None, None)),
    ],
)
def test_data_rate_mapping(data_rate, region, expected):
    assert spreading_factor_and_bandwidth(data_rate, region) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1345291148, "2012-08-18T11:59:08Z"),
        (1345291148123, "2012-08-18T11:59:08.123Z"),
        ("1345291148.5", "2012-08-18T11:59:08.500Z"),
        (1345291148123456, "2012-08-18T11:59:08.123456Z"),
        (1345291148123456789, "2012-08-18T11:59:08.123456Z"),
        ("2024-01-02T03:04:05+02:00", "2024-01-02T01:04:05Z"),
        (1e300, None),
        (-1, None),
        (True, None),
        ("soon", None),
    ],
)
def test_epoch_units_by_magnitude(value, expected):
    assert iso_from_epoch_any_unit(value) == expected


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "empty"),
        (b"\x00\xff\xfe garbage", "not valid JSON"),
        (b"[1, 2]", "not an object"),
        (b"{}", "neither 'data' nor 'tektelicMetadata' (it has no keys)"),
        (b'{"data": [1, 2]}', "'data' is an array"),
        (b'{"data": {}, "tektelicMetadata": "x"}', "'tektelicMetadata' is a string"),
        (b'{"data": {"bytes": [1, 300]}}', "Byte 2 of the array is 300"),
        (b'{"data": {"bytes": "AQID"}}', "'data.bytes' is not a byte array"),
        (b'{"fPort": 1, "data": "not base64!"}', "looks like a downlink body"),
        (b"[" * 5000 + b"]" * 5000, "not valid JSON"),
        (b'{"data": "' + b"a" * (5 * 1024 * 1024) + b'"}', "too large"),
    ],
)
def test_wrong_shapes_are_one_sentence(body, message):
    with pytest.raises(DecodeError) as info:
        PLATFORM.parse("push", body)
    assert message in str(info.value)
    assert PLATFORM.parse_or_error("push", body)[0].kind == "error"


# ----- fuzzing --------------------------------------------------------------------------------

TEKTELIC_KEYS = [
    "data",
    "errors",
    "warnings",
    "tektelicMetadata",
    "bytes",
    "applicationId",
    "deviceEui",
    "deviceName",
    "devAddr",
    "fPort",
    "fCntUp",
    "recvTime",
    "dataRate",
    "rfRegion",
    "uLFreq",
    "gatewayCount",
    "gatewayRxInfo",
    "gwEui",
    "gatewayName",
    "rssi",
    "snr",
]
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.text(max_size=20)
    | st.sampled_from(["1", "-90", "1345291148123", "SF7BW125", "EU868", "US902", "AQID", "2024-01-01T00:00:00Z"])
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(st.sampled_from(TEKTELIC_KEYS) | st.text(max_size=8), children, max_size=6)
    ),
    max_leaves=30,
)


def assert_only_decode_errors(body: bytes) -> None:
    try:
        events = PLATFORM.parse("push", body)
    except DecodeError as exc:
        assert str(exc).endswith("."), str(exc)
        return
    for event in events:
        assert event.kind in KINDS
        event.to_json()  # what the console prints must serialize


@FUZZ
@given(st.binary(max_size=2000))
def test_fuzz_arbitrary_bytes(body):
    assert_only_decode_errors(body)


@FUZZ
@given(json_values)
def test_fuzz_arbitrary_json(value):
    assert_only_decode_errors(json.dumps(value).encode())  # stdlib: NaN and big integers too


def all_paths(value, path=()):
    yield path
    if isinstance(value, dict):
        for key, child in value.items():
            yield from all_paths(child, (*path, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from all_paths(child, (*path, index))


def replaced(value, path, new):
    if not path:
        return new
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[path[0]] = replaced(value[path[0]], path[1:], new)
    return copy


REAL_UPLINK = converter_output({"bytes": list(range(20)), "temperature": 21.5}, errors=["x"])
REAL_PATHS = list(all_paths(REAL_UPLINK))


@FUZZ
@given(st.sampled_from(REAL_PATHS), json_values)
def test_fuzz_real_uplink_with_one_value_replaced(path, new):
    assert_only_decode_errors(json.dumps(replaced(REAL_UPLINK, path, new)).encode())


@FUZZ
@given(st.data())
def test_fuzz_real_samples_with_bytes_mutated(data):
    body = bytearray(data.draw(st.sampled_from([orjson.dumps(REAL_UPLINK), sample("tektelic_broker_downlink_1.json")])))
    for _ in range(data.draw(st.integers(1, 6))):
        position = data.draw(st.integers(0, len(body) - 1))
        action = data.draw(st.sampled_from(["flip", "delete", "insert"]))
        if action == "flip":
            body[position] ^= data.draw(st.integers(1, 255))
        elif action == "delete" and len(body) > 1:
            del body[position]
        else:
            body.insert(position, data.draw(st.integers(0, 255)))
    assert_only_decode_errors(bytes(body))


# ----- downlink templates ---------------------------------------------------------------------


def test_passthrough_renders_the_encoder_v2_output():
    message = PLATFORM.encode_downlink(profile(pull_qos="EXACTLY_ONCE"), DownlinkRequest(f_port=5, payload=b"\x00\xff"))
    assert orjson.loads(message.payload) == {"fPort": 5, "bytes": [0, 255]}
    assert (message.topic, message.qos, message.retain) == ("down", 2, False)


def test_broker_base64_equals_the_sample():
    request = DownlinkRequest(dev_eui="647fda03-00000000", f_port=10, payload=b"\x01\x02\x03", template="broker-base64")
    message = PLATFORM.encode_downlink(profile(), request)
    assert orjson.loads(message.payload) == orjson.loads(sample("tektelic_broker_downlink_1.json"))
    assert message.payload == sample("tektelic_broker_downlink_2_mosquitto.json").strip()


def test_template_chosen_in_the_profile():
    request = DownlinkRequest(dev_eui="647FDA0300000000", f_port=10, payload=b"\x01\x02\x03")
    message = PLATFORM.encode_downlink(profile(downlink_template="broker-base64"), request)
    assert orjson.loads(message.payload)["data"] == "AQID"


def test_a_user_template_with_every_placeholder():
    own = (
        'everything = {"port": {fPort}, "hex": {hex}, "b64": {base64}, "raw": {bytes},\n'
        '   "id": "dev-{deviceEui}", "name": {deviceId}, "ack": {confirmed}, "cmd": {decoded},\n'
        '   "literal": "{notAPlaceholder}"}\n'
        "short = {fPort}"
    )
    checked = PLATFORM.validate(profile(downlink_templates=own, downlink_template="everything"))
    request = DownlinkRequest(
        device_id="sensor-1",
        dev_eui="647FDA0300000000",
        f_port=2,
        payload=b"\xab\xcd",
        confirmed=True,
        decoded={"reboot": True},
    )
    body = orjson.loads(PLATFORM.encode_downlink(checked, request).payload)
    assert body == {
        "port": 2,
        "hex": "abcd",
        "b64": "q80=",
        "raw": [171, 205],
        "id": "dev-647FDA0300000000",
        "name": "sensor-1",
        "ack": True,
        "cmd": {"reboot": True},
        "literal": "{notAPlaceholder}",
    }
    short = PLATFORM.encode_downlink(checked, DownlinkRequest(f_port=9, template="short"))
    assert short.payload == b"9", "a template without payload placeholders needs no payload"


def test_a_user_template_replaces_a_built_in_and_templates_may_be_a_dict():
    edited = {"passthrough": '{"port": {fPort}, "payload": "{hex}"}'}
    message = PLATFORM.encode_downlink(profile(downlink_templates=edited), DownlinkRequest(f_port=3, payload=b"\x01"))
    assert orjson.loads(message.payload) == {"port": 3, "payload": "01"}
    assert PLATFORM.templates(profile())["passthrough"] == BUILTIN_TEMPLATES["passthrough"], "built-ins unchanged"


def test_broken_user_templates_are_refused_with_the_name():
    with pytest.raises(ProfileError, match=r"Downlink template 'bad': The template does not give valid JSON"):
        PLATFORM.validate(profile(downlink_templates='bad = {"fPort": {fPort},}'))
    with pytest.raises(ProfileError, match=r"uses \{port\}, which is not one of \{fPort\}"):
        PLATFORM.validate(profile(downlink_templates='bad = {"fPort": {port}}'))
    with pytest.raises(ProfileError, match="Line 1 of the downlink templates has no name"):
        PLATFORM.validate(profile(downlink_templates='{"fPort": {fPort}}'))
    with pytest.raises(ProfileError, match="no downlink template 'nope'; choose one of passthrough, broker-base64"):
        PLATFORM.validate(profile(downlink_template="nope"))


def test_placeholders_inside_strings_are_escaped():
    assert orjson.loads(render_template('{"name": "a {deviceId} b"}', {"deviceId": 'quote " and \\'})) == {
        "name": 'a quote " and \\ b'
    }


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (DownlinkRequest(f_port=1, payload=b"\x01", template="nope"), "choose one of passthrough, broker-base64."),
        (DownlinkRequest(f_port=0, payload=b"\x01"), "LoRaWAN application ports are 1 to 223"),
        (DownlinkRequest(f_port=224, payload=b"\x01"), "224 is the test port"),
        (DownlinkRequest(payload=b"\x01"), "needs an FPort"),
        (DownlinkRequest(f_port=1, payload=b"\x01", template="broker-base64"), "needs the device EUI"),
        (DownlinkRequest(f_port=1, payload=b"\x01", dev_eui="12", template="broker-base64"), "not 16 hex digits"),
        (DownlinkRequest(f_port=1), "There is no payload"),
        (DownlinkRequest(f_port=1, payload=b""), "There is no payload"),
        (DownlinkRequest(f_port=1, payload=bytes(243)), "243 bytes; LoRaWAN carries at most 242"),
    ],
)
def test_downlink_errors_are_sentences(request_, message):
    with pytest.raises(EncodeError) as info:
        PLATFORM.encode_downlink(profile(), request_)
    assert message in str(info.value) and str(info.value).endswith(".")


def test_pull_qos_defaults_to_at_least_once_and_fport_may_be_text():
    message = PLATFORM.encode_downlink({"pull_topic": "down"}, DownlinkRequest(f_port="7", payload=b"\x01"))
    assert message.qos == 1 and orjson.loads(message.payload)["fPort"] == 7


def test_no_pull_topic_no_downlink():
    with pytest.raises(EncodeError, match="Enter the pull topic"):
        PLATFORM.encode_downlink(profile(pull_topic=None), DownlinkRequest(f_port=1, payload=b"\x01"))


@FUZZ
@given(st.integers(1, 223), st.binary(min_size=1, max_size=242))
def test_passthrough_round_trip(f_port, payload):
    message = PLATFORM.encode_downlink(profile(), DownlinkRequest(f_port=f_port, payload=payload))
    body = orjson.loads(message.payload)
    assert bytes(body["bytes"]) == payload and body["fPort"] == f_port
    shown = parse_one(message.payload)  # seen on the pull topic, the console shows what it sent
    assert (shown.kind, shown.f_port, shown.payload_hex) == ("downlink_queued", f_port, payload.hex())


# ----- end to end through mosquitto -----------------------------------------------------------


class PahoClient:
    """A second client with the broker's password: the network server's side of the broker."""

    def __init__(self, port: int, user: str, password: str) -> None:
        self.received: list[paho.MQTTMessage] = []
        self.subscribed = threading.Event()
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"tektelic-ns-{time.time_ns()}")
        self.client.username_pw_set(user, password)
        self.client.on_message = lambda client, userdata, message: self.received.append(message)
        self.client.on_subscribe = lambda *args: self.subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def subscribe(self, topic: str) -> None:
        self.client.subscribe(topic, qos=1)
        assert self.subscribed.wait(5)

    def publish(self, topic: str, body: bytes) -> None:
        self.client.publish(topic, body, qos=1).wait_for_publish(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


async def test_uplink_and_downlink_through_the_password_listener(broker, topic):
    profile_values = profile(
        host="localhost",
        port=broker.ports.auth,
        ssl=False,
        token=broker.USER,
        password=broker.PASSWORD,
        push_topic=f"{topic}/push",
        pull_topic=f"{topic}/pull",
    )
    received = []
    session = MqttSession(PLATFORM.connection(profile_values), on_message=received.append)
    network_server = await asyncio.to_thread(PahoClient, broker.ports.auth, broker.USER, broker.PASSWORD)
    uplink = orjson.dumps(converter_output())
    try:
        await asyncio.to_thread(network_server.subscribe, f"{topic}/pull")
        async with session:
            await session.wait_connected(10)
            # The session subscribes just after it reports "connected": publish until one arrives.
            for _ in range(50):
                await asyncio.to_thread(network_server.publish, f"{topic}/push", uplink)
                await asyncio.sleep(0.1)
                if received:
                    break
            assert received, "the uplink published on pushTopic reached the console"
            event = PLATFORM.parse(received[0].topic, received[0].payload)[0]
            assert (event.kind, event.dev_eui, event.f_cnt, event.payload_hex) == (
                "uplink",
                "647FDA0300004AAB",
                142,
                "010203",
            )
            assert event.topic == f"{topic}/push"

            downlink = PLATFORM.encode_downlink(profile_values, DownlinkRequest(f_port=10, payload=b"\x01\x02\x03"))
            await session.publish(downlink.topic, downlink.payload, qos=downlink.qos, retain=downlink.retain)
            for _ in range(100):
                if network_server.received:
                    break
                await asyncio.sleep(0.05)
    finally:
        await asyncio.to_thread(network_server.close)
    assert [(m.topic, m.payload) for m in network_server.received] == [
        (f"{topic}/pull", b'{"fPort":10,"bytes":[1,2,3]}')
    ]

"""Drogue Cloud: CloudEvents in structured and binary mode, subscriptions, commands, fuzzing, a real broker."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.mqtt.config import MqttVersion, Subscription, TlsSettings, Transport, parse_url
from app.mqtt.session import MqttSession
from app.platforms import get
from app.platforms.base import DecodeError, DownlinkRequest, EncodeError, ProfileError
from app.platforms.drogue import PLATFORM

SAMPLES = Path(__file__).resolve().parent / "samples"
FUZZ = settings(max_examples=300, deadline=None)


def structured_sample() -> dict:
    return orjson.loads((SAMPLES / "drogue_structured_1.json").read_bytes())


def binary_sample() -> tuple[dict, bytes, dict]:
    """The sample's HTTP headers, the data they describe, and the MQTT 5 properties Drogue sends instead:
    the ce-* attributes as user properties without the prefix, content-type as the content type."""
    text = (SAMPLES / "drogue_binary_http_headers_1.txt").read_text()
    headers = orjson.loads("{" + text.strip().rstrip(",") + "}")["headers"]
    # The same event's data as the HTTP body: json.dumps' default separators give the 12 bytes announced.
    data = json.dumps(structured_sample()["data"]).encode()
    properties = {
        "content_type": headers["content-type"],
        "user_properties": [[name.removeprefix("ce-"), value] for name, value in headers.items() if name[:3] == "ce-"],
    }
    return headers, data, properties


def profile(**overrides) -> dict:
    return {"application": "my-app", "auth_mode": "anonymous", **overrides}


def cloudevent(event_type: str, data=None, **attributes) -> bytes:
    event = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "drogue://my%2Dapp/dev%201",
        "type": event_type,
        "time": "2022-03-01T10:00:00+01:00",
        **attributes,
    }
    if data is not None:
        event["data"] = data
    return orjson.dumps(event)


# ----- samples ------------------------------------------------------------------------------


def test_registry_returns_this_platform():
    assert get("drogue") is PLATFORM
    assert (PLATFORM.name, PLATFORM.label, PLATFORM.topic_pattern_field) == ("drogue", "Drogue Cloud", None)


def test_structured_sample():
    sample = structured_sample()
    [event] = PLATFORM.parse("app/app_id", (SAMPLES / "drogue_structured_1.json").read_bytes())
    assert event.platform == "drogue" and event.kind == "uplink"
    assert (
        (event.application_id, event.device_id) == (sample["application"], sample["device"]) == ("app_id", "device_id")
    )
    assert event.received_at == "2021-05-27T22:27:30.758000Z"
    assert event.decoded == sample["data"] == {"temp": 42}
    assert event.payload_hex == orjson.dumps(sample["data"]).hex()
    assert event.correlation_ids == [sample["id"]]
    assert event.f_port is None, "subject 'anything' is a channel, not an FPort"
    assert event.topic == "app/app_id"


def test_structured_sample_without_extensions_takes_names_from_the_percent_encoded_source():
    sample = structured_sample()
    del sample["application"], sample["device"]
    assert sample["source"] == "drogue://app%5Fid/device%5Fid"
    [event] = PLATFORM.parse("app/app_id", orjson.dumps(sample))
    assert (event.application_id, event.device_id) == ("app_id", "device_id")


def test_binary_mode_sample():
    headers, data, properties = binary_sample()
    assert len(data) == int(headers["content-length"])
    assert not any(name.startswith("ce-") for name, _ in properties["user_properties"])
    [event] = PLATFORM.parse("app/app_id", data, properties)
    assert event.kind == "uplink"
    assert (event.application_id, event.device_id) == (headers["ce-application"], headers["ce-device"])
    assert event.received_at == "2021-05-27T22:27:30.758332Z"
    assert event.correlation_ids == [headers["ce-id"]]
    assert event.decoded == {"temp": 42}
    assert event.payload_hex == data.hex()


def test_binary_and_structured_forms_of_the_sample_agree():
    _, data, properties = binary_sample()
    [binary] = PLATFORM.parse("app/app_id", data, properties)
    [structured] = PLATFORM.parse("app/app_id", (SAMPLES / "drogue_structured_1.json").read_bytes())
    for name in ("kind", "application_id", "device_id", "decoded", "correlation_ids", "f_port"):
        assert getattr(binary, name) == getattr(structured, name), name


def test_binary_mode_also_reads_ce_prefixed_names():
    headers, data, _ = binary_sample()
    properties = {"content_type": headers["content-type"], "user_properties": [list(kv) for kv in headers.items()]}
    [event] = PLATFORM.parse("app/app_id", data, properties)
    assert (event.device_id, event.decoded) == ("device_id", {"temp": 42})


def test_connection_event_sample_structured_and_binary():
    data_bytes = (SAMPLES / "drogue_connection_event_data_1.json").read_bytes()
    data = orjson.loads(data_bytes)
    [event] = PLATFORM.parse("app/my-app", cloudevent("io.drogue.connection.v1", data))
    assert event.kind == "status" and event.decoded == {"connected": True}
    assert (event.application_id, event.device_id) == ("my-app", "dev 1")
    assert event.received_at == "2022-03-01T09:00:00Z"
    properties = {
        "content_type": "application/json",
        "user_properties": [
            ["specversion", "1.0"],
            ["id", "c-1"],
            ["source", "drogue://my-app/dev-2"],
            ["type", "io.drogue.connection.v1"],
        ],
    }
    [event] = PLATFORM.parse("app/my-app", data_bytes, properties)
    assert (event.kind, event.device_id, event.decoded) == ("status", "dev-2", {"connected": True})


def test_command_sample_is_what_encode_downlink_publishes():
    lines = dict(
        line.split(": ", 1) for line in (SAMPLES / "drogue_command_1.txt").read_text().splitlines() if ": " in line
    )
    _, application, device, command = lines["topic"].split("/")
    out = PLATFORM.encode_downlink(
        profile(application=application),
        DownlinkRequest(device_id=device, command=command, payload=lines["payload"].encode()),
    )
    assert out.topic == lines["topic"] == "command/my-app/my-device/setTemperature"
    assert out.payload == b'{"value": 1.23 }'


# ----- parsing ------------------------------------------------------------------------------


def test_registry_event_is_an_event():
    body = cloudevent("io.drogue.registry.v1", {"changed": ["spec"]}, subject="devices", device="dev 1")
    [event] = PLATFORM.parse("app/my-app", body)
    assert (event.kind, event.device_id, event.decoded) == ("event", "dev 1", {"changed": ["spec"]})


def test_lorawan_uplink_with_base64_data_port_and_hardware_address():
    raw = bytes.fromhex("0102a0ff")
    body = cloudevent(
        "io.drogue.event.v1",
        subject="5",
        datacontenttype="application/octet-stream",
        data_base64=base64.b64encode(raw).decode(),
        lorawanport="5",
        hwaddr="26011b2c",
        sender="gw-1",
    )
    [event] = PLATFORM.parse("app/my-app", body)
    assert event.payload_hex == raw.hex() and event.decoded is None
    assert event.f_port == 5 and event.dev_addr == "26011B2C"
    assert event.gateway_id == "gw-1"


@pytest.mark.parametrize(
    ("subject", "f_port"), [("1", 1), ("223", 223), ("300", None), ("temperature", None), ("²", None), ("-1", None)]
)
def test_numeric_subject_is_the_fport(subject, f_port):
    [event] = PLATFORM.parse("app/a", cloudevent("io.drogue.event.v1", {"x": 1}, subject=subject))
    assert event.f_port == f_port


def test_json_data_in_base64_and_text_data():
    body = cloudevent("io.drogue.event.v1", datacontenttype="application/json", data_base64="eyJhIjogMX0=")
    [event] = PLATFORM.parse("app/a", body)
    assert event.decoded == {"a": 1} and event.payload_hex == b'{"a": 1}'.hex()
    [event] = PLATFORM.parse("app/a", cloudevent("io.drogue.event.v1", "21.5 C", datacontenttype="text/plain"))
    assert event.decoded == "21.5 C" and event.payload_hex == b"21.5 C".hex()


def test_unknown_time_falls_back_to_the_receive_time():
    [event] = PLATFORM.parse("app/a", cloudevent("io.drogue.event.v1", {}, time="yesterday"))
    assert event.received_at.endswith("Z") and event.received_at[:4] >= "2024"


def test_binary_mode_non_json_data_keeps_the_bytes():
    properties = {
        "content_type": "application/json",
        "user_properties": [["specversion", "1.0"], ["id", "1"], ["source", "drogue://a/b"], ["type", "x.y"]],
    }
    [event] = PLATFORM.parse("app/a", b"\xff\x00", properties)
    assert (event.kind, event.decoded, event.payload_hex) == ("event", None, "ff00")


def test_data_nested_deeper_than_events_can_be_written_is_refused():
    deep = b"[" * 300 + b"]" * 300
    structured = b'{"specversion":"1.0","id":"1","source":"s","type":"t","data":' + deep + b"}"
    binary = {
        "content_type": "application/json",
        "user_properties": [["specversion", "1.0"], ["id", "1"], ["source", "s"], ["type", "t"]],
    }
    for payload, properties in ((structured, None), (deep, binary)):
        with pytest.raises(DecodeError, match="nested more than 254 levels"):
            PLATFORM.parse("app/a", payload, properties)
    shallow = b"[" * 200 + b"]" * 200
    [event] = PLATFORM.parse("app/a", shallow, binary)
    assert orjson.loads(event.to_json())["decoded"] == orjson.loads(shallow)


@pytest.mark.parametrize(
    ("payload", "properties", "match"),
    [
        (b"", None, "empty"),
        (b"\x00\x01", None, "not valid JSON"),
        (b"[1]", None, "not an object"),
        (b'{"temp": 42}', None, "not a CloudEvent"),
        (b'{"temp": 42}', {"content_type": "application/json", "user_properties": [["a", "b"]]}, "not a CloudEvent"),
        (b'{"specversion":"1.0","id":"1","source":"s"}', None, "'type' is missing"),
        (b'{"specversion":"1.0","id":7,"source":"s","type":"t"}', None, "'id' is not a non-empty string"),
        (b'{"specversion":"2.0","id":"1","source":"s","type":"t"}', None, "specversion '2.0'"),
        (b'{"specversion":"1.0","id":"1","source":"s","type":"t","data":1,"data_base64":"AQ=="}', None, "both"),
        (b'{"specversion":"1.0","id":"1","source":"s","type":"t","data_base64":"***"}', None, "not base64"),
        (b'{"specversion":"1.0","id":"1","source":"s","type":"t","data_base64":5}', None, "not a string"),
        (b"{}", {"user_properties": [["specversion", "1.0"], ["id", "1"]]}, "binary-mode CloudEvent"),
    ],
)
def test_parse_errors_are_sentences(payload, properties, match):
    with pytest.raises(DecodeError, match=match) as info:
        PLATFORM.parse("app/a", payload, properties)
    assert str(info.value).endswith(".")


# ----- connection ---------------------------------------------------------------------------


def test_default_connection_is_the_sandbox_over_tls():
    cfg = PLATFORM.connection(profile())
    assert (cfg.host, cfg.effective_port, cfg.transport) == (
        "mqtt-integration.sandbox.drogue.cloud",
        443,
        Transport.TLS,
    )
    [sub] = cfg.subscriptions
    assert (sub.topic, sub.qos, sub.user_properties) == ("app/my-app", 1, ())
    assert (cfg.username, cfg.password) == (None, None)


def test_shared_binary_subscription_and_qos_downgrade():
    cfg = PLATFORM.connection(profile(share_group="workers", content_mode="binary", qos=2, url="mqtt://drogue:1883"))
    [sub] = cfg.subscriptions
    assert (sub.topic, sub.qos) == ("$share/workers/app/my-app", 1)
    assert sub.user_properties == (("content-mode", "binary"),)
    assert cfg.mqtt_version == MqttVersion.V5


@pytest.mark.parametrize(
    ("overrides", "username", "password"),
    [
        ({"auth_mode": "api-key", "username": "alice", "api_key": "drg_abc"}, "alice", "drg_abc"),
        ({"auth_mode": "token", "access_token": "eyJ.tok"}, "eyJ.tok", None),
        ({"auth_mode": "token", "access_token": "eyJ.tok", "token_as": "password"}, None, "eyJ.tok"),
        ({"auth_mode": "token", "access_token": "eyJ.tok", "mqtt_version": "3.1.1"}, "eyJ.tok", None),
    ],
)
def test_credentials(overrides, username, password):
    cfg = PLATFORM.connection(profile(**overrides))
    assert (cfg.username, cfg.password) == (username, password)


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"application": "app/+"}, "wildcard"),
        ({"application": "#"}, "refuses wildcard"),
        ({"application": "a/b"}, "'/'"),
        ({"application": ""}, "required"),
        ({"share_group": "g/1"}, "share group"),
        ({"content_mode": "binary", "mqtt_version": "3.1.1"}, "MQTT 5"),
        ({"auth_mode": "token", "token_as": "password", "mqtt_version": "3.1.1", "access_token": "t"}, "username"),
        ({"auth_mode": "token"}, "access token"),
        ({"auth_mode": "api-key", "api_key": "k"}, "user name"),
        ({"auth_mode": "api-key", "username": "alice"}, "API key"),
        ({"content_mode": "mixed"}, "must be one of"),
    ],
)
def test_profile_errors_are_sentences(overrides, match):
    with pytest.raises(ProfileError, match=match) as info:
        PLATFORM.connection(profile(**overrides))
    assert str(info.value).endswith(".")


# ----- commands -----------------------------------------------------------------------------


def test_fport_becomes_the_port_command():
    out = PLATFORM.encode_downlink(profile(), DownlinkRequest(device_id="dev1", f_port=12, payload=b"\x01\x02"))
    assert (out.topic, out.payload, out.qos) == ("command/my-app/dev1/port:12", b"\x01\x02", 1)


def test_command_with_json_and_empty_bodies():
    out = PLATFORM.encode_downlink(profile(), DownlinkRequest(device_id="d", command="set", decoded={"on": True}))
    assert orjson.loads(out.payload) == {"on": True}
    out = PLATFORM.encode_downlink(profile(), DownlinkRequest(device_id="d", command="reboot"))
    assert out.payload == b"" and out.properties == {}
    out = PLATFORM.encode_downlink(profile(), DownlinkRequest(device_id="d", command="c", content_type="text/plain"))
    assert out.properties == {"content_type": "text/plain"}


@pytest.mark.parametrize(
    ("profile_overrides", "request_", "match"),
    [
        ({}, DownlinkRequest(command="x"), "device"),
        ({}, DownlinkRequest(device_id="d"), "command name"),
        ({}, DownlinkRequest(device_id="d/e", command="x"), "device name"),
        ({}, DownlinkRequest(device_id="d", command="a+b"), "command name"),
        ({}, DownlinkRequest(device_id="d", command="#"), "command name"),
        ({"application": "a#"}, DownlinkRequest(device_id="d", command="x"), "application"),
        ({}, DownlinkRequest(device_id="d", f_port=0), "out of range"),
        ({}, DownlinkRequest(device_id="d", f_port=224), "out of range"),
        ({}, DownlinkRequest(device_id="d", f_port=3, command="set"), "either a command"),
        ({"mqtt_version": "3.1.1"}, DownlinkRequest(device_id="d", command="c", content_type="a/b"), "MQTT 5"),
    ],
)
def test_command_errors_are_sentences(profile_overrides, request_, match):
    with pytest.raises(EncodeError, match=match) as info:
        PLATFORM.encode_downlink(profile(**profile_overrides), request_)
    assert str(info.value).endswith(".")


# ----- fuzzing ------------------------------------------------------------------------------


def parses_or_decode_error(payload: bytes, properties=None) -> None:
    try:
        events = PLATFORM.parse("app/a", payload, properties)
    except DecodeError as exc:
        assert str(exc)
        return
    for event in events:
        assert event.platform == "drogue" and event.kind in ("uplink", "status", "event")
        event.to_json()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5),
    max_leaves=8,
)
attribute_names = st.sampled_from(
    ["specversion", "id", "source", "type", "time", "subject", "application", "device", "lorawanport", "hwaddr"]
    + ["sender", "data", "data_base64", "datacontenttype", "ce-id", "ce-specversion"]
)
attribute_values = st.sampled_from(
    [
        "1.0",
        "io.drogue.event.v1",
        "io.drogue.connection.v1",
        "drogue://a%2/b%ZZ",
        "drogue://",
        "5",
        "2021-05-27T22:27:30Z",
    ]
) | st.text(max_size=20)


@FUZZ
@given(payload=st.binary(max_size=300))
def test_fuzz_arbitrary_bytes(payload):
    parses_or_decode_error(payload)


@FUZZ
@given(value=json_values)
def test_fuzz_arbitrary_json(value):
    parses_or_decode_error(orjson.dumps(value))


@FUZZ
@given(
    replacements=st.dictionaries(attribute_names, json_values | attribute_values, max_size=4),
    deletions=st.sets(attribute_names, max_size=6),
)
def test_fuzz_mutated_structured_sample(replacements, deletions):
    sample = structured_sample()
    for name in deletions:
        sample.pop(name, None)
    sample.update(replacements)
    parses_or_decode_error(orjson.dumps(sample))


pairs = st.lists(
    st.tuples(attribute_names | st.text(max_size=10), attribute_values)
    | st.lists(attribute_values | st.integers(), max_size=3)
    | st.integers()
    | st.none(),
    max_size=10,
)


@FUZZ
@given(
    payload=st.binary(max_size=100),
    properties=st.none()
    | st.dictionaries(
        st.sampled_from(["content_type", "user_properties", "payload_format_indicator"]) | st.text(max_size=5),
        pairs | st.text(max_size=20) | st.integers() | st.none(),
        max_size=4,
    ),
)
def test_fuzz_binary_mode_arbitrary_properties(payload, properties):
    parses_or_decode_error(payload, properties)


@FUZZ
@given(payload=st.binary(max_size=100), extra=pairs, content_type=st.none() | st.text(max_size=30))
def test_fuzz_binary_mode_around_the_sample(payload, extra, content_type):
    _, _, properties = binary_sample()
    properties = {"content_type": content_type, "user_properties": properties["user_properties"] + extra}
    parses_or_decode_error(payload, properties)


# ----- through a real mosquitto -------------------------------------------------------------


async def wait_until(condition, timeout: float = 5.0, action=None) -> None:
    """Polls `condition`; runs `action` (e.g. a re-publish before the subscription is in place) meanwhile."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        if action is not None:
            await action()
        await asyncio.sleep(0.1)


def local(cfg, broker):
    return cfg.replace(host="127.0.0.1", port=broker.ports.plain, transport=Transport.TCP, tls=TlsSettings())


def new_application() -> str:
    return f"app-{uuid.uuid4().hex[:12]}"


async def receive_one(broker, drogue_profile: dict, publish) -> list:
    """Connects the profile's session to mosquitto, runs `publish(publisher)` until a message arrives."""
    received = []
    session = MqttSession(local(PLATFORM.connection(drogue_profile), broker), on_message=received.append)
    publisher = MqttSession(parse_url(broker.url("plain"), mqtt_version=MqttVersion.V5))
    async with session, publisher:
        await session.wait_connected(10)
        await publisher.wait_connected(10)
        await wait_until(lambda: received, action=lambda: publish(publisher))
    return received


@pytest.mark.parametrize("version", ["3.1.1", "5"])
async def test_structured_event_through_mosquitto(broker, version):
    application = new_application()
    sample = structured_sample() | {"application": application}
    received = await receive_one(
        broker,
        profile(application=application, mqtt_version=version),
        lambda p: p.publish(f"app/{application}", orjson.dumps(sample), qos=1),
    )
    message = received[0]
    assert message.topic == f"app/{application}"
    [event] = PLATFORM.parse(message.topic, message.payload, message.properties)
    assert (event.kind, event.application_id, event.device_id) == ("uplink", application, "device_id")
    assert event.decoded == {"temp": 42}


async def test_binary_event_through_mosquitto(broker):
    application = new_application()
    _, data, properties = binary_sample()
    drogue_profile = profile(application=application, content_mode="binary", mqtt_version="5")
    [subscription] = PLATFORM.connection(drogue_profile).subscriptions
    assert subscription.user_properties == (("content-mode", "binary"),)

    def publish(publisher):
        return publisher.publish(
            f"app/{application}",
            data,
            qos=1,
            content_type=properties["content_type"],
            user_properties=[tuple(pair) for pair in properties["user_properties"]],
        )

    message = (await receive_one(broker, drogue_profile, publish))[0]
    assert message.properties["content_type"] == "application/json"
    [event] = PLATFORM.parse(message.topic, message.payload, message.properties)
    assert (event.kind, event.application_id, event.device_id) == ("uplink", "app_id", "device_id")
    assert event.received_at == "2021-05-27T22:27:30.758332Z"
    assert event.decoded == {"temp": 42} and event.payload_hex == data.hex()


async def test_shared_subscription_through_mosquitto(broker):
    application = new_application()
    drogue_profile = profile(application=application, share_group="g", mqtt_version="5")
    assert [s.topic for s in PLATFORM.connection(drogue_profile).subscriptions] == [f"$share/g/app/{application}"]
    body = cloudevent("io.drogue.connection.v1", {"connected": False}, application=application)
    message = (await receive_one(broker, drogue_profile, lambda p: p.publish(f"app/{application}", body, qos=1)))[0]
    [event] = PLATFORM.parse(message.topic, message.payload, message.properties)
    assert (event.kind, event.application_id, event.decoded) == ("status", application, {"connected": False})


async def test_command_is_published_to_the_command_topic(broker):
    application = new_application()
    drogue_profile = profile(application=application)
    out = PLATFORM.encode_downlink(drogue_profile, DownlinkRequest(device_id="dev-7", f_port=3, payload=b"\x0a\x0b"))
    watcher_cfg = parse_url(broker.url("plain"), subscriptions=(Subscription(f"command/{application}/#", 1),))
    seen = []
    session = MqttSession(local(PLATFORM.connection(drogue_profile), broker))
    watcher = MqttSession(watcher_cfg, on_message=seen.append)
    async with session, watcher:
        await session.wait_connected(10)
        await watcher.wait_connected(10)
        await wait_until(lambda: seen, action=lambda: session.publish(out.topic, out.payload, qos=out.qos))
    assert (seen[0].topic, seen[0].payload) == (f"command/{application}/dev-7/port:3", b"\x0a\x0b")

"""akenza: device JWTs, topics, the console-as-device uplink, parsing, fuzzing, and a real broker."""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
import uuid
from pathlib import Path

import jwt
import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.devbroker import make_key
from app.mqtt.config import MqttVersion, Subscription, TlsSettings, Transport, parse_url
from app.mqtt.session import MqttSession
from app.platforms import get
from app.platforms.akenza import CONTENT_TYPES, PLATFORM, credentials_provider, mint_device_jwt
from app.platforms.base import DecodeError, DownlinkRequest, EncodeError, ProfileError

SAMPLES = Path(__file__).resolve().parent / "samples"
DEVICE = "a1b2c3d4e5f60708"
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def write_key(path: Path, key, password: str | None = None, form=serialization.PrivateFormat.PKCS8) -> str:
    encryption = serialization.BestAvailableEncryption(password.encode()) if password else serialization.NoEncryption()
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, form, encryption))
    return str(path)


def fingerprint(key) -> str:
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


@pytest.fixture(scope="module")
def rsa_key():
    return make_key("rsa")


@pytest.fixture(scope="module")
def ec_key():
    return make_key("ec")


@pytest.fixture
def rsa_key_file(tmp_path, rsa_key) -> str:
    return write_key(tmp_path / "rsa.pem", rsa_key, form=serialization.PrivateFormat.TraditionalOpenSSL)


@pytest.fixture
def ec_key_file(tmp_path, ec_key) -> str:
    return write_key(tmp_path / "ec.pem", ec_key)


def jwt_profile(key_file: str, **overrides) -> dict:
    return {"auth_mode": "jwt", "device_id": DEVICE, "jwt_key_file": key_file, **overrides}


def secret_profile(**overrides) -> dict:
    return {
        "auth_mode": "uplink-secret",
        "device_id": DEVICE,
        "connector_id": "connector-42",
        "uplink_secret": "s3cr3tValue",
        **overrides,
    }


# ----- samples ------------------------------------------------------------------------------


def test_registry_returns_this_platform():
    assert get("akenza") is PLATFORM
    assert PLATFORM.name == "akenza" and PLATFORM.label == "akenza"


def test_uplink_sample_on_the_device_topic():
    body = (SAMPLES / "akenza_uplink_1.json").read_bytes()
    [event] = PLATFORM.parse(f"/up/device/id/{DEVICE}", body)
    assert event.kind == "uplink"
    assert event.device_id == DEVICE
    assert event.decoded == {"temperature": 22}
    assert event.payload_hex == body.hex()
    assert event.topic == f"/up/device/id/{DEVICE}"
    assert event.received_at.endswith("Z")


@pytest.mark.parametrize(
    ("levels", "akenza_topic"), [("alerts", "alerts"), ("alerts/critical", "alerts_critical"), ("a/b/c", "a_b_c")]
)
def test_uplink_sub_topics_are_named_as_akenza_stores_them(levels, akenza_topic):
    body = (SAMPLES / "akenza_uplink_1.json").read_bytes()
    [event] = PLATFORM.parse(f"/up/s3cr3tValue/id/{DEVICE}/{levels}", body)
    assert event.kind == "uplink" and event.device_id == DEVICE
    assert event.decoded == {"topic": akenza_topic, "data": {"temperature": 22}}


def strip_js_comments(text: str) -> str:
    return re.sub(r"//[^\n]*", "", text)


def test_downlink_spec_sample_is_rejected_as_json_with_comments():
    spec = (SAMPLES / "akenza_downlink_mqtt_spec_1.txt").read_bytes()
    with pytest.raises(DecodeError, match=r"not JSON: .* at line 2, column"):
        PLATFORM.parse(f"/down/device/id/{DEVICE}/myTopic", spec)


def test_the_downlink_an_mqtt_encoder_emits_arrives_on_its_sub_topic():
    # The spec's shape {"topic", "payload": {...}}: akenza publishes payload under /down/.../<topic>.
    spec = orjson.loads(strip_js_comments((SAMPLES / "akenza_downlink_mqtt_spec_1.txt").read_text()))
    assert set(spec) == {"topic", "payload"}
    emitted = {"topic": "myTopic", "payload": {"led": "on", "level": 3}}
    body = orjson.dumps(emitted["payload"])
    [event] = PLATFORM.parse(f"/down/device/id/{DEVICE}/{emitted['topic']}", body)
    assert event.kind == "event"
    assert event.device_id == DEVICE
    assert event.decoded == {"topic": "myTopic", "data": {"led": "on", "level": 3}}
    assert event.payload_hex == body.hex()


def test_lora_downlink_spec_sample_is_rejected_with_a_sentence():
    spec = (SAMPLES / "akenza_downlink_lora_spec_1.txt").read_bytes()
    with pytest.raises(DecodeError) as info:
        PLATFORM.parse(f"/down/device/id/{DEVICE}", spec)
    assert "not JSON" in str(info.value) and str(info.value).endswith(".")
    # Without its comments it is plain JSON, and a downlink without a sub-topic shows the body itself.
    cleaned = strip_js_comments(spec.decode()).encode()
    [event] = PLATFORM.parse(f"/down/device/id/{DEVICE}", cleaned)
    assert event.decoded == {"port": 1, "confirmed": True, "payloadHex": "hex-string"}


def test_jwt_claims_doc_sample_is_not_a_message():
    with pytest.raises(DecodeError, match="not JSON"):
        PLATFORM.parse(f"/up/device/id/{DEVICE}", (SAMPLES / "akenza_jwt_claims_python_doc_1.txt").read_bytes())


def test_minted_token_has_the_claims_of_akenzas_python_example(ec_key_file, ec_key):
    text = (SAMPLES / "akenza_jwt_claims_python_doc_1.txt").read_text()
    claims_part, headers_part = text.split("headers =")
    claim_names = set(re.findall(r'"(\w+)":', claims_part))
    header_names = set(re.findall(r'"(\w+)":', headers_part))
    minutes = int(re.search(r"timedelta\(minutes=(\d+)\)", text).group(1))
    audience = re.search(r'"aud": f"([^"]+)"', text).group(1).format(device_id=DEVICE)
    assert claim_names == {"iat", "exp", "aud"} and header_names == {"kid"} and minutes == 20

    token = mint_device_jwt(jwt_profile(ec_key_file, token_lifetime_minutes=minutes))
    claims = jwt.decode(token, ec_key.public_key(), algorithms=["ES256"], audience=audience)
    assert set(claims) == claim_names
    assert claims["exp"] - claims["iat"] == minutes * 60
    header = jwt.get_unverified_header(token)
    assert header_names <= set(header)
    assert header["kid"] == fingerprint(ec_key)


# ----- JWT ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["rsa", "ec"])
@pytest.mark.parametrize("with_extras", [True, False])
def test_minted_jwt_verifies_and_carries_the_claims(request, kind, with_extras):
    key = request.getfixturevalue(f"{kind}_key")
    key_file = request.getfixturevalue(f"{kind}_key_file")
    algorithm = "RS256" if kind == "rsa" else "ES256"
    profile = jwt_profile(
        key_file,
        token_lifetime_minutes=45,
        include_sub=with_extras,
        include_kid=with_extras,
        audience_base="https://acme.akenza.io/",
    )
    before = int(time.time())
    token = mint_device_jwt(profile)
    audience = f"https://acme.akenza.io/devices/{DEVICE}"
    claims = jwt.decode(token, key.public_key(), algorithms=[algorithm], audience=audience)
    assert before <= claims["iat"] <= time.time()
    assert claims["exp"] - claims["iat"] == 45 * 60
    assert claims["aud"] == audience
    header = jwt.get_unverified_header(token)
    assert header["alg"] == algorithm
    if with_extras:
        assert claims["sub"] == DEVICE
        assert header["kid"] == fingerprint(key)
    else:
        assert "sub" not in claims and "kid" not in header
    with pytest.raises(jwt.InvalidAudienceError):
        jwt.decode(token, key.public_key(), algorithms=[algorithm], audience="https://akenza.io/devices/other")


def test_now_sets_iat(ec_key_file):
    token = mint_device_jwt(jwt_profile(ec_key_file, token_lifetime_minutes=20), now=1_700_000_000.7)
    claims = jwt.decode(token, options={"verify_signature": False})
    assert (claims["iat"], claims["exp"]) == (1_700_000_000, 1_700_000_000 + 20 * 60)


@pytest.mark.parametrize(("kind", "chosen"), [("rsa", "ES256"), ("ec", "RS256")])
def test_algorithm_that_does_not_fit_the_key_is_refused(request, kind, chosen):
    key_file = request.getfixturevalue(f"{kind}_key_file")
    with pytest.raises(ProfileError) as info:
        mint_device_jwt(jwt_profile(key_file, jwt_algorithm=chosen))
    text = str(info.value)
    assert chosen in text and ("ES256" if chosen == "RS256" else "RS256") in text and text.endswith(".")


@pytest.mark.parametrize(("kind", "chosen"), [("rsa", "RS256"), ("ec", "ES256")])
def test_algorithm_that_fits_the_key_is_accepted(request, kind, chosen):
    token = mint_device_jwt(jwt_profile(request.getfixturevalue(f"{kind}_key_file"), jwt_algorithm=chosen))
    assert jwt.get_unverified_header(token)["alg"] == chosen


def test_encrypted_key_needs_its_password(tmp_path, ec_key):
    key_file = write_key(tmp_path / "enc.pem", ec_key, password="hunter2")
    with pytest.raises(ProfileError, match="protected by a password"):
        mint_device_jwt(jwt_profile(key_file))
    with pytest.raises(ProfileError, match="password .* is wrong"):
        mint_device_jwt(jwt_profile(key_file, jwt_key_password="wrong"))
    token = mint_device_jwt(jwt_profile(key_file, jwt_key_password="hunter2"))
    jwt.decode(token, ec_key.public_key(), algorithms=["ES256"], audience=f"https://akenza.io/devices/{DEVICE}")


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: rsa.generate_private_key(public_exponent=65537, key_size=1024), "RSA-1024"),
        (lambda: ec.generate_private_key(ec.SECP384R1()), "secp384r1"),
    ],
)
def test_keys_akenza_cannot_verify_are_refused(tmp_path, make, match):
    with pytest.raises(ProfileError, match=match):
        mint_device_jwt(jwt_profile(write_key(tmp_path / "k.pem", make())))


def test_missing_key_file_and_bad_audience_are_sentences(tmp_path, ec_key_file):
    with pytest.raises(ProfileError, match="does not exist"):
        mint_device_jwt(jwt_profile(str(tmp_path / "nope.pem")))
    with pytest.raises(ProfileError, match="private key file"):
        mint_device_jwt(jwt_profile(""))
    with pytest.raises(ProfileError, match="audience base"):
        mint_device_jwt(jwt_profile(ec_key_file, audience_base="akenza.io"))
    with pytest.raises(ProfileError, match="at most 1440"):
        mint_device_jwt(jwt_profile(ec_key_file, token_lifetime_minutes=10_000))
    with pytest.raises(ProfileError, match="JWT mode"):
        mint_device_jwt(secret_profile())


def test_provider_refreshes_the_token_near_expiry(ec_key_file):
    provider = PLATFORM.credentials_provider(jwt_profile(ec_key_file, token_lifetime_minutes=20, username="dev-x"))
    start = 1_700_000_000.0
    username, first, expires_at = provider(now=start)
    assert username == "dev-x"
    assert expires_at == start + 20 * 60
    assert provider(now=start + 600)[1] == first
    assert provider(now=expires_at - 121)[1] == first, "more than 2 minutes left: the same token"
    _, second, second_expiry = provider(now=expires_at - 119)
    assert second != first
    claims = jwt.decode(second, options={"verify_signature": False})
    assert claims["iat"] == int(expires_at - 119)
    assert second_expiry == claims["exp"] == int(expires_at - 119) + 20 * 60
    assert provider(now=expires_at)[1] == second


def test_provider_without_expiry_in_uplink_secret_mode():
    provider = credentials_provider(secret_profile())
    assert provider() == ("connector-42", "s3cr3tValue", None)
    assert provider(now=time.time() + 10**6) == ("connector-42", "s3cr3tValue", None)


# ----- connection ---------------------------------------------------------------------------


def test_jwt_connection(ec_key_file, ec_key):
    cfg = PLATFORM.connection(jwt_profile(ec_key_file))
    assert (cfg.host, cfg.effective_port, cfg.transport) == ("mqtt.akenza.io", 8883, Transport.TLS)
    assert cfg.client_id == DEVICE
    assert cfg.username == "uplink-console"
    claims = jwt.decode(
        cfg.password, ec_key.public_key(), algorithms=["ES256"], audience=f"https://akenza.io/devices/{DEVICE}"
    )
    assert claims["exp"] - claims["iat"] == 60 * 60
    assert [s.topic for s in cfg.subscriptions] == [f"/down/device/id/{DEVICE}/#"]
    assert cfg.tls.cert_file is None and cfg.tls.key_file is None, "the JWT key is no TLS client key"


def test_websocket_broker_address(ec_key_file):
    cfg = PLATFORM.connection(jwt_profile(ec_key_file, url="wss://mqtt.akenza.io:443/mqtt"))
    assert (cfg.transport, cfg.effective_port, cfg.websocket_path) == (Transport.WSS, 443, "/mqtt")


def test_uplink_secret_connection_and_editable_downlink_topic():
    cfg = PLATFORM.connection(secret_profile(url="mqtt://mqtt.akenza.io:1883"))
    assert (cfg.username, cfg.password) == ("connector-42", "s3cr3tValue")
    assert [s.topic for s in cfg.subscriptions] == [f"/down/s3cr3tValue/id/{DEVICE}/#"]
    as_documented = PLATFORM.connection(secret_profile(downlink_topic="/up/{secret}/id/{deviceId}/#"))
    assert [s.topic for s in as_documented.subscriptions] == [f"/up/s3cr3tValue/id/{DEVICE}/#"]
    assert PLATFORM.topic_pattern_field == "downlink_topic"


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"device_id": "a/b"}, "device id"),
        ({"device_id": "dev+1"}, "device id"),
        ({"uplink_secret": "x#y"}, "uplink secret"),
        ({"connector_id": ""}, "connector id"),
        ({"content_type": "text/plain"}, "MQTT 5"),
        ({"content_type": "image/png", "mqtt_version": "5"}, "must be one of"),
        ({"downlink_topic": "/down/{secret}/id/{device}/#"}, "placeholder"),
        ({"downlink_topic": "/down/#/x"}, "not a valid topic filter"),
        ({"uplink_subtopic": "a//b"}, "empty level"),
        ({"uplink_subtopic": "alerts/+"}, "may not contain"),
        ({"auth_mode": "password"}, "must be one of"),
    ],
)
def test_profile_errors_are_sentences(overrides, match):
    with pytest.raises(ProfileError, match=match) as info:
        PLATFORM.connection(secret_profile(**overrides))
    assert str(info.value).endswith(".")


def test_secret_placeholder_in_jwt_mode_is_refused(ec_key_file):
    with pytest.raises(ProfileError, match="no uplink secret"):
        PLATFORM.connection(jwt_profile(ec_key_file, downlink_topic="/down/{secret}/id/{deviceId}/#"))


# ----- the device's uplink (encode_downlink) ------------------------------------------------


def test_uplink_from_the_console_as_device(ec_key_file):
    out = PLATFORM.encode_downlink(jwt_profile(ec_key_file), DownlinkRequest(decoded={"temperature": 22}))
    assert out.topic == f"/up/device/id/{DEVICE}"
    assert orjson.loads(out.payload) == orjson.loads((SAMPLES / "akenza_uplink_1.json").read_bytes())
    assert out.properties == {}
    [event] = PLATFORM.parse(out.topic, out.payload, out.properties)
    assert event.decoded == {"temperature": 22}


def test_uplink_with_secret_sub_topic_and_content_type():
    profile = secret_profile(uplink_subtopic="/alerts/critical/", mqtt_version="5", qos=1)
    xml = b"<?xml version='1.0' encoding='UTF-8'?><data><foo>bar</foo></data>"
    out = PLATFORM.encode_downlink(profile, DownlinkRequest(payload=xml, content_type="application/xml"))
    assert out.topic == f"/up/s3cr3tValue/id/{DEVICE}/alerts/critical"
    assert (out.payload, out.qos, out.properties) == (xml, 1, {"content_type": "application/xml"})
    [event] = PLATFORM.parse(out.topic, out.payload, out.properties)
    assert event.decoded == {"topic": "alerts_critical", "data": None}
    assert bytes.fromhex(event.payload_hex) == xml


def test_building_an_uplink_needs_no_key_and_may_take_the_device_from_the_request():
    out = PLATFORM.encode_downlink({}, DownlinkRequest(device_id="dev-9", payload=b'{"a":1}'))
    assert out.topic == "/up/device/id/dev-9"
    out = PLATFORM.encode_downlink(
        secret_profile(device_id="", connector_id=""), DownlinkRequest(device_id="dev-9", payload=b"{}")
    )
    assert out.topic == "/up/s3cr3tValue/id/dev-9"


def test_uplink_secret_may_publish_for_another_device_of_the_connector():
    out = PLATFORM.encode_downlink(secret_profile(), DownlinkRequest(device_id="other-dev", payload=b"{}"))
    assert out.topic == "/up/s3cr3tValue/id/other-dev"


@pytest.mark.parametrize(
    ("profile_overrides", "request_", "match"),
    [
        ({}, DownlinkRequest(), "payload"),
        ({}, DownlinkRequest(payload=b"22 degrees"), "not JSON"),
        ({}, DownlinkRequest(payload=b"{}", content_type="text/plain"), "MQTT 5"),
        ({"mqtt_version": "5"}, DownlinkRequest(payload=b"{}", content_type="image/png"), "content types"),
        ({"mqtt_version": "5"}, DownlinkRequest(payload=b"oops", content_type="application/json"), "not JSON"),
        ({}, DownlinkRequest(device_id="a/b", payload=b"{}"), "device id"),
        ({"device_id": ""}, DownlinkRequest(payload=b"{}"), "required"),
        ({"uplink_secret": ""}, DownlinkRequest(payload=b"{}"), "uplink secret"),
    ],
)
def test_uplink_errors_are_sentences(profile_overrides, request_, match):
    with pytest.raises(EncodeError, match=match) as info:
        PLATFORM.encode_downlink(secret_profile(**profile_overrides), request_)
    assert str(info.value).endswith(".")


def test_jwt_device_cannot_publish_for_another_device(ec_key_file):
    with pytest.raises(EncodeError, match="cannot publish for 'other'"):
        PLATFORM.encode_downlink(jwt_profile(ec_key_file), DownlinkRequest(device_id="other", payload=b"{}"))


def test_text_content_type_on_mqtt5_is_sent_as_is():
    out = PLATFORM.encode_downlink(
        secret_profile(mqtt_version="5", content_type="text/csv"), DownlinkRequest(payload=b"a,b\n1,2\n")
    )
    assert out.properties == {"content_type": "text/csv"}


# ----- parsing ------------------------------------------------------------------------------


@pytest.mark.parametrize("content_type", CONTENT_TYPES[1:])
def test_non_json_content_types_keep_the_bytes(content_type):
    body = b"\x00\x01binary"
    [event] = PLATFORM.parse(f"/up/device/id/{DEVICE}", body, {"content_type": content_type})
    assert event.decoded is None and event.payload_hex == body.hex()


@pytest.mark.parametrize(
    ("topic", "payload", "properties", "match"),
    [
        ("/up/device/id/x", b"temperature=22", None, "no content type, so akenza reads it as JSON"),
        ("/up/device/id/x", b"", None, "empty"),
        ("/up/device/id/x", b"{", {"content_type": "application/json; charset=utf-8"}, "says application/json"),
        ("/up/device/id/x", b"{}", {"content_type": "image/png"}, "not one akenza accepts"),
        ("up/device/id/x", b"{}", None, "not an akenza device topic"),
        ("/sideways/device/id/x", b"{}", None, "not an akenza device topic"),
        ("/up/device/name/x", b"{}", None, "not an akenza device topic"),
        ("/up/device/id", b"{}", None, "not an akenza device topic"),
        ("/up/device/id/", b"{}", None, "no device id"),
    ],
)
def test_parse_errors_are_sentences(topic, payload, properties, match):
    with pytest.raises(DecodeError, match=match) as info:
        PLATFORM.parse(topic, payload, properties)
    assert str(info.value).endswith(".")
    [error] = PLATFORM.parse_or_error(topic, payload, properties)
    assert error.kind == "error" and error.error == str(info.value)


@pytest.mark.parametrize(("depth", "accepted"), [(250, True), (300, False)])
def test_json_nested_deeper_than_events_can_be_written_is_refused(depth, accepted):
    body = b"[" * depth + b"]" * depth
    if accepted:
        [event] = PLATFORM.parse("/up/device/id/x", body)
        assert orjson.loads(event.to_json())["decoded"] == orjson.loads(body)
    else:
        with pytest.raises(DecodeError, match="nested more than 254 levels"):
            PLATFORM.parse("/up/device/id/x", body)


def test_any_json_value_is_an_uplink_body():
    [event] = PLATFORM.parse("/up/device/id/x", b"[1, 2.5, null]", {"content_type": "application/json"})
    assert event.decoded == [1, 2.5, None]


# ----- fuzzing ------------------------------------------------------------------------------


def parses_or_decode_error(topic, payload, properties=None) -> None:
    try:
        events = PLATFORM.parse(topic, payload, properties)
    except DecodeError as exc:
        assert str(exc)
        return
    for event in events:
        assert event.platform == "akenza" and event.kind in ("uplink", "event")
        event.to_json()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5),
    max_leaves=8,
)
content_types = (
    st.none() | st.sampled_from((*CONTENT_TYPES, "image/png", "", "application/json; charset=x")) | st.text()
)
properties_dicts = st.none() | st.fixed_dictionaries({}, optional={"content_type": content_types | st.integers()})
device_topics = st.sampled_from(["/up/device/id/d", "/down/device/id/d/cmd", "/up/sec/id/d/a/b"])


@FUZZ
@given(topic=device_topics, payload=st.binary(max_size=300), properties=properties_dicts)
def test_fuzz_arbitrary_bytes(topic, payload, properties):
    parses_or_decode_error(topic, payload, properties)


@FUZZ
@given(topic=device_topics, value=json_values, properties=properties_dicts)
def test_fuzz_arbitrary_json(topic, value, properties):
    parses_or_decode_error(topic, orjson.dumps(value), properties)


@FUZZ
@given(
    topic=st.text(max_size=60) | st.lists(st.sampled_from(["", "up", "down", "id", "device", "x", "+"])).map("/".join),
    payload=st.sampled_from([b"{}", b'{"temperature":22}', b"", b"\xff"]),
)
def test_fuzz_arbitrary_topics(topic, payload):
    parses_or_decode_error(topic, payload)


@FUZZ
@given(data=st.data())
def test_fuzz_mutated_sample(data):
    body = bytearray((SAMPLES / "akenza_uplink_1.json").read_bytes())
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(0, len(body)))
        action = data.draw(st.sampled_from(["insert", "delete", "replace"]))
        byte = data.draw(st.integers(0, 255))
        if action == "insert":
            body.insert(position, byte)
        elif position < len(body):
            if action == "delete":
                del body[position]
            else:
                body[position] = byte
    parses_or_decode_error(f"/up/device/id/{DEVICE}", bytes(body), data.draw(properties_dicts))


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


@pytest.mark.parametrize("version", ["3.1.1", "5"])
async def test_device_session_uplink_and_downlink_through_mosquitto(broker, rsa_key_file, rsa_key, version):
    device = f"dev-{uuid.uuid4().hex[:10]}"
    extra = {"content_type": "application/json"} if version == "5" else {}
    profile = jwt_profile(rsa_key_file, device_id=device, mqtt_version=version, qos=1, **extra)
    device_cfg = local(PLATFORM.connection(profile), broker)
    assert device_cfg.client_id == device and device_cfg.password, "the JWT travels in CONNECT"
    watcher_cfg = parse_url(
        broker.url("plain"),
        mqtt_version=MqttVersion.V5,
        subscriptions=(Subscription(f"/up/device/id/{device}/#", 1),),
    )
    uplinks, downlinks = [], []
    device_session = MqttSession(device_cfg, on_message=downlinks.append)
    watcher = MqttSession(watcher_cfg, on_message=uplinks.append)
    out = PLATFORM.encode_downlink(profile, DownlinkRequest(decoded={"temperature": 22}))

    async def publish_uplink():
        await device_session.publish(out.topic, out.payload, qos=out.qos, **out.properties)

    async def publish_downlink():
        await watcher.publish(f"/down/device/id/{device}/myTopic", b'{"led":"on"}', qos=1)

    async with device_session, watcher:
        await device_session.wait_connected(10)
        await watcher.wait_connected(10)
        await wait_until(lambda: uplinks, action=publish_uplink)
        await wait_until(lambda: downlinks, action=publish_downlink)

    uplink = uplinks[0]
    assert uplink.topic == f"/up/device/id/{device}" and uplink.payload == out.payload
    if version == "5":
        assert uplink.properties["content_type"] == "application/json"
    [event] = PLATFORM.parse(uplink.topic, uplink.payload, uplink.properties)
    assert (event.kind, event.device_id, event.decoded) == ("uplink", device, {"temperature": 22})

    downlink = downlinks[0]
    [event] = PLATFORM.parse(downlink.topic, downlink.payload, downlink.properties)
    assert (event.kind, event.device_id) == ("event", device)
    assert event.decoded == {"topic": "myTopic", "data": {"led": "on"}}

"""The composer's model: each platform's message is the encoder's, it arrives on a real mosquitto
exactly as previewed (published by the console's session and by the copied mosquitto_pub
command), the LoRaWAN limits per data rate, and templates saved per connection."""

from __future__ import annotations

import asyncio
import os
import subprocess
import threading
import time

import orjson
import paho.mqtt.client as paho
import pytest

from app import platforms
from app.compose import Composition, body_text, mosquitto_pub_command, preview_rows
from app.downlink_templates import DownlinkTemplate, TemplateError, TemplateStore, templates_path
from app.lorawan import EU868, US915, data_rate_of, downlink_limit, region_of
from app.mqtt.config import MqttVersion, parse_url
from app.mqtt.session import MqttSession
from app.outbox import publish_arguments
from app.platforms.base import DownlinkRequest

PROFILES = {
    "tts": {"app": "app-one", "tenant": "ttn"},
    "thingpark": {"downlink_topic_pattern": "mqtt/things/{DevEUI}/downlink", "qos": 1},
    "drogue": {"application": "app1", "mqtt_version": "5", "qos": 1},
    "tektelic": {"host": "localhost", "pull_topic": "tektelic/app/down", "pull_qos": "AT_LEAST_ONCE"},
    "akenza": {"device_id": "dev-1", "auth_mode": "uplink-secret", "uplink_secret": "s3cr3t", "mqtt_version": "5"},
    "generic": {"publish_topic": "plant/valve/set", "qos": 1, "mqtt_version": "5"},
}


def composed(platform: str, values: dict, payload: str, fmt: str = "hex", profile: dict | None = None):
    c = Composition(platform, profile if profile is not None else PROFILES[platform])
    for name, value in values.items():
        c.set(name, value)
    c.set_payload(payload, fmt)
    return c, c.build()


def test_tts_message_is_the_encoders_with_the_consoles_correlation_id():
    c, r = composed(
        "tts",
        {
            "device_id": "dev-1",
            "f_port": "15",
            "priority": "HIGH",
            "confirmed": True,
            "correlation_ids": "mine:1, mine:2",
        },
        "01 02 ff",
    )
    assert r.error is None
    expected = platforms.get("tts").encode_downlink(
        PROFILES["tts"],
        DownlinkRequest(
            device_id="dev-1",
            f_port=15,
            payload=b"\x01\x02\xff",
            confirmed=True,
            priority="HIGH",
            correlation_ids=("mine:1", "mine:2", f"uplink-console:downlink:{c.downlink_id}"),
        ),
    )
    assert r.message == expected
    item = orjson.loads(r.message.payload)["downlinks"][0]
    assert item["frm_payload"] == "AQL/" and item["priority"] == "HIGH" and item["confirmed"] is True
    assert r.meta["id"] == c.downlink_id and r.meta["correlation_ids"] == ["mine:1", "mine:2"]
    assert r.meta["payload_hex"] == "0102ff" and r.meta["f_port"] == 15


def test_tts_replace_decoded_payload_and_clear_queue():
    _, r = composed(
        "tts", {"device_id": "dev-1", "payload_mode": "decoded_payload", "operation": "replace"}, '{"on":1}', "json"
    )
    assert r.message.topic.endswith("/devices/dev-1/down/replace")
    assert orjson.loads(r.message.payload)["downlinks"][0]["decoded_payload"] == {"on": 1}
    _, r = composed("tts", {"device_id": "dev-1", "clear_queue": True}, "")
    assert r.message.topic.endswith("/down/replace") and orjson.loads(r.message.payload) == {"downlinks": []}


def test_thingpark_message_uses_the_downlink_id_as_correlation_id_unless_given():
    c, r = composed("thingpark", {"dev_eui": "00-18-b2-00-00-00-0b-20", "f_port": "224", "flush_queue": True}, "0a0b")
    body = orjson.loads(r.message.payload)["DevEUI_downlink"]
    assert r.message.topic == "mqtt/things/0018B20000000B20/downlink" and r.message.qos == 1
    assert body["payload_hex"] == "0a0b" and body["FPort"] == 224 and body["FlushDownlinkQueue"] == 1
    assert body["CorrelationID"] == c.downlink_id.upper()
    expected = platforms.get("thingpark").encode_downlink(
        PROFILES["thingpark"],
        DownlinkRequest(
            dev_eui="00-18-b2-00-00-00-0b-20",
            f_port=224,
            payload=b"\x0a\x0b",
            flush_queue=True,
            correlation_ids=(c.downlink_id.upper(),),
        ),
    )
    assert orjson.loads(expected.payload)["DevEUI_downlink"] | {"Time": None} == body | {"Time": None}
    _, r = composed("thingpark", {"dev_eui": "0018B20000000B20", "correlation_id": "00000000000000AB"}, "01")
    assert orjson.loads(r.message.payload)["DevEUI_downlink"]["CorrelationID"] == "00000000000000AB"


def test_drogue_port_helper_and_content_type():
    c = Composition("drogue", PROFILES["drogue"])
    c.prefill(device_id="device1", f_port=12)
    assert c.values["command"] == "port:12"
    c.set("content_type", "application/octet-stream")
    c.set_payload("ff", "hex")
    r = c.build()
    assert r.message.topic == "command/app1/device1/port:12" and r.message.payload == b"\xff"
    assert r.message.properties == {"content_type": "application/octet-stream"}
    _, r = composed("drogue", {"device_id": "device1", "command": "set-led"}, "on", "text")
    assert r.message.topic == "command/app1/device1/set-led" and r.message.payload == b"on"


def test_tektelic_template_choice_and_decoded_templates():
    profile = {**PROFILES["tektelic"], "downlink_templates": 'mine = {"port": {fPort}, "obj": {decoded}}'}
    c = Composition("tektelic", profile)
    assert c.field("template").choices == ("passthrough", "broker-base64", "mine")
    c.prefill(dev_eui="647FDA0000000001", f_port=5)
    c.set_payload("0102", "hex")
    assert orjson.loads(c.build().message.payload) == {"fPort": 5, "bytes": [1, 2]}
    c.set("template", "broker-base64")
    assert orjson.loads(c.build().message.payload) == {"deviceEui": "647FDA0000000001", "fPort": 5, "data": "AQI="}
    c.set("template", "mine")
    c.set_payload('{"a": 1}', "json")
    assert orjson.loads(c.build().message.payload) == {"port": 5, "obj": {"a": 1}}


def test_akenza_subtopic_and_content_type():
    _, r = composed("akenza", {"subtopic": "room1", "content_type": "text/csv"}, "1,2,3", "text")
    assert r.message.topic == "/up/s3cr3t/id/dev-1/room1"
    assert r.message.properties == {"content_type": "text/csv"} and r.message.payload == b"1,2,3"
    _, r = composed("akenza", {}, "1,2,3", "text")
    assert r.message is None and "akenza reads a message without a content type as JSON" in r.error


def test_generic_topic_qos_retain_and_mqtt5_properties():
    _, r = composed(
        "generic",
        {
            "topic": "plant/valve/7",
            "qos": 2,
            "retain": True,
            "content_type": "application/json",
            "user_properties": "source=console\nbatch = 7",
            "message_expiry": "60",
            "response_topic": "plant/valve/7/reply",
        },
        '{"open": true}',
        "json",
    )
    m = r.message
    assert (m.topic, m.qos, m.retain, m.payload) == ("plant/valve/7", 2, True, b'{"open":true}')
    assert m.properties == {
        "content_type": "application/json",
        "user_properties": [("source", "console"), ("batch", "7")],
        "message_expiry": 60,
        "response_topic": "plant/valve/7/reply",
    }
    _, r = composed("generic", {"content_type": "text/plain"}, "x", "text", profile={"publish_topic": "a", "qos": 0})
    assert r.message is None and "MQTT 5" in r.error and r.field == "content_type"
    _, r = composed("generic", {"topic": "a/+/b"}, "x", "text")
    assert r.message is None and r.field == "topic"


@pytest.mark.parametrize(
    ("platform", "values", "payload", "field", "words"),
    [
        ("tts", {"device_id": "dev-1", "f_port": "0"}, "01", "f_port", "FPort 0 is out of range"),
        ("tts", {"device_id": "Bad Id"}, "01", "device_id", "not a valid The Things Stack ID"),
        ("tts", {"device_id": "dev-1", "f_port": "x"}, "01", "f_port", "whole number"),
        ("tts", {"device_id": "dev-1"}, "00" * 243, "payload", "243 bytes"),
        ("tts", {"device_id": "dev-1", "payload_mode": "decoded_payload"}, "01", "payload", "write it as JSON"),
        ("thingpark", {"dev_eui": "0018B2", "f_port": "1"}, "01", "dev_eui", "16 hex digits"),
        ("thingpark", {"dev_eui": "0018B20000000B20", "f_port": "225"}, "01", "f_port", "1 to 224"),
        ("thingpark", {"dev_eui": "0018B20000000B20", "correlation_id": "xyz"}, "01", "correlation_id", "16 hex"),
        ("drogue", {"device_id": "d1", "command": "a/b"}, "01", "command", "cannot be part of one MQTT topic level"),
        ("tektelic", {"dev_eui": "", "template": "broker-base64"}, "01", "dev_eui", "needs the device EUI"),
        ("generic", {"user_properties": "novalue"}, "01", "user_properties", "name=value"),
    ],
)
def test_encoder_refusals_are_sentences_on_their_field(platform, values, payload, field, words):
    _, r = composed(platform, values, payload)
    assert r.message is None
    assert words in r.error and r.field == field
    assert r.error.endswith(".")


def test_invalid_payload_is_the_payloads_reason():
    _, r = composed("tts", {"device_id": "dev-1"}, "01 0")
    assert r.message is None and r.field == "payload" and "even number of digits" in r.error


# ----- LoRaWAN limits ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sf", "bw", "freq", "limit", "words"),
    [
        (12, 125_000, 868_100_000, 51, "51 bytes at DR0 (EU868)"),
        (10, 125_000, 867_500_000, 51, "DR2 (EU868)"),
        (9, 125_000, 868_300_000, 115, "DR3 (EU868)"),
        (7, 125_000, 868_500_000, 242, "DR5 (EU868)"),
        (7, 250_000, 868_300_000, 242, "DR6 (EU868)"),
        (10, 125_000, 904_300_000, 242, "RX1 DR10 after an uplink at DR0 (US915)"),
        (8, 500_000, 904_600_000, 242, "RX1 DR13 after an uplink at DR4 (US915)"),
        (12, 500_000, 923_300_000, 53, "DR8 (US915)"),
        (11, 500_000, 923_900_000, 129, "DR9 (US915)"),
    ],
)
def test_downlink_limit_from_the_last_uplink(sf, bw, freq, limit, words):
    found = downlink_limit(sf, bw, freq)
    assert found.max_payload == limit and words in found.describe()


def test_unknown_regions_and_data_rates_are_unknown():
    assert region_of(433_175_000) is None and region_of(None) is None
    assert region_of(868_100_000) == EU868 and region_of(915_200_000) == US915
    assert data_rate_of(EU868, 12, 500_000) is None
    assert downlink_limit(None, None, 868_100_000) is None and downlink_limit(9, 125_000, None) is None


def test_byte_count_against_platform_and_lorawan_limits():
    c = Composition("tts", PROFILES["tts"])
    c.set_payload("00" * 60, "hex")
    assert "LoRaWAN limit unknown" in c.payload_state().count_text()
    c.set_radio(12, 125_000, 868_100_000)
    state = c.payload_state()
    assert state.count_text() == "60 bytes · platform limit 242 · LoRaWAN limit 51 bytes at DR0 (EU868)"
    assert "more than the 51 bytes at DR0 (EU868)" in state.over_limit()
    generic = Composition("generic", PROFILES["generic"])
    generic.set_payload("00" * 300, "hex")
    assert generic.payload_state().count_text() == "300 bytes" and generic.payload_state().over_limit() is None


# ----- on the wire -------------------------------------------------------------------------


class Subscriber:
    """A paho MQTT 5 client on the broker collecting every message on `filters`."""

    def __init__(self, port: int, *filters: str) -> None:
        self.got: list[paho.MQTTMessage] = []
        self.ready = threading.Event()
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
        self.client.on_message = lambda c, u, m: self.got.append(m)
        self.client.on_subscribe = lambda *a: self.ready.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.client.subscribe([(f, paho.SubscribeOptions(qos=1)) for f in filters])
        assert self.ready.wait(10)

    def wait(self, n: int, timeout: float = 10.0) -> list[paho.MQTTMessage]:
        deadline = time.monotonic() + timeout
        while len(self.got) < n and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(self.got) >= n, f"{len(self.got)} of {n} messages arrived"
        return self.got

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def received_properties(message: paho.MQTTMessage) -> dict:
    props = getattr(message, "properties", None)
    out = {}
    if props is None:
        return out
    if getattr(props, "ContentType", None):
        out["content_type"] = props.ContentType
    if getattr(props, "UserProperty", None):
        out["user_properties"] = [tuple(p) for p in props.UserProperty]
    if getattr(props, "MessageExpiryInterval", None) is not None:
        out["message_expiry"] = props.MessageExpiryInterval
    if getattr(props, "ResponseTopic", None):
        out["response_topic"] = props.ResponseTopic
    return out


def every_platforms_message(topic: str) -> list:
    """One composed message per platform, topics under `topic` where the profile sets them."""
    profiles = {
        "tts": {"app": "app-one", "tenant": "ttn"},
        "thingpark": {"downlink_topic_pattern": f"{topic}/tp/{{DevEUI}}/downlink", "qos": 1},
        "drogue": {"application": "app-wire", "mqtt_version": "5", "qos": 1},
        "tektelic": {"host": "localhost", "pull_topic": f"{topic}/tektelic/down"},
        "akenza": {"device_id": "dev-w", "auth_mode": "uplink-secret", "uplink_secret": "wire", "mqtt_version": "5"},
        "generic": {"publish_topic": f"{topic}/generic", "qos": 1, "mqtt_version": "5"},
    }
    values = {
        "tts": ({"device_id": "wire-dev", "f_port": "3"}, "01 02", "hex"),
        "thingpark": ({"dev_eui": "0018B20000000B21", "f_port": "3"}, "AQI=", "base64"),
        "drogue": ({"device_id": "wire-dev", "command": "blink", "content_type": "text/plain"}, "on", "text"),
        "tektelic": ({"dev_eui": "647FDA0000000001", "f_port": "9"}, "[1, 2, 255]", "bytes"),
        "akenza": ({"content_type": "application/json", "subtopic": "s1"}, '{"t": 21.5}', "json"),
        "generic": (
            {"qos": 1, "content_type": "application/octet-stream", "user_properties": "k=v", "message_expiry": "120"},
            "00 ff 00",
            "hex",
        ),
    }
    out = []
    for name, profile in profiles.items():
        form, payload, fmt = values[name]
        _, r = composed(name, form, payload, fmt, profile=profile)
        assert r.message is not None, (name, r.error)
        out.append((name, r.message))
    return out


async def test_each_platforms_message_arrives_exactly_as_previewed(broker, topic):
    messages = every_platforms_message(topic)
    sub = Subscriber(broker.ports.plain, "#")
    try:
        config = parse_url(broker.url("plain"), mqtt_version=MqttVersion.V5)
        async with MqttSession(config, on_message=lambda m: None) as session:
            await session.wait_connected(10)
            for _, message in messages:
                await session.publish(
                    message.topic,
                    message.payload,
                    qos=message.qos,
                    retain=message.retain,
                    **publish_arguments(message.properties),
                )
        await asyncio.to_thread(sub.wait, len(messages))
        for name, message in messages:
            got = next((m for m in sub.got if m.topic == message.topic), None)
            assert got is not None, f"{name}: nothing on {message.topic}"
            assert got.payload == message.payload, name
            assert received_properties(got) == message.properties, name
            assert dict(preview_rows(message))["Topic"] == got.topic
            assert body_text(got.payload) == body_text(message.payload)
    finally:
        sub.close()


def test_copied_mosquitto_pub_command_publishes_the_same_message_without_the_password(broker, topic):
    messages = every_platforms_message(topic + "/cli")
    config = parse_url(broker.url("auth"), username=broker.USER, password=broker.PASSWORD, mqtt_version=MqttVersion.V5)
    sub = Subscriber(broker.ports.plain, "#")
    try:
        for name, message in messages:
            command = mosquitto_pub_command(message, config)
            assert broker.PASSWORD not in command
            assert '-P "$MQTT_PASSWORD"' in command and "# The password is left out" in command
            done = subprocess.run(
                ["bash", "-c", command],
                env={**os.environ, "MQTT_PASSWORD": broker.PASSWORD},
                capture_output=True,
                text=True,
                timeout=20,
            )
            assert done.returncode == 0, (name, command, done.stderr)
        sub.wait(len(messages))
        for name, message in messages:
            got = [m for m in sub.got if m.topic == message.topic]
            assert len(got) == 1, name
            assert got[0].payload == message.payload, name
            assert received_properties(got[0]) == message.properties, name
    finally:
        sub.close()


def test_mosquitto_pub_command_for_tls_and_binary_bodies(pki):
    message = every_platforms_message("t")[-1][1]
    config = parse_url("mqtts://broker.example.com:8883", mqtt_version=MqttVersion.V5).replace(
        tls=parse_url("mqtts://x").tls.__class__(ca_file=str(pki.ca), verify_certificate=False)
    )
    command = mosquitto_pub_command(message, config)
    assert "-h broker.example.com -p 8883 -V mqttv5" in command
    assert f"--cafile {pki.ca}" in command and "--insecure" in command
    assert command.startswith("printf '\\000\\377\\000' | mosquitto_pub") and command.endswith(" -s")
    assert "-P" not in command  # no user, no password


# ----- templates ---------------------------------------------------------------------------


def test_templates_round_trip_per_connection(tmp_path):
    store = TemplateStore("profile-a", tmp_path)
    store.save(DownlinkTemplate("Reboot", {"device_id": "dev-1", "f_port": 10}, "hex", "01 02", "tts"))
    store.save(DownlinkTemplate("LED", {"f_port": 2}, "json", '{"led": true}', "tts"))
    store.save(DownlinkTemplate("reboot", {"f_port": 11}, "hex", "03", "tts"))  # same name: replaced
    again = TemplateStore("profile-a", tmp_path)
    assert again.names() == ["reboot", "LED"] and again.load_problem is None
    assert again.find("REBOOT").fields == {"f_port": 11} and again.find("led").payload() == b'{"led":true}'
    assert TemplateStore("profile-b", tmp_path).names() == []
    again.delete("LED")
    assert TemplateStore("profile-a", tmp_path).names() == ["reboot"]
    doc = orjson.loads(templates_path("profile-a", tmp_path).read_bytes())
    assert doc["format"] == "uplink-console-downlink-templates" and doc["connection"] == "profile-a"
    assert doc["templates"][0]["payload"] == {"format": "hex", "text": "03"}
    assert oct(templates_path("profile-a", tmp_path).stat().st_mode & 0o777) == "0o600"


def test_template_refusals_are_sentences(tmp_path):
    store = TemplateStore("p", tmp_path)
    with pytest.raises(TemplateError, match="Give the template a name"):
        store.save(DownlinkTemplate("  ", {}, "hex", ""))
    with pytest.raises(TemplateError, match="payload cannot be saved as it is: Hex needs an even number"):
        store.save(DownlinkTemplate("x", {}, "hex", "abc"))
    with pytest.raises(TemplateError, match=r"There is no downlink template 'nope' for this connection"):
        store.find("nope")


def test_a_corrupt_templates_file_is_kept_aside_and_the_valid_ones_kept(tmp_path):
    path = templates_path("adhoc:tts", tmp_path)
    path.parent.mkdir(parents=True)
    path.write_bytes(b'{"templates": [{"name": "ok", "payload": {"format": "hex", "text": "01"}}, {"name": 5}, 7]}')
    store = TemplateStore("adhoc:tts", tmp_path)
    assert store.names() == ["ok"]
    assert "kept aside as" in store.load_problem and "the 1 that could be read are kept" in store.load_problem
    asides = list(path.parent.glob("*.corrupt-*"))
    assert len(asides) == 1 and b'{"name": 5}' in asides[0].read_bytes()
    assert TemplateStore("adhoc:tts", tmp_path).names() == ["ok"]  # what was recovered was written back
    path.write_bytes(b"{not json")
    broken = TemplateStore("adhoc:tts", tmp_path)
    assert broken.names() == [] and "no template could be read" in broken.load_problem
    assert len(list(path.parent.glob("*.corrupt-*"))) == 2
    assert path.name == "adhoc%3Atts.json"


# ----- ThingPark ValidityTime ------------------------------------------------------------------


def test_thingpark_valid_until_a_duration_or_a_time_becomes_validitytime():
    import datetime as dt

    from app import compose
    from app.platforms import thingpark
    from app.platforms.base import EncodeError

    now = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)
    later = dt.datetime.fromisoformat(compose.validity_time_text("30m", now))
    assert later == now + dt.timedelta(minutes=30) and later.tzinfo is not None
    assert dt.datetime.fromisoformat(compose.validity_time_text("2h", now)) == now + dt.timedelta(hours=2)
    assert compose.validity_time_text("", now) is None
    assert thingpark.downlink_validity_time("2026-12-01T18:00+01:00") == "2026-12-01T18:00:00.000+01:00"
    assert thingpark.downlink_validity_time("2026-12-01T17:00:00Z") == "2026-12-01T17:00:00.000+00:00"
    with pytest.raises(EncodeError, match="no time zone"):
        thingpark.downlink_validity_time("2026-12-01T18:00")
    with pytest.raises(EncodeError, match="not an ISO 8601 time"):
        thingpark.downlink_validity_time("tomorrow")


def test_thingpark_composer_puts_validitytime_in_the_body_and_words_a_bad_one_on_its_field():
    import orjson

    from app.compose import Composition

    c = Composition("thingpark", {"downlink_topic_pattern": "mqtt/things/{DevEUI}/downlink", "qos": 1})
    c.set_payload("01ff", "hex")
    for name, value in (("dev_eui", "0018B20000000B20"), ("f_port", 5), ("validity_time", "2026-12-01T18:00+01:00")):
        c.set(name, value)
    composed = c.build()
    assert composed.message is not None, composed.error
    body = orjson.loads(composed.message.payload)["DevEUI_downlink"]
    assert body["ValidityTime"] == "2026-12-01T18:00:00.000+01:00"
    c.set("validity_time", "2026-12-01T18:00")
    composed = c.build()
    assert composed.message is None and "no time zone" in composed.error and composed.field == "validity_time"

"""The composer window offscreen: Send held while the input is invalid, the preview is the message
the model builds, Copy as mosquitto_pub, templates saved and applied, and Reply from an uplink row
or a device pre-filling the form."""

from __future__ import annotations

import time

import orjson
import pytest
from PySide6.QtGui import QGuiApplication

from app.compose import body_text, mosquitto_pub_command
from app.downlink_templates import TemplateStore
from app.events import Event, utc_now_iso
from app.mqtt.config import parse_url
from app.store import columns_from_rows, event_row

TTS_PROFILE = {"app": "app-one", "tenant": "ttn"}
PROFILES = {
    "tts": TTS_PROFILE,
    "thingpark": {"downlink_topic_pattern": "mqtt/things/{DevEUI}/downlink"},
    "drogue": {"application": "app1", "mqtt_version": "5"},
    "tektelic": {"host": "localhost", "pull_topic": "tektelic/down"},
    "akenza": {"device_id": "dev-1", "auth_mode": "uplink-secret", "uplink_secret": "s3cr3t", "mqtt_version": "5"},
    "generic": {"publish_topic": "a/b", "mqtt_version": "5"},
}


def make_composer(qtbot, platform="tts", tmp_path=None, sender=None, config=None, key="profile-ui"):
    from ui.downlink.composer import ComposerDialog

    templates = TemplateStore(key, tmp_path) if tmp_path is not None else None
    dialog = ComposerDialog(
        platform,
        PROFILES[platform],
        config=config,
        connection_key=key,
        title="Test",
        sender=sender or (lambda message, meta: {"id": meta["id"], "state": "outbox"}),
        templates=templates,
    )
    qtbot.addWidget(dialog)
    dialog.show()
    return dialog


def test_send_is_disabled_while_the_payload_or_a_field_is_invalid(qtbot, tmp_path):
    d = make_composer(qtbot, tmp_path=tmp_path)
    d.widgets["device_id"].setText("dev-1")
    d.editor.edit.setPlainText("01 02")
    assert d.send_button.isEnabled()
    d.editor.edit.setPlainText("01 0")
    assert not d.send_button.isEnabled()
    assert d.editor.reason.isVisible() and "even number of digits" in d.editor.reason.text()
    d.editor.edit.setPlainText("01 02")
    d.widgets["f_port"].setText("300")
    assert not d.send_button.isEnabled()
    assert d.reasons["f_port"].isVisible() and "FPort 300 is out of range" in d.reasons["f_port"].text()
    d.widgets["f_port"].setText("2")
    d.widgets["device_id"].setText("Not An Id")
    assert not d.send_button.isEnabled() and "valid The Things Stack ID" in d.reasons["device_id"].text()
    d.widgets["device_id"].setText("dev-1")
    assert d.send_button.isEnabled() and not d.reasons["device_id"].isVisible()
    assert "2 bytes · platform limit 242 · LoRaWAN limit unknown" in d.editor.count.text()


@pytest.mark.parametrize("platform", list(PROFILES))
def test_the_preview_shows_the_message_the_model_builds(qtbot, tmp_path, platform):
    d = make_composer(qtbot, platform, tmp_path)
    d.prefill(device_id="dev-1", dev_eui="0018B20000000B20", f_port=7)
    if platform == "akenza":
        d.editor.set_payload('{"t": 1}', "json")
    else:
        d.editor.set_payload("0a0b", "hex")
    assert d.composed.message is not None, d.composed.error
    message = d.composed.message
    assert d.preview.topic.text() == message.topic
    assert d.preview.body.toPlainText() == body_text(message.payload)
    assert d.preview.qos.text().startswith(f"QoS {message.qos}")
    assert d.preview.message is message  # Send hands over this very object
    d.preview.indent.setChecked(False)  # the body exactly as its bytes go out
    shown = d.preview.body.toPlainText()
    assert shown.encode() == message.payload or bytes.fromhex(shown) == message.payload


def test_copy_as_mosquitto_pub_command(qtbot, tmp_path):
    config = parse_url("mqtts://eu1.cloud.thethings.network:8883", username="app-one@ttn", password="NNSXS.secret")
    d = make_composer(qtbot, tmp_path=tmp_path, config=config)
    d.widgets["device_id"].setText("dev-1")
    d.editor.edit.setPlainText("ff")
    d.preview.copy_button.click()
    copied = QGuiApplication.clipboard().text()
    assert copied == mosquitto_pub_command(d.composed.message, config)
    assert "NNSXS.secret" not in copied and '-P "$MQTT_PASSWORD"' in copied
    assert "-t v3/app-one@ttn/devices/dev-1/down/push" in copied
    assert "$MQTT_PASSWORD" in d.preview.copied.text()


def test_templates_round_trip_in_the_composer(qtbot, tmp_path):
    d = make_composer(qtbot, tmp_path=tmp_path)
    d.widgets["device_id"].setText("dev-9")
    d.widgets["f_port"].setText("42")
    d.widgets["confirmed"].setChecked(True)
    d.editor.set_payload('{"reboot": true}', "json")
    assert d.templates.save_named("Reboot") is not None
    assert d.templates.choice.currentText() == "Reboot"

    other = make_composer(qtbot, tmp_path=tmp_path)  # a new window of the same connection
    assert other.templates.store.names() == ["Reboot"]
    assert other.widgets["device_id"].text() == ""
    other.templates.choice.setCurrentIndex(0)
    other.templates.apply_button.click()
    assert other.widgets["device_id"].text() == "dev-9"
    assert other.widgets["f_port"].text() == "42" and other.widgets["confirmed"].isChecked()
    assert other.editor.format == "json" and orjson.loads(other.editor.text()) == {"reboot": True}
    assert other.composed.message is not None
    assert orjson.loads(other.composed.message.payload)["downlinks"][0]["f_port"] == 42
    other.templates.delete_button.click()
    assert TemplateStore("profile-ui", tmp_path).names() == []
    assert not other.templates.apply_button.isEnabled()


def test_a_refused_send_is_a_sentence_and_keeps_the_form(qtbot, tmp_path, loop):
    from app.outbox import OutboxFull

    async def full(message, meta):
        raise OutboxFull("The outbox of this connection is full (1,000 downlinks wait); cancel some or connect.")

    d = make_composer(qtbot, tmp_path=tmp_path, sender=full)
    d.widgets["device_id"].setText("dev-1")
    d.editor.edit.setPlainText("01")
    with loop:
        d.send_button.click()
        qtbot.waitUntil(lambda: "outbox of this connection is full" in d.status.text(), timeout=5000)
    assert d.widgets["device_id"].text() == "dev-1" and d.editor.text() == "01"
    assert d.send_button.isEnabled()


def test_a_send_hands_the_previewed_message_and_its_meta_to_the_outbox(qtbot, tmp_path, loop):
    got = []

    async def sender(message, meta):
        got.append((message, meta))
        return {"id": meta["id"], "state": "outbox"}

    d = make_composer(qtbot, tmp_path=tmp_path, sender=sender)
    d.widgets["device_id"].setText("dev-1")
    d.editor.edit.setPlainText("01 02")
    shown, first_id = d.composed.message, d.composition.downlink_id
    with loop:
        d.send_button.click()
        qtbot.waitUntil(lambda: bool(got) and "Queued" in d.status.text(), timeout=5000)
    assert got[0][0] is shown and got[0][1]["id"] == first_id
    assert f"uplink-console:downlink:{first_id}".encode() in shown.payload
    assert d.composition.downlink_id != first_id  # the next downlink gets an id of its own


# ----- Reply ----------------------------------------------------------------------------------


def uplink(device_id: str, dev_eui: str, f_port: int, sf: int, freq: int) -> Event:
    return Event(
        platform="tts",
        kind="uplink",
        received_at=utc_now_iso(),
        application_id="app-one",
        device_id=device_id,
        dev_eui=dev_eui,
        f_port=f_port,
        f_cnt=1,
        payload_hex="01",
        spreading_factor=sf,
        bandwidth_hz=125_000,
        frequency_hz=freq,
    )


def test_reply_from_an_uplink_row_or_a_device_prefills_the_composer(qtbot, tmp_path):
    from ui.connection.page import ConnectionPage

    page = ConnectionPage("profile-reply", "Reply test", raw=False)
    qtbot.addWidget(page)
    page.platform_name, page.profile = "tts", TTS_PROFILE
    page.config = parse_url("mqtt://127.0.0.1:1")
    rows = [
        event_row(uplink("dev-a", "70B3D57ED000000A", 12, 7, 868_100_000), time.time(), 1),
        event_row(uplink("dev-b", "70B3D57ED000000B", 33, 12, 868_300_000), time.time(), 2),
    ]
    page.workspace.ingest([columns_from_rows(rows)])
    page.workspace.model.announce()
    qtbot.waitUntil(lambda: len(page.workspace.tracker) == 2, timeout=5000)
    assert page.workspace.bottom.tabText(page.workspace.bottom.indexOf(page.downlinks_view)) == "Downlinks"

    page.workspace.view.send_downlink_requested.emit(page.workspace.model.position(0))
    composer = page.composer
    assert composer is not None and composer.isVisible()
    assert composer.widgets["device_id"].text() == "dev-a" and composer.widgets["f_port"].text() == "12"
    composer.editor.edit.setPlainText("00" * 60)
    assert "LoRaWAN limit 242 bytes at DR5 (EU868)" in composer.editor.count.text()

    page.workspace.devices.send_downlink_requested.emit("70B3D57ED000000B")
    assert page.composer is composer  # one composer per page, filled again
    assert composer.widgets["device_id"].text() == "dev-b" and composer.widgets["f_port"].text() == "33"
    assert "LoRaWAN limit 51 bytes at DR0 (EU868)" in composer.editor.count.text()
    assert "Too long for the data rate the device last used" in composer.editor.count.text()
    assert composer.composed.message is not None  # the platform takes 60 bytes; the warning says why not


# ----- Send through the real engine, on every platform ----------------------------------------

WIRE_FORMS = {
    "tts": ({"device_id": "wire-dev", "f_port": "3"}, "01 02", "hex"),
    "thingpark": ({"dev_eui": "0018B20000000B21", "f_port": "3"}, "AQI=", "base64"),
    "drogue": ({"device_id": "wire-dev", "command": "blink", "content_type": "text/plain"}, "on", "text"),
    "tektelic": ({"dev_eui": "647FDA0000000001", "f_port": "9"}, "[1, 2, 255]", "bytes"),
    "akenza": ({"content_type": "application/json", "subtopic": "s1"}, '{"t": 21.5}', "json"),
    "generic": ({"qos": 1, "content_type": "application/octet-stream", "user_properties": "k=v"}, "00 ff", "hex"),
}


@pytest.mark.parametrize("platform", list(WIRE_FORMS))
def test_send_in_the_window_delivers_the_previewed_message_on_every_platform(
    qtbot, loop, broker, tmp_path, monkeypatch, topic, platform
):
    from app.mqtt.config import MqttVersion
    from tests.conftest import until
    from tests.test_compose import Subscriber, received_properties
    from ui.connection.page import ConnectionPage

    monkeypatch.setenv("UPLINK_CONSOLE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("UPLINK_CONSOLE_CONFIG_DIR", str(tmp_path / "config"))
    profile = dict(PROFILES[platform])
    if platform == "thingpark":
        profile["downlink_topic_pattern"] = f"{topic}/{{DevEUI}}/downlink"
        profile["uplink_topic_pattern"] = f"{topic}/{{DevEUI}}/uplink"
    elif platform == "akenza":
        profile["connector_id"] = "connector-1"
    elif platform == "tektelic":
        profile["pull_topic"] = f"{topic}/tektelic/down"
    elif platform == "generic":
        profile["publish_topic"] = f"{topic}/generic"
    config = parse_url(broker.url("plain"), mqtt_version=MqttVersion.V5)
    page = ConnectionPage(f"profile-wire-{platform}", "Wire", raw=False)
    qtbot.addWidget(page)
    sub = Subscriber(broker.ports.plain, "#")
    form, payload, fmt = WIRE_FORMS[platform]

    async def scenario():
        page.connect_platform(platform, profile, config, history_name=f"profile wire {platform} {topic}")
        try:
            await until(lambda: page.bridge.connected, 20)
        except AssertionError:
            raise AssertionError(f"not connected: {page.last_error!r} {page.last_change}") from None
        composer = page.open_composer()
        for name, value in form.items():
            composer.set_field(name, value)
        composer.editor.set_payload(payload, fmt)
        composer.rebuild()
        message = composer.composed.message
        assert message is not None, composer.composed.error
        composer.send_button.click()
        await until(lambda: any(m.topic == message.topic for m in sub.got), 20)
        got = next(m for m in sub.got if m.topic == message.topic)
        assert got.payload == message.payload
        assert received_properties(got) == message.properties
        await until(lambda: any(e.get("state") == "handed-over" for e in page.downlinks_view.model.rows), 10)
        page.disconnect()

    try:
        loop.run_until_complete(scenario())
    finally:
        sub.close()
        page.shutdown()

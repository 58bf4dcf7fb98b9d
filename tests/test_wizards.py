"""The connection wizards driven like a user would (pytest-qt, offscreen): each from its first
page to a WizardResult, Next held back until the platform accepts a page, the reason next to
the field, imports that fill the wizard, and the test page connecting for real to mosquitto."""

from __future__ import annotations

import asyncio
import json
import random
import threading
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication, QWidget, QWizard

from app.devbroker import free_port
from app.mqtt.process import EngineProcess
from app.simulate import tts as simulate
from app.wizard_flow import WizardResult
from tests.conftest import until
from ui.connection.wizard import ConnectionWizard, make_wizard, open_wizard
from ui.connection.wizard.pages import ConnectionTestPage, FieldsPage, ImportPage

TEKTELIC_BODY = Path(__file__).resolve().parent / "samples" / "tektelic_mqtt_v2_integration_config_1.json"


@pytest.fixture
def engine():
    """An engine per test, as each test has its own qasync loop: an engine shared between loops
    may free a closed loop's Qt timers on its reader thread (it keeps the last call's future
    until the next one), which crashes a later test."""
    engine = EngineProcess()
    yield engine
    engine.close()


# ----- driving helpers ------------------------------------------------------------------------


def next_button(w: QWizard):
    return w.button(QWizard.WizardButton.NextButton)


def key(w: ConnectionWizard) -> str:
    return w.current_key()


def ed(w: ConnectionWizard, name: str):
    return w.currentPage().editors[name]


def type_in(w: ConnectionWizard, name: str, text: str) -> None:
    editor = ed(w, name)
    widget = {"file": "file", "textarea": "area"}.get(editor.field.kind, "line")
    if widget == "file":
        editor.file.edit.setText(text)
    elif widget == "area":
        editor.area.setPlainText(text)
    else:
        editor.line.setText(text)


def choose(w: ConnectionWizard, name: str, choice) -> None:
    combo = ed(w, name).combo
    index = combo.findData(choice)
    assert index >= 0, (name, choice)
    combo.setCurrentIndex(index)


def tick(w: ConnectionWizard, name: str, on: bool) -> None:
    ed(w, name).check.setChecked(on)


def go_next(w: ConnectionWizard) -> str:
    assert next_button(w).isEnabled(), (key(w), w.flow.page_problems(key(w)), w.flow.page_problem(key(w)))
    next_button(w).click()
    return key(w)


def shown_error(w: ConnectionWizard, name: str) -> str:
    editor = ed(w, name)
    return editor.error.text() if editor.error.isVisibleTo(w) else ""


async def answer(w: ConnectionWizard, timeout: float = 20.0):
    """Waits until the test page has an answer; returns the flow's result."""
    page = w.currentPage()
    assert isinstance(page, ConnectionTestPage)
    await until(lambda: not page.running and page.headline.text() and not page.headline.text().endswith("…"), timeout)
    return w.flow.test_result


def finish(w: ConnectionWizard, name: str | None = None, open_on_start: bool = False) -> WizardResult:
    assert key(w) == "finish"
    page = w.currentPage()
    if name is not None:
        page.name.setText(name)
    page.open_on_start.setChecked(open_on_start)
    finish_button = w.button(QWizard.WizardButton.FinishButton)
    assert finish_button.isVisible() and finish_button.isEnabled() and finish_button.text() == "Save"
    finish_button.click()
    assert w.wizard_result is not None
    return w.wizard_result


class Publisher:
    """Publishes a body every 0.1 s from paho, so a message arrives while the test listens."""

    def __init__(self, port: int, topic: str, payload: bytes) -> None:
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.halt = threading.Event()

        def run() -> None:
            while not self.halt.wait(0.1):
                self.client.publish(topic, payload)

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.halt.set()
        self.thread.join(5)
        self.client.disconnect()
        self.client.loop_stop()


def wizard(qtbot, platform: str, engine, **kw) -> ConnectionWizard:
    w = make_wizard(None, platform, engine=engine, **kw)
    qtbot.addWidget(w)
    w.show()
    return w


# ----- The Things Stack ---------------------------------------------------------------------


def test_tts_wizard_from_first_page_to_result_receiving(qtbot, loop, engine, broker):
    w = wizard(qtbot, "tts", engine, taken_names={"uplink-demo (127.0.0.1)"})
    assert key(w) == "server" and w.windowTitle() == "New The Things Stack connection"
    page = w.currentPage()
    assert "MQTT 3.1.1 with QoS 0 only" in page.note.text.text() and page.note.isVisibleTo(w)
    assert "au1.cloud.thethings.network" in ed(w, "cluster").combo.itemText(2)
    assert not ed(w, "address").box.isVisibleTo(w)
    choose(w, "cluster", "custom")
    assert ed(w, "address").box.isVisibleTo(w) and not next_button(w).isEnabled()
    assert "Server address" in page.waiting.text()
    type_in(w, "address", f"mqtt://127.0.0.1:{broker.ports.plain}")
    assert not ed(w, "tls").check.isChecked() and not ed(w, "tls").widget.isEnabled()  # the address decides
    assert go_next(w) == "application"
    assert not next_button(w).isEnabled() and shown_error(w, "app") == ""  # nothing typed: no red yet
    qtbot.keyClicks(ed(w, "app").line, "Uplink Demo")
    assert "not a valid The Things Stack ID" in shown_error(w, "app") and not next_button(w).isEnabled()
    type_in(w, "app", simulate.APP_ID)
    type_in(w, "tenant", simulate.TENANT)
    assert shown_error(w, "app") == "" and not next_button(w).isEnabled()  # the API key is still missing
    type_in(w, "password", "NNSXS.WIZARD-TEST")
    assert f"{simulate.APP_ID}@{simulate.TENANT}" in w.currentPage().note.text.text()
    assert go_next(w) == "traffic"
    publisher = Publisher(broker.ports.plain, simulate.tts_topic(1), simulate.tts_uplink(1, 5, rnd=random.Random(2)))

    async def scenario():
        assert go_next(w) == "test"
        assert not next_button(w).isEnabled()  # busy
        result = await answer(w)
        assert result.kind == "receiving", result
        page = w.currentPage()
        assert page.headline.text() == "Connected and receiving"
        assert f"an uplink of device {simulate.device_id(1)}" in page.outcome.text.text()
        assert not page.save_anyway.isVisibleTo(w)
        assert go_next(w) == "finish"

    try:
        loop.run_until_complete(scenario())
    finally:
        publisher.stop()
    assert w.currentPage().name.text() == "uplink-demo (127.0.0.1) (2)"  # unique
    result = finish(w, open_on_start=True)
    assert result.platform == "tts" and result.name == "uplink-demo (127.0.0.1) (2)" and result.open_on_start
    assert result.values["url"] == f"mqtt://127.0.0.1:{broker.ports.plain}"
    assert result.values["app"] == simulate.APP_ID and result.values["tenant"] == simulate.TENANT
    assert result.secrets == {"password": "NNSXS.WIZARD-TEST"} and "password" not in result.values


# ----- generic MQTT: passwords, certificates, failures ---------------------------------------


def _generic_to_test(w: ConnectionWizard, url: str, username: str = "", password: str = "", topic: str = "t/#"):
    assert key(w) == "broker"
    type_in(w, "url", url)
    type_in(w, "username", username)
    type_in(w, "password", password)
    assert go_next(w) == "topics"
    type_in(w, "topics", topic)


def test_generic_password_connection_that_hears_nothing(qtbot, loop, engine, broker, topic):
    w = wizard(qtbot, "generic", engine, test_timeout=1.0)
    _generic_to_test(w, broker.url("auth"), broker.USER, broker.PASSWORD, topic + "/#")

    async def scenario():
        assert go_next(w) == "test"
        result = await answer(w)
        assert result.kind == "quiet", result
        assert w.currentPage().headline.text() == "Connected, nothing received yet"
        assert "normal" in w.currentPage().outcome.text.text()
        assert go_next(w) == "finish"

    loop.run_until_complete(scenario())
    result = finish(w, "Local broker")
    assert result.secrets == {"password": broker.PASSWORD} and result.values["username"] == broker.USER
    assert result.values["topics"] == topic + "/#"


def test_wrong_password_is_saved_only_when_the_user_says_so(qtbot, loop, engine, broker, topic):
    w = wizard(qtbot, "generic", engine, test_timeout=1.0)
    _generic_to_test(w, broker.url("auth"), broker.USER, "wrong", topic + "/#")

    async def scenario():
        go_next(w)
        result = await answer(w)
        assert result.kind == "credentials", result
        page = w.currentPage()
        assert page.headline.text() == "Wrong credentials"
        assert "credentials" in page.outcome.text.text()
        assert page.save_anyway.isVisibleTo(w) and not next_button(w).isEnabled()
        page.save_anyway.setChecked(True)
        assert next_button(w).isEnabled()
        go_next(w)
        assert "test failed (wrong credentials)" in w.currentPage().untested.text.text()

    loop.run_until_complete(scenario())
    assert finish(w, "Wrong one").secrets == {"password": "wrong"}


def test_client_certificate_with_an_encrypted_key(qtbot, loop, engine, broker, pki, topic):
    w = wizard(qtbot, "generic", engine, test_timeout=0.5)
    _generic_to_test(w, broker.url("mtls"), topic=topic)
    assert go_next(w) == "tls"  # mqtts:// brings the certificates page
    page = w.currentPage()
    assert not page.more_button.isVisible() and ed(w, "ca_file").box.isVisibleTo(w)  # all shown at once
    type_in(w, "ca_file", str(pki.ca))
    type_in(w, "cert_file", str(pki.client_cert))
    type_in(w, "key_file", str(pki.client_key_encrypted))
    assert "protected by a password" in page.problem.text.text() and page.problem.isVisibleTo(w)
    assert not next_button(w).isEnabled()
    type_in(w, "key_password", "nope")
    assert "key password" in page.problem.text.text() and "wrong" in page.problem.text.text()
    type_in(w, "key_password", pki.client_key_password)
    # No problem left; the test PKI's certificates live 30 days, which the page says as a warning.
    assert page.problem.level == "warning" and "expires on" in page.problem.text.text()

    async def scenario():
        assert go_next(w) == "test"
        result = await answer(w)
        assert result.kind == "quiet", result
        go_next(w)

    loop.run_until_complete(scenario())
    result = finish(w, "Client certificate")
    assert result.values["key_file"] == str(pki.client_key_encrypted)
    assert result.secrets == {"key_password": pki.client_key_password}


def test_wrong_ca_says_certificate_problem_and_which(qtbot, loop, engine, broker, pki, topic):
    w = wizard(qtbot, "generic", engine, test_timeout=0.5)
    _generic_to_test(w, broker.url("tls"), topic=topic)
    go_next(w)
    type_in(w, "ca_file", str(pki.other_ca))

    async def scenario():
        go_next(w)
        result = await answer(w)
        assert result.kind == "certificate", result
        page = w.currentPage()
        assert page.headline.text() == "Certificate problem"
        assert "not trusted" in page.outcome.text.text() and "CA certificate" in page.outcome.text.text()
        assert "Back on “Certificates” you can change it." in page.outcome.text.text()

    loop.run_until_complete(scenario())


@pytest.mark.parametrize(
    ("address", "kind", "headline"),
    [
        ("mqtt://no-such-host.invalid:1883", "host", "Host not found"),
        (None, "refused", "Nothing is listening there"),
    ],
)
def test_host_not_found_and_nothing_listening(qtbot, loop, engine, address, kind, headline):
    w = wizard(qtbot, "generic", engine, test_timeout=0.5)
    _generic_to_test(w, address or f"mqtt://127.0.0.1:{free_port()}")

    async def scenario():
        go_next(w)
        result = await answer(w)
        assert result.kind == kind, result
        assert w.currentPage().headline.text() == headline

    loop.run_until_complete(scenario())


def test_the_test_can_be_cancelled_and_tested_again(qtbot, loop, engine, broker, topic):
    w = wizard(qtbot, "generic", engine, test_timeout=30.0)
    _generic_to_test(w, broker.url("plain"), topic=topic + "/#")

    async def scenario():
        go_next(w)
        page = w.currentPage()
        await until(lambda: page.headline.text() == "Connected. Waiting for the first message…")
        await until(lambda: "Cancel stops waiting" in page.status.text())
        assert page.cancel_button.isEnabled() and not page.again.isEnabled()
        page.cancel_button.click()
        await until(lambda: not page.running)
        assert page.headline.text() == "Test cancelled" and page.save_anyway.isVisibleTo(w)
        assert not next_button(w).isEnabled()
        page.timeout = 0.5
        page.again.click()
        result = await answer(w)
        assert result.kind == "quiet" and next_button(w).isEnabled()

    loop.run_until_complete(scenario())


# ----- imports ------------------------------------------------------------------------------


def test_tektelic_import_fills_the_wizard_secrets_included(qtbot, loop, engine, broker, tmp_path):
    w = wizard(qtbot, "tektelic", engine, test_timeout=0.5, certificates_dir=tmp_path)
    assert key(w) == "import" and isinstance(w.currentPage(), ImportPage)
    assert next_button(w).isEnabled()  # the import may be skipped
    doc = json.loads(TEKTELIC_BODY.read_text(encoding="utf-8"))
    doc["configuration"].update(host="127.0.0.1", port=broker.ports.auth, token=broker.USER, password=broker.PASSWORD)
    w.currentPage().text.setPlainText("POST /api/integration\n" + json.dumps(doc, indent=4))
    assert go_next(w) == "broker"  # Next imports what was pasted
    assert ed(w, "host").line.text() == "127.0.0.1" and ed(w, "port").line.text() == str(broker.ports.auth)
    assert ed(w, "token").line.text() == broker.USER and ed(w, "password").line.text() == broker.PASSWORD
    assert not ed(w, "clean_session").check.isChecked()
    assert go_next(w) == "topics"
    assert ed(w, "push_topic").line.text() == "pushTopic" and ed(w, "pull_topic").line.text() == "pullTopic"
    assert go_next(w) == "integration"
    page = w.currentPage()
    assert ed(w, "max_inflight").line.text() == "5" and "1 to 100" in ed(w, "max_inflight").hint.text()
    type_in(w, "max_inflight", "101")
    assert shown_error(w, "max_inflight") == "Max inflight must be at most 100 (got 101)."
    assert not next_button(w).isEnabled()
    type_in(w, "max_inflight", "5")
    assert page.isComplete()

    async def scenario():
        assert go_next(w) == "test"
        result = await answer(w)
        assert result.kind == "quiet", result
        go_next(w)

    loop.run_until_complete(scenario())
    assert w.currentPage().name.text() == "test_mqttv2"
    result = finish(w)
    assert result.secrets == {"password": broker.PASSWORD}
    assert result.values["host"] == "127.0.0.1" and result.values["push_topic"] == "pushTopic"


def test_tektelic_import_refusal_stays_on_the_page(qtbot, engine, tmp_path):
    w = wizard(qtbot, "tektelic", engine, certificates_dir=tmp_path)
    w.currentPage().text.setPlainText('{"type": "HTTP", "configuration": {}}')
    next_button(w).click()
    assert key(w) == "import"
    assert "HTTP integration" in w.currentPage().outcome.text.text()


def test_thingpark_import_from_a_file_fills_the_wizard(qtbot, loop, engine, broker, pki, tmp_path):
    body = {
        "connectorId": "actility-mqtt-iot",
        "name": "Lab broker",
        "configuration": {
            "uplinkTopicPattern": "lab/things/{DevEUI}/uplink",
            "downlinkTopicPattern": "lab/things/{DevEUI}/downlink",
            "hostName": f"localhost:{broker.ports.tls}",
            "protocol": "SSL",
            "username": "lab",
            "password": "lab-secret",
            "trustedCaCertficate": pki.ca.read_text(),
        },
    }
    path = tmp_path / "connection.json"
    path.write_text(json.dumps(body))
    w = wizard(qtbot, "thingpark", engine, test_timeout=0.5, certificates_dir=tmp_path / "certs")
    page = w.currentPage()
    assert page.open_file(str(path))
    assert "Filled in from “Lab broker”" in page.outcome.text.text()
    assert go_next(w) == "broker"
    assert ed(w, "host_name").line.text() == f"localhost:{broker.ports.tls}"
    assert ed(w, "protocol").combo.currentText() == "SSL: MQTT over TLS (recommended)"
    assert go_next(w) == "topics"
    assert "lab/things/+/uplink" in w.currentPage().note.text.text()
    assert go_next(w) == "tls"
    assert ed(w, "ca_file").file.edit.text().startswith(str(tmp_path / "certs"))

    async def scenario():
        assert go_next(w) == "test"
        result = await answer(w)
        assert result.kind == "quiet", result
        go_next(w)

    loop.run_until_complete(scenario())
    result = finish(w)
    assert result.name == "Lab broker" and result.secrets == {"password": "lab-secret"}
    assert result.values["uplink_topic_pattern"] == "lab/things/{DevEUI}/uplink"


# ----- akenza, Drogue, editing --------------------------------------------------------------


def test_akenza_wizard_goes_to_the_page_of_the_chosen_mode(qtbot, engine):
    w = wizard(qtbot, "akenza", engine)
    type_in(w, "device_id", "dev-1")
    choose(w, "auth_mode", "uplink-secret")
    assert go_next(w) == "secret"
    assert not next_button(w).isEnabled()
    type_in(w, "connector_id", "connector")
    type_in(w, "uplink_secret", "s3cret")
    assert go_next(w) == "messages"
    assert "/up/s3cret/id/dev-1" in w.currentPage().note.text.text()
    choose(w, "content_type", "text/plain")
    w.back()
    w.back()
    assert key(w) == "device"
    assert ed(w, "mqtt_version").combo.currentData() == "5" and not ed(w, "mqtt_version").widget.isEnabled()
    assert "MQTT 5 property" in ed(w, "mqtt_version").hint.text()
    choose(w, "auth_mode", "jwt")
    assert go_next(w) == "jwt"


def test_drogue_binary_mode_switches_the_version_and_says_why(qtbot, engine):
    w = wizard(qtbot, "drogue", engine)
    type_in(w, "application", "my-app")
    go_next(w)
    type_in(w, "username", "me")
    type_in(w, "api_key", "KEY")
    assert go_next(w) == "format"
    choose(w, "mqtt_version", "3.1.1")
    choose(w, "content_mode", "binary")
    version = ed(w, "mqtt_version")
    assert version.combo.currentData() == "5" and not version.widget.isEnabled()
    assert "needs MQTT 5" in version.hint.text() and "needs MQTT 5" in w.currentPage().note.text.text()
    assert next_button(w).isEnabled()


def test_edit_is_prefilled_from_the_saved_connection_and_its_keyring(qtbot, loop, engine, broker, tmp_path):
    from app.profiles import ProfileStore, new_profile
    from app.secrets import SecretStore

    store, secrets = ProfileStore(tmp_path / "config"), SecretStore()
    values = {"url": broker.url("auth"), "username": broker.USER, "topics": "edit/#"}
    profile = store.add(new_profile("Lab", "generic", values, open_on_start=True))
    secrets.set(profile.id, "password", broker.PASSWORD)
    w = wizard(
        qtbot, "generic", engine, existing=profile, secrets=secrets, taken_names={"lab", "other"}, test_timeout=0.5
    )
    assert w.windowTitle() == "Edit “Lab”" and key(w) == "broker"
    assert ed(w, "url").line.text() == broker.url("auth") and ed(w, "password").line.text() == broker.PASSWORD
    go_next(w)
    assert ed(w, "topics").line.text() == "edit/#"

    async def scenario():
        go_next(w)
        assert (await answer(w)).kind == "quiet"
        go_next(w)

    loop.run_until_complete(scenario())
    page = w.currentPage()
    assert page.name.text() == "Lab" and page.open_on_start.isChecked()
    page.name.setText("Other")
    assert "already" in page.error.text() and not w.button(QWizard.WizardButton.FinishButton).isEnabled()
    result = finish(w, "Lab renamed", open_on_start=True)
    from app.wizard_flow import save_result

    saved = save_result(result, store, secrets, existing=profile)
    assert saved.id == profile.id and store.get(profile.id).name == "Lab renamed"
    assert secrets.get(profile.id, "password") == broker.PASSWORD


def test_open_wizard_is_modal_and_returns_none_when_cancelled(qtbot):
    def cancel():
        dialog = QApplication.activeModalWidget()
        assert isinstance(dialog, ConnectionWizard)
        dialog.reject()

    QTimer.singleShot(300, cancel)
    assert open_wizard(None, "drogue") is None


def test_every_platform_opens_on_a_page_with_a_hint_for_every_field(qtbot, engine):
    from app import platforms

    for name in platforms.NAMES:
        w = wizard(qtbot, name, engine)
        for page_id, page in w.pages.items():
            if not isinstance(page, FieldsPage):
                continue
            for field_name, editor in page.editors.items():
                assert w.flow.hint(field_name) or w.flow.placeholder(field_name), (name, page_id, field_name)
                if w.flow.visible(field_name):
                    assert editor.hint.text() == w.flow.hint(field_name) or w.flow.locked(field_name)
        w.close()


def test_closing_the_wizard_during_a_test_stops_it_quietly(qtbot, loop, engine, broker, topic):
    behind = QWidget()  # the console's window stays open behind its wizard
    qtbot.addWidget(behind)
    behind.show()
    w = make_wizard(behind, "generic", engine=engine, test_timeout=30.0)
    w.show()
    _generic_to_test(w, broker.url("plain"), topic=topic + "/#")

    async def scenario():
        go_next(w)
        page = w.currentPage()
        await until(lambda: "Cancel stops waiting" in page.status.text())
        op = page.op
        w.reject()
        w.deleteLater()
        await until(lambda: op.state == "cancelled")
        await until(lambda: not engine._sinks)  # the test's session is gone from the engine  # noqa: SLF001
        await asyncio.sleep(0.2)  # what the cancelled test still had to say reaches nobody

    loop.run_until_complete(scenario())


def test_the_window_saves_what_its_wizard_returns(qtbot, loop, broker, tmp_path, monkeypatch):
    """The real flow: the window opens the wizard modally, the test runs inside it, and the
    result is saved through the profile and secret stores (secrets only in the keyring)."""
    from app.profiles import ProfileStore
    from app.secrets import SecretStore
    from ui.main_window import MainWindow

    monkeypatch.setenv("UPLINK_CONSOLE_DATA_DIR", str(tmp_path / "data"))
    store, secrets = ProfileStore(tmp_path / "config"), SecretStore()
    window = MainWindow(profiles=store, secrets=secrets)
    qtbot.addWidget(window)
    window.show()
    seen = {}

    def drive() -> None:
        w = QApplication.activeModalWidget()
        if not isinstance(w, ConnectionWizard):
            QTimer.singleShot(50, drive)
            return
        if key(w) == "broker":
            w.currentPage().editors["url"].line.setText(broker.url("auth"))
            w.currentPage().editors["username"].line.setText(broker.USER)
            w.currentPage().editors["password"].line.setText(broker.PASSWORD)
            w.pages["test"].timeout = 0.5
            next_button(w).click()
        elif key(w) == "topics":
            w.currentPage().editors["topics"].line.setText("window/#")
            next_button(w).click()
        elif key(w) == "test" and next_button(w).isEnabled():
            seen["test"] = w.flow.test_result
            next_button(w).click()
        elif key(w) == "finish":
            w.currentPage().name.setText("From the wizard")
            w.button(QWizard.WizardButton.FinishButton).click()
            return
        QTimer.singleShot(50, drive)

    async def scenario():
        QTimer.singleShot(0, drive)
        QTimer.singleShot(0, lambda: window.new_connection("generic"))
        await until(lambda: any(p.name == "From the wizard" for p in store.profiles()), 30)
        saved = next(p for p in store.profiles() if p.name == "From the wizard")
        page = window.pages[saved.id]  # the window opens what it saved
        await until(lambda: page.bridge.connected)
        page.disconnect()
        await until(lambda: page.last_change.state == "disconnected")

    loop.run_until_complete(scenario())
    saved = next(p for p in store.profiles() if p.name == "From the wizard")
    assert seen["test"].kind == "quiet"
    assert saved.values["topics"] == "window/#" and "password" not in saved.values
    assert secrets.get(saved.id, "password") == broker.PASSWORD
    assert broker.PASSWORD not in (tmp_path / "config" / "profiles.json").read_text()
    assert [e.name for e in window.sidebar.entries()] == ["From the wizard"]
    window.close()

"""The real main window, offscreen, against the real broker."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from app.mqtt.config import MqttVersion, Subscription, parse_url
from app.mqtt.session import ReceivedMessage, SessionState
from tests.conftest import until
from tests.test_session import publish_with_paho
from ui.raw.message_log import MessageLogModel

ROOT = Path(__file__).resolve().parent.parent


def msg(i: int, payload: bytes = b"x") -> ReceivedMessage:
    return ReceivedMessage(f"t/{i}", payload, 0, False, None, time.time(), time.monotonic())


def test_log_model_is_a_correct_qt_model_under_insert_and_trim(qtmodeltester):
    model = MessageLogModel(max_rows=50)
    qtmodeltester.check(model)
    model.append_batch([msg(i) for i in range(30)])
    model.append_batch([msg(i) for i in range(30, 70)])  # trims the oldest 20
    qtmodeltester.check(model)
    assert model.rowCount() == 50
    assert model.index(0, 1).data() == "t/20" and model.index(49, 1).data() == "t/69"
    model.append_batch([msg(i) for i in range(1000)])  # a batch larger than the bound
    assert model.rowCount() == 50 and model.index(49, 1).data() == "t/999"
    assert model.total_inserted == 1070
    model.set_payload_as_hex(True)
    assert model.index(0, 5).data() == "78"
    model.clear()
    qtmodeltester.check(model)


def test_window_connects_subscribes_shows_and_publishes(qtbot, loop, broker, topic):
    from ui.main_window import MainWindow

    window = MainWindow()
    qtbot.addWidget(window)
    window.show()

    async def scenario():
        window.subscriptions.clear()
        window.connect_with(
            parse_url(broker.url("plain"), mqtt_version=MqttVersion.V5, subscriptions=(Subscription(topic + "/#", 1),))
        )
        await until(lambda: window.bridge.connected)
        assert "Connected" in window.state_label.text()
        await asyncio.to_thread(publish_with_paho, broker.ports.plain, topic + "/a", [b'{"v": 1}', b"\x01\x02"])
        await until(lambda: window.log_model.rowCount() == 2)
        m = window.log_model
        assert m.index(0, 1).data() == topic + "/a"
        assert m.index(0, 5).data() == '{"v": 1}'
        assert m.index(1, 5).data() == "01 02"
        assert m.index(0, 2).data() == "1"
        # publish through the panel: hex payload to our own subscription
        window.publish_panel.topic.setText(topic + "/b")
        window.publish_panel.format.setCurrentIndex(window.publish_panel.format.findData("hex"))
        window.publish_panel.payload.setPlainText("de ad be ef")
        window.publish_panel._send()
        await until(lambda: window.log_model.rowCount() == 3)
        assert m.rows[2].payload == b"\xde\xad\xbe\xef"
        # a bad hex payload is a sentence in the status bar, not a crash
        window.publish_panel.payload.setPlainText("xyz")
        window.publish_panel._send()
        assert "Hex may contain only" in window.error_label.text()
        window.disconnect()
        await until(lambda: window.bridge.last_state.state == SessionState.DISCONNECTED)
        assert window.connection_bar.button.text() == "Connect"

    loop.run_until_complete(scenario())
    window.close()


def test_window_shows_connection_failure_as_a_sentence(qtbot, loop, broker):
    from ui.main_window import MainWindow

    window = MainWindow()
    qtbot.addWidget(window)
    bar = window.connection_bar
    bar.url.setText(broker.url("auth"))
    bar.username.setText(broker.USER)
    bar.password.setText("wrong")

    async def scenario():
        bar._clicked()
        await until(
            lambda: window.bridge.last_state is not None and window.bridge.last_state.state == SessionState.FAILED
        )
        assert "did not accept these credentials" in window.error_label.text()
        assert window.state_label.text() == "Failed"
        assert bar.button.text() == "Connect" and bar.url.isEnabled()

    loop.run_until_complete(scenario())
    window.close()


def test_connection_bar_rejects_a_bad_url_with_a_sentence(qtbot):
    from ui.connection.connection_bar import ConnectionBar

    bar = ConnectionBar()
    qtbot.addWidget(bar)
    errors = []
    bar.invalid.connect(errors.append)
    bar.url.setText("http://example.com")
    bar._clicked()
    assert errors and "Unknown scheme" in errors[0]


def test_tls_dialog_makes_turning_verification_off_visible(qtbot):
    from app.mqtt.config import TlsSettings
    from ui.connection.connection_bar import TlsDialog

    dlg = TlsDialog(TlsSettings())
    qtbot.addWidget(dlg)
    dlg.show()
    assert not dlg.warning.isVisible()
    dlg.verify.setChecked(False)
    assert dlg.warning.isVisible()
    s = dlg.settings()
    assert s.verify_certificate is False and s.verify_hostname is False


def test_smoke_test_prints_its_line_connected(broker, topic):
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ui.launcher",
            "--smoke-test",
            "8",
            "--url",
            broker.url("plain"),
            "--topic",
            topic + "/#",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    time.sleep(4.0)  # connected and subscribed by then, on a loaded machine too
    publish_with_paho(broker.ports.plain, topic + "/x", [f"m{i}".encode() for i in range(500)])
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode()
    line = json.loads(out.decode().strip().splitlines()[-1])
    assert set(line) >= {"rows", "first_row_at", "last_row_at", "stall_p99_ms", "rss_mb", "platforms"}
    assert line["rows"] == 500
    assert line["first_row_at"] <= line["last_row_at"]
    assert 0 <= line["stall_p99_ms"] < 2000  # loose: the tight numbers belong to the benchmark
    assert line["rss_mb"] > 10


def test_several_connections_stay_open_at_once_and_switching_loses_nothing(
    qtbot, loop, broker, topic, tmp_path, monkeypatch
):
    """A raw MQTT connection and a platform connection in one window: each receives its own,
    and showing one keeps the other's session and rows."""
    from tests.test_workspace import publish_uplinks, tts_connection
    from ui.main_window import MainWindow

    monkeypatch.setenv("UPLINK_CONSOLE_DATA_DIR", str(tmp_path))
    # A config folder of its own: other tests save connections in the run's, which the sidebar lists.
    monkeypatch.setenv("UPLINK_CONSOLE_CONFIG_DIR", str(tmp_path / "config"))
    window = MainWindow()
    qtbot.addWidget(window)
    window.show()
    profile, config = tts_connection(broker)

    async def scenario():
        raw = window.connect_with(parse_url(broker.url("plain"), subscriptions=(Subscription(topic + "/a", 0),)))
        tts = window.connect_platform("tts", profile, config)
        assert raw is not tts and window.current is tts
        await until(lambda: raw.bridge.connected and tts.bridge.connected)
        await asyncio.to_thread(publish_with_paho, broker.ports.plain, topic + "/a", [b"for the raw page"])
        await asyncio.to_thread(publish_uplinks, broker.ports.plain, 8)
        await until(lambda: raw.log_model.rowCount() == 1 and len(tts.workspace.store) == 8)
        assert raw.log_model.rows[0].payload == b"for the raw page"
        keys = [e.key for e in window.sidebar.entries()]
        assert keys == ["raw", "adhoc:tts"] or sorted(keys) == ["adhoc:tts", "raw"]
        window.show_page_for("raw")
        assert window.current is raw and "Connected" in window.state_label.text()
        await asyncio.to_thread(publish_uplinks, broker.ports.plain, 4)
        await until(lambda: len(tts.workspace.store) == 12)  # still receiving while not shown
        window.show_page_for("adhoc:tts")
        assert window.current is tts and tts.bridge.connected
        raw.disconnect()
        tts.disconnect()
        await until(lambda: raw.last_change.state == "disconnected" and tts.last_change.state == "disconnected")

    loop.run_until_complete(scenario())
    window.close()

"""Saved connections in the window: the sidebar lists them with their state; connect, duplicate,
rename, delete (with secrets and history), open on start. Real profiles file, real keyring
backend (a file in a temp dir), real mosquitto, the real window offscreen."""

from __future__ import annotations

import asyncio
import random

import paho.mqtt.client as paho

from app.simulate import tts as simulate
from tests.conftest import until


def _publish(port: int, n: int) -> None:
    import time

    c = paho.Client(paho.CallbackAPIVersion.VERSION2)
    c.connect("127.0.0.1", port)
    c.loop_start()
    for i in range(n):
        c.publish(
            simulate.tts_topic(i % 2), simulate.tts_uplink(i % 2, i, rnd=random.Random(i)), qos=1
        ).wait_for_publish(5)
    time.sleep(0.2)
    c.disconnect()
    c.loop_stop()


def _stores(tmp_path):
    from app.profiles import ProfileStore
    from app.secrets import SecretStore

    return ProfileStore(tmp_path / "config"), SecretStore()


def _tts_profile(store, secrets, broker, name="Field trial", **options):
    from app.profiles import new_profile

    values = {"url": f"mqtt://127.0.0.1:{broker.ports.plain}", "app": simulate.APP_ID, "tenant": simulate.TENANT}
    profile = store.add(new_profile(name, "tts", values, **options))
    secrets.set(profile.id, "password", "NNSXS.SIDEBAR-SECRET-1234")
    return profile


def test_saved_connection_connects_from_the_sidebar_and_shows_its_state(qtbot, loop, broker, tmp_path, monkeypatch):
    from ui.main_window import MainWindow

    monkeypatch.setenv("UPLINK_CONSOLE_DATA_DIR", str(tmp_path / "data"))
    store, secrets = _stores(tmp_path)
    profile = _tts_profile(store, secrets, broker)
    window = MainWindow(profiles=store, secrets=secrets)
    qtbot.addWidget(window)
    window.show()
    entries = window.sidebar.entries()
    assert [(e.key, e.name, e.platform) for e in entries] == [(profile.id, "Field trial", "tts")]
    assert str(broker.ports.plain) in entries[0].broker

    async def scenario():
        window.sidebar.select(profile.id)
        window.sidebar.connect_button.click()
        page = window.pages[profile.id]
        await until(lambda: page.bridge.connected)
        assert window.current is page
        await until(lambda: window.sidebar.entries()[0].state == "Connected")
        assert window.sidebar.connect_button.text() == "Disconnect"
        await asyncio.to_thread(_publish, broker.ports.plain, 6)
        await until(lambda: len(page.workspace.store) == 6)
        window.sidebar.connect_button.click()  # now: Disconnect
        await until(lambda: page.last_change.state == "disconnected")
        assert window.sidebar.connect_button.text() == "Connect"

    loop.run_until_complete(scenario())
    window.close()


def test_duplicate_rename_and_delete_keep_secrets_and_history_in_step(qtbot, loop, broker, tmp_path, monkeypatch):
    from app.history import history_path
    from ui.main_window import MainWindow, history_name_for_profile

    monkeypatch.setenv("UPLINK_CONSOLE_DATA_DIR", str(tmp_path / "data"))
    store, secrets = _stores(tmp_path)
    profile = _tts_profile(store, secrets, broker)
    window = MainWindow(profiles=store, secrets=secrets)
    qtbot.addWidget(window)

    window.duplicate_connection(profile.id)
    copy = next(p for p in store.profiles() if p.id != profile.id)
    assert copy.name != profile.name and "copy" in copy.name.lower()
    assert secrets.get(copy.id, "password") == "NNSXS.SIDEBAR-SECRET-1234"
    assert len(window.sidebar.entries()) == 2

    monkeypatch.setattr("ui.main_window.QInputDialog.getText", lambda *a, **k: ("Renamed trial", True))
    window.rename_connection(copy.id)
    assert store.get(copy.id).name == "Renamed trial"
    assert "Renamed trial" in [e.name for e in window.sidebar.entries()]

    async def fill_history():
        page = window.open_connection(copy.id)
        await until(lambda: page.bridge.connected)
        await asyncio.to_thread(_publish, broker.ports.plain, 3)
        await until(lambda: len(page.workspace.store) == 3)
        page.disconnect()
        await until(lambda: page.last_change.state == "disconnected")

    loop.run_until_complete(fill_history())
    history = history_path(history_name_for_profile(copy.id))
    assert history.exists()
    assert window.delete_connection(copy.id, confirm=False, with_history=True)
    assert [p.id for p in store.profiles()] == [profile.id]
    assert secrets.get(copy.id, "password") is None
    assert not history.exists()
    assert copy.id not in window.pages and [e.key for e in window.sidebar.entries()] == [profile.id]
    window.close()


def test_connections_marked_open_on_start_connect_when_the_window_opens(qtbot, loop, broker, tmp_path, monkeypatch):
    from ui.main_window import MainWindow

    monkeypatch.setenv("UPLINK_CONSOLE_DATA_DIR", str(tmp_path / "data"))
    store, secrets = _stores(tmp_path)
    _tts_profile(store, secrets, broker, "Quiet one")
    starting = _tts_profile(store, secrets, broker, "Opens itself", open_on_start=True)
    window = MainWindow(profiles=store, secrets=secrets)
    qtbot.addWidget(window)
    opened = window.open_on_start()
    assert [p.key for p in opened] == [starting.id] and window.current is opened[0]

    async def scenario():
        await until(lambda: opened[0].bridge.connected)
        opened[0].disconnect()
        await until(lambda: opened[0].last_change.state == "disconnected")

    loop.run_until_complete(scenario())
    window.close()


def test_a_saved_connection_missing_its_secret_says_what_to_do(qtbot, tmp_path, broker):
    from app.profiles import new_profile
    from ui.main_window import MainWindow

    store, secrets = _stores(tmp_path)
    profile = store.add(new_profile("No key", "tts", {"app": "my-app", "tenant": "ttn"}))
    window = MainWindow(profiles=store, secrets=secrets)
    qtbot.addWidget(window)
    assert window.open_connection(profile.id) is None
    text = window.error_label.text()
    assert "No key cannot connect" in text and "Edit" in text, text
    window.close()


def test_a_tile_of_the_welcome_page_leads_through_the_wizard_to_a_saved_connected_connection(
    qtbot, loop, broker, tmp_path, monkeypatch
):
    """The window's half of "New": what the wizard returns is saved (secret in the keyring, not in
    the file), listed, and connected. The wizard itself is driven page by page in test_wizards.py."""
    from app.wizard_flow import WizardResult
    from ui.main_window import MainWindow

    monkeypatch.setenv("UPLINK_CONSOLE_DATA_DIR", str(tmp_path / "data"))
    store, secrets = _stores(tmp_path)
    asked = []

    def wizard(parent, platform_name, existing=None, secrets=None, taken_names=(), **options):
        asked.append(platform_name)
        values = {"url": f"mqtt://127.0.0.1:{broker.ports.plain}", "app": simulate.APP_ID, "tenant": simulate.TENANT}
        return WizardResult("From the tile", "tts", values, {"password": "NNSXS.TILE-SECRET-99"})

    monkeypatch.setattr("ui.connection.wizard.open_wizard", wizard)
    window = MainWindow(profiles=store, secrets=secrets)
    qtbot.addWidget(window)
    window.welcome.tiles["tts"].button.click()
    assert asked == ["tts"]
    profile = store.get("From the tile")
    assert secrets.get(profile.id, "password") == "NNSXS.TILE-SECRET-99"
    assert "NNSXS.TILE-SECRET-99" not in store.path.read_text()
    assert [e.name for e in window.sidebar.entries()] == ["From the tile"]

    async def scenario():
        page = window.pages[profile.id]
        await until(lambda: page.bridge.connected)
        page.disconnect()
        await until(lambda: page.last_change.state == "disconnected")

    loop.run_until_complete(scenario())
    window.close()

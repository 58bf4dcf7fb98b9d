"""The demo in the window: `--demo --smoke-test` as a real process reports rows of all five
platforms on mosquitto and on the amqtt fallback; a first start (nothing saved) opens the demo
with its banner, whose "Connect your own platform…" leads to the wizards; with a saved connection
the demo waits on the welcome page; the demo's connections are never saved; closing the window
(or "Stop the demo") ends the demo's broker and simulators. Real embedded broker, real simulators,
real engine processes, the real window offscreen."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from app import embedded_broker
from app.demo import PLATFORMS
from tests.conftest import until

ROOT = Path(__file__).resolve().parent.parent
SMOKE_KEYS = {"rows", "first_row_at", "last_row_at", "stall_p99_ms", "rss_mb", "platforms"}


def console_env(tmp_path: Path, **extra) -> dict:
    """A console of its own: data, settings, logs and keyring in this test's folder."""
    env = {
        **os.environ,
        "QT_QPA_PLATFORM": "offscreen",
        "UPLINK_CONSOLE_DATA_DIR": str(tmp_path / "data"),
        "UPLINK_CONSOLE_CONFIG_DIR": str(tmp_path / "config"),
        "UPLINK_CONSOLE_LOG_DIR": str(tmp_path / "log"),
        "KEYRING_PROPERTY_FILE_PATH": str(tmp_path / "keyring" / "keyring.cfg"),
    }
    env.pop(embedded_broker.CHOICE_ENV, None)
    env.update(extra)
    return env


def processes_using(folder: Path) -> list[str]:
    """Processes still running that name `folder` in their command line or environment: the
    console's own children (engines, the demo's broker and simulators) inherit its data folder."""
    left = []
    for proc in psutil.process_iter(["pid", "cmdline", "status"]):
        try:
            if proc.info["pid"] == os.getpid() or proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            cmdline = proc.info["cmdline"] or ()
            if any("resource_tracker" in part for part in cmdline):
                continue  # multiprocessing's, one per test process for the whole run
            named = [*cmdline, *proc.environ().values()]
            if any(str(folder) in part for part in named):
                left.append(" ".join(cmdline))
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return left


def run_console(*args: str, env: dict, timeout: float = 120) -> tuple[dict, subprocess.CompletedProcess]:
    """The console as a real process; its last JSON line and the finished process."""
    command = [sys.executable, "-m", "ui.launcher", *args]
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert lines, (proc.returncode, proc.stdout, proc.stderr)
    return json.loads(lines[-1]), proc


@pytest.mark.parametrize("kind", ["mosquitto", "amqtt"])
def test_demo_smoke_test_reports_rows_of_all_five_platforms(tmp_path, kind):
    """amqtt is forced the way a machine without mosquitto gets it: UPLINK_CONSOLE_DEMO_BROKER
    (hiding mosquitto from PATH is not enough: /usr/sbin is looked in too, as Debian puts it there)."""
    env = console_env(tmp_path, **({embedded_broker.CHOICE_ENV: "amqtt"} if kind == "amqtt" else {}))
    if kind == "amqtt":
        env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if "sbin" not in p)
    line, proc = run_console("--demo", "--smoke-test", "15", env=env)
    assert proc.returncode == 0, proc.stderr
    assert set(line) >= SMOKE_KEYS, line
    assert set(line["platforms"]) == set(PLATFORMS)
    assert all(line["platforms"][p] > 0 for p in PLATFORMS), line["platforms"]
    assert line["rows"] == sum(line["platforms"].values())
    assert line["demo"]["broker"] == kind and line["demo"]["mqtt5"] is (kind == "mosquitto")
    assert 0 < line["demo"]["first_row_s"] < 15
    # The demo's files are its own; nothing was saved as a connection.
    assert (tmp_path / "data" / "demo" / "broker").is_dir()
    demo_history = (tmp_path / "data" / "demo" / "history").glob("demo-*.sqlite3")
    assert sorted(p.name.split("-")[1] for p in demo_history) == sorted(PLATFORMS)
    assert not list((tmp_path / "data" / "history").glob("demo-*"))  # none among the user's histories
    assert not (tmp_path / "config" / "profiles.json").exists()
    assert processes_using(tmp_path) == []  # broker and simulators ended with the window


def test_a_first_start_with_nothing_saved_opens_the_demo(tmp_path):
    """What `make run` runs: no option, no saved connection (no profiles file)."""
    line, proc = run_console("--smoke-test", "20", env=console_env(tmp_path))  # 5 engines start: slow when loaded
    assert proc.returncode == 0, proc.stderr
    assert line["demo"]["state"] == "running"
    assert all(line["platforms"][p] > 0 for p in PLATFORMS), line["platforms"]
    assert not (tmp_path / "config" / "profiles.json").exists()
    assert processes_using(tmp_path) == []


def test_a_demo_smoke_test_whose_broker_cannot_start_fails_in_one_sentence(tmp_path):
    """No broker at all (amqtt chosen, and not importable): exit status 1 and the reason, no traceback."""
    blocker = tmp_path / "no-amqtt"
    (blocker / "amqtt").mkdir(parents=True)
    (blocker / "amqtt" / "__init__.py").write_text("raise ImportError('amqtt is not installed here')\n")
    env = console_env(tmp_path, **{embedded_broker.CHOICE_ENV: "amqtt"})
    env["PYTHONPATH"] = os.pathsep.join([str(blocker), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    line, proc = run_console("--demo", "--smoke-test", "4", env=env)
    assert proc.returncode == 1
    assert line["demo"]["state"] == "failed" and line["rows"] == 0
    err = proc.stderr.strip().splitlines()
    assert any("The demo could not start" in e and "amqtt" in e for e in err), proc.stderr
    assert "Traceback" not in proc.stderr


# ----- the window itself, offscreen ---------------------------------------------------------


def _stores(tmp_path):
    from app.profiles import ProfileStore
    from app.secrets import SecretStore

    return ProfileStore(tmp_path / "config"), SecretStore()


def _demo_pids(window) -> list[int]:
    demo = window.demo.demo
    pids = [demo._process.pid]
    broker = demo.broker
    if broker._mosquitto is not None:
        pids.append(broker._mosquitto.proc.pid)
    if broker._process is not None:
        pids.append(broker._process.pid)
    return pids


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _rows(window) -> dict[str, int]:
    return window.demo.rows_per_platform()


def test_with_nothing_saved_the_window_starts_in_the_demo_with_its_banner(qtbot, loop, tmp_path, monkeypatch):
    from ui.connection.sidebar import ConnectionSidebar
    from ui.main_window import MainWindow

    monkeypatch.setenv("UPLINK_CONSOLE_DATA_DIR", str(tmp_path / "data"))
    store, secrets = _stores(tmp_path)
    asked = []
    monkeypatch.setattr(
        "ui.connection.wizard.open_wizard", lambda parent, platform_name, **kw: asked.append(platform_name)
    )
    window = MainWindow(profiles=store, secrets=secrets)
    qtbot.addWidget(window)
    window.show()
    assert window.open_on_start(demo_if_none_saved=True) == []
    banner = window.demo.banner
    assert window.demo.state == "starting" and banner.isVisible()
    assert banner.text_shown.startswith("Starting the demo…")

    async def streaming():
        await until(lambda: window.demo.state == "running" and len(window.demo.keys) == len(PLATFORMS), 30)
        await until(lambda: all(_rows(window).get(p, 0) > 0 for p in PLATFORMS), 60)

    loop.run_until_complete(streaming())
    assert sorted(window.demo.keys) == sorted(f"demo:{p}" for p in PLATFORMS)
    # Each connection is marked as demo: its sidebar row, its page's title; the banner above it.
    entries = {e.key: e for e in window.sidebar.entries()}
    assert all(entries[k].demo and not entries[k].saved for k in window.demo.keys)
    assert window.current.key == "demo:tts" and window.current.title.startswith("Demo: ")
    assert "Demo:" in window.windowTitle()
    assert banner.isVisible() and "This is a demo with simulated devices" in banner.text_shown
    assert all(window.pages[k].bridge.connected for k in window.demo.keys)
    # A downlink sent from the window is answered by the simulated network: queued, sent, acknowledged.
    page = window.current
    composer = page.open_composer()
    for name, value in {"device_id": "env-sensor-001", "f_port": "3", "confirmed": True}.items():
        composer.set_field(name, value)
    composer.editor.set_payload("01 02", "hex")
    composer.rebuild()
    assert composer.composed.message is not None, composer.composed.error
    composer.send_button.click()

    async def answered():
        await until(lambda: any(e.get("state") == "acknowledged" for e in page.downlinks_view.model.rows), 30)

    loop.run_until_complete(answered())
    entry = next(e for e in page.downlinks_view.model.rows if e.get("state") == "acknowledged")
    assert [t[0] for t in entry["transitions"]][-3:] == ["queued", "sent", "acknowledged"], entry["transitions"]
    composer.close()
    # Saving is not offered for a demo connection, and asking anyway saves nothing.
    window.sidebar.select("demo:tts")
    assert not window.sidebar.actions["save"].isVisible() and not window.sidebar.actions["save"].isEnabled()
    window.save_open_connection("demo:tts")
    assert store.profiles() == [] and not store.path.exists()
    assert isinstance(window.sidebar, ConnectionSidebar)
    # "Connect your own platform…": the welcome page, whose tiles open the wizards.
    banner.connect_button.click()
    assert window.stack.currentWidget() is window.welcome and window.current is None
    assert window.welcome.demo_button.text() == "Show the demo"
    assert not banner.isVisible()  # the banner belongs to the demo's pages
    window.welcome.tiles["thingpark"].button.click()
    assert asked == ["thingpark"]
    # The demo is one click away again.
    window.welcome.demo_button.click()
    assert window.current.key == "demo:tts" and banner.isVisible()
    pids = _demo_pids(window)
    assert not any(_gone(pid) for pid in pids)
    window.close()
    assert all(_gone(pid) for pid in pids), [psutil.Process(p).cmdline() for p in pids if not _gone(p)]
    assert window.demo.state == "idle"
    assert not store.path.exists()
    assert processes_using(tmp_path / "data") == []


def test_with_a_saved_connection_the_demo_waits_on_the_welcome_page_and_stops_on_request(
    qtbot, loop, tmp_path, monkeypatch
):
    from app.profiles import new_profile
    from ui.main_window import MainWindow

    monkeypatch.setenv("UPLINK_CONSOLE_DATA_DIR", str(tmp_path / "data"))
    store, secrets = _stores(tmp_path)
    store.add(new_profile("My application", "tts", {"url": "mqtt://127.0.0.1:1", "app": "mine", "tenant": "ttn"}))
    window = MainWindow(profiles=store, secrets=secrets)
    qtbot.addWidget(window)
    window.show()
    assert window.has_saved_connections()
    assert window.open_on_start(demo_if_none_saved=True) == []
    assert window.demo.state == "idle" and not window.demo.banner.isVisible()
    assert window.stack.currentWidget() is window.welcome
    assert window.welcome.demo_button.text() == "Open the demo"
    window.welcome.demo_button.click()
    assert window.demo.state == "starting" and window.demo.banner.isVisible()
    assert not window.welcome.demo_button.isEnabled()  # one demo at a time

    async def streaming():
        await until(lambda: window.demo.state == "running" and len(window.demo.keys) == len(PLATFORMS), 30)
        await until(lambda: _rows(window).get("tts", 0) > 0, 60)

    loop.run_until_complete(streaming())
    assert [e.name for e in window.sidebar.entries() if not e.demo] == ["My application"]
    assert [p.name for p in store.profiles()] == ["My application"]  # the demo's are not among them
    saved = store.path.read_text()
    assert "demo" not in saved.lower() and "127.0.0.1:1" in saved
    pids = _demo_pids(window)
    window.demo.banner.stop_button.click()
    assert not any(k.startswith("demo:") for k in window.pages)
    assert [e.key for e in window.sidebar.entries()] == [store.profiles()[0].id]

    async def stopped():
        await until(lambda: window.demo.state == "idle", 30)

    loop.run_until_complete(stopped())
    assert all(_gone(pid) for pid in pids)
    assert window.stack.currentWidget() is window.welcome and window.welcome.demo_button.text() == "Open the demo"
    window.close()


def test_closing_the_window_while_the_demo_starts_leaves_no_process(qtbot, loop, tmp_path, monkeypatch):
    from ui.main_window import MainWindow

    monkeypatch.setenv("UPLINK_CONSOLE_DATA_DIR", str(tmp_path / "data"))
    store, secrets = _stores(tmp_path)
    window = MainWindow(profiles=store, secrets=secrets)
    qtbot.addWidget(window)
    window.show()
    help_menu = next(a.menu() for a in window.menuBar().actions() if a.text() == "&Help")
    next(a for a in help_menu.actions() if a.text() == "Open the demo").trigger()  # the menu's entry
    assert window.demo.state == "starting"
    window.close()  # before the broker is up, or just after
    assert window.demo.state == "idle" and window.demo.demo is None
    assert processes_using(tmp_path / "data") == []
    assert not any(k.startswith("demo:") for k in window.pages)


def test_a_demo_that_cannot_start_says_why_on_the_welcome_page_with_try_again(qtbot, loop, tmp_path, monkeypatch):
    from ui.main_window import MainWindow

    monkeypatch.setenv("UPLINK_CONSOLE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv(embedded_broker.CHOICE_ENV, "amqtt")
    monkeypatch.setitem(sys.modules, "amqtt.broker", None)  # as if amqtt were not installed
    store, secrets = _stores(tmp_path)
    window = MainWindow(profiles=store, secrets=secrets)
    qtbot.addWidget(window)
    window.show()
    window.demo.start()

    async def failed():
        await until(lambda: window.demo.state == "failed", 20)

    loop.run_until_complete(failed())
    banner = window.demo.banner
    assert banner.isVisible() and banner.retry_button.isVisible() and not banner.stop_button.isVisible()
    assert banner.text_shown.startswith("The demo could not start.") and "amqtt" in banner.text_shown
    assert "Traceback" not in banner.text_shown and window.demo.keys == []
    assert window.welcome.demo_button.isEnabled() and window.welcome.demo_button.text() == "Open the demo"
    monkeypatch.delitem(sys.modules, "amqtt.broker")
    banner.retry_button.click()  # amqtt is back: the demo starts

    async def running():
        await until(lambda: window.demo.state == "running", 30)

    loop.run_until_complete(running())
    assert window.demo.demo.broker.kind == "amqtt" and not banner.retry_button.isVisible()
    window.close()
    assert processes_using(tmp_path / "data") == []


def test_a_killed_console_takes_the_demos_broker_and_simulators_with_it(tmp_path):
    """SIGKILL gives the console no chance to stop its children: the demo's simulator process
    (and the mosquitto it watches for the console) and amqtt notice their parent is gone."""
    for kind in ("mosquitto", "amqtt"):
        folder = tmp_path / kind
        env = console_env(folder, **{embedded_broker.CHOICE_ENV: kind})
        proc = subprocess.Popen(
            [sys.executable, "-m", "ui.launcher", "--demo"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 60
            # Running: its broker's files and the simulators' log exist, and children use the folder.
            while time.monotonic() < deadline and not (folder / "data" / "demo" / "simulators.log").exists():
                time.sleep(0.2)
            assert (folder / "data" / "demo" / "simulators.log").exists(), kind
            time.sleep(1.0)
            assert processes_using(folder), kind
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and processes_using(folder):
            time.sleep(0.2)
        assert processes_using(folder) == [], (kind, processes_using(folder))

"""`uplink-console capture` as a user runs it: a real process against a real mosquitto."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.test_session import publish_with_paho

EXE = [sys.executable, "-m", "ui.launcher"]
ROOT = Path(__file__).resolve().parent.parent


def start_capture(*args, env=None) -> subprocess.Popen:
    return subprocess.Popen(
        [*EXE, "capture", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )


def read_lines(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def wait_for(predicate, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def wait_connected(proc: subprocess.Popen, timeout=15.0) -> str:
    """Reads stderr until the 'Connected' line (the process keeps running)."""
    os.set_blocking(proc.stderr.fileno(), False)
    seen = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and b"Connected to" not in seen:
        chunk = proc.stderr.read() or b""
        seen += chunk
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    assert b"Connected to" in seen, seen.decode()
    return seen.decode()


def test_capture_writes_and_flushes_while_running(broker, tmp_path, topic):
    out = tmp_path / "cap.jsonl"
    proc = start_capture("--url", broker.url("plain"), "--topic", topic + "/#", "--qos", "1", "--out", str(out))
    try:
        wait_connected(proc)
        publish_with_paho(broker.ports.plain, topic + "/a", [b'{"t": 21.5}', b"\x00\x01\xfe"])
        # Flushed within a second or so, while the process is still running.
        assert wait_for(lambda: len(read_lines(out)) == 2, 3.0)
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(10)
    assert proc.returncode == 0
    lines = read_lines(out)
    assert lines[0]["topic"] == topic + "/a" and lines[0]["qos"] == 1 and lines[0]["retain"] is False
    assert lines[0]["payload"] == '{"t": 21.5}' and lines[0]["payload_encoding"] == "text"
    assert base64.b64decode(lines[1]["payload"]) == b"\x00\x01\xfe" and lines[1]["payload_encoding"] == "base64"
    assert lines[0]["time"].endswith("Z")
    assert lines[0]["dup"] is False and lines[1]["dup"] is False  # not redeliveries (tests/test_dup.py)


def test_capture_mqtt5_properties_and_password_from_environment(broker, tmp_path, topic):
    out = tmp_path / "cap.jsonl"
    proc = start_capture(
        "--url",
        broker.url("auth"),
        "--username",
        broker.USER,
        "--mqtt-version",
        "5",
        "--topic",
        topic + "/#",
        "--out",
        str(out),
        env={"UPLINK_CONSOLE_PASSWORD": broker.PASSWORD},
    )
    try:
        wait_connected(proc)
        import paho.mqtt.client as paho
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        c = paho.Client(paho.CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
        c.username_pw_set(broker.USER, broker.PASSWORD)
        c.connect("127.0.0.1", broker.ports.auth)
        c.loop_start()
        props = Properties(PacketTypes.PUBLISH)
        props.ContentType = "application/json"
        props.UserProperty = [("ce-type", "x")]
        c.publish(topic + "/p", b"{}", qos=1, properties=props).wait_for_publish(5)
        c.disconnect()
        c.loop_stop()
        assert wait_for(lambda: len(read_lines(out)) == 1, 3.0)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
    assert proc.returncode == 0
    props = read_lines(out)[0]["properties"]
    assert props["content_type"] == "application/json"
    assert props["user_properties"] == [["ce-type", "x"]]


def test_capture_survives_broker_restart_without_losing_qos1(own_broker, tmp_path, topic):
    out = tmp_path / "cap.jsonl"
    proc = start_capture(
        "--url",
        own_broker.url("plain"),
        "--topic",
        topic + "/#",
        "--qos",
        "1",
        "--session",
        "persistent",
        "--client-id",
        "capture-persistent",
        "--out",
        str(out),
    )
    try:
        wait_connected(proc)
        publish_with_paho(own_broker.ports.plain, topic + "/m", [b"before"])
        own_broker.stop()
        time.sleep(0.5)
        own_broker.start()
        # The capture is still backing off: these wait in its persistent session at the broker.
        gap = [f"gap-{i}".encode() for i in range(100)]
        publish_with_paho(own_broker.ports.plain, topic + "/m", gap)
        assert wait_for(lambda: len(read_lines(out)) == 101, 30.0), len(read_lines(out))
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(10)
    assert [line["payload"] for line in read_lines(out)] == ["before", *[g.decode() for g in gap]]


def test_capture_shared_subscription_splits_between_processes(broker, tmp_path, topic):
    outs = [tmp_path / "a.jsonl", tmp_path / "b.jsonl"]
    procs = [
        start_capture(
            "--url",
            broker.url("plain"),
            "--topic",
            topic + "/#",
            "--qos",
            "1",
            "--share",
            "g",
            "--mqtt-version",
            "5",
            "--out",
            str(o),
        )
        for o in outs
    ]
    try:
        for p in procs:
            wait_connected(p)
        publish_with_paho(broker.ports.plain, topic + "/x", [str(i).encode() for i in range(60)])
        assert wait_for(lambda: sum(len(read_lines(o)) for o in outs) == 60, 5.0)
    finally:
        for p in procs:
            p.send_signal(signal.SIGINT)
            p.wait(10)
    a, b = (read_lines(o) for o in outs)
    assert a and b
    assert sorted(int(x["payload"]) for x in a + b) == list(range(60))


def test_capture_bad_credentials_exit_with_a_sentence(broker, tmp_path):
    proc = start_capture(
        "--url",
        broker.url("auth"),
        "--username",
        "nobody",
        "--topic",
        "#",
        "--out",
        str(tmp_path / "x.jsonl"),
        env={"UPLINK_CONSOLE_PASSWORD": "wrong"},
    )
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 1
    assert "did not accept these credentials" in err.decode()
    assert "Traceback" not in err.decode()


def test_capture_usage_errors_are_sentences(tmp_path):
    r = subprocess.run(
        [*EXE, "capture", "--url", "mqtt://localhost:1", "--out", str(tmp_path / "x")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 2 and "--topic" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run(
        [*EXE, "capture", "--url", "gopher://x", "--topic", "#", "--out", str(tmp_path / "x")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 2 and "Unknown scheme" in r.stderr


def test_version():
    from app import __version__

    r = subprocess.run([*EXE, "--version"], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert r.stdout.strip() == f"uplink-console {__version__}"

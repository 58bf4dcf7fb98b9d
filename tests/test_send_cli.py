"""`uplink-console send` and `uplink-console outbox list|flush` as a user runs them: real processes,
saved connections in this run's config folder, mosquitto, a subscriber that checks every byte."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import orjson

from app.delivery import console_correlation_id
from app.devbroker import free_port
from app.downlink_templates import DownlinkTemplate, TemplateStore
from app.outbox import Outbox
from app.profiles import ProfileStore, new_profile
from tests.test_delivery import UID, SimulatedNetwork
from tests.test_outbox import Subscriber, wait_until

ROOT = Path(__file__).resolve().parent.parent
EXE = [sys.executable, "-m", "ui.launcher"]


def run(*args, env=None, timeout=90) -> subprocess.CompletedProcess:
    import os

    proc = subprocess.run(
        [*EXE, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})}
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def saved(platform: str, values: dict) -> tuple[str, str]:
    """(name, outbox key) of a new saved connection (its password in the run's file keyring)."""
    from app.secrets import SecretStore

    values = dict(values)
    password = values.pop("password", None)
    store = ProfileStore()
    profile = new_profile(f"cli-{platform}-{time.monotonic_ns()}", platform, values)
    store.add(profile)
    store.save()
    if password:
        SecretStore().set(profile.id, "password", password)
    return profile.name, f"profile {profile.id}"


def generic(port: int, topic: str, qos: int = 1) -> dict:
    return {"url": f"mqtt://127.0.0.1:{port}", "topics": "nothing/here", "qos": qos, "publish_topic": topic}


def line_of(proc: subprocess.CompletedProcess) -> dict:
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1, proc.stdout
    return json.loads(lines[0])


def test_send_delivers_to_a_reachable_broker_and_prints_one_json_line(broker):
    topic = f"cli/send/{time.monotonic_ns()}"
    sub = Subscriber(broker.ports.plain, topic)
    try:
        name, key = saved("generic", generic(broker.ports.plain, topic))
        proc = run("send", "--profile", name, "--hex", "0x01 02:ff")
        assert proc.returncode == 0, proc.stderr
        line = line_of(proc)
        assert set(line) == {"id", "state", "topic"}
        assert line["state"] == "handed-over" and line["topic"] == topic
        wait_until(lambda: sub.got == [b"\x01\x02\xff"], 10)
        listed = run("outbox", "list", name, "--json")
        entries = [json.loads(x) for x in listed.stdout.splitlines()]
        assert [(e["id"], e["state"], e["payload_hex"]) for e in entries] == [(line["id"], "handed-over", "0102ff")]
        text = run("outbox", "list", name)
        assert line["id"] in text.stdout and "handed-over" in text.stdout
    finally:
        sub.close()


def test_an_unreachable_broker_keeps_the_downlink_and_flush_sends_it_later(own_broker):
    topic = f"cli/later/{time.monotonic_ns()}"
    name, key = saved("generic", generic(own_broker.ports.plain, topic))
    own_broker.stop()
    started = time.monotonic()
    proc = run("send", "--profile", name, "--text", "later")
    took = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr
    line = line_of(proc)
    assert line["state"] == "outbox"
    assert "kept in the outbox" in proc.stderr and proc.stderr.count("\n") == 1
    assert took < 10 + 5, "within the connection timeout (10 s), plus the interpreter's start"
    flushed = run("outbox", "flush", name, "--timeout", "5")
    assert flushed.returncode == 1 and "1 waiting" in flushed.stdout and "still waits" in flushed.stderr
    own_broker.start()
    sub = Subscriber(own_broker.ports.plain, topic)
    try:
        flushed = run("outbox", "flush", name)
        assert flushed.returncode == 0, flushed.stderr
        assert flushed.stdout.startswith("Sent 1 downlink ") and "; 0 waiting" in flushed.stdout
        wait_until(lambda: sub.got == [b"later"], 10)
        entries = Outbox(key).entries()
        assert [e["state"] for e in entries] == ["handed-over"]
        assert entries[0]["id"] == line["id"]
    finally:
        sub.close()


def test_a_full_outbox_refuses_the_next_send_with_a_sentence():
    name, key = saved("generic", generic(free_port(), "cli/full"))
    env = {"UPLINK_CONSOLE_OUTBOX_CAPACITY": "2"}
    for i in range(2):
        assert line_of(run("send", "--profile", name, "--text", f"m{i}", env=env))["state"] == "outbox"
    refused = run("send", "--profile", name, "--text", "m2", env=env)
    assert refused.returncode == 1 and refused.stdout == ""
    assert "full" in refused.stderr and refused.stderr.count("\n") == 1
    assert [bytes.fromhex(e["payload_hex"]) for e in Outbox(key).entries()] == [b"m0", b"m1"]


def test_tts_send_waits_for_delivery_against_a_simulated_network(broker):
    network = SimulatedNetwork(broker.ports.plain)
    try:
        values = {"url": f"mqtt://127.0.0.1:{broker.ports.plain}", "app": UID, "password": "NNSXS.CLI"}
        name, key = saved("tts", values)
        proc = run(
            "send", "--profile", name, "--device", "dev7", "--f-port", "3", "--base64", "AQI=", "--confirmed",
            "--priority", "high", "--wait-delivery", "20",
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        line = line_of(proc)
        assert line["state"] == "acknowledged" and line["topic"] == f"v3/{UID}/devices/dev7/down/push"
        topic, push = network.pushes[0]
        item = push["downlinks"][0]
        assert item["frm_payload"] == "AQI=" and item["f_port"] == 3 and item["confirmed"] is True
        assert item["priority"] == "HIGH" and console_correlation_id(line["id"]) in item["correlation_ids"]
        entry = Outbox(key).entries()[0]
        assert [t[0] for t in entry["transitions"]] == ["outbox", "handed-over", "queued", "sent", "acknowledged"]
    finally:
        network.close()


def test_send_with_a_saved_template_and_options_laid_over_it(broker):
    network = SimulatedNetwork(broker.ports.plain)
    try:
        values = {"url": f"mqtt://127.0.0.1:{broker.ports.plain}", "app": UID, "password": "NNSXS.CLI"}
        name, key = saved("tts", values)
        profile_id = key.removeprefix("profile ")
        TemplateStore(profile_id).save(
            DownlinkTemplate("Reboot", {"device_id": "dev9", "f_port": 10}, "hex", "de ad", platform="tts")
        )
        proc = run("send", "--profile", name, "--template", "reboot", "--f-port", "11")
        assert proc.returncode == 0, proc.stderr
        assert line_of(proc)["topic"] == f"v3/{UID}/devices/dev9/down/push"
        wait_until(lambda: len(network.pushes) == 1, 10)
        item = network.pushes[0][1]["downlinks"][0]
        assert item["f_port"] == 11 and item["frm_payload"] == "3q0="
        missing = run("send", "--profile", name, "--template", "nope")
        assert missing.returncode == 2 and "Reboot" in missing.stderr
    finally:
        network.close()


def test_thingpark_send_tags_the_correlation_id_and_bad_input_is_one_sentence(broker):
    topic_base = f"tp{time.monotonic_ns()}"
    values = {
        "host_name": f"127.0.0.1:{broker.ports.plain}",
        "protocol": "TCP",
        "uplink_topic_pattern": f"{topic_base}/{{DevEUI}}/uplink",
        "downlink_topic_pattern": f"{topic_base}/{{DevEUI}}/downlink",
    }
    sub = Subscriber(broker.ports.plain, f"{topic_base}/+/downlink")
    try:
        name, key = saved("thingpark", values)
        proc = run("send", "--profile", name, "--dev-eui", "0018b20000000d48", "--f-port", "2", "--hex", "0a0b")
        assert proc.returncode == 0, proc.stderr
        line = line_of(proc)
        wait_until(lambda: len(sub.got) == 1, 10)
        body = orjson.loads(sub.got[0])["DevEUI_downlink"]
        assert body["CorrelationID"] == line["id"].upper() and body["payload_hex"] == "0a0b"
        assert body["DevEUI"] == "0018B20000000D48" and body["FPort"] == 2
        for bad, words in (
            (("--hex", "abc"), "Hex"),
            (("--f-port", "0", "--hex", "01"), "FPort"),
        ):
            proc = run("send", "--profile", name, "--dev-eui", "0018B20000000D48", *bad)
            assert proc.returncode == 2 and words in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
        nothing = run("send", "--profile", name, "--dev-eui", "0018B20000000D48")
        assert nothing.returncode == 2 and "--hex" in nothing.stderr
        unknown = run("send", "--profile", "no such connection", "--hex", "01")
        assert unknown.returncode == 2 and unknown.stderr.count("\n") == 1
        assert len(Outbox(key).entries()) == 1  # nothing refused went into the outbox
    finally:
        sub.close()


def test_a_downlink_the_network_fails_ends_failed_with_its_reason_and_exit_status_1(broker):
    network = SimulatedNetwork(broker.ports.plain, answers=("queued", "failed"))
    try:
        values = {"url": f"mqtt://127.0.0.1:{broker.ports.plain}", "app": UID, "password": "NNSXS.CLI"}
        name, key = saved("tts", values)
        proc = run("send", "--profile", name, "--device", "dev3", "--f-port", "1", "--hex", "00" * 20,
                   "--wait-delivery", "20")  # fmt: skip
        assert proc.returncode == 1
        assert line_of(proc)["state"] == "failed"
        assert "payload too long for the data rate" in proc.stderr and proc.stderr.count("\n") == 1
        entry = Outbox(key).entries()[0]
        assert entry["reason"].startswith("payload too long") and entry["retryable"]
    finally:
        network.close()

"""Capture at wire speed keeps capture's output exact: the lines it builds from fragments (QoS 0
straight from the packet decoder, QoS 1 through paho) are byte for byte what orjson writes for the
line's dict; a backlog released at once reaches the file in many writes as it is read, not in one
at the end; and benchmarks/capture_speed.py prints its ratio."""

from __future__ import annotations

import datetime as dt
import json
import re
import signal
import subprocess
import sys
import time

import orjson
import paho.mqtt.client as paho

from app.capture import _json_default, message_record
from app.mqtt.session import ReceivedMessage
from tests.test_capture import ROOT, read_lines, start_capture, wait_connected, wait_for

PAYLOADS = [
    b"",
    b'{"t": 21.5, "name": "quote \\" and back\\\\slash"}',
    b"line one\nline two\ttab\r\n",
    "h\u00e9llo w\u00f6rld \u65e5\u672c".encode(),
    "\u00a0no-break space".encode(),  # UTF-8, not printable: base64
    b"\x00\x01\xfe\xff",
    b"\x7f",
    b"bell \x07 inside",
    b"\xed\xa0\x80",  # a surrogate: not UTF-8
    bytes(range(256)),
    b"x" * 5000,
]


def expected_line(topic: str, payload: bytes, qos: int, retain: bool, line: dict) -> bytes:
    """What the line must be, byte for byte, given the time capture wrote in it."""
    t = dt.datetime.fromisoformat(line["time"].replace("Z", "+00:00")).timestamp()
    record = message_record(ReceivedMessage(topic, payload, qos, retain, None, t, 0.0, False))
    assert record["time"] == line["time"]
    return orjson.dumps(record, default=_json_default) + b"\n"


def publish_all(port: int, messages) -> None:
    c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="speed-publisher")
    c.connect("127.0.0.1", port)
    c.loop_start()
    try:
        for topic, payload, qos, retain in messages:
            c.publish(topic, payload, qos=qos, retain=retain).wait_for_publish(5)
    finally:
        c.disconnect()
        c.loop_stop()


def test_lines_are_exact_on_the_fast_and_the_paho_path(broker, tmp_path, topic):
    port = broker.ports.plain
    retained = (topic + "/kept", b'{"retained": true}', 0, True)
    publish_all(port, [retained])
    out = tmp_path / "cap.jsonl"
    proc = start_capture("--url", broker.url("plain"), "--topic", topic + "/#", "--qos", "1", "--out", str(out))
    sent = [retained]
    try:
        wait_connected(proc)
        for i, payload in enumerate(PAYLOADS):
            for qos in (0, 1):  # delivered at QoS 0: the fast path; at QoS 1: paho's decoder
                sent.append((f"{topic}/q{qos}/{i}", payload, qos, False))
        publish_all(port, sent[1:])
        assert wait_for(lambda: len(read_lines(out)) == len(sent), 10.0), len(read_lines(out))
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(10)
    assert proc.returncode == 0
    raw_lines = out.read_bytes().splitlines(keepends=True)
    by_topic = {json.loads(raw)["topic"]: raw for raw in raw_lines}
    assert len(by_topic) == len(sent)
    for topic_name, payload, qos, retain in sent:
        raw = by_topic[topic_name]
        line = json.loads(raw)
        assert raw == expected_line(topic_name, payload, qos, retain, line), topic_name
        assert line["dup"] is False
    encodings = {json.loads(by_topic[f"{topic}/q0/{i}"])["payload_encoding"] for i in range(len(PAYLOADS))}
    assert encodings == {"text", "base64"}
    newest = max(dt.datetime.fromisoformat(json.loads(r)["time"].replace("Z", "+00:00")) for r in raw_lines)
    assert abs(newest.timestamp() - time.time()) < 60


def test_a_backlog_is_written_as_it_is_read(broker, tmp_path, topic):
    """A paused capture given 60,000 messages at once: the file grows in steps while it catches up
    (before, one callback took the whole backlog and nothing was written until it was done)."""
    n = 60_000
    out = tmp_path / "cap.jsonl"
    lines = tmp_path / "flood.lines"
    lines.write_bytes(b'{"device": "node-1", "value": 21.5}\n' * n)
    proc = start_capture("--url", broker.url("plain"), "--topic", topic + "/#", "--qos", "0", "--out", str(out))
    counts = []
    try:
        wait_connected(proc)
        proc.send_signal(signal.SIGSTOP)
        with open(lines, "rb") as f:
            subprocess.run(
                ["mosquitto_pub", "-p", str(broker.ports.plain), "-t", topic + "/f", "-l"], stdin=f, check=True
            )
        time.sleep(0.5)
        proc.send_signal(signal.SIGCONT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            count = out.read_bytes().count(b"\n") if out.exists() else 0
            if not counts or count != counts[-1]:
                counts.append(count)
            if count >= n:
                break
            time.sleep(0.002)
    finally:
        proc.send_signal(signal.SIGCONT)
        proc.send_signal(signal.SIGINT)
        proc.wait(20)
    assert counts[-1] == n, counts[-5:]
    steps = [c for c in counts if 0 < c < n]
    assert len(steps) >= 3, f"the file grew in {len(steps) + 1} steps: {counts}"


def test_benchmark_prints_both_rates_and_the_ratio():
    r = subprocess.run(
        [sys.executable, "benchmarks/capture_speed.py", "3000", "--rounds", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert r.returncode == 0, r.stderr
    out = r.stdout.strip().splitlines()
    assert re.fullmatch(r"capture_ratio=\d+\.\d\d", out[-1]), out[-1]
    assert float(out[-1].split("=")[1]) > 0
    assert any(line.startswith("mosquitto_sub ") and "lines/s" in line for line in out)
    assert any(line.startswith("capture ") and "lines/s" in line for line in out)

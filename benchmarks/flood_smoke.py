"""Floods the window's --smoke-test with N messages from `mosquitto_pub -l` and compares its
rows/s with a bare paho-mqtt subscriber that only counts, measured in the same run on the
same broker.

    .venv/bin/python benchmarks/flood_smoke.py [N] [--size BYTES]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.devbroker import Mosquitto  # noqa: E402


def message_lines(n: int, size: int) -> Path:
    body = json.dumps({"device": "node-1", "value": 21.5, "pad": ""})
    body = body.replace('"pad": ""', '"pad": "' + "x" * max(0, size - len(body)) + '"')
    path = Path(tempfile.mkstemp(suffix=".lines")[1])
    path.write_text((body + "\n") * n)
    return path


def flood(port: int, lines: Path) -> float:
    t0 = time.monotonic()
    with open(lines) as f:
        subprocess.run(["mosquitto_pub", "-p", str(port), "-t", "flood/x", "-l"], stdin=f, check=True)
    return time.monotonic() - t0


def paho_reference(port: int, n: int, lines: Path) -> float:
    import paho.mqtt.client as paho

    count = 0
    first = last = 0.0
    done = threading.Event()

    def on_message(client, userdata, msg):
        nonlocal count, first, last
        count += 1
        if count == 1:
            first = time.monotonic()
        if count == n:
            last = time.monotonic()
            done.set()

    c = paho.Client(paho.CallbackAPIVersion.VERSION2)
    c.on_message = on_message
    c.connect("127.0.0.1", port)
    c.subscribe("flood/#", 0)
    c.loop_start()
    time.sleep(0.5)
    flood(port, lines)
    done.wait(120)
    c.loop_stop()
    c.disconnect()
    return (n - 1) / (last - first) if count == n else count / 120


def smoke(port: int, n: int, lines: Path, seconds: float) -> dict:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ui.launcher",
            "--smoke-test",
            str(seconds),
            "--url",
            f"mqtt://127.0.0.1:{port}",
            "--topic",
            "flood/#",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    time.sleep(3)
    flood(port, lines)
    out = proc.communicate(timeout=seconds + 30)[0].decode()
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("n", type=int, nargs="?", default=100_000)
    ap.add_argument("--size", type=int, default=850)
    ap.add_argument("--seconds", type=float, default=15)
    a = ap.parse_args()
    lines = message_lines(a.n, a.size)
    with tempfile.TemporaryDirectory() as d, Mosquitto(Path(d), full=False) as broker:
        ref = paho_reference(broker.ports.plain, a.n, lines)
        result = smoke(broker.ports.plain, a.n, lines, a.seconds)
    lines.unlink()
    rows = result["rows"]
    span = (result["last_row_at"] or 0) - (result["first_row_at"] or 0)
    rate = rows / span if span > 0 else 0.0
    print(f"paho reference: {ref:,.0f} msg/s")
    print(
        f"window:         {rate:,.0f} rows/s ({rows:,} of {a.n:,} rows), "
        f"stall p99 {result['stall_p99_ms']} ms, rss {result['rss_mb']} MB"
    )
    print(f"window_ratio={rate / ref:.2f} stall_p99_ms={result['stall_p99_ms']} rows={rows}")


if __name__ == "__main__":
    main()

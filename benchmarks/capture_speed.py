"""How fast `uplink-console capture` writes a flood to a file, next to `mosquitto_sub` writing the
same flood to a file, measured in the same run on the same local mosquitto.

Each round starts one subscriber (mosquitto_sub with its stdout in a file, or capture with
--out), waits until a warm-up message reaches its file, then floods N messages with
`mosquitto_pub -l`. By default the subscriber is paused (SIGSTOP) while the flood is published
and timed from its resumption until the N-th line is on disk: the broker then sends as fast as
the subscriber reads, so the rate is the subscriber's own, not the publisher's. --live publishes
while the subscriber reads instead (on a busy machine the publisher is then the bound). Rounds
alternate the subscribers; the median of each is compared.

    .venv/bin/python benchmarks/capture_speed.py [N] [--size BYTES] [--rounds R] [--live]
        [--baseline REV]   also measure capture as it was at git revision REV (read with git
                           archive into a temporary folder; the checkout is untouched)
        [--binary]         binary payloads (base64 in capture's lines) instead of JSON text

Last line: capture_ratio=R (capture's lines/s over mosquitto_sub's).
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.devbroker import Mosquitto  # noqa: E402

TOPIC = "flood/x"


def message_lines(n: int, size: int, binary: bool) -> Path:
    """N message bodies, one a line, for mosquitto_pub -l (which sends each line as one message)."""
    if binary:
        # Bytes that are not UTF-8 and no newline: capture writes them as base64.
        body = bytes((0x80 + i * 7) % 256 or 1 for i in range(size)).replace(b"\n", b"\x0b")
    else:
        body = b'{"device": "node-1", "value": 21.5, "pad": ""}'
        body = body.replace(b'"pad": ""', b'"pad": "' + b"x" * max(0, size - len(body)) + b'"')
    path = Path(tempfile.mkstemp(suffix=".lines")[1])
    path.write_bytes((body + b"\n") * n)
    return path


class LineCounter:
    """Counts the lines a subscriber has written to its file, reading only what was appended."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.lines = 0

    def poll(self) -> int:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return 0
        self.offset += len(data)
        self.lines += data.count(b"\n")
        return self.lines


def publish(port: int, *payloads: bytes) -> None:
    for payload in payloads:
        subprocess.run(["mosquitto_pub", "-p", str(port), "-t", "flood/warm", "-m", payload], check=True)


def run_round(port: int, n: int, lines: Path, command: list[str], out: Path, cwd: Path, live: bool) -> float:
    """Starts the subscriber, waits until it receives, floods, returns lines/s (0 if it fell short).

    live: the flood is published while the subscriber runs (its rate is bounded by the
    publisher's); else the subscriber is paused (SIGSTOP) while the whole flood is published, and
    timed from its resumption (SIGCONT): the broker then sends as fast as the subscriber reads."""
    out.unlink(missing_ok=True)
    with open(out, "wb") if command[0] == "mosquitto_sub" else open(os.devnull, "wb") as stdout:
        proc = subprocess.Popen(command, cwd=cwd, stdout=stdout, stderr=subprocess.DEVNULL)
    counter = LineCounter(out)
    try:
        # Subscribed once a warm-up message comes through (capture flushes within a second).
        deadline = time.monotonic() + 30
        while counter.poll() == 0:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit(f"{command[0]} did not start receiving: {' '.join(command)}")
            publish(port, b"warm-up")
            time.sleep(0.3)
        time.sleep(1.2)  # every warm-up in flight is on disk
        warm = counter.poll()
        if not live:
            proc.send_signal(signal.SIGSTOP)
        t0 = time.monotonic()
        with open(lines, "rb") as f:
            pub = subprocess.Popen(["mosquitto_pub", "-p", str(port), "-t", TOPIC, "-l"], stdin=f)
        if not live:
            pub.wait(120)
            time.sleep(1.0)  # the broker has taken every message
            t0 = time.monotonic()
            proc.send_signal(signal.SIGCONT)
        last_change, seen = time.monotonic(), warm
        while True:
            now_seen = counter.poll()
            now = time.monotonic()
            if now_seen - warm >= n:
                elapsed = now - t0
                break
            if now_seen != seen:
                last_change, seen = now, now_seen
            elif pub.poll() is not None and now - last_change > 60:  # nothing more is coming: lost
                print(f"  {command[0]}: only {seen - warm:,} of {n:,} lines", file=sys.stderr)
                elapsed = None
                break
            time.sleep(0.005)
        pub.wait(60)
        return n / elapsed if elapsed else 0.0
    finally:
        proc.send_signal(signal.SIGCONT)
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def baseline_tree(rev: str, into: Path) -> Path:
    """The app and ui packages as they were at rev (read from git; the checkout is untouched)."""
    into.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "archive", rev, "app", "ui"], cwd=ROOT, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("n", type=int, nargs="?", default=200_000)
    ap.add_argument("--size", type=int, default=200, help="payload bytes (default 200)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--baseline", metavar="REV", help="also measure capture at this git revision")
    ap.add_argument("--binary", action="store_true", help="binary payloads (base64 in capture's lines)")
    ap.add_argument("--live", action="store_true", help="publish while the subscriber reads (publisher-bound)")
    a = ap.parse_args()
    lines = message_lines(a.n, a.size, a.binary)
    with tempfile.TemporaryDirectory() as d, Mosquitto(Path(d) / "broker", full=False) as broker:
        port = broker.ports.plain
        url = f"mqtt://127.0.0.1:{port}"
        out = Path(d) / "out.jsonl"
        sub = ["mosquitto_sub", "-p", str(port), "-t", "flood/#", "-q", "0"]
        capture = [sys.executable, "-m", "ui.launcher", "capture", "--url", url, "--topic", "flood/#"]
        capture += ["--qos", "0", "--out", str(out)]
        subjects = {"mosquitto_sub": (sub, ROOT), "capture": (capture, ROOT)}
        if a.baseline:
            tree = baseline_tree(a.baseline, Path(d) / "baseline")
            subjects[f"capture@{a.baseline}"] = (capture, tree)
        rates: dict[str, list[float]] = {name: [] for name in subjects}
        # Publisher alone (nobody subscribed): the ceiling any subscriber's rate is bounded by.
        t0 = time.monotonic()
        with open(lines, "rb") as f:
            subprocess.run(["mosquitto_pub", "-p", str(port), "-t", TOPIC, "-l"], stdin=f, check=True)
        publisher = a.n / (time.monotonic() - t0)
        for r in range(a.rounds):
            for name, (command, cwd) in subjects.items():
                rate = run_round(port, a.n, lines, command, out, cwd, a.live)
                rates[name].append(rate)
                print(f"round {r + 1}: {name:<22} {rate:>10,.0f} lines/s", flush=True)
    lines.unlink()
    kind = "binary" if a.binary else "JSON text"
    how = "published while each subscriber read" if a.live else "published while each subscriber was paused"
    print(f"{a.n:,} messages of {a.size} bytes ({kind}), {how}; publisher alone {publisher:,.0f} msg/s")
    median = {name: statistics.median(r) for name, r in rates.items()}
    reference = median["mosquitto_sub"]
    for name, rate in median.items():
        print(f"{name:<22} {rate:>10,.0f} lines/s (median of {a.rounds})  {rate / reference:.2f}x mosquitto_sub")
    print(f"capture_ratio={median['capture'] / reference:.2f}")


if __name__ == "__main__":
    main()

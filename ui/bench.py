"""`uplink-console bench ingest`: the window at broker speed, measured against a bare subscriber.

In one run on one local mosquitto: N TTS uplinks are flooded (several devices and gateways, ~850
bytes) first to a bare paho-mqtt subscriber that only counts (the reference), then to the real
main window (offscreen) connected with a TTS profile: received, parsed, normalized, stored and
shown. Then the table is filled to 1,000,000 retained rows and a device filter is timed.
Last line: ingest_ratio=R stall_p99_ms=S rss_mb_1m=M filter_ms_1m=F

The broker and the publishers run at niceness FLOOD_NICENESS in both measurements: they stand in
for a remote broker and the devices behind it, which in real use take no CPU from this machine.
On a 2-core machine at nice 0 they would compete with the measured processes for the same cores.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

DEVICES = 50
FLOOD_NICENESS = 10


def write_flood_files(directory: Path, n: int, devices: int) -> list[tuple[str, Path]]:
    """One file of message lines per device topic, for parallel `mosquitto_pub -l`."""
    from app.simulate import tts as simulate

    files = []
    per = [n // devices + (1 if d < n % devices else 0) for d in range(devices)]
    for d in range(devices):
        path = directory / f"dev{d}.lines"
        with open(path, "wb") as f:
            for k in range(per[d]):
                f.write(simulate.tts_uplink(d, k, gateways=2 if k % 4 == 0 else 1) + b"\n")
        files.append((simulate.tts_topic(d), path))
    return files


def flood(port: int, files: list[tuple[str, Path]], parallel: int = 8) -> float:
    """Publishes every file with mosquitto_pub -l, `parallel` at a time; returns seconds."""
    from app.devbroker import lower_priority

    t0 = time.monotonic()
    pending = list(files)
    running: list[subprocess.Popen] = []
    while pending or running:
        while pending and len(running) < parallel:
            topic, path = pending.pop()
            proc = subprocess.Popen(
                ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-t", topic, "-l"],
                stdin=open(path, "rb"),  # noqa: SIM115 - closed with the process
            )
            lower_priority(proc.pid, FLOOD_NICENESS)
            running.append(proc)
        for p in list(running):
            if p.poll() is not None:
                running.remove(p)
        time.sleep(0.005)
    return time.monotonic() - t0


REFERENCE = r"""
import sys, time, threading
import paho.mqtt.client as paho
port, n = int(sys.argv[1]), int(sys.argv[2])
count = 0; first = last = 0.0; done = threading.Event()
def on_message(c, u, m):
    global count, first, last
    count += 1
    if count == 1: first = time.monotonic()
    if count == n: last = time.monotonic(); done.set()
c = paho.Client(paho.CallbackAPIVersion.VERSION2)
c.on_message = on_message
c.on_connect = lambda *a: (c.subscribe("v3/#", 0), print("ready", flush=True))
c.connect("127.0.0.1", port)
c.loop_start()
done.wait(float(sys.argv[3]))
print(count, (count - 1) / (last - first) if count == n and last > first else 0.0, flush=True)
"""


def reference_rate(port: int, n: int, files, timeout: float) -> float:
    proc = subprocess.Popen(
        [sys.executable, "-c", REFERENCE, str(port), str(n), str(timeout)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(0.3)
    flood(port, files)
    count, rate = proc.communicate(timeout=timeout + 30)[0].split()
    if int(count) != n:
        print(f"reference subscriber got {count} of {n} messages", file=sys.stderr)
    return float(rate)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="uplink-console bench ingest")
    ap.add_argument("what", choices=["ingest"])
    ap.add_argument("-n", "--messages", type=int, default=200_000)
    ap.add_argument("--retained", type=int, default=1_000_000, help="rows to fill for the memory/filter part")
    ap.add_argument("--timeout", type=float, default=300)
    args = ap.parse_args(argv)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ.setdefault("UPLINK_CONSOLE_DATA_DIR", tempfile.mkdtemp(prefix="uplink-bench-data-"))

    from app.devbroker import Mosquitto

    work = Path(tempfile.mkdtemp(prefix="uplink-bench-"))
    print(f"writing {args.messages:,} TTS uplinks for {DEVICES} devices …", flush=True)
    files = write_flood_files(work, args.messages, DEVICES)
    size = sum(p.stat().st_size for _, p in files) / args.messages
    print(f"average message {size:.0f} bytes", flush=True)
    print(f"broker and publishers at niceness {FLOOD_NICENESS} (standing in for a remote broker)", flush=True)
    with Mosquitto(work / "broker", full=False, niceness=FLOOD_NICENESS) as broker:
        port = broker.ports.plain
        ref = reference_rate(port, args.messages, files, args.timeout)
        print(f"reference (bare paho subscriber, counting): {ref:,.0f} msg/s", flush=True)
        result = run_window(port, args, files)
    rate = result["rate"]
    ratio = rate / ref if ref else 0.0
    print(f"window end to end: {rate:,.0f} rows/s ({result['rows']:,} of {args.messages:,} rows)")
    print(f"GUI heartbeat lateness p99 during the flood: {result['stall']:.1f} ms")
    print(f"resident memory with {result['retained']:,} retained rows: {result['rss']:.0f} MB")
    print(
        f"device filter over {result['retained']:,} rows: {result['filter_ms']:.1f} ms "
        f"({result['filter_rows']:,} rows match)"
    )
    print(
        f"ingest_ratio={ratio:.2f} stall_p99_ms={result['stall']:.1f} rss_mb_1m={result['rss']:.0f} "
        f"filter_ms_1m={result['filter_ms']:.1f}"
    )
    return 0


def run_window(port: int, args, files) -> dict:
    import qasync
    from PySide6.QtWidgets import QApplication

    from app import platforms
    from app.mqtt.config import Transport
    from app.simulate import tts as simulate
    from app.store import Filter, columns_from_rows, event_row
    from ui.application import Heartbeat, rss_mb
    from ui.main_window import MainWindow

    app = QApplication.instance() or QApplication(["uplink-console-bench"])
    loop = qasync.QSelectorEventLoop(app)
    asyncio.set_event_loop(loop)
    window = MainWindow(max_rows=args.retained)
    window.resize(1400, 900)
    window.show()
    tts = platforms.get("tts")
    profile = tts.validate({"app": simulate.APP_ID, "tenant": simulate.TENANT, "password": "NNSXS.bench"})
    config = tts.connection(profile).replace(
        host="127.0.0.1", port=port, transport=Transport.TCP, username=None, password=None
    )
    out: dict = {}

    async def scenario() -> None:
        window.connect_platform("tts", profile, config)
        while not window.bridge.connected:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        heartbeat = Heartbeat()
        flooder = threading.Thread(target=flood, args=(port, files), daemon=True)
        flooder.start()
        model = window.workspace.model if window.workspace else None
        deadline = time.monotonic() + args.timeout
        while time.monotonic() < deadline:
            model = window.workspace.model
            if model.rows_shown_total >= args.messages:
                break
            await asyncio.sleep(0.05)
        # quiet period: anything still coming?
        await asyncio.sleep(0.5)
        heartbeat.timer.stop()
        rows = model.rows_shown_total
        span = (model.last_row_at or 0) - (model.first_row_at or 0)
        out.update(rows=rows, rate=(rows - 1) / span if span > 0 else 0.0, stall=heartbeat.p99())
        # Fill the table to the retained size through the same path the engine feeds.
        ws = window.workspace
        need = args.retained - len(ws.store)
        if need > 0:
            batch_rows = []
            now = time.time()
            for i in range(need):
                d = i % simulate_devices()
                body = simulate.tts_uplink(d, 1_000_000 + i, gateways=1)
                for event in tts.parse(simulate.tts_topic(d), body):
                    batch_rows.append(event_row(event, now + i * 1e-4))
                if len(batch_rows) >= 20_000:
                    ws.ingest([columns_from_rows(batch_rows)])
                    batch_rows = []
                    await asyncio.sleep(0)
            if batch_rows:
                ws.ingest([columns_from_rows(batch_rows)])
        gc.collect()
        out["retained"] = len(ws.store)
        out["rss"] = rss_mb()
        t0 = time.perf_counter()
        ws.apply_filter(Filter(device=simulate.dev_eui(7)))
        out["filter_ms"] = (time.perf_counter() - t0) * 1000
        out["filter_rows"] = ws.model.rowCount()
        window.close()

    def simulate_devices() -> int:
        return DEVICES

    loop.run_until_complete(scenario())
    return out

"""`uplink-console bench ingest`: the window at broker speed, measured against a bare subscriber.
`uplink-console bench search [--rows N]`: search while typing over N rows in the real window
(see bench_search below).

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


def isolate(work: Path) -> None:
    """A benchmark's own world under `work`: offscreen Qt (unless chosen), data, config and log
    folders, and a file keyring, so nothing of the user's is read or written."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    for var, sub in (
        ("UPLINK_CONSOLE_DATA_DIR", "data"),
        ("UPLINK_CONSOLE_CONFIG_DIR", "config"),
        ("UPLINK_CONSOLE_LOG_DIR", "log"),
    ):
        os.environ[var] = str(work / sub)
    os.environ["PYTHON_KEYRING_BACKEND"] = "keyrings.alt.file.PlaintextKeyring"
    os.environ["KEYRING_PROPERTY_FILE_PATH"] = str(work / "keyring.cfg")


def local_tts(port: int):
    """(profile, connection) of a TTS connection to the benchmark's own mosquitto on port."""
    from app import platforms
    from app.mqtt.config import Transport
    from app.simulate import tts as simulate

    tts = platforms.get("tts")
    profile = tts.validate({"app": simulate.APP_ID, "tenant": simulate.TENANT, "password": "NNSXS.bench"})
    config = tts.connection(profile).replace(
        host="127.0.0.1", port=port, transport=Transport.TCP, username=None, password=None
    )
    return profile, config


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
    if argv and argv[0] == "search":
        return bench_search(argv[1:])
    if argv and argv[0] == "reopen":
        from ui.bench_reopen import main as bench_reopen

        return bench_reopen(argv[1:])
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
    profile, config = local_tts(port)
    tts = platforms.get("tts")
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


# ----- bench search ----------------------------------------------------------------------------

SEARCH_DEVICES = 400
KEYSTROKE_S = 0.06  # between two typed characters: a fast typist, so searches in flight get cancelled


def fleet_batches(n: int, conn, batch_rows: int = 20_000, seed: int = 3) -> None:
    """Runs in a process of its own (as the engine does): N rows of a simulated fleet
    (app.simulate.fleet: TTS-style uplinks of four device types, joins, malformed messages as error
    rows), sent as column batches (app.store.columns_from_rows) over conn, then None."""
    import orjson

    from app.simulate.fleet import JOIN, MALFORMED, UPLINK, Fleet, FleetOptions
    from app.store import columns_from_rows

    fleet = Fleet(FleetOptions(devices=SEARCH_DEVICES, gateways=8, rate=200.0, seed=seed))
    rows: list[tuple] = []
    for frame in fleet.frames(n):
        device = frame.device
        best = frame.best
        topic = f"v3/uplink-demo@ttn/devices/{device.device_id}/{'join' if frame.kind == JOIN else 'up'}"
        ts = frame.time.timestamp()
        if frame.kind == MALFORMED:
            error = "The message is not valid JSON (unexpected end of data); it is kept as this error row."
            rows.append(
                (None, ts, "tts", "error", "uplink-demo", device.device_id, None, None, None, None)
                + (None,) * 9
                + (error, topic)
            )
        else:
            uplink = frame.kind == UPLINK
            rows.append(
                (
                    None,
                    ts,
                    "tts",
                    frame.kind,
                    "uplink-demo",
                    device.device_id,
                    device.dev_eui,
                    device.dev_addr,
                    frame.f_port if uplink else None,
                    frame.f_cnt if uplink else None,
                    frame.payload if uplink else None,
                    bytes(memoryview(orjson.dumps(frame.decoded))) if frame.decoded is not None else None,
                    best.rssi if best else None,
                    best.snr if best else None,
                    best.gateway.gateway_id if best else None,
                    len(frame.receptions),
                    frame.spreading_factor,
                    frame.bandwidth_hz,
                    frame.frequency_hz,
                    None,
                    topic,
                )
            )
        if len(rows) >= batch_rows:
            conn.send(columns_from_rows(rows))
            rows = []
    if rows:
        conn.send(columns_from_rows(rows))
    conn.send(None)
    conn.close()


def search_terms(store) -> list[tuple[str, str]]:
    """What a user would type, taken from the rows: (label, text)."""
    import orjson

    c = store.cols
    n = len(store)
    rare = common = payload = device = None
    for i in range(n // 3, n):
        if c["kind"][i] != "uplink":
            continue
        doc = orjson.loads(c["decoded"][i]) if c["decoded"][i] else {}
        if rare is None and "volume_l" in doc:
            rare = str(doc["volume_l"])
        if device is None and c["device_id"][i].startswith("gps-tracker"):
            device = c["device_id"][i]
        if payload is None and len(c["payload"][i]) >= 5:
            payload = c["payload"][i][1:4].hex()
        if rare and device and payload:
            break
    common = "humidity"
    return [
        ("a rare value", rare or "123456"),
        ("a common one", common),
        ("a device id", device or "gps-tracker-002"),
        ("a payload fragment", payload or "0917"),
        ("nothing found", "no-such-sensor"),
    ]


def bench_search(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="uplink-console bench search")
    ap.add_argument("--rows", type=int, default=1_000_000, help="rows of simulated uplinks in the window")
    args = ap.parse_args(argv)
    if args.rows < 1000:
        ap.error("--rows must be at least 1000")
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    for name, prefix in (
        ("UPLINK_CONSOLE_DATA_DIR", "data"),
        ("UPLINK_CONSOLE_CONFIG_DIR", "config"),
        ("UPLINK_CONSOLE_LOG_DIR", "log"),
    ):
        os.environ.setdefault(name, tempfile.mkdtemp(prefix=f"uplink-bench-{prefix}-"))

    import multiprocessing
    import statistics

    import qasync
    from PySide6.QtWidgets import QApplication

    from app.devbroker import Mosquitto
    from app.store import Filter
    from ui.application import Heartbeat, rss_mb
    from ui.main_window import MainWindow

    app = QApplication.instance() or QApplication(["uplink-console-bench"])
    loop = qasync.QSelectorEventLoop(app)
    asyncio.set_event_loop(loop)
    work = Path(tempfile.mkdtemp(prefix="uplink-bench-search-"))
    out: dict = {}

    async def scenario(port: int) -> None:
        window = MainWindow(max_rows=args.rows)
        window.resize(1400, 900)
        window.show()
        profile, config = local_tts(port)
        window.connect_platform("tts", profile, config)
        while window.workspace is None:
            await asyncio.sleep(0.05)
        ws = window.workspace
        print(f"filling the window with {args.rows:,} rows of a simulated {SEARCH_DEVICES}-device fleet …", flush=True)
        t0 = time.monotonic()
        ctx = multiprocessing.get_context("spawn")
        receive, send = ctx.Pipe(duplex=False)
        maker = ctx.Process(target=fleet_batches, args=(args.rows, send), daemon=True)
        maker.start()
        send.close()
        while True:
            while not receive.poll():
                await asyncio.sleep(0.01)
            batch = receive.recv()
            if batch is None:
                break
            ws.ingest([batch])
            await asyncio.sleep(0)
        maker.join()
        model = ws.model
        while len(ws.store) < args.rows or model.search_index.behind or model._announce_timer.isActive():
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.5)  # device statistics, the first repaint
        gc.collect()
        gc.freeze()
        print(
            f"{len(ws.store):,} rows in {time.monotonic() - t0:.1f} s (the search index kept up as they arrived); "
            f"resident memory {rss_mb():.0f} MB",
            flush=True,
        )
        terms = search_terms(ws.store)
        bar = ws.filter_bar
        idle = Heartbeat()  # the same window doing nothing: what this machine's load costs the loop
        await asyncio.sleep(3.0)
        idle.timer.stop()
        idle_worst = max(idle.lateness_ms) if idle.lateness_ms else 0.0
        heartbeat = Heartbeat()
        results = []
        for label, text in terms:
            cancelled = 0
            for k in range(1, len(text) + 1):
                bar.text.setText(text[:k])
                bar._debounce.stop()
                if model.searching:
                    cancelled += 1
                started = time.perf_counter()
                bar.apply()
                if k < len(text):
                    await asyncio.sleep(KEYSTROKE_S)
            first_rows = None
            while model.searching:
                if first_rows is None and model.rowCount():
                    first_rows = time.perf_counter() - started
                await asyncio.sleep(0.001)
            took = model.search_seconds if model.search_seconds is not None else time.perf_counter() - started
            if first_rows is None:
                first_rows = took
            results.append((label, text, took, first_rows, model.rowCount(), cancelled))
            bar.text.setText("")
            bar._debounce.stop()
            bar.apply()
            await asyncio.sleep(0.3)
        heartbeat.timer.stop()
        stall = max(heartbeat.lateness_ms) if heartbeat.lateness_ms else 0.0
        # The references, measured now on the same rows (the window waits meanwhile: not in the stall).
        decoded = ws.store.cols["decoded"]
        refs = []
        for label, text, took, first_rows, count, cancelled in results:
            needle = text.lower().encode()
            t1 = time.perf_counter()
            sum(1 for b in decoded if needle in b.lower())
            ref = time.perf_counter() - t1
            t1 = time.perf_counter()
            old = len(ws.store.matching(Filter(text=text)))
            today = time.perf_counter() - t1
            refs.append(ref)
            print(
                f"{label:20s} {text!r:22s} search {took * 1000:7.1f} ms (newest rows shown after "
                f"{first_rows * 1000:6.1f} ms, {count:>9,} rows, {cancelled} searches cancelled while typing) | "
                f"per-row scan reference {ref * 1000:6.0f} ms  ratio={took / ref:.3f} | "
                f"the table's old search {today * 1000:6.0f} ms ({old:,} rows)",
                flush=True,
            )
        out["ratio"] = statistics.median(r[2] for r in results) / statistics.median(refs)
        out["ms"] = statistics.median(r[2] for r in results) * 1000
        out["stall"] = stall
        print(
            f"heartbeat (10 ms timer) during the typing and searches: worst lateness {stall:.1f} ms, "
            f"p99 {heartbeat.p99():.1f} ms (the idle window, same run: worst {idle_worst:.1f} ms, "
            f"p99 {idle.p99():.1f} ms; "
            f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)",
            flush=True,
        )
        window.close()

    with Mosquitto(work / "broker", full=False, niceness=FLOOD_NICENESS) as broker:
        loop.run_until_complete(scenario(broker.ports.plain))
    scale = 1_000_000 / args.rows
    print(f"search_ratio={out['ratio']:.3f} search_ms_1m={out['ms'] * scale:.1f} stall_max_ms={out['stall']:.1f}")
    return 0

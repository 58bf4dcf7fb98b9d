"""The outbox: bounded, persistent, in order, exactly once — across a broker restart (the real engine
process and mosquitto), an app killed with SIGKILL mid-flush (a real `outbox flush` process) and two
drainers at once (two real processes); a real subscriber on mosquitto counts what arrives."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import paho.mqtt.client as paho
import pytest

from app.outbox import (
    Outbox,
    OutboxError,
    OutboxFull,
    new_downlink_id,
    outbox_path,
    process_token,
)
from app.platforms.base import OutgoingMessage
from app.profiles import ProfileStore, new_profile
from tests.conftest import until

ROOT = Path(__file__).resolve().parent.parent
EXE = [sys.executable, "-m", "ui.launcher"]


def message(i: int, topic: str = "dl/test", qos: int = 1) -> OutgoingMessage:
    return OutgoingMessage(topic, f"{i:04d}".encode(), qos)


class Subscriber:
    """A persistent QoS 1 subscriber (its session outlives a broker restart) that keeps every payload."""

    def __init__(self, port: int, topic: str) -> None:
        self.got: list[bytes] = []
        self.redelivered: list[bytes] = []  # copies the broker marked DUP (its own retry to this subscriber)
        self.ready = threading.Event()
        self.client = paho.Client(
            paho.CallbackAPIVersion.VERSION2, client_id=f"outbox-sub-{new_downlink_id()}", clean_session=False
        )
        self.client.reconnect_delay_set(0.1, 0.5)
        self.client.on_connect = lambda c, u, f, rc, p=None: c.subscribe(topic, 1)
        self.client.on_subscribe = lambda *a: self.ready.set()
        self.client.on_message = self._take
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self.ready.wait(10)

    def _take(self, client, userdata, message) -> None:
        self.got.append(message.payload)
        if message.dup:
            self.redelivered.append(message.payload)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def saved_generic(port: int, topic: str) -> tuple[str, str]:
    """A saved generic connection publishing QoS 1 to `topic`; (its name, its outbox key)."""
    store = ProfileStore()
    name = f"outbox-{new_downlink_id()}"
    profile = new_profile(
        name,
        "generic",
        {"url": f"mqtt://127.0.0.1:{port}", "topics": "nothing/here", "qos": 1, "publish_topic": topic},
    )
    store.add(profile)
    store.save()
    return name, f"profile {profile.id}"


def run_console(*args, timeout=120) -> subprocess.CompletedProcess:
    proc = subprocess.run([*EXE, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def fill(key: str, n: int, topic: str = "dl/test") -> list[bytes]:
    box = Outbox(key)
    try:
        for i in range(n):
            box.add(message(i, topic), {"platform": "generic"})
    finally:
        box.close()
    return [f"{i:04d}".encode() for i in range(n)]


# ----- the store ---------------------------------------------------------------------------


def test_a_full_outbox_refuses_with_a_sentence_and_drops_nothing(tmp_path):
    box = Outbox("full", capacity=3, path=tmp_path / "o.sqlite")
    ids = [box.add(message(i), {"platform": "generic"})["id"] for i in range(3)]
    with pytest.raises(OutboxFull) as refused:
        box.add(message(99), {"platform": "generic"})
    sentence = str(refused.value)
    assert "full" in sentence and "3" in sentence and sentence.endswith(".") and "\n" not in sentence
    assert [e["id"] for e in box.entries()] == ids
    assert [e["payload_hex"] for e in box.entries()] == [f"{i:04d}".encode().hex() for i in range(3)]
    # A cancelled one makes room; handed-over ones do not count against the limit.
    box.cancel(ids[0])
    box.add(message(3), {"platform": "generic"})
    assert box.waiting() == 3


def test_entries_leave_in_order_one_at_a_time_and_survive_reopening(tmp_path):
    path = tmp_path / "o.sqlite"
    box = Outbox("order", path=path)
    ids = [box.add(message(i), {"platform": "generic"})["id"] for i in range(5)]
    owner = process_token()
    first = box.claim_next(owner)
    assert first.id == ids[0] and first.payload == b"0000" and first.qos == 1
    assert box.claim_next(owner) is None  # one in flight at a time
    assert box.cancel(ids[2])["state"] == "cancelled"
    with pytest.raises(OutboxError, match="being handed to the broker"):
        box.cancel(ids[0])
    box.handed_over(first.id, owner)
    box.close()
    box = Outbox("order", path=path)  # an app restart
    owner = process_token()
    order = []
    while (claim := box.claim_next(owner)) is not None:
        order.append(claim.id)
        box.handed_over(claim.id, owner)
    assert order == [ids[1], ids[3], ids[4]]
    states = {e["id"]: e["state"] for e in box.entries()}
    assert states[ids[2]] == "cancelled" and states[ids[0]] == "handed-over"
    # a cancelled one is retried as a new attempt at the end of the line
    again = box.retry(ids[2])
    assert again["state"] == "outbox" and again["attempt"] == 2
    assert [t[0] for t in again["transitions"]] == ["outbox", "cancelled", "outbox"]
    with pytest.raises(OutboxError, match="only a failed"):
        box.retry(ids[1])


def test_a_claim_of_a_dead_process_goes_back_to_waiting(tmp_path):
    path = tmp_path / "o.sqlite"
    box = Outbox("dead owner", path=path)
    entry = box.add(message(1), {"platform": "generic"})
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_token = f"{dead.stdout.strip()}:1"
    assert box.claim_next(dead_token).id == entry["id"]
    claim = box.claim_next(process_token())
    assert claim is not None and claim.id == entry["id"]
    assert "stopped before the broker confirmed it" in box.entry(entry["id"])["transitions"][-1][2]


def test_a_damaged_outbox_file_is_kept_aside_and_a_new_one_started(tmp_path):
    path = tmp_path / "o.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    box = Outbox("damaged", path=path)
    assert box.recovered_from is not None and box.recovered_from.exists()
    assert box.recovered_from.read_bytes().startswith(b"this is not a database")
    assert box.add(message(1), {"platform": "generic"})["state"] == "outbox"


def test_outbox_files_live_in_the_data_dir_one_per_connection():
    a, b = outbox_path("profile aaa"), outbox_path("profile bbb")
    assert a != b and a.parent == b.parent and a.parent.name == "outbox"
    assert str(a).startswith(os.environ["UPLINK_CONSOLE_DATA_DIR"])
    assert a.suffix == ".sqlite"


# ----- exactly once, in order, with real processes -----------------------------------------


def test_two_drainers_at_once_never_publish_one_entry_twice(broker):
    topic = f"dl/two/{new_downlink_id()}"
    sub = Subscriber(broker.ports.plain, topic)
    try:
        name, key = saved_generic(broker.ports.plain, topic)
        expected = fill(key, 300, topic)
        procs = [
            subprocess.Popen([*EXE, "outbox", "flush", name], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            for _ in range(2)
        ]
        outs = [p.communicate(timeout=120) for p in procs]
        assert [p.returncode for p in procs] == [0, 0], outs
        sent = [int(out.decode().split()[1]) for out, _err in outs]
        assert sum(sent) == 300, outs
        wait_until(lambda: len(sub.got) >= 300)
        time.sleep(0.5)
        assert sub.got == expected
    finally:
        sub.close()


def wait_until(predicate, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def test_sigkill_mid_flush_then_flush_again_delivers_every_downlink_in_order(broker):
    topic = f"dl/kill/{new_downlink_id()}"
    sub = Subscriber(broker.ports.plain, topic)
    try:
        name, key = saved_generic(broker.ports.plain, topic)
        expected = fill(key, 400, topic)
        proc = subprocess.Popen(
            [*EXE, "outbox", "flush", name], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        wait_until(lambda: len(sub.got) >= 40 or proc.poll() is not None)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        assert proc.returncode == -signal.SIGKILL
        box = Outbox(key)
        left = box.waiting()
        box.close()
        assert 0 < left < 400, "the kill landed mid-flush"
        again = run_console("outbox", "flush", name)
        assert again.returncode == 0, again.stderr
        assert "; 0 waiting" in again.stdout
        wait_until(lambda: len(sub.got) >= 400)
        time.sleep(0.5)
        # Every downlink, in order. Only the one in flight at the kill may come twice (published,
        # then killed before its hand-over was stored: see app/outbox.py), and then side by side.
        collapsed = [p for i, p in enumerate(sub.got) if i == 0 or p != sub.got[i - 1]]
        assert collapsed == expected
        print("sent twice after the kill:", len(sub.got) - len(expected), "broker's DUP:", sub.redelivered)
        assert len(sub.got) - len(expected) <= 1
        states = {e["state"] for e in Outbox(key).entries()}
        assert states == {"handed-over"}
    finally:
        sub.close()


async def test_the_engine_delivers_every_downlink_once_in_order_across_a_broker_restart(own_broker):
    from app import platforms
    from app.mqtt.process import EngineProcess, ProcessSession

    topic = f"dl/restart/{new_downlink_id()}"
    sub = Subscriber(own_broker.ports.plain, topic)
    engine = EngineProcess()
    key = f"restart-{new_downlink_id()}"
    changes: list[dict] = []
    engine.watch_downlinks(key, changes.extend)
    generic = platforms.get("generic")
    profile = {"url": f"mqtt://127.0.0.1:{own_broker.ports.plain}", "topics": "nothing/here", "qos": 1}
    config = generic.connection(profile).replace(reconnect_interval=0.2, reconnect_max_interval=0.5)
    states = []
    session = ProcessSession(
        engine,
        config,
        on_batch=lambda b: None,
        on_state=states.append,
        platform="generic",
        profile=profile,
        history_name=key,
    )
    try:
        await session.start()
        await session.wait_connected(10)
        expected = []
        for i in range(150):
            await engine.send_downlink(key, message(i, topic), {"platform": "generic"})
            expected.append(f"{i:04d}".encode())
            if i == 60:
                await until(lambda: len(sub.got) >= 20)
                await asyncio.get_running_loop().run_in_executor(None, own_broker.restart, 0.5)
        try:
            await until(lambda: len(sub.got) >= 150, 30)
        except AssertionError:
            from collections import Counter

            counts = Counter(sub.got)
            waiting = [(e["state"], e["reason"]) for e in await engine.downlinks(key) if e["state"] != "handed-over"]
            missing = [p for p in expected if p not in counts]
            raise AssertionError(f"{len(sub.got)} arrived; missing {missing}; not handed over: {waiting}") from None
        await asyncio.sleep(0.5)
        # Exactly once, in order, from the outbox: every copy beyond that is the broker's own retry
        # to this subscriber (marked DUP: the subscriber's PUBACK was lost when the broker stopped).
        first_copies = list(sub.got)
        for copy in sub.redelivered:
            first_copies.remove(copy)
        print("copies beyond one:", len(sub.got) - len(expected), "of them the broker's DUP retries:", sub.redelivered)
        assert first_copies == expected
        assert len(sub.got) - len(expected) == len(sub.redelivered)
        assert any(c.state == "reconnecting" for c in states), "the broker restart was seen"
        entries = await engine.downlinks(key)
        assert [e["state"] for e in entries] == ["handed-over"] * 150
        await until(lambda: {c["id"] for c in changes if c["state"] == "handed-over"} == {e["id"] for e in entries})
        await session.stop()
    finally:
        engine.close()
        sub.close()


def test_sqlite_settings_make_state_changes_durable(tmp_path):
    box = Outbox("pragma", path=tmp_path / "o.sqlite")
    assert box.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert box.db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    box.close()
    with sqlite3.connect(tmp_path / "o.sqlite") as db:
        assert db.execute("SELECT count(*) FROM downlinks").fetchone()[0] == 0


def test_the_window_bridge_sends_through_the_outbox_and_signals_every_change(qtbot, loop, broker):
    """SessionBridge (ui/bridge.py) as the window uses it: a downlink put in the outbox before the
    connection is up, delivered and acknowledged once it is, then cancel and retry of a waiting one."""
    from app import platforms
    from app.outbox import meta_for_request, tag_request
    from app.platforms.base import DownlinkRequest
    from tests.test_delivery import UID, SimulatedNetwork, tts_profile
    from ui.bridge import SessionBridge

    tts = platforms.get("tts")
    network = SimulatedNetwork(broker.ports.plain)
    bridge = SessionBridge()
    bridge.outbox_key = key = f"bridge-{new_downlink_id()}"
    changed: list[dict] = []
    bridge.downlink_changed.connect(changed.append)

    def compose(payload: bytes):
        downlink_id = new_downlink_id()
        request = tag_request(
            "tts", DownlinkRequest(device_id="dev1", f_port=15, payload=payload, confirmed=True), downlink_id
        )
        return tts.encode_downlink({"app": UID}, request), meta_for_request("tts", request, id=downlink_id)

    def states_of(downlink_id: str) -> list[str]:
        return [e["state"] for e in changed if e["id"] == downlink_id]

    async def scenario():
        first = await bridge.send_downlink(*compose(b"\x01"))
        assert first["state"] == "outbox"
        await until(lambda: states_of(first["id"]) == ["outbox"])
        profile = tts_profile(broker.ports.plain)
        await bridge.connect_to(tts.connection(profile), "tts", profile, history_name=key)
        await until(lambda: "acknowledged" in states_of(first["id"]), 20)
        # every change was signalled in order, each entry carrying every transition before it (two
        # made in one step, the hand-over and the platform's first answer, come in one signal)
        order = ["outbox", "handed-over", "queued", "sent", "acknowledged"]
        signalled = states_of(first["id"])
        assert signalled == sorted(signalled, key=order.index) and signalled[0] == "outbox"
        assert len(signalled) == len(set(signalled)) >= 4
        last = [e for e in changed if e["id"] == first["id"]][-1]
        assert [t[0] for t in last["transitions"]] == ["outbox", "handed-over", "queued", "sent", "acknowledged"]
        await bridge.disconnect_from()
        second = await bridge.send_downlink(*compose(b"\x02"))
        assert (await bridge.cancel_downlink(second["id"]))["state"] == "cancelled"
        assert (await bridge.retry_downlink(second["id"]))["state"] == "outbox"
        listed = await bridge.downlinks()
        assert [(e["id"], e["state"]) for e in listed] == [(first["id"], "acknowledged"), (second["id"], "outbox")]
        await until(lambda: states_of(second["id"]) == ["outbox", "cancelled", "outbox"])
        assert len(network.pushes) == 1

    try:
        loop.run_until_complete(scenario())
    finally:
        bridge.shutdown()
        network.close()


def test_one_downlink_id_goes_in_once(tmp_path):
    box = Outbox("twice", path=tmp_path / "o.sqlite")
    box.add(message(1), {"platform": "generic", "id": "00000000000000ab"})
    with pytest.raises(OutboxError, match="in the outbox already"):
        box.add(message(1), {"platform": "generic", "id": "00000000000000ab"})
    assert len(box.entries()) == 1


async def test_the_windows_engine_and_a_flush_command_at_once_publish_each_entry_once(broker):
    """The window's engine (connected to a saved connection) and `outbox flush` on the same outbox."""
    from app import platforms
    from app.mqtt.process import EngineProcess, ProcessSession
    from app.secrets import SecretStore, resolve

    topic = f"dl/both/{new_downlink_id()}"
    sub = Subscriber(broker.ports.plain, topic)
    name, key = saved_generic(broker.ports.plain, topic)
    stored = ProfileStore().get(name)
    values = resolve(stored, SecretStore())
    generic = platforms.get("generic")
    engine = EngineProcess()
    session = ProcessSession(
        engine,
        generic.connection(values),
        on_batch=lambda b: None,
        on_state=lambda c: None,
        platform="generic",
        profile=values,
        history_name=key,
    )
    try:
        expected = await asyncio.to_thread(fill, key, 300, topic)
        flush = await asyncio.create_subprocess_exec(
            *EXE, "outbox", "flush", name, cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        await until(lambda: len(sub.got) >= 10, 30)  # the command is sending: now the window connects
        await session.start()
        await session.wait_connected(10)
        out, err = await asyncio.wait_for(flush.communicate(), 120)
        assert flush.returncode == 0, err
        await until(lambda: len(sub.got) >= 300, 60)
        await asyncio.sleep(0.5)
        assert sub.got == expected
        by_flush = int(out.decode().split()[1])
        print("sent by the command:", by_flush, "by the engine:", 300 - by_flush)
        assert 10 <= by_flush <= 300
        assert [e["state"] for e in await engine.downlinks(key)] == ["handed-over"] * 300
        await session.stop()
    finally:
        engine.close()
        sub.close()


def test_after_the_engine_is_killed_the_window_gets_its_downlinks_again_and_sends_on(qtbot, loop, broker):
    from app import platforms
    from ui.bridge import SessionBridge

    topic = f"dl/engine-lost/{new_downlink_id()}"
    sub = Subscriber(broker.ports.plain, topic)
    generic = platforms.get("generic")
    profile = {"url": f"mqtt://127.0.0.1:{broker.ports.plain}", "topics": "nothing/here", "qos": 1}
    bridge = SessionBridge()
    bridge.heartbeat_timeout = 2.0
    changed: list[dict] = []
    bridge.downlink_changed.connect(changed.append)

    async def scenario():
        await bridge.connect_to(generic.connection(profile), "generic", profile, history_name=f"lost-{topic}")
        await until(lambda: bridge.connected)
        first = await bridge.send_downlink(message(1, topic), {"platform": "generic"})
        await until(lambda: any(e["id"] == first["id"] and e["state"] == "handed-over" for e in changed))
        old = bridge.engine
        seen = len(changed)
        os.kill(old.pid, signal.SIGKILL)
        await until(lambda: bridge.engine is not None and bridge.engine is not old and bridge.connected, 20)
        await until(lambda: any(e["id"] == first["id"] for e in changed[seen:]))  # announced again
        second = await bridge.send_downlink(message(2, topic), {"platform": "generic"})
        await until(lambda: any(e["id"] == second["id"] and e["state"] == "handed-over" for e in changed))
        await until(lambda: len(sub.got) >= 2)
        await asyncio.sleep(0.3)
        assert sub.got == [b"0001", b"0002"]

    try:
        loop.run_until_complete(scenario())
    finally:
        bridge.shutdown()
        sub.close()

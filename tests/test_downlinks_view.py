"""The Downlinks view: rows announced in batches, every transition with its time and reason, Cancel
and Retry; and through the real engine process, a TTS downlink composed in the window and sent
with Send goes from outbox to acknowledged against a simulated network on mosquitto."""

from __future__ import annotations

import asyncio

import orjson

from app import platforms
from app.devbroker import free_port
from app.mqtt.config import Transport
from tests.conftest import until
from tests.test_delivery import UID, SimulatedNetwork


def entry(ident: str, state: str = "outbox", **kw) -> dict:
    transitions = [["outbox", "2026-12-01T12:00:00Z", None]]
    if state != "outbox":
        transitions.append([state, "2026-12-01T12:00:05Z", kw.get("reason")])
    base = {
        "id": ident,
        "state": state,
        "topic": f"v3/app1/devices/dev-{ident}/down/push",
        "payload_hex": "0102",
        "size": 60,
        "device_id": f"dev-{ident}",
        "dev_eui": None,
        "f_port": 7,
        "platform": "tts",
        "reason": None,
        "transitions": transitions,
        "created_at": "2026-12-01T12:00:00Z",
        "waiting": state == "outbox",
        "retryable": state in ("failed", "no-news", "not-acknowledged", "cancelled"),
        "attempt": 1,
    }
    base.update(kw)
    return base


def test_rows_are_announced_in_one_insert_per_tick_not_per_entry(qtbot):
    from ui.downlink.downlinks_view import DownlinksView

    view = DownlinksView()
    qtbot.addWidget(view)
    inserts = []
    view.model.rowsInserted.connect(lambda parent, first, last: inserts.append((first, last)))
    for i in range(50):
        view.model.upsert(entry(f"{i:02d}"))
    assert view.model.rowCount() == 0  # nothing painted yet
    qtbot.waitUntil(lambda: view.model.rowCount() == 50, timeout=3000)
    assert inserts == [(0, 49)]
    changed = []
    view.model.dataChanged.connect(lambda a, b, roles=(): changed.append((a.row(), b.row())))
    view.model.upsert(entry("07", "sent"))
    view.model.upsert(entry("09", "failed", reason="The device did not answer (RX window missed)."))
    qtbot.waitUntil(lambda: bool(changed), timeout=3000)
    assert inserts == [(0, 49)] and changed == [(7, 9)]
    assert view.model.index(7, 4).data() == "↓ sent"
    assert view.model.index(9, 4).data() == "✗ failed"
    assert view.model.index(9, 1).data() == "dev-09" and view.model.index(9, 2).data() == "7"
    assert view.model.index(9, 3).data() == "01 02"
    assert "50 downlinks · 48 waiting in the outbox" in view.count.text()


def test_the_selected_row_shows_every_transition_and_the_buttons_follow_its_state(qtbot):
    from ui.downlink.downlinks_view import DownlinksView

    view = DownlinksView()
    qtbot.addWidget(view)
    view.model.load(
        [
            entry("a"),
            entry("b", "failed", reason="Downlink rejected: FPort not allowed."),
            entry("c", "acknowledged"),
        ]
    )
    view.table.selectRow(1)
    assert view.transitions.topLevelItemCount() == 2
    last = view.transitions.topLevelItem(1)
    assert last.text(1) == "✗ failed" and last.text(2) == "Downlink rejected: FPort not allowed."
    assert last.text(0).endswith(":05.000") and last.toolTip(0) == "2026-12-01T12:00:05Z"
    assert "Downlink rejected" in view.detail_title.text()
    assert view.retry_button.isEnabled() and not view.cancel_button.isEnabled()
    view.table.selectRow(0)
    assert view.cancel_button.isEnabled() and not view.retry_button.isEnabled()
    view.table.selectRow(2)
    assert not view.cancel_button.isEnabled() and not view.retry_button.isEnabled()


def tts_page_connection(broker):
    tts = platforms.get("tts")
    profile = tts.validate({"app": UID, "password": "NNSXS.TEST", "upstream": "all"})
    config = tts.connection(profile).replace(
        host="127.0.0.1", port=broker.ports.plain, transport=Transport.TCP, username=None, password=None
    )
    return profile, config


def test_a_downlink_sent_from_the_composer_is_followed_to_acknowledged(qtbot, loop, broker, tmp_path, monkeypatch):
    from ui.connection.page import ConnectionPage

    monkeypatch.setenv("UPLINK_CONSOLE_DATA_DIR", str(tmp_path))
    network = SimulatedNetwork(broker.ports.plain)
    page = ConnectionPage("profile-follow", "Follow", raw=False)
    qtbot.addWidget(page)
    page.show()
    profile, config = tts_page_connection(broker)
    view = page.downlinks_view

    async def scenario():
        page.connect_platform("tts", profile, config, history_name="profile follow-test")
        await until(lambda: page.bridge.connected, 20)
        composer = page.open_composer({"device_id": "dev1", "f_port": 15})
        composer.widgets["confirmed"].setChecked(True)
        composer.editor.edit.setPlainText("be ef")
        previewed, downlink_id = composer.composed.message, composer.composition.downlink_id
        assert composer.send_button.isEnabled()
        composer.send_button.click()
        await until(lambda: any(e.get("state") == "acknowledged" for e in view.model.rows), 30)
        row = next(e for e in view.model.rows if e["state"] == "acknowledged")
        assert [t[0] for t in row["transitions"]] == ["outbox", "handed-over", "queued", "sent", "acknowledged"]
        assert row["id"] == downlink_id
        assert len(network.pushes) == 1
        topic, push = network.pushes[0]
        assert topic == previewed.topic and orjson.dumps(push) == previewed.payload
        assert page.workspace.bottom.currentWidget() is view
        view.table.selectRow(view.model.row_of_id[row["id"]])
        states = [view.transitions.topLevelItem(i).text(1) for i in range(view.transitions.topLevelItemCount())]
        assert states == ["◷ in the outbox", "→ handed over", "⋯ queued", "↓ sent", "✓ acknowledged"]
        # the same events are still rows of the uplink table
        await until(lambda: page.workspace.model.rowCount() >= 3, 10)
        page.disconnect()
        await until(lambda: not page.active, 10)

    try:
        loop.run_until_complete(scenario())
    finally:
        network.close()
        page.shutdown()


def test_cancel_and_retry_a_waiting_downlink_through_the_engine(qtbot, loop, tmp_path, monkeypatch):
    from ui.connection.page import ConnectionPage

    monkeypatch.setenv("UPLINK_CONSOLE_DATA_DIR", str(tmp_path))
    page = ConnectionPage("profile-wait", "Wait", raw=False)
    qtbot.addWidget(page)
    tts = platforms.get("tts")
    profile = tts.validate({"app": UID, "password": "NNSXS.TEST"})
    # Nobody listens there: the session keeps retrying and the downlink waits in the outbox.
    config = tts.connection(profile).replace(
        host="127.0.0.1", port=free_port(), transport=Transport.TCP, username=None, password=None
    )
    view = page.downlinks_view

    async def scenario():
        page.connect_platform("tts", profile, config, history_name="profile wait-test")
        await until(lambda: page.bridge.outbox_key is not None, 10)
        composer = page.open_composer({"device_id": "dev1", "f_port": 2})
        composer.editor.edit.setPlainText("01")
        composer.send_button.click()
        await until(lambda: len(view.model.rows) == 1 and view.model.rows[0]["state"] == "outbox", 15)
        view.table.selectRow(0)
        assert view.cancel_button.isEnabled()
        view.cancel_button.click()
        await until(lambda: view.model.rows[0]["state"] == "cancelled", 10)
        view.table.selectRow(0)
        assert view.retry_button.isEnabled() and not view.cancel_button.isEnabled()
        view.retry_button.click()
        await until(lambda: view.model.rows[0]["state"] == "outbox", 10)
        assert view.model.rows[0]["attempt"] == 2
        # A window opening the connection again sees it: downlinks() on open.
        view.model.load([])
        view.reload()
        await until(lambda: len(view.model.rows) == 1, 10)
        await asyncio.sleep(0)
        page.disconnect()

    try:
        loop.run_until_complete(scenario())
    finally:
        page.shutdown()


def test_an_older_copy_of_a_downlink_never_replaces_a_newer_one(qtbot):
    """The engine's notification of the hand-over can reach the window before the reply to Send
    (or a reload's list): the table keeps the copy with more transitions."""
    from ui.downlink.downlinks_view import DownlinksModel

    model = DownlinksModel()
    queued = {"id": "d1", "state": "outbox", "transitions": [["outbox", "2026-12-01T12:00:00Z", None]]}
    handed = {**queued, "state": "handed-over", "transitions": [*queued["transitions"], ["handed-over", "t2", None]]}
    model.upsert(handed)
    model.upsert(queued)  # the reply to Send, after the notification
    model.announce()
    assert [e["state"] for e in model.rows] == ["handed-over"]
    model.upsert(queued)
    model.announce()
    assert [e["state"] for e in model.rows] == ["handed-over"]
    model.upsert(handed)
    model.load([queued])  # a reload that read the outbox before the hand-over
    assert [e["state"] for e in model.rows] == ["handed-over"]

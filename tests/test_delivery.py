"""Delivery tracking: the state machine and matcher from recorded TTS and ThingPark event sequences
(parsed by the real platform parsers from the samples), in memory and through a real outbox file;
then one TTS downlink driven from the outbox to acknowledged through the real engine process by a
simulated network on mosquitto that answers each push with queued, sent and ack events."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path

import orjson
import paho.mqtt.client as paho
import pytest

from app import delivery, platforms
from app.delivery import Tracked
from app.outbox import Outbox, meta_for_request, new_downlink_id, process_token, tag_request
from app.platforms.base import DownlinkRequest
from tests.conftest import until

SAMPLES = Path("/work/shared/samples")
ROOT = Path(__file__).resolve().parent.parent
TTS = platforms.get("tts")
THINGPARK = platforms.get("thingpark")
UID = "app1"


def _sample(name: str) -> dict:
    path = SAMPLES / name
    if not path.exists():
        path = ROOT / "tests" / "samples" / name
    return json.loads(path.read_text())


def tts_event(kind: str, correlation_ids, *, device="dev1", f_port=15, frm_payload="vu8=", f_cnt=11, error=None):
    """A TTS downlink event as the server publishes it: the recorded down/ack body with its key
    and ids changed, parsed by the real parser."""
    doc = _sample("tts_down_ack_1.json")
    body = doc.pop("downlink_ack")
    body.update(f_port=f_port, frm_payload=frm_payload, f_cnt=f_cnt, correlation_ids=list(correlation_ids))
    doc["end_device_ids"]["device_id"] = device
    doc["correlation_ids"] = ["as:downlink:01HSERVER", *correlation_ids]
    suffix = kind.removeprefix("downlink_")
    if kind == "downlink_failed":
        doc[kind] = {"downlink": body, "error": error or {"namespace": "pkg/networkserver", "name": "too_late"}}
    else:
        doc[kind] = body
    events = TTS.parse(f"v3/{UID}/devices/{device}/down/{suffix}", orjson.dumps(doc))
    assert len(events) == 1 and events[0].kind == kind
    return events[0]


def thingpark_event(*, status=1, correlation_id=None, dev_eui="0018B20000000D48", f_port=1, f_cnt=47):
    doc = _sample("thingpark_downlink_sent_1.json")
    body = doc["DevEUI_downlink_Sent"]
    body.update(DeliveryStatus=status, DevEUI=dev_eui, FPort=f_port, FCntDn=f_cnt)
    if correlation_id is not None:
        body["CorrelationID"] = correlation_id
    events = THINGPARK.parse(f"mqtt/things/{dev_eui}/downlink_sent", orjson.dumps(doc))
    assert len(events) == 1
    return events[0]


def tts_rejected(correlation_id: str, dev_eui="0018B20000000D48", f_port=1):
    body = {
        "DevEUI_downlink_Rejected": {
            "DevEUI": dev_eui,
            "FPort": f_port,
            "CorrelationID": correlation_id,
            "DownlinkRejectionCause": "Payload too long for the data rate",
        }
    }
    return THINGPARK.parse(f"mqtt/things/{dev_eui}/x", orjson.dumps(body))[0]


def tracked_tts(downlink_id: str, state="handed-over", order=1, **kw) -> Tracked:
    values = dict(device_id="dev1", f_port=15, payload_hex="beef")
    values.update(kw)
    ids = (delivery.console_correlation_id(downlink_id), *values.pop("user_ids", ()))
    return Tracked(downlink_id, state, "tts", correlation_ids=ids, order=order, **values)


# ----- the state machine, in memory --------------------------------------------------------


def test_tts_sequence_queued_sent_ack_follows_the_console_correlation_id():
    mine = tracked_tts("a1b2c3d4e5f60718")
    tag = delivery.console_correlation_id(mine.id)
    events = [tts_event(k, [tag]) for k in ("downlink_queued", "downlink_sent", "downlink_ack")]
    changes = delivery.replay(events, [mine])
    assert [c.state for c in changes] == ["queued", "sent", "acknowledged"]
    assert mine.state == "acknowledged" and mine.f_cnt == 11


def test_events_out_of_order_never_move_a_state_backwards():
    mine = tracked_tts("00000000000000aa")
    tag = delivery.console_correlation_id(mine.id)
    events = [tts_event(k, [tag]) for k in ("downlink_ack", "downlink_sent", "downlink_queued", "downlink_nack")]
    changes = delivery.replay(events, [mine])
    assert [c.state for c in changes] == ["acknowledged"]
    # sent before queued: sent stays
    other = tracked_tts("00000000000000bb")
    tag = delivery.console_correlation_id(other.id)
    changes = delivery.replay([tts_event("downlink_sent", [tag]), tts_event("downlink_queued", [tag])], [other])
    assert [c.state for c in changes] == ["sent"]


def test_foreign_downlinks_are_ignored():
    mine = tracked_tts("1111111111111111")
    someone_else = [
        tts_event("downlink_queued", [delivery.console_correlation_id("2222222222222222")]),  # another console
        tts_event("downlink_sent", ["their-app:42"], frm_payload="AQI="),  # other payload, their own ids
        tts_event("downlink_ack", [], device="dev2"),  # another device
        tts_event("downlink_sent", [], f_port=99),  # another port
    ]
    assert delivery.replay(someone_else, [mine]) == []
    assert mine.state == "handed-over"


def test_without_the_console_id_tts_matches_the_users_id_then_device_port_and_payload():
    with_user_id = tracked_tts("3333333333333333", user_ids=("my-correlation-id",), payload_hex="0102", order=1)
    by_payload = tracked_tts("4444444444444444", order=2)
    changes = delivery.replay([tts_event("downlink_sent", ["my-correlation-id"])], [with_user_id, by_payload])
    assert [(c.id, c.state) for c in changes] == [(with_user_id.id, "sent")]
    changes = delivery.replay([tts_event("downlink_queued", [])], [with_user_id, by_payload])
    assert [(c.id, c.state) for c in changes] == [(by_payload.id, "queued")]


def test_tts_failure_carries_the_platforms_reason():
    mine = tracked_tts("5555555555555555")
    error = {"namespace": "pkg/networkserver", "name": "application_downlink_too_long", "message_format": "too long"}
    changes = delivery.replay(
        [tts_event("downlink_failed", [delivery.console_correlation_id(mine.id)], error=error)], [mine]
    )
    assert changes[0].state == "failed"
    assert "too long" in changes[0].detail and "application_downlink_too_long" in changes[0].detail


def test_thingpark_correlation_id_then_deveui_port_and_frame_counter():
    a = Tracked(
        "aaaaaaaaaaaaaaaa",
        "handed-over",
        "thingpark",
        dev_eui="0018B20000000D48",
        f_port=1,
        correlation_ids=("AAAAAAAAAAAAAAAA",),
        order=1,
    )
    b = Tracked(
        "bbbbbbbbbbbbbbbb",
        "handed-over",
        "thingpark",
        dev_eui="0018B20000000D48",
        f_port=1,
        correlation_ids=("BBBBBBBBBBBBBBBB",),
        order=2,
    )
    # B's report arrives first (CorrelationID, FCntDn 48), then a repeat of it without a CorrelationID.
    changes = delivery.replay(
        [thingpark_event(correlation_id="BBBBBBBBBBBBBBBB", f_cnt=48), thingpark_event(f_cnt=48)], [a, b]
    )
    assert [(c.id, c.state) for c in changes] == [(b.id, "sent")]
    assert b.f_cnt == 48 and a.state == "handed-over"
    # A report with no CorrelationID and a new counter is the oldest one still waiting: A.
    changes = delivery.replay([thingpark_event(f_cnt=49)], [a, b])
    assert [(c.id, c.state) for c in changes] == [(a.id, "sent")]


def test_thingpark_failed_delivery_and_rejection_give_the_reason_and_foreign_ids_are_ignored():
    mine = Tracked(
        "cccccccccccccccc",
        "handed-over",
        "thingpark",
        dev_eui="0018B20000000D48",
        f_port=1,
        correlation_ids=("CCCCCCCCCCCCCCCC",),
    )
    assert delivery.replay([thingpark_event(status=1, correlation_id="DDDDDDDDDDDDDDDD")], [mine]) == []
    changes = delivery.replay([thingpark_event(status=0, correlation_id="cccccccccccccccc")], [mine])
    assert changes[0].state == "failed" and "B0" in changes[0].detail and "too late" in changes[0].detail
    other = Tracked(
        "eeeeeeeeeeeeeeee",
        "handed-over",
        "thingpark",
        dev_eui="0018B20000000D48",
        f_port=1,
        correlation_ids=("EEEEEEEEEEEEEEEE",),
    )
    changes = delivery.replay([tts_rejected("EEEEEEEEEEEEEEEE")], [other])
    assert changes[0].state == "failed" and "too long for the data rate" in changes[0].detail


def test_no_news_moves_on_with_any_news_and_cancelled_never_moves():
    assert delivery.may_move("no-news", "sent") and delivery.may_move("no-news", "acknowledged")
    assert not delivery.may_move("cancelled", "sent")
    assert not delivery.may_move("acknowledged", "failed")
    assert delivery.expects_news("tts", "sent", True) and not delivery.expects_news("tts", "sent", False)
    assert not delivery.expects_news("thingpark", "sent", True)
    assert not delivery.expects_news("drogue", "handed-over", False)


# ----- through a real outbox file ----------------------------------------------------------


def _tts_entry(box: Outbox, *, confirmed=True, no_news_after=None) -> dict:
    downlink_id = new_downlink_id()
    request = tag_request(
        "tts", DownlinkRequest(device_id="dev1", f_port=15, payload=b"\xbe\xef", confirmed=confirmed), downlink_id
    )
    message = TTS.encode_downlink({"app": UID}, request)
    meta = meta_for_request("tts", request, id=downlink_id)
    if no_news_after is not None:
        meta["no_news_after"] = no_news_after
    return box.add(message, meta)


def test_outbox_follows_events_keeps_transitions_and_expires_to_no_news(tmp_path):
    box = Outbox("delivery test", path=tmp_path / "o.sqlite")
    first = _tts_entry(box)
    second = _tts_entry(box, no_news_after=0.05)
    owner = process_token()
    for _ in range(2):
        claim = box.claim_next(owner)
        box.handed_over(claim.id, owner)
    tag = delivery.console_correlation_id(first["id"])
    for kind in ("downlink_ack", "downlink_queued", "downlink_sent"):  # out of order
        box.observe(tts_event(kind, [tag]))
    entry = box.entry(first["id"])
    assert entry["state"] == "acknowledged"
    assert [t[0] for t in entry["transitions"]] == ["outbox", "handed-over", "acknowledged"]
    assert all(t[1].endswith("Z") for t in entry["transitions"])
    # the second hears nothing within its timeout, then news arrives late
    import time

    time.sleep(0.1)
    assert box.expire() == 1
    assert box.entry(second["id"])["state"] == "no-news"
    assert box.entry(first["id"])["state"] == "acknowledged"
    box.observe(tts_event("downlink_sent", [delivery.console_correlation_id(second["id"])]))
    late = box.entry(second["id"])
    assert late["state"] == "sent" and late["reason"] is None
    assert [t[0] for t in late["transitions"]] == ["outbox", "handed-over", "no-news", "sent"]


def test_an_event_for_an_entry_still_claimed_counts_as_its_hand_over(tmp_path):
    box = Outbox("delivery test 2", path=tmp_path / "o.sqlite")
    entry = _tts_entry(box)
    owner = process_token()
    claim = box.claim_next(owner)
    box.observe(tts_event("downlink_queued", [delivery.console_correlation_id(entry["id"])]))
    assert box.entry(entry["id"])["state"] == "queued"
    assert box.handed_over(claim.id, owner)["state"] == "queued"  # not moved back
    assert box.claim_next(owner) is None  # and not published again


# ----- the real engine process and a simulated network -------------------------------------


class SimulatedNetwork:
    """Stands in for The Things Stack on mosquitto: every down/push it sees is answered with
    down/queued, down/sent and down/ack events carrying the pushed correlation ids."""

    def __init__(self, port: int, uid: str = UID, answers=("queued", "sent", "ack")) -> None:
        self.uid = uid
        self.answers = answers  # "failed" answers with the network server's error for a too long payload
        self.pushes: list[tuple[str, dict]] = []
        self.subscribed = threading.Event()
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"simulated-tts-{id(self)}")
        self.client.on_connect = lambda c, u, f, rc, p=None: c.subscribe(f"v3/{uid}/devices/+/down/push", 0)
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        self.client.on_message = self._answer
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self.subscribed.wait(10), "the simulated network could not subscribe"

    def _answer(self, client, userdata, message) -> None:
        device = message.topic.split("/")[3]
        push = orjson.loads(message.payload)
        self.pushes.append((message.topic, push))
        for n, item in enumerate(push["downlinks"]):
            ids = item.get("correlation_ids", [])
            for kind in self.answers:
                body = {k: v for k, v in item.items() if k in ("f_port", "frm_payload", "priority", "confirmed")}
                body.update(correlation_ids=ids, f_cnt=100 + n)
                if kind == "failed":
                    body = {
                        "downlink": body,
                        "error": {
                            "namespace": "pkg/networkserver",
                            "name": "payload_too_long",
                            "message_format": "payload too long for the data rate",
                        },
                    }
                doc = {
                    "end_device_ids": {"device_id": device, "application_ids": {"application_id": self.uid}},
                    "correlation_ids": ["ns:downlink:01SIM", *ids],
                    f"downlink_{kind}": body,
                }
                client.publish(f"v3/{self.uid}/devices/{device}/down/{kind}", orjson.dumps(doc), qos=0)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def tts_profile(port: int) -> dict:
    return {"url": f"mqtt://127.0.0.1:{port}", "app": UID, "password": "NNSXS.TEST", "upstream": "all"}


async def test_a_tts_downlink_goes_from_outbox_to_acknowledged_through_the_engine(broker):
    from app.mqtt.process import EngineProcess, ProcessSession

    network = SimulatedNetwork(broker.ports.plain)
    engine = EngineProcess()
    key = f"delivery-engine-{new_downlink_id()}"
    seen: list[dict] = []
    engine.watch_downlinks(key, seen.extend)
    try:
        # Sent before any session exists: it waits in the outbox.
        downlink_id = new_downlink_id()
        request = tag_request(
            "tts", DownlinkRequest(device_id="dev1", f_port=15, payload=b"\xbe\xef", confirmed=True), downlink_id
        )
        message = TTS.encode_downlink({"app": UID}, request)
        entry = await engine.send_downlink(key, message, meta_for_request("tts", request, id=downlink_id))
        assert entry["state"] == "outbox" and entry["id"] == downlink_id
        await asyncio.sleep(0.3)
        assert network.pushes == []

        profile = tts_profile(broker.ports.plain)
        rows = []
        session = ProcessSession(
            engine,
            TTS.connection(profile),
            on_batch=rows.append,
            on_state=lambda c: None,
            platform="tts",
            profile=profile,
            history_name=key,
        )
        await session.start()
        await until(lambda: any(e["id"] == downlink_id and e["state"] == "acknowledged" for e in seen), 20)
        final = [e for e in seen if e["id"] == downlink_id][-1]
        states = [t[0] for t in final["transitions"]]
        assert states == ["outbox", "handed-over", "queued", "sent", "acknowledged"]
        assert len(network.pushes) == 1
        topic, push = network.pushes[0]
        assert topic == f"v3/{UID}/devices/dev1/down/push"
        assert delivery.console_correlation_id(downlink_id) in push["downlinks"][0]["correlation_ids"]
        # The same events still reach the uplink table (not consumed by the outbox).
        await until(lambda: sum(len(batch.get("kind", ())) for batch in rows) >= 3)
        kinds = {k for batch in rows for k in batch["kind"]}
        assert {"downlink_queued", "downlink_sent", "downlink_ack"} <= kinds
        listed = await engine.downlinks(key)
        assert [e["id"] for e in listed] == [downlink_id] and listed[0]["state"] == "acknowledged"
        await session.stop()
    finally:
        engine.close()
        network.close()


if __name__ == "__main__":  # pragma: no cover
    pytest.main([__file__])

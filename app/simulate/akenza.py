"""akenza traffic: MQTT devices publishing to akenza's device connector, and akenza's downlinks.

On akenza the console is itself a device (app/platforms/akenza.py): it publishes uplinks and
subscribes to its downlinks. The demo's akenza broker carries a fleet of devices with an uplink
secret, each publishing its JSON to `/up/{secret}/id/{deviceId}` (door contacts also to the
`alerts` sub-topic when they open); the demo connection widens its downlink topic to
`/+/{secret}/id/+/#` so it shows the other devices' uplinks next to its own downlinks. When the
console publishes an uplink as its device, the simulator plays akenza's rule engine and sends that
device a downlink on `/down/{secret}/id/{deviceId}/ack` a moment later. akenza devices do not join:
a rejoin frame is left out.
"""

from __future__ import annotations

import datetime as dt

import orjson

from app.simulate.base import Answer, Message, Simulator, malformed_body
from app.simulate.fleet import JOIN, MALFORMED, Fleet, Frame, iso_z

SECRET = "demo-uplink-secret"
CONNECTOR_ID = "demo-connector"
CONSOLE_DEVICE = "uplink-console-demo"


class AkenzaSimulator(Simulator):
    platform = "akenza"

    def __init__(self, fleet: Fleet, *, secret: str = SECRET, console_device: str = CONSOLE_DEVICE, **settings) -> None:
        super().__init__(fleet, **settings)
        self.secret = secret
        self.console_device = console_device

    def topic(self, device_id: str, subtopic: str = "") -> str:
        topic = f"/up/{self.secret}/id/{device_id}"
        return f"{topic}/{subtopic}" if subtopic else topic

    def messages(self, frame: Frame) -> list[Message]:
        device = frame.device
        if frame.kind == JOIN:
            return []
        if frame.kind == MALFORMED:
            good = orjson.dumps({"temperature": 20})
            return [Message(self.topic(device.device_id), malformed_body(frame, good), kind=MALFORMED)]
        best = frame.best
        body = {**(frame.decoded or {}), "rssi": best.rssi if best else None, "counter": frame.f_cnt}
        out = [Message(self.topic(device.device_id), orjson.dumps(body))]
        if device.type.name == "door-contact" and (frame.decoded or {}).get("open"):
            alert = {"alert": "door opened", "openings": frame.decoded.get("openings")}
            out.append(Message(self.topic(device.device_id, "alerts"), orjson.dumps(alert)))
        return out

    def listen(self) -> list[str]:
        return [f"/up/{self.secret}/id/+/#"]

    def answer(self, topic: str, payload: bytes, properties: dict | None = None) -> list[Answer]:
        levels = topic.split("/")
        if len(levels) < 5 or levels[1] != "up" or levels[2] != self.secret or levels[3] != "id":
            return []
        device_id = levels[4]
        if self.fleet.device_named(device_id) is not None:
            return []  # the fleet's own uplinks come back through the subscription
        try:
            received = orjson.loads(payload)
        except orjson.JSONDecodeError:
            received = None
        body = {
            "status": "stored" if received is not None else "rejected: not JSON",
            "received_bytes": len(payload),
            "at": iso_z(dt.datetime.now(dt.UTC), "milliseconds"),
        }
        topic_out = f"/down/{self.secret}/id/{device_id}/ack"
        return [Answer(0.8, Message(topic_out, orjson.dumps(body), kind="answer"))]

    def profile(self, url: str) -> dict:
        return {
            "url": url,
            "device_id": self.console_device,
            "auth_mode": "uplink-secret",
            "connector_id": CONNECTOR_ID,
            "uplink_secret": self.secret,
            "downlink_topic": "/+/{secret}/id/+/#",
            "mqtt_version": "3.1.1",
        }

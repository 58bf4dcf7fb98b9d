"""Drogue Cloud traffic: the MQTT integration's CloudEvents on app/<application>, and a device's
response to each command the console publishes on command/<application>/<device>/<command>.

Structured mode (the default, the only one on MQTT 3.1.1) publishes each event as one CloudEvent
JSON document (samples/drogue_structured_1.json); binary mode (MQTT 5) publishes the device's data
as it is, with the content type as the MQTT content type and every other attribute as a user
property named like the attribute. In real Drogue each subscriber picks its mode with a SUBSCRIBE
user property; the demo publishes one mode for the demo connection: binary when the broker speaks
MQTT 5 (mosquitto), structured on the fallback broker (amqtt speaks 3.1.1 only).

LoRaWAN devices carry their FPort as the subject (channel), as Drogue's TTN endpoint does; a
rejoin is a connection event (io.drogue.connection.v1, data {"connected": true}). A command is
answered the way a Drogue device answers: with an event of its own on the "command-response"
channel, data {"command", "status", "payload_hex"}, about half a second later.
"""

from __future__ import annotations

import datetime as dt
import random
import uuid
from urllib.parse import quote

import orjson

from app.platforms.drogue import CONNECTION_EVENT, DEVICE_EVENT
from app.simulate.base import Answer, Message, Simulator, malformed_body
from app.simulate.fleet import JOIN, MALFORMED, Fleet, Frame, iso_z

APPLICATION = "uplink-demo"
RESPONSE_CHANNEL = "command-response"


class DrogueSimulator(Simulator):
    platform = "drogue"

    def __init__(self, fleet: Fleet, *, app: str = APPLICATION, content_mode: str = "structured", **settings):
        super().__init__(fleet, **settings)
        if content_mode not in ("structured", "binary"):
            raise ValueError(f"Drogue's content mode is structured or binary, not {content_mode!r}.")
        self.application = app
        self.content_mode = content_mode
        self.needs_mqtt5 = content_mode == "binary"

    @property
    def topic(self) -> str:
        return f"app/{self.application}"

    def attributes(
        self, device_id: str, event_type: str, subject: str, moment: dt.datetime, rnd: random.Random | None = None
    ) -> dict:
        app, dev = quote(self.application, safe=""), quote(device_id, safe="")
        return {
            "specversion": "1.0",
            "id": str(uuid.UUID(int=(rnd or self.rnd).getrandbits(128), version=4)),
            "source": f"drogue://{app}/{dev}",
            "type": event_type,
            "subject": subject,
            "time": iso_z(moment, "milliseconds"),
            "datacontenttype": "application/json",
            "application": self.application,
            "device": device_id,
            "instance": "drogue",
            "partitionkey": f"{app}/{dev}",
        }

    def event(self, attributes: dict, data: object, kind: str) -> Message:
        if self.content_mode == "binary":
            properties = tuple((k, v) for k, v in attributes.items() if k != "datacontenttype")
            return Message(self.topic, orjson.dumps(data), attributes["datacontenttype"], properties, kind=kind)
        return Message(self.topic, orjson.dumps({**attributes, "data": data}), kind=kind)

    def messages(self, frame: Frame) -> list[Message]:
        device_id = frame.device.device_id
        if frame.kind == MALFORMED:
            # No specversion: not a CloudEvent in either mode (binary mode has no attributes either).
            good = orjson.dumps({"id": "x", "type": DEVICE_EVENT, "data": {}})
            return [Message(self.topic, malformed_body(frame, good), kind=MALFORMED)]
        if frame.kind == JOIN:
            attributes = self.attributes(device_id, CONNECTION_EVENT, "connection", frame.time)
            return [self.event(attributes, {"connected": True}, "join")]
        attributes = self.attributes(device_id, DEVICE_EVENT, str(frame.f_port), frame.time)
        attributes["lorawanport"] = str(frame.f_port)
        return [self.event(attributes, frame.decoded, "uplink")]

    def listen(self) -> list[str]:
        return [f"command/{self.application}/+/+"]

    def answer(self, topic: str, payload: bytes, properties: dict | None = None) -> list[Answer]:
        parts = topic.split("/")
        if len(parts) != 4 or parts[0] != "command" or parts[1] != self.application:
            return []
        device = self.fleet.device_named(parts[2])
        if device is None:
            return []
        data = {"command": parts[3], "status": "ok", "payload_hex": bytes(payload).hex()}
        now = dt.datetime.now(dt.UTC)
        attributes = self.attributes(device.device_id, DEVICE_EVENT, RESPONSE_CHANNEL, now, self.answer_rnd)
        return [Answer(0.5, self.event(attributes, data, "answer"))]

    def profile(self, url: str) -> dict:
        binary = self.content_mode == "binary"
        return {
            "url": url,
            "application": self.application,
            "auth_mode": "anonymous",
            "content_mode": self.content_mode,
            "mqtt_version": "5" if binary else "3.1.1",
        }

"""Any MQTT broker: any topic, the payload kept as it is (shown as text, JSON or hex)."""

from __future__ import annotations

import orjson

from app.events import Event, utc_now_iso
from app.mqtt.config import Subscription
from app.platforms.base import (
    DownlinkRequest,
    EncodeError,
    OutgoingMessage,
    Platform,
    ProfileField,
    assign_pages,
    broker_fields,
    config_from_profile,
)


class GenericPlatform(Platform):
    name = "generic"
    label = "Generic MQTT"
    description = "Any MQTT broker and topic; payloads shown as text, JSON or hex."
    fields = (
        *broker_fields("mqtt://localhost:1883"),
        ProfileField(
            "topics",
            "Topics",
            default="#",
            required=True,
            help="Topic filters to subscribe to, separated by commas or new lines.",
        ),
        ProfileField("qos", "QoS", "int", default=0, minimum=0, maximum=2),
        ProfileField("publish_topic", "Publish topic", help="Where downlinks/publishes go."),
    )
    fields = assign_pages(
        fields,
        {
            "broker": ("url", "username", "password", "client_id", "mqtt_version", "keepalive", "clean_session"),
            "topics": ("topics", "qos", "publish_topic"),
            "tls": ("ca_file", "cert_file", "key_file", "key_password", "verify_certificate", "allow_expired"),
        },
    )

    def connection(self, profile: dict):
        profile = self.validate(profile)
        topics = [t.strip() for t in str(profile["topics"]).replace("\n", ",").split(",") if t.strip()]
        return config_from_profile(profile, [Subscription(t, profile["qos"]) for t in topics])

    def parse(self, topic: str, payload: bytes, properties: dict | None = None) -> list[Event]:
        decoded = None
        if payload[:1] in (b"{", b"["):
            try:
                decoded = orjson.loads(payload)
            except orjson.JSONDecodeError:
                decoded = None
        return [
            Event(
                platform="generic",
                kind="event",
                received_at=utc_now_iso(),
                payload_hex=payload.hex(),
                decoded=decoded,
                topic=topic,
            )
        ]

    def encode_downlink(self, profile: dict, request: DownlinkRequest) -> OutgoingMessage:
        topic = profile.get("publish_topic")
        if not topic:
            raise EncodeError("Enter the topic to publish to.")
        if request.payload is None and request.decoded is None:
            raise EncodeError("Enter a payload to publish.")
        body = request.payload if request.payload is not None else orjson.dumps(request.decoded)
        props = {"content_type": request.content_type} if request.content_type else {}
        return OutgoingMessage(topic, body, int(profile.get("qos") or 0), False, props)


PLATFORM = GenericPlatform()

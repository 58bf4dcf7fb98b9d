"""What every platform simulator is: messages from the fleet's frames in the platform's own format
on its own topics, answers to the downlinks a console sends it, and the console connection profile
that reads what it publishes (the demo opens one such connection per platform).

A simulator is pure: it turns frames and received downlinks into `Message`s and never touches a
socket; app.simulate.run publishes them (so tests can check thousands of messages without a broker).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from app.simulate.fleet import Fleet, Frame


@dataclass(frozen=True, slots=True)
class Message:
    topic: str
    payload: bytes
    content_type: str | None = None  # MQTT 5 only
    user_properties: tuple[tuple[str, str], ...] = ()  # MQTT 5 only
    kind: str = "uplink"  # what it is, for the counts a run prints: uplink, join, malformed, answer, …

    @property
    def properties(self) -> dict:
        """As the engine hands properties to a parser (app.mqtt.session)."""
        out: dict = {}
        if self.content_type is not None:
            out["content_type"] = self.content_type
        if self.user_properties:
            out["user_properties"] = [list(pair) for pair in self.user_properties]
        return out


@dataclass(frozen=True, slots=True)
class Answer:
    delay_s: float  # after the downlink arrived
    message: Message


class Simulator:
    """One platform's side of the demo; subclasses write the formats."""

    platform = ""
    needs_mqtt5 = False  # True when what it publishes only exists on MQTT 5 (Drogue's binary mode)

    def __init__(self, fleet: Fleet, **settings) -> None:
        self.fleet = fleet
        self.settings = settings
        # Ids in messages come from a stream of their own, seeded like the fleet, and answers from
        # another: a downlink answered never changes the messages that follow it.
        self.rnd = random.Random(fleet.options.seed * 7919 + 17)
        self.answer_rnd = random.Random(fleet.options.seed * 104729 + 29)

    def messages(self, frame: Frame) -> list[Message]:
        """What the platform publishes for this frame (a malformed frame: one body it cannot read)."""
        raise NotImplementedError

    def listen(self) -> list[str]:
        """The topic filters the simulator subscribes to for downlinks it answers."""
        return []

    def answer(self, topic: str, payload: bytes, properties: dict | None = None) -> list[Answer]:
        """The platform's reports for a downlink or command the console published; [] to ignore it."""
        return []

    def profile(self, url: str) -> dict:
        """The console connection (platform profile values) that reads this simulator on `url`."""
        raise NotImplementedError


def malformed_body(frame: Frame, good: bytes) -> bytes:
    """One of a few bodies no platform parser reads: cut short, not JSON, or binary noise."""
    rnd = random.Random(frame.malformed_seed)
    choice = rnd.randrange(3)
    if choice == 0:
        return good[: max(1, len(good) // 3)]  # the broker or a bridge cut the message
    if choice == 1:
        return b"<html><body>502 Bad Gateway</body></html>"  # a proxy's page where JSON belongs
    return bytes(rnd.randrange(256) for _ in range(24)) + b"\xff\xfe"

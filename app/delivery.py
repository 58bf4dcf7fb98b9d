"""What happened to a downlink: the delivery state machine and the matcher of platform events.

Pure functions over plain values, no MQTT, no SQLite: the outbox (app/outbox.py) calls them inside
its transactions, and tests/test_delivery.py drives them with event sequences recorded from The
Things Stack and ThingPark.

States, in the order a downlink lives them:
    outbox -> handed-over -> queued -> sent -> acknowledged | not-acknowledged | failed
and, off that line, "no-news" (nothing heard within the platform's timeout) and "cancelled".

Rules:
- A state only moves forward (RANK): events arrive out of order (TTS may report `down/ack` before
  `down/sent` reaches this client), and a late `queued` must not undo a `sent`.
- "no-news" is not an answer: any event that arrives later still moves the downlink on.
- "cancelled" never moves (the user took it back before it was handed over).
- Events for downlinks the console did not send (another application, another console, the
  platform's own console) are ignored: the console tags every downlink it sends (TTS:
  `uplink-console:downlink:<id>` in correlation_ids; ThingPark: the CorrelationID), and an event
  carrying another console's tag, or another CorrelationID, is someone else's.

Matching, per platform (first rule that applies):
- TTS: the console's correlation id; then the user's own correlation ids; then device id + FPort +
  frame payload, the oldest downlink of ours in flight that this event can still move.
- ThingPark: the CorrelationID; then DevEUI + FPort + FCnt (the downlink frame counter learned from
  an earlier event of the same downlink); then DevEUI + FPort, the oldest in flight with no
  counter learned yet. ThingPark reports `DevEUI_downlink_Sent` (sent, or failed with its
  DeliveryFailedCause) and `DevEUI_downlink_Rejected` (failed); it has no "queued" or ack event.
- Drogue: its MQTT integration reports no command responses (platform-docs/drogue-cloud-mqtt-
  integration.txt: commands are published, nothing comes back), and Tektelic, akenza and generic
  brokers report nothing either: their downlinks end at "handed-over", which is the last thing
  that can be known, and they never become "no-news".
"""

from __future__ import annotations

from dataclasses import dataclass

OUTBOX = "outbox"
HANDED_OVER = "handed-over"
QUEUED = "queued"
SENT = "sent"
ACKNOWLEDGED = "acknowledged"
NOT_ACKNOWLEDGED = "not-acknowledged"
FAILED = "failed"
NO_NEWS = "no-news"
CANCELLED = "cancelled"
STATES = (OUTBOX, HANDED_OVER, QUEUED, SENT, ACKNOWLEDGED, NOT_ACKNOWLEDGED, FAILED, NO_NEWS, CANCELLED)

RANK = {
    OUTBOX: 0,
    HANDED_OVER: 1,
    QUEUED: 2,
    SENT: 3,
    ACKNOWLEDGED: 4,
    NOT_ACKNOWLEDGED: 4,
    FAILED: 4,
    NO_NEWS: -1,  # any news moves it on
    CANCELLED: 99,
}
EVENT_STATES = {
    "downlink_queued": QUEUED,
    "downlink_sent": SENT,
    "downlink_ack": ACKNOWLEDGED,
    "downlink_nack": NOT_ACKNOWLEDGED,
    "downlink_failed": FAILED,
}
# States after which nothing more is expected (cancelled included).
ANSWERED = frozenset({ACKNOWLEDGED, NOT_ACKNOWLEDGED, FAILED, CANCELLED})
# States a user may retry (a new attempt of the same downlink).
RETRYABLE = frozenset({FAILED, NO_NEWS, NOT_ACKNOWLEDGED, CANCELLED})
CONSOLE_CORRELATION_PREFIX = "uplink-console:downlink:"
# Platforms whose MQTT integration reports what happened to a downlink.
REPORTING_PLATFORMS = frozenset({"tts", "thingpark"})
# Seconds without news after which a downlink in flight becomes "no-news". TTS: a class A device
# gets a downlink only after its next uplink, which may be many minutes away; 10 min is a default
# the user can change (UPLINK_CONSOLE_DOWNLINK_TIMEOUT or meta["no_news_after"]).
DEFAULT_NO_NEWS_AFTER = {"tts": 600.0, "thingpark": 600.0}


def reports_delivery(platform: str) -> bool:
    return platform in REPORTING_PLATFORMS


def may_move(current: str, new: str) -> bool:
    """Whether a downlink in state `current` moves to `new` (never backwards; see the module)."""
    if current == CANCELLED or new == current:
        return False
    if current == NO_NEWS:
        return new != OUTBOX
    return RANK[new] > RANK[current]


def expects_news(platform: str, state: str, confirmed: bool) -> bool:
    """Whether the platform still has something to say about a downlink in this state (the
    no-news clock runs only then)."""
    if not reports_delivery(platform):
        return False
    if state in (HANDED_OVER, QUEUED):
        return True
    if state == SENT:
        # TTS acknowledges confirmed downlinks only; ThingPark's Sent is its last word.
        return platform == "tts" and confirmed
    return False


def console_correlation_id(downlink_id: str) -> str:
    return CONSOLE_CORRELATION_PREFIX + downlink_id


@dataclass(slots=True)
class Tracked:
    """What the matcher needs of one downlink of ours."""

    id: str
    state: str
    platform: str
    device_id: str | None = None
    dev_eui: str | None = None  # uppercase hex
    f_port: int | None = None
    payload_hex: str | None = None  # lowercase hex of the frame payload
    f_cnt: int | None = None  # learned from an earlier event
    correlation_ids: tuple[str, ...] = ()  # ours and the user's
    order: int = 0  # older first


@dataclass(slots=True)
class Change:
    """A move the outbox should store: downlink `id` goes to `state` at `at`."""

    id: str
    state: str
    detail: str | None = None  # the platform's reason (failed), or what the event said
    f_cnt: int | None = None
    at: str | None = None  # the event's own time, when it has one


def _upper(value) -> str:
    return str(value).strip().upper()


def match(event, candidates: list[Tracked]) -> Tracked | None:
    """The downlink of ours this event is about, or None (someone else's, or unknown)."""
    platform = event.platform
    mine = [c for c in candidates if c.platform == platform and c.state != CANCELLED]
    if not mine:
        return None
    if platform == "tts":
        return _match_tts(event, mine)
    if platform == "thingpark":
        return _match_thingpark(event, mine)
    return None


def _movable(event, c: Tracked) -> bool:
    new = EVENT_STATES.get(event.kind)
    return new is not None and c.state != OUTBOX and may_move(c.state, new)


def _match_tts(event, mine: list[Tracked]) -> Tracked | None:
    ids = [str(i) for i in (event.correlation_ids or ())]
    tagged = [i[len(CONSOLE_CORRELATION_PREFIX) :] for i in ids if i.startswith(CONSOLE_CORRELATION_PREFIX)]
    if tagged:
        by_id = {c.id: c for c in mine}
        for tag in tagged:
            if tag in by_id:
                return by_id[tag]
        return None  # another console's downlink
    wanted = set(ids)
    if wanted:
        for c in sorted(mine, key=lambda c: c.order):
            if wanted.intersection(i for i in c.correlation_ids if not i.startswith(CONSOLE_CORRELATION_PREFIX)):
                return c
    for c in sorted(mine, key=lambda c: c.order):
        if (
            c.device_id == event.device_id
            and c.f_port == event.f_port
            and c.payload_hex is not None
            and c.payload_hex == (event.payload_hex or "").lower()
            and _movable(event, c)
        ):
            return c
    return None


def _match_thingpark(event, mine: list[Tracked]) -> Tracked | None:
    ids = [_upper(i) for i in (event.correlation_ids or ()) if str(i).strip()]
    if ids:
        for c in mine:
            if any(_upper(i) in ids for i in c.correlation_ids):
                return c
        return None  # another application's CorrelationID
    dev_eui = _upper(event.dev_eui) if event.dev_eui else None
    same = [
        c
        for c in sorted(mine, key=lambda c: c.order)
        if dev_eui is not None and c.dev_eui is not None and _upper(c.dev_eui) == dev_eui and c.f_port == event.f_port
    ]
    if event.f_cnt is not None:
        for c in same:
            if c.f_cnt == event.f_cnt:
                return c  # this downlink's frame (a repeat of an event it already had moves nothing)
    for c in same:
        if c.f_cnt is None and _movable(event, c):
            return c
    return None


def change_for(event, tracked: Tracked) -> Change | None:
    """The move this event makes of a matched downlink, or None when it would go backwards."""
    new = EVENT_STATES.get(event.kind)
    if new is None:
        return None
    current = tracked.state
    if current == OUTBOX:
        # Published, and the platform answered before the hand-over was stored (or another
        # process published it): the event is proof enough that it was handed over.
        current = HANDED_OVER
    if not may_move(current, new):
        return None
    detail = event.error if new == FAILED else None
    if new == FAILED and not detail:
        detail = "The platform reported the downlink as failed without a reason."
    return Change(tracked.id, new, detail=detail, f_cnt=event.f_cnt, at=event.received_at)


def replay(events, tracked: list[Tracked]) -> list[Change]:
    """Applies a sequence of events to downlinks in memory: the changes in the order made (tests,
    and a view that wants to show what a recorded sequence would do)."""
    changes = []
    for event in events:
        if event.kind not in EVENT_STATES:
            continue
        target = match(event, tracked)
        if target is None:
            continue
        change = change_for(event, target)
        if change is None:
            continue
        target.state = change.state
        if change.f_cnt is not None and target.f_cnt is None:
            target.f_cnt = change.f_cnt
        changes.append(change)
    return changes

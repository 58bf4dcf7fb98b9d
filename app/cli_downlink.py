"""`uplink-console send …` and `uplink-console outbox …`: downlinks through a connection's outbox.

The commands use the same outbox file as the window (app/outbox.py; the key of a saved connection
is "profile <id>"), so a downlink sent from a script while the broker is away is sent later by the
window or by `outbox flush`, in order, once; and both can run at the same time.

    send --profile NAME [--device D | --dev-eui E] [--f-port N] (--hex H | --base64 B | --text S |
         --json J) [--confirmed] [--priority P] [--replace] [--command C] [--template T]
         [--wait-delivery SECONDS]
        Puts the downlink in the outbox, delivers it (and everything waiting before it) if the
        broker is reachable within the connection timeout, and prints one JSON line
        {"id", "state", "topic"}. Unreachable: exit 0 with state "outbox" (it is kept). With
        --wait-delivery it stays subscribed up to SECONDS for the platform's events and prints the
        state they led to. --template T starts from the connection's saved downlink template T
        (app/downlink_templates.py); the options given override its values. Exit status 1 when
        the broker refused it or the platform reported it failed / not acknowledged (the JSON
        line is printed all the same), 2 for bad input (nothing is put in the outbox).
    outbox list NAME [--json]   every downlink kept for the connection (JSON lines of entry dicts)
    outbox flush NAME [--timeout S]
        Connects and sends everything waiting, in order; prints how many; exit 0 when the outbox is
        empty, 1 when some still wait (broker unreachable, or S seconds were not enough).
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time

import orjson

log = logging.getLogger(__name__)
FLUSH_TIMEOUT = 60.0  # seconds `outbox flush` waits for the outbox to empty, by default
STALL_TIMEOUT_MIN = 10.0  # seconds without progress after which a connected send stops waiting


def add_parsers(sub) -> None:
    """Registers the `send` and `outbox` subcommands on the top-level subparsers."""
    s = sub.add_parser(
        "send",
        help="put a downlink in a saved connection's outbox and deliver it",
        description="Puts a downlink in the saved connection's outbox and delivers it if the broker can be "
        'reached; prints one JSON line {"id", "state", "topic"}. A downlink that cannot be delivered now '
        "stays in the outbox (state outbox) and is sent by the window or `outbox flush` later.",
    )
    s.add_argument("--profile", metavar="NAME", required=True, help="the saved connection (`profile list`)")
    target = s.add_mutually_exclusive_group()
    target.add_argument("--device", metavar="D", help="device id")
    target.add_argument("--dev-eui", metavar="E", help="DevEUI (16 hex digits)")
    s.add_argument("--f-port", metavar="N", type=int, help="LoRaWAN FPort")
    body = s.add_mutually_exclusive_group()
    body.add_argument("--hex", metavar="H", help="payload as hex (spaces, colons and 0x allowed)")
    body.add_argument("--base64", metavar="B", help="payload as base64")
    body.add_argument("--text", metavar="S", help="payload as UTF-8 text")
    body.add_argument("--json", metavar="J", help="a decoded payload (JSON) for the platform's encoder")
    s.add_argument("--confirmed", action="store_true", help="ask the device to acknowledge it")
    s.add_argument("--priority", metavar="P", help="The Things Stack scheduling priority")
    s.add_argument("--replace", action="store_true", help="replace the device's downlink queue (push otherwise)")
    s.add_argument("--command", metavar="C", help="Drogue command name")
    s.add_argument("--template", metavar="T", help="start from the connection's saved downlink template T")
    s.add_argument(
        "--wait-delivery",
        metavar="SECONDS",
        type=float,
        help="wait up to SECONDS for the platform to report what happened to it",
    )
    s.set_defaults(func=cmd_send)

    o = sub.add_parser(
        "outbox",
        help="list or flush a saved connection's outbox of downlinks",
        description="The downlinks of a saved connection: list them, or send everything that waits.",
    )
    osub = o.add_subparsers(dest="outbox_command", required=True, metavar="COMMAND")
    ol = osub.add_parser(
        "list",
        help="every downlink kept for the connection, oldest first",
        description="Every downlink kept for the connection, oldest first: time, id, state, device, FPort, topic "
        "and reason. With --json: JSON lines, one entry dict each (see app/outbox.py).",
    )
    ol.add_argument("name", metavar="NAME")
    ol.add_argument("--json", action="store_true", help="JSON lines of entry dicts")
    ol.set_defaults(func=cmd_outbox_list)
    of = osub.add_parser(
        "flush",
        help="connect and send everything waiting, in order",
        description="Connects and sends every waiting downlink in order; prints how many were sent. Exit "
        "status 0 when the outbox is empty afterwards, 1 when some still wait.",
    )
    of.add_argument("name", metavar="NAME")
    of.add_argument(
        "--timeout",
        metavar="S",
        type=float,
        default=FLUSH_TIMEOUT,
        help=f"seconds to wait for the outbox to empty (default {FLUSH_TIMEOUT:g})",
    )
    of.set_defaults(func=cmd_outbox_flush)


def connection_key(profile_id: str) -> str:
    """The outbox (and history) key of a saved connection, as the window names it."""
    return f"profile {profile_id}"


# ----- building the downlink ---------------------------------------------------------------


def _has_payload(args) -> bool:
    return any(getattr(args, k) is not None for k in ("hex", "base64", "text", "json"))


def _build_plain(args, platform, values: dict):
    """(message, meta) from the options alone, as `encode-downlink` builds it."""
    from app.cli import payload_from_args
    from app.outbox import meta_for_request, new_downlink_id, tag_request
    from app.platforms.base import DownlinkRequest

    payload, decoded = payload_from_args(args)
    request = DownlinkRequest(
        device_id=args.device,
        dev_eui=args.dev_eui,
        f_port=args.f_port,
        payload=payload,
        decoded=decoded,
        confirmed=args.confirmed,
        priority=args.priority,
        replace=args.replace,
        command=args.command,
        template=args.template if platform.name == "tektelic" else None,
    )
    downlink_id = new_downlink_id()
    tagged = tag_request(platform.name, request, downlink_id)
    message = platform.encode_downlink(values, tagged)
    meta = meta_for_request(platform.name, request, id=downlink_id)
    if request.command:
        meta["command"] = request.command
    return message, meta


def _build_from_template(args, platform, values: dict, saved, config):
    """(message, meta) from the saved template T with the options laid over it."""
    from app.cli import UsageError
    from app.compose import Composition
    from app.downlink_templates import TemplateError, TemplateStore
    from app.platforms.base import EncodeError

    store = TemplateStore(saved.id)
    if store.load_problem:
        print(f"uplink-console send: warning: {store.load_problem}", file=sys.stderr, flush=True)
    try:
        template = store.find(args.template)
    except TemplateError as exc:
        raise UsageError(str(exc)) from None
    if template.platform and template.platform != platform.name:
        raise UsageError(
            f"The template {template.name!r} was saved for {template.platform}, but {saved.name!r} is a "
            f"{platform.name} connection; choose a template of this connection."
        )
    comp = Composition(platform.name, values, config)
    comp.apply_values(template.fields)
    comp.set_payload(template.payload_text, template.payload_format)
    names = {f.name for f in comp.fields}
    overrides = {
        "device_id": args.device,
        "dev_eui": args.dev_eui,
        "f_port": args.f_port,
        "priority": args.priority,
        "command": args.command,
    }
    for name, value in overrides.items():
        if value is not None and name in names:
            comp.set(name, value)
    if args.device and "dev_eui" in names and "device_id" not in names:
        comp.set("dev_eui", args.device)
    if args.confirmed and "confirmed" in names:
        comp.set("confirmed", True)
    if args.replace:
        if "operation" in names:
            comp.set("operation", "replace")
        elif "flush_queue" in names:
            comp.set("flush_queue", True)
    if _has_payload(args):
        from app.cli import payload_from_args

        payload, decoded = payload_from_args(args)
        if decoded is not None:
            comp.set_payload(args.json, "json")
            if "payload_mode" in names:
                comp.set("payload_mode", "decoded_payload" if platform.name == "tts" else "payload")
        else:
            comp.set_payload(payload.hex(), "hex")
            if "payload_mode" in names and comp.values.get("payload_mode") in ("decoded_payload", "payload"):
                comp.set("payload_mode", None)
    composed = comp.build()
    if composed.message is None:
        raise EncodeError(composed.error or "The template does not make a downlink.")
    return composed.message, dict(composed.meta or {}, platform=platform.name)


# ----- delivering --------------------------------------------------------------------------


class _Delivery:
    """One connection's session and outbox runner in this process, for as long as a command runs."""

    def __init__(self, platform, values: dict, key: str, *, subscribe: bool) -> None:
        from app.outbox import OutboxRunner

        self.platform = platform
        self.values = values
        self.config = platform.connection(values)
        if not subscribe:
            self.config = self.config.replace(subscriptions=())
        self.runner = OutboxRunner(key)
        self.session = None
        self.failure: str | None = None  # a sentence, when the session failed for good
        self.last_error: str | None = None

    async def open(self) -> None:
        await self.runner.open()

    async def connect(self) -> bool:
        """Starts the session; whether it connected within the connection timeout."""
        from app.mqtt.session import MqttSession, SessionState
        from app.outbox import session_publisher

        parse = self.platform.parser_for(self.values).parse_or_error
        runner = self.runner

        def on_message(msg) -> None:
            try:
                for event in parse(msg.topic, msg.payload, msg.properties):
                    runner.observe(event)
            except Exception:  # noqa: BLE001 - a message we cannot read changes no downlink
                log.exception("a message could not be parsed")

        publish = None

        def on_state(change) -> None:
            if change.error:
                self.last_error = change.error
            runner.set_connected(change.state == SessionState.CONNECTED, publish)

        credentials = None
        provider = self.platform.credentials_provider(self.values)
        if provider is not None:

            def credentials():
                result = provider()
                return result[0], result[1]

        self.session = MqttSession(self.config, on_message=on_message, on_state=on_state, credentials=credentials)
        publish = session_publisher(self.session)
        runner.attach(publish)
        await self.session.start()
        # Until connected, or the first attempt failed (the broker is not reachable now: waiting
        # for the reconnects would only delay the answer), within the connection timeout.
        deadline = time.monotonic() + max(0.5, self.config.connect_timeout - 0.3)
        while time.monotonic() < deadline:
            change = self.session.last_change
            if change.state == SessionState.CONNECTED:
                return True
            if change.state == SessionState.FAILED:
                self.failure = change.error or "The connection failed."
                return False
            if change.state == SessionState.RECONNECTING and change.attempt >= 1:
                self.last_error = change.error
                return False
            await asyncio.sleep(0.02)
        return False

    @property
    def connected(self) -> bool:
        return self.session is not None and self.session.state == "connected"

    async def close(self) -> None:
        if self.session is not None:
            await self.session.stop()
        await self.runner.close()


async def _until_handed_over(delivery: _Delivery, downlink_id: str | None) -> None:
    """Waits while the drain makes progress: until `downlink_id` (None: every entry) has left the
    outbox, or nothing moved for a connection timeout while disconnected or stuck."""
    from app.delivery import OUTBOX

    stall = max(STALL_TIMEOUT_MIN, delivery.config.connect_timeout)
    last_progress, last_count = time.monotonic(), -1
    while True:
        if downlink_id is not None:
            entry = await delivery.runner.entry(downlink_id)
            if entry is None or entry["state"] != OUTBOX:
                return
        elif await delivery.runner.waiting() == 0:
            return
        if delivery.runner.handed_over != last_count:
            last_count, last_progress = delivery.runner.handed_over, time.monotonic()
        if delivery.failure or time.monotonic() - last_progress > stall:
            return
        delivery.runner.kick()
        await asyncio.sleep(0.05)


async def _until_answered(delivery: _Delivery, downlink_id: str, seconds: float) -> None:
    from app import delivery as states

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        entry = await delivery.runner.entry(downlink_id)
        if entry is None or entry["state"] in states.ANSWERED:
            return
        if entry["state"] != states.OUTBOX and not states.expects_news(
            entry["platform"], entry["state"], entry["confirmed"]
        ):
            return
        await asyncio.sleep(0.1)


def _open(name: str, prog: str):
    from app import platforms as platform_registry
    from app.cli import open_saved_profile

    saved, values = open_saved_profile(name, prog=prog)
    return saved, values, platform_registry.get(saved.platform)


def _runtime(exc: Exception):
    from app.cli import RuntimeFailure

    return RuntimeFailure(str(exc))


def _print_line(doc: dict) -> None:
    from app.cli import _stdout

    out = _stdout()
    out.write(orjson.dumps(doc) + b"\n")
    out.flush()


# ----- the commands ------------------------------------------------------------------------


def cmd_send(args) -> int:
    from app.cli import UsageError
    from app.outbox import OutboxError

    prog = "uplink-console send"
    if not _has_payload(args) and not args.template and not (args.replace or args.command):
        raise UsageError("Give the payload with one of --hex, --base64, --text or --json (or a --template).")
    saved, values, platform = _open(args.profile, prog)
    if args.wait_delivery is not None and args.wait_delivery < 0:
        raise UsageError("--wait-delivery is a number of seconds, 0 or more.")
    config = platform.connection(values)
    # Tektelic's --template names one of its body templates (as in encode-downlink) unless a saved
    # downlink template of the connection has that name.
    if args.template and (platform.name != "tektelic" or _is_saved_template(saved, args.template)):
        message, meta = _build_from_template(args, platform, values, saved, config)
    else:
        message, meta = _build_plain(args, platform, values)
    meta["platform"] = platform.name
    key = connection_key(saved.id)
    try:
        return asyncio.run(_send(platform, values, key, message, meta, args.wait_delivery, prog))
    except OutboxError as exc:
        raise _runtime(exc) from None


def _is_saved_template(saved, name: str) -> bool:
    from app.downlink_templates import TemplateStore

    return TemplateStore(saved.id).get(name) is not None


async def _send(platform, values, key, message, meta, wait_delivery, prog) -> int:
    delivery = _Delivery(platform, values, key, subscribe=bool(wait_delivery))
    await delivery.open()
    try:
        entry = await delivery.runner.send(message, meta)
        downlink_id = entry["id"]
        if await delivery.connect():
            await _until_handed_over(delivery, downlink_id)
            if wait_delivery:
                await _until_answered(delivery, downlink_id, wait_delivery)
        entry = await delivery.runner.entry(downlink_id) or entry
    finally:
        await delivery.close()
    _print_line({"id": entry["id"], "state": entry["state"], "topic": entry["topic"]})
    if delivery.failure:
        print(f"{prog}: {delivery.failure} The downlink is kept in the outbox.", file=sys.stderr, flush=True)
        return 1
    if entry["state"] == "outbox" and delivery.last_error:
        print(
            f"{prog}: not sent yet: {delivery.last_error} It is kept in the outbox and sent by the window or "
            "`outbox flush` later.",
            file=sys.stderr,
            flush=True,
        )
    if entry["state"] in ("failed", "not-acknowledged"):
        reason = entry.get("reason") or "the device did not acknowledge it"
        print(f"{prog}: the downlink {entry['state']}: {reason.rstrip('.')}.", file=sys.stderr, flush=True)
        return 1
    return 0


def cmd_outbox_list(args) -> int:
    from app.outbox import Outbox, OutboxError

    saved, _values, _platform = _open(args.name, "uplink-console outbox list")
    try:
        box = Outbox(connection_key(saved.id))
        try:
            entries = box.entries()
        finally:
            box.close()
    except OutboxError as exc:
        raise _runtime(exc) from None
    if box.recovered_from is not None:
        print(
            f"uplink-console outbox list: warning: the outbox file was damaged; it was kept as {box.recovered_from}.",
            file=sys.stderr,
        )
    from app.cli import _stdout

    out = _stdout()
    if args.json:
        for entry in entries:
            out.write(orjson.dumps(entry) + b"\n")
    else:
        for e in entries:
            who = e["device_id"] or e["dev_eui"] or "-"
            port = "-" if e["f_port"] is None else str(e["f_port"])
            line = f"{e['created_at']}  {e['id']}  {e['state']:<16}  {who}  {port}  {e['topic']}"
            if e["reason"]:
                line += f"  ({e['reason']})"
            out.write(line.encode("utf-8", "replace") + b"\n")
        if not entries:
            print(f"The outbox of {saved.name!r} is empty.", file=sys.stderr)
    out.flush()
    return 0


def cmd_outbox_flush(args) -> int:
    from app.cli import UsageError
    from app.outbox import OutboxError

    prog = "uplink-console outbox flush"
    if args.timeout is not None and args.timeout <= 0:
        raise UsageError("--timeout is a number of seconds, more than 0.")
    saved, values, platform = _open(args.name, prog)
    try:
        return asyncio.run(_flush(platform, values, connection_key(saved.id), args.timeout, prog, saved.name))
    except OutboxError as exc:
        raise _runtime(exc) from None


async def _flush(platform, values, key, timeout: float, prog: str, name: str) -> int:
    delivery = _Delivery(platform, values, key, subscribe=False)
    await delivery.open()
    started = time.monotonic()
    try:
        before = await delivery.runner.waiting()
        if before and await delivery.connect():
            deadline = started + timeout
            while time.monotonic() < deadline and not delivery.failure:
                if await delivery.runner.waiting() == 0:
                    break
                delivery.runner.kick()
                await asyncio.sleep(0.05)
        left = await delivery.runner.waiting()
        sent = delivery.runner.handed_over
    finally:
        await delivery.close()
    print(f"Sent {sent} downlink{'s' if sent != 1 else ''} of {name!r}; {left} waiting.", flush=True)
    if left:
        why = delivery.failure or delivery.last_error
        reason = f": {why.rstrip('.')}" if why else f" (not all were sent within {timeout:g} s)"
        print(
            f"{prog}: {left} downlink{'s' if left != 1 else ''} still wait{'' if left != 1 else 's'}{reason}.",
            file=sys.stderr,
            flush=True,
        )
        return 1
    return 0

"""A simulated fleet publishing in one platform's exact format on its own topics to any broker,
answering the downlinks that platform answers: for testing a console, a decoder or a pipeline
without devices. Prints what it sent when it stops (one JSON line with --json).

    uplink-console simulate --platform tts --url mqtt://localhost:1883 --app my-app --tenant ttn \\
        --devices 20 --rate 10 --duration 60 --seed 7

Ctrl-C stops it cleanly (the counts are printed all the same). `--rate 0` publishes as fast as
the broker takes the messages, for benchmarks.
"""

from __future__ import annotations

import signal
import sys
import threading

import orjson

from app.simulate.run import PLATFORMS, SimulateError

# As fast as the broker takes them: the fleet's clock still orders the frames, nothing waits for it.
UNPACED_FLEET_RATE = 1000.0


def _cli():
    """app.cli, imported when first needed (it imports this module to register the commands)."""
    from app import cli

    return cli


def add_parsers(sub) -> None:
    """Registers the `simulate` subcommand on the top-level subparsers."""
    s = sub.add_parser(
        "simulate",
        help="publish a simulated fleet in a platform's format and answer its downlinks",
        description=__doc__.split("\n\n")[0].replace("\n", " "),
    )
    _cli().add_connection_options(s, None)
    g = s.add_argument_group("simulation")
    g.add_argument("--app", help="TTS application / Drogue application (default: uplink-demo)")
    g.add_argument("--tenant", help="TTS tenant (default: ttn; empty for The Things Stack Open Source)")
    g.add_argument("--devices", type=int, default=12, help="devices in the fleet (default 12)")
    g.add_argument("--gateways", type=int, default=4, help="gateways around them (default 4)")
    g.add_argument(
        "--rate", type=float, default=5.0, help="messages a second over the fleet (default 5; 0: as fast as possible)"
    )
    g.add_argument("--duration", type=float, help="stop after this many seconds (default: until Ctrl-C)")
    g.add_argument("--messages", type=int, help="stop after this many messages")
    g.add_argument("--seed", type=int, default=1, help="the same seed gives the same fleet and frames (default 1)")
    g.add_argument("--malformed", type=float, default=0.01, help="share of malformed messages (default 0.01)")
    g.add_argument("--json", action="store_true", help="print the counts as one JSON line")
    g.add_argument("--push-topic", help="Tektelic pushTopic (default ttt_push_demo000001)")
    g.add_argument("--pull-topic", help="Tektelic pullTopic (default ttt_pull_demo000001)")
    g.add_argument("--uplink-pattern", help="ThingPark uplink topic pattern (default mqtt/things/{DevEUI}/uplink)")
    g.add_argument(
        "--downlink-pattern", help="ThingPark downlink topic pattern (default mqtt/things/{DevEUI}/downlink)"
    )
    g.add_argument("--failure-rate", type=float, help="ThingPark: share of downlinks reported not sent (default 0.1)")
    g.add_argument("--secret", help="akenza uplink secret in the topics (default demo-uplink-secret)")
    g.add_argument(
        "--content-mode",
        choices=("structured", "binary"),
        help="Drogue: structured CloudEvents (default) or binary mode (MQTT 5: attributes as user properties)",
    )
    s.set_defaults(func=cmd_simulate)


def settings_from_args(args) -> dict:
    platform = args.platform
    if platform == "tts":
        return {"app": args.app, "tenant": args.tenant}
    if platform == "tektelic":
        return {"push_topic": args.push_topic, "pull_topic": args.pull_topic}
    if platform == "thingpark":
        return {
            "uplink_pattern": args.uplink_pattern,
            "downlink_pattern": args.downlink_pattern,
            "failure_rate": args.failure_rate,
        }
    if platform == "akenza":
        return {"secret": args.secret}
    return {"app": args.app, "content_mode": args.content_mode}


def cmd_simulate(args) -> int:
    cli = _cli()
    UsageError = cli.UsageError  # noqa: N806 - the class, under its own name
    from app.mqtt.config import MqttVersion
    from app.simulate.fleet import FleetOptions
    from app.simulate.run import make_simulator, run

    if args.platform not in PLATFORMS:
        raise UsageError(f"Choose the platform to simulate with --platform ({', '.join(PLATFORMS)}).")
    if getattr(args, "profile", None):
        raise UsageError("simulate publishes to a broker, not to a saved connection; give the broker with --url.")
    if not args.url:
        raise UsageError("Give the broker to publish to with --url, e.g. --url mqtt://localhost:1883.")
    if args.topic or args.share:
        raise UsageError(
            "simulate publishes on the platform's own topics and listens on its downlink topics; "
            "leave out --topic and --share (the platform options above set the topics)."
        )
    for name, value, low in (("--devices", args.devices, 1), ("--gateways", args.gateways, 1)):
        if value < low:
            raise UsageError(f"{name} must be at least {low}.")
    if args.rate < 0:
        raise UsageError("--rate must be 0 (as fast as possible) or more messages a second.")
    if args.duration is not None and args.duration <= 0:
        raise UsageError("--duration must be more than 0 seconds.")
    if args.messages is not None and args.messages < 1:
        raise UsageError("--messages must be at least 1.")
    if not 0 <= args.malformed <= 1:
        raise UsageError("--malformed is a share from 0 to 1.")
    if args.failure_rate is not None and not 0 <= args.failure_rate <= 1:
        raise UsageError("--failure-rate is a share from 0 to 1.")
    platform = args.platform
    options = FleetOptions(
        devices=args.devices,
        gateways=args.gateways,
        rate=args.rate or UNPACED_FLEET_RATE,
        seed=args.seed,
        malformed_probability=args.malformed,
    )
    try:
        simulator = make_simulator(platform, options, **settings_from_args(args))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    # The broker connection from the shared options (TLS, --username, --password-file …); the
    # platform's own console profile plays no part: the simulator is the platform's side.
    args.platform = None
    args.topic = simulator.listen()
    config, _platform, _credentials, _profile = cli.connection_from_args(args)
    args.platform = platform
    if simulator.needs_mqtt5 and config.mqtt_version != MqttVersion.V5:
        if args.mqtt_version not in (None, "5"):
            raise UsageError("Drogue's binary content mode needs MQTT 5; leave out --mqtt-version or give 5.")
        config = config.replace(mqtt_version=MqttVersion.V5)

    stop = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        result = run(
            simulator,
            config,
            duration=args.duration,
            max_messages=args.messages,
            stop=stop,
            paced=args.rate > 0,
            qos=args.qos or 0,
        )
    except SimulateError as exc:  # the broker could not be used: one sentence, exit status 1
        print(f"uplink-console simulate: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        signal.signal(signal.SIGINT, previous)
    if args.json:
        sys.stdout.buffer.write(orjson.dumps(result.to_dict()) + b"\n")
        sys.stdout.flush()
    else:
        print(result.summary(), flush=True)
    return 0


__all__ = ["add_parsers", "cmd_simulate"]

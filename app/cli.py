"""The headless commands: capture, decode, encode-downlink, bench. No Qt is imported here.

Every failure is one line on stderr that says what is wrong; tracebacks go to the log only.
Exit status: 0 done, 1 runtime failure (e.g. credentials refused), 2 bad input or usage.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import logging
import os
import sys
from pathlib import Path

import orjson

from app import __version__
from app import platforms as platform_registry
from app.mqtt.config import ConfigError, MqttVersion, Subscription, TlsSettings, parse_url
from app.payload import PayloadError, is_printable_text
from app.platforms.base import DecodeError, DownlinkRequest, EncodeError, Platform, ProfileError

log = logging.getLogger("uplink_console")
PASSWORD_ENV = "UPLINK_CONSOLE_PASSWORD"
HEADLESS_COMMANDS = ("capture", "decode", "encode-downlink", "bench")


class UsageError(Exception):
    """Bad input or options: exit status 2 with this sentence."""


# ----- connection options shared by capture and --smoke-test -------------------------------


def add_connection_options(p: argparse.ArgumentParser, platform: Platform | None) -> None:
    g = p.add_argument_group("connection")
    g.add_argument("--url", help="mqtt://, mqtts://, ws:// or wss:// [user@]host[:port][/path]")
    g.add_argument("--topic", action="append", default=[], help="topic filter (repeatable)")
    g.add_argument("--qos", type=int, choices=(0, 1, 2), help="QoS of the subscriptions")
    g.add_argument("--client-id", help="client id (generated when omitted)")
    g.add_argument("--session", choices=("clean", "persistent"), default=None)
    g.add_argument("--share", metavar="GROUP", help="subscribe as $share/GROUP/<filter> to split the stream")
    g.add_argument("--username")
    g.add_argument("--password-file", help=f"file holding the password (or set {PASSWORD_ENV})")
    g.add_argument("--ca", help="CA certificate file (default: the system's trusted CAs)")
    g.add_argument("--cert", help="client certificate (PEM, DER or .p12)")
    g.add_argument("--key", help="client private key")
    g.add_argument("--mqtt-version", choices=[v.value for v in MqttVersion])
    g.add_argument("--insecure", action="store_true", help="do not verify the broker's certificate")
    g.add_argument("--platform", choices=platform_registry.NAMES, default=None)
    if platform is not None:
        add_platform_options(p, platform, skip={a.dest for a in p._actions})


def add_platform_options(p: argparse.ArgumentParser, platform: Platform, skip=()) -> None:
    g = p.add_argument_group(f"{platform.label} options")
    for f in platform.fields:
        if f.name in skip or (f.kind == "secret" and f.name + "_file" in skip):
            continue
        opt = "--" + f.name.replace("_", "-")
        if f.kind == "secret":
            env = "UPLINK_CONSOLE_" + f.name.upper()
            g.add_argument(opt + "-file", dest=f.name + "_file", help=f"file holding {f.label} (or set {env})")
            continue
        if f.kind == "bool":
            g.add_argument(opt, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=f.help)
            continue
        g.add_argument(opt, dest=f.name, default=None, help=f.help, choices=f.choices or None)


def _read_secret_file(path: str, what: str) -> str:
    try:
        return Path(path).expanduser().read_text().rstrip("\r\n")
    except OSError as exc:
        raise UsageError(f"The {what} file {path} cannot be read ({exc.strerror}).") from None


def profile_from_args(args, platform: Platform) -> dict:
    profile: dict = {}
    for f in platform.fields:
        if f.kind == "secret":
            file_value = getattr(args, f.name + "_file", None)
            env = os.environ.get("UPLINK_CONSOLE_" + f.name.upper())
            if file_value:
                profile[f.name] = _read_secret_file(file_value, f.label)
            elif env:
                profile[f.name] = env
            continue
        value = getattr(args, f.name, None)
        if value is not None:
            profile[f.name] = value
    password = _password(args)
    if password and "password" in {f.name for f in platform.fields} and "password" not in profile:
        profile["password"] = password
    if getattr(args, "username", None) and "username" in {f.name for f in platform.fields}:
        profile["username"] = args.username
    return profile


def _password(args) -> str | None:
    if getattr(args, "password_file", None):
        return _read_secret_file(args.password_file, "password")
    return os.environ.get(PASSWORD_ENV) or None


def connection_from_args(args):
    """(ConnectionConfig, platform or None, credentials provider or None, profile) from the options."""
    platform = platform_registry.get(args.platform) if getattr(args, "platform", None) else None
    credentials = None
    profile: dict = {}
    if platform is not None:
        profile = profile_from_args(args, platform)
        if args.url and "url" in {f.name for f in platform.fields}:
            profile["url"] = args.url
        # Into the profile, so the platform can refuse what it does not support (TTS: QoS 0 only).
        if args.qos is not None:
            profile["qos"] = args.qos
        if args.mqtt_version:
            profile["mqtt_version"] = args.mqtt_version
        config = platform.connection(profile)
        provider = platform.credentials_provider(profile)
        if provider is not None:
            credentials = _pair(provider)
        if args.url and "url" not in {f.name for f in platform.fields}:
            url_cfg = parse_url(args.url)
            config = config.replace(
                host=url_cfg.host,
                port=url_cfg.port,
                transport=url_cfg.transport,
                websocket_path=url_cfg.websocket_path,
            )
    else:
        if not args.url:
            raise UsageError("Give the broker with --url, e.g. --url mqtt://localhost:1883, or choose a --platform.")
        if not args.topic:
            raise UsageError("Give at least one --topic to subscribe to, e.g. --topic 'sensors/#'.")
        config = parse_url(args.url)
    changes: dict = {}
    if args.username:
        changes["username"] = args.username
    password = _password(args)
    if password and platform is None:
        changes["password"] = password
    if args.client_id:
        changes["client_id"] = args.client_id
    if args.session:
        changes["clean_session"] = args.session == "clean"
    if args.mqtt_version and platform is None:
        changes["mqtt_version"] = MqttVersion(args.mqtt_version)
    if args.ca or args.cert or args.key or args.insecure:
        t = config.tls
        changes["tls"] = TlsSettings(
            ca_file=args.ca or t.ca_file,
            cert_file=args.cert or t.cert_file,
            key_file=args.key or t.key_file,
            key_password=t.key_password or os.environ.get("UPLINK_CONSOLE_KEY_PASSWORD"),
            verify_certificate=not args.insecure and t.verify_certificate,
            verify_hostname=not args.insecure and t.verify_hostname,
        )
    subs = [Subscription(t, args.qos or 0) for t in args.topic] if args.topic else list(config.subscriptions)
    if args.qos is not None and (platform is None or args.topic):
        subs = [Subscription(s.topic, args.qos, s.user_properties, s.no_local) for s in subs]
    if args.share:
        if "/" in args.share or "+" in args.share or "#" in args.share:
            raise UsageError("The --share group name may not contain '/', '+' or '#'.")
        subs = [
            s
            if s.topic.startswith("$share/")
            else Subscription(f"$share/{args.share}/{s.topic}", s.qos, s.user_properties, s.no_local)
            for s in subs
        ]
    changes["subscriptions"] = tuple(subs)
    return config.replace(**changes), platform, credentials, profile


def _pair(provider):
    def credentials():
        result = provider()
        return result[0], result[1]

    return credentials


# ----- commands ----------------------------------------------------------------------------


def cmd_capture(args) -> int:
    from app.capture import run_capture

    if not args.out:
        raise UsageError("Give the output file with --out FILE.jsonl (or --out - for standard output).")
    config, platform, credentials, _profile = connection_from_args(args)
    return asyncio.run(run_capture(config, args.out, platform, credentials))


def _read_input(source: str | None) -> bytes:
    if source in (None, "-"):
        return sys.stdin.buffer.read()
    try:
        return Path(source).read_bytes()
    except OSError as exc:
        raise UsageError(f"Cannot read {source}: {exc.strerror}.") from None


def cmd_decode(args) -> int:
    platform = platform_registry.get(args.platform)
    payload = _read_input(args.file)
    profile = profile_from_args(args, platform)
    # Options such as ThingPark's --uplink-topic-pattern let the parser use the topic too.
    parser = platform.parser_for(profile) if profile else platform
    try:
        events = parser.parse(args.topic, payload, None)
    except DecodeError as exc:
        print(f"{args.platform}: {exc}", file=sys.stderr)
        return 2
    out = sys.stdout.buffer
    for event in events:
        out.write(event.to_json() + b"\n")
    out.flush()
    return 0


def cmd_encode_downlink(args) -> int:
    platform = platform_registry.get(args.platform)
    profile = profile_from_args(args, platform)
    names = {f.name for f in platform.fields}
    for key in ("app", "application", "application_id"):
        if args.app and key in names:
            profile[key] = args.app
    if args.tenant and "tenant" in names:
        profile["tenant"] = args.tenant
    if args.topic_pattern:
        if platform.topic_pattern_field is None:
            raise UsageError(f"--topic-pattern does not apply to {platform.label}.")
        profile[platform.topic_pattern_field] = args.topic_pattern
    payload, decoded = None, None
    if args.hex is not None:
        from app.payload import from_hex

        payload = from_hex(args.hex)
    elif args.base64 is not None:
        from app.payload import from_base64

        payload = from_base64(args.base64)
    elif args.text is not None:
        payload = args.text.encode()
    elif args.json is not None:
        try:
            decoded = orjson.loads(args.json)
        except orjson.JSONDecodeError as exc:
            from app.payload import json_error_text

            raise UsageError(f"--json is not valid JSON: {json_error_text(exc, args.json)}.") from None
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
        correlation_ids=tuple(args.correlation_id or ()),
        template=args.template,
    )
    message = platform.encode_downlink(profile, request)
    body = message.payload
    shown = body.decode("utf-8") if is_printable_text(body) else base64.b64encode(body).decode()
    line = {"topic": message.topic, "payload": shown, "qos": message.qos, "properties": message.properties}
    sys.stdout.buffer.write(orjson.dumps(line) + b"\n")
    return 0


def cmd_bench(args) -> int:
    raise UsageError("The benchmark opens the window offscreen: run it as `uplink-console bench ingest`.")


# ----- parser ------------------------------------------------------------------------------


def build_parser(platform: Platform | None = None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="uplink-console", description="Uplink Console headless commands.")
    p.add_argument("--version", action="version", version=f"uplink-console {__version__}")
    sub = p.add_subparsers(dest="subcommand", required=True)

    c = sub.add_parser("capture", help="subscribe and write every message as a JSON line")
    add_connection_options(c, platform)
    c.add_argument("--out", help="output file (JSON lines; '-' for standard output)")
    c.set_defaults(func=cmd_capture)

    d = sub.add_parser("decode", help="decode one message body into normalized events")
    d.add_argument("--platform", required=True, choices=platform_registry.NAMES)
    d.add_argument("--topic", required=True)
    d.add_argument("file", nargs="?", default="-")
    if platform is not None:
        add_platform_options(d, platform, skip={"topic", "platform"})
    d.set_defaults(func=cmd_decode)

    e = sub.add_parser("encode-downlink", help="build a platform's exact downlink message")
    e.add_argument("--platform", required=True, choices=platform_registry.NAMES)
    e.add_argument("--app")
    e.add_argument("--tenant")
    e.add_argument("--device")
    e.add_argument("--dev-eui")
    e.add_argument("--topic-pattern")
    e.add_argument("--command")
    e.add_argument("--f-port", type=int)
    body = e.add_mutually_exclusive_group(required=True)
    body.add_argument("--hex")
    body.add_argument("--base64")
    body.add_argument("--text")
    body.add_argument("--json")
    e.add_argument("--confirmed", action="store_true")
    e.add_argument("--priority")
    e.add_argument("--replace", action="store_true")
    e.add_argument("--template")
    e.add_argument("--correlation-id", action="append")
    if platform is not None:
        add_platform_options(e, platform, skip={a.dest for a in e._actions})
    e.set_defaults(func=cmd_encode_downlink)

    b = sub.add_parser("bench", help="benchmarks (ingest)")
    b.add_argument("rest", nargs=argparse.REMAINDER)
    b.set_defaults(func=cmd_bench)
    return p


def platform_named_in(argv: list[str]) -> Platform | None:
    for i, a in enumerate(argv):
        name = None
        if a == "--platform" and i + 1 < len(argv):
            name = argv[i + 1]
        elif a.startswith("--platform="):
            name = a.split("=", 1)[1]
        if name in platform_registry.NAMES:
            try:
                return platform_registry.get(name)
            except ModuleNotFoundError:
                return None
    return None


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, format="%(message)s")
    # paho reports every socket error at ERROR; the session turns them into sentences already.
    logging.getLogger("mqtt").setLevel(logging.CRITICAL)
    logging.getLogger("app.mqtt.session").setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    setup_logging(verbose=bool(os.environ.get("UPLINK_CONSOLE_DEBUG")))
    parser = build_parser(platform_named_in(argv))
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (UsageError, ConfigError, ProfileError, EncodeError, PayloadError, DecodeError, ValueError) as exc:
        print(f"uplink-console {args.subcommand}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # the promise: never a traceback in front of the user
        log.debug("internal error", exc_info=True)
        print(
            f"uplink-console {args.command}: internal error ({type(exc).__name__}: {exc}). "
            "Run again with UPLINK_CONSOLE_DEBUG=1 for details, and report it.",
            file=sys.stderr,
        )
        return 3


if __name__ == "__main__":
    sys.exit(main())

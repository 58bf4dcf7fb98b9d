"""The headless commands: capture, decode, encode-downlink, bench. No Qt is imported here.

Every failure is one line on stderr that says what is wrong; tracebacks and library log lines go
to the log file only (app/logfile.py). Exit status: 0 done, 1 runtime failure (e.g. credentials
refused), 2 bad input or usage, 3 internal error, 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import logging
import os
import stat
import sys
from pathlib import Path
from urllib.parse import urlsplit

import orjson

from app import __version__
from app import platforms as platform_registry
from app.mqtt.config import ConfigError, MqttVersion, Subscription, TlsSettings, parse_url
from app.payload import PayloadError, is_printable_text
from app.platforms.base import MAX_BODY, DecodeError, DownlinkRequest, EncodeError, Platform, ProfileError

log = logging.getLogger("uplink_console")
PASSWORD_ENV = "UPLINK_CONSOLE_PASSWORD"
HEADLESS_COMMANDS = ("capture", "decode", "encode-downlink", "bench")
SECRET_FILE_LIMIT = 64 * 1024  # a password, token or key passphrase is a line of text
TLS_FILE_LIMIT = 16 * 1024 * 1024  # the largest CA bundles are a few hundred KiB


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


def _read_bounded(stream, limit: int) -> bytes:
    """At most limit + 1 bytes (one more than allowed tells "too large"), from files, pipes and devices."""
    chunks: list[bytes] = []
    left = limit + 1
    while left > 0:
        chunk = stream.read(min(left, 1024 * 1024))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _read_secret_file(path: str, what: str) -> str:
    shown = _shown(path, limit=200)
    try:
        with open(Path(path).expanduser(), "rb") as f:
            data = _read_bounded(f, SECRET_FILE_LIMIT)
    except OSError as exc:
        raise UsageError(f"The {what} file {shown} cannot be read ({exc.strerror or exc}).") from None
    if len(data) > SECRET_FILE_LIMIT:
        raise UsageError(
            f"The {what} file {shown} is larger than {SECRET_FILE_LIMIT // 1024} KiB; "
            f"it should hold only the {what}, as one line of text."
        )
    if b"\0" in data:
        raise UsageError(
            f"The {what} file {shown} contains NUL bytes, so it is not text; it should hold only the {what}."
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"The {what} file {shown} is not UTF-8 text; save the {what} as UTF-8.") from None
    return text.removeprefix("\ufeff").rstrip("\r\n")


def _environment_text(name: str) -> str | None:
    value = os.environ.get(name)
    if value and not _is_text(value):
        raise UsageError(f"The environment variable {name} is not valid UTF-8 text; set it again as UTF-8.")
    return value


def profile_from_args(args, platform: Platform) -> dict:
    profile: dict = {}
    for f in platform.fields:
        if f.kind == "secret":
            file_value = getattr(args, f.name + "_file", None)
            env = _environment_text("UPLINK_CONSOLE_" + f.name.upper())
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
    return _environment_text(PASSWORD_ENV) or None


# ----- checks of the raw arguments ---------------------------------------------------------

# Options that name files: a name that is not UTF-8 is still a valid file name on Linux (Python
# passes it through as surrogate escapes and open() turns it back into the same bytes).
PATH_DESTS = frozenset({"file", "out", "ca", "cert", "key"})


def _is_text(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _shown(value: str, limit: int = 40) -> str:
    """A value that is not text, as the user typed it: the bytes that are not UTF-8 as \\xNN."""
    raw = value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return raw if len(raw) <= limit else raw[: limit - 1] + "…"


def check_text_arguments(args, options: dict[str, str] | None = None) -> None:
    """UsageError naming the option whose value is not valid UTF-8 (file names excepted)."""
    for dest, value in vars(args).items():
        if dest in PATH_DESTS or dest.endswith("_file") or dest == "func":
            continue
        for item in value if isinstance(value, list | tuple) else (value,):
            if isinstance(item, str) and not _is_text(item):
                option = (options or {}).get(dest) or "--" + dest.replace("_", "-")
                raise UsageError(
                    f"The {option} argument '{_shown(item)}' is not valid UTF-8 text; give it as UTF-8 text."
                )


def _option_names(parser: argparse.ArgumentParser, subcommand: str | None) -> dict[str, str]:
    """dest -> the option as typed (--dev-eui), for the subcommand's parser and the top level."""
    names: dict[str, str] = {}
    parsers = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and subcommand in action.choices:
            parsers.append(action.choices[subcommand])
    for p in parsers:
        for action in p._actions:
            longs = [o for o in action.option_strings if o.startswith("--")]
            names.setdefault(action.dest, longs[0] if longs else action.dest)
    return names


def _refuse_password_in_url(url: str | None) -> None:
    if not url:
        return
    url = url.strip()
    try:
        password = urlsplit(url if "://" in url else "mqtt://" + url).password
    except ValueError:
        return  # parse_url says what is wrong with it
    if password:
        raise UsageError(
            "--url contains a password, and every user of this computer can read the command line in the "
            f"process list; remove it from the URL and set {PASSWORD_ENV}=… in the environment "
            "or give --password-file FILE."
        )


def _check_tls_file(path: str | None, what: str) -> None:
    """Refuses a folder, a device (/dev/zero would be read forever) or a huge file; the rest is tls.py's."""
    if not path:
        return
    try:
        st = os.stat(Path(path).expanduser())
    except (OSError, ValueError):
        return  # app.tls says "does not exist" / "cannot be read"
    shown = _shown(path, limit=200)
    if stat.S_ISDIR(st.st_mode):
        raise UsageError(f"The {what} file {shown} is a folder; give the file itself.")
    if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
        raise UsageError(f"The {what} file {shown} is a device, not a file; give the {what} file.")
    if stat.S_ISREG(st.st_mode) and st.st_size > TLS_FILE_LIMIT:
        raise UsageError(
            f"The {what} file {shown} is {st.st_size / 1024**2:,.0f} MiB; "
            f"a {what} file is a few KiB, so this is not the right file."
        )


def verification_warning(config, args, platform: Platform | None = None) -> str | None:
    """The warning sentence when a TLS connection does not verify the broker, else None."""
    tls = config.tls
    if not config.transport.uses_tls or (tls.verify_certificate and tls.verify_hostname):
        return None
    if getattr(args, "insecure", False):
        why = "--insecure"
    elif getattr(args, "verify_certificate", None) is False:
        why = "--no-verify-certificate"
    elif platform is not None:
        why = f"the {platform.label} profile turns verification off"
    else:
        why = "the connection settings turn verification off"
    where = f"{config.host}:{config.effective_port}"
    if not tls.verify_certificate:
        return f"the broker's certificate is not verified ({why}); anyone on the network path could pose as {where}."
    return (
        f"the broker's host name is not checked against its certificate ({why}); "
        f"anyone with a certificate from a trusted CA could pose as {where}."
    )


def _prog(args) -> str:
    sub = getattr(args, "subcommand", None)
    return f"uplink-console {sub}" if sub else "uplink-console"


def connection_from_args(args, *, warn: bool = True):
    """(ConnectionConfig, platform or None, credentials provider or None, profile) from the options.

    Refuses arguments that are not text and a password inside --url; with warn, prints one warning
    line on stderr when the broker's certificate or host name will not be verified.
    """
    check_text_arguments(args)
    _refuse_password_in_url(args.url)
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
            key_password=t.key_password or _environment_text("UPLINK_CONSOLE_KEY_PASSWORD"),
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
    config = config.replace(**changes)
    _check_tls_file(config.tls.ca_file, "CA certificate")
    _check_tls_file(config.tls.cert_file, "client certificate")
    _check_tls_file(config.tls.key_file, "client key")
    warning = verification_warning(config, args, platform) if warn else None
    if warning:
        print(f"{_prog(args)}: warning: {warning}", file=sys.stderr, flush=True)
    return config, platform, credentials, profile


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
    # run_capture opens --out before it connects: a folder, a missing folder or a place that
    # cannot be written is an OutputError (exit 2) before any connection attempt.
    return asyncio.run(run_capture(config, args.out, platform, credentials))


def _read_input(source: str | None) -> bytes:
    """The message body, read with a bound: /dev/zero or an endless pipe stops at MAX_BODY."""
    if source in (None, "-"):
        if sys.stdin is None:
            raise UsageError("There is no standard input to read the message from; give the message file.")
        data = _read_bounded(sys.stdin.buffer, MAX_BODY)
    else:
        try:
            with open(source, "rb") as f:
                data = _read_bounded(f, MAX_BODY)
        except OSError as exc:
            raise UsageError(f"Cannot read {_shown(source, limit=200)}: {exc.strerror or exc}.") from None
    if len(data) > MAX_BODY:
        raise UsageError(
            f"The input is larger than {MAX_BODY // 1024**2} MiB, too large to be a message a platform sends; "
            "stopped reading there."
        )
    return data


def _stdout():
    if sys.stdout is None:
        raise UsageError("There is no standard output to write to.")
    return sys.stdout.buffer


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
    out = _stdout()
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
    out = _stdout()
    out.write(orjson.dumps(line) + b"\n")
    out.flush()
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


_logfile = None  # the LogFile of this process (app.logfile), once set up


def setup_logging(verbose: bool = False):
    """Log lines (ours and the libraries': mqtt, aiomqtt, paho, asyncio) go to the log file only;
    stderr carries only the sentences the commands print. Returns the app.logfile.LogFile."""
    global _logfile
    from app import logfile

    _logfile = logfile.install(verbose=verbose)
    logging.getLogger("app.mqtt.session").setLevel(logging.DEBUG if verbose else logging.WARNING)
    return _logfile


def _one_line(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def report_internal_error(prog: str, exc: BaseException) -> int:
    """The traceback to the log file, one sentence (naming the log file) to stderr; exit status 3."""
    logfile = _logfile or setup_logging(verbose=bool(os.environ.get("UPLINK_CONSOLE_DEBUG")))
    try:
        log.error("internal error in %s", prog, exc_info=exc)
    except Exception:
        pass
    logfile.flush()
    what = f"{type(exc).__name__}: {_one_line(str(exc))}" if str(exc) else type(exc).__name__
    if logfile.written:
        todo = f"please report it with the details from {logfile.path}."
    else:
        todo = (
            f"the details could not be saved ({logfile.path}: {logfile.error or 'not written'}); "
            "run again with UPLINK_CONSOLE_LOG_DIR set to a folder you can write, and report it."
        )
    try:
        print(f"{prog}: an internal error stopped the command ({what}); {todo}", file=sys.stderr, flush=True)
    except Exception:
        pass
    return 3


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # The name the sentences start with; _run() sets it from the parsed subcommand.
    named = {"prog": f"uplink-console {argv[0]}" if argv and argv[0] in HEADLESS_COMMANDS else "uplink-console"}
    try:
        setup_logging(verbose=bool(os.environ.get("UPLINK_CONSOLE_DEBUG")))
        return _run(argv, named)
    except BrokenPipeError:  # e.g. `uplink-console decode … | head -c 10`
        from app.capture import _discard_stdout

        _discard_stdout()
        print(f"{named['prog']}: the output was closed before everything was written.", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # the promise: never a traceback in front of the user
        return report_internal_error(named["prog"], exc)
    finally:
        _detach_logging()


def _detach_logging() -> None:
    global _logfile
    from app import logfile

    logfile.uninstall()
    _logfile = None


def _run(argv: list[str], named: dict) -> int:
    parser = build_parser(platform_named_in(argv))
    args = parser.parse_args(argv)
    prog = named["prog"] = _prog(args)
    try:
        check_text_arguments(args, _option_names(parser, args.subcommand))
        return args.func(args)
    except (UsageError, ConfigError, ProfileError, EncodeError, PayloadError, DecodeError, ValueError) as exc:
        log.debug("%s: %s", prog, exc, exc_info=True)
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

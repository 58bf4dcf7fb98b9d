"""The headless commands: capture, decode, encode-downlink, profile, bench. No Qt is imported here.

Every failure is one line on stderr that says what is wrong; tracebacks and library log lines go
to the log file only (app/logfile.py). Exit status: 0 done, 1 runtime failure (e.g. credentials
refused, the keyring locked or missing, the profiles file not writable), 2 bad input or usage (an
unknown saved connection included), 3 internal error, 130 interrupted.

`profile …` manages saved connections (app/profiles.py; secrets in the keyring, app/secrets.py);
`--profile NAME` on capture, on --smoke-test and on the window starts from a saved connection, and
the connection options given with it override its values.
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
HEADLESS_COMMANDS = ("capture", "decode", "encode-downlink", "profile", "cert", "send", "outbox", "simulate", "bench")
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
    g.add_argument(
        "--profile",
        metavar="NAME",
        help="start from a saved connection (`uplink-console profile list`); options given with it override it",
    )
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


def open_saved_profile(name: str, *, prog: str = "uplink-console"):
    """(Profile, its values with the secrets from the keyring) for --profile NAME.

    ProfileNotFound (a sentence naming close matches) when there is none; SecretError when the
    keyring cannot be read. Prints the store's load problem, and the keyring's when the profile has
    secrets that cannot be found there, as warnings on stderr."""
    from app.profiles import ProfileStore
    from app.secrets import SecretStore, resolve

    store = ProfileStore()
    if store.load_problem:
        print(f"{prog}: warning: {store.load_problem}", file=sys.stderr, flush=True)
    saved = store.get(name)
    secrets = SecretStore()
    if saved.secret_fields() and not secrets.available:
        print(f"{prog}: warning: {secrets.problem}", file=sys.stderr, flush=True)
    return saved, resolve(saved, secrets)


def connection_from_args(args, *, warn: bool = True, saved=None):
    """(ConnectionConfig, platform or None, credentials provider or None, profile) from the options.

    With --profile NAME (or `saved`, a (Profile, resolved values) pair) the saved connection's
    values are the start and every option given overrides them. Refuses arguments that are not
    text and a password inside --url; with warn, prints one warning line on stderr when the
    broker's certificate or host name will not be verified.
    """
    check_text_arguments(args)
    _refuse_password_in_url(args.url)
    base: dict = {}
    if saved is None and getattr(args, "profile", None):
        saved = open_saved_profile(args.profile, prog=_prog(args))
    if saved is not None:
        stored, base = saved
        if getattr(args, "platform", None) and args.platform != stored.platform:
            raise UsageError(
                f"The saved connection {stored.name!r} is a {stored.platform} connection; "
                f"leave out --platform {args.platform} or choose another profile."
            )
        args.platform = stored.platform
    platform = platform_registry.get(args.platform) if getattr(args, "platform", None) else None
    credentials = None
    profile: dict = {}
    if platform is not None:
        profile = {**base, **profile_from_args(args, platform)}
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


def payload_from_args(args) -> tuple[bytes | None, object]:
    """(frame payload bytes, decoded JSON) from --hex / --base64 / --text / --json (one of them,
    or none); a payload that is not what its option says is a sentence."""
    from app.payload import from_base64, from_hex

    if args.hex is not None:
        return from_hex(args.hex), None
    if args.base64 is not None:
        return from_base64(args.base64), None
    if args.text is not None:
        return args.text.encode(), None
    if args.json is not None:
        try:
            return None, orjson.loads(args.json)
        except orjson.JSONDecodeError as exc:
            from app.payload import json_error_text

            raise UsageError(f"--json is not valid JSON: {json_error_text(exc, args.json)}.") from None
    return None, None


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


# ----- profile: saved connections ----------------------------------------------------------

IMPORT_FILE_LIMIT = 4 * 1024 * 1024  # a platform configuration body with its certificates is a few KiB


class RuntimeFailure(Exception):
    """A failure of the environment (keyring, disk): exit status 1 with this sentence."""


def _stores(args, *, quiet: bool = False):
    from app.profiles import ProfileStore
    from app.secrets import SecretStore

    store = ProfileStore()
    if store.load_problem and not quiet:
        print(f"{_prog(args)}: warning: {store.load_problem}", file=sys.stderr, flush=True)
    return store, SecretStore()


def _shown_value(value) -> str:
    if value is None or value == "":
        return "(empty)"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str) and value.isprintable():
        return value
    return orjson.dumps(value).decode()


def cmd_profile_list(args) -> int:
    from app.profiles import broker_of

    store, _secrets = _stores(args)
    profiles = store.profiles()
    out = _stdout()
    if args.json:
        for p in profiles:
            line = {
                "name": p.name,
                "platform": p.platform,
                "broker": broker_of(p),
                "id": p.id,
                "open_on_start": p.open_on_start,
            }
            out.write(orjson.dumps(line) + b"\n")
        out.flush()
        return 0
    if not profiles:
        print(
            f"{_prog(args)}: there are no saved connections yet; save one in the window, or import one with "
            "`uplink-console profile import FILE`.",
            file=sys.stderr,
        )
        return 0
    rows = [(p.name, p.platform, broker_of(p)) for p in profiles]
    widths = [max(len(r[i]) for r in rows) for i in range(2)]
    for name, platform, broker in rows:
        out.write(f"{name:<{widths[0]}}  {platform:<{widths[1]}}  {broker}".rstrip().encode() + b"\n")
    out.flush()
    return 0


def cmd_profile_show(args) -> int:
    from app.profiles import OPTIONS, broker_of

    store, secrets = _stores(args)
    p = store.get(args.name)
    platform = platform_registry.get(p.platform)
    secret_names = set(p.secret_fields())
    if secret_names and not secrets.available:
        print(f"{_prog(args)}: warning: {secrets.problem}", file=sys.stderr, flush=True)
    lines = [
        ("name", p.name),
        ("id", p.id),
        ("platform", f"{p.platform} ({platform.label})"),
        ("broker", broker_of(p)),
    ]
    for option in OPTIONS:
        value = getattr(p, option)
        lines.append((option, _shown_value(value) if value is not None else "(default)"))
    lines += [("created_at", p.created_at or "(unknown)"), ("updated_at", p.updated_at or "(unknown)")]
    fields = []
    for f in platform.fields:
        if f.name in secret_names:
            fields.append((f.name, secrets.status(p.id, f.name)))
        else:
            fields.append((f.name, _shown_value(p.values.get(f.name))))
    known = {f.name for f in platform.fields}
    fields += [(k, _shown_value(v)) for k, v in p.values.items() if k not in known and k not in secret_names]
    width = max(len(k) for k, _ in lines)
    text = "".join(f"{k + ':':<{width + 1}} {v}\n" for k, v in lines)
    width = max((len(k) for k, _ in fields), default=0)
    text += "fields:\n" + "".join(f"  {k + ':':<{width + 1}} {v}\n" for k, v in fields)
    out = _stdout()
    out.write(text.encode("utf-8", "backslashreplace"))
    out.flush()
    return 0


def _read_import_file(path: str) -> bytes:
    shown = _shown(path, limit=200)
    try:
        with open(Path(path).expanduser(), "rb") as f:
            data = _read_bounded(f, IMPORT_FILE_LIMIT)
    except IsADirectoryError:
        raise UsageError(f"{shown} is a folder; give the configuration file itself.") from None
    except OSError as exc:
        raise UsageError(f"Cannot read {shown} ({exc.strerror or exc}).") from None
    if len(data) > IMPORT_FILE_LIMIT:
        raise UsageError(
            f"{shown} is larger than {IMPORT_FILE_LIMIT // 2**20} MiB; a configuration body is a few KiB, "
            "so this is not the right file."
        )
    return data


def cmd_profile_import(args) -> int:
    import shutil

    from app.profiles import import_document
    from app.secrets import SecretError

    store, secrets = _stores(args)
    data = _read_import_file(args.file)
    pairs = import_document(data, platform=args.platform, name=args.name, certificates_dir=store.certificates_dir())
    added = []
    dropped: list[str] = []
    try:
        for profile, found in pairs:
            if args.name is None:
                profile.name = store.unique_name(profile.name)
            saved = store.add(profile)
            added.append(saved)
            if found and not secrets.available:
                dropped += [_in_sentence(platform_registry.get(saved.platform).field(k).label) for k in found]
                continue
            for field, value in found.items():
                secrets.set(saved.id, field, value)
    except (SecretError, ProfileError) as exc:
        for saved in added:  # all or nothing: no connection without the secrets its file carried
            try:
                secrets.delete_profile(saved)
                store.delete(saved.id)
            except Exception:
                log.debug("rolling back an import failed", exc_info=True)
        for profile, _found in pairs:
            shutil.rmtree(store.certificates_dir() / profile.id, ignore_errors=True)
        if isinstance(exc, SecretError):
            raise RuntimeFailure(f"{exc} Nothing was imported.") from None
        raise
    out = _stdout()
    for saved in added:
        out.write(saved.name.encode("utf-8", "backslashreplace") + b"\n")
    out.flush()
    if dropped:
        names = ", ".join(dict.fromkeys(dropped))
        print(
            f"{_prog(args)}: warning: {secrets.problem} So the {names} from the file was not kept: give it when "
            "connecting, or run `uplink-console profile set-secret NAME FIELD` once a keyring works.",
            file=sys.stderr,
        )
    return 0


def cmd_profile_export(args) -> int:
    from app.profiles import export_document, write_file_atomically

    if args.all:
        if len(args.targets) != 1:
            raise UsageError("Give one file: `uplink-console profile export --all FILE`.")
        target = args.targets[0]
    else:
        if len(args.targets) != 2:
            raise UsageError(
                "Give the connection and the file: `uplink-console profile export NAME FILE` (or --all FILE)."
            )
        target = args.targets[1]
    store, _secrets = _stores(args)
    profiles = store.profiles() if args.all else [store.get(args.targets[0])]
    if args.all and not profiles:
        raise UsageError("There are no saved connections to export.")
    data = export_document(profiles)
    if target == "-":
        out = _stdout()
        out.write(data)
        out.flush()
        return 0
    path = Path(target).expanduser()
    if path.is_dir():
        raise UsageError(f"{_shown(target, limit=200)} is a folder; give a file name, e.g. connections.json.")
    try:
        write_file_atomically(path, data)
    except OSError as exc:
        raise RuntimeFailure(f"Cannot write {_shown(target, limit=200)} ({exc.strerror or exc}).") from None
    count = len(profiles)
    print(
        f"Exported {count} connection{'s' if count != 1 else ''} to {_shown(target, limit=200)} "
        "(without passwords and other secrets).",
        file=sys.stderr,
    )
    return 0


def cmd_profile_delete(args) -> int:
    from app.secrets import SecretError

    store, secrets = _stores(args)
    profile = store.get(args.name)
    try:
        secrets.delete_profile(profile)
    except SecretError as exc:
        raise RuntimeFailure(f"{exc} The connection {profile.name!r} was not deleted.") from None
    store.delete(profile.id)
    if profile.secret_fields() and not secrets.available:
        print(
            f"{_prog(args)}: warning: {secrets.problem} Secrets saved for it in an earlier keyring stay there "
            f"(service uplink-console, user {profile.id}/FIELD).",
            file=sys.stderr,
        )
    print(f"Deleted {profile.name!r} and its secrets.", file=sys.stderr)
    return 0


def _in_sentence(label: str) -> str:
    """A field label inside a sentence: "Password" -> "password", "API key" stays."""
    return label[:1].lower() + label[1:] if label[1:2].islower() else label


def _secret_from_input(what: str) -> str:
    value = os.environ.get(PASSWORD_ENV)
    if value:
        if not _is_text(value):
            raise UsageError(f"The environment variable {PASSWORD_ENV} is not valid UTF-8 text; set it again as UTF-8.")
        return value
    if sys.stdin is None:
        raise UsageError(f"There is no standard input to read the {what} from; set {PASSWORD_ENV}.")
    if sys.stdin.isatty():
        import getpass

        return getpass.getpass(f"{what}: ")
    data = _read_bounded(sys.stdin.buffer, SECRET_FILE_LIMIT)
    if len(data) > SECRET_FILE_LIMIT:
        raise UsageError(f"The standard input is larger than {SECRET_FILE_LIMIT // 1024} KiB; give only the {what}.")
    if b"\0" in data:
        raise UsageError(f"The standard input contains NUL bytes, so it is not text; give only the {what}.")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"The standard input is not UTF-8 text; give the {what} as UTF-8.") from None
    text = text.removeprefix("\ufeff")
    return text[:-2] if text.endswith("\r\n") else text.removesuffix("\n")


def cmd_profile_set_secret(args) -> int:
    store, secrets = _stores(args)
    profile = store.get(args.name)
    fields = profile.secret_fields()
    if args.field not in fields:
        platform = platform_registry.get(profile.platform)
        raise UsageError(
            f"{_shown(args.field)} is not a secret of {platform.label} connections; "
            f"choose one of {', '.join(fields) or '(none)'}."
        )
    label = _in_sentence(platform_registry.get(profile.platform).field(args.field).label)
    if not secrets.available:
        raise RuntimeFailure(
            f"{secrets.problem} A secret kept for this run only would be lost as soon as this command ends, "
            f"so the {label} was not saved."
        )
    value = _secret_from_input(label)
    if not value:
        raise UsageError(f"The {label} is empty; give it in {PASSWORD_ENV} or on standard input.")
    secrets.set(profile.id, args.field, value)
    print(f"Saved the {label} of {profile.name!r} in the keyring.", file=sys.stderr)
    return 0


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

    pr = sub.add_parser(
        "profile",
        help="saved connections: list, show, import, export, delete, set-secret",
        description="Saved connections (secrets are kept in the system keyring, never in files).",
    )
    psub = pr.add_subparsers(dest="profile_command", required=True, metavar="COMMAND")
    pl = psub.add_parser(
        "list",
        help="one saved connection per line: name, platform, broker",
        description="One saved connection per line: name, platform, broker. With --json: JSON lines, one "
        'object per connection: {"name", "platform", "broker", "id", "open_on_start"}.',
    )
    pl.add_argument(
        "--json", action="store_true", help='JSON lines of {"name","platform","broker","id","open_on_start"}'
    )
    pl.set_defaults(func=cmd_profile_list)
    ps = psub.add_parser("show", help="every field of a saved connection (secrets only as set or not set)")
    ps.add_argument("name", metavar="NAME")
    ps.set_defaults(func=cmd_profile_show)
    pi = psub.add_parser(
        "import",
        help="a Tektelic or ThingPark configuration body, or the console's own export",
        description="Imports a Tektelic MQTT_V2 integration body (POST /api/integration), a ThingPark MQTT "
        "connection body (POST /connections) or a file from `profile export`; the kind is detected when "
        "--platform is left out. Passwords in the file go to the keyring. Prints the new connection's name.",
    )
    pi.add_argument("--platform", choices=("tektelic", "thingpark"), help="the kind of body (default: detected)")
    pi.add_argument("--name", help="the new connection's name (default: the body's name)")
    pi.add_argument("file", metavar="FILE")
    pi.set_defaults(func=cmd_profile_import)
    pe = psub.add_parser(
        "export",
        help="NAME FILE or --all FILE: JSON without any secret",
        usage="uplink-console profile export (NAME | --all) FILE",
        description="Writes saved connections as JSON, without passwords or other secrets ('-': standard output).",
    )
    pe.add_argument("--all", action="store_true", help="every saved connection")
    pe.add_argument("targets", nargs="+", metavar="NAME FILE", help=argparse.SUPPRESS)
    pe.set_defaults(func=cmd_profile_export)
    pd = psub.add_parser("delete", help="a saved connection and its secrets")
    pd.add_argument("name", metavar="NAME")
    pd.set_defaults(func=cmd_profile_delete)
    pss = psub.add_parser(
        "set-secret",
        help=f"store a secret field from {PASSWORD_ENV} or standard input",
        description=f"Stores one secret field (e.g. password) of a saved connection in the keyring; the value "
        f"is read from {PASSWORD_ENV} or standard input (one trailing newline is dropped).",
    )
    pss.add_argument("name", metavar="NAME")
    pss.add_argument("field", metavar="FIELD")
    pss.set_defaults(func=cmd_profile_set_secret)

    # Commands of their own features, each registered by its module.
    from app import cli_cert, cli_downlink, cli_simulate

    cli_cert.add_parsers(sub)
    cli_downlink.add_parsers(sub)
    cli_simulate.add_parsers(sub)

    b = sub.add_parser("bench", help="benchmarks (ingest, search, reopen)")
    b.add_argument("rest", nargs=argparse.REMAINDER)
    b.set_defaults(func=cmd_bench)
    return p


def _option_value(argv: list[str], option: str) -> str | None:
    for i, a in enumerate(argv):
        if a == option and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith(option + "="):
            return a.split("=", 1)[1]
    return None


def platform_named_in(argv: list[str]) -> Platform | None:
    """The platform whose options the parser should know: --platform, or that of --profile NAME."""
    name = _option_value(argv, "--platform")
    if name not in platform_registry.NAMES and (argv[:1] != ["profile"]):
        saved = _option_value(argv, "--profile")
        if saved:
            name = _saved_platform(saved)
    if name in platform_registry.NAMES:
        try:
            return platform_registry.get(name)
        except ModuleNotFoundError:
            return None
    return None


def _saved_platform(name: str) -> str | None:
    try:
        from app.profiles import ProfileStore

        return ProfileStore().get(name).platform
    except Exception:  # connection_from_args says what is wrong with it
        return None


def commands_summary() -> str:
    """The subcommands, one line each, for the window's --help."""
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    lines = ["commands (`uplink-console COMMAND --help` for each):"]
    for choice in action._choices_actions:
        lines.append(f"  {choice.dest:<16} {choice.help}")
    lines.append("  --profile NAME   open the window connected to a saved connection")
    return "\n".join(lines)


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
    from app.profiles import ProfileStoreError
    from app.secrets import SecretError

    parser = build_parser(platform_named_in(argv))
    args = parser.parse_args(argv)
    prog = named["prog"] = _prog(args)
    try:
        check_text_arguments(args, _option_names(parser, args.subcommand))
        return args.func(args)
    except (RuntimeFailure, SecretError, ProfileStoreError) as exc:
        log.debug("%s: %s", prog, type(exc).__name__, exc_info=True)
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1
    except (UsageError, ConfigError, ProfileError, EncodeError, PayloadError, DecodeError, ValueError) as exc:
        log.debug("%s: %s", prog, exc, exc_info=True)
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    # `python -m app.cli`: run the one imported as app.cli, so the exceptions the command modules
    # raise (app.cli.UsageError …) are the classes _run catches, not a second copy of them.
    from app.cli import main as _main

    sys.exit(_main())

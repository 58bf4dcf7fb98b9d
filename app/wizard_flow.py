"""The connection wizards as data: pages, fields, conditions, defaults that follow choices, and
validity, for every platform, without Qt.

Modelled on Electrum's wizard (electrum/wizard.py): the navigation map lives in the engine and
is tested without a window (tests/test_wizard_flow.py); the Qt side (ui/connection/wizard/)
attaches a widget per page and asks this module everything else -- which fields a page shows,
which sentence goes next to a field, whether Next is enabled, which page comes next.

Every wizard is: [import] -> the platform's pages -> test -> finish.
- The platform's pages come from its profile fields: each ProfileField names its `page`
  (assigned in its platform module); this module only gives each page its title and words, and
  says when a page or a field applies (akenza's JWT page or uplink-secret page, ThingPark's
  certificates only over SSL/WSS ...).
- A field's problem is a sentence: first ProfileField.check (type, required, documented range),
  then the platform's own check of that field (its functions, so its sentences). The last page
  of settings also asks the platform for the whole connection (platform.connection), which
  catches what needs several fields together (an akenza key that cannot sign, say).
- Some values follow others (`set` returns what changed): the port follows TLS, a TTN cluster
  sets the tenant ttn, Drogue's binary mode switches to MQTT 5 and keeps it there (`locked`
  says why).
- The Things Stack's address is composed from wizard-only fields (cluster, Cloud tenant and
  region, or a custom address, and TLS) and read back from a saved URL.

The result is a WizardResult (values without secrets, secrets apart); `save_result` stores it
through app.profiles and app.secrets. The wizard itself writes nothing, except the certificate
files an imported body carries as text (the console reads certificates from files).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from app import platforms
from app.mqtt.config import ConfigError, ConnectionConfig, parse_url, validate_topic_filter, validate_topic_name
from app.platforms import akenza, drogue, tektelic, thingpark, tts
from app.platforms.base import EncodeError, ProfileError, ProfileField

PROBLEMS = (ProfileError, ConfigError, EncodeError, ValueError, OSError)
_TLS_FIELDS = ("ca_file", "cert_file", "key_file", "key_password")
MAX_NAME = 200  # app.profiles' limit on a connection's name
# Which fields decide each kind of failed test (app.connection_test kinds).
_FIX_FIELDS = {
    "certificate": ("ca_file", "cert_file", "key_file", "key_password", "verify_certificate", "allow_expired"),
    "credentials": (
        "password",
        "username",
        "token",
        "api_key",
        "access_token",
        "uplink_secret",
        "connector_id",
        "jwt_key_file",
        "app",
    ),
    "host": ("address", "cluster", "url", "host", "host_name"),
    "refused": ("address", "url", "port", "host_name"),
    "timeout": ("address", "url", "host", "port", "host_name"),
}


@dataclass(frozen=True)
class PageSpec:
    id: str
    title: str
    subtitle: str = ""
    kind: str = "fields"  # import | fields | test | finish
    when: Callable[[dict], bool] | None = None  # the page is shown only when this holds
    note: Callable[[dict], str] | None = None  # a sentence shown on the page, from the values


@dataclass
class WizardResult:
    name: str
    platform: str
    values: dict  # the platform's non-secret field values, validated
    secrets: dict  # secret field -> value (only those given)
    open_on_start: bool = False
    profile_id: str | None = None  # set by an import: the id its certificate folder is named after


@dataclass(frozen=True)
class PlatformRules:
    """What a platform's wizard adds to its fields (see the module docstring)."""

    pages: tuple[PageSpec, ...]
    import_page: PageSpec | None = None
    extra_fields: tuple[ProfileField, ...] = ()  # asked by the wizard, not stored as such
    composed: frozenset[str] = frozenset()  # stored fields the wizard fills from others
    visible: dict[str, Callable[[dict], bool]] = field(default_factory=dict)
    required: dict[str, Callable[[dict], str | None]] = field(default_factory=dict)  # sentence when empty
    checks: dict[str, Callable[[object, dict], object]] = field(default_factory=dict)  # raise a sentence
    locks: dict[str, Callable[[dict], str | None]] = field(default_factory=dict)
    placeholders: dict[str, Callable[[dict], str]] = field(default_factory=dict)
    follow: Callable[[str, dict, dict], dict] | None = None  # (changed name, values, auto) -> updates
    compose: Callable[[dict], dict] | None = None  # wizard values -> stored values
    decompose: Callable[[dict], dict] | None = None  # stored values -> wizard values
    suggest_name: Callable[[dict], str] | None = None
    summary: Callable[[dict], list[str]] | None = None
    order: tuple[str, ...] = ()  # fields that lead their page, in this order (the rest as listed)


def _text(value) -> str:
    return "" if value is None else str(value).strip()


def _empty(value) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _is(name: str, *wanted) -> Callable[[dict], bool]:
    return lambda v: v.get(name) in wanted


def _check_file(value, values) -> None:
    from app import cert_store

    entry_id = cert_store.entry_id_of(_text(value))
    if entry_id:
        try:
            cert_store.CertificateStore().get(entry_id)
        except KeyError:
            raise ProfileError(
                "The certificate chosen here was deleted from the certificate manager; choose another."
            ) from None
        return
    path = Path(_text(value)).expanduser()
    if not path.is_file():
        if path.exists():
            raise ProfileError(f"{path} is a folder, not a file; choose the file itself.")
        raise ProfileError(f"The file {path} does not exist; choose it again.")


def _check_url(value, values) -> None:
    parse_url(_text(value))


def _url_port_follows_tls(old_url: str, new_url: str) -> str | None:
    """An address whose scheme just changed between TLS and plain, with the old scheme's usual
    port: the new scheme's usual port instead (mqtt://h:1883 -> mqtts://h:8883)."""
    try:
        old, new = urlsplit(old_url), urlsplit(new_url)
        old_port, new_port = old.port, new.port
    except ValueError:
        return None
    swaps = {
        ("mqtt", "mqtts", 1883): 8883,
        ("mqtts", "mqtt", 8883): 1883,
        ("ws", "wss", 80): 443,
        ("wss", "ws", 443): 80,
    }
    swap = swaps.get((old.scheme.lower(), new.scheme.lower(), new_port))
    if swap is None or old_port != new_port or not new.hostname:
        return None
    return new_url.replace(f":{new_port}", f":{swap}", 1)


def _unique(name: str, taken: set[str]) -> str:
    name = (name or "").strip()[:MAX_NAME] or "Connection"
    if name.casefold() not in taken:
        return name
    n = 2
    while f"{name} ({n})".casefold() in taken:
        n += 1
    return f"{name} ({n})"


COMMON_TEST_PAGE = PageSpec(
    "test",
    "Test the connection",
    "The console connects with these settings, subscribes, and waits up to 10 seconds for the first message.",
    kind="test",
)
COMMON_FINISH_PAGE = PageSpec(
    "finish",
    "Name the connection",
    "It appears under this name in the sidebar. Passwords, keys and tokens go to the system keyring, "
    "never into the settings file.",
    kind="finish",
)


# ----- The Things Stack -------------------------------------------------------------------------

_TTN = tuple(tts.TTN_CLUSTERS)
TTS_CLUSTER = ProfileField(
    "cluster",
    "Cluster",
    "choice",
    default="eu1",
    choices=(*_TTN, "cloud", "custom"),
    choice_labels=(
        *(f"The Things Network, {where} ({tts.ttn_host(c)})" for c, where in tts.TTN_CLUSTERS.items()),
        "The Things Stack Cloud (<tenant>.<region>.cloud.thethings.industries)",
        "Another server: The Things Stack Enterprise or Open Source",
    ),
    help="Where your application is registered: your Console's address shows it, for example "
    "eu1.cloud.thethings.network/console.",
    page="server",
)
TTS_CLOUD_TENANT = ProfileField(
    "cloud_tenant",
    "Cloud tenant ID",
    placeholder="my-company",
    help="The first part of your Cloud address: my-company in my-company.eu1.cloud.thethings.industries.",
    page="server",
)
TTS_CLOUD_REGION = ProfileField(
    "cloud_region",
    "Cloud region",
    "choice",
    default="eu1",
    choices=tuple(tts.CLOUD_REGIONS),
    choice_labels=tuple(f"{where} ({r})" for r, where in tts.CLOUD_REGIONS.items()),
    help="The second part of your Cloud address: eu1 in my-company.eu1.cloud.thethings.industries.",
    page="server",
)
TTS_ADDRESS = ProfileField(
    "address",
    "Server address",
    placeholder="thethings.example.com",
    help="The host name of your server, as in its Console's address. host:port or a full mqtts://host:port "
    "address work too.",
    page="server",
)
TTS_TLS = ProfileField(
    "tls",
    "Encrypt the connection (TLS, port 8883)",
    "bool",
    default=True,
    help="Recommended. Without TLS (port 1883) the API key travels unencrypted.",
    page="server",
)
_DNS_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")


def _tts_url(v: dict) -> str:
    tls_on = v.get("tls") is not False
    scheme, port = ("mqtts", tts.TLS_PORT) if tls_on else ("mqtt", tts.PLAIN_PORT)
    cluster = v.get("cluster")
    if cluster in tts.TTN_CLUSTERS:
        host = tts.ttn_host(cluster)
    elif cluster == "cloud":
        host = tts.cloud_host(_text(v.get("cloud_tenant")).lower() or "tenant", v.get("cloud_region") or "eu1")
    else:
        address = _text(v.get("address"))
        if "://" in address:
            return address
        if re.fullmatch(r"[^:\[\]]+:\d+|\[[^\]]+\]:\d+", address):
            return f"{scheme}://{address}"
        if address.count(":") > 1 and not address.startswith("["):  # a bare IPv6 address
            address = f"[{address}]"
        return f"{scheme}://{address or 'localhost'}:{port}"
    return f"{scheme}://{host}:{port}"


def _tts_decompose(v: dict) -> dict:
    url = _text(v.get("url")) or "mqtts://eu1.cloud.thethings.network:8883"
    try:
        parts = urlsplit(url if "://" in url else "mqtt://" + url)
        host, port, scheme = parts.hostname or "", parts.port, parts.scheme.lower()
    except ValueError:
        return {"cluster": "custom", "address": url}
    tls_on = scheme in ("mqtts", "ssl", "tls")
    usual = tts.TLS_PORT if tls_on else tts.PLAIN_PORT
    if scheme not in ("mqtt", "mqtts", "tcp", "ssl", "tls") or port not in (None, usual):
        return {"cluster": "custom", "address": url, "tls": tls_on}
    cluster, tenant, region = tts.deployment_of(host)
    if cluster == "cloud" and region in tts.CLOUD_REGIONS:
        return {"cluster": "cloud", "cloud_tenant": tenant, "cloud_region": region, "tls": tls_on}
    if cluster in tts.TTN_CLUSTERS:
        return {"cluster": cluster, "tls": tls_on}
    return {"cluster": "custom", "address": host if ":" not in host else f"[{host}]", "tls": tls_on}


def _tts_expected_tenant(v: dict) -> str | None:
    if v.get("cluster") in tts.TTN_CLUSTERS:
        return tts.TTN_TENANT
    if v.get("cluster") == "cloud":
        return _text(v.get("cloud_tenant")).lower()
    return ""


def _tts_follow(name: str, v: dict, auto: dict) -> dict:
    out: dict = {}
    if name in ("cluster", "cloud_tenant"):
        wanted = _tts_expected_tenant(v)
        current = _text(v.get("tenant"))
        if current == "" or current == auto.get("tenant"):
            out["tenant"] = wanted
            auto["tenant"] = wanted
    if name == "address":
        scheme = _text(v.get("address")).partition("://")[0].lower() if "://" in _text(v.get("address")) else ""
        if scheme in ("mqtts", "ssl", "tls", "wss"):
            out["tls"] = True
        elif scheme in ("mqtt", "tcp", "ws"):
            out["tls"] = False
    return out


def _tts_app(value, v: dict) -> None:
    app, at, in_app = _text(value).partition("@")
    tts.check_id(app, "Application ID")
    tenant = _text(v.get("tenant"))
    if at and tenant and tenant != in_app:
        raise ProfileError(f"The application ID names tenant {in_app!r} but the tenant ID is {tenant!r}.")


def _tts_cloud_tenant(value, v: dict) -> None:
    if not _DNS_LABEL.fullmatch(_text(value).lower()):
        raise ProfileError(
            f"Cloud tenant ID {_text(value)!r} can hold only letters, digits and dashes: it is part of the address."
        )


def _tts_uid(v: dict, missing: str = "") -> str:
    return tts.tts_username(_text(v.get("app")).partition("@")[0] or missing, _text(v.get("tenant")) or None)


def _tts_suggest(v: dict) -> str:
    app = _text(v.get("app")).partition("@")[0] or "The Things Stack"
    cluster = v.get("cluster")
    if cluster in tts.TTN_CLUSTERS:
        return f"{app} (TTN {cluster})"
    if cluster == "cloud":
        return f"{app} ({_text(v.get('cloud_tenant')) or 'Cloud'} {v.get('cloud_region')})"
    try:
        return f"{app} ({parse_url(_tts_url(v)).host})"
    except ConfigError:
        return app


def _tts_summary(v: dict) -> list[str]:
    try:
        config = parse_url(_tts_url(v))
        where = f"{config.host}:{config.effective_port}{' with TLS' if config.transport.uses_tls else ', unencrypted'}"
    except ConfigError:
        where = _tts_url(v)
    uid = _tts_uid(v)
    device = _text(v.get("device")) or "every device"
    return [
        f"Application {uid} on {where}",
        f"Receives: {device}; {_text(v.get('upstream')) or 'all'} message kinds",
        "MQTT 3.1.1 and QoS 0 (The Things Stack supports no other)",
    ]


TTS_RULES = PlatformRules(
    pages=(
        PageSpec(
            "server",
            "Where your application lives",
            "The Things Stack runs as The Things Network (the community network), as The Things Stack Cloud, "
            "or on your own server.",
            note=lambda v: tts.ONLY_311_QOS0_WHY,
        ),
        PageSpec(
            "application",
            "Application and API key",
            "From The Things Stack Console: your application's ID, and an API key made under "
            "Integrations → MQTT (Generate new API key).",
            note=lambda v: f"The console signs in as {_tts_uid(v, '<application ID>')}.",
        ),
        PageSpec(
            "traffic",
            "What to receive",
            "Every device and every kind of message by default; narrow it down if you like.",
        ),
    ),
    extra_fields=(TTS_CLUSTER, TTS_CLOUD_TENANT, TTS_CLOUD_REGION, TTS_ADDRESS, TTS_TLS),
    composed=frozenset({"url"}),
    placeholders={
        "tenant": lambda v: {"cloud": "your Cloud tenant ID", "custom": "empty for The Things Stack Open Source"}.get(
            v.get("cluster"), tts.TTN_TENANT
        ),
    },
    visible={
        "cloud_tenant": _is("cluster", "cloud"),
        "cloud_region": _is("cluster", "cloud"),
        "address": _is("cluster", "custom"),
        "ca_file": lambda v: v.get("cluster") == "custom" and v.get("tls") is not False,
        "verify_certificate": lambda v: v.get("tls") is not False,
    },
    required={
        "cloud_tenant": lambda v: (
            "Enter your Cloud tenant ID: my-company in my-company.eu1.cloud.thethings.industries."
        ),
        "address": lambda v: "Enter your server's address, for example thethings.example.com.",
        "password": lambda v: tts.API_KEY_MISSING,
    },
    checks={
        "cloud_tenant": _tts_cloud_tenant,
        "address": lambda value, v: parse_url(_tts_url(v)),
        "app": _tts_app,
        "tenant": lambda value, v: tts.check_tenant(_text(value)),
        "device": lambda value, v: tts.check_id(_text(value), "Device ID"),
        "upstream": lambda value, v: tts.upstream_topics(value),
    },
    locks={
        "tls": lambda v: (
            "The address's mqtts:// or mqtt:// decides."
            if v.get("cluster") == "custom" and "://" in _text(v.get("address"))
            else None
        ),
    },
    follow=_tts_follow,
    compose=lambda v: {"url": _tts_url(v)},
    decompose=_tts_decompose,
    suggest_name=_tts_suggest,
    summary=_tts_summary,
)


# ----- Tektelic -----------------------------------------------------------------------------


def _tektelic_version(v: dict) -> str:
    version = v.get("mqtt_version") or tektelic.DEFAULT_MQTT_VERSION
    return tektelic.TEKTELIC_MQTT_VERSIONS.get(version, version)


def _tektelic_follow(name: str, v: dict, auto: dict) -> dict:
    if name == "ssl":
        port = _text(v.get("port"))
        if v.get("ssl") and port == "1883":
            return {"port": "8883"}
        if not v.get("ssl") and port == "8883":
            return {"port": "1883"}
    return {}


def _tektelic_template(value, v: dict) -> None:
    templates = tektelic.PLATFORM.templates({"downlink_templates": v.get("downlink_templates")})
    if _text(value) not in templates:
        raise ProfileError(f"There is no downlink template {_text(value)!r}; choose one of {', '.join(templates)}.")


def _tektelic_summary(v: dict) -> list[str]:
    port = _text(v.get("port")) or ("8883" if v.get("ssl") else "1883")
    lines = [f"Broker {_text(v.get('host'))}:{port}, {'SSL' if v.get('ssl') else 'no encryption'}"]
    if _text(v.get("token")):
        lines[0] += f", token {_text(v.get('token'))}"
    lines.append(f"Uplinks from pushTopic “{_text(v.get('push_topic'))}”")
    if _text(v.get("pull_topic")):
        template = _text(v.get("downlink_template"))
        lines.append(f"Downlinks to pullTopic “{_text(v.get('pull_topic'))}” ({template} body)")
    return lines


def _import_page(title: str, what: str) -> PageSpec:
    return PageSpec(
        "import",
        title,
        f"Paste {what}, or open it from a file, and the wizard fills itself in, password and certificates "
        "included. Or skip this page and type the settings yourself.",
        kind="import",
    )


TEKTELIC_RULES = PlatformRules(
    import_page=_import_page(
        "Import the integration", "the body of the integration's REST request (POST /api/integration)"
    ),
    pages=(
        PageSpec(
            "broker",
            "The integration's broker",
            "The network server publishes to your own MQTT broker and the console connects to the same one: "
            "use the integration's host, port, SSL, token and password.",
        ),
        PageSpec(
            "topics",
            "Push and pull topics",
            "pushTopic: where the network server publishes uplinks (the console subscribes to it). pullTopic: "
            "where it listens for downlinks (the console publishes to it).",
        ),
        PageSpec(
            "tls",
            "Certificates",
            "Only needed for a broker with a private CA, or one that asks for a client certificate. "
            "Empty: the system's trusted certificates.",
            when=lambda v: bool(v.get("ssl")),
        ),
        PageSpec(
            "integration",
            "The network server's own settings",
            "The integration uses these, not the console; they are kept with the connection so that it matches "
            "the integration. Tektelic's documented ranges apply; the defaults are Tektelic's.",
        ),
    ),
    placeholders={"port": lambda v: "8883 (SSL's usual port)" if v.get("ssl") else "1883"},
    follow=_tektelic_follow,
    checks={
        "host": lambda value, v: tektelic.check_host(_text(value)),
        "client_id": lambda value, v: tektelic.check_client_id("Client id", _text(value), _tektelic_version(v)),
        "integration_client_id": lambda value, v: tektelic.check_client_id(
            "Network server's client id", _text(value), _tektelic_version(v)
        ),
        "push_topic": lambda value, v: validate_topic_filter(_text(value)),
        "pull_topic": lambda value, v: validate_topic_name(_text(value)),
        "downlink_templates": lambda value, v: tektelic.parse_templates(value),
        "downlink_template": _tektelic_template,
    },
    order=("push_topic", "pull_topic"),
    suggest_name=lambda v: f"Tektelic {_text(v.get('host'))}".strip(),
    summary=_tektelic_summary,
)


# ----- akenza -------------------------------------------------------------------------------


def _akenza_key(value, v: dict) -> None:
    _check_file(value, v)
    akenza.signing_key(
        {
            "jwt_key_file": _text(value),
            "jwt_key_password": v.get("jwt_key_password") or None,
            "jwt_algorithm": v.get("jwt_algorithm") or "auto",
        }
    )


def _akenza_topics(v: dict) -> str:
    device = _text(v.get("device_id")) or "<device id>"
    settings = {
        "auth_mode": v.get("auth_mode"),
        "device_id": device,
        "uplink_secret": _text(v.get("uplink_secret")) or "<secret>",
        "downlink_topic": _text(v.get("downlink_topic")),
        "uplink_subtopic": _text(v.get("uplink_subtopic")),
    }
    try:
        subtopic = akenza.checked_subtopic(settings["uplink_subtopic"])
        up = akenza.uplink_topic({**settings, "uplink_subtopic": subtopic}, device)
        down = akenza.downlink_filter(settings)
    except PROBLEMS:
        return ""
    text = f"As this device the console publishes uplinks to {up} and receives downlinks on {down}."
    if not _empty(v.get("content_type")):
        text += " A content type is an MQTT 5 property, so the connection uses MQTT 5."
    return text


AKENZA_RULES = PlatformRules(
    pages=(
        PageSpec(
            "device",
            "The akenza device",
            "The console connects to akenza as one of your devices, with that device's credentials.",
        ),
        PageSpec(
            "jwt",
            "Device credentials (JWT)",
            "Before each connection the console signs a short-lived token (a JWT) with the device's private key; "
            "the matching public key or certificate must be registered for the device in akenza.",
            when=_is("auth_mode", "jwt"),
        ),
        PageSpec(
            "secret",
            "Uplink secret",
            "From the device connector in akenza (Device API configuration): its id and its secret.",
            when=_is("auth_mode", "uplink-secret"),
        ),
        PageSpec(
            "messages",
            "Messages",
            "Where this device's uplinks go, and what they contain.",
            note=_akenza_topics,
        ),
    ),
    required={
        "jwt_key_file": lambda v: "Choose the device's private key file; JWT mode signs its password with it.",
        "connector_id": lambda v: "Enter the device connector id; it is the username in uplink-secret mode.",
        "uplink_secret": lambda v: (
            "Enter the device connector's uplink secret; it is the password and part of the topic."
        ),
    },
    checks={
        "url": _check_url,
        "device_id": lambda value, v: akenza.check_topic_level(_text(value), "The device id", ProfileError),
        "uplink_secret": lambda value, v: akenza.check_topic_level(_text(value), "The uplink secret", ProfileError),
        "audience_base": lambda value, v: akenza.checked_audience_base(_text(value)),
        "uplink_subtopic": lambda value, v: akenza.checked_subtopic(_text(value)),
        "jwt_key_file": _akenza_key,
    },
    locks={
        "mqtt_version": lambda v: (
            "Set to 5 by the content type (an MQTT 5 property)." if not _empty(v.get("content_type")) else None
        ),
    },
    follow=lambda name, v, auto: {"mqtt_version": "5"} if name == "content_type" and v.get(name) else {},
    suggest_name=lambda v: f"akenza {_text(v.get('device_id')) or 'device'}",
    summary=lambda v: [
        f"Device {_text(v.get('device_id'))} on {_text(v.get('url'))}",
        "Signs in with a JWT from "
        + Path(_text(v.get("jwt_key_file"))).name
        + f" ({v.get('jwt_algorithm') or 'auto'}, {_text(v.get('token_lifetime_minutes')) or 60} minutes)"
        if v.get("auth_mode") == "jwt"
        else f"Signs in with the uplink secret of connector {_text(v.get('connector_id'))}",
    ],
)


# ----- ThingPark ----------------------------------------------------------------------------

THINGPARK_PORTS = {"TCP": 1883, "SSL": 8883, "WSS": 443}


def _thingpark_follow(name: str, v: dict, auto: dict) -> dict:
    if name != "protocol":
        return {}
    old = auto.get("protocol")
    auto["protocol"] = v.get("protocol")
    host_name = _text(v.get("host_name"))
    host, sep, port = host_name.rpartition(":")
    if old in THINGPARK_PORTS and sep and port == str(THINGPARK_PORTS[old]) and not host.endswith(":"):
        return {"host_name": f"{host}:{THINGPARK_PORTS[v.get('protocol')]}"}
    return {}


def _thingpark_topics(v: dict) -> str:
    try:
        up = thingpark.topic_filter_for(_text(v.get("uplink_topic_pattern")))
        down = thingpark.fill_topic_pattern(_text(v.get("downlink_topic_pattern")), {"DevEUI": "<DevEUI>"})
    except PROBLEMS:
        return ""
    return f"The console subscribes to {up} and sends a device's downlinks to {down}."


THINGPARK_RULES = PlatformRules(
    import_page=_import_page("Import the connection", "the body of the ThingPark connection (POST /connections)"),
    pages=(
        PageSpec(
            "broker",
            "Your MQTT broker",
            "ThingPark publishes to your own broker and the console connects to the same one: use the "
            "connection's hostName, protocol, username and password.",
        ),
        PageSpec(
            "topics",
            "Topic patterns",
            "As in the ThingPark connection. ThingPark fills placeholders such as {DevEUI} in; the console "
            "subscribes with each such level as +.",
            note=_thingpark_topics,
        ),
        PageSpec(
            "tls",
            "Certificates",
            "The trusted CA, certificate and private key of the connection, if it uses them. Empty: the system's "
            "trusted certificates and no client certificate.",
            when=lambda v: v.get("protocol") != "TCP",
            note=lambda v: (
                "ThingPark itself takes the private key in PKCS#8 form only (-----BEGIN PRIVATE "
                "KEY-----); the console also reads PKCS#1 and encrypted keys."
            ),
        ),
    ),
    visible={"websocket_path": _is("protocol", "WSS")},
    placeholders={
        "host_name": lambda v: f"broker.example.com:{THINGPARK_PORTS.get(v.get('protocol'), 8883)}",
    },
    follow=_thingpark_follow,
    checks={
        "host_name": lambda value, v: thingpark.split_host_name(_text(value)),
        "uplink_topic_pattern": lambda value, v: thingpark.compile_topic_pattern(_text(value), "uplink topic pattern"),
        "downlink_topic_pattern": lambda value, v: thingpark.compile_topic_pattern(
            _text(value), "downlink topic pattern"
        ),
    },
    suggest_name=lambda v: f"ThingPark {_text(v.get('host_name'))}".strip(),
    summary=lambda v: [
        f"Broker {_text(v.get('host_name'))} over {v.get('protocol')}",
        f"Uplinks from {_text(v.get('uplink_topic_pattern'))}, downlinks to {_text(v.get('downlink_topic_pattern'))}",
    ],
)


# ----- Drogue Cloud -------------------------------------------------------------------------

DROGUE_BINARY_NEEDS_5 = (
    "Binary content mode needs MQTT 5: the CloudEvent attributes travel as MQTT 5 user properties, which "
    "MQTT 3.1.1 does not have. The connection uses MQTT 5."
)


def _drogue_follow(name: str, v: dict, auto: dict) -> dict:
    if name == "content_mode" and v.get("content_mode") == "binary":
        return {"mqtt_version": "5"}
    if name == "mqtt_version" and v.get("mqtt_version") == "3.1.1" and v.get("token_as") == "password":
        return {"token_as": "username"}
    return {}


DROGUE_RULES = PlatformRules(
    pages=(
        PageSpec(
            "endpoint",
            "Drogue Cloud's MQTT integration",
            "The integration endpoint, and the application whose events you want to see.",
        ),
        PageSpec(
            "auth",
            "Sign in",
            "How the console proves who you are. An API key lasts; an access token expires within minutes.",
        ),
        PageSpec(
            "format",
            "Message format",
            "How Drogue sends each event.",
            note=lambda v: (
                DROGUE_BINARY_NEEDS_5
                if v.get("content_mode") == "binary"
                else "Structured mode works with MQTT 3.1.1 and 5."
            ),
        ),
    ),
    visible={
        "username": _is("auth_mode", "api-key"),
        "api_key": _is("auth_mode", "api-key"),
        "access_token": _is("auth_mode", "token"),
        "token_as": _is("auth_mode", "token"),
    },
    required={
        "username": lambda v: "Enter the user name the API key belongs to.",
        "api_key": lambda v: "Enter the API key (it is the MQTT password).",
        "access_token": lambda v: "Enter the OAuth2 access token (or choose API-key authentication).",
    },
    checks={
        "url": _check_url,
        "application": lambda value, v: drogue.check_name(
            _text(value), "The application name", ProfileError, wildcards_refused=True
        ),
        "share_group": lambda value, v: drogue.check_name(_text(value), "The share group", ProfileError),
    },
    locks={
        "mqtt_version": lambda v: (
            "Set to 5 by binary content mode (it needs MQTT 5)." if v.get("content_mode") == "binary" else None
        ),
        "token_as": lambda v: (
            "MQTT 3.1.1 cannot send a password alone, so the token goes as the username."
            if v.get("mqtt_version") == "3.1.1"
            else None
        ),
    },
    follow=_drogue_follow,
    suggest_name=lambda v: f"Drogue {_text(v.get('application')) or 'Cloud'}",
    summary=lambda v: [
        f"Application {_text(v.get('application'))} on {_text(v.get('url'))}",
        f"{v.get('content_mode')} content mode, MQTT {v.get('mqtt_version')}",
    ],
)


# ----- generic MQTT -------------------------------------------------------------------------


def _generic_topics(value, v: dict) -> None:
    topics = [t.strip() for t in _text(value).replace("\n", ",").split(",") if t.strip()]
    if not topics:
        raise ProfileError("Enter at least one topic filter, for example sensors/# (or # for everything).")
    for topic in topics:
        validate_topic_filter(topic)


def _uses_tls(url) -> bool:
    scheme = _text(url).partition("://")[0].lower() if "://" in _text(url) else "mqtt"
    return scheme in ("mqtts", "ssl", "tls", "wss")


def _generic_host(v: dict) -> str:
    try:
        return parse_url(_text(v.get("url"))).host
    except ConfigError:
        return "MQTT broker"


GENERIC_RULES = PlatformRules(
    pages=(
        PageSpec("broker", "The broker", "The address of any MQTT broker, and its credentials if it asks for them."),
        PageSpec("topics", "Topics", "What to subscribe to, and where your messages go."),
        PageSpec(
            "tls",
            "Certificates",
            "Only needed for a broker with a private CA, or one that asks for a client certificate. "
            "Empty: the system's trusted certificates.",
            when=lambda v: _uses_tls(v.get("url")),
        ),
    ),
    checks={
        "url": _check_url,
        "topics": _generic_topics,
        "publish_topic": lambda value, v: validate_topic_name(_text(value)),
    },
    follow=lambda name, v, auto: _generic_follow(name, v, auto),
    suggest_name=_generic_host,
    summary=lambda v: [f"Broker {_text(v.get('url'))}", f"Subscribes to {_text(v.get('topics'))}"],
)


def _generic_follow(name: str, v: dict, auto: dict) -> dict:
    if name != "url":
        return {}
    old, auto["url"] = auto.get("url"), _text(v.get("url"))
    swapped = _url_port_follows_tls(old or "", _text(v.get("url")))
    if swapped:
        auto["url"] = swapped
        return {"url": swapped}
    return {}


RULES: dict[str, PlatformRules] = {
    "tts": TTS_RULES,
    "tektelic": TEKTELIC_RULES,
    "akenza": AKENZA_RULES,
    "thingpark": THINGPARK_RULES,
    "drogue": DROGUE_RULES,
    "generic": GENERIC_RULES,
}


# ----- the flow ------------------------------------------------------------------------------


class WizardFlow:
    """One wizard's state: the values entered so far, and everything the pages ask of them.

    values: field name -> value as entered (text, bool, a choice); stored profiles' typed values
    are accepted as they are. secrets: field -> value of an existing connection."""

    def __init__(
        self,
        platform_name: str,
        values: dict | None = None,
        secrets: dict | None = None,
        *,
        name: str = "",
        open_on_start: bool = False,
        taken_names=(),
    ) -> None:
        self.platform_name = platform_name
        self.platform = platforms.get(platform_name)
        self.rules = RULES[platform_name]
        self.editing = values is not None
        self.fields: dict[str, ProfileField] = {f.name: f for f in (*self.rules.extra_fields, *self.platform.fields)}
        self.values: dict = {name_: f.default for name_, f in self.fields.items()}
        given = dict(values or {})
        self.unknown = {k: v for k, v in given.items() if k not in self.fields}  # kept as they are
        self.values.update({k: v for k, v in given.items() if k in self.fields and v is not None})
        self.values.update({k: v for k, v in (secrets or {}).items() if k in self.fields and v})
        if self.rules.decompose is not None:
            self.values.update(self.rules.decompose(self.values))
        self.auto: dict = {"protocol": self.values.get("protocol"), "url": _text(self.values.get("url"))}
        if platform_name == "tts":
            expected = _tts_expected_tenant(self.values)
            if not self.editing and _empty(self.values.get("tenant")):
                self.values["tenant"] = expected
            if _text(self.values.get("tenant")) == expected:
                self.auto["tenant"] = expected
        self.name = name
        self.open_on_start = open_on_start
        own = name.casefold() if name else None
        self.taken = {str(n).casefold() for n in taken_names} - ({own} if own else set())
        self.touched: set[str] = set()
        self.test_result = None  # app.connection_test.ConnectionTestResult of the current values
        self.save_anyway = False  # the user's confirmation after a failed (or skipped) test
        self.profile_id: str | None = None  # an import's profile id
        self.imported_name: str | None = None
        self._tls_checked: dict = {}  # what loading the certificates said, by files and password

    # ----- pages and navigation

    def all_pages(self) -> list[PageSpec]:
        pages = []
        if self.rules.import_page is not None:
            pages.append(self.rules.import_page)
        return [*pages, *self.rules.pages, COMMON_TEST_PAGE, COMMON_FINISH_PAGE]

    def pages(self) -> list[PageSpec]:
        """The pages shown for the current values, in order."""
        out = []
        for page in self.all_pages():
            if page.kind == "import" and self.editing:
                continue
            if page.when is not None and not page.when(self.values):
                continue
            out.append(page)
        return out

    def page(self, page_id: str) -> PageSpec:
        for page in self.all_pages():
            if page.id == page_id:
                return page
        raise KeyError(page_id)

    def page_ids(self) -> list[str]:
        return [p.id for p in self.pages()]

    def first_id(self) -> str:
        return self.page_ids()[0]

    def next_id(self, page_id: str) -> str | None:
        ids = self.page_ids()
        if page_id not in ids:
            return None
        i = ids.index(page_id)
        return ids[i + 1] if i + 1 < len(ids) else None

    def prev_id(self, page_id: str) -> str | None:
        ids = self.page_ids()
        if page_id not in ids:
            return None
        i = ids.index(page_id)
        return ids[i - 1] if i > 0 else None

    def last_settings_page(self) -> str:
        return [p.id for p in self.pages() if p.kind == "fields"][-1]

    def note(self, page_id: str) -> str:
        page = self.page(page_id)
        if page.note is None:
            return ""
        try:
            return page.note(self.values) or ""
        except Exception:  # noqa: BLE001 - a note is a courtesy; half-typed values may break it
            return ""

    # ----- fields

    def field(self, name: str) -> ProfileField:
        return self.fields[name]

    def page_fields(self, page_id: str) -> list[ProfileField]:
        """Every field the page can show (wizard-only fields first), visible or not."""
        fields = [f for f in self.fields.values() if f.page == page_id and f.name not in self.rules.composed]
        order = self.rules.order
        return sorted(fields, key=lambda f: order.index(f.name) if f.name in order else len(order))

    def visible(self, name: str) -> bool:
        f = self.fields[name]
        if name in self.rules.composed:
            return False
        page = self.page(f.page) if f.page else None
        if page is not None and page.when is not None and not page.when(self.values):
            return False
        rule = self.rules.visible.get(name)
        return rule is None or bool(rule(self.values))

    def shown_fields(self, page_id: str) -> list[ProfileField]:
        return [f for f in self.page_fields(page_id) if self.visible(f.name)]

    def locked(self, name: str) -> str | None:
        """Why the value is fixed by another choice (the widget is disabled), or None."""
        rule = self.rules.locks.get(name)
        return rule(self.values) if rule is not None else None

    def placeholder(self, name: str) -> str:
        rule = self.rules.placeholders.get(name)
        if rule is not None:
            return rule(self.values)
        f = self.fields[name]
        if f.placeholder:
            return f.placeholder
        if f.kind in ("int", "float") and f.default is not None:
            return f"{f.default:g}" if isinstance(f.default, float) else str(f.default)
        return ""

    def hint(self, name: str) -> str:
        """The help text under a field: the platform's words, with the documented range."""
        f = self.fields[name]
        text = f.help
        span = f.range_text()
        if span:
            default = f" (default {f.default:,})" if isinstance(f.default, int) and f.kind == "int" else ""
            text = f"{text} Allowed: {span}{default}." if text else f"Allowed: {span}{default}."
        return text

    def set(self, name: str, value) -> set[str]:
        """Enters a value; returns the names whose values changed (following rules included)."""
        if self.values.get(name) == value:
            return set()
        self.values[name] = value
        self.touched.add(name)
        changed = {name}
        if self.rules.follow is not None:
            for key, new in self.rules.follow(name, self.values, self.auto).items():
                if self.values.get(key) != new:
                    self.values[key] = new
                    changed.add(key)
        key_entry = self._stored_key_for(name, value)
        if key_entry is not None:
            self.values["key_file"] = key_entry
            changed.add("key_file")
        if self.test_result is not None:
            self.test_result = None  # the test was of other values
            self.save_anyway = False
        return changed

    def _stored_key_for(self, name: str, value) -> str | None:
        """A client certificate chosen from the certificate manager, the key field empty: the
        stored key that belongs to it (a generated pair is two entries), as a reference."""
        if name != "cert_file" or "key_file" not in self.fields or not _empty(self.values.get("key_file")):
            return None
        from app import cert_store

        entry_id = cert_store.entry_id_of(_text(value))
        if entry_id is None:
            return None
        try:
            key = cert_store.CertificateStore().key_for(entry_id)
        except Exception:  # noqa: BLE001 - a convenience: the user can still choose the key
            return None
        return key.reference if key is not None else None

    def is_missing(self, name: str) -> bool:
        """Empty and needed: the page waits for it (shown as a gentle 'required', not an error)."""
        if not _empty(self.values.get(name)):
            return False
        f = self.fields[name]
        if f.required and f.default is None:
            return True
        rule = self.rules.required.get(name)
        return rule is not None and rule(self.values) is not None

    def problem(self, name: str) -> str | None:
        """What is wrong with the field's value, as the platform says it; None if it is fine."""
        f = self.fields[name]
        value = self.values.get(name)
        if _empty(value):
            rule = self.rules.required.get(name)
            if rule is not None:
                sentence = rule(self.values)
                if sentence:
                    return sentence
            if f.required and f.default is None:
                return f"{f.label} is required."
            return None
        try:
            checked = f.check(value.strip() if isinstance(value, str) and f.kind != "textarea" else value)
            if f.kind == "file":
                _check_file(checked, self.values)
            check = self.rules.checks.get(name)
            if check is not None:
                check(checked, self.values)
        except PROBLEMS as exc:
            return str(exc) or f"{f.label} is not valid."
        return None

    def page_problems(self, page_id: str) -> dict[str, str]:
        """field name -> sentence, for the page's visible fields."""
        out = {}
        for f in self.shown_fields(page_id):
            sentence = self.problem(f.name)
            if sentence:
                out[f.name] = sentence
        return out

    def page_problem(self, page_id: str) -> str | None:
        """A sentence about the page as a whole, once its fields are fine: on a page of
        certificates, whether they load together (key password, matching pair); on the last
        settings page, the platform's own verdict on the whole connection."""
        page = self.page(page_id)
        if page.kind != "fields" or self.page_problems(page_id):
            return None
        shown = {f.name for f in self.shown_fields(page_id)}
        if shown & set(_TLS_FIELDS):
            sentence = self.tls_problem()
            if sentence:
                return sentence
        if page_id != self.last_settings_page():
            return None
        if any(self.page_problems(p) for p in self.page_ids() if self.page(p).kind == "fields"):
            return None
        return self.connection_problem()

    def tls_problem(self) -> str | None:
        """Whether the chosen CA, client certificate and key load (the key with its password)."""
        from app.platforms.base import tls_from_profile
        from app.tls import build_ssl_context

        chosen = {
            name: self.values.get(name) if name in self.fields and self.visible(name) else None for name in _TLS_FIELDS
        }
        chosen["verify_certificate"] = self.values.get("verify_certificate", True)
        chosen["allow_expired"] = self.values.get("allow_expired") is True and self.visible("allow_expired")
        files = [_text(chosen[name]) for name in ("ca_file", "cert_file", "key_file") if not _empty(chosen[name])]
        if not files:
            return None
        stamps = []
        for path in files:
            try:
                stamps.append(Path(path).expanduser().stat().st_mtime_ns)
            except OSError:
                stamps.append(None)
        key = (tuple(sorted(chosen.items(), key=lambda kv: kv[0])), tuple(stamps))
        if key not in self._tls_checked:
            try:
                given = {k: _text(v) if isinstance(v, str) else v for k, v in chosen.items()}
                build_ssl_context(tls_from_profile(given))
                self._tls_checked[key] = None
            except PROBLEMS as exc:
                self._tls_checked[key] = str(exc)
        return self._tls_checked[key]

    def tls_warning(self, page_id: str) -> str | None:
        """On a page of certificates whose certificates load: a chosen client certificate or CA that
        expires within app.certs.EXPIRY_WARNING_DAYS days, or an expired one the connection uses on
        purpose (allow_expired). Said on the page, never holding it back."""
        from app import certs

        shown = {f.name for f in self.shown_fields(page_id)}
        if not shown & {"ca_file", "cert_file"} or self.page_problem(page_id):
            return None
        allow_expired = self.values.get("allow_expired") is True and self.visible("allow_expired")
        sentences = []
        for name, what in (("cert_file", "client certificate"), ("ca_file", "CA certificate")):
            value = self.values.get(name)
            if name not in shown or _empty(value):
                continue
            found = self._certificates_of(_text(value))
            if name == "cert_file":
                found = found[:1]  # the leaf; the rest of a chain is the broker's business
            statuses = [certs.expiry_problem(item) for item in found]
            if not statuses:
                continue
            if all(status == "expired" for status, _ in statuses) and allow_expired:
                sentences.append(
                    f"The {what} has expired; this connection is set to use it anyway (More options: "
                    '"Connect even though a certificate has expired").'
                )
            elif any(status == "expiring" for status, _ in statuses):
                sentences.append(next(sentence for status, sentence in statuses if status == "expiring"))
        host_sentence = self._trusted_leaf_host_problem(shown)
        if host_sentence:
            sentences.append(host_sentence)
        return " ".join(sentences) or None

    def _trusted_leaf_host_problem(self, shown: set) -> str | None:
        """A broker's own certificate trusted as the CA (a self-signed broker adopted from the
        test page or the certificate manager) that does not cover the broker's host name: the
        connection would fail verification, so say it here."""
        from app import cert_store, certs

        value = self.values.get("ca_file")
        if "ca_file" not in shown or _empty(value) or self.values.get("verify_certificate") is False:
            return None
        found = self._certificates_of(_text(value))
        if len(found) != 1 or found[0].is_ca:
            return None
        try:
            host = self.connection_config().host
        except PROBLEMS:
            return None
        entry_id = cert_store.entry_id_of(_text(value))
        try:
            if entry_id:
                certificates = cert_store.CertificateStore().contents(entry_id).certificates
            else:
                with open(Path(_text(value)).expanduser(), "rb") as f:
                    certificates = certs.read(f.read(16 * 1024 * 1024), name=_text(value)).certificates
        except (KeyError, OSError, ValueError):
            return None
        return certs.hostname_problem(certificates[0], host) if len(certificates) == 1 else None

    def _certificates_of(self, value: str) -> list:
        """The certificates (app.certs Items) a CA or client-certificate value holds: a store entry
        from the store's index, a file read once per modification time. [] when unreadable
        (tls_problem says why)."""
        from app import cert_store, certs

        entry_id = cert_store.entry_id_of(value)
        if entry_id:
            try:
                return cert_store.CertificateStore().get(entry_id).certificates
            except (KeyError, OSError, ValueError):
                return []
        try:
            stamp = Path(value).expanduser().stat().st_mtime_ns
        except OSError:
            return []
        key = ("items", value, stamp)
        if key not in self._tls_checked:
            try:
                with open(Path(value).expanduser(), "rb") as f:
                    data = f.read(16 * 1024 * 1024)
                password = self.values.get("key_password") or None
                contents = certs.read(data, password=password if isinstance(password, str) else None, name=value)
                self._tls_checked[key] = [certs.certificate_item(c) for c in contents.certificates]
            except (OSError, ValueError):
                self._tls_checked[key] = []
        return self._tls_checked[key]

    def waiting_for(self, page_id: str) -> list[str]:
        """Labels of the empty fields the page still needs."""
        return [f.label for f in self.shown_fields(page_id) if self.is_missing(f.name)]

    def page_complete(self, page_id: str) -> bool:
        page = self.page(page_id)
        if page.kind == "fields":
            return not self.page_problems(page_id) and self.page_problem(page_id) is None
        if page.kind == "test":
            return self.save_anyway or (self.test_result is not None and self.test_result.ok)
        if page.kind == "finish":
            return self.name_problem(self.name) is None
        return True

    # ----- the profile

    def profile(self) -> dict:
        """The stored values composed and validated by the platform, secrets included."""
        raw = dict(self.unknown)
        for f in self.platform.fields:
            value = self.values.get(f.name)
            if f.kind == "secret" and not self.visible(f.name):
                value = None  # a secret of a mode not chosen is not kept
            if isinstance(value, str) and f.kind not in ("textarea", "secret"):
                value = value.strip()
            raw[f.name] = value
        if self.rules.compose is not None:
            raw.update(self.rules.compose(self.values))
        return self.platform.validate(raw)

    def connection_config(self) -> ConnectionConfig:
        return self.platform.connection(self.profile())

    def connection_problem(self) -> str | None:
        try:
            self.connection_config()
        except PROBLEMS as exc:
            return str(exc) or "These settings cannot make a connection."
        return None

    def secret_names(self) -> list[str]:
        return [f.name for f in self.platform.fields if f.kind == "secret"]

    def summary(self) -> list[str]:
        if self.rules.summary is None:
            return []
        try:
            return [line for line in self.rules.summary(self.values) if line]
        except Exception:  # noqa: BLE001 - a summary is a courtesy
            return []

    # ----- test and finish

    def fix_page(self, kind: str) -> str | None:
        """The title of the page where a failed test's cause is set (the certificates, the
        credentials, the address), or None."""
        names = _FIX_FIELDS.get(kind, ())
        for page in self.pages():
            if page.kind != "fields":
                continue
            if any(f.name in names for f in self.shown_fields(page.id)):
                return page.title
        return None

    def set_test_result(self, result) -> None:
        self.test_result = result
        self.save_anyway = False

    def suggested_name(self) -> str:
        base = self.imported_name or (self.rules.suggest_name(self.values) if self.rules.suggest_name else "")
        return _unique(base or self.platform.label, self.taken)

    def name_problem(self, name: str | None) -> str | None:
        name = (name or "").strip()
        if not name:
            return "Give the connection a name."
        if len(name) > MAX_NAME:
            return f"The name has {len(name)} characters; at most {MAX_NAME} fit."
        if any(ord(c) < 32 for c in name):
            return "The name may not contain line breaks or control characters."
        if name.casefold() in self.taken:
            return f"A saved connection is called {name!r} already; choose another name."
        return None

    def result(self) -> WizardResult:
        checked = self.profile()
        secret = set(self.secret_names())
        values = {k: v for k, v in checked.items() if k not in secret and v is not None}
        secrets = {k: str(checked[k]) for k in secret if not _empty(checked.get(k))}
        return WizardResult(
            name=(self.name or "").strip(),
            platform=self.platform_name,
            values=values,
            secrets=secrets,
            open_on_start=bool(self.open_on_start),
            profile_id=self.profile_id,
        )

    # ----- import (Tektelic, ThingPark)

    @property
    def importable(self) -> bool:
        return self.rules.import_page is not None

    def import_text(self, text: str | bytes, certificates_dir: Path | None = None) -> list[str]:
        """Fills the wizard from a Tektelic POST /api/integration or ThingPark POST /connections
        body (anything before its first "{", such as a pasted "POST /connections" line, is left
        out). Returns the labels of the fields it filled; ProfileError with a sentence if the
        body is not one."""
        data = text.encode("utf-8") if isinstance(text, str) else bytes(text)
        start = data.find(b"{")
        if start == -1:
            raise ProfileError("This is not a JSON object: a configuration body starts with {.")
        data = data[start:].strip()
        values, secrets, name, profile_id = _import(self.platform_name, data, certificates_dir)
        filled = []
        for key, value in {**values, **secrets}.items():
            if key not in self.fields or value is None:
                continue
            if value != self.fields[key].default:
                filled.append(self.fields[key].label)
            self.values[key] = value
            self.touched.add(key)
        if self.rules.decompose is not None:
            self.values.update(self.rules.decompose(self.values))
        self.auto.update(protocol=self.values.get("protocol"), url=_text(self.values.get("url")))
        self.imported_name = name or None
        self.profile_id = profile_id
        self.test_result = None
        return filled


def _import(platform_name: str, data: bytes, certificates_dir: Path | None) -> tuple[dict, dict, str, str | None]:
    """(values, secrets, name, profile id) of a platform body, through app.profiles when it is
    there (it names the certificates' folder after the profile id), else straight from the
    platform module."""
    try:
        from app.profiles import import_document
    except ImportError:
        import_document = None
    if import_document is not None:
        pairs = import_document(data, platform=platform_name, certificates_dir=certificates_dir)
        profile, secrets = pairs[0]
        return dict(profile.values), dict(secrets), profile.name, profile.id
    import uuid

    import orjson

    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ProfileError(f"The text is not valid JSON ({exc.msg} at character {exc.pos}).") from None
    profile_id = uuid.uuid4().hex
    root = Path(certificates_dir) if certificates_dir is not None else _default_certificates_dir()
    platform = platforms.get(platform_name)
    if platform_name == "tektelic":
        values = platform.profile_from_integration_config(doc, pem_dir=root / profile_id)
    else:
        values = platform.profile_from_connection_config(doc, pem_dir=root / profile_id)
    secret = {f.name for f in platform.fields if f.kind == "secret"}
    plain = {k: v for k, v in values.items() if k not in secret and v is not None}
    secrets = {k: str(v) for k, v in values.items() if k in secret and not _empty(v)}
    name = doc.get("name") if isinstance(doc, dict) and isinstance(doc.get("name"), str) else ""
    return plain, secrets, name, profile_id


def _default_certificates_dir() -> Path:
    from app.history import data_dir

    return data_dir() / "certificates"


# ----- saving -------------------------------------------------------------------------------


def save_result(result: WizardResult, store, secrets, existing=None):
    """Saves the wizard's result: a new profile in `store` (app.profiles.ProfileStore), or the
    `existing` one updated; its secrets in `secrets` (app.secrets.SecretStore), a secret left
    empty removed. Returns the saved Profile. ProfileError for a taken name or a bad value,
    SecretError when the keyring refuses (the profile is saved by then)."""
    from app.profiles import new_profile

    if existing is None:
        profile = new_profile(result.name, result.platform, result.values, open_on_start=result.open_on_start)
        if result.profile_id:
            profile.id = result.profile_id  # the folder an import saved the certificates in
        saved = store.add(profile)
    else:
        profile = existing.copy()
        profile.name = result.name
        profile.values = dict(result.values)
        profile.open_on_start = result.open_on_start
        store.update(profile)
        saved = store.get(profile.id)
    platform = platforms.get(result.platform)
    for f in platform.fields:
        if f.kind != "secret":
            continue
        value = result.secrets.get(f.name)
        if value:
            secrets.set(saved.id, f.name, value)
        elif existing is not None:
            secrets.delete(saved.id, f.name)
    return saved


def flow_for(platform_name: str, existing=None, secrets=None, taken_names=()) -> WizardFlow:
    """A flow for a new connection, or pre-filled from `existing` (an app.profiles.Profile) and its
    secrets: a {field: value} dict, or a SecretStore to read them from (unreadable ones are left
    empty, for the user to enter again)."""
    if existing is None:
        return WizardFlow(platform_name, taken_names=taken_names)
    found: dict = {}
    if isinstance(secrets, dict):
        found = dict(secrets)
    elif secrets is not None:
        for f in platforms.get(platform_name).fields:
            if f.kind != "secret":
                continue
            try:
                value = secrets.get(existing.id, f.name)
            except Exception:  # noqa: BLE001 - a locked keyring: the user types it again
                value = None
            if value:
                found[f.name] = value
    return WizardFlow(
        platform_name,
        dict(existing.values),
        found,
        name=existing.name,
        open_on_start=bool(getattr(existing, "open_on_start", False)),
        taken_names=taken_names,
    )

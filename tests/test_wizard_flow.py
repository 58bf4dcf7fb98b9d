"""The connection wizards' flow without Qt (app/wizard_flow.py): pages per platform, the fields
each shows, conditional pages, values that follow choices, validity in the platform's words,
imports, names, and saving through the real profile and secret stores."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from app import platforms
from app.connection_test import ConnectionTestResult
from app.devbroker import make_key, write_pem
from app.mqtt.config import MqttVersion
from app.platforms.base import ProfileError, assign_pages
from app.wizard_flow import RULES, WizardFlow, WizardResult, flow_for, save_result

SAMPLES = Path(__file__).resolve().parent / "samples"
TEKTELIC_BODY = SAMPLES / "tektelic_mqtt_v2_integration_config_1.json"


def _kinds(flow: WizardFlow) -> list[str]:
    return flow.page_ids()


# ----- pages come from the fields --------------------------------------------------------------


@pytest.mark.parametrize("name", platforms.NAMES)
def test_every_field_has_a_page_the_wizard_shows(name):
    platform = platforms.get(name)
    flow = WizardFlow(name)
    page_ids = {p.id for p in flow.all_pages() if p.kind == "fields"}
    for f in platform.fields:
        assert f.page in page_ids, (name, f.name, f.page)
    for page in page_ids:  # no page without a field
        assert flow.page_fields(page), (name, page)
    assert flow.all_pages()[-2:] == [flow.page("test"), flow.page("finish")]


def test_assign_pages_refuses_a_field_without_a_page_or_on_two():
    fields = platforms.get("generic").fields
    with pytest.raises(ValueError, match="without a wizard page: publish_topic"):
        assign_pages(fields, {"a": tuple(f.name for f in fields if f.name != "publish_topic")})
    with pytest.raises(ValueError, match="on two wizard pages"):
        assign_pages(fields, {"a": ("url",), "b": ("url",)})
    with pytest.raises(ValueError, match="No such field"):
        assign_pages(fields, {"a": (*(f.name for f in fields), "nope")})


def test_page_order_and_navigation():
    flow = WizardFlow("tektelic")
    assert _kinds(flow) == ["import", "broker", "topics", "integration", "test", "finish"]
    assert flow.first_id() == "import"
    assert flow.next_id("broker") == "topics" and flow.prev_id("broker") == "import"
    assert flow.next_id("finish") is None and flow.prev_id("import") is None
    flow.set("ssl", True)  # the certificates page appears with SSL
    assert _kinds(flow) == ["import", "broker", "topics", "tls", "integration", "test", "finish"]
    assert flow.next_id("topics") == "tls"
    editing = WizardFlow("tektelic", {"host": "h", "push_topic": "p"})
    assert editing.first_id() == "broker"  # no import page when editing


def test_akenza_shows_the_jwt_page_or_the_uplink_secret_page():
    flow = WizardFlow("akenza")
    assert _kinds(flow) == ["device", "jwt", "messages", "test", "finish"]
    assert flow.visible("jwt_key_file") and not flow.visible("uplink_secret")
    flow.set("auth_mode", "uplink-secret")
    assert _kinds(flow) == ["device", "secret", "messages", "test", "finish"]
    assert flow.visible("uplink_secret") and not flow.visible("jwt_key_file")
    assert flow.problem("uplink_secret") == (
        "Enter the device connector's uplink secret; it is the password and part of the topic."
    )
    flow.set("uplink_secret", "a/b")
    assert "contains" in flow.problem("uplink_secret")


def test_thingpark_certificates_only_over_ssl_or_wss_and_the_port_follows_the_protocol():
    flow = WizardFlow("thingpark")
    flow.set("host_name", "broker.example.com:8883")
    assert "tls" in _kinds(flow) and not flow.visible("websocket_path")
    assert flow.set("protocol", "TCP") == {"protocol", "host_name"}
    assert flow.values["host_name"] == "broker.example.com:1883"
    assert "tls" not in _kinds(flow)
    flow.set("protocol", "WSS")
    assert flow.values["host_name"] == "broker.example.com:443" and flow.visible("websocket_path")
    flow.set("host_name", "broker.example.com:9001")  # a port of the user's own stays
    flow.set("protocol", "SSL")
    assert flow.values["host_name"] == "broker.example.com:9001"
    assert flow.placeholder("host_name") == "broker.example.com:8883"


def test_generic_certificates_page_follows_the_scheme_and_so_does_the_port():
    flow = WizardFlow("generic")
    assert "tls" not in _kinds(flow)
    flow.set("url", "mqtts://localhost:1883")
    assert flow.values["url"] == "mqtts://localhost:8883"
    assert "tls" in _kinds(flow)
    flow.set("url", "mqtt://localhost:8883")
    assert flow.values["url"] == "mqtt://localhost:1883"


# ----- The Things Stack ---------------------------------------------------------------------


def test_tts_clusters_compose_the_address_and_set_the_tenant():
    flow = WizardFlow("tts")
    assert flow.field("cluster").choices == ("eu1", "nam1", "au1", "cloud", "custom")
    assert "nam1.cloud.thethings.network" in flow.field("cluster").choice_label("nam1")
    assert flow.values["tenant"] == "ttn"
    flow.set("app", "my-app")
    flow.set("password", "NNSXS.KEY")
    assert flow.profile()["url"] == "mqtts://eu1.cloud.thethings.network:8883"
    flow.set("cluster", "au1")
    assert flow.profile()["url"] == "mqtts://au1.cloud.thethings.network:8883"
    flow.set("tls", False)  # the port follows TLS
    assert flow.profile()["url"] == "mqtt://au1.cloud.thethings.network:1883"
    flow.set("tls", True)
    flow.set("cluster", "cloud")
    assert flow.visible("cloud_tenant") and flow.visible("cloud_region") and not flow.visible("address")
    assert "Cloud tenant ID" in flow.problem("cloud_tenant")
    flow.set("cloud_tenant", "acme")
    flow.set("cloud_region", "nam1")
    assert flow.values["tenant"] == "acme"  # the tenant follows the Cloud address
    assert flow.profile()["url"] == "mqtts://acme.nam1.cloud.thethings.industries:8883"
    flow.set("tenant", "mine")  # typed by the user: no longer follows
    flow.set("cloud_tenant", "other")
    assert flow.values["tenant"] == "mine"
    flow.set("cluster", "custom")
    flow.set("address", "thethings.example.com")
    assert flow.profile()["url"] == "mqtts://thethings.example.com:8883" and flow.visible("ca_file")
    flow.set("address", "mqtt://10.0.0.5:1883")
    assert flow.values["tls"] is False and flow.locked("tls")
    assert flow.profile()["url"] == "mqtt://10.0.0.5:1883"


def test_tts_says_why_it_uses_mqtt_311_and_qos_0_and_uses_them():
    flow = WizardFlow("tts")
    assert "MQTT 3.1.1 with QoS 0 only" in flow.note("server")
    assert not any(f.name in ("mqtt_version", "qos") for p in flow.page_ids() for f in flow.shown_fields(p))
    flow.set("app", "my-app")
    flow.set("password", "NNSXS.KEY")
    config = flow.connection_config()
    assert config.mqtt_version == MqttVersion.V311 and {s.qos for s in config.subscriptions} == {0}


def test_tts_fields_speak_the_platform_limits():
    flow = WizardFlow("tts")
    assert flow.page_problems("application") == {
        "app": "Application ID is required.",
        "password": "Enter the application's API key (NNSXS.…); The Things Stack does not accept connections "
        "without one.",
    }
    assert not flow.page_complete("application")
    assert flow.waiting_for("application") == ["Application ID", "API key"]
    flow.set("app", "My App")
    assert "not a valid The Things Stack ID" in flow.problem("app")
    flow.set("app", "my-app@other")
    assert "names tenant 'other' but the tenant ID is 'ttn'" in flow.problem("app")
    flow.set("app", "my-app")
    flow.set("password", "NNSXS.KEY")
    assert flow.page_complete("application")
    flow.set("upstream", "up, bogus")
    assert "Unknown upstream topic 'bogus'" in flow.problem("upstream")
    assert not flow.page_complete("traffic")
    flow.set("upstream", "up, join")
    assert flow.page_complete("traffic")
    flow.set("keepalive", "70000")
    assert flow.problem("keepalive") == "Keepalive (s) must be at most 65535 (got 70000)."


def test_tts_result_keeps_the_api_key_out_of_the_values():
    flow = WizardFlow("tts", taken_names={"my-app (ttn eu1)"})
    flow.set("app", "my-app")
    flow.set("password", "NNSXS.SECRET")
    flow.set("device", "dev-1")
    assert flow.suggested_name() == "my-app (TTN eu1) (2)"
    flow.name = flow.suggested_name()
    result = flow.result()
    assert result.platform == "tts" and result.name == "my-app (TTN eu1) (2)"
    assert result.secrets == {"password": "NNSXS.SECRET"}
    assert "password" not in result.values and "NNSXS.SECRET" not in json.dumps(result.values)
    assert result.values["url"] == "mqtts://eu1.cloud.thethings.network:8883"
    assert result.values["device"] == "dev-1" and result.values["tenant"] == "ttn"
    assert "cluster" not in result.values  # wizard-only fields are not stored


@pytest.mark.parametrize(
    ("url", "cluster", "extra"),
    [
        ("mqtts://nam1.cloud.thethings.network:8883", "nam1", {}),
        ("mqtts://acme.au1.cloud.thethings.industries:8883", "cloud", {"cloud_tenant": "acme", "cloud_region": "au1"}),
        ("mqtt://thethings.example.com:1883", "custom", {"address": "thethings.example.com", "tls": False}),
        ("mqtts://thethings.example.com:9999", "custom", {"address": "mqtts://thethings.example.com:9999"}),
    ],
)
def test_tts_edit_reads_the_cluster_back_from_the_saved_address(url, cluster, extra):
    flow = WizardFlow("tts", {"url": url, "app": "my-app", "tenant": "acme"}, {"password": "NNSXS.K"})
    assert flow.values["cluster"] == cluster
    for key, value in extra.items():
        assert flow.values[key] == value
    assert flow.profile()["url"] == url  # unchanged on the way back
    assert flow.values["password"] == "NNSXS.K"


# ----- Tektelic -----------------------------------------------------------------------------


def test_tektelic_fields_with_their_documented_ranges():
    flow = WizardFlow("tektelic")
    assert "1 to 100" in flow.hint("max_inflight") and "default 5" in flow.hint("max_inflight")
    assert "1 to 10,000" in flow.hint("pending_queue_max_size")
    flow.set("max_inflight", "101")
    assert flow.problem("max_inflight") == "Max inflight must be at most 100 (got 101)."
    flow.set("pending_queue_max_size", "0")
    assert flow.problem("pending_queue_max_size") == "Pending queue max size must be at least 1 (got 0)."
    flow.set("connection_timeout_s", "soon")
    assert flow.problem("connection_timeout_s") == "Connection timeout (s) must be a whole number, not 'soon'."
    flow.set("host", "broker.example.com:1883")
    assert "may not include a port" in flow.problem("host") and "1883 under Port" in flow.problem("host")
    flow.set("mqtt_version", "3.1")
    flow.set("client_id", "x" * 24)
    assert flow.problem("client_id") == "Client id has 24 characters; MQTT 3.1 allows at most 23."
    flow.set("mqtt_version", "3.1.1")
    assert flow.problem("client_id") is None
    flow.set("push_topic", "up/+/x#")
    assert "'#' must be a whole level" in flow.problem("push_topic")
    flow.set("pull_topic", "down/#")
    assert "wildcards" in flow.problem("pull_topic")
    flow.set("downlink_template", "nope")
    assert "There is no downlink template 'nope'" in flow.problem("downlink_template")


def test_tektelic_port_follows_ssl():
    flow = WizardFlow("tektelic")
    assert flow.placeholder("port") == "1883"
    flow.set("ssl", True)
    assert flow.placeholder("port").startswith("8883")
    flow.set("port", "1883")
    flow.set("ssl", False)
    flow.set("ssl", True)
    assert flow.values["port"] == "8883"
    flow.set("ssl", False)
    assert flow.values["port"] == "1883"


def test_tektelic_last_page_asks_the_platform_about_the_whole_connection():
    flow = WizardFlow("tektelic")
    flow.set("host", "broker.example.com")
    flow.set("push_topic", "uplinks")
    flow.set("client_id", "same-id")
    flow.set("integration_client_id", "same-id")
    assert flow.page_complete("broker") and flow.page_complete("topics")
    assert "network server's own" in flow.page_problem("integration")
    assert not flow.page_complete("integration")
    flow.set("client_id", "")
    assert flow.page_problem("integration") is None and flow.page_complete("integration")


def test_tektelic_import_fills_values_and_secrets(tmp_path):
    body = TEKTELIC_BODY.read_text(encoding="utf-8")
    flow = WizardFlow("tektelic")
    filled = flow.import_text("POST https://lorawan-ns-na.tektelic.com/api/integration\n" + body, tmp_path)
    assert {"Host", "Token (username)", "Password", "Push topic", "Pull topic"} <= set(filled)
    assert flow.values["host"] == "0.tcp.eu.ngrok.io" and flow.values["token"] == "userT"
    assert flow.values["password"] == "userP" and flow.values["clean_session"] is False
    assert flow.suggested_name() == "test_mqttv2"
    result = flow.result()
    assert result.secrets == {"password": "userP"} and "password" not in result.values
    assert result.values["push_topic"] == "pushTopic" and result.values["pull_topic"] == "pullTopic"


def test_tektelic_import_saves_certificates_as_private_files(tmp_path, pki):
    doc = json.loads(TEKTELIC_BODY.read_text(encoding="utf-8"))
    doc["configuration"].update(
        ssl=True,
        caCertificate=pki.ca.read_text(),
        clientCertificate=pki.client_cert.read_text(),
        clientPrivateKey=pki.client_key_encrypted.read_text(),
        clientKeyPassword=pki.client_key_password,
    )
    flow = WizardFlow("tektelic")
    flow.import_text(json.dumps(doc), tmp_path)
    assert "tls" in flow.page_ids()
    key = flow.values["key_file"]
    assert key.startswith(str(tmp_path)) and flow.profile_id in key
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    assert flow.values["key_password"] == pki.client_key_password
    assert flow.page_problem("tls") is None  # the certificates load together
    assert flow.result().secrets == {"password": "userP", "key_password": pki.client_key_password}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("hello", "a configuration body starts with {"),
        ("{not json", "not valid JSON"),
        ('{"type": "HTTP", "configuration": {}}', "HTTP integration"),
        ('{"configuration": {"host": "h"}}', "no pushTopic"),
    ],
)
def test_tektelic_import_refusals_are_sentences(text, expected, tmp_path):
    flow = WizardFlow("tektelic")
    with pytest.raises(ProfileError, match=expected):
        flow.import_text(text, tmp_path)
    assert flow.values["host"] is None  # nothing half-filled


# ----- ThingPark ----------------------------------------------------------------------------


def test_thingpark_import_fills_the_wizard_certificates_included(tmp_path, pki):
    body = {
        "connectorId": "actility-mqtt-iot",
        "name": "Actility MQTT (SSL) Connection",
        "configuration": {
            "description": "MQTT (SSL) connection example",
            "uplinkTopicPattern": "mqtt/things/{DevEUI}/uplink",
            "downlinkTopicPattern": "mqtt/things/{DevEUI}/downlink",
            "hostName": "91.134.250.109:8883",
            "protocol": "SSL",
            "username": "mycompany",
            "password": "bar",
            "trustedCaCertficate": pki.ca.read_text(),
            "certificate": pki.client_cert.read_text(),
            "privateKey": pki.client_key.read_text(),
            "connectionTimeout": 8000,
        },
    }
    flow = WizardFlow("thingpark")
    filled = flow.import_text("POST /connections\n\n" + json.dumps(body, indent=4), tmp_path)
    assert {"Host name", "Username", "Password", "Certificate", "Private key", "Trusted CA certificate"} <= set(filled)
    assert flow.values["host_name"] == "91.134.250.109:8883" and flow.values["connection_timeout_ms"] == 8000
    assert flow.suggested_name() == "Actility MQTT (SSL) Connection"
    assert "mqtt/things/+/uplink" in flow.note("topics")
    assert all(flow.page_complete(p) for p in ("broker", "topics", "tls"))
    result = flow.result()
    assert result.secrets == {"password": "bar"} and result.values["username"] == "mycompany"
    assert result.profile_id == flow.profile_id and result.values["cert_file"].startswith(str(tmp_path))


def test_thingpark_timeouts_keep_their_documented_maximum():
    flow = WizardFlow("thingpark")
    flow.set("connection_timeout_ms", "20000")
    assert flow.problem("connection_timeout_ms") == "Connection timeout (ms) must be at most 10000 (got 20000)."
    assert "1 to 10,000 (default 5,000)" in flow.hint("connection_timeout_ms")
    flow.set("host_name", "broker.example.com")
    assert "has no port" in flow.problem("host_name")
    flow.set("uplink_topic_pattern", "mqtt/{DevEUI/up")
    assert flow.problem("uplink_topic_pattern")


# ----- Drogue, akenza -----------------------------------------------------------------------


def test_drogue_binary_mode_switches_to_mqtt5_and_says_why():
    flow = WizardFlow("drogue")
    flow.set("mqtt_version", "3.1.1")
    assert flow.locked("mqtt_version") is None
    assert flow.set("content_mode", "binary") == {"content_mode", "mqtt_version"}
    assert flow.values["mqtt_version"] == "5"
    assert "needs MQTT 5" in flow.locked("mqtt_version") and "needs MQTT 5" in flow.note("format")
    flow.set("application", "my-app")
    flow.set("username", "me")
    flow.set("api_key", "KEY")
    config = flow.connection_config()
    assert config.mqtt_version == MqttVersion.V5
    assert config.subscriptions[0].user_properties == (("content-mode", "binary"),)
    flow.set("content_mode", "structured")
    assert flow.locked("mqtt_version") is None and "3.1.1 and 5" in flow.note("format")


def test_drogue_auth_mode_decides_the_fields_and_keeps_no_unused_secret():
    flow = WizardFlow("drogue")
    flow.set("application", "my-app")
    assert flow.visible("api_key") and not flow.visible("access_token")
    flow.set("username", "me")
    flow.set("api_key", "KEY")
    flow.set("auth_mode", "token")
    assert not flow.visible("api_key") and flow.visible("access_token")
    assert flow.problem("access_token") == "Enter the OAuth2 access token (or choose API-key authentication)."
    flow.set("access_token", "TOKEN")
    flow.set("token_as", "password")
    flow.set("mqtt_version", "3.1.1")
    assert flow.values["token_as"] == "username" and flow.locked("token_as")
    assert flow.result().secrets == {"access_token": "TOKEN"}
    flow.set("application", "app/#")
    assert "wildcard" in flow.problem("application") or "cannot be part" in flow.problem("application")


def test_akenza_jwt_key_is_checked_with_its_password(tmp_path):
    key = write_pem(tmp_path / "device.key", make_key("ec"), "pass-phrase")
    flow = WizardFlow("akenza")
    flow.set("device_id", "dev-1")
    flow.set("jwt_key_file", str(tmp_path / "missing.key"))
    assert "does not exist" in flow.problem("jwt_key_file")
    flow.set("jwt_key_file", str(key))
    assert "protected by a password" in flow.problem("jwt_key_file")
    flow.set("jwt_key_password", "wrong")
    assert "key password" in flow.problem("jwt_key_file") and "wrong" in flow.problem("jwt_key_file")
    flow.set("jwt_key_password", "pass-phrase")
    assert flow.problem("jwt_key_file") is None
    flow.set("jwt_algorithm", "RS256")
    assert "signs ES256" in flow.problem("jwt_key_file")
    flow.set("jwt_algorithm", "auto")
    flow.set("audience_base", "http://akenza.io")
    assert "audience base" in flow.problem("audience_base")
    flow.set("audience_base", "https://akenza.io")
    assert "/up/device/id/dev-1" in flow.note("messages") and "/down/device/id/dev-1/#" in flow.note("messages")
    assert flow.set("content_type", "text/plain") == {"content_type", "mqtt_version"}
    assert flow.values["mqtt_version"] == "5" and "MQTT 5" in flow.locked("mqtt_version")
    assert flow.page_complete("messages")
    assert flow.connection_config().client_id == "dev-1"


# ----- test page, name, edit, save ----------------------------------------------------------


def _ready_generic(**values) -> WizardFlow:
    flow = WizardFlow("generic", taken_names={"Broker A"})
    for key, value in {"url": "mqtt://localhost:1883", **values}.items():
        flow.set(key, value)
    return flow


def test_a_failed_test_needs_the_users_consent_and_an_edit_forgets_the_test():
    flow = _ready_generic()
    assert not flow.page_complete("test")  # not tested yet
    flow.set_test_result(ConnectionTestResult("credentials", "Wrong."))
    assert not flow.page_complete("test")
    flow.save_anyway = True
    assert flow.page_complete("test")
    flow.set_test_result(ConnectionTestResult("quiet", "Fine."))
    assert flow.page_complete("test")
    flow.set("topics", "other/#")  # other values than those tested
    assert flow.test_result is None and not flow.page_complete("test")


def test_a_failed_test_points_to_the_page_that_fixes_it():
    flow = WizardFlow("tts")
    assert flow.fix_page("credentials") == "Application and API key"
    assert flow.fix_page("host") == "Where your application lives"
    assert flow.fix_page("certificate") == "Where your application lives"  # its certificate check
    plain = WizardFlow("thingpark")
    plain.set("protocol", "TCP")
    assert plain.fix_page("certificate") is None  # no certificates over TCP
    generic = _ready_generic(url="mqtts://localhost:8883")
    assert generic.fix_page("certificate") == "Certificates" and generic.fix_page("refused") == "The broker"
    assert generic.fix_page("quiet") is None


def test_names_are_unique_whatever_their_case():
    flow = _ready_generic()
    assert flow.name_problem("") == "Give the connection a name."
    assert flow.name_problem("broker a") == "A saved connection is called 'broker a' already; choose another name."
    assert flow.name_problem("x" * 201).startswith("The name has 201 characters")
    assert flow.name_problem("Broker B") is None
    assert flow.suggested_name() == "localhost"
    assert not flow.page_complete("finish")
    flow.name = "Broker B"
    assert flow.page_complete("finish")


class _Secrets:
    """A SecretStore's reading side."""

    def __init__(self, values: dict) -> None:
        self.values = values

    def get(self, profile_id: str, field: str):
        return self.values.get((profile_id, field))


def test_edit_is_prefilled_from_the_profile_and_its_secrets():
    from app.profiles import new_profile

    profile = new_profile(
        "Old name",
        "thingpark",
        {"host_name": "b.example.com:8883", "protocol": "SSL", "username": "u", "qos": 0},
        open_on_start=True,
    )
    flow = flow_for("thingpark", profile, _Secrets({(profile.id, "password"): "pw"}), {"old name", "other"})
    assert flow.editing and flow.name == "Old name" and flow.open_on_start is True
    assert flow.values["password"] == "pw" and flow.values["qos"] == 0
    assert flow.name_problem("Old name") is None  # its own name is not taken
    assert flow.name_problem("Other")
    result = flow.result()
    assert result.values["host_name"] == "b.example.com:8883" and result.secrets == {"password": "pw"}


def test_save_result_stores_the_profile_and_its_secrets(tmp_path):
    from app.profiles import ProfileStore
    from app.secrets import SecretStore

    store, secrets = ProfileStore(tmp_path / "config"), SecretStore()
    flow = WizardFlow("tts")
    flow.set("app", "field-trial")
    flow.set("password", "NNSXS.SAVED")
    flow.name = "Field trial"
    flow.open_on_start = True
    saved = save_result(flow.result(), store, secrets)
    assert saved.name == "Field trial" and saved.open_on_start and saved.platform == "tts"
    assert secrets.get(saved.id, "password") == "NNSXS.SAVED"
    assert "NNSXS.SAVED" not in (tmp_path / "config").joinpath("profiles.json").read_text()
    again = flow_for("tts", store.get(saved.id), secrets)
    assert again.values["password"] == "NNSXS.SAVED" and again.values["app"] == "field-trial"
    edited = WizardResult("Field trial", "tts", {**saved.values, "device": "dev-2"}, {}, False)  # key cleared
    updated = save_result(edited, store, secrets, existing=store.get(saved.id))
    assert updated.values["device"] == "dev-2" and not updated.open_on_start
    assert secrets.get(saved.id, "password") is None


@pytest.mark.parametrize("name", ["tts", "akenza", "drogue"])
def test_a_ca_certificate_alone_is_checked_on_platforms_without_client_certificates(name, pki, tmp_path):
    flow = WizardFlow(name)
    flow.set("cluster", "custom")  # TTS shows its CA field for a server of its own
    page = flow.field("ca_file").page
    flow.set("ca_file", str(pki.ca))
    assert flow.page_problems(page).get("ca_file") is None
    assert flow.tls_problem() is None
    bad = tmp_path / "not-a-cert.pem"
    bad.write_text("hello")
    flow.set("ca_file", str(bad))
    assert "does not contain a certificate" in flow.tls_problem()


def test_rules_exist_for_every_platform():
    assert set(RULES) == set(platforms.NAMES)

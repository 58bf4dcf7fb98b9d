"""`uplink-console profile …` and `--profile NAME` as a user runs them: real processes, a config,
data and log folder of the test's own, keyrings.alt's file keyring in a temp folder, mosquitto.

The secret scan at the end saves connections with distinctive secrets on every platform, connects
with each, exports them, runs with debug logging, and then reads every file the console wrote
(config, data, log, exports, captures) and everything it printed: no secret anywhere."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from keyrings.alt.file import PlaintextKeyring

from tests.test_capture import read_lines, wait_for
from tests.test_profiles import THINGPARK_CONNECTION_BODY
from tests.test_session import publish_with_paho

EXE = [sys.executable, "-m", "ui.launcher"]
ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "tests" / "samples"


class Console:
    """The console's folders and keyring for one test, and a way to run it there."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.config, self.data, self.log = root / "config", root / "data", root / "log"
        self.keyring_file = root / "keyring" / "keyring.cfg"
        self.env = {
            k: v for k, v in os.environ.items() if not k.startswith("UPLINK_CONSOLE_") or k == "UPLINK_CONSOLE_ENGINE"
        }
        self.env.update(
            QT_QPA_PLATFORM="offscreen",
            UPLINK_CONSOLE_CONFIG_DIR=str(self.config),
            UPLINK_CONSOLE_DATA_DIR=str(self.data),
            UPLINK_CONSOLE_LOG_DIR=str(self.log),
            PYTHON_KEYRING_BACKEND="keyrings.alt.file.PlaintextKeyring",
            KEYRING_PROPERTY_FILE_PATH=str(self.keyring_file),
        )
        self.printed: list[str] = []  # everything every run printed, for the secret scan

    def run(self, *args, input: bytes | None = None, env=None, timeout=60) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            [*EXE, *args],
            cwd=ROOT,
            input=input if input is not None else b"",
            capture_output=True,
            env={**self.env, **(env or {})},
            timeout=timeout,
        )
        out, err = proc.stdout.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace")
        self.printed += [out, err]
        assert "Traceback" not in err, err
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)

    def start(self, *args, env=None) -> subprocess.Popen:
        return subprocess.Popen(
            [*EXE, *args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**self.env, **(env or {})},
        )

    def keyring(self) -> PlaintextKeyring:
        backend = PlaintextKeyring()
        backend.file_path = str(self.keyring_file)
        return backend

    def secret(self, name: str, field: str = "password") -> str | None:
        return self.keyring().get_password("uplink-console", f"{self.profile(name)['id']}/{field}")

    def profiles(self) -> list[dict]:
        result = self.run("profile", "list", "--json")
        assert result.returncode == 0, result.stderr
        return [json.loads(line) for line in result.stdout.splitlines()]

    def profile(self, name: str) -> dict:
        return next(p for p in self.profiles() if p["name"] == name)

    def save(self, name: str, platform: str, values: dict, secrets: dict) -> str:
        """A saved connection made the way the window makes one (ProfileStore + keyring)."""
        from app.profiles import ProfileStore, new_profile

        profile = ProfileStore(self.config).add(new_profile(name, platform, values))
        for field, value in secrets.items():
            self.keyring().set_password("uplink-console", f"{profile.id}/{field}", value)
        return profile.id


@pytest.fixture
def console(tmp_path) -> Console:
    return Console(tmp_path)


def stderr_until(proc: subprocess.Popen, text: bytes, timeout: float = 15.0) -> str:
    os.set_blocking(proc.stderr.fileno(), False)
    seen = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and text not in seen:
        seen += proc.stderr.read() or b""
        if proc.poll() is not None:
            seen += proc.stderr.read() or b""
            break
        time.sleep(0.05)
    assert text in seen, seen.decode()
    return seen.decode()


def stop(proc: subprocess.Popen) -> tuple[int, str]:
    proc.send_signal(signal.SIGINT)
    proc.wait(15)
    os.set_blocking(proc.stderr.fileno(), True)
    return proc.returncode, proc.stderr.read().decode()


# ----- help ----------------------------------------------------------------------------------


def test_help_lists_every_command(console):
    result = console.run("--help")
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    for command in ("capture", "decode", "encode-downlink", "profile", "bench"):
        (line,) = [line for line in lines if line.strip().startswith(command + " ")]
        assert len(line.split()) > 1, f"{command} has its one line of help"
    assert "--profile NAME" in result.stdout
    result = console.run("profile", "--help")
    for command in ("list", "show", "import", "export", "delete", "set-secret"):
        assert f"\n    {command}" in result.stdout, command
    result = console.run("profile", "list", "--help")
    assert 'JSON lines of {"name","platform","broker","id","open_on_start"}' in result.stdout


# ----- import, list, show ----------------------------------------------------------------------


def test_the_tektelic_sample_imports_and_shows_its_password_only_as_set(console):
    result = console.run(
        "profile", "import", "--platform", "tektelic", str(SAMPLES / "tektelic_mqtt_v2_integration_config_1.json")
    )
    assert (result.returncode, result.stdout) == (0, "test_mqttv2\n"), result.stderr
    assert console.secret("test_mqttv2") == "userP", "the body's password went to the keyring"
    assert b"userP" not in (console.config / "profiles.json").read_bytes()

    result = console.run("profile", "list")
    assert result.stdout.split() == ["test_mqttv2", "tektelic", "mqtt://0.tcp.eu.ngrok.io:1883"]
    (line,) = console.profiles()
    assert set(line) == {"name", "platform", "broker", "id", "open_on_start"}
    assert line["open_on_start"] is False and len(line["id"]) == 32

    shown = console.run("profile", "show", "test_mqttv2")
    assert shown.returncode == 0
    fields = dict(part.split(":", 1) for part in shown.stdout.split("fields:\n")[1].splitlines())
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    assert fields["password"] == "•••• (in keyring)" and fields["key_password"] == "(not set)"
    assert fields["token"] == "userT" and fields["push_topic"] == "pushTopic"
    assert "userP" not in shown.stdout + shown.stderr
    # Detected without --platform; the name is made unique.
    again = console.run("profile", "import", str(SAMPLES / "tektelic_mqtt_v2_integration_config_1.json"))
    assert again.stdout == "test_mqttv2 (2)\n"


def test_the_thingpark_documented_body_imports_with_a_name(console, tmp_path):
    body = tmp_path / "connection.json"
    body.write_text(THINGPARK_CONNECTION_BODY)
    result = console.run("profile", "import", "--platform", "thingpark", str(body), "--name", "TP broker")
    assert (result.returncode, result.stdout) == (0, "TP broker\n"), result.stderr
    assert console.secret("TP broker") == "bar"
    shown = console.run("profile", "show", "TP broker").stdout
    assert "host_name:" in shown and "91.134.250.109:8883" in shown and "password:" in shown
    assert "•••• (in keyring)" in shown and "bar\n" not in shown
    key_file = next(
        line.split(":", 1)[1].strip() for line in shown.splitlines() if line.strip().startswith("key_file:")
    )
    assert Path(key_file).is_file() and Path(key_file).is_relative_to(console.config)
    taken = console.run("profile", "import", str(body), "--name", "tp BROKER")
    assert taken.returncode == 2 and "called 'TP broker' exists already" in taken.stderr


@pytest.mark.parametrize(
    ("content", "args", "message"),
    [
        (b"{nope", (), "The file is not valid JSON"),
        (b'{"a": 1}', (), "give --platform tektelic or --platform thingpark."),
        (b'{"type": "MQTT_BROKER"}', ("--platform", "tektelic"), "This is a MQTT_BROKER integration"),
    ],
)
def test_an_import_that_cannot_work_is_one_sentence(console, tmp_path, content, args, message):
    path = tmp_path / "body.json"
    path.write_bytes(content)
    result = console.run("profile", "import", *args, str(path))
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("uplink-console profile: ") and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    missing = console.run("profile", "import", str(tmp_path / "nothing.json"))
    assert missing.returncode == 2 and "Cannot read" in missing.stderr


# ----- export, delete, set-secret ----------------------------------------------------------------


def test_export_one_and_all_without_secrets_then_import_back(console, tmp_path):
    console.run("profile", "import", str(SAMPLES / "tektelic_mqtt_v2_integration_config_1.json"))
    body = tmp_path / "tp.json"
    body.write_text(THINGPARK_CONNECTION_BODY)
    console.run("profile", "import", str(body))
    one, every = tmp_path / "one.json", tmp_path / "all.json"
    assert console.run("profile", "export", "test_mqttv2", str(one)).returncode == 0
    result = console.run("profile", "export", "--all", str(every))
    assert result.returncode == 0 and "Exported 2 connections" in result.stderr
    for path in (one, every):
        data = path.read_bytes()
        assert b"userP" not in data and b'"bar"' not in data
        doc = json.loads(data)
        assert doc["format"] == "uplink-console-profiles"
        assert all("password" in e["secrets_not_included"] for e in doc["profiles"])
    assert [e["name"] for e in json.loads(every.read_bytes())["profiles"]] == [
        "test_mqttv2",
        "Actility MQTT (SSL) Connection",
    ]
    assert console.run("profile", "export", "--all", "-").stdout.startswith("{")
    usage = console.run("profile", "export", str(one))
    assert usage.returncode == 2 and "Give the connection and the file" in usage.stderr
    back = console.run("profile", "import", str(every))
    assert back.stdout.splitlines() == ["test_mqttv2 (2)", "Actility MQTT (SSL) Connection (2)"]
    assert console.secret("test_mqttv2 (2)") is None, "an export carries no secret to import"


def test_delete_takes_the_profile_and_its_secrets(console):
    console.run("profile", "import", str(SAMPLES / "tektelic_mqtt_v2_integration_config_1.json"))
    pid = console.profile("test_mqttv2")["id"]
    assert pid in console.keyring_file.read_text()
    result = console.run("profile", "delete", "TEST_MQTTV2")
    assert result.returncode == 0 and "Deleted 'test_mqttv2' and its secrets." in result.stderr
    assert console.profiles() == []
    assert pid not in console.keyring_file.read_text()
    again = console.run("profile", "delete", "test_mqttv2")
    assert again.returncode == 2
    assert again.stderr == (
        "uplink-console profile: There is no saved connection called 'test_mqttv2'; "
        "there are no saved connections yet.\n"
    )


def test_set_secret_from_standard_input_and_from_the_environment(console):
    console.save("Lab", "generic", {"url": "mqtt://localhost:1883", "username": "me"}, {})
    result = console.run("profile", "set-secret", "Lab", "password", input=b"from stdin \n")
    assert result.returncode == 0 and "Saved the password of 'Lab' in the keyring." in result.stderr
    assert console.secret("Lab") == "from stdin ", "one trailing newline dropped, nothing else"
    console.run("profile", "set-secret", "Lab", "key_password", env={"UPLINK_CONSOLE_PASSWORD": "from env"})
    assert console.secret("Lab", "key_password") == "from env"
    shown = console.run("profile", "show", "Lab").stdout
    assert "from stdin" not in shown and "from env" not in shown and shown.count("•••• (in keyring)") == 2
    wrong = console.run("profile", "set-secret", "Lab", "username", input=b"x")
    assert wrong.returncode == 2
    assert "username is not a secret of Generic MQTT connections; choose one of password, key_password." in wrong.stderr
    empty = console.run("profile", "set-secret", "Lab", "password", input=b"\n")
    assert empty.returncode == 2 and "The password is empty" in empty.stderr
    big = console.run("profile", "set-secret", "Lab", "password", input=b"x" * 70_000)
    assert big.returncode == 2 and "larger than 64 KiB" in big.stderr
    assert console.secret("Lab") == "from stdin "


def test_without_a_keyring_the_commands_say_so_and_set_secret_refuses(console):
    no_keyring = {"PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring"}
    result = console.run(
        "profile", "import", str(SAMPLES / "tektelic_mqtt_v2_integration_config_1.json"), env=no_keyring
    )
    assert result.returncode == 0 and result.stdout == "test_mqttv2\n"
    assert "secrets are kept for this run only" in result.stderr
    assert "So the password from the file was not kept" in result.stderr
    assert "userP" not in console.keyring_file.read_text() if console.keyring_file.exists() else True
    refused = console.run("profile", "set-secret", "test_mqttv2", "password", input=b"pw\n", env=no_keyring)
    assert refused.returncode == 1
    assert "would be lost as soon as this command ends, so the password was not saved." in refused.stderr
    shown = console.run("profile", "show", "test_mqttv2", env=no_keyring)
    assert shown.returncode == 0 and "password:" in shown.stdout and "(not set)" in shown.stdout
    assert "warning: PYTHON_KEYRING_BACKEND selects keyring.backends.fail.Keyring" in shown.stderr


def test_a_damaged_profiles_file_is_reported_by_every_command(console):
    console.config.mkdir(parents=True)
    (console.config / "profiles.json").write_text("{ damaged")
    result = console.run("profile", "list")
    assert result.returncode == 0
    assert "warning: The saved connections could not be read (it is not valid JSON" in result.stderr
    assert len(list(console.config.glob("profiles.json.corrupt-*"))) == 1


# ----- --profile on capture, on the smoke test -----------------------------------------------------


def test_capture_with_a_saved_connection_uses_its_password_from_the_keyring(console, broker, topic):
    values = {"url": broker.url("auth"), "username": broker.USER, "topics": topic + "/#", "qos": 1}
    console.save("Auth broker", "generic", values, {"password": broker.PASSWORD})
    out = console.root / "cap.jsonl"
    proc = console.start("capture", "--profile", "auth BROKER", "--out", str(out))
    try:
        seen = stderr_until(proc, b"Connected to")
        assert f"mqtt://{broker.USER}@localhost:{broker.ports.auth}" in seen
        publish_with_paho(broker.ports.plain, topic + "/t", [b'{"t": 1}', b"two"])
        assert wait_for(lambda: len(read_lines(out)) == 2, 5.0)
    finally:
        code, _err = stop(proc)
    assert code == 0
    first, second = read_lines(out)
    assert (first["platform"], first["topic"], first["decoded"]) == ("generic", topic + "/t", {"t": 1})
    assert second["payload_hex"] == b"two".hex()


def test_options_given_with_a_profile_override_it(console, broker, topic):
    console.save("Plain", "generic", {"url": broker.url("plain"), "topics": topic + "/saved/#"}, {})
    out = console.root / "cap.jsonl"
    proc = console.start("capture", "--profile", "Plain", "--topic", topic + "/given/#", "--out", str(out))
    try:
        seen = stderr_until(proc, b"Connected to")
        assert f"subscribed to {topic}/given/#." in seen
        publish_with_paho(broker.ports.plain, topic + "/saved/x", [b"not this"])
        publish_with_paho(broker.ports.plain, topic + "/given/x", [b"this"])
        assert wait_for(lambda: len(read_lines(out)) == 1, 5.0)
    finally:
        stop(proc)
    assert [line["topic"] for line in read_lines(out)] == [topic + "/given/x"]
    mismatch = console.run("capture", "--profile", "Plain", "--platform", "tts", "--out", str(out))
    assert mismatch.returncode == 2
    assert "The saved connection 'Plain' is a generic connection; leave out --platform tts" in mismatch.stderr
    unknown = console.run("capture", "--profile", "Plian", "--out", str(out))
    assert unknown.returncode == 2 and "did you mean 'Plain'?" in unknown.stderr


def test_a_platform_option_given_with_a_profile_overrides_it(console, broker, topic):
    """--push-topic exists because the profile's platform (Tektelic) is known while parsing."""
    values = {"host": "127.0.0.1", "port": broker.ports.plain, "push_topic": topic + "/saved"}
    console.save("Tek", "tektelic", values, {})
    out = console.root / "cap.jsonl"
    proc = console.start("capture", "--profile", "Tek", "--push-topic", topic + "/given", "--out", str(out))
    try:
        assert f"subscribed to {topic}/given." in stderr_until(proc, b"Connected to")
    finally:
        stop(proc)


def publish_until_done(proc: subprocess.Popen, port: int, topic: str, payloads) -> tuple[bytes, bytes]:
    """Publishes the batch every half second until the (smoke-test) process ends: the window may
    take seconds to connect on a loaded machine."""
    os.set_blocking(proc.stdout.fileno(), False)
    os.set_blocking(proc.stderr.fileno(), False)
    out, err = b"", b""
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:
        publish_with_paho(port, topic, payloads)
        time.sleep(0.5)
        out += proc.stdout.read() or b""
        err += proc.stderr.read() or b""
    proc.wait(10)
    os.set_blocking(proc.stdout.fileno(), True)
    os.set_blocking(proc.stderr.fileno(), True)
    return out + proc.stdout.read(), err + proc.stderr.read()


def test_smoke_test_with_a_saved_connection_prints_its_rows(console, broker, topic):
    console.save("Smoke", "generic", {"url": broker.url("plain"), "topics": topic + "/#"}, {})
    proc = console.start("--smoke-test", "5", "--profile", "Smoke")
    out, err = publish_until_done(proc, broker.ports.plain, topic + "/x", [f"m{i}".encode() for i in range(200)])
    assert proc.returncode == 0, err.decode()
    line = json.loads(out.decode().strip().splitlines()[-1])
    assert set(line) >= {"rows", "first_row_at", "last_row_at", "stall_p99_ms", "rss_mb", "platforms"}
    assert line["rows"] >= 200


# ----- the secret scan -------------------------------------------------------------------------


def encrypted_key(path: Path, passphrase: str, key=None) -> Path:
    key = key or ec.generate_private_key(ec.SECP256R1())
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(passphrase.encode()),
        )
    )
    return path


def secret_forms(secret: str) -> list[bytes]:
    raw = secret.encode()
    return [raw, base64.b64encode(raw), raw.hex().encode(), json.dumps(secret).encode()[1:-1]]


def test_no_secret_anywhere(console, broker, pki, topic):
    """Every platform's secrets, distinctive, saved, connected with, exported, debug-logged: then
    every file under the config, data and log folders, every export and capture file, and every
    line printed is read for them (as text, base64 and hex)."""
    keys = console.root / "keys"
    keys.mkdir()
    client_key = serialization.load_pem_private_key(pki.client_key.read_bytes(), None)
    secrets = {
        "tts": {"password": "NNSXS.SCANTTS7F3A9C.SECRETAPIKEYVALUE0001"},
        "tektelic": {"password": "tektelic-scan-pw-4b1e9"},
        "akenza": {"jwt_key_password": "akenza-scan-keypass-9d2c"},
        "thingpark": {"password": "thingpark-scan-pw-2e8f7"},
        "drogue": {"api_key": "drogue-scan-apikey-6a0d1"},
        "generic": {"password": "generic-scan-pw-5f9e3", "key_password": "generic-scan-keypass-1c7b"},
        "akenza-secret": {"uplink_secret": "akenzascanuplinksecret83"},
    }
    plain = broker.ports.plain
    profiles = {
        "tts": ("tts", {"url": broker.url("plain"), "app": "scan-app", "device": "scan-dev"}),
        "tektelic": ("tektelic", {"host": "127.0.0.1", "port": plain, "token": "scan", "push_topic": topic + "/tek"}),
        "akenza": (
            "akenza",
            {
                "url": broker.url("plain"),
                "device_id": "scan-device",
                "jwt_key_file": str(encrypted_key(keys / "akenza.pem", secrets["akenza"]["jwt_key_password"])),
            },
        ),
        "thingpark": (
            "thingpark",
            {
                "host_name": f"localhost:{plain}",
                "protocol": "TCP",
                "username": "scan",
                "uplink_topic_pattern": topic + "/tp/{DevEUI}/up",
            },
        ),
        "drogue": (
            "drogue",
            {"url": broker.url("plain"), "application": "scanapp", "auth_mode": "api-key", "username": "scan"},
        ),
        "generic": (
            "generic",
            {
                "url": broker.url("mtls"),
                "username": "scan",
                "topics": topic + "/gen/#",
                "ca_file": str(pki.ca),
                "cert_file": str(pki.client_cert),
                "key_file": str(encrypted_key(keys / "client.pem", secrets["generic"]["key_password"], key=client_key)),
            },
        ),
        # The uplink secret is part of akenza's topics by design (/up/<secret>/id/<device>), so it is
        # saved and exported here but not connected: a topic is not a secret the console can hide.
        "akenza-secret": (
            "akenza",
            {
                "url": broker.url("plain"),
                "device_id": "scan-device-2",
                "auth_mode": "uplink-secret",
                "connector_id": "scan-connector",
            },
        ),
    }
    published = {
        "tts": "v3/scan-app/devices/scan-dev/up",
        "tektelic": topic + "/tek",
        "akenza": "/down/device/id/scan-device/x",
        "thingpark": topic + "/tp/0018B20000000B20/up",
        "drogue": "app/scanapp",
        "generic": topic + "/gen/x",
    }
    for name, (platform, values) in profiles.items():
        console.save(f"Scan {name}", platform, values, secrets[name])
        for field, value in secrets[name].items():
            assert console.secret(f"Scan {name}", field) == value, "positive control: it is in the keyring"

    debug = {"UPLINK_CONSOLE_DEBUG": "1"}
    captures = console.root / "captures"
    captures.mkdir()
    for name, topic_name in published.items():
        out = captures / f"{name}.jsonl"
        proc = console.start("capture", "--profile", f"Scan {name}", "--out", str(out), env=debug)
        try:
            console.printed.append(stderr_until(proc, b"Connected to"))
            publish_with_paho(plain, topic_name, [b'{"scan": 1}'])
            assert wait_for(lambda out=out: len(read_lines(out)) >= 1, 5.0), name
        finally:
            code, err = stop(proc)
            console.printed.append(err)
        assert code == 0, err
    # The window too, with its engine process and history (debug logging on).
    for name in ("tts", "generic"):
        proc = console.start("--smoke-test", "4", "--profile", f"Scan {name}", env=debug)
        out, err = publish_until_done(proc, plain, published[name], [b'{"scan": 2}'] * 5)
        console.printed += [out.decode(), err.decode()]
        assert proc.returncode == 0, err.decode()
        assert json.loads(out.decode().splitlines()[-1])["rows"] >= 1
    exports = console.root / "exports"
    exports.mkdir()
    assert console.run("profile", "export", "--all", str(exports / "all.json"), env=debug).returncode == 0
    for name in profiles:
        assert (
            console.run("profile", "export", f"Scan {name}", str(exports / f"{name}.json"), env=debug).returncode == 0
        )
        shown = console.run("profile", "show", f"Scan {name}", env=debug)
        assert "•••• (in keyring)" in shown.stdout
    console.run("profile", "list", env=debug)
    console.run("profile", "show", "Scan nothing", env=debug)  # an error path, logged at debug

    assert (console.log / "uplink-console.log").stat().st_size > 0, "debug logging did write"
    scanned = [p for d in (console.config, console.data, console.log, exports, captures) for p in d.rglob("*")]
    files = [p for p in scanned if p.is_file()]
    assert list((console.data / "history").glob("*.sqlite3")), "the window's history was written (and is scanned)"
    everything = [(str(p), p.read_bytes()) for p in files] + [
        (f"printed {i}", t.encode()) for i, t in enumerate(console.printed)
    ]
    for name, fields in secrets.items():
        for field, value in fields.items():
            for form in secret_forms(value):
                leaks = [where for where, data in everything if form in data]
                assert not leaks, f"the {name} {field} ({form[:12]!r}…) is in {leaks}"

"""Saved connections on disk: atomic saves, 0600 from the first byte, corrupt and newer files kept,
migrations, two stores (and processes) sharing one file, names, import and export."""

from __future__ import annotations

import errno
import json
import os
import random
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from app import profiles as profiles_module
from app.platforms.base import ProfileError
from app.profiles import (
    SCHEMA_VERSION,
    ProfileNotFound,
    ProfileStore,
    ProfileStoreError,
    export_document,
    file_lock,
    import_document,
    migrate,
    new_profile,
)

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "tests" / "samples"

# The example body of docs/Connector/MQTT/README.md in actility/tpx-iot-flow-doc (platform-docs/
# thingpark-mqtt-connection.md), verbatim: POST /connections for an MQTT (SSL) connection.
THINGPARK_CONNECTION_BODY = """
    {
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
        "certificate": "-----BEGIN CERTIFICATE-----...-----END CERTIFICATE-----",
        "privateKey": "-----BEGIN RSA PRIVATE KEY-----...-----END RSA PRIVATE KEY-----"
      }
    }
"""


def generic(name: str = "Local", **values) -> profiles_module.Profile:
    return new_profile(name, "generic", {"url": "mqtt://localhost:1883", "topics": "sensors/#", **values})


def file_doc(path: Path) -> dict:
    return json.loads(path.read_bytes())


# ----- the basics ---------------------------------------------------------------------------


def test_profiles_survive_a_new_store_in_the_users_order(tmp_path):
    store = ProfileStore(tmp_path)
    for name in ("Zeta", "Alpha", "Mid"):
        store.add(generic(name))
    again = ProfileStore(tmp_path)
    assert [p.name for p in again.profiles()] == ["Zeta", "Alpha", "Mid"]
    assert again.load_problem is None
    doc = file_doc(again.path)
    assert doc["format"] == "uplink-console-profile-store" and doc["schema_version"] == SCHEMA_VERSION
    alpha = again.get("Alpha")
    assert again.get(alpha.id) == alpha == again.get("  alpha ")
    assert len(alpha.id) == 32 and alpha.created_at.endswith("Z") and alpha.updated_at
    # Validated values are stored (defaults filled, types converted), not the secret fields.
    assert alpha.values["qos"] == 0 and alpha.values["keepalive"] == 60 and "password" not in alpha.values
    again.move(alpha.id, 0)
    assert [p.name for p in ProfileStore(tmp_path).profiles()] == ["Alpha", "Zeta", "Mid"]


def test_config_dir_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("UPLINK_CONSOLE_CONFIG_DIR", str(tmp_path / "portable"))
    assert profiles_module.config_dir() == tmp_path / "portable"
    store = ProfileStore()
    assert store.path == tmp_path / "portable" / "profiles.json"
    assert not (tmp_path / "portable").exists(), "looking at the saved connections writes nothing"


def test_an_unknown_name_is_a_sentence_naming_close_matches(tmp_path):
    store = ProfileStore(tmp_path)
    with pytest.raises(ProfileNotFound) as info:
        store.get("anything")
    assert str(info.value) == "There is no saved connection called 'anything'; there are no saved connections yet."
    store.add(generic("Production broker"))
    store.add(generic("Staging broker"))
    with pytest.raises(KeyError) as info:  # a KeyError, so `except KeyError` callers work
        store.get("Prodution broker")
    assert isinstance(info.value, ProfileNotFound)
    assert str(info.value) == (
        "There is no saved connection called 'Prodution broker'; did you mean 'Production broker'?"
    )
    with pytest.raises(ProfileNotFound, match="the saved ones are 'Production broker', 'Staging broker'."):
        store.get("xyz")


def test_names_are_unique_case_insensitively(tmp_path):
    store = ProfileStore(tmp_path)
    store.add(generic("Prod"))
    with pytest.raises(ProfileError) as info:
        store.add(generic("PROD"))
    assert str(info.value) == "A saved connection called 'Prod' exists already; choose another name (e.g. 'PROD (2)')."
    assert store.unique_name("prod") == "prod (2)"
    assert store.unique_name("New one") == "New one"
    store.add(generic("Prod (2)"))
    assert store.unique_name("Prod") == "Prod (3)"
    assert store.unique_name("Prod (2)") == "Prod (3)", "a numbered name counts on instead of growing '(2) (2)'"
    for bad, message in (("", "Give the connection a name."), ("a\nb", "line breaks"), ("x" * 201, "at most 200")):
        with pytest.raises(ProfileError, match=message):
            store.add(generic(bad))


def test_duplicate_rename_and_delete(tmp_path):
    store = ProfileStore(tmp_path)
    original = store.add(generic("Prod", publish_topic="cmd/1"))
    original.history_days = 7
    store.update(original)
    first = store.duplicate(original.id)
    second = store.duplicate(original.id)
    assert (first.name, second.name) == ("Prod (copy)", "Prod (copy 2)")
    assert len({original.id, first.id, second.id}) == 3
    assert first.values == original.values and first.history_days == 7
    assert store.duplicate(original.id, "Elsewhere").name == "Elsewhere"

    store.rename(first.id, "Renamed")
    assert store.get("Renamed").id == first.id, "the id (and with it secrets and history) stays"
    with pytest.raises(ProfileError, match="called 'Prod' exists already"):
        store.rename(first.id, "prod")
    store.delete(second.id)
    names = [p.name for p in ProfileStore(tmp_path).profiles()]
    assert names == ["Prod", "Renamed", "Elsewhere"]
    with pytest.raises(ProfileNotFound):
        store.delete(second.id)


def test_values_are_validated_and_secrets_refused(tmp_path):
    store = ProfileStore(tmp_path)
    with pytest.raises(ProfileError, match="QoS must be at most 2"):
        store.add(generic(qos=7))
    with pytest.raises(ProfileError, match="required"):
        store.add(new_profile("No app", "tts", {}))
    with pytest.raises(ProfileError) as info:
        store.add(generic(password="hunter2-do-not-show"))
    assert "kept in the keyring" in str(info.value) and "hunter2" not in str(info.value)
    with pytest.raises(ProfileError, match="is not a platform"):
        store.add(new_profile("X", "nope", {}))
    with pytest.raises(ProfileError, match="History days must be a number"):
        store.add(new_profile("H", "generic", {}, history_days="a week"))
    assert store.profiles() == [] and not store.path.exists(), "nothing refused was saved"
    # Empty secret fields are simply not stored.
    saved = store.add(generic(password="", key_password=None))
    assert "password" not in saved.values and "key_password" not in saved.values


def test_retention_from_the_profile():
    from app.history import Retention

    assert generic().retention() is None
    p = generic()
    p.history_days, p.history_max_mb = 3, 10
    assert p.retention() == Retention(max_age_days=3, max_rows=Retention().max_rows, max_bytes=10 * 1024**2)
    assert p.secret_fields() == ["password", "key_password"]


# ----- atomic, private writes -----------------------------------------------------------------


def test_the_file_is_0600_before_its_first_byte(tmp_path, monkeypatch):
    modes = []
    real_write = os.write

    def checking_write(fd, data):
        modes.append(stat.S_IMODE(os.fstat(fd).st_mode))
        return real_write(fd, data)

    monkeypatch.setattr(profiles_module.os, "write", checking_write)
    old_umask = os.umask(0o022)  # a permissive umask must not matter
    try:
        store = ProfileStore(tmp_path / "cfg")
        store.add(generic())
    finally:
        os.umask(old_umask)
    assert modes and set(modes) == {0o600}
    assert stat.S_IMODE(os.stat(store.path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(tmp_path / "cfg").st_mode) == 0o700


@pytest.mark.parametrize("failing", ["replace", "fsync", "write"])
def test_a_failed_save_leaves_the_old_file(tmp_path, monkeypatch, failing):
    store = ProfileStore(tmp_path)
    store.add(generic("Kept"))
    before = store.path.read_bytes()

    def fail(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(profiles_module.os, failing, fail)
    with pytest.raises(ProfileStoreError) as info:
        store.add(generic("Lost"))
    monkeypatch.undo()
    assert str(info.value) == (
        f"The saved connections could not be written to {tmp_path} (No space left on device); "
        "the file on disk is unchanged."
    )
    assert store.path.read_bytes() == before
    assert [p.name for p in store.profiles()] == ["Kept"], "memory shows only what was saved"
    assert not list(tmp_path.glob(".profiles.json.*.tmp")), "no temporary file left behind"
    store.add(generic("Later"))
    assert [p.name for p in ProfileStore(tmp_path).profiles()] == ["Kept", "Later"]


KILLED_WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from app.profiles import ProfileStore
    store = ProfileStore(Path(sys.argv[1]))
    profile = store.get("Big")
    n = 0
    print("ready", flush=True)
    while True:
        n += 1
        letter = "AB"[n % 2]
        profile.values["notes"] = letter * int(sys.argv[2])
        profile.values["publish_topic"] = f"seq/{n}"
        store.update(profile)
    """
)


def test_a_process_killed_mid_save_leaves_the_old_or_the_new_file(tmp_path):
    """SIGKILL at random moments of a writer saving 3 MB documents in a loop: every time, the file
    is a whole document (one letter only, the full length), never a mix."""
    size = 3_000_000
    store = ProfileStore(tmp_path)
    store.add(generic("Big", notes="A" * size))
    rng = random.Random(7)
    seen_sequences = set()
    for _ in range(8):
        proc = subprocess.Popen(
            [sys.executable, "-c", KILLED_WRITER, str(tmp_path), str(size)], cwd=ROOT, stdout=subprocess.PIPE
        )
        assert proc.stdout.readline() == b"ready\n"
        time.sleep(rng.uniform(0.05, 0.4))
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        reader = ProfileStore(tmp_path)
        assert reader.load_problem is None
        notes = reader.get("Big").values["notes"]
        assert len(notes) == size and notes in ("A" * size, "B" * size)
        seen_sequences.add(reader.get("Big").values.get("publish_topic"))
    assert len(seen_sequences) > 1, "the writer got to save between the kills"
    ProfileStore(tmp_path).add(generic("After"))
    assert not list(tmp_path.glob(".profiles.json.*.tmp")), "a killed writer's temporary file is cleaned up"


# ----- damaged, newer and older files -------------------------------------------------------------


def write_store(path: Path, entries, **doc) -> bytes:
    data = json.dumps({"format": "uplink-console-profile-store", "schema_version": 1, "profiles": entries, **doc})
    path.write_bytes(data.encode())
    return data.encode()


def entry(name: str, pid: str, **values) -> dict:
    return {"id": pid, "name": name, "platform": "generic", "values": {"url": "mqtt://h:1883", **values}}


def test_a_broken_entry_is_kept_aside_and_the_rest_recovered(tmp_path):
    path = tmp_path / "profiles.json"
    original = write_store(
        path, [entry("One", "a" * 32), {"id": "b" * 32, "name": "Two", "platform": "generic"}, entry("Three", "c" * 32)]
    )
    store = ProfileStore(tmp_path)
    assert [p.name for p in store.profiles()] == ["One", "Three"]
    aside = list(tmp_path.glob("profiles.json.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == original
    assert aside[0].name[len("profiles.json.corrupt-") :].replace("-", "").isdigit()
    assert store.load_problem == (
        f"1 of the 3 saved connections in profiles.json could not be read; the file was kept aside as "
        f"{aside[0].name} and the other 2 were loaded."
    )
    # The file itself now holds what was recovered; the next store has no problem.
    again = ProfileStore(tmp_path)
    assert [p.name for p in again.profiles()] == ["One", "Three"] and again.load_problem is None


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b'{"format": "uplink-console-profile-store", "profiles": [', "it is not valid JSON"),
        (b"[1, 2, 3]", "it holds list, not the console's object"),
        (b'{"schema_version": 1, "profiles": {"a": 1}}', "it has no list of profiles"),
        (b'{"schema_version": "one"}', "its schema_version 'one' is not a version number"),
        (b"\x00\xff\xfe garbage", "it is not valid JSON"),
    ],
)
def test_an_unreadable_file_is_kept_aside_never_overwritten(tmp_path, content, reason):
    path = tmp_path / "profiles.json"
    path.write_bytes(content)
    store = ProfileStore(tmp_path)
    assert store.profiles() == []
    (aside,) = tmp_path.glob("profiles.json.corrupt-*")
    assert aside.read_bytes() == content
    assert store.load_problem.startswith(f"The saved connections could not be read ({reason}")
    assert store.load_problem.endswith(f"the file was kept aside as {aside.name} and the console starts without them.")
    store.add(generic("Fresh"))
    assert aside.read_bytes() == content
    assert [p.name for p in ProfileStore(tmp_path).profiles()] == ["Fresh"]


def test_a_newer_file_is_shown_but_never_overwritten(tmp_path):
    path = tmp_path / "profiles.json"
    original = write_store(path, [entry("Future", "f" * 32)], schema_version=SCHEMA_VERSION + 1)
    store = ProfileStore(tmp_path)
    assert [p.name for p in store.profiles()] == ["Future"]
    assert "written by a newer Uplink Console (schema version 2" in store.load_problem
    assert "update the console" in store.load_problem
    for change in (lambda: store.add(generic("Mine")), lambda: store.delete("f" * 32)):
        with pytest.raises(ProfileStoreError, match="newer Uplink Console"):
            change()
    assert path.read_bytes() == original
    assert not list(tmp_path.glob("profiles.json.corrupt-*"))
    assert [p.name for p in store.profiles()] == ["Future"]


def test_a_version_0_file_is_migrated_and_its_original_kept(tmp_path):
    v0 = json.dumps(
        {
            "connections": [
                {
                    "name": "Old",
                    "platform": "generic",
                    "values": {"url": "mqtt://old:1883"},
                    "history": {"days": 7, "max_mb": 50},
                }
            ]
        }
    ).encode()
    (tmp_path / "profiles.json").write_bytes(v0)
    store = ProfileStore(tmp_path)
    assert store.load_problem is None
    (old,) = store.profiles()
    assert old.name == "Old" and len(old.id) == 32 and old.created_at
    assert (old.history_days, old.history_max_mb) == (7, 50)
    assert file_doc(store.path)["schema_version"] == SCHEMA_VERSION
    assert (tmp_path / "profiles.json.schema-0").read_bytes() == v0
    assert ProfileStore(tmp_path).get("Old").id == old.id, "the migration gave the id once"


def test_migrations_run_step_by_step():
    steps = {
        0: lambda d: {**d, "schema_version": 1, "trail": ["0->1"]},
    }
    doc, original = migrate({"profiles": []}, steps)
    assert (doc["schema_version"], doc["trail"], original) == (1, ["0->1"], 0)
    with pytest.raises(ValueError, match="there is no migration from schema version 0"):
        migrate({"profiles": []}, {})
    with pytest.raises(ValueError, match="did not give version 1"):
        migrate({}, {0: lambda d: {**d, "schema_version": 5}})
    assert migrate({"schema_version": 1, "profiles": []}, {}) == ({"schema_version": 1, "profiles": []}, 1)


def test_a_failing_migration_keeps_the_file_aside(tmp_path):
    (tmp_path / "profiles.json").write_bytes(b'{"connections": "not a list"}')
    store = ProfileStore(tmp_path)
    assert "it holds no list of connections" in store.load_problem
    assert len(list(tmp_path.glob("profiles.json.corrupt-*"))) == 1


# ----- two windows, two processes ---------------------------------------------------------------


def test_two_stores_on_one_file_merge_by_id(tmp_path):
    a, b = ProfileStore(tmp_path), ProfileStore(tmp_path)
    x = a.add(generic("X"))
    y = b.add(generic("Y"))  # b never saw X: it is kept
    assert [p.name for p in b.profiles()] == ["X", "Y"]
    a.update(_with(a.get(x.id), publish_topic="from-a"))  # a has not seen Y yet
    assert [p.name for p in a.profiles()] == ["X", "Y"], "a's save brought in b's profile"
    stale = _with(b.get(x.id), publish_topic="from-b")  # b's copy of X predates a's change
    b.update(stale)
    assert ProfileStore(tmp_path).get("X").values["publish_topic"] == "from-b", "the last writer wins per profile"
    a.delete(y.id)
    b.rename(x.id, "X renamed")  # b still has Y in memory: its save must not bring it back
    assert [p.name for p in ProfileStore(tmp_path).profiles()] == ["X renamed"]
    # The same new name from both: the later one gives way.
    a.add(generic("Same"))
    b.add(_renamed_generic(b, "Same"))
    names = [p.name for p in ProfileStore(tmp_path).profiles()]
    assert names == ["X renamed", "Same", "Same (2)"]


def _with(profile, **values):
    profile.values.update(values)
    return profile


def _renamed_generic(store, name):
    """Adds a profile named like one another store saved meanwhile (this store has not seen it)."""
    assert not store._name_taken(name)
    return generic(name)


CONCURRENT_ADDER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from app.profiles import ProfileStore, new_profile
    store = ProfileStore(Path(sys.argv[1]))
    for i in range(int(sys.argv[3])):
        store.add(new_profile(f"{sys.argv[2]}-{i}", "generic", {"url": "mqtt://h:1883"}))
    """
)


def test_processes_saving_at_once_lose_nothing(tmp_path):
    procs = [
        subprocess.Popen([sys.executable, "-c", CONCURRENT_ADDER, str(tmp_path), who, "15"], cwd=ROOT)
        for who in ("a", "b", "c")
    ]
    for proc in procs:
        assert proc.wait(60) == 0
    names = {p.name for p in ProfileStore(tmp_path).profiles()}
    assert names == {f"{who}-{i}" for who in "abc" for i in range(15)}


def test_the_lock_waits_then_says_so(tmp_path):
    lock = tmp_path / "profiles.json.lock"
    with file_lock(lock):
        started = time.monotonic()
        with (
            pytest.raises(ProfileStoreError, match="Another Uplink Console has held profiles.json.lock"),
            file_lock(lock, timeout=0.3),
        ):
            pass
        assert 0.25 < time.monotonic() - started < 3
    with file_lock(lock, timeout=0.3):
        pass  # free again once released


# ----- export and import -----------------------------------------------------------------------


def test_export_has_no_secrets_and_imports_as_new_profiles(tmp_path):
    store = ProfileStore(tmp_path)
    prod = store.add(new_profile("Prod", "tts", {"app": "my-app", "tenant": "ttn"}, history_days=5))
    store.add(generic("Lab"))
    data = export_document(store.profiles())
    doc = json.loads(data)
    assert doc["format"] == "uplink-console-profiles" and doc["schema_version"] == 1
    assert [e["name"] for e in doc["profiles"]] == ["Prod", "Lab"]
    assert doc["profiles"][0]["secrets_not_included"] == ["password"]
    assert "id" not in doc["profiles"][0]
    pairs = import_document(data)
    assert [(p.name, p.platform, secrets) for p, secrets in pairs] == [("Prod", "tts", {}), ("Lab", "generic", {})]
    imported = pairs[0][0]
    assert imported.id != prod.id and imported.values == prod.values and imported.history_days == 5
    with pytest.raises(ProfileError, match="The file holds 2 connections; --name applies to a file with one."):
        import_document(data, name="One")
    one = import_document(export_document([store.get("Lab")]), name="Lab again")
    assert one[0][0].name == "Lab again"


def test_a_hand_edited_export_with_a_password_gives_it_as_a_secret():
    doc = {
        "format": "uplink-console-profiles",
        "schema_version": 1,
        "profiles": [{"name": "P", "platform": "generic", "values": {"url": "mqtt://h", "password": "pw"}}],
    }
    ((profile, secrets),) = import_document(json.dumps(doc).encode())
    assert secrets == {"password": "pw"} and "password" not in profile.values


def test_the_tektelic_sample_imports_with_its_password_apart(tmp_path):
    data = (SAMPLES / "tektelic_mqtt_v2_integration_config_1.json").read_bytes()
    ((profile, secrets),) = import_document(data, certificates_dir=tmp_path)  # detected
    assert (profile.name, profile.platform) == ("test_mqttv2", "tektelic")
    assert secrets == {"password": "userP"}
    assert "password" not in profile.values and profile.values["token"] == "userT"
    assert profile.values["push_topic"] == "pushTopic" and profile.values["host"] == "0.tcp.eu.ngrok.io"
    saved = ProfileStore(tmp_path / "cfg").add(profile)
    assert saved.values == profile.values
    ((again, _),) = import_document(data, platform="tektelic", name="Mine")
    assert again.name == "Mine" and again.id != profile.id


def test_tektelic_certificates_in_a_body_become_private_files(tmp_path):
    doc = json.loads((SAMPLES / "tektelic_mqtt_v2_integration_config_1.json").read_bytes())
    key = "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n"
    doc["configuration"].update(ssl=True, port=8883, clientPrivateKey=key, clientKeyPassword="kp")
    ((profile, secrets),) = import_document(json.dumps(doc).encode(), certificates_dir=tmp_path)
    assert secrets == {"password": "userP", "key_password": "kp"}
    key_file = Path(profile.values["key_file"])
    assert key_file.parent == tmp_path / profile.id and key_file.read_text() == key
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


def test_the_thingpark_documented_body_imports(tmp_path):
    pairs = import_document(THINGPARK_CONNECTION_BODY.encode(), certificates_dir=tmp_path)
    ((profile, secrets),) = pairs
    assert (profile.name, profile.platform) == ("Actility MQTT (SSL) Connection", "thingpark")
    assert secrets == {"password": "bar"} and "password" not in profile.values
    values = profile.values
    assert values["host_name"] == "91.134.250.109:8883" and values["protocol"] == "SSL"
    assert values["username"] == "mycompany"
    assert values["uplink_topic_pattern"] == "mqtt/things/{DevEUI}/uplink"
    cert, key = Path(values["cert_file"]), Path(values["key_file"])
    assert cert.read_text().startswith("-----BEGIN CERTIFICATE-----") and stat.S_IMODE(key.stat().st_mode) == 0o600
    store = ProfileStore(tmp_path / "cfg")
    store.add(profile)
    from app import platforms

    config = platforms.get("thingpark").connection(store.get(profile.id).values)
    assert (config.host, config.port, config.username) == ("91.134.250.109", 8883, "mycompany")
    assert [s.topic for s in config.subscriptions] == ["mqtt/things/+/uplink"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"connectorId": "actility-aws-iot"}, "the console imports MQTT connections"),
        ({"configuration": {"hostName": "broker.example.com"}}, "hostName is refused: the host name"),
        ({"configuration": {"hostName": "b:1883", "protocol": "HTTP"}}, "protocol is refused"),
        ({"configuration": {"hostName": "b:1883", "uplinkTopicPattern": "up/#"}}, "contains an MQTT wildcard"),
        ({"configuration": {"hostName": "b:1883", "connectionTimeout": 60000}}, "connectionTimeout is refused"),
        ({"configuration": {"hostName": "b:1883", "certificate": "not pem"}}, "certificate is not PEM text"),
        ({"configuration": {}}, "has no hostName"),
    ],
)
def test_thingpark_bodies_out_of_range_are_refused_with_a_sentence(tmp_path, change, message):
    doc = {**json.loads(THINGPARK_CONNECTION_BODY), **change}
    with pytest.raises(ProfileError) as info:
        import_document(json.dumps(doc).encode(), platform="thingpark", certificates_dir=tmp_path)
    assert message in str(info.value) and str(info.value).endswith(".")


@pytest.mark.parametrize(
    ("data", "platform", "message"),
    [
        (b"{nope", None, "The file is not valid JSON"),
        (b'{"hello": 1}', None, "not clearly a Tektelic or ThingPark configuration; give --platform"),
        (b'{"host": "h", "token": "t", "hostName": "h:1"}', None, "not clearly"),
        (b'{"format": "something-else"}', None, "The file's format 'something-else' is not one the console reads."),
        (b"{}", "tts", "Only Tektelic and ThingPark configuration bodies can be imported"),
        (b'{"format": "uplink-console-profiles", "schema_version": 9, "profiles": []}', None, "newer Uplink"),
    ],
)
def test_unknown_documents_are_refused_with_a_sentence(data, platform, message):
    with pytest.raises(ProfileError, match=message.replace("(", r"\(").replace(")", r"\)")):
        import_document(data, platform=platform)

"""decode and encode-downlink as users script them: every platform's samples through the command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from app.cli import main

SAMPLES = Path(__file__).resolve().parent / "samples"
ROOT = Path(__file__).resolve().parent.parent


def run(capsys, *argv, stdin: bytes | None = None, monkeypatch=None):
    if stdin is not None:
        import io

        monkeypatch.setattr(sys, "stdin", type("S", (), {"buffer": io.BytesIO(stdin)})())
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def events(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines()]


@pytest.mark.parametrize(
    "platform,topic,sample,expected",
    [
        (
            "tts",
            "v3/app1@ttn/devices/dev1/up",
            "tts_up_1.json",
            {
                "kind": "uplink",
                "dev_eui": "4200000000000000",
                "dev_addr": "01DA1F15",
                "f_port": 15,
                "payload_hex": "54656d7065726174757265203d20302e30",
                "rssi": -35.0,
                "snr": 5.0,
                "frequency_hz": 868500000,
                "spreading_factor": 7,
                "bandwidth_hz": 125000,
            },
        ),
        ("tts", "v3/app1@ttn/devices/dev1/join", "tts_join_1.json", {"kind": "join"}),
        ("tts", "v3/app1@ttn/devices/dev1/down/ack", "tts_down_ack_1.json", {"kind": "downlink_ack"}),
        (
            "thingpark",
            "mqtt/things/0018B20000000B20/uplink",
            "thingpark_uplink_1.json",
            {
                "kind": "uplink",
                "dev_eui": "0018B20000000B20",
                "dev_addr": "04D2848E",
                "f_port": 1,
                "f_cnt": 1174,
                "payload_hex": "9e1c4852512000220020e3831071",
                "rssi": -80.0,
                "snr": 7.0,
                "gateway_id": "004A18E3",
                "frequency_hz": 868100000,
                "spreading_factor": 7,
            },
        ),
        ("thingpark", "mqtt/things/X/uplink", "thingpark_notification_1.json", {"kind": "status"}),
        (
            "tektelic",
            "app/pull",
            "tektelic_broker_downlink_1.json",
            {"kind": "downlink_queued", "dev_eui": "647FDA0300000000", "f_port": 10, "payload_hex": "010203"},
        ),
        (
            "akenza",
            "/up/device/id/abc",
            "akenza_uplink_1.json",
            {"kind": "uplink", "device_id": "abc", "decoded": {"temperature": 22}},
        ),
        (
            "drogue",
            "app/app_id",
            "drogue_structured_1.json",
            {
                "kind": "uplink",
                "application_id": "app_id",
                "device_id": "device_id",
                "decoded": {"temp": 42},
                "received_at": "2021-05-27T22:27:30.758000Z",
            },
        ),
    ],
)
def test_decode_samples(capsys, platform, topic, sample, expected):
    code, out, err = run(capsys, "decode", "--platform", platform, "--topic", topic, str(SAMPLES / sample))
    assert code == 0, err
    [event] = events(out)[:1]
    assert event["platform"] == platform and event["topic"] == topic
    for key, value in expected.items():
        assert event[key] == value, key
    assert set(event) == {
        "platform",
        "kind",
        "received_at",
        "application_id",
        "device_id",
        "dev_eui",
        "dev_addr",
        "f_port",
        "f_cnt",
        "payload_hex",
        "decoded",
        "rssi",
        "snr",
        "gateway_id",
        "gateways",
        "spreading_factor",
        "bandwidth_hz",
        "frequency_hz",
        "correlation_ids",
        "error",
        "topic",
    }


@pytest.mark.parametrize(
    "body,fragment",
    [
        (b'{"uplink_message": {"f_port": 1,,}}', "line 1, column 33"),
        (b"\x00\xff\xfe garbage", "not valid JSON"),
        (b"", "empty"),
        (b"[1, 2, 3]", "not an object"),
        (b"x" * 10_000_000, "too large"),
    ],
)
@pytest.mark.parametrize("platform", ["tts", "thingpark", "drogue", "akenza"])
def test_decode_bad_input_is_one_line_and_status_2(capsys, monkeypatch, platform, body, fragment):
    if platform == "akenza" and body.startswith(b"["):
        pytest.skip("an akenza body is device-defined: a JSON array is a valid uplink")
    topic = {"tts": "v3/a@t/devices/d/up", "thingpark": "a/b", "drogue": "app/a", "akenza": "/up/device/id/d"}
    code, out, err = run(
        capsys, "decode", "--platform", platform, "--topic", topic[platform], "-", stdin=body, monkeypatch=monkeypatch
    )
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err
    if platform == "akenza" and fragment == "not valid JSON":
        fragment = "not JSON"  # akenza's sentence explains it read the body as JSON for lack of a content type
    assert fragment in err, err


def test_decode_through_the_installed_command():
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "ui.launcher",
            "decode",
            "--platform",
            "tts",
            "--topic",
            "v3/app1@ttn/devices/dev1/up",
            str(SAMPLES / "tts_up_1.json"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.splitlines()[0])["f_port"] == 15


@pytest.mark.parametrize(
    "argv,topic,check",
    [
        (
            [
                "--platform",
                "tts",
                "--app",
                "my-app",
                "--tenant",
                "ttn",
                "--device",
                "dev1",
                "--f-port",
                "2",
                "--hex",
                "0102",
                "--confirmed",
                "--priority",
                "high",
            ],
            "v3/my-app@ttn/devices/dev1/down/push",
            lambda p: (
                json.loads(p)
                == {"downlinks": [{"f_port": 2, "frm_payload": "AQI=", "priority": "HIGH", "confirmed": True}]}
            ),
        ),
        (
            [
                "--platform",
                "tts",
                "--app",
                "my-app",
                "--device",
                "dev1",
                "--f-port",
                "1",
                "--base64",
                "AQI=",
                "--replace",
            ],
            "v3/my-app/devices/dev1/down/replace",
            lambda p: json.loads(p)["downlinks"][0]["frm_payload"] == "AQI=",
        ),
        (
            [
                "--platform",
                "thingpark",
                "--dev-eui",
                "0004a30b001c0530",
                "--topic-pattern",
                "mqtt/things/{DevEUI}/downlink",
                "--f-port",
                "1",
                "--hex",
                "cafe",
            ],
            "mqtt/things/0004A30B001C0530/downlink",
            lambda p: (
                json.loads(p)["DevEUI_downlink"]["payload_hex"] == "cafe"
                and json.loads(p)["DevEUI_downlink"]["FPort"] == 1
            ),
        ),
        (
            [
                "--platform",
                "tektelic",
                "--topic-pattern",
                "app/down",
                "--dev-eui",
                "647FDA0000000001",
                "--f-port",
                "10",
                "--hex",
                "0102",
            ],
            "app/down",
            lambda p: json.loads(p) == {"fPort": 10, "bytes": [1, 2]},
        ),
        (
            [
                "--platform",
                "tektelic",
                "--topic-pattern",
                "app/down",
                "--dev-eui",
                "647FDA0000000001",
                "--f-port",
                "10",
                "--hex",
                "0102",
                "--template",
                "broker-base64",
            ],
            "app/down",
            lambda p: json.loads(p) == {"deviceEui": "647FDA0000000001", "fPort": 10, "data": "AQI="},
        ),
        (
            ["--platform", "akenza", "--device", "dev-1", "--json", '{"a": 1}'],
            "/up/device/id/dev-1",
            lambda p: json.loads(p) == {"a": 1},
        ),
        (
            ["--platform", "drogue", "--app", "app1", "--device", "dev1", "--command", "set", "--text", "on"],
            "command/app1/dev1/set",
            lambda p: p == "on",
        ),
        (
            ["--platform", "drogue", "--app", "app1", "--device", "dev1", "--f-port", "5", "--hex", "00ff"],
            "command/app1/dev1/port:5",
            lambda p: p == "AP8=",
        ),
    ],
)
def test_encode_downlink(capsys, argv, topic, check):
    code, out, err = run(capsys, "encode-downlink", *argv)
    assert code == 0, err
    line = json.loads(out)
    assert set(line) == {"topic", "payload", "qos", "properties"}
    assert line["topic"] == topic
    assert check(line["payload"]), line["payload"]


@pytest.mark.parametrize(
    "argv,fragment",
    [
        (["--platform", "tts", "--app", "a1b", "--device", "dev1", "--f-port", "1", "--hex", "abc"], "even number"),
        (
            ["--platform", "tts", "--app", "a1b", "--device", "dev1", "--f-port", "1", "--base64", "A*=="],
            "not valid base64",
        ),
        (["--platform", "tts", "--app", "a1b", "--device", "dev1", "--f-port", "234", "--hex", "00"], "233"),
        (["--platform", "tts", "--app", "a1b", "--f-port", "1", "--hex", "00"], "device"),
        (["--platform", "tts", "--app", "a1b", "--device", "dev1", "--f-port", "1", "--hex", "00" * 243], "242"),
        (
            [
                "--platform",
                "thingpark",
                "--topic-pattern",
                "t/{DevEUI}",
                "--dev-eui",
                "0004a30b001c0530",
                "--f-port",
                "225",
                "--hex",
                "00",
            ],
            "224",
        ),
        (["--platform", "drogue", "--app", "a", "--device", "d", "--command", "x/y", "--text", "1"], "/"),
    ],
)
def test_encode_downlink_invalid_input(capsys, argv, fragment):
    code, out, err = run(capsys, "encode-downlink", *argv)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert fragment.lower() in err.lower(), err
    assert err.startswith("uplink-console encode-downlink: ")

"""The headless commands under hostile input: endless devices, binary secrets, arguments that are
not text, output paths that cannot work, passwords in URLs, verification off, and bugs.

Real processes (`python -m app.cli`, as the entry point runs it) with their log and data folders
in temporary directories; every stderr is checked to be sentences, never a traceback.
"""

from __future__ import annotations

import logging
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app import cli
from app.logfile import LOG_NAME
from tests.test_capture import wait_connected
from tests.test_session import publish_with_paho

ROOT = Path(__file__).resolve().parent.parent
EXE = [sys.executable, "-m", "app.cli"]
MEMORY_LIMIT = 1536 * 1024 * 1024  # an unbounded read of /dev/zero hits this within a second
LIMIT_SENTENCE = "The input is larger than 4 MiB, too large to be a message a platform sends; stopped reading there."


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


@pytest.fixture
def env(tmp_path) -> dict:
    return {
        **os.environ,
        "UPLINK_CONSOLE_LOG_DIR": str(tmp_path / "log"),
        "UPLINK_CONSOLE_DATA_DIR": str(tmp_path / "data"),
        "QT_QPA_PLATFORM": "offscreen",
    }


def run_cli(argv, env, *, stdin=None, timeout=20.0, exe=EXE) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    result = subprocess.run(
        [*exe, *argv],
        cwd=ROOT,
        env=env,
        stdin=stdin if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        timeout=timeout,
        preexec_fn=_limit_memory,
    )
    return result, time.monotonic() - started


def err_of(result) -> str:
    err = result.stderr.decode("utf-8", "replace")
    assert "Traceback" not in err, err
    return err


@pytest.fixture
def listener():
    """A loopback port that listens but never answers: it shows whether anything tried to connect."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        s.settimeout(0.3)

        def attempted() -> bool:
            try:
                conn, _ = s.accept()
            except TimeoutError:
                return False
            conn.close()
            return True

        yield s.getsockname()[1], attempted


# ----- 2. inputs are read with a bound ---------------------------------------------------------


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom"])
@pytest.mark.parametrize("how", ["file", "stdin", "pipe"])
def test_decode_of_an_endless_input_stops_at_the_limit(env, device, how):
    argv = ["decode", "--platform", "tts", "--topic", "v3/a@t/devices/d/up"]
    if how == "file":
        result, took = run_cli([*argv, device], env)
    elif how == "stdin":
        with open(device, "rb") as f:
            result, took = run_cli([*argv, "-"], env, stdin=f)
    else:
        feeder = subprocess.Popen(["cat", device], stdout=subprocess.PIPE)
        try:
            result, took = run_cli(argv, env, stdin=feeder.stdout)
        finally:
            feeder.stdout.close()
            feeder.kill()
            feeder.wait()
    err = err_of(result)
    assert result.returncode == 2, err
    assert err.strip() == f"uplink-console decode: {LIMIT_SENTENCE}"
    assert result.stdout == b""
    assert took < 10, took


def test_decode_of_an_input_just_at_the_limit_is_still_decoded(env, tmp_path):
    from app.platforms.base import MAX_BODY

    body = tmp_path / "big.json"
    body.write_bytes(b" " * MAX_BODY)  # exactly the limit: read whole, then refused as JSON, not as too large
    result, _ = run_cli(["decode", "--platform", "tts", "--topic", "v3/a@t/devices/d/up", str(body)], env)
    err = err_of(result)
    assert result.returncode == 2
    assert "stopped reading there" not in err and err.startswith("tts: ")


@pytest.mark.parametrize(
    "content,fragment",
    [
        (None, "is larger than 64 KiB"),  # /dev/zero
        (b"pass\x00word\n", "contains NUL bytes"),
        (b"\xff\xfe\x00p\x00w", "contains NUL bytes"),
        (b"caf\xe9\n", "is not UTF-8 text"),
    ],
)
def test_password_file_that_is_not_a_line_of_text(env, tmp_path, listener, content, fragment):
    port, attempted = listener
    if content is None:
        path = "/dev/zero"
    else:
        path = str(tmp_path / "pw")
        Path(path).write_bytes(content)
    argv = ["capture", "--url", f"mqtt://127.0.0.1:{port}", "--topic", "a/#", "--username", "u"]
    result, took = run_cli([*argv, "--password-file", path, "--out", str(tmp_path / "o.jsonl")], env)
    err = err_of(result)
    assert result.returncode == 2, err
    assert err.startswith(f"uplink-console capture: The password file {path} ") and fragment in err, err
    assert len(err.strip().splitlines()) == 1
    assert took < 10
    assert not attempted()
    assert not (tmp_path / "o.jsonl").exists()


def test_platform_secret_file_is_read_with_a_bound(env, tmp_path):
    body = tmp_path / "up.json"
    body.write_bytes(b"{}")
    result, took = run_cli(
        ["decode", "--platform", "drogue", "--topic", "app/a", "--api-key-file", "/dev/zero", str(body)], env
    )
    err = err_of(result)
    assert result.returncode == 2, err
    assert "file /dev/zero is larger than 64 KiB" in err, err
    assert took < 10


def test_secret_file_with_a_trailing_newline_and_bom_still_works(tmp_path):
    path = tmp_path / "pw"
    path.write_bytes("\ufeffs3cret\r\n".encode())
    assert cli._read_secret_file(str(path), "password") == "s3cret"


def test_tls_file_that_is_a_device_is_refused_before_connecting(env, tmp_path, listener):
    port, attempted = listener
    argv = ["capture", "--url", f"mqtts://127.0.0.1:{port}", "--topic", "a", "--ca", "/dev/zero"]
    result, took = run_cli([*argv, "--out", str(tmp_path / "o.jsonl")], env)
    err = err_of(result)
    assert result.returncode == 2, err
    assert "The CA certificate file /dev/zero is a device" in err
    assert took < 10 and not attempted()


# ----- 3. arguments that are not text --------------------------------------------------------


CAPTURE = [b"capture", b"--url", b"mqtt://127.0.0.1:{port}"]
OUT = [b"--out", b"{out}"]
ENCODE = [b"encode-downlink", b"--platform", b"tts", b"--app", b"a", b"--f-port", b"1", b"--hex", b"00"]


@pytest.mark.parametrize(
    "argv,option",
    [
        ([*CAPTURE, b"--topic", b"sensors/\xff\xfe", *OUT], "--topic"),
        ([*CAPTURE, b"--topic", b"a", b"--client-id", b"\xc3(", *OUT], "--client-id"),
        ([*CAPTURE, b"--topic", b"a", b"--share", b"g\xed\xa0\x80", *OUT], "--share"),  # a lone surrogate, encoded
        ([b"decode", b"--platform", b"tts", b"--topic", b"v3/\xff/up", b"/dev/null"], "--topic"),
        ([*ENCODE, b"--device", b"d\x80"], "--device"),
    ],
)
def test_argument_that_is_not_utf8_names_the_option(env, tmp_path, listener, argv, option):
    port, attempted = listener
    out = tmp_path / "o.jsonl"
    raw = [a.replace(b"{port}", str(port).encode()).replace(b"{out}", os.fsencode(out)) for a in argv]
    result, took = run_cli(raw, env, exe=[os.fsencode(a) for a in EXE])
    err = err_of(result)
    assert result.returncode == 2, err
    sub = argv[0].decode()
    assert err.startswith(f"uplink-console {sub}: The {option} argument '"), err
    assert "is not valid UTF-8 text" in err and len(err.strip().splitlines()) == 1
    assert took < 10 and not attempted() and not out.exists()


def test_a_file_name_that_is_not_utf8_is_still_a_file_name(env, tmp_path):
    name = os.fsencode(tmp_path) + b"/up-\xff.json"
    with open(name, "wb") as f:
        f.write(b"{}")
    argv = [b"decode", b"--platform", b"tts", b"--topic", b"v3/a@t/devices/d/up", name]
    result, _ = run_cli(argv, env, exe=[os.fsencode(a) for a in EXE])
    err = err_of(result)
    # Read and judged as a message (it has none of the keys), not refused as an argument.
    assert result.returncode == 2 and err.startswith("tts: A message on …/up carries uplink_message"), err


def test_password_variable_that_is_not_utf8_is_a_sentence(env, tmp_path, listener):
    port, attempted = listener
    env = {**env}
    env_bytes = {os.fsencode(k): os.fsencode(v) for k, v in env.items()}
    env_bytes[b"UPLINK_CONSOLE_PASSWORD"] = b"pw\xff"
    argv = ["capture", "--url", f"mqtt://127.0.0.1:{port}", "--topic", "a", "--username", "u"]
    result, _ = run_cli([*argv, "--out", str(tmp_path / "o.jsonl")], env_bytes)
    err = err_of(result)
    assert result.returncode == 2, err
    assert "The environment variable UPLINK_CONSOLE_PASSWORD is not valid UTF-8 text" in err
    assert not attempted()


# ----- 4. output paths are checked before connecting -----------------------------------------


def _not_writable(tmp_path: Path) -> Path:
    if os.geteuid() != 0:
        folder = tmp_path / "read-only"
        folder.mkdir()
        folder.chmod(0o500)
        return folder / "cap.jsonl"
    probe = Path("/sys/uplink-console-probe.jsonl")  # root writes anywhere but where the kernel refuses
    try:
        open(probe, "ab").close()
    except PermissionError:
        return probe
    except OSError:
        pass
    else:
        probe.unlink()
    pytest.skip("no place here that root cannot write")


@pytest.mark.parametrize("case", ["folder", "under-a-file", "missing-folder", "not-writable"])
def test_capture_out_that_cannot_work_exits_2_before_connecting(env, tmp_path, listener, case):
    port, attempted = listener
    (tmp_path / "plain-file").write_text("x")
    out, fragment = {
        "folder": (tmp_path, f"--out {tmp_path} is a folder; give a file name, e.g. --out {tmp_path}/capture.jsonl."),
        "under-a-file": (
            tmp_path / "plain-file" / "cap.jsonl",
            f"lies under {tmp_path / 'plain-file'}, which is a file",
        ),
        "missing-folder": (tmp_path / "nope" / "cap.jsonl", f"The folder {tmp_path / 'nope'} does not exist"),
        "not-writable": (None, None),
    }[case]
    if case == "not-writable":
        out = _not_writable(tmp_path)
        fragment = f"You may not write to {out} (permission denied)"
    result, took = run_cli(["capture", "--url", f"mqtt://127.0.0.1:{port}", "--topic", "a/#", "--out", str(out)], env)
    err = err_of(result)
    assert result.returncode == 2, err
    assert err.startswith("uplink-console capture: ") and fragment in err, err
    assert "Connecting" not in err and len(err.strip().splitlines()) == 1
    assert took < 10
    assert not attempted(), "capture connected before it checked --out"


def test_capture_stops_with_a_sentence_when_the_output_fails(broker, env, topic):
    proc = subprocess.Popen(
        [*EXE, "capture", "--url", broker.url("plain"), "--topic", topic + "/#", "--out", "/dev/full"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        seen = wait_connected(proc)
        publish_with_paho(broker.ports.plain, topic + "/x", [b"one", b"two"])
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    os.set_blocking(proc.stderr.fileno(), True)
    err = seen + proc.stderr.read().decode()
    assert "Traceback" not in err
    assert proc.returncode == 1, err
    assert err.strip().splitlines()[-1] == "Cannot write to /dev/full (No space left on device); stopped capturing."


# ----- 6. no password on the command line ----------------------------------------------------


def test_password_in_url_is_refused_naming_both_alternatives(env, tmp_path, listener):
    port, attempted = listener
    out = tmp_path / "o.jsonl"
    result, took = run_cli(
        ["capture", "--url", f"mqtt://u:s3cret@127.0.0.1:{port}", "--topic", "a", "--out", str(out)], env
    )
    err = err_of(result)
    assert result.returncode == 2, err
    assert err.startswith("uplink-console capture: --url contains a password")
    assert "UPLINK_CONSOLE_PASSWORD=… in the environment" in err and "--password-file FILE" in err
    assert "s3cret" not in err
    assert took < 10 and not attempted() and not out.exists()


def test_password_in_url_is_refused_by_the_window_too(env, listener):
    port, attempted = listener
    argv = ["--smoke-test", "1", "--url", f"mqtts://u:pw@127.0.0.1:{port}", "--topic", "a"]
    result, _ = run_cli(argv, env, exe=[sys.executable, "-m", "ui.launcher"])
    err = err_of(result)
    assert result.returncode == 2, err
    assert "--url contains a password" in err and "--password-file FILE" in err
    assert not attempted()


def test_user_name_alone_in_url_is_still_accepted():
    args = cli.build_parser().parse_args(["capture", "--url", "mqtt://alice@127.0.0.1:1", "--topic", "a", "--out", "-"])
    config, *_ = cli.connection_from_args(args)
    assert config.username == "alice" and config.password is None


# ----- 5. verification off is visible -------------------------------------------------------


def _capture_until_connected(env, *argv) -> tuple[int, str]:
    proc = subprocess.Popen([*EXE, "capture", *argv], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        seen = wait_connected(proc)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(15)
    os.set_blocking(proc.stderr.fileno(), True)
    return proc.returncode, seen + proc.stderr.read().decode()


def test_insecure_capture_prints_one_warning_line(broker, env, tmp_path, topic):
    code, err = _capture_until_connected(
        env, "--url", broker.url("tls"), "--insecure", "--topic", topic, "--out", str(tmp_path / "o.jsonl")
    )
    assert "Traceback" not in err
    assert code == 0, err
    warnings = [line for line in err.splitlines() if "warning:" in line]
    assert warnings == [
        "uplink-console capture: warning: the broker's certificate is not verified (--insecure); "
        f"anyone on the network path could pose as localhost:{broker.ports.tls}."
    ]
    assert err.splitlines()[0] == warnings[0]  # before "Connecting to …"


def test_verified_capture_prints_no_warning(broker, pki, env, tmp_path, topic):
    code, err = _capture_until_connected(
        env, "--url", broker.url("tls"), "--ca", str(pki.ca), "--topic", topic, "--out", str(tmp_path / "o.jsonl")
    )
    assert code == 0, err
    assert "warning:" not in err and "Traceback" not in err
    assert "Connected to mqtts://localhost" in err


def test_platform_profile_with_verification_off_warns():
    argv = ["capture", "--platform", "generic", "--url", "mqtts://broker.example.com", "--topic", "a"]
    parser = cli.build_parser(cli.platform_named_in(argv))
    args = parser.parse_args([*argv, "--no-verify-certificate", "--out", "-"])
    config, *_ = cli.connection_from_args(args, warn=False)
    assert config.tls.verify_certificate is False
    assert cli.verification_warning(config, args) == (
        "the broker's certificate is not verified (--no-verify-certificate); "
        "anyone on the network path could pose as broker.example.com:8883."
    )
    plain = cli.build_parser().parse_args(["capture", "--url", "mqtt://h", "--insecure", "--topic", "a"])
    assert cli.verification_warning(cli.connection_from_args(plain, warn=False)[0], plain) is None


def test_insecure_smoke_test_prints_the_warning(broker, env, topic):
    argv = ["--smoke-test", "1", "--url", broker.url("tls"), "--insecure", "--topic", topic]
    result, _ = run_cli(argv, env, exe=[sys.executable, "-m", "ui.launcher"], timeout=90)
    err = err_of(result)
    assert result.returncode == 0, err
    assert (
        "uplink-console: warning: the broker's certificate is not verified (--insecure); "
        f"anyone on the network path could pose as localhost:{broker.ports.tls}."
    ) in err.splitlines()


# ----- 1. one catch-all: a sentence on stderr, the traceback in the log ----------------------


def _inject(monkeypatch, subcommand: str) -> list[str]:
    def boom(*_a, **_k):
        raise RuntimeError(f"injected {subcommand} failure")

    if subcommand == "capture":
        import app.capture

        monkeypatch.setattr(app.capture, "run_capture", boom)
        return ["capture", "--url", "mqtt://127.0.0.1:1", "--topic", "a", "--out", "-"]
    if subcommand == "decode":
        monkeypatch.setattr(cli, "_read_input", boom)
        return ["decode", "--platform", "tts", "--topic", "v3/a@t/devices/d/up", "-"]
    monkeypatch.setattr(cli, "DownlinkRequest", boom)
    return ["encode-downlink", "--platform", "tts", "--app", "a", "--device", "d", "--f-port", "1", "--hex", "00"]


@pytest.mark.parametrize("subcommand", ["capture", "decode", "encode-downlink"])
def test_unexpected_error_is_one_sentence_and_the_traceback_is_in_the_log(monkeypatch, capsys, tmp_path, subcommand):
    monkeypatch.setenv("UPLINK_CONSOLE_LOG_DIR", str(tmp_path / "log"))
    argv = _inject(monkeypatch, subcommand)
    code = cli.main(argv)
    out, err = capsys.readouterr()
    log_file = tmp_path / "log" / LOG_NAME
    assert code == 3
    assert "Traceback" not in err and out == ""
    assert err.endswith("\n") and len(err.splitlines()) == 1, err
    assert err.strip() == (
        f"uplink-console {subcommand}: an internal error stopped the command "
        f"(RuntimeError: injected {subcommand} failure); please report it with the details from {log_file}."
    )
    text = log_file.read_text()
    assert "Traceback (most recent call last)" in text and f"RuntimeError: injected {subcommand} failure" in text
    # The handler is gone again: nothing of this run stays attached to the test process's logging.
    assert not [h for h in logging.getLogger().handlers if getattr(h, "baseFilename", None) == str(log_file)]


def test_unexpected_error_when_the_log_cannot_be_written_is_still_a_sentence(monkeypatch, capsys, tmp_path):
    (tmp_path / "a-file").write_text("x")
    monkeypatch.setenv("UPLINK_CONSOLE_LOG_DIR", str(tmp_path / "a-file" / "log"))
    code = cli.main(_inject(monkeypatch, "decode"))
    out, err = capsys.readouterr()
    assert code == 3 and "Traceback" not in err and len(err.splitlines()) == 1
    assert err.startswith("uplink-console decode: an internal error stopped the command (RuntimeError: injected")
    assert "the details could not be saved" in err and "UPLINK_CONSOLE_LOG_DIR" in err


def test_unexpected_error_in_a_real_process(env, tmp_path):
    """A crash in a real process: the old catch-all itself crashed on decode (args.command)."""
    code = (
        "import sys, app.cli as c\n"
        "def boom(*a): raise MemoryError()\n"
        "c._read_input = boom\n"
        "sys.exit(c.main(sys.argv[1:]))\n"
    )
    result, _ = run_cli(["decode", "--platform", "tts", "--topic", "t", "-"], env, exe=[sys.executable, "-c", code])
    err = err_of(result)
    assert result.returncode == 3, err
    log_file = tmp_path / "log" / LOG_NAME
    assert err.strip() == (
        "uplink-console decode: an internal error stopped the command (MemoryError); "
        f"please report it with the details from {log_file}."
    )
    assert "Traceback" in log_file.read_text()


def test_library_log_lines_go_to_the_log_file_only(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("UPLINK_CONSOLE_LOG_DIR", str(tmp_path / "log"))

    def chatty(args):
        for name in ("mqtt", "aiomqtt", "paho", "asyncio"):
            logging.getLogger(name).error("%s says the socket broke", name)
        return 0

    monkeypatch.setattr(cli, "cmd_decode", chatty)
    assert cli.main(["decode", "--platform", "tts", "--topic", "t", "-"]) == 0
    out, err = capsys.readouterr()
    assert err == "" and out == ""
    text = (tmp_path / "log" / LOG_NAME).read_text()
    for name in ("mqtt", "aiomqtt", "paho", "asyncio"):
        assert f"ERROR {name}: {name} says the socket broke" in text


def test_a_run_that_logs_nothing_leaves_no_log_file(env, tmp_path):
    result, _ = run_cli(["decode", "--platform", "tts", "--topic", "t", "/dev/null"], env)
    err_of(result)
    assert result.returncode == 2
    assert not (tmp_path / "log").exists()

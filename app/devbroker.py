"""A local mosquitto on free loopback ports, with its own certificates: for tests, benchmarks
and the demo. Nothing here ever listens beyond 127.0.0.1.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import pwd
import random
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


class BrokerUnavailable(RuntimeError):
    pass


class _PortTaken(BrokerUnavailable):
    """mosquitto could not bind one of its ports (taken after it was picked)."""


_handed_out: set[int] = set()


def _ephemeral_range() -> tuple[int, int]:
    """The ports the system gives outgoing connections (Linux; the usual range elsewhere)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A loopback port nothing listens on, below the system's range for outgoing connections:
    a port picked from that range can be taken, between the pick and the broker's bind (or while
    a broker restarts), as the local port of some client's connection. Never the same port twice
    in one process."""
    low, _high = _ephemeral_range()
    if low > 12000:
        rnd = random.SystemRandom()
        for _ in range(200):
            port = rnd.randrange(10000, low)
            if port not in _handed_out and _bindable(port):
                _handed_out.add(port)
                return port
    while True:  # a system whose outgoing range starts low: any free port
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port


def find_mosquitto() -> str:
    for cand in (shutil.which("mosquitto"), "/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"):
        if cand and os.access(cand, os.X_OK):
            return cand
    raise BrokerUnavailable("mosquitto is not installed. On Debian/Ubuntu run: sudo apt-get install -y mosquitto")


# ----- certificates ---------------------------------------------------------------------------


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Uplink Console test"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def make_key(kind: str = "ec"):
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ec.generate_private_key(ec.SECP256R1())


def make_cert(
    subject_cn: str,
    key,
    issuer_cert: x509.Certificate | None = None,
    issuer_key=None,
    *,
    ca: bool = False,
    dns: tuple[str, ...] = (),
    ips: tuple[str, ...] = (),
    client: bool = False,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    not_before = not_before or now - dt.timedelta(hours=1)
    not_after = not_after or now + dt.timedelta(days=30)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject_cn))
        .issuer_name(issuer_cert.subject if issuer_cert else _name(subject_cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    else:
        usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    sans = [x509.DNSName(d) for d in dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(issuer_key or key, hashes.SHA256())


def write_pem(path: Path, obj, password: str | None = None, *, traditional: bool = False) -> Path:
    if isinstance(obj, x509.Certificate):
        data = obj.public_bytes(serialization.Encoding.PEM)
    else:
        enc = serialization.BestAvailableEncryption(password.encode()) if password else serialization.NoEncryption()
        fmt = serialization.PrivateFormat.TraditionalOpenSSL if traditional else serialization.PrivateFormat.PKCS8
        data = obj.private_bytes(serialization.Encoding.PEM, fmt, enc)
    path.write_bytes(data)
    os.chmod(path, 0o600)
    return path


@dataclass
class Pki:
    """A CA, a server certificate for 'localhost', an expired one, and a client certificate."""

    dir: Path
    ca: Path
    server_cert: Path
    server_key: Path
    expired_cert: Path
    client_cert: Path
    client_key: Path  # unencrypted PKCS#8
    client_key_encrypted: Path  # PKCS#8 encrypted with client_key_password
    client_key_password: str
    other_ca: Path  # a CA that signed nothing here: "wrong CA"
    client_p12: Path


def generate_pki(directory: Path) -> Pki:
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = make_key()
    ca = make_cert("Uplink Console Test CA", ca_key, ca=True)
    other_key = make_key()
    other_ca = make_cert("Some Other CA", other_key, ca=True)
    server_key = make_key()
    server = make_cert("localhost", server_key, ca, ca_key, dns=("localhost",))
    now = dt.datetime.now(dt.UTC)
    expired = make_cert(
        "localhost",
        server_key,
        ca,
        ca_key,
        dns=("localhost",),
        not_before=now - dt.timedelta(days=60),
        not_after=now - dt.timedelta(days=1),
    )
    client_key = make_key("rsa")
    client = make_cert("uplink-console-client", client_key, ca, ca_key, client=True)
    password = "s3cret-key-pass"
    from cryptography.hazmat.primitives.serialization import pkcs12

    p12 = pkcs12.serialize_key_and_certificates(
        b"client", client_key, client, None, serialization.BestAvailableEncryption(password.encode())
    )
    (directory / "client.p12").write_bytes(p12)
    return Pki(
        dir=directory,
        ca=write_pem(directory / "ca.pem", ca),
        server_cert=write_pem(directory / "server.pem", server),
        server_key=write_pem(directory / "server.key", server_key),
        expired_cert=write_pem(directory / "expired.pem", expired),
        client_cert=write_pem(directory / "client.pem", client),
        client_key=write_pem(directory / "client.key", client_key),
        client_key_encrypted=write_pem(directory / "client-encrypted.key", client_key, password),
        client_key_password=password,
        other_ca=write_pem(directory / "other-ca.pem", other_ca),
        client_p12=directory / "client.p12",
    )


# ----- the broker -----------------------------------------------------------------------------


@dataclass
class Ports:
    plain: int
    auth: int
    tls: int
    mtls: int
    ws: int
    wss: int
    expired: int


def lower_priority(pid: int, niceness: int) -> None:
    """Best effort: run process pid at the given niceness (Unix)."""
    if hasattr(os, "setpriority"):
        try:
            os.setpriority(os.PRIO_PROCESS, pid, niceness)
        except OSError:
            pass


class Mosquitto:
    """mosquitto with a plain, a password, a TLS, a client-certificate TLS, a websockets, a
    secure websockets and an expired-certificate listener, MQTT 5 enabled, persistence on."""

    USER = "tester"
    PASSWORD = "correct horse"

    def __init__(self, directory: Path, *, pki: Pki | None = None, full: bool = True, niceness: int = 0) -> None:
        self.dir = Path(directory)
        self.niceness = niceness  # raised for benchmarks, where the broker stands in for a remote one
        self.dir.mkdir(parents=True, exist_ok=True)
        self.binary = find_mosquitto()
        self.full = full
        self.pki = pki if pki is not None or not full else generate_pki(self.dir / "pki")
        self.ports = Ports(*(free_port() for _ in range(7)))
        self.proc: subprocess.Popen | None = None
        self._started = False  # once it ran, its ports stay (clients reconnect to them)
        self.conf = self.dir / "mosquitto.conf"
        self.log = self.dir / "mosquitto.log"
        self._write_config()

    def _write_config(self) -> None:
        p = self.ports
        data = self.dir / "data"
        data.mkdir(exist_ok=True)
        lines = [
            "per_listener_settings true",
            # Started as root, mosquitto would drop to the 'mosquitto' user and lose access to
            # this private directory: stay the user who started it.
            f"user {pwd.getpwuid(os.getuid()).pw_name}",
            "persistence true",
            f"persistence_location {data}/",
            "autosave_interval 1",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "max_queued_messages 0",
            "max_inflight_messages 0",
            "set_tcp_nodelay true",
            f"listener {p.plain} 127.0.0.1",
            "allow_anonymous true",
        ]
        if self.full:
            passwd = self.dir / "passwd"
            passwd.write_text("")
            subprocess.run(
                ["mosquitto_passwd", "-b", str(passwd), self.USER, self.PASSWORD], check=True, capture_output=True
            )
            os.chmod(passwd, 0o600)
            k = self.pki
            tls = [f"cafile {k.ca}", f"certfile {k.server_cert}", f"keyfile {k.server_key}"]
            lines += [
                f"listener {p.auth} 127.0.0.1",
                "allow_anonymous false",
                f"password_file {passwd}",
                f"listener {p.tls} 127.0.0.1",
                "allow_anonymous true",
                *tls,
                f"listener {p.mtls} 127.0.0.1",
                "allow_anonymous true",
                *tls,
                "require_certificate true",
                f"listener {p.ws} 127.0.0.1",
                "protocol websockets",
                "allow_anonymous true",
                f"listener {p.wss} 127.0.0.1",
                "protocol websockets",
                "allow_anonymous true",
                *tls,
                f"listener {p.expired} 127.0.0.1",
                "allow_anonymous true",
                f"cafile {k.ca}",
                f"certfile {k.expired_cert}",
                f"keyfile {k.server_key}",
            ]
        self.conf.write_text("\n".join(lines) + "\n")

    def start(self, timeout: float = 10.0) -> Mosquitto:
        """Starts mosquitto and waits for its listeners. A first start that finds a port taken
        meanwhile moves to other free ports; a restart keeps its ports (clients know them) and
        tries again for a few seconds."""
        if self.proc is not None and self.proc.poll() is None:
            return self
        first = not self._started
        for attempt in range(5):
            try:
                return self._start_once(timeout)
            except _PortTaken:
                if attempt == 4:
                    raise
                if first:
                    self.ports = Ports(*(free_port() for _ in range(7)))
                    self._write_config()
                else:
                    time.sleep(1.0)
        return self

    def _start_once(self, timeout: float) -> Mosquitto:
        logf = open(self.log, "ab")  # noqa: SIM115 - lives as long as the process
        seen = logf.tell()  # what this start writes comes after
        self.proc = subprocess.Popen([self.binary, "-c", str(self.conf)], stdout=logf, stderr=logf)
        logf.close()  # the process has its own copy
        if self.niceness:
            lower_priority(self.proc.pid, self.niceness)
        deadline = time.monotonic() + timeout
        ports = [self.ports.plain] + ([self.ports.auth, self.ports.tls, self.ports.ws] if self.full else [])
        opened = False
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.proc = None
                with open(self.log, "rb") as f:
                    f.seek(seen)
                    tail = f.read().decode(errors="replace")[-2000:]
                if "Address already in use" in tail or "Unable to create" in tail:
                    raise _PortTaken(f"mosquitto found a port taken: {tail}")
                raise BrokerUnavailable(f"mosquitto exited at start: {tail}")
            if opened:  # still running a moment after: the listeners are its own, not another's
                self._started = True
                return self
            opened = all(_port_open(port) for port in ports)
            time.sleep(0.1 if opened else 0.05)
        raise BrokerUnavailable(f"mosquitto did not open its ports: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self, gap: float = 0.0) -> None:
        self.stop()
        time.sleep(gap)
        self.start()

    def __enter__(self) -> Mosquitto:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def url(self, kind: str = "plain", host: str = "localhost") -> str:
        scheme = {
            "plain": "mqtt",
            "auth": "mqtt",
            "tls": "mqtts",
            "mtls": "mqtts",
            "ws": "ws",
            "wss": "wss",
            "expired": "mqtts",
        }[kind]
        return f"{scheme}://{host}:{getattr(self.ports, kind)}"


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0

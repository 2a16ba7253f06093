"""Telemetry against a real mosquitto: over TLS with a password, read back with mosquitto's own
``mosquitto_sub``; a wrong password or a broker that is not there never blocks the vehicle."""

from __future__ import annotations

import datetime
import ipaddress
import json
import subprocess
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from agent.config.schema import Telemetry as TelemetryConfig
from agent.telemetry import Telemetry
from chain.launch import free_port
from sim.mosquitto import Mosquitto

VEHICLE = "0x00000000000000000000000000000000000000aa"
WAIT_S = 60.0


def _cert(subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Name,
          signer: ec.EllipticCurvePrivateKey, ca: bool) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    b = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(
        NameOID.COMMON_NAME, subject)])).issuer_name(issuer).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if not ca:
        b = b.add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
    return b.sign(signer, hashes.SHA256())


def write_pki(folder: Path) -> tuple[Path, Path, Path]:
    """A CA, and a server certificate for 127.0.0.1 that it signed: (ca, cert, key) files."""
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = _cert("swarmdrive test CA", ca_key, x509.Name([x509.NameAttribute(
        NameOID.COMMON_NAME, "swarmdrive test CA")]), ca_key, ca=True)
    cert = _cert("127.0.0.1", key, ca.subject, ca_key, ca=False)
    paths = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


def secret(path: Path, text: str) -> Path:
    path.write_text(text + "\n")
    path.chmod(0o600)
    return path


@pytest.fixture
def tls_broker(tmp_path: Path):
    ca, cert, key = write_pki(tmp_path)
    passwords = tmp_path / "passwords"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwords), "car", "s3cret"],
                   check=True, capture_output=True)
    broker = Mosquitto(tmp_path / "broker", listener=(
        f"cafile {ca}\ncertfile {cert}\nkeyfile {key}\n"
        f"allow_anonymous false\npassword_file {passwords}"))
    with broker:
        yield broker, ca


def test_status_reaches_a_tls_broker_with_a_password(tls_broker, tmp_path):
    broker, ca = tls_broker
    sub = subprocess.Popen(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(broker.port),
                            "--cafile", str(ca), "-u", "car", "-P", "s3cret",
                            "-t", "swarmdrive/#", "-v", "-C", "2", "-W", str(int(WAIT_S))],
                           stdout=subprocess.PIPE, text=True)
    cfg = TelemetryConfig(host="127.0.0.1", port=broker.port, tls=True, ca_file=ca,
                          username_file=secret(tmp_path / "user", "car"),
                          password_file=secret(tmp_path / "pass", "s3cret"))
    t = Telemetry(cfg, VEHICLE, {"software": "test"})
    t.start()  # both messages are retained: mosquitto_sub gets them whenever it subscribes
    try:
        assert t.connected.wait(WAIT_S)
        assert t.publish("status", {"round": 7}, retain=True)
        out, _ = sub.communicate(timeout=WAIT_S)
    finally:
        t.stop()
    lines = dict(line.split(" ", 1) for line in out.strip().splitlines())
    birth = json.loads(lines[f"swarmdrive/v1/{VEHICLE}/state"])
    assert birth["online"] is True and birth["software"] == "test" and birth["v"] == 1
    assert json.loads(lines[f"swarmdrive/v1/{VEHICLE}/status"])["round"] == 7


def test_a_refused_or_absent_broker_never_blocks_the_vehicle(tls_broker, tmp_path):
    broker, ca = tls_broker
    wrong = TelemetryConfig(host="127.0.0.1", port=broker.port, tls=True, ca_file=ca,
                            username_file=secret(tmp_path / "user", "car"),
                            password_file=secret(tmp_path / "pass", "wrong"), queue_limit=5)
    absent = TelemetryConfig(host="127.0.0.1", port=free_port(), tls=False, queue_limit=5)
    for cfg in (wrong, absent):
        t = Telemetry(cfg, VEHICLE, {})
        sent: list[bool] = []

        def vehicle(t: Telemetry = t, sent: list[bool] = sent) -> None:
            t.start()
            sent.extend(t.publish("status", {"n": i}) for i in range(8))
            t.stop()

        caller = threading.Thread(target=vehicle)
        caller.start()
        caller.join(WAIT_S)  # a hang guard: nothing here waits for the broker
        assert not caller.is_alive()
        assert not t.connected.is_set()
        assert sent.count(False) == t.dropped >= 3  # the queue is bounded; drops are counted

"""Workstation side of enrolment: keyring refusals, inputs, the private-key file, the `fedxray` commands.

The full enrolment against a running central is in tests/central/test_central_e2e.py.
"""

from __future__ import annotations

import dataclasses
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import keyring
import pytest
from keyring.backend import KeyringBackend

from app.core import central_client, enrollment, keystore
from app.core.enrollment import Enrollment, EnrollmentError
from app.core.keystore import KeyringUnavailableError, SecretStore
from central import pki
from tests.support import keyring_session

FEDXRAY = str(Path(sys.executable).parent / "fedxray")
TOKEN = "fxe1." + "A" * 22 + "." + "B" * 43
secret_service = keyring_session.secret_service  # the real Secret Service fixture (tests/support)


def run_fedxray(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in ("DBUS_SESSION_BUS_ADDRESS", "PYTHON_KEYRING_BACKEND")}
    base.update(XDG_CONFIG_HOME=str(tmp_path / "config"), XDG_DATA_HOME=str(tmp_path / "data"), **env)
    return subprocess.run([FEDXRAY, *args], capture_output=True, text=True, env=base, timeout=60)


@pytest.fixture
def xdg(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    return tmp_path


# ---------------------------------------------------------------- no secure keyring: refuse, change nothing
@pytest.mark.parametrize("env", [{"PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring"},
                                 {"DBUS_SESSION_BUS_ADDRESS": "unix:path=/nonexistent/bus"}],
                         ids=["fail-backend", "no-dbus-session"])  # fmt: skip
def test_enroll_without_a_keyring_stops_before_contacting_the_central(tmp_path, env):
    # The central address is a closed port: the refusal must come from the keyring check, which runs first.
    result = run_fedxray(tmp_path, "enroll", "--central", "https://127.0.0.1:9", "--token", TOKEN, **env)
    assert result.returncode == 1
    assert "keyring" in result.stderr and "never in a plain file" in result.stderr
    assert "Nothing was changed" in result.stderr
    assert "Could not reach" not in result.stderr
    assert not (tmp_path / "config" / "fedxray" / "central").exists()


def _backend(module: str, name: str) -> KeyringBackend:
    cls = type(name, (KeyringBackend,), {"priority": 1, "get_password": lambda *a: None,
                                         "set_password": lambda *a: None, "delete_password": lambda *a: None})
    cls.__module__ = module
    return cls()


@pytest.mark.parametrize("module,name", [("keyrings.alt.file", "PlaintextKeyring"),
                                         ("keyrings.alt.file", "EncryptedKeyring"),
                                         ("keyrings.alt.Gnome", "Keyring"),
                                         ("keyring.backends.fail", "Keyring"),
                                         ("keyring.backends.null", "Keyring")])  # fmt: skip
def test_file_fallbacks_and_null_backends_are_refused(monkeypatch, module, name):
    monkeypatch.setattr(keyring, "get_keyring", lambda: _backend(module, name))
    with pytest.raises(KeyringUnavailableError, match="keyring"):
        keystore.secure_backend()


def test_a_chain_whose_first_backend_is_a_file_fallback_is_refused(monkeypatch):
    secure = _backend("keyring.backends.SecretService", "Keyring")
    chain = type("ChainerBackend", (), {"backends": [_backend("keyrings.alt.file", "PlaintextKeyring"), secure]})()
    monkeypatch.setattr(keyring, "get_keyring", lambda: chain)
    with pytest.raises(KeyringUnavailableError, match="PlaintextKeyring"):
        keystore.secure_backend()
    chain.backends = [secure, _backend("keyrings.alt.file", "PlaintextKeyring")]
    assert keystore.secure_backend() is secure  # secrets go to the secure one only, never down the chain


# ---------------------------------------------------------------- inputs
def test_central_address_fingerprint_and_token_are_checked():
    assert central_client.normalize_central_url("central.example.org:8443/") == "https://central.example.org:8443"
    assert central_client.normalize_central_url(" https://10.0.0.5:8443 ") == "https://10.0.0.5:8443"
    with pytest.raises(EnrollmentError, match="HTTPS"):
        central_client.normalize_central_url("http://central:8443")
    fp = "0123456789abcdef" * 4
    assert central_client.normalize_fingerprint(":".join(fp[i:i + 2] for i in range(0, 64, 2)).upper()) == fp
    with pytest.raises(EnrollmentError, match="64 hex"):
        central_client.normalize_fingerprint("ab:cd")
    assert central_client.token_ca_pin(TOKEN) == bytes([0] * 16).hex()  # "A" * 22 decodes to zero bytes
    for bad in ("", "abc", TOKEN[:-1], TOKEN.replace("fxe1", "fxe9")):
        with pytest.raises(EnrollmentError, match="enrolment token"):
            central_client.token_ca_pin(bad)


def test_only_a_ca_certificate_is_accepted(tmp_path):
    pki.create_ca(key_path=tmp_path / "ca.key", cert_path=tmp_path / "ca.crt")
    pki.create_server_cert(ca_key_path=tmp_path / "ca.key", ca_cert_path=tmp_path / "ca.crt",
                           key_path=tmp_path / "s.key", cert_path=tmp_path / "s.crt", sans=["localhost"])
    ca_pem = (tmp_path / "ca.crt").read_text()
    assert central_client.cert_fingerprint(ca_pem) == pki.fingerprint(ca_pem.encode())
    for bad in ((tmp_path / "s.crt").read_text(), "not a certificate"):
        with pytest.raises(EnrollmentError, match="not a CA certificate"):
            central_client.cert_fingerprint(bad)


def test_new_node_keys_are_openssh_p384():
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    private, public = central_client.new_node_key()
    key = serialization.load_ssh_private_key(private.encode(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp384r1"
    assert public.startswith("ecdsa-sha2-nistp384 ")
    assert serialization.load_ssh_public_key(public.encode()).public_numbers() == key.public_key().public_numbers()


# ---------------------------------------------------------------- with a real Secret Service
@pytest.fixture
def store(secret_service) -> SecretStore:
    from keyring.backends.SecretService import Keyring

    return SecretStore(Keyring())


def _fake_enrollment(keyring_id: str) -> Enrollment:
    return Enrollment(central_url="https://127.0.0.1:9", node_id=42, site="Test", superlink_address="127.0.0.1:9",
                      ca_fingerprint="0" * 64, enrolled_at="2026-01-01T00:00:00Z", keyring_id=keyring_id)


def test_the_private_key_leaves_the_keyring_only_for_a_private_temporary_file(store, xdg):
    store.check()
    enrollment_ = _fake_enrollment("t1")
    private, _ = central_client.new_node_key()
    store.set(enrollment_.private_key_name, private)
    try:
        with enrollment.private_key_file(enrollment_, store) as path:
            assert path.read_text() == private
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
            assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        assert not path.exists() and not path.parent.exists()
    finally:
        assert store.delete(enrollment_.private_key_name) is True
    assert store.get(enrollment_.private_key_name) is None
    with pytest.raises(EnrollmentError, match="missing from the keyring"), \
            enrollment.private_key_file(enrollment_, store):  # fmt: skip
        pass


def test_enrolling_twice_and_leaving_when_not_enrolled_are_refused(xdg):
    assert enrollment.load_enrollment() is None
    with pytest.raises(EnrollmentError, match="not enrolled"):
        enrollment.leave()
    folder = enrollment.enrollment_dir()
    folder.mkdir(parents=True)
    (folder / "enrollment.json").write_text(json.dumps(dataclasses.asdict(_fake_enrollment("t2"))))
    with pytest.raises(EnrollmentError, match="already enrolled"):
        enrollment.enroll(central_url="https://127.0.0.1:9", token=TOKEN)
    (folder / "enrollment.json").write_text("{damaged")
    with pytest.raises(EnrollmentError, match="damaged"):
        enrollment.load_enrollment()


def test_leave_keeps_everything_when_the_central_cannot_be_told_unless_forced(xdg, store):
    enrollment_ = _fake_enrollment("t3")
    folder = enrollment.enrollment_dir()
    folder.mkdir(parents=True)
    (folder / "enrollment.json").write_text(json.dumps(dataclasses.asdict(enrollment_)))
    pki.create_ca(key_path=xdg / "ca.key", cert_path=enrollment_.ca_cert_path)
    store.set(enrollment_.private_key_name, "KEY")
    store.set(enrollment_.credential_name, "fxw_secret")
    with pytest.raises(EnrollmentError, match="Nothing was removed"):
        enrollment.leave()  # the central (a closed port) cannot be told
    assert store.get(enrollment_.credential_name) == "fxw_secret" and folder.exists()
    result = enrollment.leave(force=True)
    assert result.central_told is False and "nodes revoke 42" in result.message
    assert store.get(enrollment_.private_key_name) is None and store.get(enrollment_.credential_name) is None
    assert not folder.exists()


def test_fedxray_enroll_command_line(tmp_path):
    usage = run_fedxray(tmp_path, "enroll")
    assert usage.returncode == 2 and "--central and --token are required" in usage.stderr
    status = run_fedxray(tmp_path, "enroll", "--status")
    assert status.returncode == 1 and "not enrolled" in status.stdout
    assert json.loads(run_fedxray(tmp_path, "enroll", "--status", "--json").stdout) == {"enrolled": False}
    leave = run_fedxray(tmp_path, "leave")
    assert leave.returncode == 1 and "not enrolled" in leave.stderr

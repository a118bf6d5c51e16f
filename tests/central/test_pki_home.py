"""The central's home: certificates, keys, credentials, the serve lock, settings and token format."""

from __future__ import annotations

import hashlib
import ipaddress
import stat

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from central import pki
from central.home import CentralHome, HomeError, ServeLock, initialize, resolve_home
from central.security import (
    PublicKeyError,
    format_fingerprint,
    new_enrollment_token,
    node_public_key_pem,
    normalize_fingerprint,
    parse_enrollment_token,
)
from central.settings import Settings, SettingsError, resolve_database_url


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_first_start_creates_ca_server_cert_signing_key_and_private_credentials(tmp_path):
    home = CentralHome(tmp_path / "home")
    created = initialize(home, sans=["central.example.org", "10.1.2.3", "localhost", "127.0.0.1"])

    assert len(created) == 5
    for secret in (home.ca_key, home.server_key, home.signing_key, home.admin_credential, home.service_credential):
        assert _mode(secret) == 0o600, secret
    assert _mode(home.root) == 0o700
    ca = x509.load_pem_x509_certificate(home.ca_cert.read_bytes())
    server = x509.load_pem_x509_certificate(home.server_cert.read_bytes())
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    assert server.issuer == ca.subject
    ca.public_key().verify(server.signature, server.tbs_certificate_bytes, ec.ECDSA(server.signature_hash_algorithm))
    sans = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(sans.get_values_for_type(x509.DNSName)) == {"central.example.org", "localhost"}
    assert set(sans.get_values_for_type(x509.IPAddress)) == {ipaddress.ip_address("10.1.2.3"),
                                                             ipaddress.ip_address("127.0.0.1")}
    # Fingerprint = SHA-256 over the DER certificate, computed here independently.
    assert home.ca_fingerprint() == hashlib.sha256(ca.public_bytes(serialization.Encoding.DER)).hexdigest()
    signing = serialization.load_pem_private_key(home.signing_key.read_bytes(), None)
    assert isinstance(signing, ed25519.Ed25519PrivateKey)
    admin = home.read_credential("admin")
    assert admin.startswith("fxa_") and len(admin) > 40 and admin != home.read_credential("service")


def test_second_initialize_keeps_everything(tmp_path):
    home = CentralHome(tmp_path / "home")
    initialize(home, sans=["localhost"])
    before = {p: p.read_bytes() for p in (home.ca_cert, home.server_cert, home.signing_key, home.admin_credential)}
    assert initialize(home, sans=["other"]) == []
    assert {p: p.read_bytes() for p in before} == before


def test_serve_lock_refuses_a_second_holder(tmp_path):
    home = CentralHome(tmp_path)
    with ServeLock(home), pytest.raises(HomeError, match="already using"):
        ServeLock(home).acquire()
    with ServeLock(home):  # released on exit
        pass


def test_home_comes_from_argument_or_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("FEDXRAY_CENTRAL_HOME", raising=False)
    with pytest.raises(HomeError, match="--home"):
        resolve_home(None)
    monkeypatch.setenv("FEDXRAY_CENTRAL_HOME", str(tmp_path / "env"))
    assert resolve_home(None).root == (tmp_path / "env").resolve()
    assert resolve_home(tmp_path / "arg").root == (tmp_path / "arg").resolve()


def test_settings_refuse_unsafe_or_inconsistent_values(tmp_path, monkeypatch):
    monkeypatch.delenv("FEDXRAY_CENTRAL_DATABASE_URL", raising=False)
    home = CentralHome(tmp_path)
    url = resolve_database_url(home, None)
    assert url == f"sqlite:///{tmp_path / 'central.db'}"
    with pytest.raises(SettingsError, match="differ"):
        Settings(home=home, database_url=url, port=9000, superlink_port=9000)
    with pytest.raises(SettingsError, match="IP address"):
        Settings(home=home, database_url=url, host="central.example.org")
    from central.db.engine import DatabaseURLError

    for bad in ("mysql://u:p@h/db", "sqlite://", "not a url"):
        with pytest.raises(DatabaseURLError):
            resolve_database_url(home, bad)
    # A home started on PostgreSQL never falls back silently to an empty SQLite file (and vice versa).
    home.write_settings({"database": "postgresql+psycopg://fx:***@db/fedxray"})
    with pytest.raises(SettingsError, match="postgresql"):
        resolve_database_url(home, None)
    assert resolve_database_url(home, "postgresql://fx:secret@db/fedxray").startswith("postgresql+psycopg://")
    home.write_settings({"database": "sqlite:central.db (in the home)"})
    with pytest.raises(SettingsError, match="drop --database-url"):
        resolve_database_url(home, "postgresql://fx:secret@db/fedxray")


def test_enrollment_token_carries_a_ca_pin():
    fp = hashlib.sha256(b"some ca").hexdigest()
    token = new_enrollment_token(fp)
    parsed = parse_enrollment_token(token)
    assert parsed is not None and parsed.ca_pin_hex == fp[:32]
    assert new_enrollment_token(fp) != token
    for bad in ("", "fxe1.abc.def", token + "x", token.replace("fxe1", "fxe2")):
        assert parse_enrollment_token(bad) is None
    assert normalize_fingerprint(format_fingerprint(fp)) == fp
    assert normalize_fingerprint("SHA256:" + fp.upper()) == fp
    assert normalize_fingerprint("12:34") is None


def test_node_public_keys_must_be_nist_ecdsa():
    key = ec.generate_private_key(ec.SECP384R1())
    openssh = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    pem = node_public_key_pem(openssh.decode())
    assert serialization.load_pem_public_key(pem.encode()).public_numbers() == key.public_key().public_numbers()
    ed = ed25519.Ed25519PrivateKey.generate().public_key()
    for bad in (ed.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode(),
                "ecdsa-sha2-nistp384 AAAAnotbase64", "", "-----BEGIN PUBLIC KEY-----"):
        with pytest.raises(PublicKeyError):
            node_public_key_pem(bad)


def test_server_certificate_reissued_for_new_names_keeps_the_ca(tmp_path):
    from central.server import prepare_home

    home = CentralHome(tmp_path / "home")
    prepare_home(home, sans=None, default_sans=["localhost", "127.0.0.1"])
    ca_before = home.ca_cert.read_bytes()
    created = prepare_home(home, sans=["central.example.org", "localhost", "127.0.0.1"], default_sans=[])
    assert any("re-issued" in c for c in created)
    assert home.ca_cert.read_bytes() == ca_before
    assert "central.example.org" in pki.certificate_sans(home.server_cert)

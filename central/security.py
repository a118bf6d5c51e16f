"""Secrets of the central: credentials, enrolment tokens, public-key fingerprints."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

TOKEN_PREFIX = "fxe1"
_TOKEN_RE = re.compile(r"^fxe1\.([A-Za-z0-9_-]{22})\.([A-Za-z0-9_-]{43})$")
NIST_CURVES = (ec.SECP256R1, ec.SECP384R1, ec.SECP521R1)


def hash_secret(secret: str) -> str:
    """SHA-256 (hex) of a high-entropy secret; what the store keeps instead of the secret."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def new_credential(role: str) -> str:
    """A fresh API bearer credential (256 bits), e.g. `fxw_…` for a workstation."""
    prefix = {"admin": "fxa", "service": "fxs", "workstation": "fxw"}[role]
    return f"{prefix}_{secrets.token_urlsafe(32)}"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def new_enrollment_token(ca_fingerprint_hex: str) -> str:
    """A one-time token `fxe1.<CA pin>.<secret>`; the pin (first 128 bits of the CA's SHA-256) lets the
    workstation check the central's certificate even when IT does not pass the full fingerprint."""
    pin = bytes.fromhex(ca_fingerprint_hex)[:16]
    return f"{TOKEN_PREFIX}.{_b64(pin)}.{secrets.token_urlsafe(32)}"


@dataclass(frozen=True)
class ParsedToken:
    """The parts of an enrolment token."""

    ca_pin_hex: str
    token: str


def parse_enrollment_token(token: str) -> ParsedToken | None:
    """Split a token into its CA pin and full text; None when it is not a FedXray enrolment token."""
    match = _TOKEN_RE.match(token.strip())
    if not match:
        return None
    pin = base64.urlsafe_b64decode(match.group(1) + "==")
    return ParsedToken(ca_pin_hex=pin.hex(), token=token.strip())


def normalize_fingerprint(text: str) -> str | None:
    """`AB:CD:…` / `abcd…` / `SHA256:abcd…` → 64 lowercase hex digits, or None when malformed."""
    cleaned = text.strip().lower()
    cleaned = cleaned.removeprefix("sha256:").removeprefix("sha-256:")
    cleaned = cleaned.replace(":", "").replace(" ", "")
    if re.fullmatch(r"[0-9a-f]{64}", cleaned):
        return cleaned
    return None


def format_fingerprint(hex64: str) -> str:
    """64 hex digits as `AB:CD:…` (how certificate fingerprints are usually shown)."""
    return ":".join(hex64[i : i + 2] for i in range(0, len(hex64), 2)).upper()


def same_secret(a: str, b: str) -> bool:
    """Constant-time comparison."""
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


class PublicKeyError(ValueError):
    """A workstation's public key that Flower's node authentication would not accept."""


def node_public_key_pem(openssh_public_key: str) -> str:
    """OpenSSH EC public key → PEM SubjectPublicKeyInfo (the form Flower's SuperLink stores)."""
    try:
        key = serialization.load_ssh_public_key(openssh_public_key.strip().encode("ascii"))
    except (ValueError, UnsupportedAlgorithm, UnicodeEncodeError) as exc:
        raise PublicKeyError("public_key is not an OpenSSH public key (e.g. 'ecdsa-sha2-nistp384 AAAA…')") from exc
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, NIST_CURVES):
        raise PublicKeyError("public_key must be an ECDSA key on a NIST curve (P-256, P-384 or P-521)")
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


def public_key_sha256(pem: str | bytes) -> str:
    """SHA-256 (hex) of a PEM public key's DER bytes: the key's stable identity."""
    data = pem.encode("ascii") if isinstance(pem, str) else pem
    key = serialization.load_pem_public_key(data)
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()

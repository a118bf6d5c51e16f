"""Talking to a FedXray central before and after enrolment: addresses, CA pinning, HTTPS errors, node keys."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import tempfile
import warnings
from collections.abc import Iterator
from urllib.parse import urlsplit

import requests
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from app.core.errors import AppError

TIMEOUT = 30.0


class EnrollmentError(AppError):
    """Enrolment, status or leaving failed; the message says what to do."""


def normalize_central_url(url: str) -> str:
    """`host:port` or `https://host:port[/]` → `https://host:port`; plain HTTP is refused."""
    url = url.strip().rstrip("/")
    if "://" not in url:
        url = "https://" + url
    parts = urlsplit(url)
    if parts.scheme != "https":
        raise EnrollmentError(f"The central address must use HTTPS (https://…), not {parts.scheme}://.")
    if not parts.hostname:
        raise EnrollmentError(f"{url!r} is not a central address; expected e.g. https://central.hospital.org:8443")
    return f"https://{parts.netloc}"


def normalize_fingerprint(text: str) -> str:
    """`AB:CD:…`, `abcd…` or `SHA256:…` → 64 lowercase hex digits."""
    cleaned = text.strip().lower().removeprefix("sha256:").removeprefix("sha-256:")
    cleaned = cleaned.replace(":", "").replace(" ", "")
    if len(cleaned) != 64 or any(c not in "0123456789abcdef" for c in cleaned):
        raise EnrollmentError(
            "--ca-fingerprint must be the SHA-256 fingerprint IT gave you (64 hex digits, colons allowed)."
        )
    return cleaned


def token_ca_pin(token: str) -> str:
    """The CA pin inside a token `fxe1.<pin>.<secret>` (first 128 bits of the CA fingerprint, hex)."""
    parts = token.strip().split(".")
    if len(parts) != 3 or parts[0] != "fxe1" or len(parts[1]) != 22 or len(parts[2]) != 43:
        raise EnrollmentError(
            "This does not look like a FedXray enrolment token (it starts with 'fxe1.'): copy it whole from IT."
        )
    try:
        return base64.urlsafe_b64decode(parts[1] + "==").hex()
    except ValueError as exc:
        raise EnrollmentError("The enrolment token is damaged: copy it whole from IT.") from exc


def cert_fingerprint(pem: str) -> str:
    """SHA-256 of a PEM certificate's DER bytes (hex); refuses anything but a CA certificate."""
    try:
        cert = x509.load_pem_x509_certificate(pem.encode("ascii"))
        ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except (ValueError, x509.ExtensionNotFound, UnicodeEncodeError) as exc:
        raise EnrollmentError("The central sent something that is not a CA certificate.") from exc
    if not ca:
        raise EnrollmentError("The central sent something that is not a CA certificate.")
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def detail(response: requests.Response) -> str:
    try:
        detail = response.json().get("detail")
    except ValueError:
        detail = None
    if isinstance(detail, list):  # validation errors
        detail = "; ".join(f"{'.'.join(map(str, d.get('loc', [])))}: {d.get('msg')}" for d in detail)
    return str(detail or response.reason or response.status_code)


def network_error(central: str, exc: requests.RequestException) -> EnrollmentError:
    if isinstance(exc, requests.exceptions.SSLError):
        text = str(exc)
        if "match" in text or "hostname" in text.lower():
            host = urlsplit(central).hostname
            return EnrollmentError(
                f"The central's certificate does not name {host!r}. Use the address IT gave you, or ask IT to "
                f"restart the central with `--san {host}`. Nothing was changed."
            )
        return EnrollmentError(
            f"The central at {central} did not prove its identity with the expected certificate ({text[:160]}). "
            "Nothing was changed."
        )
    return EnrollmentError(
        f"Could not reach the central at {central} ({type(exc).__name__}). Check the address and the network. "
        "Nothing was changed."
    )


def fetch_ca(central: str, *, timeout: float = TIMEOUT) -> str:
    """The central's CA certificate, fetched before trusting it (the caller checks its fingerprint)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # unverified on purpose: the fingerprint check follows
        try:
            response = requests.get(f"{central}/api/v1/enrollment/ca", verify=False, timeout=timeout)
        except requests.RequestException as exc:
            raise network_error(central, exc) from exc
    if response.status_code != 200:
        raise EnrollmentError(f"{central} is not a FedXray central (HTTP {response.status_code} for its CA).")
    try:
        return response.json()["ca_certificate"]
    except (ValueError, KeyError, TypeError) as exc:
        raise EnrollmentError(f"{central} is not a FedXray central (no CA certificate in its answer).") from exc


def new_node_key() -> tuple[str, str]:
    """A fresh ECDSA P-384 key pair in OpenSSH format (what Flower's node authentication takes)."""
    key = ec.generate_private_key(ec.SECP384R1())
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    ).decode("ascii")
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return private, public.decode("ascii")


@contextlib.contextmanager
def ca_file(ca_pem: str) -> Iterator[str]:
    """A temporary file holding a (public) CA certificate, for `requests`' verify=."""
    with tempfile.NamedTemporaryFile("w", suffix=".pem", delete=False) as fh:
        fh.write(ca_pem)
    try:
        yield fh.name
    finally:
        os.unlink(fh.name)

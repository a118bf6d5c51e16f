"""The workstation's one client of its FedXray central: probe an address, redeem a token, authenticated calls.

Used by enrolment (app.core.enrollment), model updates (app.core.model_update), the federation agent and the
`fedxray` commands. The desktop app calls it on worker threads (every call may block for up to TIMEOUT seconds).

Public API (plain data, no Qt):
- `probe(url) -> Probe`: before trusting anything: the central's CA fingerprint (also in readable groups for IT
  to read out by phone), its clock against ours (from the HTTP `Date` header), whether it answers at all.
- `CentralClient(enrollment)`: `.get(path)`, `.post(path, json=...)`, `.workstation()` (the enrolment as the
  central sees it), `.probe()`; the credential comes from the keyring, HTTPS is checked against the pinned CA.
- `redeem(url, ca_pem, token=..., public_key=..., hostname=...)`: the enrolment call itself.
- Every failure is an `EnrollmentError` subclass whose message says what to do: `CentralUnreachableError`,
  `NotACentralError`, `FingerprintMismatchError`, `TokenRefusedError` (`.reason`: unknown/used/expired/revoked),
  `ClockSkewError` (`.offset`), `CredentialRefusedError` (the enrolment ended at the central), and
  `app.core.keystore.KeyringUnavailableError` for a locked or missing keyring.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import requests
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from app.core.errors import AppError

if TYPE_CHECKING:
    from app.core.enrollment import Enrollment
    from app.core.keystore import SecretStore

TIMEOUT = 30.0
PROBE_TIMEOUT = 10.0
# Flower's node authentication (flwr.common.constant, SuperLink side): a request signed at local time T is
# accepted while -SYSTEM_TIME_TOLERANCE < central_now - T < TIMESTAMP_TOLERANCE + SYSTEM_TIME_TOLERANCE, i.e. this
# clock may be at most 5 s ahead of the central's and at most 305 s behind it. Checked in clock_verdict().
FLOWER_AHEAD_LIMIT = 5.0
FLOWER_BEHIND_LIMIT = 305.0


class EnrollmentError(AppError):
    """Enrolment, status, leaving or a call to the central failed; the message says what to do."""


class CentralUnreachableError(EnrollmentError):
    """The central did not answer (address, network, firewall, or it is down)."""


class NotACentralError(EnrollmentError):
    """Something answered at that address, but not a FedXray central (or not one this version understands)."""


class FingerprintMismatchError(EnrollmentError):
    """The central's CA is not the one IT announced: possible interception; nothing was changed."""


class TokenRefusedError(EnrollmentError):
    """The central refused the enrolment token; `.reason` is unknown, used, expired or revoked."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class ClockSkewError(EnrollmentError):
    """This computer's clock is too far from the central's for Flower's node authentication; `.offset` in
    seconds (positive: the central is ahead of this computer)."""

    def __init__(self, message: str, offset: float) -> None:
        super().__init__(message)
        self.offset = offset


class CredentialRefusedError(EnrollmentError):
    """The central no longer accepts this workstation's credential (revoked, or the workstation left)."""


# ---------------------------------------------------------------- addresses, tokens, certificates


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
    """`AB:CD:…`, `abcd…`, `ABCD EF01 …` or `SHA256:…` → 64 lowercase hex digits."""
    cleaned = text.strip().lower().removeprefix("sha256:").removeprefix("sha-256:")
    cleaned = "".join(cleaned.replace(":", "").split())
    if len(cleaned) != 64 or any(c not in "0123456789abcdef" for c in cleaned):
        raise EnrollmentError(
            "--ca-fingerprint must be the SHA-256 fingerprint IT gave you (64 hex digits, colons allowed)."
        )
    return cleaned


def readable_fingerprint(fingerprint: str) -> str:
    """The fingerprint as the central's dashboard shows it, for reading out by phone (fl.fingerprints.readable)."""
    from fl.fingerprints import readable

    return readable(normalize_fingerprint(fingerprint))


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
        raise NotACentralError("The central sent something that is not a CA certificate.") from exc
    if not ca:
        raise NotACentralError("The central sent something that is not a CA certificate.")
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def detail(response: requests.Response) -> str:
    """The central's error `detail` (FastAPI), or the HTTP reason."""
    try:
        body = response.json()
        found = body.get("detail") if isinstance(body, dict) else None
    except ValueError:
        found = None
    if isinstance(found, list):  # validation errors
        found = "; ".join(f"{'.'.join(map(str, d.get('loc', [])))}: {d.get('msg')}" for d in found)
    return str(found or response.reason or response.status_code)


def network_error(central: str, exc: requests.RequestException) -> EnrollmentError:
    """The clear error for a request that got no HTTP answer (TLS identity or the network)."""
    if isinstance(exc, requests.exceptions.SSLError):
        text = str(exc)
        if "match" in text or "hostname" in text.lower():
            host = urlsplit(central).hostname
            return EnrollmentError(
                f"The central's certificate does not name {host!r}. Use the address IT gave you, or ask IT to "
                f"restart the central with `--san {host}`. Nothing was changed."
            )
        if "not yet valid" in text or "expired" in text:
            return EnrollmentError(
                f"The central's certificate is not valid at this computer's time ({text[:160]}): check this "
                "computer's date and time (it should be set automatically from the network). Nothing was changed."
            )
        return EnrollmentError(
            f"The central at {central} did not prove its identity with the expected certificate ({text[:160]}). "
            "Nothing was changed."
        )
    return CentralUnreachableError(
        f"Could not reach the central at {central} ({type(exc).__name__}). Check the address and the network, "
        "or ask IT whether the central is running. Nothing was changed."
    )


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


# ---------------------------------------------------------------- the clock


@dataclass(frozen=True)
class ClockCheck:
    """This computer's clock against the central's. `offset`: seconds the central is ahead (negative: this
    computer is ahead); `uncertainty`: ± seconds (the Date header has 1 s resolution, plus the round trip)."""

    offset: float
    uncertainty: float
    level: str  # "ok" | "warn" | "fail"
    message: str


def clock_offset(date_header: str | None, sent: float, received: float) -> tuple[float, float] | None:
    """(offset, uncertainty) from an HTTP `Date` header and the local times (time.time()) the request was sent
    and its answer received; None without a usable header."""
    if not date_header:
        return None
    try:
        central = parsedate_to_datetime(date_header).timestamp() + 0.5  # the header truncates to the second
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    local = (sent + received) / 2
    return central - local, 0.5 + (received - sent) / 2


def clock_verdict(offset: float, uncertainty: float = 0.0) -> ClockCheck:
    """Whether Flower's node authentication will accept this computer's signed timestamps (limits above)."""
    ahead = -offset  # seconds this computer is ahead of the central
    fix = ("Set this computer's date and time automatically (network time), or ask IT to fix it; Flower's node "
           "authentication refuses a workstation whose clock is more than 5 seconds ahead of the central's or "
           "5 minutes behind.")  # fmt: skip
    if ahead - uncertainty > FLOWER_AHEAD_LIMIT:
        return ClockCheck(offset, uncertainty, "fail", f"This computer's clock is {_span(ahead)} ahead of the "
                          f"central's. {fix}")  # fmt: skip
    if -ahead - uncertainty > FLOWER_BEHIND_LIMIT:
        return ClockCheck(offset, uncertainty, "fail", f"This computer's clock is {_span(-ahead)} behind the "
                          f"central's. {fix}")  # fmt: skip
    if ahead + uncertainty > FLOWER_AHEAD_LIMIT - 2 or -ahead + uncertainty > FLOWER_BEHIND_LIMIT - 60:
        side = "ahead of" if ahead > 0 else "behind"
        return ClockCheck(offset, uncertainty, "warn", f"This computer's clock is {_span(abs(ahead))} {side} the "
                          f"central's, close to the limit. {fix}")  # fmt: skip
    return ClockCheck(offset, uncertainty, "ok", f"In step with the central (within {abs(offset) + uncertainty:.0f} s).")


def _span(seconds: float) -> str:
    seconds = abs(seconds)
    if seconds < 120:
        return f"{seconds:.0f} seconds"
    if seconds < 7200:
        return f"{seconds / 60:.0f} minutes"
    return f"{seconds / 3600:.1f} hours"


# ---------------------------------------------------------------- probing an address


@dataclass(frozen=True)
class Probe:
    """What an address answered before anything is trusted."""

    url: str  # normalised https://host:port
    ca_pem: str
    ca_fingerprint: str  # 64 hex digits
    clock: ClockCheck | None  # None when the central sent no Date header
    latency: float  # seconds for the CA request

    @property
    def fingerprint_groups(self) -> str:
        """The fingerprint as IT reads it out (readable_fingerprint)."""
        return readable_fingerprint(self.ca_fingerprint)

    def require_clock(self) -> None:
        """Raise ClockSkewError when the clock check failed."""
        if self.clock is not None and self.clock.level == "fail":
            raise ClockSkewError(self.clock.message, self.clock.offset)


def probe(url: str, *, timeout: float = PROBE_TIMEOUT) -> Probe:
    """Fetch the central's CA certificate without trusting it yet (the caller compares its fingerprint) and
    compare clocks. Raises CentralUnreachableError, NotACentralError, or EnrollmentError for a bad address."""
    central = normalize_central_url(url)
    sent = time.time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # unverified on purpose: the fingerprint check follows
        try:
            response = requests.get(f"{central}/api/v1/enrollment/ca", verify=False, timeout=timeout)
        except requests.RequestException as exc:
            raise network_error(central, exc) from exc
    received = time.time()
    if response.status_code != 200:
        raise NotACentralError(f"{central} is not a FedXray central (HTTP {response.status_code} for its CA). "
                               "Check the address IT gave you.")  # fmt: skip
    try:
        ca_pem = response.json()["ca_certificate"]
    except (ValueError, KeyError, TypeError) as exc:
        raise NotACentralError(f"{central} is not a FedXray central (no CA certificate in its answer).") from exc
    measured = clock_offset(response.headers.get("Date"), sent, received)
    clock = clock_verdict(*measured) if measured else None
    return Probe(url=central, ca_pem=ca_pem, ca_fingerprint=cert_fingerprint(ca_pem), clock=clock,
                 latency=received - sent)  # fmt: skip


def fetch_ca(central: str, *, timeout: float = TIMEOUT) -> str:
    """The central's CA certificate, fetched before trusting it (the caller checks its fingerprint)."""
    return probe(central, timeout=timeout).ca_pem


def check_pin(probed: Probe, *, expected: str | None, token_pin: str | None) -> None:
    """Raise FingerprintMismatchError unless the probed CA is the one IT announced (full fingerprint and/or the
    pin inside the token)."""
    actual = probed.ca_fingerprint
    if (expected is not None and actual != normalize_fingerprint(expected)) or (
        token_pin is not None and not actual.startswith(token_pin)
    ):
        raise FingerprintMismatchError(
            f"The central at {probed.url} presented a CA certificate with fingerprint\n{readable_fingerprint(actual)}\n"
            "which is not the one IT gave you. Someone may be intercepting the connection, or the address is "
            "wrong. Nothing was changed; do not enrol, and tell IT."
        )


# ---------------------------------------------------------------- enrolment call


def redeem(central: str, ca_pem: str, *, token: str, public_key: str, hostname: str | None,
           timeout: float = TIMEOUT) -> dict:  # fmt: skip
    """POST the enrolment (token, public key); the central's answer (node id, site, credential, CA, signing key).
    Raises TokenRefusedError for a refused token, CentralUnreachableError, or EnrollmentError."""
    payload = {"token": token, "public_key": public_key, "hostname": hostname}
    with ca_file(ca_pem) as ca_path:
        try:
            response = requests.post(f"{central}/api/v1/enrollment", json=payload, verify=ca_path, timeout=timeout)
        except requests.RequestException as exc:
            raise network_error(central, exc) from exc
    if response.status_code == 201:
        return response.json()
    text = detail(response)
    if response.status_code in (401, 403):
        reason = next((r for r in ("used", "expired", "revoked") if r in text.lower()), "unknown")
        raise TokenRefusedError(f"The central refused the enrolment token: {text} Nothing was changed.", reason)
    if response.status_code == 503:
        raise CentralUnreachableError(f"The central cannot enrol workstations right now: {text}")
    raise EnrollmentError(f"The central refused the enrolment: {text}")


def post_leave(central: str, ca_pem: str, credential: str, *, timeout: float = TIMEOUT) -> requests.Response | None:
    """POST /workstation/leave with a credential (also before the enrolment files exist); None without answer."""
    with ca_file(ca_pem) as ca_path:
        try:
            return requests.post(f"{central}/api/v1/workstation/leave", verify=ca_path, timeout=timeout,
                                 headers={"Authorization": f"Bearer {credential}"})  # fmt: skip
        except requests.RequestException:
            return None


# ---------------------------------------------------------------- after enrolment


class CentralClient:
    """Authenticated calls of an enrolled workstation: bearer credential from the keyring, HTTPS pinned to the
    central's CA received at enrolment. Thread-safe (no shared session)."""

    def __init__(self, enrollment: Enrollment, store: SecretStore | None = None, *, timeout: float = TIMEOUT) -> None:
        self.enrollment = enrollment
        self._store = store
        self.timeout = timeout

    @property
    def url(self) -> str:
        return self.enrollment.central_url

    def credential(self) -> str:
        """The workstation API credential from the keyring (KeyringUnavailableError when it is locked)."""
        from app.core.keystore import SecretStore

        store = self._store or SecretStore()
        value = store.get(self.enrollment.credential_name)
        if not value:
            raise EnrollmentError("This workstation's credential is missing from the keyring. Run `fedxray leave "
                                  "--force`, then enrol again.")  # fmt: skip
        return value

    def request(self, method: str, path: str, **kwargs) -> requests.Response:
        """Any authenticated request; raises only for no answer (CentralUnreachableError / TLS problems)."""
        headers = {"Authorization": f"Bearer {self.credential()}", **kwargs.pop("headers", {})}
        try:
            return requests.request(method, f"{self.url}{path}", headers=headers, timeout=self.timeout,
                                    verify=str(self.enrollment.ca_cert_path), **kwargs)  # fmt: skip
        except requests.RequestException as exc:
            raise network_error(self.url, exc) from exc

    def get(self, path: str, **kwargs) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs) -> requests.Response:
        return self.request("POST", path, **kwargs)

    def workstation(self) -> dict:
        """This workstation as the central sees it (node id, site, status, last_seen_at, online...).
        Raises CredentialRefusedError when the enrolment ended at the central."""
        response = self.get("/api/v1/workstation")
        if response.status_code in (401, 403):
            raise CredentialRefusedError(
                "The central no longer accepts this workstation (it was revoked by IT or left the federation). "
                "Ask IT for a new enrolment token: leave the federation (Federation tab → Leave the federation…, or "
                "`fedxray leave --force`), then enrol again."
            )
        if response.status_code != 200:
            raise EnrollmentError(f"The central did not report this workstation's enrolment: {detail(response)}")
        return response.json()

    def still_enrolled(self) -> bool | None:
        """Whether the central still accepts this workstation: False when it refuses the credential, None without
        a clear answer (unreachable, keyring trouble)."""
        try:
            self.workstation()
        except CredentialRefusedError:
            return False
        except AppError:
            return None
        return True

    def probe(self, *, timeout: float = PROBE_TIMEOUT) -> Probe:
        """Probe the enrolled central (reachability and clock); raises FingerprintMismatchError when it now shows
        another CA than the one pinned at enrolment."""
        probed = probe(self.url, timeout=timeout)
        check_pin(probed, expected=self.enrollment.ca_fingerprint, token_pin=None)
        return probed

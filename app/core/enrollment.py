"""Workstation side of enrolment: join a FedXray central, report the enrolment, leave it.

Secrets (the SuperNode's private key, the API credential) live only in the OS keyring; the rest (central
address, node id, CA certificate, model-signing public key) in the config folder, `<config>/central/`.

Public API (plain data; the desktop app calls it on worker threads):
- `central_client.probe(url)` first (CA fingerprint for IT to compare by phone, clock, reachability), then
- `enroll(central_url=..., token=..., ca_fingerprint=<the probed one IT confirmed>, hostname=None) -> Enrollment`;
- `status(ask_central=True) -> EnrollmentStatus` (central, site, node id, enrolled since, last contact, online
  as the central sees it; `.to_dict()` for JSON);
- `leave(force=False) -> LeaveResult` (revokes at the central, removes the keys). The agent must be stopped
  first: `app.core.agent_control.leave_federation()` does both.
Errors: the EnrollmentError family of app.core.central_client, KeyringUnavailableError.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import socket
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from app.core.central_client import (
    CentralClient,
    CredentialRefusedError,
    EnrollmentError,
    cert_fingerprint,
    check_pin,
    detail,
    new_node_key,
    normalize_fingerprint,
    post_leave,
    probe,
    redeem,
    token_ca_pin,
)
from app.core.errors import AppError
from app.core.keystore import SecretStore
from app.core.paths import atomic_write_text, config_dir

FOLDER = "central"
__all__ = ["Enrollment", "EnrollmentError", "EnrollmentStatus", "LeaveResult", "client", "credential", "enroll",
           "enrollment_dir", "leave", "load_enrollment", "private_key_file", "status"]


@dataclass(frozen=True)
class Enrollment:
    """This workstation's enrolment, as stored in `<config>/central/enrollment.json` (no secrets)."""

    central_url: str
    node_id: int
    site: str
    superlink_address: str
    ca_fingerprint: str
    enrolled_at: str
    keyring_id: str
    hostname: str | None = None

    @property
    def folder(self) -> Path:
        return enrollment_dir()

    @property
    def ca_cert_path(self) -> Path:
        """The central's CA certificate (for HTTPS and `flower-supernode --root-certificates`)."""
        return self.folder / "central-ca.pem"

    @property
    def signing_key_path(self) -> Path:
        """The central's model-signing public key (Ed25519, PEM): released models must verify against it."""
        return self.folder / "model-signing.pub"

    @property
    def public_key_path(self) -> Path:
        """This workstation's SuperNode public key (OpenSSH)."""
        return self.folder / "node.pub"

    @property
    def private_key_name(self) -> str:
        return f"{self.keyring_id}/supernode-private-key"

    @property
    def credential_name(self) -> str:
        return f"{self.keyring_id}/api-credential"


def enrollment_dir() -> Path:
    """`<config>/central` (not created)."""
    return config_dir() / FOLDER


def load_enrollment() -> Enrollment | None:
    """The current enrolment, or None when this workstation is not enrolled."""
    path = enrollment_dir() / "enrollment.json"
    if not path.exists():
        return None
    try:
        return Enrollment(**json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, TypeError) as exc:
        raise EnrollmentError(
            f"{path} is damaged ({exc}). Run `fedxray leave --force` and enrol this workstation again."
        ) from exc


# ---------------------------------------------------------------- enrol
def enroll(
    *, central_url: str, token: str, ca_fingerprint: str | None = None, hostname: str | None = None
) -> Enrollment:
    """Enrol this workstation with a central; returns the stored enrolment.

    The central's CA must match `ca_fingerprint` (what IT announced, or what the wizard showed and IT confirmed)
    and the pin inside the token. The clock is checked before the token is used: a clock Flower would refuse
    raises ClockSkewError and the token stays usable."""
    existing = load_enrollment()
    if existing is not None:
        raise EnrollmentError(
            f"This workstation is already enrolled (node {existing.node_id}, site {existing.site!r}, "
            f"central {existing.central_url}). Run `fedxray leave` first to enrol it again."
        )
    hostname = (hostname or socket.gethostname())[:100]
    pin = token_ca_pin(token)
    expected = normalize_fingerprint(ca_fingerprint) if ca_fingerprint else None
    store = SecretStore()  # refuses insecure keyrings before anything happens
    store.check()

    probed = probe(central_url)
    check_pin(probed, expected=expected, token_pin=pin)
    probed.require_clock()
    central, ca_pem, actual = probed.url, probed.ca_pem, probed.ca_fingerprint

    private_key, public_key = new_node_key()
    keyring_id = secrets.token_hex(8)
    key_name = f"{keyring_id}/supernode-private-key"
    store.set(key_name, private_key)
    try:
        body = redeem(central, ca_pem, token=token.strip(), public_key=public_key, hostname=hostname)
    except BaseException:
        store.delete(key_name)
        raise
    enrollment = None
    try:
        if cert_fingerprint(body["ca_certificate"]) != actual:
            raise EnrollmentError("The central answered with a different CA certificate than it presented.")
        store.set(f"{keyring_id}/api-credential", body["credential"])
        enrollment = Enrollment(
            central_url=central, node_id=int(body["node_id"]), site=body["site"],
            superlink_address=body["superlink_address"], ca_fingerprint=actual,
            enrolled_at=body["enrolled_at"], keyring_id=keyring_id, hostname=hostname,
        )  # fmt: skip
        folder = enrollment.folder
        atomic_write_text(enrollment.ca_cert_path, body["ca_certificate"], what="the central's CA certificate")
        atomic_write_text(enrollment.signing_key_path, body["model_signing_public_key"],
                          what="the model-signing public key")  # fmt: skip
        atomic_write_text(enrollment.public_key_path, public_key + "\n", what="the node's public key")
        atomic_write_text(folder / "enrollment.json", json.dumps(asdict(enrollment), indent=2) + "\n",
                          what="the enrolment record")  # fmt: skip
    except BaseException:
        # The central enrolled us but we cannot keep it: leave again so no orphan node stays registered.
        post_leave(central, ca_pem, body.get("credential", ""))
        store.delete(key_name)
        store.delete(f"{keyring_id}/api-credential")
        if enrollment is not None:
            shutil.rmtree(enrollment.folder, ignore_errors=True)
        raise
    return enrollment


# ---------------------------------------------------------------- use
def client(enrollment: Enrollment | None = None, store: SecretStore | None = None) -> CentralClient:
    """The CentralClient of this workstation's enrolment (EnrollmentError when not enrolled)."""
    enrollment = enrollment or load_enrollment()
    if enrollment is None:
        raise EnrollmentError("This workstation is not enrolled with a FedXray central. Enrol it first: "
                              "fedxray enroll --central URL --token TOKEN (IT gives you both).")  # fmt: skip
    return CentralClient(enrollment, store)


def credential(enrollment: Enrollment, store: SecretStore | None = None) -> str:
    """The workstation API credential from the keyring."""
    return CentralClient(enrollment, store).credential()


@contextlib.contextmanager
def private_key_file(enrollment: Enrollment, store: SecretStore | None = None) -> Iterator[Path]:
    """The SuperNode private key in a file only this user can read, removed when the block ends."""
    key = (store or SecretStore()).get(enrollment.private_key_name)
    if not key:
        raise EnrollmentError(
            "This workstation's private key is missing from the keyring. Run `fedxray leave --force`, then enrol again."
        )
    base = os.environ.get("XDG_RUNTIME_DIR")
    folder = Path(tempfile.mkdtemp(prefix="fedxray-node-", dir=base if base and os.path.isdir(base) else None))
    path = folder / "node.key"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(key)
        yield path
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# ---------------------------------------------------------------- status and leave
@dataclass(frozen=True)
class EnrollmentStatus:
    """This workstation's enrolment as stored here and, when asked, as the central sees it."""

    enrolled: bool
    central_url: str | None = None
    site: str | None = None
    node_id: int | None = None
    hostname: str | None = None
    superlink_address: str | None = None
    ca_fingerprint: str | None = None
    enrolled_at: str | None = None  # "enrolled since" (ISO 8601, from the central)
    keyring: str | None = None  # the keyring backend holding the secrets
    secrets_present: bool | None = None
    # From the central (None when it was not asked or did not answer):
    reachable: bool | None = None
    central_status: str | None = None  # active | revoked | left (the central's word)
    last_contact: str | None = None  # the central's last_seen_at: when this node last talked to it
    online: bool | None = None  # connected to the SuperLink now, as the central sees it
    clock: dict | None = None  # {"offset": s, "level": ok|warn|fail, "message": ...}
    problem: str | None = None  # plain words: what is wrong and what to do
    central: dict | None = field(default=None, repr=False)  # the central's full answer

    def to_dict(self) -> dict:
        """JSON view: {"enrolled": False} when not enrolled; no secrets ever."""
        if not self.enrolled:
            return {"enrolled": False}
        return asdict(self)


def status(*, ask_central: bool = True) -> EnrollmentStatus:
    """The enrolment as stored here, whether its secrets are in the keyring, and what the central says
    (its answer, reachability and the clock: one probe and one authenticated call, each up to 10-30 s)."""
    enrollment = load_enrollment()
    if enrollment is None:
        return EnrollmentStatus(enrolled=False)
    base = dict(enrolled=True, central_url=enrollment.central_url, site=enrollment.site, node_id=enrollment.node_id,
                hostname=enrollment.hostname, superlink_address=enrollment.superlink_address,
                ca_fingerprint=enrollment.ca_fingerprint, enrolled_at=enrollment.enrolled_at)  # fmt: skip
    try:
        store = SecretStore()
        base["keyring"] = store.name
        base["secrets_present"] = bool(store.get(enrollment.private_key_name)) and bool(
            store.get(enrollment.credential_name)
        )
    except AppError as exc:  # keyring locked or missing
        return EnrollmentStatus(**base, secrets_present=None, problem=str(exc))
    if not base["secrets_present"]:
        return EnrollmentStatus(**base, problem="This workstation's private key or credential is missing from the "
                                "keyring. Run `fedxray leave --force`, then enrol again.")  # fmt: skip
    if not ask_central:
        return EnrollmentStatus(**base)
    api = CentralClient(enrollment, store)
    try:
        probed = api.probe()
    except AppError as exc:
        return EnrollmentStatus(**base, reachable=False, problem=str(exc))
    clock = asdict(probed.clock) if probed.clock else None
    problem = probed.clock.message if probed.clock and probed.clock.level == "fail" else None
    try:
        seen = api.workstation()
    except CredentialRefusedError as exc:
        return EnrollmentStatus(**base, reachable=True, central_status="ended", clock=clock, problem=str(exc))
    except AppError as exc:
        return EnrollmentStatus(**base, reachable=False, clock=clock, problem=str(exc))
    return EnrollmentStatus(**base, reachable=True, central_status=seen.get("status"),
                            last_contact=seen.get("last_seen_at"), online=seen.get("online"), clock=clock,
                            problem=problem, central=seen)  # fmt: skip


@dataclass(frozen=True)
class LeaveResult:
    node_id: int
    central_told: bool
    message: str


def leave(*, force: bool = False) -> LeaveResult:
    """Tell the central this workstation leaves, then remove its secrets and enrolment files."""
    enrollment = load_enrollment()
    if enrollment is None:
        raise EnrollmentError("This workstation is not enrolled; there is nothing to leave.")
    store = SecretStore()
    secret = store.get(enrollment.credential_name)
    told, message = False, ""
    if secret:
        ca_pem = enrollment.ca_cert_path.read_text(encoding="ascii") if enrollment.ca_cert_path.exists() else ""
        response = post_leave(enrollment.central_url, ca_pem, secret) if ca_pem else None
        if response is not None and response.status_code == 200:
            told, message = True, "The central unregistered this workstation."
        elif response is not None and response.status_code == 401:
            told, message = True, "The central had already ended this workstation's enrolment."
        elif not force:
            reason = "no answer" if response is None else f"HTTP {response.status_code}: {detail(response)}"
            raise EnrollmentError(
                f"Could not tell the central at {enrollment.central_url} that this workstation leaves ({reason}). "
                "Nothing was removed. Try again when the central is reachable, or use `fedxray leave --force` "
                f"and ask IT to run `fedxray-central nodes revoke {enrollment.node_id}`."
            )
    if not told:
        message = f"The central was not told: ask IT to run `fedxray-central nodes revoke {enrollment.node_id}`."
    store.delete(enrollment.private_key_name)
    store.delete(enrollment.credential_name)
    shutil.rmtree(enrollment.folder, ignore_errors=True)
    return LeaveResult(node_id=enrollment.node_id, central_told=told, message=message)

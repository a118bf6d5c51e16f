"""Workstation side of enrolment: join a FedXray central, report the enrolment, leave it.

Secrets (the SuperNode's private key, the API credential) live only in the OS keyring; the rest (central
address, node id, CA certificate, model-signing public key) in the config folder, `<config>/central/`.
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
from dataclasses import asdict, dataclass
from pathlib import Path

import requests

from app.core.central_client import (
    TIMEOUT,
    EnrollmentError,
    ca_file,
    cert_fingerprint,
    detail,
    fetch_ca,
    network_error,
    new_node_key,
    normalize_central_url,
    normalize_fingerprint,
    token_ca_pin,
)
from app.core.keystore import SecretStore
from app.core.paths import atomic_write_text, config_dir

FOLDER = "central"
__all__ = ["Enrollment", "EnrollmentError", "api_get", "credential", "enroll", "enrollment_dir", "leave",
           "load_enrollment", "private_key_file", "status"]


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
    """Enrol this workstation with a central; returns the stored enrolment."""
    existing = load_enrollment()
    if existing is not None:
        raise EnrollmentError(
            f"This workstation is already enrolled (node {existing.node_id}, site {existing.site!r}, "
            f"central {existing.central_url}). Run `fedxray leave` first to enrol it again."
        )
    central = normalize_central_url(central_url)
    hostname = (hostname or socket.gethostname())[:100]
    pin = token_ca_pin(token)
    expected = normalize_fingerprint(ca_fingerprint) if ca_fingerprint else None
    store = SecretStore()  # refuses insecure keyrings before anything happens
    store.check()

    ca_pem = fetch_ca(central)
    actual = cert_fingerprint(ca_pem)
    if (expected is not None and actual != expected) or not actual.startswith(pin):
        raise EnrollmentError(
            f"The central at {central} presented a CA certificate with fingerprint {actual}, which is not the "
            "one IT gave you. Someone may be intercepting the connection, or the address is wrong. "
            "Nothing was changed; do not enrol, and tell IT."
        )

    private_key, public_key = new_node_key()
    keyring_id = secrets.token_hex(8)
    key_name = f"{keyring_id}/supernode-private-key"
    store.set(key_name, private_key)
    try:
        body = _redeem(central, ca_pem, token=token.strip(), public_key=public_key, hostname=hostname)
    except BaseException:
        store.delete(key_name)
        raise
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
        _post_leave(central, ca_pem, body.get("credential", ""))
        store.delete(key_name)
        store.delete(f"{keyring_id}/api-credential")
        raise
    return enrollment


def _redeem(central: str, ca_pem: str, *, token: str, public_key: str, hostname: str | None) -> dict:
    payload = {"token": token, "public_key": public_key, "hostname": hostname}
    with ca_file(ca_pem) as ca_path:
        try:
            response = requests.post(f"{central}/api/v1/enrollment", json=payload, verify=ca_path, timeout=TIMEOUT)
        except requests.RequestException as exc:
            raise network_error(central, exc) from exc
    if response.status_code != 201:
        raise EnrollmentError(f"The central refused the enrolment: {detail(response)}")
    return response.json()


def _post_leave(central: str, ca_pem: str, credential: str) -> requests.Response | None:
    with ca_file(ca_pem) as ca_path:
        try:
            return requests.post(f"{central}/api/v1/workstation/leave", verify=ca_path, timeout=TIMEOUT,
                                 headers={"Authorization": f"Bearer {credential}"})  # fmt: skip
        except requests.RequestException:
            return None


# ---------------------------------------------------------------- use (issue 5 builds on these)
def credential(enrollment: Enrollment, store: SecretStore | None = None) -> str:
    """The workstation API credential from the keyring."""
    value = (store or SecretStore()).get(enrollment.credential_name)
    if not value:
        raise EnrollmentError(
            "This workstation's credential is missing from the keyring. Run `fedxray leave --force`, then enrol again."
        )
    return value


def api_get(enrollment: Enrollment, path: str, *, store: SecretStore | None = None) -> requests.Response:
    """GET a central API path with the workstation credential (HTTPS checked against the enrolment CA)."""
    headers = {"Authorization": f"Bearer {credential(enrollment, store)}"}
    try:
        return requests.get(f"{enrollment.central_url}{path}", headers=headers,
                            verify=str(enrollment.ca_cert_path), timeout=TIMEOUT)  # fmt: skip
    except requests.RequestException as exc:
        raise network_error(enrollment.central_url, exc) from exc


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
def status(*, ask_central: bool = True) -> dict:
    """The enrolment as stored here, whether its secrets are in the keyring, and what the central says."""
    enrollment = load_enrollment()
    if enrollment is None:
        return {"enrolled": False}
    out: dict = {"enrolled": True, **asdict(enrollment)}
    out.pop("keyring_id")
    store = SecretStore()
    out["keyring"] = store.name
    out["secrets_present"] = bool(store.get(enrollment.private_key_name)) and bool(
        store.get(enrollment.credential_name)
    )
    if ask_central and out["secrets_present"]:
        try:
            response = api_get(enrollment, "/api/v1/workstation", store=store)
        except EnrollmentError as exc:
            out["central"] = {"reachable": False, "detail": str(exc)}
        else:
            if response.status_code == 200:
                out["central"] = {"reachable": True, **response.json()}
            else:
                out["central"] = {"reachable": True, "status": "refused", "detail": detail(response)}
    return out


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
        response = _post_leave(enrollment.central_url, ca_pem, secret) if ca_pem else None
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

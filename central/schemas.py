"""Request and response bodies of the central API, split by role (…Create / …Update / …Public)."""

from __future__ import annotations

import datetime as dt
import math
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from fl.release import VERSION_PATTERN

SiteName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100,
                                            pattern=r"^[^\x00-\x1f\x7f]+$")]  # fmt: skip
Version = Annotated[str, StringConstraints(pattern=VERSION_PATTERN)]
NodeId = Annotated[int, Field(ge=1, le=2**64 - 1)]


def _plain_json(value: Any, depth: int = 0) -> Any:
    """Refuse what JSON columns cannot hold portably: NaN/Infinity, or nesting deeper than 20 levels."""
    if depth > 20:
        raise ValueError("JSON nested too deeply (more than 20 levels)")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("numbers must be finite (no NaN or Infinity)")
    if isinstance(value, dict):
        for item in value.values():
            _plain_json(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _plain_json(item, depth + 1)
    return value


JsonObject = Annotated[dict[str, Any], AfterValidator(_plain_json)]


class Strict(BaseModel):
    """Bodies reject unknown fields."""

    model_config = ConfigDict(extra="forbid")


# ---------------------------------------------------------------- enrolment
class CAPublic(BaseModel):
    ca_certificate: str
    fingerprint: str = Field(description="SHA-256 of the CA certificate (DER), lowercase hex")


class EnrollmentCreate(Strict):
    token: str = Field(min_length=1, max_length=200)
    public_key: str = Field(
        min_length=1, max_length=2000, description="OpenSSH ECDSA public key (NIST curve)"
    )
    hostname: str | None = Field(default=None, max_length=100, pattern=r"^[^\x00-\x1f\x7f]*$")


class EnrollmentPublic(BaseModel):
    node_id: int
    site: str
    superlink_address: str = Field(
        description="host:port of the Fleet API (give to flower-supernode --superlink)"
    )
    ca_certificate: str
    ca_fingerprint: str
    model_signing_public_key: str
    credential: str = Field(description="Workstation API credential (shown once)")
    enrolled_at: dt.datetime


class TokenCreate(Strict):
    site: SiteName
    expires_in_seconds: int = Field(default=86400, ge=1, le=90 * 86400)
    note: str | None = Field(default=None, max_length=200)


class TokenCreated(BaseModel):
    id: int
    token: str = Field(description="One-time enrolment token (shown once)")
    site: str
    expires_at: dt.datetime
    ca_fingerprint: str


class TokenPublic(BaseModel):
    id: int
    site: str
    state: str
    created_at: dt.datetime
    expires_at: dt.datetime
    used_at: dt.datetime | None
    revoked_at: dt.datetime | None
    note: str | None


# ---------------------------------------------------------------- workstations
class NodePublic(BaseModel):
    node_id: int
    site: str
    hostname: str | None
    status: str = Field(description="active | revoked | left")
    enrolled_at: dt.datetime
    last_seen_at: dt.datetime | None
    revoked_at: dt.datetime | None
    online: bool | None = Field(description="connected to the SuperLink now (None if the SuperLink is down)")
    superlink_status: str | None


class Message(BaseModel):
    detail: str


# ---------------------------------------------------------------- runs
class RunCreate(Strict):
    num_rounds: int = Field(ge=1, le=10000)
    min_sites: int = Field(default=1, ge=1, le=10000)
    config: JsonObject = Field(default_factory=dict)
    flower_run_id: int | None = Field(default=None, ge=1, le=2**64 - 1)
    app_dir: str | None = Field(default=None, max_length=1000)


class RunUpdate(Strict):
    status: str | None = Field(
        default=None, pattern=r"^(pending|running|interrupted|finished|failed|stopped)$"
    )
    flower_run_id: int | None = Field(default=None, ge=1, le=2**64 - 1)
    message: str | None = Field(default=None, max_length=4000)


class RunPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    flower_run_id: str | None
    status: str
    num_rounds: int
    min_sites: int
    config: JsonObject
    message: str | None
    created_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    resumes: int = 0
    started_by: str | None = None
    fab: JsonObject | None = Field(default=None, description="the Flower app the run executes: fab_hash, fab_id, "
                                   "fab_version, components, installed_code (FedXray's installed code)")


class ReplyIn(Strict):
    node_id: NodeId
    phase: str = Field(pattern=r"^(train|evaluate)$")
    verdict: str = Field(pattern=r"^(accepted|refused|error|declined)$")
    arrays_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")


class RoundUpdate(Strict):
    num_sites: int | None = Field(default=None, ge=0, le=100000)
    train_metrics: JsonObject | None = None
    evaluate_metrics: JsonObject | None = None
    server_metrics: JsonObject | None = None
    replies: list[ReplyIn] | None = Field(default=None, max_length=20000,
                                          description="every site's reply of the round, as the ServerApp judged it")


class RunStart(Strict):
    settings: JsonObject = Field(default_factory=dict, description="run settings of the Flower app (kebab-case "
                                 "keys of its [tool.flwr.app.config]); unset ones keep the app's defaults")
    app_dir: str | None = Field(default=None, max_length=1000, description="a Flower app folder on the central "
                                "machine (default: FedXray's own, fl/flwr_app)")


class RunStarted(BaseModel):
    run: RunPublic
    flower: dict[str, Any] = Field(description='as `flwr run --format json` gives it: {"success", "run-id"}')
    sites_online: int | None
    config: JsonObject


class RunList(BaseModel):
    runs: list[dict[str, Any]]
    flower_problem: str | None


class RunDetail(BaseModel):
    run: RunPublic
    rounds: list[dict[str, Any]]
    flower: dict[str, Any] | None
    flower_problem: str | None
    model_versions: list[dict[str, Any]]
    replies: list[dict[str, Any]] = Field(default_factory=list, description="each site's reply per round")


class RoundPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    server_round: int
    num_sites: int | None
    train_metrics: JsonObject
    evaluate_metrics: JsonObject
    server_metrics: JsonObject
    updated_at: dt.datetime


# ---------------------------------------------------------------- model versions
class ModelVersionCreate(Strict):
    version: Version
    card: JsonObject
    run_id: int | None = Field(default=None, ge=1)
    server_round: int | None = Field(default=None, ge=0)
    is_best: bool = False


class ModelVersionUpdate(Strict):
    is_best: bool | None = None


class ModelVersionPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    version: str
    run_id: int | None
    server_round: int | None
    card: JsonObject
    file_sha256: str | None
    file_size: int | None
    is_best: bool
    created_at: dt.datetime
    released_at: dt.datetime | None


class ReleasePublic(BaseModel):
    version: str
    file_sha256: str
    file_size: int
    released_at: dt.datetime
    manifest: str = Field(description="The exact signed bytes (canonical JSON, ASCII)")
    signature: str = Field(description="base64 Ed25519 signature of `manifest` by the model-signing key")
    card: JsonObject


# ---------------------------------------------------------------- administrator accounts
class AccountCreate(Strict):
    name: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class AccountPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    name: str
    created_at: dt.datetime
    created_by: str
    disabled_at: dt.datetime | None
    last_sign_in_at: dt.datetime | None


# ---------------------------------------------------------------- audit, health
class AuditPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    at: dt.datetime
    actor: str
    action: str
    target: str | None
    detail: JsonObject


class HealthPublic(BaseModel):
    status: str
    database: str
    superlink: str
    version: str

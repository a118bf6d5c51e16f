"""Releasing a model version: re-check the stored file, make its LiteRT artefact (central.artefacts), sign its
manifest (fl.release) with the central's model-signing key, record it. The admin route (`fedxray-central models release`) and the dashboard call this."""

from __future__ import annotations

import base64
import logging

from central import pki
from central.artefacts import ensure_artefact
from central.crud import audit
from central.crud import models as crud
from central.db.engine import transaction
from central.db.models import ModelVersion
from central.home import CentralHome
from fl.modelfile import sha256_file

log = logging.getLogger("central.releases")


class ReleaseRefused(Exception):
    """The version cannot be released; `status` is 404 (no such version) or 409 (not releasable as it is)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def release_version(*, sessions, home: CentralHome, version: str, actor: str) -> ModelVersion:
    """Sign and record the release of `version`; the newest release supersedes the one before.

    Before signing, the version gets its LiteRT artefact (central.artefacts; tens of seconds the first time, in a
    separate process and outside any database transaction) and the card the manifest signs records it."""
    with transaction(sessions) as session:
        row = _releasable(session, home, version)
        model_id, card, file_sha256 = row.id, dict(row.card or {}), row.file_sha256
    made = ensure_artefact(home, model_id, card)
    with transaction(sessions) as session:
        row = _releasable(session, home, version)
        if row.file_sha256 != file_sha256:
            raise ReleaseRefused(409, f"Model version {version!r} got a new file while it was being released; "
                                      "release it again.")
        card = {k: v for k, v in (row.card or {}).items() if k != "inference"}
        if made.record is not None:
            card["inference"] = made.record
        row.card = card  # a new dict: the JSON column sees the change
        manifest = crud.release_manifest(row)
        signature = pki.sign(home.signing_key, manifest)
        before = crud.latest_release(session=session)
        crud.release(session=session, model=row, signature=signature, manifest=manifest)
        detail = {"sha256": row.file_sha256, "signature": base64.b64encode(signature).decode()[:16] + "…",
                  "litert": made.record["sha256"] if made.record else f"not made: {made.problem}"}  # fmt: skip
        if before is not None and before.id != row.id:
            detail["superseded"] = before.version
        audit.record(session=session, actor=actor, action="model.release", target=f"model:{version}", detail=detail)
        return row


def _releasable(session, home: CentralHome, version: str) -> ModelVersion:
    row = crud.get_model_version(session=session, version=version)
    if row is None:
        raise ReleaseRefused(404, f"No model version {version!r}.")
    problem = crud.release_problem(row)
    if problem is not None:
        raise ReleaseRefused(409, f"Model version {version!r} cannot be released: {problem}.")
    path = home.model_file(row.id)
    if not path.is_file() or sha256_file(path) != row.file_sha256:
        log.error("model %s: stored file %s is missing or no longer matches its upload", version, path)
        raise ReleaseRefused(409, f"Model version {version!r} cannot be released: its stored file is missing or "
                                  "no longer matches the SHA-256 recorded at upload; upload its file again.")
    return row

"""Model versions: records, files, the best mark and signed releases."""

from __future__ import annotations

import base64
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from central.db.models import ModelVersion, utcnow
from fl.release import manifest_bytes
from fl.release import release_problem as fl_release_problem


def key_metrics(card: dict) -> dict:
    """Accuracy, macro-F1 and loss from a card: the server-side test set if it has one, else validation."""
    metrics = card.get("metrics") or {}
    for source in ("test", "validation"):
        m = metrics.get(source)
        if isinstance(m, dict) and m.get("accuracy") is not None:
            return {"source": source, "accuracy": m.get("accuracy"), "macro_f1": m.get("macro_f1"),
                    "loss": m.get("loss"), "num_examples": m.get("num_examples")}  # fmt: skip
    return {"source": None, "accuracy": None, "macro_f1": None, "loss": None, "num_examples": None}


def create_model_version(
    *,
    session: Session,
    version: str,
    card: dict[str, Any],
    run_id: int | None = None,
    server_round: int | None = None,
) -> ModelVersion:
    """Record a new model version (its file is uploaded separately)."""
    row = ModelVersion(version=version, card=card, run_id=run_id, server_round=server_round)
    session.add(row)
    session.flush()
    session.refresh(row)
    return row


def get_model_version(*, session: Session, version: str) -> ModelVersion | None:
    """A model version by its version string."""
    return session.scalar(select(ModelVersion).where(ModelVersion.version == version))


def list_model_versions(*, session: Session, run_id: int | None = None) -> list[ModelVersion]:
    """Model versions, newest first (optionally of one run)."""
    query = select(ModelVersion).order_by(ModelVersion.id.desc())
    if run_id is not None:
        query = query.where(ModelVersion.run_id == run_id)
    return list(session.scalars(query))


def set_file(*, session: Session, model: ModelVersion, sha256: str, size: int) -> None:
    """Record the uploaded file's hash and size (a released version's file never changes)."""
    if model.released_at is not None:
        raise ValueError("a released model version's file cannot be replaced")
    model.file_sha256 = sha256
    model.file_size = size
    session.flush()


def mark_best(*, session: Session, model: ModelVersion) -> None:
    """Mark `model` as the best of its run (and unmark the others of that run)."""
    query = update(ModelVersion).where(ModelVersion.id != model.id).values(is_best=False)
    query = query.where(
        ModelVersion.run_id == model.run_id if model.run_id is not None else ModelVersion.run_id.is_(None)
    )
    session.execute(query.execution_options(synchronize_session=False))
    model.is_best = True
    session.flush()


def release_manifest(model: ModelVersion) -> bytes:
    """The exact bytes the release signature covers (fl.release.manifest_bytes: the workstations' rule too)."""
    return manifest_bytes(version=model.version, file_sha256=model.file_sha256, file_size=model.file_size,
                          card=model.card)  # fmt: skip


def release_problem(model: ModelVersion) -> str | None:
    """Why `model` cannot be released, or None (fl.release.release_problem: what every workstation checks)."""
    return fl_release_problem(version=model.version, card=model.card, file_sha256=model.file_sha256,
                              file_size=model.file_size)  # fmt: skip


def release(*, session: Session, model: ModelVersion, signature: bytes, manifest: bytes) -> None:
    """Store the release signature; the newest release is the one workstations should use."""
    model.manifest = manifest.decode("ascii")
    model.signature = base64.b64encode(signature).decode("ascii")
    model.released_at = utcnow()
    session.flush()


def latest_release(*, session: Session) -> ModelVersion | None:
    """The most recently released version, or None."""
    return session.scalar(
        select(ModelVersion)
        .where(ModelVersion.released_at.is_not(None))
        .order_by(ModelVersion.released_at.desc(), ModelVersion.id.desc())
        .limit(1)
    )

"""Model versions: records and files (written by the ServerApp), downloads, signed releases."""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from pathlib import Path as FsPath

from fastapi import APIRouter, HTTPException, Path, Query, Request, status
from fastapi.responses import FileResponse
from sqlalchemy.exc import IntegrityError

from central.api.deps import AdminDep, ContextDep, ReaderDep, SessionDep, WriterDep
from central.crud import audit
from central.crud import models as crud
from central.crud import runs as runs_crud
from central.releases import ReleaseRefused, release_version
from central.schemas import ModelVersionCreate, ModelVersionPublic, ModelVersionUpdate, ReleasePublic
from fl.release import VERSION_PATTERN

log = logging.getLogger("central.api")
router = APIRouter(prefix="/api/v1/models", tags=["models"])
VersionPath = Path(pattern=VERSION_PATTERN)


def _get(session, version: str):
    row = crud.get_model_version(session=session, version=version)
    if row is None:
        raise HTTPException(404, detail=f"No model version {version!r}.")
    return row


def _release_public(row) -> ReleasePublic:
    return ReleasePublic(
        version=row.version, file_sha256=row.file_sha256, file_size=row.file_size, released_at=row.released_at,
        manifest=row.manifest, signature=row.signature, card=row.card,
    )  # fmt: skip


@router.get("", response_model=list[ModelVersionPublic])
def list_models(
    principal: ReaderDep, session: SessionDep, run_id: int | None = Query(None, ge=1, le=2**31 - 1)
) -> list[ModelVersionPublic]:
    """Every model version (or those of one run), newest first."""
    rows = crud.list_model_versions(session=session, run_id=run_id)
    return [ModelVersionPublic.model_validate(m) for m in rows]


@router.get("/released", response_model=ReleasePublic)
def released(principal: ReaderDep, session: SessionDep) -> ReleasePublic:
    """The released model workstations should use, with the signed manifest."""
    row = crud.latest_release(session=session)
    if row is None:
        raise HTTPException(404, detail="No model has been released yet.")
    return _release_public(row)


@router.post("", response_model=ModelVersionPublic, status_code=status.HTTP_201_CREATED)
def create_model(body: ModelVersionCreate, principal: WriterDep, session: SessionDep) -> ModelVersionPublic:
    """Record a new version (upload its file next with PUT …/file)."""
    if body.run_id is not None and runs_crud.get_run(session=session, run_id=body.run_id) is None:
        raise HTTPException(404, detail=f"No run has id {body.run_id}.")
    if crud.get_model_version(session=session, version=body.version) is not None:
        raise HTTPException(409, detail=f"Model version {body.version!r} already exists.")
    try:
        row = crud.create_model_version(
            session=session, version=body.version, card=body.card, run_id=body.run_id, server_round=body.server_round
        )
    except IntegrityError as exc:
        raise HTTPException(409, detail=f"Model version {body.version!r} already exists.") from exc
    if body.is_best:
        crud.mark_best(session=session, model=row)
    audit.record(session=session, actor=principal.actor, action="model.create", target=f"model:{row.version}")
    return ModelVersionPublic.model_validate(row)


@router.get("/{version}", response_model=ModelVersionPublic)
def get_model(principal: ReaderDep, session: SessionDep, version: str = VersionPath) -> ModelVersionPublic:
    """One model version with its card."""
    return ModelVersionPublic.model_validate(_get(session, version))


@router.patch("/{version}", response_model=ModelVersionPublic)
def update_model(
    body: ModelVersionUpdate, principal: WriterDep, session: SessionDep, version: str = VersionPath
) -> ModelVersionPublic:
    """Mark a version as the best of its run."""
    row = _get(session, version)
    if body.is_best:
        crud.mark_best(session=session, model=row)
    return ModelVersionPublic.model_validate(row)


@router.put("/{version}/file", response_model=ModelVersionPublic)
async def upload_file(
    request: Request, principal: WriterDep, ctx: ContextDep, version: str = VersionPath
) -> ModelVersionPublic:
    """Upload a version's file (raw body); stored atomically with its SHA-256."""
    with ctx.sessions() as session:
        row = _get(session, version)
        if row.released_at is not None:
            raise HTTPException(409, detail=f"Model version {version!r} is released; its file cannot change.")
        model_id = row.id
    target = ctx.home.model_file(model_id)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=ctx.home.models_dir)
    tmp = FsPath(tmp_name)
    digest, size = hashlib.sha256(), 0
    try:
        with os.fdopen(fd, "wb") as fh:
            async for chunk in request.stream():
                digest.update(chunk)
                size += len(chunk)
                fh.write(chunk)
            fh.flush()
            os.fsync(fh.fileno())
        if size == 0:
            raise HTTPException(422, detail="The model file is empty.")
        with ctx.sessions() as session, session.begin():
            row = _get(session, version)
            crud.set_file(session=session, model=row, sha256=digest.hexdigest(), size=size)
            os.replace(tmp, target)
            audit.record(session=session, actor=principal.actor, action="model.upload", target=f"model:{version}",
                         detail={"sha256": row.file_sha256, "size": size})  # fmt: skip
            return ModelVersionPublic.model_validate(row)
    finally:
        tmp.unlink(missing_ok=True)


@router.get("/{version}/file", response_class=FileResponse)
def download_file(principal: ReaderDep, ctx: ContextDep, session: SessionDep, version: str = VersionPath):
    """Download a version's file (check it against the released manifest's SHA-256)."""
    row = _get(session, version)
    path = ctx.home.model_file(row.id)
    if row.file_sha256 is None or not path.exists():
        raise HTTPException(404, detail=f"Model version {version!r} has no file yet.")
    return FileResponse(path, media_type="application/octet-stream", filename=f"fedxray-model-{row.version}.bin",
                        headers={"X-Content-SHA256": row.file_sha256})  # fmt: skip


@router.get("/{version}/litert", response_class=FileResponse)
def download_artefact(principal: ReaderDep, ctx: ContextDep, session: SessionDep, version: str = VersionPath):
    """Download a version's LiteRT artefact (made when the version was released; check it against the SHA-256 of
    the `inference` record in the signed card)."""
    row = _get(session, version)
    record = (row.card or {}).get("inference") or {}
    path = ctx.home.artefact_file(row.id)
    if not record.get("sha256") or not path.exists():
        raise HTTPException(404, detail=f"Model version {version!r} has no LiteRT artefact.")
    return FileResponse(path, media_type="application/octet-stream", filename=f"fedxray-model-{row.version}.tflite",
                        headers={"X-Content-SHA256": record["sha256"]})  # fmt: skip


@router.post("/{version}/release", response_model=ReleasePublic, tags=["admin"])
def release(principal: AdminDep, ctx: ContextDep, version: str = VersionPath) -> ReleasePublic:
    """Release a version: sign its manifest with the central's model-signing key. The newest release is the
    one workstations install; releasing another version supersedes it."""
    try:
        row = release_version(sessions=ctx.sessions, home=ctx.home, version=version, actor=principal.actor)
    except ReleaseRefused as exc:
        raise HTTPException(exc.status, detail=str(exc)) from None
    return _release_public(row)

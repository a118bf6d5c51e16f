"""Runs and per-round metrics: read by workstations and admins, written only by the ServerApp (service credential).
Administrators start and stop runs through /api/v1/admin/runs (central.run_lifecycle)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Path, Query, status
from sqlalchemy.exc import IntegrityError

from central.api.deps import ReaderDep, ServiceDep, SessionDep
from central.crud import audit
from central.crud import runs as crud
from central.schemas import RoundPublic, RoundUpdate, RunCreate, RunPublic, RunUpdate

router = APIRouter(prefix="/api/v1/runs", tags=["runs"])
RunId = Path(ge=1, le=2**31 - 1)


def _get(session, run_id: int):
    run = crud.get_run(session=session, run_id=run_id)
    if run is None:
        raise HTTPException(404, detail=f"No run has id {run_id}.")
    return run


@router.get("", response_model=list[RunPublic])
def list_runs(
    principal: ReaderDep,
    session: SessionDep,
    limit: int = Query(100, ge=1, le=1000),
    offset: int = Query(0, ge=0),
) -> list[RunPublic]:
    """Runs, newest first."""
    return [RunPublic.model_validate(r) for r in crud.list_runs(session=session, limit=limit, offset=offset)]


@router.post("", response_model=RunPublic, status_code=status.HTTP_201_CREATED)
def create_run(body: RunCreate, principal: ServiceDep, session: SessionDep) -> RunPublic:
    """Record a run that a ServerApp started some other way (runs the central starts: POST /api/v1/admin/runs)."""
    try:
        run = crud.create_run(
            session=session, num_rounds=body.num_rounds, min_sites=body.min_sites, config=body.config,
            flower_run_id=str(body.flower_run_id) if body.flower_run_id else None, app_dir=body.app_dir,
        )  # fmt: skip
    except IntegrityError as exc:
        raise HTTPException(409, detail="A run with this Flower run id already exists.") from exc
    audit.record(session=session, actor=principal.actor, action="run.create", target=f"run:{run.id}")
    return RunPublic.model_validate(run)


@router.get("/{run_id}", response_model=RunPublic)
def get_run(principal: ReaderDep, session: SessionDep, run_id: int = RunId) -> RunPublic:
    """One run."""
    return RunPublic.model_validate(_get(session, run_id))


@router.patch("/{run_id}", response_model=RunPublic)
def update_run(body: RunUpdate, principal: ServiceDep, session: SessionDep, run_id: int = RunId) -> RunPublic:
    """Change a run's status, Flower run id or message."""
    run = _get(session, run_id)
    flower_id = str(body.flower_run_id) if body.flower_run_id else None
    if flower_id and crud.get_run_by_flower_id(session=session, flower_run_id=flower_id) not in (None, run):
        raise HTTPException(409, detail="Another run already has this Flower run id.")
    crud.update_run(
        session=session, run=run, status=body.status, flower_run_id=flower_id, message=body.message
    )
    if body.status:
        audit.record(
            session=session, actor=principal.actor, action=f"run.{body.status}", target=f"run:{run.id}"
        )
    return RunPublic.model_validate(run)


@router.get("/{run_id}/rounds", response_model=list[RoundPublic])
def list_rounds(principal: ReaderDep, session: SessionDep, run_id: int = RunId) -> list[RoundPublic]:
    """A run's rounds with their aggregated metrics."""
    run = _get(session, run_id)
    return [RoundPublic.model_validate(r) for r in crud.list_rounds(session=session, run=run)]


@router.put("/{run_id}/rounds/{server_round}", response_model=RoundPublic)
def put_round(
    body: RoundUpdate, principal: ServiceDep, session: SessionDep, run_id: int = RunId,
    server_round: int = Path(ge=0, le=100000),
) -> RoundPublic:  # fmt: skip
    """Create or update one round's metrics (fields left out keep their stored value)."""
    run = _get(session, run_id)
    row = crud.upsert_round(
        session=session, run=run, server_round=server_round, num_sites=body.num_sites,
        train_metrics=body.train_metrics, evaluate_metrics=body.evaluate_metrics, server_metrics=body.server_metrics,
    )  # fmt: skip
    if body.replies is not None:
        crud.record_replies(session=session, run=run, server_round=server_round,
                            replies=[r.model_dump() for r in body.replies])  # fmt: skip
    return RoundPublic.model_validate(row)

"""Admin routes for runs: start, stop, and each run as the administrator sees it (the `fedxray-central run`
commands and the dashboard go through these, i.e. through central.run_lifecycle)."""

from __future__ import annotations

from pathlib import Path as FsPath

from fastapi import APIRouter, HTTPException, Path, Query, status

from central import run_views
from central.api.deps import AdminDep, ContextDep
from central.run_lifecycle import RunError
from central.schemas import RunDetail, RunList, RunPublic, RunStart, RunStarted

router = APIRouter(prefix="/api/v1/admin/runs", tags=["admin"])
RunId = Path(ge=1, le=2**31 - 1)
ERROR_STATUS = {"invalid": 422, "not_found": 404, "conflict": 409, "unavailable": 503}


def refusal(exc: RunError) -> HTTPException:
    return HTTPException(ERROR_STATUS.get(exc.kind, 422), detail=str(exc))


@router.get("/settings", response_model=dict)
def run_settings(principal: AdminDep, app_dir: str | None = Query(None, max_length=1000)) -> dict:
    """The run settings an administrator may set, with the Flower app's defaults."""
    try:
        return run_views.settable_defaults(FsPath(app_dir) if app_dir else None)
    except RunError as exc:
        raise refusal(exc) from None


@router.post("", response_model=RunStarted, status_code=status.HTTP_201_CREATED)
def start_run(body: RunStart, principal: AdminDep, ctx: ContextDep) -> RunStarted:
    """Start a run of the Flower app on the SuperLink (recorded first; failed if the SuperLink refuses it)."""
    try:
        started = ctx.runs.start(settings=dict(body.settings), started_by="admin credential", actor=principal.actor,
                                 app_dir=FsPath(body.app_dir) if body.app_dir else None)  # fmt: skip
    except RunError as exc:
        raise refusal(exc) from None
    return RunStarted(run=RunPublic.model_validate(started.run), config=started.config,
                      flower={"success": True, "run-id": str(started.flower_run_id)},
                      sites_online=run_views.sites_online(ctx))  # fmt: skip


@router.post("/{run_id}/stop", response_model=RunPublic)
def stop_run(principal: AdminDep, ctx: ContextDep, run_id: int = RunId) -> RunPublic:
    """Stop a run: Flower stops its ServerApp; the run stays stopped whatever its ServerApp reports after."""
    try:
        return RunPublic.model_validate(ctx.runs.stop(run_id, actor=principal.actor,
                                                      who="the admin (fedxray-central run stop)"))  # fmt: skip
    except RunError as exc:
        raise refusal(exc) from None


@router.get("", response_model=RunList)
def list_runs(principal: AdminDep, ctx: ContextDep, limit: int = Query(20, ge=1, le=1000)) -> RunList:
    """Runs, newest first, with the rounds recorded and Flower's own status."""
    return RunList(**run_views.run_list(ctx, limit=limit))


@router.get("/{run_id}", response_model=RunDetail)
def get_run(principal: AdminDep, ctx: ContextDep, run_id: int = RunId) -> RunDetail:
    """One run: its record, rounds with metrics, Flower's status, model versions."""
    detail = run_views.run_detail(ctx, run_id)
    if detail is None:
        raise HTTPException(404, detail=f"No run has id {run_id}.")
    return RunDetail(**detail)

"""Runs as administrators see them (the admin routes and the dashboard): records, rounds, Flower's own view of
each run, model versions. Reads only; starting and stopping is central.run_lifecycle."""

from __future__ import annotations

import time
from typing import Any

from central.crud import models as models_crud
from central.crud import runs as runs_crud
from central.flower.control import RunState, SuperLinkError
from central.run_lifecycle import settable_defaults  # noqa: F401 (the form's and the CLI's defaults)
from central.schemas import RoundPublic, RunPublic

FLOWER_MAX_AGE = 2.0  # seconds a page may show Flower's run states from an earlier request


def flower_states(ctx) -> tuple[dict[int, RunState], str | None]:
    """Flower's view of its runs by run id (asked at most every FLOWER_MAX_AGE seconds, however many pages and
    commands ask), and a problem note when the SuperLink could not say."""
    if ctx.control is None:
        return {}, "no SuperLink"
    cached = ctx.flower_runs
    now = time.monotonic()
    if cached is not None and now - cached[0] < FLOWER_MAX_AGE:
        return cached[1], cached[2]
    try:
        answer = (ctx.control.list_runs(), None)
    except SuperLinkError as exc:
        answer = ({}, str(exc))
    ctx.flower_runs = (now, *answer)
    return answer


def sites_online(ctx) -> int | None:
    """Enrolled workstations connected to the SuperLink now (None when the SuperLink is down)."""
    status = ctx.poll_superlink()
    if not status.up:
        return None
    with ctx.sessions() as session:
        from central.crud import enrollment as enrollment_crud

        active = {ws.node_id for ws in enrollment_crud.list_workstations(session=session) if ws.status == "active"}
    now = time.time()
    return sum(1 for node_id, n in status.nodes.items()
               if str(node_id) in active and n.status == "online" and (n.online_until or 0) > now)  # fmt: skip


def _state(flower: dict[int, RunState], run) -> RunState | None:
    return flower.get(int(run.flower_run_id)) if run.flower_run_id else None


def run_list(ctx, *, limit: int = 20) -> dict[str, Any]:
    """Runs, newest first, each with the rounds recorded and Flower's status."""
    with ctx.sessions() as session:
        runs = runs_crud.list_runs(session=session, limit=limit)
        rounds = {r.id: sum(1 for x in runs_crud.list_rounds(session=session, run=r) if x.server_round > 0)
                  for r in runs}  # fmt: skip
    flower, problem = flower_states(ctx) if runs else ({}, None)
    out = []
    for run in runs:
        state = _state(flower, run)
        out.append({**RunPublic.model_validate(run).model_dump(mode="json"), "rounds_recorded": rounds[run.id],
                    "flower_status": state.label if state else None})  # fmt: skip
    return {"runs": out, "flower_problem": problem}


def run_detail(ctx, run_id: int) -> dict[str, Any] | None:
    """One run: its record, rounds, Flower's status and its model versions (None when there is no such run)."""
    with ctx.sessions() as session:
        run = runs_crud.get_run(session=session, run_id=run_id)
        if run is None:
            return None
        rounds = runs_crud.list_rounds(session=session, run=run)
        versions = models_crud.list_model_versions(session=session, run_id=run_id)
        replies = runs_crud.replies_of(session=session, run=run)
    flower, problem = flower_states(ctx) if run.flower_run_id else ({}, None)
    state = _state(flower, run)
    return {
        "run": RunPublic.model_validate(run).model_dump(mode="json"),
        "rounds": [RoundPublic.model_validate(r).model_dump(mode="json") for r in rounds],
        "flower": state.summary() if state else None,
        "flower_problem": problem,
        "model_versions": [{"version": v.version, "server_round": v.server_round, "is_best": v.is_best,
                            "released_at": v.released_at.isoformat() if v.released_at else None,
                            "metrics": models_crud.key_metrics(v.card)} for v in versions],  # fmt: skip
        "replies": [{"server_round": r.server_round, "node_id": r.node_id, "phase": r.phase, "verdict": r.verdict,
                     "arrays_sha256": r.arrays_sha256} for r in replies],  # fmt: skip
    }

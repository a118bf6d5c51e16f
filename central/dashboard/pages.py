"""The dashboard's pages (GET): overview, workstations, runs, models, audit log. Reads only."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse

from central import enrollment, run_views
from central.crud import audit
from central.crud import enrollment as enrollment_crud
from central.crud import models as models_crud
from central.crud import runs as runs_crud
from central.dashboard import forms
from central.dashboard.accounts import SignedIn
from central.dashboard.charts import CLASS_LABELS, chart_data, confusion
from central.dashboard.web import ctx_of, current_admin, page, see_other
from central.security import format_fingerprint
from fl.classes import CLASSES

router = APIRouter(prefix="/dashboard", include_in_schema=False)
Admin = Annotated[SignedIn, Depends(current_admin)]
ACTIVE = ("pending", "running", "interrupted")


def _nodes(ctx) -> list[dict]:
    """Every enrolled workstation with what the SuperLink says now and the runs it took part in."""
    with ctx.sessions() as session:
        rows = enrollment_crud.list_workstations(session=session)
        taken = runs_crud.participation(session=session)
    out = []
    for ws in rows:
        node = enrollment.node_public(ctx, ws).model_dump()
        node.update(taken.get(ws.node_id, {"runs": 0, "declined": 0}))
        out.append(node)
    return out


def _run_charts(ctx, run_id: int) -> tuple[dict, dict] | None:
    detail = run_views.run_detail(ctx, run_id)
    if detail is None:
        return None
    best = next((v["server_round"] for v in detail["model_versions"] if v["is_best"]), None)
    run = detail["run"]
    return detail, chart_data(detail["rounds"], best_round=best, num_rounds=run["num_rounds"], status=run["status"])


@router.get("/", response_class=HTMLResponse)
def overview(request: Request, signed: Admin):
    ctx = ctx_of(request)
    nodes = _nodes(ctx)
    with ctx.sessions() as session:
        runs = runs_crud.list_runs(session=session, limit=5)
        release = models_crud.latest_release(session=session)
    current = next((r for r in runs if r.status in ACTIVE), runs[0] if runs else None)
    live = _run_charts(ctx, current.id) if current is not None else None
    return page(request, "overview.html", nodes=nodes, online=sum(1 for n in nodes if n["online"]),
                active=sum(1 for n in nodes if n["status"] == "active"), superlink_up=ctx.superlink.up,
                current=live[0] if live else None, charts=live[1] if live else None, release=release,
                key_metrics=models_crud.key_metrics)  # fmt: skip


@router.get("/fragments/nodes", response_class=HTMLResponse)
def nodes_fragment(request: Request, signed: Admin):
    """The overview's workstation table, refreshed every few seconds (htmx)."""
    return page(request, "_nodes_table.html", nodes=_nodes(ctx_of(request)), full=False)


@router.get("/workstations", response_class=HTMLResponse)
def workstations(request: Request, signed: Admin):
    ctx = ctx_of(request)
    with ctx.sessions() as session:
        tokens = [{"row": t, "state": enrollment_crud.token_state(t)} for t in enrollment_crud.list_tokens(session=session)]
    return page(request, "workstations.html", nodes=_nodes(ctx), tokens=tokens,
                fingerprint=format_fingerprint(ctx.ca_fingerprint), expiries=forms.EXPIRIES)  # fmt: skip


@router.get("/workstations/{node_id}/revoke", response_class=HTMLResponse)
def confirm_revoke(request: Request, signed: Admin, node_id: int):
    node = next((n for n in _nodes(ctx_of(request)) if n["node_id"] == node_id), None)
    if node is None or node["status"] != "active":
        return see_other("/dashboard/workstations")
    return page(request, "confirm.html", nav="workstations", title=f"Revoke the workstation of {node['site']}?",
                action=f"/dashboard/workstations/{node_id}/revoke", button="Revoke this workstation", danger=True,
                back="/dashboard/workstations", points=[
                    f"Node {node_id} ({node['hostname'] or 'host name unknown'}) is unregistered in Flower and its "
                    "credential revoked: a running workstation is cut off within seconds.",
                    "Its key can never connect again. To take part again it must be enrolled with a new token.",
                    "What it contributed to earlier rounds and model versions stays."])  # fmt: skip


@router.get("/runs", response_class=HTMLResponse)
def runs(request: Request, signed: Admin):
    listing = run_views.run_list(ctx_of(request), limit=100)
    return page(request, "runs.html", runs=listing["runs"], flower_problem=listing["flower_problem"])


@router.get("/runs/new", response_class=HTMLResponse)
def new_run(request: Request, signed: Admin):
    return forms.run_form_page(request, values=None, error=None)


def _run_context(ctx, run_id: int, chosen_round: int | None) -> dict | None:
    """What a run's page and its refreshed tables show."""
    found = _run_charts(ctx, run_id)
    if found is None:
        return None
    detail, charts = found
    done = [r for r in detail["rounds"] if r["server_round"] > 0]
    shown = chosen_round or charts["best_round"] or (done[-1]["server_round"] if done else None)
    chosen = next((r for r in done if r["server_round"] == shown), None)
    with ctx.sessions() as session:
        names = {ws.node_id: ws.site.name for ws in enrollment_crud.list_workstations(session=session)}
    by_round: dict[int, dict] = {}
    for reply in detail["replies"]:
        entry = by_round.setdefault(reply["server_round"], {"accepted": [], "other": []})
        site = names.get(reply["node_id"], "Flower" if reply["node_id"] == "1" else f"node {reply['node_id']}")
        if reply["verdict"] == "accepted":
            if reply["phase"] == "train":
                entry["accepted"].append(site)
        else:
            entry["other"].append((site, f"{reply['phase']} {reply['verdict']}"))
    return {"detail": detail, "run": detail["run"], "charts": charts, "rounds": done, "shown_round": shown,
            "matrix": confusion(chosen), "active": detail["run"]["status"] in ACTIVE,
            "sites_by_round": sorted(by_round.items())}  # fmt: skip


@router.get("/runs/{run_id}", response_class=HTMLResponse)
def run(request: Request, signed: Admin, run_id: int, round: int | None = Query(None, ge=1)):  # noqa: A002
    context = _run_context(ctx_of(request), run_id, round)
    if context is None:
        return page(request, "error.html", status=404, title="No such run", message=f"There is no run {run_id}.")
    return page(request, "run.html", nav="runs", **context)


@router.get("/runs/{run_id}/tables", response_class=HTMLResponse)
def run_tables(request: Request, signed: Admin, run_id: int, round: int | None = Query(None, ge=1)):  # noqa: A002
    """A run's confusion matrix, sites and rounds tables, refreshed (htmx) when a new round is recorded."""
    context = _run_context(ctx_of(request), run_id, round)
    if context is None:
        return page(request, "error.html", status=404, title="No such run", message=f"There is no run {run_id}.")
    return page(request, "_run_tables.html", nav="runs", **context)


@router.get("/runs/{run_id}/data.json")
def run_data(request: Request, signed: Admin, run_id: int):
    found = _run_charts(ctx_of(request), run_id)
    if found is None:
        return JSONResponse({"detail": f"There is no run {run_id}."}, status_code=404)
    detail, charts = found
    run = detail["run"]
    charts["summary"] = {"status": run["status"], "flower": (detail["flower"] or {}).get("status"),
                         "message": run["message"], "rounds_done": len(charts["rounds"])}  # fmt: skip
    return JSONResponse(charts, headers={"Cache-Control": "no-store"})


@router.get("/runs/{run_id}/stop", response_class=HTMLResponse)
def confirm_stop(request: Request, signed: Admin, run_id: int):
    return page(request, "confirm.html", nav="runs", title=f"Stop run {run_id}?", button="Stop the run", danger=True,
                action=f"/dashboard/runs/{run_id}/stop", back=f"/dashboard/runs/{run_id}", points=[
                    "Flower stops the run's server process; workstations stop training for it at their next message.",
                    "Rounds and model versions recorded so far are kept; the run is not resumed.",
                    "To train further, start a new run (it may start from a saved version: initial-model)."])  # fmt: skip


def _versions(ctx) -> tuple[list, object | None]:
    with ctx.sessions() as session:
        return models_crud.list_model_versions(session=session), models_crud.latest_release(session=session)


@router.get("/models", response_class=HTMLResponse)
def models(request: Request, signed: Admin):
    versions, release = _versions(ctx_of(request))
    return page(request, "models.html", versions=versions, release=release, key_metrics=models_crud.key_metrics)


@router.get("/models/compare", response_class=HTMLResponse)
def compare(request: Request, signed: Admin, a: str = Query(..., max_length=64), b: str = Query(..., max_length=64)):
    versions, release = _versions(ctx_of(request))
    by_name = {v.version: v for v in versions}
    if a not in by_name or b not in by_name:
        return page(request, "error.html", status=404, nav="models", title="No such model version",
                    message="Choose two versions from the list.")  # fmt: skip
    return page(request, "compare.html", nav="models", left=by_name[a], right=by_name[b], release=release,
                classes=[(c, CLASS_LABELS.get(c, c)) for c in CLASSES], key_metrics=models_crud.key_metrics)


@router.get("/models/{version}", response_class=HTMLResponse)
def model(request: Request, signed: Admin, version: str):
    versions, release = _versions(ctx_of(request))
    row = next((v for v in versions if v.version == version), None)
    if row is None:
        return page(request, "error.html", status=404, nav="models", title="No such model version",
                    message=f"There is no model version {version!r}.")  # fmt: skip
    problem = models_crud.release_problem(row)
    return page(request, "model.html", nav="models", v=row, release=release, problem=problem,
                classes=[(c, CLASS_LABELS.get(c, c)) for c in CLASSES], key_metrics=models_crud.key_metrics)


@router.get("/models/{version}/release", response_class=HTMLResponse)
def confirm_release(request: Request, signed: Admin, version: str):
    versions, release = _versions(ctx_of(request))
    row = next((v for v in versions if v.version == version), None)
    if row is None:
        return see_other("/dashboard/models")
    card, m = row.card or {}, models_crud.key_metrics(row.card or {})
    offered = (f"Every enrolled workstation will be offered {card.get('name', 'the model')} {row.version} "
               f"({card.get('arch')}, {card.get('input_size')} px; run {row.run_id}, round {row.server_round}"
               + (f"; {m['source']} accuracy {m['accuracy']:.3f}, macro-F1 {m['macro_f1']:.3f}" if m["accuracy"] is not None
                  and m["macro_f1"] is not None else "") + ") the next time it checks with `fedxray models update`.")
    points = [offered,
              "Each workstation verifies the central's signature and the file's SHA-256, compares the model with its "
              "current one on its own labelled cases, and installs it only when its staff confirm.",
              "Before signing, the central converts the model for LiteRT, so that workstations classify with it without "
              "TensorFlow (about 30 s for SE-ResNet50V2, done once per version); this page waits until it is signed.",
              f"It supersedes the current release ({release.version})." if release is not None and release.id != row.id
              else "It is the first release." if release is None else "It is already released; it is signed again."]
    return page(request, "confirm.html", nav="models", title=f"Release {row.version}?", button="Sign and release",
                action=f"/dashboard/models/{row.version}/release", back=f"/dashboard/models/{row.version}",
                points=points, danger=False, problem=models_crud.release_problem(row))  # fmt: skip


@router.get("/audit", response_class=HTMLResponse)
def audit_log(request: Request, signed: Admin, actor: str = Query("", max_length=100),
              action: str = Query("", max_length=50), since: str = Query("", max_length=30),
              until: str = Query("", max_length=30), limit: int = Query(200, ge=1, le=2000)):  # fmt: skip
    ctx = ctx_of(request)
    bounds, error = {}, None
    for name, text in (("since", since), ("until", until)):
        if text:
            try:
                bounds[name] = dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)
            except ValueError:
                error = f"{text!r} is not a date and time (use the picker, or YYYY-MM-DDTHH:MM in UTC)."
    with ctx.sessions() as session:
        events = audit.list_events(session=session, limit=limit, actor=actor or None, action=action or None, **bounds)
        known = audit.actions(session=session)
    return page(request, "audit.html", events=events, actions=known, error=error,
                filters={"actor": actor, "action": action, "since": since, "until": until, "limit": limit})

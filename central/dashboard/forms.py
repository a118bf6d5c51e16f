"""The dashboard's forms (POST): sign in and out, enrolment tokens, revoking a workstation, starting and stopping a
run, releasing a model. Each goes through the same services as the admin API (central.run_lifecycle,
central.enrollment, central.releases) and lands in the audit log under the administrator's account."""

from __future__ import annotations

import datetime as dt
import re
import secrets
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse

from central import enrollment, run_views
from central.crud import audit
from central.dashboard import accounts
from central.dashboard.web import (
    SIGN_IN_COOKIE,
    actor,
    checked_form,
    clear_session_cookie,
    ctx_of,
    page,
    refuse_api_credentials,
    safe_next,
    same_origin,
    see_other,
    set_session_cookie,
    set_sign_in_cookie,
)
from central.db.engine import transaction
from central.flower.app import parse_value
from central.releases import ReleaseRefused, release_version
from central.run_lifecycle import RunError
from central.security import format_fingerprint
from fl.fingerprints import readable

router = APIRouter(prefix="/dashboard", include_in_schema=False)
EXPIRIES = {"1h": 3600, "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400}
# How the run form groups the Flower app's settings (a setting not named here goes under "Other").
GROUPS = {
    "Rounds and sites": ("num-server-rounds", "min-sites", "fraction-train", "round-timeout", "evaluate-every"),
    "Network": ("arch", "input-size", "initial-model", "model-name"),
    "Training at each site": ("local-epochs", "batch-size", "learning-rate", "lr-schedule", "val-fraction", "seed",
                              "augment", "source-cues", "balance-classes", "source-weights", "recalibrate-bn",
                              "keep-optimizer-state"),
    "Aggregation at the central": ("strategy", "proximal-mu", "server-learning-rate", "server-momentum",
                                   "transfer-dtype", "server-test-dir"),
    "Differential privacy": ("dp", "dp-noise-multiplier", "dp-clipping-norm"),
}  # fmt: skip


def _choices() -> dict[str, list[str]]:
    from fl.model import ARCHITECTURES
    from fl.task import DP_MODES, LR_SCHEDULES, STRATEGIES, TRANSFER_DTYPES

    return {"arch": list(ARCHITECTURES), "strategy": list(STRATEGIES), "dp": list(DP_MODES),
            "transfer-dtype": list(TRANSFER_DTYPES), "lr-schedule": list(LR_SCHEDULES)}  # fmt: skip


# ---------------------------------------------------------------- sign in and out
@router.get("/sign-in", response_class=HTMLResponse)
def sign_in_page(request: Request, next: str = "/dashboard/", expired: int = 0):  # noqa: A002
    refuse_api_credentials(request)
    return _sign_in(request, next_path=safe_next(next),
                    notice="Your session has ended; sign in again." if expired else None)  # fmt: skip


def _sign_in(request: Request, *, next_path: str, notice: str | None = None, error: str | None = None,
             name: str = "", status: int = 200) -> HTMLResponse:  # fmt: skip
    token = secrets.token_urlsafe(32)
    response = page(request, "sign_in.html", status=status, next=next_path, notice=notice, error=error, name=name,
                    csrf=token)  # fmt: skip
    set_sign_in_cookie(response, token)
    return response


@router.post("/sign-in", response_class=HTMLResponse)
async def sign_in(request: Request):
    refuse_api_credentials(request)
    same_origin(request)
    form = await request.form()
    name, password = str(form.get("name") or "").strip().lower(), str(form.get("password") or "")
    next_path = safe_next(str(form.get("next") or ""))
    if not accounts.same_token(str(form.get("csrf") or ""), request.cookies.get(SIGN_IN_COOKIE)):
        return _sign_in(request, next_path=next_path, name=name, status=403,
                        error="The sign-in form had expired or did not come from this page. Try again.")  # fmt: skip
    ctx = ctx_of(request)
    address = request.client.host if request.client else "unknown"
    wait = ctx.sign_in_limiter.retry_after(name=name, address=address)
    if wait:
        with transaction(ctx.sessions) as session:
            audit.record(session=session, actor=f"address:{address}", action="session.limited",
                         target=f"account:{name[:64]}")  # fmt: skip
        response = _sign_in(request, next_path=next_path, name=name, status=429,
                            error=f"Too many failed sign-in attempts for this account or from this computer. "
                                  f"Try again in {max(1, round(wait / 60))} minute(s).")  # fmt: skip
        response.headers["Retry-After"] = str(wait)
        return response
    with transaction(ctx.sessions) as session:
        account = accounts.authenticate(session=session, name=name, password=password)
        if account is None:
            audit.record(session=session, actor=f"address:{address}", action="session.refused",
                         target=f"account:{name[:64]}")  # fmt: skip
        else:
            token, signed = accounts.open_session(session=session, account=account)
            audit.record(session=session, actor=actor(signed), action="session.start", target=f"session:{signed.session_id}",
                         detail={"address": address})  # fmt: skip
    if account is None:
        ctx.sign_in_limiter.failed(name=name, address=address)
        return _sign_in(request, next_path=next_path, name=name, status=401,
                        error="That account name and password do not match an administrator account.")  # fmt: skip
    response = see_other(next_path)
    set_session_cookie(response, token, max_age=ctx.settings.session_lifetime_seconds)
    response.delete_cookie(SIGN_IN_COOKIE, path="/", secure=True, httponly=True, samesite="strict")
    return response


@router.post("/sign-out")
async def sign_out(request: Request):
    signed, _ = await checked_form(request)
    ctx = ctx_of(request)
    with transaction(ctx.sessions) as session:
        accounts.end_session(session=session, session_id=signed.session_id)
        audit.record(session=session, actor=actor(signed), action="session.end", target=f"session:{signed.session_id}")
    response = see_other("/dashboard/sign-in")
    clear_session_cookie(response)
    return response


# ---------------------------------------------------------------- workstations
@router.post("/tokens", response_class=HTMLResponse)
async def create_token(request: Request):
    signed, form = await checked_form(request)
    ctx = ctx_of(request)
    site, expires, note = form.get("site", "").strip(), form.get("expires", "24h"), form.get("note", "").strip()
    if not site or len(site) > 100 or any(ord(ch) < 32 for ch in site) or expires not in EXPIRIES or len(note) > 200:
        return page(request, "error.html", status=422, nav="workstations", title="Token not created",
                    message="Give the site's name (at most 100 characters), an expiry from the list and a note of at "
                            "most 200 characters.", back="/dashboard/workstations")  # fmt: skip
    created = enrollment.create_token(ctx=ctx, site=site, expires_in=dt.timedelta(seconds=EXPIRIES[expires]),
                                      note=note or None, actor=actor(signed))  # fmt: skip
    fingerprint = format_fingerprint(created.ca_fingerprint)
    host = request.url.hostname or "central"
    port = request.url.port or 443
    command = (f"fedxray enroll --central https://{host}:{port} --token {created.token} "
               f"--ca-fingerprint {fingerprint}")  # fmt: skip
    return page(request, "token_created.html", nav="workstations", token=created, fingerprint=fingerprint,
                fingerprint_groups=readable(created.ca_fingerprint), command=command)  # fmt: skip


@router.post("/tokens/{token_id}/revoke")
async def revoke_token(request: Request, token_id: int):
    signed, _ = await checked_form(request)
    try:
        enrollment.revoke_token(ctx=ctx_of(request), token_id=token_id, actor=actor(signed))
    except HTTPException as exc:
        return page(request, "error.html", status=exc.status_code, nav="workstations", title="Token not revoked",
                    message=str(exc.detail), back="/dashboard/workstations")  # fmt: skip
    return see_other("/dashboard/workstations")


@router.post("/workstations/{node_id}/revoke")
async def revoke_node(request: Request, node_id: int):
    signed, _ = await checked_form(request)
    ctx = ctx_of(request)
    try:
        enrollment.end_enrollment(ctx=ctx, node_id=node_id, new_status="revoked", actor=actor(signed))
    except HTTPException as exc:
        return page(request, "error.html", status=exc.status_code, nav="workstations", title="Workstation not revoked",
                    message=str(exc.detail), back="/dashboard/workstations")  # fmt: skip
    ctx.poll_superlink()
    return see_other("/dashboard/workstations")


# ---------------------------------------------------------------- runs
def run_form_page(request: Request, *, values: dict[str, str] | None, error: str | None,
                  status: int = 200) -> HTMLResponse:  # fmt: skip
    defaults = run_views.settable_defaults()
    grouped, seen = [], set()
    for title, keys in GROUPS.items():
        fields = [_field(k, defaults[k], values) for k in keys if k in defaults]
        seen.update(keys)
        grouped.append((title, fields))
    other = [_field(k, v, values) for k, v in defaults.items() if k not in seen]
    if other:
        grouped.append(("Other", other))
    online = run_views.sites_online(ctx_of(request))
    named = re.findall(r"'([a-z0-9-]+)'", error or "") + re.findall(r"setting\(s\) ([a-z0-9-]+)", error or "")
    invalid = next((k for k in named if k in defaults), None)
    return page(request, "run_new.html", status=status, nav="runs", groups=grouped, error=error, online=online,
                invalid=invalid)  # fmt: skip


def _field(key: str, default: Any, values: dict[str, str] | None) -> dict[str, Any]:
    kind = ("bool" if isinstance(default, bool) else "int" if isinstance(default, int)
            else "float" if isinstance(default, float) else "str")  # fmt: skip
    shown = _text(default)
    value = values.get(key, shown) if values is not None else shown
    return {"key": key, "kind": kind, "default": shown, "value": value, "choices": _choices().get(key),
            "changed": value != shown}  # fmt: skip


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, float) else str(value)


def parse_run_form(form: dict[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """(settings that differ from the app's defaults, the submitted texts); values are read in the type of the
    default (the lifecycle checks them again and refuses what does not fit)."""
    defaults = run_views.settable_defaults()
    settings, texts = {}, {}
    for key, default in defaults.items():
        if key not in form:
            continue
        text = form[key].strip()
        texts[key] = text
        if text == _text(default):
            continue
        settings[key] = text if isinstance(default, str) else parse_value(text)
    return settings, texts


@router.post("/runs", response_class=HTMLResponse)
async def start_run(request: Request):
    signed, form = await checked_form(request)
    ctx = ctx_of(request)
    settings, texts = parse_run_form(form)
    try:
        started = ctx.runs.start(settings=settings, started_by=signed.account, actor=actor(signed))
    except RunError as exc:
        return run_form_page(request, values=texts, error=str(exc), status=422 if exc.kind == "invalid" else 503)
    return see_other(f"/dashboard/runs/{started.run.id}")


@router.post("/runs/{run_id}/stop")
async def stop_run(request: Request, run_id: int):
    signed, _ = await checked_form(request)
    try:
        ctx_of(request).runs.stop(run_id, actor=actor(signed), who=f"{signed.account} (dashboard)")
    except RunError as exc:
        return page(request, "error.html", status=409 if exc.kind != "unavailable" else 503, nav="runs",
                    title="Run not stopped", message=str(exc), back=f"/dashboard/runs/{run_id}")  # fmt: skip
    return see_other(f"/dashboard/runs/{run_id}")


# ---------------------------------------------------------------- models
@router.post("/models/{version}/release")
async def release(request: Request, version: str):
    signed, _ = await checked_form(request)
    ctx = ctx_of(request)
    try:
        release_version(sessions=ctx.sessions, home=ctx.home, version=version, actor=actor(signed))
    except ReleaseRefused as exc:
        return page(request, "error.html", status=exc.status, nav="models", title="Not released", message=str(exc),
                    back="/dashboard/models")  # fmt: skip
    return see_other("/dashboard/models")

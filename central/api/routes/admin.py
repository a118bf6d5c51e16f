"""Admin routes: enrolment tokens, nodes, administrator accounts, audit log (admin credential only)."""

from __future__ import annotations

import datetime as dt

from fastapi import APIRouter, HTTPException, Path, Query, status

from central import enrollment
from central.api.deps import AdminDep, ContextDep, SessionDep
from central.crud import audit
from central.crud import enrollment as crud
from central.dashboard import accounts
from central.db.engine import transaction
from central.schemas import (
    AccountCreate,
    AccountPublic,
    AuditPublic,
    NodePublic,
    TokenCreate,
    TokenCreated,
    TokenPublic,
)

router = APIRouter(prefix="/api/v1/admin", tags=["admin"])


def _token_public(row) -> TokenPublic:
    return TokenPublic(
        id=row.id, site=row.site.name, state=crud.token_state(row), created_at=row.created_at,
        expires_at=row.expires_at, used_at=row.used_at, revoked_at=row.revoked_at, note=row.note,
    )  # fmt: skip


@router.post("/tokens", response_model=TokenCreated, status_code=status.HTTP_201_CREATED)
def create_token(body: TokenCreate, principal: AdminDep, ctx: ContextDep) -> TokenCreated:
    """Create a one-time enrolment token for a site (the token is shown once)."""
    return enrollment.create_token(
        ctx=ctx, site=body.site, expires_in=dt.timedelta(seconds=body.expires_in_seconds), note=body.note,
        actor=principal.actor,
    )  # fmt: skip


@router.get("/tokens", response_model=list[TokenPublic])
def list_tokens(principal: AdminDep, session: SessionDep) -> list[TokenPublic]:
    """Every enrolment token and its state (never the token itself)."""
    return [_token_public(row) for row in crud.list_tokens(session=session)]


@router.post("/tokens/{token_id}/revoke", response_model=TokenPublic)
def revoke_token(principal: AdminDep, ctx: ContextDep, token_id: int = Path(ge=1, le=2**31 - 1)) -> TokenPublic:
    """Revoke an unused token."""
    return _token_public(enrollment.revoke_token(ctx=ctx, token_id=token_id, actor=principal.actor))


@router.get("/nodes", response_model=list[NodePublic])
def list_nodes(principal: AdminDep, ctx: ContextDep, session: SessionDep) -> list[NodePublic]:
    """Every workstation ever enrolled, with what the SuperLink says about it now."""
    ctx.poll_superlink()
    return [enrollment.node_public(ctx, ws) for ws in crud.list_workstations(session=session)]


@router.post("/nodes/{node_id}/revoke", response_model=NodePublic)
def revoke_node(principal: AdminDep, ctx: ContextDep, node_id: int = Path(ge=1, le=2**64 - 1)) -> NodePublic:
    """Unregister a node in Flower (a running SuperNode is cut off) and revoke its credential."""
    enrollment.end_enrollment(ctx=ctx, node_id=node_id, new_status="revoked", actor=principal.actor)
    ctx.poll_superlink()
    with ctx.sessions() as session:
        return enrollment.node_public(ctx, crud.get_workstation(session=session, node_id=node_id))


@router.get("/audit", response_model=list[AuditPublic])
def list_audit(principal: AdminDep, session: SessionDep, limit: int = Query(200, ge=1, le=5000)) -> list[AuditPublic]:
    """Most recent audit events first."""
    return [AuditPublic.model_validate(e) for e in audit.list_events(session=session, limit=limit)]


@router.post("/accounts", response_model=AccountPublic, status_code=status.HTTP_201_CREATED)
def create_account(body: AccountCreate, principal: AdminDep, ctx: ContextDep) -> AccountPublic:
    """Create an administrator account for the dashboard (`fedxray-central admin create`)."""
    try:
        with transaction(ctx.sessions) as session:
            row = accounts.create_account(session=session, name=body.name, password=body.password,
                                          created_by=principal.actor)  # fmt: skip
            return AccountPublic.model_validate(row)
    except accounts.AccountError as exc:
        raise HTTPException(409 if "already exists" in str(exc) else 422, detail=str(exc)) from None


@router.get("/accounts", response_model=list[AccountPublic])
def list_accounts(principal: AdminDep, session: SessionDep) -> list[AccountPublic]:
    """Every administrator account (never a password or its hash)."""
    return [AccountPublic.model_validate(a) for a in accounts.list_accounts(session=session)]

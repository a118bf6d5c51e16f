"""Admin routes: enrolment tokens, nodes, audit log (admin credential only)."""

from __future__ import annotations

import datetime as dt

from fastapi import APIRouter, HTTPException, Path, Query, status

from central import enrollment
from central.api.deps import AdminDep, ContextDep, SessionDep
from central.crud import audit
from central.crud import enrollment as crud
from central.schemas import AuditPublic, NodePublic, TokenCreate, TokenCreated, TokenPublic

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
def revoke_token(
    principal: AdminDep, session: SessionDep, token_id: int = Path(ge=1, le=2**31 - 1)
) -> TokenPublic:
    """Revoke an unused token."""
    row = crud.get_token(session=session, token_id=token_id)
    if row is None:
        raise HTTPException(404, detail=f"No enrolment token has id {token_id}.")
    if not crud.revoke_token(session=session, token=row):
        raise HTTPException(409, detail=f"Token {token_id} is already {crud.token_state(row)}.")
    audit.record(session=session, actor=principal.actor, action="token.revoke", target=f"token:{token_id}")
    return _token_public(row)


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

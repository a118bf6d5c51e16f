"""Enrolment operations that span the store and the SuperLink (redeem a token, end an enrolment, list nodes)."""

from __future__ import annotations

import datetime as dt
import logging
import time

from fastapi import HTTPException, status

from central.api.context import CentralContext
from central.crud import audit
from central.crud import credentials as credentials_crud
from central.crud import enrollment as crud
from central.db.engine import transaction
from central.db.models import Workstation, utcnow
from central.flower.control import SuperLinkError
from central.schemas import EnrollmentPublic, NodePublic, TokenCreated
from central.security import PublicKeyError, node_public_key_pem, public_key_sha256

log = logging.getLogger("central.enrollment")

TOKEN_REFUSALS = {
    "unknown": (status.HTTP_401_UNAUTHORIZED, "Enrolment token not recognised: check that it was copied whole."),
    "used": (status.HTTP_403_FORBIDDEN, "This enrolment token has already been used; ask IT for a new one."),
    "revoked": (status.HTTP_403_FORBIDDEN, "This enrolment token was revoked by IT; ask IT for a new one."),
    "expired": (status.HTTP_403_FORBIDDEN, "This enrolment token has expired; ask IT for a new one."),
}


def create_token(
    *, ctx: CentralContext, site: str, expires_in: dt.timedelta, note: str | None, actor: str
) -> TokenCreated:
    """Create a one-time enrolment token for `site`."""
    with transaction(ctx.sessions) as session:
        row, token = crud.create_token(
            session=session, site_name=site, expires_at=utcnow() + expires_in,
            ca_fingerprint=ctx.ca_fingerprint, note=note,
        )  # fmt: skip
        audit.record(session=session, actor=actor, action="token.create", target=f"token:{row.id}",
                     detail={"site": site, "expires_at": row.expires_at.isoformat()})  # fmt: skip
        return TokenCreated(id=row.id, token=token, site=site, expires_at=row.expires_at,
                            ca_fingerprint=ctx.ca_fingerprint)  # fmt: skip


def revoke_token(*, ctx: CentralContext, token_id: int, actor: str):
    """Revoke an unused enrolment token; HTTPException 404 / 409 when there is none or it was used."""
    with transaction(ctx.sessions) as session:
        row = crud.get_token(session=session, token_id=token_id)
        if row is None:
            raise HTTPException(404, detail=f"No enrolment token has id {token_id}.")
        if not crud.revoke_token(session=session, token=row):
            raise HTTPException(409, detail=f"Token {token_id} is already {crud.token_state(row)}.")
        audit.record(session=session, actor=actor, action="token.revoke", target=f"token:{token_id}",
                     detail={"site": row.site.name})  # fmt: skip
        return row


def redeem(
    *, ctx: CentralContext, token: str, public_key: str, hostname: str | None, superlink_address: str
) -> EnrollmentPublic:
    """Enrol a workstation: claim the token, register its key with the SuperLink, issue its credential.
    Every failure leaves the token usable unless the token itself was the problem."""
    try:
        pem = node_public_key_pem(public_key)
    except PublicKeyError as exc:
        raise HTTPException(422, detail=str(exc)) from exc
    key_hash = public_key_sha256(pem)
    if ctx.control is None:
        raise HTTPException(503, detail="The SuperLink is not available; the token was not used, try again.")
    with transaction(ctx.sessions) as session:
        existing = crud.find_workstation_by_key(session=session, public_key_sha256=key_hash)
        if existing is not None:
            raise HTTPException(409, detail="This public key is already enrolled; generate a new key pair.")
        claim = crud.claim_token(session=session, token=token)
        if claim.token is None:
            code, detail = TOKEN_REFUSALS[claim.reason]
            log.info("enrolment refused: token %s", claim.reason)
            raise HTTPException(code, detail=detail)
        token_id, site_id, site = claim.token.id, claim.token.site_id, claim.token.site.name
    try:
        node_id = ctx.control.register_node(public_key_pem=pem, name=site)
    except SuperLinkError as exc:
        _unclaim(ctx, token_id)
        if "already in use" in str(exc).lower():
            raise HTTPException(409, detail="This public key is already registered with the SuperLink.") from exc
        log.error("enrolment: SuperLink registration failed: %s", exc)
        raise HTTPException(503, detail="The SuperLink is not available; the token was not used, try again.") from exc
    try:
        with transaction(ctx.sessions) as session:
            ws = crud.create_workstation(
                session=session, site_id=site_id, node_id=node_id, public_key_pem=pem,
                public_key_sha256=key_hash, hostname=hostname, token_id=token_id,
            )  # fmt: skip
            _, credential = credentials_crud.create_credential(
                session=session, role="workstation", name=f"node-{node_id}", workstation_id=ws.id
            )
            audit.record(session=session, actor=f"workstation:{node_id}", action="node.enroll",
                         target=f"node:{node_id}", detail={"site": site, "token": token_id,
                                                           "hostname": hostname})  # fmt: skip
            enrolled_at = ws.enrolled_at
    except Exception:
        log.exception("enrolment: storing node %s failed; unregistering it", node_id)
        try:
            ctx.control.unregister_node(node_id)
        except SuperLinkError:
            log.error("enrolment: could not unregister node %s after a failure", node_id)
        _unclaim(ctx, token_id)
        raise
    log.info("enrolled node %s for site %r", node_id, site)
    return EnrollmentPublic(
        node_id=node_id, site=site, superlink_address=superlink_address, ca_certificate=ctx.ca_pem,
        ca_fingerprint=ctx.ca_fingerprint, model_signing_public_key=ctx.signing_public_pem,
        credential=credential, enrolled_at=enrolled_at,
    )  # fmt: skip


def _unclaim(ctx: CentralContext, token_id: int) -> None:
    with transaction(ctx.sessions) as session:
        crud.unclaim_token(session=session, token_id=token_id)


def end_enrollment(*, ctx: CentralContext, node_id: int, new_status: str, actor: str) -> Workstation:
    """Revoke a node (IT) or let it leave (itself): unregister it in Flower, then revoke its credential.
    The Fleet proxy turns its key away at once; Flower cuts a running SuperNode off at its next heartbeat."""
    with ctx.sessions() as session:
        ws = crud.get_workstation(session=session, node_id=node_id)
    if ws is None:
        raise HTTPException(404, detail=f"No enrolled workstation has node id {node_id}.")
    if ws.status != "active":
        raise HTTPException(409, detail=f"Node {node_id} is already {ws.status}.")
    if ctx.control is None:
        raise HTTPException(503, detail="The SuperLink is not available; nothing was changed, try again.")
    try:
        ctx.control.unregister_node(node_id)
    except SuperLinkError as exc:
        # Already gone from the SuperLink (e.g. unregistered by hand)? Then finishing here is safe.
        try:
            known = ctx.control.list_nodes()
        except SuperLinkError:
            known = None
        if known is None or (node_id in known and known[node_id].status != "unregistered"):
            log.error("unregistering node %s failed: %s", node_id, exc)
            raise HTTPException(503, detail="The SuperLink refused to unregister the node; nothing was changed.") from exc
    ctx.fleet.blocked_keys.add(ws.public_key_sha256)
    now = utcnow()
    with transaction(ctx.sessions) as session:
        ws = crud.get_workstation(session=session, node_id=node_id)
        crud.end_workstation(session=session, workstation=ws, status=new_status, at=now)
        credentials_crud.revoke_workstation_credentials(session=session, workstation_id=ws.id, at=now)
        audit.record(session=session, actor=actor, action=f"node.{'revoke' if new_status == 'revoked' else 'leave'}",
                     target=f"node:{node_id}")  # fmt: skip
    log.info("node %s %s by %s", node_id, new_status, actor)
    return ws


def node_public(ctx: CentralContext, ws: Workstation) -> NodePublic:
    """A workstation as admins and the workstation itself see it."""
    state = ctx.superlink.nodes.get(int(ws.node_id)) if ctx.superlink.up else None
    online: bool | None = None
    if ctx.superlink.up:
        online = bool(
            state is not None and state.status == "online" and (state.online_until or 0) > time.time()
        ) and ws.status == "active"
    last_seen = ws.last_seen_at
    pending = ctx.fleet.peek_seen().get(ws.public_key_sha256)
    if pending is not None and (last_seen is None or pending > last_seen):
        last_seen = pending
    return NodePublic(
        node_id=int(ws.node_id), site=ws.site.name, hostname=ws.hostname, status=ws.status,
        enrolled_at=ws.enrolled_at, last_seen_at=last_seen, revoked_at=ws.revoked_at, online=online,
        superlink_status=state.status if state is not None else None,
    )  # fmt: skip

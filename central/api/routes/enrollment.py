"""Enrolment (no credential: the token is the credential) and the workstation's own routes."""

from __future__ import annotations

from fastapi import APIRouter, Request, status

from central import enrollment
from central.api.deps import ContextDep, WorkstationDep
from central.crud.enrollment import get_workstation
from central.schemas import CAPublic, EnrollmentCreate, EnrollmentPublic, Message, NodePublic

router = APIRouter(prefix="/api/v1", tags=["enrolment"])


@router.get("/enrollment/ca", response_model=CAPublic)
def get_ca(ctx: ContextDep) -> CAPublic:
    """The CA certificate; the workstation checks its fingerprint before trusting anything else."""
    return CAPublic(ca_certificate=ctx.ca_pem, fingerprint=ctx.ca_fingerprint)


@router.post("/enrollment", response_model=EnrollmentPublic, status_code=status.HTTP_201_CREATED,
             responses={401: {"model": Message}, 403: {"model": Message}, 409: {"model": Message}})  # fmt: skip
def enroll(body: EnrollmentCreate, request: Request, ctx: ContextDep) -> EnrollmentPublic:
    """Redeem a one-time token: register the workstation's public key and issue its credential."""
    address = ctx.settings.public_address or request.headers.get("host") or f"{request.url.hostname}:{request.url.port}"
    return enrollment.redeem(
        ctx=ctx, token=body.token, public_key=body.public_key, hostname=body.hostname, superlink_address=address
    )


@router.get("/workstation", response_model=NodePublic, tags=["workstation"])
def my_status(principal: WorkstationDep, ctx: ContextDep) -> NodePublic:
    """The calling workstation's enrolment, as the central sees it."""
    return enrollment.node_public(ctx, principal.workstation)


@router.post("/workstation/leave", response_model=NodePublic, tags=["workstation"])
def leave(principal: WorkstationDep, ctx: ContextDep) -> NodePublic:
    """The workstation leaves the federation: unregistered in Flower, credential revoked."""
    node_id = int(principal.workstation.node_id)
    enrollment.end_enrollment(ctx=ctx, node_id=node_id, new_status="left", actor=principal.actor)
    with ctx.sessions() as session:
        return enrollment.node_public(ctx, get_workstation(session=session, node_id=node_id))

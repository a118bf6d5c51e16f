"""Route dependencies: the store session, the service context and who is calling."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from central.api.context import CentralContext
from central.crud import credentials as credentials_crud
from central.db.models import Workstation

bearer = HTTPBearer(auto_error=False, description="FedXray credential: admin, service or workstation")


def get_context(request: Request) -> CentralContext:
    return request.app.state.central


def get_session(ctx: Annotated[CentralContext, Depends(get_context)]) -> Iterator[Session]:
    """A session whose transaction commits when the route returns without error."""
    with ctx.sessions() as session, session.begin():
        yield session


ContextDep = Annotated[CentralContext, Depends(get_context)]
# scope="function": the transaction commits before the response is sent, so a failed commit is a 500
# the caller sees, and a caller reading right after a write sees it.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]

ROLE_NAMES = {"admin": "the admin credential", "service": "the service credential",
              "workstation": "a workstation credential"}  # fmt: skip


@dataclass(frozen=True)
class Principal:
    """The authenticated caller."""

    role: str  # admin | service | workstation
    name: str
    workstation: Workstation | None

    @property
    def actor(self) -> str:
        if self.workstation is not None:
            return f"workstation:{self.workstation.node_id}"
        return self.role


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail=detail, headers={"WWW-Authenticate": "Bearer"})


def authenticate(
    session: SessionDep, creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> Principal:
    """The caller of this request, from `Authorization: Bearer <credential>`."""
    if creds is None or not creds.credentials:
        raise _unauthorized("Missing credential: send 'Authorization: Bearer <credential>'.")
    row = credentials_crud.find_credential(session=session, secret=creds.credentials)
    if row is None:
        raise _unauthorized("Credential not recognised.")
    if row.revoked_at is not None:
        raise _unauthorized("Credential has been revoked; this workstation must be enrolled again.")
    if row.role == "workstation" and (row.workstation is None or row.workstation.status != "active"):
        raise _unauthorized("This workstation's enrolment has ended; it must be enrolled again.")
    return Principal(role=row.role, name=row.name, workstation=row.workstation)


def require(*roles: str):
    """Dependency allowing only callers with one of `roles`."""

    def check(principal: Annotated[Principal, Depends(authenticate)]) -> Principal:
        if principal.role not in roles:
            needed = " or ".join(ROLE_NAMES[r] for r in roles)
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                detail=f"This route needs {needed}; the request used {ROLE_NAMES[principal.role]}.",
            )
        return principal

    return check


AdminDep = Annotated[Principal, Depends(require("admin"))]
WorkstationDep = Annotated[Principal, Depends(require("workstation"))]
ReaderDep = Annotated[Principal, Depends(require("admin", "workstation", "service"))]
WriterDep = Annotated[Principal, Depends(require("service", "admin"))]
# What only the ServerApp reports (a run's progress): administrators start and stop runs through the admin routes.
ServiceDep = Annotated[Principal, Depends(require("service"))]

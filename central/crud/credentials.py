"""API credentials: create, authenticate, revoke (only SHA-256 hashes are stored)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from central.db.models import Credential, utcnow
from central.security import hash_secret, new_credential

ROLES = ("admin", "service", "workstation")


def create_credential(
    *, session: Session, role: str, name: str, workstation_id: int | None = None
) -> tuple[Credential, str]:
    """Create a credential; returns the row and the secret (shown once, never stored)."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}")
    secret = new_credential(role)
    row = Credential(role=role, name=name, secret_hash=hash_secret(secret), workstation_id=workstation_id)
    session.add(row)
    session.flush()
    return row, secret


def ensure_credential(*, session: Session, role: str, name: str, secret: str) -> Credential:
    """Make `secret` the one active credential called `name` (admin/service files in the home)."""
    digest = hash_secret(secret)
    row = session.scalar(select(Credential).where(Credential.secret_hash == digest))
    session.execute(
        update(Credential)
        .where(
            Credential.role == role,
            Credential.name == name,
            Credential.secret_hash != digest,
            Credential.revoked_at.is_(None),
        )
        .values(revoked_at=utcnow())
    )
    if row is None:
        row = Credential(role=role, name=name, secret_hash=digest)
        session.add(row)
        session.flush()
    elif row.revoked_at is not None or row.role != role:
        raise ValueError(f"the {name} credential in the home was revoked; replace the file with a new secret")
    return row


def find_credential(*, session: Session, secret: str) -> Credential | None:
    """The credential row for `secret` (revoked or not), or None."""
    return session.scalar(select(Credential).where(Credential.secret_hash == hash_secret(secret)))


def revoke_workstation_credentials(*, session: Session, workstation_id: int, at: dt.datetime) -> int:
    """Revoke every credential of a workstation; returns how many were active."""
    result = session.execute(
        update(Credential)
        .where(Credential.workstation_id == workstation_id, Credential.revoked_at.is_(None))
        .values(revoked_at=at)
    )
    return result.rowcount

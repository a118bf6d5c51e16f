"""Sites, enrolment tokens (hashed, expiring, single use) and enrolled workstations."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from central.db.models import EnrollmentToken, Site, Workstation, utcnow
from central.security import hash_secret, new_enrollment_token


def get_or_create_site(*, session: Session, name: str) -> Site:
    """The site called `name`, created on first use."""
    site = session.scalar(select(Site).where(Site.name == name))
    if site is None:
        site = Site(name=name)
        session.add(site)
        session.flush()
    return site


def create_token(
    *, session: Session, site_name: str, expires_at: dt.datetime, ca_fingerprint: str, note: str | None = None
) -> tuple[EnrollmentToken, str]:
    """Create a one-time enrolment token; returns the row and the token text (never stored)."""
    site = get_or_create_site(session=session, name=site_name)
    token = new_enrollment_token(ca_fingerprint)
    row = EnrollmentToken(token_hash=hash_secret(token), site_id=site.id, expires_at=expires_at, note=note)
    session.add(row)
    session.flush()
    session.refresh(row)
    return row, token


def token_state(token: EnrollmentToken, *, now: dt.datetime | None = None) -> str:
    """`used`, `revoked`, `expired` or `active`."""
    now = now or utcnow()
    if token.used_at is not None:
        return "used"
    if token.revoked_at is not None:
        return "revoked"
    if token.expires_at <= now:
        return "expired"
    return "active"


def list_tokens(*, session: Session) -> list[EnrollmentToken]:
    """Every token, newest first."""
    return list(session.scalars(select(EnrollmentToken).order_by(EnrollmentToken.id.desc())))


def get_token(*, session: Session, token_id: int) -> EnrollmentToken | None:
    """A token by id."""
    return session.get(EnrollmentToken, token_id)


@dataclass(frozen=True)
class Claim:
    """Outcome of a redemption attempt: the token row when it was claimed, else why not."""

    token: EnrollmentToken | None
    reason: str  # "claimed" | "unknown" | "used" | "revoked" | "expired"


def claim_token(*, session: Session, token: str, now: dt.datetime | None = None) -> Claim:
    """Atomically mark an active token used (one conditional UPDATE: two racing redemptions cannot both win)."""
    now = now or utcnow()
    digest = hash_secret(token)
    result = session.execute(
        update(EnrollmentToken)
        .where(
            EnrollmentToken.token_hash == digest,
            EnrollmentToken.used_at.is_(None),
            EnrollmentToken.revoked_at.is_(None),
            EnrollmentToken.expires_at > now,
        )
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    row = session.scalar(
        select(EnrollmentToken).where(EnrollmentToken.token_hash == digest).execution_options(populate_existing=True)
    )
    if result.rowcount == 1 and row is not None:
        return Claim(token=row, reason="claimed")
    if row is None:
        return Claim(token=None, reason="unknown")
    return Claim(token=None, reason=token_state(row, now=now))


def unclaim_token(*, session: Session, token_id: int) -> None:
    """Give a claimed token back (the enrolment it was claimed for could not complete)."""
    session.execute(
        update(EnrollmentToken)
        .where(EnrollmentToken.id == token_id)
        .values(used_at=None)
        .execution_options(synchronize_session=False)
    )


def revoke_token(*, session: Session, token: EnrollmentToken, at: dt.datetime | None = None) -> bool:
    """Revoke an unused token; False when it was already used or revoked."""
    if token.used_at is not None or token.revoked_at is not None:
        return False
    token.revoked_at = at or utcnow()
    return True


def create_workstation(
    *,
    session: Session,
    site_id: int,
    node_id: int,
    public_key_pem: str,
    public_key_sha256: str,
    hostname: str | None,
    token_id: int | None,
) -> Workstation:
    """Record an enrolled workstation."""
    row = Workstation(
        site_id=site_id,
        node_id=str(node_id),
        public_key_pem=public_key_pem,
        public_key_sha256=public_key_sha256,
        hostname=hostname,
        token_id=token_id,
    )
    session.add(row)
    session.flush()
    session.refresh(row)
    return row


def list_workstations(*, session: Session) -> list[Workstation]:
    """Every workstation ever enrolled, in enrolment order."""
    return list(session.scalars(select(Workstation).order_by(Workstation.id)))


def get_workstation(*, session: Session, node_id: int | str) -> Workstation | None:
    """A workstation by its Flower node id."""
    return session.scalar(select(Workstation).where(Workstation.node_id == str(node_id)))


def find_workstation_by_key(*, session: Session, public_key_sha256: str) -> Workstation | None:
    """A workstation by the SHA-256 of its public key."""
    return session.scalar(select(Workstation).where(Workstation.public_key_sha256 == public_key_sha256))


def end_workstation(*, session: Session, workstation: Workstation, status: str, at: dt.datetime) -> None:
    """Mark a workstation `revoked` (by IT) or `left` (by itself)."""
    if status not in ("revoked", "left"):
        raise ValueError(status)
    workstation.status = status
    workstation.revoked_at = at


def blocked_key_hashes(*, session: Session) -> set[str]:
    """Public keys of workstations that were revoked or left (the Fleet proxy turns them away)."""
    return set(session.scalars(select(Workstation.public_key_sha256).where(Workstation.status != "active")))


def record_last_seen(*, session: Session, seen: dict[str, dt.datetime]) -> None:
    """Store when each public key last made a successful Fleet call (only ever moves forward)."""
    for key_hash, at in seen.items():
        session.execute(
            update(Workstation)
            .where(
                Workstation.public_key_sha256 == key_hash,
                (Workstation.last_seen_at.is_(None)) | (Workstation.last_seen_at < at),
            )
            .values(last_seen_at=at)
            .execution_options(synchronize_session=False)
        )

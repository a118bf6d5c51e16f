"""Audit events: who changed what (never a secret)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from central.db.models import AuditEvent


def record(
    *, session: Session, actor: str, action: str, target: str | None = None, detail: dict[str, Any] | None = None
) -> AuditEvent:
    """Append an audit event in the caller's transaction."""
    row = AuditEvent(actor=actor, action=action, target=target, detail=detail or {})
    session.add(row)
    return row


def list_events(*, session: Session, limit: int = 200) -> list[AuditEvent]:
    """Most recent events first."""
    return list(session.scalars(select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)))

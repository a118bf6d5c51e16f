"""Audit events: who changed what (never a secret)."""

from __future__ import annotations

import datetime as dt
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


def list_events(*, session: Session, limit: int = 200, actor: str | None = None, action: str | None = None,
                since: dt.datetime | None = None, until: dt.datetime | None = None) -> list[AuditEvent]:  # fmt: skip
    """Most recent events first; `actor` matches part of the actor, `action` its start (e.g. "run." or
    "run.start"), `since`/`until` bound the time."""
    query = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)
    if actor:
        query = query.where(AuditEvent.actor.contains(actor, autoescape=True))
    if action:
        query = query.where(AuditEvent.action.startswith(action, autoescape=True))
    if since is not None:
        query = query.where(AuditEvent.at >= since)
    if until is not None:
        query = query.where(AuditEvent.at <= until)
    return list(session.scalars(query))


def actions(*, session: Session) -> list[str]:
    """Every action recorded so far, sorted."""
    return sorted(session.scalars(select(AuditEvent.action).distinct()))

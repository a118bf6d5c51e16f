"""Runs and their per-round metrics (written by the ServerApp, read by everyone enrolled)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from central.db.models import Round, RoundReply, Run, utcnow

RUN_STATUSES = ("pending", "running", "interrupted", "finished", "failed", "stopped")
# Not ended: the central's run keeper watches these (and resumes an interrupted one).
ACTIVE_STATUSES = ("pending", "running", "interrupted")


def create_run(
    *,
    session: Session,
    num_rounds: int,
    min_sites: int,
    config: dict[str, Any],
    flower_run_id: str | None = None,
    app_dir: str | None = None,
    started_by: str | None = None,
) -> Run:
    """Record a new run."""
    row = Run(num_rounds=num_rounds, min_sites=min_sites, config=config, flower_run_id=flower_run_id,
              app_dir=app_dir, resumes=0, started_by=started_by)  # fmt: skip
    session.add(row)
    session.flush()
    session.refresh(row)
    return row


def get_run(*, session: Session, run_id: int) -> Run | None:
    """A run by id."""
    return session.get(Run, run_id)


def get_run_by_flower_id(*, session: Session, flower_run_id: str) -> Run | None:
    """A run by the SuperLink's run id."""
    return session.scalar(select(Run).where(Run.flower_run_id == flower_run_id))


def list_runs(*, session: Session, limit: int = 100, offset: int = 0) -> list[Run]:
    """Runs, newest first."""
    return list(session.scalars(select(Run).order_by(Run.id.desc()).limit(limit).offset(offset)))


def update_run(
    *,
    session: Session,
    run: Run,
    status: str | None = None,
    flower_run_id: str | None = None,
    message: str | None = None,
    fab: dict[str, Any] | None = None,
) -> Run:
    """Change a run's status (timestamps follow), Flower run id, message or app identity."""
    now = utcnow()
    if status is not None and run.status == "stopped" and status != "stopped":
        status = message = (
            None  # an admin stopped it: what a dying ServerApp reports afterwards changes nothing
        )
    if status == "interrupted" and run.status in ("finished", "failed"):
        status = message = None  # an interruption reported late does not reopen a run that ended
    if status is not None:
        if status not in RUN_STATUSES:
            raise ValueError(f"unknown run status {status!r}")
        run.status = status
        if status == "running" and run.started_at is None:
            run.started_at = now
        if status in ("finished", "failed", "stopped"):
            run.finished_at = now
    if flower_run_id is not None:
        run.flower_run_id = flower_run_id
    if message is not None:
        run.message = message
    if fab is not None:
        run.fab = fab
    session.flush()
    return run


def active_runs(*, session: Session) -> list[Run]:
    """Runs that have not ended, oldest first."""
    return list(session.scalars(select(Run).where(Run.status.in_(ACTIVE_STATUSES)).order_by(Run.id)))


def forget_rounds_after(*, session: Session, run: Run, server_round: int) -> int:
    """Delete a run's round records after `server_round` (they are redone when the run resumes)."""
    rows = list(
        session.scalars(select(Round).where(Round.run_id == run.id, Round.server_round > server_round))
    )
    for row in rows:
        session.delete(row)
    session.execute(delete(RoundReply).where(RoundReply.run_id == run.id, RoundReply.server_round > server_round))
    session.flush()
    return len(rows)


def upsert_round(
    *,
    session: Session,
    run: Run,
    server_round: int,
    num_sites: int | None = None,
    train_metrics: dict[str, Any] | None = None,
    evaluate_metrics: dict[str, Any] | None = None,
    server_metrics: dict[str, Any] | None = None,
) -> Round:
    """Create or update a round's metrics; fields not given keep their stored value."""
    row = session.scalar(select(Round).where(Round.run_id == run.id, Round.server_round == server_round))
    if row is None:
        row = Round(
            run_id=run.id, server_round=server_round, train_metrics={}, evaluate_metrics={}, server_metrics={}
        )
        session.add(row)
    if num_sites is not None:
        row.num_sites = num_sites
    if train_metrics is not None:
        row.train_metrics = train_metrics
    if evaluate_metrics is not None:
        row.evaluate_metrics = evaluate_metrics
    if server_metrics is not None:
        row.server_metrics = server_metrics
    row.updated_at = utcnow()
    session.flush()
    return row


def list_rounds(*, session: Session, run: Run) -> list[Round]:
    """A run's rounds in order."""
    return list(session.scalars(select(Round).where(Round.run_id == run.id).order_by(Round.server_round)))


def record_replies(*, session: Session, run: Run, server_round: int, replies: list[dict[str, Any]]) -> None:
    """Replace the sites' replies of one round (a round reported again reports all its replies again)."""
    session.execute(delete(RoundReply).where(RoundReply.run_id == run.id, RoundReply.server_round == server_round))
    for r in replies:
        session.add(RoundReply(run_id=run.id, server_round=server_round, node_id=str(r["node_id"]), phase=r["phase"],
                               verdict=r["verdict"], arrays_sha256=r.get("arrays_sha256")))  # fmt: skip
    session.flush()


def participation(*, session: Session) -> dict[str, dict[str, int]]:
    """Per node id: how many runs it took part in (an accepted training reply) and how many it declined."""
    out: dict[str, dict[str, int]] = {}
    query = (select(RoundReply.node_id, RoundReply.verdict, func.count(func.distinct(RoundReply.run_id)))
             .where(((RoundReply.verdict == "accepted") & (RoundReply.phase == "train"))
                    | (RoundReply.verdict == "declined"))
             .group_by(RoundReply.node_id, RoundReply.verdict))  # fmt: skip
    for node_id, verdict, count in session.execute(query):
        entry = out.setdefault(node_id, {"runs": 0, "declined": 0})
        entry["runs" if verdict == "accepted" else "declined"] = int(count)
    return out


def replies_of(*, session: Session, run: Run) -> list[RoundReply]:
    """A run's recorded replies by round."""
    return list(session.scalars(select(RoundReply).where(RoundReply.run_id == run.id)
                                .order_by(RoundReply.server_round, RoundReply.id)))  # fmt: skip

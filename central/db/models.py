"""SQLAlchemy tables of the central store (sites, workstations, tokens, credentials, runs, models, audit)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> dt.datetime:
    """Current time, timezone-aware UTC."""
    return dt.datetime.now(dt.UTC)


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use timezone-aware UTC")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: dt.datetime | None, dialect) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


class Base(DeclarativeBase):
    """Declarative base of every central table."""


class Site(Base):
    __tablename__ = "sites"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class EnrollmentToken(Base):
    __tablename__ = "enrollment_tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id", ondelete="RESTRICT"), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    note: Mapped[str | None] = mapped_column(String(200), nullable=True)
    site: Mapped[Site] = relationship(lazy="joined")


class Workstation(Base):
    """An enrolled workstation: one Flower SuperNode (node id) with its public key."""

    __tablename__ = "workstations"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id", ondelete="RESTRICT"), index=True)
    # Flower node ids are unsigned 64-bit integers: stored as decimal text (PostgreSQL BIGINT is signed).
    node_id: Mapped[str] = mapped_column(String(20), unique=True)
    public_key_pem: Mapped[str] = mapped_column(Text)
    public_key_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    hostname: Mapped[str | None] = mapped_column(String(100), nullable=True)
    status: Mapped[str] = mapped_column(String(16), default="active")  # active | revoked | left
    token_id: Mapped[int | None] = mapped_column(ForeignKey("enrollment_tokens.id"), nullable=True)
    enrolled_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    site: Mapped[Site] = relationship(lazy="joined")


class Credential(Base):
    """An API bearer credential (stored as its SHA-256): admin, service (ServerApp) or workstation."""

    __tablename__ = "credentials"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    role: Mapped[str] = mapped_column(String(16))  # admin | service | workstation
    name: Mapped[str] = mapped_column(String(100))
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    workstation_id: Mapped[int | None] = mapped_column(
        ForeignKey("workstations.id", ondelete="CASCADE"), nullable=True, index=True
    )
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    workstation: Mapped[Workstation | None] = relationship(lazy="joined")


class Run(Base):
    """A federated training run (filled by issue 5's `run start` and ServerApp)."""

    __tablename__ = "runs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    flower_run_id: Mapped[str | None] = mapped_column(String(20), unique=True, nullable=True)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    num_rounds: Mapped[int] = mapped_column(Integer)
    min_sites: Mapped[int] = mapped_column(Integer, default=1)
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    message: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # Resuming after a central or SuperLink restart (central.runkeeper): the Flower app folder the run was
    # started from and how many times it has been resumed (each time as a new Flower run).
    app_dir: Mapped[str | None] = mapped_column(Text, nullable=True)
    resumes: Mapped[int] = mapped_column(Integer, default=0)
    # Who started it (an administrator's account, or "admin credential" for `fedxray-central`), and the code it
    # runs: {"fab_hash", "fab_id", "fab_version", "components", "installed_code", "app_dir"} (central.run_lifecycle).
    started_by: Mapped[str | None] = mapped_column(String(100), nullable=True)
    fab: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


class Round(Base):
    """Aggregated metrics of one server round of a run."""

    __tablename__ = "rounds"
    __table_args__ = (UniqueConstraint("run_id", "server_round", name="uq_rounds_run_round"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    server_round: Mapped[int] = mapped_column(Integer)
    num_sites: Mapped[int | None] = mapped_column(Integer, nullable=True)
    train_metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    evaluate_metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    server_metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class RoundReply(Base):
    """One site's reply in a round as the ServerApp judged it: who took part in which run and round.

    verdict: accepted | refused (failed the reply checks) | error (lost, or the site's error) | declined (the site
    refused the run). `arrays_sha256` is the SHA-256 of the arrays received, when the ServerApp reports it.
    """

    __tablename__ = "round_replies"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    server_round: Mapped[int] = mapped_column(Integer)
    node_id: Mapped[str] = mapped_column(String(20), index=True)
    phase: Mapped[str] = mapped_column(String(16))  # train | evaluate
    verdict: Mapped[str] = mapped_column(String(16))
    arrays_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class ModelVersion(Base):
    """A global model kept by the central, with its card, file and release signature."""

    __tablename__ = "model_versions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[str] = mapped_column(String(64), unique=True)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"), nullable=True)
    server_round: Mapped[int | None] = mapped_column(Integer, nullable=True)
    card: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    file_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    file_size: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    is_best: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    released_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    manifest: Mapped[str | None] = mapped_column(Text, nullable=True)  # exact signed bytes (UTF-8 JSON)
    signature: Mapped[str | None] = mapped_column(Text, nullable=True)  # base64 Ed25519 over `manifest`


class AuditEvent(Base):
    """Who changed what, when (never a secret)."""

    __tablename__ = "audit_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(50))
    target: Mapped[str | None] = mapped_column(String(200), nullable=True)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class AdminAccount(Base):
    """An administrator who signs in to the dashboard (password hashed with Argon2id; never stored in clear)."""

    __tablename__ = "admin_accounts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(100))
    disabled_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_sign_in_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)


class AdminSession(Base):
    """A signed-in dashboard session: the cookie's SHA-256, its CSRF token, when it was last used."""

    __tablename__ = "admin_sessions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("admin_accounts.id", ondelete="CASCADE"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    ended_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    account: Mapped[AdminAccount] = relationship(lazy="joined")

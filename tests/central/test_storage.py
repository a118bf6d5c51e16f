"""The central store, run identically against a SQLite file and a real PostgreSQL server."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from central.crud import audit
from central.crud import credentials as creds
from central.crud import enrollment as crud
from central.crud import models as models_crud
from central.crud import runs as runs_crud
from central.db.engine import current_revision, make_engine, migrate, session_factory, sqlite_url, transaction
from central.db.models import Base, utcnow
from central.security import hash_secret

FP = "ab" * 32
BIG_NODE_ID = 2**64 - 5  # Flower node ids are unsigned 64-bit: above PostgreSQL's signed BIGINT


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        return sqlite_url(tmp_path / "central.db")
    return request.getfixturevalue("postgres_url")


HEAD = "0004"  # the newest migration in central/migrations/versions


@pytest.fixture
def store(db_url):
    engine = make_engine(db_url)
    migrate(engine)
    yield session_factory(engine)
    engine.dispose()


def test_migrations_build_exactly_the_declared_schema_and_are_idempotent(db_url):
    engine = make_engine(db_url)
    assert current_revision(engine) is None
    migrate(engine)
    migrate(engine)  # a second start changes nothing
    assert current_revision(engine) == HEAD
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    assert diff == []
    tables = set(inspect(engine).get_table_names())
    assert {"sites", "enrollment_tokens", "workstations", "credentials", "runs", "rounds", "model_versions",
            "audit_events", "round_replies", "admin_accounts", "admin_sessions"} <= tables
    engine.dispose()


def test_a_store_made_by_the_first_release_is_upgraded_without_losing_its_runs(db_url):
    engine = make_engine(db_url)
    migrate(engine, "0001")
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO runs (id, flower_run_id, status, num_rounds, min_sites, config, created_at) "
            "VALUES (1, '99', 'finished', 3, 2, '{\"arch\": \"tiny\"}', CURRENT_TIMESTAMP)"
        )
    migrate(engine)
    assert current_revision(engine) == HEAD
    with session_factory(engine)() as session:
        run = runs_crud.get_run(session=session, run_id=1)
        assert (run.flower_run_id, run.status, run.num_rounds, run.config) == ("99", "finished", 3, {"arch": "tiny"})
        assert run.resumes == 0 and run.app_dir is None and run.started_by is None and run.fab is None
    engine.dispose()


def test_sqlite_runs_in_wal_mode_with_foreign_keys(tmp_path):
    engine = make_engine(sqlite_url(tmp_path / "c.db"))
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    engine.dispose()


def test_token_is_stored_hashed_and_redeems_once(store):
    with transaction(store) as s:
        row, token = crud.create_token(session=s, site_name="St Mary", expires_at=utcnow() + dt.timedelta(hours=1),
                                       ca_fingerprint=FP)
        token_id = row.id
    with store() as s:
        stored = crud.get_token(session=s, token_id=token_id)
        assert stored.token_hash == hash_secret(token) and token not in stored.token_hash
        assert crud.token_state(stored) == "active"
    with transaction(store) as s:
        first = crud.claim_token(session=s, token=token)
    with transaction(store) as s:
        second = crud.claim_token(session=s, token=token)
        unknown = crud.claim_token(session=s, token=token[:-1] + ("A" if token[-1] != "A" else "B"))
    assert first.reason == "claimed" and first.token.site.name == "St Mary"
    assert second.reason == "used" and second.token is None
    assert unknown.reason == "unknown"
    with transaction(store) as s:  # an enrolment that fails after the claim gives the token back
        crud.unclaim_token(session=s, token_id=token_id)
    with transaction(store) as s:
        assert crud.claim_token(session=s, token=token).reason == "claimed"


def test_expired_and_revoked_tokens_are_refused(store):
    now = utcnow()
    with transaction(store) as s:
        _, expired = crud.create_token(session=s, site_name="A", expires_at=now - dt.timedelta(seconds=1),
                                       ca_fingerprint=FP)
        row, revoked = crud.create_token(session=s, site_name="A", expires_at=now + dt.timedelta(hours=1),
                                         ca_fingerprint=FP)
        assert crud.revoke_token(session=s, token=row) is True
        assert crud.revoke_token(session=s, token=row) is False
    with transaction(store) as s:
        assert crud.claim_token(session=s, token=expired).reason == "expired"
        assert crud.claim_token(session=s, token=revoked).reason == "revoked"
    with store() as s:
        assert sorted(crud.token_state(t) for t in crud.list_tokens(session=s)) == ["expired", "revoked"]
        assert len({t.site_id for t in crud.list_tokens(session=s)}) == 1  # one site "A"


def test_racing_redemptions_of_one_token_have_exactly_one_winner(store):
    with transaction(store) as s:
        _, token = crud.create_token(session=s, site_name="Race", expires_at=utcnow() + dt.timedelta(hours=1),
                                     ca_fingerprint=FP)
    results: list[str] = []
    barrier = threading.Barrier(8)

    def redeem() -> None:
        barrier.wait()
        with transaction(store) as s:
            results.append(crud.claim_token(session=s, token=token).reason)

    threads = [threading.Thread(target=redeem) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(results) == ["claimed"] + ["used"] * 7


def _enrol(store, *, node_id: int, key_hash: str, site: str = "St Mary"):
    with transaction(store) as s:
        site_row = crud.get_or_create_site(session=s, name=site)
        ws = crud.create_workstation(session=s, site_id=site_row.id, node_id=node_id, public_key_pem="PEM",
                                     public_key_sha256=key_hash, hostname="ws", token_id=None)
        _, secret = creds.create_credential(session=s, role="workstation", name=f"node-{node_id}",
                                            workstation_id=ws.id)
    return ws, secret


def test_workstations_credentials_and_revocation(store):
    ws, secret = _enrol(store, node_id=BIG_NODE_ID, key_hash="1" * 64)
    other, _ = _enrol(store, node_id=7, key_hash="2" * 64)
    with store() as s:
        found = creds.find_credential(session=s, secret=secret)
        assert found.role == "workstation" and found.workstation.node_id == str(BIG_NODE_ID)
        assert found.secret_hash == hash_secret(secret)
        assert crud.get_workstation(session=s, node_id=BIG_NODE_ID).id == ws.id
        assert crud.blocked_key_hashes(session=s) == set()
    now = utcnow()
    with transaction(store) as s:
        row = crud.get_workstation(session=s, node_id=BIG_NODE_ID)
        crud.end_workstation(session=s, workstation=row, status="revoked", at=now)
        assert creds.revoke_workstation_credentials(session=s, workstation_id=row.id, at=now) == 1
    with store() as s:
        assert creds.find_credential(session=s, secret=secret).revoked_at is not None
        assert crud.blocked_key_hashes(session=s) == {"1" * 64}
        assert [w.status for w in crud.list_workstations(session=s)] == ["revoked", "active"]
    assert other.node_id == "7"


def test_last_seen_only_moves_forward(store):
    _enrol(store, node_id=11, key_hash="3" * 64)
    t1 = utcnow()
    t0 = t1 - dt.timedelta(minutes=5)
    with transaction(store) as s:
        crud.record_last_seen(session=s, seen={"3" * 64: t1, "f" * 64: t1})  # unknown keys are ignored
    with transaction(store) as s:
        crud.record_last_seen(session=s, seen={"3" * 64: t0})
    with store() as s:
        assert crud.get_workstation(session=s, node_id=11).last_seen_at == t1


def test_admin_credential_from_the_home_replaces_the_previous_one(store):
    with transaction(store) as s:
        creds.ensure_credential(session=s, role="admin", name="admin", secret="fxa_first")
        creds.ensure_credential(session=s, role="admin", name="admin", secret="fxa_first")  # same: no-op
    with transaction(store) as s:
        creds.ensure_credential(session=s, role="admin", name="admin", secret="fxa_second")
    with store() as s:
        assert creds.find_credential(session=s, secret="fxa_first").revoked_at is not None
        assert creds.find_credential(session=s, secret="fxa_second").revoked_at is None


def test_runs_rounds_and_partial_round_updates(store):
    with transaction(store) as s:
        run = runs_crud.create_run(session=s, num_rounds=3, min_sites=2, config={"local-epochs": 1},
                                   flower_run_id=str(BIG_NODE_ID))
        runs_crud.update_run(session=s, run=run, status="running")
        runs_crud.upsert_round(session=s, run=run, server_round=1, num_sites=2,
                               train_metrics={"loss": 1.25, "per_class": {"Covid": {"f1": 0.5}}})
        runs_crud.upsert_round(session=s, run=run, server_round=1, evaluate_metrics={"accuracy": 0.75})
        runs_crud.upsert_round(session=s, run=run, server_round=2, server_metrics={"macro_f1": 0.6})
        run_id = run.id
    with transaction(store) as s:
        run = runs_crud.get_run(session=s, run_id=run_id)
        runs_crud.update_run(session=s, run=run, status="finished", message="done")
    with store() as s:
        run = runs_crud.get_run_by_flower_id(session=s, flower_run_id=str(BIG_NODE_ID))
        assert (run.status, run.message, run.config) == ("finished", "done", {"local-epochs": 1})
        assert run.started_at is not None and run.finished_at >= run.started_at
        rounds = runs_crud.list_rounds(session=s, run=run)
        assert [r.server_round for r in rounds] == [1, 2]
        assert rounds[0].num_sites == 2
        assert rounds[0].train_metrics == {"loss": 1.25, "per_class": {"Covid": {"f1": 0.5}}}
        assert rounds[0].evaluate_metrics == {"accuracy": 0.75}
        assert rounds[1].server_metrics == {"macro_f1": 0.6} and rounds[1].train_metrics == {}
    with pytest.raises(ValueError), transaction(store) as s:
        runs_crud.update_run(session=s, run=runs_crud.get_run(session=s, run_id=run_id), status="exploded")


def test_model_versions_best_mark_and_release(store):
    with transaction(store) as s:
        run = runs_crud.create_run(session=s, num_rounds=2, min_sites=1, config={})
        v1 = models_crud.create_model_version(session=s, version="r1-1", card={"name": "m"}, run_id=run.id,
                                              server_round=1)
        v2 = models_crud.create_model_version(session=s, version="r1-2", card={"name": "m"}, run_id=run.id,
                                              server_round=2)
        models_crud.mark_best(session=s, model=v1)
        models_crud.mark_best(session=s, model=v2)
        models_crud.set_file(session=s, model=v2, sha256="c" * 64, size=5_000_000_000)
    with store() as s:
        assert [(m.version, m.is_best) for m in models_crud.list_model_versions(session=s)] == [
            ("r1-2", True), ("r1-1", False)]
        assert models_crud.latest_release(session=s) is None
    with transaction(store) as s:
        v2 = models_crud.get_model_version(session=s, version="r1-2")
        manifest = models_crud.release_manifest(v2)
        models_crud.release(session=s, model=v2, signature=b"\x01" * 64, manifest=manifest)
        audit.record(session=s, actor="admin", action="model.release", target="model:r1-2")
    with store() as s:
        released = models_crud.latest_release(session=s)
        assert released.version == "r1-2" and released.file_size == 5_000_000_000
        assert released.manifest.encode() == manifest
        assert b'"file_sha256":"' + b"c" * 64 + b'"' in manifest
        with pytest.raises(ValueError, match="released"):
            models_crud.set_file(session=s, model=released, sha256="d" * 64, size=1)
        assert [e.action for e in audit.list_events(session=s)] == ["model.release"]


def test_records_survive_a_restart(db_url):
    engine = make_engine(db_url)
    migrate(engine)
    store = session_factory(engine)
    with transaction(store) as s:
        _, token = crud.create_token(session=s, site_name="Keep", expires_at=utcnow() + dt.timedelta(hours=1),
                                     ca_fingerprint=FP)
        crud.claim_token(session=s, token=token)
    _enrol(store, node_id=BIG_NODE_ID, key_hash="4" * 64, site="Keep")
    engine.dispose()

    engine = make_engine(db_url)  # a new process would do exactly this
    migrate(engine)
    with session_factory(engine)() as s:
        (tok,) = crud.list_tokens(session=s)
        assert crud.token_state(tok) == "used" and tok.site.name == "Keep"
        (ws,) = crud.list_workstations(session=s)
        assert (ws.node_id, ws.site.name, ws.status) == (str(BIG_NODE_ID), "Keep", "active")
        assert ws.enrolled_at.tzinfo is not None
    engine.dispose()

"""The dashboard's parts without a browser: administrator accounts and sessions on a real store, the sign-in
limiter, and the charts' series (recomputed here from the round records by hand)."""

from __future__ import annotations

import datetime as dt

import pytest

from central.crud import audit
from central.dashboard import accounts
from central.dashboard.charts import chart_data, confusion
from central.db.engine import make_engine, migrate, session_factory, sqlite_url, transaction
from central.db.models import AdminAccount, AdminSession

IDLE, LIFETIME = dt.timedelta(minutes=30), dt.timedelta(hours=12)


@pytest.fixture
def sessions(tmp_path):
    engine = make_engine(sqlite_url(tmp_path / "central.db"))
    migrate(engine)
    yield session_factory(engine)
    engine.dispose()


def test_accounts_store_only_an_argon2id_hash_and_check_the_password(sessions):
    with transaction(sessions) as s:
        accounts.create_account(session=s, name="alice", password="correct horse battery", created_by="admin")
    with sessions() as s:
        row = s.query(AdminAccount).one()
        assert row.password_hash.startswith("$argon2id$") and "correct horse" not in row.password_hash
        assert [(e.actor, e.action, e.target) for e in audit.list_events(session=s)] == [
            ("admin", "account.create", "account:alice")]
    with transaction(sessions) as s:
        assert accounts.authenticate(session=s, name="alice", password="correct horse battery").name == "alice"
        assert accounts.authenticate(session=s, name="alice", password="correct horse batter") is None
        assert accounts.authenticate(session=s, name="nobody", password="correct horse battery") is None


@pytest.mark.parametrize(("name", "password", "message"), [
    ("Alice", "correct horse battery", "lowercase letters"),
    ("a", "correct horse battery", "2-64 characters"),
    ("alice", "short", "at least 12 characters"),
    ("alicealicealice", "alicealicealice", "must not be the account name"),
])  # fmt: skip
def test_bad_names_and_passwords_are_refused_with_the_reason(sessions, name, password, message):
    with pytest.raises(accounts.AccountError, match=message), transaction(sessions) as s:
        accounts.create_account(session=s, name=name, password=password, created_by="admin")


def test_a_second_account_with_the_same_name_is_refused(sessions):
    with transaction(sessions) as s:
        accounts.create_account(session=s, name="alice", password="correct horse battery", created_by="admin")
    with pytest.raises(accounts.AccountError, match="already exists"), transaction(sessions) as s:
        accounts.create_account(session=s, name="alice", password="another long password", created_by="admin")


def test_a_session_ends_when_idle_or_too_old_and_polls_do_not_keep_it_alive(sessions):
    with transaction(sessions) as s:
        account = accounts.create_account(session=s, name="alice", password="correct horse battery",
                                          created_by="admin")  # fmt: skip
        token, signed = accounts.open_session(session=s, account=account)
    with sessions() as s:  # the cookie is not in the store, only its SHA-256
        assert s.query(AdminSession).one().token_hash != token and token not in s.query(AdminSession).one().token_hash

    def age(**delta) -> None:
        with transaction(sessions) as s:
            row = s.get(AdminSession, signed.session_id)
            row.last_seen_at -= dt.timedelta(**delta)
            row.created_at -= dt.timedelta(**delta)

    def resume(touch: bool = True):
        with transaction(sessions) as s:
            return accounts.resume_session(session=s, token=token, idle=IDLE, lifetime=LIFETIME, touch=touch)

    assert resume().csrf_token == signed.csrf_token
    age(minutes=20)
    assert resume(touch=False) is not None  # an automatic refresh does not count as activity...
    age(minutes=11)
    assert resume(touch=False) is None  # ...so 31 minutes after the last page the session has ended
    assert resume() is None  # and stays ended
    with sessions() as s:
        assert [e.action for e in audit.list_events(session=s)][0] == "session.expire"
    with transaction(sessions) as s:
        token2, signed2 = accounts.open_session(session=s, account=s.query(AdminAccount).one())
    token = token2
    for _ in range(3):  # used every 20 minutes it stays open...
        age(minutes=20)
        assert resume() is not None
    with transaction(sessions) as s:
        s.get(AdminSession, signed2.session_id).created_at -= LIFETIME
    assert resume() is None  # ...until its lifetime is over
    assert resume(touch=False) is None
    with transaction(sessions) as s:
        assert accounts.resume_session(session=s, token="", idle=IDLE, lifetime=LIFETIME) is None
        assert accounts.resume_session(session=s, token="é" * 10, idle=IDLE, lifetime=LIFETIME) is None


def test_the_limiter_locks_an_account_after_five_failures_and_an_address_after_twenty():
    limiter = accounts.SignInLimiter(per_account=5, per_address=20, window=600)
    for _ in range(5):
        assert limiter.retry_after(name="bob", address="10.0.0.1") == 0
        limiter.failed(name="bob", address="10.0.0.1")
    assert 590 <= limiter.retry_after(name="bob", address="10.0.0.9") <= 601  # the account, from anywhere
    assert limiter.retry_after(name="alice", address="10.0.0.1") == 0  # the address is not locked yet
    for i in range(15):
        limiter.failed(name=f"user{i}", address="10.0.0.1")
    assert limiter.retry_after(name="alice", address="10.0.0.1") > 0  # 20 failures from one address
    assert limiter.retry_after(name="alice", address="10.0.0.2") == 0
    short = accounts.SignInLimiter(per_account=1, per_address=5, window=0.0)
    short.failed(name="bob", address="a")
    assert short.retry_after(name="bob", address="a") == 0  # failures older than the window are forgotten


def test_chart_series_follow_the_round_records():
    rounds = [
        {"server_round": 0, "num_sites": 0, "train_metrics": {}, "evaluate_metrics": {}, "server_metrics": {"accuracy": 0.1}},
        {"server_round": 1, "num_sites": 3, "train_metrics": {"train_loss": 1.2, "train_accuracy": 0.4},
         "evaluate_metrics": {"loss": 1.1, "accuracy": 0.5, "macro_sensitivity": 0.45, "macro_specificity": 0.8,
                              "macro_f1": 0.42, "macro_auroc_site_weighted_mean": 0.7,
                              "per_class": {"Covid": {"sensitivity": 1.0, "auroc_site_weighted_mean": 0.9},
                                            "Normal": {"sensitivity": 0.2}},
                              "confusion_matrix": [[2, 0, 0, 0], [1, 1, 0, 0], [0, 0, 1, 1], [0, 1, 0, 1]],
                              "classes": ["Covid", "Normal", "Pneumonia-Bacterial", "Pneumonia-Viral"]},
         "server_metrics": {}},
        {"server_round": 2, "num_sites": 2, "train_metrics": {"train_loss": 0.9, "train_accuracy": 0.6},
         "evaluate_metrics": {"loss": 0.8, "accuracy": 0.625}, "server_metrics": {}},
    ]  # fmt: skip
    data = chart_data(rounds, best_round=1, num_rounds=5, status="running")
    assert data["rounds"] == [1, 2] and data["best_round"] == 1 and data["num_rounds"] == 5
    series = {name: {s["label"]: s["values"] for s in c["series"]} for name, c in data["charts"].items()}
    assert series["loss"] == {"Training loss": [1.2, 0.9], "Validation loss": [1.1, 0.8]}  # no test loss at all
    assert series["accuracy"] == {"Training accuracy": [0.4, 0.6], "Validation accuracy": [0.5, 0.625]}
    assert series["macro"] == {"Macro sensitivity": [0.45, None], "Macro specificity": [0.8, None], "Macro F1": [0.42, None]}
    assert series["sensitivity"] == {"COVID-19": [1.0, None], "Normal": [0.2, None]}
    assert series["auroc"] == {"Macro AUROC": [0.7, None], "COVID-19": [0.9, None]}
    assert series["sites"] == {"Sites aggregated": [3, 2]}
    matrix = confusion(rounds[1])
    assert matrix["rows"][1] == [1, 1, 0, 0] and matrix["total"] == 8 and matrix["classes"][0] == "COVID-19"
    assert confusion(rounds[2]) is None and confusion(None) is None

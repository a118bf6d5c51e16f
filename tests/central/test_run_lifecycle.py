"""central.run_lifecycle without a SuperLink: settings validation against FedXray's real Flower app, and the
decisions the lifecycle takes from the store alone (the resume limit, nothing left to redo). Starting, stopping
and resuming on a real SuperLink run in test_runs_models.py and test_federation_e2e.py."""

from __future__ import annotations

import tomllib

import pytest

from central.crud import audit
from central.crud import models as models_crud
from central.crud import runs as runs_crud
from central.db.engine import make_engine, migrate, session_factory, sqlite_url, transaction
from central.home import CentralHome
from central.run_lifecycle import MAX_RESUMES, RunError, RunLifecycle, settable_defaults, validate_settings
from fl.task import flower_app_dir


class NoSuperLink:
    """Stands for a SuperLink that must not be called: the paths tested here decide from the store alone."""

    def __getattr__(self, name):
        raise AssertionError(f"the lifecycle called the SuperLink ({name}) where it should not")


@pytest.fixture
def lifecycle(tmp_path):
    engine = make_engine(sqlite_url(tmp_path / "central.db"))
    migrate(engine)
    yield RunLifecycle(home=CentralHome(tmp_path), sessions=session_factory(engine), control=NoSuperLink())
    engine.dispose()


def app_defaults() -> dict:
    """[tool.flwr.app.config] of FedXray's app, read here independently of central.flower.app."""
    data = tomllib.loads((flower_app_dir() / "pyproject.toml").read_text())
    return data["tool"]["flwr"]["app"]["config"]


def test_the_form_offers_every_setting_but_those_the_central_sets_itself():
    offered = settable_defaults()
    expected = {k: v for k, v in app_defaults().items() if k not in ("central-run-id", "start-round", "best-model")}
    assert offered == expected
    assert offered["num-server-rounds"] == 3 and offered["initial-model"] == ""


def test_settings_are_typed_and_checked_against_the_app_and_its_ranges():
    overrides, config = validate_settings({"num-server-rounds": 2, "arch": "tiny", "input-size": 64,
                                           "learning-rate": 1}, flower_app_dir())  # fmt: skip
    assert overrides == {"num-server-rounds": 2, "arch": "tiny", "input-size": 64, "learning-rate": 1.0}
    assert isinstance(config["learning-rate"], float) and "central-run-id" not in config
    assert config["local-epochs"] == app_defaults()["local-epochs"]
    cases = [
        ({"no-such-setting": 1}, "does not take the run setting(s) no-such-setting"),
        ({"local-epochs": "two"}, "'local-epochs' takes a int"),
        ({"start-round": 3}, "set by the central itself"),
        ({"num-server-rounds": 0}, "'num-server-rounds' = 0: must be at least 1"),
        ({"fraction-train": 1.5}, "must lie in (0, 1]"),
        ({"arch": "resnet9000"}, "unknown network"),
    ]
    for settings, message in cases:
        with pytest.raises(RunError) as caught:
            validate_settings(settings, flower_app_dir())
        assert message in str(caught.value) and "Nothing was started" in str(caught.value), settings
        assert caught.value.kind == "invalid"


def test_a_run_resumed_too_often_is_failed_with_the_reason_and_not_started_again(lifecycle):
    with transaction(lifecycle.sessions) as s:
        run = runs_crud.create_run(session=s, num_rounds=5, min_sites=1, config={}, flower_run_id="77",
                                   app_dir=str(flower_app_dir()), started_by="alice")  # fmt: skip
        run.resumes = MAX_RESUMES
        runs_crud.update_run(session=s, run=run, status="interrupted")
    assert lifecycle.resume(run.id, "the SuperLink restarted") is None
    with lifecycle.sessions() as s:
        row = runs_crud.get_run(session=s, run_id=run.id)
        events = [(e.actor, e.action, e.target) for e in audit.list_events(session=s)]
    assert row.status == "failed" and row.finished_at is not None and row.resumes == MAX_RESUMES
    assert f"after {MAX_RESUMES} resumes; not resumed any more" in row.message
    assert "the SuperLink restarted" in row.message
    assert events[0] == ("central", "run.failed", f"run:{run.id}")


def test_one_resume_short_of_the_limit_is_still_attempted(lifecycle):
    # One below the limit the lifecycle goes on to prepare a resume: with both rounds saved it is finished.
    with transaction(lifecycle.sessions) as s:
        run = runs_crud.create_run(session=s, num_rounds=2, min_sites=1, config={}, flower_run_id="78",
                                   app_dir=str(flower_app_dir()))  # fmt: skip
        run.resumes = MAX_RESUMES - 1
        runs_crud.update_run(session=s, run=run, status="interrupted")
        for r in (1, 2):
            v = models_crud.create_model_version(session=s, version=f"run{run.id}-round{r}", card={}, run_id=run.id,
                                                 server_round=r)  # fmt: skip
            models_crud.set_file(session=s, model=v, sha256="ab" * 32, size=10)
    assert lifecycle.resume(run.id, "restart") is None
    with lifecycle.sessions() as s:
        row = runs_crud.get_run(session=s, run_id=run.id)
    assert row.status == "finished" and "All 2 rounds were saved" in row.message and row.resumes == MAX_RESUMES - 1


def test_stopping_an_unknown_or_ended_run_is_refused(lifecycle):
    with pytest.raises(RunError) as caught:
        lifecycle.stop(424242, actor="admin", who="the admin")
    assert caught.value.kind == "not_found" and "No run has id 424242" in str(caught.value)
    with transaction(lifecycle.sessions) as s:
        run = runs_crud.create_run(session=s, num_rounds=2, min_sites=1, config={})
        runs_crud.update_run(session=s, run=run, status="finished")
    with pytest.raises(RunError) as caught:
        lifecycle.stop(run.id, actor="admin", who="the admin")
    assert caught.value.kind == "conflict" and "already ended (finished)" in str(caught.value)


def test_a_run_never_launched_is_stopped_in_the_store_alone(lifecycle):
    with transaction(lifecycle.sessions) as s:
        run = runs_crud.create_run(session=s, num_rounds=2, min_sites=1, config={})
    stopped = lifecycle.stop(run.id, actor="admin:alice", who="alice")
    assert stopped.status == "stopped" and stopped.message == "Stopped by alice."
    with lifecycle.sessions() as s:
        assert [(e.actor, e.action) for e in audit.list_events(session=s)][0] == ("admin:alice", "run.stop")

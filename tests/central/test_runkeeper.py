"""The run keeper's decisions (central.runkeeper.decide) for every state Flower can report. The keeper's real
path (a SuperLink killed mid-run, the run resumed from its last saved version) is exercised end to end in
test_runs_models.py (stand-in app) and test_federation_e2e.py (FedXray's apps, central restart)."""

import pytest

from central.db.models import Run
from central.flower.control import RunState
from central.runkeeper import decide, score


def run(status: str, app_dir: str | None = "/opt/fedxray/fl/flwr_app") -> Run:
    return Run(id=7, flower_run_id="42", status=status, num_rounds=3, min_sites=1, config={}, app_dir=app_dir)


def flower(status: str, sub: str = "", details: str = "") -> RunState:
    return RunState(run_id=42, status=status, sub_status=sub, details=details)


@pytest.mark.parametrize(
    ("stored", "state", "restarted", "action"),
    [
        ("running", None, False, "resume"),  # the SuperLink's database was lost
        ("running", flower("finished", "failed", "No heartbeat received from the task"), False, "resume"),
        ("pending", flower("finished", "failed"), False, "resume"),
        ("interrupted", flower("finished", "stopped"), False, "resume"),  # the keeper stopped the orphan itself
        ("interrupted", flower("finished", "completed"), False, "resume"),
        ("running", flower("finished", "stopped"), False, "stopped"),  # stopped through Flower, not by us
        ("running", flower("finished", "completed"), False, "finished"),  # the last record was lost
        ("running", flower("running"), True, "orphan"),  # its ServerApp died with the old SuperLink
        ("running", flower("starting"), True, "orphan"),
        ("pending", flower("pending"), True, "wait"),  # not launched yet: the new SuperLink launches it
        ("running", flower("running"), False, "wait"),
        ("interrupted", flower("running"), False, "wait"),  # a resumed run whose ServerApp has not reported yet
    ],
)
def test_decide(stored, state, restarted, action):
    decision = decide(run(stored), state, superlink_restarted=restarted)
    assert decision.action == action
    if action != "wait":
        assert decision.reason  # what is written in the run's message


@pytest.mark.parametrize(
    ("state", "restarted", "action"),
    [
        (None, False, "wait"),  # its Flower run may belong to another SuperLink
        (flower("finished", "failed"), False, "failed"),
        (flower("running"), True, "failed"),
        (flower("finished", "stopped"), False, "stopped"),
        (flower("running"), False, "wait"),
    ],
)
def test_a_run_not_started_by_the_central_is_never_resumed(state, restarted, action):
    decision = decide(run("running", app_dir=None), state, superlink_restarted=restarted)
    assert decision.action == action
    if action == "failed":
        assert "cannot be resumed" in decision.reason


def test_the_failure_detail_is_kept_in_the_reason():
    decision = decide(run("running"), flower("finished", "failed", "No heartbeat received from the task"),
                      superlink_restarted=False)  # fmt: skip
    assert "finished:failed" in decision.reason and "No heartbeat" in decision.reason


def test_best_score_follows_the_serverapps_rule():
    # Test-set metrics win over validation; higher macro-F1 first, then lower loss; no metrics: no score.
    assert score({"metrics": {"validation": {"macro_f1": 0.5, "loss": 1.0}}}) == (0.5, -1.0)
    assert score({"metrics": {"validation": {"macro_f1": 0.5, "loss": 1.0},
                              "test": {"macro_f1": 0.3, "loss": 2.0}}}) == (0.3, -2.0)  # fmt: skip
    assert score({"metrics": {}}) is None and score({}) is None

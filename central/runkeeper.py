"""Keeps federated runs going across central and SuperLink restarts.

A run's ServerApp is a process under the SuperLink. When the central stops, or the SuperLink dies and the
supervisor restarts it, that process is gone; Flower later reports the run `finished:failed` ("No heartbeat
received from the task"), or, right after a restart, still `running` with nobody behind it. The keeper, a
thread of `fedxray-central serve`, notices and resumes the run: a new Flower run of the same app and settings
that starts from the last global model version the central holds (checked against its SHA-256), continues the
round numbering after it and knows the best version so far. Rounds after that version are redone; their
partial records are dropped first. A run is resumed at most MAX_RESUMES times. The keeper only decides: starting
the resumed run and recording endings is central.run_lifecycle, the same path an administrator's start takes.

What the keeper decides for a run the store calls pending, running or interrupted (see `decide`):
  SuperLink does not know the run (its database was lost)  -> resume (runs started elsewhere: left alone)
  finished:failed, or any end while the store says interrupted  -> resume
  finished:stopped  -> stopped (someone stopped it through Flower)
  finished:completed  -> finished (the ServerApp's last record was lost)
  starting/running right after a SuperLink (re)start  -> interrupted: stop the orphan in Flower, then resume
Only runs the central started (which records the app folder) are resumed; a run recorded by
a ServerApp started some other way is marked failed where a started one would be resumed.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from central.crud import runs as runs_crud
from central.db.models import Run
from central.flower.control import RunState, SuperLinkControl, SuperLinkError
from central.run_lifecycle import MAX_RESUMES, RunLifecycle, saved_versions, score  # noqa: F401 (re-exported)

log = logging.getLogger("central.runkeeper")


@dataclass(frozen=True)
class Decision:
    action: str  # resume | stopped | finished | orphan | wait | failed
    reason: str


def decide(run: Run, state: RunState | None, *, superlink_restarted: bool) -> Decision:
    """What to do about an unfinished run given Flower's view of its current Flower run (module docstring)."""
    decision = _decide(run, state, superlink_restarted=superlink_restarted)
    if decision.action in ("resume", "orphan") and not run.app_dir:
        if state is None:
            return Decision("wait", "")  # not started by this central: its Flower run may live elsewhere
        return Decision("failed", f"{decision.reason}; it cannot be resumed (not started by the central).")
    return decision


def _decide(run: Run, state: RunState | None, *, superlink_restarted: bool) -> Decision:
    if state is None:
        return Decision("resume", f"the SuperLink no longer knows Flower run {run.flower_run_id}")
    if state.status == "finished":
        if run.status == "interrupted" or state.sub_status == "failed":
            detail = f": {state.details}" if state.details and state.details != "N/A" else ""
            return Decision("resume", f"Flower run {run.flower_run_id} ended {state.label}{detail}")
        if state.sub_status == "stopped":
            return Decision("stopped", f"Flower run {run.flower_run_id} was stopped through Flower.")
        return Decision("finished", f"Flower run {run.flower_run_id} completed; its last record did not arrive.")
    if superlink_restarted and state.status in ("starting", "running"):
        return Decision("orphan", "the central or its SuperLink restarted in the middle of the run")
    return Decision("wait", "")


def state_of(flower: dict[int, RunState], run: Run) -> str | None:
    state = flower.get(int(run.flower_run_id))
    return state.status if state else None


class RunKeeper:
    """Watches the unfinished runs every `interval` seconds and has the lifecycle resume the interrupted ones."""

    def __init__(self, *, lifecycle: RunLifecycle, sessions: sessionmaker[Session], control: SuperLinkControl,
                 interval: float = 5.0) -> None:  # fmt: skip
        self.lifecycle = lifecycle
        self.sessions = sessions
        self.control = control
        self.interval = interval
        self._restarted = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- lifecycle of the keeper itself
    def superlink_started(self, pid: int | None = None) -> None:
        """The SuperLink was (re)started: no ServerApp of an earlier one is alive (called by the supervisor)."""
        self._restarted.set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="central-runkeeper", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.check()
            except Exception:  # the keeper must outlive any one bad run
                log.exception("run keeper check failed")
            self._stop.wait(self.interval)

    # -- one pass
    def check(self) -> list[tuple[int, str]]:
        """Look at every unfinished run once; returns (run id, action) for what was done."""
        restarted = self._restarted.is_set()
        try:
            flower = self.control.list_runs()
        except SuperLinkError as exc:
            log.debug("SuperLink not reachable yet: %s", exc)
            return []
        self._restarted.clear()
        with self.sessions() as session:
            runs = [r for r in runs_crud.active_runs(session=session) if r.flower_run_id]
        done = []
        for run in runs:
            decision = decide(run, flower.get(int(run.flower_run_id)), superlink_restarted=restarted)
            if decision.action == "wait":
                continue
            log.warning("Run %d: %s", run.id, decision.reason)
            if decision.action in ("orphan", "failed") and state_of(flower, run) in ("starting", "running"):
                with contextlib.suppress(SuperLinkError):  # nobody is behind it any more
                    self.control.stop_run(int(run.flower_run_id))
            if decision.action == "orphan":
                self.lifecycle.end(run.id, "interrupted", f"Interrupted: {decision.reason}.")
                decision = Decision("resume", decision.reason)
            if decision.action == "resume":
                self.lifecycle.resume(run.id, decision.reason)
            else:
                self.lifecycle.end(run.id, decision.action, decision.reason)
            done.append((run.id, decision.action))
        return done

"""Keeps federated runs going across central and SuperLink restarts.

A run's ServerApp is a process under the SuperLink. When the central stops, or the SuperLink dies and the
supervisor restarts it, that process is gone; Flower later reports the run `finished:failed` ("No heartbeat
received from the task"), or, right after a restart, still `running` with nobody behind it. The keeper, a
thread of `fedxray-central serve`, notices and resumes the run: a new Flower run of the same app and settings
that starts from the last global model version the central holds (checked against its SHA-256), continues the
round numbering after it and knows the best version so far. Rounds after that version are redone; their
partial records are dropped first. A run is resumed at most MAX_RESUMES times.

What the keeper decides for a run the store calls pending, running or interrupted (see `decide`):
  SuperLink does not know the run (its database was lost)  -> resume (runs started elsewhere: left alone)
  finished:failed, or any end while the store says interrupted  -> resume
  finished:stopped  -> stopped (someone stopped it through Flower)
  finished:completed  -> finished (the ServerApp's last record was lost)
  starting/running right after a SuperLink (re)start  -> interrupted: stop the orphan in Flower, then resume
Only runs started by `fedxray-central run start` (which records the app folder) are resumed; a run recorded by
a ServerApp started some other way is marked failed where a started one would be resumed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from central.client import AdminError
from central.crud import audit
from central.crud import runs as runs_crud
from central.db.engine import transaction
from central.db.models import ModelVersion, Run
from central.flower_cli import app_config, default_app_dir, launch_run
from central.home import CentralHome
from central.superlink import RunState, SuperLinkControl, SuperLinkError
from fl.metrics import selection_score
from fl.modelfile import sha256_file

log = logging.getLogger("central.runkeeper")

MAX_RESUMES = 5
RESUME_KEYS = ("central-run-id", "start-round", "initial-model", "best-model")


@dataclass(frozen=True)
class Decision:
    action: str  # resume | stopped | finished | orphan | wait
    reason: str


def decide(run: Run, state: RunState | None, *, superlink_restarted: bool) -> Decision:
    """What to do about an unfinished run given Flower's view of its current Flower run (module docstring)."""
    decision = _decide(run, state, superlink_restarted=superlink_restarted)
    if decision.action in ("resume", "orphan") and not run.app_dir:
        if state is None:
            return Decision("wait", "")  # not started by this central: its Flower run may live elsewhere
        return Decision("failed", f"{decision.reason}; it cannot be resumed (not started with "
                        "`fedxray-central run start`).")  # fmt: skip
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


def saved_versions(session: Session, run: Run) -> list[ModelVersion]:
    """The run's model versions whose weights the central holds, by round."""
    rows = session.scalars(
        select(ModelVersion).where(ModelVersion.run_id == run.id, ModelVersion.file_sha256.is_not(None))
    )
    return sorted((r for r in rows if r.server_round), key=lambda r: r.server_round)


def score(card: dict) -> tuple | None:
    """The ServerApp's rule for "best" (fl.metrics.selection_score) applied to a stored model card."""
    metrics = card.get("metrics") or {}
    return selection_score(metrics.get("test"), metrics.get("validation"))


def state_of(flower: dict[int, RunState], run: Run) -> str | None:
    state = flower.get(int(run.flower_run_id))
    return state.status if state else None


class RunKeeper:
    """Watches the unfinished runs every `interval` seconds and resumes the interrupted ones."""

    def __init__(self, *, home: CentralHome, sessions: sessionmaker[Session], control: SuperLinkControl,
                 interval: float = 5.0) -> None:  # fmt: skip
        self.home = home
        self.sessions = sessions
        self.control = control
        self.interval = interval
        self._restarted = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- lifecycle
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
                self._set(run.id, "interrupted", f"Interrupted: {decision.reason}.")
                decision = Decision("resume", decision.reason)
            if decision.action == "resume":
                self.resume(run.id, decision.reason)
            else:
                self._set(run.id, decision.action, decision.reason)
            done.append((run.id, decision.action))
        return done

    def _set(self, run_id: int, status: str, message: str) -> None:
        with transaction(self.sessions) as session:
            run = runs_crud.get_run(session=session, run_id=run_id)
            runs_crud.update_run(session=session, run=run, status=status, message=message[:4000])
            audit.record(session=session, actor="central", action=f"run.{status}", target=f"run:{run_id}",
                         detail={"reason": message[:300]})  # fmt: skip

    # -- resuming
    def resume(self, run_id: int, reason: str) -> int | None:
        """Start the run again from its last saved version; the new Flower run id (None if it was not)."""
        with self.sessions() as session:
            run = runs_crud.get_run(session=session, run_id=run_id)
            versions = saved_versions(session, run)
        if run.resumes >= MAX_RESUMES:
            self._set(run.id, "failed", f"Interrupted again ({reason}) after {run.resumes} resumes; not resumed "
                      "any more. Start a new run with the last version as --set initial-model=… if needed.")  # fmt: skip
            return None
        done = versions[-1].server_round if versions else 0
        if done >= run.num_rounds:
            self._set(run.id, "finished", f"All {run.num_rounds} rounds were saved before the interruption.")
            return None
        app_dir = Path(run.app_dir) if run.app_dir else default_app_dir()
        try:
            takes = app_config(app_dir)
        except AdminError as exc:
            self._set(run.id, "failed", f"Interrupted ({reason}) and cannot be resumed: {exc}")
            return None
        if any(key not in takes for key in RESUME_KEYS):
            missing = ", ".join(k for k in RESUME_KEYS if k not in takes)
            self._set(run.id, "failed", f"Interrupted ({reason}); the Flower app in {app_dir} cannot be resumed "
                      f"(it does not take {missing}).")  # fmt: skip
            return None
        try:
            last = self._materialize(run, versions[-1]) if versions else None
            scored = [(s, v) for v in versions if (s := score(v.card)) is not None]
            best_row = max(scored, key=lambda pair: pair[0])[1] if scored else None
            best = self._materialize(run, best_row) if best_row is not None else None
        except OSError as exc:  # disk full, unreadable store: try again at the next check
            log.error("Run %d: cannot prepare the saved version to resume from: %s", run.id, exc)
            return None
        overrides = {k: v for k, v in (run.config or {}).items() if k in takes}
        overrides.update({"central-run-id": run.id, "start-round": done,
                          "initial-model": str(last) if last else (run.config or {}).get("initial-model", ""),
                          "best-model": str(best) if best else ""})  # fmt: skip
        with transaction(self.sessions) as session:  # rounds after the saved version are redone
            row = runs_crud.get_run(session=session, run_id=run.id)
            runs_crud.forget_rounds_after(session=session, run=row, server_round=done)
            for v in session.scalars(select(ModelVersion).where(ModelVersion.run_id == run.id,
                                                                ModelVersion.server_round > done)):  # fmt: skip
                if v.released_at is None:
                    session.delete(v)
        try:
            flower_run_id = launch_run(self.home, app_dir, overrides, name=f"run-{run.id}-resume{run.resumes + 1}")
        except AdminError as exc:
            log.error("Run %d: the SuperLink did not start the resumed run (%s); trying again", run.id, exc)
            return None
        old = run.flower_run_id
        message = (f"Resumed ({reason}): rounds 1-{done} kept, continuing from round {done + 1} as Flower run "
                   f"{flower_run_id} (was {old})." if done else
                   f"Resumed ({reason}): no round had been saved; restarted as Flower run {flower_run_id} "
                   f"(was {old}).")  # fmt: skip
        with transaction(self.sessions) as session:
            row = runs_crud.get_run(session=session, run_id=run.id)
            stopped_meanwhile = row.status == "stopped"
            row.resumes = (row.resumes or 0) + 1
            runs_crud.update_run(session=session, run=row, status="interrupted", flower_run_id=str(flower_run_id),
                                 message=message)  # fmt: skip
            audit.record(session=session, actor="central", action="run.resume", target=f"run:{run.id}",
                         detail={"from_round": done, "flower_run_id": flower_run_id, "previous": old})  # fmt: skip
        if stopped_meanwhile:  # an admin stopped the run while it was being resumed
            with contextlib.suppress(SuperLinkError):
                self.control.stop_run(flower_run_id)
            return None
        log.warning("Run %d: %s", run.id, message)
        return flower_run_id

    def _materialize(self, run: Run, version: ModelVersion) -> Path:
        """<home>/runs/resume/run-N/<version>/: the stored weights (SHA-256 checked) and the card."""
        folder = self.home.root / "runs" / "resume" / f"run-{run.id}" / version.version
        card = dict(version.card)
        name = Path(card.get("weights", {}).get("file") or "weights.safetensors").name
        if (folder / name).is_file() and sha256_file(folder / name) == version.file_sha256:
            return folder
        stored = self.home.model_file(version.id)
        if sha256_file(stored) != version.file_sha256:
            raise OSError(f"the stored file of {version.version} does not match its SHA-256")
        tmp = folder.with_name(f".{folder.name}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            os.link(stored, tmp / name)
        except OSError:
            shutil.copyfile(stored, tmp / name)
        (tmp / "card.json").write_text(json.dumps(card, indent=2), encoding="utf-8")
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)
        return folder



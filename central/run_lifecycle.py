"""The one owner of a federated run's lifecycle: start, stop, resume and end.

Every entry point goes through `RunLifecycle`: the admin routes (which `fedxray-central run start|stop` and the
dashboard call), and the run keeper when it resumes a run after a restart. A run started from the dashboard,
from the CLI or resumed after a restart is therefore the same thing: recorded in the store with who started it,
its settings and the identity of the Flower app (FAB) that runs, then launched on the loopback SuperLink with
`flwr run`. No FastAPI here: refusals are `RunError`s whose `kind` the routes turn into a status code.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from central.crud import audit
from central.crud import runs as runs_crud
from central.db.engine import transaction
from central.db.models import ModelVersion, Run
from central.flower.app import app_components, app_config, coerce, default_app_dir
from central.flower.control import RunState, SuperLinkControl, SuperLinkError
from central.flower.flwr_tool import FlowerToolError, launch_run
from central.home import CentralHome
from fl.app_bundle import COMPONENTS, is_installed_fab
from fl.metrics import selection_score
from fl.modelfile import ModelFileError, sha256_file, write_model_folder

log = logging.getLogger("central.runs")

MAX_RESUMES = 5
# Set only by the central when it resumes a run: an admin cannot set them.
INTERNAL_KEYS = ("central-run-id", "start-round", "best-model")
RESUME_KEYS = ("central-run-id", "start-round", "initial-model", "best-model")
ENDED = ("finished", "failed", "stopped")
# The components of FedXray's own Flower app: code every workstation already has installed.


class RunError(Exception):
    """A run could not be started, stopped or found; `kind` is invalid, not_found, conflict or unavailable."""

    def __init__(self, message: str, *, kind: str = "invalid") -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class StartedRun:
    """A run the SuperLink accepted: its record, the full settings it runs with, Flower's run id."""

    run: Run
    config: dict[str, Any]
    flower_run_id: int


def score(card: dict) -> tuple | None:
    """The ServerApp's rule for "best" (fl.metrics.selection_score) applied to a stored model card."""
    metrics = card.get("metrics") or {}
    return selection_score(metrics.get("test"), metrics.get("validation"))


def saved_versions(session: Session, run: Run) -> list[ModelVersion]:
    """The run's model versions whose weights the central holds, by round."""
    rows = session.scalars(
        select(ModelVersion).where(ModelVersion.run_id == run.id, ModelVersion.file_sha256.is_not(None))
    )
    return sorted((r for r in rows if r.server_round), key=lambda r: r.server_round)


def settable_defaults(app_dir: Path | None = None) -> dict[str, Any]:
    """The run settings an admin may set for the app, with the app's defaults (for the CLI and the form)."""
    defaults = _app_config(app_dir or default_app_dir())
    return {k: v for k, v in defaults.items() if k not in INTERNAL_KEYS}


def _app_config(app_dir: Path) -> dict[str, Any]:
    try:
        return app_config(app_dir)
    except FlowerToolError as exc:
        raise RunError(str(exc)) from None


def validate_settings(requested: dict[str, Any], app_dir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(overrides, full config) for `requested`, or RunError naming what the app does not take or accept."""
    defaults = _app_config(app_dir)
    unknown = sorted(set(requested) - set(defaults))
    internal = sorted(set(requested) & set(INTERNAL_KEYS))
    if unknown or "central-run-id" not in defaults:
        missing = unknown or ["central-run-id"]
        raise RunError(f"The Flower app in {app_dir} does not take the run setting(s) {', '.join(missing)}; "
                       f"it takes: {', '.join(sorted(defaults))}. Nothing was started.")  # fmt: skip
    if internal:
        raise RunError(f"The run setting(s) {', '.join(internal)} are set by the central itself (when it resumes a "
                       "run); leave them out. Nothing was started.")  # fmt: skip
    try:
        overrides = {k: coerce(k, v, defaults[k]) for k, v in requested.items()}
    except FlowerToolError as exc:
        raise RunError(f"{exc} Nothing was started.") from None
    config = {k: v for k, v in {**defaults, **overrides}.items() if k != "central-run-id"}
    if _is_installed_app(app_dir):  # FedXray's own app: its settings' ranges are known here too
        from fl.task import RunSettings, SettingsError

        try:
            RunSettings.from_config(config)
        except SettingsError as exc:
            raise RunError(f"{str(exc)[:1].upper()}{str(exc)[1:]}. Nothing was started.") from None
    return overrides, config


def _is_installed_app(app_dir: Path) -> bool:
    with contextlib.suppress(FlowerToolError):
        return app_dir.resolve() == default_app_dir().resolve() and app_components(app_dir) == COMPONENTS
    return False


def app_identity(app_dir: Path, state: RunState | None) -> dict[str, Any]:
    """What code a run runs: the FAB Flower made of the app folder (hash, id, version), its components and
    whether they are FedXray's installed client and server code (what a workstation can check for itself)."""
    try:
        components = app_components(app_dir)
    except FlowerToolError:
        components = {}
    return {
        "app_dir": str(app_dir),
        "fab_id": state.fab_id if state else None,
        "fab_version": state.fab_version if state else None,
        "fab_hash": state.fab_hash if state else None,
        "components": components,
        # The FAB the SuperLink made is byte-identical to the one this installation builds: exactly what a
        # workstation's launcher of the same FedXray version approves (fl.app_bundle).
        "installed_code": is_installed_fab(state.fab_hash) if state and state.fab_hash else _is_installed_app(app_dir),
    }


class RunLifecycle:
    """Starts, stops, resumes and ends runs: one path for the routes and the run keeper (module docstring)."""

    def __init__(self, *, home: CentralHome, sessions: sessionmaker[Session], control: SuperLinkControl) -> None:
        self.home = home
        self.sessions = sessions
        self.control = control
        self._lock = threading.RLock()  # a stop never interleaves with a start or resume of the same service

    # ------------------------------------------------------------ start
    def start(self, *, settings: dict[str, Any], started_by: str, actor: str, app_dir: Path | None = None,
              on_recorded: Callable[[Run], None] | None = None) -> StartedRun:  # fmt: skip
        """Validate, record, launch. `settings` are the app's run-config keys (values in their types)."""
        app_dir = (app_dir or default_app_dir()).resolve()
        overrides, config = validate_settings(settings, app_dir)
        with self._lock:
            with transaction(self.sessions) as session:
                run = runs_crud.create_run(session=session, num_rounds=int(config["num-server-rounds"]),
                                           min_sites=int(config.get("min-sites", 1)), config=config,
                                           app_dir=str(app_dir), started_by=started_by)  # fmt: skip
                audit.record(session=session, actor=actor, action="run.start", target=f"run:{run.id}",
                             detail={"settings": overrides, "app_dir": str(app_dir)})  # fmt: skip
            if on_recorded is not None:
                on_recorded(run)
            try:
                flower_run_id = launch_run(self.home, app_dir, {**overrides, "central-run-id": run.id},
                                           name=f"run-{run.id}")  # fmt: skip
            except FlowerToolError as exc:
                self.end(run.id, "failed", f"The SuperLink did not start the run: {exc}", actor="central")
                raise RunError(f"The SuperLink did not start the run: {exc} (recorded as run {run.id}, failed).",
                               kind="unavailable") from None  # fmt: skip
            identity = app_identity(app_dir, self._state(flower_run_id))
            with transaction(self.sessions) as session:
                row = runs_crud.get_run(session=session, run_id=run.id)
                runs_crud.update_run(session=session, run=row, flower_run_id=str(flower_run_id), fab=identity)
        log.info("Run %d started by %s as Flower run %d", run.id, started_by, flower_run_id)
        return StartedRun(run=row, config=config, flower_run_id=flower_run_id)

    def _state(self, flower_run_id: int) -> RunState | None:
        try:
            return self.control.list_runs().get(int(flower_run_id))
        except SuperLinkError as exc:
            log.warning("Cannot read Flower run %s from the SuperLink: %s", flower_run_id, exc)
            return None

    # ------------------------------------------------------------ stop and end
    def stop(self, run_id: int, *, actor: str, who: str) -> Run:
        """Stop a run: Flower stops its ServerApp, the store records it stopped (a stopped run stays stopped)."""
        with self._lock:
            with self.sessions() as session:
                run = runs_crud.get_run(session=session, run_id=run_id)
            if run is None:
                raise RunError(f"No run has id {run_id}.", kind="not_found")
            if run.status in ENDED:
                raise RunError(f"Run {run.id} has already ended ({run.status}); nothing to stop.", kind="conflict")
            if run.flower_run_id:
                try:
                    self.control.stop_run(int(run.flower_run_id))
                except SuperLinkError as exc:
                    state = self._state(int(run.flower_run_id))
                    # An interrupted run waiting to be resumed has no live Flower run: recording the stop is enough.
                    if state is not None and state.status != "finished":
                        raise RunError(f"The SuperLink did not stop run {run.id}: {exc} (run status: {run.status}).",
                                       kind="unavailable") from None  # fmt: skip
            with transaction(self.sessions) as session:
                row = runs_crud.get_run(session=session, run_id=run_id)
                runs_crud.update_run(session=session, run=row, status="stopped", message=f"Stopped by {who}.")
                audit.record(session=session, actor=actor, action="run.stop", target=f"run:{run_id}",
                             detail={"flower_run_id": run.flower_run_id})  # fmt: skip
        log.info("Run %d stopped by %s", run_id, who)
        return row

    def end(self, run_id: int, status: str, message: str, *, actor: str = "central") -> None:
        """Record that a run ended (finished, failed, stopped) or was interrupted, with the reason."""
        with transaction(self.sessions) as session:
            run = runs_crud.get_run(session=session, run_id=run_id)
            runs_crud.update_run(session=session, run=run, status=status, message=message[:4000])
            audit.record(session=session, actor=actor, action=f"run.{status}", target=f"run:{run_id}",
                         detail={"reason": message[:300]})  # fmt: skip

    # ------------------------------------------------------------ resume
    def resume(self, run_id: int, reason: str) -> int | None:
        """Start an interrupted run again from its last saved version, as a new Flower run of the same app and
        settings; the new Flower run id, or None when it was not (the reason is recorded, or it is retried)."""
        with self._lock:
            return self._resume(run_id, reason)

    def _resume(self, run_id: int, reason: str) -> int | None:
        with self.sessions() as session:
            run = runs_crud.get_run(session=session, run_id=run_id)
            versions = saved_versions(session, run)
        if run.status in ENDED:
            return None
        if run.resumes >= MAX_RESUMES:
            self.end(run.id, "failed", f"Interrupted again ({reason}) after {run.resumes} resumes; not resumed any "
                     "more. Start a new run with the last version as --set initial-model=… if needed.")  # fmt: skip
            return None
        done = versions[-1].server_round if versions else 0
        if done >= run.num_rounds:
            self.end(run.id, "finished", f"All {run.num_rounds} rounds were saved before the interruption.")
            return None
        app_dir = Path(run.app_dir) if run.app_dir else default_app_dir()
        try:
            takes = app_config(app_dir)
        except FlowerToolError as exc:
            self.end(run.id, "failed", f"Interrupted ({reason}) and cannot be resumed: {exc}")
            return None
        if any(key not in takes for key in RESUME_KEYS):
            missing = ", ".join(k for k in RESUME_KEYS if k not in takes)
            self.end(run.id, "failed", f"Interrupted ({reason}); the Flower app in {app_dir} cannot be resumed "
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
        except FlowerToolError as exc:
            log.error("Run %d: the SuperLink did not start the resumed run (%s); trying again", run.id, exc)
            return None
        old = run.flower_run_id
        message = (f"Resumed ({reason}): rounds 1-{done} kept, continuing from round {done + 1} as Flower run "
                   f"{flower_run_id} (was {old})." if done else
                   f"Resumed ({reason}): no round had been saved; restarted as Flower run {flower_run_id} "
                   f"(was {old}).")  # fmt: skip
        identity = app_identity(app_dir, self._state(flower_run_id))
        with transaction(self.sessions) as session:
            row = runs_crud.get_run(session=session, run_id=run.id)
            row.resumes = (row.resumes or 0) + 1
            runs_crud.update_run(session=session, run=row, status="interrupted", flower_run_id=str(flower_run_id),
                                 message=message, fab=identity)  # fmt: skip
            audit.record(session=session, actor="central", action="run.resume", target=f"run:{run.id}",
                         detail={"from_round": done, "flower_run_id": flower_run_id, "previous": old})  # fmt: skip
        log.warning("Run %d: %s", run.id, message)
        return flower_run_id

    def _materialize(self, run: Run, version: ModelVersion) -> Path:
        """<home>/runs/resume/run-N/<version>/: the stored weights (SHA-256 checked) and the card."""
        folder = self.home.root / "runs" / "resume" / f"run-{run.id}" / version.version
        name = Path((version.card.get("weights") or {}).get("file") or "weights.safetensors").name
        if (folder / name).is_file() and sha256_file(folder / name) == version.file_sha256:
            return folder  # prepared at an earlier attempt
        if (version.card.get("weights") or {}).get("sha256") != version.file_sha256:
            raise OSError(f"the card of {version.version} does not record the SHA-256 of its uploaded file")
        try:
            write_model_folder(folder, card=version.card, weights=self.home.model_file(version.id), how="link")
        except ModelFileError as exc:
            raise OSError(f"the stored file of {version.version} does not match its card: {exc}") from exc
        return folder

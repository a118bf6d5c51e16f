"""Control of the per-user federation agent from the app and the CLI: opt in/out, start detached, stop, attach.

The agent itself (the process) is app.core.agent; this module only starts, stops and reads it. Every function
may block (process start/stop, disk, keyring for leave): the desktop app calls them on worker threads.

Public API (plain data):
- `status() -> AgentStatus` (app.core.federation_status.read_status: cheap, poll it every second or two).
- `opt_in(data_dir=None) -> AgentStatus`: records the choice, installs the login autostart entry, starts the agent
  detached (returns at once; a running agent is kept: no duplicate). Refuses (FederationError) when not enrolled.
- `opt_out() -> AgentStatus`: records the choice, removes the autostart entry, stops the agent (a message in
  progress is abandoned: nothing half-sent leaves; see app.core.agent).
- `ensure_running() -> AgentStatus`: opted in but no agent (killed, crashed): start one. The app calls it when it
  starts and on its status timer; the agent's guardian does the same without the app.
- `start() -> AgentStatus`, `stop(timeout=60) -> bool`: the raw process control (opt-in state unchanged).
- `leave_federation(force=False) -> LeaveResult`: opt out, then leave (revoke at the central, remove the keys).
- `WHAT_LEAVES` / `WHAT_STAYS`: the plain statement shown before opting in.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

from app.core import agent_lock, autostart, federation_settings
from app.core.errors import AppError
from app.core.federation_status import AgentStatus, read_status
from app.core.paths import data_dir

AGENT_LOG = "federation-agent.log"
WHAT_LEAVES = ("The model's weights after local training (or the change to them), and summary metrics of the "
               "model on this site's validation patients and of the training: loss, accuracy, sensitivity, "
               "specificity, precision, F1, AUROC and the confusion counts per class, the number of images used, "
               "and how long training took.")  # fmt: skip
WHAT_STAYS = ("The images, the label of any single case, patient identifiers and any other patient data never "
              "leave this computer.")  # fmt: skip


class AgentControlError(AppError):
    """The agent could not be started or stopped; the message says what to do."""


def agent_command(*extra: str) -> list[str]:
    """The agent's command line (source install or frozen bundle), as the autostart entry runs it."""
    if getattr(sys, "frozen", False):
        return [sys.executable, "federation", "agent", *extra]
    return [sys.executable, "-m", "app", "federation", "agent", *extra]


def status(folder: Path | None = None) -> AgentStatus:
    """The merged agent status (see app.core.federation_status.AgentStatus)."""
    return read_status(folder)


def start(*, folder: Path | None = None, wait: float = 0.0) -> AgentStatus:
    """Start the agent detached from this process (own session, output to federation-agent.log) unless one
    runs; returns at once, or once it holds its lock when `wait` > 0 (seconds)."""
    folder = Path(folder) if folder is not None else data_dir()
    if agent_lock.running_agent(folder) is None:
        spawn_detached(agent_command(), folder / AGENT_LOG)
        deadline = time.monotonic() + wait
        while wait and time.monotonic() < deadline and agent_lock.running_agent(folder) is None:
            time.sleep(0.1)
    return read_status(folder)


def spawn_detached(command: list[str], log: Path) -> int:
    """Start `command` so that it outlives this process and its terminal; returns its pid."""
    log.parent.mkdir(parents=True, exist_ok=True)
    kwargs: dict = {"stdin": subprocess.DEVNULL, "close_fds": True}
    if os.name == "nt":  # untested
        kwargs["creationflags"] = subprocess.DETACHED_PROCESS | subprocess.CREATE_NEW_PROCESS_GROUP
    else:
        kwargs["start_new_session"] = True
    with open(log, "ab") as out:
        try:
            proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, **kwargs)
        except OSError as exc:
            raise AgentControlError(f"The federation agent could not be started ({command[0]}: "
                                    f"{exc.strerror or exc}). Reinstall FedXray.") from exc  # fmt: skip
    return proc.pid


def stop(*, folder: Path | None = None, timeout: float = 60.0) -> bool:
    """Ask the running agent to stop (SIGTERM: it abandons a message in progress cleanly and ends its SuperNode)
    and wait for it; SIGKILL after `timeout`. False when no agent was running."""
    folder = Path(folder) if folder is not None else data_dir()
    pid = agent_lock.running_agent(folder)
    if pid is None:
        return False
    import psutil

    try:
        proc = psutil.Process(pid)
        proc.terminate()
        proc.wait(timeout)  # the process itself, not only its lock: nothing of it may still be running
    except psutil.TimeoutExpired:
        with contextlib.suppress(psutil.Error):
            proc.kill()
            proc.wait(10)
    except psutil.Error:
        pass
    return True


def ensure_running(*, folder: Path | None = None) -> AgentStatus:
    """Start the agent when opted in and none runs (it was killed or crashed); otherwise just the status."""
    current = read_status(folder)
    if current.opted_in and not current.running:
        return start(folder=folder)
    return current


def opt_in(*, data_dir_override: str | None = None, folder: Path | None = None, autostart_entry: bool = True,
           wait: float = 0.0) -> AgentStatus:  # fmt: skip
    """Take part: remember the choice, install the login entry, start the agent detached."""
    from app.core.enrollment import load_enrollment
    from app.core.federation import FederationError

    if load_enrollment() is None:
        raise FederationError("This workstation is not enrolled with a FedXray central yet, so it cannot take part. "
                              "Ask IT to enrol it (Federation page → Enrol, or `fedxray enroll`).")  # fmt: skip
    changes: dict = {"opted_in": True}
    if data_dir_override is not None:
        changes["data_dir"] = data_dir_override
    federation_settings.update(**changes)
    if autostart_entry:
        autostart.install(agent_command())
    return start(folder=folder, wait=wait)


def opt_out(*, folder: Path | None = None, timeout: float = 60.0) -> AgentStatus:
    """Stop taking part: remember the choice, remove the login entry, stop the agent."""
    try:
        federation_settings.update(opted_in=False)
    except federation_settings.FederationSettingsError:  # a damaged file must not keep the agent running
        federation_settings.save(federation_settings.FederationSettings(opted_in=False))
    autostart.remove()
    stop(folder=folder, timeout=timeout)
    return read_status(folder)


def leave_federation(*, force: bool = False, folder: Path | None = None):
    """Opt out, then leave the federation (app.core.enrollment.leave: revoke at the central, remove the keys)."""
    from app.core.enrollment import leave

    opt_out(folder=folder)
    return leave(force=force)

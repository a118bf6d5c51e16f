"""The per-user federation agent: the background process through which this workstation takes part in federated
training (`fedxray federation agent`, started detached by opt-in, at login by the autostart entry, or again by
its guardian after it was killed). Control and status readers: app.core.agent_control, federation_status.

What it does, in a loop, while the user is opted in:
- holds the per-user lock (app.core.agent_lock): a second agent exits at once, so there is never a duplicate;
- keeps a guardian process that starts a new agent if this one dies without stopping cleanly (SIGKILL, crash);
- inside the training windows (app.core.federation_settings) it runs the SuperNode through FedXray's launcher
  (app.core.federation.NodeSupervisor) with the CPU-thread and GPU-memory caps at lower OS priority;
- outside them the SuperNode is not connected, so the central's runs proceed with the other sites and this one
  takes no training work. When a window closes during a message, the message is finished (up to
  `overrun_minutes` past the window; a reply being sent is always finished), else abandoned by ending the
  SuperNode before it sends anything: never half-sent;
- before connecting it checks the data, the enrolment and the clock, and reports problems in plain words
  (AgentStatus.error / error_kind) instead of letting Flower fail obscurely; it retries after a pause.
SIGTERM (opt-out, `agent_control.stop`) ends the SuperNode, the guardian and the agent cleanly.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

from app.core import federation_settings
from app.core.agent_lock import AgentLock, running_agent
from app.core.errors import AppError
from app.core.federation_status import BUSY, FederationStatus

AGENT_NICE = 10  # the training processes run at lower priority than the clinician's app
RETRY_SECONDS = 60.0  # after a problem (clock, data, not enrolled): check again this often
DRAIN_SEND_GRACE = 300.0  # seconds a reply already being sent may take after the overrun


class Agent:
    """One agent process's life: lock, guardian, schedule loop, supervised SuperNode sessions."""

    def __init__(self, folder: Path, *, echo: Callable[[str], None] = print, guard: bool = True,
                 poll: float = 1.0, retry: float = RETRY_SECONDS) -> None:  # fmt: skip
        self.folder = Path(folder)
        self.echo = echo
        self.guard = guard
        self.poll = poll
        self.retry = retry
        self.status = FederationStatus(self.folder)
        self._stop = threading.Event()
        self._supervisor = None
        self._guardian: int | None = None

    # ---------------------------------------------------------------- life
    def stop(self) -> None:
        """Stop cleanly (signal handlers call this)."""
        self._stop.set()
        sup = self._supervisor
        if sup is not None:
            sup.stop()

    def run(self) -> int:
        lock = AgentLock.acquire(self.folder)
        if lock is None:
            self.echo(f"A federation agent already runs for this user (pid {running_agent(self.folder)}); "
                      "this one exits.")  # fmt: skip
            return 0
        previous = {sig: signal.signal(sig, lambda *_: self.stop()) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            self.status.update(state="starting", agent_pid=os.getpid(), error=None, error_kind=None)
            self.echo(f"Federation agent started (pid {os.getpid()}).")
            while not self._stop.is_set():
                self._keep_guardian()
                settings = self._settings()
                if settings is None:
                    continue
                if not settings.opted_in:
                    self.echo("This workstation is no longer opted in: the agent stops.")
                    break
                if not settings.in_window():
                    self._paused(settings)
                    continue
                self._session(settings)
        finally:
            self._end_guardian()
            self.status.update(state="stopped", error=self.status.state.get("error"))
            for sig, old in previous.items():
                signal.signal(sig, old)
            lock.release()
            self.echo("Federation agent stopped.")
        return 0

    def _settings(self):
        try:
            return federation_settings.load()
        except AppError as exc:
            self._problem("other", str(exc))
            return None

    def _problem(self, kind: str, message: str, wait: float | None = None) -> None:
        """Report a problem in plain words and wait before trying again."""
        if self.status.state.get("error") != message:
            self.echo(message)
        self.status.update(state="error", error=message, error_kind=kind, last_error=message)
        self._stop.wait(self.retry if wait is None else wait)

    def _paused(self, settings) -> None:
        change = settings.next_change()
        if self.status.state.get("state") != "paused":
            until = f" until {change:%a %H:%M}" if change else ""
            self.echo(f"Outside the training windows ({federation_settings.format_windows(settings.windows)}): "
                      f"taking no training work{until}.")  # fmt: skip
        self.status.update(state="paused", error=None, error_kind=None,
                           next_change=change.isoformat(timespec="minutes") if change else None)  # fmt: skip
        self._stop.wait(self.poll * 5)  # settings may change any time: look again soon

    # ---------------------------------------------------------------- one connected session
    def _session(self, settings) -> None:
        """Pre-flight checks, then the SuperNode until stopped, opted out, the window closes or it fails."""
        from app.core.central_client import CentralClient
        from app.core.enrollment import load_enrollment, private_key_file
        from app.core.federation import FederationError, NodeSettings, NodeSupervisor, NotEnrolledError
        from app.core.readiness import training_data_dir

        try:
            enrollment = load_enrollment()
        except AppError as exc:
            return self._problem("not-enrolled", str(exc))
        if enrollment is None:
            return self._problem("not-enrolled", "This workstation is not enrolled any more: IT enrols it again "
                                 "(Federation page → Enrol, or `fedxray enroll`).")  # fmt: skip
        data = training_data_dir(settings)
        try:
            from app.core.federation import check_data_dir

            check_data_dir(data)
        except FederationError as exc:
            return self._problem("data", str(exc))
        verdict = self._preflight(enrollment)
        if verdict is not None:
            return self._problem(*verdict)
        try:
            with private_key_file(enrollment) as key:
                node = NodeSettings(superlink=enrollment.superlink_address, data_dir=data,
                                    root_certificates=enrollment.ca_cert_path, private_key=key,
                                    cpu_threads=settings.threads, gpu_memory_mb=settings.gpu_memory_mb,
                                    nice=AGENT_NICE)  # fmt: skip
                sup = NodeSupervisor(node, folder=self.folder, echo=self.echo, status=self.status,
                                     check_enrolled=CentralClient(enrollment).still_enrolled)  # fmt: skip
                self._supervisor = sup
                if self._stop.is_set():
                    return None
                outcome: dict = {}
                thread = threading.Thread(target=_run_into, args=(sup, outcome), name="supernode", daemon=True)
                self.status.update(error=None, error_kind=None)
                thread.start()
                self._watch(sup, thread, settings)
                thread.join()
        except AppError as exc:  # keyring locked, key missing
            kind = "keyring" if "keyring" in str(exc).lower() else "other"
            return self._problem(kind, str(exc))
        finally:
            self._supervisor = None
        error = outcome.get("error")
        if isinstance(error, NotEnrolledError):
            return self._problem("not-enrolled", str(error))
        if isinstance(error, FederationError):
            return self._problem("install", str(error))
        if error is not None:
            return self._problem("other", f"The SuperNode supervisor failed: {error}")
        return None

    def _preflight(self, enrollment) -> tuple[str, str] | None:
        """(kind, message) of a problem that would make Flower fail obscurely; None to go ahead."""
        from app.core.central_client import CentralClient, ClockSkewError, CredentialRefusedError

        try:
            probed = CentralClient(enrollment).probe()
            probed.require_clock()
        except ClockSkewError as exc:
            return "clock", str(exc)
        except CredentialRefusedError as exc:
            return "not-enrolled", str(exc)
        except AppError as exc:  # unreachable now: the SuperNode keeps trying by itself, say so meanwhile
            self.status.update(state="reconnecting", error=str(exc), error_kind="central-unreachable")
        return None

    def _watch(self, sup, thread: threading.Thread, settings) -> None:
        """Until the supervisor ends: follow opt-out, limit changes and the schedule."""
        while thread.is_alive() and not self._stop.is_set():
            thread.join(self.poll)
            current = self._settings()
            if current is None:
                continue
            if not current.opted_in:
                self._stop.set()
                break
            limits_changed = (current.threads, current.gpu_memory_mb, current.data_dir) != (
                settings.threads, settings.gpu_memory_mb, settings.data_dir)
            if not current.in_window() or (limits_changed and not self._busy()):
                self._drain(current, reason="the training window closed" if not current.in_window()
                            else "the limits changed")  # fmt: skip
                break
        sup.stop()

    def _busy(self) -> bool:
        return self.status.state.get("phase") in BUSY

    def _drain(self, settings, *, reason: str) -> None:
        """Let the message in progress finish (until the overrun ends; a reply being sent always finishes)."""
        if not self._busy():
            self.echo(f"Disconnecting: {reason}.")
            return
        deadline = time.monotonic() + settings.overrun_minutes * 60
        self.echo(f"{reason[0].upper()}{reason[1:]}: finishing the current round first (at most "
                  f"{settings.overrun_minutes} min).")  # fmt: skip
        while self._busy() and not self._stop.is_set():
            late = time.monotonic() - deadline
            sending = self.status.client_round() or {}
            if late > 0 and (sending.get("phase") != "sending" or late > DRAIN_SEND_GRACE):
                self.echo("The round did not finish in time: it is abandoned (nothing of it was sent).")
                return
            self._stop.wait(self.poll)
        self.echo("The round finished: disconnecting.")

    # ---------------------------------------------------------------- the guardian
    def _keep_guardian(self) -> None:
        if not self.guard or os.name != "posix":
            return
        import psutil

        if self._guardian is not None and psutil.pid_exists(self._guardian):
            with contextlib.suppress(psutil.Error):
                if psutil.Process(self._guardian).status() != psutil.STATUS_ZOMBIE:
                    return
        from app.core.agent_control import AGENT_LOG, agent_command, spawn_detached

        self._guardian = spawn_detached(agent_command("--guard", str(os.getpid())), self.folder / AGENT_LOG)

    def _end_guardian(self) -> None:
        if self._guardian is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._guardian, signal.SIGTERM)
            self._guardian = None


def _run_into(sup, outcome: dict) -> None:
    try:
        sup.run()
    except Exception as exc:  # noqa: BLE001 - handed to the agent's loop, which reports it
        outcome["error"] = exc


def guard(agent_pid: int, folder: Path, *, poll: float = 1.0, echo: Callable[[str], None] = print) -> int:
    """The guardian: wait for the agent `agent_pid` to end; if it ended without stopping cleanly (this guardian
    was not told to exit first) and the user is still opted in, start a new agent. SIGTERM ends it quietly."""
    import psutil

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        agent = psutil.Process(agent_pid)
    except psutil.Error:
        return 0
    while not stop.is_set():
        try:
            if not agent.is_running() or agent.status() == psutil.STATUS_ZOMBIE:
                break
        except psutil.Error:
            break
        stop.wait(poll)
    if stop.is_set():
        return 0
    time.sleep(poll)  # a clean stop sends SIGTERM here first; give it the chance to arrive
    if stop.is_set():
        return 0
    try:
        opted_in = federation_settings.load().opted_in
    except AppError:
        opted_in = False
    if opted_in and running_agent(folder) is None:
        from app.core.agent_control import start

        echo(f"{dt.datetime.now():%Y-%m-%d %H:%M:%S} The federation agent (pid {agent_pid}) ended unexpectedly: "
             "starting it again.")  # fmt: skip
        start(folder=folder)
    return 0

"""What the Federation page and the status-bar indicator show, kept fresh by workers (never the GUI thread).

`FederationModel` holds the latest enrolment status, agent status, federation settings and readiness checks
(plain data from app.core) and announces changes; its operations (opt in/out, leave, save the schedule, run the
readiness checks, poll the background agent) each run in a worker of its own small pool, so a slow central never
queues behind the clinician's classification, nor the other way round.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QObject, QTimer, Signal

from app.ui.notify import Notifier
from app.ui.workers import TaskRunner

AGENT_POLL_MS = 1500  # the agent's status files: two small reads and a process check
ENROLMENT_POLL_MS = 60_000  # the central: one probe and one authenticated call
ENSURE_EVERY = 20  # polls between checks that an opted-in agent runs (start it again after a crash)


# ---------------------------------------------------------------- worker functions (app.core, off the GUI thread)
def read_agent(ensure: bool = False):
    from app.core import agent_control

    return agent_control.ensure_running() if ensure else agent_control.status()


def read_enrollment(ask_central: bool):
    from app.core import enrollment

    return enrollment.status(ask_central=ask_central)


def read_settings():
    from app.core import federation_settings

    return federation_settings.load()


def save_settings(changes: dict):
    from app.core import federation_settings

    return federation_settings.update(**changes)


def opt_in():
    from app.core import agent_control

    return agent_control.opt_in(wait=10.0)


def opt_out():
    from app.core import agent_control

    return agent_control.opt_out()


def leave(force: bool):
    from app.core import agent_control

    return agent_control.leave_federation(force=force)


def run_checks():
    from app.core import readiness

    return readiness.run_checks()


class FederationModel(QObject):
    """The federation as this workstation sees it; every change is announced by a signal."""

    enrollmentChanged = Signal()
    agentChanged = Signal()
    settingsChanged = Signal()
    checksChanged = Signal()
    busyChanged = Signal()  # an operation started or ended (``busy`` says which)
    left = Signal(object)  # LeaveResult
    failed = Signal(str, str)  # (what, message): an operation failed; also sent to the notifier

    def __init__(self, notifier: Notifier, parent: QObject | None = None, *, poll_ms: int = AGENT_POLL_MS,
                 enrolment_ms: int = ENROLMENT_POLL_MS) -> None:  # fmt: skip
        super().__init__(parent)
        self.notifier = notifier
        self.runner = TaskRunner(self._failed, self, max_threads=3)
        self.enrollment = None  # app.core.enrollment.EnrollmentStatus (None: not read yet)
        self.agent = None  # app.core.federation_status.AgentStatus (None: not read yet)
        self.settings = None  # app.core.federation_settings.FederationSettings
        self.settings_problem: str | None = None
        self.checks: list | None = None  # app.core.readiness.Check list (None: not run yet)
        self.checking = False
        self.busy = ""  # what is being done ("Starting the background agent…"), "" when idle
        self.refreshing = False  # the enrolment is being asked of the central
        self._polling = False
        self._polls = 0
        self._agent_timer = QTimer(self)
        self._agent_timer.setInterval(poll_ms)
        self._agent_timer.timeout.connect(self.poll_agent)
        self._enrolment_timer = QTimer(self)
        self._enrolment_timer.setInterval(enrolment_ms)
        self._enrolment_timer.timeout.connect(lambda: self.refresh_enrollment(ask_central=True))

    # ---------------------------------------------------------------- life
    def start(self) -> None:
        """Read everything once (the agent first: it is local and quick), then keep polling."""
        self.poll_agent(ensure=True)
        self.refresh_settings()
        self.refresh_enrollment(ask_central=False)
        self.refresh_enrollment(ask_central=True)
        self._agent_timer.start()
        self._enrolment_timer.start()

    def shutdown(self, wait_ms: int = 5000) -> None:
        """Stop polling (the window closes; the background agent is not touched and goes on)."""
        self._agent_timer.stop()
        self._enrolment_timer.stop()
        self.runner.cancel_all()
        self.runner.wait(wait_ms)

    def set_poll_interval(self, msecs: int) -> None:
        """How often the agent's status is read (tests and the screenshots follow a round closely)."""
        self._agent_timer.setInterval(msecs)

    @property
    def enrolled(self) -> bool:
        return bool(self.enrollment is not None and self.enrollment.enrolled)

    @property
    def opted_in(self) -> bool:
        return bool(self.agent is not None and self.agent.opted_in)

    # ---------------------------------------------------------------- reading
    def poll_agent(self, ensure: bool = False) -> None:
        """Read the agent's status in a worker (skipped while the previous read is still running)."""
        if self._polling:
            return
        self._polls += 1
        ensure = ensure or self._polls % ENSURE_EVERY == 0
        self._polling = True
        self.runner.start("Reading the federation agent's status", read_agent, ensure, on_result=self._on_agent,
                          on_finished=self._poll_done)  # fmt: skip

    def _poll_done(self) -> None:
        self._polling = False

    def _on_agent(self, status) -> None:
        changed = status != self.agent
        self.agent = status
        if changed:
            self.agentChanged.emit()

    def refresh_enrollment(self, ask_central: bool = True) -> None:
        """Read the enrolment (and, with ``ask_central``, what the central says about it) in a worker."""
        if ask_central:
            if self.refreshing:
                return
            self.refreshing = True
            self.enrollmentChanged.emit()
        self.runner.start("Reading this workstation's enrolment", read_enrollment, ask_central,
                          on_result=lambda s: self._on_enrollment(s, ask_central),
                          on_finished=(lambda: self._refreshed()) if ask_central else None)  # fmt: skip

    def _refreshed(self) -> None:
        self.refreshing = False
        self.enrollmentChanged.emit()

    def _on_enrollment(self, status, asked: bool) -> None:
        # A quick local read never replaces what the central said about the same enrolment.
        if not asked and self.enrollment is not None and self.enrollment.node_id == status.node_id \
                and self.enrollment.reachable is not None:  # fmt: skip
            return
        self.enrollment = status
        self.enrollmentChanged.emit()

    def refresh_settings(self) -> None:
        self.runner.start("Reading the federation settings", read_settings, on_result=self._on_settings,
                          on_error=self._settings_failed)  # fmt: skip

    def _on_settings(self, settings) -> None:
        self.settings, self.settings_problem = settings, None
        self.settingsChanged.emit()

    def _settings_failed(self, exc: BaseException) -> None:
        self.settings_problem = str(exc)
        self.settingsChanged.emit()

    def run_checks(self) -> None:
        """The readiness checks (data, device, disk, clock, central) in a worker."""
        if self.checking:
            return
        self.checking = True
        self.checksChanged.emit()
        self.runner.start("Checking whether this workstation is ready", run_checks, on_result=self._on_checks,
                          on_finished=self._checks_done)  # fmt: skip

    def _on_checks(self, checks) -> None:
        self.checks = list(checks)

    def _checks_done(self) -> None:
        self.checking = False
        self.checksChanged.emit()

    # ---------------------------------------------------------------- operations
    def _operate(self, busy: str, what: str, fn: Callable, *args, on_result: Callable | None = None,
                 on_error: Callable | None = None) -> bool:  # fmt: skip
        if self.busy:
            self.notifier.info(f"Please wait: {self.busy[:1].lower()}{self.busy[1:]}")
            return False
        self.busy = busy
        self.busyChanged.emit()
        self.runner.start(what, fn, *args, on_result=on_result,
                          on_error=on_error or (lambda exc: self._failed(what, exc)),
                          on_finished=self._operated)  # fmt: skip
        return True

    def _operated(self) -> None:
        self.busy = ""
        self.busyChanged.emit()
        self.poll_agent()

    def opt_in(self) -> bool:
        """Take part: the choice is kept, the login entry installed and the background agent started."""
        return self._operate("Starting the background agent…", "Taking part in federated training", opt_in,
                             on_result=self._opted)  # fmt: skip

    def opt_out(self) -> bool:
        """Stop taking part: the agent is stopped (a round in progress is abandoned cleanly, never half-sent)."""
        return self._operate("Stopping the background agent…", "Stopping federated training", opt_out,
                             on_result=self._opted)  # fmt: skip

    def _opted(self, status) -> None:
        self._on_agent(status)
        self.refresh_settings()
        if status.opted_in:
            self.notifier.info("This workstation takes part in federated training. The background agent runs even "
                               "when FedXray is closed, and starts again at login.")  # fmt: skip
        else:
            self.notifier.info("This workstation no longer takes part in federated training; the background agent "
                               "was stopped.")  # fmt: skip

    def leave(self, *, force: bool = False, on_error: Callable[[BaseException], None] | None = None) -> bool:
        """Stop taking part, tell the central this workstation leaves, remove its keys from the keyring."""
        return self._operate("Leaving the federation…", "Leaving the federation", leave, force,
                             on_result=self._on_left, on_error=on_error)  # fmt: skip

    def _on_left(self, result) -> None:
        self.notifier.info(f"This workstation left the federation (node {result.node_id}). {result.message}")
        self.left.emit(result)
        self.refresh_enrollment(ask_central=False)
        self.refresh_settings()

    def save_settings(self, changes: dict) -> bool:
        """Store the schedule and limits (validated by app.core); the agent applies them at its next check."""
        return self._operate("Saving the schedule and limits…", "Saving the schedule and limits", save_settings,
                             changes, on_result=self._saved)  # fmt: skip

    def _saved(self, settings) -> None:
        self._on_settings(settings)
        self.notifier.info(f"Schedule and limits saved: {settings.describe()}.")

    def enrolled_now(self) -> None:
        """The enrol wizard finished: read the new enrolment."""
        self.refresh_enrollment(ask_central=False)
        self.refresh_enrollment(ask_central=True)

    def _failed(self, what: str, exc: BaseException) -> None:
        message = self.notifier.task_failed(what, exc)
        self.failed.emit(what, message.text)

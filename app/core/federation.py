"""The workstation's part in federated training: runs its Flower SuperNode, restarts it, reports progress.

NodeSupervisor runs the SuperNode through FedXray's launcher (`python -m fl.launcher node -- <flower-supernode
args>`: process isolation, only FedXray's installed ClientApp runs, warm workers; fl/launcher.py), with the
resource limits of NodeSettings (CPU threads, GPU memory, lower OS priority). The background agent
(app.core.agent) and `fedxray federate` (the foreground form) both use it. Progress goes to the console and to
data_dir()/federation-status.json (app.core.federation_status). No TensorFlow here.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from app.core.errors import AppError
from app.core.federation_status import FederationStatus, parse_line
from app.core.paths import atomic_write_text
from fl.processes import bin_dir, descendants, flower_env, signal_all

LOG_FILE = "federation.log"
REFUSALS_FILE = "federation-refusals.jsonl"  # runs the launcher refused (their app is not FedXray's installed one)
LAUNCHER_POLL = "0.2"  # seconds between the launcher's claims on the SuperNode's loopback API
NOT_ENROLLED = (
    "The central refused this workstation: it is not (or no longer) enrolled. IT enrols it again with a new "
    "enrolment token (Federation tab → Enrol this workstation…, or `fedxray enroll`)."
)


class FederationError(AppError):
    """Taking part in federated training failed; the message says what to do."""


class NotEnrolledError(FederationError):
    """The SuperLink refused the node's key."""


@dataclass(frozen=True)
class NodeSettings:
    """How to reach the central's SuperLink and what this workstation trains on."""

    superlink: str  # host:port of the Fleet API
    data_dir: Path
    root_certificates: Path | None = None  # the central's CA certificate (TLS)
    private_key: Path | None = None  # the node's private key file (node authentication)
    insecure: bool = False  # plain HTTP, for tests on loopback only
    cpu_threads: int | None = None  # thread cap of the training processes (None: TensorFlow's default)
    gpu_memory_mb: int | None = None  # GPU memory cap per GPU (None: growth only)
    nice: int = 0  # added OS niceness of the SuperNode, launcher and ClientApps (POSIX)


def check_data_dir(path: Path) -> dict[str, int]:
    """Images per class in a class-folder data set; a clear FederationError if it cannot be trained on."""
    from fl.data import DatasetError, discover

    try:
        samples = discover(path)
    except DatasetError as exc:
        raise FederationError(f"The training data cannot be used: {exc}.") from exc
    patients = {s.patient_id for s in samples}
    if len(patients) < 2:
        raise FederationError(
            f"{path} holds {len(samples)} image(s) of {len(patients)} patient(s); federated training needs images "
            "of at least two patients (confirm more cases into the labelled set, or pass --data DIR)."
        )
    from fl.classes import CLASSES

    return {c: sum(1 for s in samples if s.label == i) for i, c in enumerate(CLASSES)}


# ---------------------------------------------------------------- the supervised SuperNode


def _child_setup(nice: int) -> Callable[[], None]:
    """In the launcher child (POSIX): lower its priority by `nice`, and on Linux have it terminated when the
    thread that started it dies (even by SIGKILL), so a killed agent never leaves a SuperNode behind."""

    def setup() -> None:
        if nice:
            with contextlib.suppress(OSError):
                os.nice(nice)
        if sys.platform.startswith("linux"):
            import ctypes

            with contextlib.suppress(OSError, AttributeError):
                ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG

    return setup


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class NodeSupervisor:
    """Runs `flower-supernode`, parses its output, restarts it with back-off; stop() ends it (thread-safe)."""

    def __init__(self, settings: NodeSettings, *, folder: Path, echo: Callable[[str], None] = print,
                 backoff: tuple[float, float] = (2.0, 60.0), stable_after: float = 120.0,
                 refusal_grace: float = 150.0, check_enrolled: Callable[[], bool | None] | None = None,
                 status: FederationStatus | None = None) -> None:
        """`refusal_grace`: how long refusals may last before the node is declared not enrolled. Flower refuses
        a node whose previous connection still counts as open (up to about a minute after a crash) with the
        same code as an unknown key. `check_enrolled` asks the central (False: enrolment ended; None: unknown)."""  # fmt: skip
        self.settings = settings
        self.folder = folder
        self.echo = echo
        self.backoff = backoff
        self.stable_after = stable_after
        self.refusal_grace = refusal_grace
        self.check_enrolled = check_enrolled
        self.status = status or FederationStatus(folder, settings)
        self.status.configure(settings)
        self._stop = threading.Event()
        self._proc: subprocess.Popen | None = None
        self._lock = threading.RLock()  # stop() may run in a signal handler on the thread holding it

    def node_config(self) -> Path:
        """The node config as a TOML file (paths with any characters survive)."""
        import tomli_w

        path = self.folder / "federation-node-config.toml"
        text = tomli_w.dumps({"data-dir": str(self.settings.data_dir), "status-file": str(self.status.round_path)})
        atomic_write_text(path, text, what="the SuperNode configuration")
        return path

    def command(self, port: int) -> list[str]:
        """The launcher with its SuperNode: `fl.launcher node --refusals F -- flower-supernode ARGS`."""
        from fl.launcher import command as launcher_command

        s = self.settings
        args = [str(bin_dir() / "flower-supernode"), "--superlink", s.superlink, "--port", str(port),
                "--node-config", str(self.node_config())]  # fmt: skip
        if s.insecure:
            args.append("--insecure")
        elif s.root_certificates:
            args += ["--root-certificates", str(s.root_certificates)]
        if s.private_key:
            args += ["--auth-supernode-private-key", str(s.private_key)]
        return launcher_command("node", "--refusals", str(self.folder / REFUSALS_FILE), "--", *args)

    def environment(self) -> dict[str, str]:
        """Flower's environment plus the resource limits (fl.limits) and the launcher's short local poll."""
        from fl.limits import limit_env

        s = self.settings
        return flower_env(self.folder / "flower", FEDXRAY_LAUNCHER_POLL=LAUNCHER_POLL,
                          FLWR_SUPEREXEC_TASK_POLL_INTERVAL=LAUNCHER_POLL,
                          **limit_env(cpu_threads=s.cpu_threads, gpu_memory_mb=s.gpu_memory_mb))  # fmt: skip

    def _spawn(self) -> subprocess.Popen:
        command = self.command(free_port())
        try:
            return subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                env=self.environment(), cwd=self.folder, start_new_session=True, text=True, errors="replace",
                bufsize=1, preexec_fn=_child_setup(self.settings.nice) if os.name == "posix" else None,
            )  # fmt: skip
        except OSError as exc:
            raise FederationError(
                f"Cannot start Flower's SuperNode ({command[0]}: {exc.strerror or exc}). FedXray's installation is "
                "incomplete: reinstall it (the Flower programs must sit beside the fedxray program)."
            ) from exc

    def run(self) -> int:
        """Run until stop(); returns 0. Raises NotEnrolledError when the SuperLink keeps refusing this node."""
        delay = self.backoff[0]
        refused_since: float | None = None
        self.folder.mkdir(parents=True, exist_ok=True)
        log = open(self.folder / LOG_FILE, "a", encoding="utf-8")  # noqa: SIM115 (closed below)
        try:
            while not self._stop.is_set():
                with self._lock:
                    if self._stop.is_set():
                        break
                    self._proc = self._spawn()
                started = time.monotonic()
                self.status.update(state="connecting", supernode_pid=self._proc.pid)
                refused, connected = self._follow(self._proc, log)
                code = self._proc.wait()
                if self._stop.is_set():
                    break
                if connected or time.monotonic() - started > self.stable_after:
                    refused_since = None
                if time.monotonic() - started > self.stable_after:
                    delay = self.backoff[0]
                if refused:
                    now = time.monotonic()
                    refused_since = refused_since or now
                    verdict = self.check_enrolled() if self.check_enrolled else None
                    if verdict is False or (verdict is None and now - refused_since >= self.refusal_grace):
                        self.status.update(state="not-enrolled", last_error=NOT_ENROLLED, error=NOT_ENROLLED,
                                           error_kind="not-enrolled")  # fmt: skip
                        raise NotEnrolledError(NOT_ENROLLED)
                    self.status.update(state="refused", last_error="the SuperLink did not accept this node (yet)")
                    self.echo("The central did not accept this workstation yet (its previous connection may count as "
                              f"open for about a minute after a crash); retrying in {delay:.0f} s…")  # fmt: skip
                else:
                    self.status.update(state="restarting", restarts=self.status.state["restarts"] + 1,
                                       last_error=f"the SuperNode exited with code {code}")  # fmt: skip
                    self.echo(f"The SuperNode stopped (exit code {code}); restarting in {delay:.0f} s…")
                self._stop.wait(delay)
                delay = min(delay * 2, self.backoff[1])
        finally:
            self._terminate()
            self.status.update(state="stopped" if self.status.state["state"] != "not-enrolled" else "not-enrolled")
            log.close()
        return 0

    def _follow(self, proc: subprocess.Popen, log) -> tuple[bool, bool]:
        """Relay the SuperNode's output until it exits; (authentication refused, connected) as it reported.

        Its SuperExec and ClientApps (own sessions) inherit the output pipe: once the SuperNode is gone they are
        ended, and reading stops a few seconds later even if one of them still holds the pipe.
        """
        lines: queue.Queue[str | None] = queue.Queue()

        def reader() -> None:
            for line in proc.stdout:
                lines.put(line)
            lines.put(None)

        threading.Thread(target=reader, name="supernode-output", daemon=True).start()
        refused, connected, family, scanned, exited = False, False, [], 0.0, None
        while True:
            try:
                line = lines.get(timeout=0.5)
            except queue.Empty:
                now = time.monotonic()
                if proc.poll() is None:
                    if now - scanned > 5:
                        family, scanned = descendants(proc.pid), now
                    continue
                if exited is None:
                    exited = now
                    signal_all(family, signal.SIGTERM)
                if now - exited > 5:
                    return refused, connected
                continue
            if line is None:
                return refused, connected
            log.write(line)
            log.flush()
            event = parse_line(line)
            if event is None:
                continue
            refused |= event.kind == "auth_refused"
            connected |= event.kind == "node_id"
            message = self.status.describe(event)
            if message:
                self.echo(message)

    def stop(self) -> None:
        """Ask the supervisor to end (also from a signal handler): terminates the SuperNode and its processes."""
        self._stop.set()
        self._terminate()

    def _terminate(self) -> None:
        with self._lock:
            proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        family = descendants(proc.pid)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        signal_all(family, signal.SIGTERM)  # SuperExec and a ClientApp still training must not outlive the node


class Stopper:
    """Turns SIGTERM/SIGINT into a clean stop, so that `with` blocks (e.g. the private key file) unwind."""

    def __init__(self) -> None:
        self.requested = threading.Event()
        self.supervisor: NodeSupervisor | None = None

    def attach(self, supervisor: NodeSupervisor) -> None:
        self.supervisor = supervisor
        if self.requested.is_set():
            supervisor.stop()

    def _handler(self, signum, frame) -> None:
        self.requested.set()
        if self.supervisor is not None:
            self.supervisor.stop()


@contextlib.contextmanager
def stop_on_signals():
    """A Stopper whose handlers are installed for the block (install it before any secret is written)."""
    stopper = Stopper()
    previous = {sig: signal.signal(sig, stopper._handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stopper
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)

"""The workstation's part in federated training: runs its Flower SuperNode, restarts it, reports progress.

`fedxray federate` uses NodeSupervisor. Progress goes to the console and to data_dir()/federation-status.json
(atomic JSON, read by the desktop app); the ClientApp writes its own per-round file (federation-round.json)
through the node config "status-file", which is merged in. No TensorFlow here: the SuperNode starts a fresh
ClientApp process for every message.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from app.core.errors import AppError
from app.core.paths import atomic_write_text

STATUS_FILE = "federation-status.json"
ROUND_FILE = "federation-round.json"
LOG_FILE = "federation.log"
NOT_ENROLLED = (
    "The central refused this workstation: it is not (or no longer) enrolled. Ask IT for a new enrolment token "
    "and run `fedxray enroll` again (see `fedxray enroll --status`)."
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


# ---------------------------------------------------------------- the SuperNode's log lines

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_PATTERNS = (
    ("node_id", re.compile(r"SuperNode ID: (\d+)")),
    ("run", re.compile(r"\[RUN (\d+)\]")),
    ("received", re.compile(r"Receiving: (\w+) message")),
    ("sending", re.compile(r"Sending: (\w+) message")),
    ("sent", re.compile(r"Sent successfully")),
    ("auth_refused", re.compile(r"\[code: 200[14]\]|Failed to activate SuperNode")),
    ("connection_failed", re.compile(r"Connection attempt failed")),
    ("reconnected", re.compile(r"Connection successful after")),
    ("exit_code", re.compile(r"Exit Code: (\d+)")),
)


@dataclass(frozen=True)
class Event:
    kind: str
    value: str | None = None


def parse_line(line: str) -> Event | None:
    """The event a SuperNode log line reports, if any."""
    text = _ANSI.sub("", line)
    for kind, pattern in _PATTERNS:
        m = pattern.search(text)
        if m:
            return Event(kind, m.group(1) if m.groups() else None)
    return None


# ---------------------------------------------------------------- status


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class FederationStatus:
    """federation-status.json: state, node id, round, phase and the last local metrics; written atomically."""

    def __init__(self, folder: Path, settings: NodeSettings) -> None:
        self.path = folder / STATUS_FILE
        self.round_path = folder / ROUND_FILE
        self.state: dict = {"state": "starting", "superlink": settings.superlink, "data_dir": str(settings.data_dir),
                            "node_id": None, "run_id": None, "round": None, "phase": None, "local": None,
                            "messages_received": 0, "messages_sent": 0, "restarts": 0, "pid": os.getpid(),
                            "last_error": None, "started": _now()}  # fmt: skip

    def client_round(self) -> dict | None:
        """The ClientApp's own progress file (round, phase, local metrics), if readable."""
        try:
            return json.loads(self.round_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def update(self, **fields) -> None:
        self.state.update(fields)
        client = self.client_round()
        if client:
            self.state["round"] = client.get("round", self.state["round"])
            self.state["phase"] = client.get("phase")
            self.state["local"] = {k: client.get(k) for k in ("device", "train_examples", "val_examples",
                                                                "validation", "train", "error") if k in client}
        self.state["updated"] = _now()
        with contextlib.suppress(AppError):  # a full disk must not stop the node; the console still reports
            atomic_write_text(self.path, json.dumps(self.state, indent=1), what="the federation status")

    def describe(self, event: Event) -> str | None:
        """Apply a log event; returns the console line it deserves (None for none)."""
        s = self.state
        if event.kind == "node_id":
            self.update(state="connected", node_id=int(event.value), last_error=None)
            return f"Connected to the central's SuperLink at {s['superlink']} as node {event.value}."
        if event.kind == "run":
            s["run_id"] = int(event.value)
            return None
        if event.kind == "received":
            self.update(state="training" if event.value == "train" else "evaluating",
                        messages_received=s["messages_received"] + 1)  # fmt: skip
            return f"Run {s['run_id']}: the central asks this workstation to {event.value}…"
        if event.kind == "sent":
            self.update(state="waiting", messages_sent=s["messages_sent"] + 1)
            local = (s.get("local") or {}).get("validation") or {}
            detail = ""
            if local.get("accuracy") is not None:
                detail = (f" (global model on this site's validation patients: accuracy {local['accuracy']:.3f}, "
                          f"macro-F1 {local.get('macro_f1') or 0:.3f})")  # fmt: skip
            return f"Round {s['round']}: reply sent to the central{detail}."
        if event.kind == "connection_failed":
            if s["state"] != "reconnecting":
                self.update(state="reconnecting", last_error="connection to the SuperLink failed")
                return f"Cannot reach the central's SuperLink at {s['superlink']}; retrying…"
            return None
        if event.kind == "reconnected":
            self.update(state="connected", last_error=None)
            return "Connection to the central restored."
        return None  # auth_refused: NodeSupervisor.run decides (it may be a previous connection still open)


# ---------------------------------------------------------------- the supervised SuperNode


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _descendants(pid: int) -> list[int]:
    """Processes below `pid` (Linux /proc; empty elsewhere): SuperExec and ClientApps run in their own sessions."""
    children: dict[int, list[int]] = {}
    proc = Path("/proc")
    if not proc.is_dir():
        return []
    for entry in proc.iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _signal_all(pids: list[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def flower_env(flwr_home: Path) -> dict[str, str]:
    """Environment for the SuperNode: no telemetry or update checks, its own FLWR_HOME, the venv's tools."""
    env = dict(os.environ)
    env.update(FLWR_TELEMETRY_ENABLED="0", FLWR_DISABLE_UPDATE_CHECK="1", FLWR_HOME=str(flwr_home),
               TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")  # fmt: skip
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    return env


class NodeSupervisor:
    """Runs `flower-supernode`, parses its output, restarts it with back-off; stop() ends it (thread-safe)."""

    def __init__(self, settings: NodeSettings, *, folder: Path, echo: Callable[[str], None] = print,
                 backoff: tuple[float, float] = (2.0, 60.0), stable_after: float = 120.0,
                 refusal_grace: float = 150.0, check_enrolled: Callable[[], bool | None] | None = None) -> None:
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
        self.status = FederationStatus(folder, settings)
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
        s = self.settings
        cmd = [str(Path(sys.executable).parent / "flower-supernode"), "--superlink", s.superlink,
               "--port", str(port), "--node-config", str(self.node_config())]  # fmt: skip
        if s.insecure:
            cmd.append("--insecure")
        elif s.root_certificates:
            cmd += ["--root-certificates", str(s.root_certificates)]
        if s.private_key:
            cmd += ["--auth-supernode-private-key", str(s.private_key)]
        return cmd

    def _spawn(self) -> subprocess.Popen:
        return subprocess.Popen(
            self.command(free_port()), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            env=flower_env(self.folder / "flower"), cwd=self.folder, start_new_session=True, text=True,
            errors="replace", bufsize=1,
        )  # fmt: skip

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
                        self.status.update(state="not-enrolled", last_error=NOT_ENROLLED)
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
            self.status.update(state="stopped" if self.status.state["state"] != "not-enrolled" else "not-enrolled",
                               phase=None)  # fmt: skip
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
                        family, scanned = _descendants(proc.pid), now
                    continue
                if exited is None:
                    exited = now
                    _signal_all(family, signal.SIGTERM)
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
        family = _descendants(proc.pid)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        _signal_all(family, signal.SIGTERM)  # SuperExec and a ClientApp still training must not outlive the node


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

"""What the workstation's federation agent reports: SuperNode log lines parsed into events, federation-status.json,
and the merged status the desktop app and `fedxray federation status` read.

Writers: the supervisor (app.core.federation.NodeSupervisor, inside the agent or `fedxray federate`) writes
federation-status.json; the ClientApp writes its own per-message file (federation-round.json, the node config
"status-file": round, phase, epoch/batch progress, ETA). Writes are atomic.

Public API for readers (plain data, cheap: two small file reads and a process check; safe to poll every second):
- `read_status(folder=None) -> AgentStatus`: whether the agent runs (pid), the schedule, the run, round x of N,
  the phase (`PHASES`) with `phase_text` in plain words, epoch k of n and batch progress, time left, last contact,
  reconnecting, and `error` in plain words with `error_kind` (`ERROR_KINDS`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from app.core.errors import AppError
from app.core.paths import atomic_write_text

if TYPE_CHECKING:
    from app.core.federation import NodeSettings

STATUS_FILE = "federation-status.json"
ROUND_FILE = "federation-round.json"

# What the agent is doing, as AgentStatus.phase:
PHASES = {
    "stopped": "Not taking part (the background agent is not running)",
    "paused": "Outside the training windows: taking no training work",
    "connecting": "Connecting to the central",
    "waiting": "Waiting for the central",
    "receiving": "Receiving the model",
    "evaluating": "Evaluating the model on this site's validation patients",
    "training": "Training",
    "sending": "Sending the update to the central",
    "reconnecting": "Reconnecting to the central",
    "error": "Stopped by a problem",
}
BUSY = ("receiving", "evaluating", "training", "sending")  # phases of a message in progress
# AgentStatus.error_kind: what went wrong, for the UI to pick an icon or a remedy.
ERROR_KINDS = ("not-enrolled", "central-unreachable", "clock", "data", "gpu-memory", "keyring", "install", "other")


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
    """federation-status.json: the supervisor's state, the agent-level phase (PHASES), node id, run, round, last
    contact, errors and the last local metrics; written atomically. While a message is being worked on it holds
    the training signal (app.core.training_signal) so that the app's classification leaves the CPU cores."""

    SUPERVISOR_PHASE = {"starting": "connecting", "connecting": "connecting", "refused": "connecting",
                        "restarting": "connecting", "connected": "waiting", "waiting": "waiting",
                        "training": "receiving", "evaluating": "receiving", "reconnecting": "reconnecting",
                        "not-enrolled": "error", "stopped": "stopped", "paused": "paused",
                        "error": "error"}  # fmt: skip

    def __init__(self, folder: Path, settings: NodeSettings | None = None, *, signal_training: bool = True) -> None:
        self.folder = Path(folder)
        self.path = self.folder / STATUS_FILE
        self.round_path = self.folder / ROUND_FILE
        self.signal_training = signal_training
        self.state: dict = {"state": "starting", "phase": "connecting", "superlink": None, "data_dir": None,
                            "node_id": None, "run_id": None, "round": None, "num_rounds": None, "client_phase": None,
                            "local": None, "messages_received": 0, "messages_sent": 0, "restarts": 0,
                            "pid": os.getpid(), "last_error": None, "error": None, "error_kind": None,
                            "last_contact": None, "started": _now()}  # fmt: skip
        if settings is not None:
            self.configure(settings)

    def configure(self, settings: NodeSettings) -> None:
        self.state.update(superlink=settings.superlink, data_dir=str(settings.data_dir))

    def client_round(self) -> dict | None:
        """The ClientApp's own progress file (round, phase, local metrics), if readable."""
        try:
            return json.loads(self.round_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def update(self, **fields) -> None:
        self.state.update(fields)
        if "state" in fields:
            self.state["phase"] = self.SUPERVISOR_PHASE.get(fields["state"], self.state["phase"])
        client = self.client_round()
        if client and client.get("run_id") in (None, self.state["run_id"]):
            self.state["round"] = client.get("round", self.state["round"])
            self.state["num_rounds"] = client.get("num_rounds", self.state["num_rounds"])
            self.state["client_phase"] = client.get("phase")
            self.state["local"] = {k: client.get(k) for k in ("device", "train_examples", "val_examples",
                                                                "validation", "train", "error") if k in client}
        self.state["updated"] = _now()
        if self.signal_training:
            from app.core.training_signal import set_training

            with contextlib.suppress(OSError):
                set_training(self.state["phase"] in BUSY, self.folder)
        with contextlib.suppress(AppError):  # a full disk must not stop the node; the console still reports
            atomic_write_text(self.path, json.dumps(self.state, indent=1), what="the federation status")

    def contact(self) -> None:
        """Note a successful exchange with the central (written with the next update)."""
        self.state["last_contact"] = _now()

    def describe(self, event: Event) -> str | None:
        """Apply a log event; returns the console line it deserves (None for none)."""
        s = self.state
        if event.kind == "node_id":
            self.contact()
            self.update(state="connected", node_id=int(event.value), last_error=None, error=None, error_kind=None)
            return f"Connected to the central's SuperLink at {s['superlink']} as node {event.value}."
        if event.kind == "run":
            s["run_id"] = int(event.value)
            return None
        if event.kind == "received":
            self.contact()
            self.update(state="training" if event.value == "train" else "evaluating",
                        messages_received=s["messages_received"] + 1)  # fmt: skip
            return f"Run {s['run_id']}: the central asks this workstation to {event.value}…"
        if event.kind == "sent":
            self.contact()
            self.update(state="waiting", messages_sent=s["messages_sent"] + 1)
            local = (s.get("local") or {}).get("validation") or {}
            detail = ""
            if local.get("accuracy") is not None:
                detail = (f" (global model on this site's validation patients: accuracy {local['accuracy']:.3f}, "
                          f"macro-F1 {local.get('macro_f1') or 0:.3f})")  # fmt: skip
            return f"Round {s['round']}: reply sent to the central{detail}."
        if event.kind == "connection_failed":
            if s["state"] != "reconnecting":
                self.update(state="reconnecting", last_error="connection to the SuperLink failed",
                            error=f"The central's SuperLink at {s['superlink']} cannot be reached; retrying. Check "
                            "the network, or ask IT whether the central is running.",
                            error_kind="central-unreachable")  # fmt: skip
                return f"Cannot reach the central's SuperLink at {s['superlink']}; retrying…"
            return None
        if event.kind == "reconnected":
            self.contact()
            self.update(state="connected", last_error=None, error=None, error_kind=None)
            return "Connection to the central restored."
        return None  # auth_refused: NodeSupervisor.run decides (it may be a previous connection still open)


# ---------------------------------------------------------------- the merged status readers use


@dataclass(frozen=True)
class AgentStatus:
    """Everything the Federation page, the status-bar indicator and `fedxray federation status` show."""

    running: bool = False  # a live agent process holds the lock
    pid: int | None = None
    opted_in: bool = False
    phase: str = "stopped"  # a key of PHASES
    phase_text: str = PHASES["stopped"]  # plain words, with epoch/batch detail while training
    node_id: int | None = None
    run_id: int | None = None
    round: int | None = None
    num_rounds: int | None = None
    message: str | None = None  # train | evaluate (the central's request in progress)
    epoch: int | None = None  # 1-based
    epochs: int | None = None
    batch: int | None = None  # 1-based, within the epoch
    batches: int | None = None
    eta_seconds: float | None = None  # time left for the message in progress (estimate)
    last_contact: str | None = None  # ISO 8601 UTC: the last successful exchange with the central
    reconnecting: bool = False
    error: str | None = None  # plain words: what happened and what to do
    error_kind: str | None = None  # one of ERROR_KINDS
    schedule_open: bool = True  # inside a training window now
    next_change: str | None = None  # ISO local time the window opens/closes next (None: always open)
    windows: str = "always"
    device: str | None = None  # what the last message trained on ("CPU", "GPU: …")
    restarts: int = 0
    updated: str | None = None  # ISO 8601 UTC of the newest information
    local: dict | None = None  # this site's last local metrics (validation before training, training)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


_CLIENT_PHASE = {"starting": "receiving", "loading": "receiving", "evaluating": "evaluating",
                 "training": "training", "sending": "sending", "error": "error", "done": "waiting"}  # fmt: skip


def phase_text(phase: str, *, epoch=None, epochs=None, batch=None, batches=None, eta=None) -> str:
    """The plain words for a phase: "Training: epoch 2 of 3, batch 14 of 40 (about 3 min left)"."""
    text = PHASES.get(phase, phase)
    if phase == "training" and epoch and epochs:
        text += f": epoch {epoch} of {epochs}"
        if batch and batches:
            text += f", batch {batch} of {batches}"
    if phase in BUSY and eta is not None and eta >= 0:
        text += f" (about {_minutes(eta)} left)"
    return text


def _minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def client_error(text: str | None) -> tuple[str, str]:
    """Plain words and ERROR_KINDS kind for the error the ClientApp wrote in its round file (it stays local)."""
    text = text or ""
    if any(k in text for k in ("ResourceExhausted", "OOM", "out of memory", "MemoryError")):
        return ("Training ran out of memory on this computer (the graphics card's or the main memory): lower the "
                "GPU memory cap or close other programs; IT can also lower the run's batch size.", "gpu-memory")  # fmt: skip
    if any(k in text for k in ("DatasetError", "ImageReadError")):
        detail = text.split(":", 1)[-1].strip()
        return (f"The local training data could not be used ({detail}): check the labelled set or the data "
                "folder (`fedxray federation check`).", "data")  # fmt: skip
    return ("The last training message failed on this computer; the central was told (without details). The "
            "federation log (federation.log) has the details for IT.", "other")  # fmt: skip


def read_status(folder: Path | None = None) -> AgentStatus:
    """The merged status (agent lock + federation-status.json + federation-round.json + settings)."""
    from app.core import agent_lock, federation_settings

    if folder is None:
        from app.core.paths import data_dir

        folder = data_dir()
    folder = Path(folder)
    pid = agent_lock.running_agent(folder)
    state = _read_json(folder / STATUS_FILE)
    try:
        settings = federation_settings.load()
        problem = None
    except AppError as exc:
        settings, problem = federation_settings.FederationSettings(), str(exc)
    now_open = settings.in_window()
    change = settings.next_change()
    common = dict(opted_in=settings.opted_in, schedule_open=now_open, windows=federation_settings.format_windows(
        settings.windows), next_change=change.isoformat(timespec="minutes") if change else None)  # fmt: skip
    if pid is None:
        error = state.get("last_error") if state.get("state") == "not-enrolled" else None
        if problem:
            return AgentStatus(**common, phase="error", phase_text=PHASES["error"], error=problem, error_kind="other")
        return AgentStatus(**common, phase="stopped" if not error else "error",
                           phase_text=PHASES["stopped"] if not error else PHASES["error"], error=error,
                           error_kind=state.get("error_kind") if error else None, node_id=state.get("node_id"),
                           last_contact=state.get("last_contact"), updated=state.get("updated"))  # fmt: skip
    phase = state.get("phase") or "connecting"
    client = _read_json(folder / ROUND_FILE) if phase in BUSY else {}
    if client and client.get("run_id") == state.get("run_id") and client.get("phase") in _CLIENT_PHASE:
        phase = _CLIENT_PHASE[client["phase"]] if phase in BUSY else phase
    error, error_kind = state.get("error"), state.get("error_kind")
    last = client or (_read_json(folder / ROUND_FILE) if phase == "waiting" else {})
    if last.get("phase") == "error" and last.get("run_id") == state.get("run_id"):  # the last message failed here
        error, error_kind = client_error(last.get("error"))
    progress = {k: client.get(k) for k in ("epoch", "epochs", "batch", "batches")} if phase == "training" else {}
    eta = client.get("eta_seconds") if phase in BUSY else None
    text = phase_text(phase, eta=eta, **progress)
    if phase == "paused" and change is not None:
        text += f" until {change:%a %H:%M}"
    return AgentStatus(
        **common, running=True, pid=pid, phase=phase, phase_text=text,
        node_id=state.get("node_id"), run_id=state.get("run_id"), round=client.get("round") or state.get("round"),
        num_rounds=client.get("num_rounds") or state.get("num_rounds"), message=client.get("message"),
        eta_seconds=eta, last_contact=state.get("last_contact"), reconnecting=phase == "reconnecting",
        error=error, error_kind=error_kind, device=client.get("device"),
        restarts=state.get("restarts") or 0, updated=max(filter(None, (state.get("updated"), client.get("updated"))),
                                                         default=None),
        local=state.get("local"), **progress,
    )  # fmt: skip

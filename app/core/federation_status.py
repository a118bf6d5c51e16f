"""What the workstation's SuperNode reports: its log lines parsed into events, and federation-status.json.

The ClientApp writes its own per-round file (federation-round.json, the node config "status-file"); it is merged
into the status the desktop app reads. Writes are atomic.
"""

from __future__ import annotations

import contextlib
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

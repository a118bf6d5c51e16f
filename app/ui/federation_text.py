"""Plain words for the federation screens: times ago, durations, the agent's state in one line."""

from __future__ import annotations

from datetime import UTC, datetime

from app.core.federation_status import BUSY  # phases of a message in progress

# The steps of one round as the live panel draws them (AgentStatus.phase keys), in order.
STEPS = (("waiting", "Waiting for the central"), ("receiving", "Receiving the model"),
         ("evaluating", "Evaluating"), ("training", "Training"), ("sending", "Sending"))  # fmt: skip
ERROR_TITLES = {
    "not-enrolled": "Not enrolled any more",
    "central-unreachable": "The central cannot be reached",
    "clock": "This computer's clock is out of step",
    "data": "The local training data cannot be used",
    "gpu-memory": "Out of GPU memory",
    "keyring": "The keyring is locked or missing",
    "install": "FedXray's installation is incomplete",
}


def parse_time(text: str | None) -> datetime | None:
    """An ISO 8601 time from app.core (UTC when it carries no zone)."""
    if not text:
        return None
    try:
        when = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def ago(text: str | None, now: datetime | None = None) -> str:
    """"14:02 (3 min ago)" in local time; "never" without a time."""
    when = parse_time(text)
    if when is None:
        return "never"
    now = now or datetime.now(UTC)
    seconds = max(0.0, (now - when).total_seconds())
    local = when.astimezone()
    clock = f"{local:%H:%M}" if seconds < 20 * 3600 else f"{local:%d %b %Y, %H:%M}"
    if seconds < 60:
        rel = "just now"
    elif seconds < 3600:
        rel = f"{seconds // 60:.0f} min ago"
    elif seconds < 48 * 3600:
        rel = f"{seconds // 3600:.0f} h ago"
    else:
        rel = f"{seconds // 86400:.0f} days ago"
    return f"{clock} ({rel})"


def date_only(text: str | None) -> str:
    when = parse_time(text)
    return f"{when.astimezone():%d %b %Y}" if when else "—"


def duration(seconds: float | None) -> str:
    """"about 40 s", "about 3 min", "about 1 h 20 min"; "—" when unknown."""
    if seconds is None or seconds < 0:
        return "—"
    if seconds < 90:
        return f"about {max(seconds, 1):.0f} s"
    minutes = round(seconds / 60)
    if minutes < 90:
        return f"about {minutes} min"
    return f"about {minutes // 60} h {minutes % 60:02d} min"


def short_run(run_id: int | None) -> str:
    """Flower's run ids are 20 digits; people compare the last six (the full id is in the tooltip)."""
    if run_id is None:
        return "—"
    text = str(run_id)
    return text if len(text) <= 8 else f"…{text[-6:]}"


def round_text(agent) -> str:
    """"Round 2 of 5" (or "Round 2" when the run's length is unknown); "" without a round."""
    if agent is None or not agent.round:
        return ""
    return f"Round {agent.round} of {agent.num_rounds}" if agent.num_rounds else f"Round {agent.round}"


def indicator(enrollment, agent) -> tuple[str, str]:
    """(text, level) of the status-bar indicator; level is off | idle | busy | warn | error."""
    if agent is not None and agent.error and agent.phase == "error":
        title = ERROR_TITLES.get(agent.error_kind or "", "Problem")
        return f"Federation: {title.lower()}", "error"
    if enrollment is not None and not enrollment.enrolled:
        return "Federation: not enrolled", "off"
    if agent is None:
        return "Federation: …", "off"
    if not agent.opted_in and not agent.running:
        return "Federation: enrolled, not taking part", "off"
    if not agent.running:
        return "Federation: agent not running", "warn"
    if agent.phase in BUSY:
        step = dict(STEPS).get(agent.phase, agent.phase)
        rnd = round_text(agent).lower()
        detail = ""
        if agent.phase == "training" and agent.epoch and agent.epochs:
            detail = f" · epoch {agent.epoch}/{agent.epochs}"
            if agent.batch and agent.batches:
                detail += f" · {100 * agent.batch // agent.batches} %"
        return f"Federation: {step.lower()}{', ' + rnd if rnd else ''}{detail}", "busy"
    if agent.phase == "reconnecting":
        return "Federation: reconnecting to the central…", "warn"
    if agent.phase == "paused":
        return "Federation: outside training hours", "idle"
    if agent.phase == "connecting":
        return "Federation: connecting…", "idle"
    return "Federation: idle, waiting for the central", "idle"

"""The live round panel: what the background agent is doing now (run, round x of N, phase, progress, errors)."""

from __future__ import annotations

import html

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFrame, QGridLayout, QHBoxLayout, QLabel, QProgressBar, QVBoxLayout, QWidget

from app.ui import federation_text as ft
from app.ui.federation_model import FederationModel


def fill_fields(grid: QGridLayout, rows) -> dict[str, QLabel]:
    """Name / value rows ("Central   https://…") in `grid`; returns the value labels by key (shown as "—")."""
    grid.setHorizontalSpacing(14)
    grid.setVerticalSpacing(4)
    values: dict[str, QLabel] = {}
    for r, (key, text) in enumerate(rows):
        name = QLabel(text)
        name.setObjectName("fieldName")
        value = QLabel("—")
        value.setWordWrap(True)
        value.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        grid.addWidget(name, r, 0, Qt.AlignmentFlag.AlignTop)
        grid.addWidget(value, r, 1)
        values[key] = value
    grid.setColumnStretch(1, 1)
    return values


class StepStrip(QWidget):
    """Waiting → Receiving → Evaluating → Training → Sending, the current step highlighted."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(4)
        self.labels: dict[str, QLabel] = {}
        for i, (key, text) in enumerate(ft.STEPS):
            if i:
                arrow = QLabel("›")
                arrow.setObjectName("stepArrow")
                lay.addWidget(arrow)
            label = QLabel(text)
            label.setObjectName("step")
            label.setAlignment(Qt.AlignmentFlag.AlignCenter)
            self.labels[key] = label
            lay.addWidget(label)
        lay.addStretch(1)

    def set_current(self, phase: str | None) -> None:
        keys = [k for k, _ in ft.STEPS]
        current = keys.index(phase) if phase in keys else -1
        for i, key in enumerate(keys):
            state = "current" if i == current else "done" if i < current else ""
            label = self.labels[key]
            label.setProperty("state", state)
            label.style().unpolish(label)
            label.style().polish(label)

    def current(self) -> str:
        return next((k for k, lab in self.labels.items() if lab.property("state") == "current"), "")


class RoundPanel(QFrame):
    """Shows ``model.agent`` (an AgentStatus) and follows ``model.agentChanged``."""

    def __init__(self, model: FederationModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("roundPanel")
        self.model = model
        self.headline = QLabel()
        self.headline.setObjectName("roundHeadline")
        self.headline.setWordWrap(True)
        self.steps = StepStrip()
        self.progress = QProgressBar()
        self.progress.setObjectName("batchBar")
        self.progress.setTextVisible(True)
        self.progress.setMaximumHeight(18)
        self.error = QLabel()
        self.error.setObjectName("roundError")
        self.error.setWordWrap(True)
        self.error.setTextFormat(Qt.TextFormat.RichText)
        self.error.hide()

        grid = QGridLayout()
        self.values = fill_fields(grid, (("run", "Run"), ("round", "Round"), ("left", "Time left"),
                                         ("contact", "Last contact"), ("agent", "Background agent"),
                                         ("schedule", "Schedule"), ("local", "Last result here")))  # fmt: skip

        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.headline)
        lay.addWidget(self.steps)
        lay.addWidget(self.progress)
        lay.addWidget(self.error)
        lay.addLayout(grid)
        model.agentChanged.connect(self.refresh)
        model.enrollmentChanged.connect(self.refresh)
        self.refresh()

    def refresh(self) -> None:
        a = self.model.agent
        self._headline(a)
        self.steps.set_current(a.phase if a is not None and a.running else None)
        self._progress(a)
        self._error(a)
        v = self.values
        if a is None:
            for label in v.values():
                label.setText("—")
            return
        v["run"].setText(ft.short_run(a.run_id))
        v["run"].setToolTip(f"Flower run id {a.run_id}" if a.run_id else "")
        rnd = ft.round_text(a)
        v["round"].setText(f"{rnd} — reply sent" if rnd and a.phase == "waiting" else rnd or "—")
        if a.running and a.phase in ft.BUSY and a.eta_seconds is not None:
            v["left"].setText(ft.duration(a.eta_seconds))
        else:
            v["left"].setText("estimating…" if a.running and a.phase == "training" else "—")
        contact = ft.ago(a.last_contact)
        v["contact"].setText(f"{contact} — reconnecting…" if a.reconnecting else contact)
        if a.running:
            agent = f"Running (process {a.pid})"
            if a.restarts:
                agent += f", its SuperNode restarted {a.restarts}×"
            agent += " — it goes on when FedXray is closed."
        else:
            agent = "Not running." + (" It should: FedXray starts it again." if a.opted_in else "")
        v["agent"].setText(agent)
        v["schedule"].setText(self._schedule(a))
        v["local"].setText(self._local(a))

    def _headline(self, a) -> None:
        if a is None:
            text, level = "Reading the background agent's status…", "idle"
        elif not a.running:
            text = "Not taking part" if not a.opted_in else "Taking part, but the background agent is not running"
            level = "off" if not a.opted_in else "warn"
            if a.phase == "error":
                text, level = "Stopped by a problem", "error"
        else:
            # Short: the progress bar, time left and round rows carry the detail (the full words in the tooltip).
            text = dict(ft.STEPS).get(a.phase) or a.phase_text
            rnd = ft.round_text(a)
            if rnd and a.phase in ft.BUSY:
                text = f"{text} — {rnd[:1].lower()}{rnd[1:]}"
            level = "busy" if a.phase in ft.BUSY else "error" if a.phase == "error" else \
                "warn" if a.phase == "reconnecting" else "idle"  # fmt: skip
        self.headline.setText(text)
        self.headline.setToolTip(a.phase_text if a is not None else "")
        self.headline.setProperty("level", level)
        self.headline.style().unpolish(self.headline)
        self.headline.style().polish(self.headline)

    def _progress(self, a) -> None:
        bar = self.progress
        if a is None or not a.running or a.phase not in ft.BUSY:
            bar.hide()
            return
        bar.show()
        if a.phase == "training" and a.batches and a.epochs:
            done = ((a.epoch or 1) - 1) * a.batches + (a.batch or 0)
            bar.setRange(0, a.epochs * a.batches)
            bar.setValue(done)
            bar.setFormat(f"epoch {a.epoch} of {a.epochs} · batch {a.batch} of {a.batches}")
        else:
            bar.setRange(0, 0)  # busy, no measure of progress in this phase
            bar.setFormat("")

    def _error(self, a) -> None:
        if a is None or not a.error:
            self.error.hide()
            return
        title = ft.ERROR_TITLES.get(a.error_kind or "", "A problem stopped federated training")
        self.error.setText(f"<b>{html.escape(title)}.</b> {html.escape(a.error)}")
        self.error.show()

    @staticmethod
    def _schedule(a) -> str:
        windows = "any time" if a.windows == "always" else a.windows
        if a.schedule_open:
            state = "inside a training window" if a.windows != "always" else "training allowed at any time"
        else:
            state = "outside the training windows: no training work now"
        text = f"{state[:1].upper()}{state[1:]}"
        if a.next_change:
            when = ft.parse_time(a.next_change)
            text += f" (until {when:%a %H:%M})" if when else ""
        return text if a.windows == "always" else f"{text}. Windows: {windows}."

    @staticmethod
    def _local(a) -> str:
        local = a.local or {}
        val = local.get("validation") or {}
        if val.get("accuracy") is None:
            return "—"
        n = local.get("val_examples")
        images = f"{n} validation images" if n else "validation images"
        return (f"the model received scored accuracy {val['accuracy']:.2f}, macro-F1 {val.get('macro_f1') or 0:.2f} "
                f"on this site's {images}")  # fmt: skip

    def text(self) -> str:
        """Everything the panel shows, for tests and the screenshots' checks."""
        parts = [self.headline.text()]
        if self.progress.isVisible():
            parts.append(self.progress.format())
        if self.error.isVisible():
            parts.append(self.error.text())
        parts += [f"{k}: {v.text()}" for k, v in self.values.items()]
        return "\n".join(parts)

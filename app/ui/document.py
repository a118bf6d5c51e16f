"""The open case as a QObject with change signals; the viewer and the result panel are handed it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtGui import QImage

from app.ui import imaging


@dataclass
class Result:
    """What the result panel shows: from a fresh classification or a case reopened from history."""

    probabilities: np.ndarray  # (C,) in fl.classes.CLASSES order, sums to one
    predicted: int
    model_name: str
    model_version: str
    model_date: str = ""
    demo: bool = False
    intended_use: str = ""
    case_id: int | str | None = None
    feedback_label: str | None = None
    feedback_note: str | None = None
    from_history: bool = False
    created: str = ""
    notes: list[str] = field(default_factory=list)
    attention: dict | None = None  # fl.attention shares of the predicted class's heatmap (explanation check)
    guardrails: tuple = ()  # the guardrail warnings' messages it was shown with ("Show result anyway")
    feedback_by: str | None = None
    feedback_at: str | None = None
    feedback_reason: str | None = None
    limitation: str = ""  # the model card's main limitation, shown next to the model name
    identification: dict = field(default_factory=dict)  # DICOM patient name, ID, age, accession (history)

    @property
    def assessment(self):
        """app.core.assessment.Assessment: near tie, explanation warning, outside the intended use."""
        from app.core.assessment import assess

        return assess(self.probabilities, attention=self.attention, guardrails=self.guardrails)


class CaseDocument(QObject):
    """State of the case on screen: image, display settings, result, heatmap and overlay settings."""

    imageChanged = Signal()  # a new radiograph (or none)
    displayChanged = Signal()  # window/level or inversion; ``image`` was re-rendered
    resultChanged = Signal()  # result set or cleared
    heatChanged = Signal()  # heatmap of the explained class changed
    overlayChanged = Signal()  # visible / opacity / side-by-side
    warningsChanged = Signal()
    caseStored = Signal()  # the result on screen was recorded in the history (result.case_id is set)
    stateChanged = Signal(str)  # "empty" | "reading" | "classifying" | "blocked" | "result" | "failed"

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.path: Path | None = None
        self.radiograph = None
        self.display = imaging.Display()
        self.image: QImage | None = None  # the radiograph as drawn under ``display``
        self.result: Result | None = None
        self.prediction = None  # fl.inference.Prediction of the current model, if any
        self.warnings: list = []  # app.core.guardrails.Warning
        self.result_allowed = True  # False while guardrail warnings hold the result back
        self.explained_class: int | None = None
        self.heat: np.ndarray | None = None  # (H, W) [0, 1]
        self.heat_rgb: np.ndarray | None = None  # colorized (H, W, 3) uint8
        self.heat_image: QImage | None = None
        self.overlay_visible = True
        self.overlay_opacity = 0.45
        self.side_by_side = False
        self.state = "empty"
        self._render_timer = QTimer(self)
        self._render_timer.setSingleShot(True)
        self._render_timer.setInterval(0)
        self._render_timer.timeout.connect(self._render)

    # ---- image
    @property
    def name(self) -> str:
        return self.path.name if self.path is not None else ""

    def set_state(self, state: str) -> None:
        self.state = state
        self.stateChanged.emit(state)

    def clear(self) -> None:
        self.path = self.radiograph = self.image = self.result = self.prediction = None
        self.heat = self.heat_rgb = self.heat_image = None
        self.explained_class = None
        self.warnings = []
        self.result_allowed = True
        self.display = imaging.Display()
        self.imageChanged.emit()
        self.warningsChanged.emit()
        self.resultChanged.emit()
        self.heatChanged.emit()
        self.set_state("empty")

    def set_image(self, path: Path, radiograph, image: QImage, display: imaging.Display) -> None:
        """A newly read radiograph (its QImage rendered off the GUI thread)."""
        self.path, self.radiograph, self.image, self.display = Path(path), radiograph, image, display
        self.result = self.prediction = None
        self.heat = self.heat_rgb = self.heat_image = None
        self.explained_class = None
        self.imageChanged.emit()
        self.resultChanged.emit()
        self.heatChanged.emit()

    def set_warnings(self, warnings: list, *, allowed: bool) -> None:
        self.warnings, self.result_allowed = list(warnings), allowed
        self.warningsChanged.emit()

    @property
    def is_dicom(self) -> bool:
        return self.radiograph is not None and getattr(self.radiograph, "raw", None) is not None

    def set_display(self, display: imaging.Display) -> None:
        """Change window/level or inversion; re-rendering is coalesced to once per event-loop pass."""
        if display == self.display or self.radiograph is None:
            return
        self.display = display
        self._render_timer.start()

    def _render(self) -> None:
        if self.radiograph is None:
            return
        self.image = imaging.gray_to_qimage(imaging.render(self.radiograph, self.display))
        self.displayChanged.emit()

    # ---- result and heatmap
    def set_result(self, result: Result | None, prediction=None) -> None:
        self.result, self.prediction = result, prediction
        self.resultChanged.emit()

    def set_heat(self, class_index: int | None, heat, heat_rgb, heat_image: QImage | None) -> None:
        self.explained_class, self.heat, self.heat_rgb, self.heat_image = class_index, heat, heat_rgb, heat_image
        self.heatChanged.emit()

    def set_overlay(self, *, visible: bool | None = None, opacity: float | None = None,
                    side_by_side: bool | None = None) -> None:
        if visible is not None:
            self.overlay_visible = bool(visible)
        if opacity is not None:
            self.overlay_opacity = max(0.0, min(1.0, float(opacity)))
        if side_by_side is not None:
            self.side_by_side = bool(side_by_side)
        self.overlayChanged.emit()

"""The result panel: class probabilities, top finding, model identity and the heatmap controls."""

from __future__ import annotations

import html

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFrame,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from app.ui.document import CaseDocument
from fl.classes import CLASS_LABELS, CLASSES

STATE_TEXT = {
    "empty": "No image open.",
    "reading": "Reading the image…",
    "classifying": "Classifying…",
    "waiting": "Waiting for the model to finish loading…",
    "blocked": "Result held back — see the caution above the image.",
    "failed": "No result for this image.",
    "cancelled": "Cancelled — open the image again to classify it.",
}


class ProbabilityRow:
    """One labelled bar: class name, bar, percentage."""

    def __init__(self, grid: QGridLayout, row: int, name: str) -> None:
        self.name = QLabel(CLASS_LABELS[name])
        self.bar = QProgressBar()
        self.bar.setRange(0, 1000)
        self.bar.setTextVisible(False)
        self.bar.setFixedHeight(14)
        self.bar.setObjectName("probabilityBar")
        self.value = QLabel("—")
        self.value.setObjectName("probabilityValue")
        self.value.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        self.value.setMinimumWidth(self.value.fontMetrics().horizontalAdvance("100.0 %") + 4)
        grid.addWidget(self.name, row, 0)
        grid.addWidget(self.bar, row, 1)
        grid.addWidget(self.value, row, 2)

    def set(self, p: float | None, top: bool) -> None:
        self.bar.setValue(0 if p is None else round(p * 1000))
        self.value.setText("—" if p is None else f"{100 * p:.1f} %")
        self.bar.setProperty("top", bool(top))
        for w in (self.bar, self.name, self.value):
            w.setProperty("top", bool(top))
            w.style().unpolish(w)
            w.style().polish(w)


class Legend(QWidget):
    """Colour scale of the heatmap (the same colour map as the overlay) with its numbers: attention as a share of
    the map's peak, 0 to 1; below TRANSPARENT_BELOW nothing is drawn over the image."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        from fl.gradcam import LEGEND_TICKS, TRANSPARENT_BELOW

        self.ramp = QLabel()
        self.ramp.setObjectName("legendRamp")
        self.ramp.setFixedHeight(12)
        self.ramp.setScaledContents(True)
        lay = QGridLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setVerticalSpacing(2)
        n = len(LEGEND_TICKS)
        lay.addWidget(self.ramp, 0, 0, 1, n)
        self.ticks = []
        for i, t in enumerate(LEGEND_TICKS):
            lab = QLabel(f"{t:g}")
            lab.setObjectName("legendText")
            align = (Qt.AlignmentFlag.AlignLeft if i == 0 else Qt.AlignmentFlag.AlignRight if i == n - 1
                     else Qt.AlignmentFlag.AlignHCenter)
            lay.addWidget(lab, 1, i, align)
            lay.setColumnStretch(i, 1)
            self.ticks.append(lab)
        note = QLabel(f"Attention, share of the map's peak (1 = where the model looked most). Below "
                      f"{TRANSPARENT_BELOW:g} the image is left uncovered.")
        note.setObjectName("legendText")
        note.setWordWrap(True)
        lay.addWidget(note, 2, 0, 1, n)

    def set_ramp(self, image: QImage) -> None:
        self.ramp.setPixmap(QPixmap.fromImage(image))


class ResultPanel(QWidget):
    """Shows ``document``'s result and lets the user change the overlay and the class explained."""

    explainRequested = Signal(int)  # class index whose GradCAM to show

    def __init__(self, document: CaseDocument, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.document = document
        self.setObjectName("resultPanel")

        # --- finding
        self.state = QLabel(STATE_TEXT["empty"])
        self.state.setObjectName("resultState")
        self.state.setWordWrap(True)
        self.busy = QProgressBar()
        self.busy.setRange(0, 0)
        self.busy.setFixedHeight(4)
        self.busy.setTextVisible(False)
        self.busy.setObjectName("busyBar")
        self.busy.hide()
        self.finding_caption = QLabel("TOP FINDING")
        self.finding_caption.setObjectName("findingCaption")
        self.finding = QLabel()
        self.finding.setObjectName("topFinding")
        self.finding.setWordWrap(True)
        self.finding_prob = QLabel()
        self.finding_prob.setObjectName("topProbability")
        grid = QGridLayout()
        grid.setHorizontalSpacing(10)
        grid.setVerticalSpacing(6)
        grid.setColumnStretch(1, 1)
        self.rows = [ProbabilityRow(grid, i, name) for i, name in enumerate(CLASSES)]
        finding_box = QGroupBox("Model result")
        fl_ = QVBoxLayout(finding_box)
        fl_.addWidget(self.state)
        fl_.addWidget(self.busy)
        fl_.addWidget(self.finding_caption)
        self.outside_use = QLabel()
        self.outside_use.setObjectName("outsideUse")
        self.outside_use.setWordWrap(True)
        self.outside_use.hide()
        self.cautions = QLabel()
        self.cautions.setObjectName("resultCautions")
        self.cautions.setWordWrap(True)
        self.cautions.setTextFormat(Qt.TextFormat.RichText)
        self.cautions.hide()
        top = QHBoxLayout()
        top.addWidget(self.finding, 1)
        top.addWidget(self.finding_prob, 0, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignBottom)
        fl_.addWidget(self.outside_use)
        fl_.addLayout(top)
        fl_.addWidget(self.cautions)
        fl_.addSpacing(4)
        fl_.addLayout(grid)

        # --- model identity
        self.demo_badge = QLabel("DEMONSTRATION MODEL")
        self.demo_badge.setObjectName("demoBadge")
        self.demo_badge.setToolTip("This model was trained on a small public data set to demonstrate the "
                                   "software. Its results are not clinically validated.")
        self.demo_badge.hide()
        self.model_label = QLabel("Model: not loaded")
        self.model_label.setObjectName("modelLabel")
        self.model_label.setWordWrap(True)
        self.model_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.limitation = QLabel()
        self.limitation.setObjectName("modelLimitation")
        self.limitation.setWordWrap(True)
        self.limitation.hide()
        line = QFrame()
        line.setFrameShape(QFrame.Shape.HLine)
        line.setObjectName("separator")
        fl_.addWidget(line)
        fl_.addWidget(self.model_label)
        fl_.addWidget(self.demo_badge, 0, Qt.AlignmentFlag.AlignLeft)
        fl_.addWidget(self.limitation)

        # --- heatmap controls
        heat_box = QGroupBox("Where the model looked (GradCAM)")
        hl = QGridLayout(heat_box)
        hl.setVerticalSpacing(6)
        self.show_heat = QCheckBox("Show heatmap")
        self.show_heat.setToolTip("Toggle the heatmap overlay (H)")
        self.side_by_side = QCheckBox("Side by side")
        self.side_by_side.setToolTip("Show the original image next to the overlay")
        self.opacity = QSlider(Qt.Orientation.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.setObjectName("opacitySlider")
        self.opacity_value = QLabel()
        self.opacity_value.setMinimumWidth(self.opacity_value.fontMetrics().horizontalAdvance("100 %") + 4)
        self.explain = QComboBox()
        self.explain.setObjectName("explainCombo")
        self.legend = Legend()
        checks = QHBoxLayout()
        checks.addWidget(self.show_heat)
        checks.addSpacing(12)
        checks.addWidget(self.side_by_side)
        checks.addStretch(1)
        hl.addLayout(checks, 0, 0, 1, 3)
        hl.addWidget(QLabel("Opacity"), 1, 0)
        hl.addWidget(self.opacity, 1, 1)
        hl.addWidget(self.opacity_value, 1, 2)
        hl.addWidget(QLabel("Explain"), 2, 0)
        hl.addWidget(self.explain, 2, 1, 1, 2)
        hl.addWidget(self.legend, 3, 0, 1, 3)
        hl.setColumnStretch(1, 1)
        self.heat_box = heat_box

        lay = QVBoxLayout(self)
        lay.setContentsMargins(10, 4, 10, 8)
        lay.setSpacing(4)
        lay.addWidget(finding_box)
        lay.addWidget(heat_box)
        self.extra = QVBoxLayout()  # the main window adds the feedback box here
        lay.addLayout(self.extra)
        lay.addStretch(1)

        self.show_heat.toggled.connect(lambda on: document.set_overlay(visible=on))
        self.side_by_side.toggled.connect(lambda on: document.set_overlay(side_by_side=on))
        self.opacity.valueChanged.connect(lambda v: document.set_overlay(opacity=v / 100.0))
        self.explain.activated.connect(self._explain_chosen)
        document.resultChanged.connect(self._on_result)
        document.overlayChanged.connect(self._on_overlay)
        document.heatChanged.connect(self._on_heat)
        document.stateChanged.connect(self._on_state)
        self._on_result()
        self._on_overlay()

    # ---- document -> widgets
    def _on_state(self, state: str) -> None:
        self.busy.setVisible(state in ("reading", "classifying", "waiting"))
        if state == "result":
            self.state.hide()
        else:
            self.state.setText(STATE_TEXT.get(state, state))
            self.state.show()

    def _on_result(self) -> None:
        res = self.document.result
        if res is None:
            for r in self.rows:
                r.set(None, False)
            for w in (self.finding, self.finding_prob, self.finding_caption, self.outside_use, self.cautions):
                w.hide()
            self.explain.clear()
            self.heat_box.setEnabled(False)
            return
        a = res.assessment
        for i, r in enumerate(self.rows):
            r.set(float(res.probabilities[i]), i == res.predicted)
        label = CLASS_LABELS[CLASSES[res.predicted]]
        self.finding.setText(html.escape(a.finding[:1].upper() + a.finding[1:]))
        self.finding.setProperty("uncertain", a.near_tie)
        self.finding.style().unpolish(self.finding)
        self.finding.style().polish(self.finding)
        self.finding_caption.setText("UNCERTAIN RESULT — NEAR TIE" if a.near_tie else "TOP FINDING")
        for w in (self.finding, self.finding_prob, self.finding_caption):
            w.show()
        p_top = 100 * float(res.probabilities[res.predicted])
        if a.near_tie:
            p_second = 100 * float(res.probabilities[CLASSES.index(a.runner_up)])
            self.finding_prob.setText(f"{p_top:.1f} / {p_second:.1f} %")
        else:
            self.finding_prob.setText(f"{p_top:.1f} %")
        self.outside_use.setText("OUTSIDE THE INTENDED USE — shown despite the guardrail warnings above the "
                                 "image; the image may not be an adult frontal chest radiograph.")
        self.outside_use.setVisible(a.outside_intended_use)
        others = [m for code, m in a.cautions if code != "outside_intended_use"]
        self.cautions.setText("<br>".join("⚠ " + html.escape(m) for m in others))
        self.cautions.setVisible(bool(others))
        self.set_model(res.model_name, res.model_version, res.model_date, res.demo, limitation=res.limitation)
        self.explain.clear()
        self.explain.addItem(f"{label} (predicted)", res.predicted)
        for i, name in enumerate(CLASSES):
            if i != res.predicted:
                self.explain.addItem(CLASS_LABELS[name], i)
        self.heat_box.setEnabled(True)

    def set_model(self, name: str, version: str, date: str, demo: bool, *, loading: bool = False,
                  limitation: str | None = None) -> None:
        """Model identity line and the card's main limitation (also used while no result is shown)."""
        if loading:
            self.model_label.setText("Model: loading…")
        else:
            when = f" · created {html.escape(date[:10])}" if date else ""
            self.model_label.setText(f"Model: <b>{html.escape(name)}</b><br>Version {html.escape(version)}{when}")
        self.demo_badge.setVisible(bool(demo))
        if limitation is not None:
            self.limitation.setText(f"<b>Main limitation:</b> {html.escape(limitation)}")
            self.limitation.setVisible(bool(limitation))

    def _on_overlay(self) -> None:
        doc = self.document
        for w, v in ((self.show_heat, doc.overlay_visible), (self.side_by_side, doc.side_by_side),
                     (self.opacity, round(doc.overlay_opacity * 100))):
            w.blockSignals(True)
            w.setValue(v) if isinstance(w, QSlider) else w.setChecked(v)
            w.blockSignals(False)
        self.opacity_value.setText(f"{round(doc.overlay_opacity * 100)} %")
        self.opacity.setEnabled(doc.overlay_visible)

    def _on_heat(self) -> None:
        idx = self.document.explained_class
        if idx is None:
            return
        pos = self.explain.findData(idx)
        if pos >= 0 and pos != self.explain.currentIndex():
            self.explain.blockSignals(True)
            self.explain.setCurrentIndex(pos)
            self.explain.blockSignals(False)

    def _explain_chosen(self, pos: int) -> None:
        idx = self.explain.itemData(pos)
        if idx is not None and idx != self.document.explained_class:
            self.explainRequested.emit(int(idx))

    # ---- for tests and exports
    def shown_probabilities(self) -> list[float]:
        """The probabilities as displayed (parsed back from the labels)."""
        return [float(r.value.text().rstrip(" %")) / 100.0 for r in self.rows]

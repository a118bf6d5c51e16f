"""How far one result can be trusted: the explanation warning, a near tie, outside the intended use (plain data).

The one home of these rules and their wording for the case view, the batch, the history, the PDF report and
`fedxray classify`. The two numbers were chosen on the validation patients' images by
tests/benchmarks/trust_thresholds.py (README, "The bundled demonstration model").
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fl.classes import CLASS_LABELS, CLASSES

# A result warns when more than this share of its heatmap's attention lies in the border band or outside the body.
EXPLANATION_THRESHOLD = 0.50
# A result is a near tie when its two most probable findings lie closer than this (probability difference).
NEAR_TIE_MARGIN = 0.14

EXPLANATION_WARNING = ("The model looked mostly at the edge of the image, where labels and markers are, or "
                       "outside the body; this result may rest on them.")
OUTSIDE_INTENDED_USE = ("Outside the intended use: shown despite the guardrail warnings; the image may not be an "
                        "adult frontal chest radiograph.")
EXPLANATION_CODE, NEAR_TIE_CODE, OUTSIDE_USE_CODE = "explanation", "near_tie", "outside_intended_use"


def lower_label(name: str) -> str:
    """A finding inside a sentence: "bacterial pneumonia", "COVID-19" (acronyms keep their case)."""
    label = CLASS_LABELS.get(name, name)
    return label if label[:2].isupper() else label[:1].lower() + label[1:]


@dataclass(frozen=True)
class Assessment:
    """What a result needs to be read correctly, beside its probabilities."""

    predicted: str
    runner_up: str
    margin: float                                # top probability minus the second
    attention: dict[str, float] | None = None    # fl.attention.AttentionShares.as_dict(); None: no heatmap
    guardrails: tuple[str, ...] = ()             # the guardrail warnings' messages the result was shown with

    @property
    def near_tie(self) -> bool:
        return self.margin < NEAR_TIE_MARGIN

    @property
    def explanation_warning(self) -> bool:
        return self.attention is not None and self.attention.get("off_target", 0.0) > EXPLANATION_THRESHOLD

    @property
    def outside_intended_use(self) -> bool:
        return bool(self.guardrails)

    @property
    def finding(self) -> str:
        """The finding as shown: the top class, or "uncertain: X or Y" for a near tie."""
        if self.near_tie:
            return f"uncertain: {lower_label(self.predicted)} or {lower_label(self.runner_up)}"
        return CLASS_LABELS.get(self.predicted, self.predicted)

    @property
    def cautions(self) -> list[tuple[str, str]]:
        """(code, message) of every caution about this result, most serious first."""
        out = []
        if self.outside_intended_use:
            out.append((OUTSIDE_USE_CODE, OUTSIDE_INTENDED_USE))
        if self.explanation_warning:
            out.append((EXPLANATION_CODE, f"{EXPLANATION_WARNING} ({self.off_target_text} of the attention lies "
                                          "there.)"))
        if self.near_tie:
            out.append((NEAR_TIE_CODE, f"Near tie: {CLASS_LABELS[self.predicted]} and {CLASS_LABELS[self.runner_up]} "
                                       f"are {100 * self.margin:.1f} points apart; the model cannot tell them apart "
                                       "on this image."))
        return out

    @property
    def off_target_text(self) -> str:
        return "" if self.attention is None else f"{100 * self.attention.get('off_target', 0.0):.0f} %"

    def as_json(self) -> dict[str, Any]:
        """The fields `fedxray classify --json` and the history carry."""
        return {"finding": self.finding, "near_tie": self.near_tie, "runner_up": self.runner_up,
                "margin": round(self.margin, 6), "explanation_warning": self.explanation_warning,
                "attention": self.attention, "outside_intended_use": self.outside_intended_use}


def top_two(probabilities: Sequence[float] | dict[str, float]) -> tuple[str, str, float]:
    """(most probable class, second, difference) for probabilities in CLASSES order or by class name."""
    p = np.array([probabilities[c] for c in CLASSES] if isinstance(probabilities, dict) else probabilities,
                 np.float64)
    order = np.argsort(-p, kind="stable")
    return CLASSES[int(order[0])], CLASSES[int(order[1])], float(p[order[0]] - p[order[1]])


def assess(probabilities: Sequence[float] | dict[str, float], *, attention: Any = None,
           guardrails: Iterable[Any] = ()) -> Assessment:
    """The assessment of one result. `attention`: fl.attention.AttentionShares (or its dict), None without a
    heatmap; `guardrails`: the guardrail warnings shown with it (app.core.guardrails.Warning or messages)."""
    first, second, margin = top_two(probabilities)
    if attention is not None and not isinstance(attention, dict):
        attention = attention.as_dict()
    return Assessment(first, second, margin, attention, tuple(getattr(w, "message", w) for w in guardrails))


def assess_prediction(prediction: Any, *, guardrails: Iterable[Any] = ()) -> Assessment:
    """assess() of a fl.inference.Prediction; the attention is measured on its heatmap when it explains the
    predicted class (the explanation warning is about the evidence for the result shown)."""
    from fl.attention import attention_shares

    attention = None
    if prediction.heatmap is not None and prediction.class_index == prediction.predicted:
        attention = attention_shares(prediction.radiograph.pixels, prediction.heatmap)
    return assess(prediction.probabilities, attention=attention, guardrails=guardrails)


def attention_json(assessment: Assessment) -> str:
    """How the history stores the attention shares ('' without a heatmap)."""
    return json.dumps(assessment.attention) if assessment.attention is not None else ""


def attention_from_json(text: str | None) -> dict[str, float] | None:
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None

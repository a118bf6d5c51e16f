"""The open case as plain data: its result (fresh or rebuilt from the history), heatmap layers, exports.

The app's screens wrap what these return in Qt images; nothing here knows Qt. Heatmaps and exported overlays are
at the working resolution (fl.radiograph.working_copy); the viewer keeps the original image.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from app.core.findings import CLASS_LABELS, CLASSES
from app.core.windowing import Display, initial_display, render
from fl.gradcam import LEGEND_TICKS, TRANSPARENT_BELOW  # noqa: E402,F401 - the heatmap scale the screens draw

HEAT_DISPLAY_MAX = 1024  # px; GradCAM maps are smooth, so the screen layer can be coarser than the image


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


@dataclass
class ReopenedCase:
    """A case from the history: the image (original or stored copy), its stored result, a fresh heatmap."""

    path: Path
    radiograph: Any
    display: Display
    case: Any
    result: Result
    prediction: Any | None
    heat: np.ndarray | None
    notes: list[str] = field(default_factory=list)


def read_radiograph(path: str | Path):
    """Decode an image file (fl.imageio.read_image); raises fl.radiograph.ImageReadError with a clear message."""
    from fl.preprocess import read_image

    return read_image(path)


def result_from_prediction(pred, card, case=None) -> Result:
    """The Result of a fresh classification (`card`: the model's card, for its date, demo flag, intended use)."""
    return Result(
        probabilities=np.asarray(pred.probabilities, np.float64),
        predicted=int(pred.predicted),
        model_name=str(pred.model_name),
        model_version=str(pred.model_version),
        model_date=str(getattr(card, "created", "") or ""),
        demo=bool(getattr(card, "demo", False)),
        intended_use=str(getattr(card, "intended_use", "") or ""),
        case_id=getattr(case, "id", None),
        created=str(getattr(case, "created", "") or ""),
        limitation=limitation(card),
    )


def limitation(card) -> str:
    """The model card's main limitation (fl.modelfile.ModelCard.main_limitation)."""
    return str(getattr(card, "main_limitation", "") or "")


def made_by(card, case) -> bool:
    """Whether the loaded model (`card`, or None) is the one that made the stored `case`."""
    return card is not None and card.version == case.model_version and card.name == case.model_name


def result_from_case(case, card, notes: list[str] | None = None) -> Result:
    """The Result of a stored case, rebuilt from the history (the model's date and demo flag only when `card`, the
    loaded model's card, is the model that made it)."""
    probs = np.array([float(case.probabilities.get(c, 0.0)) for c in CLASSES])
    predicted = CLASSES.index(case.predicted) if case.predicted in CLASSES else int(np.argmax(probs))
    same = made_by(card, case)
    return Result(
        probabilities=probs, predicted=predicted, model_name=case.model_name, model_version=case.model_version,
        model_date=str(card.created) if same else "", demo=bool(card.demo) if same else False,
        case_id=case.id, feedback_label=case.feedback_label, feedback_note=case.feedback_note,
        from_history=True, created=case.created, notes=notes if notes is not None else [],
        attention=case.attention, guardrails=tuple(case.warnings), feedback_by=case.feedback_by,
        feedback_at=case.feedback_at, feedback_reason=case.feedback_reason,
        limitation=limitation(card) if same else "",
        identification={"patient_name": case.patient_name, "patient_id": case.patient_id,
                        "patient_age": case.patient_age, "accession_number": case.accession_number},
    )


def reopen(service, history, case_id) -> ReopenedCase:
    """Open a stored case: its image (original or stored copy), stored result and, with a loaded model, a heatmap
    of the stored finding."""
    case = history.get(case_id)
    rad, note = history.open_image(case)
    notes = [note] if note else []
    path = Path(case.file_path) if case.file_path else Path(case.file_name)
    card = service.card if service is not None and service.loaded else None
    result = result_from_case(case, card, notes)          # the same list: the heatmap's note below is shown too
    pred = heat = None
    if card is not None:
        pred = service.classify(rad, class_index=result.predicted)
        heat = pred.heatmap
        if not made_by(card, case):
            notes.append(f"Heatmap computed with the current model ({card.name} {card.version}); the stored "
                         f"result came from {case.model_name} {case.model_version}.")
    return ReopenedCase(path, rad, initial_display(rad), case, result, pred, heat, notes)


def heat_rgba(heat: np.ndarray, max_side: int = HEAT_DISPLAY_MAX) -> np.ndarray:
    """Heatmap (H, W) [0,1] -> (h, w, 4) uint8 non-premultiplied RGBA whose alpha follows fl.gradcam.overlay
    (attention_alpha): drawn with opacity ``a`` over the image it gives overlay(gray, heat, alpha=a). Large
    maps are subsampled to at most ``max_side`` (the viewer stretches the layer over the image)."""
    from fl.gradcam import attention_alpha, colorize

    step = max(1, -(-max(heat.shape) // max_side))
    heat = np.clip(np.nan_to_num(np.asarray(heat[::step, ::step], np.float32)), 0.0, 1.0)
    rgba = np.empty(heat.shape + (4,), np.uint8)
    rgba[..., :3] = colorize(heat)
    rgba[..., 3] = (attention_alpha(heat) * 255.0 + 0.5).astype(np.uint8)
    return rgba


def legend_rgb(width: int = 256, height: int = 12) -> np.ndarray:
    """The colour bar of the heatmap (RGB uint8), from the same colour map as the overlay."""
    from fl.gradcam import legend

    return legend(width, height)


def check(radiograph) -> list:
    """The guardrail warnings for a radiograph (app.core.guardrails)."""
    from app.core.guardrails import check as guardrail_check

    return list(guardrail_check(radiograph))


def _fit(heat: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    if heat.shape == shape:
        return heat
    from PIL import Image

    image = Image.fromarray(np.ascontiguousarray(heat, dtype=np.float32))
    return np.asarray(image.resize((shape[1], shape[0]), Image.Resampling.BILINEAR), dtype=np.float32)


def export_gray(radiograph, display: Display) -> np.ndarray:
    """The radiograph as exported, under ``display``, at the working resolution (fl.radiograph.working_copy)."""
    from fl.radiograph import working_copy

    return render(working_copy(radiograph), display)


def overlay_rgb(gray: np.ndarray, heat: np.ndarray | None, alpha: float) -> np.ndarray:
    """The overlay as exported (same blend as on screen); the heatmap is resampled to the image if it differs."""
    from fl.gradcam import overlay

    if heat is None:
        g = (np.clip(gray, 0, 1) * 255 + 0.5).astype(np.uint8)
        return np.repeat(g[..., None], 3, axis=2)
    return overlay(gray, _fit(np.asarray(heat, np.float32), gray.shape), alpha=alpha)


def caption(file_name: str, result: Result, explained_class: int | None) -> str:
    """The line under an exported overlay: file, top finding, the explained class, model."""
    finding = CLASS_LABELS[CLASSES[result.predicted]]
    p = 100 * float(result.probabilities[result.predicted])
    explained = f"; heatmap: {CLASS_LABELS[CLASSES[explained_class]]}" if explained_class is not None else ""
    return (f"{file_name} — top finding {finding} ({p:.1f} %){explained} — model {result.model_name} "
            f"{result.model_version}")


def export_pdf(path: Path, *, case, radiograph, display: Display, heat, alpha: float, card,
               explained: str | None) -> Path:
    """Write the PDF report of the case (atomic); ``card`` only if it is the model that made the case."""
    from app.core.report import export_pdf as write_pdf

    if card is not None and (card.name, card.version) != (case.model_name, case.model_version):
        card = None
    gray = export_gray(radiograph, display)
    ov = overlay_rgb(gray, heat, alpha) if heat is not None else None
    write_pdf(path, case=case, image_gray=gray, overlay_rgb=ov, card=card, explained_class=explained)
    return Path(path)


def export_png(path: Path, *, radiograph, display: Display, heat, alpha: float, caption: str) -> Path:
    """Write the overlay as a PNG with a caption strip and the intended-use line (atomic)."""
    from app.core.report import export_overlay_png

    gray = export_gray(radiograph, display)
    export_overlay_png(path, overlay_rgb(gray, heat, alpha), caption=caption)
    return Path(path)

"""The work the GUI hands to worker threads: plain functions that return what the widgets need."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PySide6.QtGui import QImage

from app.ui import imaging
from app.ui.document import Result


@dataclass
class Opened:
    """A radiograph read from disk, ready to draw, with its guardrail warnings."""

    path: Path
    radiograph: object
    image: QImage
    display: imaging.Display
    warnings: list


@dataclass
class Classified:
    """A classification with its heatmap layer, ready to show."""

    prediction: object
    result: Result
    heat: np.ndarray
    heat_image: QImage


@dataclass
class Reopened:
    """A case from the history: the image (original or stored copy), its stored result, a fresh heatmap."""

    opened: Opened
    case: object
    result: Result
    prediction: object | None
    heat: np.ndarray | None
    heat_image: QImage | None
    notes: list[str] = field(default_factory=list)


HEAT_DISPLAY_MAX = 1024  # px; GradCAM maps are smooth, so the screen layer can be coarser than the image


def heat_to_qimage(heat: np.ndarray, max_side: int = HEAT_DISPLAY_MAX) -> QImage:
    """Heatmap (H, W) [0,1] -> RGBA layer whose alpha follows fl.gradcam.overlay (attention_alpha).

    Drawn with item opacity ``a`` over the image this gives overlay(gray, heat, alpha=a). Large maps are
    subsampled to at most ``max_side`` (the viewer stretches the layer over the image).
    """
    from fl.gradcam import attention_alpha, colorize

    step = max(1, -(-max(heat.shape) // max_side))
    heat = np.clip(np.nan_to_num(np.asarray(heat[::step, ::step], np.float32)), 0.0, 1.0)
    rgba = np.empty(heat.shape + (4,), np.uint8)
    rgba[..., :3] = colorize(heat)
    rgba[..., 3] = (attention_alpha(heat) * 255.0 + 0.5).astype(np.uint8)
    h, w = heat.shape
    # Non-premultiplied RGBA: Qt composes it as colour * alpha + image * (1 - alpha).
    return QImage(np.ascontiguousarray(rgba).data, w, h, 4 * w, QImage.Format.Format_RGBA8888).copy()


def legend_image(width: int = 256, height: int = 12) -> QImage:
    """The colour bar of the heatmap, from the same colour map as the overlay."""
    from fl.gradcam import legend

    return imaging.rgb_to_qimage(legend(width, height))


def open_image(path: str | Path) -> Opened:
    """Read an image file (any supported format) and render it for the screen."""
    from fl.preprocess import read_image

    path = Path(path)
    rad = read_image(path)
    display = imaging.Display(window=tuple(rad.window) if rad.raw is not None and rad.window else None)
    image = imaging.gray_to_qimage(rad.pixels)
    return Opened(path, rad, image, display, [])


def open_and_classify(path: str | Path, service, *, partial) -> Classified | BaseException | None:
    """Read and render (handed over at once through ``partial``), then classify in the same thread.

    Returns None when no model is loaded yet, and a classification error as a value (so the caller can
    tell "could not open" from "could not classify").
    """
    opened = open_image(path)
    partial(opened)
    if not service.loaded:
        return None
    try:
        return classify(service, opened)
    except Exception as exc:  # noqa: BLE001 - reported by the controller as a classification failure
        return exc


def warm_up_batch(service) -> None:
    """Build the model's batch graph once, on a small synthetic image.

    TensorFlow builds that graph on first use (about 1.4 s for SE-ResNet50V2 here) and holds the GIL for
    parts of it; doing it while the user picks a folder keeps the batch itself smooth.
    """
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.full((64, 64), 128, np.uint8)).save(buf, format="PNG")
    for _ in service.classify_many([buf.getvalue()], heatmaps=True):  # the batch computes heatmaps (explanation check)
        pass


def check(radiograph) -> list:
    """The guardrail warnings for a radiograph (app.core.guardrails)."""
    from app.core.guardrails import check as guardrail_check

    return list(guardrail_check(radiograph))


def result_from_prediction(pred, card, case=None) -> Result:
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


def classify(service, opened: Opened) -> Classified:
    """Classify and explain the predicted class (the history is written afterwards, see store_case)."""
    from app.core.assessment import assess_prediction

    pred = service.classify(opened.radiograph)
    heat_image = heat_to_qimage(pred.heatmap)
    result = result_from_prediction(pred, service.card)
    result.attention = assess_prediction(pred).attention  # the explanation check, off the GUI thread
    return Classified(pred, result, pred.heatmap, heat_image)


def store_case(history, prediction, opened: Opened, assessment=None):
    """Record a shown result in the history (thumbnail, stored copy, SQLite); returns the Case."""
    return history.add(prediction, file_path=opened.path, warnings=opened.warnings, assessment=assessment)


def explain(service, prediction, class_index: int) -> tuple[int, np.ndarray, QImage]:
    """The heatmap of another class for the same image."""
    heat = service.explain(prediction, class_index)
    return class_index, heat, heat_to_qimage(heat)


def reopen(service, history, case_id) -> Reopened:
    """Open a stored case: its image (original or stored copy), stored result and a heatmap."""
    from fl.classes import CLASSES

    case = history.get(case_id)
    rad, note = history.open_image(case)
    notes = [note] if note else []
    display = imaging.Display(window=tuple(rad.window) if rad.raw is not None and rad.window else None)
    path = Path(case.file_path) if case.file_path else Path(case.file_name)
    opened = Opened(path, rad, imaging.gray_to_qimage(rad.pixels), display, list(case.warnings))
    probs = np.array([float(case.probabilities.get(c, 0.0)) for c in CLASSES])
    predicted = CLASSES.index(case.predicted) if case.predicted in CLASSES else int(np.argmax(probs))
    card = service.card if service is not None and service.loaded else None
    same_model = card is not None and card.version == case.model_version and card.name == case.model_name
    result = Result(
        probabilities=probs, predicted=predicted, model_name=case.model_name, model_version=case.model_version,
        model_date=str(card.created) if same_model else "", demo=bool(card.demo) if same_model else False,
        case_id=case.id, feedback_label=case.feedback_label, feedback_note=case.feedback_note,
        from_history=True, created=case.created, notes=notes, attention=case.attention,
        guardrails=tuple(case.warnings), feedback_by=case.feedback_by, feedback_at=case.feedback_at,
        feedback_reason=case.feedback_reason, limitation=limitation(card) if same_model else "",
        identification={"patient_name": case.patient_name, "patient_id": case.patient_id,
                        "patient_age": case.patient_age, "accession_number": case.accession_number},
    )
    pred = heat = heat_image = None
    if card is not None:
        pred = service.classify(rad, class_index=predicted)
        heat, heat_image = pred.heatmap, heat_to_qimage(pred.heatmap)
        if not same_model:
            notes.append(f"Heatmap computed with the current model ({card.name} {card.version}); the stored "
                         f"result came from {case.model_name} {case.model_version}.")
    return Reopened(opened, case, result, pred, heat, heat_image, notes)


def save_feedback(history, labelled, case_id, label: str, note: str, source_path: Path | None, reason: str = ""):
    """Store the clinician's label (with the reason a guardrail-flagged case needs) and put the image into the
    local labelled set."""
    case = history.set_feedback(case_id, label, note, reason=reason)
    stored = labelled.add(case, source_path) if labelled is not None else None
    return case, stored


def overlay_rgb(gray: np.ndarray, heat: np.ndarray | None, alpha: float) -> np.ndarray:
    """The overlay as exported (same blend as on screen)."""
    from fl.gradcam import overlay

    if heat is None:
        g = (np.clip(gray, 0, 1) * 255 + 0.5).astype(np.uint8)
        return np.repeat(g[..., None], 3, axis=2)
    return overlay(gray, heat, alpha=alpha)


def export_pdf(path: Path, *, case, radiograph, display: imaging.Display, heat, alpha: float, card,
               explained: str | None) -> Path:
    """Write the PDF report of the case (atomic); ``card`` only if it is the model that made the case."""
    from app.core.report import export_pdf as write_pdf

    if card is not None and (card.name, card.version) != (case.model_name, case.model_version):
        card = None
    gray = imaging.render(radiograph, display)
    ov = overlay_rgb(gray, heat, alpha) if heat is not None else None
    write_pdf(path, case=case, image_gray=gray, overlay_rgb=ov, card=card, explained_class=explained)
    return Path(path)


def export_png(path: Path, *, radiograph, display: imaging.Display, heat, alpha: float, caption: str) -> Path:
    """Write the overlay as a PNG with a caption strip and the intended-use line (atomic)."""
    from app.core.report import export_overlay_png

    gray = imaging.render(radiograph, display)
    export_overlay_png(path, overlay_rgb(gray, heat, alpha), caption=caption)
    return Path(path)

"""The work the GUI hands to worker threads: app.core's case functions, with their images wrapped for Qt."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PySide6.QtGui import QImage

from app.core import case as core
from app.core.case import HEAT_DISPLAY_MAX, Result, check, overlay_rgb  # noqa: F401 - the workers' names
from app.ui import imaging


@dataclass
class Opened:
    """A radiograph read from disk, ready to draw, with its guardrail warnings."""

    path: Path
    radiograph: object
    image: QImage
    display: imaging.Display
    warnings: list
    resolved: Path | None = None  # the file's absolute path with links resolved (asked on the worker)


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


def heat_to_qimage(heat: np.ndarray, max_side: int = HEAT_DISPLAY_MAX) -> QImage:
    """The heatmap layer drawn over the image (app.core.case.heat_rgba) as a QImage."""
    return imaging.rgba_to_qimage(core.heat_rgba(heat, max_side))


def legend_image(width: int = 256, height: int = 12) -> QImage:
    """The colour bar of the heatmap, from the same colour map as the overlay."""
    return imaging.rgb_to_qimage(core.legend_rgb(width, height))


def open_image(path: str | Path) -> Opened:
    """Read an image file (any supported format) and render it for the screen."""
    path = Path(path)
    rad = core.read_radiograph(path)
    return Opened(path, rad, imaging.gray_to_qimage(rad.pixels), core.initial_display(rad), [],
                  path.expanduser().resolve())


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


def result_from_prediction(pred, card, case=None) -> Result:
    return core.result_from_prediction(pred, card, case)


def classify(service, opened: Opened) -> Classified:
    """Classify and explain the predicted class (the history is written afterwards, see store_case)."""
    from app.core.assessment import assess_prediction

    pred = service.classify(opened.radiograph)
    result = core.result_from_prediction(pred, service.card)
    result.attention = assess_prediction(pred).attention  # the explanation check, off the GUI thread
    return Classified(pred, result, pred.heatmap, heat_to_qimage(pred.heatmap))


def store_case(history, prediction, opened: Opened, assessment=None):
    """Record a shown result in the history (thumbnail, stored copy, SQLite); returns the Case."""
    return history.add(prediction, file_path=opened.path, warnings=opened.warnings, assessment=assessment)


def explain(service, prediction, class_index: int) -> tuple[int, np.ndarray, QImage]:
    """The heatmap of another class for the same image."""
    heat = service.explain(prediction, class_index)
    return class_index, heat, heat_to_qimage(heat)


def reopen(service, history, case_id) -> Reopened:
    """Open a stored case (app.core.case.reopen) with its image and heatmap layer for the screen."""
    r = core.reopen(service, history, case_id)
    opened = Opened(r.path, r.radiograph, imaging.gray_to_qimage(r.radiograph.pixels), r.display,
                    list(r.case.warnings))
    heat_image = heat_to_qimage(r.heat) if r.heat is not None else None
    return Reopened(opened, r.case, r.result, r.prediction, r.heat, heat_image, r.notes)


def save_feedback(history, labelled, case_id, label: str, note: str, source_path: Path | None, reason: str = ""):
    """Store the clinician's label (with the reason a guardrail-flagged case needs) and put the image into the
    local labelled set."""
    case = history.set_feedback(case_id, label, note, reason=reason)
    if source_path is not None and not Path(source_path).is_file():     # moved or deleted since it was opened
        source_path = None
    stored = labelled.add(case, source_path) if labelled is not None else None
    return case, stored


export_pdf = core.export_pdf
export_png = core.export_png

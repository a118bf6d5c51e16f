"""Classifying files and folders: rows with guardrail warnings, heatmap overlays, CSV and JSON.

The one path for many images: the batch window and `fedxray classify` both call classify_files.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.core import guardrails
from app.core.assessment import Assessment, assess_prediction
from app.core.errors import AppError
from app.core.paths import atomic_write_text
from fl.classes import CLASS_LABELS, CLASSES

HEATMAP_SUFFIX = ".heatmap.png"
# A heatmap's file name stays within this many bytes: file systems allow 255, and the atomic write's temporary
# name adds 14 (app.core.paths.atomic_write_bytes).
MAX_HEATMAP_NAME_BYTES = 200


@dataclass
class BatchRow:
    """One file: a result with its guardrail warnings, or the reason it could not be classified."""

    path: Path
    predicted: str | None = None                     # class name (CLASSES) or None on error
    probabilities: dict[str, float] = field(default_factory=dict)
    pixel_sha256: str = ""
    warnings: list[str] = field(default_factory=list)
    warning_codes: list[str] = field(default_factory=list)
    error: str | None = None
    model: str = ""
    model_version: str = ""
    heatmap: Path | None = None                      # the overlay PNG written, when asked for
    case_id: int | None = None                       # history id when the batch was recorded
    assessment: Assessment | None = None             # near tie, explanation warning, outside the intended use

    @property
    def file_name(self) -> str:
        return self.path.name

    @property
    def probability(self) -> float | None:
        return self.probabilities.get(self.predicted) if self.predicted else None

    def as_json(self) -> dict:
        """The JSON object `fedxray classify --json` prints for this file."""
        if self.error is not None:
            return {"file": str(self.path), "error": self.error}
        out = {
            "file": str(self.path),
            "probabilities": {c: round(float(self.probabilities[c]), 6) for c in CLASSES},
            "predicted": self.predicted,
            "probability": round(float(self.probability), 6),
            "model": self.model,
            "model_version": self.model_version,
            "warnings": [{"code": c, "message": m} for c, m in zip(self.warning_codes, self.warnings, strict=True)],
        }
        if self.assessment is not None:
            out.update(self.assessment.as_json())
            out["cautions"] = [{"code": c, "message": m} for c, m in self.assessment.cautions]
        if self.heatmap is not None:
            out["heatmap"] = str(self.heatmap)
        return out


def find_images(folder: str | os.PathLike, *, recursive: bool = True,
                on_error: Callable[[Path, Exception], None] | None = None) -> list[Path]:
    """Image and DICOM files in `folder` (fl.imageio.find_images: hidden ones skipped, sorted).

    A folder that cannot be read raises fl.preprocess.ImageReadError, or goes to `on_error` (sub-folders too).
    """
    from fl.imageio import find_images as find

    return find(folder, recursive=recursive, on_error=on_error)


def expand(paths: Iterable[str | os.PathLike], *, recursive: bool = True) -> list[Path | BatchRow]:
    """Files as given, folders replaced by their images; a folder that cannot be read becomes an error row."""
    out: list[Path | BatchRow] = []
    for p in map(Path, paths):
        if p.is_dir():
            errors: list[BatchRow] = []
            try:
                found = find_images(p, recursive=recursive,
                                    on_error=lambda folder, exc, errors=errors: errors.append(BatchRow(folder, error=str(exc))))
            except Exception as exc:  # noqa: BLE001 - ImageReadError, or the OS refusing in a new way
                errors.append(BatchRow(p, error=str(exc)))
                found = []
            out.extend(errors)
            out.extend(found)
        else:
            out.append(p)
    return out


def classify_files(items: Iterable[Path | BatchRow], service: Any, *, cancel: threading.Event | None = None,
                   progress: Callable[[int, int], None] | None = None, batch_size: int = 8, history: Any = None,
                   heatmap_dir: str | os.PathLike | None = None) -> Iterator[BatchRow]:
    """Classify files (and pass on error rows from `expand`) with an app.core.inference.InferenceService.

    Yields one row per item in order, each with the guardrail warnings the app shows and its assessment (the
    explanation warning needs the heatmap, so every image gets one; with LiteRT it comes with the forward pass).
    With `heatmap_dir`, the
    GradCAM overlay of each image (with the caption strip and the intended use, as the app exports it) is written
    there on a second thread while the next images are computed. `progress(done, total)` is called once with
    (0, total), then after each row; setting `cancel` stops after the current batch. With `history` (a
    HistoryStore) each result is recorded as a case.
    """
    items = list(items)
    total = len(items)
    heat_dir = Path(heatmap_dir) if heatmap_dir is not None else None
    used: set[str] = set()
    if progress:
        progress(0, total)
    done = 0
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="overlay") as writer:
        pending: deque[tuple[BatchRow, Future | None]] = deque()
        for start in range(0, total, max(1, batch_size)):
            if cancel is not None and cancel.is_set():
                break
            chunk = items[start:start + batch_size]
            files = [i for i in chunk if not isinstance(i, BatchRow)]
            results: dict[str, list] = {}  # classify_many yields read errors at once, results per batch
            for result in service.classify_many(files, batch_size=batch_size, heatmaps=True):
                results.setdefault(result[0] if isinstance(result, tuple) else result.source, []).append(result)
            for item in chunk:
                if isinstance(item, BatchRow):
                    pending.append((item, None))
                    continue
                row, prediction = _row(results[str(item)].pop(0), history)
                job = None
                if heat_dir is not None and prediction is not None:
                    row.heatmap = heat_dir / heatmap_name(row.path, used)
                    job = writer.submit(write_overlay, row.heatmap, prediction, row)
                pending.append((row, job))
            while pending and (pending[0][1] is None or pending[0][1].done() or len(pending) > 2 * batch_size):
                done += 1
                yield _finish(*pending.popleft())
                if progress:
                    progress(done, total)
        while pending:
            done += 1
            yield _finish(*pending.popleft())
            if progress:
                progress(done, total)


def classify_folder(folder: str | os.PathLike, service: Any, *, cancel: threading.Event,
                    progress: Callable[[int, int], None] | None = None, recursive: bool = True,
                    batch_size: int = 8, history: Any = None) -> list[BatchRow]:
    """classify_files on the images of one folder (no overlay files): the batch window's work."""
    return list(classify_files(expand([folder], recursive=recursive), service, cancel=cancel, progress=progress,
                               batch_size=batch_size, history=history))


def _row(item: Any, history: Any) -> tuple[BatchRow, Any]:
    if isinstance(item, tuple):
        src, exc = item
        return BatchRow(path=Path(src), error=str(exc)), None
    rad = item.radiograph
    warns = guardrails.check(rad)
    row = BatchRow(path=Path(item.source), predicted=CLASSES[int(item.predicted)],
                   probabilities={c: float(p) for c, p in zip(CLASSES, item.probabilities, strict=True)},
                   pixel_sha256=rad.pixel_sha256(), warnings=[w.message for w in warns],
                   warning_codes=[w.code for w in warns], model=str(item.model_name),
                   model_version=str(item.model_version), assessment=assess_prediction(item, guardrails=warns))
    if history is not None:
        row.case_id = history.add(item, file_path=item.source, warnings=warns, assessment=row.assessment).id
    return row, item


def _finish(row: BatchRow, job: Future | None) -> BatchRow:
    if job is not None:
        try:
            job.result()
        except (AppError, OSError) as exc:
            row.heatmap = None
            row.warnings.append(f"The heatmap could not be written: {exc}")
            row.warning_codes.append("heatmap_not_written")
    return row


def heatmap_name(source: Path, used: set[str]) -> str:
    """A unique overlay file name for `source` ("<stem>.heatmap.png"), shortened to MAX_HEATMAP_NAME_BYTES with a
    hash of the full name when the stem is too long (a result is never dropped for its file name)."""
    stem = source.stem or "image"
    limit = MAX_HEATMAP_NAME_BYTES - len(HEATMAP_SUFFIX.encode()) - 12      # room for "-N" and "~hash"
    if len(stem.encode("utf-8")) > limit:
        tag = hashlib.sha256(source.name.encode("utf-8", "surrogateescape")).hexdigest()[:8]
        stem = stem.encode("utf-8", "surrogateescape")[:limit - 9].decode("utf-8", "ignore") + "~" + tag
    name, n = f"{stem}{HEATMAP_SUFFIX}", 1
    while name in used:
        n += 1
        name = f"{stem}-{n}{HEATMAP_SUFFIX}"
    used.add(name)
    return name


def caption(row: BatchRow) -> str:
    """The line under an exported overlay: file, top finding, model (as the app's own export)."""
    a = row.assessment
    finding = a.finding if a is not None else CLASS_LABELS[row.predicted]
    warned = " — outside the intended use (guardrail warning)" if row.warning_codes and set(row.warning_codes) != {
        "heatmap_not_written"} else ""
    if a is not None and a.explanation_warning:
        warned += " — explanation warning: the model looked mostly at the edge of the image or outside the body"
    return (f"{row.file_name} — top finding {finding} ({100 * row.probability:.1f} %){warned} — model "
            f"{row.model} {row.model_version}")


def write_overlay(path: Path, prediction: Any, row: BatchRow) -> Path:
    """The overlay PNG of a prediction with its caption strip and the intended use (app.core.report)."""
    from app.core.report import export_overlay_png
    from fl.gradcam import overlay

    return export_overlay_png(path, overlay(prediction.radiograph.pixels, prediction.heatmap), caption=caption(row))


def _cell(text: str) -> str:
    """Neutralise spreadsheet formulas in free text (a file called '=cmd|...' must stay text in Excel)."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def csv_text(rows: Iterable[BatchRow]) -> str:
    """The CSV a batch exports: one line per file, probabilities per class, warnings joined by ' | '."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["file", "path", "predicted", "finding", "probability", *(f"p_{c}" for c in CLASSES),
                "warnings", "warning_codes", "outside_intended_use", "near_tie", "explanation_warning",
                "attention_off_target", "attention_border", "attention_outside_body", "cautions", "error",
                "pixel_sha256", "model_version"])
    for r in rows:
        a = r.assessment
        att = (a.attention if a is not None else None) or {}
        flag = (lambda v, a=a: "" if a is None else ("yes" if v else "no"))  # noqa: E731
        w.writerow([_cell(r.file_name), _cell(str(r.path)), r.predicted or "",
                    a.finding if a is not None else CLASS_LABELS.get(r.predicted or "", ""),
                    "" if r.probability is None else f"{r.probability:.6f}",
                    *("" if c not in r.probabilities else f"{r.probabilities[c]:.6f}" for c in CLASSES),
                    _cell(" | ".join(r.warnings)), " ".join(r.warning_codes),
                    flag(a is not None and a.outside_intended_use), flag(a is not None and a.near_tie),
                    flag(a is not None and a.explanation_warning),
                    *(f"{att[k]:.4f}" if k in att else "" for k in ("off_target", "border", "outside_body")),
                    _cell(" | ".join(m for _, m in a.cautions) if a is not None else ""), _cell(r.error or ""),
                    r.pixel_sha256, r.model_version])
    return buf.getvalue()


def write_csv(rows: Iterable[BatchRow], path: str | os.PathLike) -> Path:
    """Write the batch CSV atomically; raises app.core.errors.DiskFullError / SaveError."""
    return atomic_write_text(path, csv_text(rows), what="the CSV export")

"""Batch classification of a folder (progress, cancel) and CSV export of the results."""

from __future__ import annotations

import csv
import io
import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.core import guardrails
from app.core.paths import atomic_write_text
from fl.classes import CLASS_LABELS, CLASSES

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".dcm", ".dicom"})


@dataclass
class BatchRow:
    """One file of a batch: a result, or the reason it could not be classified."""

    path: Path
    predicted: str | None = None                     # class name (CLASSES) or None on error
    probabilities: dict[str, float] = field(default_factory=dict)
    pixel_sha256: str = ""
    warnings: list[str] = field(default_factory=list)
    error: str | None = None
    model_version: str = ""
    case_id: int | None = None                       # history id when the batch was recorded

    @property
    def file_name(self) -> str:
        return self.path.name

    @property
    def probability(self) -> float | None:
        return self.probabilities.get(self.predicted) if self.predicted else None


def _is_dicom(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(132)[128:132] == b"DICM"
    except OSError:
        return False


def find_images(folder: str | os.PathLike, *, recursive: bool = True) -> list[Path]:
    """Image and DICOM files in `folder` (hidden ones skipped), sorted; DICOM without extension included."""
    folder = Path(folder)
    if not folder.is_dir():
        raise NotADirectoryError(f"{folder} is not a folder")
    out = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")) if recursive else []
        for name in filenames:
            p = Path(dirpath) / name
            if not name.startswith(".") and (p.suffix.lower() in IMAGE_SUFFIXES or (not p.suffix and _is_dicom(p))):
                out.append(p)
    return sorted(out)


def classify_folder(folder: str | os.PathLike, service: Any, *, cancel: threading.Event,
                    progress: Callable[[int, int], None] | None = None, recursive: bool = True,
                    batch_size: int = 8, history: Any = None) -> list[BatchRow]:
    """Classify every image in `folder` with an app.core.inference.InferenceService (no heatmaps).

    `progress(done, total)` is called after each file (and once with (0, total) at the start); setting
    `cancel` stops after the current batch and returns the rows done so far. Unreadable files become rows with
    `error`. With `history` (a HistoryStore) each result is also recorded as a case.
    """
    files = find_images(folder, recursive=recursive)
    total = len(files)
    if progress:
        progress(0, total)
    rows: list[BatchRow] = []
    for start in range(0, total, max(1, batch_size)):
        if cancel.is_set():
            break
        chunk = files[start:start + batch_size]
        for item in service.classify_many(chunk, batch_size=batch_size, heatmaps=False):
            rows.append(_row(item, history))
            if progress:
                progress(len(rows), total)
    return rows


def _row(item: Any, history: Any) -> BatchRow:
    if isinstance(item, tuple):
        src, exc = item
        return BatchRow(path=Path(src), error=str(exc))
    rad = item.radiograph
    warns = guardrails.check(rad)
    row = BatchRow(path=Path(item.source), predicted=CLASSES[int(item.predicted)],
                   probabilities={c: float(p) for c, p in zip(CLASSES, item.probabilities, strict=True)},
                   pixel_sha256=rad.pixel_sha256(), warnings=[w.message for w in warns],
                   model_version=str(item.model_version))
    if history is not None:
        row.case_id = history.add(item, file_path=item.source, warnings=warns).id
    return row


def _cell(text: str) -> str:
    """Neutralise spreadsheet formulas in free text (a file called '=cmd|...' must stay text in Excel)."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def csv_text(rows: Iterable[BatchRow]) -> str:
    """The CSV a batch exports: one line per file, probabilities per class, warnings joined by ' | '."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["file", "path", "predicted", "finding", "probability", *(f"p_{c}" for c in CLASSES),
                "warnings", "error", "pixel_sha256", "model_version"])
    for r in rows:
        w.writerow([_cell(r.file_name), _cell(str(r.path)), r.predicted or "", CLASS_LABELS.get(r.predicted or "", ""),
                    "" if r.probability is None else f"{r.probability:.6f}",
                    *("" if c not in r.probabilities else f"{r.probabilities[c]:.6f}" for c in CLASSES),
                    _cell(" | ".join(r.warnings)), _cell(r.error or ""), r.pixel_sha256, r.model_version])
    return buf.getvalue()


def write_csv(rows: Iterable[BatchRow], path: str | os.PathLike) -> Path:
    """Write the batch CSV atomically; raises app.core.errors.DiskFullError / SaveError."""
    return atomic_write_text(path, csv_text(rows), what="the CSV export")

"""Warnings shown when an image may not be an adult frontal chest radiograph (the result may be meaningless)."""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np

from app.core.dicomtags import tags

RADIOGRAPH_MODALITIES = {"CR", "DX", "RG"}   # computed / digital radiography, radiographic film
CROSS_SECTIONAL = {"CT", "MR", "US", "NM", "PT", "XA", "RF", "MG"}
CHEST_PARTS = ("CHEST", "THORAX", "LUNG", "THORAC", "TORSO")
LATERAL_VIEWS = {"LL", "RL", "LAT", "LATERAL", "XTABLE LATERAL", "LLD", "RLD"}
ADULT_AGE = 18
MIN_SIDE = 128            # px; the dataset's smallest side is 178
MAX_ASPECT = 2.0          # long / short side; the dataset's largest is 1.44
MIN_STD, MIN_RANGE = 0.03, 0.10   # dataset: std >= 0.063, 1st-99th percentile range >= 0.24
MIN_MIDTONES = 0.30       # fraction of pixels that are neither near-black nor near-white; dataset >= 0.48
MAX_COLOURFULNESS = 15.0  # Hasler & Süsstrunk (2003) metric on 0..255 RGB; grayscale is 0

_WARNING_TAIL = " The result may be meaningless; interpret it with great care."


@dataclass(frozen=True)
class Warning:  # the name the UI codes against (DESIGN.md); shadows the builtin only here
    """One guardrail finding: a stable `code` and a clinician-readable `message`."""

    code: str
    message: str


GuardrailWarning = Warning


def check(radiograph: Any, *, colourfulness: float | None = None) -> list[Warning]:
    """Every guardrail that fires for this fl.preprocess.Radiograph (empty list: nothing to warn about).

    `colourfulness` of the source may be given; otherwise it is measured on the source file when it is a
    plain image on disk, or taken from the DICOM photometric interpretation.
    """
    out: list[Warning] = []
    t = tags(radiograph)
    if getattr(radiograph, "format", "") == "DICOM":
        out += _dicom_checks(t)
    out += _pixel_checks(np.asarray(radiograph.pixels, dtype=np.float32))
    if colourfulness is None:
        colourfulness = _source_colourfulness(radiograph, t)
    if colourfulness is not None and colourfulness > MAX_COLOURFULNESS:
        out.append(Warning("colour", "This is a colour image; X-rays are grayscale, so it is probably a photo "
                                     "or a screenshot rather than a radiograph." + _WARNING_TAIL))
    return out


def _dicom_checks(t: dict[str, str]) -> list[Warning]:
    out = []
    modality = t.get("Modality", "").upper()
    if modality and modality not in RADIOGRAPH_MODALITIES:
        kind = "a cross-sectional or other non-radiograph study" if modality in CROSS_SECTIONAL else "not a CR/DX radiograph"
        out.append(Warning("modality", f"The DICOM modality is {modality} ({kind}); the model was trained on "
                                       "chest radiographs (CR/DX) only." + _WARNING_TAIL))
    part = t.get("BodyPartExamined", "").upper()
    if part and not any(c in part for c in CHEST_PARTS):
        out.append(Warning("body_part", f"The body part examined is {part}, not the chest." + _WARNING_TAIL))
    view = t.get("ViewPosition", "").upper()
    if view in LATERAL_VIEWS:
        out.append(Warning("lateral", f"This is a lateral view ({view}); the model was trained on frontal "
                                      "(PA/AP) views only." + _WARNING_TAIL))
    age = patient_age_years(t)
    if age is not None and age < ADULT_AGE:
        shown = f"{age:.0f} years" if age >= 2 else f"{age * 12:.0f} months"
        out.append(Warning("paediatric", f"The patient is under {ADULT_AGE} (age {shown}); the model's "
                                         "behaviour on children has not been validated." + _WARNING_TAIL))
    return out


_AGE = re.compile(r"^\s*(\d{1,3})\s*([DWMY])\s*$", re.IGNORECASE)
_UNIT_YEARS = {"D": 1 / 365.25, "W": 7 / 365.25, "M": 1 / 12, "Y": 1.0}


def patient_age_years(t: dict[str, str]) -> float | None:
    """Age in years from PatientAge ("045Y", "011M", "003W", "010D"), else from PatientBirthDate and the
    study (series, acquisition, content) date; None when unknown. "000Y"-style all-zero ages are treated as
    unknown (anonymisation placeholders; an infant's age is recorded in D/W/M)."""
    m = _AGE.match(t.get("PatientAge", ""))
    if m and not (int(m.group(1)) == 0 and m.group(2).upper() == "Y"):
        return int(m.group(1)) * _UNIT_YEARS[m.group(2).upper()]
    born = _dicom_date(t.get("PatientBirthDate", ""))
    when = next((d for k in ("StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate")
                 if (d := _dicom_date(t.get(k, ""))) is not None), None)
    if born is None or when is None or when < born:
        return None
    return when.year - born.year - ((when.month, when.day) < (born.month, born.day))


def _dicom_date(s: str) -> date | None:
    with contextlib.suppress(ValueError):
        return datetime.strptime(s.strip()[:8], "%Y%m%d").date()
    return None


def _pixel_checks(px: np.ndarray) -> list[Warning]:
    out = []
    h, w = px.shape[:2]
    if min(h, w) < MIN_SIDE:
        out.append(Warning("small", f"The image is only {w}×{h} pixels; a chest radiograph is normally well over "
                                    "1000 pixels across, so this is probably a thumbnail or an icon." + _WARNING_TAIL))
    if max(h, w) / max(1, min(h, w)) > MAX_ASPECT:
        out.append(Warning("aspect", f"The image is unusually elongated ({w}×{h}); it is probably not a whole "
                                     "chest radiograph." + _WARNING_TAIL))
    p1, p99 = np.percentile(px, [1, 99])
    if float(px.std()) < MIN_STD or p99 - p1 < MIN_RANGE:
        out.append(Warning("uniform", "The image is almost uniform (nearly no contrast); it does not look like a "
                                      "radiograph, or the window is far off." + _WARNING_TAIL))
    elif float(np.mean((px > 0.04) & (px < 0.96))) < MIN_MIDTONES:
        out.append(Warning("not_radiograph", "The image is mostly pure black and white, like a document, "
                                             "drawing or screenshot; it does not look like a radiograph."
                                             + _WARNING_TAIL))
    return out


def colourfulness(rgb: np.ndarray) -> float:
    """Hasler & Süsstrunk colourfulness of an (H,W,3) RGB array on the 0..255 scale (0 for gray)."""
    a = np.asarray(rgb, dtype=np.float32)
    if a.max(initial=0) <= 1.0:
        a = a * 255.0
    rg = a[..., 0] - a[..., 1]
    yb = 0.5 * (a[..., 0] + a[..., 1]) - a[..., 2]
    return float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))


def _source_colourfulness(radiograph: Any, t: dict[str, str]) -> float | None:
    if getattr(radiograph, "format", "") == "DICOM":
        pi = t.get("PhotometricInterpretation", "").upper()
        colour = pi.startswith(("RGB", "YBR", "PALETTE")) or t.get("SamplesPerPixel", "1") not in ("", "1")
        return 100.0 if colour else 0.0
    src = getattr(radiograph, "source", None)
    if not isinstance(src, str | os.PathLike) or not Path(src).is_file():
        return None
    from PIL import Image

    try:
        with Image.open(src) as im:
            if im.mode in ("1", "L", "LA", "I", "I;16", "F"):
                return 0.0
            im.draft("RGB", (256, 256))
            small = im.convert("RGB")
            small.thumbnail((256, 256))
            return colourfulness(np.asarray(small))
    except Exception:  # the image was already decoded once; this extra look is best-effort
        return None

"""DICOM tags the workstation needs (guardrails, patient key), from Radiograph.meta or the file header."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
from pathlib import Path
from typing import Any

from app.core.paths import atomic_write_bytes

TAGS = ("Modality", "BodyPartExamined", "ViewPosition", "PatientAge", "PatientBirthDate", "StudyDate",
        "SeriesDate", "AcquisitionDate", "ContentDate", "PatientID", "PhotometricInterpretation",
        "SamplesPerPixel")


def tags(radiograph: Any) -> dict[str, str]:
    """The TAGS of a DICOM radiograph as stripped strings ({} for plain images).

    Uses radiograph.meta and, for tags it lacks, the header of radiograph.source when that file exists.
    """
    meta = {k: str(v).strip() for k, v in (getattr(radiograph, "meta", None) or {}).items() if v is not None}
    if getattr(radiograph, "format", "") != "DICOM":
        return meta
    missing = [t for t in TAGS if t not in meta]
    src = getattr(radiograph, "source", None)
    if missing and isinstance(src, str | os.PathLike) and Path(src).is_file():
        with contextlib.suppress(Exception):  # the header is optional extra information
            import pydicom

            ds = pydicom.dcmread(src, stop_before_pixels=True, specific_tags=missing, force=True)
            for t in missing:
                v = ds.get(t)
                if v is not None and str(v).strip():
                    meta[t] = str(v).strip()
    return meta


def _key(folder: Path) -> bytes:
    """The workstation's secret for pseudonymising patient ids (created once, never leaves the data folder)."""
    p = folder / "patient-key"
    with contextlib.suppress(FileNotFoundError):
        k = p.read_bytes()
        if len(k) >= 16:
            return k
    atomic_write_bytes(p, os.urandom(32), what="the patient pseudonymisation key")
    return p.read_bytes()


def patient_key(radiograph: Any, folder: Path) -> str:
    """Pseudonymous patient id: HMAC-SHA-256 of the DICOM PatientID with the workstation key; without a
    PatientID, "img-" + the pixel SHA-256 (each image its own patient)."""
    pid = tags(radiograph).get("PatientID", "")
    if pid:
        return "pid-" + hmac.new(_key(folder), pid.encode("utf-8"), hashlib.sha256).hexdigest()[:32]
    return "img-" + radiograph.pixel_sha256()

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
        "SamplesPerPixel", "PatientName", "AccessionNumber")


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


def person_name(value: str) -> str:
    """A DICOM person name as people write it: "DOE^JANE^^DR" -> "DOE, JANE"; plain text as it is."""
    parts = [p.strip() for p in str(value).split("=")[0].split("^")]
    if len(parts) < 2:
        return parts[0] if parts else ""
    family, given = parts[0], " ".join(p for p in parts[1:3] if p)
    return f"{family}, {given}" if given else family


def identification(radiograph: Any) -> dict[str, str]:
    """Who and which study a DICOM image belongs to, for the case header, the history and the PDF report
    (patient_name, patient_id, patient_age, accession_number; '' when absent or for plain images).
    These stay on the workstation: nothing of them leaves it."""
    t = tags(radiograph) if getattr(radiograph, "format", "") == "DICOM" else {}
    return {"patient_name": person_name(t.get("PatientName", "")), "patient_id": t.get("PatientID", ""),
            "patient_age": t.get("PatientAge", ""), "accession_number": t.get("AccessionNumber", "")}


def age_text(value: str) -> str:
    """A DICOM age string as people read it: "045Y" -> "45 y", "011M" -> "11 months"."""
    v = str(value).strip()
    if len(v) == 4 and v[:3].isdigit() and v[3] in "DWMY":
        return f"{int(v[:3])} {dict(D='days', W='weeks', M='months', Y='y')[v[3]]}"
    return v


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

"""The workstation's local labelled set: copies of clinician-confirmed images in class folders + manifest.csv.

The folder (data_dir()/labelled) is directly usable by fl.data.discover; it never leaves the workstation.
manifest.csv is the authority: every change writes it atomically, and an operation interrupted by a crash is
completed or undone the next time the set is touched (see _reconcile).
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import re
import shutil
import tempfile
import threading
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from app.core.errors import AppError, save_error
from app.core.paths import atomic_write_text, data_dir
from fl.classes import CLASSES
from fl.formats import IMAGE_SUFFIXES

MANIFEST = "manifest.csv"
COLUMNS = ("filename", "patient_id", "label", "pixel_sha256", "case_id", "source_format", "added", "labelled_by",
           "labelled_at", "reason", "replaced")
_OWN_FILE = re.compile(r"^[0-9a-f]{64}\.[a-z]+$")
_LOCK = threading.RLock()  # one process-wide lock: every LabelledSet object may share a folder

EXPLANATION = (
    "Confirmed and corrected cases are copied into this workstation's local labelled set (a folder in "
    "FedXray's data folder, organised by class). The images never leave this computer; if this workstation "
    "takes part in federated training, only model updates computed from them are shared."
)


def _who(case: Any, now: str) -> tuple[str, str, str]:
    """(labelled_by, labelled_at, reason) of a case's label, from the history's record of it."""
    return (str(getattr(case, "feedback_by", None) or getattr(case, "user", "") or ""),
            str(getattr(case, "feedback_at", None) or now), str(getattr(case, "feedback_reason", None) or ""))


class LabelledSetError(AppError):
    """An image could not be added to (or moved within) the local labelled set."""


@dataclass(frozen=True)
class LabelledEntry:
    """One row of manifest.csv: one image (keyed by its pixels' SHA-256), its one label, who gave it and when.

    Manifests written before labelled_by ... replaced existed read with those fields empty (and are rewritten
    with them at the next change); no label is lost.
    """

    filename: str        # relative to the set's root, e.g. "Covid/<sha>.png"
    patient_id: str      # pseudonymous (HMAC of DICOM PatientID) or "img-<pixel sha>"
    label: str
    pixel_sha256: str
    case_id: str
    source_format: str
    added: str           # UTC ISO, when the image entered the set
    labelled_by: str = ""  # who gave the current label
    labelled_at: str = ""  # UTC ISO, when
    reason: str = ""       # why a case with guardrail warnings was labelled anyway
    replaced: str = ""     # the label this one replaced: "<class> by <user> at <UTC ISO>"


class LabelledSet:
    """Class-folder data set in `root` (default data_dir()/labelled)."""

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root) if root is not None else data_dir() / "labelled"

    # ------------------------------------------------------------------ reading
    def entries(self) -> list[LabelledEntry]:
        """The manifest rows, sorted by file name."""
        with _LOCK:
            return sorted(self._reconcile().values(), key=lambda e: e.filename)

    def label_of(self, pixel_sha256: str) -> str | None:
        """The class the image is filed under, or None when it is not in the set."""
        e = self._read().get(pixel_sha256)
        return e.label if e else None

    def __contains__(self, pixel_sha256: object) -> bool:
        return isinstance(pixel_sha256, str) and pixel_sha256 in self._read()

    def counts(self) -> dict[str, int]:
        """Number of images per class."""
        out = dict.fromkeys(CLASSES, 0)
        for e in self.entries():
            out[e.label] += 1
        return out

    def patients(self) -> dict[str, int]:
        """Number of distinct patients per class (an image without a DICOM PatientID is its own patient)."""
        seen: dict[str, set[str]] = {c: set() for c in CLASSES}
        for e in self.entries():
            seen[e.label].add(e.patient_id)
        return {c: len(v) for c, v in seen.items()}

    def entry(self, pixel_sha256: str) -> LabelledEntry | None:
        """The image's row (its one live label), or None."""
        return self._read().get(pixel_sha256)

    def path_of(self, entry: LabelledEntry) -> Path:
        return self.root / entry.filename

    def review(self) -> list[tuple[LabelledEntry, bytes | None]]:
        """Every entry with a small PNG thumbnail of its image (None when the file cannot be read).
        Reads every image: call it from a worker thread."""
        from app.core.imaging import thumbnail_png
        from fl.preprocess import read_image

        out = []
        for e in self.entries():
            try:
                thumb = thumbnail_png(read_image(self.path_of(e)).pixels)
            except Exception:  # noqa: BLE001 - a damaged copy still gets its row, to be removed
                thumb = None
            out.append((e, thumb))
        return out

    # ------------------------------------------------------------------ changes
    def add(self, case: Any, source_path: str | os.PathLike | None = None) -> Path:
        """File a case with clinician feedback under case.feedback_label; returns the copy's path.

        The image copied is the first of: `source_path`, case.file_path (each only if its pixels still have
        case.pixel_sha256), the history's stored copy (case.image_file). A case already in the set is moved
        to its new class when the label was corrected.
        """
        label = getattr(case, "feedback_label", None)
        if label not in CLASSES:
            raise ValueError("the case has no confirmed or corrected label; record the feedback first")
        if getattr(case, "warnings", None) and not (getattr(case, "feedback_reason", None) or "").strip():
            raise LabelledSetError(
                f"Case {case.id} ({case.file_name}) was shown despite guardrail warnings (outside the intended use); "
                "it enters the local labelled set only with a typed reason. Give the reason with the label.")
        sha = case.pixel_sha256
        with _LOCK:
            entries = self._reconcile()
            old = entries.get(sha)
            if old is not None:
                return self._relabel(entries, old, label, case)
            src, fmt = self._pick_source(case, source_path)
            suffix = src.suffix.lower() if src.suffix.lower() in IMAGE_SUFFIXES else ".dcm"
            if fmt == "stored copy":
                suffix = ".png"
            rel = f"{label}/{sha}{suffix}"
            self._copy(src, self.root / rel)
            now = datetime.now(UTC).isoformat(timespec="seconds")
            entries[sha] = LabelledEntry(rel, case.patient_key or f"img-{sha}", label, sha, str(case.id),
                                         getattr(case, "source_format", "") or fmt, now, *_who(case, now))
            self._write(entries)
            return self.root / rel

    def remove(self, pixel_sha256: str) -> bool:
        """Take an image out of the set (manifest row and file); False when it was not there."""
        with _LOCK:
            entries = self._reconcile()
            e = entries.pop(pixel_sha256, None)
            if e is None:
                return False
            self._write(entries)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.root / e.filename)
            return True

    # ------------------------------------------------------------------ internals
    def _relabel(self, entries: dict[str, LabelledEntry], old: LabelledEntry, label: str, case: Any) -> Path:
        by, at, reason = _who(case, datetime.now(UTC).isoformat(timespec="seconds"))
        if old.label == label:
            if (by, reason) != (old.labelled_by, old.reason) and by:  # confirmed again by someone: say who
                entries[old.pixel_sha256] = LabelledEntry(**{**asdict(old), "labelled_by": by, "labelled_at": at,
                                                             "reason": reason, "case_id": str(case.id)})
                self._write(entries)
            return self.root / old.filename
        replaced = f"{old.label} by {old.labelled_by or 'unknown'} at {old.labelled_at or old.added or 'unknown'}"
        new = LabelledEntry(**{**asdict(old), "label": label, "filename": f"{label}/{Path(old.filename).name}",
                               "case_id": str(case.id), "labelled_by": by, "labelled_at": at, "reason": reason,
                               "replaced": replaced})
        entries[old.pixel_sha256] = new
        self._write(entries)  # the manifest first: a crash before the move is rolled forward by _reconcile
        target = self.root / new.filename
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(self.root / old.filename, target)
        except OSError as exc:
            raise save_error(exc, "the relabelled image", target) from exc
        return target

    def _pick_source(self, case: Any, source_path: str | os.PathLike | None) -> tuple[Path, str]:
        from fl.preprocess import ImageReadError, read_image

        for cand in (source_path, getattr(case, "file_path", None)):
            if cand and Path(cand).is_file():
                try:
                    rad = read_image(cand)
                except ImageReadError:
                    continue
                if rad.pixel_sha256() == case.pixel_sha256:
                    return Path(cand), rad.format
        stored = getattr(case, "image_file", None)
        if stored and Path(stored).is_file():
            return Path(stored), "stored copy"
        raise LabelledSetError(
            f"The image of case {case.id} ({case.file_name}) could not be added to the local labelled set: the "
            "original file is gone or has changed, and the history kept no copy. Open the original image "
            "again and confirm the label there.")

    def _copy(self, src: Path, dst: Path) -> None:
        tmp = None
        try:
            dst.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".", suffix=".tmp", dir=dst.parent)
            with os.fdopen(fd, "wb") as out, open(src, "rb") as inp:
                shutil.copyfileobj(inp, out, 1 << 20)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, dst)
            tmp = None
        except OSError as exc:
            raise save_error(exc, "the copy for the labelled set", dst) from exc
        finally:
            if tmp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)

    def _read(self) -> dict[str, LabelledEntry]:
        try:
            text = (self.root / MANIFEST).read_text(encoding="utf-8")
        except FileNotFoundError:
            return self._rebuild()  # {} for a new set; adopts the files if someone deleted the manifest
        except (OSError, UnicodeDecodeError):
            return self._rebuild()
        try:
            rows = list(csv.DictReader(io.StringIO(text)))
            out = {}
            for r in rows:
                e = LabelledEntry(**{c: (r.get(c) or "") for c in COLUMNS})
                if e.label in CLASSES and e.pixel_sha256:
                    out[e.pixel_sha256] = e
            return out
        except csv.Error:
            return self._rebuild()

    def _rebuild(self) -> dict[str, LabelledEntry]:
        """Entries from the files alone (a damaged manifest): each image is its own patient."""
        out = {}
        for label in CLASSES:
            for f in sorted((self.root / label).glob("*")) if (self.root / label).is_dir() else ():
                if _OWN_FILE.match(f.name):
                    sha = f.name.split(".")[0]
                    out[sha] = LabelledEntry(f"{label}/{f.name}", f"img-{sha}", label, sha, "", "", "")  # no who/when
        return out

    def _write(self, entries: dict[str, LabelledEntry]) -> None:
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
        w.writeheader()
        for e in sorted(entries.values(), key=lambda e: e.filename):
            w.writerow(asdict(e))
        atomic_write_text(self.root / MANIFEST, buf.getvalue(), what="the labelled-set manifest")

    def _reconcile(self) -> dict[str, LabelledEntry]:
        """Finish what a crash interrupted: roll moves forward, drop rows without a file, delete unlisted
        copies and temporary files. Returns the (possibly corrected) entries."""
        entries = self._read()
        on_disk: dict[str, Path] = {}
        for label in CLASSES:
            folder = self.root / label
            for f in folder.iterdir() if folder.is_dir() else ():
                if f.name.startswith(".") and f.name.endswith(".tmp"):
                    with contextlib.suppress(OSError):
                        f.unlink()
                elif _OWN_FILE.match(f.name):
                    on_disk[f"{label}/{f.name}"] = f
        listed = {e.filename for e in entries.values()}
        changed = bool(entries) and not (self.root / MANIFEST).is_file()
        for sha, e in list(entries.items()):
            if e.filename in on_disk:
                continue
            moved = next((rel for rel in on_disk if rel not in listed and rel.split("/")[1] == Path(e.filename).name),
                         None)
            if moved is not None:
                (self.root / e.filename).parent.mkdir(parents=True, exist_ok=True)
                os.replace(on_disk.pop(moved), self.root / e.filename)
                on_disk[e.filename] = self.root / e.filename
            else:
                del entries[sha]
                changed = True
        listed = {e.filename for e in entries.values()}
        for rel, f in on_disk.items():
            if rel not in listed:
                with contextlib.suppress(OSError):
                    f.unlink()
        if changed:
            self._write(entries)
        return entries


def remove_label(labelled: LabelledSet, history: Any, pixel_sha256: str, *, user: str | None = None) -> bool:
    """Take an image out of the labelled set and clear its label in the history (logged there with who and
    when), so the history never shows a label the set no longer has. False when the image was not in the set."""
    removed = labelled.remove(pixel_sha256)
    if history is not None:
        cases = history.find_by_sha(pixel_sha256)
        if cases and cases[0].feedback_label is not None:
            history.set_feedback(cases[0].id, None, user=user)
    return removed

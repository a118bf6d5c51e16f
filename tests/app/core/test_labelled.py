"""The local labelled set: copies by class, manifest, relabelling, removal, crash recovery, fl.data reads it."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest

from app.core.history import HistoryStore
from app.core.labelled import LabelledSet, LabelledSetError
from app.core.paths import data_dir
from fl.data import discover

from .conftest import make_prediction

P = [0.1, 0.6, 0.2, 0.1]


@pytest.fixture
def store():
    with HistoryStore() as s:
        yield s


def manifest(root):
    with open(root / "manifest.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_confirm_copies_original_and_writes_manifest(store, cxr, copy_of):
    f = copy_of(cxr["Normal"])
    case = store.set_feedback(store.add(make_prediction(f, P), file_path=f).id, "Normal", "agree")
    ls = LabelledSet()
    assert ls.root == data_dir() / "labelled"
    path = ls.add(case)
    assert path == ls.root / "Normal" / f"{case.pixel_sha256}.png"
    assert path.read_bytes() == f.read_bytes()
    rows = manifest(ls.root)
    assert rows == [{"filename": f"Normal/{case.pixel_sha256}.png", "patient_id": f"img-{case.pixel_sha256}",
                     "label": "Normal", "pixel_sha256": case.pixel_sha256, "case_id": str(case.id),
                     "source_format": "PNG", "added": rows[0]["added"], "labelled_by": case.feedback_by,
                     "labelled_at": case.feedback_at, "reason": "", "replaced": ""}]
    assert case.pixel_sha256 in ls and ls.label_of(case.pixel_sha256) == "Normal"
    assert ls.counts() == {"Covid": 0, "Normal": 1, "Pneumonia-Bacterial": 0, "Pneumonia-Viral": 0}
    # the learning core reads it as a class-folder data set with the manifest's patient ids
    samples = discover(ls.root)
    assert [(s.path, s.label, s.patient_id) for s in samples] == [(path, 1, f"img-{case.pixel_sha256}")]
    assert ls.add(case) == path and len(manifest(ls.root)) == 1   # confirming twice changes nothing


def test_correction_moves_the_copy(store, cxr):
    case = store.add(make_prediction(cxr["Covid"], P), file_path=cxr["Covid"])
    ls = LabelledSet()
    first = ls.add(store.set_feedback(case.id, "Covid"))
    second = ls.add(store.set_feedback(case.id, "Pneumonia-Viral", "PCR: influenza"))
    assert not first.exists() and second == ls.root / "Pneumonia-Viral" / first.name and second.exists()
    assert [r["filename"] for r in manifest(ls.root)] == [f"Pneumonia-Viral/{first.name}"]
    assert [s.label for s in discover(ls.root)] == [3]


def test_remove(store, cxr):
    case = store.set_feedback(store.add(make_prediction(cxr["Covid"], P), file_path=cxr["Covid"]).id, "Covid")
    ls = LabelledSet()
    path = ls.add(case)
    assert ls.remove(case.pixel_sha256) is True
    assert not path.exists() and manifest(ls.root) == [] and case.pixel_sha256 not in ls
    assert ls.remove(case.pixel_sha256) is False


def test_original_gone_uses_history_copy(store, cxr, copy_of):
    f = copy_of(cxr["Pneumonia-Bacterial"])
    case = store.add(make_prediction(f, P), file_path=f)
    os.unlink(f)
    case = store.set_feedback(case.id, "Pneumonia-Bacterial")
    path = LabelledSet().add(case)
    assert path.read_bytes() == Path(case.image_file).read_bytes()
    os.unlink(case.image_file)
    os.unlink(path)
    with pytest.raises(LabelledSetError, match="could not be added"):
        LabelledSet().add(case)


def test_changed_file_is_not_copied(store, cxr, copy_of):
    f = copy_of(cxr["Normal"], "scan.png")
    case = store.set_feedback(store.add(make_prediction(f, P), file_path=f).id, "Normal")
    os.replace(copy_of(cxr["Covid"], "other.png"), f)   # the file now holds another patient's image
    path = LabelledSet().add(case)
    assert path.read_bytes() == Path(case.image_file).read_bytes() != f.read_bytes()


def test_dicom_keeps_its_format_and_a_pseudonymous_patient(store, dicom_dir, copy_of):
    f = copy_of(dicom_dir / "CT_small.dcm", "IMG0001")   # DICOM without an extension
    case = store.set_feedback(store.add(make_prediction(f, P), file_path=f).id, "Normal")
    path = LabelledSet().add(case)
    assert path.suffix == ".dcm" and path.read_bytes() == f.read_bytes()
    row = manifest(path.parents[1])[0]
    assert row["patient_id"].startswith("pid-") and "1CT1" not in row["patient_id"]
    assert row["source_format"] == "DICOM"
    # the same PatientID maps to the same pseudonym (patients stay together in a split)
    other = copy_of(dicom_dir / "CT_small.dcm", "IMG0002")
    assert store.add(make_prediction(other, P), file_path=other).patient_key == row["patient_id"]


def test_no_feedback_is_refused(store, cxr):
    case = store.add(make_prediction(cxr["Covid"], P), file_path=cxr["Covid"])
    with pytest.raises(ValueError, match="feedback"):
        LabelledSet().add(case)


def test_interrupted_changes_are_completed_or_undone(store, cxr):
    ls = LabelledSet()
    a = store.set_feedback(store.add(make_prediction(cxr["Covid"], P), file_path=cxr["Covid"]).id, "Covid")
    b = store.set_feedback(store.add(make_prediction(cxr["Normal"], P), file_path=cxr["Normal"]).id, "Normal")
    pa, pb = ls.add(a), ls.add(b)
    # 1. a relabel Covid -> Normal crashed after the manifest was written, before the file moved
    text = (ls.root / "manifest.csv").read_text().replace(f"Covid/{pa.name}", f"Normal/{pa.name}")
    (ls.root / "manifest.csv").write_text(text.replace(",Covid,", ",Normal,"))
    # 2. an add crashed after the copy, before the manifest: an unlisted copy and a temporary file
    orphan = ls.root / "Pneumonia-Viral" / ("f" * 64 + ".png")
    orphan.parent.mkdir()
    orphan.write_bytes(b"x")
    (ls.root / "Normal" / ".abc.tmp").write_bytes(b"half")
    # 3. a user's own file is never touched
    (ls.root / "Normal" / "README.txt").write_text("mine")
    entries = ls.entries()
    assert sorted((e.filename, e.label) for e in entries) == sorted(
        [(f"Normal/{pa.name}", "Normal"), (f"Normal/{pb.name}", "Normal")])
    assert (ls.root / "Normal" / pa.name).exists() and not pa.exists()
    assert not orphan.exists() and not (ls.root / "Normal" / ".abc.tmp").exists()
    assert (ls.root / "Normal" / "README.txt").exists()


def test_lost_manifest_is_rebuilt_from_files(store, cxr):
    ls = LabelledSet()
    case = store.set_feedback(store.add(make_prediction(cxr["Covid"], P), file_path=cxr["Covid"]).id, "Covid")
    path = ls.add(case)
    os.unlink(ls.root / "manifest.csv")
    assert [(e.filename, e.label) for e in ls.entries()] == [(f"Covid/{path.name}", "Covid")]
    assert path.exists() and manifest(ls.root)[0]["patient_id"] == f"img-{case.pixel_sha256}"

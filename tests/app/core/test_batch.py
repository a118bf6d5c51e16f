"""Batch classification of a real folder with the tiny network: progress, cancel, errors, CSV, history."""

from __future__ import annotations

import csv
import errno
import io
import shutil
import threading

import pytest

from app.core import paths
from app.core.batch import classify_folder, csv_text, find_images, write_csv
from app.core.errors import DiskFullError
from app.core.history import HistoryStore
from fl.classes import CLASSES


@pytest.fixture
def folder(tmp_path, cxr, dicom_dir):
    d = tmp_path / "batch"
    (d / "sub").mkdir(parents=True)
    for i, (c, f) in enumerate(cxr.items()):
        shutil.copy(f, (d / "sub" if i % 2 else d) / f"{c}.png")
    shutil.copy(dicom_dir / "CT_small.dcm", d / "IM0001")     # DICOM without extension
    (d / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (d / "notes.txt").write_text("not an image")
    (d / ".hidden.png").write_bytes(b"")
    return d


def test_find_images(folder):
    names = [p.relative_to(folder).as_posix() for p in find_images(folder)]
    assert names == sorted(["Covid.png", "IM0001", "Pneumonia-Bacterial.png", "broken.png", "sub/Normal.png",
                            "sub/Pneumonia-Viral.png"])
    assert len(find_images(folder, recursive=False)) == 4


def test_classify_folder_rows_progress_and_csv(folder, loaded_service, tmp_path):
    calls = []
    rows = classify_folder(folder, loaded_service, cancel=threading.Event(),
                           progress=lambda done, total: calls.append((done, total)), batch_size=4)
    assert calls == [(i, 6) for i in range(7)]
    by_name = {r.file_name: r for r in rows}
    assert set(by_name) == {"Covid.png", "IM0001", "Pneumonia-Bacterial.png", "broken.png", "Normal.png",
                            "Pneumonia-Viral.png"}
    bad = by_name["broken.png"]
    assert bad.predicted is None and "broken.png" in bad.error
    ok = [r for r in rows if r.error is None]
    assert len(ok) == 5
    for r in ok:
        assert sum(r.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
        assert r.predicted == max(r.probabilities, key=r.probabilities.get)
        assert r.model_version == "0.0.1-test" and len(r.pixel_sha256) == 64
    assert any("CT" in w for w in by_name["IM0001"].warnings)
    # the batch gives the same probabilities as a single classification
    single = loaded_service.classify(folder / "Covid.png")
    assert by_name["Covid.png"].probabilities == pytest.approx(dict(zip(CLASSES, single.probabilities, strict=True)),
                                                               abs=1e-5)

    out = write_csv(rows, tmp_path / "export" / "results.csv")
    with open(out, newline="") as f:
        got = list(csv.DictReader(f))
    assert [g["file"] for g in got] == [r.file_name for r in rows]
    for g, r in zip(got, rows, strict=True):
        assert g["predicted"] == (r.predicted or "") and g["error"] == (r.error or "")
        if r.predicted:
            assert float(g["probability"]) == pytest.approx(r.probabilities[r.predicted], abs=1e-6)
            assert sum(float(g[f"p_{c}"]) for c in CLASSES) == pytest.approx(1.0, abs=1e-5)
    assert [p.name for p in out.parent.iterdir()] == ["results.csv"]


def test_cancel_stops_after_current_batch(folder, loaded_service):
    cancel = threading.Event()

    def progress(done, total):
        if done == 1:
            cancel.set()

    rows = classify_folder(folder, loaded_service, cancel=cancel, progress=progress, batch_size=2)
    assert len(rows) == 2                      # the batch in flight finishes, no further batch starts
    assert classify_folder(folder, loaded_service, cancel=cancel) == []


def test_batch_into_history(folder, loaded_service):
    with HistoryStore() as store:
        rows = classify_folder(folder, loaded_service, cancel=threading.Event(), history=store)
        ok = [r for r in rows if r.error is None]
        assert len(store) == len(ok) == 5
        assert sorted(c.id for c in store.search()) == sorted(r.case_id for r in ok)
        ct = store.get(next(r.case_id for r in ok if r.file_name == "IM0001"))
        assert ct.warnings and "CT" in ct.warnings[0]


def test_csv_on_full_disk_leaves_nothing(tmp_path, monkeypatch):
    # A full disk cannot be produced without root + mount; the kernel's ENOSPC is injected at fsync.
    target = tmp_path / "out.csv"
    target.write_text("old export\n")

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as m, pytest.raises(DiskFullError) as info:
        m.setattr(paths.os, "fsync", full)
        write_csv([], target)
    assert "disk is full" in str(info.value) and "CSV export" in str(info.value)
    assert target.read_text() == "old export\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home", "out.csv"]   # no temporary file left


def test_formula_like_file_names_stay_text(tmp_path):
    from pathlib import Path

    from app.core.batch import BatchRow, csv_text

    text = csv_text([BatchRow(path=Path("/x/=HYPERLINK(1).png"), error="-bad")])
    row = list(csv.DictReader(text.splitlines()))[0]
    assert row["file"] == "'=HYPERLINK(1).png" and row["error"] == "'-bad"


def test_heatmap_names_are_unique_and_short_enough_for_any_file_system():
    from pathlib import Path

    from app.core.batch import MAX_HEATMAP_NAME_BYTES, heatmap_name

    used: set[str] = set()
    assert heatmap_name(Path("/a/chest.png"), used) == "chest.heatmap.png"
    assert heatmap_name(Path("/b/chest.dcm"), used) == "chest-2.heatmap.png"
    long_a, long_b = Path("ü" * 120 + "a.png"), Path("ü" * 120 + "b.png")   # 246 bytes each, same first 200
    a, b = heatmap_name(long_a, used), heatmap_name(long_b, used)
    assert a != b and all(len(n.encode()) <= MAX_HEATMAP_NAME_BYTES for n in (a, b))
    assert a.startswith("ü" * 80) and a.endswith(".heatmap.png")
    assert heatmap_name(long_a, used) != a                                  # the same long name twice


def test_rows_carry_guardrail_codes_into_the_csv(folder, loaded_service):
    rows = classify_folder(folder, loaded_service, cancel=threading.Event())
    ct = next(r for r in rows if r.file_name == "IM0001")
    assert ct.warning_codes == ["modality"] and ct.warnings[0].startswith("The DICOM modality is CT")
    lines = list(csv.DictReader(io.StringIO(csv_text(rows))))
    row = next(line for line in lines if line["file"] == "IM0001")
    assert row["warning_codes"] == "modality" and row["warnings"] == ct.warnings[0]
    assert ct.as_json()["warnings"] == [{"code": "modality", "message": ct.warnings[0]}]


def test_csv_and_history_carry_the_explanation_warning_and_outside_use_mark(tmp_path, shared_data, dicom_dir):
    """The bundled model (LiteRT): a film whose heatmap sits on its bottom edge is warned, a clean one is not; the
    CT slice is outside the intended use; the same marks reach the CSV and the history."""
    from app.core.inference import InferenceService
    from tests.conftest import REPO

    d = tmp_path / "mixed"
    d.mkdir()
    shutil.copy(shared_data / "cxr" / "Covid" / "cohen_p205_covid-19-pneumonia-progression-and-regression-day20.png",
                d / "edge.png")
    shutil.copy(shared_data / "cxr" / "Pneumonia-Bacterial" / "kermany_train_person1201_bacteria_3151.png",
                d / "clean.png")
    shutil.copy(dicom_dir / "CT_small.dcm", d / "ct.dcm")
    service = InferenceService(engine="litert")
    service.load(REPO / "resources" / "models" / "default")
    with HistoryStore() as store:
        rows = classify_folder(d, service, cancel=threading.Event(), history=store)
        by_name = {r.file_name: r for r in rows}
        lines = {r["file"]: r for r in csv.DictReader(io.StringIO(csv_text(rows)))}
        assert lines["edge.png"]["explanation_warning"] == "yes" and float(lines["edge.png"]["attention_off_target"]) > 0.5
        assert "edge of the image" in lines["edge.png"]["cautions"]
        assert lines["clean.png"]["explanation_warning"] == "no" and lines["clean.png"]["outside_intended_use"] == "no"
        assert lines["ct.dcm"]["outside_intended_use"] == "yes" and "modality" in lines["ct.dcm"]["warning_codes"]
        for name, row in by_name.items():
            stored = store.get(row.case_id).assessment
            assert stored.explanation_warning == row.assessment.explanation_warning, name
            assert stored.outside_intended_use == (name == "ct.dcm")
            assert lines[name]["near_tie"] == ("yes" if row.assessment.near_tie else "no")

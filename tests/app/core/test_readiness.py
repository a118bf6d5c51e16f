"""Readiness checks (app.core.readiness) on real images: the labelled set's counts recomputed here from the
manifest, the device from a real TensorFlow in a child process (no GPU on this machine: the CPU answer is what
can be checked here), free disk. Clock and central reachability: tests/app/cli/test_federation.py."""

from __future__ import annotations

import csv
from collections import Counter

from app.core import readiness
from fl.classes import CLASSES
from tests.fl.flower_support import make_sites


def test_labelled_set_counts_images_and_patients_per_class(tmp_path, shared_data):
    site = make_sites(shared_data / "cxr", tmp_path / "sites", per_class=4, seed=5,
                      shares={"s": dict.fromkeys(CLASSES, 1.0)})["s"]  # fmt: skip
    with open(site / "manifest.csv", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    images = Counter(r["filename"].split("/")[0] for r in rows)  # "Covid/<file>.png"
    patients = {c: len({r["patient_id"] for r in rows if r["filename"].startswith(f"{c}/")}) for c in CLASSES}
    check, train = readiness.check_labelled_set(site)
    assert check.level == "ok", check.detail
    for c in CLASSES:
        assert f"{c} {images[c]} ({patients[c]} patients)" in check.detail
    assert check.detail.startswith(f"{len(rows)} images of {len({r['patient_id'] for r in rows})} patients")
    assert 0 < train < len(rows) and f"{train} for training, {len(rows) - train} for validation" in check.detail


def test_too_few_patients_or_no_folder_fail_with_what_to_do(tmp_path, shared_data):
    missing, _ = readiness.check_labelled_set(tmp_path / "nothing")
    assert missing.level == "fail" and "confirm or correct cases" in missing.detail
    one = make_sites(shared_data / "cxr", tmp_path / "one", per_class=1, seed=1,
                     shares={"s": {"Covid": 1.0, "Normal": 0.0, "Pneumonia-Bacterial": 0.0, "Pneumonia-Viral": 0.0}})["s"]  # fmt: skip
    check, train = readiness.check_labelled_set(one)
    assert check.level == "fail" and "Too few patients" in check.detail and train == 0


def test_the_device_is_the_cpu_here_with_an_estimate(tmp_path):
    check = readiness.check_device(train_images=400)
    assert check.level == "warn" and check.detail.startswith("CPU, slow")
    minutes = round(readiness.estimate_cpu_round(400) / 60)
    assert minutes == round((25 + 400 * 1.5 / 8 + 100 * 0.1) / 60)  # the cost model, written out by hand
    assert f"about {minutes} min" in check.detail


def test_free_disk(tmp_path):
    check = readiness.check_disk(tmp_path / "not" / "yet")
    assert check.level == "ok" and str(tmp_path) in check.detail

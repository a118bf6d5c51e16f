"""`fedxray train` and `fedxray evaluate` on a small real class-folder dataset."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np

from fl.classes import CLASSES


def small_dataset(shared_data, dest, per_class=10):
    """Copy a few real images per class with the manifest rows that name their patients."""
    src = shared_data / "cxr"
    with open(src / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    keep = []
    for c in CLASSES:
        (dest / c).mkdir(parents=True)
        for row in [r for r in rows if r["class"] == c][:per_class]:
            shutil.copy(src / row["filename"], dest / row["filename"])
            keep.append(row)
    with open(dest / "manifest.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["filename", "patient_id"])
        w.writeheader()
        w.writerows({"filename": r["filename"], "patient_id": r["patient_id"]} for r in keep)
    return dest


def test_train_writes_a_model_with_card_then_evaluate_reports_it(fedxray, shared_data, tmp_path):
    data = small_dataset(shared_data, tmp_path / "data")
    out = tmp_path / "model"
    r = fedxray("train", "--data", data, "--out", out, "--arch", "tiny", "--input-size", "64", "--epochs", "2")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "epoch 2/2" in r.stdout
    card = json.loads((out / "card.json").read_text())
    assert card["arch"] == "tiny" and card["input_size"] == 64
    assert len(card["training"]["data_fingerprint"]) == 64
    assert card["training"]["split"] == "by patient"
    assert len(card["training"]["history"]) == 2
    assert 1 <= card["training"]["best_epoch"] <= 2
    val = card["metrics"]["validation"]
    assert card["training"]["validation_examples"] == val["num_examples"]

    r = fedxray("evaluate", "--data", data, "--model", out, "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    m = json.loads(r.stdout)
    assert m["num_examples"] == 40
    cm = np.array(m["confusion_matrix"])
    assert cm.sum() == 40 and list(cm.sum(axis=1)) == [10, 10, 10, 10]
    assert abs(m["accuracy"] - np.trace(cm) / 40) < 1e-9

    r = fedxray("evaluate", "--data", data, "--model", out)
    assert "Confusion matrix" in r.stdout and "Pneumonia-Viral" in r.stdout

    # The best model comes with its LiteRT artefact, recorded in the card; both engines give the same metrics.
    assert card["inference"]["file"] == "model.tflite" and (out / "model.tflite").is_file()
    assert card["inference"]["weights_sha256"] == card["weights"]["sha256"]
    assert m["model"]["engine"] == "litert"
    r = fedxray("evaluate", "--data", data, "--model", out, "--json", "--engine", "tensorflow")
    assert r.returncode == 0, r.stderr[-2000:]
    t = json.loads(r.stdout)
    assert t["model"]["engine"] == "tensorflow" and t["confusion_matrix"] == m["confusion_matrix"]
    assert abs(t["loss"] - m["loss"]) < 1e-5 and t["accuracy"] == m["accuracy"]


def test_train_on_an_empty_folder_says_what_is_missing(fedxray, tmp_path):
    (tmp_path / "empty").mkdir()
    r = fedxray("train", "--data", tmp_path / "empty", "--out", tmp_path / "m", "--arch", "tiny")
    assert r.returncode == 2
    assert "Covid" in r.stderr

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


def test_train_with_source_weights_and_cues_reports_the_cohort_figures(fedxray, shared_data, tmp_path):
    # The manifest's source and population columns kept: the first rows of each class mix both sources.
    src = shared_data / "cxr"
    with open(src / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    data = tmp_path / "data"
    keep = []
    for c in CLASSES:
        (data / c).mkdir(parents=True)
        for row in [r for r in rows if r["class"] == c][:10]:
            shutil.copy(src / row["filename"], data / row["filename"])
            keep.append(row)
    with open(data / "manifest.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["filename", "patient_id", "source_repo", "population"])
        w.writeheader()
        w.writerows({k: r[k] for k in w.fieldnames} for r in keep)
    out = tmp_path / "model"
    r = fedxray("train", "--data", data, "--out", out, "--arch", "tiny", "--input-size", "64", "--epochs", "1",
                "--source-weights", "--source-cues", "--no-litert")
    assert r.returncode == 0, r.stderr[-2000:]
    card = json.loads((out / "card.json").read_text())
    config = card["training"]["config"]
    assert config["source_weights"] is True and config["source_cues"] is True
    val = card["metrics"]["validation"]
    history = card["training"]["history"][0]
    assert history["val_adult_non_covid_specificity"] == val.get("adult_non_covid_specificity")

    r = fedxray("evaluate", "--data", data, "--model", out, "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    m = json.loads(r.stdout)
    # Counted independently from the manifest rows: adult non-COVID images and paediatric images.
    adult = sum(1 for k in keep if k["population"].startswith("adult") and k["class"] != "Covid")
    child = sum(1 for k in keep if k["population"].startswith("pediatric"))
    assert adult > 0 and child > 0
    assert m["adult_non_covid_n"] == adult and m["paediatric_n"] == child
    assert 0.0 <= m["adult_non_covid_specificity"] <= 1.0 and 0.0 <= m["paediatric_3class_accuracy"] <= 1.0
    # The text report states both figures with their counts.
    r = fedxray("evaluate", "--data", data, "--model", out)
    assert f"Adult non-COVID specificity (share not called COVID-19): {m['adult_non_covid_specificity']:.3f} " \
           f"({adult} images)" in r.stdout
    assert f"Paediatric 3-class accuracy (COVID-19 left out): {m['paediatric_3class_accuracy']:.3f} " \
           f"({child} images)" in r.stdout

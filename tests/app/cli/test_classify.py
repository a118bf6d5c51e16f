"""`fedxray classify`: JSON per image, heatmaps, per-image errors and the exit code."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from fl.classes import CLASSES


def test_classifies_real_png_and_dicom_and_writes_heatmaps(fedxray, tiny_model_dir, shared_data, tmp_path):
    png = sorted((shared_data / "cxr" / "Normal").glob("*.png"))[0]
    dcm = shared_data / "dicom" / "RG1_UNCR.dcm"
    out = tmp_path / "heat"
    r = fedxray("classify", png, dcm, "--model", tiny_model_dir, "--heatmap-dir", out, "--json")
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert [row["file"] for row in rows] == [str(png), str(dcm)]
    for row in rows:
        probs = row["probabilities"]
        assert list(probs) == list(CLASSES)
        assert abs(sum(probs.values()) - 1.0) < 1e-4
        assert row["predicted"] == max(probs, key=probs.get)
        assert row["model_version"] == "0.0.1-test"
        heat = Image.open(row["heatmap"])
        assert heat.mode == "RGB"
    # The overlay has the size of the original image (DICOM: 1955 rows x 1841 columns; PIL gives width first).
    assert Image.open(rows[1]["heatmap"]).size == (1841, 1955)
    assert Image.open(rows[0]["heatmap"]).size == Image.open(png).size


def test_unreadable_image_reports_and_the_rest_still_run(fedxray, tiny_model_dir, shared_data, tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("this is not an image")
    good = sorted((shared_data / "cxr" / "Covid").glob("*.png"))[0]
    r = fedxray("classify", bad, good, "--model", tiny_model_dir, "--json")
    assert r.returncode == 1
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert rows[0]["file"] == str(bad) and "error" in rows[0] and rows[0]["error"]
    assert rows[1]["file"] == str(good) and "probabilities" in rows[1]


def test_human_output_names_model_and_intended_use(fedxray, tiny_model_dir, shared_data):
    png = sorted((shared_data / "cxr" / "Pneumonia-Viral").glob("*.png"))[0]
    r = fedxray("classify", png, "--model", tiny_model_dir)
    assert r.returncode == 0, r.stderr
    assert png.name in r.stdout
    assert "DEMONSTRATION" in r.stderr and "not a diagnosis" in r.stderr


def test_corrupt_model_is_refused_with_a_clear_message(fedxray, tiny_model_dir, shared_data, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    w = broken / "weights.safetensors"
    w.write_bytes(w.read_bytes()[:1000])
    png = sorted((shared_data / "cxr" / "Normal").glob("*.png"))[0]
    r = fedxray("classify", png, "--model", broken)
    assert r.returncode == 2
    assert "does not match its model card" in r.stderr


def test_matches_the_library_on_the_same_file(fedxray, tiny_model_dir, shared_data):
    from fl.inference import Classifier

    png = sorted((shared_data / "cxr" / "Pneumonia-Bacterial").glob("*.png"))[0]
    r = fedxray("classify", png, "--model", tiny_model_dir, "--json")
    cli = json.loads(r.stdout)["probabilities"]
    lib = Classifier(tiny_model_dir).classify(png).probabilities
    np.testing.assert_allclose([cli[c] for c in CLASSES], lib, atol=1e-5)

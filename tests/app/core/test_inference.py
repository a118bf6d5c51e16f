"""The inference service with the real tiny network: lazy TensorFlow, classify, explain, clear errors."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from app.core.inference import InferenceService, ModelLoadError, ModelNotLoadedError
from fl.preprocess import ImageReadError, read_image


def test_importing_core_services_does_not_import_tensorflow():
    code = ("import sys\n"
            "import app.core.inference, app.core.history, app.core.models, app.core.guardrails, app.core.batch,"
            " app.core.report, app.core.labelled, app.core.settings, app.core.stats\n"
            "print(sorted(m for m in ('tensorflow', 'keras', 'PySide6') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_classify_before_load_is_a_clear_error(cxr):
    svc = InferenceService()
    assert not svc.loaded and svc.card is None
    with pytest.raises(ModelNotLoadedError, match="not loaded yet"):
        svc.classify(cxr["Normal"])


def test_classify_and_explain(loaded_service, cxr, tiny_model_dir):
    svc = loaded_service
    assert svc.loaded and svc.card.version == "0.0.1-test" and svc.model_dir == tiny_model_dir
    pred = svc.classify(cxr["Normal"])
    h, w = read_image(cxr["Normal"]).pixels.shape
    assert pred.probabilities.shape == (4,) and pred.probabilities.sum() == pytest.approx(1.0, abs=1e-5)
    assert pred.predicted == int(np.argmax(pred.probabilities)) == pred.class_index
    assert pred.heatmap.shape == (h, w) and 0.0 <= pred.heatmap.min() <= pred.heatmap.max() <= 1.0
    assert (pred.model_name, pred.model_version) == ("FedXray tiny test network", "0.0.1-test")
    other = (pred.predicted + 1) % 4
    heat = svc.explain(pred, other)
    assert heat.shape == (h, w)
    assert svc.explain(pred, pred.predicted) is pred.heatmap
    # the same answer from a Radiograph and from the path
    again = svc.classify(read_image(cxr["Normal"]), class_index=other)
    np.testing.assert_allclose(again.probabilities, pred.probabilities, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(again.heatmap, heat, atol=1e-5)


def test_unreadable_image(loaded_service, tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    with pytest.raises(ImageReadError, match="notes.png"):
        loaded_service.classify(bad)


def test_damaged_model_is_refused_and_previous_stays(tiny_model_dir, tmp_path, cxr):
    svc = InferenceService()
    svc.load(tiny_model_dir)
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    w = broken / "weights.safetensors"
    w.write_bytes(w.read_bytes()[:-100])             # truncated during a copy
    with pytest.raises(ModelLoadError, match="cannot be used.*does not match"):
        svc.load(broken)
    card = json.loads((broken / "card.json").read_text())
    with pytest.raises(ModelLoadError, match="no card.json|does not exist"):
        svc.load(tmp_path / "nowhere")
    assert svc.model_dir == tiny_model_dir and card["version"] == svc.card.version
    assert svc.classify(cxr["Covid"]).probabilities.sum() == pytest.approx(1.0, abs=1e-5)

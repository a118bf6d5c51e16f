"""The inference service with the real tiny network: lazy TensorFlow, classify, explain, clear errors."""

from __future__ import annotations

import json
import os
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


# ------------------------------------------------------------------ LiteRT, fallback, threads


def _copy_without_artefact(tiny_model_dir, dst):
    import dataclasses

    from fl.modelfile import CARD_FILE, INFERENCE_FILE, read_card

    shutil.copytree(tiny_model_dir, dst)
    (dst / INFERENCE_FILE).unlink()
    (dst / CARD_FILE).write_text(dataclasses.replace(read_card(dst), inference={}).to_json())
    return dst


def test_a_model_with_its_artefact_runs_on_litert_with_the_machines_cores(tiny_model_dir, cxr):
    from fl.litert import machine_threads

    svc = InferenceService()
    svc.load(tiny_model_dir)
    assert svc.engine == "litert" and svc.notice is None
    assert svc._get().threads == machine_threads()
    pred = svc.classify(cxr["Normal"])
    assert pred.heatmap.shape == read_image(cxr["Normal"]).pixels.shape


def test_threads_halve_while_federated_training_holds_its_marker(tiny_model_dir, tmp_path, cxr, monkeypatch):
    from app.core import training_signal
    from fl.litert import THREADS_ENV, machine_threads

    monkeypatch.delenv(THREADS_ENV, raising=False)
    svc = InferenceService(signal_folder=tmp_path)
    svc.load(tiny_model_dir)
    svc.classify(cxr["Covid"])
    assert svc._get().threads == machine_threads()
    with training_signal.hold(tmp_path) as marker:
        assert marker.read_text() == str(os.getpid())
        svc.classify(cxr["Covid"])
        assert svc._get().threads == max(1, machine_threads() // 2)
    assert not marker.exists()
    svc.classify(cxr["Covid"])
    assert svc._get().threads == machine_threads()
    # a marker left behind by a process that has died does not count
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    marker.write_text(dead)
    assert not training_signal.training_running(marker)


def test_a_tampered_artefact_is_refused_and_the_service_says_tensorflow_runs_it(tiny_model_dir, tmp_path, cxr):
    from fl.modelfile import INFERENCE_FILE

    model = tmp_path / "m"
    shutil.copytree(tiny_model_dir, model)
    artefact = model / INFERENCE_FILE
    data = bytearray(artefact.read_bytes())
    data[len(data) // 2] ^= 0x01
    artefact.write_bytes(bytes(data))
    svc = InferenceService()
    svc.load(model)
    assert svc.engine == "tensorflow"
    assert "runs with TensorFlow" in svc.notice and "does not match its record" in svc.notice
    assert svc.classify(cxr["Normal"]).probabilities.sum() == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ModelLoadError, match="does not match its record"):
        InferenceService(engine="litert").load(model)


def test_a_model_without_artefact_is_converted_once_in_the_background(tiny_model_dir, tmp_path, cxr):
    """The app's service: TensorFlow now, a background conversion into the cache, LiteRT from the next load."""
    from app.core.models import has_litert, litert_cache, start_conversion
    from fl.modelfile import read_card

    model = _copy_without_artefact(tiny_model_dir, tmp_path / "m")
    card = read_card(model)
    svc = InferenceService(convert_missing=True)
    svc.load(model)
    assert svc.engine == "tensorflow" and "being made in the background" in svc.notice
    assert svc.conversion is not None and svc.conversion.wait(timeout=600) == 0
    assert has_litert(model, card) and (litert_cache(card) / "model.tflite").is_file()
    assert start_conversion(model, card) is None  # once: nothing more to do for these weights
    again = InferenceService(convert_missing=True)
    again.load(model)
    assert again.engine == "litert" and again.conversion is None and again.notice is None
    np.testing.assert_allclose(again.classify(cxr["Covid"]).probabilities, svc.classify(cxr["Covid"]).probabilities,
                               atol=1e-5)


def test_the_app_service_never_imports_tensorflow_for_a_model_with_its_artefact(tiny_model_dir, cxr):
    code = ("import json, sys\nfrom app.core.inference import InferenceService\n"
            f"s = InferenceService(convert_missing=True)\ns.load({str(tiny_model_dir)!r})\n"
            f"p = s.classify({str(cxr['Normal'])!r})\ns.explain(p, (p.predicted + 1) % 4)\n"
            "print(json.dumps([s.engine, 'tensorflow' in sys.modules, 'keras' in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == ["litert", False, False]

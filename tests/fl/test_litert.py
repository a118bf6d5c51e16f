"""The LiteRT path against the TensorFlow path: same probabilities and heatmaps, artefacts checked like weights."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest

from fl.inference import Classifier
from fl.litert import class_activation_maps, inference_threads
from fl.modelfile import CARD_FILE, INFERENCE_FILE, ModelFileError, read_card
from fl.preprocess import preprocess, read_image

# Real images of every kind the app reads: PNG and JPEG of each class, DICOM uncompressed, JPEG 2000 and a CT slice.
CXR_EVERY = 45  # every 45th of the 673 images of ../shared/data/cxr (sorted): 15 images


def real_images(shared_data):
    from fl.imageio import find_images

    return find_images(shared_data / "cxr")[::CXR_EVERY] + find_images(shared_data / "dicom")


def first(shared_data, cls):
    return sorted((shared_data / "cxr" / cls).glob("*.png"))[0]


def correlation(a, b) -> float:
    return float(np.corrcoef(np.ravel(a).astype(np.float64), np.ravel(b).astype(np.float64))[0, 1])


def copy_model(src, dst, *, inference=None):
    """A copy of a model folder; `inference` replaces the card's artefact record ({} drops it)."""
    shutil.copytree(src, dst)
    if inference is not None:
        card = read_card(dst)
        (dst / CARD_FILE).write_text(dataclasses.replace(card, inference=inference).to_json())
        if not inference:
            (dst / INFERENCE_FILE).unlink()
    return dst


@pytest.fixture(scope="module")
def bundled():
    import resources

    model_dir = resources.default_model_dir()
    card = read_card(model_dir)
    assert card.inference, "the bundled model ships with its LiteRT artefact"
    return model_dir


@pytest.mark.slow
def test_bundled_litert_equals_tensorflow_on_real_images_and_dicom(bundled, shared_data):
    """The acceptance figures of issue 16 on the shipped artefact: probabilities within 1e-5, the same argmax,
    heatmap correlation >= 0.9999 over the original image (the full run over all 676 images is
    tests/benchmarks/litert_agreement.py)."""
    lite = Classifier(bundled)
    tf = Classifier(bundled, engine="tensorflow")
    assert (lite.engine, tf.engine) == ("litert", "tensorflow")
    files = real_images(shared_data)
    assert sum(p.suffix == ".dcm" for p in files) == 3
    for path in files:
        image = read_image(path)
        a, b = lite.classify(image), tf.classify(image)
        assert np.abs(a.probabilities - b.probabilities).max() <= 1e-5, path
        assert a.predicted == b.predicted == a.class_index == b.class_index, path
        assert a.heatmap.shape == b.heatmap.shape == image.pixels.shape
        assert correlation(a.heatmap, b.heatmap) >= 0.9999, path
        other = (a.predicted + 2) % 4  # another class's heatmap, too
        assert correlation(lite.classify(image, class_index=other).heatmap,
                           tf.classify(image, class_index=other).heatmap) >= 0.9999, path


def test_gradcam_of_the_logit_is_cam_on_real_images(tiny_model_dir, shared_data):
    """GradCAM (fl.gradcam.Explainer, gradient of the logit) equals CAM from the forward pass on the 7x7 grid."""
    import tensorflow as tf

    from fl.gradcam import Explainer
    from fl.litert_convert import _inference_function
    from fl.modelfile import load_model

    model, card = load_model(tiny_model_dir)
    explain = Explainer(model, Classifier(tiny_model_dir, engine="tensorflow").arch)
    forward = _inference_function(model, card.arch)
    batch = np.stack([preprocess(read_image(p), input_size=64, scaling="tf")[0]
                      for p in real_images(shared_data)[:6]])
    for cls in range(4):
        probs, cams, chosen = explain(batch, cls)
        p2, maps = (t.numpy() for t in forward(tf.constant(batch)))
        expected, _ = class_activation_maps(maps, np.full(len(batch), cls))  # ReLU(A . w_c), peak 1
        np.testing.assert_allclose(p2, probs, atol=1e-6)
        np.testing.assert_allclose(cams, expected, atol=1e-5)
        assert list(chosen) == [cls] * len(batch)


def test_tiny_litert_matches_tensorflow_and_never_imports_it(tiny_model_dir, shared_data, tmp_path):
    import subprocess
    import sys

    files = [str(p) for p in real_images(shared_data)]
    code = ("import json, sys\nfrom fl.inference import Classifier\n"
            f"c = Classifier({str(tiny_model_dir)!r}, engine='litert')\n"
            f"out = [c.classify(f).probabilities.tolist() for f in {files!r}]\n"
            "print(json.dumps({'tf': 'tensorflow' in sys.modules, 'keras': 'keras' in sys.modules, 'p': out}))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    got = json.loads(run.stdout)
    assert got["tf"] is False and got["keras"] is False
    tf = Classifier(tiny_model_dir, engine="tensorflow")
    for f, p in zip(files, got["p"], strict=True):
        np.testing.assert_allclose(p, tf.classify(f).probabilities, atol=1e-5)


def test_lossless_float16_storage_computes_exactly_the_float32_artefact(tmp_path, shared_data):
    """Weights saved in float16 are stored as float16 in the artefact where the converter did not change them;
    its outputs are bit-identical to an all-float32 artefact's, and it is smaller."""
    from fl.litert_convert import convert
    from fl.model import build_model, get_architecture
    from fl.modelfile import ModelCard, save_model

    arch = get_architecture("tiny")
    card = ModelCard(name="tiny float16", version="1", arch="tiny", input_size=64, scaling=arch.scaling)
    save_model(build_model("tiny", input_size=64), tmp_path / "m", card, dtype="float16")
    shipped = convert(tmp_path / "m")
    full = convert(tmp_path / "m", into=tmp_path / "f32", exact_float16=False)
    assert shipped.stat().st_size < full.stat().st_size
    assert read_card(tmp_path / "m").inference["storage"].startswith("float16 where")
    a = Classifier(tmp_path / "m", engine="litert")
    b = Classifier(copy_model(tmp_path / "m", tmp_path / "bare", inference={}), engine="litert",
                   artefact_dir=tmp_path / "f32")
    assert a.artefact == shipped and b.artefact == full
    for path in real_images(shared_data)[:5]:
        x, y = a.classify(path), b.classify(path)
        assert np.array_equal(x.probabilities, y.probabilities) and np.array_equal(x.heatmap, y.heatmap)


@pytest.mark.parametrize("damage", ["flipped byte", "truncated", "missing", "other weights"])
def test_damaged_artefact_is_refused_and_tensorflow_takes_over(tiny_model_dir, tmp_path, shared_data, damage):
    model = copy_model(tiny_model_dir, tmp_path / "m")
    artefact = model / INFERENCE_FILE
    data = artefact.read_bytes()
    if damage == "flipped byte":
        artefact.write_bytes(data[:5000] + bytes([data[5000] ^ 0xFF]) + data[5001:])
        expected = "does not match its record"
    elif damage == "truncated":
        artefact.write_bytes(data[: len(data) // 2])
        expected = "truncated or altered"
    elif damage == "missing":
        artefact.unlink()
        expected = "is missing"
    else:
        card = read_card(model)
        record = dict(card.inference, weights_sha256="0" * 64)
        (model / CARD_FILE).write_text(dataclasses.replace(card, inference=record).to_json())
        expected = "made from other weights"
    with pytest.raises(ModelFileError, match=expected):
        Classifier(model, engine="litert")
    fallback = Classifier(model)
    assert fallback.engine == "tensorflow" and fallback.artefact is None
    assert "runs with TensorFlow" in fallback.notice and expected in fallback.notice
    normal = first(shared_data, "Normal")
    reference = Classifier(tiny_model_dir, engine="tensorflow").classify(normal).probabilities
    np.testing.assert_allclose(fallback.classify(normal).probabilities, reference, atol=1e-6)


def test_model_without_artefact_runs_with_tensorflow(tiny_model_dir, tmp_path, shared_data):
    model = copy_model(tiny_model_dir, tmp_path / "m", inference={})
    c = Classifier(model)
    covid = first(shared_data, "Covid")
    assert c.engine == "tensorflow" and "has no LiteRT file yet" in c.notice
    assert c.classify(covid).heatmap.shape == read_image(covid).pixels.shape


def test_weights_are_checked_on_the_litert_path_too(tiny_model_dir, tmp_path):
    model = copy_model(tiny_model_dir, tmp_path / "m")
    w = model / "weights.safetensors"
    w.write_bytes(w.read_bytes()[:-10])
    with pytest.raises(ModelFileError, match="does not match its model card"):
        Classifier(model)


def test_threads_follow_the_machine_the_setting_and_training(monkeypatch, tiny_model_dir, shared_data):
    import os

    from fl.litert import THREADS_ENV, machine_threads

    monkeypatch.delenv(THREADS_ENV, raising=False)
    cores = len(os.sched_getaffinity(0))
    assert machine_threads() == cores == inference_threads()
    assert inference_threads(training=True) == max(1, cores // 2)
    monkeypatch.setenv(THREADS_ENV, "3")
    assert inference_threads() == inference_threads(training=True) == 3
    monkeypatch.setenv(THREADS_ENV, "nonsense")
    assert inference_threads() == cores
    c = Classifier(tiny_model_dir, threads=1)
    image = read_image(first(shared_data, "Normal"))
    before = c.classify(image)
    c.set_threads(2)
    after = c.classify(image)
    assert (c.threads, c.engine) == (2, "litert")
    np.testing.assert_allclose(after.probabilities, before.probabilities, atol=1e-6)


def _litert_against_reference(model_dir, shared_data, classes_of, atol):
    """LiteRT's class activation maps (fl.litert, no TensorFlow in its path) against the GradCAM reference
    written out in tests/fl/test_gradcam.py (tf.GradientTape on the named layer, gradient of the logit)."""
    from fl.litert import LiteRTExplainer
    from fl.model import get_architecture
    from fl.modelfile import load_model
    from tests.fl.test_gradcam import real_batch, reference_gradcam

    model, card = load_model(model_dir)
    layer = get_architecture(card.arch).gradcam_layer
    lite = LiteRTExplainer(model_dir / INFERENCE_FILE, threads=1)
    batch = real_batch(shared_data, int(card.input_size))
    probs = np.asarray(model(batch, training=False))
    for i, image in enumerate(batch):
        for cls in classes_of(probs[i]):
            p, cams, chosen = lite(image, class_index=cls)
            expected, _ = reference_gradcam(model, layer, image, cls)
            assert int(chosen[0]) == cls
            np.testing.assert_allclose(p[0], probs[i], atol=1e-5)
            np.testing.assert_allclose(cams[0], expected, atol=atol, err_msg=f"image {i}, class {cls}")


def test_tiny_litert_cam_equals_the_gradcam_reference(tiny_model_dir, shared_data):
    _litert_against_reference(tiny_model_dir, shared_data, lambda p: range(4), atol=1e-5)


@pytest.mark.slow
def test_bundled_litert_cam_equals_the_gradcam_reference(bundled, shared_data):
    _litert_against_reference(bundled, shared_data, lambda p: (int(p.argmax()), (int(p.argmax()) + 2) % 4),
                              atol=1e-4)

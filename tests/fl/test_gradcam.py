"""GradCAM: computed with the prediction, tracks the evidence, and fails the weight-randomisation check."""

from __future__ import annotations

import numpy as np
import pytest

from fl.gradcam import OPAQUE_FROM, TRANSPARENT_BELOW, Explainer, attention_alpha, colorize, legend, overlay
from fl.model import build_model, get_architecture

SIZE = 64
OBJ = 14  # side of the object that carries the class


def _shape(kind: int) -> np.ndarray:
    """Four object kinds, one per class: filled square, ring, horizontal bars, vertical bars."""
    o = np.zeros((OBJ, OBJ), np.float32)
    if kind == 0:
        o[:] = 1.0
    elif kind == 1:
        o[:] = 1.0
        o[3:-3, 3:-3] = 0.0
    elif kind == 2:
        o[::3, :] = 1.0
    else:
        o[:, ::3] = 1.0
    return o


def make_images(n: int, seed: int):
    """Noise images with one object at a random place; its kind is the label, its box the evidence."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.0, 0.35, (n, SIZE, SIZE)).astype(np.float32)
    y = rng.integers(0, 4, n)
    boxes = []
    for i in range(n):
        r, c = rng.integers(0, SIZE - OBJ, 2)
        x[i, r : r + OBJ, c : c + OBJ] = np.maximum(x[i, r : r + OBJ, c : c + OBJ], _shape(y[i]))
        boxes.append((r, c))
    x = np.repeat(x[..., None], 3, axis=3) * 2.0 - 1.0
    return x, y, boxes


@pytest.fixture(scope="module")
def trained():
    import keras

    keras.utils.set_random_seed(0)
    model = build_model("tiny", input_size=SIZE, dropout=0.0)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    x, y, _ = make_images(1200, seed=1)
    model.fit(x, y, epochs=14, batch_size=32, verbose=0)
    return model


def _upsample(cam: np.ndarray) -> np.ndarray:
    k = SIZE // cam.shape[0]
    return np.kron(cam, np.ones((k, k), np.float32))


def test_returns_probabilities_and_maps_in_one_call(trained):
    x, _, _ = make_images(4, seed=2)
    probs, cams, chosen = Explainer(trained, get_architecture("tiny"))(x)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(chosen, probs.argmax(axis=1))
    assert cams.shape == (4, 8, 8) and cams.min() >= 0.0 and np.allclose(cams.max(axis=(1, 2)), 1.0)
    np.testing.assert_allclose(probs, np.asarray(trained(x, training=False)), atol=1e-5)


def test_heatmap_peaks_on_the_object_that_carries_the_class(trained):
    x, y, boxes = make_images(60, seed=3)
    probs, cams, _ = Explainer(trained, get_architecture("tiny"))(x)
    assert (probs.argmax(axis=1) == y).mean() > 0.9, "the small network did not learn the synthetic task"
    hits = 0
    for cam, (r, c) in zip(cams, boxes, strict=True):
        pr, pc = np.unravel_index(np.argmax(_upsample(cam)), (SIZE, SIZE))
        hits += (r - 8 <= pr < r + OBJ + 8) and (c - 8 <= pc < c + OBJ + 8)  # within one feature cell
    assert hits / len(boxes) >= 0.85


def test_randomised_weights_change_the_map(trained):
    # Adebayo et al. 2018: a faithful explanation must depend on the learned weights.
    x, _, _ = make_images(20, seed=4)
    _, trained_maps, _ = Explainer(trained, get_architecture("tiny"))(x, class_index=0)
    random_model = build_model("tiny", input_size=SIZE, dropout=0.0)
    _, random_maps, _ = Explainer(random_model, get_architecture("tiny"))(x, class_index=0)
    corr = [np.corrcoef(a.ravel(), b.ravel())[0, 1] for a, b in zip(trained_maps, random_maps, strict=True)]
    assert np.nanmean(corr) < 0.5


def test_requested_class_is_explained(trained):
    x, _, _ = make_images(3, seed=5)
    explain = Explainer(trained, get_architecture("tiny"))
    _, _, chosen = explain(x, class_index=2)
    np.testing.assert_array_equal(chosen, [2, 2, 2])
    _, _, chosen = explain(x, class_index=[0, 1, 3])
    np.testing.assert_array_equal(chosen, [0, 1, 3])


def test_randomising_only_the_top_layer_changes_the_map(trained):
    # Adebayo et al. 2018, cascading randomisation from the top: re-initialise the class layer alone.
    import keras

    x, _, _ = make_images(20, seed=6)
    arch = get_architecture("tiny")
    _, before, _ = Explainer(trained, arch)(x, class_index=1)
    clone = keras.models.clone_model(trained)
    clone.set_weights(trained.get_weights())
    logits = clone.get_layer("logits")
    rng = np.random.default_rng(0)
    logits.set_weights([rng.normal(0, 0.05, w.shape).astype(np.float32) for w in logits.get_weights()])
    _, after, _ = Explainer(clone, arch)(x, class_index=1)
    corr = [np.corrcoef(a.ravel(), b.ravel())[0, 1] for a, b in zip(before, after, strict=True)]
    assert np.nanmean(corr) < 0.5


def _luminance(rgb: np.ndarray) -> np.ndarray:
    c = rgb.astype(np.float64) / 255.0
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    return lin @ np.array([0.2126, 0.7152, 0.0722])


def test_colour_map_is_inferno_with_steadily_rising_lightness_and_legend_matches():
    lut = colorize(np.linspace(0, 1, 256)[None])[0]
    # Published inferno values (matplotlib _cm_listed) at 0, 0.5 and 1; the polynomial fit keeps within 5/255.
    np.testing.assert_allclose(lut[0], np.array([0.001462, 0.000466, 0.013866]) * 255, atol=5)
    np.testing.assert_allclose(lut[128], np.array([0.735683, 0.215906, 0.330245]) * 255, atol=5)
    np.testing.assert_allclose(lut[255], np.array([0.988362, 0.998364, 0.644924]) * 255, atol=5)
    assert np.all(np.diff(_luminance(lut)) > 0), "a perceptual colour map never gets darker as attention rises"
    bar = legend(256, 4)
    np.testing.assert_array_equal(bar[0], lut)


def test_low_attention_is_transparent_and_high_attention_opaque():
    a = attention_alpha(np.array([0.0, TRANSPARENT_BELOW, (TRANSPARENT_BELOW + OPAQUE_FROM) / 2, OPAQUE_FROM, 1.0]))
    np.testing.assert_allclose(a, [0.0, 0.0, 0.5, 1.0, 1.0], atol=1e-6)
    assert np.all(np.diff(attention_alpha(np.linspace(0, 1, 101))) >= 0)


def test_overlay_leaves_cold_regions_untouched_and_tints_hot_ones():
    gray = np.full((4, 4), 0.5, np.float32)
    heat = np.zeros((4, 4), np.float32)
    heat[0, 0] = 1.0
    out = overlay(gray, heat, alpha=0.5)
    assert out.shape == (4, 4, 3)
    np.testing.assert_array_equal(out[3, 3], [128, 128, 128])
    expected = np.round(0.5 * 127.5 + 0.5 * colorize(np.array([[1.0]]))[0, 0].astype(float))
    np.testing.assert_allclose(out[0, 0], expected, atol=1)
    faint = heat.copy()
    faint[0, 0] = TRANSPARENT_BELOW * 0.9  # low attention does not tint the image at all
    np.testing.assert_array_equal(overlay(gray, faint, alpha=1.0)[0, 0], [128, 128, 128])
    with pytest.raises(ValueError):
        overlay(gray, np.zeros((2, 2)))

"""The open case as plain data: a result rebuilt from the history, exports and overlays at the working size."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from app.core import case as core
from app.core.windowing import Display, preset_window
from fl.classes import CLASSES
from fl.preprocess import read_image
from fl.radiograph import WORKING_MAX_SIDE, working_copy
from tests.app.core.conftest import make_prediction

P = [0.1, 0.2, 0.6, 0.1]


@pytest.fixture
def store():
    from app.core.history import HistoryStore

    with HistoryStore() as s:
        yield s


def test_a_stored_case_rebuilds_the_result_it_was_shown_with(store, cxr):
    pred = make_prediction(cxr["Covid"], P, model_name="M", model_version="2.0")
    stored = store.set_feedback(store.add(pred, file_path=cxr["Covid"]).id, "Covid", "checked")

    class Card:                                        # the loaded model's card: name, version, date, demo
        name, version, created, demo = "M", "2.0", "2026-11-01", True

    result = core.result_from_case(stored, Card)
    assert result.predicted == CLASSES.index("Pneumonia-Bacterial") and result.from_history
    np.testing.assert_allclose(result.probabilities, P)
    assert (result.model_name, result.model_version, result.model_date, result.demo) == ("M", "2.0", "2026-11-01",
                                                                                          True)
    assert (result.case_id, result.feedback_label, result.feedback_note) == (stored.id, "Covid", "checked")
    Card.version = "3.0"                               # another model is loaded: its date and flag are not shown
    other = core.result_from_case(stored, Card)
    assert (other.model_date, other.demo, other.model_version) == ("", False, "2.0")


def test_reopen_without_a_model_gives_the_stored_result_and_no_heatmap(store, cxr):
    stored = store.add(make_prediction(cxr["Normal"], P), file_path=cxr["Normal"])
    r = core.reopen(None, store, stored.id)
    assert r.case.id == stored.id and r.prediction is None and r.heat is None
    assert r.radiograph.pixel_sha256() == stored.pixel_sha256 and r.path == cxr["Normal"].resolve()
    assert r.result.predicted == 2 and r.display == Display()


def test_the_caption_names_file_finding_heatmap_and_model():
    result = core.Result(probabilities=np.array(P), predicted=2, model_name="M", model_version="2.0")
    assert core.caption("a.png", result, None) == "a.png — top finding Bacterial pneumonia (60.0 %) — model M 2.0"
    assert core.caption("a.png", result, 0) == ("a.png — top finding Bacterial pneumonia (60.0 %); heatmap: "
                                                "COVID-19 — model M 2.0")


def test_the_heat_layer_alpha_is_the_overlay_weight():
    heat = np.linspace(0, 1, 64 * 48, dtype=np.float32).reshape(64, 48)
    rgba = core.heat_rgba(heat)
    from fl.gradcam import OPAQUE_FROM, TRANSPARENT_BELOW

    # The overlay's weight, written out: transparent below TRANSPARENT_BELOW, a smoothstep up to OPAQUE_FROM.
    t = np.clip((heat - TRANSPARENT_BELOW) / (OPAQUE_FROM - TRANSPARENT_BELOW), 0, 1)
    np.testing.assert_array_equal(rgba[..., 3], (t * t * (3 - 2 * t) * 255 + 0.5).astype(np.uint8))
    assert (rgba[..., 3][heat < TRANSPARENT_BELOW] == 0).all() and rgba[..., 3].max() == 255
    assert core.heat_rgba(np.zeros((3000, 1500), np.float32), max_side=1024).shape == (1000, 500, 4)


def test_a_large_image_is_exported_at_the_working_size(tmp_path):
    """A 4300 x 3500 radiograph (a real detector's size): the PNG overlay is at most WORKING_MAX_SIDE pixels wide
    and high, drawn with the window on screen; the heatmap made on the working copy fits it."""
    rng = np.random.default_rng(0)
    big = rng.random((4300, 3500), dtype=np.float32)
    Image.fromarray((big * 65535).astype(np.uint16)).save(tmp_path / "big.png")
    rad = read_image(tmp_path / "big.png")
    work = working_copy(rad)
    assert max(work.pixels.shape) == WORKING_MAX_SIDE and work.pixel_sha256() == rad.pixel_sha256()
    heat = np.ones(work.pixels.shape, np.float32)
    out = core.export_png(tmp_path / "o.png", radiograph=rad, display=Display(invert=True), heat=heat, alpha=0.0,
                          caption="c")
    with Image.open(out) as img:
        assert img.width == work.width and img.height > work.height       # the caption strip below it
        top = np.asarray(img.convert("L"))[: work.height]
    np.testing.assert_allclose(top / 255.0, 1.0 - work.pixels, atol=1 / 255 + 1e-6)   # inverted, no heat (alpha 0)


@pytest.mark.parametrize("name", ["Lung", "Mediastinum"])
def test_a_dicom_export_uses_the_window_on_screen(tmp_path, dicom_dir, name):
    rad = read_image(dicom_dir / "RG1_UNCR.dcm")
    window = preset_window(name, rad)
    gray = core.export_gray(rad, Display(window=window))
    from fl.preprocess import apply_window

    np.testing.assert_array_equal(gray, apply_window(rad.raw, *window, invert=True))

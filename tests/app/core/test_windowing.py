"""Window presets and rendering as plain data (no Qt): the values a radiologist's presets stand for."""

from __future__ import annotations

import numpy as np

from app.core.windowing import PRESETS, Display, current_preset, initial_display, preset_window, render
from fl.preprocess import apply_window, read_image


def test_presets_follow_the_value_range_and_the_file_window(dicom_dir):
    rad = read_image(dicom_dir / "RG1_UNCR.dcm")                  # MONOCHROME1: air is the high end
    sample = rad.raw[:: max(1, rad.raw.shape[0] // 256), :: max(1, rad.raw.shape[1] // 256)]
    lo, hi = (float(v) for v in np.percentile(sample, [1.0, 99.9]))
    span = hi - lo
    assert preset_window("File default", rad) == rad.window
    assert np.allclose(preset_window("Lung", rad), (hi - 0.35 * span, 0.8 * span))
    assert np.allclose(preset_window("Mediastinum", rad), (lo + 0.3 * span, 0.35 * span))
    ct = read_image(dicom_dir / "CT_small.dcm")
    assert preset_window("Lung", ct) == (-600.0, 1500.0) and preset_window("Mediastinum", ct) == (40.0, 400.0)


def test_the_preset_on_screen_is_named_and_a_dragged_window_is_none(dicom_dir, cxr):
    rad = read_image(dicom_dir / "RG1_UNCR.dcm")
    display = initial_display(rad)
    assert display == Display(window=tuple(rad.window)) and current_preset(rad, display) == "File default"
    for name in PRESETS:
        assert current_preset(rad, display.with_window(*preset_window(name, rad))) == name
    c, w = rad.window
    assert current_preset(rad, display.with_window(c + 37.0, w * 1.3)) is None
    assert current_preset(read_image(cxr["Normal"]), Display()) is None          # a PNG has no window


def test_render_applies_the_window_and_the_inversion(dicom_dir):
    rad = read_image(dicom_dir / "RG1_UNCR.dcm")
    lung = preset_window("Lung", rad)
    np.testing.assert_array_equal(render(rad, Display(window=lung)), apply_window(rad.raw, *lung, invert=True))
    np.testing.assert_allclose(render(rad, Display(invert=True)), 1.0 - rad.pixels)

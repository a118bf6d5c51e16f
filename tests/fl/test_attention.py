"""Where a heatmap's attention falls: the border band and the background outside the body, on real radiographs."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from fl.attention import BORDER_FRACTION, attention_shares, border_mask, otsu, outside_body_mask
from fl.preprocess import read_image

CLEAN = "Pneumonia-Bacterial/kermany_train_person1201_bacteria_3151.png"   # full frame, no text
LABELLED = "Covid/cohen_p205_covid-19-pneumonia-progression-and-regression-day20.png"  # "MOBILE AP ERECT", "L"


def _blob(shape, centre, sigma):
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    return np.exp(-((yy - centre[0]) ** 2 + (xx - centre[1]) ** 2) / (2.0 * sigma**2)).astype(np.float32)


def test_border_mask_is_the_band_along_each_edge():
    m = border_mask((100, 200), 0.1)
    assert m[:10].all() and m[-10:].all() and m[:, :20].all() and m[:, -20:].all()
    assert not m[10:90, 20:180].any()
    assert m.sum() == 100 * 200 - 80 * 160


def test_otsu_splits_two_levels():
    values = np.concatenate([np.full(500, 0.2), np.full(500, 0.8)])
    assert 0.2 <= otsu(values) < 0.8


def test_outside_body_is_the_dark_background_reaching_the_edge_not_the_dark_lungs():
    # A bright "body" with two dark "lungs" inside, on a black background.
    img = np.zeros((200, 160), np.float32)
    img[20:190, 30:130] = 0.7
    img[50:150, 45:75] = 0.15
    img[50:150, 85:115] = 0.15
    out = outside_body_mask(img)
    assert out[5, 5] and out[100, 10] and out[195, 150]
    assert not out[100, 60] and not out[100, 100]          # the lungs are inside the body
    assert not out[100, 80]                                 # the mediastinum


def test_shares_of_a_map_on_a_label_and_of_a_central_map(shared_data):
    rad = read_image(shared_data / "cxr" / CLEAN)
    px = rad.pixels
    h, w = px.shape
    # Burn a label into the top-left corner, as case-report figures and portable films carry.
    im = Image.fromarray((px * 255).astype(np.uint8))
    ImageDraw.Draw(im).text((4, 3), "PORTABLE", fill=255, font=ImageFont.load_default(size=max(10, h // 18)))
    labelled = np.asarray(im, np.float32) / 255.0
    on_label = _blob((h, w), (int(0.04 * h), int(0.12 * w)), sigma=0.05 * w)
    central = _blob((h, w), (h // 2, w // 2), sigma=0.12 * w)
    s_label = attention_shares(labelled, on_label)
    s_central = attention_shares(labelled, central)
    # Expected from the masks directly, computed here independently of attention_shares.
    band = np.zeros((h, w), bool)
    by, bx = round(h * BORDER_FRACTION), round(w * BORDER_FRACTION)
    band[:by], band[-by:], band[:, :bx], band[:, -bx:] = True, True, True, True
    assert s_label.border == pytest.approx(on_label[band].sum() / on_label.sum(), rel=1e-5)
    assert s_label.off_target > 0.6 and s_central.off_target < 0.1
    assert 0.0 <= s_central.border <= s_central.off_target <= 1.0


def test_a_flat_map_measures_the_area_and_an_empty_map_nothing(shared_data):
    px = read_image(shared_data / "cxr" / LABELLED).pixels
    flat = attention_shares(px, np.ones_like(px))
    assert flat.border == pytest.approx(border_mask(px.shape).mean(), abs=1e-6)
    assert attention_shares(px, np.zeros_like(px)).off_target == 0.0
    with pytest.raises(ValueError):
        attention_shares(px, np.ones((3, 3)))

"""Tests for fl.augment's source-cue augmentations: each does what it says on a real chest radiograph."""

from __future__ import annotations

import numpy as np
import pytest

from fl import augment as A

SIZE = 128


@pytest.fixture(scope="module")
def image(shared_data) -> np.ndarray:
    """A real paediatric radiograph, letterboxed to SIZE px, in [0, 1]."""
    from fl.preprocess import letterbox, read_image

    path = sorted((shared_data / "cxr" / "Normal").glob("kermany_*.png"))[0]
    return letterbox(read_image(path).pixels, SIZE)[0]


def high_frequency_energy(a: np.ndarray) -> float:
    """Mean squared discrete Laplacian (4-neighbour) over the interior: the fine-detail energy."""
    lap = a[1:-1, :-2] + a[1:-1, 2:] + a[:-2, 1:-1] + a[2:, 1:-1] - 4 * a[1:-1, 1:-1]
    return float(np.mean(lap.astype(np.float64) ** 2))


def changed_box(before: np.ndarray, after: np.ndarray, tol: float = 1e-6):
    rows, cols = np.nonzero(np.abs(after - before) > tol)
    return rows.min(), rows.max(), cols.min(), cols.max(), rows.size


def test_burnt_in_text_adds_bright_pixels_in_a_small_region(image):
    out = A.burn_in_text(image, "R 2020-03-14", top=8, left=6, height=12, value=1.0)
    assert out.shape == image.shape and out.dtype == np.float32
    r0, r1, c0, c1, n = changed_box(image, out)
    # Only the text line changed: rows within the letters' height (plus descenders) below `top`, from `left` on.
    assert r0 >= 8 and r1 < 8 + 2 * 12 and c0 >= 6
    assert n < 0.1 * SIZE * SIZE
    # Brighter pixels there: the text is white.
    assert (out >= image - 1e-6).all()
    assert int((out > 0.99).sum()) > int((image > 0.99).sum()) + 20


def test_single_letter_marker_and_dark_text(image):
    letter = A.burn_in_text(image, "L", top=90, left=100, height=16, value=1.0)
    r0, r1, c0, c1, n = changed_box(image, letter)
    assert r0 >= 90 and c0 >= 100 and r1 < 90 + 32 and c1 < 100 + 16 and n > 10
    dark = A.burn_in_text(image, "L", top=90, left=100, height=16, value=0.0)
    assert (dark <= image + 1e-6).all() and (dark < image - 0.1).sum() > 10


def test_arrow_is_drawn_next_to_its_tip(image):
    out = A.burn_in_arrow(image, tip=(64.0, 64.0), length=20, angle=0.0, width=2, value=1.0)
    r0, r1, c0, c1, n = changed_box(image, out)
    # Pointing from the right (angle 0) to the tip: columns from the tip to the tail, rows near the tip's row.
    assert c0 >= 63 and c1 <= 64 + 20 + 1 and r0 >= 64 - 10 and r1 <= 64 + 10 and n > 20
    assert out[64, 64:80].mean() > 0.95


def test_pad_keeps_the_size_and_frames_the_shrunk_image(image):
    out = A.pad(image, scale=0.75, top=10, left=20, fill=0.5)
    assert out.shape == image.shape
    inner = round(SIZE * 0.75)
    frame = np.ones_like(out, bool)
    frame[10:10 + inner, 20:20 + inner] = False
    np.testing.assert_array_equal(out[frame], 0.5)
    # The content is the whole image, smaller: its mean is close to the original's.
    assert abs(out[10:10 + inner, 20:20 + inner].mean() - image.mean()) < 0.02


def test_crop_keeps_the_size_and_zooms_into_the_window(image):
    out = A.crop(image, top=16, left=8, side=96)
    assert out.shape == image.shape
    # Every 4/3-scaled pixel of the window: the crop's centre equals the window's centre pixel area.
    window = image[16:112, 8:104]
    assert abs(out.mean() - window.mean()) < 0.02
    assert abs(float(out[64, 64]) - float(window[48, 48])) < 0.1


def test_border_paints_bands_on_the_chosen_sides_only(image):
    out = A.border(image, widths=(5, 0, 7, 3), fill=1.0)
    assert out.shape == image.shape
    assert (out[:5] == 1.0).all() and (out[:, :7] == 1.0).all() and (out[:, -3:] == 1.0).all()
    np.testing.assert_array_equal(out[5:, 7:-3], image[5:, 7:-3])


def test_resample_and_blur_lower_high_frequency_energy_and_keep_the_mean(image):
    e0 = high_frequency_energy(image)
    for out in (A.resample(image, factor=3.0), A.resample(image, factor=3.0, nearest=True),
                A.blur(image, sigma=1.5)):  # fmt: skip
        assert out.shape == image.shape
        assert abs(out.mean() - image.mean()) < 0.01
    assert high_frequency_energy(A.resample(image, factor=3.0)) < 0.5 * e0
    assert high_frequency_energy(A.blur(image, sigma=1.5)) < 0.3 * e0
    assert high_frequency_energy(A.blur(image, sigma=2.5)) < high_frequency_energy(A.blur(image, sigma=1.0))


def test_blur_is_a_normalised_gaussian():
    impulse = np.zeros((33, 33), np.float32)
    impulse[16, 16] = 1.0
    out = A.blur(impulse, sigma=2.0)
    assert out.sum() == pytest.approx(1.0, abs=1e-5)
    # Separable Gaussian: value at distance d along an axis over the centre value is exp(-d² / (2 sigma²)).
    assert out[16, 19] / out[16, 16] == pytest.approx(np.exp(-9 / 8), rel=1e-4)
    assert out[13, 16] / out[16, 16] == pytest.approx(np.exp(-9 / 8), rel=1e-4)


def test_sharpen_raises_high_frequency_energy(image):
    out = A.sharpen(image, sigma=1.0, amount=1.0)
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert high_frequency_energy(out) > 1.5 * high_frequency_energy(image)


def test_jpeg_changes_pixels_but_keeps_the_mean(image):
    out = A.jpeg(image, quality=20)
    assert out.shape == image.shape and out.dtype == np.float32
    assert np.abs(out - image).mean() > 0.003
    assert abs(out.mean() - image.mean()) < 0.01
    # Lower quality, larger error.
    assert np.abs(A.jpeg(image, quality=20) - image).mean() > np.abs(A.jpeg(image, quality=90) - image).mean()


@pytest.mark.parametrize("g", [0.6, 1.6])
def test_gamma_curve_is_monotonic_keeps_the_ends_and_moves_the_mean(image, g):
    ramp = np.linspace(0, 1, 256, dtype=np.float32).reshape(16, 16)
    out = A.gamma(ramp, g=g).ravel()
    assert (np.diff(out) >= 0).all() and out[0] == 0.0 and out[-1] == pytest.approx(1.0)
    np.testing.assert_allclose(out, ramp.ravel() ** g, rtol=1e-5, atol=1e-7)
    real = A.gamma(image, g=g)
    assert (real.mean() > image.mean()) == (g < 1)
    # The order of the real image's pixels is kept.
    order = np.argsort(image, axis=None, kind="stable")
    assert (np.diff(real.ravel()[order]) >= -1e-7).all()


def test_contrast_curve_is_monotonic_s_shaped_and_keeps_the_ends(image):
    ramp = np.linspace(0, 1, 101, dtype=np.float32).reshape(1, 101)
    ramp = np.repeat(ramp, 101, axis=0)[:, :101]
    out = A.contrast_curve(ramp, gain=6.0, midpoint=0.5)[0]
    assert (np.diff(out) > 0).all() and out[0] == pytest.approx(0.0, abs=1e-6) and out[-1] == pytest.approx(1.0)
    # S-shaped: darker below the midpoint, brighter above.
    assert out[25] < 0.25 and out[75] > 0.75 and out[50] == pytest.approx(0.5, abs=1e-6)
    mid = (image > 0.2) & (image < 0.8)
    assert A.contrast_curve(image, gain=6.0, midpoint=0.5)[mid].std() > image[mid].std()


def test_random_source_cues_are_deterministic_under_a_seed_and_keep_size_and_range(image):
    outs = [A.random_source_cues(image, np.random.default_rng(s)) for s in (3, 3, 4)]
    np.testing.assert_array_equal(outs[0], outs[1])
    assert np.abs(outs[0] - outs[2]).mean() > 1e-4
    for s in range(20):
        out = A.random_source_cues(image, np.random.default_rng(s))
        assert out.shape == image.shape and out.dtype == np.float32
        assert out.min() >= 0.0 and out.max() <= 1.0
    # Over 20 seeds most images change (each step has its own probability).
    changed = [np.abs(A.random_source_cues(image, np.random.default_rng(s)) - image).max() > 0.05 for s in range(20)]
    assert sum(changed) >= 15


def test_random_marks_add_bright_or_dark_marks(image):
    for s in range(5):
        out = A.random_marks(image, np.random.default_rng(s))
        n = int((np.abs(out - image) > 0.2).sum())
        assert 5 < n < 0.25 * SIZE * SIZE


def test_source_cue_batch_is_seeded_per_batch(image):
    x = np.stack([image, image[::-1].copy(), image[:, ::-1].copy()])[..., None]
    a = A.source_cue_batch(x, [1, 2])
    np.testing.assert_array_equal(a, A.source_cue_batch(x, [1, 2]))
    assert np.abs(a - A.source_cue_batch(x, [1, 3])).mean() > 1e-4
    assert a.shape == x.shape and a.dtype == np.float32
    # Negative seeds (tf.data.Dataset.random draws int64) are accepted.
    assert A.source_cue_batch(x, [-5, 7]).shape == x.shape


def test_a_colour_or_non_square_image_is_refused():
    with pytest.raises(ValueError, match="square 2-D"):
        A.blur(np.zeros((8, 9), np.float32), sigma=1.0)

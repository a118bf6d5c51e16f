"""Letterbox geometry, unletterbox, model-input scaling and the end-to-end preprocessing on real X-rays."""

import sys

import numpy as np
import pytest
from PIL import Image

import fl.preprocess as pp
from fl.preprocess import (
    Letterbox,
    Radiograph,
    letterbox,
    load_for_model,
    preprocess,
    read_image,
    to_model_input,
    unletterbox,
)
from tests.conftest import require_shared_data


def test_public_names_are_importable_from_fl_preprocess():
    for name in ("ImageReadError", "Radiograph", "read_image", "apply_window", "Letterbox", "letterbox",
                 "to_model_input", "preprocess", "load_for_model", "unletterbox"):
        assert hasattr(pp, name), name


def test_preprocess_does_not_import_tensorflow():
    # The desktop app imports this module before TensorFlow is loaded.
    import subprocess

    code = "import sys, fl.preprocess; sys.exit(1 if 'tensorflow' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 0


# ---------------------------------------------------------------- letterbox

def test_letterbox_wide_image_is_padded_top_and_bottom():
    ones = np.ones((100, 200), np.float32)
    square, box = letterbox(ones, 50)
    # By hand: scale 50/200 = 0.25 -> content 25 x 50, (50 - 25) // 2 = 12 rows above, 13 below.
    assert box == Letterbox(scale=0.25, pad_top=12, pad_left=0, height=100, width=200, size=50)
    assert (box.content_height, box.content_width) == (25, 50)
    assert square.shape == (50, 50) and square.dtype == np.float32
    np.testing.assert_allclose(square[12:37], 1.0, atol=1e-6)
    assert not square[:12].any() and not square[37:].any()


def test_letterbox_tall_image_is_padded_left_and_right():
    ones = np.ones((300, 100), np.float32)
    square, box = letterbox(ones, 60)
    # scale 60/300 = 0.2 -> content 60 x 20, 20 columns padding on each side.
    assert (box.pad_top, box.pad_left, box.content_height, box.content_width) == (0, 20, 60, 20)
    np.testing.assert_allclose(square[:, 20:40], 1.0, atol=1e-6)
    assert not square[:, :20].any() and not square[:, 40:].any()


def test_letterbox_same_size_square_is_unchanged():
    a = np.random.default_rng(0).random((64, 64), dtype=np.float32)
    square, box = letterbox(a, 64)
    assert box.scale == 1.0 and box.pad_top == box.pad_left == 0
    np.testing.assert_array_equal(square, a)


def test_letterbox_keeps_content_position_and_aspect():
    # A bright square block in the top-left quarter of a 200 x 100 (H x W) image.
    a = np.zeros((200, 100), np.float32)
    a[:100, :50] = 1.0
    square, box = letterbox(a, 100)
    # scale 0.5 -> content 100 x 50 at columns 25..74; the block becomes rows 0..49, columns 25..49.
    assert box.pad_left == 25
    assert square[10:40, 30:45].min() > 0.99
    assert square[60:90, 55:70].max() < 0.01


def test_letterbox_upscales_small_images():
    a = np.linspace(0, 1, 16 * 8, dtype=np.float32).reshape(16, 8)
    square, box = letterbox(a, 64)
    assert box.scale == 4.0 and (box.content_height, box.content_width, box.pad_left) == (64, 32, 16)
    assert square.min() >= 0.0 and square.max() <= 1.0


def test_downscaling_is_antialiased():
    # A one-pixel checkerboard has mean 0.5; point sampling would alias it to pure 0 or 1.
    yy, xx = np.mgrid[:1000, :1000]
    board = ((yy + xx) % 2).astype(np.float32)
    square, _ = letterbox(board, 100)
    np.testing.assert_allclose(square[5:-5, 5:-5], 0.5, atol=0.02)


def test_letterbox_rejects_colour_arrays():
    with pytest.raises(ValueError):
        letterbox(np.zeros((10, 10, 3)), 8)


# ---------------------------------------------------------------- unletterbox

def test_unletterbox_round_trip_of_smooth_image():
    h, w = 120, 80
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    image = 0.5 + 0.4 * np.sin(yy / 19.0) * np.cos(xx / 13.0)
    square, box = letterbox(image, 64)
    back = unletterbox(square, box)
    assert back.shape == (h, w) and back.dtype == np.float32
    # Away from the outermost pixels (where the padding blends in) the image comes back closely.
    assert np.abs(back[3:-3, 3:-3] - image[3:-3, 3:-3]).max() < 0.03


def test_unletterbox_maps_a_low_resolution_grid_cell_to_the_right_place():
    # Image 32 x 64 in a 64 x 64 input: scale 1, 16 rows of padding above and below.
    box = letterbox(np.zeros((32, 64), np.float32), 64)[1]
    assert (box.pad_top, box.pad_left) == (16, 0)
    grid = np.zeros((8, 8), np.float32)        # 8 x 8 grid: each cell is 8 x 8 input pixels
    grid[3, 5] = 1.0                           # input rows 24..31, cols 40..47 -> image rows 8..15
    heat = unletterbox(grid, box)
    assert heat.shape == (32, 64)
    row, col = np.unravel_index(np.argmax(heat), heat.shape)
    assert 8 <= row <= 15 and 40 <= col <= 47


def test_unletterbox_crops_the_padding():
    box = letterbox(np.zeros((32, 64), np.float32), 64)[1]
    grid = np.zeros((64, 64), np.float32)
    grid[16:48] = 1.0                          # exactly the content rows; padding rows are 0
    np.testing.assert_allclose(unletterbox(grid, box), 1.0, atol=1e-6)


# ---------------------------------------------------------------- scaling

def test_tf_scaling_by_hand():
    x = to_model_input(np.array([[0.0, 0.25], [0.5, 1.0]], np.float32), "tf")
    assert x.shape == (2, 2, 3) and x.dtype == np.float32
    for c in range(3):
        np.testing.assert_allclose(x[..., c], [[-1.0, -0.5], [0.0, 1.0]], atol=1e-7)


def test_torch_scaling_by_hand():
    x = to_model_input(np.array([[0.5, 0.0]], np.float32), "torch")
    # (0.5 - 0.485) / 0.229, (0.5 - 0.456) / 0.224, (0.5 - 0.406) / 0.225 ; and -mean/std for 0.
    np.testing.assert_allclose(x[0, 0], [0.06550218, 0.19642857, 0.41777778], rtol=1e-5)
    np.testing.assert_allclose(x[0, 1], [-2.11790393, -2.03571429, -1.80444444], rtol=1e-5)
    assert x.dtype == np.float32


def test_unknown_scaling_is_refused():
    with pytest.raises(ValueError, match="scaling"):
        to_model_input(np.zeros((4, 4), np.float32), "caffe")


# ---------------------------------------------------------------- end to end on real X-rays

def _real_pngs(n=3):
    files = sorted(require_shared_data("cxr").glob("*/*.png"))
    return files[:: max(1, len(files) // n)][:n]


def test_real_png_decodes_to_its_8bit_values():
    for path in _real_pngs():
        image = read_image(path)
        expected = np.asarray(Image.open(path).convert("L"), np.float32) / 255.0
        assert image.format == "PNG" and image.source == str(path) and image.meta == {}
        assert image.raw is None and image.window is None and image.invert is False
        np.testing.assert_allclose(image.pixels, expected, atol=1e-6)


def test_load_for_model_on_real_png_matches_the_steps():
    path = _real_pngs(1)[0]
    x = load_for_model(path, input_size=224, scaling="tf")
    image = read_image(path)
    square, box = letterbox(image.pixels, 224)
    assert x.shape == (224, 224, 3) and x.dtype == np.float32
    np.testing.assert_array_equal(x[..., 0], square * 2 - 1)
    y, box2 = preprocess(image, input_size=224, scaling="torch")
    assert box2 == box and y.shape == (224, 224, 3)


def test_preprocess_pads_with_black_in_both_scalings():
    image = Radiograph(pixels=np.ones((50, 100), np.float32), source="synthetic", format="PNG")
    x, box = preprocess(image, input_size=20, scaling="tf")
    assert box.pad_top == 5
    np.testing.assert_allclose(x[0], -1.0)                  # black padding -> -1
    np.testing.assert_allclose(x[10], 1.0)                  # content -> +1
    t, _ = preprocess(image, input_size=20, scaling="torch")
    np.testing.assert_allclose(t[0, 0], [-0.485 / 0.229, -0.456 / 0.224, -0.406 / 0.225], rtol=1e-5)


def test_radiograph_arrays_are_read_only_views():
    mine = np.zeros((4, 4), np.float32)
    image = Radiograph(pixels=mine, source="synthetic", format="PNG")
    with pytest.raises(ValueError):
        image.pixels[0, 0] = 1.0
    mine[0, 0] = 0.5                                  # the caller's own array stays writable
    assert image.pixels[0, 0] == 0.5

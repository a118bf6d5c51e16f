"""The one preprocessing for training and inference: read, letterbox to a square, scale for the network."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from PIL import Image

from fl.imageio import read_image
from fl.radiograph import MAX_FILE_BYTES, MAX_PIXELS, MAX_SIDE, ImageReadError, Radiograph, apply_window

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "MAX_FILE_BYTES", "MAX_PIXELS", "MAX_SIDE", "SCALINGS",
           "ImageReadError", "Letterbox", "Radiograph", "apply_window", "letterbox", "load_for_model",
           "preprocess", "read_image", "to_model_input", "unletterbox"]

SCALINGS = ("tf", "torch")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Pillow's BILINEAR widens its kernel by the reduction factor when downscaling (an area-weighted triangle
# filter), so a 2000 px DICOM is antialiased on its way to 224 px; it never overshoots [0, 1].
RESAMPLE = Image.Resampling.BILINEAR


@dataclass(frozen=True)
class Letterbox:
    """Where an (height, width) image sits in the size x size model input: resized by ``scale``, then
    padded with black by ``pad_top``/``pad_left`` (and the remainder at the bottom/right)."""

    scale: float
    pad_top: int
    pad_left: int
    height: int
    width: int
    size: int

    @property
    def content_height(self) -> int:
        return min(self.size, max(1, round(self.height * self.scale)))

    @property
    def content_width(self) -> int:
        return min(self.size, max(1, round(self.width * self.scale)))


def _plan(height: int, width: int, size: int) -> Letterbox:
    if size < 1 or height < 1 or width < 1:
        raise ValueError(f"cannot letterbox a {height}x{width} image into {size}x{size}")
    scale = size / max(height, width)
    ch = min(size, max(1, round(height * scale)))
    cw = min(size, max(1, round(width * scale)))
    return Letterbox(scale=scale, pad_top=(size - ch) // 2, pad_left=(size - cw) // 2,
                     height=height, width=width, size=size)


def _resize(a: np.ndarray, height: int, width: int, box=None) -> np.ndarray:
    image = Image.fromarray(np.ascontiguousarray(a, dtype=np.float32))
    return np.asarray(image.resize((width, height), RESAMPLE, box=box), dtype=np.float32)


def letterbox(pixels: np.ndarray, size: int) -> tuple[np.ndarray, Letterbox]:
    """Aspect-preserving resize of (H, W) ``pixels`` into a (size, size) float32 square, centred, padded with 0."""
    a = np.asarray(pixels, dtype=np.float32)
    if a.ndim != 2:
        raise ValueError(f"letterbox expects a 2-D grayscale array, got shape {a.shape}")
    box = _plan(a.shape[0], a.shape[1], int(size))
    ch, cw = box.content_height, box.content_width
    content = a if (ch, cw) == a.shape else _resize(a, ch, cw)
    out = np.zeros((box.size, box.size), np.float32)
    out[box.pad_top:box.pad_top + ch, box.pad_left:box.pad_left + cw] = content
    return out, box


def unletterbox(grid: np.ndarray, box: Letterbox) -> np.ndarray:
    """Map an (h, w) map covering the whole model input (e.g. a GradCAM grid) onto the original (H, W) image.

    The padding is cropped away and the content region is resampled bilinearly in one step, with sub-pixel
    precision, to float32 (box.height, box.width).
    """
    g = np.asarray(grid, dtype=np.float32)
    if g.ndim != 2:
        raise ValueError(f"unletterbox expects a 2-D map, got shape {g.shape}")
    sy, sx = g.shape[0] / box.size, g.shape[1] / box.size
    crop = (box.pad_left * sx, box.pad_top * sy,
            (box.pad_left + box.content_width) * sx, (box.pad_top + box.content_height) * sy)
    return _resize(g, box.height, box.width, box=crop)


def to_model_input(pixels_sq: np.ndarray, scaling: str) -> np.ndarray:
    """(S, S) [0, 1] -> (S, S, 3) float32: "tf" gives x * 2 - 1 in [-1, 1]; "torch" gives
    (x - ImageNet mean) / ImageNet std per channel, the gray value replicated to three channels."""
    a = np.asarray(pixels_sq, dtype=np.float32)
    if a.ndim != 2:
        raise ValueError(f"to_model_input expects a 2-D grayscale array, got shape {a.shape}")
    if scaling == "tf":
        x = a * np.float32(2.0) - np.float32(1.0)
        return np.repeat(x[..., None], 3, axis=2)
    if scaling == "torch":
        mean = np.asarray(IMAGENET_MEAN, np.float32)
        std = np.asarray(IMAGENET_STD, np.float32)
        return (a[..., None] - mean) / std
    raise ValueError(f"unknown scaling {scaling!r}; expected one of {SCALINGS}")


def preprocess(image: Radiograph, *, input_size: int, scaling: str) -> tuple[np.ndarray, Letterbox]:
    """A Radiograph as the network's (S, S, 3) float32 input, and the Letterbox that maps it back."""
    square, box = letterbox(image.pixels, input_size)
    return to_model_input(square, scaling), box


def load_for_model(path: str | os.PathLike | bytes, *, input_size: int, scaling: str) -> np.ndarray:
    """read_image + preprocess: the (S, S, 3) float32 network input for one file (training uses this)."""
    return preprocess(read_image(path), input_size=input_size, scaling=scaling)[0]

"""Small image helpers shared by history, reports and labelled set: numpy [0,1] -> 8-bit PNG bytes."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

THUMBNAIL_SIZE = 256
STORED_COPY_MAX_SIDE = 1024


def to_uint8(pixels: np.ndarray) -> np.ndarray:
    """float [0,1] (H,W) or (H,W,3) -> uint8 with rounding; uint8 input is returned unchanged."""
    a = np.asarray(pixels)
    if a.dtype == np.uint8:
        return a
    return np.clip(np.rint(np.nan_to_num(a.astype(np.float32)) * 255.0), 0, 255).astype(np.uint8)


def to_pil(pixels: np.ndarray) -> Image.Image:
    """A Pillow image ("L" for (H,W), "RGB" for (H,W,3)) of a float [0,1] or uint8 array."""
    a = to_uint8(pixels)
    if a.ndim == 2:
        return Image.fromarray(a, mode="L")
    if a.ndim == 3 and a.shape[2] == 3:
        return Image.fromarray(a, mode="RGB")
    raise ValueError(f"expected an (H,W) or (H,W,3) image, got shape {a.shape}")


def downscaled(pixels: np.ndarray, max_side: int) -> Image.Image:
    """Pillow image no larger than max_side on its long side (aspect kept; never enlarged)."""
    img = to_pil(pixels)
    if max(img.size) > max_side:
        img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return img


def png_bytes(img: Image.Image, **kwargs) -> bytes:
    """Encode a Pillow image as PNG. zlib level 1: on the shared radiographs' overlays it encoded 4.5x faster than
    level 6 for files 8 % larger (tests/benchmarks/bench_core.py, batch), and PNG stays lossless at every level."""
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=1, **kwargs)
    return buf.getvalue()


def thumbnail_png(pixels: np.ndarray, size: int = THUMBNAIL_SIZE) -> bytes:
    """A small grayscale PNG for the history list."""
    return png_bytes(downscaled(pixels, size))


def stored_copy_png(pixels: np.ndarray, max_side: int = STORED_COPY_MAX_SIDE) -> bytes:
    """The downscaled 8-bit grayscale copy the history keeps so a case reopens (with heatmap) without the original."""
    return png_bytes(downscaled(pixels, max_side))

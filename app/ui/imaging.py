"""Numpy images to QImage and back; the display state and window presets live in app.core.windowing."""

from __future__ import annotations

import numpy as np
from PySide6.QtGui import QImage

from app.core.windowing import CT_PRESETS, PRESETS, Display, preset_window, raw_range, render

__all__ = ["CT_PRESETS", "PRESETS", "Display", "gray_to_qimage", "preset_window", "qimage_to_rgb", "raw_range",
           "render", "rgb_to_qimage", "rgba_to_qimage"]


def gray_to_qimage(gray: np.ndarray) -> QImage:
    """(H, W) float [0,1] or uint8 -> Grayscale8 QImage (owns a copy of the data)."""
    if gray.dtype != np.uint8:
        tmp = np.clip(gray, 0.0, 1.0, dtype=np.float32)  # one temporary, updated in place
        tmp *= 255.0
        tmp += 0.5
        gray = tmp.astype(np.uint8)
    gray = np.ascontiguousarray(gray)
    h, w = gray.shape
    return QImage(gray.data, w, h, w, QImage.Format.Format_Grayscale8).copy()


def rgb_to_qimage(rgb: np.ndarray) -> QImage:
    """(H, W, 3) uint8 -> RGB888 QImage (owns a copy of the data)."""
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    h, w, _ = rgb.shape
    return QImage(rgb.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()


def rgba_to_qimage(rgba: np.ndarray) -> QImage:
    """(H, W, 4) uint8 non-premultiplied RGBA -> QImage (owns a copy): Qt composes colour * alpha + image * (1 -
    alpha)."""
    rgba = np.ascontiguousarray(rgba, dtype=np.uint8)
    h, w, _ = rgba.shape
    return QImage(rgba.data, w, h, 4 * w, QImage.Format.Format_RGBA8888).copy()


def qimage_to_rgb(img: QImage) -> np.ndarray:
    """QImage -> (H, W, 3) uint8 copy (for exports and tests)."""
    img = img.convertToFormat(QImage.Format.Format_RGB888)
    w, h, bpl = img.width(), img.height(), img.bytesPerLine()
    buf = np.frombuffer(img.constBits(), dtype=np.uint8, count=bpl * h).reshape(h, bpl)
    return buf[:, : 3 * w].reshape(h, w, 3).copy()

"""How a radiograph is drawn: the display state (DICOM window, inversion), window presets and rendering (numpy)."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

# Window presets in Hounsfield-like modality units do not apply to CR/DX; these are expressed as
# fractions of the file's stored value range, which is what a radiologist's "lung"/"mediastinum" mean here:
# lung = wide window on the bright-soft part, mediastinum = narrow window on the dense part.
PRESETS = ("File default", "Lung", "Mediastinum")
CT_PRESETS = {"Lung": (-600.0, 1500.0), "Mediastinum": (40.0, 400.0)}


@dataclass(frozen=True)
class Display:
    """How the radiograph is drawn: an optional DICOM window (center, width in raw units) and inversion."""

    window: tuple[float, float] | None = None
    invert: bool = False

    def with_window(self, center: float, width: float) -> Display:
        return replace(self, window=(float(center), max(float(width), 1e-6)))


def initial_display(radiograph) -> Display:
    """The display a newly opened radiograph starts with: the file's window (DICOM), not inverted."""
    return Display(window=tuple(radiograph.window) if radiograph.raw is not None and radiograph.window else None)


def raw_range(raw: np.ndarray) -> tuple[float, float]:
    """Robust value range of DICOM modality values (1st-99.9th percentile of a subsample)."""
    sample = raw[:: max(1, raw.shape[0] // 256), :: max(1, raw.shape[1] // 256)]
    lo, hi = np.percentile(sample, [1.0, 99.9])
    if hi <= lo:
        hi = lo + 1.0
    return float(lo), float(hi)


def preset_window(name: str, radiograph) -> tuple[float, float] | None:
    """(center, width) of a named preset for a DICOM radiograph, None when it has no raw values."""
    if radiograph.raw is None:
        return None
    if name == "File default" and radiograph.window is not None:
        return radiograph.window
    if radiograph.meta.get("Modality") == "CT" and name in CT_PRESETS:
        return CT_PRESETS[name]  # Hounsfield units: the textbook windows
    lo, hi = raw_range(radiograph.raw)
    span = hi - lo
    # In MONOCHROME1 files high values are dark (air); the lung fields sit at the "air" end.
    air_high = bool(radiograph.invert)
    if name == "Lung":
        center = hi - 0.35 * span if air_high else lo + 0.35 * span
        return center, 0.8 * span
    if name == "Mediastinum":
        center = lo + 0.3 * span if air_high else hi - 0.3 * span
        return center, 0.35 * span
    return (lo + hi) / 2.0, span


def current_preset(radiograph, display: Display) -> str | None:
    """The preset whose window is on screen (the file's own when no window was set), None for a window the user
    dragged to; None for an image without DICOM values."""
    if radiograph is None or radiograph.raw is None:
        return None
    shown = display.window or preset_window("File default", radiograph)
    for name in PRESETS:
        window = preset_window(name, radiograph)
        if window is not None and shown is not None and np.allclose(window, shown, rtol=1e-6, atol=1e-6):
            return name
    return None


def render(radiograph, display: Display) -> np.ndarray:
    """The radiograph as (H, W) float32 [0, 1] under ``display``."""
    from fl.preprocess import apply_window  # numpy only; imported here to keep startup light

    if display.window is not None and radiograph.raw is not None:
        center, width = display.window
        img = apply_window(radiograph.raw, center, width, invert=bool(radiograph.invert))
    else:
        img = radiograph.pixels
    if display.invert:
        img = 1.0 - img
    return img

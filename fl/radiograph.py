"""The decoded radiograph, the single read-error type, size limits and DICOM display windowing."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

# Refuse before decoding anything larger. The biggest CR/DR detectors give about 4300 x 3500 pixels
# (15 megapixels); 40 megapixels leaves ample room (e.g. 6300 x 6300) and keeps one float32 copy under
# 160 MB. Pillow's own limit (89 megapixels, warning) would only be reached by files we already refuse.
MAX_PIXELS = 40_000_000
MAX_SIDE = 16_384
# A single radiograph, even uncompressed 16-bit at MAX_PIXELS, stays well under this.
MAX_FILE_BYTES = 512 * 1024 * 1024
WINDOW_FUNCTIONS = ("LINEAR", "LINEAR_EXACT", "SIGMOID")
# Classification, heatmaps and overlays work on at most this many pixels per side (working_copy): the network sees
# a few hundred, a heatmap is smooth, and an 8-bit overlay of a 6000 x 6000 image would hold 108 MB per copy.
WORKING_MAX_SIDE = 2048


class ImageReadError(Exception):
    """An input that cannot be used as a radiograph; ``str(error)`` says what happened and what to do."""

    def __init__(self, message: str, *, source: str | None = None) -> None:
        super().__init__(message)
        self.source = source


def fail(name: str, what: str, todo: str, *, source: str | None = None) -> ImageReadError:
    """Build the standard message: which file, what is wrong, what the user can do."""
    return ImageReadError(f'Cannot open "{name}": {what}. {todo}', source=source)


def detail(exc: BaseException) -> str:
    """A short one-line technical detail of ``exc`` for the end of a message (helps IT support)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 120 else text[:117] + "..."


def check_dimensions(width: int, height: int, name: str, *, source: str | None = None) -> None:
    """Refuse images whose header claims no pixels or an implausibly large size (decompression bombs)."""
    if width < 1 or height < 1:
        raise fail(name, f"the file says the image is {width} x {height} pixels, i.e. it has no pixels",
                   "The file is damaged; export the image again.", source=source)
    if width * height > MAX_PIXELS or max(width, height) > MAX_SIDE:
        raise fail(
            name,
            f"the file says the image is {width} x {height} pixels ({width * height / 1e6:.0f} megapixels), "
            f"far larger than any radiograph (FedXray accepts up to {MAX_PIXELS / 1e6:.0f} megapixels and "
            f"{MAX_SIDE} pixels per side), so it was not decoded",
            "The file is damaged or is not a radiograph; use the original export from the PACS or modality.",
            source=source,
        )


@dataclass(frozen=True, eq=False)
class Radiograph:
    """A decoded image: ``pixels`` float32 (H, W) in [0, 1], 0 = black, as displayed by default.

    For DICOM, ``raw`` holds the modality values (after rescale slope/intercept or modality LUT, before
    VOI), ``window`` the (center, width) in ``raw`` units (from the file, else derived from the data),
    ``invert`` is True for MONOCHROME1 and ``voi_function`` the file's VOI LUT Function, so a viewer can
    re-window with ``apply_window(raw, c, w, invert=invert, function=voi_function)``. Arrays are read-only.
    """

    pixels: np.ndarray
    source: str
    format: str
    meta: dict[str, str] = field(default_factory=dict)
    raw: np.ndarray | None = None
    window: tuple[float, float] | None = None
    invert: bool = False
    voi_function: str = "LINEAR"
    # Set on a working copy (see working_copy): the SHA-256 and (height, width) of the image it was made from.
    original_sha256: str = ""
    original_size: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        # Read-only views: a shared, cached image cannot be changed by accident (the caller's array is not).
        for name in ("pixels", "raw"):
            a = getattr(self, name)
            if a is not None:
                view = np.asarray(a).view()
                view.flags.writeable = False
                object.__setattr__(self, name, view)

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    def pixel_sha256(self) -> str:
        """SHA-256 of the decoded pixel data (DICOM: modality values, so independent of the window); of a working
        copy, the original's."""
        if self.original_sha256:
            return self.original_sha256
        data = np.ascontiguousarray(self.raw if self.raw is not None else self.pixels, dtype="<f4")
        digest = hashlib.sha256(f"float32:{data.shape[0]}x{data.shape[1]}:".encode())
        digest.update(memoryview(data).cast("B"))
        return digest.hexdigest()


def apply_window(raw, center: float, width: float, *, invert: bool = False,
                 function: str = "LINEAR") -> np.ndarray:
    """Window ``raw`` to float32 [0, 1] by DICOM PS3.3 C.11.2.1.2/C.11.2.1.3 (LINEAR, LINEAR_EXACT, SIGMOID).

    LINEAR: y = ((x - (c - 0.5)) / (w - 1) + 0.5) clipped to [0, 1] (a step at c - 0.5 when w <= 1);
    LINEAR_EXACT: y = (x - c) / w + 0.5 clipped; SIGMOID: y = 1 / (1 + exp(-4 (x - c) / w)).
    ``invert`` (MONOCHROME1) is applied after windowing: y -> 1 - y.
    """
    x = np.asarray(raw, dtype=np.float32)
    c, w = float(center), float(width)
    kind = function.upper()
    if kind not in WINDOW_FUNCTIONS:
        raise ValueError(f"unknown VOI LUT function {function!r}; expected one of {WINDOW_FUNCTIONS}")
    if kind == "SIGMOID":
        y = x - np.float32(c)
        y *= np.float32(-4.0 / max(w, 1e-6))
        with np.errstate(over="ignore"):
            np.exp(y, out=y)
        y += 1.0
        np.reciprocal(y, out=y)
    else:
        if kind == "LINEAR":
            c, w = c - 0.5, w - 1.0
        if w <= 0:
            y = (x > c).astype(np.float32)
        else:
            y = x - np.float32(c)
            y *= np.float32(1.0 / w)
            y += 0.5
            np.clip(y, 0.0, 1.0, out=y)
    if invert:
        np.subtract(1.0, y, out=y)
    return y


def _shrink(a: np.ndarray, height: int, width: int) -> np.ndarray:
    """Area-weighted downscale of a float (H, W) array (Pillow's BOX filter on 32-bit float data)."""
    from PIL import Image

    image = Image.fromarray(np.ascontiguousarray(a, dtype=np.float32))
    return np.asarray(image.resize((width, height), Image.Resampling.BOX), dtype=np.float32)


def working_copy(radiograph: Radiograph, max_side: int = WORKING_MAX_SIDE) -> Radiograph:
    """The radiograph at most `max_side` pixels per side (itself when it is that small), for classification,
    heatmaps and overlays; it keeps the original's SHA-256 and size, so the history and the labelled set know it
    as the same image. The original's arrays are not referenced: a caller that drops the original frees them."""
    if radiograph.original_size is not None or max(radiograph.height, radiograph.width) <= max_side:
        return radiograph
    h, w = radiograph.height, radiograph.width
    scale = max_side / max(h, w)
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    pixels = np.clip(_shrink(radiograph.pixels, *size), 0.0, 1.0)
    raw = None if radiograph.raw is None else _shrink(radiograph.raw, *size)
    return Radiograph(pixels=pixels, source=radiograph.source, format=radiograph.format, meta=dict(radiograph.meta),
                      raw=raw, window=radiograph.window, invert=radiograph.invert,
                      voi_function=radiograph.voi_function, original_sha256=radiograph.pixel_sha256(),
                      original_size=(h, w))

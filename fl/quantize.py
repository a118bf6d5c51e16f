"""8-bit model updates with error feedback: a site sends its update (local weights minus the model it received)
as int8 with a float32 scale per output channel, a quarter of the float32 bytes; the server adds it back.

Encoding (symmetric, per channel): a floating point array of two or more dimensions gets one scale per slice
along its last axis (a Keras kernel's output channels), any other array one scale for the whole array;
``scale = max|x| / 127`` and ``q = round(x / scale)``, so every element comes back within half a scale step:
``|x - q * scale| <= scale / 2``. Error feedback (Seide et al. 2014; Karimireddy et al. 2019, EF-SGD): the part
of an update lost to rounding is kept at the site and added to its next update, so rounding errors do not
accumulate over rounds. The residual never leaves the site.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

LEVELS = 127  # symmetric int8: -127..127 (-128 unused, so the grid is symmetric around 0)


def scale_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """The shape of an array's scales: (channels,) along the last axis for 2+ dimensions, else (1,)."""
    return (int(shape[-1]),) if len(shape) >= 2 else (1,)


def quantize(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(int8 codes of x's shape, float32 scales of scale_shape(x.shape)). Exact zeros stay exact."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim >= 2:
        peak = np.abs(x.reshape(-1, x.shape[-1])).max(axis=0)
    else:
        peak = np.array([np.abs(x).max()], dtype=np.float32) if x.size else np.zeros(1, np.float32)
    scales = (peak / LEVELS).astype(np.float32)
    safe = np.where(scales > 0, scales, np.float32(1.0))
    codes = np.clip(np.rint(x / (safe if x.ndim >= 2 else safe[0])), -LEVELS, LEVELS).astype(np.int8)
    return codes, scales


def dequantize(codes: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """float32 values of int8 `codes` with their `scales` (the inverse of quantize, up to scale / 2)."""
    codes = np.asarray(codes)
    scales = np.asarray(scales, dtype=np.float32)
    if codes.ndim >= 2:
        return codes.astype(np.float32) * scales
    return codes.astype(np.float32) * scales[0]


def encode_update(local: Mapping[str, np.ndarray], received: Mapping[str, np.ndarray],
                  residual: dict[str, np.ndarray] | None = None
                  ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:  # fmt: skip
    """(codes, scales) of ``local - received (+ residual)`` for every floating point array; other arrays (integer
    state) are sent unchanged in `codes` with no scale. `residual` (name -> float32), when given, is updated in
    place with what this encoding lost (error feedback)."""
    codes: dict[str, np.ndarray] = {}
    scales: dict[str, np.ndarray] = {}
    for name, value in local.items():
        value = np.asarray(value)
        if value.dtype.kind != "f":
            codes[name] = value
            continue
        update = value.astype(np.float32) - np.asarray(received[name], dtype=np.float32)
        if residual is not None and name in residual and residual[name].shape == update.shape:
            update = update + residual[name]
        q, s = quantize(update)
        codes[name], scales[name] = q, s
        if residual is not None:
            residual[name] = update - dequantize(q, s)
    return codes, scales


def decode_update(codes: Mapping[str, np.ndarray], scales: Mapping[str, np.ndarray],
                  sent: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:  # fmt: skip
    """A site's weights rebuilt from its codes and the model the server `sent` it (float32)."""
    out: dict[str, np.ndarray] = {}
    for name, q in codes.items():
        if name in scales:
            out[name] = (np.asarray(sent[name], dtype=np.float32) + dequantize(q, scales[name])).astype(np.float32)
        else:
            out[name] = np.asarray(q)
    return out

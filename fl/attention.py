"""Where a heatmap's attention falls: at the image border (labels, markers) and outside the body (numpy only).

The body mask is found from intensity alone: outside the body is the dark background (direct exposure, or
the black of a scanned or cropped figure) that is connected to the image edge. The lungs are dark too, but
the chest wall, shoulders and diaphragm enclose them, so a fill from the edge through dark pixels stops there.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BORDER_FRACTION = 0.10   # the band along each edge, as a fraction of that image side
MASK_SIDE = 128          # px; masks are computed on a downsampled copy (labels and the body outline stay visible)
AIR_OF_OTSU = 0.5        # "air" is darker than this fraction of the way from the 1st percentile to Otsu's threshold


@dataclass(frozen=True)
class AttentionShares:
    """Shares (0-1) of a heatmap's total attention in three regions of the image."""

    border: float        # in the band along the edges (BORDER_FRACTION of each side)
    outside_body: float  # on background connected to the image edge (fl.attention.body_mask)
    off_target: float    # in either: where labels, markers and background sit, not the chest

    def as_dict(self) -> dict[str, float]:
        return {"border": round(self.border, 4), "outside_body": round(self.outside_body, 4),
                "off_target": round(self.off_target, 4)}


def border_mask(shape: tuple[int, int], fraction: float = BORDER_FRACTION) -> np.ndarray:
    """True in the band of `fraction` of the height (top, bottom) and of the width (left, right) along the edges."""
    h, w = int(shape[0]), int(shape[1])
    by, bx = max(1, round(h * fraction)), max(1, round(w * fraction))
    m = np.ones((h, w), bool)
    m[by:h - by, bx:w - bx] = False
    return m


def _downsample(img: np.ndarray, side: int) -> np.ndarray:
    """Block-mean downsample so that the long side is at most about `side`."""
    step = max(1, int(np.ceil(max(img.shape) / side)))
    h, w = (img.shape[0] // step) * step, (img.shape[1] // step) * step
    if step == 1 or h == 0 or w == 0:
        return img.astype(np.float32)
    return img[:h, :w].reshape(h // step, step, w // step, step).mean(axis=(1, 3), dtype=np.float32)


def _box_blur(img: np.ndarray, r: int) -> np.ndarray:
    p = np.pad(img, r, mode="edge")
    c = np.cumsum(np.cumsum(np.pad(p, ((1, 0), (1, 0))), axis=0), axis=1)
    k = 2 * r + 1
    return (c[k:, k:] - c[:-k, k:] - c[k:, :-k] + c[:-k, :-k]) / (k * k)


def otsu(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold of values in [0, 1]."""
    hist, edges = np.histogram(np.clip(values, 0, 1), bins=bins, range=(0.0, 1.0))
    p = hist.astype(np.float64) / max(1, hist.sum())
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(p)
    m0 = np.cumsum(p * centres)
    total = m0[-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (total * w0 - m0) ** 2 / (w0 * (1 - w0))
    between = np.nan_to_num(between)
    return float(centres[int(np.argmax(between))])


def _fill_from_edge(passable: np.ndarray) -> np.ndarray:
    """Pixels of `passable` connected (4-neighbourhood) to the image edge."""
    reached = np.zeros_like(passable)
    reached[0, :], reached[-1, :], reached[:, 0], reached[:, -1] = (passable[0, :], passable[-1, :],
                                                                    passable[:, 0], passable[:, -1])
    while True:
        grown = reached.copy()
        grown[1:, :] |= reached[:-1, :]
        grown[:-1, :] |= reached[1:, :]
        grown[:, 1:] |= reached[:, :-1]
        grown[:, :-1] |= reached[:, 1:]
        grown &= passable
        if np.array_equal(grown, reached):
            return reached
        reached = grown


def _resize_nearest(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    rows = np.minimum((np.arange(shape[0]) * mask.shape[0]) // shape[0], mask.shape[0] - 1)
    cols = np.minimum((np.arange(shape[1]) * mask.shape[1]) // shape[1], mask.shape[1] - 1)
    return mask[rows[:, None], cols[None, :]]


def outside_body_mask(pixels: np.ndarray) -> np.ndarray:
    """True on the dark background connected to the image edge (not the body), at the image's own size.

    "Dark" is below AIR_OF_OTSU of the way from the 1st percentile to Otsu's threshold of the smoothed image;
    an image with no such background (a body that fills the frame) has an empty mask.
    """
    px = np.nan_to_num(np.asarray(pixels, np.float32))
    if px.ndim != 2:
        raise ValueError(f"outside_body_mask expects a 2-D grayscale image, got shape {px.shape}")
    small = _box_blur(_downsample(px, MASK_SIDE), 1)
    lo = float(np.percentile(small, 1))
    air = lo + AIR_OF_OTSU * (otsu(small) - lo)
    outside = _fill_from_edge(small <= air)
    return _resize_nearest(outside, px.shape)


def attention_shares(pixels: np.ndarray, heatmap: np.ndarray) -> AttentionShares:
    """The shares of `heatmap` (H, W, >= 0, over the same image as `pixels`) at the border and outside the body.

    A map with no attention at all (all zeros) has shares of 0.
    """
    heat = np.clip(np.nan_to_num(np.asarray(heatmap, np.float64)), 0.0, None)
    if heat.shape != np.asarray(pixels).shape[:2]:
        raise ValueError(f"image {np.asarray(pixels).shape} and heatmap {heat.shape} differ in size")
    total = float(heat.sum())
    if total <= 0.0:
        return AttentionShares(0.0, 0.0, 0.0)
    border = border_mask(heat.shape)
    outside = outside_body_mask(pixels)
    return AttentionShares(border=float(heat[border].sum() / total),
                           outside_body=float(heat[outside].sum() / total),
                           off_target=float(heat[border | outside].sum() / total))

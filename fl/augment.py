"""Training-time augmentation (never used at inference): geometry and intensity, and source-cue augmentations.

Two kinds, both applied to every class:
- `geometric_intensity_batch`: small rotation, zoom, shift, brightness and contrast of a batch (TensorFlow ops);
- the source-cue augmentations (numpy/Pillow, per image): what tells one hospital's or journal's images from
  another's rather than the disease: burnt-in text and markers, borders, crops and padding, resolution and
  sharpness, JPEG recompression, contrast and gamma curves. Drawn at random on every class, they stop being a
  shortcut to the label. Each is a small pure function of an (S, S) float32 image in [0, 1] and its parameters;
  `random_source_cues` draws the parameters from a numpy Generator, `source_cue_batch` applies it to a batch
  (fl.data calls it through tf.numpy_function).
"""

from __future__ import annotations

import io
import math

import numpy as np
from PIL import Image, ImageDraw, ImageFont

# Geometry and intensity ranges for chest radiographs. No horizontal flip: the heart's side matters.
ROTATION_DEGREES = 7.0
ZOOM = 0.10  # scale factor in [1 - ZOOM, 1 + ZOOM]
TRANSLATION = 0.05  # fraction of the image side
BRIGHTNESS = 0.08  # added to the [0, 1] image
CONTRAST = 0.15  # factor in [1 - CONTRAST, 1 + CONTRAST] around the image mean

# Source-cue augmentations: the probability that each step is applied to an image, and its ranges.
CUE_PROBABILITY = {"frame": 0.5, "resample": 0.3, "sharpness": 0.3, "curve": 0.5, "marks": 0.6, "jpeg": 0.3}
MARK_HEIGHT = (0.06, 0.14)  # text / marker height as a fraction of the image side
FRAME_SCALE = (0.80, 0.95)  # padding: content shrunk to this fraction of the side; cropping: window fraction
BORDER_WIDTH = (0.02, 0.08)  # border band as a fraction of the side
RESAMPLE_FACTOR = (1.5, 4.0)  # downsample by this factor, then back up
BLUR_SIGMA = (0.004, 0.015)  # Gaussian sigma as a fraction of the side
JPEG_QUALITY = (20, 75)
GAMMA = (0.6, 1.6)
CURVE_GAIN = (3.0, 8.0)  # steepness of the sigmoid contrast curve
WORDS = ("R", "L", "AP", "PA", "PORTABLE", "SUPINE", "ERECT", "L", "R", "1", "2", "A", "B", "C", "D")


# ------------------------------------------------------------------ geometry and intensity (TensorFlow)


def geometric_intensity_batch(tf, x, seed):
    """Random rotation, zoom, translation, brightness and contrast of a batch (B, S, S, 1) in [0, 1]."""
    shape = tf.shape(x)
    b, size = shape[0], tf.cast(shape[1], tf.float32)
    seeds = tf.random.experimental.stateless_split(seed, 6)

    def uniform(i, limit):
        return tf.random.stateless_uniform([b], seeds[i], -limit, limit)

    # Intensity first, so that the area the geometric transform brings in stays black like the letterbox.
    mean = tf.reduce_mean(x, axis=[1, 2, 3], keepdims=True)
    contrast = 1.0 + tf.reshape(uniform(0, CONTRAST), [-1, 1, 1, 1])
    brightness = tf.reshape(uniform(1, BRIGHTNESS), [-1, 1, 1, 1])
    x = tf.clip_by_value((x - mean) * contrast + mean + brightness, 0.0, 1.0)

    # Projective transform mapping each output pixel to its input pixel: rotate by `angle` and scale by 1/zoom
    # about the centre, then shift. No reflection: the determinant stays positive.
    angle = uniform(2, ROTATION_DEGREES * math.pi / 180.0)
    zoom = 1.0 + uniform(3, ZOOM)
    dx, dy = uniform(4, TRANSLATION) * size, uniform(5, TRANSLATION) * size
    c = (size - 1.0) / 2.0
    cos, sin = tf.cos(angle) / zoom, tf.sin(angle) / zoom
    a2 = c - (cos * c + sin * c) - dx
    b2 = c - (-sin * c + cos * c) - dy
    zeros = tf.zeros_like(cos)
    transforms = tf.stack([cos, sin, a2, -sin, cos, b2, zeros, zeros], axis=1)
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=x, transforms=transforms, output_shape=shape[1:3], fill_value=0.0,
        interpolation="BILINEAR", fill_mode="CONSTANT",
    )


# ------------------------------------------------------------------ source cues (numpy / Pillow, one image)


def _image(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, np.float32)
    if a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise ValueError(f"source-cue augmentations expect a square 2-D image, got shape {a.shape}")
    return a


def _resize(a: np.ndarray, height: int, width: int, method=Image.Resampling.BILINEAR, box=None) -> np.ndarray:
    return np.asarray(Image.fromarray(np.ascontiguousarray(a, np.float32)).resize((width, height), method, box=box),
                      np.float32)


def _blend(a: np.ndarray, mask: Image.Image, value: float) -> np.ndarray:
    m = np.asarray(mask, np.float32) / 255.0
    return a * (1.0 - m) + np.float32(value) * m


def _font(height: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=max(4, int(height)))


def burn_in_text(img: np.ndarray, text: str, *, top: int, left: int, height: int, value: float = 1.0) -> np.ndarray:
    """`text` written into the image with its top-left corner at (top, left), letters `height` px tall, in the
    gray `value` (burnt in, as scanners and journals do; the part outside the image is cut off)."""
    a = _image(img)
    mask = Image.new("L", (a.shape[1], a.shape[0]), 0)
    ImageDraw.Draw(mask).text((left, top), text, fill=255, font=_font(height))
    return _blend(a, mask, value)


def burn_in_arrow(img: np.ndarray, *, tip: tuple[float, float], length: float, angle: float, width: int,
                  value: float = 1.0) -> np.ndarray:  # fmt: skip
    """An arrow pointing at `tip` (row, column), `length` px long, coming from direction `angle` (radians),
    drawn `width` px thick in the gray `value` (the arrows of case-report figures)."""
    a = _image(img)
    ty, tx = tip
    dy, dx = math.sin(angle), math.cos(angle)
    tail = (tx + dx * length, ty + dy * length)
    head = length * 0.35
    wings = [(tx + head * math.cos(angle + s), ty + head * math.sin(angle + s)) for s in (0.5, -0.5)]
    mask = Image.new("L", (a.shape[1], a.shape[0]), 0)
    draw = ImageDraw.Draw(mask)
    draw.line([tail, (tx, ty)], fill=255, width=max(1, int(width)))
    draw.polygon([(tx, ty), *wings], fill=255)
    return _blend(a, mask, value)


def pad(img: np.ndarray, *, scale: float, top: int, left: int, fill: float) -> np.ndarray:
    """The image shrunk to `scale` of its side and placed at (top, left) on a frame of gray `fill`; same size."""
    a = _image(img)
    size = a.shape[0]
    inner = max(1, min(size, round(size * scale)))
    top, left = int(np.clip(top, 0, size - inner)), int(np.clip(left, 0, size - inner))
    out = np.full_like(a, np.float32(fill))
    out[top:top + inner, left:left + inner] = _resize(a, inner, inner)
    return out


def crop(img: np.ndarray, *, top: int, left: int, side: int) -> np.ndarray:
    """The square window of `side` px at (top, left), resized back to the image's size (a zoomed-in crop)."""
    a = _image(img)
    size = a.shape[0]
    side = max(1, min(size, int(side)))
    top, left = int(np.clip(top, 0, size - side)), int(np.clip(left, 0, size - side))
    return _resize(a, size, size, box=(left, top, left + side, top + side))


def border(img: np.ndarray, *, widths: tuple[int, int, int, int], fill: float) -> np.ndarray:
    """Bands of gray `fill`, (top, bottom, left, right) px wide, painted over the image's edges; same size."""
    a = _image(img).copy()
    t, b, lf, r = (max(0, int(w)) for w in widths)
    size = a.shape[0]
    a[:t, :] = fill
    if b:
        a[size - b:, :] = fill
    a[:, :lf] = fill
    if r:
        a[:, size - r:] = fill
    return a


def resample(img: np.ndarray, *, factor: float, nearest: bool = False) -> np.ndarray:
    """Down to 1/`factor` of the resolution, then back up (bilinear, or nearest for a blocky look)."""
    a = _image(img)
    size = a.shape[0]
    low = max(2, round(size / factor))
    up = Image.Resampling.NEAREST if nearest else Image.Resampling.BILINEAR
    return _resize(_resize(a, low, low), size, size, method=up)


def _gaussian(a: np.ndarray, sigma: float) -> np.ndarray:
    radius = max(1, math.ceil(3 * sigma))
    k = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    k = (k / k.sum()).astype(np.float32)
    out = a
    for axis in (0, 1):
        padded = np.pad(out, [(radius, radius) if i == axis else (0, 0) for i in range(2)], mode="reflect")
        n = out.shape[axis]
        out = sum(w * np.take(padded, np.arange(i, i + n), axis=axis) for i, w in enumerate(k))
    return out.astype(np.float32)


def blur(img: np.ndarray, *, sigma: float) -> np.ndarray:
    """Gaussian blur with standard deviation `sigma` px (a softer detector or a resized figure)."""
    a = _image(img)
    return a if sigma <= 0 else _gaussian(a, sigma)


def sharpen(img: np.ndarray, *, sigma: float, amount: float) -> np.ndarray:
    """Unsharp mask: image + `amount` x (image - blur(sigma)), clipped to [0, 1] (a sharpening filter)."""
    a = _image(img)
    return np.clip(a + np.float32(amount) * (a - blur(a, sigma=sigma)), 0.0, 1.0)


def jpeg(img: np.ndarray, *, quality: int) -> np.ndarray:
    """The image saved as an 8-bit JPEG of `quality` (1-95) and decoded again."""
    a = _image(img)
    buf = io.BytesIO()
    Image.fromarray(np.round(np.clip(a, 0.0, 1.0) * 255.0).astype(np.uint8)).save(buf, "JPEG", quality=int(quality))
    buf.seek(0)
    return np.asarray(Image.open(buf).convert("L"), np.float32) / 255.0


def gamma(img: np.ndarray, *, g: float) -> np.ndarray:
    """Gamma curve x ** `g` (< 1 brightens, > 1 darkens); keeps 0 and 1."""
    return np.power(np.clip(_image(img), 0.0, 1.0), np.float32(g))


def contrast_curve(img: np.ndarray, *, gain: float, midpoint: float) -> np.ndarray:
    """S-shaped contrast curve: a sigmoid of steepness `gain` around `midpoint`, rescaled to map 0 -> 0, 1 -> 1."""
    a = np.clip(_image(img), 0.0, 1.0)

    def s(x):
        return 1.0 / (1.0 + np.exp(-gain * (x - midpoint)))

    lo, hi = s(0.0), s(1.0)
    return ((s(a) - lo) / (hi - lo)).astype(np.float32)


def _date(rng: np.random.Generator) -> str:
    y, m, d = rng.integers(1995, 2026), rng.integers(1, 13), rng.integers(1, 29)
    return str(rng.choice([f"{y}-{m:02d}-{d:02d}", f"{d:02d}/{m:02d}/{y}", f"{d:02d}.{m:02d}.{y % 100:02d}"]))


def _text(rng: np.random.Generator) -> str:
    kind = rng.integers(0, 4)
    if kind == 0:
        return _date(rng)
    if kind == 1:
        return "".join(chr(65 + int(c)) for c in rng.integers(0, 26, rng.integers(1, 5)))
    return str(rng.choice(WORDS))


def random_marks(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One to three burnt-in marks (words, letters, "R"/"L", dates, arrows) at random places, mostly white."""
    a = _image(img)
    size = a.shape[0]
    for _ in range(int(rng.integers(1, 4))):
        height = max(4, round(size * rng.uniform(*MARK_HEIGHT)))
        value = float(rng.uniform(0.85, 1.0) if rng.random() < 0.8 else rng.uniform(0.0, 0.1))
        if rng.random() < 0.25:
            tip = (float(rng.uniform(0.15, 0.85) * size), float(rng.uniform(0.15, 0.85) * size))
            a = burn_in_arrow(a, tip=tip, length=height * 1.8, angle=float(rng.uniform(0, 2 * math.pi)),
                              width=max(1, height // 5), value=value)  # fmt: skip
        else:
            top, left = int(rng.integers(0, size - height + 1)), int(rng.integers(0, max(1, size - height)))
            a = burn_in_text(a, _text(rng), top=top, left=left, height=height, value=value)
    return a


def random_frame(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A border band, a zoomed-in crop or padding on a black, gray or white frame."""
    a = _image(img)
    size = a.shape[0]
    kind = rng.integers(0, 3)
    fill = float(rng.choice([0.0, rng.uniform(0.2, 0.6), 1.0]))
    if kind == 0:
        widths = tuple(int(round(size * rng.uniform(*BORDER_WIDTH))) if rng.random() < 0.5 else 0 for _ in range(4))
        return border(a, widths=widths, fill=fill)  # type: ignore[arg-type]
    side = max(1, round(size * rng.uniform(*FRAME_SCALE)))
    top, left = int(rng.integers(0, size - side + 1)), int(rng.integers(0, size - side + 1))
    if kind == 1:
        return crop(a, top=top, left=left, side=side)
    return pad(a, scale=side / size, top=top, left=left, fill=fill)


def random_source_cues(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The source-cue augmentations, each applied with its CUE_PROBABILITY and random parameters drawn from
    `rng` (deterministic for its seed): frame, resolution, sharpness, contrast/gamma curve, marks, then JPEG."""
    a = _image(img)
    size = a.shape[0]
    p = CUE_PROBABILITY
    if rng.random() < p["frame"]:
        a = random_frame(a, rng)
    if rng.random() < p["resample"]:
        a = resample(a, factor=float(rng.uniform(*RESAMPLE_FACTOR)), nearest=bool(rng.random() < 0.3))
    if rng.random() < p["sharpness"]:
        sigma = max(0.3, size * float(rng.uniform(*BLUR_SIGMA)))
        a = blur(a, sigma=sigma) if rng.random() < 0.7 else sharpen(a, sigma=sigma, amount=float(rng.uniform(0.3, 1.0)))
    if rng.random() < p["curve"]:
        if rng.random() < 0.5:
            a = gamma(a, g=float(math.exp(rng.uniform(math.log(GAMMA[0]), math.log(GAMMA[1])))))
        else:
            a = contrast_curve(a, gain=float(rng.uniform(*CURVE_GAIN)), midpoint=float(rng.uniform(0.35, 0.65)))
    if rng.random() < p["marks"]:
        a = random_marks(a, rng)
    if rng.random() < p["jpeg"]:
        a = jpeg(a, quality=int(rng.integers(JPEG_QUALITY[0], JPEG_QUALITY[1] + 1)))
    return np.clip(a, 0.0, 1.0).astype(np.float32)


def source_cue_batch(x: np.ndarray, seed) -> np.ndarray:
    """`random_source_cues` on every image of a batch (B, S, S, 1) float32 in [0, 1], one Generator seeded by
    `seed` (any integers, e.g. the pair fl.data draws per batch) for the whole batch."""
    x = np.asarray(x, np.float32)
    rng = np.random.default_rng([int(s) % (1 << 63) for s in np.ravel(seed)])
    out = np.empty_like(x)
    for i in range(x.shape[0]):
        out[i, ..., 0] = random_source_cues(x[i, ..., 0], rng)
    return out

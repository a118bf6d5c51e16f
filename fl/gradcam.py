"""GradCAM in the same compiled pass as the prediction, plus the colour map and overlay used everywhere."""

from __future__ import annotations

import numpy as np

from fl.model import Architecture

PREDICTED = -1  # class index meaning "explain the predicted class"


def class_indices(class_index: int | list[int] | None, n: int) -> np.ndarray:
    """The class to explain per image (B,): PREDICTED (-1, the predicted class) when None, one class for all, or
    one per image. Shared by the GradCAM explainer and the LiteRT one (fl.litert)."""
    if class_index is None:
        return np.full(n, PREDICTED, np.int64)
    if np.isscalar(class_index):
        return np.full(n, int(class_index), np.int64)
    return np.asarray(class_index, np.int64)


class Explainer:
    """Probabilities and GradCAM maps from one compiled forward pass (Selvaraju et al. 2017).

    The gradient of the chosen class's logit flows back only to the target feature map, so the
    heatmap costs little beyond the forward pass itself. It is the logit, not the softmax output, that is
    differentiated: with the head global average pooling -> dense logits, that makes this GradCAM exactly the
    class activation map the LiteRT path computes in its forward pass (fl.litert; tests/fl/test_litert.py).
    This is the TensorFlow path: for models without a LiteRT artefact, and the reference the tests compare with.
    """

    def __init__(self, model, arch: Architecture):
        import keras
        import tensorflow as tf

        target = model.get_layer(arch.gradcam_layer)
        logits = model.get_layer("logits").output
        self._grad_model = keras.Model(model.inputs, [target.output, logits, model.output])
        size = model.input_shape[1]
        self.input_size = int(size)
        self._step = tf.function(
            self._explain,
            input_signature=[
                tf.TensorSpec([None, size, size, 3], tf.float32),
                tf.TensorSpec([None], tf.int32),
            ],
            reduce_retracing=True,
        )
        self._forward = tf.function(
            lambda x: model(x, training=False),
            input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32)],
        )

    def _explain(self, x, class_index):
        import tensorflow as tf

        with tf.GradientTape() as tape:
            features, logits, probs = self._grad_model(x, training=False)
            chosen = tf.where(class_index < 0, tf.argmax(probs, axis=-1, output_type=tf.int32), class_index)
            score = tf.reduce_sum(tf.gather(logits, chosen, axis=1, batch_dims=1))
        grads = tape.gradient(score, features)
        channel_weights = tf.reduce_mean(grads, axis=(1, 2))  # (B, C)
        cam = tf.nn.relu(tf.einsum("bhwc,bc->bhw", features, channel_weights))
        peak = tf.reduce_max(cam, axis=(1, 2), keepdims=True)
        cam = tf.math.divide_no_nan(cam, peak)
        return probs, cam, chosen

    def __call__(self, batch: np.ndarray, class_index: int | list[int] | None = None):
        """Return (probabilities (B,C), GradCAM maps (B,h,w) scaled 0-1, explained class per image (B,))."""
        batch = np.asarray(batch, dtype=np.float32)
        if batch.ndim == 3:
            batch = batch[None]
        probs, cams, chosen = self._step(batch, class_indices(class_index, batch.shape[0]).astype(np.int32))
        return probs.numpy(), cams.numpy(), chosen.numpy()

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Probabilities only: the bare compiled forward pass."""
        return self._forward(np.asarray(batch, dtype=np.float32)).numpy()


# Inferno (van der Walt & Smith, matplotlib 1.5): perceptually uniform, its lightness rises steadily from black to
# pale yellow, so "hotter" always reads as "brighter", also in grayscale print and for colour-blind readers.
# Degree-6 polynomial fit per channel (M. Zucker, 2020), within 5/255 of the published table.
_INFERNO = np.array([
    [0.0002189403691192265, 0.001651004631001012, -0.01948089843709184],
    [0.1065134194856116, 0.5639564367884091, 3.932712388889277],
    [11.60249308247187, -3.972853965665698, -15.9423941062914],
    [-41.70399613139459, 17.43639888205313, 44.35414519872813],
    [77.162935699427, -33.40235894210092, -81.80730925738993],
    [-71.31942824499214, 32.62606426397723, 73.20951985803202],
    [25.13112622477341, -12.24266895238567, -23.07032500287172],
])
COLORMAP_NAME = "inferno"
TRANSPARENT_BELOW = 0.15  # attention (share of the map's peak) below which the overlay leaves the image untouched
OPAQUE_FROM = 0.55        # attention from which the overlay is drawn at the full chosen opacity
LEGEND_TICKS = (0.0, 0.25, 0.5, 0.75, 1.0)


def _inferno_lut() -> np.ndarray:
    """The inferno colour map, 256 x RGB uint8."""
    x = np.linspace(0.0, 1.0, 256)[:, None]
    rgb = sum(_INFERNO[i] * x**i for i in range(len(_INFERNO)))
    return (np.clip(rgb, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


COLORMAP = _inferno_lut()


def colorize(heat: np.ndarray) -> np.ndarray:
    """Map a 0-1 heatmap to RGB uint8 with the inferno colour map (black-purple = low, yellow = high)."""
    idx = np.clip(np.nan_to_num(np.asarray(heat, np.float32)) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return COLORMAP[idx]


def attention_alpha(heat: np.ndarray) -> np.ndarray:
    """Opacity 0-1 of the overlay per pixel: 0 below TRANSPARENT_BELOW (low attention leaves the image as it is),
    rising smoothly (smoothstep) to 1 at OPAQUE_FROM."""
    t = np.clip((np.nan_to_num(np.asarray(heat, np.float32)) - TRANSPARENT_BELOW) / (OPAQUE_FROM - TRANSPARENT_BELOW),
                0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def overlay(gray: np.ndarray, heat: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """Blend the coloured heatmap over a 0-1 grayscale image; attention below TRANSPARENT_BELOW leaves it untouched."""
    gray = np.clip(np.asarray(gray, np.float32), 0.0, 1.0)
    heat = np.clip(np.asarray(heat, np.float32), 0.0, 1.0)
    if gray.shape != heat.shape:
        raise ValueError(f"image {gray.shape} and heatmap {heat.shape} differ in size")
    base = np.repeat(gray[..., None] * 255.0, 3, axis=2)
    weight = (float(np.clip(alpha, 0.0, 1.0)) * attention_alpha(heat))[..., None]
    out = base * (1.0 - weight) + colorize(heat).astype(np.float32) * weight
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def legend(width: int = 256, height: int = 12) -> np.ndarray:
    """A horizontal colour bar (RGB uint8) matching `colorize`, low on the left."""
    ramp = np.tile(np.linspace(0.0, 1.0, width, dtype=np.float32), (height, 1))
    return colorize(ramp)

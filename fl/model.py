"""The one model builder: SE-ResNet50V2 (default), DenseNet121, and a tiny network for tests.

Importing this module is cheap: TensorFlow/Keras are imported inside the builders.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from fl.classes import CLASS_LABELS, CLASSES

__all__ = [
    "ARCHITECTURES",
    "CLASSES",
    "CLASS_LABELS",
    "Architecture",
    "WeightsError",
    "build_model",
    "get_architecture",
]

_BN_EPS = 1.001e-5


class WeightsError(Exception):
    """Initial weights could not be obtained or do not fit the architecture."""


@dataclass(frozen=True)
class Architecture:
    """What the rest of FedXray needs to know about a network."""

    name: str
    gradcam_layer: str  # last convolutional feature map; GradCAM explains this layer
    scaling: str  # input scaling: "tf" -> [-1, 1]; "torch" -> ImageNet mean/std
    description: str
    # (filters, blocks, stride of the last block) per residual stage; None for non-ResNet networks
    stages: tuple[tuple[int, int, int], ...] | None = None
    stem_filters: int = 64
    se_ratio: int = 16


ARCHITECTURES: dict[str, Architecture] = {
    "se_resnet50v2": Architecture(
        name="se_resnet50v2",
        gradcam_layer="post_relu",
        scaling="tf",
        description="ResNet50V2 with a squeeze-and-excitation block in every residual block (Hu et al. 2018)",
        stages=((64, 3, 2), (128, 4, 2), (256, 6, 2), (512, 3, 1)),
    ),
    "densenet121": Architecture(
        name="densenet121",
        gradcam_layer="relu",
        scaling="torch",
        description="DenseNet121 (Huang et al. 2017), as in CheXNet",
    ),
    "tiny": Architecture(
        name="tiny",
        gradcam_layer="post_relu",
        scaling="tf",
        description="Small SE-ResNetV2 for tests: same code path and layer names as se_resnet50v2",
        stages=((8, 1, 2), (16, 1, 1)),
        stem_filters=8,
        se_ratio=4,
    ),
}


def get_architecture(name: str) -> Architecture:
    """The architecture called `name`; a clear error lists the known ones."""
    try:
        return ARCHITECTURES[name]
    except KeyError:
        raise ValueError(f"unknown architecture {name!r}; known: {', '.join(ARCHITECTURES)}") from None


def build_model(
    arch: str = "se_resnet50v2",
    *,
    input_size: int = 224,
    num_classes: int = len(CLASSES),
    weights: str | os.PathLike | None = None,
    dropout: float = 0.3,
):
    """Build the network `arch` for (input_size, input_size, 3) inputs already scaled for it.

    `weights`: None (random), "imagenet" (Keras' ImageNet backbone, needs network access once), a Keras
    applications backbone weights file (.h5), or a FedXray model weights file (.safetensors) for the whole network.
    The output layers are "logits" (Dense) followed by "predictions" (softmax).
    """
    import keras

    spec = get_architecture(arch)
    if input_size < 32:
        raise ValueError(f"input size {input_size} is too small (minimum 32)")
    inputs = keras.Input((input_size, input_size, 3), name="image")
    backbone_weights = None
    full_weights = None
    if weights is not None:
        if str(weights) == "imagenet":
            backbone_weights = "imagenet"
        elif Path(weights).suffix == ".safetensors":
            full_weights = Path(weights)
        else:
            backbone_weights = Path(weights)
            if not backbone_weights.is_file():
                raise WeightsError(f"weights file {backbone_weights} does not exist")

    if spec.name == "densenet121":
        features = _densenet121(inputs, backbone_weights)
    else:
        features = _se_resnet_v2(inputs, spec)
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(features)
    x = keras.layers.Dropout(dropout, name="head_dropout")(x)
    x = keras.layers.Dense(num_classes, name="logits")(x)
    outputs = keras.layers.Activation("softmax", name="predictions", dtype="float32")(x)
    model = keras.Model(inputs, outputs, name=spec.name)

    if backbone_weights is not None and spec.name != "densenet121":
        _transfer_resnet50v2_backbone(model, spec, input_size, backbone_weights)
    if full_weights is not None:
        from fl.modelfile import load_weights_file

        load_weights_file(model, full_weights)
    return model


# ------------------------------------------------------------------ SE-ResNetV2


def _se_block(x, filters: int, ratio: int, name: str):
    """Squeeze-and-excitation: channel attention on a residual branch."""
    import keras

    s = keras.layers.GlobalAveragePooling2D(keepdims=True, name=name + "_se_squeeze")(x)
    s = keras.layers.Conv2D(max(filters // ratio, 4), 1, activation="relu", name=name + "_se_reduce")(s)
    s = keras.layers.Conv2D(filters, 1, activation="sigmoid", name=name + "_se_expand")(s)
    return keras.layers.Multiply(name=name + "_se_scale")([x, s])


def _residual_block_v2(x, filters, *, stride=1, conv_shortcut=False, se_ratio=16, name=""):
    """Keras' ResNetV2 bottleneck block (same layer names) with SE on the residual branch."""
    from keras import layers

    preact = layers.BatchNormalization(epsilon=_BN_EPS, name=name + "_preact_bn")(x)
    preact = layers.Activation("relu", name=name + "_preact_relu")(preact)
    if conv_shortcut:
        shortcut = layers.Conv2D(4 * filters, 1, strides=stride, name=name + "_0_conv")(preact)
    elif stride > 1:
        shortcut = layers.MaxPooling2D(1, strides=stride, name=name + "_0_pool")(x)
    else:
        shortcut = x
    y = layers.Conv2D(filters, 1, use_bias=False, name=name + "_1_conv")(preact)
    y = layers.BatchNormalization(epsilon=_BN_EPS, name=name + "_1_bn")(y)
    y = layers.Activation("relu", name=name + "_1_relu")(y)
    y = layers.ZeroPadding2D(((1, 1), (1, 1)), name=name + "_2_pad")(y)
    y = layers.Conv2D(filters, 3, strides=stride, use_bias=False, name=name + "_2_conv")(y)
    y = layers.BatchNormalization(epsilon=_BN_EPS, name=name + "_2_bn")(y)
    y = layers.Activation("relu", name=name + "_2_relu")(y)
    y = layers.Conv2D(4 * filters, 1, name=name + "_3_conv")(y)
    y = _se_block(y, 4 * filters, se_ratio, name)
    return layers.Add(name=name + "_out")([shortcut, y])


def _se_resnet_v2(inputs, spec: Architecture):
    """ResNetV2 body with SE blocks; layer names follow keras.applications.ResNet50V2."""
    from keras import layers

    x = layers.ZeroPadding2D(((3, 3), (3, 3)), name="conv1_pad")(inputs)
    x = layers.Conv2D(spec.stem_filters, 7, strides=2, name="conv1_conv")(x)
    x = layers.ZeroPadding2D(((1, 1), (1, 1)), name="pool1_pad")(x)
    x = layers.MaxPooling2D(3, strides=2, name="pool1_pool")(x)
    for stage, (filters, blocks, last_stride) in enumerate(spec.stages, start=2):
        for b in range(1, blocks + 1):
            x = _residual_block_v2(
                x,
                filters,
                stride=last_stride if b == blocks else 1,
                conv_shortcut=b == 1,
                se_ratio=spec.se_ratio,
                name=f"conv{stage}_block{b}",
            )
    x = layers.BatchNormalization(epsilon=_BN_EPS, name="post_bn")(x)
    return layers.Activation("relu", name="post_relu")(x)


def _keras_backbone(factory, weights, **kwargs):
    """Run Keras' own loading code for a backbone; turn its failures into a WeightsError a person can act on."""
    try:
        return factory(include_top=False, weights=None if weights is None else str(weights), **kwargs)
    except Exception as exc:  # Keras raises a bare Exception on a failed download
        if weights == "imagenet":
            raise WeightsError(
                "ImageNet weights could not be downloaded (this computer seems to have no internet access). "
                "Download the Keras weights file once elsewhere and pass its path instead, "
                f"or train without pretrained weights. Details: {exc}"
            ) from None
        raise WeightsError(f"the weights file {weights} could not be loaded: {exc}") from None


def _transfer_resnet50v2_backbone(model, spec: Architecture, input_size: int, weights) -> None:
    """Copy ResNet50V2 backbone weights (ImageNet or a file) into the SE network, layer by layer by name."""
    import keras

    if spec.name != "se_resnet50v2":
        raise WeightsError(f"pretrained backbone weights are not available for the {spec.name!r} network")
    source = _keras_backbone(
        keras.applications.ResNet50V2, weights, input_shape=(input_size, input_size, 3)
    )
    copied = 0
    for layer in source.layers:
        if not layer.weights:
            continue
        try:
            target = model.get_layer(layer.name)
        except ValueError:
            raise WeightsError(f"backbone layer {layer.name!r} has no counterpart in {spec.name}") from None
        target.set_weights(layer.get_weights())
        copied += 1
    if copied == 0:
        raise WeightsError("the backbone weights file held no layers to copy")


def _densenet121(inputs, weights):
    """DenseNet121 backbone built on `inputs`, so that its layers are part of one flat model."""
    import keras

    return _keras_backbone(keras.applications.DenseNet121, weights, input_tensor=inputs).output

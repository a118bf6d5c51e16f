"""The one model builder: architectures, layer naming, weights loading."""

from __future__ import annotations

import numpy as np
import pytest

from fl.classes import CLASSES
from fl.model import ARCHITECTURES, WeightsError, build_model, get_architecture


@pytest.mark.parametrize("arch", ["tiny", "se_resnet50v2", "densenet121"])
def test_builds_four_way_softmax_with_gradcam_layer(arch):
    model = build_model(arch, input_size=64)
    x = np.random.default_rng(0).uniform(-1, 1, (2, 64, 64, 3)).astype("float32")
    probs = np.asarray(model(x, training=False))
    assert probs.shape == (2, len(CLASSES))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    spec = get_architecture(arch)
    assert len(model.get_layer(spec.gradcam_layer).output.shape) == 4
    assert [model.layers[-2].name, model.layers[-1].name] == ["logits", "predictions"]


def test_tiny_network_shares_layer_names_with_se_resnet50v2():
    tiny = {layer.name for layer in build_model("tiny", input_size=64).layers}
    full = {layer.name for layer in build_model("se_resnet50v2", input_size=64).layers}
    shared = {"conv1_conv", "pool1_pool", "conv2_block1_0_conv", "conv2_block1_se_expand", "post_relu", "logits"}
    assert shared <= tiny and shared <= full
    assert tiny < full


def test_se_resnet50v2_has_se_in_every_block_and_resnet50v2_names():
    import keras

    model = build_model("se_resnet50v2", input_size=64)
    blocks = {n.rsplit("_se_scale", 1)[0] for n in (layer.name for layer in model.layers) if n.endswith("_se_scale")}
    assert len(blocks) == 3 + 4 + 6 + 3  # the 16 bottleneck blocks of ResNet50
    reference = keras.applications.ResNet50V2(include_top=False, weights=None, input_shape=(64, 64, 3))
    names = {layer.name for layer in model.layers}
    assert all(layer.name in names for layer in reference.layers if layer.weights)


def test_unknown_architecture_lists_known_ones():
    with pytest.raises(ValueError, match="se_resnet50v2"):
        get_architecture("resnet9000")


def test_imagenet_without_network_fails_with_a_clear_message(monkeypatch):
    # The internet cannot be reached here; make the failure deterministic the way Keras reports it offline.
    import keras

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure on https://storage.googleapis.com/...: None -- [Errno -3] no network")

    monkeypatch.setattr(keras.utils, "get_file", offline)
    monkeypatch.setattr("keras.src.applications.resnet.file_utils.get_file", offline)
    with pytest.raises(WeightsError, match="ImageNet weights could not be downloaded"):
        build_model("se_resnet50v2", input_size=64, weights="imagenet")


def test_backbone_weights_file_is_copied_into_the_se_network(tmp_path):
    import keras

    backbone = keras.applications.ResNet50V2(include_top=False, weights=None, input_shape=(64, 64, 3))
    path = tmp_path / "resnet50v2_notop.weights.h5"
    backbone.save_weights(path)
    model = build_model("se_resnet50v2", input_size=64, weights=path)
    for name in ("conv1_conv", "conv3_block2_2_conv", "post_bn"):
        for got, want in zip(model.get_layer(name).get_weights(), backbone.get_layer(name).get_weights(), strict=True):
            np.testing.assert_array_equal(got, want)


def test_missing_weights_file_is_a_weights_error(tmp_path):
    with pytest.raises(WeightsError, match="does not exist"):
        build_model("se_resnet50v2", input_size=64, weights=tmp_path / "nope.h5")


def test_every_architecture_names_its_scaling():
    assert {a.scaling for a in ARCHITECTURES.values()} <= {"tf", "torch"}

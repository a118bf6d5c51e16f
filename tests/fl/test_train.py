"""fl.train pieces used by federated training: batch-norm statistics re-estimated on a site's images."""

import numpy as np
import pytest

from fl.classes import CLASSES


@pytest.fixture(scope="module")
def samples(shared_data):
    from fl.data import discover

    every = discover(shared_data / "cxr")
    return [s for c in range(len(CLASSES)) for s in [x for x in every if x.label == c][:3]]  # 12 images


def test_recalibrated_statistics_are_those_of_the_images(samples):
    import keras

    from fl.model import build_model, get_architecture
    from fl.preprocess import preprocess, read_image
    from fl.train import batchnorm_layers, recalibrate_batchnorm

    model = build_model("tiny", input_size=64)
    scaling = get_architecture("tiny").scaling
    layers = batchnorm_layers(model)
    assert len(layers) > 3 and all(layer.momentum == 0.99 for layer in layers)
    first = model.get_layer("conv2_block1_preact_bn")  # only a convolution and pooling lie before it
    # Batches of 5, 5 and 2: the statistics must be those of all 12 images, not a mean of batch means.
    used = recalibrate_batchnorm(model, samples, input_size=64, scaling=scaling, batch_size=5)
    assert used == len(samples)
    assert all(layer.momentum == 0.99 for layer in layers)  # restored
    # Recomputed here: the stem's output for every image (inference preprocessing), per-channel mean/variance.
    stem = keras.Model(model.input, first.input)
    x = np.concatenate([preprocess(read_image(s.path), input_size=64, scaling=scaling)[0][None] for s in samples])
    features = np.asarray(stem(x, training=False)).reshape(-1, first.moving_mean.shape[0]).astype(np.float64)
    assert np.allclose(first.moving_mean.numpy(), features.mean(0), rtol=1e-4, atol=1e-5)
    assert np.allclose(first.moving_variance.numpy(), features.var(0), rtol=1e-3, atol=1e-6)
    untouched = build_model("tiny", input_size=64).get_layer("conv2_block1_preact_bn")
    assert not np.allclose(untouched.moving_variance.numpy(), first.moving_variance.numpy())


def test_no_images_change_nothing():
    from fl.model import build_model
    from fl.train import batchnorm_layers, recalibrate_batchnorm

    model = build_model("tiny", input_size=64)
    before = [layer.moving_variance.numpy().copy() for layer in batchnorm_layers(model)]
    assert recalibrate_batchnorm(model, [], input_size=64, scaling="tf") == 0
    assert all(np.array_equal(b, layer.moving_variance.numpy())
               for b, layer in zip(before, batchnorm_layers(model), strict=True))  # fmt: skip

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


def _trained_tiny(samples, steps_seed=0):
    """A tiny network compiled with FedXray's optimiser and trained one epoch on `samples` (batch 4)."""
    import keras

    from fl.model import build_model, get_architecture
    from fl.train import compile_model, fit_local

    keras.utils.set_random_seed(steps_seed)
    model = compile_model(build_model("tiny", input_size=32), 1e-3)
    fit_local(model, samples, input_size=32, scaling=get_architecture("tiny").scaling, epochs=1, batch_size=4,
              augment=False, verbose=0)  # fmt: skip
    return model


def test_optimizer_state_round_trips_into_a_new_optimizer(samples):
    from fl.model import build_model
    from fl.train import compile_model, get_optimizer_state, set_optimizer_state

    trained = _trained_tiny(samples)
    state = get_optimizer_state(trained.optimizer)
    own = [v for v in trained.optimizer.variables if not v.path.endswith("/learning_rate")]
    assert len(state) == len(own) == 1 + 2 * len(trained.trainable_variables)  # steps + Adam's two moments
    steps = next(v for v in own if v.path.endswith("/iteration"))
    assert int(steps.numpy()) >= -(-len(samples) // 4)  # 12 images, batch 4: 3 batches (Keras may count one
    # more step for a dataset of unknown length, at the end of the epoch)

    fresh = compile_model(build_model("tiny", input_size=32), 1e-3)
    assert set_optimizer_state(fresh.optimizer, fresh.trainable_variables, state)
    mine = [v for v in fresh.optimizer.variables if not v.path.endswith("/learning_rate")]
    assert all(np.array_equal(a.numpy(), b.numpy()) for a, b in zip(own, mine, strict=True))
    assert float(fresh.optimizer.learning_rate.numpy()) == pytest.approx(1e-3)  # a setting, not state


def test_optimizer_state_of_another_network_is_refused_and_changes_nothing(samples):
    from fl.model import build_model
    from fl.train import compile_model, get_optimizer_state, set_optimizer_state

    state = get_optimizer_state(_trained_tiny(samples).optimizer)
    state = {k: np.zeros((np.size(v) + 1,), np.float32) if np.ndim(v) else v for k, v in state.items()}
    other = compile_model(build_model("tiny", input_size=32), 1e-3)
    assert not set_optimizer_state(other.optimizer, other.trainable_variables, state)
    assert all(not np.any(v.numpy()) for v in other.optimizer.variables if not v.path.endswith("/learning_rate"))


def test_the_federated_learning_rate_is_one_cosine_over_all_rounds():
    import math

    from fl.train import cosine_over_rounds

    rounds, steps, lr, alpha = 4, 10, 1e-3, 0.05

    def expected(done):  # written out: cosine from lr to alpha x lr over rounds x steps optimiser steps
        p = min(done / (rounds * steps), 1.0)
        return lr * (alpha + (1 - alpha) * 0.5 * (1 + math.cos(math.pi * p)))

    for r in range(rounds):
        schedule = cosine_over_rounds(lr, round_index=r, rounds=rounds, round_steps=steps)
        schedule.start = 37 * r  # the step count a kept optimiser state brings along
        for k in (0, 3, steps):
            assert float(schedule(schedule.start + k)) == pytest.approx(expected(r * steps + k), rel=1e-5)
    assert expected(0) == lr and expected(rounds * steps) == pytest.approx(alpha * lr)
    last = cosine_over_rounds(lr, round_index=rounds - 1, rounds=rounds, round_steps=steps)
    assert float(last(steps + 5)) == pytest.approx(alpha * lr, rel=1e-5)  # steps beyond the budget stay at the end


@pytest.mark.parametrize("mode", ["source_weights", "class_weights", "none"])
def test_the_training_loss_is_weighted_as_asked(shared_data, mode):
    """fit_local's loss is the mean of weight x cross-entropy, the weights per (source, class) cell, per class or 1."""
    import keras

    from fl.data import class_weights, discover, make_dataset, source_class_weights
    from fl.model import build_model
    from fl.train import compile_model, fit_local

    every = discover(shared_data / "cxr")
    # Both sources where a class has them (Covid: case reports only), unequal cells.
    picked = []
    for c in range(len(CLASSES)):
        by_source: dict[str, list] = {}
        for s in every:
            if s.label == c:
                by_source.setdefault(s.source, []).append(s)
        for i, group in enumerate(sorted(by_source.values(), key=len)):
            picked += group[:2 + 2 * i]
    assert len({s.source for s in picked}) == 2
    keras.utils.set_random_seed(0)
    # Learning rate 0: the weights stay put; no dropout: the forward pass is the same twice.
    model = compile_model(build_model("tiny", input_size=32, dropout=0.0), 0.0)

    # Expected: the per-sample cross-entropy of the training-mode forward pass (batch statistics, which do not
    # depend on the order), weighted by hand.
    x, y = next(iter(make_dataset(picked, input_size=32, scaling="tf", batch_size=len(picked), training=False)))
    p = np.clip(model(x, training=True).numpy().astype(np.float64), 1e-7, 1 - 1e-7)
    labels = y.numpy().argmax(1)
    ce = -np.log(p[np.arange(len(labels)), labels] / p.sum(axis=1))
    if mode == "source_weights":
        cells = source_class_weights(picked)
        w = np.array([cells[(s.source, s.label)] for s in picked])
    elif mode == "class_weights":
        per_class = class_weights(picked)
        w = np.array([per_class[s.label] for s in picked])
    else:
        w = np.ones(len(picked))
    assert mode == "none" or np.ptp(w) > 0.1
    expected = float(np.sum(w * ce) / len(picked))

    history = fit_local(model, picked, input_size=32, scaling="tf", epochs=1, batch_size=len(picked), seed=0,
                        augment=False, balance=mode == "class_weights", source_weights=mode == "source_weights",
                        verbose=0)  # fmt: skip
    assert history["loss"][0] == pytest.approx(expected, rel=1e-4)

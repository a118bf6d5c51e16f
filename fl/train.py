"""Centralised training and evaluation on a class-folder dataset, shared by `fedxray train` and the Flower apps."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from fl.classes import CLASSES
from fl.cohorts import cohort_figures
from fl.data import (
    Sample,
    class_weights,
    discover,
    fingerprint,
    make_dataset,
    sample_weights,
    split_by_patient,
)
from fl.metrics import compute_metrics
from fl.model import build_model, get_architecture
from fl.modelfile import ModelCard, save_model

# Cosine learning-rate decays end at this fraction of the initial rate (`train` and federated runs alike).
COSINE_ALPHA = 0.05


@dataclass
class TrainConfig:
    """Settings of one training run; recorded in the model card."""

    arch: str = "se_resnet50v2"
    input_size: int = 224
    epochs: int = 10
    batch_size: int = 8
    learning_rate: float = 1e-3
    val_fraction: float = 0.2
    seed: int = 0
    weights: str | None = None
    augment: bool = True
    balance_classes: bool = True
    source_weights: bool = False
    source_cues: bool = False


def compile_model(model, learning_rate, *, label_smoothing: float = 0.0):
    """Compile with Adam (a rate or a schedule) and categorical cross-entropy (the loss the metrics report)."""
    import keras

    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing),
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
    )
    return model


def predict_dataset(model, dataset) -> tuple[np.ndarray, np.ndarray]:
    """Run `model` over a (x, one-hot y) dataset; returns (true labels, probabilities)."""
    import tensorflow as tf

    forward = tf.function(lambda x: model(x, training=False))
    ys, ps = [], []
    for x, y in dataset:
        ps.append(forward(x).numpy())
        ys.append(np.argmax(y.numpy(), axis=1))
    if not ps:
        return np.zeros(0, int), np.zeros((0, len(CLASSES)), np.float32)
    return np.concatenate(ys), np.concatenate(ps)


def metrics_with_cohorts(y: np.ndarray, p: np.ndarray, samples: Sequence[Sample]) -> dict:
    """compute_metrics, plus the cohort figures (fl.cohorts) when every sample was read (y in samples' order)."""
    m = compute_metrics(y, p)
    if len(y) == len(samples) and [int(s.label) for s in samples] == [int(v) for v in y]:
        m.update(cohort_figures(y, p, [s.population for s in samples]))
    return m


def evaluate_samples(model, samples: Sequence[Sample], *, input_size: int, scaling: str, batch_size: int = 16) -> dict:
    """All FedXray metrics of `model` on `samples`, with the cohort figures of fl.cohorts."""
    ds = make_dataset(samples, input_size=input_size, scaling=scaling, batch_size=batch_size, training=False)
    y, p = predict_dataset(model, ds)
    return metrics_with_cohorts(y, p, samples)


def fit_local(model, samples: Sequence[Sample], *, input_size: int, scaling: str, epochs: int, batch_size: int,
              seed: int = 0, augment: bool = True, balance: bool = True, source_weights: bool = False,
              source_cues: bool = False, callbacks=None, verbose="auto"):
    """Train `model` (compiled) on `samples` for `epochs`; returns the Keras history dict.

    Loss weights: per (source, class) cell when `source_weights` (fl.data.source_class_weights; with one
    source these are class weights), else per class when `balance`, else none. `source_cues` adds the
    source-cue augmentations of fl.augment, `augment` the geometric and intensity ones."""
    weights = sample_weights(samples) if source_weights else None
    ds = make_dataset(samples, input_size=input_size, scaling=scaling, batch_size=batch_size, training=True,
                      augment=augment, source_cues=source_cues, weights=weights, seed=seed)
    per_class = class_weights(samples, len(CLASSES)) if balance and not source_weights else None
    history = model.fit(ds, epochs=epochs, class_weight=per_class, callbacks=callbacks or [], verbose=verbose)
    return history.history


def batchnorm_layers(model) -> list:
    """Every BatchNormalization layer of `model`, also inside nested models."""
    import keras

    found, stack = [], list(model.layers)
    while stack:
        layer = stack.pop(0)
        if isinstance(layer, keras.layers.BatchNormalization):
            found.append(layer)
        stack.extend(getattr(layer, "layers", []) if isinstance(layer, keras.Model) else [])
    return found


def cosine_over_rounds(learning_rate: float, *, round_index: int, rounds: int, round_steps: int):
    """The learning rate of a federated run as one cosine decay over all its rounds' steps (from
    `learning_rate` down to COSINE_ALPHA x learning_rate, as `train` decays over its epochs), for the steps of
    round `round_index` (0-based; each round `round_steps` optimiser steps). Set `.start` to the optimiser's step
    count when the round's training begins (a kept optimiser state carries its count from earlier rounds).

    Keras's CosineDecay has the same curve but rounds differently; this formula is kept because the benchmark
    figures in README.md were measured with it (a last-bit change moves a whole training run)."""
    import math

    import keras
    from keras import ops

    total = float(max(1, rounds) * max(1, round_steps))
    done_before = float(round_index * max(1, round_steps))

    class CosineOverRounds(keras.optimizers.schedules.LearningRateSchedule):
        start = 0

        def __call__(self, step):
            done = ops.cast(step, "float32") - float(self.start) + done_before
            progress = ops.clip(done / total, 0.0, 1.0)
            return learning_rate * (COSINE_ALPHA + (1.0 - COSINE_ALPHA) * 0.5 * (1.0 + ops.cos(math.pi * progress)))

        def get_config(self):
            return {"learning_rate": learning_rate, "round_index": round_index, "rounds": rounds,
                    "round_steps": round_steps}  # fmt: skip

    return CosineOverRounds()


def _state_variables(optimizer) -> dict:
    """The optimiser's own variables (Adam: step count, first and second moments) keyed by position, "0000",
    "0001", …; the learning rate is left out (it is a setting, not state). Keras names an optimiser's variables
    after the instance ("adam", "adam_1", …), so the position is the stable key for the same network."""
    return {f"{i:04d}": v for i, v in enumerate(optimizer.variables) if not v.path.endswith("/learning_rate")}


def get_optimizer_state(optimizer) -> dict[str, np.ndarray]:
    """The optimiser's state as arrays (see _state_variables)."""
    return {k: np.asarray(v.numpy()) for k, v in _state_variables(optimizer).items()}


def set_optimizer_state(optimizer, variables, state: dict[str, np.ndarray]) -> bool:
    """Build `optimizer` for `variables` and load `state` (from get_optimizer_state of the same network and
    optimiser). Returns False, changing nothing, when the state does not fit (another network or optimiser)."""
    optimizer.build(variables)
    own = _state_variables(optimizer)
    if set(own) != set(state) or any(tuple(v.shape) != tuple(np.shape(state[k])) for k, v in own.items()):
        return False
    for k, v in own.items():
        v.assign(state[k])
    return True


def recalibrate_batchnorm(model, samples: Sequence[Sample], *, input_size: int, scaling: str,
                          batch_size: int = 32) -> int:  # fmt: skip
    """Set every batch-norm layer's moving mean and variance to the statistics of `samples` (preprocessed as for
    inference, no augmentation): the mean and variance of each channel over all images and positions, pooled
    from per-batch statistics. Returns the number of images used (0: nothing changed).

    Why: the moving averages (momentum 0.99) need hundreds of steps to forget where they started. A site's few
    local steps per federated round leave them close to the incoming global model's, so the global model's
    inference statistics never settle on the data; re-estimating them after local training (as SWA does after
    averaging weights) gives each site's true statistics, which the server pools (fl.strategy)."""
    import tensorflow as tf

    layers = batchnorm_layers(model)
    if not layers or not samples:
        return 0
    ds = make_dataset(samples, input_size=input_size, scaling=scaling, batch_size=batch_size, training=False,
                      cache=False)  # fmt: skip
    saved = [layer.momentum for layer in layers]
    for layer in layers:
        layer.momentum = 0.0  # read when traced: after each call the moving statistics are that batch's
    forward = tf.function(lambda x: model(x, training=True))
    n, sums = 0, [(0.0, 0.0) for _ in layers]
    try:
        for x, _y in ds:
            b = int(x.shape[0])
            forward(x)
            batch_stats = [(layer.moving_mean.numpy().astype(np.float64),
                            layer.moving_variance.numpy().astype(np.float64)) for layer in layers]  # fmt: skip
            sums = [(s1 + b * mean, s2 + b * (var + mean**2))
                    for (s1, s2), (mean, var) in zip(sums, batch_stats, strict=True)]  # fmt: skip
            n += b
    finally:
        for layer, momentum in zip(layers, saved, strict=True):
            layer.momentum = momentum
    if n == 0:  # no readable image: no forward pass ran, the statistics are as they were
        return 0
    for layer, (s1, s2) in zip(layers, sums, strict=True):
        mean = s1 / n
        layer.moving_mean.assign(mean.astype(np.float32))
        layer.moving_variance.assign(np.maximum(s2 / n - mean**2, 0.0).astype(np.float32))
    return n


def train(
    data_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    config: TrainConfig,
    *,
    name: str = "FedXray SE-ResNet50V2",
    version: str = "0.1.0",
    demo: bool = False,
    description: str = "",
    on_epoch: Callable[[int, dict], None] | None = None,
    verbose="auto",
) -> ModelCard:
    """Train on `data_dir` with a patient-level validation split; the best epoch (validation macro-F1,
    then loss) is saved to `out_dir` as soon as it is reached, and again at the end with its full metrics."""
    import keras

    keras.utils.set_random_seed(config.seed)
    arch = get_architecture(config.arch)
    samples = discover(data_dir)
    if not samples:
        raise ValueError(f"no images found in {data_dir}: expected class folders such as {', '.join(CLASSES)}")
    train_s, val_s = split_by_patient(samples, val_fraction=config.val_fraction, seed=config.seed)
    steps = max(1, -(-len(train_s) // config.batch_size)) * config.epochs
    schedule = keras.optimizers.schedules.CosineDecay(config.learning_rate, decay_steps=steps, alpha=COSINE_ALPHA)
    model = compile_model(build_model(config.arch, input_size=config.input_size, weights=config.weights), schedule)
    val_ds = make_dataset(val_s, input_size=config.input_size, scaling=arch.scaling, batch_size=16, training=False)
    card = ModelCard(
        name=name,
        version=version,
        arch=config.arch,
        input_size=config.input_size,
        scaling=arch.scaling,
        demo=demo,
        description=description,
        training={
            "config": asdict(config),
            "data_fingerprint": fingerprint(samples),
            "train_examples": len(train_s),
            "validation_examples": len(val_s),
            "train_patients": len({s.patient_id for s in train_s}),
            "validation_patients": len({s.patient_id for s in val_s}),
            "split": "by patient",
            "history": [],
        },
    )
    best = {"key": None}

    class _BestEpoch(keras.callbacks.Callback):
        """Evaluate on the validation patients each epoch and save the best model at once."""

        def on_epoch_begin(self, epoch, logs=None):
            self._t0 = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            y, p = predict_dataset(self.model, val_ds)
            m = metrics_with_cohorts(y, p, val_s)
            row = {"epoch": epoch + 1, "train_loss": float(logs.get("loss", np.nan)),
                   "train_accuracy": float(logs.get("accuracy", np.nan)), "val_loss": m["loss"],
                   "val_accuracy": m["accuracy"], "val_macro_f1": m["macro_f1"],
                   "val_adult_non_covid_specificity": m.get("adult_non_covid_specificity"),
                   "val_paediatric_3class_accuracy": m.get("paediatric_3class_accuracy"),
                   "seconds": round(time.perf_counter() - self._t0, 1)}
            card.training["history"].append(row)
            key = (m["macro_f1"], -m["loss"])
            if best["key"] is None or key > best["key"]:
                best["key"] = key
                card.training["best_epoch"] = epoch + 1
                card.metrics = {"validation": m}
                save_model(self.model, out_dir, card)
            if on_epoch:
                on_epoch(epoch + 1, row)

    fit_local(model, train_s, input_size=config.input_size, scaling=arch.scaling, epochs=config.epochs,
              batch_size=config.batch_size, seed=config.seed, augment=config.augment,
              balance=config.balance_classes, source_weights=config.source_weights, source_cues=config.source_cues,
              callbacks=[_BestEpoch()], verbose=verbose)
    # Rewrite the card once more so that it carries the whole training history.
    from fl.modelfile import load_model

    best_model, saved = load_model(out_dir)
    saved.training = card.training
    return save_model(best_model, Path(out_dir), saved)

"""Task code shared by the Flower ClientApp and ServerApp: run settings, model <-> arrays, site data, local training."""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fl.classes import CLASSES
from fl.data import DatasetError, Sample, discover, split_by_patient
from fl.model import ARCHITECTURES, build_model, get_architecture

log = logging.getLogger("fedxray.flower")

# How the model travels. "float16" halves both directions; "int8" sends each site's update (its weights minus
# the model it received) as 8-bit codes with per-channel scales and error feedback (fl.quantize): a quarter of
# float32's reply bytes; the server then sends the model in float16.
TRANSFER_DTYPES = ("float32", "float16", "int8")
STRATEGIES = ("fedavg", "fedprox")
DP_MODES = ("off", "client", "server")
LR_SCHEDULES = ("cosine", "constant")
# Dataclass field -> run-config key where the key is not simply the field name in kebab-case.
_KEY_OVERRIDES = {"num_rounds": "num-server-rounds"}


def flower_app_dir() -> Path:
    """The small folder to give `flwr run` (pyproject.toml naming fl.server_app:app and fl.client_app:app)."""
    return Path(__file__).parent / "flwr_app"


class SettingsError(ValueError):
    """The run configuration is invalid; the message names the key and what it accepts."""


@dataclass(frozen=True)
class RunSettings:
    """One federated run's settings, read from `[tool.flwr.app.config]` (kebab-case keys) via Context.run_config."""

    num_rounds: int = 3
    local_epochs: int = 1
    batch_size: int = 8
    learning_rate: float = 1e-3
    lr_schedule: str = "cosine"
    arch: str = "se_resnet50v2"
    input_size: int = 224
    val_fraction: float = 0.2
    seed: int = 0
    augment: bool = True
    balance_classes: bool = True
    # Loss weights per (source, class) cell of the site's manifest (fl.data.source_class_weights). A site's own
    # labelled set is one source, so there they are class weights; they differ only for a site whose data
    # folder has a manifest with a `source` column (several sources pooled at one site).
    source_weights: bool = False
    # The source-cue augmentations of fl.augment (burnt-in text, borders, resolution, JPEG, curves).
    source_cues: bool = False
    recalibrate_bn: bool = True
    keep_optimizer_state: bool = True
    min_sites: int = 2
    fraction_train: float = 1.0
    round_timeout: float = 3600.0
    strategy: str = "fedavg"
    proximal_mu: float = 0.0
    server_learning_rate: float = 2.0
    server_momentum: float = 0.0
    transfer_dtype: str = "float32"
    dp: str = "off"
    dp_noise_multiplier: float = 1.0
    dp_clipping_norm: float = 10.0
    evaluate_every: int = 1
    server_test_dir: str = ""
    initial_model: str = ""
    model_name: str = "FedXray federated"
    central_run_id: int = 0
    # Set by the central when it resumes an interrupted run: rounds already done (numbering continues after
    # them; `initial-model` is then the last saved version) and the best version so far (its card's metrics).
    start_round: int = 0
    best_model: str = ""

    @staticmethod
    def key(field: str) -> str:
        """The run-config key of a settings field."""
        return _KEY_OVERRIDES.get(field, field.replace("_", "-"))

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> RunSettings:
        """Settings from a run config; missing keys take their defaults, unknown keys are ignored (logged)."""
        values: dict[str, Any] = {}
        known = set()
        for f in dataclasses.fields(cls):
            k = cls.key(f.name)
            known.add(k)
            if k not in config:
                continue
            raw = config[k]
            try:
                if f.type == "bool" or isinstance(f.default, bool):
                    if not isinstance(raw, bool):
                        raise TypeError
                    values[f.name] = raw
                elif isinstance(f.default, int):
                    if isinstance(raw, bool) or not float(raw).is_integer():
                        raise TypeError
                    values[f.name] = int(raw)
                elif isinstance(f.default, float):
                    if isinstance(raw, bool):
                        raise TypeError
                    values[f.name] = float(raw)
                else:
                    values[f.name] = str(raw)
            except (TypeError, ValueError):
                raise SettingsError(
                    f"run config {k!r} = {raw!r} has the wrong type; expected {type(f.default).__name__}"
                ) from None
        unknown = sorted(set(config) - known)
        if unknown:
            log.info("Run config keys not used by FedXray: %s", ", ".join(unknown))
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        """Refuse settings that cannot work, naming the key."""

        def bad(field: str, what: str) -> SettingsError:
            return SettingsError(f"run config {self.key(field)!r} = {getattr(self, field)!r}: {what}")

        if self.arch not in ARCHITECTURES:
            raise bad("arch", f"unknown network; known: {', '.join(ARCHITECTURES)}")
        for name in ("num_rounds", "local_epochs", "batch_size", "min_sites", "evaluate_every"):
            if getattr(self, name) < 1:
                raise bad(name, "must be at least 1")
        if not 0 <= self.start_round < self.num_rounds:
            raise bad("start_round", f"must lie in [0, {self.num_rounds}) (rounds already done)")
        if not 0.0 < self.fraction_train <= 1.0:
            raise bad("fraction_train", "must lie in (0, 1]")
        if self.input_size < 32:
            raise bad("input_size", "must be at least 32")
        if not 0.0 < self.val_fraction < 1.0:
            raise bad("val_fraction", "must lie between 0 and 1")
        if self.learning_rate <= 0 or self.round_timeout <= 0:
            raise bad("learning_rate" if self.learning_rate <= 0 else "round_timeout", "must be positive")
        if self.lr_schedule not in LR_SCHEDULES:
            raise bad("lr_schedule", f"must be one of {', '.join(LR_SCHEDULES)}")
        if self.strategy not in STRATEGIES:
            raise bad("strategy", f"must be one of {', '.join(STRATEGIES)}")
        if self.proximal_mu < 0:
            raise bad("proximal_mu", "must not be negative")
        if self.server_learning_rate <= 0:
            raise bad("server_learning_rate", "must be positive")
        if not 0.0 <= self.server_momentum < 1.0:
            raise bad("server_momentum", "must lie in [0, 1)")
        if self.transfer_dtype not in TRANSFER_DTYPES:
            raise bad("transfer_dtype", f"must be one of {', '.join(TRANSFER_DTYPES)}")
        if self.dp not in DP_MODES:
            raise bad("dp", f"must be one of {', '.join(DP_MODES)}")
        if self.transfer_dtype == "int8" and self.dp == "server":
            raise bad("dp", "server-side clipping works on whole weights; with transfer-dtype \"int8\" use "
                      "dp = \"client\" (the site clips its update before it is encoded)")
        if self.dp != "off" and (self.dp_noise_multiplier < 0 or self.dp_clipping_norm <= 0):
            raise bad(
                "dp_clipping_norm", "differential privacy needs a positive clipping norm and noise >= 0"
            )

    def to_config(self) -> dict[str, Any]:
        """The settings as a run config (kebab-case keys), e.g. for a model card."""
        return {self.key(f.name): getattr(self, f.name) for f in dataclasses.fields(self)}

    @property
    def scaling(self) -> str:
        return get_architecture(self.arch).scaling

    @property
    def downlink_dtype(self) -> str:
        """The dtype the server sends the global model in."""
        return "float32" if self.transfer_dtype == "float32" else "float16"


# ------------------------------------------------------------------ model <-> arrays


_PREPARED: dict[tuple[str, int], Any] = {}  # networks built ahead by a waiting ClientApp worker (fl.launcher)


def prepare_model(arch: str, input_size: int) -> None:
    """Build the network of (arch, input_size) now, for the next new_model of that shape in this process (a warm
    ClientApp worker does this while it waits for its message: SE-ResNet50V2 takes seconds to build)."""
    _PREPARED[(arch, int(input_size))] = build_model(arch, input_size=input_size)


def new_model(settings: RunSettings):
    """The network of this run, seeded (its weights are the message's, loaded next). A network prepared ahead for
    this shape is used once; the random generators are seeded either way (training's randomness then differs
    from a network built here, as the build draws from them; both are valid seeded runs)."""
    import keras

    keras.utils.set_random_seed(settings.seed)
    prepared = _PREPARED.pop((settings.arch, int(settings.input_size)), None)
    return prepared if prepared is not None else build_model(settings.arch, input_size=settings.input_size)


def model_arrays(model, dtype: str = "float32"):
    """The model's variables as a Flower ArrayRecord keyed by Keras variable path."""
    from flwr.app import Array, ArrayRecord

    from fl.modelfile import model_tensors

    return ArrayRecord({k: Array(v) for k, v in model_tensors(model, dtype).items()})


def record_tensors(record, dtype: str = "float32") -> dict[str, np.ndarray]:
    """numpy arrays of an ArrayRecord, floating point ones cast to `dtype` (e.g. upcast a float16 transfer)."""
    out = {}
    for k, arr in record.items():
        a = arr.numpy()
        out[k] = a.astype(dtype) if a.dtype.kind == "f" and a.dtype != np.dtype(dtype) else a
    return out


def cast_record(record, dtype: str):
    """A copy of an ArrayRecord with floating point arrays cast to `dtype`."""
    from flwr.app import Array, ArrayRecord

    return ArrayRecord({k: Array(np.ascontiguousarray(v)) for k, v in record_tensors(record, dtype).items()})


def load_arrays(model, record) -> None:
    """Set the model's weights from an ArrayRecord (names and shapes must match exactly)."""
    from fl.modelfile import assign_tensors

    assign_tensors(model, record_tensors(record, "float32"), source="the global model's arrays")


def sanitize_tensors(tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Keep batch-norm variances non-negative (differential-privacy noise can push them below zero)."""
    for k, a in tensors.items():
        if k.endswith("moving_variance") and a.dtype.kind == "f" and (a < 0).any():
            tensors[k] = np.abs(a)
    return tensors


# ------------------------------------------------------------------ site data


@dataclass(frozen=True)
class SiteData:
    """A site's class-folder data split by patient (the same split in every round)."""

    train: list[Sample]
    val: list[Sample]


def load_site(data_dir: str | os.PathLike | None, settings: RunSettings) -> SiteData:
    """Discover the site's images and split them by patient; clear errors for unusable folders."""
    if not data_dir:
        raise DatasetError(
            "this SuperNode has no data folder: start it with --node-config 'data-dir=\"/path/to/class/folders\"' "
            "(`fedxray federate` sets it)"
        )
    samples = discover(Path(data_dir))
    if not samples:
        raise DatasetError(f"no images in the class folders of {data_dir}")
    train, val = split_by_patient(samples, val_fraction=settings.val_fraction, seed=settings.seed)
    if not train or not val:
        raise DatasetError(f"{data_dir} has too few patients for a training and a validation split")
    return SiteData(train=train, val=val)


# ------------------------------------------------------------------ training and evaluation


def describe_device() -> str:
    """'GPU: <names>' when TensorFlow sees a GPU, else 'CPU' (logged clearly as a fallback)."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        names = ", ".join(g.name for g in gpus)
        log.info("Training on the GPU (%s)", names)
        return f"GPU: {names}"
    log.warning("No GPU visible to TensorFlow: training on the CPU (slower). "
                "Install FedXray's GPU extra and the NVIDIA driver to use a GPU.")  # fmt: skip
    return "CPU"


def _proximal_model(model, mu: float):
    """A view of `model` (same layers and variables) whose loss adds (mu/2)·||w - w_global||² (FedProx)."""
    import keras
    import tensorflow as tf

    anchors = [tf.constant(v.numpy()) for v in model.trainable_weights]

    class ProximalModel(keras.Model):
        def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
            loss = super().compute_loss(
                x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=training
            )
            prox = tf.add_n(
                [
                    tf.reduce_sum(tf.square(w - a))
                    for w, a in zip(self.trainable_weights, anchors, strict=True)
                ]
            )
            return loss + 0.5 * mu * prox

    return ProximalModel(model.inputs, model.outputs, name=model.name)


def train_local(
    model,
    samples: Sequence[Sample],
    settings: RunSettings,
    *,
    proximal_mu: float = 0.0,
    server_round: int = 1,
    optimizer_state: dict[str, np.ndarray] | None = None,
    callbacks: Sequence = (),
) -> dict[str, float]:
    """Train `model` in place for `local-epochs` on `samples` (FedProx term when proximal_mu > 0), then
    re-estimate its batch-norm statistics on `samples` (`recalibrate-bn`, fl.train.recalibrate_batchnorm).

    `optimizer_state` (a dict, updated in place): the site's optimiser state from its previous round, if any,
    is loaded before training (Adam continues with its moments and step count instead of restarting cold every
    round, as centralised training does across epochs) and replaced by the state after training. It belongs
    to the site and never leaves it (the ClientApp keeps it in Context.state).

    `callbacks`: Keras callbacks for the fit (the ClientApp's progress report).

    Returns the last epoch's training loss and accuracy (the loss includes the proximal term).
    """
    import keras

    from fl.train import (
        compile_model,
        cosine_over_rounds,
        fit_local,
        get_optimizer_state,
        recalibrate_batchnorm,
        set_optimizer_state,
    )

    keras.utils.set_random_seed(settings.seed + server_round)
    trainee = _proximal_model(model, proximal_mu) if proximal_mu > 0 else model
    schedule = None
    if settings.lr_schedule == "cosine":
        round_steps = -(-len(samples) // settings.batch_size) * settings.local_epochs
        schedule = cosine_over_rounds(settings.learning_rate, round_index=max(server_round - 1, 0),
                                      rounds=settings.num_rounds, round_steps=round_steps)  # fmt: skip
    compile_model(trainee, schedule or settings.learning_rate)
    if optimizer_state and not set_optimizer_state(trainee.optimizer, trainee.trainable_variables,
                                                   optimizer_state):  # fmt: skip
        log.warning("The kept optimiser state does not fit this network: training starts it afresh")
    if schedule is not None:
        schedule.start = int(trainee.optimizer.iterations.numpy())
    history = fit_local(
        trainee, samples, input_size=settings.input_size, scaling=settings.scaling, epochs=settings.local_epochs,
        batch_size=settings.batch_size, seed=settings.seed + server_round, augment=settings.augment,
        balance=settings.balance_classes, source_weights=settings.source_weights, source_cues=settings.source_cues,
        callbacks=list(callbacks), verbose=0,
    )  # fmt: skip
    if optimizer_state is not None:
        optimizer_state.clear()
        optimizer_state.update(get_optimizer_state(trainee.optimizer))
    if settings.recalibrate_bn:
        recalibrate_batchnorm(model, samples, input_size=settings.input_size, scaling=settings.scaling)
    return {"train-loss": float(history["loss"][-1]), "train-accuracy": float(history["accuracy"][-1])}


def evaluate_local(model, samples: Sequence[Sample], settings: RunSettings) -> dict:
    """compute_metrics of `model` on `samples`."""
    from fl.train import evaluate_samples

    return evaluate_samples(model, samples, input_size=settings.input_size, scaling=settings.scaling,
                            batch_size=max(settings.batch_size, 16))  # fmt: skip


__all__ = ["CLASSES", "RunSettings", "SettingsError", "SiteData", "cast_record", "describe_device",
           "evaluate_local", "flower_app_dir", "load_arrays", "load_site", "model_arrays", "new_model", "record_tensors",
           "sanitize_tensors", "train_local"]  # fmt: skip

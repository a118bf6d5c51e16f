"""FedXray's Flower ClientApp: evaluates the global model on the site's validation patients, trains it locally,
and replies with weights and whitelisted metrics only (fl.privacy).

Run settings come from Context.run_config (see fl.task.RunSettings); per-site settings from the SuperNode's
node config: "data-dir" (class folders; `fedxray federate` passes the workstation's labelled set by default)
and "status-file" (optional JSON progress file, written atomically, never sent anywhere).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from flwr.app import Context, Message
from flwr.clientapp import ClientApp

from fl.privacy import (
    ARRAYS,
    INT8,
    REFUSED,
    SCALES,
    SITE_ERROR,
    ArraySpec,
    build_reply,
    check_reply,
    error_reply,
    validation_metrics,
)
from fl.task import (
    RunSettings,
    cast_record,
    describe_device,
    evaluate_local,
    load_arrays,
    load_site,
    model_arrays,
    new_model,
    record_tensors,
    train_local,
)

log = logging.getLogger("fedxray.clientapp")


def _log_like_flower() -> None:
    """FedXray's log lines in the ClientApp process go where Flower's go (the SuperNode's console and log)."""
    from flwr.supercore.logger import FLOWER_LOGGER

    fedxray = logging.getLogger("fedxray")
    if not fedxray.handlers:
        fedxray.setLevel(logging.INFO)
        for handler in FLOWER_LOGGER.handlers:
            fedxray.addHandler(handler)


_log_like_flower()

# Context.state key of the site's optimiser state between rounds (run setting "keep-optimizer-state").
OPTIMIZER_STATE = "fedxray.optimizer-state"
# Context.state key of what int8 encoding lost from this site's last update (error feedback; never sent).
UPDATE_RESIDUAL = "fedxray.update-residual"


class SiteStatus:
    """Progress of this ClientApp for the workstation (node config "status-file"); atomic JSON writes."""

    def __init__(self, context: Context, msg: Message) -> None:
        path = context.node_config.get("status-file")
        self.path = Path(str(path)) if path else None
        config = msg.content.config_records
        rnd = next(iter(config.values())).get("server-round", 0) if config else 0
        total = context.run_config.get("num-server-rounds")
        self.state: dict = {"run_id": int(context.run_id), "round": int(rnd),
                            "num_rounds": int(total) if total is not None else None,
                            "message": str(msg.metadata.message_type).split(".")[0], "phase": "starting"}  # fmt: skip
        self._written = 0.0

    def update(self, **fields) -> None:
        self.state.update(fields)
        self._written = time.monotonic()
        self.state["updated"] = datetime.now(UTC).isoformat(timespec="seconds")
        if self.path is None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(self.state, fh, indent=1)
            os.replace(tmp, self.path)
        except OSError as exc:  # progress reporting must never fail a round
            log.warning("Could not write the status file %s: %s", self.path, exc)


    def progress(self, **fields) -> None:
        """Like update(), at most twice a second (batch progress must not slow training down)."""
        if time.monotonic() - self._written >= 0.5:
            self.update(**fields)
        else:
            self.state.update(fields)


def progress_callback(status: SiteStatus, *, epochs: int, batches: int):
    """A Keras callback writing epoch k of n, batch b of B and the time left to `status` while training."""
    import keras

    class Progress(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.t0 = time.monotonic()
            self.epoch = 1

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch + 1
            status.update(phase="training", epoch=self.epoch, epochs=epochs, batch=0, batches=batches)

        def on_train_batch_end(self, batch, logs=None):
            done = (self.epoch - 1) * batches + batch + 1
            elapsed = time.monotonic() - self.t0
            eta = elapsed / done * max(epochs * batches - done, 0)
            status.progress(phase="training", epoch=self.epoch, epochs=epochs, batch=batch + 1, batches=batches,
                            eta_seconds=round(eta, 1))  # fmt: skip

    return Progress()


def _summary(m: dict) -> dict:
    keys = ("loss", "accuracy", "macro_f1", "macro_sensitivity", "macro_specificity", "macro_auroc", "num_examples")
    return {k: m.get(k) for k in keys}


def _error_kind(exc: BaseException) -> str:
    """A category for the error text that leaves the site (never the exception's own message)."""
    from fl.data import DatasetError
    from fl.modelfile import ModelFileError
    from fl.preprocess import ImageReadError
    from fl.task import SettingsError

    for kind, name in ((DatasetError, "data folder problem"), (ImageReadError, "image reading problem"),
                       (SettingsError, "run settings problem"), (ModelFileError, "model does not fit"),
                       (MemoryError, "out of memory")):  # fmt: skip
        if isinstance(exc, kind):
            return name
    return "internal error"


def privacy_guard_mod(msg: Message, context: Context, call_next) -> Message:
    """Outermost mod: whatever the app and the inner mods produced, only a conforming reply leaves the site."""
    status = SiteStatus(context, msg)
    try:
        reply = call_next(msg, context)
    except Exception as exc:
        log.exception("The FedXray ClientApp failed")
        status.update(phase="error", error=f"{type(exc).__name__}: {exc}")
        return error_reply(msg, SITE_ERROR.format(kind=_error_kind(exc)))
    if reply.has_error():
        log.error("An inner mod answered with an error: %s", reply.error.reason)
        status.update(phase="error", error=reply.error.reason)
        return error_reply(msg, SITE_ERROR.format(kind="error reply"))
    try:
        spec = None
        if str(msg.metadata.message_type).startswith("train"):
            spec = ArraySpec.of(msg.content[ARRAYS], RunSettings.from_config(context.run_config).transfer_dtype)
        check_reply(reply.content, spec=spec)
    except Exception as exc:  # ReplyRefused, or a reply too malformed to inspect: nothing of it leaves
        log.error("Reply refused by the privacy guard: %s", exc)
        status.update(phase="error", error=f"reply refused: {exc}")
        return error_reply(msg, REFUSED.format(reason="outside the contract"))
    return reply


def transfer_mod(msg: Message, context: Context, call_next) -> Message:
    """Send the updated weights in the run's transfer dtype: float16 (half the bytes), or int8 codes of the
    update with their scales (a quarter; fl.quantize), keeping what rounding lost for the next round."""
    reply = call_next(msg, context)
    dtype = RunSettings.from_config(context.run_config).transfer_dtype
    if reply.has_error() or dtype == "float32" or ARRAYS not in reply.content:
        return reply
    if dtype != INT8:
        reply.content[ARRAYS] = cast_record(reply.content[ARRAYS], dtype)
        return reply
    from flwr.app import Array, ArrayRecord

    from fl.quantize import encode_update

    residual = _load_record(context, UPDATE_RESIDUAL)
    codes, scales = encode_update(record_tensors(reply.content[ARRAYS], "float32"),
                                  record_tensors(msg.content[ARRAYS], "float32"), residual)  # fmt: skip
    _save_record(context, UPDATE_RESIDUAL, residual)
    reply.content[ARRAYS] = ArrayRecord({k: Array(np.ascontiguousarray(v)) for k, v in codes.items()})
    reply.content[SCALES] = ArrayRecord({k: Array(np.ascontiguousarray(v)) for k, v in scales.items()})
    return reply


def dp_clipping_mod(msg: Message, context: Context, call_next) -> Message:
    """Flower's fixedclipping_mod when the server's DP wrapper asks for client-side clipping; else a no-op."""
    from flwr.clientapp.mod import fixedclipping_mod
    from flwr.supercore.differential_privacy import KEY_CLIPPING_NORM

    configs = msg.content.config_records
    if configs and KEY_CLIPPING_NORM in next(iter(configs.values())):
        return fixedclipping_mod(msg, context, call_next)
    return call_next(msg, context)


def _load_record(context: Context, key: str) -> dict:
    kept = context.state.get(key)
    return {k: a.numpy() for k, a in kept.items()} if kept is not None else {}


def _save_record(context: Context, key: str, arrays: dict) -> None:
    from flwr.app import Array, ArrayRecord

    context.state[key] = ArrayRecord({k: Array(np.array(v, order="C")) for k, v in arrays.items()})


def load_optimizer_state(context: Context) -> dict:
    """The optimiser state this site kept from its previous round of the run ({} in its first round)."""
    return _load_record(context, OPTIMIZER_STATE)


def save_optimizer_state(context: Context, state: dict) -> None:
    """Keep the optimiser state for the site's next round. Context.state stays on this SuperNode (it is never
    part of a reply); it lasts for the run and is dropped with it."""
    _save_record(context, OPTIMIZER_STATE, state)


app = ClientApp(mods=[privacy_guard_mod])


@app.train(mods=[transfer_mod, dp_clipping_mod])
def train(msg: Message, context: Context) -> Message:
    """Evaluate the incoming global model on the validation patients, then train it on the training patients."""
    settings = RunSettings.from_config(context.run_config)
    config = msg.content["config"]
    server_round = int(config.get("server-round", 0))
    mu = float(config.get("proximal-mu", 0.0))
    status = SiteStatus(context, msg)
    status.update(phase="loading")
    data = load_site(context.node_config.get("data-dir"), settings)
    incoming = msg.content[ARRAYS]
    model = new_model(settings)
    load_arrays(model, incoming)
    device = describe_device()

    status.update(phase="evaluating", device=device, train_examples=len(data.train), val_examples=len(data.val))
    t0 = time.perf_counter()
    before = evaluate_local(model, data.val, settings)
    kept = load_optimizer_state(context) if settings.keep_optimizer_state else None
    optimiser = "continued from the previous round" if kept else "new"  # before training refills `kept`
    batches = -(-len(data.train) // settings.batch_size)
    status.update(phase="training", validation=_summary(before), optimizer=optimiser, epoch=1,
                  epochs=settings.local_epochs, batch=0, batches=batches)  # fmt: skip
    t1 = time.perf_counter()
    fit = train_local(model, data.train, settings, proximal_mu=mu, server_round=server_round, optimizer_state=kept,
                      callbacks=[progress_callback(status, epochs=settings.local_epochs, batches=batches)])
    seconds = time.perf_counter() - t1
    if kept is not None:
        save_optimizer_state(context, kept)
    log.info("Round %d: trained %d images for %d epoch(s) in %.1f s (validation before: accuracy %.3f; "
             "optimiser state %s)", server_round, len(data.train), settings.local_epochs, seconds, before["accuracy"],
             optimiser)  # fmt: skip

    metrics = {"num-examples": len(data.train), **fit, "train-seconds": seconds,
               "eval-seconds": t1 - t0, **validation_metrics(before)}  # fmt: skip
    reply = build_reply(msg, metrics=metrics, arrays=model_arrays(model, "float32"),
                        spec=ArraySpec.of(incoming, "float32"))  # fmt: skip
    status.update(phase="sending", train=fit, eta_seconds=None)
    return reply


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    """Evaluate the global model on this site's validation patients."""
    settings = RunSettings.from_config(context.run_config)
    status = SiteStatus(context, msg)
    status.update(phase="loading")
    data = load_site(context.node_config.get("data-dir"), settings)
    model = new_model(settings)
    load_arrays(model, msg.content[ARRAYS])
    status.update(phase="evaluating", device=describe_device(), val_examples=len(data.val))
    t0 = time.perf_counter()
    m = evaluate_local(model, data.val, settings)
    metrics = {**validation_metrics(m), "num-examples": len(data.val), "eval-seconds": time.perf_counter() - t0}
    reply = build_reply(msg, metrics=metrics)
    status.update(phase="sending", validation=_summary(m))
    return reply

"""FedXray's server strategy: Flower's FedAvg/FedProx with reply checks, float16 upcast or int8 update decoding,
exact pooled metrics and pooled batch-norm statistics.

Every reply is checked against the privacy contract (fl.privacy) before it is aggregated; a reply outside it
is dropped and reported. Validation metrics are pooled from the sites' confusion counts (exact: accuracy,
sensitivity, specificity, precision, F1), loss is the example-weighted mean (exact), and AUROC, which cannot be
pooled from per-site values, is reported as the validation-example-weighted mean over sites and named so.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp.strategy import FedAvg, FedProx
from flwr.serverapp.strategy.strategy_utils import aggregate_arrayrecords

from fl.classes import CLASSES
from fl.metrics import compute_metrics, flat_metrics
from fl.privacy import ARRAYS, INT8, METRICS, SCALES, ArraySpec, ReplyRefused, check_reply
from fl.task import cast_record, record_tensors, sanitize_tensors

log = logging.getLogger("fedxray.strategy")

AUROC_MEAN = "auroc_site_weighted_mean"  # per class; macro: "macro_" + AUROC_MEAN


def confusion_of(row: dict) -> np.ndarray:
    """The confusion matrix (rows = true class) carried by one reply's metrics."""
    return np.array(
        [[int(row.get(f"confusion/{t}/{p}", 0)) for p in CLASSES] for t in CLASSES], dtype=np.int64
    )


def pool_validation(rows: list[dict]) -> dict | None:
    """Pool the sites' validation metrics; structured like fl.metrics.compute_metrics (see module docstring)."""
    rows = [r for r in rows if confusion_of(r).sum() > 0]
    if not rows:
        return None
    cms = [confusion_of(r) for r in rows]
    cm = sum(cms)
    y = np.concatenate([np.full(int(cm[t].sum()), t) for t in range(len(CLASSES))])
    pred = np.concatenate([np.repeat(np.arange(len(CLASSES)), cm[t]) for t in range(len(CLASSES))])
    # compute_metrics on (true, one-hot predicted) reproduces every count-based metric of the pooled set exactly.
    m = compute_metrics(y, np.eye(len(CLASSES))[pred])
    sizes = np.array([c.sum() for c in cms], dtype=np.float64)
    m["loss"] = float(sum(float(r["loss"]) * n for r, n in zip(rows, sizes, strict=True)) / sizes.sum())
    m["macro_auroc"] = None
    means = []
    for name in CLASSES:
        pairs = [
            (float(r[f"auroc/{name}"]), n) for r, n in zip(rows, sizes, strict=True) if f"auroc/{name}" in r
        ]
        value = sum(a * n for a, n in pairs) / sum(n for _, n in pairs) if pairs else None
        m["per_class"][name]["auroc"] = None
        m["per_class"][name][AUROC_MEAN] = value
        if value is not None:
            means.append(value)
    m["macro_" + AUROC_MEAN] = float(np.mean(means)) if means else None
    m["num_sites"] = len(rows)
    return m


def flat_pooled(m: dict | None) -> dict[str, float]:
    """flat_metrics of a pooled result plus its AUROC site means."""
    if m is None:
        return {}
    flat = flat_metrics(m)
    for name, values in m["per_class"].items():
        if values.get(AUROC_MEAN) is not None:
            flat[f"{AUROC_MEAN}/{name}"] = values[AUROC_MEAN]
    if m.get("macro_" + AUROC_MEAN) is not None:
        flat["macro_" + AUROC_MEAN] = m["macro_" + AUROC_MEAN]
    return flat


def _weighted(rows: list[dict], key: str, weights: list[float]) -> float | None:
    pairs = [(float(r[key]), w) for r, w in zip(rows, weights, strict=True) if key in r]
    total = sum(w for _, w in pairs)
    return sum(v * w for v, w in pairs) / total if pairs and total > 0 else None


def pool_batchnorm(averaged: ArrayRecord, contents: list, *, weights_key: str) -> ArrayRecord:
    """Batch-norm moving variances of the sites' data taken together. The example-weighted average is right
    for the means but not for the variances: the variance of the union is the weighted mean of the sites'
    variances plus the weighted spread of their means around the pooled mean (left out by plain averaging)."""
    from flwr.app import Array

    weights = np.array([float(c[METRICS][weights_key]) for c in contents], dtype=np.float64)
    weights /= weights.sum()
    out = dict(averaged.items())
    for key in list(averaged.keys()):
        if not key.endswith("moving_variance"):
            continue
        mean_key = key.removesuffix("moving_variance") + "moving_mean"
        if mean_key not in averaged:
            continue
        pooled_mean = averaged[mean_key].numpy().astype(np.float64)
        spread = sum(w * (c[ARRAYS][mean_key].numpy().astype(np.float64) - pooled_mean) ** 2
                     for w, c in zip(weights, contents, strict=True))  # fmt: skip
        variance = averaged[key].numpy().astype(np.float64) + spread
        out[key] = Array(np.ascontiguousarray(variance.astype(averaged[key].numpy().dtype)))
    return ArrayRecord(out)


class _FedXrayMixin:
    """Overrides shared by FedXrayFedAvg and FedXrayFedProx (see the module docstring)."""

    def __init__(self, *, transfer_dtype: str = "float32", evaluate_every: int = 1, num_rounds: int = 1,
                 on_reply: Callable[[dict], None] | None = None, server_learning_rate: float = 1.0,
                 server_momentum: float = 0.0, round_offset: int = 0, **kwargs) -> None:  # fmt: skip
        super().__init__(**kwargs)  # Flower's FedAvg / FedProx: fractions, minimum nodes, proximal_mu
        # A resumed run continues the numbering: Flower's round r is round r + round_offset everywhere
        # (messages' "server-round", the audit, the per-round records, evaluate-every).
        self.round_offset = round_offset
        self.transfer_dtype = transfer_dtype
        self.server_learning_rate = server_learning_rate
        self.server_momentum = server_momentum
        self._current: dict[str, np.ndarray] | None = None
        self._sent: dict[str, np.ndarray] | None = None  # the model as the sites received it (int8 decoding)
        self._momentum: dict[str, np.ndarray] = {}
        self.evaluate_every = evaluate_every
        self.num_rounds = num_rounds
        self.on_reply = on_reply
        self.rounds: dict[int, dict] = {}  # per round: sampled, train, evaluate (structured), sites
        self._spec: ArraySpec | None = None

    def _round(self, server_round: int) -> dict:
        return self.rounds.setdefault(server_round, {"sampled": 0, "train": None, "evaluate": None,
                                                     "num_sites": 0, "failures": 0})  # fmt: skip

    def _outgoing(self, arrays: ArrayRecord) -> ArrayRecord:
        tensors = sanitize_tensors(record_tensors(arrays, "float32"))
        from flwr.app import Array

        record = ArrayRecord({k: Array(np.ascontiguousarray(v)) for k, v in tensors.items()})
        downlink = "float32" if self.transfer_dtype == "float32" else "float16"  # int8 replies: float16 down
        return cast_record(record, downlink) if downlink != "float32" else record

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid
    ) -> Iterable[Message]:
        # float32 too: the server-side DP wrapper clips replies (into float32) before they reach this class.
        server_round += self.round_offset
        self._spec = ArraySpec.of(arrays, self.transfer_dtype, "float32")
        self._current = record_tensors(arrays, "float32")
        outgoing = self._outgoing(arrays)
        self._sent = record_tensors(outgoing, "float32") if self.transfer_dtype == INT8 else None
        messages = list(super().configure_train(server_round, outgoing, config, grid))
        self._round(server_round)["sampled"] = len(messages)
        return messages

    def configure_evaluate(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid
                           ) -> Iterable[Message]:  # fmt: skip
        server_round += self.round_offset
        if server_round % self.evaluate_every and server_round != self.num_rounds:
            return []
        return super().configure_evaluate(server_round, self._outgoing(arrays), config, grid)

    def _accept(self, server_round: int, phase: str, replies: Iterable[Message]) -> list[Message]:
        """Replies that carry content and keep the privacy contract (float arrays upcast to float32)."""
        accepted = []
        info = self._round(server_round)
        for msg in replies:
            node = int(msg.metadata.src_node_id)
            audit = {"round": server_round, "phase": phase, "node_id": node}
            if msg.has_error():
                info["failures"] += 1
                audit.update(
                    verdict="error", error_code=int(msg.error.code), error=str(msg.error.reason)[:300]
                )
            else:
                content = msg.content
                audit.update(records=sorted(content.keys()),
                             metric_keys=sorted(content[METRICS].keys()) if METRICS in content else [],
                             arrays={k: [list(a.shape), a.dtype] for k, a in content[ARRAYS].items()}
                             if ARRAYS in content else {})  # fmt: skip
                try:
                    check_reply(content, spec=self._spec if phase == "train" else None)
                except (ReplyRefused, KeyError) as exc:
                    info["failures"] += 1
                    audit.update(verdict="refused", reason=str(exc))
                    log.warning(
                        "Round %d: dropped a %s reply from node %d: %s", server_round, phase, node, exc
                    )
                else:
                    audit["verdict"] = "accepted"
                    if phase == "train" and SCALES in content:
                        content[ARRAYS] = self._decode(content)
                    elif phase == "train" and self.transfer_dtype != "float32":
                        content[ARRAYS] = cast_record(content[ARRAYS], "float32")
                    accepted.append(msg)
            if self.on_reply is not None:
                self.on_reply(audit)
        return accepted

    def _decode(self, content) -> ArrayRecord:
        """A site's weights from its int8 update (fl.quantize) and the model it was sent; drops the scales, so
        the reply then looks like a float32 one to the aggregation."""
        from flwr.app import Array

        from fl.quantize import decode_update

        codes = {k: a.numpy() for k, a in content[ARRAYS].items()}
        scales = {k: a.numpy() for k, a in content[SCALES].items()}
        del content[SCALES]
        weights = decode_update(codes, scales, self._sent)
        return ArrayRecord({k: Array(np.ascontiguousarray(v)) for k, v in weights.items()})

    def aggregate_train(self, server_round: int, replies: Iterable[Message]
                        ) -> tuple[ArrayRecord | None, MetricRecord | None]:  # fmt: skip
        server_round += self.round_offset
        valid = self._accept(server_round, "train", replies)
        info = self._round(server_round)
        info["num_sites"] = len(valid)
        log.info(
            "Round %d: %d of %d sites' training replies accepted", server_round, len(valid), info["sampled"]
        )
        if not valid:
            return None, None
        contents = [m.content for m in valid]
        arrays = self._server_step(pool_batchnorm(aggregate_arrayrecords(contents, self.weighted_by_key), contents,
                                                  weights_key=self.weighted_by_key))  # fmt: skip
        rows = [dict(c[METRICS]) for c in contents]
        weights = [float(r["num-examples"]) for r in rows]
        train = {
            "num_sites": len(rows),
            "num_examples": int(sum(weights)),
            "train_loss": _weighted(rows, "train-loss", weights),
            "train_accuracy": _weighted(rows, "train-accuracy", weights),
            "train_seconds_max": max(float(r.get("train-seconds", 0.0)) for r in rows),
            "eval_seconds_max": max(float(r.get("eval-seconds", 0.0)) for r in rows),
            "validation_before": pool_validation(rows),
        }
        info["train"] = train
        flat = {k: v for k, v in train.items() if isinstance(v, (int, float)) and v is not None}
        flat.update({f"before/{k}": v for k, v in flat_pooled(train["validation_before"]).items()})
        return arrays, MetricRecord(flat)

    def _server_step(self, averaged: ArrayRecord) -> ArrayRecord:
        """FedAvgM (Hsu et al. 2019): w <- w - lr * m, m <- momentum * m + (w - average). lr 1, momentum 0 is
        plain FedAvg. Batch-norm statistics are not gradients: they take the plain average."""
        if (self.server_learning_rate == 1.0 and self.server_momentum == 0.0) or self._current is None:
            return averaged
        from flwr.app import Array

        out = {}
        for k, new in record_tensors(averaged, "float32").items():
            old = self._current.get(k)
            if old is None or new.dtype.kind != "f" or "moving_" in k:
                out[k] = new
                continue
            step = old - new
            if self.server_momentum > 0.0:
                step = self._momentum[k] = self.server_momentum * self._momentum.get(k, 0.0) + step
            out[k] = (old - self.server_learning_rate * step).astype(np.float32)
        return ArrayRecord({k: Array(np.ascontiguousarray(v)) for k, v in out.items()})

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        server_round += self.round_offset
        valid = self._accept(server_round, "evaluate", replies)
        if not valid:
            return None
        rows = [dict(m.content[METRICS]) for m in valid]
        pooled = pool_validation(rows)
        if pooled is not None:
            pooled["eval_seconds_max"] = max(float(r.get("eval-seconds", 0.0)) for r in rows)
        self._round(server_round)["evaluate"] = pooled
        return MetricRecord(flat_pooled(pooled)) if pooled else None


class FedXrayFedAvg(_FedXrayMixin, FedAvg):
    """FedAvg weighted by "num-examples" with FedXray's checks and metrics."""


class FedXrayFedProx(_FedXrayMixin, FedProx):
    """FedProx (sends "proximal-mu"; the ClientApp adds the proximal term) with FedXray's checks and metrics."""

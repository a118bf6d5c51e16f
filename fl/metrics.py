"""Classification metrics for FedXray, computed by one function (numpy only, no TensorFlow)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from fl.classes import CLASSES

# Same clipping as Keras' categorical cross-entropy (keras.config.epsilon()).
EPSILON = 1e-7

PER_CLASS_KEYS = ("sensitivity", "specificity", "precision", "f1", "auroc")


def _ratio(num: int, den: int) -> float | None:
    return None if den == 0 else num / den


def _mean_defined(values: list[float | None]) -> float | None:
    defined = [v for v in values if v is not None]
    return float(np.mean(defined)) if defined else None


def _auroc(scores: np.ndarray, positive: np.ndarray) -> float | None:
    """One-vs-rest AUROC by ranks (Mann-Whitney U); ties count 1/2. None without positives or negatives."""
    scores = np.asarray(scores, dtype=np.float64)
    positive = np.asarray(positive, dtype=bool)
    n_pos = int(positive.sum())
    n_neg = positive.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    # Average 1-based rank of each distinct score: tied scores share the mean of the ranks they span.
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    average_rank = np.cumsum(counts) - (counts - 1) / 2.0
    ranks = average_rank[inverse]
    u = ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def _validate(y_true, probs, class_names) -> tuple[np.ndarray, np.ndarray]:
    probs = np.asarray(probs, dtype=np.float64)
    y = np.asarray(y_true)
    n_classes = len(class_names)
    if probs.ndim != 2 or probs.shape[1] != n_classes:
        raise ValueError(
            f"probabilities must have shape (N, {n_classes}) for classes {tuple(class_names)}, got {probs.shape}"
        )
    if y.ndim == 2:  # one-hot labels
        if y.shape != probs.shape:
            raise ValueError(f"one-hot labels of shape {y.shape} do not match probabilities {probs.shape}")
        y = y.argmax(axis=1)
    if y.ndim != 1 or y.shape[0] != probs.shape[0]:
        raise ValueError(f"got {y.shape[0] if y.ndim else 1} labels for {probs.shape[0]} predictions")
    if y.size == 0:
        raise ValueError("no examples to evaluate: the data set is empty")
    if not np.issubdtype(y.dtype, np.integer):
        if not np.all(np.equal(np.mod(y, 1), 0)):
            raise ValueError("labels must be class indices (integers)")
        y = y.astype(np.int64)
    if y.min() < 0 or y.max() >= n_classes:
        raise ValueError(f"labels must lie in 0..{n_classes - 1}, found {int(y.min())}..{int(y.max())}")
    if not np.all(np.isfinite(probs)):
        raise ValueError("the model produced non-finite probabilities (NaN or inf); it has probably diverged")
    return y.astype(np.int64), probs


def compute_metrics(y_true, probs, class_names: Sequence[str] = CLASSES) -> dict:
    """All evaluation metrics for labels `y_true` (N,) ints or (N, C) one-hot and probabilities `probs` (N, C).

    Returns {"loss", "accuracy", "macro_sensitivity", "macro_specificity", "macro_precision", "macro_f1",
    "macro_auroc", "per_class": {name: {"sensitivity", "specificity", "precision", "f1", "auroc", "support"}},
    "confusion_matrix" (rows = true, columns = predicted), "num_examples", "classes"}; plain Python numbers.

    Conventions:
    - predicted class = argmax of the probabilities (the first index on exact ties);
    - loss = mean categorical cross-entropy as Keras computes it: each row renormalised to sum 1, then clipped
      to [1e-7, 1 - 1e-7];
    - a value that cannot be measured on these labels is None and left out of its macro mean: sensitivity
      when the class has no examples, specificity when every example is of the class, AUROC when either
      is the case, precision and F1 when the class neither occurs nor is predicted;
    - a class that occurs but is never predicted has precision 0 and F1 0; a class that does not occur
      but is predicted has precision 0 and F1 0 (every such prediction is a false alarm);
    - a macro value is the mean over classes whose value is defined (None if none is).
    """
    y, probs = _validate(y_true, probs, class_names)
    n, n_classes = probs.shape

    normalised = probs / np.maximum(probs.sum(axis=1, keepdims=True), EPSILON)
    p_true = np.clip(normalised[np.arange(n), y], EPSILON, 1.0 - EPSILON)
    loss = float(-np.log(p_true).mean())

    predicted = probs.argmax(axis=1)
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (y, predicted), 1)

    per_class: dict[str, dict] = {}
    for c, name in enumerate(class_names):
        tp = int(cm[c, c])
        fn = int(cm[c, :].sum()) - tp
        fp = int(cm[:, c].sum()) - tp
        tn = n - tp - fn - fp
        support = tp + fn
        predicted_c = tp + fp
        # Nothing predicted as c: precision 0 if c occurs (it was missed), undefined if it does not.
        precision = (0.0 if support > 0 else None) if predicted_c == 0 else tp / predicted_c
        per_class[name] = {
            "sensitivity": _ratio(tp, tp + fn),
            "specificity": _ratio(tn, tn + fp),
            "precision": precision,
            # 2TP / (2TP + FP + FN) is the harmonic mean of precision and sensitivity where both are defined.
            "f1": _ratio(2 * tp, 2 * tp + fp + fn),
            "auroc": _auroc(probs[:, c], y == c),
            "support": support,
        }

    result: dict = {
        "loss": loss,
        "accuracy": float(np.mean(predicted == y)),
    }
    for key in PER_CLASS_KEYS:
        result[f"macro_{key}"] = _mean_defined([per_class[name][key] for name in class_names])
    result["per_class"] = per_class
    result["confusion_matrix"] = cm.tolist()
    result["num_examples"] = int(n)
    result["classes"] = list(class_names)
    return result


def _finite(value) -> bool:
    return value is not None and not isinstance(value, bool) and math.isfinite(value)


def flat_metrics(m: dict) -> dict[str, float]:
    """Flat view of `compute_metrics` output with only finite numbers, for Flower MetricRecords and JSON.

    Keys: "loss", "accuracy", "macro_<metric>", "num_examples", "<metric>/<class>" for sensitivity,
    specificity, precision, f1, auroc and support, and "confusion/<true class>/<predicted class>".
    Counts stay ints; undefined (None) values are left out.
    """
    flat: dict[str, float] = {}
    for key in ("loss", "accuracy", *(f"macro_{k}" for k in PER_CLASS_KEYS), "num_examples"):
        if _finite(m.get(key)):
            flat[key] = m[key]
    per_class = m.get("per_class", {})
    for name, values in per_class.items():
        for key in (*PER_CLASS_KEYS, "support"):
            if _finite(values.get(key)):
                flat[f"{key}/{name}"] = values[key]
    names = m.get("classes") or list(per_class)
    for i, row in enumerate(m.get("confusion_matrix", [])):
        for j, count in enumerate(row):
            flat[f"confusion/{names[i]}/{names[j]}"] = int(count)
    return flat


def selection_score(test: dict | None, validation: dict | None) -> tuple[float, float] | None:
    """How federated runs rank their model versions ("best"): (macro-F1, -loss) on the server-side test set if
    there is one, else on the pooled validation; higher is better. None when neither has both figures."""
    m = test or validation
    if not m or m.get("macro_f1") is None or m.get("loss") is None:
        return None
    return (float(m["macro_f1"]), -float(m["loss"]))

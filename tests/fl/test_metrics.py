"""Tests for fl.metrics against values worked out by hand and an independent pairwise implementation."""

import itertools
import json
import math

import numpy as np
import pytest

from fl.classes import CLASSES
from fl.metrics import compute_metrics, flat_metrics

COVID, NORMAL, BACT, VIRAL = CLASSES
TOL = {"rel": 1e-9, "abs": 1e-12}

# The worked example. Columns: Covid, Normal, Pneumonia-Bacterial, Pneumonia-Viral.
#   i  true   probabilities              predicted
#   0  Covid  [0.7, 0.1, 0.1, 0.1]      Covid
#   1  Covid  [0.2, 0.5, 0.2, 0.1]      Normal
#   2  Normal [0.1, 0.6, 0.2, 0.1]      Normal
#   3  Normal [0.1, 0.4, 0.3, 0.2]      Normal
#   4  Bact   [0.1, 0.2, 0.6, 0.1]      Bact
#   5  Bact   [0.1, 0.1, 0.3, 0.5]      Viral
#   6  Viral  [0.2, 0.1, 0.3, 0.4]      Viral
#   7  Viral  [0.1, 0.2, 0.5, 0.2]      Bact
Y = np.array([0, 0, 1, 1, 2, 2, 3, 3])
P = np.array(
    [
        [0.7, 0.1, 0.1, 0.1],
        [0.2, 0.5, 0.2, 0.1],
        [0.1, 0.6, 0.2, 0.1],
        [0.1, 0.4, 0.3, 0.2],
        [0.1, 0.2, 0.6, 0.1],
        [0.1, 0.1, 0.3, 0.5],
        [0.2, 0.1, 0.3, 0.4],
        [0.1, 0.2, 0.5, 0.2],
    ]
)


def test_worked_example_counts_and_ratios():
    m = compute_metrics(Y, P)

    # Confusion matrix (rows true, columns predicted), read off the table above.
    assert m["confusion_matrix"] == [[1, 1, 0, 0], [0, 2, 0, 0], [0, 0, 1, 1], [0, 0, 1, 1]]
    assert m["num_examples"] == 8
    assert m["classes"] == list(CLASSES)
    # Correct: rows 0, 2, 3, 4, 6 -> 5/8.
    assert m["accuracy"] == pytest.approx(5 / 8, **TOL)
    # Loss: -mean(log p[true]) with p[true] = 0.7, 0.2, 0.6, 0.4, 0.6, 0.3, 0.4, 0.2.
    expected_loss = -(
        math.log(0.7) + math.log(0.2) + math.log(0.6) + math.log(0.4)
        + math.log(0.6) + math.log(0.3) + math.log(0.4) + math.log(0.2)
    ) / 8
    assert m["loss"] == pytest.approx(expected_loss, **TOL)
    # ln: -0.35667 - 2(1.60944) - 2(0.51083) - 2(0.91629) - 1.20397 = -7.63375; / 8 = 0.95422.
    assert m["loss"] == pytest.approx(0.95422, abs=1e-5)

    # Covid:  TP=1 (row 0), FN=1 (row 1), FP=0, TN=6.
    # Normal: TP=2, FN=0, FP=1 (row 1), TN=5.
    # Bact:   TP=1 (row 4), FN=1 (row 5), FP=1 (row 7), TN=5.
    # Viral:  TP=1 (row 6), FN=1 (row 7), FP=1 (row 5), TN=5.
    expected = {
        COVID: {"sensitivity": 1 / 2, "specificity": 6 / 6, "precision": 1 / 1, "f1": 2 / 3, "support": 2},
        NORMAL: {"sensitivity": 2 / 2, "specificity": 5 / 6, "precision": 2 / 3, "f1": 4 / 5, "support": 2},
        BACT: {"sensitivity": 1 / 2, "specificity": 5 / 6, "precision": 1 / 2, "f1": 2 / 4, "support": 2},
        VIRAL: {"sensitivity": 1 / 2, "specificity": 5 / 6, "precision": 1 / 2, "f1": 2 / 4, "support": 2},
    }
    for name, values in expected.items():
        for key, value in values.items():
            assert m["per_class"][name][key] == pytest.approx(value, **TOL), (name, key)

    assert m["macro_sensitivity"] == pytest.approx((0.5 + 1 + 0.5 + 0.5) / 4, **TOL)  # 0.625
    assert m["macro_specificity"] == pytest.approx((1 + 3 * 5 / 6) / 4, **TOL)  # 0.875
    assert m["macro_precision"] == pytest.approx((1 + 2 / 3 + 0.5 + 0.5) / 4, **TOL)  # 2/3
    assert m["macro_f1"] == pytest.approx(37 / 60, **TOL)  # (40 + 48 + 30 + 30) / 60 / 4


def test_worked_example_auroc_pair_counts():
    m = compute_metrics(Y, P)
    # 2 positives x 6 negatives = 12 pairs per class; a win counts 1, a tie 1/2.
    # Covid  scores: pos 0.7, 0.2; neg 0.1 0.1 0.1 0.1 0.2 0.1.
    #   0.7 beats 6; 0.2 beats five 0.1 and ties one 0.2 -> 5.5.            (6 + 5.5) / 12
    # Normal scores: pos 0.6, 0.4; neg 0.1 0.5 0.2 0.1 0.1 0.2.
    #   0.6 beats 6; 0.4 beats 5, loses to 0.5.                             (6 + 5) / 12
    # Bact   scores: pos 0.6, 0.3; neg 0.1 0.2 0.2 0.3 0.3 0.5.
    #   0.6 beats 6; 0.3 beats 3, ties two 0.3 (+1), loses to 0.5.          (6 + 4) / 12
    # Viral  scores: pos 0.4, 0.2; neg 0.1 0.1 0.1 0.2 0.1 0.5.
    #   0.4 beats 5, loses to 0.5; 0.2 beats four 0.1, ties one 0.2.        (5 + 4.5) / 12
    expected = {COVID: 11.5 / 12, NORMAL: 11 / 12, BACT: 10 / 12, VIRAL: 9.5 / 12}
    for name, value in expected.items():
        assert m["per_class"][name]["auroc"] == pytest.approx(value, **TOL), name
    assert m["macro_auroc"] == pytest.approx(42 / 48, **TOL)


def test_one_hot_labels_give_the_same_result():
    assert compute_metrics(np.eye(4)[Y], P) == compute_metrics(Y, P)


def test_single_class_present_leaves_undefined_values_out():
    # All three examples are Covid. Predicted: Covid, Normal, Covid.
    y = [0, 0, 0]
    p = [[0.6, 0.2, 0.1, 0.1], [0.3, 0.4, 0.2, 0.1], [0.9, 0.05, 0.03, 0.02]]
    m = compute_metrics(y, p)
    pc = m["per_class"]
    # Covid:  TP=2, FN=1, FP=0, TN=0 -> sens 2/3, spec undefined (no negatives), precision 1, F1 4/5.
    assert pc[COVID]["sensitivity"] == pytest.approx(2 / 3, **TOL)
    assert pc[COVID]["specificity"] is None
    assert pc[COVID]["precision"] == pytest.approx(1.0, **TOL)
    assert pc[COVID]["f1"] == pytest.approx(0.8, **TOL)
    # Normal: TP=0, FN=0, FP=1, TN=2 -> sens undefined, spec 2/3, precision 0 (a false alarm), F1 0.
    assert pc[NORMAL]["sensitivity"] is None
    assert pc[NORMAL]["specificity"] == pytest.approx(2 / 3, **TOL)
    assert pc[NORMAL]["precision"] == 0.0
    assert pc[NORMAL]["f1"] == 0.0
    # Bact, Viral: neither present nor predicted -> TN=3 only: spec 1, everything else undefined.
    for name in (BACT, VIRAL):
        assert pc[name] == {"sensitivity": None, "specificity": 1.0, "precision": None, "f1": None,
                            "auroc": None, "support": 0}
    # AUROC needs positives and negatives: undefined for every class.
    assert all(pc[name]["auroc"] is None for name in CLASSES)
    assert m["macro_auroc"] is None
    # Macro means over the defined values only.
    assert m["macro_sensitivity"] == pytest.approx(2 / 3, **TOL)
    assert m["macro_specificity"] == pytest.approx((2 / 3 + 1 + 1) / 3, **TOL)
    assert m["macro_precision"] == pytest.approx((1 + 0) / 2, **TOL)
    assert m["macro_f1"] == pytest.approx((0.8 + 0) / 2, **TOL)

    flat = flat_metrics(m)
    assert "macro_auroc" not in flat
    assert "auroc/Covid" not in flat and "specificity/Covid" not in flat
    assert "sensitivity/Normal" not in flat
    assert flat["precision/Normal"] == 0.0
    assert flat["support/Pneumonia-Viral"] == 0


def test_perfect_classifier():
    y = np.array([0, 1, 2, 3, 3, 2, 1, 0])
    p = np.eye(4)[y]
    m = compute_metrics(y, p)
    assert m["accuracy"] == 1.0
    for name in CLASSES:
        assert m["per_class"][name] == {"sensitivity": 1.0, "specificity": 1.0, "precision": 1.0, "f1": 1.0,
                                        "auroc": 1.0, "support": 2}
    assert m["confusion_matrix"] == (2 * np.eye(4, dtype=int)).tolist()
    # p[true] = 1 is clipped to 1 - 1e-7, so the loss is -log(1 - 1e-7) ~ 1e-7, not 0.
    assert m["loss"] == pytest.approx(-math.log(1 - 1e-7), rel=1e-6)


def test_all_wrong():
    # Each example is predicted as the next class, with certainty.
    y = np.array([0, 1, 2, 3])
    p = np.eye(4)[(y + 1) % 4]
    m = compute_metrics(y, p)
    assert m["accuracy"] == 0.0
    # p[true] = 0 is clipped to 1e-7.
    assert m["loss"] == pytest.approx(-math.log(1e-7), rel=1e-9)
    assert m["confusion_matrix"] == [[0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1], [1, 0, 0, 0]]
    for name in CLASSES:
        pc = m["per_class"][name]
        # TP=0, FN=1, FP=1, TN=2.
        assert pc["sensitivity"] == 0.0 and pc["precision"] == 0.0 and pc["f1"] == 0.0
        assert pc["specificity"] == pytest.approx(2 / 3, **TOL)
        # Class scores: the positive has 0, one negative has 1, two negatives have 0.
        # Pairs: loses 1, ties 2 -> (0 + 0.5 + 0.5) / 3.
        assert pc["auroc"] == pytest.approx(1 / 3, **TOL)


def test_ties():
    # Exact tie in the arg-max goes to the first class; all-equal scores give AUROC 1/2.
    y = [0, 1, 2, 3]
    p = np.full((4, 4), 0.25)
    m = compute_metrics(y, p)
    assert m["confusion_matrix"] == [[1, 0, 0, 0], [1, 0, 0, 0], [1, 0, 0, 0], [1, 0, 0, 0]]
    assert all(m["per_class"][name]["auroc"] == pytest.approx(0.5, **TOL) for name in CLASSES)
    # Covid predicted 4 times, correct once: precision 1/4; Normal never predicted though present: 0.
    assert m["per_class"][COVID]["precision"] == pytest.approx(0.25, **TOL)
    assert m["per_class"][NORMAL]["precision"] == 0.0
    assert m["loss"] == pytest.approx(-math.log(0.25), **TOL)


def test_loss_renormalises_rows_like_keras():
    # Rows that do not sum to 1 are renormalised first: [2, 1, 1, 0] -> p[Covid] = 1/2.
    m = compute_metrics([0], [[2.0, 1.0, 1.0, 0.0]])
    assert m["loss"] == pytest.approx(math.log(2), **TOL)


def test_loss_matches_keras_categorical_crossentropy():
    keras = pytest.importorskip("keras")
    rng = np.random.default_rng(3)
    y = rng.integers(0, 4, size=50)
    p = rng.dirichlet(np.ones(4) * 0.3, size=50)  # includes near-zero probabilities
    p[0] = [1.0, 0.0, 0.0, 0.0]
    y[0] = 2  # clipped case
    expected = float(keras.losses.CategoricalCrossentropy()(np.eye(4)[y], p.astype("float32")))
    assert compute_metrics(y, p)["loss"] == pytest.approx(expected, rel=1e-5)


def _pairwise_auroc(scores, positive):
    """Independent AUROC: enumerate every (positive, negative) pair; win 1, tie 1/2."""
    pos = [s for s, is_pos in zip(scores, positive, strict=True) if is_pos]
    neg = [s for s, is_pos in zip(scores, positive, strict=True) if not is_pos]
    total = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in itertools.product(pos, neg))
    return total / (len(pos) * len(neg))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cross_check_against_independent_implementation(seed):
    rng = np.random.default_rng(seed)
    n = 120
    y = rng.integers(0, 4, size=n)
    # Coarse probabilities (rounded to 0.05) so that many scores tie.
    p = np.round(rng.dirichlet(np.ones(4), size=n) / 0.05) * 0.05 + 1e-3
    p /= p.sum(axis=1, keepdims=True)
    m = compute_metrics(y, p)

    predicted = [max(range(4), key=lambda c, row=row: (row[c], -c)) for row in p]
    cm = [[0] * 4 for _ in range(4)]
    for t, q in zip(y, predicted, strict=True):
        cm[t][q] += 1
    assert m["confusion_matrix"] == cm
    for c, name in enumerate(CLASSES):
        tp = sum(1 for t, q in zip(y, predicted, strict=True) if t == c and q == c)
        fp = sum(1 for t, q in zip(y, predicted, strict=True) if t != c and q == c)
        fn = sum(1 for t, q in zip(y, predicted, strict=True) if t == c and q != c)
        tn = n - tp - fp - fn
        sens, prec = tp / (tp + fn), tp / (tp + fp)
        pc = m["per_class"][name]
        assert pc["sensitivity"] == pytest.approx(sens, **TOL)
        assert pc["specificity"] == pytest.approx(tn / (tn + fp), **TOL)
        assert pc["precision"] == pytest.approx(prec, **TOL)
        assert pc["f1"] == pytest.approx(2 * prec * sens / (prec + sens), **TOL)
        assert pc["auroc"] == pytest.approx(_pairwise_auroc(p[:, c], y == c), rel=1e-12)
    loss = sum(-math.log(p[i, y[i]]) for i in range(n)) / n
    assert m["loss"] == pytest.approx(loss, rel=1e-9)
    assert m["accuracy"] == pytest.approx(sum(int(t == q) for t, q in zip(y, predicted, strict=True)) / n)


def test_custom_class_names():
    m = compute_metrics([0, 1, 2], np.eye(3), class_names=("a", "b", "c"))
    assert list(m["per_class"]) == ["a", "b", "c"]
    assert flat_metrics(m)["confusion/c/c"] == 1


def test_flat_metrics_keys_and_json():
    m = compute_metrics(Y, P)
    flat = flat_metrics(m)
    assert flat["loss"] == m["loss"] and flat["accuracy"] == 5 / 8
    assert flat["macro_f1"] == m["macro_f1"]
    assert flat["sensitivity/Covid"] == 0.5
    assert flat["auroc/Normal"] == pytest.approx(11 / 12, **TOL)
    assert flat["support/Pneumonia-Viral"] == 2
    assert flat["num_examples"] == 8
    assert flat["confusion/Covid/Normal"] == 1 and flat["confusion/Normal/Covid"] == 0
    # 8 scalars + 4 classes x 6 values + 16 confusion cells.
    assert len(flat) == 8 + 4 * 6 + 16
    assert all(isinstance(v, int | float) and math.isfinite(v) for v in flat.values())
    assert json.loads(json.dumps(flat)) == flat
    json.dumps(m)  # the nested result is JSON-serialisable too (plain Python numbers and None)


@pytest.mark.parametrize(
    ("y", "p", "message"),
    [
        ([0, 1], np.full((2, 3), 1 / 3), "shape"),
        ([0, 1, 2], np.full((2, 4), 0.25), "labels"),
        ([0, 4], np.full((2, 4), 0.25), "0..3"),
        ([], np.zeros((0, 4)), "empty"),
        ([0, 1], [[0.25, 0.25, 0.25, 0.25], [np.nan, 0.5, 0.25, 0.25]], "non-finite"),
    ],
)
def test_invalid_input_is_refused_clearly(y, p, message):
    with pytest.raises(ValueError, match=message):
        compute_metrics(y, p)

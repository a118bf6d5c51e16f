"""The reply contract (fl.privacy): what a ClientApp reply may carry, checked on hand-made records."""

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.app.message_type import MessageType
from flwr.supercore.task_identity import TaskIdentity

from fl.classes import CLASSES
from fl.metrics import compute_metrics
from fl.privacy import (
    METRIC_KEYS,
    ArraySpec,
    ReplyRefused,
    build_reply,
    check_reply,
    clean_metrics,
    error_reply,
    validation_metrics,
)

SHAPES = {"conv/kernel": (3, 3, 1, 2), "conv/bias": (2,), "dense/kernel": (2, 4)}


@pytest.fixture(autouse=True)
def task_identity():
    """Messages are made inside a Flower process, which knows its run, node and task ids: give this one some."""
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 99, 1
    yield


def arrays(dtype="float32", **override):
    data = {k: np.ones(s, dtype) for k, s in SHAPES.items()}
    data.update(override)
    return ArrayRecord({k: Array(v) for k, v in data.items()})


def message(kind=MessageType.TRAIN):
    return Message(RecordDict({"arrays": arrays(), "config": ConfigRecord({"server-round": 1})}),
                   dst_node_id=7, message_type=kind)  # fmt: skip


SPEC = ArraySpec(shapes=SHAPES)
GOOD = {"num-examples": 12, "train-loss": 1.2, "loss": 0.9, "accuracy": 0.5, "sensitivity/Covid": 1.0,
        "confusion/Covid/Normal": 3}  # fmt: skip


def test_whitelist_is_exactly_the_documented_keys():
    # 7 scalars + 5 macro values; 6 per-class metrics x 4 classes; 4 x 4 confusion counts.
    assert len(METRIC_KEYS) == 7 + 5 + 6 * 4 + 16
    assert {"num-examples", "macro_f1", "auroc/Covid", "support/Pneumonia-Viral", "confusion/Normal/Covid"} <= METRIC_KEYS
    assert not any("/" in k and k.split("/")[-1] not in CLASSES for k in METRIC_KEYS)


def test_build_reply_train_carries_only_arrays_and_metrics():
    msg = message()
    reply = build_reply(msg, metrics=GOOD, arrays=arrays(), spec=SPEC)
    assert set(reply.content.keys()) == {"arrays", "metrics"}
    assert dict(reply.content["metrics"]) == GOOD
    assert isinstance(reply.content["metrics"]["num-examples"], int)


def test_build_reply_evaluate_has_no_arrays():
    reply = build_reply(message(MessageType.EVALUATE), metrics=GOOD)
    assert set(reply.content.keys()) == {"metrics"}


@pytest.mark.parametrize(
    "metrics",
    [
        {**GOOD, "patient_id": 3.0},           # a key outside the whitelist
        {**GOOD, "file/Covid": 1.0},            # looks like a per-class key, is not one
        {"loss": 0.3},                          # no num-examples
        {**GOOD, "loss": float("nan")},         # not finite
        {**GOOD, "num-examples": 12.5},         # not an integer count
    ],
)
def test_metrics_outside_the_contract_are_refused(metrics):
    with pytest.raises(ReplyRefused):
        build_reply(message(), metrics=metrics, arrays=arrays(), spec=SPEC)


def test_text_values_cannot_even_be_built():
    with pytest.raises(ReplyRefused):
        clean_metrics({"num-examples": 3, "loss": "patient 17"})


@pytest.mark.parametrize(
    "record",
    [
        arrays(**{"conv/bias": np.ones((3,), "float32")}),          # wrong shape
        arrays(**{"extra/thing": np.ones((1,), "float32")}),        # an array the model does not have
        ArrayRecord({k: Array(np.ones(s, "float32")) for k, s in list(SHAPES.items())[:2]}),  # one missing
        arrays("float64"),                                          # wrong dtype
        arrays(**{"dense/kernel": np.full((2, 4), np.inf, "float32")}),  # not finite
    ],
)
def test_arrays_outside_the_contract_are_refused(record):
    with pytest.raises(ReplyRefused):
        build_reply(message(), metrics=GOOD, arrays=record, spec=SPEC)


def test_float16_transfer_is_accepted_only_when_the_spec_says_so():
    content = RecordDict({"arrays": arrays("float16"), "metrics": MetricRecord(GOOD)})
    with pytest.raises(ReplyRefused):
        check_reply(content, spec=SPEC)
    check_reply(content, spec=ArraySpec(shapes=SHAPES, dtypes=("float16",)))


def test_extra_records_are_refused():
    content = RecordDict({"arrays": arrays(), "metrics": MetricRecord(GOOD), "config": ConfigRecord({"path": "/x"})})
    with pytest.raises(ReplyRefused):
        check_reply(content, spec=SPEC)
    with pytest.raises(ReplyRefused):  # an evaluate reply must not carry arrays
        check_reply(RecordDict({"arrays": arrays(), "metrics": MetricRecord(GOOD)}), spec=None)


def test_error_reply_carries_only_the_fixed_text():
    reply = error_reply(message(), "fixed text")
    assert reply.has_error() and reply.error.reason == "fixed text"


def test_validation_metrics_of_compute_metrics_are_all_whitelisted():
    y = np.array([0, 1, 2, 3, 1])
    p = np.eye(4)[[0, 1, 3, 3, 2]] * 0.7 + 0.075
    m = validation_metrics(compute_metrics(y, p))
    assert set(m) <= METRIC_KEYS
    assert "num_examples" not in m and "confusion/Pneumonia-Bacterial/Pneumonia-Viral" in m
    assert m["confusion/Pneumonia-Bacterial/Pneumonia-Viral"] == 1

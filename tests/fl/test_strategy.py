"""FedXray's strategy: pooled metrics equal those of the pooled data; replies are checked, upcast and weighted."""

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, Error, Message, MetricRecord, RecordDict
from flwr.app.message_type import MessageType
from flwr.supercore.task_identity import TaskIdentity

from fl.classes import CLASSES
from fl.metrics import compute_metrics
from fl.privacy import validation_metrics
from fl.strategy import AUROC_MEAN, FedXrayFedAvg, pool_validation

RNG = np.random.default_rng(3)


@pytest.fixture(autouse=True)
def task_identity():
    """Messages are made inside a Flower process, which knows its run, node and task ids: give this one some."""
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 99, 1
    yield


def site(n, classes):
    y = RNG.choice(classes, size=n)
    p = RNG.dirichlet(np.ones(4), size=n)
    return y, p


def test_pooled_counts_metrics_equal_those_of_the_pooled_set():
    # Site 2 has no Covid at all (like site-c in the end-to-end test).
    sites = [site(30, [0, 1, 2, 3]), site(25, [1, 2, 3]), site(9, [0, 3])]
    rows = [validation_metrics(compute_metrics(y, p)) for y, p in sites]
    pooled = pool_validation(rows)
    everything = compute_metrics(np.concatenate([y for y, _ in sites]), np.concatenate([p for _, p in sites]))

    assert pooled["confusion_matrix"] == everything["confusion_matrix"]
    assert pooled["num_examples"] == 64 and pooled["num_sites"] == 3
    for key in ("accuracy", "macro_sensitivity", "macro_specificity", "macro_precision", "macro_f1", "loss"):
        assert pooled[key] == pytest.approx(everything[key], rel=1e-12), key
    for name in CLASSES:
        for key in ("sensitivity", "specificity", "precision", "f1", "support"):
            assert pooled["per_class"][name][key] == pytest.approx(everything["per_class"][name][key]), (name, key)
    # AUROC cannot be pooled exactly: it is the mean over the sites where it is defined, weighted by their
    # validation sizes, and named so. Covid: sites 0 (30 examples) and 2 (9).
    a0, a2 = (compute_metrics(y, p)["per_class"]["Covid"]["auroc"] for y, p in (sites[0], sites[2]))
    assert pooled["per_class"]["Covid"][AUROC_MEAN] == pytest.approx((30 * a0 + 9 * a2) / 39)
    assert pooled["per_class"]["Covid"]["auroc"] is None and pooled["macro_auroc"] is None


def reply(node, n, value, dtype="float32", metrics=None, kind=MessageType.TRAIN):
    arrays = ArrayRecord({"w": Array(np.full((2, 2), value, dtype)), "b": Array(np.full((3,), value, dtype))})
    msg = Message(RecordDict(), dst_node_id=node, message_type=kind)
    content = RecordDict({"arrays": arrays, "metrics": MetricRecord({"num-examples": n, **(metrics or {})})})
    out = Message(content, reply_to=msg)
    out.metadata.__dict__["_src_node_id"] = node
    return out


class FakeGrid:
    """Stands in for the SuperLink connection only to let configure_train sample nodes (no I/O involved)."""

    def get_node_ids(self):
        return [1, 2, 3]


def global_arrays():
    return ArrayRecord({"w": Array(np.zeros((2, 2), "float32")), "b": Array(np.zeros((3,), "float32"))})


def test_aggregation_weights_by_examples_upcasts_float16_and_drops_refused_replies():
    audits = []
    s = FedXrayFedAvg(transfer_dtype="float16", min_train_nodes=1, min_available_nodes=1, on_reply=audits.append)
    sent = list(s.configure_train(1, global_arrays(), __import__("flwr.app", fromlist=["ConfigRecord"]).ConfigRecord(),
                                  FakeGrid()))
    assert all(m.content["arrays"]["w"].dtype == "float16" for m in sent)  # the downlink is half precision too
    bad = reply(3, 100, 9.0, "float16", metrics={"patient-name": 1.0})
    failed = Message(Error(code=0, reason="x"), reply_to=Message(RecordDict(), dst_node_id=4,
                                                                  message_type=MessageType.TRAIN))
    arrays, metrics = s.aggregate_train(1, [reply(1, 10, 1.0, "float16"), reply(2, 30, 3.0, "float16"), bad, failed])
    # (10 * 1 + 30 * 3) / 40 = 2.5; the refused reply (weight 100, value 9) and the failure are left out.
    w = arrays["w"].numpy()
    assert w.dtype == np.float32 and np.allclose(w, 2.5)
    assert s.rounds[1]["num_sites"] == 2 and s.rounds[1]["failures"] == 2 and s.rounds[1]["sampled"] == 3
    assert metrics["num_examples"] == 40
    verdicts = sorted(a["verdict"] for a in audits)
    assert verdicts == ["accepted", "accepted", "error", "refused"]
    accepted = next(a for a in audits if a["verdict"] == "accepted")
    assert accepted["arrays"] == {"w": [[2, 2], "float16"], "b": [[3], "float16"]}


def test_evaluation_runs_every_n_rounds_and_in_the_last():
    from flwr.app import ConfigRecord

    s = FedXrayFedAvg(evaluate_every=2, num_rounds=3, min_evaluate_nodes=1, min_available_nodes=1)
    counts = [len(list(s.configure_evaluate(r, global_arrays(), ConfigRecord(), FakeGrid()))) for r in (1, 2, 3)]
    assert counts == [0, 3, 3]


def test_server_momentum_follows_fedavgm():
    from flwr.app import ConfigRecord

    # Round 1: global 0, sites average to 1 -> pseudo-gradient -1, m = -1, w = 0 - 0.5 * (-1) = 0.5.
    # Round 2: global 0.5, sites average to 1 -> pg = -0.5, m = 0.9 * -1 - 0.5 = -1.4, w = 0.5 + 0.7 = 1.2.
    s = FedXrayFedAvg(server_learning_rate=0.5, server_momentum=0.9, min_train_nodes=1, min_available_nodes=1)
    arrays = global_arrays()
    for expected in (0.5, 1.2):
        s.configure_train(1, arrays, ConfigRecord(), FakeGrid())
        arrays, _ = s.aggregate_train(1, [reply(1, 10, 1.0), reply(2, 10, 1.0)])
        assert np.allclose(arrays["w"].numpy(), expected)


def test_a_resumed_run_continues_the_round_numbering():
    from flwr.app import ConfigRecord

    audits = []
    # Resumed after 4 rounds of 6: Flower's rounds 1 and 2 are the run's rounds 5 and 6.
    s = FedXrayFedAvg(evaluate_every=3, num_rounds=6, round_offset=4, min_train_nodes=1, min_evaluate_nodes=1,
                      min_available_nodes=1, on_reply=audits.append)  # fmt: skip
    sent = list(s.configure_train(1, global_arrays(), ConfigRecord(), FakeGrid()))
    assert {m.content["config"]["server-round"] for m in sent} == {5}  # what the sites are told
    s.aggregate_train(1, [reply(1, 10, 1.0), reply(2, 10, 1.0)])
    assert set(s.rounds) == {5} and s.rounds[5]["num_sites"] == 2
    assert {a["round"] for a in audits} == {5}
    # evaluate-every 3 counts the run's rounds: round 5 is skipped, round 6 (the last) is evaluated.
    counts = [len(list(s.configure_evaluate(r, global_arrays(), ConfigRecord(), FakeGrid()))) for r in (1, 2)]
    assert counts == [0, 3]


def test_batchnorm_statistics_are_those_of_the_sites_data_taken_together():
    from flwr.app import ConfigRecord

    # Three sites' activations of one 2-channel batch-norm layer, with different means (different scanners).
    data = [RNG.normal(loc, scale, size=(n, 2)) for loc, scale, n in ((0.0, 1.0, 40), (3.0, 0.5, 25), (-1.0, 2.0, 10))]

    def record(mean, var, w):
        return ArrayRecord({"bn/moving_mean": Array(np.asarray(mean, "float32")),
                            "bn/moving_variance": Array(np.asarray(var, "float32")),
                            "w": Array(np.full((2, 2), w, "float32"))})  # fmt: skip

    s = FedXrayFedAvg(min_train_nodes=1, min_available_nodes=1)
    s.configure_train(1, record([0, 0], [1, 1], 0.0), ConfigRecord(), FakeGrid())
    replies = []
    for node, d in enumerate(data, start=1):
        msg = Message(RecordDict(), dst_node_id=node, message_type=MessageType.TRAIN)
        content = RecordDict({"arrays": record(d.mean(0), d.var(0), float(node)),
                              "metrics": MetricRecord({"num-examples": len(d)})})  # fmt: skip
        out = Message(content, reply_to=msg)
        out.metadata.__dict__["_src_node_id"] = node
        replies.append(out)
    arrays, _ = s.aggregate_train(1, replies)
    everything = np.concatenate(data)
    assert np.allclose(arrays["bn/moving_mean"].numpy(), everything.mean(0), atol=1e-5)
    assert np.allclose(arrays["bn/moving_variance"].numpy(), everything.var(0), rtol=1e-5)
    assert np.allclose(arrays["w"].numpy(), (40 * 1 + 25 * 2 + 10 * 3) / 75)  # weights: the plain weighted mean

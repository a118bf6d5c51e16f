"""The ClientApp called in-process with real messages: replies, transfer dtype, DP clipping, FedProx, errors.

The same app object the SuperNode runs (fl.client_app.app, mods included) is called directly; the full
deployment (SuperLink, SuperNodes, flwr run) is exercised in test_flower_apps.py.
"""

import json

import numpy as np
import pytest
from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.app.message_type import MessageType
from flwr.supercore.differential_privacy import KEY_CLIPPING_NORM
from flwr.supercore.task_identity import TaskIdentity

from fl.data import discover, split_by_patient
from fl.privacy import METRIC_KEYS
from tests.fl.flower_support import make_sites

RUN = {"arch": "tiny", "input-size": 32, "local-epochs": 1, "batch-size": 8, "augment": False}


@pytest.fixture(autouse=True)
def task_identity():
    """Messages are made inside a Flower process, which knows its run, node and task ids: give this one some."""
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 99, 1
    yield


@pytest.fixture(scope="module")
def site(shared_data, tmp_path_factory):
    """One small site (4 patients per class, site-c style: no Covid)."""
    out = tmp_path_factory.mktemp("sites")
    shares = {"site": {"Covid": 0.0, "Normal": 1.0, "Pneumonia-Bacterial": 1.0, "Pneumonia-Viral": 1.0}}
    return make_sites(shared_data / "cxr", out, shares=shares, per_class=5)["site"]


@pytest.fixture(scope="module")
def global_arrays():
    from fl.task import RunSettings, model_arrays, new_model

    return model_arrays(new_model(RunSettings.from_config(RUN)))


def call(kind, arrays, *, node_config, run=None, config=None, context=None):
    """One message through the app; `context` stands for the SuperNode's context of the run (kept across rounds
    as the SuperNode keeps it), a fresh one by default."""
    from fl.client_app import app

    content = RecordDict({"arrays": arrays, "config": ConfigRecord({"server-round": 1, **(config or {})})})
    msg = Message(content, dst_node_id=99, message_type=kind)
    context = context or Context(run_id=1, node_id=99, node_config=node_config, state=RecordDict(),
                                 run_config={**RUN, **(run or {})})  # fmt: skip
    return app(msg, context)


def distance(a, b):
    return float(np.sqrt(sum(np.sum((a[k].numpy().astype(np.float64) - b[k].numpy()) ** 2) for k in a)))


def test_train_reply_is_weights_and_whitelisted_metrics(site, global_arrays, tmp_path):
    status = tmp_path / "status.json"
    reply = call(MessageType.TRAIN, global_arrays, node_config={"data-dir": str(site), "status-file": str(status)})

    assert not reply.has_error()
    assert set(reply.content.keys()) == {"arrays", "metrics"}
    arrays, metrics = reply.content["arrays"], reply.content["metrics"]
    assert list(arrays.keys()) == list(global_arrays.keys())
    assert all(arrays[k].shape == global_arrays[k].shape and arrays[k].dtype == "float32" for k in arrays)
    assert distance(arrays, global_arrays) > 0  # it trained
    assert set(metrics.keys()) <= METRIC_KEYS
    train, val = split_by_patient(discover(site), val_fraction=0.2, seed=0)
    assert metrics["num-examples"] == len(train)
    assert sum(v for k, v in metrics.items() if k.startswith("confusion/")) == len(val)
    assert "support/Covid" in metrics and metrics["support/Covid"] == 0 and "sensitivity/Covid" not in metrics
    # Nothing in the reply names a file or a patient.
    text = json.dumps(dict(metrics))
    assert str(site) not in text and not any(s.patient_id in text for s in train + val)
    state = json.loads(status.read_text())
    assert state["phase"] == "sending" and state["round"] == 1 and state["device"] == "CPU"


def test_evaluate_reply_has_metrics_only(site, global_arrays):
    reply = call(MessageType.EVALUATE, global_arrays, node_config={"data-dir": str(site)})
    assert set(reply.content.keys()) == {"metrics"}
    _, val = split_by_patient(discover(site), val_fraction=0.2, seed=0)
    assert reply.content["metrics"]["num-examples"] == len(val)


def test_float16_transfer_halves_the_arrays(site, global_arrays):
    reply = call(MessageType.TRAIN, global_arrays, node_config={"data-dir": str(site)},
                 run={"transfer-dtype": "float16"})  # fmt: skip
    arrays = reply.content["arrays"]
    assert {arrays[k].dtype for k in arrays} == {"float16"}
    assert sum(len(a.data) for a in arrays.values()) < 0.6 * sum(len(a.data) for a in global_arrays.values())


def test_client_side_dp_clipping_bounds_the_update(site, global_arrays):
    reply = call(MessageType.TRAIN, global_arrays, node_config={"data-dir": str(site)},
                 config={KEY_CLIPPING_NORM: 0.05})  # fmt: skip
    assert distance(reply.content["arrays"], global_arrays) <= 0.05 + 1e-4


def test_fedprox_adds_half_mu_times_the_squared_distance_to_the_global_weights():
    import keras

    from fl.task import RunSettings, _proximal_model, new_model

    model = new_model(RunSettings.from_config(RUN))
    prox = _proximal_model(model, mu=4.0)  # anchors: the weights as they are now (the global model)
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype("float32")
    y = np.eye(4, dtype="float32")[[0, 2]]
    ce = keras.losses.CategoricalCrossentropy()
    prox.compile(loss=ce)
    at_anchor = float(prox.compute_loss(x, y, model(x)))
    assert at_anchor == pytest.approx(float(ce(y, model(x))), rel=1e-6)
    # Move one kernel by 0.01 everywhere: the term is 4 / 2 * 0.01^2 * size.
    kernel = model.get_layer("logits").kernel
    kernel.assign(kernel + 0.01)
    moved = float(prox.compute_loss(x, y, model(x)))
    assert moved - float(ce(y, model(x))) == pytest.approx(2.0 * 1e-4 * int(np.prod(kernel.shape)), rel=1e-3)


def test_fedprox_mu_from_the_server_reaches_the_training(site, global_arrays):
    # A large mu pulls the training loss (which includes the proximal term) up compared with mu = 0.
    free = call(MessageType.TRAIN, global_arrays, node_config={"data-dir": str(site)}, config={"proximal-mu": 0.0})
    held = call(MessageType.TRAIN, global_arrays, node_config={"data-dir": str(site)}, config={"proximal-mu": 1e4})
    assert held.content["metrics"]["train-loss"] > free.content["metrics"]["train-loss"]


def test_failures_leave_the_site_as_a_fixed_text(global_arrays, tmp_path):
    secret = tmp_path / "patient-Jane-Doe-1962"
    status = tmp_path / "status.json"
    reply = call(MessageType.TRAIN, global_arrays, node_config={"data-dir": str(secret), "status-file": str(status)})
    assert reply.has_error()
    assert reply.error.reason == "The ClientApp failed at the site (data folder problem); the site's SuperNode log has the details."
    # The details stay at the site, in its status file.
    assert str(secret) in json.loads(status.read_text())["error"]


def test_the_guard_stops_a_reply_outside_the_contract_whoever_made_it(global_arrays):
    # Whatever the handler or an inner mod puts in the reply, the outermost mod checks it before it leaves.
    from flwr.app import MetricRecord

    from fl.client_app import privacy_guard_mod

    msg = Message(RecordDict({"arrays": global_arrays, "config": ConfigRecord({"server-round": 1})}),
                  dst_node_id=99, message_type=MessageType.TRAIN)  # fmt: skip
    context = Context(run_id=1, node_id=99, node_config={}, state=RecordDict(), run_config=RUN)

    def leaky(m, c):
        return Message(RecordDict({"arrays": global_arrays,
                                   "metrics": MetricRecord({"num-examples": 3, "patient-17-age": 62})}),
                       reply_to=m)  # fmt: skip

    reply = privacy_guard_mod(msg, context, leaky)
    assert reply.has_error() and "privacy guard refused" in reply.error.reason
    assert "patient" not in reply.error.reason


def test_the_site_keeps_its_optimiser_state_between_rounds_and_never_sends_it(site, global_arrays):
    from fl.client_app import OPTIMIZER_STATE
    from fl.task import RunSettings, new_model

    def context(run=None):
        return Context(run_id=1, node_id=99, node_config={"data-dir": str(site)}, state=RecordDict(),
                       run_config={**RUN, **(run or {})})  # fmt: skip

    ctx = context()
    first = call(MessageType.TRAIN, global_arrays, node_config={}, context=ctx)
    kept = ctx.state[OPTIMIZER_STATE]
    # Adam's state of this network: a step count and two moments per trainable variable (counted here).
    trainable = new_model(RunSettings.from_config(RUN)).trainable_variables
    shapes = sorted([()] + [tuple(v.shape) for v in trainable] * 2)
    assert sorted(tuple(a.shape) for a in kept.values()) == shapes
    steps = [int(a.numpy()) for a in kept.values() if a.numpy().dtype.kind == "i"]
    assert len(steps) == 1 and steps[0] > 0

    second = call(MessageType.TRAIN, first.content["arrays"], node_config={}, config={"server-round": 2}, context=ctx)
    again = [int(a.numpy()) for a in ctx.state[OPTIMIZER_STATE].values() if a.numpy().dtype.kind == "i"]
    assert again == [2 * steps[0]]  # continued, not restarted
    # Continuing changes the training: the same round from a cold optimiser ends elsewhere.
    cold = call(MessageType.TRAIN, first.content["arrays"], node_config={}, config={"server-round": 2}, context=context())
    assert distance(second.content["arrays"], cold.content["arrays"]) > 0
    # The state stays at the site: the replies carry the model's arrays and the metrics, nothing else.
    for reply in (first, second):
        assert set(reply.content.keys()) == {"arrays", "metrics"}
        assert list(reply.content["arrays"].keys()) == list(global_arrays.keys())

    off = context({"keep-optimizer-state": False})
    call(MessageType.TRAIN, global_arrays, node_config={}, context=off)
    assert OPTIMIZER_STATE not in off.state


def test_the_full_networks_optimiser_state_survives_the_supernodes_context_transfer():
    """The SuperNode passes Context.state to each ClientApp process and takes it back as a protobuf message
    (flwr.common.serde, what Flower's runtime calls): SE-ResNet50V2's Adam state must come through whole."""
    from flwr.common.serde import context_from_proto, context_to_proto

    from fl.client_app import OPTIMIZER_STATE, load_optimizer_state, save_optimizer_state
    from fl.model import build_model
    from fl.train import compile_model, get_optimizer_state

    model = compile_model(build_model("se_resnet50v2", input_size=224), 1e-3)
    model.optimizer.build(model.trainable_variables)
    state = get_optimizer_state(model.optimizer)
    rng = np.random.default_rng(0)
    state = {k: rng.standard_normal(np.shape(v)).astype(v.dtype) if np.ndim(v) else np.asarray(v + 117)
             for k, v in state.items()}  # fmt: skip
    ctx = Context(run_id=1, node_id=99, node_config={}, state=RecordDict(), run_config={})
    save_optimizer_state(ctx, state)
    size = sum(len(a.data) for a in ctx.state[OPTIMIZER_STATE].values())
    assert size > 150e6  # two moments of about 24 million trainable weights: the SuperNode holds this per run
    back = load_optimizer_state(context_from_proto(context_to_proto(ctx)))
    assert back.keys() == state.keys()
    assert all(back[k].shape == state[k].shape and np.array_equal(back[k], state[k]) for k in state)

"""int8 updates with error feedback (fl.quantize), their privacy contract, and the round trip through the real
ClientApp and FedXray's strategy: what the server rebuilds is the site's trained weights within half a step."""

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.app.message_type import MessageType
from flwr.supercore.task_identity import TaskIdentity

from fl.privacy import ArraySpec, ReplyRefused, check_reply
from fl.quantize import decode_update, dequantize, encode_update, quantize, scale_shape
from tests.fl.flower_support import make_sites

RNG = np.random.default_rng(7)


@pytest.fixture(autouse=True)
def task_identity():
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 99, 1
    yield


# ---------------------------------------------------------------- the encoding itself


@pytest.mark.parametrize("shape", [(3, 3, 16, 32), (64, 4), (17,), ()])
def test_every_element_comes_back_within_half_a_step_of_its_channel(shape):
    x = RNG.normal(0, 0.01, size=shape).astype(np.float32)
    codes, scales = quantize(x)
    assert codes.dtype == np.int8 and codes.shape == x.shape
    assert scales.dtype == np.float32 and scales.shape == scale_shape(shape)
    # Expected scales worked out independently: the largest magnitude of each output channel over 127.
    flat = x.reshape(-1, shape[-1]) if len(shape) >= 2 else x.reshape(-1, 1)
    np.testing.assert_allclose(scales, np.abs(flat).max(axis=0) / 127, rtol=1e-6)
    step = np.broadcast_to(scales if len(shape) >= 2 else scales[0], x.shape)
    err = np.abs(dequantize(codes, scales) - x)
    assert (err <= step / 2 * (1 + 1e-5) + 1e-12).all()
    assert np.abs(codes).max() <= 127


def test_a_channel_of_zeros_stays_exactly_zero_and_others_keep_their_own_scale():
    x = np.zeros((5, 3), np.float32)
    x[:, 1] = [1.0, -2.0, 0.5, 0.25, 2.0]
    codes, scales = quantize(x)
    assert scales[0] == 0 and scales[2] == 0 and scales[1] == pytest.approx(2 / 127)
    assert (dequantize(codes, scales)[:, [0, 2]] == 0).all()
    assert dequantize(codes, scales)[1, 1] == pytest.approx(-2.0)


def test_error_feedback_loses_nothing_over_rounds_but_the_last_residual():
    """Telescoping: the sum of what the server rebuilt over T rounds equals the sum of the true updates minus
    the residual still held at the site, so rounding errors never pile up; without feedback they do."""
    received = {"k": np.zeros((8, 4), np.float32), "b": np.zeros(4, np.float32)}
    residual: dict = {}
    true_sum = {k: np.zeros_like(v) for k, v in received.items()}
    rebuilt_sum = {k: np.zeros_like(v) for k, v in received.items()}
    plain_sum = {k: np.zeros_like(v) for k, v in received.items()}
    for _ in range(20):
        update = {k: RNG.normal(0, 1e-3, v.shape).astype(np.float32) + 1e-4 for k, v in received.items()}
        local = {k: received[k] + update[k] for k in received}
        codes, scales = encode_update(local, received, residual)
        rebuilt = decode_update(codes, scales, received)
        plain = decode_update(*encode_update(local, received, None), received)
        for k in received:
            true_sum[k] += update[k]
            rebuilt_sum[k] += rebuilt[k] - received[k]
            plain_sum[k] += plain[k] - received[k]
    for k in received:
        np.testing.assert_allclose(rebuilt_sum[k], true_sum[k] - residual[k], atol=1e-6)
        assert np.abs(true_sum[k] - rebuilt_sum[k]).max() < np.abs(true_sum[k] - plain_sum[k]).max()


def test_integer_arrays_travel_unchanged_without_a_scale():
    local = {"w": np.ones((2, 2), np.float32), "seed": np.array([3, 4], np.uint32)}
    received = {"w": np.zeros((2, 2), np.float32), "seed": np.array([1, 2], np.uint32)}
    codes, scales = encode_update(local, received)
    assert set(scales) == {"w"} and codes["seed"].dtype == np.uint32
    rebuilt = decode_update(codes, scales, received)
    np.testing.assert_array_equal(rebuilt["seed"], [3, 4])
    np.testing.assert_allclose(rebuilt["w"], 1.0)


# ---------------------------------------------------------------- the privacy contract for int8 replies


def _record(d):
    return ArrayRecord({k: Array(np.ascontiguousarray(v)) for k, v in d.items()})


def _int8_reply(codes, scales):
    return RecordDict({"arrays": _record(codes), "scales": _record(scales),
                       "metrics": MetricRecord({"num-examples": 3})})  # fmt: skip


def test_an_int8_reply_is_accepted_only_as_codes_plus_one_scale_per_float_array():
    model = {"k": np.zeros((3, 2), np.float16), "b": np.zeros(2, np.float16)}
    spec = ArraySpec.of(_record(model), "int8")
    codes, scales = encode_update({k: v + 0.5 for k, v in model.items()}, model)
    check_reply(_int8_reply(codes, scales), spec=spec)  # the conforming reply passes

    bad = [
        ({**codes, "k": codes["k"].astype(np.float32)}, scales),  # floats where codes belong
        (codes, {"k": scales["k"]}),  # a scale missing
        (codes, {**scales, "x": np.ones(1, np.float32)}),  # an extra scale
        (codes, {**scales, "k": np.ones(3, np.float32)}),  # wrong shape (per row instead of per column)
        (codes, {**scales, "b": -scales["b"] - 1}),  # negative
        (codes, {**scales, "b": np.array([np.nan], np.float32)}),
    ]
    for c, s in bad:
        with pytest.raises(ReplyRefused):
            check_reply(_int8_reply(c, s), spec=spec)
    with pytest.raises(ReplyRefused):  # no scales record at all
        check_reply(RecordDict({"arrays": _record(codes), "metrics": MetricRecord({"num-examples": 3})}), spec=spec)
    with pytest.raises(ReplyRefused):  # scales in a run that does not transfer int8
        check_reply(_int8_reply(codes, scales), spec=ArraySpec.of(_record(model), "float16"))


# ---------------------------------------------------------------- through the real ClientApp and strategy


RUN = {"arch": "tiny", "input-size": 32, "local-epochs": 1, "batch-size": 8, "augment": False,
       "transfer-dtype": "int8"}  # fmt: skip


@pytest.fixture(scope="module")
def site(shared_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("sites")
    shares = {"site": {"Covid": 1.0, "Normal": 1.0, "Pneumonia-Bacterial": 1.0, "Pneumonia-Viral": 1.0}}
    return make_sites(shared_data / "cxr", out, shares=shares, per_class=3)["site"]


def test_the_server_rebuilds_the_sites_trained_weights_within_half_a_step(site):
    """The real ClientApp trains and encodes; FedXray's strategy decodes; the rebuilt weights equal the ones the
    same training produces in float32 (same seed, same data) within half a quantisation step per channel."""
    from fl.client_app import UPDATE_RESIDUAL, app
    from fl.strategy import FedXrayFedAvg
    from fl.task import RunSettings, model_arrays, new_model

    from .test_strategy import FakeGrid

    global_arrays = model_arrays(new_model(RunSettings.from_config(RUN)))
    strategy = FedXrayFedAvg(transfer_dtype="int8", min_train_nodes=1, min_available_nodes=1)
    sent = list(strategy.configure_train(1, global_arrays, ConfigRecord(), FakeGrid()))[0]
    assert {a.dtype for a in sent.content["arrays"].values()} == {"float16"}  # int8 up, float16 down

    def train(run):
        msg = Message(RecordDict({"arrays": sent.content["arrays"], "config": ConfigRecord({"server-round": 1})}),
                      dst_node_id=99, message_type=MessageType.TRAIN)  # fmt: skip
        context = Context(run_id=1, node_id=99, node_config={"data-dir": str(site)}, state=RecordDict(),
                          run_config={**RUN, **run})  # fmt: skip
        return app(msg, context), context

    reply, context = train({})
    assert not reply.has_error(), reply.error.reason if reply.has_error() else ""
    assert set(reply.content.keys()) == {"arrays", "scales", "metrics"}
    assert {a.dtype for a in reply.content["arrays"].values()} == {"int8"}
    assert UPDATE_RESIDUAL in context.state  # what rounding lost stays at the site for the next round
    codes_bytes = sum(a.numpy().nbytes for a in reply.content["arrays"].values())
    scale_bytes = sum(a.numpy().nbytes for a in reply.content["scales"].values())
    float_bytes = sum(a.numpy().nbytes for a in global_arrays.values())

    reference, _ = train({"transfer-dtype": "float32"})  # the same training, sent whole in float32
    scales = {k: a.numpy() for k, a in reply.content["scales"].items()}
    arrays, _ = strategy.aggregate_train(1, [Message(reply.content, reply_to=sent)])  # one site: its own weights
    assert strategy.rounds[1]["num_sites"] == 1
    for k, ref in reference.content["arrays"].items():
        got, want = arrays[k].numpy(), ref.numpy()
        half_step = np.broadcast_to(scales[k] if want.ndim >= 2 else scales[k][0], want.shape) / 2
        # The strategy's server step (learning rate 2 by default in runs, 1 here) leaves one site's weights as they are.
        assert (np.abs(got - want) <= half_step * (1 + 1e-4) + 1e-7).all(), k
    # Payload: the codes are exactly a quarter of float32. The scales of this tiny network (one per output
    # channel of 1-kB arrays) are relatively large; the full network's bytes on the wire, with Flower's own
    # framing, are measured in tests/benchmarks/bench_federated.py.
    assert codes_bytes * 4 == float_bytes
    assert scale_bytes < 0.15 * float_bytes

"""The ServerApp's pieces that need no SuperLink: the strategy a run's settings build, and which exceptions mean
"interrupted from outside" (resumed by the central) rather than "failed" (not resumed)."""

import grpc
import pytest

from fl.server_app import build_strategy, interrupted
from fl.task import RunSettings


def test_run_settings_reach_the_strategy():
    settings = RunSettings.from_config({"fraction-train": 0.5, "min-sites": 3, "num-server-rounds": 6,
                                        "start-round": 2, "transfer-dtype": "float16"})  # fmt: skip
    inner, outer = build_strategy(settings)
    assert outer is inner  # no differential privacy: nothing wraps it
    assert inner.fraction_train == 0.5 and inner.min_train_nodes == 3 and inner.min_available_nodes == 3
    assert inner.round_offset == 2 and inner.num_rounds == 6 and inner.transfer_dtype == "float16"


def test_differential_privacy_wraps_the_strategy():
    settings = RunSettings.from_config({"dp": "client", "dp-noise-multiplier": 0.5, "dp-clipping-norm": 2.0})
    inner, outer = build_strategy(settings)
    assert outer is not inner and type(outer).__name__ == "DifferentialPrivacyClientSideFixedClipping"


class _Unavailable(grpc.RpcError):
    pass


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (KeyboardInterrupt(), True),  # SIGTERM from the SuperLink's supervisor
        (SystemExit(1), True),
        (ConnectionRefusedError(), True),
        (_Unavailable(), True),  # the SuperLink went away
        (ValueError("the initial model is tiny at 64 px"), False),  # a real failure: resuming would repeat it
        (RuntimeError("boom"), False),
    ],
)
def test_interrupted_or_failed(exc, expected):
    assert interrupted(exc) is expected

"""Fixtures shared by the whole test suite."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
os.environ.setdefault("FLWR_DISABLE_UPDATE_CHECK", "1")

REPO = Path(__file__).resolve().parents[1]

# Hypothesis (the fuzz tests of hostile input): "ci" keeps the search under a minute on two cores and draws the
# same examples every run (derandomised: CI does not flake; a new finding comes from a change, not from luck);
# FEDXRAY_FUZZ_PROFILE=long draws 50 times as many, new ones each run. No deadline per example (loaded machines).
try:
    from hypothesis import HealthCheck, settings

    settings.register_profile("ci", max_examples=300, deadline=None, print_blob=True, derandomize=True,
                              database=None, suppress_health_check=[HealthCheck.too_slow])
    settings.register_profile("long", max_examples=15_000, deadline=None, print_blob=True,
                              suppress_health_check=[HealthCheck.too_slow])
    settings.load_profile(os.environ.get("FEDXRAY_FUZZ_PROFILE", "ci"))
except ImportError:  # the dev extra installs it; without it only the fuzz tests cannot run
    pass


def shared_data_dir() -> Path:
    """The shared test data (../shared/data beside the checkout, or $FEDXRAY_SHARED_DATA)."""
    env = os.environ.get("FEDXRAY_SHARED_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


def require_shared_data(*parts: str) -> Path:
    """A file or folder of the shared test data; a missing one FAILS the test (never skips it): CI always has the
    data, so a test that needs it must not pass quietly without it."""
    path = shared_data_dir().joinpath(*parts)
    if not path.exists():
        pytest.fail(f"the shared test data is missing: expected {path} (set FEDXRAY_SHARED_DATA)")
    return path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return require_shared_data("cxr").parent


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A real model folder with the tiny test network (random weights) at 64 px, with its LiteRT artefact."""
    from fl.model import build_model, get_architecture
    from fl.modelfile import ModelCard, save_model

    out = tmp_path_factory.mktemp("models") / "tiny"
    arch = get_architecture("tiny")
    model = build_model("tiny", input_size=64)
    card = ModelCard(name="FedXray tiny test network", version="0.0.1-test", arch="tiny", input_size=64,
                     scaling=arch.scaling, demo=True, description="random weights, for tests")
    save_model(model, out, card)
    from fl.litert_convert import convert

    convert(out)  # its LiteRT artefact, as a published model has: the app and the CLI run it without TensorFlow
    return out

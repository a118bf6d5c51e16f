"""Run settings: the Flower app's [tool.flwr.app.config] and fl.task.RunSettings describe the same settings."""

import tomllib
from pathlib import Path

import pytest

from fl.task import RunSettings, SettingsError

APP_PYPROJECT = Path(__file__).resolve().parents[2] / "fl" / "flwr_app" / "pyproject.toml"


def app_config() -> dict:
    return tomllib.loads(APP_PYPROJECT.read_text())["tool"]["flwr"]["app"]["config"]


def test_the_app_config_and_the_settings_have_the_same_keys_and_defaults():
    config = app_config()
    settings = RunSettings.from_config(config)
    assert settings.to_config() == config  # every key the app declares is a setting, with the same default
    assert RunSettings.from_config({}).to_config().keys() == config.keys()


def test_a_resumed_run_setting_is_checked_against_the_rounds():
    s = RunSettings.from_config({**app_config(), "num-server-rounds": 5, "start-round": 3})
    assert (s.num_rounds, s.start_round) == (5, 3)
    for bad in (5, 7, -1):  # all rounds done, more than all, negative
        with pytest.raises(SettingsError, match="'start-round'"):
            RunSettings.from_config({"num-server-rounds": 5, "start-round": bad})


@pytest.mark.parametrize("value", [0.0, -0.5, 1.5])
def test_fraction_train_must_be_a_fraction(value):
    with pytest.raises(SettingsError, match="'fraction-train'"):
        RunSettings.from_config({"fraction-train": value})
    assert RunSettings.from_config({"fraction-train": 0.5}).fraction_train == 0.5


def test_the_learning_rate_schedule_must_be_known():
    assert RunSettings.from_config({}).lr_schedule == "cosine"
    assert RunSettings.from_config({"lr-schedule": "constant"}).lr_schedule == "constant"
    with pytest.raises(SettingsError, match="'lr-schedule'"):
        RunSettings.from_config({"lr-schedule": "linear"})


def test_a_site_with_one_source_gets_class_weights_from_source_weights(shared_data):
    """`source-weights` at a site whose labelled set is one source: the loss is the class-weighted loss times
    the constant N x mean(1 / n_class) / K (the two weightings differ only in their normalisation)."""
    import keras
    import numpy as np

    from fl.data import discover
    from fl.model import build_model
    from fl.task import train_local

    site = [s for s in discover(shared_data / "cxr") if s.population.startswith("pediatric")]
    samples = [s for c in (1, 2, 3) for s in [x for x in site if x.label == c][:c + 1]]  # 2, 3, 4 images
    assert len({s.source for s in samples}) == 1
    losses = {}
    keras.utils.set_random_seed(0)
    start = build_model("tiny", input_size=32, dropout=0.0).get_weights()
    for source_weights in (True, False):
        settings = RunSettings.from_config({
            "arch": "tiny", "input-size": 32, "batch-size": len(samples), "lr-schedule": "constant",
            "augment": False, "recalibrate-bn": False, "source-weights": source_weights, "balance-classes": True})
        model = build_model("tiny", input_size=32, dropout=0.0)
        model.set_weights(start)
        losses[source_weights] = train_local(model, samples, settings)["train-loss"]  # one batch: loss before the step
    counts = np.array([2, 3, 4])
    factor = len(samples) * np.mean(1 / counts) / len(counts)
    assert losses[True] == pytest.approx(factor * losses[False], rel=1e-4)
    assert abs(factor - 1) > 0.02  # the test can tell the two apart


def test_source_settings_are_read_from_the_run_config():
    s = RunSettings.from_config({"source-weights": True, "source-cues": True})
    assert s.source_weights and s.source_cues
    with pytest.raises(SettingsError, match="source-cues"):
        RunSettings.from_config({"source-cues": "yes"})

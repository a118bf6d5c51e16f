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

"""Model files: round trip, card checks and refusal of damaged or mismatched files."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from fl.model import build_model
from fl.modelfile import CARD_FILE, WEIGHTS_FILE, ModelCard, ModelFileError, load_model, read_card, save_model


def _card(**kw):
    base = dict(name="test", version="1.2.3", arch="tiny", input_size=64, scaling="tf")
    base.update(kw)
    return ModelCard(**base)


@pytest.fixture
def saved(tmp_path):
    model = build_model("tiny", input_size=64)
    out = tmp_path / "m"
    save_model(model, out, _card())
    return model, out


def test_round_trip_gives_identical_predictions(saved):
    model, out = saved
    loaded, card = load_model(out)
    x = np.random.default_rng(1).uniform(-1, 1, (3, 64, 64, 3)).astype("float32")
    np.testing.assert_array_equal(np.asarray(model(x)), np.asarray(loaded(x)))
    assert card.version == "1.2.3" and card.weights["parameters"] == model.count_params()


def test_card_records_sha256_of_the_weights(saved):
    import hashlib

    _, out = saved
    card = json.loads((out / CARD_FILE).read_text())
    assert card["weights"]["sha256"] == hashlib.sha256((out / WEIGHTS_FILE).read_bytes()).hexdigest()


def test_half_precision_file_is_half_the_size_and_close(tmp_path):
    model = build_model("tiny", input_size=64)
    save_model(model, tmp_path / "f32", _card())
    save_model(model, tmp_path / "f16", _card(), dtype="float16")
    size32 = (tmp_path / "f32" / WEIGHTS_FILE).stat().st_size
    size16 = (tmp_path / "f16" / WEIGHTS_FILE).stat().st_size
    assert size16 < 0.6 * size32
    half, card = load_model(tmp_path / "f16")
    assert card.weights["dtype"] == "float16"
    x = np.random.default_rng(2).uniform(-1, 1, (2, 64, 64, 3)).astype("float32")
    np.testing.assert_allclose(np.asarray(model(x)), np.asarray(half(x)), atol=2e-3)


def test_truncated_weights_are_refused(saved):
    _, out = saved
    w = out / WEIGHTS_FILE
    w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
    with pytest.raises(ModelFileError, match="does not match its model card"):
        load_model(out)


def test_altered_byte_is_refused(saved):
    _, out = saved
    w = out / WEIGHTS_FILE
    data = bytearray(w.read_bytes())
    data[-10] ^= 0xFF
    w.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="altered"):
        load_model(out)


def test_card_for_another_architecture_is_refused(saved):
    _, out = saved
    card = json.loads((out / CARD_FILE).read_text())
    card["arch"] = "se_resnet50v2"
    (out / CARD_FILE).write_text(json.dumps(card))
    with pytest.raises(ModelFileError, match="do not fit this network"):
        load_model(out)


def test_missing_or_corrupt_card_is_refused(saved, tmp_path):
    _, out = saved
    broken = tmp_path / "broken"
    shutil.copytree(out, broken)
    (broken / CARD_FILE).write_text("{not json")
    with pytest.raises(ModelFileError, match="corrupt"):
        read_card(broken)
    (broken / CARD_FILE).unlink()
    with pytest.raises(ModelFileError, match="not a FedXray model"):
        read_card(broken)
    with pytest.raises(ModelFileError, match="does not exist"):
        read_card(tmp_path / "nowhere")


def test_saving_over_an_existing_model_replaces_it_whole(saved):
    _, out = saved
    other = build_model("tiny", input_size=64)
    save_model(other, out, _card(version="2.0.0"))
    assert read_card(out).version == "2.0.0"
    assert sorted(p.name for p in out.iterdir()) == [CARD_FILE, WEIGHTS_FILE]
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]


def test_the_intended_use_statement_has_one_home():
    """The app's bar, the reports, `fedxray classify`, new cards and the README all say fl.modelfile.INTENDED_USE."""
    from pathlib import Path

    from app.core import report
    from fl.modelfile import INTENDED_USE

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    assert f"**Intended use.** {INTENDED_USE}" in readme
    assert report.INTENDED_USE is INTENDED_USE and _card().intended_use == INTENDED_USE
    banners = (Path(__file__).resolve().parents[2] / "app" / "ui" / "banners.py").read_text(encoding="utf-8")
    assert "from app.core.report import INTENDED_USE" in banners and 'INTENDED_USE = ("' not in banners


def test_inference_records_are_checked_and_dropped_with_new_weights(saved):
    from fl.litert_convert import convert
    from fl.modelfile import INFERENCE_FILE, check_inference

    _, saved = saved
    path = convert(saved)
    card = read_card(saved)
    assert path == saved / INFERENCE_FILE and card.inference["bytes"] == path.stat().st_size
    assert check_inference(saved, card.inference, card.weights["sha256"]) == path
    with pytest.raises(ModelFileError, match="made from other weights"):
        check_inference(saved, card.inference, "f" * 64)
    with pytest.raises(ModelFileError, match="not described completely"):
        check_inference(saved, {"format": "litert", "file": INFERENCE_FILE}, card.weights["sha256"])
    # Saving new weights into the folder drops the record (the artefact belonged to the old ones).
    model, _ = load_model(saved)
    again = save_model(model, saved, card)
    assert again.inference == {} and read_card(saved).inference == {}

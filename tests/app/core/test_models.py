"""The model store: import checked by card and SHA-256 (tampered weights refused), zip, active model, removal."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import pytest

from app.core.models import (
    BUNDLED_ID,
    ModelImportError,
    ModelNotFoundError,
    ModelStore,
    ModelStoreError,
    active_model_dir,
)
from app.core.paths import data_dir
from app.core.settings import Preferences


@pytest.fixture
def bundled(tiny_model_dir, tmp_path):
    """A stand-in for resources/models/default: the real tiny model with other weights and version."""
    return model_variant(tiny_model_dir, tmp_path / "bundled", version="9.9")


def model_variant(src: Path, dst: Path, *, version: str) -> Path:
    """A real model folder whose card says another version (same weights: the import dedupes by weights
    hash, so the weights get one extra tensor byte changed and the card its new hash)."""
    import hashlib

    shutil.copytree(src, dst)
    card = json.loads((dst / "card.json").read_text())
    w = dst / card["weights"]["file"]
    data = bytearray(w.read_bytes())
    data[-1 - sum(map(ord, version)) % 256] ^= 0x01  # a different weight for each version
    w.write_bytes(bytes(data))
    card["version"] = version
    card["weights"]["sha256"] = hashlib.sha256(bytes(data)).hexdigest()
    card["inference"] = {}  # its LiteRT artefact belonged to the old weights
    (dst / "model.tflite").unlink(missing_ok=True)
    (dst / "card.json").write_text(json.dumps(card))
    return dst


def test_import_copies_verified_model(tiny_model_dir, bundled):
    store = ModelStore(bundled_dir=bundled)
    assert store.root == data_dir() / "models"
    m = store.import_model(tiny_model_dir)
    assert m.id == "fedxray-tiny-test-network-0.0.1-test" and not m.bundled
    assert m.dir == store.root / m.id
    for name in ("card.json", "weights.safetensors", "model.tflite"):              # with its LiteRT artefact
        assert (m.dir / name).read_bytes() == (tiny_model_dir / name).read_bytes()
    assert m.card.version == "0.0.1-test" and m.card.demo is True
    assert [x.id for x in store.list()] == [BUNDLED_ID, m.id]
    assert store.import_model(bundled).id == BUNDLED_ID                  # already installed as the bundled one
    assert store.get(m.id) == m
    assert sorted(p.name for p in store.root.iterdir()) == [m.id]      # no temporary folders left
    assert store.import_model(tiny_model_dir / "card.json") == m       # importing again: the same model


def test_tampered_weights_are_refused(tiny_model_dir, bundled, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(tiny_model_dir, bad)
    w = bad / "weights.safetensors"
    data = bytearray(w.read_bytes())
    data[len(data) // 2] ^= 0xFF            # one flipped byte in the middle of the tensors
    w.write_bytes(bytes(data))
    store = ModelStore(bundled_dir=bundled)
    with pytest.raises(ModelImportError, match="does not match its model card"):
        store.import_model(bad)
    assert [p.name for p in store.root.iterdir()] == []
    assert [m.id for m in store.list()] == [BUNDLED_ID]

    (bad / "weights.safetensors").unlink()
    with pytest.raises(ModelImportError, match="missing"):
        store.import_model(bad)


def test_not_a_model(tmp_path, bundled):
    store = ModelStore(bundled_dir=bundled)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelImportError, match="no card.json"):
        store.import_model(tmp_path / "empty")
    (tmp_path / "x.txt").write_text("hello")
    with pytest.raises(ModelImportError, match="not a FedXray model"):
        store.import_model(tmp_path / "x.txt")
    with pytest.raises(ModelImportError, match="does not exist"):
        store.import_model(tmp_path / "nothing-here")


def test_zip_import_and_unsafe_zip(tiny_model_dir, bundled, tmp_path):
    z = tmp_path / "model.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for f in tiny_model_dir.iterdir():
            zf.write(f, f"tiny/{f.name}")
    store = ModelStore(bundled_dir=bundled)
    m = store.import_model(z)
    assert (m.dir / "weights.safetensors").read_bytes() == (tiny_model_dir / "weights.safetensors").read_bytes()

    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("../../escape.txt", "boo")
        zf.writestr("card.json", "{}")
    with pytest.raises(ModelImportError, match="unsafe"):
        store.import_model(evil)
    assert not (tmp_path / "escape.txt").exists()


def test_same_name_version_different_weights_refused(tiny_model_dir, bundled, tmp_path):
    store = ModelStore(bundled_dir=bundled)
    store.import_model(tiny_model_dir)
    clash = model_variant(tiny_model_dir, tmp_path / "clash", version="0.0.1-test")
    with pytest.raises(ModelImportError, match="already installed"):
        store.import_model(clash)


def test_active_model_and_removal(tiny_model_dir, bundled, tmp_path):
    store = ModelStore(bundled_dir=bundled)
    assert store.active().id == BUNDLED_ID and store.active().bundled
    m2 = store.import_model(model_variant(tiny_model_dir, tmp_path / "v2", version="2.0"))
    store.set_active(m2.id)
    assert Preferences.load().model_id == m2.id and store.active() == m2
    with pytest.raises(ModelStoreError, match="cannot be removed"):
        store.remove(BUNDLED_ID)
    store.remove(m2.id)
    assert not m2.dir.exists() and Preferences.load().model_id == BUNDLED_ID
    assert store.active().id == BUNDLED_ID
    with pytest.raises(ModelNotFoundError):
        store.set_active("nope")


def test_active_model_dir_uses_preferences_then_bundled(tiny_model_dir, monkeypatch, tmp_path):
    import resources

    m = ModelStore(bundled_dir=tiny_model_dir).import_model(model_variant(tiny_model_dir, tmp_path / "v", version="3"))
    Preferences(model_id=m.id).save()
    assert active_model_dir() == m.dir
    # Unknown id in the preferences: the bundled model of the installation.
    Preferences(model_id="gone").save()
    monkeypatch.setattr(resources, "default_model_dir", lambda: tiny_model_dir)
    assert active_model_dir() == tiny_model_dir


def test_no_model_at_all(tmp_path):
    store = ModelStore(tmp_path / "models", bundled_dir=tmp_path / "missing")
    with pytest.raises(ModelNotFoundError, match="No model is installed"):
        store.active()


def test_a_tampered_litert_artefact_is_refused_at_import(tiny_model_dir, bundled, tmp_path):
    src = tmp_path / "m"
    shutil.copytree(tiny_model_dir, src)
    artefact = src / "model.tflite"
    artefact.write_bytes(artefact.read_bytes()[:-1000])
    store = ModelStore(bundled_dir=bundled)
    with pytest.raises(ModelImportError, match="cannot be imported: its LiteRT file model.tflite has .* truncated"):
        store.import_model(src)
    assert [m.id for m in store.list()] == [BUNDLED_ID]


def test_a_card_that_records_an_artefact_not_shipped_is_imported_and_converted_here(tiny_model_dir, bundled,
                                                                                    tmp_path):
    """A release downloads the weights and the card only: the model is installed; the app makes the artefact."""
    from app.core.inference import InferenceService

    src = tmp_path / "release"
    shutil.copytree(tiny_model_dir, src)
    (src / "model.tflite").unlink()
    m = ModelStore(bundled_dir=bundled).import_model(src)
    assert not (m.dir / "model.tflite").exists() and m.card.inference
    svc = InferenceService(convert_missing=True)
    svc.load(m.dir)
    assert svc.engine == "tensorflow" and "is missing" in svc.notice
    assert svc.conversion.wait(timeout=600) == 0
    again = InferenceService()
    again.load(m.dir)
    assert again.engine == "litert" and again.notice is None  # an artefact not shipped is no news

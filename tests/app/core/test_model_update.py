"""Model updates on the workstation, offline parts: signature and manifest checks, install, rollback, CLI refusals.

Downloads from a real central (and the evaluation on a labelled set) are tested end to end in
tests/central/test_runs_models.py; here no connection is opened (the no_network fixture enforces it).
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from app.cli import main as fedxray
from app.core import model_update as mu
from app.core.enrollment import Enrollment, enrollment_dir
from app.core.models import ModelStore
from app.core.settings import Preferences


def make_version(src: Path, dest: Path, version: str, *, scale: float) -> Path:
    """A copy of the tiny test model with scaled weights and its own version (no TensorFlow needed)."""
    from safetensors.numpy import load_file, save_file

    dest.mkdir(parents=True)
    tensors = {k: (v * scale).astype(v.dtype) for k, v in load_file(str(src / "weights.safetensors")).items()}
    save_file(tensors, str(dest / "weights.safetensors"))
    data = (dest / "weights.safetensors").read_bytes()
    card = json.loads((src / "card.json").read_text())
    card.update(name="FedXray federated", version=version, demo=False)
    card["weights"].update(sha256=hashlib.sha256(data).hexdigest(), bytes=len(data))
    (dest / "card.json").write_text(json.dumps(card))
    return dest


def manifest_of(model_dir: Path) -> bytes:
    """The manifest exactly as the central builds it (central.crud.models.release_manifest)."""
    card = json.loads((model_dir / "card.json").read_text())
    data = (model_dir / "weights.safetensors").read_bytes()
    payload = {"format": "fedxray-model-release/1", "version": card["version"],
               "file_sha256": hashlib.sha256(data).hexdigest(), "file_size": len(data), "card": card}  # fmt: skip
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def sign(key: ed25519.Ed25519PrivateKey, data: bytes) -> str:
    return base64.b64encode(key.sign(data)).decode()


@pytest.fixture
def versions(tmp_path, tiny_model_dir) -> dict[str, Path]:
    return {v: make_version(tiny_model_dir, tmp_path / v, v, scale=s) for v, s in (("r1", 1.0), ("r2", 0.5))}


@pytest.fixture
def key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


@pytest.fixture
def store(tmp_path) -> ModelStore:
    return ModelStore(bundled_dir=tmp_path / "no-bundled-model")  # the same with or without a bundled model


# ---------------------------------------------------------------- signature and manifest
def test_a_manifest_signed_by_the_enrolment_key_gives_the_release(versions, key):
    manifest = manifest_of(versions["r1"])
    release = mu.verify_manifest(manifest, sign(key, manifest), key.public_key())
    data = (versions["r1"] / "weights.safetensors").read_bytes()
    assert (release.version, release.file_sha256, release.file_size) == ("r1", hashlib.sha256(data).hexdigest(),
                                                                          len(data))  # fmt: skip
    assert release.card == json.loads((versions["r1"] / "card.json").read_text())
    assert release.weights_file == "weights.safetensors"


@pytest.mark.parametrize("case", ["other-key", "altered", "garbage", "truncated"])
def test_bad_signatures_are_refused(versions, key, case):
    manifest = manifest_of(versions["r1"])
    signature = sign(key, manifest)
    if case == "other-key":
        signature = sign(ed25519.Ed25519PrivateKey.generate(), manifest)
    elif case == "altered":
        manifest = manifest.replace(b'"name":"FedXray federated"', b'"name":"FedXray federated!"')
    elif case == "garbage":
        signature = "not base64 at all!"
    else:
        signature = signature[:20]
    with pytest.raises(mu.ModelUpdateError, match="signature does not verify.*not signed by your central"):
        mu.verify_manifest(manifest, signature, key.public_key())


@pytest.mark.parametrize("signature", [None, ""])
def test_an_unsigned_release_is_refused(versions, key, signature):
    with pytest.raises(mu.ModelUpdateError, match="without a signature"):
        mu.verify_manifest(manifest_of(versions["r1"]), signature, key.public_key())


@pytest.mark.parametrize("change", ["format", "version", "card-hash", "path-in-name", "size"])
def test_a_signed_but_inconsistent_manifest_is_refused(versions, key, change):
    payload = json.loads(manifest_of(versions["r1"]))
    if change == "format":
        payload["format"] = "fedxray-model-release/99"
    elif change == "version":
        payload["version"] = "r9"  # the card still says r1
    elif change == "card-hash":
        payload["card"]["weights"]["sha256"] = "0" * 64
    elif change == "path-in-name":
        payload["card"]["weights"]["file"] = "../../.bashrc"
    else:
        payload["file_size"] = 0
    manifest = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    with pytest.raises(mu.ModelUpdateError, match="not one this version of FedXray understands"):
        mu.verify_manifest(manifest, sign(key, manifest), key.public_key())


def _enrollment() -> Enrollment:
    return Enrollment(central_url="https://central.invalid:8443", node_id=7, site="St Mary",
                      superlink_address="central.invalid:8443", ca_fingerprint="0" * 64,
                      enrolled_at="2026-11-22T00:00:00+00:00", keyring_id="k")  # fmt: skip


def test_the_signing_key_must_be_the_ed25519_key_from_enrolment(key):
    enrollment = _enrollment()
    with pytest.raises(mu.ModelUpdateError, match="missing or damaged"):
        mu.public_key(enrollment)
    enrollment_dir().mkdir(parents=True)
    ec_key = ec.generate_private_key(ec.SECP384R1()).public_key()
    enrollment.signing_key_path.write_bytes(ec_key.public_bytes(serialization.Encoding.PEM,
                                                                serialization.PublicFormat.SubjectPublicKeyInfo))
    with pytest.raises(mu.ModelUpdateError, match="not an Ed25519"):
        mu.public_key(enrollment)
    enrollment.signing_key_path.write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    loaded = mu.public_key(enrollment)
    assert loaded.public_bytes_raw() == key.public_key().public_bytes_raw()


# ---------------------------------------------------------------- install and rollback
def test_install_keeps_the_previous_model_and_rollback_switches_back_and_forth(versions, store):
    first, previous = mu.install(versions["r1"], store=store)
    assert previous is None and store.active().id == first.id and first.card.version == "r1"
    with pytest.raises(mu.ModelUpdateError, match="no earlier model"):
        mu.rollback(store=store)
    second, previous = mu.install(versions["r2"], store=store)
    assert previous == first.id and store.active().id == second.id
    assert Preferences.load().model_id == second.id
    assert {m.id for m in store.list()} == {first.id, second.id}  # the previous one is kept

    now, replaced = mu.rollback(store=store)
    assert (now.id, replaced.id) == (first.id, second.id) and store.active().id == first.id
    now, replaced = mu.rollback(store=store)  # again: back to the update
    assert (now.id, replaced.id) == (second.id, first.id)

    again, previous = mu.install(versions["r2"], store=store)  # the active model re-installed: nothing lost
    assert again.id == second.id and previous == first.id
    assert mu.read_state()["previous"] == first.id


def test_rollback_to_a_removed_model_is_refused(versions, store):
    first, _ = mu.install(versions["r1"], store=store)
    second, _ = mu.install(versions["r2"], store=store)
    store.remove(first.id)
    with pytest.raises(mu.ModelUpdateError, match="no longer installed"):
        mu.rollback(store=store)
    assert store.active().id == second.id


def test_a_model_whose_weights_do_not_match_its_card_is_not_installed(versions, store):
    good, _ = mu.install(versions["r1"], store=store)
    weights = versions["r2"] / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01
    weights.write_bytes(bytes(data))
    with pytest.raises(mu.ModelUpdateError, match="does not match its model card"):
        mu.install(versions["r2"], store=store)
    assert store.active().id == good.id and [m.id for m in store.list()] == [good.id]


# ---------------------------------------------------------------- labelled images
def test_the_comparison_set_is_the_labelled_set_or_the_folder_given(tmp_path, cxr):
    assert mu.local_samples() is None  # no labelled set yet: nothing to compare on
    with pytest.raises(mu.ModelUpdateError, match="Cannot compare the models on"):
        mu.local_samples(tmp_path / "missing")
    from app.core.labelled import LabelledSet

    root = LabelledSet().root
    for cls, path in cxr.items():
        (root / cls).mkdir(parents=True)
        (root / cls / path.name).write_bytes(path.read_bytes())
    found_root, samples = mu.local_samples()
    assert found_root == root and sorted(s.label for s in samples) == [0, 1, 2, 3]


# ---------------------------------------------------------------- the command
def test_update_on_a_workstation_that_is_not_enrolled_is_refused(capsys):
    assert fedxray(["models", "update", "--yes", "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] is False and "not enrolled" in out["error"] and "fedxray enroll" in out["error"]


def test_rollback_without_an_update_is_refused(capsys):
    assert fedxray(["models", "rollback"]) == 1
    assert "no earlier model" in capsys.readouterr().err


def test_the_comparison_table_shows_old_and_new_side_by_side():
    from app.cli.models import comparison_table

    new = {"accuracy": 0.75, "macro_f1": 0.5, "sensitivity": {"Covid": 1.0, "Normal": None},
           "support": {"Covid": 2, "Normal": 0}}  # fmt: skip
    text = comparison_table({"accuracy": 0.5, "macro_f1": 0.25, "sensitivity": {"Covid": 0.5}}, new, "old", "new")
    lines = text.splitlines()
    assert lines[0].split() == ["current:", "old", "new:", "new"]
    assert lines[1].split() == ["accuracy", "0.500", "0.750"]
    assert lines[3].split() == ["sensitivity", "Covid", "(n=2)", "0.500", "1.000"]
    assert lines[4].split() == ["sensitivity", "Normal", "(n=0)", "n/a", "n/a"]
    assert "n/a" in comparison_table(None, new, "none", "new").splitlines()[1]

"""fl.release (the release protocol both sides import) and fl.modelfile.write_model_folder (the one way a model
folder is made from a card and a weights file): what the central would sign is exactly what a workstation
accepts, and a folder is written whole or not at all."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from fl.modelfile import ModelFileError, read_card, verify, write_model_folder
from fl.release import ReleaseError, manifest_bytes, release_problem, verify_release


@pytest.fixture
def card(tiny_model_dir) -> dict:
    return json.loads((tiny_model_dir / "card.json").read_text())


def signed(card: dict, key: ed25519.Ed25519PrivateKey, *, sha: str, size: int) -> tuple[bytes, str]:
    manifest = manifest_bytes(version=card["version"], file_sha256=sha, file_size=size, card=card)
    return manifest, base64.b64encode(key.sign(manifest)).decode()


def test_the_manifest_is_canonical_json_of_exactly_these_fields(card):
    manifest = manifest_bytes(version="v1", file_sha256="ab" * 32, file_size=12, card=card)
    expected = json.dumps({"format": "fedxray-model-release/1", "version": "v1", "file_sha256": "ab" * 32,
                           "file_size": 12, "card": card}, sort_keys=True, separators=(",", ":")).encode()  # fmt: skip
    assert manifest == expected and manifest.isascii()


@pytest.mark.parametrize(("name", "accepted"), [
    ("weights.safetensors", True), ("w-1_2.bin", True),
    ("my weights.safetensors", False),  # the central used to sign this; every workstation refused it
    (" weights.safetensors", False), ("../weights.safetensors", False), ("sub/w.safetensors", False),
    (".hidden", False), ("", False), ("w\\x.bin", False), ("x" * 101, False),
])  # fmt: skip
def test_the_central_signs_only_what_every_workstation_accepts(card, tiny_model_dir, name, accepted):
    data = (tiny_model_dir / "weights.safetensors").read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    version = card["version"]
    candidate = dict(card, weights=dict(card["weights"], file=name, sha256=sha, bytes=len(data)))
    problem = release_problem(version=version, card=candidate, file_sha256=sha, file_size=len(data))
    assert (problem is None) == accepted, problem
    key = ed25519.Ed25519PrivateKey.generate()
    manifest, signature = signed(candidate, key, sha=sha, size=len(data))
    if accepted:
        release = verify_release(manifest, signature, key.public_key())
        assert (release.version, release.weights_file, release.file_size) == (version, name, len(data))
    else:
        assert "plain file name" in problem
        with pytest.raises(ReleaseError) as caught:
            verify_release(manifest, signature, key.public_key())
        assert caught.value.reason == "not-understood"


def test_signature_problems_are_told_apart(card):
    key = ed25519.Ed25519PrivateKey.generate()
    manifest, signature = signed(card, key, sha=card["weights"]["sha256"], size=card["weights"]["bytes"])
    for sig, reason in ((None, "unsigned"), ("", "unsigned"), ("%%%", "bad-signature"),
                        (base64.b64encode(b"x" * 64).decode(), "bad-signature")):  # fmt: skip
        with pytest.raises(ReleaseError) as caught:
            verify_release(manifest, sig, key.public_key())
        assert caught.value.reason == reason
    other = ed25519.Ed25519PrivateKey.generate().public_key()
    with pytest.raises(ReleaseError, match="does not verify"):
        verify_release(manifest, signature, other)


@pytest.mark.parametrize("how", ["copy", "link", "move"])
def test_a_model_folder_is_written_from_a_card_and_a_weights_file(tmp_path, tiny_model_dir, card, how):
    weights = tmp_path / "incoming.bin"
    weights.write_bytes((tiny_model_dir / "weights.safetensors").read_bytes())
    target = tmp_path / "models" / "m1"
    written = write_model_folder(target, card=card, weights=weights, how=how)
    assert written.version == card["version"]
    assert sorted(p.name for p in target.iterdir()) == ["card.json", "weights.safetensors"]
    assert verify(target).weights["sha256"] == hashlib.sha256(weights.read_bytes() if how != "move" else
                                                              (target / "weights.safetensors").read_bytes()).hexdigest()
    assert json.loads((target / "card.json").read_text()) == card and read_card(target).name == card["name"]
    assert weights.exists() == (how != "move")
    if how == "link":
        assert os.stat(weights).st_ino == os.stat(target / "weights.safetensors").st_ino
    assert [p.name for p in target.parent.iterdir()] == ["m1"]  # no temporary folder left


def test_a_weights_file_that_does_not_match_the_card_leaves_nothing(tmp_path, tiny_model_dir, card):
    target = tmp_path / "models" / "m1"
    write_model_folder(target, card=card, weights=tiny_model_dir / "weights.safetensors")
    before = (target / "weights.safetensors").read_bytes()
    bad = tmp_path / "bad.bin"
    bad.write_bytes(before[:-1] + bytes([before[-1] ^ 1]))
    with pytest.raises(ModelFileError, match="does not match its model card"):
        write_model_folder(target, card=card, weights=bad, how="move")
    assert (target / "weights.safetensors").read_bytes() == before  # the folder that was there is untouched
    assert [p.name for p in target.parent.iterdir()] == ["m1"]
    # A hash the caller computed while reading is trusted instead of a second pass, and checked against the card.
    with pytest.raises(ModelFileError):
        write_model_folder(tmp_path / "m2", card=card, weights=tiny_model_dir / "weights.safetensors", sha256="0" * 64)
    assert not (tmp_path / "m2").exists()
    with pytest.raises(ModelFileError, match="plain weights file"):
        write_model_folder(tmp_path / "m3", card=dict(card, weights=dict(card["weights"], file="../x")),
                           weights=tiny_model_dir / "weights.safetensors")  # fmt: skip


def test_the_folder_keeps_the_name_the_card_gives(tmp_path, tiny_model_dir, card):
    renamed = dict(card, weights=dict(card["weights"], file="model.bin"))
    write_model_folder(tmp_path / "m", card=renamed, weights=tiny_model_dir / "weights.safetensors")
    assert (tmp_path / "m" / "model.bin").is_file() and verify(tmp_path / "m")
    assert Path(read_card(tmp_path / "m").weights["file"]) == Path("model.bin")

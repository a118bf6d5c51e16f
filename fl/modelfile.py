"""Model files: weights (safetensors) plus a model card, written atomically and checked on load."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fl.classes import CLASSES

CARD_FILE = "card.json"
WEIGHTS_FILE = "weights.safetensors"
INFERENCE_FILE = "model.tflite"  # the LiteRT artefact beside the weights (fl.litert runs it without TensorFlow)
INFERENCE_RECORD = "artefact.json"  # an artefact's record where no card holds it (the workstation's cache)
# The one intended-use statement: the app's bar, the reports, `fedxray classify`, new model cards and the README.
INTENDED_USE = ("Decision support for research and clinical evaluation only — not a certified medical device; "
                "not a diagnosis.")


class ModelFileError(Exception):
    """A model folder is missing, incomplete, altered or does not match its card."""


@dataclass
class ModelCard:
    """What a model is, how it was made and how to feed it; saved as card.json beside the weights."""

    name: str
    version: str
    arch: str
    input_size: int
    scaling: str
    classes: list[str] = field(default_factory=lambda: list(CLASSES))
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    demo: bool = False
    intended_use: str = INTENDED_USE
    description: str = ""
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    weights: dict[str, Any] = field(default_factory=dict)  # {"file", "sha256", "dtype", "bytes"}
    federation: dict[str, Any] = field(default_factory=dict)
    # The LiteRT artefact made from these weights ({"format", "file", "sha256", "bytes", "weights_sha256", ...},
    # see fl.litert_convert); empty when the folder has none.
    inference: dict[str, Any] = field(default_factory=dict)
    format_version: int = 1
    limitations: str = ""  # the main limitation, one or two sentences the app shows next to the model name

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelCard:
        known = {f.name for f in dataclasses.fields(cls)}
        missing = [n for n in ("name", "version", "arch", "input_size", "scaling") if n not in data]
        if missing:
            raise ModelFileError(f"the model card lacks {', '.join(missing)}")
        return cls(**{k: v for k, v in data.items() if k in known})

    @property
    def main_limitation(self) -> str:
        """What a user must know before reading a result of this model ('' when the card says nothing)."""
        if self.limitations:
            return self.limitations
        return "Demonstration model: not clinically validated." if self.demo else ""

    @property
    def display_name(self) -> str:
        suffix = " (demonstration model)" if self.demo else ""
        return f"{self.name} {self.version}{suffix}"


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file's content, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def read_card(model_dir: str | os.PathLike) -> ModelCard:
    """Read and sanity-check a model card without TensorFlow."""
    model_dir = Path(model_dir)
    card_path = model_dir / CARD_FILE
    if not model_dir.is_dir():
        raise ModelFileError(f"model folder {model_dir} does not exist")
    try:
        data = json.loads(card_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelFileError(f"{model_dir} is not a FedXray model: it has no {CARD_FILE}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"the model card {card_path} is unreadable or corrupt ({exc})") from None
    if not isinstance(data, dict):
        raise ModelFileError(f"the model card {card_path} is not a JSON object")
    card = ModelCard.from_dict(data)
    if list(card.classes) != list(CLASSES):
        raise ModelFileError(f"the model predicts {card.classes}, but FedXray expects {list(CLASSES)}")
    if not card.weights.get("sha256") or not card.weights.get("file"):
        raise ModelFileError("the model card does not record its weights file and SHA-256")
    return card


def verify(model_dir: str | os.PathLike, card: ModelCard | None = None) -> ModelCard:
    """Check the weights file against the SHA-256 in the card; returns the card."""
    model_dir = Path(model_dir)
    card = card or read_card(model_dir)
    weights = model_dir / Path(card.weights["file"]).name
    if not weights.is_file():
        raise ModelFileError(f"the weights file {weights.name} is missing from {model_dir}")
    digest = sha256_file(weights)
    if digest != card.weights["sha256"]:
        raise ModelFileError(
            f"the weights file in {model_dir} does not match its model card (SHA-256 {digest[:12]}… instead of "
            f"{card.weights['sha256'][:12]}…): it is truncated, altered or belongs to another model. "
            "Reinstall the model."
        )
    return card


def check_inference(folder: str | os.PathLike, record: dict[str, Any], weights_sha256: str) -> Path:
    """The artefact `record` describes in `folder`, checked like the weights: present, the SHA-256 the record
    gives, made from the weights with `weights_sha256`. Raises ModelFileError saying what is wrong."""
    folder = Path(folder)
    if record.get("format") != "litert" or not record.get("file") or not record.get("sha256"):
        raise ModelFileError("its LiteRT file is not described completely (format, file and SHA-256)")
    if record.get("weights_sha256") != weights_sha256:
        raise ModelFileError("its LiteRT file was made from other weights than the model's own")
    path = folder / Path(record["file"]).name
    if not path.is_file():
        raise ModelFileError(f"its LiteRT file {path.name} is missing from {folder}")
    size = path.stat().st_size
    if record.get("bytes") is not None and size != int(record["bytes"]):
        raise ModelFileError(f"its LiteRT file {path.name} has {size} bytes instead of {record['bytes']}: it is "
                             "truncated or altered")
    digest = sha256_file(path)
    if digest != record["sha256"]:
        raise ModelFileError(f"its LiteRT file {path.name} does not match its record (SHA-256 {digest[:12]}… "
                             f"instead of {record['sha256'][:12]}…): it is altered or belongs to another model")
    return path


def read_record(folder: str | os.PathLike) -> dict[str, Any]:
    """The artefact record (artefact.json) of a folder that holds an artefact without a card (a cache entry)."""
    path = Path(folder) / INFERENCE_RECORD
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"the LiteRT record {path} is unreadable or corrupt ({exc})") from None
    if not isinstance(data, dict):
        raise ModelFileError(f"the LiteRT record {path} is not a JSON object")
    return data


def record_inference(model_dir: str | os.PathLike, record: dict[str, Any]) -> ModelCard:
    """Record the artefact (already in `model_dir`) in the card; the card is replaced atomically."""
    model_dir = Path(model_dir)
    card = dataclasses.replace(read_card(model_dir), inference=dict(record))
    tmp = model_dir / f".{CARD_FILE}.{os.getpid()}.tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(card.to_json())
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, model_dir / CARD_FILE)
    finally:
        tmp.unlink(missing_ok=True)
    return card


def model_tensors(model, dtype: str = "float32") -> dict[str, Any]:
    """The model's variables as numpy arrays keyed by their Keras path (e.g. 'conv1_conv/kernel')."""
    import numpy as np

    tensors: dict[str, Any] = {}
    for v in model.weights:
        if v.path in tensors:
            raise ModelFileError(f"duplicate variable path {v.path!r}: name every layer that has weights")
        arr = np.asarray(v.numpy())
        if arr.dtype.kind == "f":
            arr = arr.astype(dtype)
        tensors[v.path] = np.ascontiguousarray(arr)
    return tensors


def assign_tensors(model, tensors: dict[str, Any], *, source: str = "weights") -> None:
    """Set every model variable from `tensors`; refuse missing, extra or mis-shaped entries."""
    import numpy as np

    paths = {v.path for v in model.weights}
    missing = sorted(paths - tensors.keys())
    extra = sorted(tensors.keys() - paths)
    if missing or extra:
        raise ModelFileError(
            f"{source} do not fit this network: {len(missing)} variables missing (e.g. {missing[:3]}), "
            f"{len(extra)} unexpected (e.g. {extra[:3]})"
        )
    for v in model.weights:
        arr = tensors[v.path]
        if tuple(arr.shape) != tuple(v.shape):
            raise ModelFileError(f"{source}: {v.path} has shape {arr.shape}, the network needs {tuple(v.shape)}")
        v.assign(np.asarray(arr, dtype=v.dtype))


def load_weights_file(model, path: Path) -> None:
    """Load a safetensors weights file into `model` by variable path."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelFileError(f"the weights file {path} is unreadable or corrupt ({exc})") from None
    assign_tensors(model, tensors, source=f"the weights in {path.name}")


def save_model(model, model_dir: str | os.PathLike, card: ModelCard, *, dtype: str = "float32") -> ModelCard:
    """Save weights (no optimizer state) and card into `model_dir`, atomically replacing it."""
    from safetensors.numpy import save_file

    model_dir = Path(model_dir)
    model_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{model_dir.name}.", dir=model_dir.parent))
    try:
        weights = tmp / WEIGHTS_FILE
        save_file(model_tensors(model, dtype), str(weights), metadata={"arch": card.arch, "version": card.version})
        card = dataclasses.replace(
            card,
            inference={},  # new weights: an artefact made from earlier ones no longer belongs to them
            weights={
                "file": WEIGHTS_FILE,
                "sha256": sha256_file(weights),
                "dtype": dtype,
                "bytes": weights.stat().st_size,
                "parameters": int(model.count_params()),
            },
        )
        (tmp / CARD_FILE).write_text(card.to_json(), encoding="utf-8")
        for f in tmp.iterdir():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        _replace_dir(tmp, model_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return card


def write_model_folder(target: str | os.PathLike, *, card: dict[str, Any], weights: str | os.PathLike,
                       how: str = "copy", sha256: str | None = None, extras: Sequence[str | os.PathLike] = (),
                       check: Callable[[Path], None] | None = None) -> ModelCard:  # fmt: skip
    """Make `target` the model folder of `card` and the weights file `weights`, in one step.

    The weights are copied, hard-linked (falling back to a copy) or moved (`how`) into a fresh folder beside
    `target`, named as the card says; their SHA-256 is checked against the card (the caller that hashed the
    file while reading it passes that `sha256` instead of a second pass); the card is written beside them; then
    the folder replaces `target`. Used by the central (a version to resume from), model updates (a verified
    download) and model imports. `extras` (e.g. the LiteRT artefact) are copied beside the weights and `check`
    runs on the new folder before it replaces `target`. ModelFileError when the card does not describe the file
    or `check` refuses; nothing is left."""
    from fl.release import is_weights_name

    target = Path(target)
    parsed = ModelCard.from_dict(card)
    name = (parsed.weights or {}).get("file")
    expected = (parsed.weights or {}).get("sha256")
    if not is_weights_name(name) or not expected:
        raise ModelFileError("the model card does not name a plain weights file and its SHA-256")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        dest = tmp / name
        if how == "move":
            shutil.move(os.fspath(weights), dest)
        elif how == "link":
            try:
                os.link(weights, dest)
            except OSError:
                _copy_synced(Path(weights), dest)
        elif how == "copy":
            _copy_synced(Path(weights), dest)
        else:
            raise ValueError(f"how must be copy, link or move, not {how!r}")
        digest = sha256 if sha256 is not None else sha256_file(dest)
        if digest != expected:
            raise ModelFileError(f"the weights file does not match its model card (SHA-256 {digest[:12]}… instead of "
                                 f"{expected[:12]}…): it is truncated, altered or belongs to another model")  # fmt: skip
        with open(tmp / CARD_FILE, "w", encoding="utf-8") as fh:
            fh.write(json.dumps(card, indent=2))
            fh.flush()
            os.fsync(fh.fileno())
        for extra in extras:
            _copy_synced(Path(extra), tmp / Path(extra).name)
        if check is not None:
            check(tmp)
        _replace_dir(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return parsed


def _copy_synced(src: Path, dst: Path) -> None:
    with open(src, "rb") as inp, open(dst, "wb") as out:
        shutil.copyfileobj(inp, out, 1 << 20)
        out.flush()
        os.fsync(out.fileno())


def _replace_dir(src: Path, dst: Path) -> None:
    """Move `src` to `dst`; an existing `dst` is swapped out first and removed only after the move."""
    old = None
    if dst.exists():
        old = dst.with_name(f".{dst.name}.old-{os.getpid()}")
        os.replace(dst, old)
    os.replace(src, dst)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def load_model(model_dir: str | os.PathLike):
    """Build the network its card names and load the verified weights; returns (model, card)."""
    from fl.model import build_model

    model_dir = Path(model_dir)
    card = verify(model_dir)
    model = build_model(card.arch, input_size=int(card.input_size), num_classes=len(card.classes))
    load_weights_file(model, model_dir / Path(card.weights["file"]).name)
    return model, card

"""The LiteRT artefact of a model version, made by the central when it releases the version.

Workstations classify with the artefact (fl.litert) without importing TensorFlow. The central makes it once per
released version, in a TensorFlow process of its own (fl.litert_convert, checked against the Keras model there),
stores it beside the version's weights and records it (SHA-256, size, the weights' SHA-256) in the version's card,
which the release manifest signs: a workstation downloads the artefact with the weights and checks it against the
signed record. A version whose artefact cannot be made is still released; its workstations make the artefact
themselves once, in the background, as for any model without one.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from central.home import CentralHome
from fl.litert_convert import command
from fl.modelfile import INFERENCE_FILE, ModelFileError, check_inference, read_card, write_model_folder

log = logging.getLogger("central.artefacts")

CONVERT_TIMEOUT_S = 900.0  # SE-ResNet50V2: about 30 s here; a loaded central gets ample room


@dataclass(frozen=True)
class Artefact:
    """The outcome of making a version's artefact: its card record, or why there is none."""

    record: dict[str, Any] | None
    problem: str | None = None


def current_record(home: CentralHome, model_id: int, card: dict[str, Any]) -> dict[str, Any] | None:
    """The card's artefact record when the central holds that artefact for these weights, else None."""
    record = card.get("inference") or None
    weights_sha = (card.get("weights") or {}).get("sha256")
    path = home.artefact_file(model_id)
    if not record or not weights_sha or not path.is_file():
        return None
    folder = Path(tempfile.mkdtemp(prefix=".check-", dir=home.models_dir))
    try:
        os.link(path, folder / Path(record.get("file") or INFERENCE_FILE).name)
        check_inference(folder, record, weights_sha)
        return record
    except (ModelFileError, OSError):
        return None
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def make_artefact(home: CentralHome, model_id: int, card: dict[str, Any], *,
                  timeout: float = CONVERT_TIMEOUT_S) -> Artefact:  # fmt: skip
    """Convert the version's stored weights in a separate TensorFlow process; on success the artefact is stored at
    home.artefact_file(model_id) and its record returned (to go into the card before the release is signed)."""
    weights = home.model_file(model_id)
    work = Path(tempfile.mkdtemp(prefix=".convert-", dir=home.models_dir))
    try:
        folder = work / "model"
        plain = {k: v for k, v in card.items() if k != "inference"}  # a record from elsewhere names no file here
        try:
            write_model_folder(folder, card=plain, weights=weights, how="link")
        except (ModelFileError, OSError) as exc:
            return Artefact(None, f"its stored file and card do not make a model folder ({exc})")
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
        try:
            proc = subprocess.run([*command(folder), "--nice"], capture_output=True, text=True, env=env,
                                  timeout=timeout, check=False)  # fmt: skip
        except subprocess.TimeoutExpired:
            return Artefact(None, f"the conversion took longer than {timeout:.0f} s")
        if proc.returncode != 0:
            lines = [line for line in proc.stderr.splitlines() if line.strip()]
            return Artefact(None, lines[-1] if lines else f"the conversion ended with code {proc.returncode}")
        record = dict(read_card(folder).inference)
        os.replace(folder / INFERENCE_FILE, home.artefact_file(model_id))
        return Artefact(record)
    except (ModelFileError, OSError) as exc:
        return Artefact(None, str(exc))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def ensure_artefact(home: CentralHome, model_id: int, card: dict[str, Any]) -> Artefact:
    """The version's artefact record, made now when the central does not hold a sound one for these weights."""
    record = current_record(home, model_id, card)
    if record is not None:
        return Artefact(record)
    made = make_artefact(home, model_id, card)
    if made.record is None:
        log.warning("model %s: no LiteRT artefact (%s); workstations will make their own", card.get("version"),
                    made.problem)
    return made

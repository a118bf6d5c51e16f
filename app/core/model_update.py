"""Model updates from the central: fetch the signed release, verify it, compare it, install it, roll it back.

Trust: the release manifest (fl.release: the protocol the central signs with) must verify against the Ed25519
model-signing key this workstation received at enrolment. Only then is anything in it used: the downloaded file,
hashed as it arrives, must have the manifest's size and SHA-256, and the model folder is rebuilt from the signed
card and that file (fl.modelfile.write_model_folder). Installing moves that folder into place, after one more
check of its weights (it sat on disk while the models were compared). Until then nothing is installed or changed.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import requests

from app.core.central_client import CentralClient, detail
from app.core.enrollment import Enrollment, load_enrollment
from app.core.errors import AppError
from app.core.keystore import SecretStore
from app.core.models import InstalledModel, ModelImportError, ModelNotFoundError, ModelStore
from app.core.paths import atomic_write_text, config_dir
from fl.release import Release, ReleaseError, verify_release

STATE_FILE = "model-update.json"
DOWNLOAD_PREFIX = ".download-"
KEEP = "The model in use was not changed."


class ModelUpdateError(AppError):
    """A model update or rollback was refused or failed; nothing was changed. The message says why."""


# ---------------------------------------------------------------- trust
def public_key(enrollment: Enrollment):
    """The central's model-signing public key received at enrolment (Ed25519)."""
    from cryptography.hazmat.primitives.asymmetric import ed25519
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    try:
        key = load_pem_public_key(enrollment.signing_key_path.read_bytes())
    except (OSError, ValueError) as exc:
        raise ModelUpdateError(f"The model-signing key received at enrolment ({enrollment.signing_key_path}) is "
                               "missing or damaged, so no model can be trusted. Run `fedxray leave`, then enrol "
                               f"again. {KEEP}") from exc  # fmt: skip
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise ModelUpdateError(f"{enrollment.signing_key_path} is not an Ed25519 model-signing key. {KEEP}")
    return key


def verify_manifest(manifest: bytes, signature_b64: str | None, key) -> Release:
    """Check the manifest's signature with `key`, then its content (fl.release, the central's own rules);
    returns the release it describes."""
    try:
        return verify_release(manifest, signature_b64, key)
    except ReleaseError as exc:
        if exc.reason == "unsigned":
            raise ModelUpdateError(f"The central offered a model without a signature; it is not installed. {KEEP} "
                                   "Ask IT to release the model with `fedxray-central models release`.") from None
        if exc.reason == "bad-signature":
            raise ModelUpdateError(
                "The released model's signature does not verify against the model-signing key this workstation "
                "received at enrolment: it was not signed by your central, or it was altered on the way. It is not "
                f"installed. {KEEP} Tell IT."
            ) from None
        raise ModelUpdateError(f"The signed release is not one this version of FedXray understands. {KEEP} "
                               "Update FedXray, or tell IT.") from None  # fmt: skip


# ---------------------------------------------------------------- the central
def require_enrollment() -> Enrollment:
    enrollment = load_enrollment()
    if enrollment is None:
        raise ModelUpdateError("This workstation is not enrolled with a FedXray central, so there is nowhere to "
                               "get model updates from. Enrol it first: fedxray enroll --central URL --token TOKEN "
                               "(IT gives you both).")  # fmt: skip
    return enrollment


def _get(enrollment: Enrollment, path: str, store: SecretStore | None, **kwargs) -> requests.Response:
    try:
        return CentralClient(enrollment, store).get(path, **kwargs)
    except AppError as exc:  # no answer, or the keyring could not give the credential
        raise ModelUpdateError(f"{exc} {KEEP}") from exc


def fetch_release(enrollment: Enrollment, *, store: SecretStore | None = None) -> Release:
    """The central's released model, verified against the enrolment's model-signing key."""
    key = public_key(enrollment)
    response = _get(enrollment, "/api/v1/models/released", store)
    if response.status_code == 404:
        raise ModelUpdateError(f"The central has not released a model yet; there is nothing to update. {KEEP}")
    if response.status_code != 200:
        raise ModelUpdateError(f"The central refused to say which model is released ({detail(response)}). {KEEP}")
    try:
        body = response.json()
        manifest = str(body["manifest"]).encode("ascii")
        signature = body.get("signature")
    except (ValueError, KeyError, TypeError, UnicodeEncodeError):
        raise ModelUpdateError(f"The central's answer about the released model is malformed. {KEEP}") from None
    release = verify_manifest(manifest, signature, key)
    return Release(**{**asdict(release), "released_at": body.get("released_at")})


def download(enrollment: Enrollment, release: Release, folder: Path, *, store: SecretStore | None = None) -> Path:
    """Download the release into `folder` as a model folder (signed card + weights, and the LiteRT artefact when
    the signed card records one), hashing each file as it arrives; returns `folder`. Each file must have the size
    and SHA-256 the signed manifest and card give."""
    from fl.modelfile import INFERENCE_FILE, ModelFileError, check_inference, read_card, write_model_folder

    folder.mkdir(parents=True, exist_ok=True)
    part = folder / ".weights.part"
    digest = _fetch(enrollment, f"/api/v1/models/{release.version}/file", part, release.file_size,
                    release.file_sha256, "model file", store)  # fmt: skip
    record = release.card.get("inference") or None
    extras: list[Path] = []
    if record:  # signed with the card: the artefact must be exactly the one the central made
        art = folder / ".litert" / INFERENCE_FILE
        art.parent.mkdir(exist_ok=True)
        _fetch(enrollment, f"/api/v1/models/{release.version}/litert", art, int(record.get("bytes") or 0),
               str(record.get("sha256")), "LiteRT artefact", store)  # fmt: skip
        extras.append(art)

    def check(new: Path) -> None:
        if record:
            check_inference(new, record, release.file_sha256)

    try:  # each file was hashed as it arrived: it moves (or is copied once) into the folder without a second pass
        write_model_folder(folder, card=release.card, weights=part, how="move", sha256=digest, extras=extras,
                           check=check)  # fmt: skip
        read_card(folder)  # the signed card describes a model FedXray can use (classes, weights entry)
    except (ModelFileError, OSError) as exc:
        raise ModelUpdateError(f"The released model is not usable: {exc}. It is not installed. {KEEP}") from exc
    return folder


def _fetch(enrollment: Enrollment, path: str, dest: Path, size: int, sha256: str, what: str,
           store: SecretStore | None) -> str:  # fmt: skip
    """Stream `path` into `dest`, refusing it unless it has exactly `size` bytes and `sha256`; returns the hash."""
    response = _get(enrollment, path, store, stream=True)
    with response:
        if response.status_code != 200:
            raise ModelUpdateError(f"The central did not send the {what} ({detail(response)}). {KEEP}")
        digest, got = hashlib.sha256(), 0
        try:
            with open(dest, "wb") as fh:
                for chunk in response.iter_content(1 << 20):
                    got += len(chunk)
                    if got > size:
                        break  # longer than the signed size: altered; stop reading
                    digest.update(chunk)
                    fh.write(chunk)
        except requests.RequestException as exc:
            raise ModelUpdateError(f"The download of the {what} was interrupted ({type(exc).__name__}). {KEEP} "
                                   "Try again.") from exc  # fmt: skip
    if got != size or digest.hexdigest() != sha256:
        found = f"{got} bytes" if got != size else f"SHA-256 {digest.hexdigest()[:12]}…"
        raise ModelUpdateError(
            f"The downloaded {what} does not match the signed release ({found} instead of "
            f"{size} bytes with SHA-256 {sha256[:12]}…): it was altered or damaged. "
            f"It is not installed. {KEEP} Tell IT."
        )
    return digest.hexdigest()


# ---------------------------------------------------------------- local comparison
def local_samples(data: str | Path | None = None) -> tuple[Path, list] | None:
    """(folder, samples) of the labelled images to compare models on: `data`, else the local labelled set."""
    from fl.data import DatasetError, discover

    if data is None:
        from app.core.labelled import LabelledSet

        root = LabelledSet().root
        if not root.is_dir():
            return None
    else:
        root = Path(data)
    try:
        samples = discover(root)
    except DatasetError as exc:
        if data is not None:
            raise ModelUpdateError(f"Cannot compare the models on {root}: {exc}.") from exc
        return None
    return (root, samples) if samples else None


def evaluate(model_dir: Path, samples: list) -> dict:
    """Accuracy, macro-F1 and per-class sensitivity of the model in `model_dir` on `samples` (TensorFlow)."""
    from fl.modelfile import load_model
    from fl.train import evaluate_samples

    model, card = load_model(model_dir)
    m = evaluate_samples(model, samples, input_size=int(card.input_size), scaling=card.scaling)
    return {"accuracy": m["accuracy"], "macro_f1": m["macro_f1"], "num_examples": m["num_examples"],
            "sensitivity": {c: v["sensitivity"] for c, v in m["per_class"].items()},
            "support": {c: v["support"] for c, v in m["per_class"].items()}}  # fmt: skip


# ---------------------------------------------------------------- install and roll back
def _state_path() -> Path:
    return config_dir() / STATE_FILE


def read_state() -> dict:
    """What the last update or rollback recorded: {"previous": id | None, "current": id, ...}."""
    try:
        data = json.loads(_state_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_state(previous: str | None, current: str, action: str) -> None:
    state = {"previous": previous, "current": current, "action": action,
             "at": datetime.now(UTC).isoformat(timespec="seconds")}  # fmt: skip
    atomic_write_text(_state_path(), json.dumps(state, indent=2) + "\n", what="the model update record")


def active_or_none(store: ModelStore) -> InstalledModel | None:
    try:
        return store.active()
    except ModelNotFoundError:
        return None


def install(model_dir: Path, *, store: ModelStore | None = None) -> tuple[InstalledModel, str | None]:
    """Install the verified model folder (atomically, through the model store), make it active and remember
    the model it replaces for `rollback`; returns (installed, previous active id)."""
    store = store or ModelStore()
    previous = active_or_none(store)
    try:
        if model_dir.parent.resolve() == store.root.resolve() and model_dir.name.startswith(DOWNLOAD_PREFIX):
            installed = store.adopt(model_dir)  # a download beside the installed models: moved into place
        else:
            installed = store.import_model(model_dir)
    except ModelImportError as exc:
        raise ModelUpdateError(f"{exc} {KEEP}") from exc
    store.set_active(installed.id)
    if previous is None:
        previous_id = None
    elif previous.id == installed.id:  # re-installing the model in use: keep what it replaced
        previous_id = read_state().get("previous")
    else:
        previous_id = previous.id
    _write_state(previous_id, installed.id, "update")
    return installed, previous_id


def rollback(*, store: ModelStore | None = None) -> tuple[InstalledModel, InstalledModel | None]:
    """Make the model that was active before the last update (or rollback) active again; returns
    (now active, the one it replaces). Running it twice returns to the updated model."""
    store = store or ModelStore()
    state = read_state()
    previous_id = state.get("previous")
    if not previous_id:
        raise ModelUpdateError("There is no earlier model to go back to: no model update has replaced one on this "
                               "workstation. " + KEEP)  # fmt: skip
    try:
        target = store.get(previous_id)
    except ModelNotFoundError:
        raise ModelUpdateError(f"The earlier model {previous_id!r} is no longer installed (it was removed), so "
                               f"there is nothing to go back to. {KEEP}") from None  # fmt: skip
    current = active_or_none(store)
    store.set_active(target.id)
    _write_state(current.id if current is not None else state.get("current"), target.id, "rollback")
    return target, current


def download_dir(store: ModelStore | None = None) -> Path:
    """A fresh private folder beside the installed models for a download (same disk: the install is a move)."""
    root = (store or ModelStore()).root
    root.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=DOWNLOAD_PREFIX, dir=root))


def discard(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)


__all__ = ["ModelUpdateError", "Release", "active_or_none", "discard", "download", "download_dir", "evaluate",
           "fetch_release", "install", "local_samples", "read_state", "require_enrollment", "rollback",
           "verify_manifest"]

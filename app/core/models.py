"""Installed models: the bundled default plus models imported from disk (checked by card and SHA-256)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from app.core.errors import AppError, save_error
from app.core.paths import cache_dir, data_dir, ensure_folder
from app.core.settings import Preferences

BUNDLED_ID = "default"
MAX_ZIP_BYTES = 2 * 1024**3  # an uncompressed model archive larger than this is refused


class ModelStoreError(AppError):
    """A model operation the user asked for cannot be done (e.g. removing the bundled model)."""


class ModelImportError(ModelStoreError):
    """A model file offered for import is not a FedXray model, or is damaged or altered."""


class ModelNotFoundError(ModelStoreError):
    """No installed model has that id (or no model is installed at all)."""


@dataclass(frozen=True)
class InstalledModel:
    """A model the app can use: `id` (stable, used in Preferences.model_id), folder, card, bundled or not."""

    id: str
    dir: Path
    card: Any  # fl.modelfile.ModelCard
    bundled: bool

    @property
    def display_name(self) -> str:
        return self.card.display_name + (" — bundled" if self.bundled else "")


def _slug(text: str) -> str:
    s = re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("-.")
    return s[:80] or "model"


def _bundled_dir() -> Path | None:
    import resources

    try:
        return resources.default_model_dir()
    except FileNotFoundError:
        return None


class ModelStore:
    """Imported models live in `root` (default data_dir()/models/<id>); the bundled one in the resources."""

    def __init__(self, root: str | os.PathLike | None = None, *, bundled_dir: str | os.PathLike | None = None):
        self.root = Path(root) if root is not None else data_dir(create=False) / "models"  # made on import
        self._bundled = Path(bundled_dir) if bundled_dir is not None else _bundled_dir()

    def list(self) -> list[InstalledModel]:
        """The bundled model (if present) first, then imported models by id. Unreadable folders are skipped."""
        from fl.modelfile import ModelFileError, read_card

        out = []
        if self._bundled is not None:
            with contextlib.suppress(ModelFileError):
                out.append(InstalledModel(BUNDLED_ID, self._bundled, read_card(self._bundled), True))
        if self.root.is_dir():
            for d in sorted(self.root.iterdir()):
                if d.is_dir() and not d.name.startswith("."):
                    with contextlib.suppress(ModelFileError):
                        out.append(InstalledModel(d.name, d, read_card(d), False))
        return out

    def get(self, model_id: str) -> InstalledModel:
        """The installed model with this id; raises ModelNotFoundError."""
        for m in self.list():
            if m.id == model_id:
                return m
        raise ModelNotFoundError(f"The model {model_id!r} is not installed (or its folder is damaged). "
                                 "Choose another model in Settings.")

    def active(self, prefs: Preferences | None = None) -> InstalledModel:
        """The model chosen in the preferences, falling back to the bundled default."""
        prefs = prefs if prefs is not None else Preferences.load()
        with contextlib.suppress(ModelNotFoundError):
            return self.get(prefs.model_id)
        with contextlib.suppress(ModelNotFoundError):
            return self.get(BUNDLED_ID)
        models = self.list()
        if models:
            return models[0]
        raise ModelNotFoundError("No model is installed: the bundled model is missing from this installation. "
                                 "Reinstall FedXray, or import a model file in Settings.")

    def set_active(self, model_id: str, prefs: Preferences | None = None) -> Preferences:
        """Make `model_id` the model the app and CLI use (saved in the preferences)."""
        self.get(model_id)
        prefs = prefs if prefs is not None else Preferences.load()
        prefs.model_id = model_id
        prefs.save()
        return prefs

    def import_model(self, path: str | os.PathLike) -> InstalledModel:
        """Install a model folder, its card.json, or a .zip of the folder.

        The card is read and the weights' SHA-256 checked before anything is copied; the copy is checked again
        and then moved into place in one step (fl.modelfile.write_model_folder). Importing the same model twice
        returns the installed one.
        """
        from fl.modelfile import ModelFileError, check_inference, read_card, verify, write_model_folder

        path = Path(path)
        ensure_folder(self.root, "the models folder")
        with tempfile.TemporaryDirectory(prefix=".unpack-", dir=self.root) as unpack:
            src = self._locate(path, Path(unpack))
            try:
                card = verify(src, read_card(src))
                shipped = bool(card.inference) and (src / Path(card.inference.get("file") or "-").name).is_file()
                if shipped:  # its LiteRT artefact comes along, checked like the weights (a release may come
                    check_inference(src, card.inference, card.weights["sha256"])  # without it: made here then)
            except ModelFileError as exc:
                raise ModelImportError(f"{path.name} cannot be imported: {exc}.") from exc
            model_id = self._new_id(card)
            if isinstance(model_id, InstalledModel):
                return model_id
            try:
                artefact = [src / Path(card.inference["file"]).name] if shipped else []
                write_model_folder(self.root / model_id, card=json.loads((src / "card.json").read_text("utf-8")),
                                   weights=src / Path(card.weights["file"]).name, how="copy", extras=artefact,
                                   check=(lambda folder: check_inference(folder, card.inference, card.weights["sha256"]))
                                   if shipped else None)  # fmt: skip
            except ModelFileError as exc:
                raise ModelImportError(f"{path.name} changed while it was being copied ({exc}); try again.") from exc
            except OSError as exc:
                raise save_error(exc, "the imported model", self.root / model_id) from exc
        return self.get(model_id)

    def adopt(self, folder: str | os.PathLike) -> InstalledModel:
        """Install a model folder that lies beside the installed ones (a verified download) by moving it into
        place: its weights are checked against its card once, nothing is copied. Same rules as import_model."""
        from fl.modelfile import ModelFileError, verify

        folder = Path(folder)
        try:
            card = verify(folder)
        except ModelFileError as exc:
            raise ModelImportError(f"The downloaded model cannot be installed: {exc}.") from exc
        model_id = self._new_id(card)
        if isinstance(model_id, InstalledModel):
            return model_id
        try:
            os.replace(folder, self.root / model_id)
        except OSError as exc:
            raise save_error(exc, "the downloaded model", self.root / model_id) from exc
        return self.get(model_id)

    def _new_id(self, card) -> str | InstalledModel:
        """The id a model with this card gets, or the installed model with the same weights."""
        for m in self.list():
            if m.card.weights.get("sha256") == card.weights["sha256"]:
                return m  # already installed (same weights)
        model_id = _slug(f"{card.name}-{card.version}")
        if model_id == BUNDLED_ID or (self.root / model_id).exists():
            raise ModelImportError(
                f"A different model called {card.name} {card.version} is already installed. Remove it in "
                "Settings first, or ask the model's provider for a file with a new version number.")
        return model_id

    def remove(self, model_id: str) -> None:
        """Uninstall an imported model; if it was the active one, the bundled default becomes active."""
        m = self.get(model_id)
        if m.bundled:
            raise ModelStoreError("The bundled model is part of FedXray and cannot be removed.")
        trash = m.dir.with_name(f".removing-{m.dir.name}")
        try:
            os.replace(m.dir, trash)
        except OSError as exc:
            raise ModelStoreError(f"The model {model_id!r} could not be removed ({exc.strerror}).") from exc
        shutil.rmtree(trash, ignore_errors=True)
        prefs = Preferences.load()
        if prefs.model_id == model_id:
            prefs.model_id = BUNDLED_ID
            prefs.save()

    # ------------------------------------------------------------------ internals
    @staticmethod
    def _locate(path: Path, unpack: Path) -> Path:
        """The model folder for a folder, a card.json, or a .zip (extracted safely into `unpack`)."""
        if path.is_dir():
            return path
        if path.is_file() and path.name == "card.json":
            return path.parent
        if path.is_file() and zipfile.is_zipfile(path):
            try:
                with zipfile.ZipFile(path) as zf:
                    infos = zf.infolist()
                    if sum(i.file_size for i in infos) > MAX_ZIP_BYTES:
                        raise ModelImportError(f"{path.name} is far larger than any FedXray model; not imported.")
                    for i in infos:
                        parts = PurePosixPath(i.filename).parts
                        if i.filename.startswith("/") or ".." in parts:
                            raise ModelImportError(f"{path.name} contains unsafe paths; not imported.")
                    zf.extractall(unpack)
            except (zipfile.BadZipFile, OSError) as exc:
                raise ModelImportError(f"{path.name} is damaged and cannot be unpacked ({exc}).") from exc
            cards = sorted(unpack.rglob("card.json"), key=lambda p: len(p.parts))
            if cards:
                return cards[0].parent
            raise ModelImportError(f"{path.name} does not contain a FedXray model (no card.json inside).")
        if not path.exists():
            raise ModelImportError(f"{path} does not exist.")
        raise ModelImportError(f"{path.name} is not a FedXray model: choose the model's folder, its card.json, "
                               "or a .zip of the folder.")


def active_model_dir() -> Path:
    """Folder of the model the app and the CLI use (Preferences.model_id, else the bundled default)."""
    return ModelStore().active().dir


# ------------------------------------------------------------------ the workstation's LiteRT artefacts

LITERT_CACHE = "litert"  # cache folder: <cache>/litert/<weights SHA-256>/ model.tflite + artefact.json
CONVERTING = "converting.pid"  # a conversion is running (its process id)
FAILED = "failed.json"  # a conversion failed for good for these weights (not retried)


def litert_cache(card: Any, root: str | os.PathLike | None = None) -> Path:
    """The cache folder of the artefact made on this workstation for the card's weights."""
    base = Path(root) if root is not None else cache_dir() / LITERT_CACHE
    return base / str(card.weights["sha256"])


def has_litert(model_dir: str | os.PathLike, card: Any, root: str | os.PathLike | None = None) -> bool:
    """True when the model has a sound artefact of its own or in the cache (checks the SHA-256: ~0.1 s)."""
    from fl.modelfile import INFERENCE_RECORD, ModelFileError, check_inference, read_record

    weights = card.weights["sha256"]
    if card.inference:
        with contextlib.suppress(ModelFileError):
            check_inference(model_dir, card.inference, weights)
            return True
    entry = litert_cache(card, root)
    if (entry / INFERENCE_RECORD).is_file():
        with contextlib.suppress(ModelFileError):
            check_inference(entry, read_record(entry), weights)
            return True
    return False


def conversion_failure(card: Any, root: str | os.PathLike | None = None) -> str | None:
    """Why the workstation could not convert this model (then it keeps classifying with TensorFlow), or None."""
    with contextlib.suppress(OSError, ValueError):
        return str(json.loads((litert_cache(card, root) / FAILED).read_text(encoding="utf-8"))["reason"])
    return None


def start_conversion(model_dir: str | os.PathLike, card: Any, *, root: str | os.PathLike | None = None,
                     wait: bool = False) -> subprocess.Popen | None:
    """Convert the model to LiteRT once, in a background TensorFlow process at low priority, into the cache.

    Nothing happens when it has a sound artefact, one is being made, or a conversion already failed for these
    weights. Returns the process (None when nothing was started); with `wait`, waits for it. The app goes on
    with TensorFlow meanwhile and uses the artefact from the next load of the model on.
    """
    from fl.litert_convert import REFUSED, command

    if has_litert(model_dir, card, root) or conversion_failure(card, root) is not None:
        return None
    entry = litert_cache(card, root)
    try:
        entry.mkdir(parents=True, exist_ok=True)
        lock = entry / CONVERTING
        if _held(lock):
            return None  # another FedXray process is converting it
        lock.write_text("", encoding="ascii")
        log = open(entry / "conversion.log", "wb")  # noqa: SIM115 - handed to the child process
    except OSError:
        return None  # a cache that cannot be written: stay with TensorFlow
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    with log:
        proc = subprocess.Popen([*command(model_dir, into=entry), "--nice"], stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=env, start_new_session=True)
    lock.write_text(str(proc.pid), encoding="ascii")

    def finish() -> None:
        code = proc.wait()
        with contextlib.suppress(OSError):
            lock.unlink()
            if code == REFUSED:  # the converter refused the model: remember why, do not try again
                reason = (entry / "conversion.log").read_text(encoding="utf-8", errors="replace").strip()
                reason = reason.splitlines()[-1] if reason else f"exit code {code}"
                (entry / FAILED).write_text(json.dumps({"reason": reason}), encoding="utf-8")

    if wait:
        finish()
    else:
        threading.Thread(target=finish, name="litert-conversion", daemon=True).start()
    return proc


def _held(lock: Path) -> bool:
    """True while the process whose id is in `lock` runs."""
    try:
        os.kill(int(lock.read_text(encoding="ascii").strip()), 0)
    except (OSError, ValueError):
        return False
    return True

"""The workstation's inference service: loads the model once, in load(); classification and heatmaps.

A model with a sound LiteRT artefact (its own, or the one this workstation made, see app.core.models) runs without
TensorFlow; otherwise TensorFlow is imported in load() and, with `convert_missing`, the artefact is made once in
a background process for the next load. The interpreter uses the machine's cores, half of them while federated
training runs here (app.core.training_signal).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from app.core.errors import AppError


class ModelLoadError(AppError):
    """The model could not be loaded (missing, damaged, altered, or TensorFlow failed)."""


class ModelNotLoadedError(AppError):
    """A classification was asked for before a model was loaded."""


class InferenceService:
    """Holds one fl.inference.Classifier; thread-safe. Importing this module does not import TensorFlow.

    `engine`: "auto" (LiteRT when the model has a sound artefact, else TensorFlow), "litert" or "tensorflow".
    `convert_missing`: start the background conversion of a model that has no artefact yet (the app does).
    `signal_folder`: where the federation agent's training marker is (default: the data folder).
    """

    def __init__(self, *, engine: str = "auto", convert_missing: bool = False,
                 signal_folder: str | os.PathLike | None = None) -> None:
        self._lock = threading.Lock()
        self._classifier: Any = None
        self.model_dir: Path | None = None
        self.engine_choice = engine
        self.convert_missing = convert_missing
        self._signal_folder = signal_folder
        self._signal: Path | None = None
        self.notice: str | None = None  # how the loaded model runs, when the user should know (e.g. a fallback)
        self.conversion: Any = None  # the background conversion started by the last load, if any

    @property
    def engine(self) -> str | None:
        """"litert" or "tensorflow" for the loaded model, None before load()."""
        c = self._classifier
        return c.engine if c is not None else None

    @property
    def loaded(self) -> bool:
        return self._classifier is not None

    @property
    def card(self) -> Any:
        """The fl.modelfile.ModelCard of the loaded model, or None."""
        c = self._classifier
        return c.card if c is not None else None

    def load(self, model_dir: str | os.PathLike) -> Any:
        """Check and load the model (LiteRT, or TensorFlow imported here), warm it up; returns the ModelCard.

        Slow (0.3 s with LiteRT, seconds with TensorFlow): call it from a worker thread. Raises ModelLoadError with a clinician-readable message;
        the previously loaded model (if any) stays in use.
        """
        model_dir = Path(model_dir)
        try:
            from fl.inference import Classifier
            from fl.model import WeightsError
            from fl.modelfile import ModelFileError, read_card
        except ImportError as exc:  # a broken installation
            raise ModelLoadError(f"FedXray's machine-learning components could not be started ({exc}). "
                                 "Reinstall FedXray.") from exc
        try:
            from fl.litert import inference_threads

            classifier = Classifier(model_dir, engine=self.engine_choice, artefact_dir=_cache(read_card(model_dir)),
                                    threads=inference_threads(training=self._training()))
        except (ModelFileError, WeightsError) as exc:
            raise ModelLoadError(f"The model in {model_dir} cannot be used: {exc}. Choose another model in "
                                 "Settings, or reinstall FedXray to restore the bundled one.") from exc
        except (OSError, MemoryError) as exc:
            raise ModelLoadError(f"The model in {model_dir} could not be loaded ({exc}). Check that the disk is "
                                 "readable and that enough memory is free, then try again.") from exc
        except Exception as exc:  # TensorFlow raises many types; the user needs one clear message
            raise ModelLoadError(f"The model in {model_dir} could not be loaded ({type(exc).__name__}: {exc}). "
                                 "It may be damaged or made for another FedXray version.") from exc
        self.notice, self.conversion = classifier.notice, None
        if classifier.engine == "tensorflow" and self.convert_missing and self.engine_choice == "auto":
            from app.core.models import conversion_failure, start_conversion

            self.conversion = start_conversion(model_dir, classifier.card)
            if self.conversion is not None:
                self.notice = f"{classifier.notice} A LiteRT copy is being made in the background for the next start."
            elif (reason := conversion_failure(classifier.card)) is not None:
                self.notice = f"{classifier.notice} (This model cannot be converted for the faster engine: {reason}.)"
        with self._lock:
            self._classifier, self.model_dir = classifier, model_dir
        return classifier.card

    def _training(self) -> bool:
        """Whether federated training is running on this computer now (app.core.training_signal)."""
        from app.core.training_signal import marker_path, training_running

        if self._signal is None:
            try:
                self._signal = marker_path(self._signal_folder)
            except Exception:  # noqa: BLE001 - no data folder: then no agent can be training either
                return False
        return training_running(self._signal)

    def _get(self) -> Any:
        c = self._classifier
        if c is None:
            raise ModelNotLoadedError("The model is not loaded yet. Wait until the status bar says it is ready, "
                                      "or choose a model in Settings.")
        if c.engine == "litert":
            from fl.litert import inference_threads

            c.set_threads(inference_threads(training=self._training()))
        return c

    def classify(self, source: str | os.PathLike | Any, *, class_index: int | None = None) -> Any:
        """Classify a file or fl.preprocess.Radiograph; returns fl.inference.Prediction (with heatmap).

        Raises fl.preprocess.ImageReadError for an unreadable file, ModelNotLoadedError before load().
        """
        if isinstance(source, os.PathLike):
            source = os.fspath(source)
        return self._get().classify(source, class_index=class_index)

    def explain(self, prediction: Any, class_index: int) -> np.ndarray:
        """Heatmap (H, W) in [0, 1] over the original image for another class of an earlier prediction."""
        if int(class_index) == prediction.class_index and prediction.heatmap is not None:
            return prediction.heatmap
        return self._get().classify(prediction.radiograph, class_index=int(class_index)).heatmap

    def classify_many(self, sources: Iterable[str | os.PathLike], *, batch_size: int = 8,
                      heatmaps: bool = False) -> Iterator[Any]:
        """fl.inference.Classifier.classify_many: Prediction or (source, ImageReadError) per file."""
        return self._get().classify_many([os.fspath(s) for s in sources], batch_size=batch_size, heatmaps=heatmaps)


def _cache(card) -> Path | None:
    """The workstation's cache folder for this model's artefact, or None when there is no cache folder."""
    from app.core.models import litert_cache

    try:
        return litert_cache(card)
    except Exception:  # noqa: BLE001 - an unwritable home: no cache, the model's own artefact or TensorFlow
        return None

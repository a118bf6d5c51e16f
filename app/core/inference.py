"""The workstation's inference service: loads the model once, lazily (TensorFlow is imported in load())."""

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
    """Holds one fl.inference.Classifier; thread-safe. Importing this module does not import TensorFlow."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._classifier: Any = None
        self.model_dir: Path | None = None

    @property
    def loaded(self) -> bool:
        return self._classifier is not None

    @property
    def card(self) -> Any:
        """The fl.modelfile.ModelCard of the loaded model, or None."""
        c = self._classifier
        return c.card if c is not None else None

    def load(self, model_dir: str | os.PathLike) -> Any:
        """Import TensorFlow, load and verify the model, build its graph; returns the ModelCard.

        Slow (seconds): call it from a worker thread. Raises ModelLoadError with a clinician-readable message;
        the previously loaded model (if any) stays in use.
        """
        model_dir = Path(model_dir)
        try:
            from fl.inference import Classifier
            from fl.model import WeightsError
            from fl.modelfile import ModelFileError
        except ImportError as exc:  # a broken installation
            raise ModelLoadError(f"FedXray's machine-learning components could not be started ({exc}). "
                                 "Reinstall FedXray.") from exc
        try:
            classifier = Classifier(model_dir)
        except (ModelFileError, WeightsError) as exc:
            raise ModelLoadError(f"The model in {model_dir} cannot be used: {exc}. Choose another model in "
                                 "Settings, or reinstall FedXray to restore the bundled one.") from exc
        except (OSError, MemoryError) as exc:
            raise ModelLoadError(f"The model in {model_dir} could not be loaded ({exc}). Check that the disk is "
                                 "readable and that enough memory is free, then try again.") from exc
        except Exception as exc:  # TensorFlow raises many types; the user needs one clear message
            raise ModelLoadError(f"The model in {model_dir} could not be loaded ({type(exc).__name__}: {exc}). "
                                 "It may be damaged or made for another FedXray version.") from exc
        with self._lock:
            self._classifier, self.model_dir = classifier, model_dir
        return classifier.card

    def _get(self) -> Any:
        c = self._classifier
        if c is None:
            raise ModelNotLoadedError("The model is not loaded yet. Wait until the status bar says it is ready, "
                                      "or choose a model in Settings.")
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

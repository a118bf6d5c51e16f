"""Classify radiographs with a model file: probabilities and a GradCAM heatmap over the original image."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fl.modelfile import load_model
from fl.preprocess import ImageReadError, Radiograph, preprocess, read_image, unletterbox


@dataclass
class Prediction:
    """One classified image."""

    source: str
    probabilities: np.ndarray  # (C,) summing to 1, in card.classes order
    predicted: int  # index of the most probable class
    class_index: int  # index of the class the heatmap explains
    heatmap: np.ndarray | None  # (H, W) float32 0-1 over the original image
    radiograph: Radiograph
    model_name: str
    model_version: str

    def as_dict(self, classes: Iterable[str]) -> dict:
        classes = list(classes)
        return {
            "file": self.source,
            "probabilities": {c: round(float(p), 6) for c, p in zip(classes, self.probabilities, strict=True)},
            "predicted": classes[self.predicted],
            "probability": round(float(self.probabilities[self.predicted]), 6),
            "model": self.model_name,
            "model_version": self.model_version,
        }


class Classifier:
    """A loaded model ready to classify; load once per process, call from any thread."""

    def __init__(self, model_dir: str | os.PathLike):
        from fl.gradcam import Explainer
        from fl.model import get_architecture

        self.model_dir = Path(model_dir)
        self.model, self.card = load_model(self.model_dir)
        self.arch = get_architecture(self.card.arch)
        self.explainer = Explainer(self.model, self.arch)
        self._lock = threading.Lock()
        # Build the compiled graph now, so the first real image is as fast as the rest.
        self.explainer(np.zeros((1, self.card.input_size, self.card.input_size, 3), np.float32))

    @property
    def classes(self) -> list[str]:
        return list(self.card.classes)

    def _read(self, image: Radiograph | str | os.PathLike) -> Radiograph:
        return image if isinstance(image, Radiograph) else read_image(image)

    def classify(self, image: Radiograph | str | os.PathLike, *, class_index: int | None = None) -> Prediction:
        """Classify one image and explain `class_index` (default: the predicted class)."""
        return self._run([self._read(image)], class_index=class_index, heatmaps=True)[0]

    def _run(self, images: list[Radiograph], *, class_index=None, heatmaps=True) -> list[Prediction]:
        prepared = [
            preprocess(img, input_size=self.card.input_size, scaling=self.arch.scaling) for img in images
        ]
        batch = np.stack([x for x, _ in prepared])
        with self._lock:
            if heatmaps:
                probs, cams, chosen = self.explainer(batch, class_index)
            else:
                probs = self.explainer.predict(batch)
                cams, chosen = None, np.argmax(probs, axis=1)
        out = []
        for i, (img, (_, box)) in enumerate(zip(images, prepared, strict=True)):
            out.append(
                Prediction(
                    source=img.source,
                    probabilities=probs[i].astype(np.float64),
                    predicted=int(np.argmax(probs[i])),
                    class_index=int(chosen[i]),
                    heatmap=None if cams is None else unletterbox(cams[i], box),
                    radiograph=img,
                    model_name=self.card.name,
                    model_version=self.card.version,
                )
            )
        return out

    def classify_many(
        self, sources: Iterable[str | os.PathLike], *, batch_size: int = 8, heatmaps: bool = True
    ) -> Iterator[Prediction | tuple[str, ImageReadError]]:
        """Classify many files in batches; unreadable files yield (source, error) and the rest go on."""
        pending: list[Radiograph] = []
        for src in sources:
            try:
                pending.append(read_image(src))
            except ImageReadError as exc:
                yield str(src), exc
                continue
            if len(pending) == batch_size:
                yield from self._run(pending, heatmaps=heatmaps)
                pending = []
        if pending:
            yield from self._run(pending, heatmaps=heatmaps)


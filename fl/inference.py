"""Classify radiographs with a model file (LiteRT, else TensorFlow): probabilities and a heatmap over the original image."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fl.litert import LiteRTExplainer, LiteRTUnavailable
from fl.modelfile import (
    INFERENCE_FILE,
    INFERENCE_RECORD,
    ModelFileError,
    check_inference,
    load_model,
    read_card,
    read_record,
    verify,
)
from fl.preprocess import ImageReadError, Radiograph, preprocess, read_image, unletterbox
from fl.radiograph import detail, fail, working_copy


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


ENGINES = ("auto", "litert", "tensorflow")


class Classifier:
    """A loaded model ready to classify; load once per process, call from any thread.

    engine "auto" (default) runs the model's LiteRT artefact when it has a sound one (fl.litert; TensorFlow is
    not imported), else TensorFlow, saying why in `notice`; "litert" refuses to fall back; "tensorflow" is the
    reference path. The artefact is the one the card records beside the weights, else the one in `artefact_dir`
    (the workstation's cache: model.tflite and its artefact.json record). The weights are checked against the
    card in every case.
    """

    def __init__(self, model_dir: str | os.PathLike, *, engine: str = "auto",
                 artefact_dir: str | os.PathLike | None = None, threads: int | None = None):
        if engine not in ENGINES:
            raise ValueError(f"unknown engine {engine!r}; expected one of {ENGINES}")
        from fl.model import get_architecture

        self.model_dir = Path(model_dir)
        self.card = read_card(self.model_dir)
        self.arch = get_architecture(self.card.arch)
        self.notice: str | None = None  # what the user should know about how this model runs
        self.artefact: Path | None = None
        self._lock = threading.Lock()
        # The weights are checked while the artefact is (hashing releases the GIL): about 0.1 s sooner on 2 cores.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="verify") as pool:
            weights_ok = pool.submit(verify, self.model_dir, self.card)
            failure = None
            if engine != "tensorflow":
                try:
                    self.explainer = self._litert(artefact_dir, threads)
                    self.engine = "litert"
                except (ModelFileError, LiteRTUnavailable) as exc:
                    failure = exc
            weights_ok.result()
        if failure is not None:
            if engine == "litert":
                raise failure
            self.notice = f"The model runs with TensorFlow, which is slower to start: {failure}."
        if self.artefact is None:
            from fl.gradcam import Explainer

            self.model, self.card = load_model(self.model_dir)
            self.explainer = Explainer(self.model, self.arch)
            self.engine = "tensorflow"
        # Build the compiled graph (TensorFlow) or pack the weights (XNNPACK) now: the first image is as fast as the rest.
        self.explainer(np.zeros((1, self.card.input_size, self.card.input_size, 3), np.float32))

    def _litert(self, artefact_dir, threads):
        """The LiteRT explainer of the card's artefact, else of the cached one; ModelFileError says why not."""
        weights = self.card.weights["sha256"]
        refused, missing = [], None
        candidates = []
        if self.card.inference:
            candidates.append((self.model_dir, self.card.inference, ""))
        if artefact_dir is not None and (Path(artefact_dir) / INFERENCE_RECORD).is_file():
            candidates.append((Path(artefact_dir), None, "this workstation's conversion of the model: "))
        for folder, record, what in candidates:
            try:
                if record is None:
                    record = read_record(folder)
                path = check_inference(folder, record, weights)
            except ModelFileError as exc:
                if what or (folder / Path(record.get("file") or INFERENCE_FILE).name).exists():
                    refused.append(f"{what}{exc}")
                else:  # a card that records an artefact not shipped with it (a release): the cache may have one
                    missing = str(exc)
                continue
            explainer = LiteRTExplainer(path, threads=threads)
            if explainer.input_size != int(self.card.input_size):
                refused.append(f"{what}its LiteRT file takes {explainer.input_size} px images, the card says "
                               f"{self.card.input_size}")
                continue
            self.artefact = path
            if refused:
                self.notice = "; ".join(refused) + ". Using this workstation's own conversion of the model instead."
            return explainer
        if not refused:
            raise ModelFileError(missing or "it has no LiteRT file yet")
        raise ModelFileError("; ".join(refused))

    @property
    def threads(self) -> int | None:
        """Interpreter threads (LiteRT), None for TensorFlow (which manages its own)."""
        return getattr(self.explainer, "threads", None)

    def set_threads(self, threads: int) -> None:
        """Change the LiteRT interpreter's threads (no effect with TensorFlow)."""
        if self.engine == "litert":
            self.explainer.set_threads(threads)

    @property
    def classes(self) -> list[str]:
        return list(self.card.classes)

    def _read(self, image: Radiograph | str | os.PathLike) -> Radiograph:
        return image if isinstance(image, Radiograph) else read_image(image)

    def classify(self, image: Radiograph | str | os.PathLike, *, class_index: int | None = None) -> Prediction:
        """Classify one image and explain `class_index` (default: the predicted class)."""
        return self._run([self._read(image)], class_index=class_index, heatmaps=True)[0]

    def _run(self, images: list[Radiograph], *, class_index=None, heatmaps=True) -> list[Prediction]:
        # Heatmaps (and the overlays drawn from them) at the working resolution; the prediction carries the
        # working copy, which keeps the original's SHA-256.
        images = [working_copy(img) for img in images]
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
                pending.append(working_copy(read_image(src)))   # one full-size image in memory at a time
            except ImageReadError as exc:
                yield str(src), exc
                continue
            except Exception as exc:  # noqa: BLE001 - a decoder's own failure is this file's error, not the batch's
                name = Path(os.fspath(src)).name if isinstance(src, str | os.PathLike) else "the image"
                yield str(src), fail(name, f"it could not be decoded ({type(exc).__name__}: {detail(exc)})",
                                     "Export the image again, or send the file to IT support.", source=str(src))
                continue
            if len(pending) == batch_size:
                yield from self._run(pending, heatmaps=heatmaps)
                pending = []
        if pending:
            yield from self._run(pending, heatmaps=heatmaps)


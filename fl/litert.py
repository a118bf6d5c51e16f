"""Run a model's LiteRT artefact without TensorFlow: probabilities and class activation maps in one forward pass.

The artefact (made by fl.litert_convert) has two outputs: the probabilities (B, C) and the class maps (B, h, w, C),
the last feature map multiplied by the `logits` layer's kernel. The network's head is global average pooling ->
dense `logits` -> softmax, so the gradient of a class's logit with respect to that feature map is the kernel's
column divided by h*w at every position: GradCAM of the logit (fl.gradcam.Explainer) is exactly CAM,
ReLU(class map) scaled to a peak of 1 (Zhou et al. 2016; Selvaraju et al. 2017, section 3.1).
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from pathlib import Path

import numpy as np

from fl.gradcam import class_indices

# Threads of the interpreter: this many when set (IT may pin it), else the cores this process may use, halved
# (at least one) while federated training runs on this computer (see inference_threads).
THREADS_ENV = "FEDXRAY_INFERENCE_THREADS"


class LiteRTUnavailable(Exception):
    """The LiteRT runtime (ai-edge-litert) is not installed or cannot run the artefact."""


def machine_threads() -> int:
    """The CPU cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def inference_threads(*, training: bool = False) -> int:
    """Interpreter threads: $FEDXRAY_INFERENCE_THREADS when set to a positive number, else the machine's cores,
    halved (at least 1) while `training` (federated training on this computer uses the cores too)."""
    pinned = os.environ.get(THREADS_ENV, "").strip()
    if pinned.isdigit() and int(pinned) > 0:
        return int(pinned)
    cores = machine_threads()
    return max(1, cores // 2) if training else cores


def class_activation_maps(class_maps: np.ndarray, class_index) -> tuple[np.ndarray, np.ndarray]:
    """(B, h, w) CAMs scaled 0-1 (ReLU, then divided by each map's peak; an all-zero map stays zero) and the
    class explained per image, from class maps (B, h, w, C) and one class index per image."""
    b = class_maps.shape[0]
    chosen = np.asarray(class_index, np.int64).reshape(b)
    cam = np.maximum(class_maps[np.arange(b), :, :, chosen], 0.0).astype(np.float32)   # (B, h, w)
    peak = cam.max(axis=(1, 2), keepdims=True)
    cam = np.divide(cam, peak, out=np.zeros_like(cam), where=peak > 0)
    return cam, chosen.astype(np.int32)


@contextlib.contextmanager
def _quiet_stderr():
    """Send the process's stderr (file descriptor 2) to the null device for the duration of the block."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
        null = os.open(os.devnull, os.O_WRONLY)
    except (OSError, AttributeError, ValueError):  # no usable stderr: nothing to quieten
        yield
        return
    try:
        os.dup2(null, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


class LiteRTExplainer:
    """fl.gradcam.Explainer's interface (probabilities, maps, explained class) on a LiteRT artefact.

    One interpreter, one image per invocation (XNNPACK runs a batch of one as fast per image as a larger batch
    on a CPU, and the tensors are never reallocated); calls are serialised by a lock.
    """

    def __init__(self, path: str | os.PathLike, *, threads: int | None = None) -> None:
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as exc:
            raise LiteRTUnavailable(f"the LiteRT runtime (ai-edge-litert) is not installed ({exc})") from exc
        self._Interpreter = Interpreter
        self.path = Path(path)
        self._lock = threading.Lock()
        self.threads = 0
        self.set_threads(threads or inference_threads())

    def set_threads(self, threads: int) -> None:
        """Use `threads` interpreter threads (a new interpreter when the number changes: about 0.2 s)."""
        threads = max(1, int(threads))
        if threads == self.threads:
            return
        try:
            with _quiet_stderr():  # LiteRT announces "Created TensorFlow Lite XNNPACK delegate" on every start
                interpreter = self._Interpreter(model_path=str(self.path), num_threads=threads)
                interpreter.allocate_tensors()
        except (RuntimeError, ValueError) as exc:
            raise LiteRTUnavailable(f"the LiteRT runtime cannot run {self.path.name} ({exc})") from exc
        (inp,) = interpreter.get_input_details()
        outputs = {len(d["shape"]): d["index"] for d in interpreter.get_output_details()}
        if sorted(outputs) != [2, 4] or len(inp["shape"]) != 4:
            raise LiteRTUnavailable(f"{self.path.name} does not have FedXray's inputs and outputs")
        if inp["shape"][0] != 1:
            interpreter.resize_tensor_input(inp["index"], [1, *inp["shape"][1:]])
            interpreter.allocate_tensors()
        with self._lock:
            self._interpreter, self._input = interpreter, inp["index"]
            self._probs, self._maps = outputs[2], outputs[4]
            self.input_size = int(inp["shape"][1])
            self.threads = threads

    def _forward(self, batch: np.ndarray, *, maps: bool) -> tuple[np.ndarray, np.ndarray | None]:
        batch = np.asarray(batch, dtype=np.float32)
        if batch.ndim == 3:
            batch = batch[None]
        probs, class_maps = [], []
        with self._lock:
            it = self._interpreter
            for x in batch:
                it.set_tensor(self._input, x[None])
                it.invoke()
                probs.append(it.get_tensor(self._probs)[0].copy())
                if maps:
                    class_maps.append(it.get_tensor(self._maps)[0].copy())
        return np.stack(probs), (np.stack(class_maps) if maps else None)

    def __call__(self, batch: np.ndarray, class_index: int | list[int] | None = None):
        """Return (probabilities (B,C), CAMs (B,h,w) scaled 0-1, explained class per image (B,))."""
        probs, class_maps = self._forward(batch, maps=True)
        idx = class_indices(class_index, probs.shape[0])
        idx = np.where(idx < 0, np.argmax(probs, axis=1), idx)
        cams, chosen = class_activation_maps(class_maps, idx)
        return probs, cams, chosen

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Probabilities only."""
        return self._forward(batch, maps=False)[0]

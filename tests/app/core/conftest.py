"""Fixtures for the workstation services: a private home for every test, no network, real images."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(autouse=True)
def private_home(tmp_path, monkeypatch):
    """Each test gets its own XDG config/data/cache folders, so nothing touches the real home."""
    for var in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME"):
        d = tmp_path / "home" / var.lower()
        d.mkdir(parents=True)
        monkeypatch.setenv(var, str(d))
    return tmp_path / "home"


class NetworkUsed(AssertionError):
    pass


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Local diagnosis must not open any network connection: every IP connect attempt fails the test."""
    def refuse(self, address, *args, **kwargs):
        if self.family in (socket.AF_INET, socket.AF_INET6):
            raise NetworkUsed(f"network connection attempted to {address!r}")
        return real_connect(self, address, *args, **kwargs)

    def refuse_ex(self, address, *args, **kwargs):
        if self.family in (socket.AF_INET, socket.AF_INET6):
            raise NetworkUsed(f"network connection attempted to {address!r}")
        return real_connect_ex(self, address, *args, **kwargs)

    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse_ex)


@pytest.fixture(scope="session")
def cxr(shared_data) -> dict[str, Path]:
    """One real chest X-ray PNG per class (the first file of each class folder, sorted)."""
    return {c: sorted((shared_data / "cxr" / c).glob("*.png"))[0]
            for c in ("Covid", "Normal", "Pneumonia-Bacterial", "Pneumonia-Viral")}


@pytest.fixture(scope="session")
def dicom_dir(shared_data) -> Path:
    return shared_data / "dicom"


def make_prediction(image_path, probabilities, *, class_index=None, model_name="Test model",
                    model_version="1.2.3", heatmap=True):
    """A real fl.inference.Prediction for a real image with chosen probabilities (no network run needed
    for tests of what is stored; the real model is exercised in test_inference/test_batch)."""
    from fl.inference import Prediction
    from fl.preprocess import read_image

    rad = read_image(image_path)
    probs = np.asarray(probabilities, dtype=np.float64)
    pred = int(np.argmax(probs))
    heat = None
    if heatmap:  # a smooth blob, different per class index, over the original image
        h, w = rad.pixels.shape
        yy, xx = np.mgrid[0:h, 0:w]
        ci = pred if class_index is None else class_index
        heat = np.exp(-(((yy - h * (0.3 + 0.1 * ci)) / (h / 4)) ** 2 + ((xx - w / 2) / (w / 4)) ** 2))
        heat = heat.astype(np.float32)
    return Prediction(source=rad.source, probabilities=probs, predicted=pred,
                      class_index=pred if class_index is None else class_index, heatmap=heat, radiograph=rad,
                      model_name=model_name, model_version=model_version)


@pytest.fixture
def copy_of(tmp_path):
    """Copy a file into a fresh folder of this test (so tests can move/delete it)."""
    def _copy(src: Path, name: str | None = None) -> Path:
        d = tmp_path / "inputs"
        d.mkdir(exist_ok=True)
        return Path(shutil.copy2(src, d / (name or Path(src).name)))
    return _copy


@pytest.fixture(scope="session")
def loaded_service(tiny_model_dir):
    """An InferenceService with the real tiny test network loaded (TensorFlow, CPU)."""
    from app.core.inference import InferenceService

    svc = InferenceService()
    svc.load(tiny_model_dir)
    return svc

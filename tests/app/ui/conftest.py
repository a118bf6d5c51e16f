"""Fixtures for the Qt tests: offscreen Qt, a private workstation per test, the real tiny model, real images."""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import pytest

os.environ["QT_QPA_PLATFORM"] = "offscreen"  # before any QApplication exists

from PySide6.QtCore import QSettings  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def fedxray_qapp(qapp):
    """The pytest-qt QApplication with FedXray's names and style (what launch.run sets up)."""
    from app.ui.launch import make_app

    return make_app(["fedxray-tests"])


@pytest.fixture(autouse=True)
def workstation(tmp_path, monkeypatch):
    """Each test is its own workstation: XDG config/data/cache and QSettings in tmp."""
    home = tmp_path / "home"
    for var in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME"):
        d = home / var.lower()
        d.mkdir(parents=True)
        monkeypatch.setenv(var, str(d))
    for fmt in (QSettings.Format.NativeFormat, QSettings.Format.IniFormat):
        QSettings.setPath(fmt, QSettings.Scope.UserScope, str(home / "qsettings"))
    return home


class NetworkUsed(AssertionError):
    """Raised when code tries to open a network connection during an offline test."""


@pytest.fixture
def no_network(monkeypatch):
    """Every socket connection attempt (IP or otherwise) raises NetworkUsed; attempts are recorded."""
    attempts: list = []

    def refuse(*args, **kwargs):
        attempts.append(args[1:] if len(args) > 1 else args)
        raise NetworkUsed(f"network connection attempted: {args[1:]!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    return attempts


@pytest.fixture(scope="session")
def cxr(shared_data) -> dict[str, Path]:
    """One real chest X-ray per class (first file of each class folder, sorted)."""
    return {c: sorted((shared_data / "cxr" / c).glob("*.png"))[0]
            for c in ("Covid", "Normal", "Pneumonia-Bacterial", "Pneumonia-Viral")}


@pytest.fixture(scope="session")
def dicom_dir(shared_data) -> Path:
    return shared_data / "dicom"


@pytest.fixture(scope="session")
def tiny_service(tiny_model_dir):
    """An InferenceService with the real tiny network loaded once for the session."""
    from app.core.inference import InferenceService

    svc = InferenceService()
    svc.load(tiny_model_dir)
    return svc


@pytest.fixture
def use_tiny_model(tiny_model_dir, workstation):
    """Install the tiny model on this workstation and make it the active one (as Settings would)."""
    from app.core.models import ModelStore
    from app.core.settings import Preferences

    installed = ModelStore().import_model(tiny_model_dir)
    prefs = Preferences.load()
    prefs.model_id = installed.id
    prefs.save()
    return installed


@pytest.fixture
def make_window(qtbot, use_tiny_model, tiny_service):
    """Factory for real main windows on this workstation (tiny model already loaded unless load=True)."""
    from app.ui.main_window import MainWindow

    windows = []

    def make(*, load: bool = False, service=None):
        w = MainWindow(service=service if service is not None else (None if load else tiny_service))
        qtbot.addWidget(w)
        w.show()
        windows.append(w)
        if load:
            qtbot.waitUntil(lambda: w.model.state in ("ready", "failed"), timeout=120_000)
        return w

    yield make
    for w in windows:
        w.close()


@pytest.fixture
def window(make_window):
    return make_window()


@pytest.fixture
def copy_to(tmp_path):
    """Copy files into a fresh folder of this test."""
    def _copy(src: Path, name: str | None = None, folder: str = "inputs") -> Path:
        d = tmp_path / folder
        d.mkdir(exist_ok=True)
        return Path(shutil.copy2(src, d / (name or Path(src).name)))
    return _copy

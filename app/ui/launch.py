"""Start the desktop app: QApplication, the main window shown at once, then the event loop."""

from __future__ import annotations

import os
import sys

from PySide6.QtCore import QCoreApplication, Qt
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QApplication


def limit_malloc_arenas(arenas: int = 2) -> bool:
    """Cap glibc's per-thread malloc arenas (like MALLOC_ARENA_MAX) before worker threads exist.

    TensorFlow plus several worker threads otherwise grow one arena per thread and keep the memory;
    this lowers the resident size with the model loaded by a few hundred MB. No-op off glibc.
    """
    if not sys.platform.startswith("linux") or "MALLOC_ARENA_MAX" in os.environ:
        return False
    try:
        import ctypes

        return bool(ctypes.CDLL("libc.so.6").mallopt(-8, arenas))  # -8 = M_ARENA_MAX
    except (OSError, AttributeError):
        return False


def make_app(argv: list[str]) -> QApplication:
    """The QApplication with FedXray's names, icon and style (reuses an existing one)."""
    limit_malloc_arenas()
    app = QApplication.instance()
    if app is None:
        QGuiApplication.setHighDpiScaleFactorRoundingPolicy(Qt.HighDpiScaleFactorRoundingPolicy.PassThrough)
        app = QApplication(list(argv) or ["fedxray"])
    QCoreApplication.setOrganizationName("FedXray")
    QCoreApplication.setOrganizationDomain("fedxray.org")
    QCoreApplication.setApplicationName("FedXray")
    QGuiApplication.setApplicationDisplayName("FedXray")
    QGuiApplication.setDesktopFileName("fedxray")
    from app.ui import style
    from app.ui.icons import app_icon

    style.apply(app)
    app.setWindowIcon(app_icon())
    return app


def run(argv: list[str], open_paths: list[str]) -> int:
    """Show the main window (before TensorFlow is imported), open ``open_paths``, run until quit."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    app = make_app(argv)
    from app.ui.main_window import MainWindow

    window = MainWindow()
    window.show()
    if open_paths:
        window.open_paths(open_paths)
    return int(app.exec())


if __name__ == "__main__":
    sys.exit(run(sys.argv[:1], sys.argv[1:]))

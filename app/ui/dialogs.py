"""File dialogs that never block the GUI thread: Qt's own dialog (its file system model reads folders on a thread
of its own), never the platform's, whose nested loop froze the app when a path under /proc was typed."""

from __future__ import annotations

from PySide6.QtWidgets import QFileDialog, QWidget

OPTIONS = QFileDialog.Option.DontUseNativeDialog


def open_file(parent: QWidget, title: str, start: str = "", filt: str = "") -> str:
    """A file to open, or "" when cancelled."""
    path, _ = QFileDialog.getOpenFileName(parent, title, start, filt, options=OPTIONS)
    return path


def save_file(parent: QWidget, title: str, default: str = "", filt: str = "") -> str:
    """A file to write, or "" when cancelled."""
    path, _ = QFileDialog.getSaveFileName(parent, title, default, filt, options=OPTIONS)
    return path


def folder(parent: QWidget, title: str, start: str = "") -> str:
    """A folder, or "" when cancelled."""
    return QFileDialog.getExistingDirectory(parent, title, start, OPTIONS | QFileDialog.Option.ShowDirsOnly)

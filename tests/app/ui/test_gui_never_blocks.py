"""File dialogs and file checks never block the GUI thread (the app froze when a path under /proc was typed).

A network share that hangs cannot exist on this machine: `Path.is_dir` is made to wait on an event for paths under
/hung-share (the only mock here); the window, its workers and dialogs are real.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication, QFileDialog

from tests.app.ui.helpers import wait_idle

HUNG = "/hung-share"


def _hang(monkeypatch) -> threading.Event:
    release = threading.Event()
    real = Path.is_dir

    def is_dir(self, *args, **kwargs):
        if str(self).startswith(HUNG):
            release.wait(30)                                    # an unresponsive NFS server, until released
            return False
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "is_dir", is_dir)
    return release


def _gaps(qtbot, seconds: float) -> float:
    """The longest pause of the GUI event loop (ms) while it runs for `seconds`."""
    ticks: list[float] = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start(20)
    qtbot.wait(int(seconds * 1000))
    timer.stop()
    return 1000 * max((b - a for a, b in zip(ticks, ticks[1:], strict=False)), default=seconds)


def test_a_dropped_path_on_a_hung_share_does_not_freeze_the_window(qtbot, window, monkeypatch):
    release = _hang(monkeypatch)
    t = time.perf_counter()
    window.open_paths([f"{HUNG}/study/IM0001"])
    assert time.perf_counter() - t < 0.5                      # returned at once: the check runs on a worker
    assert _gaps(qtbot, 1.0) < 500
    release.set()
    qtbot.waitUntil(lambda: any("does not exist" in m.text for m in window.notifier.messages), timeout=30_000)
    wait_idle(qtbot, window)


def test_a_batch_folder_on_a_hung_share_does_not_freeze_the_window(qtbot, window, monkeypatch):
    release = _hang(monkeypatch)
    dialog = window.show_batch()
    t = time.perf_counter()
    dialog.start(f"{HUNG}/folder")
    assert time.perf_counter() - t < 0.5
    assert _gaps(qtbot, 1.0) < 500
    release.set()
    qtbot.waitUntil(lambda: any(f"{HUNG}/folder is not a folder" in m.text for m in window.notifier.messages),
                    timeout=30_000)
    qtbot.waitUntil(lambda: not dialog.running, timeout=30_000)
    assert dialog.start_button.isEnabled()


def test_the_open_dialog_is_qts_own_and_browsing_proc_keeps_the_window_responsive(qtbot, window):
    seen: dict = {}

    def inspect():
        dialog = QApplication.activeModalWidget()
        seen["dialog"] = type(dialog).__name__
        seen["qt_own"] = isinstance(dialog, QFileDialog) and dialog.testOption(QFileDialog.Option.DontUseNativeDialog)
        dialog.setDirectory("/proc/self/fd")                  # what the clinician typed
        seen["gap_ms"] = _gaps(qtbot, 1.5)
        dialog.reject()

    QTimer.singleShot(300, inspect)
    assert window.ask_open_path() == ""
    assert seen["dialog"] == "QFileDialog" and seen["qt_own"], seen
    assert seen["gap_ms"] < 500, seen

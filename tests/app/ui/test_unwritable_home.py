"""A workstation whose settings and data folders cannot be written: the app says which folder and what to do,
and still classifies (nothing it shows needs writing). Real file systems: a read-only tmpfs and a full one
(tests.support.filesystems; as root), a real window, the real tiny model."""

from __future__ import annotations

from tests.app.ui.helpers import wait_idle, wait_result
from tests.support.filesystems import fill, read_only_folder, small_disk

XDG = ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME")


def _window(qtbot, service):
    from app.ui.main_window import MainWindow

    w = MainWindow(service=service)
    qtbot.addWidget(w)
    w.show()
    return w


def _texts(w) -> str:
    return "\n".join(m.text for m in w.notifier.messages)


def test_a_read_only_home_names_the_folder_and_images_are_still_classified(qtbot, tiny_service, cxr, tmp_path,
                                                                          monkeypatch):
    home = tmp_path / "ro-home"
    with read_only_folder(home):
        for var in XDG:
            monkeypatch.setenv(var, str(home / var.lower()))
        w = _window(qtbot, tiny_service)
        try:
            data = home / "xdg_data_home" / "fedxray"
            assert f"cannot create the data folder {data}" in _texts(w)
            assert "Settings › Data folder" in _texts(w)
            w.open_image(cxr["Normal"])
            assert wait_result(qtbot, w) == "result"
            assert w.document.result is not None and w.document.result.case_id is None   # shown, not saved
            wait_idle(qtbot, w)
        finally:
            w.close()
    assert "Traceback" not in _texts(w)


def test_a_full_data_disk_keeps_the_result_on_screen_and_says_which_folder(qtbot, tiny_service, cxr, tmp_path,
                                                                          monkeypatch):
    disk = tmp_path / "disk"
    with small_disk(disk, 2048):
        monkeypatch.setenv("XDG_DATA_HOME", str(disk))
        w = _window(qtbot, tiny_service)
        try:
            assert w.history is not None                         # the history opened before the disk filled
            fill(disk)
            w.open_image(cxr["Covid"])
            assert wait_result(qtbot, w) == "result"
            wait_idle(qtbot, w)
            qtbot.waitUntil(lambda: "disk is full" in _texts(w).lower(), timeout=30_000)
            message = next(m.text for m in w.notifier.messages if "disk is full" in m.text.lower())
            assert str(disk / "fedxray") in message and "Free some disk space" in message, message
            assert w.document.result is not None                  # the result stays on screen
            assert len(w.history) == 0                            # nothing half-saved
        finally:
            w.close()


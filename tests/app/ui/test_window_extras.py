"""Drag and drop, several images from the command line, cancel, data folder, shortcuts help."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent

from fl.classes import CLASSES
from tests.app.ui.helpers import wait_idle, wait_result


def drop_files(window, paths) -> None:
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    event = QDropEvent(QPointF(300, 300), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                       Qt.KeyboardModifier.NoModifier)
    window.dropEvent(event)
    assert event.isAccepted()


def test_dropping_images_opens_the_first_and_queues_the_rest(qtbot, window, cxr, dicom_dir):
    files = [cxr["Normal"], dicom_dir / "RG1_UNCR.dcm", cxr["Covid"]]
    drop_files(window, files)
    assert wait_result(qtbot, window) == "result"
    assert window.document.path == files[0]
    assert window.act.next_image.isEnabled()
    qtbot.keyClick(window, Qt.Key.Key_PageDown)
    assert wait_result(qtbot, window) == "result"
    assert window.document.path == files[1] and window.windowTitle() == "FedXray — RG1_UNCR.dcm"
    qtbot.keyClick(window, Qt.Key.Key_PageUp)
    assert wait_result(qtbot, window) == "result"
    assert window.document.path == files[0]
    assert [Path(p).name for p in window.prefs.recent_files[:2]] == [files[0].name, files[1].name]


def test_dropping_a_folder_starts_a_batch(qtbot, window, cxr, copy_to):
    for c in ("Normal", "Covid"):
        copy_to(cxr[c], folder="dropped")
    folder = Path(copy_to(cxr["Pneumonia-Viral"], folder="dropped")).parent
    drop_files(window, [folder])
    dialog = window.batch_dialog
    qtbot.waitUntil(lambda: dialog is not None and not dialog.running and bool(dialog.rows), timeout=120_000)
    assert dialog.table.rowCount() == 3
    dialog.close()


def test_escape_cancels_the_classification_and_a_new_image_still_works(qtbot, make_window, cxr):
    from app.core.inference import InferenceService

    w = make_window(service=InferenceService())  # the model is still loading: the case waits for it
    w.open_image(cxr["Normal"])
    qtbot.waitUntil(lambda: w.document.state in ("classifying", "waiting"), timeout=30_000)
    qtbot.keyClick(w, Qt.Key.Key_Escape)
    assert w.document.state == "cancelled"
    assert w.case_page.result.state.text().startswith("Cancelled")
    qtbot.waitUntil(lambda: w.model.state == "ready", timeout=120_000)
    wait_idle(qtbot, w)
    assert w.document.state == "cancelled" and w.document.result is None  # the old step stayed unseen
    w.open_image(cxr["Covid"])
    assert wait_result(qtbot, w) == "result"


def test_changing_the_data_folder_moves_history_and_labelled_set(qtbot, window, cxr, tmp_path):
    import dataclasses

    new = tmp_path / "elsewhere"
    window.apply_preferences(dataclasses.replace(window.prefs, data_dir=str(new)))
    assert window.history.path == new / "history.sqlite"
    window.open_image(cxr["Normal"])
    assert wait_result(qtbot, window) == "result"
    assert len(window.history) == 1 and (new / "history.sqlite").is_file()
    fb = window.case_page.feedback
    qtbot.waitUntil(fb.isEnabled, timeout=10_000)  # once the case is in the history
    fb.label.setCurrentIndex(fb.label.findData(CLASSES[window.document.result.predicted]))  # starts empty
    window.case_page.feedback.button.click()
    wait_idle(qtbot, window)
    assert window.labelled.root == new / "labelled" and (new / "labelled" / "manifest.csv").is_file()

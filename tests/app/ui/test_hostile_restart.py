"""Hostile files, a broken model and a failing save get clear messages; the history survives a restart."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import Qt

from tests.app.ui.helpers import wait_idle, wait_result


def read_error(path) -> str:
    """What fl.preprocess says about an unreadable file (the expectation, computed independently)."""
    from fl.preprocess import ImageReadError, read_image

    with pytest.raises(ImageReadError) as info:
        read_image(path)
    return str(info.value)


@pytest.mark.parametrize("kind", ["zero bytes", "truncated", "text named .png"])
def test_unreadable_files_get_a_clear_message(qtbot, window, cxr, tmp_path, kind):
    path = tmp_path / "hostile.png"
    if kind == "zero bytes":
        path.write_bytes(b"")
    elif kind == "truncated":
        data = cxr["Normal"].read_bytes()
        path.write_bytes(data[: len(data) // 3])
    else:
        path.write_text("Patient: Smith\nThis is a text file, not an image.\n")
    expected = read_error(path)

    window.open_image(path)
    assert wait_result(qtbot, window) == "failed"
    msg = window.notifier.last
    assert msg.level == "error"
    assert msg.text == f"Opening {path.name} failed: {expected}"
    assert window.message_bar.isVisible() and window.message_bar.text() == msg.text
    assert window.document.result is None and window.history is not None and len(window.history) == 0
    assert window.case_page.result.state.text() == "No result for this image."


def test_ct_dicom_is_held_back_by_a_guardrail_until_the_clinician_insists(qtbot, window, dicom_dir):
    path = dicom_dir / "CT_small.dcm"
    window.open_image(path)
    assert wait_result(qtbot, window) == "blocked"
    banner = window.case_page.banner
    assert banner.isVisible() and banner.button.isVisible()
    text = " ".join(banner.messages())
    assert "may be meaningless" in text and "modality is CT" in text
    assert window.document.result is None and len(window.history) == 0
    assert window.notifier.last is None or window.notifier.last.level != "error"

    qtbot.mouseClick(banner.button, Qt.MouseButton.LeftButton)
    assert wait_result(qtbot, window) == "result"
    assert banner.isVisible() and not banner.button.isVisible()
    assert "despite" in banner.title.text()
    (case,) = window.history.search()
    assert case.file_name == "CT_small.dcm" and any("CT" in w for w in case.warnings)


def test_broken_model_is_reported_and_classifying_says_why(qtbot, make_window, use_tiny_model, cxr):
    weights = use_tiny_model.dir / use_tiny_model.card.weights["file"]
    data = bytearray(weights.read_bytes())
    data[-100] ^= 0xFF  # one flipped byte: the SHA-256 no longer matches the card
    weights.write_bytes(bytes(data))

    from app.core.inference import InferenceService

    w = make_window(service=InferenceService(), load=True)
    assert w.model.state == "failed"
    assert w.model_status.text() == "No model — see Settings › Model"
    msg = w.notifier.last
    assert msg.level == "error" and msg.text.startswith("Loading the model failed: ")
    assert "sha" in msg.text.lower() and "Settings" in msg.text
    w.open_image(cxr["Normal"])
    assert wait_result(qtbot, w) == "failed"
    assert "No model is loaded" in w.notifier.last.text


def test_export_to_an_impossible_place_gets_a_clear_message(qtbot, window, cxr, tmp_path):
    window.open_image(cxr["Normal"])
    assert wait_result(qtbot, window) == "result"
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where a folder should be")
    window.controller.export_pdf(blocker / "report.pdf")
    wait_idle(qtbot, window)
    msg = window.notifier.last
    assert msg.level == "error" and msg.text.startswith("Exporting the PDF report failed: ")
    assert "could not be saved" in msg.text or "not allowed" in msg.text
    assert not (tmp_path / "report.pdf").exists()


def test_history_and_window_geometry_survive_a_restart(qtbot, make_window, cxr, dicom_dir):
    first = make_window()
    for path in (cxr["Covid"], dicom_dir / "RG1_UNCR.dcm"):
        first.open_image(path)
        assert wait_result(qtbot, first) == "result"
    before = {(c.file_name, c.pixel_sha256, c.model_version): c.probabilities for c in first.history.search()}
    first.resize(770, 540)  # within the offscreen screen (800 x 600)
    size = (first.width(), first.height())
    assert size != (1360, 860)  # not the default size
    first.close()

    second = make_window()
    assert (second.width(), second.height()) == size
    after = {(c.file_name, c.pixel_sha256, c.model_version): c.probabilities for c in second.history.search()}
    assert after == before and len(after) == 2
    assert second.history_view.model.rowCount() == 2
    assert [second.prefs.recent_files[0], second.prefs.recent_files[1]] == [
        str((dicom_dir / "RG1_UNCR.dcm").resolve()), str(cxr["Covid"].resolve())]
    recent = [a.text() for a in second.recent_menu.actions()]
    assert recent[0].endswith("RG1_UNCR.dcm")
    # Reopen a case in the new window.
    case = next(c for c in second.history.search() if c.file_name == "RG1_UNCR.dcm")
    second.reopen_case(case.id)
    assert wait_result(qtbot, second) == "result"
    np.testing.assert_allclose(second.case_page.result.shown_probabilities(),
                               [case.probabilities[c] for c in sorted(case.probabilities,
                                                                     key=list(case.probabilities).index)],
                               atol=0.0006)

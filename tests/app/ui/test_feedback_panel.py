"""A result shown despite guardrail warnings is outside the intended use everywhere, and its label needs a typed
reason (real window offscreen, a real CT slice, the tiny model)."""

from __future__ import annotations

from PySide6.QtCore import Qt

from fl.classes import CLASSES
from tests.app.ui.helpers import wait_idle


def test_guardrail_flagged_case_is_marked_and_needs_a_reason_to_be_labelled(qtbot, window, dicom_dir):
    window.open_image(dicom_dir / "CT_small.dcm")
    qtbot.waitUntil(lambda: window.document.state == "blocked", timeout=60_000)
    qtbot.mouseClick(window.case_page.banner.button, Qt.MouseButton.LeftButton)   # "Show result anyway"
    qtbot.waitUntil(lambda: window.document.state == "result", timeout=60_000)
    result = window.case_page.result
    assert result.outside_use.isVisible() and "OUTSIDE THE INTENDED USE" in result.outside_use.text()
    panel = window.case_page.feedback
    qtbot.waitUntil(panel.isEnabled, timeout=10_000)
    assert panel.reason.isVisible() and panel.reason_hint.isVisible()
    panel.label.setCurrentIndex(panel.label.findData(CLASSES[1]))
    assert not panel.button.isEnabled()                       # no reason, no label
    panel.reason.setText("   ")
    assert not panel.button.isEnabled()
    panel.reason.setText("test phantom, kept for QA")
    assert panel.button.isEnabled()
    qtbot.mouseClick(panel.button, Qt.MouseButton.LeftButton)
    wait_idle(qtbot, window)
    case = window.history.get(window.document.result.case_id)
    assert (case.feedback_label, case.feedback_reason) == (CLASSES[1], "test phantom, kept for QA")
    assert window.labelled.entry(case.pixel_sha256).reason == "test phantom, kept for QA"
    # The history, the statistics and the PDF say it was outside the intended use.
    from app.ui.history_view import CAUTIONS_COLUMN

    window.history_view.refresh()
    m = window.history_view.model
    assert "outside intended use" in m.data(m.index(0, CAUTIONS_COLUMN))
    window.stats_view.refresh()
    assert "<b>1</b> outside the intended use" in window.stats_view.summary.text()


def test_the_controller_refuses_a_label_without_reason_for_a_flagged_case(qtbot, window, dicom_dir):
    window.open_image(dicom_dir / "CT_small.dcm")
    qtbot.waitUntil(lambda: window.document.state == "blocked", timeout=60_000)
    window.controller.insist()
    qtbot.waitUntil(lambda: window.controller.case is not None, timeout=60_000)
    window.controller.save_feedback(CLASSES[0], "", "")        # bypassing the disabled button
    wait_idle(qtbot, window)
    assert window.history.get(window.controller.case.id).feedback_label is None
    assert window.labelled.entries() == []
    assert "reason" in window.notifier.last.text


def test_opening_a_labelled_image_again_shows_its_label_and_who_gave_it(qtbot, window, cxr, copy_to):
    from tests.app.ui.helpers import wait_result

    window.open_image(cxr["Normal"])
    assert wait_result(qtbot, window) == "result"
    panel = window.case_page.feedback
    qtbot.waitUntil(panel.isEnabled, timeout=10_000)
    panel.label.setCurrentIndex(panel.label.findData("Pneumonia-Viral"))
    panel.button.click()
    wait_idle(qtbot, window)
    who = window.history.search()[0].feedback_by
    window.open_image(cxr["Covid"])
    assert wait_result(qtbot, window) == "result"
    window.open_image(copy_to(cxr["Normal"], "same pixels, other name.png"))      # the same image, elsewhere
    assert wait_result(qtbot, window) == "result"
    qtbot.waitUntil(lambda: window.document.result.feedback_label == "Pneumonia-Viral", timeout=10_000)
    assert panel.label.currentData() == "Pneumonia-Viral"
    assert "Viral pneumonia" in panel.status.text() and who in panel.status.text()
    panel.label.setCurrentIndex(panel.label.findData("Normal"))
    assert panel.button.text() == "Replace label (Viral pneumonia → Normal)"

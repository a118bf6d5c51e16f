"""Clinician feedback into the local labelled set; the history view (search, filter, reopen, delete)."""

from __future__ import annotations

import csv
import hashlib

import numpy as np
from PySide6.QtCore import Qt

from fl.classes import CLASSES
from tests.app.ui.helpers import wait_idle, wait_result


def manifest(root) -> list[dict]:
    with open(root / "manifest.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_confirm_then_correct_label_puts_the_image_in_the_local_labelled_set(qtbot, window, cxr, copy_to):
    src = copy_to(cxr["Covid"])
    window.open_image(src)
    assert wait_result(qtbot, window) == "result"
    panel = window.case_page.feedback
    predicted = CLASSES[window.document.result.predicted]
    qtbot.waitUntil(lambda: panel.isEnabled(), timeout=10_000)  # once the case is in the history
    # The list starts empty: the model's answer is not offered as the clinician's.
    assert panel.label.currentIndex() == -1 and not panel.button.isEnabled()
    assert "never sent" in panel.findChild(type(panel.status), "hint").text()

    # Confirm the model's finding, with a note.
    panel.label.setCurrentIndex(panel.label.findData(predicted))
    assert panel.button.isEnabled() and panel.button.text() == "Confirm finding"
    panel.note.setText("seen by two readers")
    qtbot.mouseClick(panel.button, Qt.MouseButton.LeftButton)
    wait_idle(qtbot, window)
    root = window.labelled.root
    sha = window.document.radiograph.pixel_sha256()
    rows = manifest(root)
    assert [r["filename"] for r in rows] == [f"{predicted}/{sha}.png"]
    copied = root / predicted / f"{sha}.png"
    assert hashlib.sha256(copied.read_bytes()).digest() == hashlib.sha256(src.read_bytes()).digest()
    case = window.history.get(window.document.result.case_id)
    assert (case.feedback_label, case.feedback_note) == (predicted, "seen by two readers")
    assert "labelled" in panel.status.text() and case.feedback_by in panel.status.text()
    assert "local labelled set" in window.notifier.last.text

    # Correct it to another class: the label is replaced, visibly; the copy moves to that class folder.
    other = next(c for c in CLASSES if c != predicted)
    panel.label.setCurrentIndex(panel.label.findData(other))
    assert panel.button.text().startswith("Replace label")
    qtbot.mouseClick(panel.button, Qt.MouseButton.LeftButton)
    wait_idle(qtbot, window)
    rows = manifest(root)
    assert [r["filename"] for r in rows] == [f"{other}/{sha}.png"]
    assert (root / other / f"{sha}.png").is_file() and not copied.exists()
    assert window.history.get(case.id).feedback_label == other
    assert "replaces" in panel.status.text()
    assert rows[0]["replaced"].startswith(f"{predicted} by ")


def test_history_search_filter_reopen_and_delete(qtbot, window, cxr, dicom_dir):
    for path in (cxr["Normal"], cxr["Pneumonia-Viral"], dicom_dir / "RG1_UNCR.dcm"):
        window.open_image(path)
        assert wait_result(qtbot, window) == "result"
    view = window.history_view
    qtbot.keyClick(window, Qt.Key.Key_F, Qt.KeyboardModifier.ControlModifier)
    assert window.tabs.currentWidget() is view and view.search.hasFocus()
    assert view.model.rowCount() == 3
    assert view.model.data(view.model.index(0, 0), Qt.ItemDataRole.DecorationRole).width() > 0  # thumbnail

    qtbot.keyClicks(view.search, "RG1")
    qtbot.waitUntil(lambda: view.model.rowCount() == 1, timeout=3000)
    assert view.model.case_at(0).file_name == "RG1_UNCR.dcm"
    view.search.clear()
    qtbot.waitUntil(lambda: view.model.rowCount() == 3, timeout=3000)
    by_class = {c.predicted for c in view.model.cases}
    one = sorted(by_class)[0]
    view.finding.setCurrentIndex(view.finding.findData(one))
    assert {c.predicted for c in view.model.cases} == {one}
    view.finding.setCurrentIndex(0)

    # Reopen the DICOM case: stored probabilities and a heatmap are shown.
    dicom_case = next(c for c in view.model.cases if c.file_name == "RG1_UNCR.dcm")
    window.open_image(cxr["Covid"])
    assert wait_result(qtbot, window) == "result"
    assert view.select_case(dicom_case.id)
    qtbot.mouseClick(view.open_button, Qt.MouseButton.LeftButton)
    assert wait_result(qtbot, window) == "result"
    res = window.document.result
    assert res.from_history and res.case_id == dicom_case.id
    np.testing.assert_allclose(res.probabilities, [dicom_case.probabilities[c] for c in CLASSES])
    assert window.document.heat is not None and window.windowTitle() == "FedXray — RG1_UNCR.dcm"
    assert len(window.history) == 4  # reopening does not add a case

    # Delete it (the confirmation is answered yes).
    window.confirm = lambda title, text: True
    window.tabs.setCurrentWidget(view)
    view.select_case(dicom_case.id)
    qtbot.mouseClick(view.delete_button, Qt.MouseButton.LeftButton)
    assert dicom_case.id not in {c.id for c in window.history.search()}
    assert view.model.rowCount() == 3


def test_statistics_count_the_history(qtbot, window, cxr):
    for c in ("Normal", "Covid", "Normal"):
        window.open_image(cxr[c])
        assert wait_result(qtbot, window) == "result"
    window.act.show_stats.trigger()
    stats = window.stats_view
    expected = dict.fromkeys(CLASSES, 0)
    for case in window.history.search():
        expected[case.predicted] += 1
    assert stats.totals() == expected and sum(expected.values()) == 3
    series = stats.chart.series()[0]
    assert [s.label() for s in series.barSets()] == ["COVID-19", "Normal", "Bacterial pneumonia", "Viral pneumonia"]
    today = [sum(bs.at(bs.count() - 1) for bs in series.barSets())]
    assert today == [3]
    stats.period.setCurrentIndex(1)  # per week
    assert stats.totals() == expected

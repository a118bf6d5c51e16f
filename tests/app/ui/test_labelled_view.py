"""The labelled-set view: counts per class and patients, who labelled each image and when, what a relabel
replaced, review a case, remove one (real window offscreen, real images, the tiny model)."""

from __future__ import annotations

from fl.classes import CLASS_LABELS, CLASSES
from tests.app.ui.helpers import wait_idle, wait_result


def _label(qtbot, w, path, label):
    w.open_image(path)
    assert wait_result(qtbot, w) == "result"
    fb = w.case_page.feedback
    qtbot.waitUntil(fb.isEnabled, timeout=10_000)
    fb.label.setCurrentIndex(fb.label.findData(label))
    fb.button.click()
    wait_idle(qtbot, w)


def test_labelled_set_view_counts_reviews_and_removes(qtbot, window, cxr):
    _label(qtbot, window, cxr["Normal"], "Normal")
    _label(qtbot, window, cxr["Covid"], "Covid")
    _label(qtbot, window, cxr["Covid"], "Pneumonia-Viral")     # the same image again: its label is replaced
    view = window.labelled_view
    window.tabs.setCurrentWidget(view)
    view.refresh()
    qtbot.waitUntil(lambda: len(view.rows) == 2, timeout=10_000)
    text = view.summary.text()
    assert "<b>2</b> images of <b>2</b> patients" in text
    assert f"{CLASS_LABELS['Pneumonia-Viral']} <b>1</b> (1 patients)" in text and "COVID-19 <b>0</b>" in text
    labels = [view.table.item(r, 1).text() for r in range(view.table.rowCount())]
    assert sorted(labels) == sorted([CLASS_LABELS["Normal"], CLASS_LABELS["Pneumonia-Viral"]])
    viral = labels.index(CLASS_LABELS["Pneumonia-Viral"])
    assert view.table.item(viral, 6).text().startswith(f"COVID-19 ({window.history.search()[0].feedback_by}, ")
    assert view.table.item(viral, 2).text() == window.history.search()[0].feedback_by
    assert view.table.item(viral, 0).data(0x1) is not None                   # a thumbnail (DecorationRole)

    # Review: opens the case in the case view with its label.
    view.table.selectRow(viral)
    with qtbot.waitSignal(view.openRequested):
        view.open_button.click()
    qtbot.waitUntil(lambda: window.document.state == "result", timeout=30_000)
    assert window.document.result.feedback_label == "Pneumonia-Viral"

    # Remove: out of the set, and the history no longer shows the label.
    sha = view.rows[viral][0].pixel_sha256
    view.remove([sha])
    qtbot.waitUntil(lambda: len(view.rows) == 1, timeout=10_000)
    assert sha not in window.labelled
    assert {c.feedback_label for c in window.history.find_by_sha(sha)} == {None}
    assert [e.label for e in window.history.label_events(sha)][-1] is None
    assert CLASSES

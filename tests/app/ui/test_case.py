"""Open real X-rays and a real DICOM in the real main window; check result, overlay and history."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QEvent, QPoint, QPointF, Qt
from PySide6.QtGui import QMouseEvent
from PySide6.QtWidgets import QApplication

from fl.classes import CLASSES
from tests.app.ui.helpers import cli_classify, viewport_pixels, wait_idle, wait_result


def shown(w) -> np.ndarray:
    """The four probabilities as the result panel shows them (labels and bars)."""
    panel = w.case_page.result
    labels = np.array(panel.shown_probabilities())
    bars = np.array([r.bar.value() / 1000.0 for r in panel.rows])
    np.testing.assert_allclose(labels, bars, atol=0.0011)
    return labels


def test_png_and_dicom_match_the_cli_and_are_in_the_history(qtbot, window, cxr, dicom_dir):
    # Prepare
    png, dcm = cxr["Pneumonia-Viral"], dicom_dir / "RG1_UNCR.dcm"
    expected = cli_classify(png, dcm)
    results = {}
    # Execute / Assert, once per file
    for path in (png, dcm):
        window.open_image(path)
        assert wait_result(qtbot, window) == "result"
        probs = shown(window)
        cli = expected[path.name]
        want = np.array([cli["probabilities"][c] for c in CLASSES])
        assert abs(probs.sum() - 1.0) < 0.002  # one decimal of a percent per class
        np.testing.assert_allclose(probs, want, atol=0.0006)
        assert window.case_page.result.finding.text() != ""
        assert window.windowTitle() == f"FedXray — {path.name}"
        assert window.document.result.model_version == cli["model_version"]
        results[path.name] = window.document.result
    # The history holds both cases, with the model version and the probabilities shown.
    cases = {c.file_name: c for c in window.history.search()}
    assert set(cases) == {png.name, dcm.name}
    for name, case in cases.items():
        assert case.model_version == expected[name]["model_version"]
        assert case.predicted == expected[name]["predicted"]
        assert case.id == results[name].case_id
    window.act.show_history.trigger()  # the history tab is refreshed when shown
    table = window.history_view.model
    from app.ui.history_view import FILE_COLUMN

    assert {table.data(table.index(r, FILE_COLUMN)) for r in range(table.rowCount())} == {png.name, dcm.name}


def test_overlay_is_drawn_toggled_and_its_opacity_follows_the_slider(qtbot, window, cxr):
    window.open_image(cxr["Covid"])
    assert wait_result(qtbot, window) == "result"
    viewer = window.case_page.view.viewer
    panel = window.case_page.result
    assert window.document.heat is not None and viewer.heat_shown()
    with_heat = viewport_pixels(viewer)

    qtbot.keyClick(window, Qt.Key.Key_H)  # the H shortcut hides the heatmap
    assert not window.document.overlay_visible and not panel.show_heat.isChecked()
    plain = viewport_pixels(viewer)
    assert np.abs(with_heat.astype(int) - plain.astype(int)).max() > 30  # the overlay changes what is drawn
    # Without the overlay the image area is pure gray: R == G == B.
    r = viewer.mapFromScene(viewer.sceneRect()).boundingRect().adjusted(2, 2, -2, -2)
    dpr = viewer.viewport().devicePixelRatioF()
    img = plain[int(r.top() * dpr):int(r.bottom() * dpr), int(r.left() * dpr):int(r.right() * dpr)].reshape(-1, 3)
    assert img.size and np.abs(img[:, 0].astype(int) - img[:, 2].astype(int)).max() <= 1

    panel.show_heat.setChecked(True)
    assert window.document.overlay_visible and window.act.heatmap.isChecked()
    panel.opacity.setValue(90)
    assert window.document.overlay_opacity == pytest.approx(0.90)
    assert viewer._heat.opacity() == pytest.approx(0.90)
    strong = viewport_pixels(viewer)
    panel.opacity.setValue(10)
    weak = viewport_pixels(viewer)
    d_strong = np.abs(strong.astype(int) - plain.astype(int)).mean()
    d_weak = np.abs(weak.astype(int) - plain.astype(int)).mean()
    assert d_strong > d_weak > 0


def test_explaining_another_class_changes_the_heatmap(qtbot, window, cxr):
    window.open_image(cxr["Normal"])
    assert wait_result(qtbot, window) == "result"
    doc = window.document
    before, predicted = doc.heat.copy(), doc.result.predicted
    assert doc.explained_class == predicted
    other = (predicted + 1) % 4
    combo = window.case_page.result.explain
    combo.setCurrentIndex(combo.findData(other))
    combo.activated.emit(combo.currentIndex())
    qtbot.waitUntil(lambda: doc.explained_class == other, timeout=30_000)
    wait_idle(qtbot, window)
    expected = window.service.classify(doc.radiograph, class_index=other).heatmap
    np.testing.assert_allclose(doc.heat, expected, atol=1e-5)
    assert not np.allclose(before, doc.heat)


def test_dicom_window_level_presets_and_invert(qtbot, window, dicom_dir):
    from fl.preprocess import apply_window, read_image

    path = dicom_dir / "RG1_UNCR.dcm"
    window.open_image(path)
    assert wait_result(qtbot, window) == "result"
    doc = window.document
    rad = read_image(path)
    assert rad.invert  # MONOCHROME1
    assert doc.display.window == tuple(rad.window)
    # Shown as read: MONOCHROME1 is inverted, so the (high-valued) air outside the body is dark.
    shown_img = np.asarray(doc.image.constBits()).reshape(doc.image.height(), doc.image.bytesPerLine())
    shown_img = shown_img[:, : doc.image.width()]
    np.testing.assert_array_equal(shown_img, (np.clip(rad.pixels, 0, 1) * 255 + 0.5).astype(np.uint8))

    # Right-drag to the right and down widens the window and moves its centre.
    viewer = window.case_page.view.viewer
    c0, w0 = doc.display.window
    start = viewer.viewport().rect().center()
    qtbot.mousePress(viewer.viewport(), Qt.MouseButton.RightButton, pos=start)
    move = QMouseEvent(QEvent.Type.MouseMove, QPointF(start + QPoint(50, 30)), QPointF(start + QPoint(50, 30)),
                       Qt.MouseButton.NoButton, Qt.MouseButton.RightButton, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(viewer.viewport(), move)
    qtbot.mouseRelease(viewer.viewport(), Qt.MouseButton.RightButton, pos=start + QPoint(50, 30))
    qtbot.waitUntil(lambda: doc.display.window != (c0, w0))
    c1, w1 = doc.display.window
    assert w1 > w0 and c1 > c0
    qtbot.waitUntil(lambda: window.case_page.view.readout.text().count("window C") == 1)

    # Lung preset: the window a radiologist would get from the file's value range, rendered with apply_window.
    from app.ui.imaging import preset_window

    with qtbot.waitSignal(doc.displayChanged):
        window.act.preset_lung.trigger()
    lung = preset_window("Lung", rad)
    assert doc.display.window == (lung[0], lung[1])
    expected = apply_window(rad.raw, *lung, invert=True)
    got = np.asarray(doc.image.constBits()).reshape(doc.image.height(), doc.image.bytesPerLine())
    np.testing.assert_array_equal(got[:, : doc.image.width()], (expected * 255 + 0.5).astype(np.uint8))
    with qtbot.waitSignal(doc.displayChanged):
        window.act.preset_default.trigger()
    assert doc.display.window == tuple(rad.window)

    # Invert (I) flips the grey scale.
    before = np.asarray(doc.image.constBits()).copy()
    with qtbot.waitSignal(doc.displayChanged):
        qtbot.keyClick(window, Qt.Key.Key_I)
    assert doc.display.invert
    after = np.asarray(doc.image.constBits())
    w_ = doc.image.width()
    b = before.reshape(doc.image.height(), -1)[:, :w_].astype(int)
    a = after.reshape(doc.image.height(), -1)[:, :w_].astype(int)
    assert np.abs(a + b - 255).max() <= 1


def test_zoom_fit_and_side_by_side(qtbot, window, cxr):
    window.open_image(cxr["Pneumonia-Bacterial"])
    assert wait_result(qtbot, window) == "result"
    viewer = window.case_page.view.viewer
    fitted = viewer.zoom()
    window.act.zoom_in.trigger()
    assert viewer.zoom() == pytest.approx(fitted * 1.25)
    qtbot.keyClick(window, Qt.Key.Key_F)
    assert viewer.zoom() == pytest.approx(fitted)
    window.act.side_by_side.trigger()
    original = window.case_page.view.original
    assert window.document.side_by_side and original.isVisible()
    assert original.has_image() and not original.heat_shown()
    qtbot.waitUntil(lambda: abs(original.zoom() - viewer.zoom()) < 1e-9)

"""Small things a clinician noticed: disabled actions, the preset list, stale notices, the batch window, the
window title, the history's columns and the About box. Real window, real tiny model, real images."""

from __future__ import annotations

import re

from PySide6.QtCore import Qt
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import QApplication

from app.ui.imaging import qimage_to_rgb
from fl.classes import CLASSES
from tests.app.ui.helpers import wait_idle, wait_result


def _darkest(widget) -> int:
    return int(qimage_to_rgb(widget.grab().toImage()).min())


def test_a_held_back_result_disables_export_visibly_and_says_why(qtbot, window, dicom_dir, cxr):
    a = window.act
    window.open_image(dicom_dir / "CT_small.dcm")
    assert wait_result(qtbot, window) == "blocked"
    assert not a.export_pdf.isEnabled() and not a.export_png.isEnabled()
    assert "guardrail warnings hold the result back" in a.export_pdf.toolTip()
    assert "Show result anyway" in a.export_pdf.statusTip()
    qtbot.keyClick(window, Qt.Key.Key_E, Qt.KeyboardModifier.ControlModifier)     # nothing opens, nothing breaks
    pal = QApplication.palette()
    for role in (QPalette.ColorRole.WindowText, QPalette.ColorRole.Text, QPalette.ColorRole.ButtonText):
        assert pal.color(QPalette.ColorGroup.Disabled, role) != pal.color(QPalette.ColorGroup.Active, role)
    button = window.toolbar.widgetForAction(a.export_pdf)
    disabled = _darkest(button)
    qtbot.mouseClick(window.case_page.banner.button, Qt.MouseButton.LeftButton)     # Show result anyway
    assert wait_result(qtbot, window) == "result"
    assert a.export_pdf.isEnabled() and a.export_pdf.toolTip() == "Save a PDF report of this case (Ctrl+E)"
    assert _darkest(button) < disabled - 60                      # the enabled label is drawn much darker


def test_the_preset_list_follows_the_keyboard_and_a_dragged_window(qtbot, window, dicom_dir):
    window.open_image(dicom_dir / "RG1_UNCR.dcm")
    assert wait_result(qtbot, window) == "result"
    combo, doc = window.preset_combo, window.document
    assert combo.currentText() == "Window: file default"
    for key, text in ((Qt.Key.Key_2, "Window: lung"), (Qt.Key.Key_3, "Window: mediastinum"),
                      (Qt.Key.Key_1, "Window: file default")):
        with qtbot.waitSignal(doc.displayChanged):
            qtbot.keyClick(window, key)
        assert combo.currentText() == text
    c, w = doc.display.window
    with qtbot.waitSignal(doc.displayChanged):
        doc.set_display(doc.display.with_window(c + 50, w * 1.5))  # as a right-drag on the image does
    assert combo.currentIndex() == -1 and combo.placeholderText() == "Window: custom"


def test_a_notice_from_one_case_is_gone_on_the_next_and_names_no_hashed_path(qtbot, window, cxr, copy_to):
    window.open_image(copy_to(cxr["Covid"]))
    assert wait_result(qtbot, window) == "result"
    wait_idle(qtbot, window)
    panel = window.case_page.feedback
    qtbot.waitUntil(lambda: panel.isEnabled(), timeout=10_000)  # once the case is in the history
    panel.label.setCurrentIndex(panel.label.findData(CLASSES[window.document.result.predicted]))  # starts empty
    qtbot.mouseClick(panel.button, Qt.MouseButton.LeftButton)   # confirm the finding
    qtbot.waitUntil(lambda: "Label saved" in window.message_bar.text(), timeout=30_000)
    shown = window.message_bar.text()
    assert not re.search(r"[0-9a-f]{32}", shown), shown            # the copy's hashed name is not shown
    assert "is in the local labelled set, under " in shown
    assert re.search(r"[0-9a-f]{64}\.png$", window.notifier.last.detail)   # the full path stays in the detail
    window.open_image(cxr["Normal"])
    assert wait_result(qtbot, window) == "result"
    assert window.message_bar.text() == ""                          # the previous case's notice is gone


def test_the_batch_window_before_a_folder_and_its_last_column(qtbot, window):
    dialog = window.show_batch()
    qtbot.waitExposed(dialog)
    assert not dialog.progress.isVisible()                     # no "0 of 100 images" before a folder is chosen
    header = dialog.table.horizontalHeader()
    last = dialog.table.columnCount() - 1
    needed = header.fontMetrics().horizontalAdvance(dialog.table.horizontalHeaderItem(last).text())
    for width in (1400, 900):
        dialog.resize(width, 600)
        qtbot.wait(100)
        assert header.sectionSize(last) >= needed + 12, (width, header.sectionSize(last), needed)
        if width == 1400:
            assert header.sectionSize(0) == 300                  # room enough: the File column keeps its width
    dialog.close()


def test_the_title_names_the_file_and_the_app_once(qtbot, window, cxr):
    """Qt's xcb, Windows and macOS platforms append the application's display name to every window title ("… —
    FedXray"); the window's own title is the file's name alone, so the app is named once (offscreen Qt appends
    nothing, so the display name is checked here)."""
    from PySide6.QtGui import QGuiApplication

    assert window.windowTitle() == "" and QGuiApplication.applicationDisplayName() == "FedXray"
    window.open_image(cxr["Normal"])
    assert wait_result(qtbot, window) == "result"
    assert window.windowTitle() == cxr["Normal"].name


def test_the_history_gives_file_names_the_room(qtbot, window, cxr):
    long_name = cxr["Pneumonia-Bacterial"]
    window.open_image(long_name)
    assert wait_result(qtbot, window) == "result"
    wait_idle(qtbot, window)
    window.tabs.setCurrentWidget(window.history_view)
    qtbot.waitUntil(lambda: window.history_view.table.model().rowCount() == 1, timeout=30_000)
    table = window.history_view.table
    header = table.horizontalHeader()
    from app.ui.history_view import FILE_COLUMN, MODEL_COLUMN

    assert header.sectionSize(MODEL_COLUMN) <= 150 < header.sectionSize(FILE_COLUMN)
    index = table.model().index(0, MODEL_COLUMN)
    assert table.model().data(index, Qt.ItemDataRole.ToolTipRole) == table.model().data(index)   # full model name
    assert table.textElideMode() == Qt.TextElideMode.ElideMiddle and not table.wordWrap()


def test_the_about_box_has_version_build_and_licence(qtbot, window):
    from importlib.metadata import version

    from app.ui import menus

    box = menus.show_about(window)
    text = box.text()
    assert f"FedXray {version('fedxray')}" in text and "Apache-2.0" in text
    assert "Build" in text and "Python package" in text and "Qt 6." in text
    assert "not a certified medical device" in text
    box.close()


def test_disabled_entries_look_disabled_in_the_file_menu(qtbot, window):
    menu = window.menuBar().actions()[0].menu()
    menu.popup(window.mapToGlobal(window.rect().center()))
    qtbot.waitExposed(menu)
    rgb = qimage_to_rgb(menu.grab().toImage())
    pdf = menu.actionGeometry(window.act.export_pdf)
    opened = menu.actionGeometry(window.act.open)
    disabled, enabled = (rgb[r.top():r.bottom(), r.left():r.right()].min() for r in (pdf, opened))
    assert not window.act.export_pdf.isEnabled() and int(disabled) > int(enabled) + 60
    menu.close()

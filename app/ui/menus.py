"""Menus, toolbar, the recent-files list and the small help dialogs of the main window."""

from __future__ import annotations

import html
from pathlib import Path

from PySide6.QtWidgets import QComboBox, QMessageBox

from app.core.windowing import PRESETS, current_preset
from app.ui.banners import INTENDED_USE


def build(window) -> None:
    """Fill ``window``'s menu bar and toolbar from ``window.act``."""
    a, bar = window.act, window.menuBar()
    file = bar.addMenu("&File")
    file.addAction(a.open)
    window.recent_menu = file.addMenu("Open &recent")
    file.addAction(a.open_folder)
    file.addSeparator()
    file.addAction(a.export_pdf)
    file.addAction(a.export_png)
    file.addSeparator()
    file.addAction(a.settings)
    file.addSeparator()
    file.addAction(a.quit)

    view = bar.addMenu("&View")
    for act in (a.fit, a.zoom_in, a.zoom_out, a.actual_size, None, a.invert, a.preset_default, a.preset_lung,
                a.preset_mediastinum, None, a.heatmap, a.side_by_side, None, a.prev_image, a.next_image):
        view.addSeparator() if act is None else view.addAction(act)

    file.insertAction(a.export_pdf, a.cancel)
    go = bar.addMenu("&Go")
    for act in (a.show_case, a.show_history, a.find_history, a.show_stats, a.show_federation):
        go.addAction(act)
    federation = bar.addMenu("Fe&deration")
    federation.addAction(a.show_federation)
    federation.addAction(a.enrol)

    help_ = bar.addMenu("&Help")
    help_.addAction(a.shortcuts)
    help_.addAction(a.about)

    tb = window.toolbar
    tb.addAction(a.open)
    tb.addAction(a.open_folder)
    tb.addSeparator()
    tb.addAction(a.fit)
    tb.addAction(a.invert)
    window.preset_combo = QComboBox()
    window.preset_combo.setToolTip("DICOM window presets (1, 2, 3); right-drag on the image adjusts the window")
    window.preset_combo.addItems([f"Window: {name.lower()}" for name in PRESETS])
    window.preset_combo.setPlaceholderText("Window: custom")     # shown for a window dragged on the image
    window.preset_combo.activated.connect(lambda i: window.case_page.view.apply_preset(PRESETS[i]))
    window.preset_action = tb.addWidget(window.preset_combo)
    tb.addAction(a.heatmap)
    tb.addAction(a.side_by_side)
    tb.addSeparator()
    tb.addAction(a.export_pdf)
    tb.addSeparator()
    tb.addAction(a.find_history)
    tb.addAction(a.settings)
    window.document.imageChanged.connect(lambda: window.preset_action.setVisible(window.document.is_dicom))
    window.document.imageChanged.connect(lambda: sync_preset(window))
    window.document.displayChanged.connect(lambda: sync_preset(window))  # keys 1-3 and dragging too
    window.preset_action.setVisible(False)
    fill_recent(window)


def sync_preset(window) -> None:
    """The preset list shows the window on screen (a preset chosen with its key, or "custom" after dragging)."""
    doc = window.document
    name = current_preset(doc.radiograph, doc.display)
    window.preset_combo.setCurrentIndex(PRESETS.index(name) if name is not None else -1)


def fill_recent(window) -> None:
    """Rebuild File › Open recent from the preferences."""
    menu = window.recent_menu
    menu.clear()
    files = list(window.prefs.recent_files)
    for i, f in enumerate(files):
        act = menu.addAction(f"&{i + 1 if i < 9 else 0}  {Path(f).name}")
        act.setToolTip(f)
        act.setStatusTip(f)
        act.triggered.connect(lambda _=False, f=f: window.open_image(f))
    if not files:
        menu.addAction("No recent files").setEnabled(False)
    else:
        menu.addSeparator()
        menu.addAction("Clear list").triggered.connect(lambda: _clear_recent(window))


def _clear_recent(window) -> None:
    window.prefs.recent_files = []
    window._save_prefs()
    fill_recent(window)


def show_shortcuts(window) -> None:
    rows = "".join(f"<tr><td style='padding-right:16px'>{html.escape(t)}</td><td><b>{html.escape(k)}</b></td></tr>"
                   for t, k in window.act.shortcut_table())
    extra = ("<p>Mouse: wheel zooms, left-drag pans, right-drag adjusts the DICOM window "
             "(horizontal = width, vertical = level), double-click fits.</p>")
    box = QMessageBox(QMessageBox.Icon.NoIcon, "Keyboard shortcuts", f"<table>{rows}</table>{extra}",
                      parent=window)
    box.open()


def about_text(window) -> str:
    """The About box's rich text: version, build, licence, model, intended use."""
    from PySide6 import __version__ as pyside_version
    from PySide6.QtCore import qVersion

    from app.core.about import about

    info = about()
    card = window.model.card
    model = f"{html.escape(card.name)} {html.escape(card.version)}" if card is not None else "not loaded"
    return (f"<h3>FedXray {html.escape(info.version)}</h3><p>Chest X-ray decision support with federated "
            f"learning.</p><p><b>Intended use:</b> {html.escape(INTENDED_USE)}</p>"
            f"<table><tr><td>Version&nbsp;</td><td>{html.escape(info.version)}</td></tr>"
            f"<tr><td>Build&nbsp;</td><td>{html.escape(info.build)}, Qt {qVersion()} (PySide6 {pyside_version})"
            f"</td></tr><tr><td>Licence&nbsp;</td><td>{html.escape(info.licence)}</td></tr>"
            f"<tr><td>Model&nbsp;</td><td>{model}</td></tr></table>"
            "<p>All images and results stay on this computer.</p>")


def show_about(window) -> QMessageBox:
    box = QMessageBox(QMessageBox.Icon.NoIcon, "About FedXray", about_text(window), parent=window)
    box.setIconPixmap(window.windowIcon().pixmap(64, 64))
    box.open()
    return box

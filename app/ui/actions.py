"""The window's actions (menu, toolbar, keyboard shortcuts) in one place."""

from __future__ import annotations

from PySide6.QtCore import QObject
from PySide6.QtGui import QAction, QKeySequence

from app.ui.icons import standard

# (attribute, text, shortcut, standard icon, tooltip); checkable ones are set below
_SPEC = [
    ("open", "&Open image…", QKeySequence.StandardKey.Open, "DialogOpenButton", "Open a chest X-ray (Ctrl+O)"),
    ("open_folder", "Classify a &folder…", "Ctrl+Shift+O", "DirOpenIcon",
     "Classify every image in a folder (Ctrl+Shift+O)"),
    ("export_pdf", "&Export PDF report…", "Ctrl+E", "DialogSaveButton", "Save a PDF report of this case (Ctrl+E)"),
    ("export_png", "Export &overlay PNG…", "Ctrl+Shift+E", None, "Save the heatmap overlay as PNG"),
    ("settings", "&Settings…", QKeySequence.StandardKey.Preferences, "FileDialogDetailedView",
     "Model, heatmap defaults, data folder"),
    ("quit", "&Quit", QKeySequence.StandardKey.Quit, None, "Quit FedXray"),
    ("fit", "&Fit to window", "F", None, "Fit the image to the window (F)"),
    ("zoom_in", "Zoom &in", QKeySequence.StandardKey.ZoomIn, None, "Zoom in (Ctrl++)"),
    ("zoom_out", "Zoom &out", QKeySequence.StandardKey.ZoomOut, None, "Zoom out (Ctrl+-)"),
    ("actual_size", "&Actual size", "Ctrl+0", None, "One image pixel per screen pixel"),
    ("invert", "&Invert", "I", None, "Invert the grey scale (I)"),
    ("heatmap", "&Heatmap", "H", None, "Show or hide the GradCAM heatmap (H)"),
    ("side_by_side", "&Side by side", "S", None, "Original and overlay side by side (S)"),
    ("preset_default", "Window: file &default", "1", None, "DICOM window from the file (1)"),
    ("preset_lung", "Window: &lung", "2", None, "Lung window (2)"),
    ("preset_mediastinum", "Window: &mediastinum", "3", None, "Mediastinum window (3)"),
    ("cancel", "&Cancel", "Esc", None, "Stop classifying the open image (Esc)"),
    ("next_image", "&Next image", "PgDown", None, "Next image given on the command line"),
    ("prev_image", "&Previous image", "PgUp", None, "Previous image given on the command line"),
    ("show_case", "&Case", "Ctrl+1", None, "The open case"),
    ("show_history", "&History", "Ctrl+2", None, "Past cases on this workstation"),
    ("find_history", "&Search history…", QKeySequence.StandardKey.Find, None, "Search the history (Ctrl+F)"),
    ("show_stats", "S&tatistics", "Ctrl+3", None, "Findings per day and week"),
    ("show_federation", "&Federation", "Ctrl+4", None, "Federated training: enrolment, taking part, the live round"),
    ("enrol", "&Enrol this workstation…", None, None, "For IT: enrol this workstation with a FedXray central"),
    ("shortcuts", "&Keyboard shortcuts", QKeySequence.StandardKey.HelpContents, None, None),
    ("about", "&About FedXray", None, None, None),
]
_CHECKABLE = {"invert", "heatmap", "side_by_side"}


class Actions(QObject):
    """Every QAction of the main window, as attributes (``actions.open``, ``actions.heatmap`` …)."""

    def __init__(self, parent: QObject) -> None:
        super().__init__(parent)
        self.all: dict[str, QAction] = {}
        self.tips: dict[str, str] = {}  # each action's own tooltip (the window adds why a disabled one is off)
        for name, text, shortcut, icon, tip in _SPEC:
            act = QAction(text, parent)
            if shortcut is not None:
                act.setShortcut(QKeySequence(shortcut))
            if icon:
                act.setIcon(standard(icon))
            if tip:
                self.tips[name] = tip
                act.setToolTip(tip)
                act.setStatusTip(tip)
            act.setCheckable(name in _CHECKABLE)
            self.all[name] = act
            setattr(self, name, act)

    def explain_disabled(self, name: str, why: str | None) -> None:
        """Show `why` the action `name` is disabled in its tooltip and status tip (None: its own tip)."""
        tip = self.tips.get(name, "")
        text = tip if why is None else f"{tip} — {why}" if tip else why
        self.all[name].setToolTip(text)
        self.all[name].setStatusTip(text)

    def shortcut_table(self) -> list[tuple[str, str]]:
        """(action, shortcut) pairs for the shortcuts help."""
        rows = []
        for act in self.all.values():
            seq = act.shortcut().toString(QKeySequence.SequenceFormat.NativeText)
            if seq:
                rows.append((act.text().replace("&", "").rstrip("…"), seq))
        return rows

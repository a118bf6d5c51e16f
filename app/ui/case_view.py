"""The image area: the radiograph with its GradCAM overlay, optionally beside the plain original."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QSplitter, QVBoxLayout, QWidget

from app.ui import imaging
from app.ui.document import CaseDocument
from app.ui.viewer import ImageViewer

PLACEHOLDER = "Open a chest X-ray\n\nFile › Open (Ctrl+O) or drag an image or DICOM file here"
WINDOW_SENSITIVITY = 0.004  # fraction of the window width per dragged pixel


class CaseView(QWidget):
    """Shows ``document``'s image; right-drag adjusts a DICOM window, the overlay follows the document."""

    zoomChanged = Signal(float)

    def __init__(self, document: CaseDocument, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.document = document
        self.viewer = ImageViewer(PLACEHOLDER)
        self.viewer.setObjectName("mainViewer")
        self.original = ImageViewer()
        self.original.setObjectName("originalViewer")
        self._title_original = self._caption("Original")
        self._title_overlay = self._caption("GradCAM overlay")
        self.readout = QLabel()
        self.readout.setObjectName("imageReadout")

        left = self._column(self._title_original, self.original)
        right = self._column(self._title_overlay, self.viewer)
        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.setChildrenCollapsible(False)
        self.splitter.addWidget(left)
        self.splitter.addWidget(right)
        self._left = left

        footer = QHBoxLayout()
        footer.setContentsMargins(8, 2, 8, 2)
        footer.addWidget(self.readout)
        footer.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.splitter, 1)
        layout.addLayout(footer)

        for v in (self.viewer, self.original):
            v.windowDragged.connect(self._window_drag)
        self.viewer.viewChanged.connect(lambda: self._sync(self.viewer, self.original))
        self.original.viewChanged.connect(lambda: self._sync(self.original, self.viewer))
        self.viewer.zoomChanged.connect(self._update_readout)
        self.viewer.zoomChanged.connect(self.zoomChanged)
        document.imageChanged.connect(self._on_image)
        document.displayChanged.connect(self._on_display)
        document.heatChanged.connect(self._on_heat)
        document.overlayChanged.connect(self._on_overlay)
        self._syncing = False
        self._on_image()
        self._on_overlay()

    @staticmethod
    def _caption(text: str) -> QLabel:
        label = QLabel(text)
        label.setObjectName("viewerCaption")
        return label

    @staticmethod
    def _column(caption: QLabel, viewer: ImageViewer) -> QWidget:
        w = QWidget()
        lay = QVBoxLayout(w)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(0)
        lay.addWidget(caption)
        lay.addWidget(viewer, 1)
        return w

    # ---- document -> widgets
    def _on_image(self) -> None:
        doc = self.document
        self.viewer.set_image(doc.image)
        self.original.set_image(doc.image)
        self.viewer.set_heat(None)
        self._update_readout()

    def _on_display(self) -> None:
        self.viewer.set_image(self.document.image, keep_view=True)
        self.original.set_image(self.document.image, keep_view=True)
        self._update_readout()

    def _on_heat(self) -> None:
        doc = self.document
        self.viewer.set_heat(doc.heat_image)
        self._on_overlay()

    def _on_overlay(self) -> None:
        doc = self.document
        self.viewer.set_heat_visible(doc.overlay_visible)
        self.viewer.set_heat_opacity(doc.overlay_opacity)
        self._left.setVisible(doc.side_by_side)
        self._title_original.setVisible(doc.side_by_side)
        self._title_overlay.setVisible(doc.side_by_side)
        if doc.side_by_side:
            self.original.follow(self.viewer)
        name = ""
        if doc.explained_class is not None:
            from app.core.findings import CLASS_LABELS, CLASSES

            name = f" — {CLASS_LABELS[CLASSES[doc.explained_class]]}"
        self._title_overlay.setText(f"GradCAM overlay{name}")

    def _sync(self, source: ImageViewer, target: ImageViewer) -> None:
        if self._syncing or not self.document.side_by_side:
            return
        self._syncing = True
        try:
            target.follow(source)
        finally:
            self._syncing = False

    # ---- interaction
    def _window_drag(self, dx: float, dy: float) -> None:
        doc = self.document
        if not doc.is_dicom:
            return
        current = doc.display.window or imaging.preset_window("File default", doc.radiograph)
        center, width = current
        step = width * WINDOW_SENSITIVITY
        doc.set_display(doc.display.with_window(center + dy * step, max(width + dx * step, 1.0)))

    def apply_preset(self, name: str) -> None:
        doc = self.document
        if not doc.is_dicom:
            return
        window = imaging.preset_window(name, doc.radiograph)
        if window is not None:
            doc.set_display(doc.display.with_window(*window))

    def toggle_invert(self) -> None:
        doc = self.document
        if doc.radiograph is not None:
            doc.set_display(imaging.Display(window=doc.display.window, invert=not doc.display.invert))

    def _update_readout(self, *_args) -> None:
        doc = self.document
        if doc.image is None:
            self.readout.setText("")
            return
        parts = [f"{doc.image.width()} × {doc.image.height()} px", f"zoom {self.viewer.zoom() * 100:.0f}%"]
        if doc.display.window is not None:
            c, w = doc.display.window
            parts.append(f"window C {c:.0f} / W {w:.0f}")
        if doc.display.invert:
            parts.append("inverted")
        self.readout.setText("   ·   ".join(parts))

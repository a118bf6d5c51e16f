"""The image viewer: a QGraphicsView with zoom, pan, fit-to-window and a heatmap layer."""

from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QImage, QPainter, QPixmap, QTransform, QWheelEvent
from PySide6.QtWidgets import QFrame, QGraphicsPixmapItem, QGraphicsScene, QGraphicsView

ZOOM_STEP = 1.25
MIN_ZOOM, MAX_ZOOM = 0.02, 40.0


class ImageViewer(QGraphicsView):
    """Shows one image and, optionally, a colour heatmap drawn over it with adjustable opacity.

    Left-drag pans, the wheel zooms around the cursor, right-drag emits ``windowDragged(dx, dy)``
    (window/level is the owner's business), double-click fits the image to the window.
    """

    windowDragged = Signal(float, float)  # pixels moved since the last event (x = width, y = level)
    windowDragFinished = Signal()
    zoomChanged = Signal(float)
    viewChanged = Signal()  # zoom or scroll: lets a second viewer follow this one

    def __init__(self, placeholder: str = "", parent=None) -> None:
        super().__init__(parent)
        self.setScene(QGraphicsScene(self))
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setBackgroundBrush(QColor("#101418"))
        self.setRenderHints(QPainter.RenderHint.SmoothPixmapTransform | QPainter.RenderHint.Antialiasing)
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorUnderMouse)
        self.setResizeAnchor(QGraphicsView.ViewportAnchor.AnchorViewCenter)
        self.setDragMode(QGraphicsView.DragMode.ScrollHandDrag)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        self.setAcceptDrops(False)  # the main window handles drops
        self._base = QGraphicsPixmapItem()
        self._base.setTransformationMode(Qt.TransformationMode.SmoothTransformation)
        self._heat = QGraphicsPixmapItem()
        self._heat.setTransformationMode(Qt.TransformationMode.SmoothTransformation)
        self._heat.setZValue(1)
        self.scene().addItem(self._base)
        self.scene().addItem(self._heat)
        self._fit = True
        self._drag_from: QPointF | None = None
        self.placeholder = placeholder
        self.horizontalScrollBar().valueChanged.connect(self.viewChanged)
        self.verticalScrollBar().valueChanged.connect(self.viewChanged)

    # ---- content
    def has_image(self) -> bool:
        return not self._base.pixmap().isNull()

    def set_image(self, image: QImage | None, *, keep_view: bool = False) -> None:
        """Show ``image``; unless ``keep_view``, the new image is fitted to the window."""
        if image is None:
            self._base.setPixmap(QPixmap())
            self._heat.setPixmap(QPixmap())
            self.scene().setSceneRect(QRectF())
            self.viewport().update()
            return
        self._base.setPixmap(QPixmap.fromImage(image))
        self.scene().setSceneRect(QRectF(0, 0, image.width(), image.height()))
        if not keep_view:
            self.fit()

    def set_heat(self, image: QImage | None) -> None:
        """Colour heatmap layer (None removes it), stretched over the whole image."""
        self._heat.setPixmap(QPixmap() if image is None else QPixmap.fromImage(image))
        base = self._base.pixmap()
        if image is not None and not base.isNull() and image.width() and image.height():
            self._heat.setTransform(QTransform.fromScale(base.width() / image.width(),
                                                         base.height() / image.height()))
        else:
            self._heat.setTransform(QTransform())

    def set_heat_opacity(self, opacity: float) -> None:
        self._heat.setOpacity(max(0.0, min(1.0, float(opacity))))

    def set_heat_visible(self, visible: bool) -> None:
        self._heat.setVisible(bool(visible))

    def heat_shown(self) -> bool:
        return self._heat.isVisible() and not self._heat.pixmap().isNull() and self._heat.opacity() > 0

    # ---- zoom and pan
    def zoom(self) -> float:
        return self.transform().m11()

    def fit(self) -> None:
        """Fit the whole image in the window (and keep fitting while the window is resized)."""
        self._fit = True
        if self.has_image():
            self.fitInView(self._base, Qt.AspectRatioMode.KeepAspectRatio)
            self.zoomChanged.emit(self.zoom())
            self.viewChanged.emit()

    def zoom_by(self, factor: float) -> None:
        new = self.zoom() * factor
        if not (MIN_ZOOM <= new <= MAX_ZOOM) or not self.has_image():
            return
        self._fit = False
        self.scale(factor, factor)
        self.zoomChanged.emit(self.zoom())
        self.viewChanged.emit()

    def set_zoom(self, zoom: float) -> None:
        if self.zoom() > 0:
            self.zoom_by(zoom / self.zoom())

    def follow(self, other: ImageViewer) -> None:
        """Take over another viewer's zoom and scroll position (side-by-side view)."""
        self._fit = other._fit
        self.setTransform(other.transform())
        self.horizontalScrollBar().setValue(other.horizontalScrollBar().value())
        self.verticalScrollBar().setValue(other.verticalScrollBar().value())

    def wheelEvent(self, event: QWheelEvent) -> None:
        steps = event.angleDelta().y() / 120.0
        if steps:
            self.zoom_by(ZOOM_STEP ** steps)
        event.accept()

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        if self._fit:
            self.fit()

    def mouseDoubleClickEvent(self, event) -> None:
        self.fit()
        event.accept()

    # ---- right-drag: window/level
    def mousePressEvent(self, event) -> None:
        if event.button() == Qt.MouseButton.RightButton:
            self._drag_from = event.position()
            self.viewport().setCursor(Qt.CursorShape.SizeAllCursor)
            event.accept()
            return
        super().mousePressEvent(event)

    def mouseMoveEvent(self, event) -> None:
        if self._drag_from is not None:
            pos = event.position()
            delta = pos - self._drag_from
            self._drag_from = pos
            self.windowDragged.emit(delta.x(), delta.y())
            event.accept()
            return
        super().mouseMoveEvent(event)

    def mouseReleaseEvent(self, event) -> None:
        if event.button() == Qt.MouseButton.RightButton and self._drag_from is not None:
            self._drag_from = None
            self.viewport().unsetCursor()
            self.windowDragFinished.emit()
            event.accept()
            return
        super().mouseReleaseEvent(event)

    def contextMenuEvent(self, event) -> None:
        event.accept()  # right button is window/level, not a menu

    def drawForeground(self, painter: QPainter, rect: QRectF) -> None:
        super().drawForeground(painter, rect)
        if self.has_image() or not self.placeholder:
            return
        painter.save()
        painter.resetTransform()
        painter.setPen(QColor("#9aa5b1"))
        font = painter.font()
        font.setPointSizeF(font.pointSizeF() * 1.25)
        painter.setFont(font)
        painter.drawText(self.viewport().rect(), Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap,
                         self.placeholder)
        painter.restore()

"""Icons drawn in code (no image files to lose): the application icon and a few toolbar glyphs."""

from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QIcon, QPainter, QPainterPath, QPen, QPixmap
from PySide6.QtWidgets import QApplication, QStyle

from app.ui.style import ACCENT


def app_icon() -> QIcon:
    """FedXray's icon: two lung fields on a blue rounded square."""
    icon = QIcon()
    for size in (16, 24, 32, 48, 64, 128, 256):
        pm = QPixmap(size, size)
        pm.fill(Qt.GlobalColor.transparent)
        p = QPainter(pm)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        s = float(size)
        p.setBrush(QColor(ACCENT))
        p.setPen(Qt.PenStyle.NoPen)
        p.drawRoundedRect(QRectF(0, 0, s, s), s * 0.2, s * 0.2)
        p.setBrush(QColor("#eaf2fa"))
        for sign in (-1, 1):
            path = QPainterPath()
            cx = s / 2 + sign * s * 0.2
            path.addEllipse(QPointF(cx, s * 0.56), s * 0.15, s * 0.28)
            p.drawPath(path)
        pen = QPen(QColor("#eaf2fa"), max(1.0, s * 0.06))
        pen.setCapStyle(Qt.PenCapStyle.RoundCap)
        p.setPen(pen)
        p.drawLine(QPointF(s / 2, s * 0.14), QPointF(s / 2, s * 0.42))
        p.end()
        icon.addPixmap(pm)
    return icon


def standard(name: str) -> QIcon:
    """A QStyle standard icon by its short name, e.g. "DialogOpenButton"."""
    pixmap = getattr(QStyle.StandardPixmap, f"SP_{name}")
    return QApplication.style().standardIcon(pixmap)

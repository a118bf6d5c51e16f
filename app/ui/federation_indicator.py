"""The compact federation indicator in the main window's status bar; a click opens the Federation page."""

from __future__ import annotations

from PySide6.QtWidgets import QToolButton, QWidget

from app.ui import federation_text as ft
from app.ui.federation_model import FederationModel


class FederationIndicator(QToolButton):
    """"● Federation: training, round 1 of 3 · epoch 1/1 · 40 %" — coloured by level (off/idle/busy/warn/error)."""

    def __init__(self, model: FederationModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("federationIndicator")
        self.setAutoRaise(True)
        self.model = model
        self.level = "off"
        for sig in (model.agentChanged, model.enrollmentChanged):
            sig.connect(self.refresh)
        self.refresh()

    def refresh(self) -> None:
        text, level = ft.indicator(self.model.enrollment, self.model.agent)
        self.level = level
        self.setText(f"● {text}")
        a = self.model.agent
        tip = "Federated training — click to open the Federation page"
        if a is not None and a.error:
            tip = f"{a.error}\n\n{tip}"
        self.setToolTip(tip)
        self.setProperty("level", level)
        self.style().unpolish(self)
        self.style().polish(self)

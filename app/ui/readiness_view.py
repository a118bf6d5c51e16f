"""The readiness check as a list with ticks: labelled images, training device, disk, clock, central."""

from __future__ import annotations

import html

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QGridLayout, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from app.ui.federation_model import FederationModel

MARKS = {"ok": ("✔", "ok"), "warn": ("!", "warn"), "fail": ("✖", "fail")}


class ReadinessView(QWidget):
    """Shows ``model.checks``; "Check now" runs them in a worker (the device check asks TensorFlow, ~10 s)."""

    def __init__(self, model: FederationModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.model = model
        self.summary = QLabel()
        self.summary.setWordWrap(True)
        self.button = QPushButton("Check now")
        self.button.setToolTip("Labelled images, the device that will train, free disk, the clock and the central")
        self.button.clicked.connect(model.run_checks)
        top = QHBoxLayout()
        top.addWidget(self.summary, 1)
        top.addWidget(self.button, 0, Qt.AlignmentFlag.AlignTop)
        self.grid = QGridLayout()
        self.grid.setHorizontalSpacing(10)
        self.grid.setVerticalSpacing(6)
        self.grid.setColumnStretch(2, 1)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addLayout(top)
        lay.addLayout(self.grid)
        self.rows: list[tuple[str, str, str]] = []  # (level, name, detail) as shown
        model.checksChanged.connect(self.refresh)
        self.refresh()

    def refresh(self) -> None:
        m = self.model
        self.button.setEnabled(not m.checking)
        self.button.setText("Checking…" if m.checking else "Check now")
        while self.grid.count():
            item = self.grid.takeAt(0)
            if item.widget() is not None:
                item.widget().deleteLater()
        checks = m.checks or []
        self.rows = [(c.level, c.name, c.detail) for c in checks]
        if m.checking and not checks:
            self.summary.setText("Checking… (asking TensorFlow which devices it sees takes about ten seconds)")
        elif not checks:
            self.summary.setText("Before taking part, check that this workstation can: its labelled images, the "
                                 "device that will train, free disk, the clock and the central.")  # fmt: skip
        else:
            failed = [c for c in checks if c.level == "fail"]
            warned = [c for c in checks if c.level == "warn"]
            if failed:
                text = f"Not ready: {len(failed)} problem(s) to fix first."
            elif warned:
                text = "Ready, with remarks."
            else:
                text = "Ready to take part."
            self.summary.setText(f"<b>{html.escape(text)}</b>")
        for r, c in enumerate(checks):
            mark, level = MARKS.get(c.level, ("?", "warn"))
            icon = QLabel(mark)
            icon.setObjectName("checkMark")
            icon.setProperty("level", level)
            icon.setAlignment(Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop)
            icon.setFixedWidth(22)
            name = QLabel(c.name)
            name.setObjectName("checkName")
            detail = QLabel(c.detail)
            detail.setWordWrap(True)
            detail.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            self.grid.addWidget(icon, r, 0, Qt.AlignmentFlag.AlignTop)
            self.grid.addWidget(name, r, 1, Qt.AlignmentFlag.AlignTop)
            self.grid.addWidget(detail, r, 2)

"""Bars across the window: the intended-use statement, guardrail warnings and user messages."""

from __future__ import annotations

import html

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QToolButton, QVBoxLayout, QWidget

from app.core.report import INTENDED_USE
from app.ui.notify import ERROR, INFO, WARNING, Message

__all__ = ["INTENDED_USE", "GuardrailBanner", "IntendedUseBar", "MessageBar"]



class IntendedUseBar(QFrame):
    """The permanent intended-use line (always visible, whatever is on screen)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("intendedUseBar")
        self.label = QLabel(f"<b>Intended use:</b> {html.escape(INTENDED_USE)}")
        self.label.setObjectName("intendedUseText")
        self.label.setWordWrap(True)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(12, 5, 12, 5)
        lay.addWidget(self.label, 1)

    def text(self) -> str:
        return INTENDED_USE


class GuardrailBanner(QFrame):
    """Yellow banner listing why the result may be meaningless, with "Show result anyway"."""

    insisted = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("guardrailBanner")
        self.title = QLabel()
        self.title.setObjectName("guardrailTitle")
        self.title.setWordWrap(True)
        self.details = QLabel()
        self.details.setWordWrap(True)
        self.details.setTextFormat(Qt.TextFormat.RichText)
        self.button = QPushButton("Show result anyway")
        self.button.setObjectName("insistButton")
        self.button.clicked.connect(self.insisted)
        text = QVBoxLayout()
        text.setSpacing(2)
        text.addWidget(self.title)
        text.addWidget(self.details)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(12, 8, 12, 8)
        lay.addLayout(text, 1)
        lay.addWidget(self.button, 0, Qt.AlignmentFlag.AlignVCenter)
        self.hide()

    def show_warnings(self, warnings: list, *, held_back: bool) -> None:
        """Show ``warnings`` (objects with ``message``); ``held_back``: the result is not shown yet."""
        if not warnings:
            self.hide()
            return
        if held_back:
            self.title.setText("Caution: this image may not suit the model — the result may be meaningless.")
        else:
            self.title.setText("Caution: result shown despite these warnings — it may be meaningless.")
        items = "".join(f"<li>{html.escape(str(w.message))}</li>" for w in warnings)
        self.details.setText(f"<ul style='margin:0 0 0 -20px'>{items}</ul>")
        self.button.setVisible(held_back)
        self.show()

    def messages(self) -> list[str]:
        return [self.title.text(), self.details.text()]


class MessageBar(QFrame):
    """Shows the latest user message (info, warning or error) until closed or replaced."""

    _ICONS = {INFO: "ℹ", WARNING: "⚠", ERROR: "✖"}

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("messageBar")
        self.icon = QLabel()
        self.icon.setObjectName("messageIcon")
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        close = QToolButton()
        close.setText("✕")
        close.setObjectName("messageClose")
        close.setToolTip("Dismiss")
        close.setAutoRaise(True)
        close.clicked.connect(self.hide)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(12, 6, 6, 6)
        lay.addWidget(self.icon)
        lay.addWidget(self.label, 1)
        lay.addWidget(close)
        self.message: Message | None = None
        self.hide()

    def show_message(self, msg: Message) -> None:
        self.message = msg
        self.setProperty("level", msg.level)
        self.icon.setText(self._ICONS.get(msg.level, ""))
        self.label.setText(msg.text)
        self.label.setToolTip(msg.detail)
        self.style().unpolish(self)
        self.style().polish(self)
        self.show()

    def text(self) -> str:
        return self.label.text() if self.isVisible() else ""

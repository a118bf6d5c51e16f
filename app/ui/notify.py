"""One place every message for the user goes through: a signal the window shows as a banner and status."""

from __future__ import annotations

import errno
from dataclasses import dataclass

from PySide6.QtCore import QObject, Signal

INFO, WARNING, ERROR = "info", "warning", "error"


@dataclass(frozen=True)
class Message:
    level: str  # "info" | "warning" | "error"
    text: str  # one sentence: what happened and what to do
    detail: str = ""


class Notifier(QObject):
    """Collects user-facing messages; ``posted`` is connected to the message bar and the status bar."""

    posted = Signal(object)  # Message

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.messages: list[Message] = []

    def notify(self, level: str, text: str, detail: str = "") -> Message:
        msg = Message(level, text, detail)
        self.messages.append(msg)
        del self.messages[:-200]
        self.posted.emit(msg)
        return msg

    def info(self, text: str, detail: str = "") -> Message:
        return self.notify(INFO, text, detail)

    def warning(self, text: str, detail: str = "") -> Message:
        return self.notify(WARNING, text, detail)

    def error(self, text: str, detail: str = "") -> Message:
        return self.notify(ERROR, text, detail)

    def task_failed(self, what: str, exc: BaseException) -> Message:
        """Turn a worker exception into a clear message (the single error route of the app)."""
        return self.error(describe_error(what, exc), detail=f"{type(exc).__name__}: {exc}")

    @property
    def last(self) -> Message | None:
        return self.messages[-1] if self.messages else None


def describe_error(what: str, exc: BaseException) -> str:
    """A clinician-readable sentence for ``exc`` raised while doing ``what``."""
    name = type(exc).__name__
    text = str(exc).strip() or name
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return f"{what} failed: the disk is full. Free some space and try again; nothing was half-written."
    if isinstance(exc, PermissionError):
        return f"{what} failed: permission denied ({exc.filename or text}). Choose a folder you can write to."
    if isinstance(exc, FileNotFoundError):
        return f"{what} failed: the file {exc.filename or text} no longer exists."
    if name == "ImageReadError":
        return f"{what} failed: {text}"
    if name == "ModelFileError":
        return f"{what} failed: {text} Choose another model in Settings › Model or re-import it."
    if isinstance(exc, MemoryError):
        return f"{what} failed: not enough memory. Close other programs and try again."
    return f"{what} failed: {text}"

"""The findings the app shows: the model's classes in output order and their names (their home is fl.classes)."""

from __future__ import annotations

from fl.classes import CLASS_LABELS, CLASSES

__all__ = ["CLASSES", "CLASS_LABELS"]

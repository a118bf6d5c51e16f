"""Helpers shared by the `fedxray` sub-commands."""

from __future__ import annotations

import sys
from pathlib import Path


def active_model_dir() -> Path:
    """The model the desktop app would use: the one chosen in its settings, else the bundled default."""
    try:
        from app.core.models import active_model_dir as from_settings
    except ImportError:
        import resources

        return resources.default_model_dir()
    return from_settings()


def fail(message: str, code: int = 2) -> int:
    print(f"fedxray: {message}", file=sys.stderr)
    return code

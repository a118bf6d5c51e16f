"""Bundled resources (default model, sample X-rays, icons), found in a source tree, a wheel or a frozen app."""

from __future__ import annotations

import sys
from pathlib import Path


def root() -> Path:
    """The folder that holds the bundled resources."""
    frozen = getattr(sys, "_MEIPASS", None)
    if frozen:
        return Path(frozen) / "resources"
    return Path(__file__).resolve().parent


def path(*parts: str) -> Path:
    """Path of a bundled resource; raises FileNotFoundError listing what exists when it is missing."""
    p = root().joinpath(*parts)
    if not p.exists():
        parent = p.parent
        known = sorted(x.name for x in parent.iterdir()) if parent.is_dir() else []
        raise FileNotFoundError(f"bundled resource {'/'.join(parts)!r} not found; {parent} holds: {known}")
    return p


def default_model_dir() -> Path:
    """The bundled demonstration model."""
    return path("models", "default")

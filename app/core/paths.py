"""Per-user folders of the workstation (platformdirs; XDG on Linux) and atomic file writes."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

import platformdirs

from app.core.errors import SaveError, save_error

APP_NAME = "fedxray"


def _ensure(p: Path, what: str) -> Path:
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise save_error(exc, what, p) from exc
    return p


def config_dir() -> Path:
    """Folder for preferences (created if missing); ~/.config/fedxray on Linux."""
    return _ensure(Path(platformdirs.user_config_dir(APP_NAME, appauthor=False)), "the settings folder")


def default_data_dir() -> Path:
    """The platform's data folder, ignoring any override from the preferences (not created)."""
    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


def data_dir() -> Path:
    """Folder for history, labelled set and imported models (created); honours Preferences.data_dir."""
    from app.core.settings import peek_data_dir  # settings imports this module

    override = peek_data_dir()
    p = Path(override).expanduser() if override else default_data_dir()
    return _ensure(p, "the data folder")


def cache_dir() -> Path:
    """Folder for disposable files (created); ~/.cache/fedxray on Linux."""
    return _ensure(Path(platformdirs.user_cache_dir(APP_NAME, appauthor=False)), "the cache folder")


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, what: str = "the file") -> Path:
    """Write `data` to `path` through a temporary file + fsync + os.replace: all or nothing.

    Raises DiskFullError / SaveError (clinician-readable) instead of OSError; the temporary file is removed.
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        raise save_error(exc, what, path) from exc
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    return path


def atomic_write_text(path: str | os.PathLike, text: str, *, what: str = "the file") -> Path:
    """atomic_write_bytes for UTF-8 text."""
    return atomic_write_bytes(path, text.encode("utf-8"), what=what)


__all__ = ["APP_NAME", "SaveError", "atomic_write_bytes", "atomic_write_text", "cache_dir", "config_dir",
           "data_dir", "default_data_dir"]

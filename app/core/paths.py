"""Per-user folders of the workstation (platformdirs; XDG on Linux) and atomic file writes."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import tempfile
import time
from pathlib import Path

import platformdirs

from app.core.errors import SaveError, save_error

APP_NAME = "fedxray"
# Every temporary file FedXray's writers make is ".<final name>.<writer's pid>.<8 random characters>.tmp" beside
# its final file, so one left by a writer that was killed can be told from one still being written.
TEMP_SUFFIX = ".tmp"
_TEMP_NAME = re.compile(r"^\.(?:.*\.)?(?P<pid>\d+)\.[a-z0-9_]{8}\.tmp$")
_LEGACY_TEMP_NAME = re.compile(r"^\..*[a-z0-9_]{8}\.tmp$")       # before the pid was in the name
ORPHAN_AGE_S = 3600.0                 # a temporary file this old is an orphan even when its pid runs again


def ensure_folder(p: Path, what: str) -> Path:
    """Create `p` (and its parents) if missing; SaveError / DiskFullError say which folder and what to do."""
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise folder_error(exc, what, p) from exc
    return p


def folder_error(exc: OSError, what: str, folder: Path) -> SaveError:
    """A folder FedXray needs cannot be created: which folder, why, and what the user can do."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        why = "the disk is full"
        todo = "Free some disk space on that drive"
    else:
        why = exc.strerror or str(exc)
        todo = "Make that folder writable for your account (or ask your IT support)"
    lost = "your settings are not saved"
    if what == "the data folder":
        todo += ", or choose another data folder in Settings › Data folder"
        lost = "results are not saved in the history"
    elif what == "the cache folder":
        lost = "nothing is cached"
    return save_error(exc, what, folder, message=f"FedXray cannot create {what} {folder} ({why}). {todo}. "
                                                 f"Images can still be classified; {lost}.")


def config_dir(*, create: bool = True) -> Path:
    """Folder for preferences (created if missing, unless `create` is False); ~/.config/fedxray on Linux."""
    folder = Path(platformdirs.user_config_dir(APP_NAME, appauthor=False))
    return ensure_folder(folder, "the settings folder") if create else folder


def default_data_dir() -> Path:
    """The platform's data folder, ignoring any override from the preferences (not created)."""
    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


def data_dir(*, create: bool = True) -> Path:
    """Folder for history, labelled set and imported models (created unless `create` is False); honours
    Preferences.data_dir."""
    from app.core.settings import peek_data_dir  # settings imports this module

    override = peek_data_dir()
    p = Path(override).expanduser() if override else default_data_dir()
    return ensure_folder(p, "the data folder") if create else p


def cache_dir() -> Path:
    """Folder for disposable files (created); ~/.cache/fedxray on Linux."""
    return ensure_folder(Path(platformdirs.user_cache_dir(APP_NAME, appauthor=False)), "the cache folder")


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, what: str = "the file") -> Path:
    """Write `data` to `path` through a temporary file + fsync + os.replace: all or nothing.

    Raises DiskFullError / SaveError (clinician-readable) instead of OSError; the temporary file is removed.
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = temp_file(path)
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


def temp_file(path: Path) -> tuple[int, str]:
    """A new temporary file beside `path`, named as remove_orphan_temp_files recognises: (fd, name)."""
    return tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=TEMP_SUFFIX, dir=path.parent)


def _writer_gone(name: str, age_s: float) -> bool:
    match = _TEMP_NAME.match(name)
    if match is None:
        return _LEGACY_TEMP_NAME.match(name) is not None and age_s > ORPHAN_AGE_S
    pid = int(match["pid"])
    if age_s > ORPHAN_AGE_S:
        return True
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:                                       # another user's process: still running
        return False
    return False


def remove_orphan_temp_files(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files below `folder` whose writer was killed before it finished (see temp_file);
    a file a running FedXray is still writing is left alone. Returns what was removed; never raises."""
    removed: list[Path] = []
    now = time.time()
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        try:
            if entry.is_dir(follow_symlinks=False):
                removed += remove_orphan_temp_files(entry.path)
            elif entry.name.endswith(TEMP_SUFFIX) and entry.is_file(follow_symlinks=False) \
                    and _writer_gone(entry.name, now - entry.stat(follow_symlinks=False).st_mtime):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:
            continue
    return removed


def atomic_write_text(path: str | os.PathLike, text: str, *, what: str = "the file") -> Path:
    """atomic_write_bytes for UTF-8 text."""
    return atomic_write_bytes(path, text.encode("utf-8"), what=what)


__all__ = ["APP_NAME", "SaveError", "atomic_write_bytes", "atomic_write_text", "cache_dir", "config_dir",
           "data_dir", "default_data_dir", "ensure_folder", "folder_error", "remove_orphan_temp_files", "temp_file"]

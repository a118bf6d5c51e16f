"""Errors the workstation services raise; str(e) is written for the clinician (what happened, what to do)."""

from __future__ import annotations

import errno


class AppError(Exception):
    """Base of every error app.core raises on purpose; its message can be shown to the user as is."""


class SaveError(AppError):
    """A file could not be written (permissions, missing folder, ...); nothing half-written was left behind."""


class DiskFullError(SaveError):
    """The disk filled up while saving; nothing half-written was left behind."""


def save_error(exc: OSError, what: str, path: object, *, message: str | None = None) -> SaveError:
    """Translate an OSError met while writing `what` to `path` into a clinician-readable SaveError
    (DiskFullError for a full disk); `message` replaces the standard text."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return DiskFullError(message or
            f"The disk is full: {what} could not be saved to {path}. "
            "Nothing was changed. Free some disk space (or choose another drive) and try again."
        )
    if message is not None:
        return SaveError(message)
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return SaveError(
            f"FedXray is not allowed to write {what} to {path} ({exc.strerror}). "
            "Choose a folder you can write to, or ask your IT support."
        )
    return SaveError(f"{what[:1].upper()}{what[1:]} could not be saved to {path}: {exc.strerror or exc}. Nothing was changed.")

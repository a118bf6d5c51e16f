"""The one signal that federated training is using this workstation's CPU, so that classification leaves it cores.

The federation agent holds a marker file in the data folder while a round trains on this computer (`hold()` as a
context manager, or `set_training(True/False)`); the inference service reads it (`training_running()`) before
each classification and runs LiteRT on half the cores (at least one) while it is there. The marker holds the
holder's process id, so a marker left by a process that died is ignored.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

MARKER = "federation-training.pid"


def marker_path(folder: str | os.PathLike | None = None) -> Path:
    """The marker file: in `folder`, else in the workstation's data folder."""
    if folder is None:
        from app.core.paths import data_dir

        folder = data_dir()
    return Path(folder) / MARKER


def training_running(path: str | os.PathLike) -> bool:
    """True while a live process holds the marker at `path` (a stat and a small read: cheap per image)."""
    try:
        pid = int(Path(path).read_text(encoding="ascii").strip())
    except (OSError, ValueError):
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's process
        return True
    except OSError:
        return False
    return True


def set_training(active: bool, folder: str | os.PathLike | None = None) -> None:
    """Create (with this process's id) or remove the marker."""
    path = marker_path(folder)
    if active:
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(str(os.getpid()), encoding="ascii")
        os.replace(tmp, path)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


@contextlib.contextmanager
def hold(folder: str | os.PathLike | None = None) -> Iterator[Path]:
    """Hold the marker for the duration of a `with` block (a training round)."""
    set_training(True, folder)
    try:
        yield marker_path(folder)
    finally:
        set_training(False, folder)

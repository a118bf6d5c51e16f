"""Exactly one federation agent per user: an OS file lock in the data folder, and who holds it.

The agent holds `federation-agent.lock` (fcntl.flock on POSIX, msvcrt.locking on Windows: untested) for its whole
life; the OS releases it when the process ends, even by SIGKILL. The file also names the holder (pid and process
start time, so a reused pid is not mistaken for the agent). Readers never take the lock: they check the holder.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import psutil

LOCK_FILE = "federation-agent.lock"


def lock_path(folder: Path) -> Path:
    return Path(folder) / LOCK_FILE


class AgentLock:
    """The held lock; `release()` (or process exit) frees it."""

    def __init__(self, fd: int, path: Path) -> None:
        self.fd = fd
        self.path = path

    @classmethod
    def acquire(cls, folder: Path) -> AgentLock | None:
        """Take the lock without waiting; None when another live process holds it."""
        path = lock_path(folder)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            _lock(fd)
        except OSError:
            os.close(fd)
            return None
        me = psutil.Process()
        record = json.dumps({"pid": me.pid, "create_time": me.create_time()}).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, record, 0) if hasattr(os, "pwrite") else (os.lseek(fd, 0, 0), os.write(fd, record))
        return cls(fd, path)

    def release(self) -> None:
        if self.fd < 0:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(self.fd, 0)
        os.close(self.fd)  # closing the descriptor releases the lock
        self.fd = -1


def _lock(fd: int) -> None:
    if os.name == "nt":  # untested: Windows byte-range lock on the first byte
        import msvcrt

        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
    else:
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def running_agent(folder: Path) -> int | None:
    """The pid of the live agent holding the lock in `folder`, else None (a stale record is ignored)."""
    try:
        record = json.loads(lock_path(folder).read_text(encoding="utf-8") or "{}")
        pid, created = int(record["pid"]), float(record["create_time"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    try:
        proc = psutil.Process(pid)
        if abs(proc.create_time() - created) > 0.01 or proc.status() == psutil.STATUS_ZOMBIE:
            return None
    except psutil.Error:
        return None
    return pid

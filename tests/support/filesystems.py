"""Folders that cannot be written, made for real: a read-only or a full file system.

As root (CI, this machine) a small tmpfs is mounted over the folder: `ro` for a read-only home, a few KiB filled
to the last byte for a full disk (the kernel then answers ENOSPC, as a full drive does). Without root, a read-only
folder is made with chmod and a full disk cannot be made, so that test is skipped.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


def _mount(folder: Path, options: str) -> bool:
    if os.geteuid() != 0:
        return False
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True)
    return r.returncode == 0


def _umount(folder: Path) -> None:
    subprocess.run(["umount", "-l", str(folder)], capture_output=True, check=False)


@contextlib.contextmanager
def read_only_folder(folder: Path) -> Iterator[str]:
    """`folder` (created, empty) cannot be written while the block runs; yields how that was made."""
    folder.mkdir(parents=True, exist_ok=True)
    if _mount(folder, "ro,size=64k,mode=0755"):
        try:
            yield "a read-only tmpfs"
        finally:
            _umount(folder)
        return
    if os.geteuid() == 0:
        pytest.skip("running as root without mount: no way to make a folder root cannot write")
    folder.chmod(0o555)
    try:
        yield "chmod 555"
    finally:
        folder.chmod(0o755)


def fill(folder: Path) -> None:
    """Fill the file system holding `folder` to the last byte (a file named "filler")."""
    fd = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        for chunk in (b"\0" * 4096, b"\0"):                     # pages, then the last few bytes
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, chunk)
    finally:
        os.close(fd)


@contextlib.contextmanager
def small_disk(folder: Path, size_kib: int) -> Iterator[str]:
    """`folder` is a file system of `size_kib` KiB while the block runs (fill() it to make the disk full)."""
    folder.mkdir(parents=True, exist_ok=True)
    if not _mount(folder, f"size={size_kib}k,mode=0777"):
        pytest.skip("a full disk needs root to mount a small tmpfs")
    try:
        yield f"a {size_kib} KiB tmpfs"
    finally:
        _umount(folder)


@contextlib.contextmanager
def full_folder(folder: Path, size_kib: int = 256) -> Iterator[str]:
    """`folder` is a file system of `size_kib` KiB filled to the last byte while the block runs."""
    with small_disk(folder, size_kib) as how:
        fill(folder)
        yield how + " filled to the last byte"

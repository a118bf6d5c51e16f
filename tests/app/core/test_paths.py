"""Per-user folders that cannot be written, and temporary files a killed writer left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app.core import paths
from app.core.errors import DiskFullError, SaveError
from tests.conftest import REPO
from tests.support.filesystems import full_folder, read_only_folder

# A real FedXray writer in its own process, stopped inside its write (after the data, before fsync and the rename)
# and told to say so; the test then kills it with SIGKILL, as a crash or a power cut would.
WRITER = """
import os, sys, time
from app.core import paths
def stall(fd):
    print("writing", flush=True)
    time.sleep(600)
os.fsync = stall
paths.atomic_write_bytes(sys.argv[1], b"x" * 100_000, what="the copy of the image")
"""


def _start_writer(target: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(target)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    return proc


def _temps(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob(".*.tmp"))


def test_a_killed_writers_temporary_file_is_removed_at_start_and_a_running_ones_kept(tmp_path):
    from app.core.history import IMAGES_DIR, HistoryStore

    images = tmp_path / IMAGES_DIR / "ab"
    killed = _start_writer(images / ("ab" + "0" * 62 + ".png"))
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    running = _start_writer(images / ("ab" + "1" * 62 + ".png"))
    try:
        orphan, live = (next(p for p in _temps(images) if f".{proc.pid}." in p.name) for proc in (killed, running))
        assert orphan.stat().st_size == live.stat().st_size == 100_000          # both wrote their data
        HistoryStore(tmp_path / "history.sqlite").close()                       # the history opens: start
        assert not orphan.exists(), "the killed writer's temporary file is still there"
        assert live.exists(), "the temporary file of a writer still running was removed"
        assert not list(images.glob("*.png"))                                    # nothing half-written shown
    finally:
        running.kill()
        running.wait()
    assert paths.remove_orphan_temp_files(tmp_path) == [live]


def test_an_old_temporary_file_without_a_pid_is_removed_and_other_files_are_kept(tmp_path):
    legacy = tmp_path / ".manifest.csv.abcd1234.tmp"       # as FedXray named them before the pid was added
    fresh = tmp_path / ".manifest.csv.efgh5678.tmp"
    mine = tmp_path / "notes.tmp"                           # the user's own file: not a FedXray temporary file
    for p in (legacy, fresh, mine):
        p.write_bytes(b"half")
    hour_ago = time.time() - paths.ORPHAN_AGE_S - 60
    os.utime(legacy, (hour_ago, hour_ago))
    os.utime(mine, (hour_ago, hour_ago))
    assert paths.remove_orphan_temp_files(tmp_path) == [legacy]
    assert fresh.exists() and mine.exists()


def test_the_labelled_set_removes_a_killed_manifest_writers_file(tmp_path):
    from app.core.labelled import LabelledSet

    root = tmp_path / "labelled"
    killed = _start_writer(root / "manifest.csv")
    killed.kill()
    killed.wait()
    assert len(_temps(root)) == 1
    assert LabelledSet(root).entries() == []
    assert _temps(root) == []


def test_preferences_load_without_writing_and_a_read_only_settings_folder_is_named(tmp_path, monkeypatch):
    """A read-only home: the defaults load (nothing to write), saving says which folder and what to do."""
    from app.core.settings import Preferences

    home = tmp_path / "ro-home"
    with read_only_folder(home) as how:
        monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
        prefs = Preferences.load()
        assert prefs.problem is None and prefs.model_id == "default"
        with pytest.raises(SaveError) as info:
            prefs.save()
        message = str(info.value)
        assert f"cannot create the settings folder {home / '.config' / 'fedxray'}" in message, (how, message)
        assert "Make that folder writable" in message and "your settings are not saved" in message
        with pytest.raises(SaveError) as info:
            paths.config_dir()
        assert f"cannot create the settings folder {home / '.config' / 'fedxray'}" in str(info.value)
        assert "Make that folder writable" in str(info.value)


def test_a_data_folder_on_a_full_disk_is_named_with_what_to_do(tmp_path, monkeypatch):
    from app.core.history import HistoryError, HistoryStore

    home = tmp_path / "full"
    with full_folder(home):
        monkeypatch.setenv("XDG_DATA_HOME", str(home))
        folder = paths.data_dir()                                  # a folder takes no data blocks on tmpfs
        with pytest.raises(DiskFullError) as info:
            paths.atomic_write_bytes(folder / "images" / "x.png", b"y" * 1_000_000, what="the copy of the image")
        message = str(info.value)
        assert f"The disk is full: the copy of the image could not be saved to {folder / 'images' / 'x.png'}" \
            in message and "Free some disk space" in message
        with pytest.raises(HistoryError) as info:
            HistoryStore()
        message = str(info.value)
        assert str(folder / "history.sqlite") in message and "the disk is full" in message.lower(), message
        assert "Settings › Data folder" in message
        leftovers = sorted(str(p.relative_to(home)) for p in home.rglob("*") if p.is_file())
        assert leftovers in (["filler"], ["fedxray/history.sqlite", "filler"]), leftovers   # nothing half-written

"""Preferences and folders: defaults, round trip, corruption fallback, atomic save, data-folder override."""

from __future__ import annotations

import errno
import json

import pytest

from app.core import paths
from app.core.errors import DiskFullError, SaveError
from app.core.settings import Preferences


def test_folders_follow_xdg(private_home):
    assert paths.config_dir() == private_home / "xdg_config_home" / "fedxray"
    assert paths.data_dir() == private_home / "xdg_data_home" / "fedxray"
    assert paths.cache_dir() == private_home / "xdg_cache_home" / "fedxray"
    assert all(p.is_dir() for p in (paths.config_dir(), paths.data_dir(), paths.cache_dir()))


def test_missing_file_gives_defaults():
    p = Preferences.load()
    assert p == Preferences()
    assert (p.model_id, p.heatmap_visible, p.heatmap_opacity, p.data_dir, p.recent_files, p.max_recent,
            p.batch_size) == ("default", True, 0.45, None, [], 10, 8)
    assert p.problem is None


def test_round_trip_and_file_content(private_home):
    p = Preferences(model_id="site-model-2", heatmap_visible=False, heatmap_opacity=0.7, batch_size=4)
    p.add_recent("/tmp/a.png")
    p.add_recent("/tmp/b.dcm")
    p.add_recent("/tmp/a.png")
    p.save()
    raw = json.loads((private_home / "xdg_config_home" / "fedxray" / "preferences.json").read_text())
    assert raw["model_id"] == "site-model-2" and raw["heatmap_opacity"] == 0.7 and "problem" not in raw
    assert raw["recent_files"] == ["/tmp/a.png", "/tmp/b.dcm"]
    q = Preferences.load()
    assert q == p and q.problem is None
    assert not [f for f in paths.config_dir().iterdir() if f.name != "preferences.json"]  # no temp files


def test_recent_files_capped():
    p = Preferences(max_recent=3)
    for i in range(5):
        p.add_recent(f"/data/{i}.png")
    assert p.recent_files == ["/data/4.png", "/data/3.png", "/data/2.png"]


def test_corrupt_file_falls_back_and_is_kept_aside():
    f = Preferences.path()
    f.write_text('{"model_id": "x", "heatmap_opa', encoding="utf-8")  # cut short mid-write by some other tool
    p = Preferences.load()
    assert p == Preferences()
    assert "damaged" in p.problem and "preferences.json.corrupt" in p.problem
    assert (f.parent / "preferences.json.corrupt").read_text() == '{"model_id": "x", "heatmap_opa'
    assert not f.exists()
    # The next start is clean (the problem is reported once).
    assert Preferences.load().problem is None


def test_binary_garbage_and_wrong_top_level_type():
    Preferences.path().write_bytes(b"\xff\xfe\x00garbage")
    assert Preferences.load().problem is not None
    Preferences.path().write_text("[1, 2, 3]")
    p = Preferences.load()
    assert p == Preferences() and "not a JSON object" in p.problem


def test_invalid_values_reset_individually():
    Preferences.path().write_text(json.dumps({
        "model_id": "m1", "heatmap_opacity": 3.5, "batch_size": "eight", "heatmap_visible": 1,
        "recent_files": ["/a", 7], "max_recent": 5, "unknown_key": True}))
    p = Preferences.load()
    assert p.model_id == "m1" and p.max_recent == 5
    assert p.heatmap_opacity == 0.45 and p.batch_size == 8 and p.heatmap_visible is True and p.recent_files == []
    for name in ("heatmap_opacity", "batch_size", "heatmap_visible", "recent_files"):
        assert name in p.problem


def test_data_dir_override(tmp_path):
    target = tmp_path / "elsewhere" / "fedxray-data"
    Preferences(data_dir=str(target)).save()
    assert paths.data_dir() == target and target.is_dir()
    Preferences.path().write_text("{broken")
    assert paths.data_dir() == paths.default_data_dir()  # unreadable preferences: the platform folder
    assert Preferences.path().exists()                   # and data_dir() did not move the file aside


def test_save_on_full_disk_keeps_old_file(monkeypatch):
    # A full disk cannot be produced without root + mount; the ENOSPC the kernel gives is injected at fsync.
    Preferences(model_id="before").save()

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as m, pytest.raises(DiskFullError, match="disk is full"):
        m.setattr(paths.os, "fsync", full)
        Preferences(model_id="after").save()
    assert Preferences.load().model_id == "before"
    assert [f.name for f in paths.config_dir().iterdir()] == ["preferences.json"]


def test_save_to_readonly_folder_is_a_clear_error(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    (ro / "sub").write_text("a file where a folder is needed")
    with pytest.raises(SaveError, match="preferences"):
        Preferences().save(ro / "sub" / "preferences.json")

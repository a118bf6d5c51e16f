"""Training windows and limits (app.core.federation_settings): parsing, membership, next change, validation,
atomic storage. Expected values are worked out by hand from the calendar (2026-11-30 is a Monday)."""

from __future__ import annotations

import datetime as dt
import json
import os

import pytest

from app.core import federation_settings as fs
from app.core.federation_settings import FederationSettings, FederationSettingsError, Window, parse_windows

MON = dt.datetime(2026, 11, 30)  # a Monday


def at(day: int, hh: int, mm: int = 0) -> dt.datetime:
    """Monday 30 Nov 2026 + `day` days, at hh:mm."""
    return MON + dt.timedelta(days=day, hours=hh, minutes=mm)


def test_weekday_evenings_and_weekends():
    s = FederationSettings(windows=parse_windows("weekdays 19:00-07:00; weekends"))
    assert not s.in_window(at(0, 12))  # Monday noon
    assert s.in_window(at(0, 19)) and s.in_window(at(0, 23, 59))  # Monday evening
    assert s.in_window(at(1, 6, 59)) and not s.in_window(at(1, 7))  # Tuesday morning: Monday's window ends 07:00
    assert not s.in_window(at(0, 6))  # Monday 06:00: Sunday is no weekday, but weekends cover all of Sunday only
    assert s.in_window(at(4, 20)) and s.in_window(at(5, 6)) and s.in_window(at(5, 13))  # Fri night into Saturday
    assert s.in_window(at(6, 23, 59))  # Sunday
    assert s.next_change(at(0, 12)) == at(0, 19)
    assert s.next_change(at(0, 19, 30)) == at(1, 7)
    assert s.next_change(at(5, 10)) == at(7, 0)  # weekend ends Monday 00:00, the weekday window opens at 19:00


def test_default_is_always_and_a_window_on_named_days():
    assert FederationSettings().in_window(at(2, 3)) and FederationSettings().next_change(at(0, 0)) is None
    s = FederationSettings(windows=parse_windows("tue,thu 12:00-13:30"))
    assert [s.in_window(at(d, 12, 45)) for d in range(7)] == [False, True, False, True, False, False, False]
    assert not s.in_window(at(1, 13, 30))
    assert parse_windows("always") == () and parse_windows("") == ()
    assert parse_windows("fri-mon")[0].days == frozenset({4, 5, 6, 0})  # a range across the week's end
    assert fs.format_windows(parse_windows("weekdays 19:00-07:00; sat,sun")) == "weekdays 19:00-07:00; weekends"


@pytest.mark.parametrize("text,words", [("funday", "not a day"), ("mon 25:00-07:00", "not a time"),
                                        ("mon 19:00", "not a time span"), ("mon 19:00-07:00-08:00", "time span")])  # fmt: skip
def test_bad_windows_say_what_is_wrong(text, words):
    with pytest.raises(FederationSettingsError, match=words):
        parse_windows(text)


def test_limits_are_validated():
    cores = os.cpu_count() or 1
    with pytest.raises(FederationSettingsError, match=f"1 to {cores}"):
        FederationSettings(cpu_threads=cores + 1)
    with pytest.raises(FederationSettingsError, match="at least 256"):
        FederationSettings(gpu_memory_mb=100)
    with pytest.raises(FederationSettingsError, match="0 to 720"):
        FederationSettings(overrun_minutes=-1)
    assert FederationSettings().threads == max(1, cores // 2)
    assert FederationSettings(cpu_threads=1).threads == 1


def test_saved_atomically_and_read_back(tmp_path):
    path = tmp_path / "federation.json"
    s = FederationSettings(opted_in=True, windows=parse_windows("weekdays 19:00-07:00"), cpu_threads=1,
                           gpu_memory_mb=2048, data_dir="/data/site", overrun_minutes=10)  # fmt: skip
    fs.save(s, path)
    assert fs.load(path) == s
    raw = json.loads(path.read_text())
    assert raw["windows"] == [{"days": ["mon", "tue", "wed", "thu", "fri"], "start": "19:00", "end": "07:00"}]
    assert [p.name for p in tmp_path.glob("*federation*")] == ["federation.json"]  # no temporary file left


def test_a_damaged_file_is_an_error_and_is_kept(tmp_path):
    path = tmp_path / "federation.json"
    path.write_text("{not json")
    with pytest.raises(FederationSettingsError, match="cannot be read"):
        fs.load(path)
    assert path.read_text() == "{not json"  # nothing lost: it may say opted in
    path.write_text(json.dumps({"opted_in": True, "cpu_threads": 0}))
    with pytest.raises(FederationSettingsError, match="invalid value"):
        fs.load(path)
    assert fs.load(tmp_path / "missing.json") == FederationSettings()


def test_window_round_trip_through_json():
    w = Window.parse("sat 22:00-02:00")
    assert w.overnight and Window.from_json(w.to_json()) == w
    assert w.contains(dt.datetime(2026, 12, 6, 1, 59)) and not w.contains(dt.datetime(2026, 12, 6, 2, 0))  # Sunday

"""Counts of predicted classes per local day and ISO week, checked against hand counts."""

from __future__ import annotations

from datetime import UTC, date, timedelta, timezone

from app.core.stats import count_by_period, period_start
from fl.classes import CLASSES

UTC = UTC
ROWS = [  # (created UTC, predicted)
    ("2026-03-02T08:00:00.000000+00:00", "Covid"),      # Monday
    ("2026-03-02T23:30:00.000000+00:00", "Normal"),     # Monday late evening UTC = Tuesday 01:30 at UTC+2
    ("2026-03-04T12:00:00.000000+00:00", "Normal"),     # Wednesday
    ("2026-03-08T22:00:00.000000+00:00", "Pneumonia-Viral"),  # Sunday 22:00 UTC = Monday 00:00 at UTC+2
    ("2026-03-09T09:00:00.000000+00:00", "Covid"),      # next Monday
]


def zero(**kw):
    d = dict.fromkeys(CLASSES, 0)
    d.update({k.replace("_", "-"): v for k, v in kw.items()})
    return d


def test_per_day_utc_with_gaps_filled():
    got = count_by_period(ROWS, "day", tz=UTC)
    expected = [(date(2026, 3, 2), zero(Covid=1, Normal=1)), (date(2026, 3, 3), zero()),
                (date(2026, 3, 4), zero(Normal=1))] + [(date(2026, 3, d), zero()) for d in (5, 6, 7)] + [
                (date(2026, 3, 8), zero(Pneumonia_Viral=1)), (date(2026, 3, 9), zero(Covid=1))]
    assert got == expected


def test_per_day_in_another_time_zone_moves_day_boundaries():
    plus2 = timezone(timedelta(hours=2))
    got = dict(count_by_period(ROWS, "day", tz=plus2, fill=False))
    assert got == {date(2026, 3, 2): zero(Covid=1), date(2026, 3, 3): zero(Normal=1),
                   date(2026, 3, 4): zero(Normal=1), date(2026, 3, 9): zero(Pneumonia_Viral=1, Covid=1)}


def test_per_week_starts_on_monday():
    assert count_by_period(ROWS, "week", tz=UTC) == [
        (date(2026, 3, 2), zero(Covid=1, Normal=2, Pneumonia_Viral=1)), (date(2026, 3, 9), zero(Covid=1))]
    plus2 = timezone(timedelta(hours=2))
    assert count_by_period(ROWS, "week", tz=plus2) == [
        (date(2026, 3, 2), zero(Covid=1, Normal=2)), (date(2026, 3, 9), zero(Covid=1, Pneumonia_Viral=1))]


def test_week_gaps_and_empty():
    rows = [("2026-01-01T10:00:00+00:00", "Normal"), ("2026-01-20T10:00:00+00:00", "Normal")]
    got = count_by_period(rows, "week", tz=UTC)
    assert [d for d, _ in got] == [date(2025, 12, 29), date(2026, 1, 5), date(2026, 1, 12), date(2026, 1, 19)]
    assert count_by_period([], "day") == []
    assert period_start(__import__("datetime").datetime(2026, 3, 8, 12, tzinfo=UTC), "week", UTC) == date(2026, 3, 2)

"""Counts of predicted classes per day or per ISO week (Monday start), in the workstation's local time."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime, timedelta, tzinfo

from fl.classes import CLASSES

PERIODS = ("day", "week")


def period_start(moment: datetime, period: str, tz: tzinfo | None = None) -> date:
    """The local day (or the Monday of the local ISO week) that contains `moment` (an aware datetime)."""
    if period not in PERIODS:
        raise ValueError(f"period must be one of {PERIODS}, not {period!r}")
    d = moment.astimezone(tz).date()
    return d - timedelta(days=d.weekday()) if period == "week" else d


def count_by_period(rows: Iterable[tuple[str, str]], period: str = "day", *, tz: tzinfo | None = None,
                    classes: Sequence[str] = CLASSES, fill: bool = True) -> list[tuple[date, dict[str, int]]]:
    """Aggregate (created UTC ISO, predicted class) rows into [(period start, {class: n})], oldest first.

    Every class appears in every dict; with `fill` the periods without cases between the first and the last
    are included with zero counts (what a chart wants). Unknown class names are counted under their own key.
    """
    buckets: dict[date, dict[str, int]] = {}
    for created, predicted in rows:
        start = period_start(datetime.fromisoformat(created), period, tz)
        b = buckets.setdefault(start, dict.fromkeys(classes, 0))
        b[predicted] = b.get(predicted, 0) + 1
    if not buckets:
        return []
    if fill:
        step = timedelta(days=7 if period == "week" else 1)
        d, last = min(buckets), max(buckets)
        while d <= last:
            buckets.setdefault(d, dict.fromkeys(classes, 0))
            d += step
    return sorted(buckets.items())

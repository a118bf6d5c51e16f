"""The workstation's federation choices: opted in or not, training windows, resource limits (one JSON file).

Public API (plain data; the desktop app and `fedxray federation schedule` use it):
- `FederationSettings` (frozen): `opted_in`, `windows` (empty: always), `cpu_threads`, `gpu_memory_mb`,
  `data_dir`, `overrun_minutes`; `.in_window(now)`, `.next_change(now)`, `.describe()`, `.replace(**changes)`
  (validated).
- `Window.parse(text)` / `parse_windows("weekdays 19:00-07:00; weekends")`, `format_windows(windows)`.
- `load() -> FederationSettings` (defaults when missing; FederationSettingsError when damaged: the file is kept),
  `save(settings)` (atomic), `update(**changes)` (load, validate, save).
Times are the workstation's local time. A window that ends at or before its start runs past midnight into the
next day ("Fri 19:00-07:00" ends Saturday 07:00); a day without times is the whole day.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from app.core.errors import AppError
from app.core.paths import atomic_write_text, config_dir

FILE_NAME = "federation.json"
SCHEMA = 1
DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_GROUPS = {"weekdays": range(0, 5), "weekends": range(5, 7), "daily": range(7), "everyday": range(7),
           "always": range(7)}  # fmt: skip
_TIME = re.compile(r"^([01]?\d|2[0-4]):([0-5]\d)$")
EXAMPLE = "weekdays 19:00-07:00; weekends"


class FederationSettingsError(AppError):
    """A federation setting is invalid, or the settings file is damaged; the message says what to do."""


def _parse_time(text: str) -> dt.time:
    m = _TIME.match(text.strip())
    if not m or (m.group(1) == "24" and m.group(2) != "00"):
        raise FederationSettingsError(f"{text!r} is not a time of day; write it as HH:MM, e.g. 19:00.")
    hour, minute = int(m.group(1)), int(m.group(2))
    return dt.time(0, 0) if hour == 24 else dt.time(hour, minute)


def _parse_days(text: str) -> frozenset[int]:
    days: set[int] = set()
    for part in text.lower().replace(" ", "").split(","):
        if part in _GROUPS:
            days.update(_GROUPS[part])
            continue
        ends = part.split("-")
        try:
            idx = [DAY_NAMES.index(e[:3]) for e in ends if len(e) >= 3 and e[:3] in DAY_NAMES]
        except ValueError:
            idx = []
        if len(idx) != len(ends) or len(idx) not in (1, 2):
            raise FederationSettingsError(
                f"{part!r} is not a day: use mon…sun, a range such as mon-fri, weekdays, weekends or daily "
                f"(example: {EXAMPLE!r})."
            )
        first, last = idx[0], idx[-1]
        days.update(range(first, last + 1) if first <= last else [*range(first, 7), *range(0, last + 1)])
    return frozenset(days)


@dataclass(frozen=True)
class Window:
    """A weekly training window starting on `days` (0 = Monday) at `start`, ending at `end` (local time);
    end <= start runs into the next day; start == end == 00:00 is the whole day."""

    days: frozenset[int]
    start: dt.time = dt.time(0, 0)
    end: dt.time = dt.time(0, 0)

    @classmethod
    def parse(cls, text: str) -> Window:
        """`DAYS [HH:MM-HH:MM]`: e.g. `weekdays 19:00-07:00`, `sat,sun`, `mon-fri 12:00-13:30`."""
        parts = text.strip().split()
        if not parts:
            raise FederationSettingsError(f"An empty training window; example: {EXAMPLE!r}.")
        if len(parts) > 2:
            parts = [",".join(parts[:-1]), parts[-1]] if "-" in parts[-1] and ":" in parts[-1] else [",".join(parts)]
        days = _parse_days(parts[0])
        if len(parts) == 1:
            return cls(days)
        span = parts[1].split("-")
        if len(span) != 2:
            raise FederationSettingsError(f"{parts[1]!r} is not a time span; write it as HH:MM-HH:MM, e.g. 19:00-07:00.")
        start, end = _parse_time(span[0]), _parse_time(span[1])
        return cls(days, start, end)

    @property
    def whole_day(self) -> bool:
        return self.start == self.end == dt.time(0, 0)

    @property
    def overnight(self) -> bool:
        return self.end <= self.start and not self.whole_day

    def contains(self, now: dt.datetime) -> bool:
        """Whether `now` (local, naive or aware) falls in this window."""
        day, t = now.weekday(), now.time().replace(tzinfo=None)
        if self.whole_day:
            return day in self.days
        if not self.overnight:
            return day in self.days and self.start <= t < self.end
        return (day in self.days and t >= self.start) or ((day - 1) % 7 in self.days and t < self.end)

    def text(self) -> str:
        days = _days_text(self.days)
        return days if self.whole_day else f"{days} {self.start:%H:%M}-{self.end:%H:%M}"

    def to_json(self) -> dict:
        return {"days": [DAY_NAMES[d] for d in sorted(self.days)], "start": f"{self.start:%H:%M}",
                "end": f"{self.end:%H:%M}"}  # fmt: skip

    @classmethod
    def from_json(cls, raw: dict) -> Window:
        return cls(_parse_days(",".join(raw["days"])), _parse_time(raw["start"]), _parse_time(raw["end"]))


def _days_text(days: frozenset[int]) -> str:
    for name in ("daily", "weekdays", "weekends"):
        if days == frozenset(_GROUPS[name]):
            return name
    return ",".join(DAY_NAMES[d] for d in sorted(days))


def parse_windows(text: str) -> tuple[Window, ...]:
    """Windows separated by `;` (or new lines); `always` (or an empty text) gives () = always."""
    entries = [e.strip() for e in re.split(r"[;\n]", text) if e.strip()]
    if not entries or [e.lower() for e in entries] == ["always"]:
        return ()
    return tuple(Window.parse(e) for e in entries)


def format_windows(windows: tuple[Window, ...]) -> str:
    return "; ".join(w.text() for w in windows) if windows else "always"


@dataclass(frozen=True)
class FederationSettings:
    """What the staff of this workstation chose about federated training."""

    opted_in: bool = False
    windows: tuple[Window, ...] = ()  # () = always
    cpu_threads: int | None = None  # None: half the cores, at least one (default_cpu_threads)
    gpu_memory_mb: int | None = None  # None: no cap (memory growth stays on)
    data_dir: str | None = None  # None: the workstation's labelled set
    overrun_minutes: int = 30  # how long a message in progress may run past a window's end before it is abandoned
    problem: str | None = field(default=None, compare=False, repr=False)  # set by load(); never saved

    def __post_init__(self) -> None:
        validate(self)

    def replace(self, **changes) -> FederationSettings:
        """A copy with `changes`, validated (FederationSettingsError)."""
        return dataclasses.replace(self, problem=None, **changes)

    @property
    def threads(self) -> int:
        """The CPU thread cap in force."""
        return self.cpu_threads or default_cpu_threads()

    def in_window(self, now: dt.datetime | None = None) -> bool:
        """Whether training may run at `now` (local time; default: now)."""
        now = now or dt.datetime.now()
        return not self.windows or any(w.contains(now) for w in self.windows)

    def next_change(self, now: dt.datetime | None = None) -> dt.datetime | None:
        """When in_window() next changes (within a week); None when always open or it never changes."""
        if not self.windows:
            return None
        now = (now or dt.datetime.now()).replace(second=0, microsecond=0)
        state = self.in_window(now)
        edges = set()  # the only moments the state can change: the windows' starts and ends
        for offset in range(-1, 9):
            day = now.date() + dt.timedelta(days=offset)
            for w in self.windows:
                if day.weekday() in w.days:
                    start = dt.datetime.combine(day, w.start)
                    end_day = day + dt.timedelta(days=1) if (w.overnight or w.whole_day) else day
                    edges.update((start, dt.datetime.combine(end_day, w.end)))
        for edge in sorted(e for e in edges if now < e <= now + dt.timedelta(days=8)):
            if self.in_window(edge) != state:
                return edge
        return None

    def limits_text(self) -> str:
        """The resource limits for people: "CPU threads: 1 (automatic), GPU memory: no cap"."""
        gpu = f"{self.gpu_memory_mb} MB" if self.gpu_memory_mb else "no cap"
        threads = f"{self.cpu_threads}" if self.cpu_threads else f"{default_cpu_threads()} (automatic)"
        return f"CPU threads: {threads}, GPU memory: {gpu}"

    def describe(self) -> str:
        """One line for people: windows and limits."""
        return f"training windows: {format_windows(self.windows)}; {self.limits_text()}"

    def to_dict(self) -> dict:
        return {"schema": SCHEMA, "opted_in": self.opted_in, "windows": [w.to_json() for w in self.windows],
                "windows_text": format_windows(self.windows), "cpu_threads": self.cpu_threads,
                "gpu_memory_mb": self.gpu_memory_mb, "data_dir": self.data_dir,
                "overrun_minutes": self.overrun_minutes}  # fmt: skip


def default_cpu_threads() -> int:
    """Half this computer's cores, at least one: the rest stays for the clinician's own work."""
    return max(1, (os.cpu_count() or 2) // 2)


def validate(s: FederationSettings) -> None:
    """Raise FederationSettingsError for a value the agent could not use."""
    cores = os.cpu_count() or 1
    if s.cpu_threads is not None and (isinstance(s.cpu_threads, bool) or not isinstance(s.cpu_threads, int)
                                      or not 1 <= s.cpu_threads <= cores):  # fmt: skip
        raise FederationSettingsError(f"The CPU thread cap must be a whole number from 1 to {cores} (this "
                                      f"computer's cores), not {s.cpu_threads!r}.")  # fmt: skip
    if s.gpu_memory_mb is not None and (isinstance(s.gpu_memory_mb, bool) or not isinstance(s.gpu_memory_mb, int)
                                        or not 256 <= s.gpu_memory_mb <= 1_048_576):  # fmt: skip
        raise FederationSettingsError(f"The GPU memory cap must be a whole number of megabytes, at least 256, not "
                                      f"{s.gpu_memory_mb!r}.")  # fmt: skip
    if not isinstance(s.overrun_minutes, int) or isinstance(s.overrun_minutes, bool) or not 0 <= s.overrun_minutes <= 720:
        raise FederationSettingsError("The time a round may run past its window must be 0 to 720 minutes.")
    if not all(isinstance(w, Window) and w.days for w in s.windows):
        raise FederationSettingsError(f"Every training window needs at least one day (example: {EXAMPLE!r}).")
    if s.data_dir is not None and (not isinstance(s.data_dir, str) or not s.data_dir.strip()):
        raise FederationSettingsError("The training data folder must be a folder path.")


def path() -> Path:
    """Where the settings are stored: <config>/federation.json."""
    return config_dir() / FILE_NAME


def load(file: str | os.PathLike | None = None) -> FederationSettings:
    """The stored settings (defaults when there are none). A damaged file raises FederationSettingsError and is
    left as it is (it may say opted in: guessing either way would be wrong)."""
    p = Path(file) if file is not None else path()
    try:
        raw = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return FederationSettings()
    except (OSError, ValueError) as exc:
        raise FederationSettingsError(f"The federation settings file {p} cannot be read ({exc}). Set the schedule "
                                      "again (`fedxray federation schedule --always`) or remove the file.") from exc
    try:
        return FederationSettings(
            opted_in=bool(raw.get("opted_in", False)),
            windows=tuple(Window.from_json(w) for w in raw.get("windows") or ()),
            cpu_threads=raw.get("cpu_threads"), gpu_memory_mb=raw.get("gpu_memory_mb"),
            data_dir=raw.get("data_dir"), overrun_minutes=raw.get("overrun_minutes", 30),
        )  # fmt: skip
    except (FederationSettingsError, KeyError, TypeError, AttributeError) as exc:
        raise FederationSettingsError(f"The federation settings file {p} holds an invalid value ({exc}). Set the "
                                      "schedule again with `fedxray federation schedule`.") from exc


def save(settings: FederationSettings, file: str | os.PathLike | None = None) -> Path:
    """Write atomically (SaveError / DiskFullError when it cannot be written; the old file is then kept)."""
    p = Path(file) if file is not None else path()
    return atomic_write_text(p, json.dumps(settings.to_dict(), indent=2) + "\n", what="the federation settings")


def update(**changes) -> FederationSettings:
    """Load, apply `changes` (validated), save; returns the saved settings."""
    settings = load().replace(**changes)
    save(settings)
    return settings

"""User preferences: one typed object stored as JSON in the config folder (atomic save, corruption-tolerant)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from app.core.paths import atomic_write_text, config_dir

FILE_NAME = "preferences.json"
SCHEMA = 1


@dataclass
class Preferences:
    """What the user chose; window geometry lives in QSettings, not here."""

    model_id: str = "default"
    heatmap_visible: bool = True
    heatmap_opacity: float = 0.45
    data_dir: str | None = None
    recent_files: list[str] = field(default_factory=list)
    max_recent: int = 10
    batch_size: int = 8
    # Set by load() when the file could not be used as it was (never saved); the UI shows it once.
    problem: str | None = field(default=None, compare=False, repr=False)

    _RANGES: ClassVar[dict[str, tuple[float, float]]] = {
        "heatmap_opacity": (0.0, 1.0), "max_recent": (1, 50), "batch_size": (1, 64)}

    @staticmethod
    def path() -> Path:
        """Where the preferences are stored (the settings folder is created)."""
        return config_dir() / FILE_NAME

    @classmethod
    def load(cls, path: str | os.PathLike | None = None) -> Preferences:
        """Read the preferences; a missing file gives defaults, a damaged one is moved aside to
        `preferences.json.corrupt` and defaults are used (the reason is in `.problem`). Invalid single
        values fall back to their default (also reported in `.problem`)."""
        p = Path(path) if path is not None else config_dir(create=False) / FILE_NAME  # reading makes no folder
        try:
            data = p.read_bytes()
        except FileNotFoundError:
            return cls()
        except OSError as exc:
            return cls(problem=f"Your preferences could not be read ({exc.strerror}); the defaults are used.")
        try:
            raw = json.loads(data.decode("utf-8"))
            if not isinstance(raw, dict):
                raise ValueError("not a JSON object")
        except ValueError as exc:
            backup = p.with_name(p.name + ".corrupt")
            with contextlib.suppress(OSError):
                os.replace(p, backup)
            return cls(problem=f"Your preferences file was damaged ({exc}); the defaults are used. "
                               f"The damaged file was kept as {backup}.")
        return cls._from_dict(raw)

    @classmethod
    def _from_dict(cls, raw: dict[str, Any]) -> Preferences:
        prefs, bad = cls(), []
        for f in dataclasses.fields(cls):
            if f.name == "problem" or f.name not in raw:
                continue
            value = raw[f.name]
            if not cls._valid(f.name, value):
                bad.append(f.name)
                continue
            setattr(prefs, f.name, list(value) if f.name == "recent_files" else value)
        if bad:
            prefs.problem = f"Some preferences were invalid and were reset to their defaults: {', '.join(bad)}."
        prefs.recent_files = prefs.recent_files[: prefs.max_recent]
        return prefs

    @classmethod
    def _valid(cls, name: str, v: Any) -> bool:
        if name in ("model_id",):
            return isinstance(v, str) and bool(v)
        if name == "heatmap_visible":
            return isinstance(v, bool)
        if name == "data_dir":
            return v is None or (isinstance(v, str) and bool(v))
        if name == "recent_files":
            return isinstance(v, list) and all(isinstance(x, str) for x in v)
        if name in cls._RANGES:
            lo, hi = cls._RANGES[name]
            ok_type = isinstance(v, int | float) if name == "heatmap_opacity" else isinstance(v, int)
            return ok_type and not isinstance(v, bool) and math.isfinite(v) and lo <= v <= hi
        return False

    def to_dict(self) -> dict[str, Any]:
        """The JSON-serialisable view (without `problem`)."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "problem"}
        d["schema"] = SCHEMA
        return d

    def save(self, path: str | os.PathLike | None = None) -> Path:
        """Write atomically (temp file + os.replace); raises DiskFullError / SaveError."""
        p = Path(path) if path is not None else self.path()
        return atomic_write_text(p, json.dumps(self.to_dict(), indent=2) + "\n", what="your preferences")

    def add_recent(self, file_path: str | os.PathLike, *, resolve: bool = True) -> None:
        """Put `file_path` first in the recent-files list (no duplicates, at most max_recent); `resolve=False` for
        a path already resolved (resolving asks the disk)."""
        s = str(Path(file_path).expanduser().resolve()) if resolve else str(file_path)
        self.recent_files = [s] + [x for x in self.recent_files if x != s]
        del self.recent_files[self.max_recent:]


def peek_data_dir() -> str | None:
    """The data-folder override from the preferences file, without side effects (None when unset/unreadable)."""
    try:
        raw = json.loads((config_dir(create=False) / FILE_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    v = raw.get("data_dir") if isinstance(raw, dict) else None
    return v if isinstance(v, str) and v else None

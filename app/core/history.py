"""Local case history: SQLite (WAL, one transaction per change, schema version in PRAGMA user_version)."""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from pathlib import Path
from typing import Any

from app.core import imaging, stats
from app.core.assessment import Assessment, assess, attention_from_json, attention_json
from app.core.dicomtags import identification, patient_key
from app.core.errors import AppError, DiskFullError
from app.core.paths import atomic_write_bytes, data_dir
from fl.classes import CLASSES

SCHEMA_VERSION = 2
DB_NAME = "history.sqlite"
IMAGES_DIR = "images"


class HistoryError(AppError):
    """The history database cannot be used (damaged, from a newer FedXray, or not writable).
    A full disk while saving raises app.core.errors.DiskFullError instead."""


class CaseNotFoundError(AppError):
    """No case with that id (it was deleted)."""


class ReasonRequiredError(AppError):
    """A case shown despite guardrail warnings cannot be labelled without a typed reason."""


class CaseImageError(AppError):
    """Neither the original file nor the stored copy of a case's image can be opened."""


@dataclass
class Case:
    """One classification as stored in the history."""

    id: int
    created: str                     # UTC ISO 8601, microseconds
    file_name: str
    file_path: str | None
    pixel_sha256: str
    thumbnail_png: bytes
    probabilities: dict[str, float]
    predicted: str
    model_name: str
    model_version: str
    user: str
    warnings: list[str] = field(default_factory=list)
    feedback_label: str | None = None
    feedback_note: str | None = None
    feedback_at: str | None = None
    image_file: str | None = None   # the stored downscaled grayscale copy (absolute path), if any
    patient_key: str = ""            # pseudonymous patient id (HMAC of DICOM PatientID, or "img-<pixel sha>")
    source_format: str = ""          # "PNG" | "JPEG" | "BMP" | "TIFF" | "DICOM"
    attention: dict[str, float] | None = None  # fl.attention shares of the result's heatmap (None: not measured)
    feedback_by: str | None = None   # who gave the image its live label
    feedback_reason: str | None = None  # why a case with guardrail warnings was labelled anyway
    patient_name: str = ""           # DICOM identification; it stays on this workstation
    patient_id: str = ""
    patient_age: str = ""
    accession_number: str = ""

    @property
    def assessment(self) -> Assessment:
        """Near tie, explanation warning and outside-the-intended-use mark of the stored result."""
        return assess(self.probabilities, attention=self.attention, guardrails=self.warnings)

    @property
    def created_at(self) -> datetime:
        """`created` as an aware UTC datetime (use .astimezone() for local time)."""
        return datetime.fromisoformat(self.created)


def _v0_to_v1(conn: sqlite3.Connection) -> None:
    # Statement by statement: executescript() would COMMIT the migration's transaction first.
    _run_all(conn, """
        CREATE TABLE cases (
            id             INTEGER PRIMARY KEY AUTOINCREMENT,
            created        TEXT NOT NULL,
            file_name      TEXT NOT NULL,
            file_path      TEXT,
            pixel_sha256   TEXT NOT NULL,
            thumbnail_png  BLOB NOT NULL,
            probabilities  TEXT NOT NULL,
            predicted      TEXT NOT NULL,
            model_name     TEXT NOT NULL,
            model_version  TEXT NOT NULL,
            user           TEXT NOT NULL,
            warnings       TEXT NOT NULL DEFAULT '[]',
            feedback_label TEXT,
            feedback_note  TEXT,
            feedback_at    TEXT,
            image_file     TEXT,
            patient_key    TEXT NOT NULL DEFAULT '',
            source_format  TEXT NOT NULL DEFAULT ''
        );
        CREATE INDEX cases_created ON cases (created);
        CREATE INDEX cases_predicted ON cases (predicted, created);
        CREATE INDEX cases_sha ON cases (pixel_sha256);
    """)


def _run_all(conn: sqlite3.Connection, script: str) -> None:
    for statement in script.split(";"):
        if statement.strip():
            conn.execute(statement)


def _v1_to_v2(conn: sqlite3.Connection) -> None:
    """The explanation check, DICOM identification, who labelled, and one label per image (pixel SHA-256).

    Every label already given goes into label_log (none is lost); where one image had different labels on
    several cases, the newest is its live label on all of them and the older ones stay in the log as replaced.
    """
    for column in ("attention TEXT NOT NULL DEFAULT ''", "feedback_by TEXT", "feedback_reason TEXT",
                   "patient_name TEXT NOT NULL DEFAULT ''", "patient_id TEXT NOT NULL DEFAULT ''",
                   "patient_age TEXT NOT NULL DEFAULT ''", "accession_number TEXT NOT NULL DEFAULT ''"):
        conn.execute(f"ALTER TABLE cases ADD COLUMN {column}")
    _run_all(conn, """
        CREATE TABLE label_log (
            id            INTEGER PRIMARY KEY AUTOINCREMENT,
            pixel_sha256  TEXT NOT NULL,
            label         TEXT,
            note          TEXT,
            reason        TEXT,
            user          TEXT NOT NULL,
            at            TEXT NOT NULL,
            case_id       INTEGER,
            replaced      TEXT
        );
        CREATE INDEX label_log_sha ON label_log (pixel_sha256, at)
    """)
    rows = conn.execute("SELECT id, pixel_sha256, feedback_label, feedback_note, user, feedback_at FROM cases "
                        "WHERE feedback_label IS NOT NULL ORDER BY feedback_at, id").fetchall()
    live: dict[str, tuple] = {}
    for case_id, sha, label, note, user, at in rows:
        before = live.get(sha)
        conn.execute("INSERT INTO label_log (pixel_sha256, label, note, user, at, case_id, replaced) "
                     "VALUES (?, ?, ?, ?, ?, ?, ?)", (sha, label, note, user, at or _now(), case_id,
                                                      before[0] if before and before[0] != label else None))
        live[sha] = (label, note, at, user)
    for sha, (label, note, at, user) in live.items():
        conn.execute("UPDATE cases SET feedback_label = ?, feedback_note = ?, feedback_at = ?, feedback_by = ? "
                     "WHERE pixel_sha256 = ?", (label, note, at, user, sha))


# MIGRATIONS[v] upgrades a database at user_version v to v + 1; each runs in its own transaction.
MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {0: _v0_to_v1, 1: _v1_to_v2}


@dataclass(frozen=True)
class LabelEvent:
    """One labelling of an image: what, by whom, when, and the label it replaced."""

    label: str | None        # None: the label was cleared
    user: str
    at: str
    case_id: int | None
    note: str | None = None
    reason: str | None = None
    replaced: str | None = None


_COLUMNS = ("id", "created", "file_name", "file_path", "pixel_sha256", "thumbnail_png", "probabilities",
            "predicted", "model_name", "model_version", "user", "warnings", "feedback_label", "feedback_note",
            "feedback_at", "image_file", "patient_key", "source_format", "attention", "feedback_by",
            "feedback_reason", "patient_name", "patient_id", "patient_age", "accession_number")
_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM cases"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _utc_iso(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.astimezone()  # naive = local time
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def _bound(value: date | datetime | None, *, end: bool) -> str | None:
    """A search bound as UTC ISO; a date means the whole local day (date_to inclusive)."""
    if value is None:
        return None
    if not isinstance(value, datetime):
        value = datetime.combine(value + timedelta(days=1) if end else value, time()).astimezone()
    return _utc_iso(value)


class HistoryStore:
    """The case history of this workstation; thread-safe (one connection behind a lock)."""

    def __init__(self, path: str | os.PathLike | None = None):
        self.path = Path(path) if path is not None else data_dir() / DB_NAME
        self.folder = self.path.parent
        self._lock = threading.RLock()
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10)
        except (OSError, sqlite3.Error) as exc:
            raise HistoryError(f"The case history at {self.path} cannot be opened ({exc}). Check that the data "
                               "folder exists and is writable (Settings › Data folder).") from exc
        try:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.execute("PRAGMA foreign_keys=ON")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            self._conn.close()
            if isinstance(exc, sqlite3.OperationalError) and "not a database" not in str(exc):
                raise HistoryError(f"The case history at {self.path} cannot be opened ({exc}). Check that the "
                                   "data folder is writable (Settings › Data folder).") from exc
            raise HistoryError(
                f"The case history at {self.path} is damaged and cannot be read ({exc}). FedXray can still "
                "classify images. Restore the file from a backup, or move it aside to start a new history."
            ) from exc

    # ------------------------------------------------------------------ plumbing
    def close(self) -> None:
        """Close the database (a checkpoint folds the WAL back into the main file)."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> HistoryStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: all of it is committed or none (also if the process dies halfway)."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
                self._conn.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:  # SQLite itself rolls back after some errors (e.g. SQLITE_FULL)
                    self._conn.execute("ROLLBACK")
                raise

    def schema_version(self) -> int:
        """The PRAGMA user_version of the database."""
        with self._lock:
            return self._conn.execute("PRAGMA user_version").fetchone()[0]

    def _migrate(self) -> None:
        version = self.schema_version()
        if version > SCHEMA_VERSION:
            raise HistoryError(f"The case history at {self.path} was written by a newer FedXray (schema "
                               f"{version}, this version knows {SCHEMA_VERSION}). Update FedXray to open it.")
        while version < SCHEMA_VERSION:
            with self._tx() as conn:
                MIGRATIONS[version](conn)
                conn.execute(f"PRAGMA user_version = {version + 1}")
            version += 1

    def _write(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        try:
            with self._tx() as conn:
                return fn(conn)
        except sqlite3.OperationalError as exc:
            msg = str(exc)
            if "full" in msg:  # SQLITE_FULL: "database or disk is full"
                raise DiskFullError("The disk is full: the case could not be saved in the history. Free some "
                                    "disk space and try again; nothing was changed.") from exc
            raise HistoryError(f"The case history could not be updated ({msg}); nothing was changed.") from exc

    @staticmethod
    def _case(row: tuple) -> Case:
        d = dict(zip(_COLUMNS, row, strict=True))
        d["probabilities"] = json.loads(d["probabilities"])
        d["warnings"] = json.loads(d["warnings"])
        d["thumbnail_png"] = bytes(d["thumbnail_png"])
        d["attention"] = attention_from_json(d["attention"])
        return Case(**d)

    # ------------------------------------------------------------------ cases
    def add(self, prediction: Any, *, file_path: str | os.PathLike | None, thumbnail_png: bytes | None = None,
            warnings: Iterable[Any] = (), created: datetime | None = None, user: str | None = None,
            store_image: bool = True, assessment: Assessment | None = None) -> Case:
        """Store a fl.inference.Prediction; returns the new Case.

        Makes the thumbnail (if not given) and, with `store_image`, a downscaled grayscale copy of the image
        in <data>/images/ so the case reopens with its heatmap even when the original file is gone.
        `warnings` may be guardrail Warnings (their .message is stored) or strings; `assessment`
        (app.core.assessment) brings the attention shares of the explanation check. An image that already has
        a label (the same pixels, classified before) keeps it: the new case shows it.
        """
        rad = prediction.radiograph
        sha = rad.pixel_sha256()
        probs = {c: float(p) for c, p in zip(CLASSES, prediction.probabilities, strict=True)}
        image_file, new_image = None, False
        if store_image:
            target = self.folder / IMAGES_DIR / sha[:2] / f"{sha}.png"
            if not target.exists():
                atomic_write_bytes(target, imaging.stored_copy_png(rad.pixels), what="the copy of the image")
                new_image = True
            image_file = str(target)
        values = {
            "created": _utc_iso(created) if created else _now(),
            "file_name": Path(str(rad.source)).name or str(rad.source),
            "file_path": str(Path(file_path).resolve()) if file_path else None,
            "pixel_sha256": sha,
            "thumbnail_png": thumbnail_png if thumbnail_png is not None else imaging.thumbnail_png(rad.pixels),
            "probabilities": json.dumps(probs),
            "predicted": CLASSES[int(prediction.predicted)],
            "model_name": str(prediction.model_name),
            "model_version": str(prediction.model_version),
            "user": user if user is not None else _os_user(),
            "warnings": json.dumps([getattr(w, "message", w) for w in warnings]),
            "image_file": image_file,
            "patient_key": patient_key(rad, self.folder),
            "source_format": str(getattr(rad, "format", "")),
            "attention": attention_json(assessment) if assessment is not None else "",
            **identification(rad),
        }
        names = list(values)

        def insert(conn: sqlite3.Connection) -> int:
            cur = conn.execute(f"INSERT INTO cases ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
                               [values[n] for n in names])
            conn.execute("UPDATE cases SET (feedback_label, feedback_note, feedback_at, feedback_by, feedback_reason)"
                         " = (SELECT feedback_label, feedback_note, feedback_at, feedback_by, feedback_reason FROM "
                         "cases WHERE pixel_sha256 = ? AND feedback_label IS NOT NULL AND id != ? LIMIT 1) "
                         "WHERE id = ? AND EXISTS (SELECT 1 FROM cases WHERE pixel_sha256 = ? AND "
                         "feedback_label IS NOT NULL AND id != ?)", (sha, cur.lastrowid, cur.lastrowid, sha,
                                                                     cur.lastrowid))
            return cur.lastrowid

        try:
            case_id = self._write(insert)
        except BaseException:
            if new_image:  # no case refers to the copy just written
                with contextlib.suppress(OSError):
                    os.unlink(image_file)
            raise
        return self.get(case_id)

    def get(self, case_id: int) -> Case:
        """The case with this id; raises CaseNotFoundError."""
        with self._lock:
            row = self._conn.execute(f"{_SELECT} WHERE id = ?", (case_id,)).fetchone()
        if row is None:
            raise CaseNotFoundError(f"Case {case_id} is not in the history (it may have been deleted).")
        return self._case(row)

    def __len__(self) -> int:
        with self._lock:
            return self._conn.execute("SELECT COUNT(*) FROM cases").fetchone()[0]

    def search(self, text: str = "", predicted: str | Iterable[str] | None = None,
               date_from: date | datetime | None = None, date_to: date | datetime | None = None,
               limit: int = 500, *, feedback: bool | None = None) -> list[Case]:
        """Cases newest first. `text` matches (case-insensitively, as a substring) file name or path, pixel
        SHA-256, user, model name/version, predicted or corrected class and the note. Dates are local days
        (date_to inclusive) or datetimes (naive = local). `feedback` True/False keeps cases with/without one."""
        where, args = [], []
        if text:
            like = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            cols = ("file_name", "file_path", "pixel_sha256", "user", "model_name", "model_version", "predicted",
                    "feedback_label", "feedback_note", "patient_name", "patient_id", "accession_number")
            where.append("(" + " OR ".join(f"{c} LIKE ? ESCAPE '\\'" for c in cols) + ")")
            args += [like] * len(cols)
        if predicted is not None:
            wanted = [predicted] if isinstance(predicted, str) else list(predicted)
            where.append(f"predicted IN ({', '.join('?' * len(wanted))})")
            args += wanted
        if (lo := _bound(date_from, end=False)) is not None:
            where.append("created >= ?")
            args.append(lo)
        if (hi := _bound(date_to, end=True)) is not None:
            where.append("created < ?" if not isinstance(date_to, datetime) else "created <= ?")
            args.append(hi)
        if feedback is not None:
            where.append("feedback_label IS NOT NULL" if feedback else "feedback_label IS NULL")
        sql = _SELECT + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY created DESC, id DESC"
        sql += " LIMIT ?"
        args.append(int(limit))
        with self._lock:
            return [self._case(r) for r in self._conn.execute(sql, args).fetchall()]

    def find_by_sha(self, pixel_sha256: str) -> list[Case]:
        """Every case of this image (same decoded pixels), newest first."""
        with self._lock:
            rows = self._conn.execute(f"{_SELECT} WHERE pixel_sha256 = ? ORDER BY created DESC, id DESC",
                                      (pixel_sha256,)).fetchall()
        return [self._case(r) for r in rows]

    def delete(self, case_id: int) -> Case:
        """Delete a case; returns it (the UI then asks whether to remove the image from the labelled set
        with LabelledSet.remove(case.pixel_sha256)). The stored image copy goes when no case uses it."""
        case = self.get(case_id)

        def delete(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM cases WHERE id = ?", (case_id,))
            # The image's label log goes with its last case (nothing of a deleted image stays behind).
            conn.execute("DELETE FROM label_log WHERE pixel_sha256 = ? AND NOT EXISTS (SELECT 1 FROM cases WHERE "
                         "pixel_sha256 = ?)", (case.pixel_sha256, case.pixel_sha256))

        self._write(delete)
        if case.image_file:
            with self._lock:
                still = self._conn.execute("SELECT 1 FROM cases WHERE image_file = ? LIMIT 1",
                                           (case.image_file,)).fetchone()
            if still is None:
                with contextlib.suppress(OSError):
                    os.unlink(case.image_file)
        return case

    def set_feedback(self, case_id: int, label: str | None, note: str | None = None, *, user: str | None = None,
                     reason: str | None = None) -> Case:
        """Give the case's image its label (one of CLASSES; None clears it), with an optional note.

        One label per image: every case of the same pixels (SHA-256) carries it, and the label it replaces stays
        in the image's label log with who and when (label_events). A case shown despite guardrail warnings needs
        a typed `reason` (ReasonRequiredError otherwise): it is outside the intended use.
        """
        if label is not None and label not in CLASSES:
            raise ValueError(f"label must be one of {CLASSES}, not {label!r}")
        case = self.get(case_id)
        reason = (reason or "").strip() or None
        if label is not None and case.warnings and reason is None:
            raise ReasonRequiredError(
                "This case was shown despite guardrail warnings (outside the intended use), so its label cannot "
                "enter the local labelled set without a reason. Type why the label is right (e.g. \"confirmed "
                "adult PA film, colour export of a PACS screenshot\"), or leave the case unlabelled.")
        at = _now() if label is not None else None
        who = (user or _os_user()) if label is not None else None
        note = ((note or "").strip() or None) if label is not None else None
        reason = reason if label is not None else None

        def write(conn: sqlite3.Connection) -> None:
            conn.execute("UPDATE cases SET feedback_label = ?, feedback_note = ?, feedback_at = ?, feedback_by = ?, "
                         "feedback_reason = ? WHERE pixel_sha256 = ?", (label, note, at, who, reason,
                                                                         case.pixel_sha256))
            replaced = case.feedback_label if case.feedback_label != label else None
            conn.execute("INSERT INTO label_log (pixel_sha256, label, note, reason, user, at, case_id, replaced) "
                         "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", (case.pixel_sha256, label, note, reason,
                                                             who or user or _os_user(), at or _now(), case_id,
                                                             replaced))

        self._write(write)
        return self.get(case_id)

    def label_events(self, pixel_sha256: str) -> list[LabelEvent]:
        """Every labelling of this image, oldest first (the last one is the live label)."""
        with self._lock:
            rows = self._conn.execute("SELECT label, user, at, case_id, note, reason, replaced FROM label_log "
                                      "WHERE pixel_sha256 = ? ORDER BY at, id", (pixel_sha256,)).fetchall()
        return [LabelEvent(*r) for r in rows]

    def caution_counts(self, since: date | datetime | None = None) -> dict[str, int]:
        """How many cases since `since` were outside the intended use, carried an explanation warning, or a near tie."""
        args, where = [], ""
        if (lo := _bound(since, end=False)) is not None:
            where, args = " WHERE created >= ?", [lo]
        with self._lock:
            rows = self._conn.execute(f"SELECT probabilities, warnings, attention FROM cases{where}", args).fetchall()
        out = {"outside_intended_use": 0, "explanation_warning": 0, "near_tie": 0}
        for probs, warns, att in rows:
            a = assess(json.loads(probs), attention=attention_from_json(att), guardrails=json.loads(warns))
            out["outside_intended_use"] += a.outside_intended_use
            out["explanation_warning"] += a.explanation_warning
            out["near_tie"] += a.near_tie
        return out

    def counts(self, period: str = "day", since: date | datetime | None = None, *,
               until: date | datetime | None = None, tz: tzinfo | None = None,
               fill: bool = True) -> list[tuple[date, dict[str, int]]]:
        """Predicted-class counts per local day or ISO week (Monday), oldest first; see stats.count_by_period."""
        if period not in stats.PERIODS:
            raise ValueError(f"period must be one of {stats.PERIODS}, not {period!r}")
        where, args = [], []
        if (lo := _bound(since, end=False)) is not None:
            where.append("created >= ?")
            args.append(lo)
        if (hi := _bound(until, end=True)) is not None:
            where.append("created < ?")
            args.append(hi)
        sql = "SELECT created, predicted FROM cases" + (" WHERE " + " AND ".join(where) if where else "")
        with self._lock:
            rows = self._conn.execute(sql, args).fetchall()
        return stats.count_by_period(rows, period, tz=tz, fill=fill)

    # ------------------------------------------------------------------ reopening
    def open_image(self, case: Case) -> tuple[Any, str | None]:
        """The case's image as a fl.preprocess.Radiograph, plus a note for the user (None if all is well).

        Uses the original file when it is still there with the same pixels (full resolution, DICOM window),
        else the stored downscaled copy (the note says so). Raises CaseImageError when neither exists; the
        thumbnail (case.thumbnail_png) is then all there is to show.
        """
        from fl.preprocess import ImageReadError, read_image

        if case.file_path and Path(case.file_path).is_file():
            try:
                rad = read_image(case.file_path)
                if rad.pixel_sha256() == case.pixel_sha256:
                    return rad, None
                moved = f"The file at {case.file_path} has changed since this case was recorded"
            except ImageReadError:
                moved = f"The file at {case.file_path} can no longer be read"
        else:
            moved = f"The original file ({case.file_path or case.file_name}) is no longer there"
        if case.image_file and Path(case.image_file).is_file():
            try:
                rad = read_image(case.image_file, name=case.file_name)
            except ImageReadError as exc:
                raise CaseImageError(f"{moved}, and the copy kept in the history is damaged ({exc}).") from exc
            return rad, (f"{moved}; showing the copy kept in the history (downscaled to at most "
                         f"{imaging.STORED_COPY_MAX_SIDE} px, 8-bit). The stored result is unchanged; a heatmap "
                         "computed on this copy may differ slightly from the original one.")
        raise CaseImageError(f"{moved}, and no copy was kept in the history; only the thumbnail can be shown.")


def _os_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name (some containers/services)
        return "unknown"

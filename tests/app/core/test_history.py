"""The case history: real SQLite files, re-opened, interrupted writes, search, counts, reopening images."""

from __future__ import annotations

import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from datetime import UTC, date, datetime, timedelta, timezone

import numpy as np
import pytest
from PIL import Image

from app.core.history import (
    SCHEMA_VERSION,
    CaseImageError,
    CaseNotFoundError,
    HistoryError,
    HistoryStore,
)
from app.core.paths import data_dir
from fl.classes import CLASSES

from .conftest import make_prediction

UTC = UTC
P_COVID = [0.7, 0.1, 0.15, 0.05]
P_NORMAL = [0.05, 0.8, 0.1, 0.05]
P_BACT = [0.1, 0.2, 0.6, 0.1]


@pytest.fixture
def store():
    with HistoryStore() as s:
        yield s


def test_add_stores_every_field_and_survives_reopen(store, cxr):
    pred = make_prediction(cxr["Covid"], P_COVID)
    case = store.add(pred, file_path=cxr["Covid"], warnings=["look at me"])
    assert store.path == data_dir() / "history.sqlite"
    store.close()

    with HistoryStore() as again:
        got = again.get(case.id)
    assert got == case
    assert got.file_name == cxr["Covid"].name and got.file_path == str(cxr["Covid"].resolve())
    assert got.pixel_sha256 == pred.radiograph.pixel_sha256() and len(got.pixel_sha256) == 64
    assert got.probabilities == dict(zip(CLASSES, P_COVID, strict=True))
    assert got.predicted == "Covid" and got.model_name == "Test model" and got.model_version == "1.2.3"
    import getpass
    assert got.user == getpass.getuser()
    assert got.warnings == ["look at me"] and got.feedback_label is None
    assert abs(got.created_at - datetime.now(UTC)) < timedelta(minutes=5)
    thumb = Image.open(io.BytesIO(got.thumbnail_png))
    assert thumb.format == "PNG" and max(thumb.size) == 256          # the dataset's images are 256 px long
    copy = Image.open(got.image_file)
    assert copy.mode == "L" and copy.size == pred.radiograph.pixels.shape[::-1]
    # the stored copy is the displayed image, rounded to 8 bit
    assert np.array_equal(np.asarray(copy), np.rint(pred.radiograph.pixels * 255).astype(np.uint8))
    assert got.patient_key == "img-" + got.pixel_sha256                  # a PNG has no patient id


def test_database_is_wal_with_schema_version(store):
    conn = sqlite3.connect(store.path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == store.schema_version()
    conn.close()


def test_guardrail_warning_objects_are_stored_as_messages(store, dicom_dir, copy_of):
    from app.core import guardrails

    ct = copy_of(dicom_dir / "CT_small.dcm")
    pred = make_prediction(ct, P_NORMAL)
    warns = guardrails.check(pred.radiograph)
    case = store.add(pred, file_path=ct, warnings=warns)
    assert case.warnings == [w.message for w in warns] and "CT" in case.warnings[0]
    assert case.source_format == "DICOM"
    assert case.patient_key.startswith("pid-") and "1CT1" not in case.patient_key  # pseudonymised PatientID


def _insert_script(db, n_committed):
    return textwrap.dedent(f"""
        import sys, time, json
        from app.core.history import HistoryStore
        s = HistoryStore({str(db)!r})
        cols = "created, file_name, pixel_sha256, thumbnail_png, probabilities, predicted, model_name, model_version, user"
        def row(i):
            return ("2026-01-01T00:00:00.000000+00:00", f"f{{i}}.png", "0" * 64, b"png", json.dumps({{"Covid": 1.0}}),
                    "Covid", "m", "1", "u")
        for i in range({n_committed}):
            s._write(lambda c, i=i: c.execute(f"INSERT INTO cases ({{cols}}) VALUES (?,?,?,?,?,?,?,?,?)", row(i)))
        with s._tx() as c:
            for i in range(100, 150):
                c.execute(f"INSERT INTO cases ({{cols}}) VALUES (?,?,?,?,?,?,?,?,?)", row(i))
            print("inside", flush=True)
            time.sleep(120)
    """)


def test_process_killed_mid_transaction_leaves_database_consistent(tmp_path):
    db = tmp_path / "h" / "history.sqlite"
    proc = subprocess.Popen([sys.executable, "-c", _insert_script(db, 3)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "inside"
        os.kill(proc.pid, signal.SIGKILL)  # the app dies with 50 uncommitted rows written to the WAL
    finally:
        proc.wait(timeout=30)
    with HistoryStore(db) as s:
        assert len(s) == 3
        assert sorted(c.file_name for c in s.search()) == ["f0.png", "f1.png", "f2.png"]
        assert s._conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_error_inside_transaction_rolls_back(store, cxr):
    store.add(make_prediction(cxr["Normal"], P_NORMAL), file_path=cxr["Normal"])
    with pytest.raises(RuntimeError), store._tx() as conn:
        conn.execute("DELETE FROM cases")
        conn.execute("UPDATE cases SET predicted = 'x'")
        raise RuntimeError("power cut simulation")
    assert len(store) == 1 and store.search()[0].predicted == "Normal"


def test_search_and_filters(store, cxr):
    t0 = datetime(2026, 5, 4, 10, 0, tzinfo=UTC)
    a = store.add(make_prediction(cxr["Covid"], P_COVID, model_version="2.0"), file_path=cxr["Covid"], created=t0)
    b = store.add(make_prediction(cxr["Normal"], P_NORMAL), file_path=cxr["Normal"], created=t0 + timedelta(days=1))
    c = store.add(make_prediction(cxr["Pneumonia-Bacterial"], P_BACT), file_path=None,
                  created=t0 + timedelta(days=3), user="dr_100%_sure")
    ids = lambda cases: [x.id for x in cases]  # noqa: E731
    assert ids(store.search()) == [c.id, b.id, a.id]                       # newest first
    assert ids(store.search(limit=2)) == [c.id, b.id]
    assert ids(store.search(text=cxr["Normal"].name[3:12].upper())) == [b.id]   # substring, any case
    assert ids(store.search(text=a.pixel_sha256[:10])) == [a.id]
    assert ids(store.search(text="2.0")) == [a.id]                          # model version
    assert ids(store.search(text="100%")) == [c.id]                         # % is literal, not a wildcard
    assert ids(store.search(text="dr_1")) == [c.id] and store.search(text="drx1") == []
    assert ids(store.search(predicted="Normal")) == [b.id]
    assert ids(store.search(predicted=["Covid", "Pneumonia-Bacterial"])) == [c.id, a.id]
    assert ids(store.search(date_from=t0 + timedelta(hours=1))) == [c.id, b.id]
    assert ids(store.search(date_to=t0 + timedelta(days=1))) == [b.id, a.id]  # datetime bound: inclusive
    local_day_b = (t0 + timedelta(days=1)).astimezone().date()
    assert b.id in ids(store.search(date_from=local_day_b, date_to=local_day_b))
    assert a.id not in ids(store.search(date_from=local_day_b + timedelta(days=1)))
    store.set_feedback(b.id, "Normal", "agree")
    assert ids(store.search(feedback=True)) == [b.id] and ids(store.search(feedback=False)) == [c.id, a.id]
    assert ids(store.search(text="agree")) == [b.id]
    assert ids(store.find_by_sha(a.pixel_sha256)) == [a.id]


def test_feedback_set_change_clear(store, cxr):
    case = store.add(make_prediction(cxr["Covid"], P_COVID), file_path=cxr["Covid"])
    fb = store.set_feedback(case.id, "Pneumonia-Viral", "  viral on CT  ")
    assert (fb.feedback_label, fb.feedback_note) == ("Pneumonia-Viral", "viral on CT")
    assert abs(datetime.fromisoformat(fb.feedback_at) - datetime.now(UTC)) < timedelta(minutes=5)
    assert store.set_feedback(case.id, "Covid").feedback_note is None
    cleared = store.set_feedback(case.id, None)
    assert (cleared.feedback_label, cleared.feedback_note, cleared.feedback_at) == (None, None, None)
    with pytest.raises(ValueError):
        store.set_feedback(case.id, "Tuberculosis")
    with pytest.raises(CaseNotFoundError):
        store.set_feedback(9999, "Covid")


def test_delete_keeps_shared_image_copy_until_last_case(store, cxr):
    a = store.add(make_prediction(cxr["Covid"], P_COVID), file_path=cxr["Covid"])
    b = store.add(make_prediction(cxr["Covid"], P_COVID), file_path=cxr["Covid"])   # same image again
    assert a.image_file == b.image_file
    deleted = store.delete(a.id)
    assert deleted == a and os.path.exists(b.image_file)
    with pytest.raises(CaseNotFoundError):
        store.get(a.id)
    store.delete(b.id)
    assert not os.path.exists(b.image_file) and len(store) == 0


def test_counts_per_day_and_week(store, cxr):
    plus1 = timezone(timedelta(hours=1))
    when = [("Covid", datetime(2026, 2, 27, 9, tzinfo=UTC)),     # Friday
            ("Normal", datetime(2026, 2, 27, 23, 30, tzinfo=UTC)),  # Friday UTC, Saturday 00:30 at UTC+1
            ("Normal", datetime(2026, 3, 2, 8, tzinfo=UTC)),     # Monday
            ("Covid", datetime(2026, 3, 3, 8, tzinfo=UTC))]
    probs = {"Covid": P_COVID, "Normal": P_NORMAL}
    for cls, t in when:
        store.add(make_prediction(cxr[cls], probs[cls]), file_path=cxr[cls], created=t, store_image=False)
    z = lambda **kw: {**dict.fromkeys(CLASSES, 0), **kw}  # noqa: E731
    assert store.counts("day", tz=UTC) == [
        (date(2026, 2, 27), z(Covid=1, Normal=1)), (date(2026, 2, 28), z()), (date(2026, 3, 1), z()),
        (date(2026, 3, 2), z(Normal=1)), (date(2026, 3, 3), z(Covid=1))]
    assert store.counts("day", tz=plus1, fill=False)[:2] == [(date(2026, 2, 27), z(Covid=1)),
                                                             (date(2026, 2, 28), z(Normal=1))]
    assert store.counts("week", tz=UTC) == [(date(2026, 2, 23), z(Covid=1, Normal=1)),
                                            (date(2026, 3, 2), z(Covid=1, Normal=1))]
    assert store.counts("week", since=datetime(2026, 3, 1, tzinfo=UTC), tz=UTC) == [
        (date(2026, 3, 2), z(Covid=1, Normal=1))]
    with pytest.raises(ValueError):
        store.counts("month")


def test_reopen_uses_original_then_stored_copy(store, cxr, copy_of):
    f = copy_of(cxr["Pneumonia-Bacterial"])
    case = store.add(make_prediction(f, P_BACT), file_path=f)
    rad, note = store.open_image(case)
    assert note is None and rad.pixel_sha256() == case.pixel_sha256

    f.rename(f.with_name("moved.png"))
    rad, note = store.open_image(case)
    assert "no longer there" in note and "copy kept in the history" in note
    assert rad.pixels.shape == Image.open(cxr["Pneumonia-Bacterial"]).size[::-1]

    os.unlink(case.image_file)
    with pytest.raises(CaseImageError, match="only the thumbnail"):
        store.open_image(case)


def test_reopen_notices_a_replaced_file(store, cxr, copy_of):
    f = copy_of(cxr["Normal"], "scan.png")
    case = store.add(make_prediction(f, P_NORMAL), file_path=f)
    os.replace(copy_of(cxr["Covid"], "other.png"), f)
    rad, note = store.open_image(case)
    assert "has changed" in note
    assert np.array_equal(np.rint(rad.pixels * 255), np.asarray(Image.open(cxr["Normal"]), dtype=np.float32))


def test_migration_from_empty_and_refusal_of_newer_or_damaged(tmp_path):
    empty = tmp_path / "v0.sqlite"
    sqlite3.connect(empty).close()  # user_version 0, no tables
    with HistoryStore(empty) as s:
        assert s.schema_version() == SCHEMA_VERSION and len(s) == 0

    newer = tmp_path / "newer.sqlite"
    conn = sqlite3.connect(newer)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(HistoryError, match="newer FedXray"):
        HistoryStore(newer)

    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(HistoryError, match="damaged"):
        HistoryStore(junk)


def test_probabilities_stored_as_json(store, cxr):
    case = store.add(make_prediction(cxr["Covid"], P_COVID), file_path=cxr["Covid"])
    raw = sqlite3.connect(store.path).execute("SELECT probabilities FROM cases WHERE id=?", (case.id,)).fetchone()
    assert json.loads(raw[0]) == {"Covid": 0.7, "Normal": 0.1, "Pneumonia-Bacterial": 0.15, "Pneumonia-Viral": 0.05}


def test_failed_migration_changes_nothing(tmp_path, monkeypatch):
    import app.core.history as history

    db = tmp_path / "h.sqlite"
    HistoryStore(db).close()

    def v1_to_v2(conn):
        conn.execute("ALTER TABLE cases ADD COLUMN accession TEXT")
        conn.execute("CREATE TABLE extra (x)")
        raise sqlite3.OperationalError("disk I/O error")  # dies halfway through the upgrade

    monkeypatch.setattr(history, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    monkeypatch.setitem(history.MIGRATIONS, SCHEMA_VERSION, v1_to_v2)
    with pytest.raises(HistoryError):
        HistoryStore(db)
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert "accession" not in [r[1] for r in conn.execute("PRAGMA table_info(cases)")]
    assert conn.execute("SELECT name FROM sqlite_master WHERE name='extra'").fetchone() is None


def test_full_database_is_a_clear_error_and_changes_nothing(store, cxr):
    from app.core.errors import DiskFullError

    store.add(make_prediction(cxr["Normal"], P_NORMAL), file_path=cxr["Normal"])
    # SQLite's own page limit produces the real SQLITE_FULL ("database or disk is full") a full disk gives.
    pages = store._conn.execute("PRAGMA page_count").fetchone()[0]
    store._conn.execute(f"PRAGMA max_page_count = {pages}")
    big = make_prediction(cxr["Covid"], P_COVID)
    with pytest.raises(DiskFullError, match="disk is full"):
        for _ in range(50):  # each case carries a thumbnail: the limit is reached within a few cases
            store.add(big, file_path=cxr["Covid"], thumbnail_png=os.urandom(20_000))
    n = len(store)
    assert n >= 1 and store._conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert [c.predicted for c in store.search()][-1] == "Normal"
    covid_image = store.folder / "images" / big.radiograph.pixel_sha256()[:2] / f"{big.radiograph.pixel_sha256()}.png"
    assert covid_image.exists() == (n > 1)   # the copy written for the refused case was removed again


def test_concurrent_writers_from_worker_threads(store, cxr):
    import threading

    preds = [make_prediction(cxr[c], p) for c, p in (("Covid", P_COVID), ("Normal", P_NORMAL),
                                                      ("Pneumonia-Bacterial", P_BACT))]
    errors = []

    def work(pred):
        try:
            for _ in range(5):
                case = store.add(pred, file_path=None, store_image=False)
                store.set_feedback(case.id, case.predicted)
                store.search(text=case.file_name[:5])
        except Exception as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(p,)) for p in preds]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(store) == 15
    assert all(c.feedback_label == c.predicted for c in store.search())

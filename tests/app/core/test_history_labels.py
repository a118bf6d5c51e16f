"""One label per image, who and when, guardrail-flagged cases, DICOM identification and the schema-2 migration
(app.core.history with app.core.labelled; real SQLite files, real images)."""

from __future__ import annotations

import csv
import json
import sqlite3

import pytest

from app.core.assessment import assess
from app.core.history import MIGRATIONS, HistoryStore, ReasonRequiredError
from app.core.labelled import LabelledSet, LabelledSetError

from .conftest import make_prediction

P = [0.05, 0.15, 0.72, 0.08]
GUARDRAIL = "This is a colour image; X-rays are grayscale, so it is probably a photo. The result may be meaningless."


def test_relabelling_one_image_twice_leaves_one_label_with_who_and_when(cxr, copy_of):
    f = copy_of(cxr["Covid"])
    with HistoryStore() as store:
        first = store.add(make_prediction(f, P), file_path=f)
        again = store.add(make_prediction(f, P), file_path=f)        # the same image classified a second time
        store.set_feedback(first.id, "Covid", user="alice")
        store.set_feedback(again.id, "Pneumonia-Viral", "PCR: influenza", user="bob")
        cases = store.find_by_sha(first.pixel_sha256)
        assert len(cases) == 2
        assert {c.feedback_label for c in cases} == {"Pneumonia-Viral"}        # never two live labels
        assert {c.feedback_by for c in cases} == {"bob"}
        events = store.label_events(first.pixel_sha256)
        assert [(e.label, e.user, e.replaced) for e in events] == [("Covid", "alice", None),
                                                                  ("Pneumonia-Viral", "bob", "Covid")]
        # Reopening the image later: a new case of the same pixels shows the label it already has.
        third = store.add(make_prediction(f, P), file_path=f)
        assert (third.feedback_label, third.feedback_by) == ("Pneumonia-Viral", "bob")
        ls = LabelledSet()
        ls.add(store.get(first.id))
        ls.add(store.get(again.id))
        ls.add(third)
        entries = ls.entries()
        assert len(entries) == 1 and entries[0].label == "Pneumonia-Viral" and entries[0].labelled_by == "bob"


def test_changing_a_label_in_the_set_says_what_it_replaced(cxr):
    with HistoryStore() as store:
        case = store.add(make_prediction(cxr["Normal"], P), file_path=cxr["Normal"])
        ls = LabelledSet()
        ls.add(store.set_feedback(case.id, "Normal", user="alice"))
        before = ls.entry(case.pixel_sha256)
        ls.add(store.set_feedback(case.id, "Pneumonia-Bacterial", user="bob"))
        after = ls.entry(case.pixel_sha256)
        assert after.label == "Pneumonia-Bacterial" and after.labelled_by == "bob"
        assert after.replaced == f"Normal by alice at {before.labelled_at}"
        assert ls.counts()["Normal"] == 0 and ls.patients()["Pneumonia-Bacterial"] == 1


def test_a_guardrail_flagged_case_cannot_enter_the_labelled_set_silently(cxr):
    with HistoryStore() as store:
        case = store.add(make_prediction(cxr["Covid"], P), file_path=cxr["Covid"], warnings=[GUARDRAIL])
        assert assess(case.probabilities, guardrails=case.warnings).outside_intended_use
        for reason in (None, "", "   "):
            with pytest.raises(ReasonRequiredError, match="reason"):
                store.set_feedback(case.id, "Covid", reason=reason)
        assert store.get(case.id).feedback_label is None and store.label_events(case.pixel_sha256) == []
        ls = LabelledSet()
        # Even a case whose label got in by another way is refused by the set without the reason.
        labelled_without_reason = store.get(case.id)
        object.__setattr__(labelled_without_reason, "feedback_label", "Covid")
        with pytest.raises(LabelledSetError, match="reason"):
            ls.add(labelled_without_reason)
        assert ls.entries() == []
        done = store.set_feedback(case.id, "Covid", reason="  original film checked on the PACS ")
        assert done.feedback_reason == "original film checked on the PACS"
        ls.add(done)
        assert ls.entry(case.pixel_sha256).reason == "original film checked on the PACS"


def test_dicom_identification_is_stored_and_searchable(dicom_dir):
    with HistoryStore() as store:
        case = store.add(make_prediction(dicom_dir / "RG1_UNCR.dcm", P), file_path=dicom_dir / "RG1_UNCR.dcm")
        import pydicom

        ds = pydicom.dcmread(dicom_dir / "RG1_UNCR.dcm", stop_before_pixels=True)
        family, given = str(ds.PatientName).split("^")[:2]
        assert case.patient_name == f"{family}, {given}" and case.patient_id == str(ds.PatientID)
        assert case.accession_number == str(ds.AccessionNumber)
        assert [c.id for c in store.search(str(ds.PatientID))] == [case.id]


def test_attention_of_the_result_is_stored(cxr):
    with HistoryStore() as store:
        pred = make_prediction(cxr["Normal"], P)
        a = assess(pred.probabilities, attention={"border": 0.7, "outside_body": 0.2, "off_target": 0.75})
        case = store.add(pred, file_path=cxr["Normal"], assessment=a)
        assert HistoryStore(store.path).get(case.id).assessment.explanation_warning
        assert store.caution_counts() == {"outside_intended_use": 0, "explanation_warning": 1, "near_tie": 0}


def _schema_1_database(path, rows):
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN")
    MIGRATIONS[0](conn)
    for r in rows:
        conn.execute("INSERT INTO cases (created, file_name, pixel_sha256, thumbnail_png, probabilities, predicted,"
                     " model_name, model_version, user, feedback_label, feedback_note, feedback_at) VALUES "
                     "(?, ?, ?, x'00', ?, 'Covid', 'm', '1', ?, ?, ?, ?)",
                     (r["created"], r["file"], r["sha"], json.dumps(dict(zip(
                         ["Covid", "Normal", "Pneumonia-Bacterial", "Pneumonia-Viral"], P, strict=True))),
                      r["user"], r["label"], r.get("note"), r["at"]))
    conn.execute("PRAGMA user_version = 1")
    conn.execute("COMMIT")
    conn.close()


def test_migration_to_schema_2_keeps_every_label_and_leaves_one_live_label_per_image(tmp_path):
    db = tmp_path / "history.sqlite"
    a, b = "a" * 64, "b" * 64
    _schema_1_database(db, [
        dict(created="2026-01-01T10:00:00+00:00", file="x.png", sha=a, user="alice", label="Covid",
             at="2026-01-01T10:05:00+00:00"),
        dict(created="2026-01-02T10:00:00+00:00", file="x-again.png", sha=a, user="bob", label="Normal",
             note="second reader", at="2026-01-02T10:05:00+00:00"),
        dict(created="2026-01-03T10:00:00+00:00", file="x-third.png", sha=a, user="carol", label=None, at=None),
        dict(created="2026-01-03T11:00:00+00:00", file="y.png", sha=b, user="alice", label="Pneumonia-Viral",
             at="2026-01-03T11:05:00+00:00"),
    ])
    with HistoryStore(db) as store:
        assert store.schema_version() == 2
        image_a = store.find_by_sha(a)
        assert {(c.feedback_label, c.feedback_by, c.feedback_note) for c in image_a} == {
            ("Normal", "bob", "second reader")}                      # the newest label is the live one, on all 3
        assert [(e.label, e.user, e.replaced) for e in store.label_events(a)] == [
            ("Covid", "alice", None), ("Normal", "bob", "Covid")]     # the older label is kept, as replaced
        assert [(c.feedback_label, c.feedback_by) for c in store.find_by_sha(b)] == [("Pneumonia-Viral", "alice")]
        assert [e.label for e in store.label_events(b)] == ["Pneumonia-Viral"]


def test_an_old_labelled_set_manifest_is_read_and_rewritten_without_losing_labels(cxr, copy_of):
    with HistoryStore() as store:
        case = store.add(make_prediction(cxr["Normal"], P), file_path=cxr["Normal"])
        ls = LabelledSet()
        (ls.root / "Normal").mkdir(parents=True)
        old_sha = "c" * 64
        (ls.root / "Normal" / f"{old_sha}.png").write_bytes(cxr["Normal"].read_bytes())
        (ls.root / "manifest.csv").write_text(
            "filename,patient_id,label,pixel_sha256,case_id,source_format,added\n"
            f"Normal/{old_sha}.png,img-{old_sha},Normal,{old_sha},7,PNG,2026-01-01T00:00:00+00:00\n")
        assert [(e.pixel_sha256, e.label, e.labelled_by) for e in ls.entries()] == [(old_sha, "Normal", "")]
        ls.add(store.set_feedback(case.id, "Normal", user="alice"))
        with open(ls.root / "manifest.csv", newline="") as fh:
            rows = {r["pixel_sha256"]: r for r in csv.DictReader(fh)}
        assert set(rows) == {old_sha, case.pixel_sha256}
        assert rows[old_sha]["label"] == "Normal" and rows[old_sha]["added"] == "2026-01-01T00:00:00+00:00"
        assert rows[case.pixel_sha256]["labelled_by"] == "alice"


def test_deleting_the_last_case_of_an_image_deletes_its_label_log(cxr):
    with HistoryStore() as store:
        a = store.add(make_prediction(cxr["Normal"], P), file_path=cxr["Normal"])
        b = store.add(make_prediction(cxr["Normal"], P), file_path=cxr["Normal"])
        store.set_feedback(a.id, "Normal", user="alice")
        store.delete(a.id)
        assert store.get(b.id).feedback_label == "Normal" and len(store.label_events(a.pixel_sha256)) == 1
        store.delete(b.id)
        assert store.label_events(a.pixel_sha256) == []

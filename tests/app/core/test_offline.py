"""Local diagnosis opens no network connection: a whole open-classify-record-export cycle with sockets refused."""

from __future__ import annotations

import socket
import threading

import pytest

from app.core import guardrails
from app.core.batch import classify_folder, write_csv
from app.core.history import HistoryStore
from app.core.inference import InferenceService
from app.core.labelled import LabelledSet
from app.core.models import ModelStore
from app.core.report import export_overlay_png, export_pdf
from app.core.settings import Preferences
from fl.gradcam import overlay
from fl.preprocess import read_image

from .conftest import NetworkUsed


def test_the_blocker_blocks():
    with pytest.raises(NetworkUsed):
        socket.create_connection(("127.0.0.1", 9), timeout=1)


def test_full_cycle_without_network(tiny_model_dir, dicom_dir, cxr, copy_of, tmp_path):
    # the no_network fixture (autouse) turns any IPv4/IPv6 connect into a test failure
    prefs = Preferences.load()
    store = ModelStore(bundled_dir=tiny_model_dir)
    model = store.active(prefs)
    svc = InferenceService()
    card = svc.load(model.dir)
    for src in (copy_of(cxr["Covid"]), copy_of(dicom_dir / "RG1_UNCR.dcm")):
        rad = read_image(src)
        warns = guardrails.check(rad)
        pred = svc.classify(rad)
        other = svc.explain(pred, (pred.predicted + 1) % 4)
        assert other.shape == rad.pixels.shape
        with HistoryStore() as history:
            case = history.add(pred, file_path=src, warnings=warns)
            case = history.set_feedback(case.id, "Normal", "offline check")
            LabelledSet().add(case, src)
            ov = overlay(rad.pixels, pred.heatmap, alpha=prefs.heatmap_opacity)
            export_pdf(tmp_path / f"{src.name}.pdf", case=case, image_gray=rad.pixels, overlay_rgb=ov, card=card)
            export_overlay_png(tmp_path / f"{src.name}.png", ov)
    for f in cxr.values():
        copy_of(f)
    rows = classify_folder(tmp_path / "inputs", svc, cancel=threading.Event(), progress=lambda d, t: None)
    write_csv(rows, tmp_path / "batch.csv")
    assert len(rows) == 5 and all(r.error is None for r in rows)   # 4 classes + the DICOM from above
    prefs.add_recent(cxr["Covid"])
    prefs.save()

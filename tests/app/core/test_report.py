"""PDF report and overlay PNG: real files, parsed back (streams inflated here, independently of reportlab)."""

from __future__ import annotations

import base64
import errno
import io
import re
import zlib

import numpy as np
import pytest
from PIL import Image

from app.core import paths
from app.core.errors import DiskFullError
from app.core.history import HistoryStore
from app.core.report import INTENDED_USE, export_overlay_png, export_pdf
from fl.gradcam import overlay
from fl.modelfile import read_card

from .conftest import make_prediction

P = [0.05, 0.15, 0.72, 0.08]


def pdf_streams(data: bytes) -> list[bytes]:
    """Every stream of a PDF, decoded (ASCII85 and Flate filters)."""
    out = []
    for m in re.finditer(rb"(?<!end)stream\r?\n", data):
        head = data[max(0, m.start() - 400):m.start()]
        head = head[head.rfind(b"obj"):]
        end = data.index(b"endstream", m.end())
        raw = data[m.end():end]
        if b"ASCII85Decode" in head:
            raw = base64.a85decode(raw.strip().removesuffix(b"~>"), ignorechars=b" \t\n\r\x0b")
        if b"FlateDecode" in head:
            raw = zlib.decompressobj().decompress(raw)
        out.append(raw)
    return out


@pytest.fixture
def case_and_images(cxr, copy_of):
    f = copy_of(cxr["Pneumonia-Bacterial"], "patient (1) <left>.png")
    pred = make_prediction(f, P)
    with HistoryStore() as store:
        case = store.add(pred, file_path=f, warnings=["The image is only 100×100 pixels; test warning."])
        case = store.set_feedback(case.id, "Pneumonia-Bacterial", "confirmed by sputum culture",
                                  reason="full-size film checked on the PACS")  # it has a guardrail warning
    gray = pred.radiograph.pixels
    return case, gray, overlay(gray, pred.heatmap, alpha=0.45)


@pytest.mark.parametrize("compress", [True, False])
def test_pdf_is_valid_and_carries_version_and_intended_use_on_every_page(case_and_images, tiny_model_dir,
                                                                         tmp_path, compress):
    case, gray, ov = case_and_images
    card = read_card(tiny_model_dir)
    out = export_pdf(tmp_path / "report.pdf", case=case, image_gray=gray, overlay_rgb=ov, card=card,
                     compress=compress)
    data = out.read_bytes()
    assert data.startswith(b"%PDF-") and data.rstrip().endswith(b"%%EOF")
    pages = len(re.findall(rb"/Type /Page\b(?!s)", data))
    assert pages >= 1
    streams = pdf_streams(data)
    text = b"\n".join(s for s in streams if b"Tj" in s)
    assert b"0.0.1-test" in text and b"FedXray tiny test network" in text
    on_pages = [s for s in streams if b"not a certified medical device; not a diagnosis." in s]
    assert len(on_pages) == pages >= 1                # the footer of every page carries the intended use
    assert b"DEMONSTRATION MODEL" in text              # the tiny card says demo=True
    assert b"72.0%" in text and b"Bacterial pneumonia" in text
    assert b"confirmed by sputum culture" in text and b"test warning" in text
    assert case.pixel_sha256.encode() in text and case.user.encode() in text
    assert b"patient \\(1\\) &lt;left&gt;.png" not in text   # file names are escaped once, shown as typed
    assert b"<left>" in text
    assert len(re.findall(rb"/Subtype /Image", data)) == 2
    assert [p.name for p in tmp_path.iterdir() if p.name not in ("home", "inputs")] == ["report.pdf"]


def test_pdf_without_card_and_overlay(case_and_images, tmp_path):
    case, gray, _ = case_and_images
    out = export_pdf(tmp_path / "r.pdf", case=case, image_gray=gray, overlay_rgb=None, card=None, compress=False)
    text = b"\n".join(pdf_streams(out.read_bytes()))
    assert b"1.2.3" in text and b"no heatmap" in text and b"DEMONSTRATION" not in text


def test_pdf_on_full_disk(case_and_images, tmp_path, monkeypatch):
    case, gray, ov = case_and_images

    def full(fd):  # injected: a real full disk needs root + a mount
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as m, pytest.raises(DiskFullError, match="PDF report"):
        m.setattr(paths.os, "fsync", full)
        export_pdf(tmp_path / "r.pdf", case=case, image_gray=gray, overlay_rgb=ov, card=None)
    assert not (tmp_path / "r.pdf").exists()


def test_overlay_png(case_and_images, tmp_path):
    _, gray, ov = case_and_images
    out = export_overlay_png(tmp_path / "overlay.png", ov, caption="Bacterial pneumonia 72% — model 1.2.3")
    img = Image.open(out)
    assert img.format == "PNG" and img.mode == "RGB"
    assert img.width == ov.shape[1] and img.height > ov.shape[0]          # the caption strip below
    assert np.array_equal(np.asarray(img)[: ov.shape[0]], ov)             # the overlay itself is lossless
    assert img.text["Disclaimer"] == INTENDED_USE and "1.2.3" in img.text["Description"]
    strip = np.asarray(img)[ov.shape[0]:]
    assert strip.min() < 100                                               # text was drawn in the strip

    raw = Image.open(io.BytesIO(export_overlay_png(tmp_path / "plain.png", ov, annotate=False).read_bytes()))
    assert raw.size == (ov.shape[1], ov.shape[0]) and raw.text["Disclaimer"] == INTENDED_USE


def _pdftotext(path) -> str:
    import subprocess

    return subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True,
                          check=True).stdout


def test_pdf_carries_identification_cautions_and_the_colour_scale(dicom_dir, tmp_path):
    """A DICOM case shown despite a guardrail warning, with a near tie and an explanation warning (pdftotext)."""
    import pydicom

    from app.core.assessment import assess
    from tests.conftest import REPO

    f = dicom_dir / "RG1_UNCR.dcm"
    pred = make_prediction(f, [0.46, 0.04, 0.47, 0.03])
    attention = {"border": 0.7, "outside_body": 0.3, "off_target": 0.8}
    with HistoryStore() as store:
        case = store.add(pred, file_path=f, warnings=["The patient is under 18; test warning."],
                         assessment=assess(pred.probabilities, attention=attention))
        case = store.set_feedback(case.id, "Pneumonia-Bacterial", user="dr.reader",
                                  reason="adult film, age tag wrong in the PACS export")
    card = read_card(REPO / "resources" / "models" / "default")
    gray = pred.radiograph.pixels
    out = export_pdf(tmp_path / "r.pdf", case=case, image_gray=gray, overlay_rgb=overlay(gray, pred.heatmap),
                     card=card)
    text = " ".join(_pdftotext(out).split())
    ds = pydicom.dcmread(f, stop_before_pixels=True)
    assert str(ds.PatientID) in text and str(ds.AccessionNumber) in text
    assert str(ds.PatientName).split("^")[0] in text
    assert "OUTSIDE THE INTENDED USE" in text and "test warning" in text
    assert "uncertain: bacterial pneumonia or COVID-19" in text and "Near tie" in text
    assert "edge of the image" in text and "80% of the heatmap's attention" in text
    assert "dr.reader" in text and "age tag wrong" in text
    assert "Main limitation" in text and "recognises the image source" in text
    for tick in ("0.25", "0.5", "0.75"):
        assert tick in text
    assert "share of the map's peak" in text

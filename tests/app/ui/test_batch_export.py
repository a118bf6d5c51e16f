"""Batch a folder with CSV export; export the PDF report and the overlay PNG of a case."""

from __future__ import annotations

import base64
import csv
import re
import shutil
import zlib

import numpy as np
import pytest
from PIL import Image

from fl.classes import CLASSES
from tests.app.ui.helpers import wait_idle, wait_result


def pdf_text(data: bytes) -> bytes:
    """The raw PDF plus every decoded stream (ASCII85 + Flate, as reportlab writes the page text)."""
    chunks = [data]
    for m in re.finditer(rb"stream\r?\n(.*?)endstream", data, re.S):
        raw = m.group(1).strip()
        if raw.endswith(b"~>"):
            raw = base64.a85decode(re.sub(rb"\s", b"", raw[:-2]))
        try:
            chunks.append(zlib.decompress(raw))
        except zlib.error:
            chunks.append(raw)
    return b"\n".join(chunks)


def test_batch_a_folder_then_export_csv(qtbot, window, shared_data, tmp_path):
    # Prepare: 2 images per class, one DICOM, one file that is not an image.
    folder = tmp_path / "batch"
    folder.mkdir()
    expected_files = []
    for c in CLASSES:
        for src in sorted((shared_data / "cxr" / c).glob("*.png"))[:2]:
            expected_files.append(shutil.copy2(src, folder / f"{c}-{src.name}"))
    shutil.copy2(shared_data / "dicom" / "RG1_UNCR.dcm", folder / "chest.dcm")
    (folder / "notes.png").write_text("this is not an image")
    # Execute
    dialog = window.show_batch(folder)
    qtbot.waitUntil(lambda: not dialog.running, timeout=180_000)
    # Assert: 10 rows, 1 error, the others with probabilities summing to one.
    assert dialog.table.rowCount() == 10
    errors = [r for r in dialog.rows if r.error]
    assert [r.file_name for r in errors] == ["notes.png"]
    for r in dialog.rows:
        if not r.error:
            assert sum(r.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
    assert "9 images classified, 1 could not be read" in dialog.status.text()
    assert dialog.progress.value() == dialog.progress.maximum() == 10
    # The table sorts by probability, numerically.
    dialog.table.sortItems(2)
    col = [dialog.table.item(i, 2).key for i in range(10)]
    assert col == sorted(col)
    # Each row shows its cautions (near tie, explanation warning, outside the intended use) as the core assessed it.
    from app.ui.batch_dialog import COLUMNS
    from app.ui.history_view import caution_text

    cautions = COLUMNS.index("Cautions")
    shown = {dialog.table.item(i, 0).text(): dialog.table.item(i, cautions).text() for i in range(10)}
    for r in dialog.rows:
        if not r.error:
            assert shown[r.file_name] == caution_text(r.assessment)
            assert r.assessment.attention is not None                     # every image had its heatmap checked
    # The batch is in the history (recorded by default).
    assert len(window.history) == 9
    # CSV export.
    out = tmp_path / "out.csv"
    dialog.export_csv(out)
    wait_idle(qtbot, window)
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 10
    by_file = {r["file"]: r for r in rows}
    assert by_file["notes.png"]["error"]
    for r in dialog.rows:
        if not r.error:
            got = [float(by_file[r.file_name][f"p_{c}"]) for c in CLASSES]
            np.testing.assert_allclose(got, [r.probabilities[c] for c in CLASSES], atol=1e-6)
    dialog.close()


def test_batch_can_be_cancelled(qtbot, window, shared_data, tmp_path):
    folder = tmp_path / "many"
    folder.mkdir()
    for src in sorted((shared_data / "cxr" / "Normal").glob("*.png"))[:40]:
        shutil.copy2(src, folder / src.name)
    dialog = window.show_batch()
    dialog.batch_size = 4
    dialog.start(folder)
    dialog.cancel()
    qtbot.waitUntil(lambda: not dialog.running, timeout=180_000)
    assert len(dialog.rows) < 40
    assert "cancel" in dialog.status.text().lower()


def test_export_pdf_and_overlay_png(qtbot, window, cxr, tmp_path):
    from fl.gradcam import overlay

    window.open_image(cxr["Pneumonia-Bacterial"])
    assert wait_result(qtbot, window) == "result"
    version = window.document.result.model_version
    # Ctrl+E with the file dialog answered.
    pdf = tmp_path / "report.pdf"
    window.ask_save_path = lambda title, default, filt: str(pdf)
    window.act.export_pdf.trigger()
    wait_idle(qtbot, window)
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF-") and data.rstrip().endswith(b"%%EOF")
    text = pdf_text(data)
    assert version.encode() in text
    assert f"Saved {pdf}" in window.notifier.last.text

    # The overlay PNG equals fl.gradcam.overlay of the displayed image and heatmap at the chosen opacity.
    window.case_page.result.opacity.setValue(60)
    png = tmp_path / "overlay.png"
    window.ask_save_path = lambda title, default, filt: str(png)
    window.act.export_png.trigger()
    wait_idle(qtbot, window)
    img = np.asarray(Image.open(png).convert("RGB"))
    doc = window.document
    h, w = doc.radiograph.pixels.shape
    want = overlay(doc.radiograph.pixels, doc.heat, alpha=0.60)
    assert img.shape[1] == w and img.shape[0] >= h  # a caption strip is added below
    np.testing.assert_array_equal(img[:h], want)


def test_export_without_a_case_says_so(qtbot, window):
    window.act.export_pdf.setEnabled(True)  # the action is disabled; the shortcut path still must not crash
    window._export_pdf_dialog()
    assert "no classified case" in window.notifier.last.text.lower()

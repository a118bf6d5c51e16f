"""Exports of a case: a PDF report (reportlab) and a PNG of the GradCAM overlay, both with the intended use."""

from __future__ import annotations

import io
import os
from datetime import datetime
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from PIL.PngImagePlugin import PngInfo

from app.core import imaging
from app.core.assessment import EXPLANATION_THRESHOLD
from app.core.dicomtags import age_text
from app.core.paths import atomic_write_bytes
from fl.classes import CLASS_LABELS, CLASSES
from fl.modelfile import INTENDED_USE  # the one intended-use statement (app, reports, CLI, README)

REPORT_TITLE = "FedXray — chest X-ray decision support report"
_MAX_IMAGE_SIDE = 1200  # px embedded in the PDF (keeps it a few hundred KB)


def _local_time(iso: str | None) -> str:
    if not iso:
        return ""
    return datetime.fromisoformat(iso).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z (UTC%z)")


def _label(c: str | None) -> str:
    return CLASS_LABELS.get(c or "", c or "")


def export_pdf(path: str | os.PathLike, *, case: Any, image_gray: np.ndarray, overlay_rgb: np.ndarray | None,
               card: Any, explained_class: str | None = None, compress: bool = True) -> Path:
    """Write the PDF report of a history Case atomically; raises DiskFullError / SaveError.

    image_gray: (H,W) [0,1] as displayed; overlay_rgb: (H,W,3) uint8 GradCAM overlay (None if unavailable);
    card: the fl.modelfile.ModelCard of the model that produced the case (None: only name/version from the case);
    explained_class: the class the overlay explains (default: the predicted one).
    """
    data = _build_pdf(case=case, image_gray=image_gray, overlay_rgb=overlay_rgb, card=card,
                      explained_class=explained_class or case.predicted, compress=compress)
    return atomic_write_bytes(path, data, what="the PDF report")


def _build_pdf(*, case, image_gray, overlay_rgb, card, explained_class, compress) -> bytes:
    from reportlab.graphics.shapes import Drawing, Rect
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
    from reportlab.lib.units import mm
    from reportlab.platypus import Image as RLImage
    from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

    ss = getSampleStyleSheet()
    body = ParagraphStyle("body", parent=ss["BodyText"], fontSize=9, leading=12)
    small = ParagraphStyle("small", parent=body, fontSize=7.5, leading=9.5, textColor=colors.HexColor("#444444"))
    h1 = ParagraphStyle("h1", parent=ss["Heading1"], fontSize=16, spaceAfter=4)
    h2 = ParagraphStyle("h2", parent=ss["Heading2"], fontSize=11.5, spaceBefore=8, spaceAfter=3, keepWithNext=1)
    banner = ParagraphStyle("banner", parent=body, textColor=colors.white, fontName="Helvetica-Bold")
    warn_style = ParagraphStyle("warn", parent=body, textColor=colors.HexColor("#6b4100"))
    P = lambda text, style=body: Paragraph(escape(str(text)), style)  # noqa: E731
    width = A4[0] - 36 * mm - 12  # the frame's own padding is 6 pt on each side
    generated = datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")

    def boxed(flowable_text: Paragraph, fill: str, border: str) -> Table:
        t = Table([[flowable_text]], colWidths=[width])
        t.setStyle(TableStyle([("BACKGROUND", (0, 0), (-1, -1), colors.HexColor(fill)),
                               ("BOX", (0, 0), (-1, -1), 0.8, colors.HexColor(border)),
                               ("LEFTPADDING", (0, 0), (-1, -1), 6), ("TOPPADDING", (0, 0), (-1, -1), 4),
                               ("BOTTOMPADDING", (0, 0), (-1, -1), 5)]))
        return t

    def kv_table(rows: list[tuple[str, str]]) -> Table:
        t = Table([[P(k, small), P(v)] for k, v in rows], colWidths=[38 * mm, width - 38 * mm])
        t.setStyle(TableStyle([("VALIGN", (0, 0), (-1, -1), "TOP"), ("TOPPADDING", (0, 0), (-1, -1), 1.5),
                               ("BOTTOMPADDING", (0, 0), (-1, -1), 1.5),
                               ("LINEBELOW", (0, 0), (-1, -2), 0.25, colors.HexColor("#dddddd"))]))
        return t

    def pic(arr: np.ndarray, w: float) -> RLImage:
        img = imaging.downscaled(arr, _MAX_IMAGE_SIDE)
        h = w * img.height / img.width
        if h > 95 * mm:  # tall images: limit the height, keep the aspect
            w, h = w * 95 * mm / h, 95 * mm
        return RLImage(io.BytesIO(imaging.png_bytes(img)), width=w, height=h)

    model_name = getattr(card, "name", None) or case.model_name
    model_version = getattr(card, "version", None) or case.model_version
    demo = bool(getattr(card, "demo", False))
    story: list[Any] = [P(REPORT_TITLE, h1), boxed(P(INTENDED_USE, banner), "#1f3b57", "#1f3b57"), Spacer(1, 6)]
    if demo:
        story += [boxed(P("DEMONSTRATION MODEL: this model is for demonstration and testing only; its results "
                          "must not be used for any patient.", banner), "#a3261b", "#a3261b"), Spacer(1, 6)]

    assessment = case.assessment
    ident = [(k, v) for k, v in (("Patient", getattr(case, "patient_name", "")),
                                  ("Patient ID", getattr(case, "patient_id", "")),
                                  ("Age", age_text(getattr(case, "patient_age", "") or "")),
                                  ("Accession number", getattr(case, "accession_number", ""))) if v]
    story += [P("Case", h2), kv_table([
        *ident,
        ("File", case.file_name),
        ("Classified", _local_time(case.created)),
        ("User", case.user),
        ("Model", f"{model_name} {model_version}"),
        ("Main limitation", getattr(card, "main_limitation", "") or "see the model card below"),
        ("Case number", str(case.id)),
        ("Image SHA-256", case.pixel_sha256),
    ])]
    if assessment.outside_intended_use:
        story += [Spacer(1, 6), boxed(P("OUTSIDE THE INTENDED USE: this result was shown despite the guardrail "
                                        "warnings below; the image may not be an adult frontal chest radiograph. "
                                        "Do not rely on it.", banner), "#a3261b", "#a3261b")]
    if case.warnings:
        story += [P("Guardrail warnings", h2)]
        story += [boxed(Paragraph("<br/>".join("• " + escape(w) for w in case.warnings), warn_style),
                        "#fff4d6", "#d9a520")]

    # Result: top finding (or the near tie) and a probability table with bars.
    top = case.predicted
    if assessment.near_tie:
        headline = (f"Uncertain result (near tie): <b>{escape(assessment.finding)}</b> "
                    f"({case.probabilities.get(top, 0.0):.1%} vs "
                    f"{case.probabilities.get(assessment.runner_up, 0.0):.1%})")
    else:
        headline = (f"Most probable finding: <b>{escape(_label(top))}</b> "
                    f"({case.probabilities.get(top, 0.0):.1%})")
    story += [P("Result", h2), Paragraph(headline, body), Spacer(1, 3)]
    others = [m for code, m in assessment.cautions if code != "outside_intended_use"]
    if others:
        story += [boxed(Paragraph("<br/>".join("• " + escape(m) for m in others), warn_style), "#fff4d6",
                        "#d9a520"), Spacer(1, 3)]
    bar_w = width - 95 * mm
    rows = [[P("Finding", small), P("Probability", small), P("", small)]]
    for c in CLASSES:
        p = float(case.probabilities.get(c, 0.0))
        d = Drawing(bar_w - 12, 8)  # minus the cell padding
        d.add(Rect(0, 0, bar_w - 12, 8, fillColor=colors.HexColor("#eeeeee"), strokeColor=None))
        d.add(Rect(0, 0, (bar_w - 12) * max(0.0, min(1.0, p)), 8, strokeColor=None,
                   fillColor=colors.HexColor("#1f6fb2" if c == top else "#8aa9c6")))
        style = ParagraphStyle("b", parent=body, fontName="Helvetica-Bold") if c == top else body
        rows.append([P(_label(c), style), P(f"{p:.1%}", style), d])
    t = Table(rows, colWidths=[60 * mm, 35 * mm, bar_w])
    t.setStyle(TableStyle([("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
                           ("LINEBELOW", (0, 0), (-1, 0), 0.5, colors.HexColor("#999999"))]))
    story += [t]

    # Images side by side.
    col = (width - 6 * mm) / 2
    imgs = [pic(image_gray, col), pic(overlay_rgb, col) if overlay_rgb is not None else P("(no heatmap)", small)]
    caps = [P("Image as displayed", small),
            P(f"GradCAM overlay for {_label(explained_class)}: regions that most influenced this score. "
              "It is not a lesion outline.", small)]
    it = Table([imgs, caps, [P("", small), colour_scale(col)]], colWidths=[col + 3 * mm, col + 3 * mm])
    it.setStyle(TableStyle([("VALIGN", (0, 0), (-1, -1), "TOP"), ("ALIGN", (0, 0), (-1, 0), "CENTER")]))
    story += [P("Images", h2), it]
    att = assessment.attention
    if att is not None:
        story += [P(f"Explanation check: {att.get('off_target', 0):.0%} of the heatmap's attention lies at the image "
                    f"border or outside the body (border {att.get('border', 0):.0%}, outside the body "
                    f"{att.get('outside_body', 0):.0%}); a warning is given above {EXPLANATION_THRESHOLD:.0%}.",
                    small)]

    if case.feedback_label:
        rows_fb = [("Label", _label(case.feedback_label) + (" (confirmed)" if case.feedback_label == case.predicted
                                                            else " (corrected)")),
                   ("Labelled by", getattr(case, "feedback_by", None) or "unknown"),
                   ("Note", case.feedback_note or ""), ("Recorded", _local_time(case.feedback_at))]
        if getattr(case, "feedback_reason", None):
            rows_fb.append(("Reason (outside the intended use)", case.feedback_reason))
        story += [P("Clinician feedback", h2), kv_table(rows_fb)]

    story += [P("Model", h2), kv_table(_card_rows(card, model_name, model_version))]

    def page(canvas, doc) -> None:
        canvas.saveState()
        canvas.setFont("Helvetica", 7.5)
        canvas.setFillColor(colors.HexColor("#444444"))
        name = case.file_name if len(case.file_name) <= 48 else case.file_name[:47] + "…"
        canvas.drawString(18 * mm, A4[1] - 11 * mm, f"FedXray report · {name} · {model_name} {model_version}")
        canvas.drawRightString(A4[0] - 18 * mm, A4[1] - 11 * mm, f"Page {doc.page}")
        canvas.setFont("Helvetica-Bold", 7.5)
        canvas.setFillColor(colors.HexColor("#1f3b57"))
        canvas.drawString(18 * mm, 11 * mm, INTENDED_USE)
        canvas.setFont("Helvetica", 7)
        canvas.setFillColor(colors.HexColor("#666666"))
        canvas.drawString(18 * mm, 7 * mm, f"Generated {generated} by {case.user}")
        canvas.restoreState()

    buf = io.BytesIO()
    doc = SimpleDocTemplate(buf, pagesize=A4, leftMargin=18 * mm, rightMargin=18 * mm, topMargin=16 * mm,
                            bottomMargin=18 * mm, title=f"FedXray report — {case.file_name}", author=case.user,
                            subject=INTENDED_USE, creator="FedXray", pageCompression=1 if compress else 0)
    doc.build(story, onFirstPage=page, onLaterPages=page)
    return buf.getvalue()


def colour_scale(width: float) -> Any:
    """The heatmap's colour bar with its numbers (attention as a share of the map's peak), as a reportlab Drawing."""
    from reportlab.graphics.shapes import Drawing, Rect, String
    from reportlab.lib import colors

    from fl.gradcam import LEGEND_TICKS, TRANSPARENT_BELOW, colorize

    steps, bar_h = 64, 7
    d = Drawing(width, bar_h + 22)
    for i, rgb in enumerate(colorize(np.linspace(0.0, 1.0, steps)[None])[0]):
        d.add(Rect(width * i / steps, 14, width / steps + 0.3, bar_h, strokeColor=None,
                   fillColor=colors.Color(*(rgb / 255.0))))
    for t in LEGEND_TICKS:
        anchor = "start" if t == 0 else "end" if t == 1 else "middle"
        d.add(String(width * t, 6, f"{t:g}", fontSize=6.5, textAnchor=anchor, fillColor=colors.HexColor("#444444")))
    d.add(String(0, -2, f"attention, share of the map's peak; below {TRANSPARENT_BELOW:g} not drawn", fontSize=6,
                 fillColor=colors.HexColor("#666666")))
    return d


def _card_rows(card: Any, name: str, version: str) -> list[tuple[str, str]]:
    if card is None:
        return [("Name", name), ("Version", version), ("Card", "the model card was not available")]
    rows = [("Name", name), ("Version", version),
            ("Created", str(getattr(card, "created", ""))),
            ("Architecture", f"{getattr(card, 'arch', '')}, {getattr(card, 'input_size', '')} px input"),
            ("Demonstration model", "yes — not for patient care" if getattr(card, "demo", False) else "no")]
    if getattr(card, "main_limitation", ""):
        rows.append(("Main limitation", card.main_limitation))
    if getattr(card, "description", ""):
        rows.append(("Description", card.description))
    metrics = getattr(card, "metrics", None) or {}
    shown = [(k, metrics[k]) for k in ("accuracy", "macro_auroc", "macro_sensitivity", "macro_specificity",
                                       "macro_f1", "num_examples") if isinstance(metrics.get(k), int | float)]
    if shown:
        rows.append(("Validation", ", ".join(f"{k.replace('_', ' ')} {v:.3f}" if isinstance(v, float) else
                                             f"{k.replace('_', ' ')} {v}" for k, v in shown)))
    fed = getattr(card, "federation", None) or {}
    if fed:
        rows.append(("Federation", ", ".join(f"{k}: {v}" for k, v in fed.items() if not isinstance(v, dict | list))))
    weights = getattr(card, "weights", None) or {}
    if weights.get("sha256"):
        rows.append(("Weights SHA-256", str(weights["sha256"])))
    if getattr(card, "intended_use", ""):
        rows.append(("Intended use (card)", card.intended_use))
    return rows


def overlay_png_bytes(overlay_rgb: np.ndarray, *, caption: str | None = None, annotate: bool = True) -> bytes:
    """PNG of the overlay; with `annotate`, a strip below it carries `caption` and the intended-use line.
    The intended use (and caption) are also stored as PNG text chunks."""
    img = imaging.to_pil(overlay_rgb)
    info = PngInfo()
    info.add_text("Software", "FedXray")
    info.add_text("Disclaimer", INTENDED_USE)
    if caption:
        info.add_text("Description", caption)
    if annotate:
        img = _with_caption(img, [caption] if caption else [])
    return imaging.png_bytes(img, pnginfo=info)


def _with_caption(img: Image.Image, lines: list[str]) -> Image.Image:
    size = max(11, img.width // 60)
    lines = [*lines, INTENDED_USE]
    try:
        font = ImageFont.truetype("DejaVuSans.ttf", size)  # found where the system keeps its fonts
    except OSError:  # Pillow's built-in font lacks typographic dashes
        font = ImageFont.load_default(size=size)
        lines = [x.replace("—", "-").replace("–", "-") for x in lines]
    wrapped = [seg for line in lines for seg in _wrap(line, font, img.width - size)]
    strip = int(len(wrapped) * size * 1.35 + size)
    out = Image.new("RGB", (img.width, img.height + strip), (255, 255, 255))
    out.paste(img.convert("RGB"), (0, 0))
    draw = ImageDraw.Draw(out)
    y = img.height + size // 2
    for seg in wrapped:
        draw.text((size // 2, y), seg, fill=(20, 20, 20), font=font)
        y += int(size * 1.35)
    return out


def _wrap(text: str, font: ImageFont.ImageFont | ImageFont.FreeTypeFont, width: float) -> list[str]:
    """Greedy word wrap by measured text width (a single over-long word gets its own line)."""
    out: list[str] = []
    for word in text.split():
        if out and font.getlength(out[-1] + " " + word) <= width:
            out[-1] += " " + word
        else:
            out.append(word)
    return out


def export_overlay_png(path: str | os.PathLike, overlay_rgb: np.ndarray, *, caption: str | None = None,
                       annotate: bool = True) -> Path:
    """Write the overlay as PNG atomically (see overlay_png_bytes); raises DiskFullError / SaveError."""
    return atomic_write_bytes(path, overlay_png_bytes(overlay_rgb, caption=caption, annotate=annotate),
                              what="the overlay image")

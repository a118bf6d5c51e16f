"""The Case tab: case header, guardrail banner, the image and the result panel side by side."""

from __future__ import annotations

import html

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QScrollArea,
    QSizePolicy,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from app.ui.banners import GuardrailBanner
from app.ui.case_view import CaseView
from app.ui.document import CaseDocument
from app.ui.feedback_panel import FeedbackPanel
from app.ui.result_panel import ResultPanel

PANEL_WIDTH = 370


class CasePage(QWidget):
    """Composes the widgets that show one case; each is handed the same ``document``."""

    def __init__(self, document: CaseDocument, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.document = document
        self.header = QLabel()
        self.header.setObjectName("caseHeader")
        self.header.setTextFormat(Qt.TextFormat.RichText)
        self.meta = QLabel()
        self.meta.setObjectName("hint")
        # Long names and DICOM details are cut rather than widen the window: the header keeps its width while
        # there is room, the details line takes what is left.
        self.header.setMinimumWidth(40)
        self.meta.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.meta.setMinimumWidth(40)
        head = QFrame()
        head.setObjectName("caseHead")
        hl = QHBoxLayout(head)
        hl.setContentsMargins(12, 6, 12, 6)
        hl.addWidget(self.header)
        hl.addSpacing(12)
        hl.addWidget(self.meta, 1)

        self.banner = GuardrailBanner()
        self.view = CaseView(document)
        self.result = ResultPanel(document)
        self.feedback = FeedbackPanel(document)
        self.result.extra.addWidget(self.feedback)
        scroll = QScrollArea()
        scroll.setWidget(self.result)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setMinimumWidth(PANEL_WIDTH)
        scroll.setMaximumWidth(int(PANEL_WIDTH * 1.5))
        self.scroll = scroll

        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.setObjectName("caseSplitter")
        self.splitter.addWidget(self.view)
        self.splitter.addWidget(scroll)
        self.splitter.setStretchFactor(0, 1)
        self.splitter.setStretchFactor(1, 0)
        self.splitter.setCollapsible(0, False)
        self.splitter.setCollapsible(1, False)

        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(0)
        lay.addWidget(head)
        lay.addWidget(self.banner)
        lay.addWidget(self.splitter, 1)

        document.imageChanged.connect(self._on_image)
        document.warningsChanged.connect(self._on_warnings)
        document.resultChanged.connect(self._on_image)
        self._on_image()

    def _on_image(self) -> None:
        doc = self.document
        if doc.path is None:
            self.header.setText("No case open")
            self.meta.setText("")
            return
        self.header.setText(html.escape(doc.name))
        parts = []
        rad = doc.radiograph
        res = doc.result
        ident = identification_text(getattr(rad, "meta", None) or {}) if rad is not None else ""
        if not ident and res is not None and res.identification:
            ident = identification_text(res.identification)
        if ident:
            self.header.setText(f"{html.escape(ident)}&nbsp;&nbsp;<span style='font-weight:400'>"
                                f"{html.escape(doc.name)}</span>")
        self.header.setToolTip(f"{ident}  {doc.name}".strip())
        if rad is not None:
            parts.append(rad.format)
            meta = getattr(rad, "meta", {}) or {}
            for key in ("Modality", "BodyPartExamined", "ViewPosition", "PatientSex", "StudyDate"):
                if meta.get(key):
                    parts.append(f"{key_label(key)} {tag_value(key, meta[key])}".strip())
            parts.append(f"{rad.pixels.shape[1]} × {rad.pixels.shape[0]} px")
        if res is not None and res.from_history:
            parts.append(f"from history, classified {res.created[:16].replace('T', ' ')} UTC")
        self.meta.setText("  ·  ".join(parts))
        self.meta.setToolTip(str(doc.path))

    def _on_warnings(self) -> None:
        doc = self.document
        self.banner.show_warnings(doc.warnings, held_back=not doc.result_allowed)


def identification_text(values: dict) -> str:
    """"DOE, JANE · ID 12345 · 45 y · Acc. A-778": the DICOM identification as radiology software shows it
    (from Radiograph.meta tag names or app.core.dicomtags.identification keys); '' when there is none."""
    from app.core.dicomtags import age_text, person_name

    get = lambda *keys: next((str(values[k]).strip() for k in keys if values.get(k)), "")  # noqa: E731
    name, pid = person_name(get("PatientName", "patient_name")), get("PatientID", "patient_id")
    age, acc = age_text(get("PatientAge", "patient_age")), get("AccessionNumber", "accession_number")
    if age in ("0 y",):  # an anonymised placeholder, not an age
        age = ""
    parts = [name, f"ID {pid}" if pid else "", f"age {age}" if age else "", f"Acc. {acc}" if acc else ""]
    return " · ".join(p for p in parts if p)


def tag_value(key: str, value: str) -> str:
    """DICOM values as people read them: dates as YYYY-MM-DD, ages as "45 y"."""
    v = str(value).strip()
    if key == "StudyDate" and len(v) == 8 and v.isdigit():
        return f"{v[:4]}-{v[4:6]}-{v[6:]}"
    if key == "PatientAge" and len(v) == 4 and v[:3].isdigit() and v[3] in "DWMY":
        return f"{int(v[:3])} {dict(D='days', W='weeks', M='months', Y='y')[v[3]]}"
    if key == "PatientSex":
        return {"F": "female", "M": "male", "O": "other"}.get(v.upper(), v)
    return v


def key_label(key: str) -> str:
    return {"Modality": "", "BodyPartExamined": "", "ViewPosition": "view", "PatientAge": "age",
            "PatientSex": "sex", "StudyDate": "study"}.get(key, key).strip() or ""

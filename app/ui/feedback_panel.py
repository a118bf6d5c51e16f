"""Clinician feedback on the open case: confirm or correct the label, with a note."""

from __future__ import annotations

import html

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QComboBox,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.ui.document import CaseDocument
from fl.classes import CLASS_LABELS, CLASSES

EXPLANATION = (
    "Labelled cases are copied into this workstation's <b>local labelled set</b> (FedXray data folder, "
    "by class) for federated training later. The images stay on this computer and are never sent anywhere; "
    "only model updates leave it."
)


def _when(iso: str | None) -> str:
    from datetime import datetime

    try:
        return datetime.fromisoformat(iso).astimezone().strftime("%Y-%m-%d %H:%M") if iso else ""
    except ValueError:
        return iso or ""


class FeedbackPanel(QGroupBox):
    """Give the image its label; emits ``submitted(class_name, note, reason)``.

    The list starts empty (the clinician chooses, the model's answer is not pre-selected); an image labelled
    before shows its label with who and when; a case shown despite guardrail warnings needs a typed reason.
    """

    submitted = Signal(str, str, str)

    def __init__(self, document: CaseDocument, parent: QWidget | None = None) -> None:
        super().__init__("Your assessment", parent)
        self.document = document
        self.label = QComboBox()
        self.label.setObjectName("feedbackLabel")
        self.label.setPlaceholderText("Choose the correct finding…")
        for name in CLASSES:
            self.label.addItem(CLASS_LABELS[name], name)
        self.label.setCurrentIndex(-1)
        self.note = QLineEdit()
        self.note.setPlaceholderText("Optional note (e.g. confirmed by CT)")
        self.note.setObjectName("feedbackNote")
        self.reason = QLineEdit()
        self.reason.setObjectName("feedbackReason")
        self.reason.setPlaceholderText("Required: why this label is right although the image was flagged")
        self.reason_hint = QLabel("This result is <b>outside the intended use</b> (shown despite the guardrail "
                                  "warnings). It enters the labelled set only with a reason.")
        self.reason_hint.setObjectName("reasonHint")
        self.reason_hint.setWordWrap(True)
        self.button = QPushButton("Save label")
        self.button.setObjectName("feedbackButton")
        self.button.setDefault(False)
        self.status = QLabel()
        self.status.setObjectName("feedbackStatus")
        self.status.setWordWrap(True)
        explain = QLabel(EXPLANATION)
        explain.setObjectName("hint")
        explain.setWordWrap(True)

        row = QHBoxLayout()
        row.addWidget(QLabel("Correct label"))
        row.addWidget(self.label, 1)
        lay = QVBoxLayout(self)
        lay.setSpacing(8)
        lay.addWidget(self.status)
        lay.addLayout(row)
        lay.addWidget(self.note)
        lay.addWidget(self.reason_hint)
        lay.addWidget(self.reason)
        lay.addWidget(self.button)
        lay.addWidget(explain)

        self.label.currentIndexChanged.connect(self._update_button)
        self.reason.textChanged.connect(self._update_button)
        self.button.clicked.connect(self._submit)
        document.resultChanged.connect(self._on_result)
        document.caseStored.connect(self._on_result)
        self._on_result()

    @property
    def needs_reason(self) -> bool:
        res = self.document.result
        return res is not None and bool(res.guardrails)

    def _on_result(self) -> None:
        res = self.document.result
        self.setVisible(res is not None)  # nothing to assess without a result
        self.setEnabled(res is not None and res.case_id is not None)
        if res is None:
            self.status.setText("")
            return
        # The image's existing label, else nothing: the model's answer is not offered as the default.
        self.label.setCurrentIndex(self.label.findData(res.feedback_label) if res.feedback_label else -1)
        self.note.setText(res.feedback_note or "")
        self.reason.setText(res.feedback_reason or "")
        self.reason.setVisible(self.needs_reason)
        self.reason_hint.setVisible(self.needs_reason)
        self._show_status(res.feedback_label)
        self._update_button()

    def _show_status(self, label: str | None, replaced: str | None = None) -> None:
        res = self.document.result
        self.status.setProperty("done", bool(label))
        self.status.style().unpolish(self.status)
        self.status.style().polish(self.status)
        if label:
            who = f" by {html.escape(res.feedback_by)}" if res is not None and res.feedback_by else ""
            when = f" on {_when(res.feedback_at)}" if res is not None and res.feedback_at else ""
            was = (f" It replaces <b>{html.escape(CLASS_LABELS.get(replaced, replaced))}</b>."
                   if replaced and replaced != label else "")
            self.status.setText(f"✔ This image is labelled <b>{html.escape(CLASS_LABELS.get(label, label))}</b>"
                                f"{who}{when} — in the local labelled set.{was}")
        else:
            self.status.setText("Not labelled yet.")

    def _update_button(self, *_args) -> None:
        res = self.document.result
        chosen = self.label.currentData() if self.label.currentIndex() >= 0 else None
        if res is None or chosen is None:
            self.button.setText("Save label")
        elif res.feedback_label and chosen != res.feedback_label:
            self.button.setText(f"Replace label ({CLASS_LABELS[res.feedback_label]} → {CLASS_LABELS[chosen]})")
        elif res.feedback_label:
            self.button.setText("Save label and note")  # the same label: only the note or reason changes
        elif chosen == CLASSES[res.predicted]:
            self.button.setText("Confirm finding")
        else:
            self.button.setText("Save corrected label")
        ok = chosen is not None and (not self.needs_reason or bool(self.reason.text().strip()))
        self.button.setEnabled(ok)

    def _submit(self) -> None:
        if self.label.currentIndex() < 0:
            return
        self._previous = self.document.result.feedback_label if self.document.result is not None else None
        self.submitted.emit(self.label.currentData(), self.note.text().strip(), self.reason.text().strip())

    def saved(self, label: str) -> None:
        """Called once the label is stored (the document's result carries who and when)."""
        self._show_status(label, getattr(self, "_previous", None))
        self._update_button()

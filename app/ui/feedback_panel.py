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

from app.core.findings import CLASS_LABELS, CLASSES
from app.ui.document import CaseDocument

EXPLANATION = (
    "Labelled cases are copied into this workstation's <b>local labelled set</b> (FedXray data folder, "
    "by class) for federated training later. The images stay on this computer and are never sent anywhere; "
    "only model updates leave it."
)


class FeedbackPanel(QGroupBox):
    """Confirm the model's finding or give the correct one; emits ``submitted(class_name, note)``."""

    submitted = Signal(str, str)

    def __init__(self, document: CaseDocument, parent: QWidget | None = None) -> None:
        super().__init__("Your assessment", parent)
        self.document = document
        self.label = QComboBox()
        self.label.setObjectName("feedbackLabel")
        for name in CLASSES:
            self.label.addItem(CLASS_LABELS[name], name)
        self.note = QLineEdit()
        self.note.setPlaceholderText("Optional note (e.g. confirmed by CT)")
        self.note.setObjectName("feedbackNote")
        self.button = QPushButton("Confirm finding")
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
        lay.addLayout(row)
        lay.addWidget(self.note)
        lay.addWidget(self.button)
        lay.addWidget(self.status)
        lay.addWidget(explain)

        self.label.currentIndexChanged.connect(self._update_button)
        self.button.clicked.connect(self._submit)
        document.resultChanged.connect(self._on_result)
        document.caseStored.connect(self._on_result)
        self._on_result()

    def _on_result(self) -> None:
        res = self.document.result
        self.setVisible(res is not None)  # nothing to assess without a result
        self.setEnabled(res is not None and res.case_id is not None)
        if res is None:
            self.status.setText("")
            return
        chosen = res.feedback_label or CLASSES[res.predicted]
        self.label.setCurrentIndex(max(0, self.label.findData(chosen)))
        self.note.setText(res.feedback_note or "")
        self._show_status(res.feedback_label)
        self._update_button()

    def _show_status(self, label: str | None) -> None:
        self.status.setProperty("done", bool(label))
        self.status.style().unpolish(self.status)
        self.status.style().polish(self.status)
        if label:
            self.status.setText(f"✔ Labelled <b>{html.escape(CLASS_LABELS.get(label, label))}</b> — in the "
                                "local labelled set.")
        else:
            self.status.setText("Not labelled yet.")

    def _update_button(self, *_args) -> None:
        res = self.document.result
        if res is not None and self.label.currentData() == CLASSES[res.predicted]:
            self.button.setText("Confirm finding")
        else:
            self.button.setText("Save corrected label")

    def _submit(self) -> None:
        self.submitted.emit(self.label.currentData(), self.note.text().strip())

    def saved(self, label: str) -> None:
        """Called once the label is stored."""
        self._show_status(label)

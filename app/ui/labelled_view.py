"""The local labelled set: counts per class and patients, each image with its label, who gave it and when."""

from __future__ import annotations

import html
from datetime import datetime

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QColor, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMessageBox,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.ui.style import CLASS_COLOURS
from fl.classes import CLASS_LABELS, CLASSES

THUMB = 56
COLUMNS = ("", "Label", "Labelled by", "When", "Patient (pseudonym)", "Reason (outside the intended use)",
           "Replaced", "Case")


def replaced_text(replaced: str) -> str:
    """"Covid by alice at 2026-11-28T12:52:58+00:00" (manifest) -> "COVID-19 (alice, 2026-11-28 13:52)"."""
    label, _, rest = replaced.partition(" by ")
    who, _, when = rest.rpartition(" at ")
    if not rest or not who:
        return replaced
    return f"{CLASS_LABELS.get(label, label)} ({who}, {_local(when)})"


def _local(iso: str) -> str:
    try:
        return datetime.fromisoformat(iso).astimezone().strftime("%Y-%m-%d %H:%M") if iso else "—"
    except ValueError:
        return iso


class LabelledView(QWidget):
    """Shows a LabelledSet (read in a worker); emits ``openRequested(case_id)`` to review a case."""

    openRequested = Signal(object)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.labelled = self.history = self.runner = None
        self.rows: list = []  # (LabelledEntry, thumbnail PNG bytes | None)
        self.summary = QLabel()
        self.summary.setObjectName("statsSummary")
        self.summary.setTextFormat(Qt.TextFormat.RichText)
        self.summary.setWordWrap(True)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setObjectName("labelledTable")
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setAlternatingRowColors(True)
        self.table.setIconSize(QSize(THUMB, THUMB))
        self.table.setShowGrid(False)
        self.table.verticalHeader().hide()
        self.table.verticalHeader().setDefaultSectionSize(THUMB + 8)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(5, QHeaderView.ResizeMode.Stretch)
        self.table.setColumnWidth(0, THUMB + 12)
        self.open_button = QPushButton("Review case")
        self.open_button.setObjectName("primary")
        self.remove_button = QPushButton("Remove from the set…")
        self.refresh_button = QPushButton("Refresh")
        note = QLabel("One label per image (its pixels' SHA-256): relabelling an image replaces its label and the "
                      "table says which label it replaced. These images never leave this computer; federated "
                      "training shares only model updates computed from them.")
        note.setObjectName("hint")
        note.setWordWrap(True)
        buttons = QHBoxLayout()
        buttons.addWidget(note, 1)
        buttons.addWidget(self.refresh_button)
        buttons.addWidget(self.remove_button)
        buttons.addWidget(self.open_button)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(12, 12, 12, 12)
        lay.setSpacing(8)
        lay.addWidget(self.summary)
        lay.addWidget(self.table, 1)
        lay.addLayout(buttons)

        self.refresh_button.clicked.connect(self.refresh)
        self.open_button.clicked.connect(self._open_selected)
        self.remove_button.clicked.connect(self._remove_selected)
        self.table.doubleClicked.connect(lambda _ix: self._open_selected())
        self.table.itemSelectionChanged.connect(self._update_buttons)
        self._update_buttons()

    def set_stores(self, labelled, history, runner) -> None:
        self.labelled, self.history, self.runner = labelled, history, runner
        self.refresh()

    # ---- loading (in a worker: every image is read for its thumbnail)
    def refresh(self) -> None:
        if self.labelled is None or self.runner is None:
            self.show_rows([])
            self.summary.setText("The local labelled set is not available.")
            return
        self.runner.start("Reading the local labelled set", self.labelled.review, on_result=self.show_rows)

    def show_rows(self, rows: list) -> None:
        """Fill the table with (LabelledEntry, thumbnail) pairs and the counts."""
        self.rows = list(rows)
        self.table.setRowCount(len(self.rows))
        for i, (e, thumb) in enumerate(self.rows):
            icon = QTableWidgetItem()
            if thumb:
                pm = QPixmap()
                pm.loadFromData(thumb, "PNG")
                icon.setData(Qt.ItemDataRole.DecorationRole, pm.scaled(
                    THUMB, THUMB, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation))
            else:
                icon.setText("?")
                icon.setToolTip("The copy of this image cannot be read; remove it from the set.")
            cells = [icon, QTableWidgetItem(CLASS_LABELS.get(e.label, e.label)),
                     QTableWidgetItem(e.labelled_by or "unknown (before FedXray recorded it)"),
                     QTableWidgetItem(_local(e.labelled_at or e.added)),
                     QTableWidgetItem(e.patient_id[:16] + ("…" if len(e.patient_id) > 16 else "")),
                     QTableWidgetItem(e.reason), QTableWidgetItem(replaced_text(e.replaced)), QTableWidgetItem(e.case_id or "—")]
            cells[1].setForeground(QColor(CLASS_COLOURS.get(e.label, "#1d2935")))
            cells[4].setToolTip(e.patient_id)
            cells[0].setToolTip(e.filename)
            for j, c in enumerate(cells):
                self.table.setItem(i, j, c)
        self._summarise()
        self._update_buttons()

    def _summarise(self) -> None:
        counts = dict.fromkeys(CLASSES, 0)
        patients: dict[str, set] = {c: set() for c in CLASSES}
        for e, _ in self.rows:
            counts[e.label] += 1
            patients[e.label].add(e.patient_id)
        total_patients = len({e.patient_id for e, _ in self.rows})
        parts = [f"<b>{len(self.rows)}</b> images of <b>{total_patients}</b> patients"] + [
            f"<span style='color:{CLASS_COLOURS[c]}'>■</span> {html.escape(CLASS_LABELS[c])} <b>{counts[c]}</b> "
            f"({len(patients[c])} patients)" for c in CLASSES]
        self.summary.setText("&nbsp;&nbsp;&nbsp;".join(parts))

    # ---- actions
    def selected(self) -> list:
        return [self.rows[r.row()][0] for r in self.table.selectionModel().selectedRows()]

    def _update_buttons(self) -> None:
        chosen = self.selected()
        self.open_button.setEnabled(len(chosen) == 1 and chosen[0].case_id.isdigit())
        self.remove_button.setEnabled(bool(chosen))

    def _open_selected(self) -> None:
        chosen = self.selected()
        if len(chosen) == 1 and chosen[0].case_id.isdigit():
            self.openRequested.emit(int(chosen[0].case_id))

    def _remove_selected(self, *, confirm: bool = True) -> None:
        chosen = self.selected()
        if not chosen or self.runner is None:
            return
        if confirm and QMessageBox.question(
                self, "Remove from the labelled set",
                f"Remove {len(chosen)} image(s) from the local labelled set? Their labels are cleared in the "
                "history too (the change is logged); federated training will no longer use them.") \
                != QMessageBox.StandardButton.Yes:
            return
        self.remove([e.pixel_sha256 for e in chosen])

    def remove(self, shas: list[str]) -> None:
        """Take these images out of the set and clear their labels (in a worker), then refresh."""
        from app.core.labelled import remove_label

        def work():
            for sha in shas:
                remove_label(self.labelled, self.history, sha)

        self.runner.start("Removing images from the labelled set", work, on_result=lambda _r: self.refresh())

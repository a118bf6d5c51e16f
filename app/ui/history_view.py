"""The case history: a searchable, filterable, sortable table with thumbnails."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QSize, QSortFilterProxyModel, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from app.core.findings import CLASS_LABELS, CLASSES
from app.ui.style import CLASS_COLOURS

THUMB = 56
MODEL_COLUMN_WIDTH = 150  # px
COLUMNS = ("", "Date and time", "Patient", "File", "Finding", "Probability", "Model", "Clinician label", "Cautions",
           "User")
FILE_COLUMN, FINDING_COLUMN, MODEL_COLUMN, LABEL_COLUMN, CAUTIONS_COLUMN = 3, 4, 6, 7, 8


def caution_text(a) -> str:
    """The short marks of an app.core.assessment.Assessment for a table cell."""
    marks = (["outside intended use"] if a.outside_intended_use else []) + \
        (["⚠ explanation"] if a.explanation_warning else []) + (["≈ near tie"] if a.near_tie else [])
    return " · ".join(marks)


def patient_text(case) -> str:
    from app.ui.case_page import identification_text

    return identification_text({"patient_name": case.patient_name, "patient_id": case.patient_id,
                                "accession_number": case.accession_number})
PERIODS = {"All time": None, "Today": 0, "Last 7 days": 6, "Last 30 days": 29, "Last 12 months": 364}


def local_time(created: str) -> str:
    try:
        return datetime.fromisoformat(created).astimezone().strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return created


class HistoryModel(QAbstractTableModel):
    """Cases (app.core.history.Case) as table rows; thumbnails decoded on first display."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.cases: list[Any] = []
        self._thumbs: dict[int, QPixmap] = {}

    def set_cases(self, cases: list[Any]) -> None:
        self.beginResetModel()
        self.cases = list(cases)
        self._thumbs = {k: v for k, v in self._thumbs.items() if any(c.id == k for c in self.cases)}
        self.endResetModel()

    def rowCount(self, parent=QModelIndex()) -> int:  # noqa: B008 - Qt signature
        return 0 if parent.isValid() else len(self.cases)

    def columnCount(self, parent=QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section]
        return None

    def _thumb(self, case) -> QPixmap:
        pm = self._thumbs.get(case.id)
        if pm is None:
            pm = QPixmap()
            pm.loadFromData(case.thumbnail_png, "PNG")
            if not pm.isNull():
                pm = pm.scaled(THUMB, THUMB, Qt.AspectRatioMode.KeepAspectRatio,
                               Qt.TransformationMode.SmoothTransformation)
            self._thumbs[case.id] = pm
        return pm

    def data(self, index: QModelIndex, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        case, col = self.cases[index.row()], index.column()
        prob = float(case.probabilities.get(case.predicted, 0.0))
        if role == Qt.ItemDataRole.DecorationRole and col == 0:
            return self._thumb(case)
        if role == Qt.ItemDataRole.DisplayRole:
            a = case.assessment
            label = CLASS_LABELS.get(case.feedback_label, case.feedback_label or "—")
            if case.feedback_label:
                label += (" ✔" if case.feedback_label == case.predicted else "") + (
                    f" ({case.feedback_by})" if case.feedback_by else "")
            return [
                None, local_time(case.created), patient_text(case), case.file_name,
                a.finding[:1].upper() + a.finding[1:], f"{100 * prob:.1f} %", f"{case.model_name} {case.model_version}",
                label, caution_text(a), case.user,
            ][col]
        if role == Qt.ItemDataRole.UserRole:  # sort key
            a = case.assessment
            return [case.created, case.created, patient_text(case).lower(), case.file_name.lower(), case.predicted,
                    prob, case.model_version, case.feedback_label or "",
                    2 * a.outside_intended_use + a.explanation_warning + a.near_tie, case.user][col]
        if role == Qt.ItemDataRole.ForegroundRole and col == FINDING_COLUMN:
            if case.assessment.near_tie:
                return QColor("#7a4d00")
            return QColor(CLASS_COLOURS.get(case.predicted, "#1d2935"))
        if role == Qt.ItemDataRole.ForegroundRole and col == CAUTIONS_COLUMN and case.warnings:
            return QColor("#a3261b")
        if role == Qt.ItemDataRole.ToolTipRole:
            if col == CAUTIONS_COLUMN:
                lines = [m for _, m in case.assessment.cautions] + [f"Guardrail: {w}" for w in case.warnings]
                return "\n".join(lines) or None
            if col == LABEL_COLUMN and case.feedback_label:
                when = local_time(case.feedback_at) if case.feedback_at else ""
                parts = [f"Labelled by {case.feedback_by or 'unknown'} {when}".strip()]
                parts += [f"Note: {case.feedback_note}"] if case.feedback_note else []
                parts += [f"Reason (outside the intended use): {case.feedback_reason}"] if case.feedback_reason else []
                return "\n".join(parts)
            if col == FILE_COLUMN:
                return case.file_path or case.file_name
            if col == MODEL_COLUMN:
                return f"{case.model_name} {case.model_version}"
        if role == Qt.ItemDataRole.TextAlignmentRole and col == 5:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    def case_at(self, row: int):
        return self.cases[row]


class HistoryView(QWidget):
    """Shows the cases of a HistoryStore; emits ``openRequested(case_id)`` / ``deleteRequested(case_ids)``."""

    openRequested = Signal(object)
    deleteRequested = Signal(list)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.store = None
        self.search = QLineEdit()
        self.search.setObjectName("historySearch")
        self.search.setPlaceholderText("Search patient, ID, accession, file name, finding, model, label or note…  "
                                       "(Ctrl+F)")
        self.search.setClearButtonEnabled(True)
        self.finding = QComboBox()
        self.finding.addItem("All findings", None)
        for name in CLASSES:
            self.finding.addItem(CLASS_LABELS[name], name)
        self.period = QComboBox()
        self.period.addItems(list(PERIODS))
        self.labelled = QComboBox()
        for text, value in (("Labelled or not", None), ("Labelled by clinician", True), ("Not labelled", False)):
            self.labelled.addItem(text, value)
        self.count = QLabel()
        self.count.setObjectName("hint")

        self.model = HistoryModel(self)
        self.proxy = QSortFilterProxyModel(self)
        self.proxy.setSourceModel(self.model)
        self.proxy.setSortRole(Qt.ItemDataRole.UserRole)
        self.table = QTableView()
        self.table.setObjectName("historyTable")
        self.table.setModel(self.proxy)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(1, Qt.SortOrder.DescendingOrder)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setAlternatingRowColors(True)
        self.table.setIconSize(QSize(THUMB, THUMB))
        self.table.setShowGrid(False)
        self.table.verticalHeader().hide()
        self.table.verticalHeader().setDefaultSectionSize(THUMB + 8)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        # Long texts get fixed, adjustable widths; the file names get the rest of the window.
        for col, width in ((2, 130), (FINDING_COLUMN, 150), (LABEL_COLUMN, 160), (CAUTIONS_COLUMN, 140)):
            header.setSectionResizeMode(col, QHeaderView.ResizeMode.Interactive)
            self.table.setColumnWidth(col, width)
        header.setSectionResizeMode(FILE_COLUMN, QHeaderView.ResizeMode.Stretch)
        # The model's name is long and the same on most rows: a narrow column (full name in its tooltip), so the
        # file names get the room; a cut name keeps its start and its end (…_IM-0003.png).
        header.setSectionResizeMode(MODEL_COLUMN, QHeaderView.ResizeMode.Interactive)
        header.setHighlightSections(False)
        self.table.setColumnWidth(0, THUMB + 12)
        self.table.setColumnWidth(MODEL_COLUMN, MODEL_COLUMN_WIDTH)
        self.table.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.table.setWordWrap(False)  # one line per cell: a long name is elided, not wrapped over four lines

        self.open_button = QPushButton("Open case")
        self.open_button.setObjectName("primary")
        self.delete_button = QPushButton("Delete…")
        self.refresh_button = QPushButton("Refresh")

        filters = QHBoxLayout()
        filters.addWidget(self.search, 3)
        filters.addWidget(self.finding, 1)
        filters.addWidget(self.period, 1)
        filters.addWidget(self.labelled, 1)
        buttons = QHBoxLayout()
        buttons.addWidget(self.count, 1)
        buttons.addWidget(self.refresh_button)
        buttons.addWidget(self.delete_button)
        buttons.addWidget(self.open_button)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(12, 12, 12, 12)
        lay.setSpacing(8)
        lay.addLayout(filters)
        lay.addWidget(self.table, 1)
        lay.addLayout(buttons)

        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(200)
        self._debounce.timeout.connect(self.refresh)
        self.search.textChanged.connect(self._debounce.start)
        for combo in (self.finding, self.period, self.labelled):
            combo.currentIndexChanged.connect(self.refresh)
        self.refresh_button.clicked.connect(self.refresh)
        self.open_button.clicked.connect(self._open_selected)
        self.delete_button.clicked.connect(self._delete_selected)
        self.table.doubleClicked.connect(lambda _ix: self._open_selected())
        self.table.selectionModel().selectionChanged.connect(self._update_buttons)
        self._update_buttons()

    def set_store(self, store) -> None:
        self.store = store
        self.refresh()

    def refresh(self) -> None:
        """Query the history with the current filters (a few milliseconds even for thousands of cases)."""
        if self.store is None:
            self.model.set_cases([])
            self.count.setText("The history is not available.")
            return
        days = PERIODS[self.period.currentText()]
        since = None if days is None else date.today() - timedelta(days=days)
        cases = self.store.search(self.search.text().strip(), predicted=self.finding.currentData(),
                                  date_from=since, feedback=self.labelled.currentData())
        self.model.set_cases(cases)
        total = len(self.store)
        self.count.setText(f"{len(cases)} of {total} cases" if len(cases) != total else f"{total} cases")
        self._update_buttons()

    def selected_ids(self) -> list:
        rows = {self.proxy.mapToSource(ix).row() for ix in self.table.selectionModel().selectedRows()}
        return [self.model.case_at(r).id for r in sorted(rows)]

    def select_case(self, case_id) -> bool:
        for r, c in enumerate(self.model.cases):
            if c.id == case_id:
                self.table.selectRow(self.proxy.mapFromSource(self.model.index(r, 0)).row())
                return True
        return False

    def _update_buttons(self, *_args) -> None:
        n = len(self.table.selectionModel().selectedRows())
        self.open_button.setEnabled(n == 1)
        self.delete_button.setEnabled(n >= 1)

    def _open_selected(self) -> None:
        ids = self.selected_ids()
        if len(ids) == 1:
            self.openRequested.emit(ids[0])

    def _delete_selected(self) -> None:
        ids = self.selected_ids()
        if ids:
            self.deleteRequested.emit(ids)

    def focus_search(self) -> None:
        self.search.setFocus()
        self.search.selectAll()

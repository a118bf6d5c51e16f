"""Classify a whole folder in the background: progress, cancel, a sortable table and CSV export."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QDialog,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.ui.history_view import caution_text
from app.ui.notify import Notifier
from app.ui.style import CLASS_COLOURS
from app.ui.workers import TaskRunner, Worker
from fl.classes import CLASS_LABELS, CLASSES

SHORT = {"Covid": "COVID-19", "Normal": "Normal", "Pneumonia-Bacterial": "Bacterial", "Pneumonia-Viral": "Viral"}
COLUMNS = ("File", "Finding", "Probability", "Cautions", *(SHORT[c] for c in CLASSES), "Warnings / error")
FIRST_CLASS_COLUMN = 4


_WARM: set = set()  # (service, model folder) whose batch graph is built


class SortItem(QTableWidgetItem):
    """Table item that sorts by a hidden key (numbers as numbers)."""

    def __init__(self, text: str, key) -> None:
        super().__init__(text)
        self.key = key
        self.setFlags(self.flags() & ~Qt.ItemFlag.ItemIsEditable)

    def __lt__(self, other: QTableWidgetItem) -> bool:
        return (self.key, self.text()) < (getattr(other, "key", 0), other.text())


class BatchDialog(QDialog):
    """Non-modal window for one batch at a time; the main window stays usable meanwhile."""

    openRequested = Signal(str)  # a file to open in the case view
    finished_batch = Signal(int)  # number of rows

    def __init__(self, service, runner: TaskRunner, notifier: Notifier, *, history=None, batch_size: int = 8,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("FedXray — Classify a folder")
        self.resize(1100, 620)
        self.service, self.runner, self.notifier, self.history = service, runner, notifier, history
        self.batch_size = batch_size
        self.rows: list = []
        self.worker: Worker | None = None

        self.folder = QLineEdit()
        self.folder.setPlaceholderText("Folder with chest X-rays (PNG, JPEG, BMP, TIFF, DICOM)")
        browse = QPushButton("Browse…")
        browse.setAutoDefault(False)
        browse.clicked.connect(self._browse)
        self.record = QCheckBox("Record results in the history")
        self.record.setChecked(True)
        self.start_button = QPushButton("Start")
        self.start_button.setObjectName("primary")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.progress = QProgressBar()
        self.progress.setFormat("%v of %m images")
        self.progress.setValue(0)
        self.status = QLabel("Choose a folder and press Start. Every result is checked for where the model "
                             "looked (explanation warning) and for near ties; open a row to see its heatmap.")
        self.status.setObjectName("hint")
        self.status.setWordWrap(True)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setObjectName("batchTable")
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        for i, c in enumerate(CLASSES):
            self.table.horizontalHeaderItem(FIRST_CLASS_COLUMN + i).setToolTip(f"Probability of {CLASS_LABELS[c]}")
        self.table.setSortingEnabled(True)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setAlternatingRowColors(True)
        self.table.verticalHeader().hide()
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Interactive)
        header.setStretchLastSection(True)
        self.table.setColumnWidth(0, 300)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Interactive)
        self.table.setColumnWidth(1, 190)
        self.table.setWordWrap(False)
        self.export_button = QPushButton("Export CSV…")
        self.export_button.setEnabled(False)
        close = QPushButton("Close")
        close.clicked.connect(self.close)

        top = QHBoxLayout()
        top.addWidget(QLabel("Folder"))
        top.addWidget(self.folder, 1)
        top.addWidget(browse)
        run = QHBoxLayout()
        run.addWidget(self.record)
        run.addStretch(1)
        run.addWidget(self.cancel_button)
        run.addWidget(self.start_button)
        bottom = QHBoxLayout()
        bottom.addStretch(1)
        bottom.addWidget(self.export_button)
        bottom.addWidget(close)
        lay = QVBoxLayout(self)
        lay.addLayout(top)
        lay.addLayout(run)
        lay.addWidget(self.progress)
        lay.addWidget(self.status)
        lay.addWidget(self.table, 1)
        lay.addLayout(bottom)

        self.start_button.clicked.connect(lambda: self.start(self.folder.text()))
        self.cancel_button.clicked.connect(self.cancel)
        self.export_button.clicked.connect(self._export_dialog)
        self.table.cellDoubleClicked.connect(self._open_row)

    def showEvent(self, event) -> None:
        super().showEvent(event)
        self.warm_up()

    def warm_up(self) -> None:
        """Prepare the model's batch graph while the user chooses a folder (once per loaded model)."""
        key = (id(self.service), str(getattr(self.service, "model_dir", "")))
        if not self.service.loaded or key in _WARM:
            return
        _WARM.add(key)
        from app.ui.tasks import warm_up_batch

        self.runner.start("Preparing batch classification", warm_up_batch, self.service,
                          on_error=lambda _exc: _WARM.discard(key))  # the batch itself reports real errors

    def _browse(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Choose a folder of chest X-rays", self.folder.text())
        if path:
            self.folder.setText(path)

    # ---- running
    @property
    def running(self) -> bool:
        return self.worker is not None

    def start(self, folder: str | Path) -> None:
        """Classify every image in ``folder`` in a worker thread."""
        folder = Path(str(folder).strip()).expanduser()
        if self.running:
            return
        if not str(folder) or not folder.is_dir():
            self.notifier.error(f"{folder} is not a folder. Choose the folder that holds the images.")
            return
        if not self.service.loaded:
            self.notifier.error("The model is not loaded yet; wait until the status bar says it is ready.")
            return
        from app.core.batch import classify_folder

        self.folder.setText(str(folder))
        self.table.setRowCount(0)
        self.rows = []
        self.progress.setRange(0, 0)
        self.status.setText(f"Classifying the images in {folder}…")
        self.start_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.export_button.setEnabled(False)
        history = self.history if self.record.isChecked() else None
        self.worker = self.runner.start(
            f"Classifying the folder {folder.name}", classify_folder, folder, self.service,
            on_result=self._done, on_progress=self._progress, on_finished=self._finished,
            with_control=True, history=history, batch_size=self.batch_size)

    def cancel(self) -> None:
        if self.worker is not None:
            self.worker.cancel.set()
            self.status.setText("Cancelling after the current images…")
            self.cancel_button.setEnabled(False)

    def _progress(self, done: int, total: int) -> None:
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(done)

    def _done(self, rows: list) -> None:
        self.rows = list(rows)
        self._fill()
        errors = sum(1 for r in rows if r.error)
        cancelled = self.worker is not None and self.worker.cancel.is_set()
        text = f"{len(rows)} images classified" if not errors else f"{len(rows) - errors} images classified, " \
            f"{errors} could not be read"
        if cancelled:
            text += " (cancelled)"
        if not rows:
            text = "No images were found in this folder." if not cancelled else "Cancelled."
        self.status.setText(text + ".")
        self.export_button.setEnabled(bool(rows))
        self.finished_batch.emit(len(rows))

    def _finished(self) -> None:
        self.worker = None
        self.start_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        if self.progress.maximum() == 0:
            self.progress.setRange(0, 1)

    def _fill(self) -> None:
        self.table.setSortingEnabled(False)
        self.table.setRowCount(len(self.rows))
        for i, r in enumerate(self.rows):
            cells = [SortItem(r.file_name, r.file_name.lower())]
            if r.error:
                cells += [SortItem("—", ""), SortItem("", -1.0), SortItem("", 0)]
                cells += [SortItem("", -1.0) for _ in CLASSES]
                cells.append(SortItem(r.error, r.error))
                cells[-1].setForeground(QColor("#a12a1f"))
            else:
                a = r.assessment
                finding = a.finding[:1].upper() + a.finding[1:] if a is not None else CLASS_LABELS[r.predicted]
                cells.append(SortItem(finding, r.predicted))
                cells[-1].setForeground(QColor("#7a4d00" if a is not None and a.near_tie
                                               else CLASS_COLOURS[r.predicted]))
                cells.append(SortItem(f"{100 * r.probability:.1f} %", r.probability))
                marks = caution_text(a) if a is not None else ""
                cells.append(SortItem(marks, len(marks)))
                cells[-1].setToolTip("\n".join(m for _, m in a.cautions) if a is not None else "")
                if a is not None and a.outside_intended_use:
                    cells[-1].setForeground(QColor("#a3261b"))
                cells += [SortItem(f"{100 * r.probabilities[c]:.1f} %", r.probabilities[c]) for c in CLASSES]
                cells.append(SortItem("⚠ " + " ".join(r.warnings) if r.warnings else "", len(r.warnings)))
            cells[0].setToolTip(str(r.path))
            cells[1].setToolTip(cells[1].text())
            cells[-1].setToolTip(cells[-1].text())
            cells[0].setData(Qt.ItemDataRole.UserRole, str(r.path))
            for j, item in enumerate(cells):
                if j == 2 or FIRST_CLASS_COLUMN <= j < FIRST_CLASS_COLUMN + len(CLASSES):
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.table.setItem(i, j, item)
        self.table.setSortingEnabled(True)
        self.table.sortItems(0, Qt.SortOrder.AscendingOrder)
        self.table.setColumnWidth(0, max(260, min(380, self.table.sizeHintForColumn(0) + 8)))

    def _open_row(self, row: int, _col: int) -> None:
        item = self.table.item(row, 0)
        if item is not None:
            self.openRequested.emit(item.data(Qt.ItemDataRole.UserRole))

    # ---- export
    def _export_dialog(self) -> None:
        default = str(Path(self.folder.text() or ".") / "fedxray-batch.csv")
        path, _ = QFileDialog.getSaveFileName(self, "Export CSV", default, "CSV files (*.csv)")
        if path:
            self.export_csv(path)

    def export_csv(self, path: str | Path) -> None:
        """Write the table as CSV in a worker."""
        from app.core.batch import write_csv

        self.runner.start("Exporting the CSV", write_csv, list(self.rows), Path(path),
                          on_result=lambda p: self.notifier.info(f"Saved {p}."))

    def closeEvent(self, event) -> None:
        self.cancel()
        super().closeEvent(event)

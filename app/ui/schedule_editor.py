"""The schedule and limits editor: training windows (default: any time), GPU memory cap, CPU thread cap."""

from __future__ import annotations

import datetime as dt
import os

from PySide6.QtCore import Qt, QTime
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QRadioButton,
    QSpinBox,
    QTimeEdit,
    QVBoxLayout,
    QWidget,
)

from app.core import federation_settings as fs
from app.ui.federation_model import FederationModel

WEEKDAYS = frozenset(range(0, 5))
WEEKENDS = frozenset(range(5, 7))


def split_windows(windows) -> tuple[tuple[dt.time, dt.time] | None, bool, str]:
    """(weekday evening span or None, weekends all day, the other windows as text) of stored windows."""
    evening, weekends, rest = None, False, []
    for w in windows:
        if w.days == WEEKDAYS and not w.whole_day and evening is None:
            evening = (w.start, w.end)
        elif w.days == WEEKENDS and w.whole_day and not weekends:
            weekends = True
        else:
            rest.append(w)
    return evening, weekends, fs.format_windows(tuple(rest)) if rest else ""


class ScheduleEditor(QWidget):
    """Edits the training windows and limits of ``model.settings``; Save stores them through app.core."""

    def __init__(self, model: FederationModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.model = model
        self.any_time = QRadioButton("Any time (default)")
        self.windows_only = QRadioButton("Only in these training windows:")
        group = QButtonGroup(self)
        group.addButton(self.any_time)
        group.addButton(self.windows_only)
        self.evenings = QCheckBox("Weekdays, from")
        self.evening_start = QTimeEdit(QTime(19, 0))
        self.evening_end = QTimeEdit(QTime(7, 0))
        for t in (self.evening_start, self.evening_end):
            t.setDisplayFormat("HH:mm")
        self.weekends = QCheckBox("Weekends, all day")
        self.more = QLineEdit()
        self.more.setPlaceholderText("more windows, e.g. mon-fri 12:00-13:30; sun")
        self.more.setToolTip("Days: mon…sun, ranges (mon-fri), weekdays, weekends, daily; times HH:MM-HH:MM, an "
                             "end before the start runs into the next day; separate windows with ';'")  # fmt: skip

        evening_row = QHBoxLayout()
        evening_row.addWidget(self.evenings)
        evening_row.addWidget(self.evening_start)
        evening_row.addWidget(QLabel("to"))
        evening_row.addWidget(self.evening_end)
        evening_row.addWidget(QLabel("the next morning"))
        evening_row.addStretch(1)
        self.windows_box = QWidget()
        wl = QVBoxLayout(self.windows_box)
        wl.setContentsMargins(24, 0, 0, 0)
        wl.setSpacing(4)
        wl.addLayout(evening_row)
        wl.addWidget(self.weekends)
        wl.addWidget(self.more)

        cores = os.cpu_count() or 1
        self.cpu = QSpinBox()
        self.cpu.setRange(0, cores)
        self.cpu.setSpecialValueText(f"automatic ({fs.default_cpu_threads()} of {cores})")
        self.cpu.setSuffix(f" of {cores} cores")
        self.gpu_cap = QCheckBox("Limit to")
        self.gpu = QSpinBox()
        self.gpu.setRange(256, 1_048_576)
        self.gpu.setSingleStep(256)
        self.gpu.setValue(4096)
        self.gpu.setSuffix(" MB")
        gpu_row = QHBoxLayout()
        gpu_row.addWidget(self.gpu_cap)
        gpu_row.addWidget(self.gpu)
        gpu_row.addStretch(1)
        limits = QHBoxLayout()  # one row: CPU threads […]   GPU memory [ ] Limit to […]
        limits.addWidget(QLabel("CPU threads"))
        limits.addWidget(self.cpu)
        limits.addSpacing(18)
        limits.addWidget(QLabel("GPU memory"))
        limits.addLayout(gpu_row)

        self.note = QLabel()
        self.note.setObjectName("hint")
        self.note.setWordWrap(True)
        self.problem = QLabel()
        self.problem.setObjectName("formProblem")
        self.problem.setWordWrap(True)
        self.problem.hide()
        self.save = QPushButton("Save schedule and limits")
        self.save.setObjectName("primary")
        self.save.clicked.connect(self.apply)
        save_row = QHBoxLayout()
        save_row.addWidget(self.note, 1)
        save_row.addWidget(self.save, 0, Qt.AlignmentFlag.AlignBottom)

        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        choice = QHBoxLayout()
        choice.addWidget(self.any_time)
        choice.addWidget(self.windows_only)
        choice.addStretch(1)
        lay.addLayout(choice)
        lay.addWidget(self.windows_box)
        lay.addSpacing(4)
        lay.addLayout(limits)
        lay.addWidget(self.problem)
        lay.addLayout(save_row)

        self.windows_only.toggled.connect(self._enable)
        self.gpu_cap.toggled.connect(self.gpu.setEnabled)
        model.settingsChanged.connect(self.load)
        model.busyChanged.connect(lambda: self.save.setEnabled(not model.busy))
        self.load()

    def _enable(self) -> None:
        self.windows_box.setEnabled(self.windows_only.isChecked())

    def load(self) -> None:
        """Show the stored settings (a damaged settings file is reported, the editor then starts from defaults)."""
        s = self.model.settings or fs.FederationSettings()
        evening, weekends, rest = split_windows(s.windows)
        self.any_time.setChecked(not s.windows)
        self.windows_only.setChecked(bool(s.windows))
        self.evenings.setChecked(evening is not None)
        if evening is not None:
            self.evening_start.setTime(QTime(evening[0].hour, evening[0].minute))
            self.evening_end.setTime(QTime(evening[1].hour, evening[1].minute))
        self.weekends.setChecked(weekends)
        self.more.setText(rest)
        self.cpu.setValue(s.cpu_threads or 0)
        self.gpu_cap.setChecked(s.gpu_memory_mb is not None)
        if s.gpu_memory_mb is not None:
            self.gpu.setValue(s.gpu_memory_mb)
        self.gpu.setEnabled(self.gpu_cap.isChecked())
        self._enable()
        self._show_problem(self.model.settings_problem)
        self.note.setText("Training runs at low priority, so classification stays quick. A round still running "
                          "when a window closes is finished or abandoned cleanly, never half-sent.")  # fmt: skip

    def windows_text(self) -> str:
        """The windows as app.core.federation_settings.parse_windows reads them ("always" for any time)."""
        if self.any_time.isChecked():
            return "always"
        parts = []
        if self.evenings.isChecked():
            parts.append(f"weekdays {self.evening_start.time().toString('HH:mm')}-"
                         f"{self.evening_end.time().toString('HH:mm')}")  # fmt: skip
        if self.weekends.isChecked():
            parts.append("weekends")
        if self.more.text().strip():
            parts.append(self.more.text().strip())
        return "; ".join(parts)

    def changes(self) -> dict:
        """The edited settings as changes for federation_settings.update (FederationSettingsError if invalid)."""
        text = self.windows_text()
        if not text:
            raise fs.FederationSettingsError("Choose at least one training window, or “Any time”.")
        return {"windows": fs.parse_windows(text), "cpu_threads": self.cpu.value() or None,
                "gpu_memory_mb": self.gpu.value() if self.gpu_cap.isChecked() else None}  # fmt: skip

    def apply(self) -> None:
        try:
            changes = self.changes()
            (self.model.settings or fs.FederationSettings()).replace(**changes)  # validate before saving
        except fs.FederationSettingsError as exc:
            self._show_problem(str(exc))
            return
        self._show_problem(None)
        self.model.save_settings(changes)

    def _show_problem(self, text: str | None) -> None:
        self.problem.setText(text or "")
        self.problem.setVisible(bool(text))

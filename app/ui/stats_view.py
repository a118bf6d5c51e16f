"""Statistics: predicted classes per day or week from the local history, as a stacked bar chart."""

from __future__ import annotations

from datetime import date, timedelta

from PySide6.QtCharts import QBarCategoryAxis, QBarSet, QChart, QChartView, QStackedBarSeries, QValueAxis
from PySide6.QtCore import QMargins, Qt
from PySide6.QtGui import QColor, QPainter
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from app.ui.style import CLASS_COLOURS
from fl.classes import CLASS_LABELS, CLASSES

RANGES = {"day": {"Last 14 days": 13, "Last 30 days": 29, "Last 90 days": 89, "All time": None},
          "week": {"Last 12 weeks": 83, "Last 26 weeks": 181, "Last 52 weeks": 363, "All time": None}}


class StatsView(QWidget):
    """Chart of ``store.counts(period, since)``; call ``refresh()`` when the history changes."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.store = None
        self.period = QComboBox()
        self.period.addItem("Per day", "day")
        self.period.addItem("Per week", "week")
        self.range = QComboBox()
        self.range.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.summary = QLabel()
        self.summary.setObjectName("statsSummary")
        self.summary.setWordWrap(True)
        self.summary.setTextFormat(Qt.TextFormat.RichText)
        self.chart = self._new_chart()
        self.view = QChartView(self.chart)
        self.view.setRenderHint(QPainter.RenderHint.Antialiasing)
        self.view.setObjectName("statsChart")
        self.data: list = []
        self.cautions: dict[str, int] = {}

        top = QHBoxLayout()
        top.addWidget(QLabel("Findings"))
        top.addWidget(self.period)
        top.addWidget(self.range)
        top.addStretch(1)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(12, 12, 12, 12)
        lay.setSpacing(8)
        lay.addLayout(top)
        lay.addWidget(self.summary)
        lay.addWidget(self.view, 1)
        note = QLabel("Counts of the model's top finding for the cases classified on this workstation, "
                      "from the local history. They describe workload, not disease prevalence.")
        note.setObjectName("hint")
        note.setWordWrap(True)
        lay.addWidget(note)

        self.period.currentIndexChanged.connect(self._fill_ranges)
        self.range.currentIndexChanged.connect(self.refresh)
        self._fill_ranges()

    def set_store(self, store) -> None:
        self.store = store
        self.refresh()

    def _fill_ranges(self) -> None:
        self.range.blockSignals(True)
        self.range.clear()
        for text, days in RANGES[self.period.currentData()].items():
            self.range.addItem(text, days)
        self.range.blockSignals(False)
        self.refresh()

    def refresh(self) -> None:
        period = self.period.currentData()
        days = self.range.currentData()
        since = None if days is None else date.today() - timedelta(days=days)
        self.data = self.store.counts(period, since) if self.store is not None else []
        self.cautions = self.store.caution_counts(since) if self.store is not None else {}
        if since is not None and self.store is not None:
            self.data = _pad(self.data, since, period)
        self._draw(period)

    def _new_chart(self) -> QChart:
        chart = QChart()
        chart.setAnimationOptions(QChart.AnimationOption.NoAnimation)
        chart.legend().setAlignment(Qt.AlignmentFlag.AlignBottom)
        chart.setMargins(QMargins(8, 8, 8, 8))
        chart.setBackgroundRoundness(6)
        return chart

    def _draw(self, period: str) -> None:
        # A fresh chart each time: QtCharts leaves ghosts of removed axes behind otherwise.
        old, chart = self.chart, self._new_chart()
        self.chart = chart
        self.view.setChart(chart)
        old.deleteLater()
        series = QStackedBarSeries()
        totals = dict.fromkeys(CLASSES, 0)
        for name in CLASSES:
            bar = QBarSet(CLASS_LABELS[name])
            bar.setColor(QColor(CLASS_COLOURS[name]))
            bar.setBorderColor(QColor(CLASS_COLOURS[name]))
            for _start, counts in self.data:
                bar.append(counts.get(name, 0))
                totals[name] += counts.get(name, 0)
            series.append(bar)
        series.setBarWidth(0.7)
        chart.addSeries(series)
        fmt = "%d %b" if period == "day" else "wk %d %b"
        labels = [start.strftime(fmt) for start, _ in self.data]
        x = QBarCategoryAxis()
        x.append(labels or [""])
        if len(labels) > 16:
            x.setLabelsAngle(-60)
        y = QValueAxis()
        peak = max((sum(c.values()) for _, c in self.data), default=0)
        step = max(1, -(-peak // 5))  # whole cases per grid line, at most ~6 lines
        top = step * (-(-(peak + 1) // step))  # headroom above the highest bar
        y.setRange(0, top)
        y.setLabelFormat("%d")
        y.setTickCount(top // step + 1)
        y.setTitleText("cases")
        chart.addAxis(x, Qt.AlignmentFlag.AlignBottom)
        chart.addAxis(y, Qt.AlignmentFlag.AlignLeft)
        series.attachAxis(x)
        series.attachAxis(y)
        chart.setTitle(f"Top finding per {'day' if period == 'day' else 'week'}")
        total = sum(totals.values())
        parts = [f"<b>{total}</b> cases"] + [
            f"<span style='color:{CLASS_COLOURS[n]}'>■</span> {CLASS_LABELS[n]} <b>{totals[n]}</b>"
            for n in CLASSES]
        text = "&nbsp;&nbsp;&nbsp;".join(parts)
        c = self.cautions
        if c:
            text += (f"<br><span style='color:#a3261b'><b>{c.get('outside_intended_use', 0)}</b> outside the "
                     f"intended use</span> (shown despite guardrail warnings)&nbsp;&nbsp;&nbsp;⚠ "
                     f"<b>{c.get('explanation_warning', 0)}</b> with an explanation warning&nbsp;&nbsp;&nbsp;≈ "
                     f"<b>{c.get('near_tie', 0)}</b> near ties")
        self.summary.setText(text)

    def totals(self) -> dict[str, int]:
        out = dict.fromkeys(CLASSES, 0)
        for _start, counts in self.data:
            for k in CLASSES:
                out[k] += counts.get(k, 0)
        return out


def _pad(data: list, since: date, period: str) -> list:
    """Add empty periods from ``since`` to today so the time axis is continuous."""
    step = timedelta(days=7 if period == "week" else 1)
    start = since - timedelta(days=since.weekday()) if period == "week" else since
    end = date.today()
    have = dict(data)
    out, d = [], start
    while d <= end:
        out.append((d, have.get(d, dict.fromkeys(CLASSES, 0))))
        d += step
    extra = [(k, v) for k, v in data if k < start or k > end]
    return sorted(extra + out)


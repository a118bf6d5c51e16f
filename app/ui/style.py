"""The look: one calm light theme (Fusion + a small style sheet) and the class colours used everywhere."""

from __future__ import annotations

from PySide6.QtGui import QColor, QFont, QPalette
from PySide6.QtWidgets import QApplication

ACCENT = "#1f5f99"
DISABLED_TEXT = "#a3acb5"
CLASS_COLOURS = {
    "Covid": "#c0392b",
    "Normal": "#2e8b57",
    "Pneumonia-Bacterial": "#d4880f",
    "Pneumonia-Viral": "#7b4fa0",
}

STYLE_SHEET = f"""
QMainWindow, QDialog {{ background: #f4f6f8; }}
QToolBar {{ background: #ffffff; border: none; border-bottom: 1px solid #d9dee3; spacing: 2px; padding: 3px 6px; }}
QToolBar QToolButton {{ padding: 4px 8px; border-radius: 4px; color: #1d2935; }}
QToolBar QToolButton:hover {{ background: #e8eef5; }}
QToolBar QToolButton:checked {{ background: #dbe7f3; }}
QToolBar QToolButton:disabled {{ color: {DISABLED_TEXT}; }}
QTabWidget::pane {{ border: none; border-top: 1px solid #d9dee3; }}
QTabBar::tab {{ padding: 7px 18px; margin-right: 2px; background: transparent; color: #4a5663;
    border-bottom: 2px solid transparent; }}
QTabBar::tab:selected {{ color: {ACCENT}; border-bottom: 2px solid {ACCENT}; font-weight: 600; }}
QGroupBox {{ background: #ffffff; border: 1px solid #d9dee3; border-radius: 6px; margin-top: 16px;
    padding: 8px 8px 8px 8px; font-weight: 600; color: #1d2935; }}
QGroupBox::title {{ subcontrol-origin: margin; left: 10px; top: 2px; padding: 0 2px; }}
QGroupBox QLabel, QGroupBox QCheckBox {{ font-weight: 400; }}
#resultPanel {{ background: #f4f6f8; }}
#findingCaption {{ color: #5b6773; font-size: 8.5pt; }}
#topFinding {{ font-size: 17pt; font-weight: 600; color: #1d2935; }}
#topProbability {{ font-size: 17pt; font-weight: 600; color: {ACCENT}; }}
#resultState {{ color: #4a5663; font-style: italic; }}
#probabilityValue {{ color: #1d2935; }}
QLabel[top="true"] {{ font-weight: 700; }}
QProgressBar#probabilityBar {{ border: none; border-radius: 3px; background: #e6eaee; }}
QProgressBar#probabilityBar::chunk {{ border-radius: 3px; background: #8fb3d6; }}
QProgressBar#probabilityBar[top="true"]::chunk {{ background: {ACCENT}; }}
QProgressBar#busyBar {{ border: none; background: #e6eaee; }}
QProgressBar#busyBar::chunk {{ background: {ACCENT}; }}
#modelLabel {{ color: #4a5663; }}
#demoBadge {{ background: #fff3cd; color: #7a4d00; border: 1px solid #e0b84c; border-radius: 3px;
    padding: 2px 6px; font-weight: 700; font-size: 8pt; }}
#hint {{ color: #5b6773; font-size: 8.5pt; }}
#topFinding[uncertain="true"] {{ font-size: 13pt; color: #7a4d00; }}
#outsideUse {{ background: #a3261b; color: white; font-weight: 700; border-radius: 3px; padding: 4px 6px; }}
#resultCautions {{ background: #fff4d6; color: #5c3b00; border: 1px solid #d9a520; border-radius: 3px;
    padding: 4px 6px; }}
#modelLimitation {{ color: #7a4d00; font-size: 8.5pt; }}
#legendText {{ color: #5b6773; font-size: 8pt; }}
#reasonHint {{ color: #a3261b; font-size: 8.5pt; }}
#feedbackStatus {{ color: #5b6773; }}
#feedbackStatus[done="true"] {{ color: #2e6b45; }}
#intendedUseBar {{ background: #e9eef4; border-top: 1px solid #cfd8e1; }}
#intendedUseText {{ color: #2a3a4a; }}
#guardrailBanner {{ background: #fff3cd; border-bottom: 1px solid #e0b84c; }}
#guardrailTitle {{ font-weight: 700; color: #5c3b00; }}
#guardrailBanner QLabel {{ color: #5c3b00; }}
#messageBar {{ border-bottom: 1px solid #d9dee3; background: #e8f1fb; }}
#messageBar[level="warning"] {{ background: #fff3cd; }}
#messageBar[level="error"] {{ background: #fbe3e1; }}
#messageIcon {{ font-size: 12pt; }}
#viewerCaption {{ background: #1b2229; color: #c9d2db; padding: 4px 8px; }}
#imageReadout {{ color: #5b6773; font-size: 8.5pt; }}
#caseHeader {{ font-size: 11pt; font-weight: 600; color: #1d2935; }}
QTableView {{ background: #ffffff; alternate-background-color: #f7f9fb; gridline-color: #e6eaee;
    selection-background-color: #dbe7f3; selection-color: #1d2935; border: 1px solid #d9dee3; }}
QHeaderView::section {{ background: #eef2f5; border: none; border-right: 1px solid #d9dee3;
    border-bottom: 1px solid #d9dee3; padding: 5px 6px; font-weight: 600; color: #33414f; }}
QPushButton {{ padding: 5px 14px; border: 1px solid #b8c3ce; border-radius: 4px; background: #ffffff; }}
QPushButton:hover {{ background: #eef3f8; }}
QPushButton:default, QPushButton#primary {{ background: {ACCENT}; color: white; border-color: {ACCENT}; }}
QPushButton:disabled, QPushButton#primary:disabled {{ color: #9aa5b1; background: #f1f3f5;
    border-color: #cfd6dd; }}
QDialogButtonBox {{ dialogbuttonbox-buttons-have-icons: 0; }}
QStatusBar {{ background: #ffffff; border-top: 1px solid #d9dee3; }}
QStatusBar QLabel#modelStatus {{ padding: 0 8px; color: #33414f; }}
#federationBody {{ background: #f4f6f8; }}
#fieldName {{ color: #5b6773; }}
#sectionState {{ color: #1d2935; }}
#privacyStatement {{ color: #33414f; }}
#roundHeadline {{ font-size: 13pt; font-weight: 600; color: #33414f; padding: 2px 0 4px 0; }}
#roundHeadline[level="busy"] {{ color: {ACCENT}; }}
#roundHeadline[level="warn"] {{ color: #8a5a00; }}
#roundHeadline[level="error"] {{ color: #a5281b; }}
#roundHeadline[level="off"] {{ color: #5b6773; }}
QLabel#step {{ padding: 3px 8px; border-radius: 10px; background: #eef2f5; color: #7a8692; }}
QLabel#step[state="done"] {{ background: #e3f1e8; color: #2e6b45; }}
QLabel#step[state="current"] {{ background: {ACCENT}; color: white; font-weight: 600; }}
#stepArrow {{ color: #9aa5b1; }}
QProgressBar#batchBar {{ border: 1px solid #cfd8e1; border-radius: 3px; background: #eef2f5; text-align: center;
    color: #1d2935; }}
QProgressBar#batchBar::chunk {{ background: #8fb3d6; border-radius: 2px; }}
#roundError, #formProblem, #wizardProblem {{ background: #fbe3e1; color: #7a1d12; border: 1px solid #eab2ab;
    border-radius: 4px; padding: 6px 8px; }}
#checkMark {{ font-size: 12pt; font-weight: 700; }}
#checkMark[level="ok"] {{ color: #2e8b57; }}
#checkMark[level="warn"] {{ color: #c77800; }}
#checkMark[level="fail"] {{ color: #c0392b; }}
#checkName {{ font-weight: 600; }}
QLabel[level="ok"] {{ color: #2e6b45; }}
QLabel[level="warn"] {{ color: #8a5a00; }}
QLabel[level="fail"] {{ color: #a5281b; }}
#fingerprint {{ background: #ffffff; border: 1px solid #cfd8e1; border-radius: 6px; padding: 10px 16px;
    color: #1d2935; letter-spacing: 1px; }}
QToolButton#federationIndicator {{ padding: 0 8px; border: none; color: #5b6773; }}
QToolButton#federationIndicator:hover {{ background: #e8eef5; }}
QToolButton#federationIndicator[level="idle"] {{ color: #2e6b45; }}
QToolButton#federationIndicator[level="busy"] {{ color: {ACCENT}; font-weight: 600; }}
QToolButton#federationIndicator[level="warn"] {{ color: #8a5a00; }}
QToolButton#federationIndicator[level="error"] {{ color: #a5281b; font-weight: 600; }}
"""


def apply(app: QApplication) -> None:
    """Fusion style with a light palette, a readable default font and the style sheet."""
    app.setStyle("Fusion")
    pal = app.palette()
    pal.setColor(QPalette.ColorRole.Window, QColor("#f4f6f8"))
    pal.setColor(QPalette.ColorRole.Base, QColor("#ffffff"))
    pal.setColor(QPalette.ColorRole.AlternateBase, QColor("#f7f9fb"))
    pal.setColor(QPalette.ColorRole.Highlight, QColor(ACCENT))
    pal.setColor(QPalette.ColorRole.Text, QColor("#1d2935"))
    pal.setColor(QPalette.ColorRole.WindowText, QColor("#1d2935"))
    pal.setColor(QPalette.ColorRole.ButtonText, QColor("#1d2935"))
    # The colours above apply to every colour group; a disabled menu entry or button must still look disabled.
    for role in (QPalette.ColorRole.Text, QPalette.ColorRole.WindowText, QPalette.ColorRole.ButtonText):
        pal.setColor(QPalette.ColorGroup.Disabled, role, QColor(DISABLED_TEXT))
    app.setPalette(pal)
    font = app.font()
    if font.pointSizeF() < 9.5:
        font.setPointSizeF(9.5)
    font.setStyleStrategy(QFont.StyleStrategy.PreferAntialias)
    app.setFont(font)
    app.setStyleSheet(STYLE_SHEET)

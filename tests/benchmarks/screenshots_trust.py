"""Screenshots of how results say how sure they are, on a real X server (xvfb-run, QT_QPA_PLATFORM=xcb).

    QT_QPA_PLATFORM=xcb xvfb-run -a -s "-screen 0 1400x900x24" .venv/bin/python \\
        tests/benchmarks/screenshots_trust.py OUT_DIR

A private workstation in a temporary folder, the bundled model, real images from ../shared/data: a result with an
explanation warning, a near tie, a result shown despite guardrail warnings (outside the intended use) with the
reason the label needs, a DICOM case header, the history, the statistics, a batch and the labelled-set view.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("FEDXRAY_SHARED_DATA", REPO.parent / "shared" / "data"))
EDGE = "Covid/cohen_p205_covid-19-pneumonia-progression-and-regression-day20.png"
NEAR_TIE = "Pneumonia-Bacterial/kermany_train_person1211_bacteria_3163.png"   # 4.5 points between the top two


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    home = Path(tempfile.mkdtemp(prefix="fedxray-trust-shots-"))
    for var in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME"):
        os.environ[var] = str(home / var.lower())
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    from PySide6.QtCore import QEventLoop
    from PySide6.QtWidgets import QApplication

    from app.ui.launch import make_app
    from app.ui.main_window import MainWindow

    app = make_app(["fedxray"])

    def spin(cond=lambda: False, timeout=1.0):
        t = time.time()
        while not cond() and time.time() - t < timeout:
            app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 30)
            time.sleep(0.01)
        return cond()

    w = MainWindow()
    w.resize(1400, 880)
    w.move(0, 0)
    w.show()
    assert spin(lambda: w.model.state in ("ready", "failed"), 300), "model did not load"

    def shot(name, widget=None):
        spin(timeout=0.8)
        target = widget or w
        target.screen().grabWindow(target.winId()).save(str(args.out / f"{name}.png"))
        print("saved", name, flush=True)

    def open_and_wait(path):
        w.open_image(path)
        assert spin(lambda: w.document.state in ("result", "failed", "blocked") and w.runner.active == 0, 120)

    def label(value, reason=""):
        fb = w.case_page.feedback
        spin(fb.isEnabled, 10)
        fb.label.setCurrentIndex(fb.label.findData(value))
        fb.reason.setText(reason)
        fb.button.click()
        spin(lambda: w.runner.active == 0, 30)

    open_and_wait(SHARED / "cxr" / EDGE)
    shot("warned-result")
    label("Covid")
    open_and_wait(SHARED / "cxr" / NEAR_TIE)
    shot("near-tie")
    label("Pneumonia-Bacterial")
    open_and_wait(SHARED / "dicom" / "CT_small.dcm")
    w.controller.insist()
    spin(lambda: w.document.state == "result" and w.runner.active == 0, 60)
    fb = w.case_page.feedback
    spin(fb.isEnabled, 10)
    fb.label.setCurrentIndex(fb.label.findData("Normal"))
    shot("outside-intended-use")
    bar = w.case_page.scroll.verticalScrollBar()
    bar.setValue(bar.maximum())
    shot("outside-intended-use-reason")
    bar.setValue(0)
    fb.reason.setText("QA phantom; kept to test the pipeline")
    fb.button.click()
    spin(lambda: w.runner.active == 0, 30)
    open_and_wait(SHARED / "dicom" / "RG1_UNCR.dcm")
    shot("dicom-identification")
    label("Normal")
    open_and_wait(SHARED / "cxr" / EDGE)   # the same image again: it shows the label it has; now changed
    label("Pneumonia-Viral")
    bar.setValue(bar.maximum())
    shot("relabelled")
    bar.setValue(0)
    w.controller.export_pdf(home / "report.pdf")   # the PDF of the warned, relabelled case, as page images
    spin(lambda: (home / "report.pdf").exists() and w.runner.active == 0, 30)
    import subprocess

    subprocess.run(["pdftoppm", "-png", "-r", "60", str(home / "report.pdf"), str(args.out / "report-page")],
                   check=False)
    w._refresh_history()
    w.tabs.setCurrentWidget(w.history_view)
    shot("history-cautions")
    w.tabs.setCurrentWidget(w.stats_view)
    shot("statistics-cautions")
    w.tabs.setCurrentWidget(w.labelled_view)
    w.labelled_view.refresh()
    spin(lambda: len(w.labelled_view.rows) == 4 and w.runner.active == 0, 30)
    shot("labelled-set")
    w.tabs.setCurrentWidget(w.case_page)
    dialog = w.show_batch()
    dialog.record.setChecked(False)
    dialog.move(60, 60)
    batch = home / "batch"
    batch.mkdir()
    for rel in (EDGE, NEAR_TIE):
        shutil.copy2(SHARED / "cxr" / rel, batch / Path(rel).name)
    for p in sorted((SHARED / "cxr" / "Normal").glob("*.png"))[:6]:
        shutil.copy2(p, batch / p.name)
    shutil.copy2(SHARED / "dicom" / "CT_small.dcm", batch / "CT_small.dcm")
    dialog.start(batch)
    spin(lambda: not dialog.running, 120)
    shot("batch-cautions", dialog)
    dialog.close()
    w.close()
    QApplication.quit()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Screenshots of the desktop app on a real X server (run under xvfb-run with QT_QPA_PLATFORM=xcb).

    QT_QPA_PLATFORM=xcb xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python \\
        tests/benchmarks/screenshots_app.py OUT_DIR [--model MODEL_DIR]

Uses a private workstation in a temporary folder. To give the history and statistics something to show, it
classifies real images from ../shared/data and records them with creation times spread over the last three
weeks (demonstration data; the dates are the only thing that is made up).
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("FEDXRAY_SHARED_DATA", REPO.parent / "shared" / "data"))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("--model", type=Path, help="model folder (default: the bundled one)")
    ap.add_argument("--cases", type=int, default=36)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    home = Path(tempfile.mkdtemp(prefix="fedxray-shots-"))
    for var in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME"):
        os.environ[var] = str(home / var.lower())
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    from app.core.models import ModelStore
    from app.core.settings import Preferences

    if args.model:
        installed = ModelStore().import_model(args.model)
        prefs = Preferences.load()
        prefs.model_id = installed.id
        prefs.save()

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
    w.resize(1440, 900)
    w.move(0, 0)
    w.show()
    assert spin(lambda: w.model.state in ("ready", "failed"), 300), "model did not load"
    print("model:", w.model.text, flush=True)

    # Demonstration history: real classifications, dates spread over three weeks.
    rng = random.Random(3)
    files = [p for c in ("Covid", "Normal", "Pneumonia-Bacterial", "Pneumonia-Viral")
             for p in sorted((SHARED / "cxr" / c).glob("*.png"))[5:5 + args.cases // 4]]
    now = datetime.now(UTC)
    for item in w.service.classify_many(files, batch_size=8, heatmaps=False):
        if isinstance(item, tuple):
            continue
        when = now - timedelta(days=rng.randint(1, 20), hours=rng.randint(0, 8))
        case = w.history.add(item, file_path=item.source, created=when)
        if rng.random() < 0.3:
            w.history.set_feedback(case.id, case.predicted, "")
    w._refresh_history()

    def shot(name, widget=None):
        spin(timeout=0.8)
        target = widget or w
        img = target.screen().grabWindow(target.winId())
        img.save(str(args.out / f"{name}.png"))
        print("saved", name, flush=True)

    def open_and_wait(path):
        w.open_image(path)
        assert spin(lambda: w.document.state in ("result", "failed", "blocked") and w.runner.active == 0, 120)

    open_and_wait(sorted((SHARED / "cxr" / "Pneumonia-Viral").glob("*.png"))[0])
    shot("main-xray")
    open_and_wait(SHARED / "dicom" / "RG1_UNCR.dcm")
    shot("main-dicom")
    w.act.preset_lung.trigger()                              # key 2: the toolbar's preset list follows
    shot("main-dicom-lung-preset")
    w.act.preset_default.trigger()
    w.document.set_overlay(side_by_side=True)
    shot("main-side-by-side")
    w.document.set_overlay(side_by_side=False)
    open_and_wait(SHARED / "dicom" / "CT_small.dcm")
    shot("guardrail-ct")
    from PySide6.QtCore import QPoint

    file_menu = w.menuBar().actions()[0].menu()              # Export is disabled while the result is held back
    file_menu.popup(w.mapToGlobal(QPoint(8, 4)))
    spin(timeout=0.5)
    shot("guardrail-ct-file-menu", file_menu)
    file_menu.close()
    from app.ui import menus

    about = menus.show_about(w)
    shot("about", about)
    about.close()
    w.tabs.setCurrentWidget(w.history_view)
    shot("history")
    w.tabs.setCurrentWidget(w.stats_view)
    shot("statistics")
    w.stats_view.period.setCurrentIndex(1)
    shot("statistics-weekly")
    w.tabs.setCurrentWidget(w.case_page)
    folder = SHARED / "cxr" / "Normal"
    dialog = w.show_batch()
    dialog.record.setChecked(False)
    dialog.move(120, 80)
    shot("batch-before-a-folder", dialog)
    import shutil

    batch_dir = home / "batch"
    batch_dir.mkdir()
    for p in sorted(folder.glob("*.png"))[:12]:
        shutil.copy2(p, batch_dir / p.name)
    (batch_dir / "scan-notes.png").write_text("not an image")
    dialog.start(batch_dir)
    spin(lambda: not dialog.running, 120)
    shot("batch", dialog)
    dialog.close()
    settings = w.show_settings()
    settings.move(200, 100)
    shot("settings", settings)
    settings.reject()
    w.close()
    QApplication.quit()
    return 0


if __name__ == "__main__":
    sys.exit(main())

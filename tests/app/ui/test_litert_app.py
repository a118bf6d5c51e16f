"""The app on a fresh workstation runs the bundled model with LiteRT: a whole session without TensorFlow.

The session runs in its own process (real widgets, offscreen), so that what the test process itself imported
does not count.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

SESSION = r"""
import json, sys, time
from pathlib import Path

from app.ui.launch import make_app

app = make_app(["fedxray"])
from app.ui.main_window import MainWindow

out = Path(sys.argv[1])
images = [Path(p) for p in sys.argv[2:]]


def wait(done, what, timeout=300):
    end = time.monotonic() + timeout
    while not done():
        app.processEvents()
        time.sleep(0.01)
        if time.monotonic() > end:
            raise SystemExit(f"timed out waiting for {what}")


w = MainWindow()
w.show()
wait(lambda: w.model.state in ("ready", "failed"), "the model")
results = []
for image in images:
    w.open_image(image)
    wait(lambda: w.document.state in ("result", "failed", "blocked") and w.runner.active == 0, image.name)
    if w.document.state == "blocked":  # guardrail warning: the clinician chooses "Show result anyway"
        w.controller.insist()
        wait(lambda: w.document.state in ("result", "failed") and w.runner.active == 0, image.name)
    results.append({"file": image.name, "state": w.document.state,
                    "probabilities": [float(p) for p in w.document.result.probabilities]})
for kind in ("pdf", "png"):
    target = out / f"export.{kind}"
    w.ask_save_path = lambda *args, target=target: str(target)
    getattr(w.act, f"export_{kind}").trigger()
    wait(lambda target=target: target.exists() and w.runner.active == 0, f"the {kind} export")
w.show_batch()
w.batch_dialog.start(images[0].parent)
wait(lambda: not w.batch_dialog.running and w.batch_dialog.rows, "the batch")
print(json.dumps({
    "engine": w.service.engine, "model": w.model.state, "notice": w.service.notice, "results": results,
    "batch_rows": len(w.batch_dialog.rows),
    "modules": sorted(m for m in ("tensorflow", "keras") if m in sys.modules),
}))
w.close()
"""


def test_open_classify_export_and_batch_without_tensorflow(tmp_path, cxr, dicom_dir):
    folder = tmp_path / "images"
    folder.mkdir()
    images = [shutil.copy(cxr["Covid"], folder), shutil.copy(dicom_dir / "RG1_UNCR.dcm", folder)]
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", XDG_CONFIG_HOME=str(tmp_path / "config"),
               XDG_DATA_HOME=str(tmp_path / "data"), XDG_CACHE_HOME=str(tmp_path / "cache"))
    run = subprocess.run([sys.executable, "-c", SESSION, str(tmp_path), *map(str, images)], capture_output=True,
                         text=True, env=env, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    session = json.loads(run.stdout.strip().splitlines()[-1])
    assert session["modules"] == [], "TensorFlow was imported during the session"
    assert (session["engine"], session["model"], session["notice"]) == ("litert", "ready", None)
    assert [r["state"] for r in session["results"]] == ["result", "result"]
    assert (tmp_path / "export.pdf").read_bytes().startswith(b"%PDF-")
    assert (tmp_path / "export.png").stat().st_size > 0 and session["batch_rows"] == 2

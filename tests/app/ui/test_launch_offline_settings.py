"""The real entry point, the offline guarantee, the real model loading path and the settings dialog."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from fl.classes import CLASSES
from tests.app.ui.helpers import wait_idle, wait_result

LAUNCH = textwrap.dedent("""
    import json, sys, time
    t0 = time.perf_counter()
    import app.ui.main_window as mw
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    seen = {}
    show = mw.MainWindow.show
    def recording_show(self):
        show(self)
        seen["tensorflow_at_show"] = "tensorflow" in sys.modules
        seen["title_at_show"] = self.windowTitle()
        seen["status_at_show"] = self.model_status.text()
    mw.MainWindow.show = recording_show

    def poll():
        ws = [w for w in QApplication.topLevelWidgets() if isinstance(w, mw.MainWindow)]
        if ws and ws[0].document.state in ("result", "failed") and ws[0].runner.active == 0:
            w = ws[0]
            seen.update(title=w.windowTitle(), status=w.model_status.text(), state=w.document.state,
                        shown=w.case_page.result.shown_probabilities(), intended=w.intended_use.isVisible(),
                        messages=[m.text for m in w.notifier.messages])
            w.close()
            QApplication.quit()
    timer = QTimer()
    timer.timeout.connect(poll)
    from app.ui.launch import make_app
    make_app(sys.argv[:1])
    timer.start(50)
    from app.cli import main
    code = main(sys.argv[1:])
    print("RESULT " + json.dumps(dict(seen, code=code)), flush=True)
""")


def test_fedxray_image_opens_the_window_before_tensorflow_and_classifies(use_tiny_model, cxr):
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", TF_CPP_MIN_LOG_LEVEL="2", TF_ENABLE_ONEDNN_OPTS="0")
    out = subprocess.run([sys.executable, "-c", LAUNCH, str(cxr["Normal"])], capture_output=True, text=True,
                         env=env, timeout=300, check=False)
    line = next((x for x in out.stdout.splitlines() if x.startswith("RESULT ")), None)
    assert line is not None, out.stderr[-3000:]
    seen = json.loads(line[len("RESULT "):])
    assert seen["code"] == 0
    assert seen["tensorflow_at_show"] is False  # the window was up before TensorFlow was imported
    assert seen["title_at_show"] in ("FedXray", f"FedXray — {cxr['Normal'].name}")
    assert seen["status_at_show"] in ("No model loaded", "Loading model…")
    assert seen["state"] == "result" and seen["intended"] is True
    assert seen["title"] == f"FedXray — {cxr['Normal'].name}"
    assert seen["status"] == f"Ready: {use_tiny_model.card.name} {use_tiny_model.card.version} (demonstration)"
    assert abs(sum(seen["shown"]) - 1.0) < 0.002


def test_offline_open_classify_label_export(qtbot, make_window, no_network, cxr, dicom_dir, tmp_path):
    # The model loads through the real path (worker thread, TensorFlow) while sockets are refused.
    from app.core.inference import InferenceService

    w = make_window(service=InferenceService(), load=True)
    assert w.model.state == "ready"
    for path in (cxr["Pneumonia-Viral"], dicom_dir / "RG1_UNCR.dcm"):
        w.open_image(path)
        assert wait_result(qtbot, w) == "result"
    fb = w.case_page.feedback
    qtbot.waitUntil(fb.isEnabled, timeout=10_000)  # once the case is in the history
    fb.label.setCurrentIndex(fb.label.findData(CLASSES[w.document.result.predicted]))  # starts empty
    w.case_page.feedback.button.click()
    wait_idle(qtbot, w)
    w.controller.export_pdf(tmp_path / "r.pdf")
    w.controller.export_png(tmp_path / "r.png")
    wait_idle(qtbot, w)
    assert (tmp_path / "r.pdf").stat().st_size > 1000 and (tmp_path / "r.png").stat().st_size > 1000
    assert no_network == []
    assert [m for m in w.notifier.messages if m.level == "error"] == []


def test_model_loads_in_the_background_with_visible_status(qtbot, make_window, use_tiny_model, cxr):
    from app.core.inference import InferenceService

    w = make_window(service=InferenceService())
    # The window is shown and usable while the model loads: open an image right away.
    assert w.model.state in ("none", "loading")
    w.open_image(cxr["Covid"])
    qtbot.waitUntil(lambda: w.model.state == "ready", timeout=120_000)
    assert w.model_status.text() == f"Ready: {use_tiny_model.card.name} {use_tiny_model.card.version} (demonstration)"
    assert wait_result(qtbot, w) == "result"  # the pending classification ran once the model was ready
    assert w.case_page.result.demo_badge.isVisible()
    assert use_tiny_model.card.version in w.case_page.result.model_label.text()
    legend = w.case_page.result.legend.ramp.pixmap()
    assert not legend.isNull() and legend.width() == 256


@pytest.fixture(scope="session")
def second_model(tmp_path_factory) -> Path:
    """Another real model folder (tiny network, version 0.0.2-test) to import from disk."""
    from fl.model import build_model
    from fl.modelfile import ModelCard, save_model

    out = tmp_path_factory.mktemp("import") / "tiny2"
    save_model(build_model("tiny", input_size=64), out,
               ModelCard(name="Second tiny network", version="0.0.2-test", arch="tiny", input_size=64,
                         scaling="tf", demo=False, description="for the settings test"))
    return out


def test_settings_import_a_model_choose_it_and_set_heatmap_defaults(qtbot, make_window, second_model, tmp_path):
    from app.core.inference import InferenceService
    from app.core.settings import Preferences

    window = make_window(service=InferenceService(), load=True)  # its own service: the model will change
    dialog = window.show_settings()
    before = dialog.models.count()
    # A folder that is not a model gets a clear message and changes nothing.
    (tmp_path / "junk").mkdir()
    dialog.import_model(tmp_path / "junk")
    wait_idle(qtbot, window)
    assert window.notifier.last.level == "error" and "junk" in window.notifier.last.text
    assert dialog.models.count() == before
    # The real model is checked, installed and selected.
    dialog.import_model(second_model)
    wait_idle(qtbot, window)
    assert dialog.models.count() == before + 1
    assert "0.0.2-test" in dialog.models.currentItem().text()
    assert "Second tiny network" in dialog.card.text()
    dialog.heat_visible.setChecked(False)
    dialog.heat_opacity.setValue(70)
    dialog.accept()
    qtbot.waitUntil(lambda: window.model.state == "ready" and window.model.card.version == "0.0.2-test",
                    timeout=120_000)
    saved = Preferences.load()
    assert saved.model_id == dialog.models.currentItem().data(256).id
    assert (saved.heatmap_visible, saved.heatmap_opacity) == (False, pytest.approx(0.70))
    assert (window.document.overlay_visible, window.document.overlay_opacity) == (False, pytest.approx(0.70))
    assert window.model_status.text() == "Ready: Second tiny network 0.0.2-test"
    assert np.isclose(window.case_page.result.opacity.value(), 70)

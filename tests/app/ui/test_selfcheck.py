"""The installation self-check (`fedxray --bundle-selfcheck`, app/ui/selfcheck.py) run from the source tree: the
real window offscreen, the bundled model, a sample classified and its PDF exported. tests/installer runs the
same against a built bundle."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
SAMPLE = sorted((REPO / "resources" / "samples").glob("*.png"))[0]


@pytest.mark.timeout(300)
def test_selfcheck_reports_the_window_the_model_and_the_classification(tmp_path):
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", XDG_CONFIG_HOME=str(tmp_path / "config"),
               XDG_DATA_HOME=str(tmp_path / "data"), XDG_CACHE_HOME=str(tmp_path / "cache"))  # fmt: skip
    report_path = tmp_path / "check.json"
    done = subprocess.run([sys.executable, str(REPO / "installer" / "fedxray_main.py"), "--bundle-selfcheck",
                           str(report_path), "--pdf", str(SAMPLE)], env=env, capture_output=True, text=True,
                          timeout=280)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(report_path.read_text())
    window = report["window"]
    assert report["ok"] and not report["timed_out"] and window["visible"]
    assert window["model_state"] == "ready" and window["document_state"] == "result"
    assert report["pdf"]["is_pdf"] and Path(report["screenshot"]).stat().st_size > 1000
    # The same image through the command line, in another process: the same probabilities.
    fedxray = Path(sys.executable).parent / "fedxray"
    cli = subprocess.run([str(fedxray), "classify", "--json", str(SAMPLE)], env=env, capture_output=True, text=True,
                         timeout=280)  # fmt: skip
    expected = json.loads(cli.stdout.strip().splitlines()[-1])["probabilities"]
    assert window["probabilities"] == pytest.approx(expected, abs=1e-5)

"""Helpers for the Qt tests: waiting for the real workers, reading what the window shows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from app.ui.imaging import qimage_to_rgb


def wait_result(qtbot, w, timeout=60_000):
    """Wait until the open case has a result (or failed / was held back) and every worker is done."""
    qtbot.waitUntil(lambda: w.document.state in ("result", "failed", "blocked") and w.runner.active == 0,
                    timeout=timeout)
    return w.document.state


def wait_idle(qtbot, w, timeout=60_000):
    qtbot.waitUntil(lambda: w.runner.active == 0, timeout=timeout)


def viewport_pixels(viewer) -> np.ndarray:
    """What the image viewer shows on screen, as (H, W, 3) uint8."""
    return qimage_to_rgb(viewer.viewport().grab().toImage())


def cli_classify(*paths: Path) -> dict[str, dict]:
    """`fedxray classify --json` run as a separate process (same XDG folders, so the same active model)."""
    exe = Path(sys.executable).with_name("fedxray")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", TF_ENABLE_ONEDNN_OPTS="0")
    out = subprocess.run([str(exe), "classify", "--json", *map(str, paths)], capture_output=True, text=True,
                         env=env, timeout=600, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    records = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    return {Path(r["file"]).name: r for r in records}

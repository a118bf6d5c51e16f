"""The frozen entry point's dispatch (installer/fedxray_main.py), run from the source tree: the hidden
`--fl-launcher` option reaches FedXray's ClientApp launcher (fl.launcher.command() uses it in a frozen bundle)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

MAIN = Path(__file__).resolve().parents[2] / "installer" / "fedxray_main.py"


def test_fl_launcher_option_runs_the_launcher():
    out = subprocess.run([sys.executable, str(MAIN), "--fl-launcher", "--help"], capture_output=True, text=True,
                         timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("usage: fl.launcher") and "{node,launch,worker}" in out.stdout


def test_the_launcher_command_of_a_frozen_app_uses_the_option(monkeypatch):
    from fl import launcher

    monkeypatch.setattr(sys, "frozen", True, raising=False)
    assert launcher.command("node", "--", "x") == [sys.executable, "--fl-launcher", "node", "--", "x"]

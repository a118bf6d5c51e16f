"""Installation self-check: `fedxray --bundle-selfcheck REPORT.json [--keyring] [--pdf] [IMAGE ...]`
(installer/fedxray_main.py; hidden, for IT and the bundle tests).

Opens the app as `fedxray [IMAGE ...]` does, waits until the main window is shown, the model has loaded and the
image on screen is classified (with --pdf: its PDF report exported), then writes REPORT.json and a screenshot
(REPORT.png) and quits; exit code 0 when all went well. With --keyring it also stores, reads back and deletes a
throw-away secret in the keyring (a locked keyring asks for its password). Opening an image records it in the
history like any case: give no IMAGE on a clinical workstation.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from PySide6.QtCore import QTimer
from PySide6.QtGui import QGuiApplication

from app.ui.launch import make_app

TIMEOUT = 300.0  # seconds; loading the model takes a few, a cold disk cache and 2 cores more


def _keyring_report(probe: bool) -> dict:
    """The keyring backend the app would use and, with `probe`, whether it stores and returns a secret."""
    try:
        from app.core.keystore import SecretStore

        store = SecretStore()
        if probe:
            store.check()
        return {"backend": store.name, "ok": True, "probed": probe}
    except Exception as exc:  # reported, not raised: the report says what is wrong
        return {"backend": None, "ok": False, "probed": probe, "error": f"{type(exc).__name__}: {exc}"}


def _window_report(window, started: float) -> dict:
    from app.core.findings import CLASSES

    document = window.document
    result = getattr(document, "result", None)
    probabilities = getattr(result, "probabilities", None)
    return {
        "title": window.windowTitle(),
        "visible": window.isVisible(),
        "size": [window.width(), window.height()],
        "model_state": window.model.state,
        "model_status": window.model_status.text(),
        "model_dir": str(window.model.model_dir) if window.model.model_dir else None,
        "document_state": document.state,
        "image": str(document.path) if document.path else None,
        "probabilities": dict(zip(CLASSES, map(float, probabilities), strict=True))
        if probabilities is not None else None,  # fmt: skip
        "seconds": round(time.monotonic() - started, 1),
    }


def main(argv: list[str], *, prog: str = "fedxray --bundle-selfcheck") -> int:
    """Parse the self-check's arguments, show the app, report; the exit code (0: all well)."""
    parser = argparse.ArgumentParser(prog=prog)
    parser.add_argument("report", type=Path)
    parser.add_argument("--keyring", action="store_true", help="also store, read and delete a throw-away secret")
    parser.add_argument("--pdf", action="store_true", help="also export the first IMAGE's PDF report (REPORT.pdf)")
    parser.add_argument("--timeout", type=float, default=TIMEOUT)
    parser.add_argument("images", nargs="*")
    args = parser.parse_intermixed_args(argv)  # options also after the images
    report_path = args.report.resolve()
    pdf_path = report_path.with_suffix(".pdf") if args.pdf and args.images else None
    started = time.monotonic()
    exporting: list[bool] = []

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    qapp = make_app(sys.argv[:1])
    from app.ui.main_window import MainWindow

    window = MainWindow()
    window.show()
    if args.images:
        window.open_paths(list(args.images))
    timer = QTimer(qapp)

    def poll() -> None:
        ready = window.isVisible() and window.model.state in ("ready", "failed") and (
            not args.images or window.document.state in ("result", "failed", "blocked"))  # fmt: skip
        if ready and pdf_path and window.document.state == "result":
            if not exporting and window.controller.case is not None:  # the case is stored: export it
                window.controller.export_pdf(pdf_path)
                exporting.append(True)
            ready = pdf_path.exists()  # written atomically by the export task
        if not ready and time.monotonic() - started < args.timeout:
            return
        timer.stop()
        report = _report(window, ready, started, keyring=args.keyring, pdf_path=pdf_path)
        screenshot = report_path.with_suffix(".png")
        report["screenshot"] = str(screenshot) if window.grab().save(str(screenshot)) else None
        report_path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        qapp.exit(0 if report["ok"] else 1)

    timer.timeout.connect(poll)
    timer.start(250)
    return int(qapp.exec())


def _report(window, ready: bool, started: float, *, keyring: bool, pdf_path: Path | None) -> dict:
    """What the self-check found (see the module docstring)."""
    import resources

    shown = _window_report(window, started) if window is not None else None
    pdf = pdf_path.read_bytes() if pdf_path and pdf_path.exists() else b""
    report = {
        "frozen": bool(getattr(sys, "frozen", False)),
        "meipass": getattr(sys, "_MEIPASS", None),
        "resources_root": str(resources.root()),
        "default_model_dir": str(resources.default_model_dir()),
        "qt_platform": QGuiApplication.platformName(),
        "timed_out": not ready,
        "window": shown,
        "keyring": _keyring_report(keyring),
        "pdf": {"path": str(pdf_path), "bytes": len(pdf), "is_pdf": pdf.startswith(b"%PDF-")} if pdf_path else None,
    }
    report["ok"] = bool(ready and shown and shown["model_state"] == "ready"
                        and (shown["image"] is None or shown["document_state"] == "result")
                        and (pdf_path is None or report["pdf"]["is_pdf"]))  # fmt: skip
    return report

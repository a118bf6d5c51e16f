"""Entry point of the frozen FedXray app: the `fedxray` command, and Flower's node commands under their own names.

`fedxray federate` starts `flower-supernode` from the folder of the executable; the SuperNode starts
`flower-superexec`, which starts `flwr-clientapp`, both found through PATH (app.core.federation puts that folder
first). In the bundle those three names are links to this executable (made by fedxray.spec), and the name it was
started under picks what runs.

Hidden option for installation checks: `fedxray --bundle-selfcheck REPORT.json [--keyring] [--pdf] [IMAGE ...]`
opens the app as `fedxray [IMAGE ...]` does, waits until the main window is shown, the model has loaded and the
image on screen is classified (with --pdf: its PDF report exported), then writes REPORT.json and a screenshot
(REPORT.png) and quits; exit code 0 when all went well. With --keyring it also stores, reads back and deletes a
throw-away secret in the keyring (a locked keyring asks for its password). Opening an image records it in the
history like any case: give no IMAGE on a clinical workstation.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import sys
import time
from pathlib import Path

FLOWER_COMMANDS = ("flower-supernode", "flower-superexec", "flwr-clientapp")
SELFCHECK = "--bundle-selfcheck"
SELFCHECK_TIMEOUT = 300.0  # seconds; loading the model takes a few, a cold disk cache and 2 cores more


def command_name(argv0: str) -> str:
    """The command this process was started as: the executable's (link's) name without .exe."""
    name = Path(argv0).name
    return name[:-4] if name.lower().endswith(".exe") else name


def run_flower(name: str) -> int:
    """Run one of Flower's node commands in this process, as its console script would."""
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    os.environ.setdefault("FLWR_DISABLE_UPDATE_CHECK", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if name == "flower-supernode":
        from flwr.supernode.cli import flower_supernode as entry
    elif name == "flower-superexec":
        from flwr.supercore.cli import flower_superexec as entry
    else:  # the ClientApp the FAB names (fl.client_app:app) is bundled: fedxray.spec lists it as a hidden import
        from flwr.supernode.cli import flwr_clientapp as entry
    return int(entry() or 0)


# ---------------------------------------------------------------- the installation self-check


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
    from fl.classes import CLASSES

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


def selfcheck(argv: list[str]) -> int:
    """The hidden `--bundle-selfcheck`: see the module docstring."""
    import argparse

    parser = argparse.ArgumentParser(prog=f"fedxray {SELFCHECK}")
    parser.add_argument("report", type=Path)
    parser.add_argument("--keyring", action="store_true", help="also store, read and delete a throw-away secret")
    parser.add_argument("--pdf", action="store_true", help="also export the first IMAGE's PDF report (REPORT.pdf)")
    parser.add_argument("--timeout", type=float, default=SELFCHECK_TIMEOUT)
    parser.add_argument("images", nargs="*")
    args = parser.parse_intermixed_args(argv)  # options also after the images
    report_path = args.report.resolve()
    pdf_path = report_path.with_suffix(".pdf") if args.pdf and args.images else None
    started = time.monotonic()
    exporting: list[bool] = []

    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication, QMainWindow

    import app.ui.launch as launch

    make_app = launch.make_app

    def make_app_with_check(app_argv):
        qapp = make_app(app_argv)
        timer = QTimer(qapp)

        def poll() -> None:
            windows = [w for w in QApplication.topLevelWidgets() if isinstance(w, QMainWindow) and w.isVisible()]
            window = windows[0] if windows else None
            ready = window is not None and window.model.state in ("ready", "failed") and (
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
            if window is not None:
                screenshot = report_path.with_suffix(".png")
                report["screenshot"] = str(screenshot) if window.grab().save(str(screenshot)) else None
            report_path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
            qapp.exit(0 if report["ok"] else 1)

        timer.timeout.connect(poll)
        timer.start(250)
        return qapp

    launch.make_app = make_app_with_check
    from app.cli import main

    return main(list(args.images))


def _report(window, ready: bool, started: float, *, keyring: bool, pdf_path: Path | None) -> dict:
    """What the self-check found (see the module docstring)."""
    from PySide6.QtGui import QGuiApplication

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


def missing_flower_commands() -> list[str]:
    """Flower's commands that are not beside the executable (a bundle copied without its links)."""
    folder = Path(sys.executable).parent
    suffix = ".exe" if sys.platform == "win32" else ""
    return [c for c in FLOWER_COMMANDS if not (folder / f"{c}{suffix}").exists()]


def main() -> int:
    name = command_name(sys.argv[0])
    if name in FLOWER_COMMANDS:
        return run_flower(name)
    if len(sys.argv) > 1 and sys.argv[1] == SELFCHECK:
        return selfcheck(sys.argv[2:])
    if len(sys.argv) > 1 and sys.argv[1] == "federate" and getattr(sys, "frozen", False) and missing_flower_commands():
        print(f"fedxray: federated training is not available in this installation: "
              f"{', '.join(missing_flower_commands())} missing in {Path(sys.executable).parent} "
              "(install FedXray again from the complete package)", file=sys.stderr)  # fmt: skip
        return 2
    from app.cli import main as fedxray

    return fedxray()


if __name__ == "__main__":
    multiprocessing.freeze_support()
    sys.exit(main())

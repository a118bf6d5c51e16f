"""Screenshots of the federation screens on a real X server, with real parts (run under xvfb-run, Qt xcb).

    QT_QPA_PLATFORM=xcb xvfb-run -a -s "-screen 0 1400x900x24" .venv/bin/python \\
        tests/benchmarks/screenshots_federation.py OUT_DIR [--model MODEL_DIR]

A private workstation in a temporary folder; a real `fedxray-central serve` on loopback (tests/support/central.py)
and a private gnome-keyring (tests/support/keyring_session.py). IT's enrol wizard is driven step by step (and two
of its failures), then the Federation page before taking part, while the background agent waits, during a
one-round run of the tiny network at 64 px and after it, and the status-bar indicator. Everything is stopped at
the end. Without a window manager the dialogs have no title bars.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
SHARED = Path(os.environ.get("FEDXRAY_SHARED_DATA", REPO.parent / "shared" / "data"))
# Ten local epochs: the tiny network trains in seconds, long enough to be seen training.
RUN_ARGS = ("--rounds", "1", "--min-sites", "1", "--arch", "tiny", "--input-size", "64", "--local-epochs", "10",
            "--set", "batch-size=2", "--timeout", "300")  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("--model", type=Path, help="model folder (default: the bundled one)")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    home = Path(tempfile.mkdtemp(prefix="fedxray-fedshots-"))
    for var in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME"):
        os.environ[var] = str(home / var.lower())
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    from tests.support.central import CentralProcess
    from tests.support.keyring_session import start_secret_service

    keyring = start_secret_service()
    os.environ["DBUS_SESSION_BUS_ADDRESS"] = keyring.address
    central = CentralProcess(home / "central" / "home")
    try:
        central.start()
        return shoot(args, home, central)
    finally:
        stop_everything(central)
        keyring.stop()


def stop_everything(central) -> None:
    import psutil

    with contextlib.suppress(Exception):
        from app.core import agent_control

        agent_control.opt_out(timeout=30)
    mine = os.environ["XDG_DATA_HOME"]
    for proc in psutil.process_iter(["environ"]):
        with contextlib.suppress(psutil.Error, TypeError):
            if proc.pid != os.getpid() and (proc.info["environ"] or {}).get("XDG_DATA_HOME") == mine:
                proc.kill()
    family = [p.pid for p in psutil.Process(central.proc.pid).children(recursive=True)] if central.proc else []
    central.stop()
    for pid in family:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def shoot(args, home: Path, central) -> int:
    from app.core import federation_settings
    from app.core.models import ModelStore
    from app.core.settings import Preferences
    from tests.fl.flower_support import make_sites

    if args.model:
        installed = ModelStore().import_model(args.model)
        prefs = Preferences.load()
        prefs.model_id = installed.id
        prefs.save()
    classes = ("Covid", "Normal", "Pneumonia-Bacterial", "Pneumonia-Viral")
    site = make_sites(SHARED / "cxr", home / "site", shares={"site": dict.fromkeys(classes, 1.0)}, per_class=6,
                      seed=5)["site"]  # fmt: skip
    federation_settings.update(data_dir=str(site))

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

    def shot(name, widget, settle=0.8):
        spin(timeout=settle)
        top = widget.window()
        img = top.screen().grabWindow(top.winId())
        if widget is not top:  # a part of the window (the status-bar indicator)
            pos = widget.mapTo(top, widget.rect().topLeft())
            img = img.copy(pos.x() - 6, pos.y() - 4, widget.width() + 12, widget.height() + 8)
        img.save(str(args.out / f"{name}.png"))
        print("saved", name, flush=True)

    w = MainWindow()
    try:
        return _drive(w, app, args, central, spin, shot)
    finally:
        w.close()
        QApplication.quit()


def _drive(w, app, args, central, spin, shot) -> int:
    from PySide6.QtWidgets import QWizard

    w.resize(1400, 880)
    w.move(0, 0)
    w.show()
    assert spin(lambda: w.model.state in ("ready", "failed"), 300), "model did not load"
    fed = w.federation
    fed.set_poll_interval(100)
    w.show_federation()
    assert spin(lambda: fed.agent is not None and fed.enrollment is not None, 30)
    shot("federation-not-enrolled", w)

    # ---- IT: the enrol wizard, step by step
    wiz = w.show_enrol_wizard()
    wiz.move(350, 150)
    wiz.address_page.address.setText(central.url)
    shot("wizard-1-address", wiz)
    wiz.next()
    assert spin(lambda: wiz.check.probe is not None or wiz.check.problem.isVisible(), 30), "no answer"
    shot("wizard-2-identity", wiz)
    wiz.check.confirmed.setChecked(True)
    wiz.next()
    token = central.create_token("St. Mary's Radiology")
    wrong = token["token"][:-1] + ("A" if token["token"][-1] != "A" else "B")
    wiz.token_page.token.setText(wrong)
    wiz.token_page.name.setText("reading-room-3")
    wiz.button(QWizard.WizardButton.CommitButton).click()
    assert spin(wiz.token_page.problem.isVisible, 60)
    shot("wizard-3-token-refused", wiz)
    wiz.token_page.token.setText(token["token"])
    shot("wizard-3-token", wiz)
    wiz.button(QWizard.WizardButton.CommitButton).click()
    assert spin(lambda: wiz.currentPage() is wiz.done_page, 60), wiz.token_page.problem.text()
    shot("wizard-4-done", wiz)
    wiz.accept()

    # A second wizard against an address where nothing answers (the central down, or a typo).
    with __import__("socket").socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    wiz2 = w.show_enrol_wizard()
    wiz2.move(350, 150)
    wiz2.address_page.address.setText(f"https://127.0.0.1:{closed}")
    wiz2.next()
    assert spin(wiz2.check.problem.isVisible, 30)
    shot("wizard-2-unreachable", wiz2)
    wiz2.reject()

    # ---- the page, enrolled, with the readiness check; then taking part
    assert spin(lambda: fed.enrolled and fed.enrollment.reachable is not None and not fed.refreshing, 60)
    fed.run_checks()
    assert spin(lambda: fed.checks is not None and not fed.checking, 180)
    shot("federation-enrolled-ready", w)
    w.federation_page.participation.join.click()
    assert spin(lambda: fed.agent is not None and fed.agent.phase == "waiting", 300), fed.agent
    fed.refresh_enrollment()
    spin(lambda: fed.enrollment.online, 20)
    shot("federation-waiting", w)
    shot("indicator-idle", w.federation_indicator)

    run = central.admin_json("run", "start", *RUN_ARGS)["run"]
    print("run", run["id"], flush=True)
    assert spin(lambda: fed.agent.phase == "training", 400), fed.agent
    spin(lambda: fed.agent.phase != "training" or (fed.agent.batch or 0) >= 1, 90)  # its first batches done
    if fed.agent.phase != "training":
        print("warning: the round had left its training phase before the screenshot", flush=True)
    shot("federation-training", w, settle=0.1)
    shot("indicator-training", w.federation_indicator, settle=0.05)
    w.tabs.setCurrentWidget(w.case_page)
    shot("main-window-during-round", w, settle=0.1)
    w.show_federation()

    def finished():
        return central.admin_json("run", "status", str(run["id"]))["run"]["status"] in ("finished", "failed")

    assert spin(finished, 400)
    assert spin(lambda: fed.agent.phase == "waiting" and bool(fed.agent.local), 60)
    fed.refresh_enrollment()
    spin(lambda: not fed.refreshing, 20)
    shot("federation-after-round", w)

    # IT revokes the workstation while it takes part: the panel and the indicator say so, with what to do.
    central.admin("nodes", "revoke", str(fed.enrollment.node_id))
    assert spin(lambda: fed.agent.error_kind == "not-enrolled", 300), fed.agent
    fed.refresh_enrollment()
    spin(lambda: not fed.refreshing, 20)
    shot("federation-error-revoked", w)
    shot("indicator-error", w.federation_indicator)
    return 0


if __name__ == "__main__":
    sys.exit(main())

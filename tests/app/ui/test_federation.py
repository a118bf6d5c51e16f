"""The federation screens driven like IT and clinicians would, against real parts (issue 10).

Real: `fedxray-central serve` (TLS, node authentication) from tests/support/central.py, the test session's
gnome-keyring (tests/support/keyring_session.py), the real main window offscreen, the background agent started
by the page's "Take part" button as a detached process (its SuperNode on loopback), a one-round run of the tiny
network at 64 px started at the central. Each test is its own workstation (XDG folders, tests/app/ui/conftest.py);
the central is shared by the module.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
from pathlib import Path

import psutil
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from PySide6.QtWidgets import QWizard

from tests.fl.flower_support import make_sites
from tests.support import keyring_session
from tests.support.central import CentralProcess

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]
secret_service = keyring_session.secret_service
RUN_ARGS = ("--rounds", "1", "--min-sites", "1", "--arch", "tiny", "--input-size", "64", "--local-epochs", "3",
            "--set", "batch-size=2", "--timeout", "300")  # fmt: skip
ALL = dict.fromkeys(("Covid", "Normal", "Pneumonia-Bacterial", "Pneumonia-Viral"), 1.0)


@pytest.fixture(scope="module")
def central(tmp_path_factory, secret_service):
    c = CentralProcess(tmp_path_factory.mktemp("fedui-central") / "home")
    try:
        c.start()
        yield c
    finally:
        stop_central(c)


def stop_central(c: CentralProcess) -> None:
    """Stop `fedxray-central serve` and whatever it started (SuperLink, SuperExec, ServerApp)."""
    family = []
    if c.proc is not None and c.proc.poll() is None:
        with contextlib.suppress(psutil.Error):
            family = [p.pid for p in psutil.Process(c.proc.pid).children(recursive=True)]
    c.stop()
    for pid in family:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
def window(qtbot, workstation):
    """A real main window on this test's workstation (no model needed for these screens)."""
    from app.ui.main_window import MainWindow

    windows = []

    def make():
        w = MainWindow(load_model=False)
        qtbot.addWidget(w)
        w.show()
        w.show_federation()
        windows.append(w)
        qtbot.waitUntil(lambda: w.federation.agent is not None and w.federation.enrollment is not None,
                        timeout=30_000)  # fmt: skip
        return w

    yield make
    for w in windows:
        w.close()
    for proc in workstation_processes():  # an agent left by a failed test must not outlive it
        with contextlib.suppress(psutil.Error):
            proc.kill()


def workstation_processes() -> list[psutil.Process]:
    """Live processes started as this test's workstation (the agent, its guardian, SuperNode, workers)."""
    mine = os.environ["XDG_DATA_HOME"]
    found = []
    for proc in psutil.process_iter(["environ"]):
        with contextlib.suppress(psutil.Error, TypeError):
            if proc.pid != os.getpid() and (proc.info["environ"] or {}).get("XDG_DATA_HOME") == mine and \
                    proc.status() != psutil.STATUS_ZOMBIE:  # fmt: skip
                found.append(proc)
    return found


def expected_groups(ca_cert: Path) -> str:
    """The CA fingerprint as IT reads it out: SHA-256 of the DER certificate, upper-case groups of four."""
    der = x509.load_pem_x509_certificate(ca_cert.read_bytes()).public_bytes(serialization.Encoding.DER)
    fp = hashlib.sha256(der).hexdigest().upper()
    groups = [fp[i:i + 4] for i in range(0, 64, 4)]
    return "\n".join(" ".join(groups[i:i + 4]) for i in range(0, 16, 4))


def enrol_here(central: CentralProcess, site: str):
    """Enrol this test's workstation through the same service the wizard calls (for tests about later steps)."""
    from app.core.enrollment import enroll

    token = central.create_token(site)
    return enroll(central_url=central.url, token=token["token"], ca_fingerprint=token["ca_fingerprint"])


def nodes(central: CentralProcess) -> dict[int, dict]:
    return {n["node_id"]: n for n in central.admin_json("nodes", "list")}


# ---------------------------------------------------------------- IT: enrol, see the status, leave
def test_the_wizard_enrols_the_page_shows_it_and_leave_revokes_it(qtbot, window, central):
    w = window()
    page = w.federation_page
    assert not page.enrolment.form.isVisible() and "Not enrolled" in page.enrolment.state.text()
    assert w.federation_indicator.text() == "● Federation: not enrolled"
    assert not page.participation.join.isEnabled()  # staff cannot opt in before IT enrols

    wiz = w.show_enrol_wizard()
    wiz.address_page.address.setText(central.url.replace("https://", ""))  # as IT may type it
    wiz.next()
    check = wiz.check
    qtbot.waitUntil(lambda: check.probe is not None or check.problem.isVisible(), timeout=30_000)
    assert check.probe is not None, check.problem.text()
    assert check.fingerprint.text() == expected_groups(central.ca_cert)
    assert check.clock.property("level") == "ok" and "In step with the central" in check.clock.text()
    assert not wiz.button(QWizard.WizardButton.NextButton).isEnabled()  # IT must compare first
    check.confirmed.setChecked(True)
    assert wiz.button(QWizard.WizardButton.NextButton).isEnabled()
    wiz.next()

    token = central.create_token("Hospital UI")
    wiz.token_page.token.setText(token["token"])
    wiz.token_page.name.setText("reading-room-3")
    wiz.button(QWizard.WizardButton.CommitButton).click()
    qtbot.waitUntil(lambda: wiz.currentPage() is wiz.done_page or wiz.token_page.problem.isVisible(), timeout=60_000)
    assert wiz.currentPage() is wiz.done_page, wiz.token_page.problem.text()
    node_id = wiz.token_page.result.node_id
    assert f"node <b>{node_id}</b>" in wiz.done_page.summary.text() and "Hospital UI" in wiz.done_page.summary.text()
    listed = nodes(central)[node_id]
    assert listed["site"] == "Hospital UI" and listed["status"] == "active"
    wiz.accept()

    # The page shows the enrolment as the central sees it.
    box = page.enrolment
    qtbot.waitUntil(lambda: w.federation.enrolled and w.federation.enrollment.reachable is not None
                    and not w.federation.refreshing, timeout=60_000)  # fmt: skip
    assert box.form.isVisible() and box.values["site"].text() == "Hospital UI"
    assert box.values["node"].text() == f"{node_id} (reading-room-3)"
    assert box.values["central"].text() == central.url
    assert box.values["seen"].text() == "active, offline"  # enrolled, no SuperNode connected yet
    assert box.values["keyring"].text().startswith("in the keyring")
    assert w.federation_indicator.text() == "● Federation: enrolled, not taking part"
    assert page.participation.join.isEnabled()

    # Leave, confirmed: revoked at the central, keys gone here.
    questions = []
    page.confirm = lambda title, text: questions.append(text) or True
    box.leave.click()
    qtbot.waitUntil(lambda: w.federation.enrollment is not None and not w.federation.enrolled, timeout=60_000)
    assert "node" in questions[0] and str(node_id) in questions[0]
    assert nodes(central)[node_id]["status"] == "left"
    assert not (Path(os.environ["XDG_CONFIG_HOME"]) / "fedxray" / "central").exists()
    assert "left the federation" in w.notifier.last.text
    assert box.enrol.isVisible() and not box.form.isVisible()


def test_wizard_failures_say_what_to_do_and_change_nothing(qtbot, window, central):
    w = window()
    wiz = w.show_enrol_wizard()
    # Nothing listens on this port: the central is down or the address is wrong.
    with __import__("socket").socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    wiz.address_page.address.setText(f"https://127.0.0.1:{closed}")
    wiz.next()
    check = wiz.check
    qtbot.waitUntil(check.problem.isVisible, timeout=30_000)
    assert "The central cannot be reached" in check.problem.text() and "Check the address" in check.problem.text()
    assert check.retry.isVisible() and not wiz.button(QWizard.WizardButton.NextButton).isEnabled()

    # Back, the right address: a fingerprint pasted from IT that differs blocks the way on.
    wiz.back()
    wiz.address_page.address.setText(central.url)
    wiz.next()
    qtbot.waitUntil(lambda: check.probe is not None, timeout=30_000)
    check.pasted.setText("AB" * 32)
    assert "does NOT match" in check.match.text() and not check.confirmed.isEnabled()
    assert not wiz.button(QWizard.WizardButton.NextButton).isEnabled()
    check.pasted.setText(check.fingerprint.text())  # as IT sent it, in groups
    assert "matches" in check.match.text() and check.confirmed.isChecked()
    wiz.next()

    # A wrong token (its secret part mistyped): refused, said so, the workstation stays as it was.
    token = central.create_token("Hospital W")["token"]
    wrong = token[:-1] + ("A" if token[-1] != "A" else "B")
    page = wiz.token_page
    page.token.setText(wrong)
    wiz.button(QWizard.WizardButton.CommitButton).click()
    qtbot.waitUntil(page.problem.isVisible, timeout=60_000)
    assert wiz.currentPage() is page
    assert "The central refused the token" in page.problem.text() and "ask IT" in page.problem.text()
    assert not (Path(os.environ["XDG_CONFIG_HOME"]) / "fedxray" / "central").exists()
    assert page.token.isEnabled() and not page.running
    # The right token then enrols (the refused one did not spoil anything).
    page.token.setText(token)
    wiz.button(QWizard.WizardButton.CommitButton).click()
    qtbot.waitUntil(lambda: wiz.currentPage() is wiz.done_page, timeout=60_000)
    wiz.accept()
    from app.core.enrollment import leave

    leave()


# ---------------------------------------------------------------- staff: opt in, watch a round, close, opt out
def test_opt_in_the_agent_takes_part_in_a_round_outlives_the_window_and_opt_out_stops_it(
        qtbot, window, central, shared_data, tmp_path):  # fmt: skip
    from app.core import federation_settings

    site = make_sites(shared_data / "cxr", tmp_path / "data", shares={"site": ALL}, per_class=6, seed=5)["site"]
    enrollment = enrol_here(central, "Hospital Agent")
    federation_settings.update(data_dir=str(site))  # train on this site's images (the labelled set is empty)
    w = window()
    w.federation.set_poll_interval(100)
    page = w.federation_page
    qtbot.waitUntil(lambda: w.federation.enrolled and page.participation.join.isEnabled(), timeout=30_000)
    seen: list[tuple] = []

    def record():
        a = w.federation.agent
        shown = (a.phase, a.round, a.num_rounds, page.round.headline.text(), page.round.steps.current(),
                 page.round.progress.format() if page.round.progress.isVisible() else "",
                 w.federation_indicator.text())  # fmt: skip
        if not seen or seen[-1] != shown:
            seen.append(shown)

    w.federation.agentChanged.connect(record)
    page.participation.join.click()
    qtbot.waitUntil(lambda: w.federation.opted_in and w.federation.agent.running, timeout=60_000)
    pid = w.federation.agent.pid
    assert page.participation.stop.isVisible() and not page.participation.join.isVisible()
    qtbot.waitUntil(lambda: w.federation.agent.phase == "waiting", timeout=240_000)
    assert page.round.steps.current() == "waiting"
    assert w.federation_indicator.text() == "● Federation: idle, waiting for the central"

    run = central.admin_json("run", "start", *RUN_ARGS)["run"]

    def finished():
        status = central.admin_json("run", "status", str(run["id"]))["run"]["status"]
        assert status not in ("failed", "stopped"), status
        return status == "finished"

    qtbot.waitUntil(lambda: any(s[0] == "training" for s in seen), timeout=400_000)
    qtbot.waitUntil(finished, timeout=400_000)
    qtbot.waitUntil(lambda: w.federation.agent.phase == "waiting" and bool(w.federation.agent.local), timeout=60_000)

    phases = [s[0] for s in seen]
    assert phases.index("waiting") < phases.index("training") < len(phases) - 1 - phases[::-1].index("waiting")
    training = [s for s in seen if s[0] == "training"]
    assert all(s[1:3] == (1, 1) for s in training)  # round 1 of 1
    assert any(s[3] == "Training — round 1 of 1" for s in training)
    assert all(s[4] == "training" for s in training)
    assert any(s[5].startswith("epoch ") and " of 3 · batch " in s[5] for s in training)
    assert any(s[6].startswith("● Federation: training, round 1 of 1") for s in training)
    assert page.round.headline.text() == "Waiting for the central" and page.round.steps.current() == "waiting"
    assert "just now" in page.round.values["contact"].text() or "min ago" in page.round.values["contact"].text()
    assert page.round.values["round"].text() == "Round 1 of 1 — reply sent"
    assert "accuracy" in page.round.values["local"].text()
    assert str(run["flower_run_id"]).endswith(page.round.values["run"].text().lstrip("…"))
    assert pid == w.federation.agent.pid

    # Closing the window does not stop the agent; a new window attaches to the same one.
    w.close()
    qtbot.wait(3000)
    assert psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    w2 = window()
    assert w2.federation.agent.running and w2.federation.agent.pid == pid
    assert w2.federation_page.participation.stop.isVisible()

    # Opt out: the agent stops, the login entry goes, nothing of this workstation keeps running.
    w2.federation_page.participation.stop.click()
    qtbot.waitUntil(lambda: not w2.federation.busy and not w2.federation.agent.running, timeout=120_000)
    assert not w2.federation.opted_in and w2.federation_page.participation.join.isVisible()
    assert "Not taking part" in w2.federation_page.round.headline.text()
    qtbot.wait(3000)  # the guardian must not bring it back
    assert workstation_processes() == []
    assert not (Path(os.environ["XDG_CONFIG_HOME"]) / "autostart" / "fedxray-federation-agent.desktop").exists()
    assert nodes(central)[enrollment.node_id]["status"] == "active"  # opting out is not leaving


# ---------------------------------------------------------------- errors in plain words
def test_a_workstation_revoked_while_taking_part_is_told_in_plain_words(qtbot, window, central, shared_data,
                                                                         tmp_path):  # fmt: skip
    from app.core import federation_settings

    site = make_sites(shared_data / "cxr", tmp_path / "data", shares={"site": ALL}, per_class=3, seed=9)["site"]
    enrollment = enrol_here(central, "Hospital Revoked")
    federation_settings.update(data_dir=str(site))
    w = window()
    page = w.federation_page
    qtbot.waitUntil(lambda: w.federation.enrolled and page.participation.join.isEnabled(), timeout=30_000)
    page.participation.join.click()
    qtbot.waitUntil(lambda: w.federation.agent.phase == "waiting", timeout=240_000)
    central.admin("nodes", "revoke", str(enrollment.node_id))  # IT cuts the workstation off
    qtbot.waitUntil(lambda: w.federation.agent.error_kind == "not-enrolled", timeout=300_000)
    assert page.round.error.isVisible() and "Not enrolled any more" in page.round.error.text()
    assert "enrol" in page.round.error.text().lower()  # and what to do
    assert w.federation_indicator.level == "error"
    assert w.federation_indicator.text() == "● Federation: not enrolled any more"
    page.participation.stop.click()
    qtbot.waitUntil(lambda: not w.federation.busy and not w.federation.agent.running, timeout=120_000)


# ---------------------------------------------------------------- errors in plain words (last: stops the central)
def test_central_down_is_shown_in_plain_words(qtbot, window, central):
    enrollment = enrol_here(central, "Hospital Down")
    w = window()
    qtbot.waitUntil(lambda: w.federation.enrollment.reachable is True, timeout=60_000)
    stop_central(central)
    w.federation_page.enrolment.refresh_button.click()
    qtbot.waitUntil(lambda: w.federation.enrollment.reachable is False and not w.federation.refreshing,
                    timeout=60_000)  # fmt: skip
    box = w.federation_page.enrolment
    assert box.values["seen"].text() == "unknown: the central did not answer"
    assert box.problem.isVisible() and "Could not reach the central" in box.problem.text()
    assert box.values["node"].text().startswith(str(enrollment.node_id))  # what is known here is still shown


# ---------------------------------------------------------------- staff: the schedule and limits editor
def test_schedule_editor_saves_windows_and_limits(qtbot, window):
    from app.core import federation_settings as fs

    w = window()
    editor = w.federation_page.schedule
    qtbot.waitUntil(lambda: w.federation.settings is not None, timeout=30_000)
    assert editor.any_time.isChecked() and editor.windows_text() == "always"  # the default: any time
    editor.windows_only.setChecked(True)
    editor.evenings.setChecked(True)  # weekdays 19:00 to 07:00 the next morning, as shown
    editor.weekends.setChecked(True)
    editor.more.setText("wed 12:00-13:30")
    editor.cpu.setValue(1)
    editor.gpu_cap.setChecked(True)
    editor.gpu.setValue(2048)
    editor.save.click()
    qtbot.waitUntil(lambda: not w.federation.busy, timeout=30_000)
    saved = fs.load()  # what the agent will read, from the file
    assert saved.windows == fs.parse_windows("weekdays 19:00-07:00; weekends; wed 12:00-13:30")
    assert (saved.cpu_threads, saved.gpu_memory_mb) == (1, 2048)
    import datetime as dt

    monday = dt.datetime(2026, 11, 30)  # a Monday
    inside = [monday.replace(hour=20), monday.replace(day=1, month=12, hour=6),  # Monday evening into Tuesday
              monday.replace(day=2, month=12, hour=12, minute=30), monday.replace(day=5, month=12, hour=12)]
    outside = [monday.replace(hour=6), monday.replace(hour=12), monday.replace(day=2, month=12, hour=14)]
    assert all(saved.in_window(t) for t in inside) and not any(saved.in_window(t) for t in outside)

    # A window the agent could not use is refused on the page, and nothing is saved.
    editor.more.setText("someday 25:00")
    editor.save.click()
    assert editor.problem.isVisible() and "not a day" in editor.problem.text()
    assert fs.load() == saved

    # Shown again as stored when the page is opened anew.
    w2 = window()
    e2 = w2.federation_page.schedule
    qtbot.waitUntil(lambda: w2.federation.settings is not None, timeout=30_000)
    assert e2.windows_only.isChecked() and e2.evenings.isChecked() and e2.weekends.isChecked()
    assert e2.evening_start.time().toString("HH:mm") == "19:00" and e2.more.text() == "wed 12:00-13:30"
    assert e2.cpu.value() == 1 and e2.gpu_cap.isChecked() and e2.gpu.value() == 2048

"""The administrators' dashboard in a real browser: Debian's headless Chromium (Selenium + chromedriver) against a
real `fedxray-central serve` on loopback, two workstations enrolled with tokens made in the browser and running
`fedxray federate` (real SuperNodes and ClientApps), a 2-round run of the tiny network at 64 px started from the
run form. The tests run in file order and share the module's central, workstations and run (one run keeps the
module's cost to a few minutes). Screenshots go to $FEDXRAY_SCREENSHOTS when it is set.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from tests.fl.flower_support import NON_IID, Processes, descendants, flower_env, make_sites
from tests.support.central import (
    BIN,
    CHROMEDRIVER,
    CHROMIUM,
    CentralProcess,
    Workstation,
    dashboard_browser,
    wait_for,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900),
              pytest.mark.skipif(not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
                                 reason="Debian's chromium and chromium-driver are not installed")]  # fmt: skip

PASSWORD = "correct horse battery staple"
SITES = ("site-a", "site-b")
SHOTS = Path(os.environ["FEDXRAY_SCREENSHOTS"]) if os.environ.get("FEDXRAY_SCREENSHOTS") else None


# ---------------------------------------------------------------- the module's world
class Dash:
    """The central, the browser, the workstations and what the tests learn on the way."""

    def __init__(self, root: Path, central: CentralProcess) -> None:
        self.root, self.central = root, central
        self.procs = Processes(root / "logs")
        self.stations: dict[str, Workstation] = {}
        self.browser = None
        self.facts: dict = {}

    # -- browser
    def open(self, path: str) -> None:
        self.browser.get(self.central.url + path)

    def css(self, selector: str):
        from selenium.webdriver.common.by import By

        return self.browser.find_element(By.CSS_SELECTOR, selector)

    def all(self, selector: str) -> list:
        from selenium.webdriver.common.by import By

        return self.browser.find_elements(By.CSS_SELECTOR, selector)

    def path(self) -> str:
        return self.browser.current_url.removeprefix(self.central.url)

    def fill(self, field_id: str, value: str) -> None:
        from selenium.webdriver.support.ui import Select

        el = self.css(f"#{field_id}")
        if el.tag_name == "select":
            Select(el).select_by_value(value)
        else:
            el.clear()
            el.send_keys(value)

    def click(self, selector: str) -> None:
        """Click a link or submit button and wait until the next page has replaced this one."""
        from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
        from selenium.webdriver.support import expected_conditions
        from selenium.webdriver.support.ui import WebDriverWait

        old = self.css("html")
        for attempt in range(3):  # chromedriver can lose a node it just found while the page settles
            try:
                self.css(selector).click()
                break
            except (StaleElementReferenceException, WebDriverException) as exc:
                if attempt == 2 or "document" not in str(exc) and not isinstance(exc, StaleElementReferenceException):
                    raise
                time.sleep(0.5)
        WebDriverWait(self.browser, 60).until(expected_conditions.staleness_of(old))
        WebDriverWait(self.browser, 60).until(lambda b: b.execute_script("return document.readyState") == "complete")

    def sign_in(self, name: str, password: str) -> None:
        self.open("/dashboard/sign-in")
        self.fill("name", name)
        self.fill("password", password)
        self.click("form button[type=submit]")

    def shot(self, name: str) -> None:
        if SHOTS is None:
            return
        SHOTS.mkdir(parents=True, exist_ok=True)
        height = self.browser.execute_script("return document.documentElement.scrollHeight")
        self.browser.set_window_size(1440, max(900, min(int(height) + 160, 6000)))
        time.sleep(0.3)
        self.browser.save_screenshot(str(SHOTS / f"{name}.png"))
        self.browser.set_window_size(1440, 900)

    def cookie(self) -> str:
        return self.browser.get_cookie("__Host-fedxray_session")["value"]

    def chart_points(self, name: str) -> int:
        return int(self.browser.execute_script(
            f"var c = window.fedxrayCharts && window.fedxrayCharts[{name!r}]; return c ? c.data[0].length : 0"))

    # -- workstations
    def federate(self, name: str) -> None:
        ws = self.stations[name]
        env = flower_env(**{k: ws.env()[k] for k in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME")})
        self.procs.start(name, [str(BIN / "fedxray"), "federate", "--data", str(self.facts["sites"][name])], env=env)

    def tails(self) -> str:
        parts = [f"--- {n}\n{self.procs.log(n)[-2000:]}" for n in self.procs.procs]
        return "\n".join([*parts, f"--- central\n{self.central.log_text()[-3000:]}"])


@pytest.fixture(scope="module")
def dash(tmp_path_factory, shared_data, secret_service):
    root = tmp_path_factory.mktemp("dashboard-e2e")
    central = CentralProcess(root / "home")
    d = Dash(root, central)
    d.facts["sites"] = make_sites(shared_data / "cxr", root / "data", shares=NON_IID, per_class=10, seed=3)
    family: list[int] = []
    try:
        central.start()
        for name in ("alice", "bob"):
            central.admin("admin", "create", name, "--password-stdin", input_text=f"{PASSWORD}\n")
        d.browser = dashboard_browser(central, root / "chromium-profile")
        yield d
    finally:
        if d.browser is not None:
            d.browser.quit()
        d.procs.stop_all()
        if central.proc is not None and central.proc.poll() is None:
            family = descendants(central.proc.pid)
        central.stop()
        for pid in family:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


# ---------------------------------------------------------------- signing in
def test_a_wrong_password_is_refused_and_repeated_failures_are_rate_limited(dash):
    dash.open("/dashboard/")
    assert dash.path().startswith("/dashboard/sign-in?next=")  # nothing is shown before signing in
    dash.sign_in("alice", "not the password")
    assert "do not match an administrator account" in dash.css("#sign-in-error").text
    dash.shot("01-sign-in-refused")
    for _ in range(5):  # bob: five failures
        dash.sign_in("bob", "guess")
    dash.sign_in("bob", PASSWORD)  # the right password, too late: the account is locked for a while
    assert "Too many failed sign-in attempts" in dash.css("#sign-in-error").text
    assert dash.browser.get_cookie("__Host-fedxray_session") is None
    dash.sign_in("alice", PASSWORD)  # another account from the same computer is not locked out
    assert dash.path() == "/dashboard/"
    assert dash.css("[data-testid=account]").text == "alice"
    cookie = dash.browser.get_cookie("__Host-fedxray_session")
    assert cookie["secure"] and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    dash.shot("02-overview-empty")


# ---------------------------------------------------------------- workstations
def test_tokens_made_in_the_browser_enrol_workstations(dash):
    for name in SITES:
        dash.open("/dashboard/workstations")
        dash.fill("site", f"Hospital {name}")
        dash.fill("expires", "1h")
        dash.click("form[action='/dashboard/tokens'] button")
        token = dash.css("[data-testid=token]").text
        fingerprint = dash.css("[data-testid=fingerprint]").text
        assert token.startswith("fxe1.") and f"--token {token}" in dash.css("[data-testid=command]").text
        groups = dash.css("[data-testid=fingerprint-groups]").text.split()  # as the enrol wizard shows it
        assert len(groups) == 16 and "".join(groups) == fingerprint.replace(":", "")
        if name == SITES[0]:
            dash.shot("03-token-created")
        ws = dash.stations[name] = Workstation(dash.root / name, name)
        result = ws.fedxray("enroll", "--central", dash.central.url, "--token", token, "--ca-fingerprint", fingerprint)
        assert result.returncode == 0, result.stdout + result.stderr
    for name in SITES:
        dash.federate(name)
    dash.open("/dashboard/")
    wait_for(lambda: dash.open("/dashboard/") or dash.css("[data-testid=online]").text.startswith("2 "),
             timeout=180, interval=3, what=f"two workstations online on the overview\n{dash.tails()}")  # fmt: skip
    dash.open("/dashboard/workstations")
    rows = {r.get_attribute("data-node"): r.text for r in dash.all("#nodes-table tbody tr[data-node]")}
    assert len(rows) == 2 and all("online" in text for text in rows.values())
    assert {s for s in SITES if any(f"Hospital {s}" in t for t in rows.values())} == set(SITES)
    states = [r.text for r in dash.all("tr[data-token]")]
    assert len(states) == 2 and all(" used " in f" {t} " for t in states)
    dash.shot("04-workstations")


# ---------------------------------------------------------------- a run from the form
def test_a_run_started_from_the_form_trains_and_its_charts_gain_points(dash):
    dash.open("/dashboard/runs/new")
    dash.shot("05-run-form")
    for key, value in (("num-server-rounds", "2"), ("min-sites", "2"), ("arch", "tiny"), ("input-size", "64"),
                       ("local-epochs", "1"), ("round-timeout", "240"), ("batch-size", "8")):  # fmt: skip
        dash.fill(f"f-{key}", value)
    dash.fill("f-fraction-train", "1.5")  # refused, with the reason, and nothing started
    dash.click("form.run-form button[type=submit]")
    assert "must lie in (0, 1]" in dash.css("#form-error").text
    assert dash.css("#f-fraction-train").get_attribute("aria-invalid") == "true"
    assert dash.css("#f-num-server-rounds").get_attribute("value") == "2"  # what was typed is kept
    assert dash.central.admin_json("run", "status")["runs"] == []
    dash.shot("06-run-form-refused")
    dash.fill("f-fraction-train", "1.0")
    dash.click("form.run-form button[type=submit]")
    assert dash.path().startswith("/dashboard/runs/")
    run_id = int(dash.path().rsplit("/", 1)[1])
    dash.facts["run"] = run_id
    status = dash.central.admin_json("run", "status", str(run_id))
    assert status["run"]["started_by"] == "alice" and status["run"]["config"]["arch"] == "tiny"
    assert status["run"]["fab"]["installed_code"] is True and len(status["run"]["fab"]["fab_hash"]) == 64
    # The page follows the run by itself: the accuracy chart gets round 1, then round 2, without a reload.
    wait_for(lambda: dash.chart_points("accuracy") >= 1, timeout=480, interval=2,
             what=f"round 1 on the run's chart\n{dash.tails()}")  # fmt: skip
    assert dash.chart_points("accuracy") == 1 and dash.path() == f"/dashboard/runs/{run_id}"
    # The tables below the charts follow too (htmx fetches them again when the charts see a new round).
    wait_for(lambda: [a.text for a in dash.all("#rounds-table a")] == [f"run{run_id}-round1"], timeout=30,
             interval=1, what="the rounds table to show round 1's model version")  # fmt: skip
    assert "Confusion matrix, round 1" in dash.css("#run-tables").text
    dash.shot("07-run-during")
    dash.open("/dashboard/")
    dash.shot("08-overview-during")
    dash.open(f"/dashboard/runs/{run_id}")
    wait_for(lambda: dash.chart_points("accuracy") == 2 and dash.css("#run-status").text == "finished",
             timeout=480, interval=2, what=f"round 2 and the run's end on the page\n{dash.tails()}")  # fmt: skip
    for name in ("loss", "macro", "sensitivity", "auroc", "sites"):
        assert dash.chart_points(name) == 2, name
    dash.open(f"/dashboard/runs/{run_id}")  # a fresh load shows the same, and the best round marked
    best = [r.text for r in dash.all("#rounds-table tr.best")]
    assert len(best) == 1 and "best" in best[0]
    assert dash.all("table.matrix tbody tr") and len(dash.all("table.matrix tbody tr")) == 4
    dash.shot("09-run-after")
    dash.open(f"/dashboard/runs/{run_id}?round=1")
    assert "round 1" in dash.css("table.matrix").find_element("xpath", "..").text.lower()
    # The central knows who took part: each workstation now counts one run.
    dash.open("/dashboard/workstations")
    counts = [r.find_elements("css selector", "td.num")[0].text for r in dash.all("#nodes-table tbody tr[data-node]")]
    assert counts == ["1", "1"]


def test_a_release_from_the_models_page_is_signed(dash):
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    dash.open("/dashboard/models")
    versions = [r.get_attribute("data-version") for r in dash.all("tr[data-version]")]
    assert len(versions) == 2
    dash.shot("10-models-before-release")
    dash.open(f"/dashboard/models/compare?a={versions[1]}&b={versions[0]}")
    assert len(dash.all("[data-compare]")) == 2 and dash.all("#compare-validation tbody tr")
    dash.shot("11-models-compare")
    best = next(v["version"] for v in dash.central.admin_json("models", "list") if v["is_best"])
    dash.open(f"/dashboard/models/{best}")
    dash.shot("12-model-card")
    dash.open(f"/dashboard/models/{best}/release")
    assert "will be offered" in dash.css("ul.points").text and "fedxray models update" in dash.css("ul.points").text
    dash.shot("13-release-confirm")
    dash.click("form.actions button[type=submit]")
    assert dash.path() == "/dashboard/models"
    assert "released" in dash.css(f"tr[data-version='{best}']").text
    signature = dash.css("[data-testid=signature]").text
    with dash.central.client(dash.central.credential("admin")) as api:
        released = api.get("/api/v1/models/released").json()
    assert released["version"] == best and released["signature"] == signature
    key = load_pem_public_key((dash.central.home / "pki" / "model-signing.pub").read_bytes())
    key.verify(base64.b64decode(signature), released["manifest"].encode("ascii"))  # raises if it does not verify
    dash.shot("14-models-released")


def test_a_run_is_stopped_from_its_page(dash):
    dash.open("/dashboard/runs/new")
    for key, value in (("num-server-rounds", "50"), ("min-sites", "3"), ("arch", "tiny"), ("input-size", "64")):
        dash.fill(f"f-{key}", value)
    dash.click("form.run-form button[type=submit]")
    run_id = int(dash.path().rsplit("/", 1)[1])

    def flower_running():  # it waits for a third site that never comes
        return (dash.central.admin_json("run", "status", str(run_id))["flower"] or {}).get("status") == "running"

    wait_for(flower_running, timeout=120, interval=2, what="the second run to be running in Flower")
    dash.open(f"/dashboard/runs/{run_id}")
    dash.click("a[href$='/stop']")
    dash.shot("15-stop-confirm")
    dash.click("form.actions button[type=submit]")
    assert dash.css("#run-status").text == "stopped" and "Stopped by alice (dashboard)" in dash.css("#run-message").text
    wait_for(lambda: (dash.central.admin_json("run", "status", str(run_id))["flower"] or {}).get("status")
             == "finished:stopped", timeout=60, interval=2, what="Flower to stop the run")  # fmt: skip
    dash.facts["stopped"] = run_id
    dash.open("/dashboard/runs")
    dash.shot("16-runs")


def test_the_audit_log_shows_each_action_with_the_account(dash):
    dash.open("/dashboard/audit?actor=admin%3Aalice")
    rows = [r.text for r in dash.all("#audit-table tbody tr")]
    done = {" ".join(r.split()[3:5]) for r in rows}  # "admin:alice token.create …" after the date and time
    for action, target in (("session.start", "session:"), ("token.create", "token:"), ("run.start", f"run:{dash.facts['run']}"),
                           ("model.release", "model:"), ("run.stop", f"run:{dash.facts['stopped']}")):  # fmt: skip
        assert any(r.split()[3] == "admin:alice" and r.split()[4] == action and target in r for r in rows), (action, done)
    assert all(r.split()[3] == "admin:alice" for r in rows)
    dash.fill("actor", "")
    dash.fill("action", "session.refused")
    dash.click("form.filters button[type=submit]")
    refused = [r.text for r in dash.all("#audit-table tbody tr")]
    assert refused and all("session.refused" in r and "account:" in r for r in refused)
    dash.open("/dashboard/audit")
    dash.shot("17-audit")


def test_every_page_loads_only_from_the_central(dash):
    """Scripts, styles and data all come from the central itself (a hospital's central may have no internet)."""
    for path in ("/dashboard/", "/dashboard/workstations", "/dashboard/runs", f"/dashboard/runs/{dash.facts['run']}",
                 "/dashboard/runs/new", "/dashboard/models", "/dashboard/audit"):  # fmt: skip
        dash.open(path)
        loaded = dash.browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
        assert loaded and all(url.startswith(dash.central.url + "/") for url in loaded), (path, loaded)
        scripts = dash.browser.execute_script("return [...document.scripts].map(s => s.src).filter(Boolean)")
        assert {Path(u).name for u in scripts} == {"htmx.min.js", "uPlot.iife.min.js", "dashboard.js"}, scripts
    with httpx.Client(base_url=dash.central.url, verify=dash.central.ssl_context()) as client:
        for name in ("htmx.LICENSE.txt", "uPlot.LICENSE.txt", "VENDOR.md"):
            assert client.get(f"/dashboard/static/vendor/{name}").status_code == 200, name


# ---------------------------------------------------------------- what the dashboard refuses
def test_a_forged_form_post_without_the_csrf_token_is_refused(dash):
    dash.open("/dashboard/workstations")
    csrf = dash.css("input[name=csrf]").get_attribute("value")
    cookies = {"__Host-fedxray_session": dash.cookie()}
    before = len(dash.central.admin_json("token", "list"))
    with httpx.Client(base_url=dash.central.url, verify=dash.central.ssl_context(), cookies=cookies) as forger:
        cases = [({"site": "Forged"}, {}), ({"site": "Forged", "csrf": "x" * 43}, {}),
                 ({"site": "Forged", "csrf": csrf}, {"Origin": "https://evil.example"}),
                 ({"site": "Forged", "csrf": csrf}, {"Sec-Fetch-Site": "cross-site"})]  # fmt: skip
        for data, headers in cases:
            r = forger.post("/dashboard/tokens", data=data, headers=headers)
            assert r.status_code == 403 and "nothing was changed" in r.text, (data, headers)
        assert len(dash.central.admin_json("token", "list")) == before
        # The same request with this session's token is accepted: the refusals above were for the token alone.
        ok = forger.post("/dashboard/tokens", data={"site": "Real", "csrf": csrf, "expires": "1h"})
        assert ok.status_code == 200 and "fxe1." in ok.text
    assert len(dash.central.admin_json("token", "list")) == before + 1
    # A page in the browser that posts without the token is refused the same way.
    status = dash.browser.execute_script(
        "var x = new XMLHttpRequest(); x.open('POST', '/dashboard/runs/1/stop', false);"
        "x.setRequestHeader('Content-Type', 'application/x-www-form-urlencoded'); x.send('a=1'); return x.status;")
    assert status == 403


def test_a_workstation_credential_cannot_open_any_page(dash):
    ws = dash.stations[SITES[0]]
    got = ws.python("from app.core.enrollment import credential, load_enrollment\n"
                    "print(credential(load_enrollment(), None))")  # fmt: skip
    assert got.returncode == 0, got.stderr
    ws_credential = got.stdout.strip()
    assert ws_credential.startswith("fxw_")
    pages = ["/dashboard/", "/dashboard/workstations", "/dashboard/runs", f"/dashboard/runs/{dash.facts['run']}",
             f"/dashboard/runs/{dash.facts['run']}/data.json", "/dashboard/models", "/dashboard/audit",
             "/dashboard/runs/new"]  # fmt: skip
    with httpx.Client(base_url=dash.central.url, verify=dash.central.ssl_context()) as client:
        for credential in (ws_credential, dash.central.credential("admin"), dash.central.credential("service")):
            for path in pages:
                r = client.get(path, headers={"Authorization": f"Bearer {credential}"})
                assert r.status_code == 403 and "cannot open the dashboard" in r.text, (path, credential[:4])
            # Nor as a session cookie, nor as a password.
            with httpx.Client(base_url=dash.central.url, verify=dash.central.ssl_context(),
                              cookies={"__Host-fedxray_session": credential}) as with_cookie:  # fmt: skip
                r = with_cookie.get("/dashboard/")
            assert r.status_code == 303 and r.headers["location"].startswith("/dashboard/sign-in")
    dash.sign_in("alice", ws_credential)
    assert "do not match" in dash.css("#sign-in-error").text or "Too many" in dash.css("#sign-in-error").text


def test_an_idle_session_expires(dash):
    dash.procs.stop_all()  # the workstations are done: spare the CPU
    dash.central.stop()
    dash.central.start("--session-idle-timeout", "15s")
    dash.sign_in("alice", PASSWORD)
    assert dash.path() == "/dashboard/"
    dash.open("/dashboard/runs")  # activity keeps it alive
    assert dash.path() == "/dashboard/runs"
    time.sleep(20)
    dash.click("nav a[href='/dashboard/models']")
    assert dash.path().startswith("/dashboard/sign-in?next=%2Fdashboard%2Fmodels")
    assert "session has ended" in dash.css("p.notice").text
    dash.shot("18-session-expired")
    dash.sign_in("alice", PASSWORD)
    dash.open("/dashboard/audit?action=session.expire")
    assert any("admin:alice" in r.text for r in dash.all("#audit-table tbody tr"))
    with dash.central.client(dash.central.credential("admin")) as api:  # and the API never saw a password
        events = api.get("/api/v1/admin/audit").json()
    assert PASSWORD not in json.dumps(events) and PASSWORD not in dash.central.log_text()

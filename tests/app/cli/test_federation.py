"""`fedxray enroll` / `fedxray federation …` / `fedxray leave` against real parts (issue 10, below the GUI).

Every part is real: `fedxray-central serve` (TLS, node authentication) from tests/support/central.py, the test
session's gnome-keyring (tests/support/keyring_session.py), the background agent started by `fedxray federation
opt-in` as a detached process with its guardian, its SuperNode run through FedXray's launcher on loopback, a
one-round run of the tiny network at 64 px started with `fedxray-central run start`. The clock skew is real too:
the `fedxray` process runs under libfaketime (Debian's libfaketime, LD_PRELOAD) with its clock moved, and must
notice it from the central's HTTP Date header before anything is enrolled. Tests run in file order and share the
module's central and workstations.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.fl.flower_support import Processes, flower_env, make_sites
from tests.support import keyring_session
from tests.support.central import BIN, CentralProcess, Workstation, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]
secret_service = keyring_session.secret_service
FAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")
RUN_ARGS = ("--rounds", "1", "--min-sites", "1", "--arch", "tiny", "--input-size", "64", "--local-epochs", "2",
            "--set", "batch-size=4", "--timeout", "240")  # fmt: skip
SHARES = {"site-a": dict.fromkeys(("Covid", "Normal", "Pneumonia-Bacterial", "Pneumonia-Viral"), 0.5),
          "site-b": dict.fromkeys(("Covid", "Normal", "Pneumonia-Bacterial", "Pneumonia-Viral"), 0.5)}  # fmt: skip


# ---------------------------------------------------------------- helpers
def fedxray(ws: Workstation, *args: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "fedxray"), *args], capture_output=True, text=True, timeout=timeout,
                          env={**ws.env(), **env}, stdin=subprocess.DEVNULL)  # fmt: skip


def fedxray_json(ws: Workstation, *args: str, code: int = 0, **env: str):
    out = fedxray(ws, *args, "--json", **env)
    assert out.returncode == code, out.stdout + out.stderr
    return json.loads(out.stdout)


@contextlib.contextmanager
def as_workstation(ws: Workstation):
    """This test process reads the workstation's folders (XDG variables) for a moment."""
    names = ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME")
    old = {n: os.environ.get(n) for n in names}
    os.environ.update({n: ws.env()[n] for n in names})
    try:
        yield
    finally:
        for n, v in old.items():
            if v is None:
                os.environ.pop(n, None)
            else:
                os.environ[n] = v


def agent_status(ws: Workstation):
    from app.core.federation_status import read_status

    with as_workstation(ws):
        return read_status(ws.root / "data" / "fedxray")


def agent_processes(ws: Workstation) -> list[psutil.Process]:
    """Live `fedxray federation agent` processes (not guardians) of this workstation."""
    found = []
    for proc in psutil.process_iter(["cmdline", "environ"]):
        with contextlib.suppress(psutil.Error, TypeError):
            cmd = proc.info["cmdline"] or []
            env = proc.info["environ"] or {}
            if ("federation" in cmd and "agent" in cmd and "--guard" not in cmd
                    and env.get("XDG_DATA_HOME") == ws.env()["XDG_DATA_HOME"] and proc.status() != psutil.STATUS_ZOMBIE):
                found.append(proc)
    return found


def workstation_processes(ws: Workstation) -> list[psutil.Process]:
    """Every live process started as this workstation (agent, guardian, launcher, SuperNode, workers)."""
    found = []
    for proc in psutil.process_iter(["environ"]):
        with contextlib.suppress(psutil.Error, TypeError):
            if (proc.info["environ"] or {}).get("XDG_DATA_HOME") == ws.env()["XDG_DATA_HOME"] and \
                    proc.status() != psutil.STATUS_ZOMBIE:  # fmt: skip
                found.append(proc)
    return found


def kill_all(ws: Workstation) -> None:
    for proc in workstation_processes(ws):
        with contextlib.suppress(psutil.Error):
            proc.kill()


class World:
    def __init__(self, root: Path, central: CentralProcess, sites: dict[str, Path]) -> None:
        self.root, self.central, self.sites = root, central, sites
        self.stations: dict[str, Workstation] = {}
        self.procs = Processes(root / "logs")

    def station(self, name: str) -> Workstation:
        if name not in self.stations:
            self.stations[name] = Workstation(self.root / name, name)
        return self.stations[name]

    def enrol(self, ws: Workstation, site: str) -> dict:
        token = self.central.create_token(site)
        out = fedxray(ws, "enroll", "--central", self.central.url, "--token", token["token"],
                      "--ca-fingerprint", token["ca_fingerprint"])  # fmt: skip
        assert out.returncode == 0, out.stdout + out.stderr
        return token

    def start_run(self, *extra: str) -> dict:
        return self.central.admin_json("run", "start", *RUN_ARGS, *extra)["run"]

    def run_status(self, run_id: int) -> dict:
        return self.central.admin_json("run", "status", str(run_id))

    def wait_finished(self, run_id: int, timeout: float) -> dict:
        def finished():
            status = self.run_status(run_id)
            if status["run"]["status"] in ("failed", "stopped"):
                raise AssertionError(f"run {run_id} ended {status['run']}\n{self.tails()}")
            done = status["run"]["status"] == "finished" and (status["flower"] or {}).get("status") == "finished:completed"
            return status if done else None

        try:
            return wait_for(finished, timeout=timeout, interval=2, what=f"run {run_id} to finish")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.tails()}") from None

    def replies(self, flower_run_id: int) -> list[dict]:
        path = self.central.home / "runs" / f"run-{flower_run_id}" / "replies.jsonl"
        return [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.exists() else []

    def tails(self) -> str:
        parts = []
        for ws in self.stations.values():
            for name in ("federation-agent.log", "federation.log"):
                path = ws.root / "data" / "fedxray" / name
                if path.exists():
                    parts.append(f"--- {ws.name} {name}\n{path.read_text(errors='replace')[-3000:]}")
        parts += [f"--- {n}\n{self.procs.log(n)[-2000:]}" for n in self.procs.procs]
        parts.append(f"--- central\n{self.central.log_text()[-3000:]}")
        return "\n".join(parts)


@pytest.fixture(scope="module")
def world(tmp_path_factory, shared_data, secret_service):
    root = tmp_path_factory.mktemp("federation-cli")
    sites = make_sites(shared_data / "cxr", root / "data", shares=SHARES, per_class=6, seed=3)
    central = CentralProcess(root / "home")
    w = World(root, central, sites)
    try:
        central.start()
        yield w
    finally:
        for ws in w.stations.values():
            with contextlib.suppress(Exception):
                fedxray(ws, "federation", "opt-out", timeout=90)
            kill_all(ws)
        w.procs.stop_all()
        family = [c.pid for c in psutil.Process(central.proc.pid).children(recursive=True)] if central.proc else []
        central.stop()
        for pid in family:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


# ---------------------------------------------------------------- enrolment from the command line
def test_enrol_then_status_as_the_central_sees_it(world):
    ws = world.station("ws-a")
    token = world.enrol(ws, "Hospital A")
    status = fedxray_json(ws, "federation", "status")
    enrolled = status["enrollment"]
    assert enrolled["enrolled"] is True and enrolled["site"] == "Hospital A"
    assert enrolled["central_url"] == world.central.url and enrolled["ca_fingerprint"] == token["ca_fingerprint"]
    nodes = {n["node_id"]: n for n in world.central.admin_json("nodes", "list")}
    assert enrolled["node_id"] in nodes and nodes[enrolled["node_id"]]["site"] == "Hospital A"
    assert enrolled["reachable"] is True and enrolled["central_status"] == "active"
    assert enrolled["online"] is False  # no SuperNode yet
    assert enrolled["secrets_present"] is True and enrolled["clock"]["level"] == "ok"
    assert status["agent"]["running"] is False and status["agent"]["opted_in"] is False
    assert status["agent"]["phase"] == "stopped" and status["schedule"]["windows_text"] == "always"
    text = fedxray(ws, "enroll", "--status")
    assert text.returncode == 0 and f"node {enrolled['node_id']}" in text.stdout
    groups = token["ca_fingerprint"].upper()
    assert " ".join(groups[i:i + 4] for i in range(0, 16, 4)) in text.stdout  # read out in groups of four


def test_a_reused_token_is_refused_and_nothing_is_kept(world):
    token = world.central.create_token("Hospital R")
    first = world.station("ws-r1")
    out = fedxray(first, "enroll", "--central", world.central.url, "--token", token["token"])
    assert out.returncode == 0, out.stderr
    second = world.station("ws-r2")
    again = fedxray(second, "enroll", "--central", world.central.url, "--token", token["token"])
    assert again.returncode == 1 and "already been used" in again.stderr and "ask IT for a new one" in again.stderr
    assert not (second.config_dir / "central").exists()
    assert fedxray(first, "leave").returncode == 0


def test_central_down_during_enrolment(world):
    token = world.central.create_token("Hospital D")
    ws = world.station("ws-d")
    closed = f"https://127.0.0.1:{world.central.superlink_port + 1}"  # nothing listens there
    with socketless(closed):
        out = fedxray(ws, "enroll", "--central", closed, "--token", token["token"])
    assert out.returncode == 1 and "Could not reach the central" in out.stderr and "Nothing was changed" in out.stderr
    assert not (ws.config_dir / "central").exists()
    # The token was not used: it still enrols once the central is reachable.
    assert fedxray(ws, "enroll", "--central", world.central.url, "--token", token["token"]).returncode == 0
    assert fedxray(ws, "leave").returncode == 0


@contextlib.contextmanager
def socketless(url: str):
    import socket

    port = int(url.rsplit(":", 1)[1])
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0, "the 'closed' port is in use"
    yield


@pytest.mark.skipif(not FAKETIME.exists(), reason="needs Debian's libfaketime (apt-get install libfaketime)")
@pytest.mark.parametrize("shift,words", [("+10m", r"1[01] minutes ahead"), ("+40s", r"(39|40|41) seconds ahead")])
def test_a_clock_out_of_step_is_caught_before_enrolment(world, shift, words):
    # +40 s already fails Flower's node authentication: it accepts a signature at most 5 s from the future.
    token = world.central.create_token("Hospital C")
    ws = world.station(f"ws-clock{shift}")
    out = fedxray(ws, "enroll", "--central", world.central.url, "--token", token["token"],
                  LD_PRELOAD=str(FAKETIME), FAKETIME=shift, FAKETIME_DONT_FAKE_MONOTONIC="1")  # fmt: skip
    assert out.returncode == 1, out.stdout + out.stderr
    # The Date header has a resolution of one second: the offset is known to about a second.
    assert re.search(words, out.stderr) and "date and time" in out.stderr, out.stderr
    assert not (ws.config_dir / "central").exists()
    # The token was not used; with the right time it enrols.
    assert fedxray(ws, "enroll", "--central", world.central.url, "--token", token["token"]).returncode == 0
    skewed = fedxray_json(ws, "federation", "status", LD_PRELOAD=str(FAKETIME), FAKETIME=shift,
                          FAKETIME_DONT_FAKE_MONOTONIC="1")["enrollment"]  # fmt: skip
    assert skewed["clock"]["level"] == "fail" and re.search(words, skewed["problem"])
    assert fedxray(ws, "leave").returncode == 0


def test_a_locked_keyring_is_reported_with_what_to_do(world):
    token = world.central.create_token("Hospital K")
    ws = world.station("ws-k")
    service = keyring_session.start_secret_service()  # a keyring of its own: locking it spares the session's
    try:
        bus = {"DBUS_SESSION_BUS_ADDRESS": service.address}
        lock = subprocess.run([sys.executable, "-c", "import secretstorage\nconn = secretstorage.dbus_init()\n"
                               "secretstorage.get_default_collection(conn).lock()\n"],
                              env={**os.environ, **bus}, capture_output=True, text=True, timeout=30)  # fmt: skip
        assert lock.returncode == 0, lock.stderr
        out = fedxray(ws, "enroll", "--central", world.central.url, "--token", token["token"], **bus)
        assert out.returncode == 1 and "keyring" in out.stderr and "unlock" in out.stderr, out.stderr
        assert "Nothing was changed" in out.stderr and not (ws.config_dir / "central").exists()
    finally:
        service.stop()
    assert fedxray(ws, "enroll", "--central", world.central.url, "--token", token["token"]).returncode == 0
    assert fedxray(ws, "leave").returncode == 0


# ---------------------------------------------------------------- the background agent
def test_readiness_check(world):
    ws = world.station("ws-a")
    with as_workstation(ws):
        from app.core import federation_settings

        federation_settings.update(data_dir=str(world.sites["site-a"]))
    report = fedxray_json(ws, "federation", "check", "--no-device")
    checks = {c["name"]: c for c in report["checks"]}
    assert report["ready"] is True, report
    assert checks["Labelled images"]["level"] == "ok" and "for validation" in checks["Labelled images"]["detail"]
    n_images = sum(1 for p in world.sites["site-a"].rglob("*.png"))
    assert checks["Labelled images"]["detail"].startswith(f"{n_images} images")
    assert checks["Clock"]["level"] == "ok" and checks["Central"]["level"] == "ok"
    assert checks["Free disk"]["level"] == "ok"


def test_opt_in_starts_the_agent_which_takes_part_in_a_round(world):
    ws = world.station("ws-a")
    t0 = time.monotonic()
    out = fedxray_json(ws, "federation", "opt-in", "--data", str(world.sites["site-a"]))
    took = time.monotonic() - t0
    assert out["ok"] and out["agent"]["running"] and out["agent"]["opted_in"]
    assert took < 30, f"opt-in took {took:.1f} s"  # returns once the detached agent holds its lock
    entry = ws.root / "config" / "autostart" / "fedxray-federation-agent.desktop"
    from app.core.autostart import exec_args

    assert exec_args(entry.read_text())[-3:] == ["app", "federation", "agent"][-3:] or \
        exec_args(entry.read_text())[-2:] == ["federation", "agent"]  # fmt: skip
    [agent] = agent_processes(ws)
    assert agent.pid == out["agent"]["pid"] and os.getsid(agent.pid) == agent.pid  # detached: its own session

    wait_for(lambda: agent_status(ws).phase == "waiting", timeout=180, interval=0.5,
             what=f"the agent to connect\n{world.tails()}")  # fmt: skip
    launcher = [p for p in agent.children(recursive=True) if "fl.launcher" in " ".join(p.cmdline())]
    assert launcher and launcher[0].nice() >= 10  # the SuperNode runs through FedXray's launcher, lower priority
    assert any("--isolation" in " ".join(p.cmdline()) for p in launcher[0].children(recursive=True))

    run = world.start_run()
    seen: list = []
    training, train_done = {}, {}
    marker = ws.root / "data" / "fedxray" / "federation-training.pid"

    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        s = agent_status(ws)
        if not seen or seen[-1] != s.phase:
            seen.append(s.phase)
        if s.phase == "training" and s.batches and not training:
            training.update(s.to_dict(), marker=marker.exists())
            workers = [p for p in agent.children(recursive=True) if "worker" in p.cmdline()]
            with contextlib.suppress(psutil.Error):
                training["worker_env"] = workers[0].environ() if workers else {}
        client = json_file(ws.root / "data" / "fedxray" / "federation-round.json")
        if client.get("message") == "train" and client.get("phase") == "sending":
            train_done.update(client)
        if train_done and s.phase == "waiting":
            break
        time.sleep(0.1)
    status = world.wait_finished(run["id"], timeout=420)
    assert training, f"no training phase seen: {seen}\n{world.tails()}"
    assert training["round"] == 1 and training["num_rounds"] == 1 and training["epochs"] == 2
    assert training["batches"] >= 1 and 0 <= training["batch"] <= training["batches"]
    assert "Training: epoch" in training["phase_text"] and training["run_id"] == int(run["flower_run_id"])
    assert training["marker"] is True  # the app's classification was told to leave the cores
    env = training.get("worker_env") or {}
    assert env.get("TF_NUM_INTRAOP_THREADS") == str(max(1, (os.cpu_count() or 2) // 2))
    assert seen.index("waiting") < seen.index("training"), seen
    after = wait_for(lambda: (s := agent_status(ws)).phase == "waiting" and s, timeout=60, what="waiting again")
    assert after.last_contact and after.node_id == fedxray_json(ws, "federation", "status")["enrollment"]["node_id"]
    assert not marker.exists()
    # The ClientApp's own file at the end of training: every batch of both epochs was reported.
    assert train_done["epoch"] == 2 and train_done["batch"] == train_done["batches"] == training["batches"]
    progress = json_file(ws.root / "data" / "fedxray" / "federation-status.json")
    assert progress["round"] == 1 and progress["num_rounds"] == 1
    rounds = [r for r in status["rounds"] if r["server_round"] == 1]
    assert rounds and rounds[0]["num_sites"] == 1
    accepted = [r for r in world.replies(int(run["flower_run_id"])) if r["verdict"] == "accepted"]
    assert {r["node_id"] for r in accepted} == {after.node_id}
    world.first_agent = agent.pid


def test_a_second_start_attaches_to_the_running_agent(world):
    ws = world.station("ws-a")
    before = agent_processes(ws)
    again = [subprocess.Popen([str(BIN / "fedxray"), "federation", "agent"], env=ws.env(), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for _ in range(2)]  # two windows at once
    outputs = [p.communicate(timeout=120)[0] for p in again]
    assert all(p.returncode == 0 for p in again) and all("already runs" in o for o in outputs), outputs
    # Nor does the foreground form start a second SuperNode for this user.
    foreground = fedxray(ws, "federate", "--data", str(world.sites["site-a"]))
    assert foreground.returncode == 2 and "already takes part" in foreground.stderr, foreground.stderr
    out = fedxray_json(ws, "federation", "opt-in")  # opting in again keeps the running agent
    assert out["agent"]["pid"] == before[0].pid
    assert [p.pid for p in agent_processes(ws)] == [before[0].pid]


def test_an_agent_killed_mid_round_is_started_again_without_a_duplicate(world):
    ws = world.station("ws-a")
    [agent] = agent_processes(ws)
    run = world.start_run()
    wait_for(lambda: agent_status(ws).phase in ("training", "evaluating"), timeout=300, interval=0.2,
             what=f"the round to start\n{world.tails()}")  # fmt: skip
    family = agent.children(recursive=True)
    node = agent_status(ws).node_id
    agent.kill()  # SIGKILL mid-round
    agent.wait(10)
    replaced = wait_for(lambda: [p for p in agent_processes(ws) if p.pid != agent.pid], timeout=60,
                        what="the guardian to start a new agent")  # fmt: skip
    time.sleep(5)
    assert [p.pid for p in agent_processes(ws)] == [replaced[0].pid]  # exactly one
    # The killed agent's launcher, SuperNode and ClientApp went with it (nothing trains for a dead agent).
    wait_for(lambda: not [p for p in family if p.is_running() and p.status() != psutil.STATUS_ZOMBIE],
             timeout=30, what="the old SuperNode to end")  # fmt: skip
    # The new agent connects again as the same node once the SuperLink lets go of the dead connection (seconds
    # to about a minute); it may then take the run's next message, so the run is stopped only after that.
    log = ws.root / "data" / "fedxray" / "federation-agent.log"

    def reconnected() -> bool:
        after = log.read_text(encoding="utf-8").split("ended unexpectedly: starting it again", 1)[-1]
        return f"as node {node}." in after

    wait_for(reconnected, timeout=300, interval=1, what=f"the new agent to connect\n{world.tails()}")
    status = agent_status(ws)
    assert status.pid == replaced[0].pid and status.node_id == node and status.running
    with contextlib.suppress(AssertionError):  # it may have completed with the new agent's replies
        world.central.admin("run", "stop", str(run["id"]))


def test_a_central_that_goes_away_is_reported_and_the_agent_reconnects(world):
    ws = world.station("ws-a")
    world.central.stop()
    try:
        lost = wait_for(lambda: (s := agent_status(ws)).phase == "reconnecting" and s, timeout=120, interval=0.5,
                        what=f"the agent to notice\n{world.tails()}")  # fmt: skip
        assert lost.reconnecting and lost.error_kind == "central-unreachable" and "cannot be reached" in lost.error
    finally:
        world.central.start()  # same home and ports
    back = wait_for(lambda: (s := agent_status(ws)).phase == "waiting" and s, timeout=300, interval=1,
                    what=f"the agent to reconnect\n{world.tails()}")  # fmt: skip
    assert back.error is None and back.running and back.pid == lost.pid  # the same agent, no restart needed


def test_a_window_closing_mid_round_lets_the_round_finish_then_disconnects(world):
    ws = world.station("ws-a")
    node_a = agent_status(ws).node_id
    log = ws.root / "data" / "fedxray" / "federation-agent.log"
    run = world.start_run("--local-epochs", "12")  # long enough to close the window while it trains
    wait_for(lambda: agent_status(ws).phase == "training", timeout=300, interval=0.2,
             what=f"the round to train\n{world.tails()}")  # fmt: skip
    later = DAYS[(dt.date.today().weekday() + 2) % 7]
    assert fedxray(ws, "federation", "schedule", "--windows", later).returncode == 0
    wait_for(lambda: agent_status(ws).phase == "paused", timeout=300, interval=0.5,
             what=f"the agent to finish the round and pause\n{world.tails()}")  # fmt: skip
    text = log.read_text()
    assert "the training window closed: finishing the current round first" in text.lower()
    assert "The round finished: disconnecting." in text and "abandoned" not in text
    def train_replies():  # the central records the reply once its ServerApp has taken it in
        return [r for r in world.replies(int(run["flower_run_id"])) if r["phase"] == "train" and r["round"] == 1]

    train = wait_for(train_replies, timeout=120, what=f"the train reply to be recorded\n{world.tails()}")
    assert [(r["node_id"], r["verdict"]) for r in train] == [(node_a, "accepted")]  # sent whole, then disconnected
    with contextlib.suppress(AssertionError):  # its evaluation has no site now: stop it
        world.central.admin("run", "stop", str(run["id"]))


def test_outside_the_training_window_no_work_is_taken_while_the_run_proceeds(world):
    ws, other = world.station("ws-a"), world.station("ws-b")
    later = DAYS[(dt.date.today().weekday() + 2) % 7]
    assert fedxray(ws, "federation", "schedule", "--windows", later).returncode == 0
    wait_for(lambda: agent_status(ws).phase == "paused", timeout=120, interval=0.5,
             what=f"the agent to pause\n{world.tails()}")  # fmt: skip
    paused = agent_status(ws)
    assert paused.running and not paused.schedule_open and paused.next_change.startswith(
        (dt.date.today() + dt.timedelta(days=2)).isoformat())  # fmt: skip
    assert not [p for p in psutil.Process(paused.pid).children(recursive=True)
                if "fl.launcher" in " ".join(p.cmdline())]  # no SuperNode connected  # fmt: skip
    node_a = paused.node_id
    world.enrol(other, "Hospital B")
    world.procs.start("ws-b", [str(BIN / "fedxray"), "federate", "--data", str(world.sites["site-b"])],
                      env=flower_env(**{k: other.env()[k] for k in ("XDG_CONFIG_HOME", "XDG_DATA_HOME",
                                                                      "XDG_CACHE_HOME")}))  # fmt: skip
    wait_for(lambda: json_file(other.root / "data" / "fedxray" / "federation-status.json").get("state") == "connected",
             timeout=180, what=f"site B to connect\n{world.tails()}")  # fmt: skip
    round_file = ws.root / "data" / "fedxray" / "federation-round.json"
    before = round_file.stat().st_mtime_ns
    run = world.start_run()
    world.wait_finished(run["id"], timeout=600)
    replies = world.replies(int(run["flower_run_id"]))
    assert replies and node_a not in {r["node_id"] for r in replies}  # site A took no work, not even a refusal
    assert round_file.stat().st_mtime_ns == before
    assert agent_status(ws).phase == "paused"
    assert fedxray(ws, "federation", "schedule", "--always").returncode == 0  # back to always, for what follows
    world.procs.stop_all()


DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def json_file(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def test_opt_out_stops_the_agent_and_removes_the_login_entry(world):
    ws = world.station("ws-a")
    [agent] = agent_processes(ws)
    out = fedxray_json(ws, "federation", "opt-out")
    assert out["ok"] and out["agent"]["running"] is False and out["agent"]["opted_in"] is False
    assert not (ws.root / "config" / "autostart" / "fedxray-federation-agent.desktop").exists()
    assert not agent.is_running() or agent.status() == psutil.STATUS_ZOMBIE
    time.sleep(5)  # the guardian must not bring it back
    assert workstation_processes(ws) == []
    assert agent_status(ws).phase == "stopped"


def test_leave_revokes_the_workstation_at_the_central(world):
    ws = world.station("ws-a")
    node_id = ws.enrollment()["node_id"]
    out = fedxray(ws, "leave")
    assert out.returncode == 0 and "The central unregistered this workstation" in out.stdout, out.stdout + out.stderr
    nodes = {n["node_id"]: n for n in world.central.admin_json("nodes", "list")}
    assert nodes[node_id]["status"] == "left"
    assert not (ws.config_dir / "central").exists()
    assert fedxray_json(ws, "federation", "status")["enrollment"] == {"enrolled": False}

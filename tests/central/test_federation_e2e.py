"""Federated training end to end on loopback, every part real (issue 5, "End-to-end test").

`fedxray-central serve` (TLS, node authentication, SQLite); three workstations enrolled through `fedxray enroll`
(own XDG folders, the test session's real Secret Service), each running `fedxray federate --data <site>` on a
non-IID part of ../shared/data/cxr (site-c has no Covid images); `fedxray-central run start` of FedXray's own
Flower app with the tiny network at 64 px. Tests run in file order and share the module's processes.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from pathlib import Path

import pytest

from fl.classes import CLASSES
from tests.central.test_runs_models import active, classify_version, stored_file, ws_json
from tests.fl.flower_support import (
    NON_IID,
    Processes,
    descendants,
    expected_round_validation,
    flower_env,
    make_sites,
    pooled_mismatches,
)
from tests.support.central import BIN, CentralProcess, Workstation, wait_for

# The timeout is generous: on a 2-core machine shared with other jobs a round of three sites can take minutes.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1500)]

SITES = ("site-a", "site-b", "site-c")
RUN_ARGS = (
    "--min-sites",
    "3",
    "--arch",
    "tiny",
    "--input-size",
    "64",
    "--local-epochs",
    "1",
    "--timeout",
    "240",
)
# The ClientApp reply whitelist, written out by hand from the contract in fl/privacy.py's docstring.
EXPECTED_KEYS = (
    {"num-examples", "train-loss", "train-accuracy", "train-seconds", "eval-seconds", "loss", "accuracy"}
    | {f"macro_{k}" for k in ("sensitivity", "specificity", "precision", "f1", "auroc")}
    | {
        f"{k}/{c}"
        for k in ("sensitivity", "specificity", "precision", "f1", "auroc", "support")
        for c in CLASSES
    }
    | {f"confusion/{t}/{p}" for t in CLASSES for p in CLASSES}
)


# ---------------------------------------------------------------- helpers
def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def round_file(ws: Workstation) -> Path:
    """The ClientApp's own progress file (beside federation-status.json)."""
    return ws.root / "data" / "fedxray" / "federation-round.json"


def status_file(ws: Workstation) -> Path:
    return ws.root / "data" / "fedxray" / "federation-status.json"


def model_spec() -> dict:
    """Names and shapes of the tiny network's arrays at 64 px, built here independently of the apps."""
    from fl.model import build_model

    return {v.path: list(v.shape) for v in build_model("tiny", input_size=64).weights}


class Federation:
    """The central, the workstations and their `fedxray federate` processes."""

    def __init__(
        self, root: Path, central: CentralProcess, stations: dict[str, Workstation], sites: dict
    ) -> None:
        self.root, self.central, self.stations, self.sites = root, central, stations, sites
        self.procs = Processes(root / "logs")

    def federate(self, name: str) -> None:
        ws = self.stations[name]
        env = flower_env(**{k: ws.env()[k] for k in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME")})
        self.procs.start(name, [str(BIN / "fedxray"), "federate", "--data", str(self.sites[name])], env=env)

    def run_status(self, run_id: int) -> dict:
        return self.central.admin_json("run", "status", str(run_id))

    def wait_finished(self, run_id: int, *, timeout: float, while_waiting=None) -> dict:
        def finished():
            if while_waiting:
                while_waiting()
            status = self.run_status(run_id)
            if status["run"]["status"] in ("failed", "stopped"):
                raise AssertionError(f"run {run_id} ended {status['run']}\n{self.tails()}")
            done = (
                status["run"]["status"] == "finished"
                and (status["flower"] or {}).get("status") == "finished:completed"
            )
            return status if done else None

        try:
            return wait_for(finished, timeout=timeout, interval=3, what=f"run {run_id} to finish")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.tails()}") from None

    def tails(self) -> str:
        parts = [f"--- {n}\n{self.procs.log(n)[-2500:]}" for n in self.procs.procs]
        parts.append(f"--- central\n{self.central.log_text()[-4000:]}")
        return "\n".join(parts)


# ---------------------------------------------------------------- module fixture
@pytest.fixture(scope="module")
def fed(tmp_path_factory, shared_data, secret_service):
    root = tmp_path_factory.mktemp("federation-e2e")
    sites = make_sites(shared_data / "cxr", root / "data", shares=NON_IID, per_class=12, seed=1)
    assert not list((sites["site-c"] / "Covid").glob("*")) and list((sites["site-a"] / "Covid").glob("*"))
    central = CentralProcess(root / "home")
    stations = {name: Workstation(root / name, name) for name in SITES}
    f = Federation(root, central, stations, sites)
    serve_family: list[int] = []
    try:
        central.start()
        for name, ws in stations.items():
            token = central.create_token(f"Hospital {name}")
            result = ws.fedxray("enroll", "--central", central.url, "--token", token["token"],
                                "--ca-fingerprint", token["ca_fingerprint"])  # fmt: skip
            assert result.returncode == 0, result.stdout + result.stderr
        for name in SITES:
            f.federate(name)
        wait_for(lambda: all(read_json(status_file(ws)).get("state") == "connected" for ws in stations.values()),
                 timeout=120, what=f"the three workstations to connect\n{f.tails()}")  # fmt: skip
        yield f
    finally:
        f.procs.stop_all()
        if central.proc is not None and central.proc.poll() is None:
            serve_family = descendants(central.proc.pid)
        central.stop()
        for pid in serve_family:  # SuperLink, SuperExec, ServerApp: nothing outlives the module
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


# ---------------------------------------------------------------- a 2-round run, one site killed in round 2
@pytest.fixture(scope="module")
def first_run(fed) -> dict:
    out = fed.central.admin_json("run", "start", "--rounds", "2", *RUN_ARGS)
    run = out["run"]
    procs = fed.procs

    def site_c_training_in_round_2():
        state = read_json(round_file(fed.stations["site-c"]))
        in_round_2 = state.get("run_id") == int(run["flower_run_id"]) and state.get("round") == 2
        busy = state.get("message") == "train" and state.get("phase") in (
            "starting",
            "loading",
            "evaluating",
            "training",
        )
        return state if in_round_2 and busy else None

    try:
        killed = wait_for(
            site_c_training_in_round_2, timeout=600, interval=0.2, what="site-c to train in round 2"
        )
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{fed.tails()}") from None
    node_c = read_json(status_file(fed.stations["site-c"]))["node_id"]
    procs.kill("site-c")  # SIGKILL the `fedxray federate` process group, its SuperNode and ClientApp
    assert procs.procs["site-c"].poll() is not None
    run_dir = fed.central.home / "runs" / f"run-{int(run['flower_run_id'])}"

    def lost_reply():  # the SuperLink reports the dead node's reply as an error once its heartbeat expires
        replies = jsonl(run_dir / "replies.jsonl") if (run_dir / "replies.jsonl").exists() else []
        return [r for r in replies if r["round"] == 2 and r["phase"] == "train" and r["verdict"] == "error"]

    # Coming back before that would let the SuperLink keep waiting for the lost reply until --timeout instead.
    with contextlib.suppress(AssertionError):
        wait_for(lost_reply, timeout=150, interval=1, what="the lost reply")
    fed.federate("site-c")  # the site comes back (min-sites 3 needs it for round 2's evaluation)
    status = fed.wait_finished(run["id"], timeout=420)
    return {"run": run, "status": status, "killed": killed, "node_c": node_c,
            "flower_run_id": int(run["flower_run_id"]), "run_dir": run_dir}  # fmt: skip


def test_the_run_completed_although_a_site_was_killed_mid_round(fed, first_run):
    assert first_run["killed"]["round"] == 2 and first_run["killed"]["message"] == "train"
    assert first_run["status"]["run"]["status"] == "finished"
    replies = jsonl(first_run["run_dir"] / "replies.jsonl")
    lost = [r for r in replies if r["verdict"] == "error"]
    # Flower's error reply for a lost message comes from the SuperLink itself (node id 1), not from the node.
    assert all((r["round"], r["phase"]) == (2, "train") for r in lost), lost
    round2 = [r for r in replies if r["round"] == 2 and r["phase"] == "train" and r["verdict"] == "accepted"]
    assert len(round2) == 2  # the two surviving sites' updates were aggregated, without the killed one
    assert first_run["node_c"] not in {r["node_id"] for r in round2}


def test_metrics_recorded_for_every_round(fed, first_run):
    rounds = {r["server_round"]: r for r in first_run["status"]["rounds"] if r["server_round"] >= 1}
    assert sorted(rounds) == [1, 2]
    assert rounds[1]["num_sites"] == 3 and rounds[2]["num_sites"] == 2
    for r in rounds.values():
        train, ev = r["train_metrics"], r["evaluate_metrics"]
        assert (
            train["num_examples"] > 0
            and train["train_loss"] is not None
            and train["train_accuracy"] is not None
        )
        for key in ("loss", "accuracy", "macro_sensitivity", "macro_specificity", "macro_f1"):
            assert ev[key] is not None, (r["server_round"], key)
    # The values: each round's saved global model evaluated here on the validation patients of the three sites
    # (site-c came back in time for round 2's evaluation, min-sites 3) and pooled by hand from the definitions,
    # against what the central recorded. Every mismatch is listed.
    versions = {v["server_round"]: v for v in jsonl(first_run["run_dir"] / "versions.jsonl")}
    wrong = []
    for n, r in rounds.items():
        assert r["evaluate_metrics"]["num_sites"] == 3, (n, r["evaluate_metrics"]["num_sites"])
        expected = expected_round_validation(versions[n]["dir"], [fed.sites[name] for name in SITES])
        wrong += [f"round {n}: {w}" for w in pooled_mismatches(r["evaluate_metrics"], expected)]
    assert wrong == [], "\n".join(wrong)
    with fed.central.client(fed.central.credential("admin")) as admin:  # the same through the API
        api = admin.get(f"/api/v1/runs/{first_run['run']['id']}/rounds")
        assert api.status_code == 200
        body = api.json()
        items = body if isinstance(body, list) else body.get("rounds", body.get("items"))
        assert sorted(r["server_round"] for r in items if r["server_round"] >= 1) == [1, 2]


def test_a_model_version_per_round_with_its_card(fed, first_run):
    from fl.modelfile import verify

    run_id = first_run["run"]["id"]
    versions = {v["version"]: v for v in fed.central.admin_json("models", "list") if v["run_id"] == run_id}
    assert sorted(v["server_round"] for v in versions.values()) == [1, 2]
    assert sum(v["is_best"] for v in versions.values()) == 1
    local = jsonl(first_run["run_dir"] / "versions.jsonl")
    assert sorted(v["version"] for v in local) == sorted(versions)
    for v in local:
        card = verify(v["dir"])  # the card and the weights' SHA-256
        listed = versions[v["version"]]
        assert card.arch == "tiny" and card.input_size == 64
        assert card.federation["round"] == v["server_round"] == listed["server_round"]
        assert card.federation["flower_run_id"] == first_run["flower_run_id"]
        assert (
            card.federation["participating_sites"]
            == listed["participating_sites"]
            == (3 if v["server_round"] == 1 else 2)
        )
        assert listed["file_sha256"] == card.weights["sha256"]


def test_every_clientapp_reply_is_weights_and_whitelisted_metrics(first_run):
    replies = jsonl(first_run["run_dir"] / "replies.jsonl")
    spec = model_spec()
    accepted = [r for r in replies if r["verdict"] == "accepted"]
    assert len([r for r in accepted if r["phase"] == "train"]) == 3 + 2
    assert len([r for r in accepted if r["phase"] != "train"]) >= 3 + 2
    for r in accepted:
        assert set(r["metric_keys"]) <= EXPECTED_KEYS, set(r["metric_keys"]) - EXPECTED_KEYS
        if r["phase"] == "train":
            assert r["records"] == ["arrays", "metrics"]
            assert {k: shape for k, (shape, _dtype) in r["arrays"].items()} == spec
        else:
            assert r["records"] == ["metrics"] and r["arrays"] == {}
    assert not [r for r in replies if r["verdict"] == "refused"]


def test_release_then_update_on_a_workstation_with_the_signature_verified(fed, first_run, shared_data):
    run_id = first_run["run"]["id"]
    version = next(v["version"] for v in fed.central.admin_json("models", "list")
                   if v["run_id"] == run_id and v["server_round"] == 2)  # fmt: skip
    released = fed.central.admin_json("models", "release", version)
    assert released["version"] == version
    ws = fed.stations["site-a"]
    out = ws_json(ws, "models", "update", "--yes", "--no-evaluate")
    assert out["status"] == "installed" and out["release"]["version"] == version
    assert out["release"]["signature"] == "verified"
    assert active(ws)["version"] == version
    image = sorted((shared_data / "cxr" / "Normal").glob("*.png"))[0]
    assert classify_version(ws, image) == version
    fed.released = version


def test_a_tampered_download_is_refused(fed):
    version = fed.released
    ws = fed.stations["site-b"]
    path = stored_file(fed.central, version)
    original = path.read_bytes()
    tampered = bytearray(original)
    tampered[len(tampered) // 2] ^= 0x01  # one bit in the weights
    path.write_bytes(bytes(tampered))
    try:
        out = ws_json(ws, "models", "update", "--yes", "--no-evaluate", code=1)
        assert out["ok"] is False and "does not match the signed release" in out["error"]
        assert "not changed" in out["error"]
        assert active(ws)["version"] != version
    finally:
        path.write_bytes(original)


# ---------------------------------------------------------------- a central restart in the middle of a run
def test_a_central_restart_mid_run_still_ends_with_the_run_complete(fed, first_run):
    run = fed.central.admin_json("run", "start", "--rounds", "3", *RUN_ARGS)["run"]
    first_flower = int(run["flower_run_id"])

    def round_2_training():  # round 1 is saved, round 2 is under way at the sites
        states = [read_json(round_file(ws)) for ws in fed.stations.values()]
        return any(s.get("run_id") == first_flower and s.get("round") == 2 and s.get("phase") == "training"
                   for s in states)  # fmt: skip

    wait_for(round_2_training, timeout=600, interval=0.5, what=f"round 2 of the second run to train\n{fed.tails()}")
    fed.central.stop()  # SIGTERM: the SuperLink and the run's ServerApp stop with the service
    time.sleep(2)
    fed.central.start()  # the same home and ports; the workstations' `fedxray federate` reconnect by themselves
    status = fed.wait_finished(run["id"], timeout=600)
    after = status["run"]
    assert after["resumes"] == 1 and int(after["flower_run_id"]) != first_flower
    assert "rounds 1-1 kept, continuing from round 2" in after["message"], after["message"]
    rounds = {r["server_round"]: r for r in status["rounds"] if r["server_round"] >= 1}
    assert sorted(rounds) == [1, 2, 3]
    assert all(r["num_sites"] == 3 and r["evaluate_metrics"]["accuracy"] is not None for r in rounds.values())
    with fed.central.client(fed.central.credential("admin")) as admin:
        listed = admin.get("/api/v1/models", params={"run_id": run["id"]}).json()
    versions = {v["server_round"]: v for v in listed}
    assert sorted(versions) == [1, 2, 3] and all(v["file_sha256"] for v in listed)
    # Round 2 was redone by the resumed Flower run, which started from round 1's saved weights.
    assert versions[2]["card"]["federation"]["flower_run_id"] == int(after["flower_run_id"])
    assert versions[1]["card"]["federation"]["flower_run_id"] == first_flower
    assert "resumed after round 1" in versions[3]["card"]["description"]

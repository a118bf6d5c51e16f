"""FedXray's ClientApp launcher (fl.launcher) beside a real SuperNode in process isolation mode: it runs FedXray's
installed ClientApp for an approved app bundle, refuses any other bundle on every message without loading it,
keeps other local programs from claiming messages, and takes its SuperNode down with it."""

from __future__ import annotations

import hashlib
import io
import json
import signal
import time
import tomllib
import zipfile
from importlib.metadata import version
from pathlib import Path

import httpx
import pytest

from fl.app_bundle import fab_refusal, installed_fab
from fl.launcher import REFUSED, command
from fl.task import flower_app_dir
from tests.fl.flower_support import (
    BIN,
    Processes,
    flower_env,
    free_port,
    make_sites,
    superlink_cmd,
    wait_port,
    write_flwr_config,
    write_node_config,
)

RUN = {"arch": "tiny", "input-size": 32, "min-sites": 1, "num-server-rounds": 1, "batch-size": 8,
       "augment": False}  # fmt: skip


# ---------------------------------------------------------------- which bundles may run


def foreign_app(folder: Path, marker: Path) -> Path:
    """FedXray's app with one change: its ClientApp is a module shipped inside the bundle, which would leave
    `marker` behind if it were ever imported or run."""
    folder.mkdir(parents=True, exist_ok=True)
    text = (flower_app_dir() / "pyproject.toml").read_text()
    (folder / "pyproject.toml").write_text(text.replace('clientapp = "fl.client_app:app"', 'clientapp = "other:app"'))
    (folder / "other.py").write_text(
        "from pathlib import Path\n"
        f"Path({str(marker)!r}).write_text('imported')\n"
        "from flwr.clientapp import ClientApp\n"
        "app = ClientApp()\n"
        "@app.train()\n"
        "def train(msg, context):\n"
        f"    Path({str(marker)!r}).write_text('ran')\n"
        "    raise RuntimeError('this must never run')\n"
    )
    return folder


def build(folder: Path) -> bytes:
    from flwr.cli.build import build_fab_from_disk

    return build_fab_from_disk(folder)


def test_the_approved_bundle_is_this_installations_app_built_as_flwr_run_builds_it():
    digest, content = installed_fab()
    assert digest == hashlib.sha256(build(flower_app_dir())).hexdigest()  # deterministic: same bytes again
    with zipfile.ZipFile(io.BytesIO(content)) as fab:
        components = tomllib.loads(fab.read("pyproject.toml").decode())["tool"]["flwr"]["app"]["components"]
        assert not [n for n in fab.namelist() if n.endswith(".py")]
    assert components == {"serverapp": "fl.server_app:app", "clientapp": "fl.client_app:app"}
    assert fab_refusal(digest, content) is None
    # The app's version is FedXray's: a workstation approves only the bundle of the version it runs.
    project = tomllib.loads((flower_app_dir() / "pyproject.toml").read_text())["project"]
    assert project["version"] == version("fedxray")


def test_any_other_bundle_is_refused_by_hash_and_by_content(tmp_path):
    digest, content = installed_fab()
    other = build(foreign_app(tmp_path / "other", tmp_path / "marker"))
    assert "not this installation's FedXray app" in fab_refusal(hashlib.sha256(other).hexdigest(), other)
    assert fab_refusal(None) is not None
    # Content that does not match its announced hash, or that ships code, is refused even under our hash.
    assert "does not have its announced hash" in fab_refusal(digest, other)
    assert fab_refusal(digest, content[:-10]) is not None
    assert not (tmp_path / "marker").exists()


# ---------------------------------------------------------------- with a real SuperLink and SuperNode


@pytest.fixture(scope="module")
def world(shared_data, tmp_path_factory):
    """A SuperLink (plain HTTP on loopback: TLS and node keys are tested elsewhere) and one site run as
    `fl.launcher node`, the pair the workstation runs."""
    tmp = tmp_path_factory.mktemp("launcher")
    shares = {"site": {"Covid": 1.0, "Normal": 1.0, "Pneumonia-Bacterial": 1.0, "Pneumonia-Viral": 1.0}}
    site = make_sites(shared_data / "cxr", tmp / "sites", shares=shares, per_class=3)["site"]
    procs, port, runtime = Processes(tmp / "logs"), free_port(), free_port()
    record, refusals = tmp / "record", tmp / "refusals.jsonl"
    procs.start("superlink", superlink_cmd(port, tls=None),
                env=flower_env(FEDXRAY_RECORD_DIR=str(record), FLWR_HOME=str(tmp / "sl")), cwd=tmp)  # fmt: skip
    wait_port(port)
    cfg = write_node_config(tmp / "node.toml", **{"data-dir": str(site)})
    node_cmd = [str(BIN / "flower-supernode"), "--superlink", f"127.0.0.1:{port}", "--port", str(runtime),
                "--node-config", str(cfg), "--insecure"]  # fmt: skip
    pair = procs.start("pair", command("node", "--refusals", str(refusals), "--", *node_cmd),
                       env=flower_env(FLWR_HOME=str(tmp / "node-home")))  # fmt: skip
    wait_port(runtime)
    write_flwr_config(tmp / "flwr", port, ca=None)
    yield {"tmp": tmp, "procs": procs, "record": record, "refusals": refusals, "runtime": runtime, "pair": pair}
    procs.stop_all()


def finish(world, run_id: int, timeout: float = 400) -> dict:
    path = world["record"] / f"run-{run_id}" / "run.json"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and json.loads(path.read_text())["status"] != "running":
            return json.loads(path.read_text())
        time.sleep(1)
    raise AssertionError(f"run {run_id} did not end:\n{world['procs'].log('pair')[-3000:]}")


def replies(world, run_id: int) -> list[dict]:
    path = world["record"] / f"run-{run_id}" / "replies.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.e2e
def test_an_approved_run_trains_in_a_prepared_worker_and_a_foreign_one_is_refused_without_loading_it(world):
    from tests.support.launch import start_run

    ok = start_run(world["tmp"] / "flwr", RUN)
    assert finish(world, ok)["status"] == "finished"
    accepted = [r for r in replies(world, ok) if r["verdict"] == "accepted"]
    assert {r["phase"] for r in accepted} == {"train", "evaluate"}
    log = world["procs"].log("pair")
    assert "handed to ClientApp worker" in log
    # The worker prepared after the first message built that run's network while it waited for the next one.
    assert f"Prepared the {RUN['arch']} network at {RUN['input-size']} px" in log

    marker = world["tmp"] / "foreign-marker"
    foreign = start_run(world["tmp"] / "flwr", {**RUN, "round-timeout": 900.0},
                        app_dir=foreign_app(world["tmp"] / "foreign-app", marker))  # fmt: skip
    info = finish(world, foreign)
    # Every message of the foreign run came back at once as the refusal (not as a round timeout: a timeout
    # leaves no reply at all, and this one would have lasted 15 minutes).
    got = replies(world, foreign)
    assert got and all(r["verdict"] == "error" for r in got)
    assert {r["phase"] for r in got} == {"train", "evaluate"}
    expected_text = REFUSED.format(fab=hashlib.sha256(build(world["tmp"] / "foreign-app")).hexdigest()[:12])
    assert all(r["error"] == expected_text[:300] for r in got)
    assert info["summary"]["rounds"]["1"]["num_sites"] == 0
    assert not marker.exists()  # its module was never imported, let alone run
    refused = [json.loads(x) for x in world["refusals"].read_text().splitlines()]
    assert len(refused) == len(got) and {r["run_id"] for r in refused} == {foreign}


@pytest.mark.e2e
def test_no_other_local_program_can_claim_the_nodes_messages(world):
    from flwr.proto.runtime_pb2 import AcquireTaskRequest

    # Flower's Runtime API speaks protobuf over HTTP; a claim without the launcher's secret is turned away.
    body = AcquireTaskRequest(supported_task_types=["flwr-clientapp"]).SerializeToString()
    r = httpx.post(f"http://127.0.0.1:{world['runtime']}/v1/runtime/acquire-task", content=body,
                   headers={"Content-Type": "application/protobuf"}, timeout=10)  # fmt: skip
    assert r.status_code in (401, 403), r.status_code


@pytest.mark.e2e
def test_a_launcher_that_dies_takes_its_supernode_with_it_so_the_central_reports_the_node_unavailable(world):
    """SIGKILL the launcher while the node trains: its SuperNode goes too (no node stays online accepting
    messages nobody answers), and the ServerApp gets Flower's 'node unavailable' reply for the message instead
    of waiting out the round's 15-minute timeout. (The run then waits for sites to come back, as any run does.)"""
    from tests.support.launch import start_run

    procs = world["procs"]
    run = start_run(world["tmp"] / "flwr", {**RUN, "round-timeout": 900.0})
    deadline = time.monotonic() + 300
    while procs.log("pair").count("handed to ClientApp worker") < 3:  # the two messages above, then this one
        assert time.monotonic() < deadline, procs.log("pair")[-2000:]
        time.sleep(0.5)
    world["pair"].send_signal(signal.SIGKILL)
    world["pair"].wait(10)
    deadline = time.monotonic() + 300
    while not replies(world, run):
        assert time.monotonic() < deadline, "no reply for the message to the dead node"
        time.sleep(1)
    got = replies(world, run)
    assert got[0]["verdict"] == "error" and got[0]["phase"] == "train" and "Node Unavailable" in got[0]["error"]
    assert "SuperNode terminated gracefully" in procs.log("pair")  # it went down with its launcher

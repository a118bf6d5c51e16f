"""FedXray's Flower apps in Flower's deployment engine: a real SuperLink with TLS, three real SuperNodes on
non-IID parts of the shared chest X-ray set, `flwr run` of the small app folder, the tiny network at 64 px.

Prepare: sites (site-c has no Covid), a server-side test folder, a test CA, the processes.
Execute: a 2-round FedProx run with float16 transfer, one site killed in the middle of round 2; then a 1-round
run with client-side differential privacy on the two remaining sites.
Assert: every round recorded, a model version with its card per round, the best marked, every reply within
the privacy contract, the killed site did not stall the run, DP settings in the card.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from fl.classes import CLASSES
from fl.data import discover, split_by_patient
from tests.fl.flower_support import (
    Processes,
    expected_round_validation,
    flower_env,
    free_port,
    load_as_sent,
    make_sites,
    make_test_ca,
    metrics_by_hand,
    pooled_mismatches,
    predict_folder_samples,
    superlink_cmd,
    supernode_cmd,
    wait_port,
    write_flwr_config,
    write_node_config,
)
from tests.support.launch import run_info, start_run

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

SHARES = {  # the server's test folder takes what the three sites leave: 20 % of each class's patients
    "site-a": {"Covid": 0.5, "Normal": 0.15, "Pneumonia-Bacterial": 0.4, "Pneumonia-Viral": 0.15},
    "site-b": {"Covid": 0.3, "Normal": 0.25, "Pneumonia-Bacterial": 0.15, "Pneumonia-Viral": 0.4},
    "site-c": {"Covid": 0.0, "Normal": 0.4, "Pneumonia-Bacterial": 0.25, "Pneumonia-Viral": 0.25},
    "server-test": {"Covid": 0.2, "Normal": 0.2, "Pneumonia-Bacterial": 0.2, "Pneumonia-Viral": 0.2},
}
RUN = {"arch": "tiny", "input-size": 64, "batch-size": 8, "local-epochs": 1, "min-sites": 2, "round-timeout": 300.0}
# The whitelist written out by hand from the contract in fl/privacy.py's docstring.
EXPECTED_KEYS = (
    {"num-examples", "train-loss", "train-accuracy", "train-seconds", "eval-seconds", "loss", "accuracy"}
    | {f"macro_{k}" for k in ("sensitivity", "specificity", "precision", "f1", "auroc")}
    | {f"{k}/{c}" for k in ("sensitivity", "specificity", "precision", "f1", "auroc", "support") for c in CLASSES}
    | {f"confusion/{t}/{p}" for t in CLASSES for p in CLASSES}
)


@pytest.fixture(scope="module")
def federation(shared_data, tmp_path_factory):
    """SuperLink (TLS, database) + three SuperNodes; yields a dict of paths and the process handles."""
    tmp = tmp_path_factory.mktemp("federation")
    sites = make_sites(shared_data / "cxr", tmp / "data", shares=SHARES, per_class=20, seed=1)
    tls = make_test_ca(tmp / "pki")
    procs = Processes(tmp / "logs")
    record = tmp / "record"
    port = free_port()
    try:
        procs.start("superlink", superlink_cmd(port, tls=tls, database=tmp / "superlink.db"),
                    env=flower_env(FEDXRAY_RECORD_DIR=str(record), FLWR_HOME=str(tmp / "superlink-home")),
                    cwd=tmp)  # fmt: skip
        wait_port(port)
        for name in ("site-a", "site-b", "site-c"):
            cfg = write_node_config(tmp / f"{name}.toml", **{"data-dir": str(sites[name]),
                                                            "status-file": str(tmp / f"{name}-status.json")})
            procs.start(name, supernode_cmd(port, free_port(), cfg, ca=tls["ca"]),
                        env=flower_env(FLWR_HOME=str(tmp / f"home-{name}")))  # fmt: skip
        write_flwr_config(tmp / "flwr", port, ca=tls["ca"])
        yield {"tmp": tmp, "sites": sites, "procs": procs, "record": record, "flwr": tmp / "flwr"}
    finally:
        procs.stop_all()


def wait_for_run(record: Path, run_id: int, procs: Processes, *, timeout: float, while_waiting=None) -> dict:
    """run.json of a finished run (polling); fails with the logs' tails if it does not finish."""
    path = record / f"run-{run_id}" / "run.json"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if while_waiting:
            while_waiting()
        if path.exists():
            run = json.loads(path.read_text())
            if run["status"] != "running":
                return run
        time.sleep(2)
    tails = "\n".join(f"--- {n}\n{procs.log(n)[-3000:]}" for n in procs.procs)
    pytest.fail(f"run {run_id} did not finish within {timeout:.0f} s\n{tails}")


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def model_spec() -> dict:
    """Names and shapes of the tiny network's arrays, built here independently of the apps."""
    from fl.model import build_model

    model = build_model("tiny", input_size=64)
    return {v.path: list(v.shape) for v in model.weights}


def test_federated_run_records_every_round_and_survives_a_killed_site(federation):
    f = federation
    procs, tmp = f["procs"], f["tmp"]
    run_config = {**RUN, "num-server-rounds": 2, "strategy": "fedprox", "proximal-mu": 0.001,
                  "transfer-dtype": "float16", "server-test-dir": str(f["sites"]["server-test"])}  # fmt: skip
    run_id = start_run(f["flwr"], run_config)

    killed = {}

    def kill_site_c_in_round_2():
        status = tmp / "site-c-status.json"
        if killed or not status.exists():
            return
        state = json.loads(status.read_text())
        if state.get("round") == 2 and state.get("message") == "train" and state.get("phase") in ("evaluating", "training"):
            procs.kill("site-c")
            killed["state"] = state

    run = wait_for_run(f["record"], run_id, procs, timeout=600, while_waiting=kill_site_c_in_round_2)
    assert killed, "site-c was never seen training in round 2"
    assert run["status"] == "finished", run
    for _ in range(30):  # Flower's own view of the run (the SuperLink notes the end a moment later)
        if (flower := run_info(f["flwr"], run_id))["status"] != "running":
            break
        time.sleep(1)
    assert flower["status"] == "finished:completed"
    run_dir = f["record"] / f"run-{run_id}"

    # --- every round recorded: aggregated training and evaluation metrics, server-side test metrics
    rounds = {r["server_round"]: r for r in jsonl(run_dir / "rounds.jsonl")}
    assert sorted(rounds) == [0, 1, 2]
    assert rounds[0]["server_metrics"]["num_examples"] == len(discover(f["sites"]["server-test"]))
    assert rounds[1]["num_sites"] == 3 and rounds[2]["num_sites"] == 2  # site-c died during round 2
    val = {n: len(split_by_patient(discover(f["sites"][n]), val_fraction=0.2, seed=0)[1]) for n in ("site-a", "site-b", "site-c")}
    train = {n: len(discover(f["sites"][n])) - val[n] for n in val}
    assert rounds[1]["train_metrics"]["num_examples"] == sum(train.values())
    assert rounds[2]["train_metrics"]["num_examples"] == train["site-a"] + train["site-b"]
    assert rounds[1]["evaluate_metrics"]["num_examples"] == sum(val.values())
    assert rounds[2]["evaluate_metrics"]["num_examples"] == val["site-a"] + val["site-b"]
    for r in (1, 2):
        ev = rounds[r]["evaluate_metrics"]
        for key in ("loss", "accuracy", "macro_sensitivity", "macro_specificity", "macro_f1", "macro_auroc_site_weighted_mean"):
            assert ev[key] is not None, (r, key)
        assert set(ev["per_class"]["Normal"]) >= {"sensitivity", "specificity", "f1", "auroc_site_weighted_mean"}
        assert rounds[r]["train_metrics"]["validation_before"]["num_examples"] > 0

    # --- the values: each round's saved global model, rounded to float16 as the sites received it, evaluated here
    # on the validation patients of the sites that took part (site-c died during round 2's training and took no
    # part in its evaluation), pooled by hand from the definitions; the server's test metrics the same way on the
    # float32 model. Every mismatch is listed.
    versions = {v["server_round"]: v for v in jsonl(run_dir / "versions.jsonl")}
    evaluated = {1: ("site-a", "site-b", "site-c"), 2: ("site-a", "site-b")}
    wrong = []
    for r, names in evaluated.items():
        expected = expected_round_validation(versions[r]["dir"], [f["sites"][n] for n in names], downlink="float16")
        assert expected["num_examples"] == sum(val[n] for n in names)
        wrong += [f"round {r} validation: {w}" for w in pooled_mismatches(rounds[r]["evaluate_metrics"], expected)]
        model, _ = load_as_sent(versions[r]["dir"])
        test = metrics_by_hand([predict_folder_samples(model, discover(f["sites"]["server-test"]), input_size=64,
                                                       scaling="tf")])  # fmt: skip
        wrong += [f"round {r} server test: {w}" for w in pooled_mismatches(rounds[r]["server_metrics"], test,
                                                                          auroc="auroc")]  # fmt: skip
    # Round 2's "before training" validation: round 1's model on the two sites that trained in round 2.
    before = expected_round_validation(versions[1]["dir"], [f["sites"][n] for n in ("site-a", "site-b")],
                                       downlink="float16")  # fmt: skip
    wrong += [f"round 2 before training: {w}"
              for w in pooled_mismatches(rounds[2]["train_metrics"]["validation_before"], before)]
    assert wrong == [], "\n".join(wrong)

    # --- a model version per round, each with its card; the best one marked
    from fl.modelfile import verify

    versions = jsonl(run_dir / "versions.jsonl")
    assert [v["server_round"] for v in versions] == [1, 2]
    best = json.loads((run_dir / "best.json").read_text())
    for v in versions:
        card = verify(v["dir"])  # card + weights SHA-256
        assert card.version == v["version"] and card.arch == "tiny" and card.input_size == 64
        fed = card.federation
        assert fed["round"] == v["server_round"] and fed["flower_run_id"] == run_id
        assert fed["participating_sites"] == (3 if v["server_round"] == 1 else 2)
        assert fed["strategy"] == "fedprox" and fed["proximal_mu"] == 0.001 and fed["transfer_dtype"] == "float16"
        assert fed["differential_privacy"] == {"enabled": False}
        assert card.metrics["validation"]["num_examples"] == rounds[v["server_round"]]["evaluate_metrics"]["num_examples"]
        assert card.metrics["test"] == rounds[v["server_round"]]["server_metrics"]
    # Best: highest macro-F1 (then lowest loss) on the server's test folder, recomputed from the rounds.
    scores = {v["version"]: (rounds[v["server_round"]]["server_metrics"]["macro_f1"],
                             -rounds[v["server_round"]]["server_metrics"]["loss"]) for v in versions}  # fmt: skip
    assert best["version"] == max(scores, key=scores.get) == run["summary"]["best_version"]

    # --- every reply the server received: arrays of the model's names/shapes in float16, whitelisted metrics
    replies = jsonl(run_dir / "replies.jsonl")
    spec = {k: [s, "float16"] for k, s in model_spec().items()}
    accepted = [r for r in replies if r["verdict"] == "accepted"]
    assert len(accepted) == 3 + 3 + 2 + 2  # train + evaluate, round 1 (3 sites) and round 2 (2 sites)
    for r in accepted:
        assert set(r["metric_keys"]) <= EXPECTED_KEYS, set(r["metric_keys"]) - EXPECTED_KEYS
        if r["phase"] == "train":
            assert r["records"] == ["arrays", "metrics"] and r["arrays"] == spec
        else:
            assert r["records"] == ["metrics"] and r["arrays"] == {}
    assert not [r for r in replies if r["verdict"] == "refused"]
    lost = [r for r in replies if r["verdict"] == "error"]
    assert lost and all(r["round"] == 2 and r["phase"] == "train" for r in lost)

    # --- the SuperNode kept the site's optimiser state (Context.state) from round 1 to round 2, where it fitted
    log = procs.log("site-a")
    assert "Round 1: trained" in log and "optimiser state new)" in log
    assert "Round 2: trained" in log and "optimiser state continued from the previous round)" in log
    assert "does not fit this network" not in log


def test_client_side_differential_privacy_is_applied_and_recorded(federation):
    f = federation
    run_config = {**RUN, "num-server-rounds": 1, "dp": "client", "dp-clipping-norm": 0.5,
                  "dp-noise-multiplier": 0.1, "evaluate-every": 1}  # fmt: skip
    run_id = start_run(f["flwr"], run_config)
    run = wait_for_run(f["record"], run_id, f["procs"], timeout=400)
    assert run["status"] == "finished", run

    from fl.modelfile import verify

    (version,) = jsonl(f["record"] / f"run-{run_id}" / "versions.jsonl")
    dp = verify(version["dir"]).federation["differential_privacy"]
    assert dp["enabled"] is True and dp["mode"] == "client-side fixed clipping"
    assert dp["clipping_norm"] == 0.5 and dp["noise_multiplier"] == 0.1 and dp["num_sampled_clients"] == 2
    assert dp["noise_stddev"] == pytest.approx(0.1 * 0.5 / 2)
    # The SuperNodes' ClientApps clipped their updates with Flower's fixedclipping_mod.
    assert "fixedclipping_mod: parameters are clipped" in f["procs"].log("site-a")
    assert not [r for r in jsonl(f["record"] / f"run-{run_id}" / "replies.jsonl") if r["verdict"] != "accepted"]

r"""Federated-learning benchmarks (issue 5).

(a) accuracy: federated (three non-IID sites, FedAvg, R rounds x E local epochs) against centralised training
    (the three sites' training patients pooled, R x E epochs) on the same model, the same initial weights, the
    same optimiser settings and the same validation patients (the union of the sites' patient-level
    validation splits, made with the run's seed exactly as the ClientApp makes them, which is checked); then
    the float16 transfer option under the same conditions. The epochs budget is honest: every training image
    is seen R x E times in both settings. The federated rounds call the real ClientApp (fl.client_app.app,
    mods included) and the real strategy's aggregation in this process, so the learning is exactly what the
    deployment does without its process start-up and polling costs. --server-lr (run config
    "server-learning-rate") and --server-momentum only apply to the federated side.
(b) bytes and overhead: payload bytes of one model message per network (float32, float16, int8 update codes
    with their scales); a real
    deployment on loopback (SuperLink + three SuperNodes + flwr run) measuring the round time, the ClientApps'
    compute and the fixed overhead per round, and Flower's own traffic counters.

Run: .venv/bin/python tests/benchmarks/bench_federated.py [--part a|b|all] [--rounds 10] [--local-epochs 1]
     [--batch-size 8] [--lr 1e-3] [--server-lr 2] [--input-size 64] [--arch tiny] [--seeds 0 1 2 3 4]
     [--json OUT]

Defaults are the Flower app's (fl/flwr_app/pyproject.toml): tiny network, 64 px, Adam lr 1e-3 in one cosine
decay over the whole budget (run config "lr-schedule"), batch size 8, 10 rounds x 1 local epoch against 10
centralised epochs, the ClientApp's batch-norm re-estimation (both settings), and on the federated side the
sites keeping their Adam state across rounds ("keep-optimizer-state"; each site's Context lives for the run,
as on its SuperNode) and server learning rate 2 ("server-learning-rate": the global model moves twice the
sites' mean update, which makes up for each site taking a third of centralised training's steps per epoch).
Options switch each of these off to compare. Earlier searches (lr, batch size, local epochs, server-lr) and
their figures are in README.md ("Tests and benchmarks"). Every figure is tuned and reported on the same
validation patients (136 images per seed: one image is 0.74 points).
Not a test: prints figures and optionally writes them as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.conftest import shared_data_dir  # noqa: E402
from tests.fl.flower_support import (  # noqa: E402
    NON_IID,
    Processes,
    flower_env,
    free_port,
    make_sites,
    make_test_ca,
    superlink_cmd,
    supernode_cmd,
    wait_port,
    write_flwr_config,
    write_node_config,
)

VAL_FRACTION = 0.2  # RunSettings' default "val-fraction": the ClientApp splits its site's patients with it
KINDS = ("centralised", "federated", "federated_float16", "federated_int8")


def site_splits(sites: dict[str, Path], val_fraction: float, seed: int):
    from fl.data import discover, split_by_patient

    return {n: split_by_patient(discover(d), val_fraction=val_fraction, seed=seed) for n, d in sites.items()}


def check_client_splits(sites: dict[str, Path], splits, run: dict) -> None:
    """The ClientApp splits its site with the run's "seed": it must see exactly the patients pooled here."""
    from fl.task import RunSettings, load_site

    settings = RunSettings.from_config(run)
    for name, folder in sites.items():
        data, (train, val) = load_site(folder, settings), splits[name]
        if [s.path for s in data.train] != [s.path for s in train] or [s.path for s in data.val] != [
            s.path for s in val
        ]:
            raise RuntimeError(f"{name}: the ClientApp's patient split differs from the benchmark's")


def summary(m: dict) -> dict:
    return {k: round(m[k], 4) if m.get(k) is not None else None
            for k in ("accuracy", "macro_f1", "macro_sensitivity", "macro_specificity", "macro_auroc", "loss")}


def centralised(run: dict, splits, epochs: int) -> tuple[dict, float]:
    """Pooled training patients, `epochs` epochs in one run, evaluated on the pooled validation patients."""
    from fl.task import RunSettings, evaluate_local, new_model, train_local

    # One "round" of all the epochs: the learning-rate schedule spans the whole budget, as it spans all the
    # rounds of the federated run.
    settings = RunSettings.from_config({**run, "local-epochs": epochs, "num-server-rounds": 1})
    train = [s for tr, _ in splits.values() for s in tr]
    val = [s for _, va in splits.values() for s in va]
    model = new_model(settings)
    t0 = time.perf_counter()
    train_local(model, train, settings, server_round=0)
    seconds = time.perf_counter() - t0
    return evaluate_local(model, val, settings), seconds


class InProcessGrid:
    """Stands in for the SuperLink connection: the strategy samples these node ids; messages are delivered to
    the ClientApp in this process (so the benchmark measures learning, not process start-up and polling)."""

    def __init__(self, sites: dict[str, Path]) -> None:
        self.nodes = {i: folder for i, folder in enumerate(sites.values(), start=1)}

    def get_node_ids(self) -> list[int]:
        return list(self.nodes)


def federated(run: dict, sites: dict[str, Path], splits, rounds: int, transfer: str, evaluate_every: int = 1
              ) -> tuple[dict, list, float]:  # fmt: skip
    """FedAvg over the sites with the real ClientApp and strategy, in this process.

    `run` is the run config the ClientApp reads (local-epochs, batch-size, learning-rate, seed, ...); its
    server-learning-rate and server-momentum go to the strategy (plain FedAvg: 1 and 0). The global model is
    evaluated on the pooled validation patients every `evaluate_every` rounds and always after the last one.
    """
    from flwr.app import ConfigRecord, Context, RecordDict
    from flwr.supercore.task_identity import TaskIdentity

    from fl.client_app import app
    from fl.strategy import FedXrayFedAvg
    from fl.task import RunSettings, cast_record, evaluate_local, load_arrays, model_arrays, new_model

    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 1, 1
    run = {**run, "transfer-dtype": transfer}
    settings = RunSettings.from_config(run)
    model = new_model(settings)
    arrays = model_arrays(model)
    strategy = FedXrayFedAvg(transfer_dtype=transfer, num_rounds=rounds, min_train_nodes=len(sites),
                             min_available_nodes=len(sites), server_learning_rate=settings.server_learning_rate,
                             server_momentum=settings.server_momentum)  # fmt: skip
    grid = InProcessGrid(sites)
    val = [s for _, va in splits.values() for s in va]
    history, t0 = [], time.perf_counter()
    # One context per site for the whole run, as its SuperNode keeps it (Context.state: the optimiser state).
    contexts = {node: Context(run_id=1, node_id=node, node_config={"data-dir": str(folder)}, state=RecordDict(),
                              run_config=run) for node, folder in grid.nodes.items()}  # fmt: skip
    for rnd in range(1, rounds + 1):
        replies = []
        for msg in strategy.configure_train(rnd, arrays, ConfigRecord(), grid):
            node = msg.metadata.dst_node_id
            reply = app(msg, contexts[node])
            if reply.has_error():
                raise RuntimeError(f"{grid.nodes[node]}: {reply.error.reason}")
            reply.metadata.__dict__["_src_node_id"] = node
            replies.append(reply)
        arrays, _ = strategy.aggregate_train(rnd, replies)
        load_arrays(model, arrays)
        if rnd % evaluate_every and rnd != rounds:
            continue
        m = evaluate_local(model, val, settings)
        row = {"round": rnd, "seconds": round(time.perf_counter() - t0, 1), **summary(m)}
        if transfer == "float32":  # the direct cost of one float16 transfer of this global model
            load_arrays(model, cast_record(arrays, "float16"))
            m16 = evaluate_local(model, val, settings)
            row["float16_rounded"] = {k: round(m16[k], 4) for k in ("accuracy", "macro_f1")}
            load_arrays(model, arrays)
        history.append(row)
        print(f"  {transfer} round {rnd}: accuracy {m['accuracy']:.3f} macro-F1 {m['macro_f1']:.3f}", flush=True)
    return m, history, time.perf_counter() - t0


def part_a(args, tmp: Path) -> dict:
    sites = make_sites(shared_data_dir() / "cxr", tmp / "sites", shares=NON_IID, seed=args.seed_sites)
    epochs = args.rounds * args.local_epochs
    shared = {"arch": args.arch, "input-size": args.input_size, "batch-size": args.batch_size,
              "learning-rate": args.lr, "val-fraction": VAL_FRACTION,
              "recalibrate-bn": not args.no_recalibrate_bn, "lr-schedule": args.lr_schedule,
              "balance-classes": not args.no_balance,
              "num-server-rounds": args.rounds}  # fmt: skip
    fed_only = {"local-epochs": args.local_epochs, "server-learning-rate": args.server_lr,
                "keep-optimizer-state": not args.no_keep_optimizer_state,
                "server-momentum": args.server_momentum}  # fmt: skip
    names = ("Covid", "Normal", "Bacterial", "Viral")
    out = {"setup": {"arch": args.arch, "input_size": args.input_size, "optimizer": "Adam",
                     "batch_size": args.batch_size, "learning_rate": args.lr, "epochs_budget": epochs,
                     "epochs_centralised": epochs, "rounds": args.rounds, "local_epochs": args.local_epochs,
                     "server_lr": args.server_lr, "server_momentum": args.server_momentum,
                     "evaluate_every": args.evaluate_every, "transfers": args.transfers,
                     "recalibrate_bn": not args.no_recalibrate_bn, "lr_schedule": args.lr_schedule,
                     "keep_optimizer_state": not args.no_keep_optimizer_state,
                     "balance_classes": not args.no_balance,
                     "seed_sites": args.seed_sites, "val_fraction": VAL_FRACTION,
                     "split": "each seed splits every site's patients with that seed (as the ClientApp does)",
                     "sites": {n: {c: sum(1 for s in tr + va if s.label == i) for i, c in enumerate(names)}
                               for n, (tr, va) in site_splits(sites, VAL_FRACTION, 0).items()}},
           "seeds": []}  # fmt: skip
    for seed in args.seeds:
        r = {**shared, "seed": seed}
        splits = site_splits(sites, VAL_FRACTION, seed)
        check_client_splits(sites, splits, r)
        print(f"seed {seed}: centralised, {epochs} epochs…", flush=True)
        central, c_sec = centralised(r, splits, epochs)
        print(f"  centralised: accuracy {central['accuracy']:.3f} macro-F1 {central['macro_f1']:.3f} "
              f"({c_sec:.0f} s)", flush=True)  # fmt: skip
        sizes = {n: {"train": len(tr), "val": len(va)} for n, (tr, va) in splits.items()}
        row = {"seed": seed, "split": sizes, "centralised": summary(central),
               "centralised_seconds": round(c_sec, 1)}  # fmt: skip
        for transfer in args.transfers:
            key = "federated" if transfer == "float32" else f"federated_{transfer}"
            fed, history, f_sec = federated({**r, **fed_only}, sites, splits, args.rounds, transfer,
                                            args.evaluate_every)  # fmt: skip
            print(f"  {key}: {f_sec:.0f} s", flush=True)
            row.update({key: summary(fed), f"{key}_seconds": round(f_sec, 1), f"history_{key}": history})
        out["seeds"].append(row)

    def mean(kind, metric):
        vals = [s[kind][metric] for s in out["seeds"]]
        return round(sum(vals) / len(vals), 4)

    kinds = [k for k in KINDS if k in out["seeds"][0]]
    out["mean"] = {k: {m: mean(k, m) for m in ("accuracy", "macro_f1")} for k in kinds}
    # Points (x100) by which each federated variant trails centralised training; negative: federated is ahead.
    out["gap_points"] = {k: {m: round(100 * (out["mean"]["centralised"][m] - out["mean"][k][m]), 2)
                             for m in ("accuracy", "macro_f1")} for k in kinds[1:]}  # fmt: skip
    return out


def payload_bytes() -> dict:
    """Bytes of the arrays of one model message (np.save per array, as Flower serialises them); for int8, a
    train reply's codes and scales (a site's reply; the model it receives then travels in float16)."""
    import numpy as np
    from flwr.app import Array

    from fl.model import build_model
    from fl.quantize import encode_update
    from fl.task import cast_record, model_arrays, record_tensors

    out = {}
    for arch, size in (("tiny", 64), ("densenet121", 224), ("se_resnet50v2", 224)):
        rec = model_arrays(build_model(arch, input_size=size))
        b32 = sum(len(a.data) for a in rec.values())
        b16 = sum(len(a.data) for a in cast_record(rec, "float16").values())
        weights = record_tensors(rec)
        local = {k: v + np.float32(1e-3) if v.dtype.kind == "f" else v for k, v in weights.items()}
        codes, scales = encode_update(local, weights)
        b8 = sum(len(Array(np.ascontiguousarray(v)).data) for d in (codes, scales) for v in d.values())
        out[arch] = {"input_size": size, "arrays": len(rec), "float32_bytes": b32, "float16_bytes": b16,
                     "int8_reply_bytes": b8, "int8_reply_vs_float32": round(b8 / b32, 4),
                     "per_site_per_round_float32": 3 * b32, "per_site_per_round_float16": 3 * b16}  # fmt: skip
    return out


def deployment(args, tmp: Path, transfer: str, launcher: str = "fedxray") -> dict:
    """3 SuperNodes + flwr run on loopback: round times, compute, overhead, Flower's traffic counters.
    `launcher`: "fedxray" runs each SuperNode with FedXray's launcher (fl.launcher node: process isolation,
    prepared workers, only the installed app), "stock" with Flower's own SuperExec (a fresh flwr-clientapp
    process per message, the FAB installed each time)."""
    from fl.launcher import command
    from tests.support.launch import run_info, start_run

    sites = make_sites(shared_data_dir() / "cxr", tmp / "sites", shares=NON_IID, per_class=args.per_class)
    tls = make_test_ca(tmp / "pki")
    procs, record, port = Processes(tmp / "logs"), tmp / "record", free_port()
    try:
        procs.start("superlink", superlink_cmd(port, tls=tls),
                    env=flower_env(FEDXRAY_RECORD_DIR=str(record), FLWR_HOME=str(tmp / "sl")), cwd=tmp)  # fmt: skip
        wait_port(port)
        for name, folder in sites.items():
            cfg = write_node_config(tmp / f"{name}.toml", **{"data-dir": str(folder)})
            node = supernode_cmd(port, free_port(), cfg, ca=tls["ca"])
            procs.start(name, command("node", "--", *node) if launcher == "fedxray" else node,
                        env=flower_env(FLWR_HOME=str(tmp / f"home-{name}")))  # fmt: skip
        write_flwr_config(tmp / "flwr", port, ca=tls["ca"])
        t0 = time.time()
        run_id = start_run(tmp / "flwr", {"arch": args.arch, "input-size": args.input_size, "min-sites": 3,
                                          "num-server-rounds": args.deploy_rounds, "transfer-dtype": transfer,
                                          "batch-size": 16})  # fmt: skip
        run_file = record / f"run-{run_id}" / "run.json"
        while time.time() - t0 < 1800:
            if run_file.exists() and json.loads(run_file.read_text())["status"] != "running":
                break
            time.sleep(2)
        rounds = [json.loads(x) for x in (record / f"run-{run_id}" / "rounds.jsonl").read_text().splitlines()]
        info = run_info(tmp / "flwr", run_id)
    finally:
        procs.stop_all()
    started = json.loads(run_file.read_text())["started"]
    per_round, prev = [], started
    for r in (x for x in rounds if x["server_round"] > 0):
        wall = r["time"] - prev
        prev = r["time"]
        compute = (r["train_metrics"]["train_seconds_max"] + r["train_metrics"]["eval_seconds_max"]
                   + (r["evaluate_metrics"] or {}).get("eval_seconds_max", 0.0))  # fmt: skip
        per_round.append({"round": r["server_round"], "wall_seconds": round(wall, 1),
                          "clientapp_compute_seconds": round(compute, 1),
                          "overhead_seconds": round(wall - compute, 1)})  # fmt: skip
    return {"transfer_dtype": transfer, "launcher": launcher, "arch": args.arch, "run_id": run_id, "rounds": per_round,
            "flower_traffic": info.get("network-traffic"), "flower_compute": info.get("compute-time"),
            "elapsed": info.get("elapsed")}  # fmt: skip


def main() -> None:
    from fl.task import RunSettings

    app = RunSettings()  # the Flower app's defaults (fl/flwr_app/pyproject.toml)
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--part", choices=("a", "b", "all"), default="all")
    p.add_argument("--arch", default="tiny")
    p.add_argument("--input-size", type=int, default=64)
    p.add_argument("--rounds", type=int, default=10, help="federated rounds (part a)")
    p.add_argument("--local-epochs", type=int, default=1,
                   help="epochs per site per round; centralised epochs = rounds x local epochs (the budget)")
    p.add_argument("--batch-size", type=int, default=8, help="batch size of both settings (part a)")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate of both settings (part a)")
    p.add_argument("--no-recalibrate-bn", action="store_true",
                   help="train without re-estimating batch-norm statistics after local training (both settings)")
    p.add_argument("--lr-schedule", choices=("cosine", "constant"), default=app.lr_schedule,
                   help="both settings: one cosine decay over the whole budget (run config lr-schedule) or constant")
    p.add_argument("--no-balance", action="store_true",
                   help="both settings: no class weights (run config balance-classes = false)")
    p.add_argument("--no-keep-optimizer-state", action="store_true",
                   help="federated only: sites restart Adam every round instead of keeping its state")
    p.add_argument("--server-lr", type=float, default=app.server_learning_rate,
                   help="federated only: global += server-lr x mean site update "
                   "(run config server-learning-rate; default: the app's)")
    p.add_argument("--server-momentum", type=float, default=0.0,
                   help="federated only: FedAvgM server momentum (run config server-momentum)")
    p.add_argument("--evaluate-every", type=int, default=1,
                   help="evaluate the federated global model every N rounds (always after the last)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--seed-sites", type=int, default=0)
    p.add_argument("--transfers", nargs="*", default=["float32", "float16"], choices=("float32", "float16", "int8"),
                   help="federated runs to make: float32, float16 (half the bytes) and/or int8 update transfers "
                   "(a quarter of the reply bytes)")
    p.add_argument("--deploy-transfers", nargs="*", default=["float32", "float16", "int8"],
                   choices=("float32", "float16", "int8"), help="transfers of the deployment part (b)")
    p.add_argument("--deploy-rounds", type=int, default=3)
    p.add_argument("--deploy-launchers", nargs="*", default=["stock", "fedxray"], choices=("stock", "fedxray"),
                   help="deployment part: Flower's SuperExec and/or FedXray's launcher beside each SuperNode")
    p.add_argument("--deploy-repeats", type=int, default=1, help="deployment part: interleaved repeats")
    p.add_argument("--per-class", type=int, default=None, help="patients per class in the deployment part")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="fedxray-bench-") as tmp:
        tmp = Path(tmp)
        if args.part in ("a", "all"):
            results["accuracy"] = part_a(args, tmp / "a")
            print(json.dumps(results["accuracy"]["mean"], indent=1), flush=True)
        if args.part in ("b", "all"):
            results["payload"] = payload_bytes()
            print(json.dumps(results["payload"], indent=1), flush=True)
            # Interleaved: for each repeat, every transfer with each launcher, so machine load hits all alike.
            results["deployment"] = [deployment(args, tmp / f"b-{i}-{t}-{lau}", t, lau)
                                     for i in range(args.deploy_repeats) for t in args.deploy_transfers
                                     for lau in args.deploy_launchers]  # fmt: skip
            print(json.dumps(results["deployment"], indent=1), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()

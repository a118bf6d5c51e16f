"""`fedxray-central run start|status|stop`: federated runs of FedXray's Flower app on the loopback SuperLink."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from central.client import AdminClient, AdminError
from central.commands.common import add_home, add_json, emit, table
from central.commands.models import fmt, key_metrics
from central.flower_cli import (
    CONNECTION,
    app_config,
    coerce,
    default_app_dir,
    flower_error,
    flwr,
    launch_run,
    parse_value,
)
from central.home import resolve_home

ENDED = ("finished", "failed", "stopped")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("run", help="federated training runs", description="Federated training runs.")
    sub = p.add_subparsers(dest="run_command", required=True, metavar="{start,status,stop}")
    start = sub.add_parser(
        "start", help="start a federated run on the SuperLink",
        description="Start a run of FedXray's Flower app on this central's SuperLink. Enrolled workstations "
        "running `fedxray federate` take part; the run waits until --min-sites of them are connected.",
    )  # fmt: skip
    start.add_argument("--rounds", type=_positive(int), required=True, help="number of federated rounds")
    start.add_argument("--min-sites", type=_positive(int), help="workstations needed for each round")
    start.add_argument("--local-epochs", type=_positive(int), help="training epochs at each site per round")
    start.add_argument("--arch", help="network architecture (e.g. se_resnet50v2, densenet121)")
    start.add_argument("--input-size", type=_positive(int), help="input size in pixels (e.g. 224)")
    start.add_argument("--fraction-train", type=_fraction, help="fraction of connected sites asked to train")
    start.add_argument(
        "--timeout", type=_positive(float), metavar="SEC", help="seconds to wait for a round's replies"
    )
    start.add_argument(
        "--fedprox-mu", type=_non_negative, metavar="MU", help="use FedProx with this proximal term"
    )
    start.add_argument(
        "--dp-noise", type=_non_negative, metavar="X", help="differential privacy: noise multiplier"
    )
    start.add_argument(
        "--dp-clip", type=_positive(float), metavar="C", help="differential privacy: clipping norm"
    )
    start.add_argument(
        "--dp-mode",
        choices=("client", "server"),
        default="client",
        help="where updates are clipped with --dp-noise/--dp-clip (default: client)",
    )
    start.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other run setting of the app (repeatable), e.g. --set batch-size=16",
    )
    start.add_argument("--app", type=Path, help="the Flower app folder (default: FedXray's own, fl/flwr_app)")
    status = sub.add_parser("status", help="runs, or one run's rounds and metrics")
    status.add_argument("run", nargs="?", type=int, help="run id (default: list the runs)")
    status.add_argument("--limit", type=_positive(int), default=20, help="how many runs to list (default 20)")
    stop = sub.add_parser("stop", help="stop a run")
    stop.add_argument("run", type=int, help="run id (from `run status`)")
    for q in (start, status, stop):
        add_home(q)
        add_json(q)
    start.set_defaults(func=start_run)
    status.set_defaults(func=run_status)
    stop.set_defaults(func=stop_run)


def _positive(kind):
    def parse(text: str):
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, not {text}")
        return value

    parse.__name__ = kind.__name__
    return parse


def _non_negative(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, not {text}")
    return value


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"must lie in (0, 1], not {text}")
    return value


def requested_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The run-config overrides the options ask for (kebab-case keys of the app's [tool.flwr.app.config])."""
    wanted: dict[str, Any] = {"num-server-rounds": args.rounds}
    for option, key in (("min_sites", "min-sites"), ("local_epochs", "local-epochs"), ("arch", "arch"),
                        ("input_size", "input-size"), ("fraction_train", "fraction-train"),
                        ("timeout", "round-timeout")):  # fmt: skip
        if getattr(args, option) is not None:
            wanted[key] = getattr(args, option)
    if args.fedprox_mu is not None:
        wanted.update({"strategy": "fedprox", "proximal-mu": args.fedprox_mu})
    if args.dp_noise is not None or args.dp_clip is not None:
        wanted["dp"] = args.dp_mode
        if args.dp_noise is not None:
            wanted["dp-noise-multiplier"] = args.dp_noise
        if args.dp_clip is not None:
            wanted["dp-clipping-norm"] = args.dp_clip
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise AdminError(f"--set takes KEY=VALUE, not {item!r}")
        wanted[key.strip()] = parse_value(value.strip())
    return wanted


def start_run(args: argparse.Namespace) -> int:
    home = resolve_home(args.home)
    app_dir = (args.app or default_app_dir()).resolve()
    defaults = app_config(app_dir)
    wanted = requested_settings(args)
    unknown = sorted(set(wanted) - set(defaults))
    if unknown or "central-run-id" not in defaults:
        missing = unknown or ["central-run-id"]
        raise AdminError(f"The Flower app in {app_dir} does not take the run setting(s) {', '.join(missing)}; "
                         f"it takes: {', '.join(sorted(defaults))}. Nothing was started.")  # fmt: skip
    overrides = {k: coerce(k, v, defaults[k]) for k, v in wanted.items()}
    config = {k: v for k, v in {**defaults, **overrides}.items() if k != "central-run-id"}
    with AdminClient(home) as client:
        online = sum(1 for n in client.request("GET", "/api/v1/admin/nodes") if n.get("online"))
        min_sites = int(config.get("min-sites", 1))
        run = client.request("POST", "/api/v1/runs", json={"num_rounds": int(config["num-server-rounds"]),
                                                           "min_sites": min_sites, "config": config,
                                                           "app_dir": str(app_dir)})  # fmt: skip
        overrides["central-run-id"] = run["id"]
        try:
            flower_run_id = launch_run(home, app_dir, overrides, name=f"run-{run['id']}")
        except AdminError as exc:
            client.request(
                "PATCH",
                f"/api/v1/runs/{run['id']}",
                json={"status": "failed", "message": f"The SuperLink did not start the run: {exc}"},
            )
            raise AdminError(
                f"The SuperLink did not start the run: {exc} (recorded as run {run['id']}, failed)."
            ) from None
        run = client.request("PATCH", f"/api/v1/runs/{run['id']}", json={"flower_run_id": flower_run_id})
        answer = {"success": True, "run-id": str(flower_run_id)}  # as `flwr run --format json` gives it
    out = {"run": run, "flower": answer, "sites_online": online, "config": config}
    human = (
        f"Run {run['id']} started (Flower run {run['flower_run_id']}): {config['num-server-rounds']} round(s), "
        f"at least {min_sites} site(s) per round.\nFollow it with: fedxray-central run status {run['id']}"
    )
    emit(args, out, human)
    if online < min_sites:
        print(f"Note: {online} enrolled workstation(s) are connected now; the run waits until {min_sites} take part "
              "(workstations join with `fedxray federate`).", file=sys.stderr)  # fmt: skip
    return 0


def flower_runs(home, flower_run_id: str | None = None) -> tuple[dict[str, dict], str | None]:
    """Flower's view of its runs by run id, and a problem note when the SuperLink could not say."""
    cmd = ["ls", CONNECTION] + (["--run-id", str(flower_run_id)] if flower_run_id else [])
    try:
        answer = flwr(home, *cmd, timeout=60)
    except AdminError as exc:
        return {}, str(exc)
    if not answer.get("success"):
        return {}, flower_error(answer)
    return {str(r["run-id"]): r for r in answer.get("runs", [])}, None


def _flower_summary(flower: dict | None) -> dict | None:
    if not flower:
        return None
    keys = (
        "status",
        "status-details",
        "elapsed",
        "running-at",
        "finished-at",
        "network-traffic",
        "compute-time",
    )
    return {k: flower.get(k) for k in keys}


def round_row(r: dict) -> list[str]:
    train, ev, srv = r["train_metrics"] or {}, r["evaluate_metrics"] or {}, r["server_metrics"] or {}
    return [str(r["server_round"]), fmt(r["num_sites"]), fmt(train.get("train_loss", train.get("loss"))),
            fmt(train.get("train_accuracy", train.get("accuracy"))), fmt(ev.get("loss")), fmt(ev.get("accuracy")),
            fmt(ev.get("macro_f1")), fmt(srv.get("accuracy")), fmt(srv.get("macro_f1"))]  # fmt: skip


def run_status(args: argparse.Namespace) -> int:
    home = resolve_home(args.home)
    with AdminClient(home) as client:
        if args.run is None:
            return _list_runs(args, home, client)
        run = client.request("GET", f"/api/v1/runs/{args.run}")
        flower, problem = flower_runs(home, run["flower_run_id"]) if run["flower_run_id"] else ({}, None)
        flower_run = flower.get(str(run["flower_run_id"]))
        rounds = client.request("GET", f"/api/v1/runs/{args.run}/rounds")
        versions = client.request("GET", "/api/v1/models", params={"run_id": args.run})
    out = {"run": run, "rounds": rounds, "flower": _flower_summary(flower_run), "flower_problem": problem,
           "model_versions": [{"version": v["version"], "server_round": v["server_round"], "is_best": v["is_best"],
                               "released_at": v["released_at"], "metrics": key_metrics(v["card"])}
                              for v in versions]}  # fmt: skip
    flower_text = (flower_run or {}).get("status") or (f"unknown ({problem})" if problem else "-")
    lines = [f"Run {run['id']}: {run['status']}  (Flower run {run['flower_run_id'] or '-'}: {flower_text})",
             f"  rounds: {sum(1 for r in rounds if r['server_round'] > 0)} of {run['num_rounds']} recorded, "
             f"at least {run['min_sites']} site(s) per round",
             f"  created {str(run['created_at'])[:19]}, started {str(run['started_at'] or '-')[:19]}, "
             f"finished {str(run['finished_at'] or '-')[:19]}"]  # fmt: skip
    if run.get("resumes"):
        lines.append(f"  resumed {run['resumes']} time(s) after a central or SuperLink restart")
    if run["status"] == "interrupted":
        lines.append("  interrupted: the central resumes it from its last saved model version")
    if run["message"]:
        lines.append(f"  message: {run['message']}")
    if rounds:
        header = ["ROUND", "SITES", "TRAIN LOSS", "TRAIN ACC", "VAL LOSS", "VAL ACC", "VAL MACRO-F1", "TEST ACC",
                  "TEST MACRO-F1"]  # fmt: skip
        lines += ["", table([round_row(r) for r in rounds], header)]
    if versions:
        rows = [[v["version"], fmt(v["server_round"]), "yes" if v["is_best"] else "",
                 "yes" if v["released_at"] else ""] for v in versions]  # fmt: skip
        lines += ["", table(rows, ["MODEL VERSION", "ROUND", "BEST", "RELEASED"])]
    emit(args, out, "\n".join(lines))
    return 0


def _list_runs(args: argparse.Namespace, home, client: AdminClient) -> int:
    runs = client.request("GET", "/api/v1/runs", params={"limit": args.limit})
    flower, problem = flower_runs(home) if runs else ({}, None)
    out = []
    for run in runs:
        flower_run = flower.get(str(run["flower_run_id"])) if run["flower_run_id"] else None
        rounds = client.request("GET", f"/api/v1/runs/{run['id']}/rounds")
        done = sum(1 for r in rounds if r["server_round"] > 0)
        out.append({**run, "rounds_recorded": done, "flower_status": (flower_run or {}).get("status")})
    rows = [[r["id"], r["flower_run_id"] or "-", r["status"], r["flower_status"] or "-",
             f"{r['rounds_recorded']}/{r['num_rounds']}", r["min_sites"], str(r["created_at"])[:19],
             str(r["finished_at"] or "")[:19]] for r in out]  # fmt: skip
    header = ["RUN", "FLOWER RUN", "STATUS", "FLOWER STATUS", "ROUNDS", "MIN SITES", "CREATED", "FINISHED"]
    human = (
        table(rows, header) if rows else "No runs yet. Start one with: fedxray-central run start --rounds N"
    )
    if problem:
        human += f"\n(Flower's own status is unavailable: {problem})"
    emit(args, {"runs": out, "flower_problem": problem}, human)
    return 0


def stop_run(args: argparse.Namespace) -> int:
    home = resolve_home(args.home)
    with AdminClient(home) as client:
        run = client.request("GET", f"/api/v1/runs/{args.run}")
        if run["status"] in ENDED:
            raise AdminError(f"Run {run['id']} has already ended ({run['status']}); nothing to stop.")
        if not run["flower_run_id"]:
            raise AdminError(f"Run {run['id']} was never started on the SuperLink; nothing to stop.")
        answer = flwr(home, "stop", str(run["flower_run_id"]), CONNECTION, timeout=60)
        if not answer.get("success"):
            reason = flower_error(answer)
            flower, _ = flower_runs(home, run["flower_run_id"])
            flower_status = (flower.get(str(run["flower_run_id"])) or {}).get("status", "")
            # An interrupted run waiting to be resumed has no live Flower run: recording the stop is enough.
            if not flower_status.startswith("finished"):
                raise AdminError(f"The SuperLink did not stop run {run['id']}: {reason} "
                                 f"(run status: {run['status']}).")  # fmt: skip
        run = client.request(
            "PATCH",
            f"/api/v1/runs/{run['id']}",
            json={"status": "stopped", "message": "Stopped by the admin (fedxray-central run stop)."},
        )
    emit(args, {"run": run}, f"Run {run['id']} stopped (Flower run {run['flower_run_id']}).")
    return 0

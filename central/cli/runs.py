"""`fedxray-central run start|status|stop`: federated runs, through the central service's run routes (the service
starts, stops and resumes every run; these commands only ask it and print its answer)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from central.cli.admin_client import AdminClient, AdminError
from central.cli.common import add_home, add_json, emit, table
from central.cli.models import fmt
from central.flower.app import parse_value
from central.home import resolve_home


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
    body: dict[str, Any] = {"settings": requested_settings(args)}
    if args.app is not None:
        body["app_dir"] = str(args.app.resolve())
    with AdminClient(home) as client:
        out = client.request("POST", "/api/v1/admin/runs", json=body)
    run, config, online = out["run"], out["config"], out["sites_online"]
    human = (
        f"Run {run['id']} started (Flower run {run['flower_run_id']}): {config['num-server-rounds']} round(s), "
        f"at least {run['min_sites']} site(s) per round.\nFollow it with: fedxray-central run status {run['id']}"
    )
    emit(args, out, human)
    if online is not None and online < run["min_sites"]:
        print(f"Note: {online} enrolled workstation(s) are connected now; the run waits until {run['min_sites']} "
              "take part (workstations join with `fedxray federate`).", file=sys.stderr)  # fmt: skip
    return 0


def round_row(r: dict) -> list[str]:
    train, ev, srv = r["train_metrics"] or {}, r["evaluate_metrics"] or {}, r["server_metrics"] or {}
    return [str(r["server_round"]), fmt(r["num_sites"]), fmt(train.get("train_loss", train.get("loss"))),
            fmt(train.get("train_accuracy", train.get("accuracy"))), fmt(ev.get("loss")), fmt(ev.get("accuracy")),
            fmt(ev.get("macro_f1")), fmt(srv.get("accuracy")), fmt(srv.get("macro_f1"))]  # fmt: skip


def run_status(args: argparse.Namespace) -> int:
    with AdminClient(resolve_home(args.home)) as client:
        if args.run is None:
            return _list_runs(args, client)
        out = client.request("GET", f"/api/v1/admin/runs/{args.run}")
    run, rounds, versions, problem = out["run"], out["rounds"], out["model_versions"], out["flower_problem"]
    flower_text = (out["flower"] or {}).get("status") or (f"unknown ({problem})" if problem else "-")
    lines = [f"Run {run['id']}: {run['status']}  (Flower run {run['flower_run_id'] or '-'}: {flower_text})",
             f"  rounds: {sum(1 for r in rounds if r['server_round'] > 0)} of {run['num_rounds']} recorded, "
             f"at least {run['min_sites']} site(s) per round",
             f"  created {str(run['created_at'])[:19]} by {run.get('started_by') or '-'}, "
             f"started {str(run['started_at'] or '-')[:19]}, finished {str(run['finished_at'] or '-')[:19]}"]  # fmt: skip
    fab = run.get("fab") or {}
    if fab.get("fab_hash"):
        code = "FedXray's installed code" if fab.get("installed_code") else f"app in {fab.get('app_dir')}"
        lines.append(f"  code: {code}, FAB SHA-256 {fab['fab_hash']}")
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


def _list_runs(args: argparse.Namespace, client: AdminClient) -> int:
    out = client.request("GET", "/api/v1/admin/runs", params={"limit": args.limit})
    rows = [[r["id"], r["flower_run_id"] or "-", r["status"], r["flower_status"] or "-",
             f"{r['rounds_recorded']}/{r['num_rounds']}", r["min_sites"], str(r["created_at"])[:19],
             str(r["finished_at"] or "")[:19]] for r in out["runs"]]  # fmt: skip
    header = ["RUN", "FLOWER RUN", "STATUS", "FLOWER STATUS", "ROUNDS", "MIN SITES", "CREATED", "FINISHED"]
    human = table(rows, header) if rows else "No runs yet. Start one with: fedxray-central run start --rounds N"
    if out["flower_problem"]:
        human += f"\n(Flower's own status is unavailable: {out['flower_problem']})"
    emit(args, out, human)
    return 0


def stop_run(args: argparse.Namespace) -> int:
    with AdminClient(resolve_home(args.home)) as client:
        run = client.request("POST", f"/api/v1/admin/runs/{args.run}/stop")
    emit(args, {"run": run}, f"Run {run['id']} stopped (Flower run {run['flower_run_id'] or '-'}).")
    return 0

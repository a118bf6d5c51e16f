"""`fedxray-central`: run the central service and administer it (accounts, tokens, nodes, runs, models). Every
command but `serve` is a client of the running service's admin routes (central.cli.admin_client)."""

from __future__ import annotations

import argparse
import importlib
import sys

from central.cli.admin_client import AdminError
from central.home import HomeError
from fl.processes import set_flower_defaults

# Each module exposes register(subparsers).
COMMAND_MODULES = ("central.cli.serve", "central.cli.admins", "central.cli.tokens", "central.cli.nodes",
                   "central.cli.runs", "central.cli.models")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fedxray-central",
        description="FedXray central service. Admin commands find the home through --home or "
        "$FEDXRAY_CENTRAL_HOME and talk to the running service.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    set_flower_defaults()  # this process talks to Flower too: no telemetry, no update check
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (AdminError, HomeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

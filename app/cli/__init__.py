"""The `fedxray` command: the desktop app with no sub-command (or with image paths), tools otherwise."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# Sub-command modules; each exposes register(subparsers) and sets `func` on its parser.
COMMANDS = ("classify", "train", "evaluate", "enroll", "federate", "federation", "models")


def _quiet_tensorflow() -> None:
    from fl.processes import set_flower_defaults

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    set_flower_defaults()


def build_parser() -> tuple[argparse.ArgumentParser, set[str]]:
    """The argument parser and the names of the sub-commands this build has."""
    parser = argparse.ArgumentParser(
        prog="fedxray",
        description="FedXray chest X-ray decision support. Run without a command to open the app "
        "(optionally with image files to open). Decision support for research and clinical evaluation "
        "only; not a certified medical device.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"app.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"app.cli.{name}":
                continue  # that part of FedXray is not installed in this build
            raise
        module.register(sub)
    return parser, set(sub.choices)  # a module may register several commands (enroll, leave)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    _quiet_tensorflow()
    parser, commands = build_parser()
    if not argv or (argv[0] not in commands and not argv[0].startswith("-")):
        from app.ui.launch import run

        return run(sys.argv[:1], open_paths=argv)
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())

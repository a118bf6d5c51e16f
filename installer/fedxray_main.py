"""Entry point of the frozen FedXray app: the `fedxray` command, and Flower's node commands under their own names.

`fedxray federate` starts `flower-supernode` from the folder of the executable; the SuperNode starts
`flower-superexec`, which starts `flwr-clientapp`, both found through PATH (app.core.federation puts that folder
first). In the bundle those three names are links to this executable (made by fedxray.spec), and the name it was
started under picks what runs.

Hidden option for installation checks: `fedxray --bundle-selfcheck REPORT.json [--keyring] [--pdf] [IMAGE ...]`
(app.ui.selfcheck). Hidden option for the app's background conversion of a model to LiteRT:
`fedxray --convert-litert MODEL_DIR [--into DIR] [--nice]` (fl.litert_convert). Hidden option for FedXray's
ClientApp launcher beside the SuperNode: `fedxray --fl-launcher node|worker …` (fl.launcher.command builds it).
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from pathlib import Path

FLOWER_COMMANDS = ("flower-supernode", "flower-superexec", "flwr-clientapp")
SELFCHECK = "--bundle-selfcheck"
LAUNCHER = "--fl-launcher"  # fl.launcher.command() in a frozen bundle


def command_name(argv0: str) -> str:
    """The command this process was started as: the executable's (link's) name without .exe."""
    name = Path(argv0).name
    return name[:-4] if name.lower().endswith(".exe") else name


def run_flower(name: str) -> int:
    """Run one of Flower's node commands in this process, as its console script would."""
    from fl.processes import set_flower_defaults

    set_flower_defaults()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if name == "flower-supernode":
        from flwr.supernode.cli import flower_supernode as entry
    elif name == "flower-superexec":
        from flwr.supercore.cli import flower_superexec as entry
    else:  # the ClientApp the FAB names (fl.client_app:app) is bundled: fedxray.spec lists it as a hidden import
        from flwr.supernode.cli import flwr_clientapp as entry
    return int(entry() or 0)


def selfcheck(argv: list[str]) -> int:
    """The hidden `--bundle-selfcheck` (app.ui.selfcheck)."""
    from app.ui.selfcheck import main as check

    return check(argv, prog=f"fedxray {SELFCHECK}")


def missing_flower_commands() -> list[str]:
    """Flower's commands that are not beside the executable (a bundle copied without its links)."""
    folder = Path(sys.executable).parent
    suffix = ".exe" if sys.platform == "win32" else ""
    return [c for c in FLOWER_COMMANDS if not (folder / f"{c}{suffix}").exists()]


def main() -> int:
    name = command_name(sys.argv[0])
    if name in FLOWER_COMMANDS:
        return run_flower(name)
    if len(sys.argv) > 1 and sys.argv[1] == SELFCHECK:
        return selfcheck(sys.argv[2:])
    if len(sys.argv) > 1 and sys.argv[1] == LAUNCHER:  # the launcher and its warm ClientApp workers
        from fl.processes import set_flower_defaults

        set_flower_defaults()
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        from fl.launcher import main as launcher

        return launcher(sys.argv[2:])
    from fl.litert_convert import FROZEN_OPTION

    if len(sys.argv) > 1 and sys.argv[1] == FROZEN_OPTION:  # the app's background conversion of a model
        from fl.litert_convert import main as convert

        return convert(sys.argv[2:])
    federating = sys.argv[1:2] in (["federate"], ["federation"])
    missing = missing_flower_commands() if federating and getattr(sys, "frozen", False) else []
    if missing:
        print(f"fedxray: federated training is not available in this installation: {', '.join(missing)} missing "
              f"in {Path(sys.executable).parent} (install FedXray again from the complete package)",
              file=sys.stderr)  # fmt: skip
        return 2
    from app.cli import main as fedxray

    return fedxray()


if __name__ == "__main__":
    multiprocessing.freeze_support()
    sys.exit(main())

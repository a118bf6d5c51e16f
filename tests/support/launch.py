"""Start, inspect and stop runs of FedXray's Flower app on a bare SuperLink through the `flwr` CLI, for tests and
benchmarks that run Flower without the central (the central starts its runs through central.run_lifecycle).
The CLI's connection lives in FLWR_HOME/config.toml, written here."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from fl.processes import flower_env
from fl.task import RunSettings, flower_app_dir

FLWR = Path(sys.executable).parent / "flwr"
CONNECTION = "fedxray"


class LaunchError(Exception):
    """The SuperLink refused or the flwr CLI failed; the message carries its output."""


def write_connection(flwr_home: Path, superlink: str, *, root_certificates: Path | None) -> None:
    """FLWR_HOME/config.toml with the one connection the commands below use (insecure without a CA)."""
    import tomli_w

    conn: dict[str, Any] = {"address": superlink}
    if root_certificates:
        conn["root-certificates"] = str(root_certificates)
    else:
        conn["insecure"] = True
    flwr_home.mkdir(parents=True, exist_ok=True)
    (flwr_home / "config.toml").write_text(tomli_w.dumps({"superlink": {"default": CONNECTION, CONNECTION: conn}}))


def _flwr(args: list[str], flwr_home: Path, timeout: float) -> dict:
    env = flower_env(flwr_home)
    out = subprocess.run([str(FLWR), *args, "--format", "json"], capture_output=True, text=True, env=env,
                         timeout=timeout)  # fmt: skip
    text = out.stdout
    try:
        data = json.loads(text[text.index("{"):])
    except ValueError:
        data = None
    if out.returncode != 0 or not data or not data.get("success", True):
        raise LaunchError(f"flwr {args[0]} failed ({out.returncode}): {(data or {}).get('error') or text[-500:]} "
                          f"{out.stderr[-500:]}")  # fmt: skip
    return data


def start_run(flwr_home: Path, run_config: dict[str, Any], *, timeout: float = 300, app_dir: Path | None = None) -> int:
    """`flwr run` of fl/flwr_app (or `app_dir`) with `run_config` overrides (validated first); returns Flower's
    run id."""
    RunSettings.from_config(run_config)  # refuse a bad setting here rather than in the ServerApp
    import tomli_w

    with tempfile.NamedTemporaryFile("w", suffix=".toml", dir=flwr_home, delete=False) as fh:
        fh.write(tomli_w.dumps(run_config))
    try:
        data = _flwr(["run", str(app_dir or flower_app_dir()), CONNECTION, "--run-config", fh.name], flwr_home, timeout)
    finally:
        Path(fh.name).unlink(missing_ok=True)
    return int(data["run-id"])


def run_info(flwr_home: Path, run_id: int, *, timeout: float = 60) -> dict:
    """`flwr ls --run-id`: status ("running", "finished:completed", ...), timings, Flower's traffic counters."""
    runs = _flwr(["ls", CONNECTION, "--run-id", str(int(run_id))], flwr_home, timeout).get("runs") or []
    if not runs:
        raise LaunchError(f"the SuperLink knows no run {run_id}")
    return runs[0]


def stop_run(flwr_home: Path, run_id: int, *, timeout: float = 60) -> None:
    """`flwr stop`: the SuperLink ends the run's ServerApp."""
    _flwr(["stop", str(int(run_id)), CONNECTION], flwr_home, timeout)

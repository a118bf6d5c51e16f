"""Flower's `flwr` tool as the run lifecycle uses it to launch runs: a private FLWR_HOME whose only connection is
the loopback SuperLink (TLS, the central's CA), a run-config file per run, and JSON answers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from central import pki
from central.home import CentralHome
from fl.processes import flower_env

CONNECTION = "fedxray-central"


class FlowerToolError(Exception):
    """Flower's `flwr` tool failed or the SuperLink refused; the message says why and where to look."""


def flwr_home(home: CentralHome) -> Path:
    """`<home>/flwr`, with a config.toml whose default connection is this central's loopback SuperLink."""
    runtime = home.read_runtime() or {}
    address = runtime.get("superlink_address")
    if not address:
        raise FlowerToolError(
            f"The central service on {home.root} has not recorded its SuperLink address; restart it."
        )
    folder = home.root / "flwr"
    folder.mkdir(mode=0o700, exist_ok=True)
    config = (
        "# Written by fedxray-central: the flwr CLI reaches only this central's loopback SuperLink.\n"
        f'[superlink]\ndefault = "{CONNECTION}"\n\n'
        f"[superlink.{CONNECTION}]\naddress = {json.dumps(address)}\n"
        f"root-certificates = {json.dumps(str(home.ca_cert))}\n"
    )
    pki.write_public(folder / "config.toml", config.encode("utf-8"))
    return folder


def flwr(home: CentralHome, *args: str, timeout: float = 120.0) -> dict:
    """Run `flwr ARGS --format json` against the loopback SuperLink; the decoded answer (with "success")."""
    env = flower_env(flwr_home(home))
    command = [str(Path(sys.executable).parent / "flwr"), *args, "--format", "json"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout,
                              cwd=home.root, stdin=subprocess.DEVNULL)  # fmt: skip
    except subprocess.TimeoutExpired as exc:
        raise FlowerToolError(f"`flwr {args[0]}` got no answer from the SuperLink within {timeout:.0f} s; "
                         f"see {home.logs_dir / 'superlink.log'}") from exc  # fmt: skip
    except OSError as exc:
        raise FlowerToolError(
            f"Cannot run Flower's `flwr` command ({exc}); is FedXray installed completely?"
        ) from exc
    start = done.stdout.find("{")
    try:
        data = json.loads(done.stdout[start:]) if start >= 0 else None
    except json.JSONDecodeError:
        data = None
    if not isinstance(data, dict):
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise FlowerToolError(
            f"`flwr {args[0]}` failed (exit code {done.returncode}): {' / '.join(tail) or 'no output'}"
        )
    return data


def launch_run(home: CentralHome, app_dir: Path, overrides: dict[str, Any], *, name: str) -> int:
    """`flwr run APP` on the loopback SuperLink with these run-config overrides (kept as
    <home>/flwr/runs/<name>.toml); the Flower run id. FlowerToolError with Flower's reason if it was refused."""
    config_file = write_run_config(home.root / "flwr" / "runs" / f"{name}.toml", overrides)
    answer = flwr(home, "run", str(app_dir), CONNECTION, "--run-config", str(config_file), timeout=300)
    if not answer.get("success") or not answer.get("run-id"):
        raise FlowerToolError(flower_error(answer))
    return int(answer["run-id"])


def flower_error(data: dict) -> str:
    """Flower's own reason from a failed JSON answer, e.g. '[code: 16] Run ID not found.'"""
    lines = [ln.strip() for ln in str(data.get("error-message", "")).splitlines() if ln.strip()]
    coded = [ln for ln in lines if ln.startswith("[code:")]
    if coded:
        return coded[-1]
    listed = [ln.removeprefix("- ") for ln in lines if ln.startswith("- ")]  # e.g. an invalid app's problems
    return "; ".join(listed) if listed else (lines or ["no reason given"])[-1]


def write_run_config(path: Path, config: dict[str, Any]) -> Path:
    """Write run-config overrides as a TOML file for `flwr run --run-config FILE`."""
    lines = []
    for key, value in config.items():
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, (int, float)):
            text = repr(value)
        else:
            text = json.dumps(str(value))  # a JSON string is a valid TOML basic string
        lines.append(f"{json.dumps(key)} = {text}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path

"""The `flwr` CLI as the central uses it (admin commands and the run keeper): a private FLWR_HOME whose only
connection is the loopback SuperLink (TLS, the central's CA), the Flower app's run config, and JSON answers."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

from central import pki
from central.home import CentralHome
from fl.processes import flower_env

CONNECTION = "fedxray-central"


class FlowerToolError(Exception):
    """Flower's `flwr` tool failed or the SuperLink refused; the message says why and where to look."""


def default_app_dir() -> Path:
    """FedXray's Flower app (fl/flwr_app: a pyproject naming fl.server_app:app and fl.client_app:app)."""
    import fl

    return Path(fl.__file__).resolve().parent / "flwr_app"


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


def app_config(app_dir: Path) -> dict[str, Any]:
    """The run settings a Flower app takes: `[tool.flwr.app.config]` of its pyproject.toml."""
    pyproject = app_dir / "pyproject.toml"
    try:
        data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FlowerToolError(f"{app_dir} is not a Flower app: it has no pyproject.toml.") from None
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise FlowerToolError(f"The Flower app's {pyproject} is unreadable ({exc}).") from None
    config = data.get("tool", {}).get("flwr", {}).get("app", {}).get("config")
    if not isinstance(config, dict):
        raise FlowerToolError(f"{pyproject} has no [tool.flwr.app.config] section: it is not a Flower app.")
    return config


def app_components(app_dir: Path) -> dict[str, str]:
    """The app's `[tool.flwr.app.components]` (serverapp, clientapp): which code the run executes."""
    try:
        data = tomllib.loads((app_dir / "pyproject.toml").read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise FlowerToolError(f"{app_dir} is not a readable Flower app ({exc}).") from None
    components = data.get("tool", {}).get("flwr", {}).get("app", {}).get("components")
    if not isinstance(components, dict):
        raise FlowerToolError(f"{app_dir / 'pyproject.toml'} names no [tool.flwr.app.components].")
    return {str(k): str(v) for k, v in components.items()}


def coerce(key: str, value: Any, default: Any) -> Any:
    """`value` in the type of the app's default for `key` (an int where a float is expected is fine)."""
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
    elif isinstance(default, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(float(value)):
            return float(value)
    elif isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif isinstance(default, str):
        return str(value)
    raise FlowerToolError(
        f"Run setting {key!r} takes a {type(default).__name__} (like {default!r}), not {value!r}."
    )


def parse_value(text: str) -> Any:
    """A --set value: a TOML number, boolean or quoted string; anything else is taken as a plain string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


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

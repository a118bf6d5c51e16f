"""A Flower app folder as the central reads it: its run settings with their defaults and types, and the
components (server and client code) it runs. FedXray's own app is fl/flwr_app."""

from __future__ import annotations

import math
import tomllib
from pathlib import Path
from typing import Any

from central.flower.flwr_tool import FlowerToolError


def default_app_dir() -> Path:
    """FedXray's Flower app (fl/flwr_app: a pyproject naming fl.server_app:app and fl.client_app:app)."""
    from fl.task import flower_app_dir

    return flower_app_dir().resolve()


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

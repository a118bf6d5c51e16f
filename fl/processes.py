"""Flower's programs as child processes: the one environment they all get, and their process trees.

Shared by the central (SuperLink, `flwr`), the workstation (SuperNode, launcher, ClientApps) and the tests, so
that "no telemetry, no update check" and "stop everything below this process" are each written once.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

import psutil

# Every Flower process: no telemetry and no update check (a hospital machine talks to nothing but its central).
FLOWER_ENV = {"FLWR_TELEMETRY_ENABLED": "0", "FLWR_DISABLE_UPDATE_CHECK": "1"}
# Quiet TensorFlow's start-up banner; unbuffered output so log lines arrive while they happen.
_CHILD_ENV = {"TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}


def bin_dir() -> Path:
    """The folder of this Python's console scripts (flower-superlink, flower-supernode, flwr, fedxray...)."""
    return Path(sys.executable).parent


def set_flower_defaults(environ: dict | os._Environ | None = None) -> None:
    """Set FLOWER_ENV in this process's environment (or `environ`) where not already set."""
    target = os.environ if environ is None else environ
    for name, value in FLOWER_ENV.items():
        target.setdefault(name, value)


def flower_env(flwr_home: str | os.PathLike | None = None, **extra: str) -> dict[str, str]:
    """The environment for a Flower child process: this one's, plus FLOWER_ENV, a quiet TensorFlow, unbuffered
    output, this Python's scripts first on PATH, FLWR_HOME when given, and `extra` last."""
    env = dict(os.environ)
    env.update(FLOWER_ENV)
    env.update(_CHILD_ENV)
    env["PATH"] = str(bin_dir()) + os.pathsep + env.get("PATH", "")
    if flwr_home is not None:
        env["FLWR_HOME"] = str(flwr_home)
    env.update(extra)
    return env


def descendants(pid: int) -> list[int]:
    """Every process below `pid`, also those that started their own session (SuperExec, ClientApps)."""
    try:
        return [child.pid for child in psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def signal_all(pids: list[int], sig: int) -> None:
    """Send `sig` to each of `pids`, ignoring those already gone."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)

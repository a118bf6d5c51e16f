"""Run the real `fedxray` command in a subprocess with its own per-user folders."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


@pytest.fixture
def fedxray(tmp_path):
    env = dict(os.environ, XDG_CONFIG_HOME=str(tmp_path / "config"), XDG_DATA_HOME=str(tmp_path / "data"),
               XDG_CACHE_HOME=str(tmp_path / "cache"), TF_CPP_MIN_LOG_LEVEL="2")

    def run(*args, check=False, timeout=600):
        return subprocess.run([sys.executable, "-m", "app", *map(str, args)], capture_output=True, text=True,
                              env=env, timeout=timeout, check=check)

    return run

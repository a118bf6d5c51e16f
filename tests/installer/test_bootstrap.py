"""installer/bootstrap.sh's bundle step: it rebuilds dist/fedxray only when what goes into the bundle changed.

Runs the script's own functions (bundle_source, bundle_for_tests) in a throw-away git repository whose
installer/build.sh is a stand-in that records each call (a real build takes 15 minutes; build.sh itself is tested
by tests/installer/test_bundle.py on the bundle it makes).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.conftest import REPO

FUNCTIONS = "/^BUNDLE_INPUTS=/p;/^bundle_source()/,/^}/p;/^bundle_for_tests()/,/^}/p"


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.email=t@example.org", "-c", "user.name=t", *args], cwd=repo, check=True,
                   capture_output=True)


def _bundle_step(repo: Path) -> str:
    script = f'set -euo pipefail; source <(sed -n "{FUNCTIONS}" {REPO / "installer" / "bootstrap.sh"}); bundle_for_tests'
    env = {k: v for k, v in os.environ.items() if k != "FEDXRAY_BUNDLE"}
    return subprocess.run(["bash", "-c", script], cwd=repo, env=env, capture_output=True, text=True,
                          check=True).stdout


def test_the_bundle_is_built_once_per_content_of_its_inputs(tmp_path):
    repo = tmp_path / "checkout"
    for folder in ("app", "fl", "resources", "installer"):
        (repo / folder).mkdir(parents=True)
        (repo / folder / "x.py").write_text(f"# {folder}\n")
    (repo / "pyproject.toml").write_text("[project]\n")
    (repo / "README.md").write_text("readme\n")
    (repo / "installer" / "build.sh").write_text(
        "mkdir -p dist/fedxray && printf '#!/bin/sh\\n' > dist/fedxray/fedxray && chmod +x dist/fedxray/fedxray\n"
        "echo built >> builds.log\n")
    (repo / ".gitignore").write_text("dist/\nbuilds.log\n")
    _git(repo, "init", "-q")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "one")

    def builds() -> int:
        log = repo / "builds.log"
        return len(log.read_text().splitlines()) if log.exists() else 0

    first = _bundle_step(repo)
    assert "building dist/fedxray" in first and builds() == 1
    assert "already built" in _bundle_step(repo) and builds() == 1            # the same inputs: no new build
    (repo / "README.md").write_text("readme, edited\n")
    _git(repo, "commit", "-qam", "docs")
    assert "already built" in _bundle_step(repo) and builds() == 1            # a README-only commit: none either
    (repo / "app" / "x.py").write_text("# changed, not committed\n")
    assert "building" in _bundle_step(repo) and builds() == 2                 # an uncommitted change to the app
    _git(repo, "commit", "-qam", "app")
    assert "building" in _bundle_step(repo) and builds() == 3                 # committed: its own stamp
    assert "already built" in _bundle_step(repo) and builds() == 3

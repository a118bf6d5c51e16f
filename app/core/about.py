"""What the About box says about this installation: version, build and licence (plain data)."""

from __future__ import annotations

import platform
import sys
from dataclasses import dataclass
from importlib import metadata

DISTRIBUTION = "fedxray"


@dataclass(frozen=True)
class AboutInfo:
    version: str      # the installed package's version, e.g. "0.1.0"
    build: str        # how it was installed: the one-folder bundle or a Python package, and the Python it runs on
    licence: str      # the licence the package declares, e.g. "Apache-2.0"


def about() -> AboutInfo:
    """The version, build and licence of the running FedXray (from its package metadata)."""
    try:
        meta = metadata.metadata(DISTRIBUTION)
        version = meta["Version"]
        licence = meta.get("License-Expression") or meta.get("License") or "see the LICENSE file"
    except metadata.PackageNotFoundError:
        version, licence = "unknown (not installed as a package)", "see the LICENSE file"
    kind = "one-folder bundle" if getattr(sys, "frozen", False) else "Python package"
    build = f"{kind}, Python {platform.python_version()} on {platform.system()} {platform.machine()}"
    return AboutInfo(version=version, build=build, licence=licence)

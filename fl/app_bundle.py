"""FedXray's Flower app bundle (FAB) as this installation builds it: the one identity the workstation's
launcher approves and the central reports as "FedXray's installed code".

`flwr run` packs fl/flwr_app (a pyproject.toml naming the installed fl.server_app and fl.client_app, no code of
its own) into a FAB deterministically (fixed file times), so a central and a workstation of the same FedXray
version build byte-identical FABs with the same SHA-256. The app's version is FedXray's (a test keeps them equal).
"""

from __future__ import annotations

import hashlib
import io
import tomllib
import zipfile
from functools import cache

COMPONENTS = {"serverapp": "fl.server_app:app", "clientapp": "fl.client_app:app"}


@cache
def installed_fab() -> tuple[str, bytes]:
    """(SHA-256, bytes) of the FAB `flwr run` builds from this installation's fl/flwr_app."""
    from flwr.cli.build import build_fab_from_disk

    from fl.task import flower_app_dir

    content = build_fab_from_disk(flower_app_dir())
    return hashlib.sha256(content).hexdigest(), content


def is_installed_fab(fab_hash: str | None) -> bool:
    """Whether a FAB hash is this installation's FedXray app."""
    return bool(fab_hash) and fab_hash == installed_fab()[0]


def fab_refusal(fab_hash: str | None, content: bytes | None = None) -> str | None:
    """Why a FAB may not run here (None: it is FedXray's installed app). Checks the hash and, when the bytes are
    given, that they have that hash and name only FedXray's installed components (defence in depth)."""
    expected, _ = installed_fab()
    if not fab_hash or fab_hash != expected:
        return f"FAB {str(fab_hash)[:12]} is not this installation's FedXray app ({expected[:12]})"
    if content is None:
        return None
    if hashlib.sha256(content).hexdigest() != fab_hash:
        return "the FAB's content does not have its announced hash"
    try:
        with zipfile.ZipFile(io.BytesIO(content)) as fab:
            names = set(fab.namelist())
            components = tomllib.loads(fab.read("pyproject.toml").decode("utf-8"))["tool"]["flwr"]["app"]["components"]
    except (zipfile.BadZipFile, KeyError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        return f"the FAB cannot be read ({type(exc).__name__})"
    if any(n.endswith((".py", ".pyc", ".so", ".pyd")) for n in names):
        return "the FAB ships code of its own"
    if dict(components) != COMPONENTS:
        return f"the FAB names components other than FedXray's: {dict(components)}"
    return None

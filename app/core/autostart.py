"""Start the federation agent at login: an XDG autostart entry on Linux (tested), a Windows Startup-folder
script and a macOS LaunchAgent (both written by the same code, untested on those systems).

Public API: `install(command) -> Path`, `remove() -> bool`, `installed() -> Path | None`, `entry_path()`.
"""

from __future__ import annotations

import os
import plistlib
import shlex
import sys
from pathlib import Path

from app.core.paths import atomic_write_text

NAME = "fedxray-federation-agent"
LABEL = "org.fedxray.federation-agent"


def entry_path(platform: str | None = None) -> Path:
    """Where the login entry goes on this (or `platform`'s) system."""
    platform = platform or sys.platform
    home = Path.home()
    if platform == "win32":  # untested
        appdata = Path(os.environ.get("APPDATA") or home / "AppData" / "Roaming")
        return appdata / "Microsoft" / "Windows" / "Start Menu" / "Programs" / "Startup" / f"{NAME}.cmd"
    if platform == "darwin":  # untested
        return home / "Library" / "LaunchAgents" / f"{LABEL}.plist"
    config = Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config")
    return config / "autostart" / f"{NAME}.desktop"


def render(command: list[str], platform: str | None = None) -> str:
    """The entry's text for `command` (the agent's command line)."""
    platform = platform or sys.platform
    if platform == "win32":
        quoted = " ".join(f'"{c}"' if " " in c else c for c in command)
        return f"@echo off\r\nrem FedXray federated training agent (written by `fedxray federation opt-in`)\r\nstart \"\" /b {quoted}\r\n"
    if platform == "darwin":
        return plistlib.dumps({"Label": LABEL, "ProgramArguments": command, "RunAtLoad": True,
                               "ProcessType": "Background"}).decode()  # fmt: skip
    exec_line = " ".join(_desktop_quote(c) for c in command)
    return (
        "[Desktop Entry]\n"
        "Type=Application\n"
        "Name=FedXray federated training\n"
        "Comment=Takes part in the hospital's federated training in the background (opt out in FedXray)\n"
        f"Exec={exec_line}\n"
        "Terminal=false\n"
        "NoDisplay=true\n"
        "X-GNOME-Autostart-enabled=true\n"
    )


def _desktop_quote(arg: str) -> str:
    """Quote one argument for a .desktop Exec line (the spec's double-quote rules)."""
    if arg and all(c.isalnum() or c in "-_./:=+," for c in arg):
        return arg
    escaped = arg.replace("\\", "\\\\").replace('"', '\\"').replace("`", "\\`").replace("$", "\\$")
    return f'"{escaped}"'.replace("%", "%%")


def install(command: list[str]) -> Path:
    """Write the login entry (atomically); returns its path."""
    path = entry_path()
    return atomic_write_text(path, render(command), what="the login start entry")


def remove() -> bool:
    """Remove the login entry; False when there was none."""
    path = entry_path()
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True


def installed() -> Path | None:
    path = entry_path()
    return path if path.exists() else None


def exec_args(desktop_text: str) -> list[str]:
    """The command of an XDG entry's Exec line (for checks and tests)."""
    line = next(x for x in desktop_text.splitlines() if x.startswith("Exec="))
    return shlex.split(line[5:].replace("%%", "%"))

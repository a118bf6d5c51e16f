"""Login entries of the federation agent (app.core.autostart). The XDG entry is written and parsed back here;
the Windows and macOS texts are checked for their form only (untested on those systems)."""

from __future__ import annotations

import plistlib

from app.core import autostart

COMMAND = ["/opt/Fed Xray/fedxray", "federation", "agent"]


def test_xdg_entry_is_written_in_the_user_autostart_folder_and_removed(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    assert autostart.installed() is None and autostart.remove() is False
    path = autostart.install(COMMAND)
    assert path == tmp_path / "config" / "autostart" / "fedxray-federation-agent.desktop"
    text = path.read_text()
    assert "[Desktop Entry]" in text and "Type=Application" in text and "Terminal=false" in text
    assert autostart.exec_args(text) == COMMAND  # the path with a space survives the quoting
    assert autostart.installed() == path
    assert autostart.remove() is True and not path.exists()


def test_windows_and_macos_entries():
    cmd = autostart.render(COMMAND, "win32")
    assert cmd.startswith("@echo off") and '"/opt/Fed Xray/fedxray" federation agent' in cmd
    plist = plistlib.loads(autostart.render(COMMAND, "darwin").encode())
    assert plist["ProgramArguments"] == COMMAND and plist["RunAtLoad"] is True
    assert autostart.entry_path("darwin").name == "org.fedxray.federation-agent.plist"
    assert autostart.entry_path("win32").parts[-2:] == ("Startup", "fedxray-federation-agent.cmd")

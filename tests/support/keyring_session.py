"""A real Secret Service for tests: a private D-Bus session bus with an unlocked gnome-keyring on it.

The session fixture exports DBUS_SESSION_BUS_ADDRESS into os.environ, so every subprocess a test starts
(`fedxray enroll` ...) uses this keyring; the user's own keyring is never touched. Needs Debian's
`dbus` (dbus-daemon) and `gnome-keyring`; the tests that use it are skipped, with the reason, without them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PASSWORD = "fedxray-test-keyring"


@dataclass
class SecretService:
    """A running D-Bus session bus + gnome-keyring (secrets component), unlocked."""

    address: str
    dbus_pid: int
    keyring: subprocess.Popen
    root: Path

    def env(self) -> dict[str, str]:
        """Variables a process needs to use this keyring."""
        return {"DBUS_SESSION_BUS_ADDRESS": self.address}

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.keyring.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.keyring.wait(5)
        if self.keyring.poll() is None:
            self.keyring.kill()
            self.keyring.wait(5)
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.dbus_pid, signal.SIGTERM)
        shutil.rmtree(self.root, ignore_errors=True)


def missing_programs() -> list[str]:
    """Programs this fixture needs that are not installed."""
    return [p for p in ("dbus-daemon", "gnome-keyring-daemon") if shutil.which(p) is None]


def _service_ready(address: str) -> bool:
    """Whether org.freedesktop.secrets answers on the bus (asked from a child, so this process's
    keyring choice is not frozen before the bus exists)."""
    probe = (
        "import secretstorage, sys\n"
        "conn = secretstorage.dbus_init()\n"
        "sys.exit(0 if secretstorage.check_service_availability(conn) else 1)\n"
    )
    env = {**os.environ, "DBUS_SESSION_BUS_ADDRESS": address}
    import sys

    return subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, timeout=20).returncode == 0


def start_secret_service(timeout: float = 30.0) -> SecretService:
    """Start dbus-daemon (session) and gnome-keyring-daemon --unlock --components=secrets."""
    root = Path(tempfile.mkdtemp(prefix="fedxray-keyring-"))
    runtime = root / "runtime"
    data = root / "data"
    runtime.mkdir(mode=0o700)
    data.mkdir(mode=0o700)
    out = subprocess.run(
        ["dbus-daemon", "--session", "--fork", "--print-address=1", "--print-pid=1", "--nopidfile"],
        capture_output=True, text=True, timeout=20, check=True,
    )  # fmt: skip
    address, pid = out.stdout.split()[:2]
    env = {
        **os.environ,
        "DBUS_SESSION_BUS_ADDRESS": address,
        "XDG_RUNTIME_DIR": str(runtime),
        "XDG_DATA_HOME": str(data),  # the keyring files of this test session only
        "HOME": str(root),
    }
    keyring = subprocess.Popen(
        ["gnome-keyring-daemon", "--foreground", "--unlock", "--components=secrets"],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
    )  # fmt: skip
    assert keyring.stdin is not None
    keyring.stdin.write(PASSWORD.encode())
    keyring.stdin.close()
    service = SecretService(address=address, dbus_pid=int(pid), keyring=keyring, root=root)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if keyring.poll() is not None:
            service.stop()
            raise RuntimeError(f"gnome-keyring-daemon exited with code {keyring.returncode}")
        if _service_ready(address):
            return service
        time.sleep(0.3)
    service.stop()
    raise RuntimeError("the Secret Service did not come up on the test D-Bus session")


@pytest.fixture(scope="session")
def secret_service() -> Iterator[SecretService]:
    """A real, unlocked Secret Service for the whole test session; DBUS_SESSION_BUS_ADDRESS exported."""
    missing = missing_programs()
    if missing:
        pytest.skip(f"a real keyring needs {', '.join(missing)} (apt-get install dbus gnome-keyring)")
    service = start_secret_service()
    old = os.environ.get("DBUS_SESSION_BUS_ADDRESS")
    os.environ["DBUS_SESSION_BUS_ADDRESS"] = service.address
    try:
        yield service
    finally:
        if old is None:
            os.environ.pop("DBUS_SESSION_BUS_ADDRESS", None)
        else:
            os.environ["DBUS_SESSION_BUS_ADDRESS"] = old
        service.stop()

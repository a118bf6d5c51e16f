"""Flower's SuperLink as a supervised child of the central: started on loopback, restarted when it dies, stopped
with everything it started. (What the central asks it is central.flower.control.)"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from central.flower.control import SuperLinkError
from central.home import CentralHome
from fl.processes import descendants, flower_env

log = logging.getLogger("central.superlink")
__all__ = ["SuperLinkError", "SuperLinkProcess", "port_open"]

try:
    _LIBC = ctypes.CDLL(None, use_errno=True)  # loaded before any fork: dlopen is not safe in a forked child
except OSError:  # pragma: no cover - not glibc
    _LIBC = None


def _die_with_parent() -> None:
    """Runs in the child between fork and exec: SIGTERM it when the thread that started it dies."""
    if _LIBC is not None:
        _LIBC.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """Whether something accepts TCP connections on host:port."""
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=timeout):
        return True
    return False


class SuperLinkProcess:
    """Runs `flower-superlink` on 127.0.0.1 with TLS, node authentication and a database in the home,
    restarts it with back-off if it exits, and stops it (and everything it started) on request."""

    def __init__(
        self,
        *,
        home: CentralHome,
        port: int,
        on_start: Callable[[int], None] | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.home = home
        self.port = port
        self.extra_env = extra_env or {}  # inherited by the ServerApp processes the SuperLink starts
        self.on_start = on_start  # called with the pid of every (re)started SuperLink
        self.address = f"127.0.0.1:{port}"
        self._proc: subprocess.Popen | None = None
        self._stopping = threading.Event()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self.restarts = 0

    def command(self) -> list[str]:
        h = self.home
        return [
            str(Path(sys.executable).parent / "flower-superlink"),
            "--ssl-ca-certfile", str(h.ca_cert),
            "--ssl-certfile", str(h.server_cert),
            "--ssl-keyfile", str(h.server_key),
            "--enable-supernode-auth",
            "--database", str(h.superlink_database),
            "--disable-runtime-dependency-installation",
            "--host", "127.0.0.1",
            "--port", str(self.port),
        ]  # fmt: skip

    def _spawn(self) -> subprocess.Popen:
        logfile = open(self.home.logs_dir / "superlink.log", "ab")  # noqa: SIM115 (child keeps it)
        try:
            return subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=logfile,
                stderr=subprocess.STDOUT,
                env={**flower_env(), **self.extra_env},
                cwd=self.home.superlink_dir,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        finally:
            logfile.close()

    def start(self, *, timeout: float = 90.0) -> None:
        """Start the supervisor thread and wait until the SuperLink accepts connections."""
        if port_open("127.0.0.1", self.port):
            raise SuperLinkError(
                f"Port {self.port} on 127.0.0.1 is already in use; is an old SuperLink still running? "
                "Choose another with --superlink-port."
            )
        self._thread = threading.Thread(target=self._supervise, name="superlink-supervisor", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            self.stop()
            raise SuperLinkError(
                f"The SuperLink did not start within {timeout:.0f} s; see {self.home.logs_dir / 'superlink.log'}"
            )

    def _supervise(self) -> None:
        # The SuperLink is started from this thread (which lives as long as the service) so that
        # PR_SET_PDEATHSIG takes it down if the central dies without cleaning up.
        backoff = 1.0
        while not self._stopping.is_set():
            self._proc = self._spawn()
            started = time.monotonic()
            log.info("SuperLink started (pid %d) on %s", self._proc.pid, self.address)
            if self.on_start is not None:
                try:
                    self.on_start(self._proc.pid)
                except Exception:
                    log.exception("SuperLink on_start callback failed")
            while self._proc.poll() is None and not self._stopping.is_set():
                if not self._ready.is_set() and port_open("127.0.0.1", self.port):
                    self._ready.set()
                self._stopping.wait(0.5)
            if self._stopping.is_set():
                return
            code = self._proc.returncode
            # What it started (the runs' ServerApps) must not outlive it: a restarted SuperLink does not know
            # them, and the central's run keeper resumes their runs from the last saved model version.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._proc.pid, signal.SIGKILL)
            if time.monotonic() - started > 60:
                backoff = 1.0
            log.error("SuperLink exited with code %s; restarting in %.0f s", code, backoff)
            self.restarts += 1
            self._stopping.wait(backoff)
            backoff = min(backoff * 2, 30.0)

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def stop(self, *, timeout: float = 15.0) -> None:
        """Stop the SuperLink and every process it started (SIGTERM, then SIGKILL)."""
        self._stopping.set()
        proc = self._proc
        if proc is not None and proc.poll() is None:
            family = descendants(proc.pid)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
            _reap(family, timeout=5.0)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(5)


def _reap(pids: list[int], *, timeout: float) -> None:
    """SIGTERM processes left over (detached children), SIGKILL them after `timeout`."""
    alive = [p for p in pids if _alive(p)]
    for pid in alive:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while alive and time.monotonic() < deadline:
        time.sleep(0.1)
        alive = [p for p in alive if _alive(p)]
    for pid in alive:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"

"""Flower's SuperLink on loopback: the supervised process and the Control API calls the central makes."""

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
from dataclasses import dataclass
from pathlib import Path

from central.home import CentralHome
from fl.processes import descendants, flower_env

log = logging.getLogger("central.superlink")

class SuperLinkError(Exception):
    """The SuperLink refused or could not be reached."""


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


@dataclass(frozen=True)
class RunState:
    """What the SuperLink knows about a run."""

    run_id: int
    status: str  # pending | starting | running | finished
    sub_status: str  # completed | failed | stopped | "" (not finished)
    details: str
    fab_id: str = ""
    fab_version: str = ""
    fab_hash: str = ""  # SHA-256 of the Flower app bundle the SuperLink ships to every node
    running_at: str = ""
    finished_at: str = ""
    bytes_sent: int = 0
    bytes_recv: int = 0

    def summary(self) -> dict:
        """What `run status` shows of Flower's view (keys as `flwr ls` names them)."""
        return {"status": self.label, "status-details": self.details or None, "running-at": self.running_at or None,
                "finished-at": self.finished_at or None, "fab-hash": self.fab_hash or None,
                "bytes-sent": self.bytes_sent, "bytes-received": self.bytes_recv}  # fmt: skip

    @property
    def label(self) -> str:
        """As `flwr ls` shows it, e.g. "finished:failed"."""
        return f"{self.status}:{self.sub_status}" if self.sub_status else self.status


@dataclass(frozen=True)
class NodeState:
    """What the SuperLink knows about a node."""

    node_id: int
    status: str  # registered | online | offline | unregistered
    online_until: float | None
    last_activated_at: str | None
    name: str


class SuperLinkControl:
    """The Control API calls the central needs, over TLS to the loopback SuperLink."""

    def __init__(self, *, address: str, ca_cert: Path) -> None:
        self.address = address
        self.ca_cert = ca_cert

    def _client(self):
        from flwr.cli.cli_client_interceptor import CliClientHttpInterceptor
        from flwr.supercore.control import ControlHttpClient
        from flwr.supercore.interceptors.http.runtime_version import RuntimeVersionHttpInterceptor

        return ControlHttpClient.from_server_address(
            self.address,
            insecure=False,
            root_certificates=str(self.ca_cert),
            interceptors=[
                CliClientHttpInterceptor(),
                RuntimeVersionHttpInterceptor(component_name="flwr CLI"),
            ],
        )

    def _call(self, method: str, request):
        import httpx

        client = self._client()
        try:
            return getattr(client, method)(request)
        except httpx.HTTPStatusError as exc:
            text = exc.response.text[:300]
            raise SuperLinkError(
                f"SuperLink refused {method}: HTTP {exc.response.status_code} {text}"
            ) from exc
        except httpx.HTTPError as exc:
            raise SuperLinkError(f"SuperLink unreachable at {self.address}: {exc}") from exc
        finally:
            client.close()

    def register_node(self, *, public_key_pem: str, name: str) -> int:
        """Register a node's public key; returns the node id Flower assigned."""
        from flwr.proto.control_pb2 import RegisterNodeRequest

        response = self._call(
            "RegisterNode", RegisterNodeRequest(public_key=public_key_pem.encode("ascii"), name=name[:100])
        )
        if not response.node_id:
            raise SuperLinkError("SuperLink did not return a node id")
        return int(response.node_id)

    def unregister_node(self, node_id: int) -> None:
        """Unregister a node: its key stops authenticating and a running SuperNode is cut off."""
        from flwr.proto.control_pb2 import UnregisterNodeRequest

        self._call("UnregisterNode", UnregisterNodeRequest(node_id=int(node_id)))

    def list_nodes(self) -> dict[int, NodeState]:
        """Every node the SuperLink knows, by node id."""
        from flwr.proto.control_pb2 import ListNodesRequest

        response = self._call("ListNodes", ListNodesRequest())
        return {
            int(n.node_id): NodeState(
                node_id=int(n.node_id),
                status=n.status,
                online_until=n.online_until if n.HasField("online_until") else None,
                last_activated_at=n.last_activated_at if n.HasField("last_activated_at") else None,
                name=n.name,
            )
            for n in response.nodes_info
        }

    def list_runs(self) -> dict[int, RunState]:
        """Every run the SuperLink knows, by run id."""
        from flwr.proto.control_pb2 import ListRunsRequest

        response = self._call("ListRuns", ListRunsRequest())
        return {
            int(run_id): RunState(
                run_id=int(run_id),
                status=r.status.status,
                sub_status=r.status.sub_status,
                details=r.status.details,
                fab_id=r.fab_id,
                fab_version=r.fab_version,
                fab_hash=r.fab_hash,
                running_at=r.running_at,
                finished_at=r.finished_at,
                bytes_sent=int(r.bytes_sent),
                bytes_recv=int(r.bytes_recv),
            )  # fmt: skip
            for run_id, r in response.run_dict.items()
        }

    def stop_run(self, run_id: int) -> None:
        """Stop a run (Flower marks it finished:stopped)."""
        from flwr.proto.control_pb2 import StopRunRequest

        self._call("StopRun", StopRunRequest(run_id=int(run_id)))

    def is_up(self) -> bool:
        """Whether the SuperLink answers a Control API call."""
        try:
            self.list_nodes()
        except SuperLinkError:
            return False
        return True

"""The Control API calls the central makes to its loopback SuperLink (nodes, runs), over TLS with its CA."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


class SuperLinkError(Exception):
    """The SuperLink refused or could not be reached."""


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

"""`fedxray-central nodes list|revoke`: enrolled workstations (Flower SuperNodes)."""

from __future__ import annotations

import argparse

from central.cli.admin_client import AdminClient
from central.cli.common import add_home, add_json, emit, table
from central.home import resolve_home


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("nodes", help="enrolled workstations", description="Enrolled workstations.")
    sub = p.add_subparsers(dest="nodes_command", required=True, metavar="{list,revoke}")
    listing = sub.add_parser("list", help="site, node id, enrolled at, last seen, online")
    revoke = sub.add_parser("revoke", help="cut a workstation off: unregister it in Flower, revoke its credential")
    revoke.add_argument("node_id", type=int, help="node id (from `nodes list`)")
    for q in (listing, revoke):
        add_home(q)
        add_json(q)
    listing.set_defaults(func=list_nodes)
    revoke.set_defaults(func=revoke_node)


def _online(node: dict) -> str:
    return {True: "yes", False: "no", None: "unknown (SuperLink down)"}[node["online"]]


def list_nodes(args: argparse.Namespace) -> int:
    with AdminClient(resolve_home(args.home)) as client:
        data = client.request("GET", "/api/v1/admin/nodes")
    rows = [[n["site"], n["node_id"], n["status"], n["enrolled_at"][:19], (n["last_seen_at"] or "never")[:19],
             _online(n), n["hostname"] or ""] for n in data]  # fmt: skip
    header = ["SITE", "NODE ID", "STATUS", "ENROLLED AT", "LAST SEEN", "ONLINE", "HOSTNAME"]
    emit(args, data, table(rows, header) if rows else "No workstation has enrolled yet.")
    return 0


def revoke_node(args: argparse.Namespace) -> int:
    with AdminClient(resolve_home(args.home)) as client:
        data = client.request("POST", f"/api/v1/admin/nodes/{args.node_id}/revoke")
    emit(args, data, f"Node {data['node_id']} ({data['site']}) revoked: unregistered in Flower, credential "
                     "revoked. A running SuperNode is cut off at its next heartbeat.")  # fmt: skip
    return 0

"""`fedxray-central token create|list|revoke`: one-time enrolment tokens."""

from __future__ import annotations

import argparse

from central.cli.admin_client import AdminClient
from central.cli.common import add_home, add_json, emit, parse_duration, table
from central.home import resolve_home
from central.security import format_fingerprint


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("token", help="enrolment tokens", description="Enrolment tokens for workstations.")
    sub = p.add_subparsers(dest="token_command", required=True, metavar="{create,list,revoke}")
    create = sub.add_parser("create", help="create a one-time enrolment token for a site")
    create.add_argument("--site", required=True, help="the hospital/site the workstation belongs to")
    create.add_argument("--expires", type=parse_duration, default=parse_duration("24h"),
                        help="how long the token stays valid (e.g. 30m, 24h, 7d; default 24h)")
    create.add_argument("--note", help="free text kept with the token (who it is for)")
    listing = sub.add_parser("list", help="list tokens and their state")
    revoke = sub.add_parser("revoke", help="revoke an unused token")
    revoke.add_argument("id", type=int, help="token id (from `token list`)")
    for q in (create, listing, revoke):
        add_home(q)
        add_json(q)
    create.set_defaults(func=create_token)
    listing.set_defaults(func=list_tokens)
    revoke.set_defaults(func=revoke_token)


def create_token(args: argparse.Namespace) -> int:
    home = resolve_home(args.home)
    with AdminClient(home) as client:
        body = {"site": args.site, "expires_in_seconds": args.expires, "note": args.note}
        data = client.request("POST", "/api/v1/admin/tokens", json=body)
    public = (home.read_settings().get("sans") or ["<this machine's name>"])
    host = next((s for s in public if s not in ("localhost", "127.0.0.1", "::1")), public[0])
    port = (home.read_runtime() or {}).get("port", 8443)
    fp = format_fingerprint(data["ca_fingerprint"])
    emit(args, data, (
        f"Enrolment token for site {data['site']!r} (single use, valid until {data['expires_at']}):\n\n"
        f"  {data['token']}\n\n"
        f"CA fingerprint (SHA-256):\n  {fp}\n\n"
        "On the workstation, as the user who will run FedXray:\n"
        f"  fedxray enroll --central https://{host}:{port} --token {data['token']} --ca-fingerprint {fp}"
    ))  # fmt: skip
    return 0


def list_tokens(args: argparse.Namespace) -> int:
    with AdminClient(resolve_home(args.home)) as client:
        data = client.request("GET", "/api/v1/admin/tokens")
    rows = [[t["id"], t["site"], t["state"], t["created_at"][:19], t["expires_at"][:19], (t["used_at"] or "")[:19]]
            for t in data]  # fmt: skip
    emit(args, data, table(rows, ["ID", "SITE", "STATE", "CREATED", "EXPIRES", "USED"]) if rows else "No tokens.")
    return 0


def revoke_token(args: argparse.Namespace) -> int:
    with AdminClient(resolve_home(args.home)) as client:
        data = client.request("POST", f"/api/v1/admin/tokens/{args.id}/revoke")
    emit(args, data, f"Token {data['id']} for site {data['site']!r} revoked.")
    return 0

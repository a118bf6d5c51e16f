"""`fedxray-central admin create|list`: administrator accounts that sign in to the dashboard."""

from __future__ import annotations

import argparse
import getpass
import sys

from central.cli.admin_client import AdminClient, AdminError
from central.cli.common import add_home, add_json, emit, table
from central.home import resolve_home


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("admin", help="administrator accounts for the dashboard",
                              description="Administrator accounts that sign in to the dashboard (https://HOST:PORT/).")
    sub = p.add_subparsers(dest="admin_command", required=True, metavar="{create,list}")
    create = sub.add_parser("create", help="create an administrator account (asks for its password)")
    create.add_argument("name", help="account name: lowercase letters, digits, '.', '_' or '-' (e.g. jsmith)")
    create.add_argument("--password-stdin", action="store_true",
                        help="read the password from standard input (one line) instead of asking twice")
    listing = sub.add_parser("list", help="accounts, when created, last sign-in")
    for q in (create, listing):
        add_home(q)
        add_json(q)
    create.set_defaults(func=create_account)
    listing.set_defaults(func=list_accounts)


def _password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    if not sys.stdin.isatty():
        raise AdminError("No terminal to ask for the password: pass it on standard input with --password-stdin.")
    first = getpass.getpass(f"Password for {args.name} (at least 12 characters): ")
    if getpass.getpass("Same password again: ") != first:
        raise AdminError("The two passwords differ; nothing was created.")
    return first


def create_account(args: argparse.Namespace) -> int:
    home = resolve_home(args.home)
    password = _password(args)
    with AdminClient(home) as client:
        data = client.request("POST", "/api/v1/admin/accounts", json={"name": args.name, "password": password})
        url = client.url
    emit(args, data, f"Administrator account {data['name']!r} created. Sign in to the dashboard at {url}/ "
                     "(the browser must trust the central's CA, pki/ca.crt).")  # fmt: skip
    return 0


def list_accounts(args: argparse.Namespace) -> int:
    with AdminClient(resolve_home(args.home)) as client:
        data = client.request("GET", "/api/v1/admin/accounts")
    rows = [[a["name"], str(a["created_at"])[:19], a["created_by"], str(a["last_sign_in_at"] or "never")[:19],
             "disabled" if a["disabled_at"] else "active"] for a in data]  # fmt: skip
    emit(args, data, table(rows, ["NAME", "CREATED", "BY", "LAST SIGN-IN", "STATE"]) if rows else
         "No administrator accounts yet. Create one with: fedxray-central admin create NAME")  # fmt: skip
    return 0

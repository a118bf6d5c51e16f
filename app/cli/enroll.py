"""`fedxray enroll` and `fedxray leave`: join a FedXray central, show the enrolment, leave it."""

from __future__ import annotations

import argparse
import json
import sys

from app.core.errors import AppError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "enroll",
        help="enrol this workstation with a FedXray central (once, with a token from IT)",
        description="Enrol this workstation with the FedXray central service using the one-time token IT "
        "gave you. The private key and credential go to the OS keyring; nothing secret is written to disk.",
    )
    p.add_argument("--central", help="the central's address, e.g. https://central.hospital.org:8443")
    p.add_argument("--token", help="the one-time enrolment token from IT (fxe1.…)")
    p.add_argument("--ca-fingerprint", help="the CA fingerprint (SHA-256) IT gave you with the token")
    p.add_argument("--name", help="a label for this workstation at the central (default: host name)")
    p.add_argument("--status", action="store_true", help="show this workstation's enrolment and exit")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.set_defaults(func=run_enroll, _parser=p)

    q = subparsers.add_parser(
        "leave",
        help="leave the federation: tell the central and remove this workstation's secrets",
        description="Tell the central this workstation leaves (it is unregistered and its credential revoked), "
        "then remove the private key and credential from the keyring and the enrolment files.",
    )
    q.add_argument("--force", action="store_true",
                   help="remove the secrets even when the central cannot be reached")  # fmt: skip
    q.add_argument("--json", action="store_true", help="print machine-readable JSON")
    q.set_defaults(func=run_leave)


def _fail(message: str, args: argparse.Namespace, code: int = 1) -> int:
    if getattr(args, "json", False):
        json.dump({"ok": False, "error": message}, sys.stdout)
        sys.stdout.write("\n")
    print(f"fedxray: {message}", file=sys.stderr)
    return code


def run_enroll(args: argparse.Namespace) -> int:
    from app.core import enrollment

    try:
        if args.status:
            return _print_status(enrollment.status(), args)
        if not args.central or not args.token:
            args._parser.error("--central and --token are required to enrol (or use --status)")
        result = enrollment.enroll(
            central_url=args.central, token=args.token, ca_fingerprint=args.ca_fingerprint, hostname=args.name
        )
    except AppError as exc:
        return _fail(str(exc), args)
    if args.json:
        print(json.dumps({"ok": True, "node_id": result.node_id, "site": result.site,
                          "central_url": result.central_url, "superlink_address": result.superlink_address}))  # fmt: skip
    else:
        print(f"Enrolled: node {result.node_id} of site {result.site!r} at {result.central_url}.")
        print(f"Fleet address: {result.superlink_address}; CA and signing key in {result.folder}.")
        print("The private key and credential are in the keyring. Take part with `fedxray federation opt-in` "
              "(background) or `fedxray federate` (in this terminal).")  # fmt: skip
    return 0


def _print_status(status, args: argparse.Namespace) -> int:
    data = status.to_dict()
    if args.json:
        print(json.dumps(data, indent=2, default=str))
        return 0 if status.enrolled else 1
    if not status.enrolled:
        print("This workstation is not enrolled. Enrol it with: fedxray enroll --central URL --token TOKEN")
        return 1
    from app.core.central_client import readable_fingerprint

    print(f"Enrolled as node {status.node_id} of site {status.site!r}")
    print(f"  central:       {status.central_url} (Fleet API at {status.superlink_address})")
    print(f"  enrolled at:   {status.enrolled_at}")
    print("  CA (SHA-256):  " + readable_fingerprint(status.ca_fingerprint).replace("\n", "\n                 "))
    secrets = {True: "secrets present", False: "SECRETS MISSING", None: "not readable"}[status.secrets_present]
    print(f"  keyring:       {status.keyring or 'unavailable'} ({secrets})")
    if status.reachable:
        online = {True: "online", False: "offline", None: "SuperLink state unknown"}[status.online]
        print(f"  central says:  {status.central_status}, {online}, last seen {status.last_contact or 'never'}")
    elif status.reachable is False:
        print("  central says:  unreachable")
    if status.clock:
        print(f"  clock:         {status.clock['message']}")
    if status.problem:
        print(f"  problem:       {status.problem}")
    return 0


def run_leave(args: argparse.Namespace) -> int:
    from app.core import agent_control

    try:
        result = agent_control.leave_federation(force=args.force)  # stops the background agent first
    except AppError as exc:
        return _fail(str(exc), args)
    if args.json:
        print(json.dumps({"ok": True, "node_id": result.node_id, "central_told": result.central_told}))
    else:
        print(f"Left the federation (node {result.node_id}). {result.message}")
        print("The private key and credential were removed from the keyring; the background agent is stopped.")
    return 0

"""`fedxray-central serve`: run the central service (HTTPS API + Fleet proxy + supervised SuperLink)."""

from __future__ import annotations

import argparse

from central import pki
from central.cli.common import add_home, parse_duration
from central.db.engine import DatabaseURLError
from central.home import HomeError, resolve_home
from central.settings import Settings, SettingsError, resolve_database_url


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "serve",
        help="run the central service",
        description="Run the central service: HTTPS API and Fleet API for workstations, Flower's SuperLink on "
        "loopback. The first start creates the CA, certificates, model-signing key and admin credential.",
    )
    add_home(p)
    p.add_argument("--host", default="0.0.0.0", help="address to listen on (default: all, 0.0.0.0)")
    p.add_argument("--port", type=int, default=8443, help="HTTPS port for workstations and admins (default: 8443)")
    p.add_argument("--superlink-port", type=int, default=9091,
                   help="loopback port of the SuperLink (never exposed; default: 9091)")
    p.add_argument("--database-url", help="postgresql://USER:PASSWORD@HOST/DB (default: SQLite file in the home; "
                   "or $FEDXRAY_CENTRAL_DATABASE_URL)")
    p.add_argument("--san", action="append", metavar="NAME_OR_IP",
                   help="name or IP workstations use to reach this machine (repeatable; default: localhost, "
                   "127.0.0.1 and the host name)")
    p.add_argument("--public-address", help="host:port workstations use for the Fleet API "
                   "(default: the address they enrolled through)")
    p.add_argument("--session-idle-timeout", type=parse_duration, default=parse_duration("30m"), metavar="DURATION",
                   help="sign administrators out of the dashboard after this long without activity (default 30m)")
    p.add_argument("--no-access-log", action="store_true", help="do not log every request")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from central.server import configure_logging, serve

    configure_logging(args.log_level)
    try:
        home = resolve_home(args.home)
        settings = Settings(
            home=home,
            database_url=resolve_database_url(home, args.database_url),
            host=args.host,
            port=args.port,
            superlink_port=args.superlink_port,
            public_address=args.public_address,
            log_level=args.log_level,
            session_idle_seconds=args.session_idle_timeout,
        )
    except (HomeError, SettingsError, DatabaseURLError) as exc:
        raise SystemExit(f"error: {exc}") from None
    sans = args.san
    if sans:
        sans = list(dict.fromkeys([*sans, "localhost", "127.0.0.1"]))
    return serve(settings, sans=sans, default_sans=pki.default_sans(), access_log=not args.no_access_log)

"""Typed settings of a running central service; unsafe values are refused, not defaulted."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass

from central.db.engine import mask_url, normalize_url, sqlite_url
from central.home import CentralHome

DATABASE_ENV = "FEDXRAY_CENTRAL_DATABASE_URL"
MiB = 1024 * 1024


class SettingsError(ValueError):
    """A setting the central refuses to run with."""


@dataclass(frozen=True)
class Settings:
    home: CentralHome
    database_url: str
    host: str = "0.0.0.0"
    port: int = 8443
    superlink_port: int = 9091
    public_address: str | None = None  # host:port workstations use; default: the Host they reached us by
    max_body_bytes: int = 1 * MiB  # FedXray API bodies
    max_fleet_body_bytes: int = 64 * MiB  # Flower messages travel in ≤ 5 MiB objects
    max_model_bytes: int = 4096 * MiB
    log_level: str = "info"
    session_idle_seconds: int = 30 * 60  # a dashboard session ends after this long without a page or action
    session_lifetime_seconds: int = 12 * 3600  # and after this long whatever happens

    def __post_init__(self) -> None:
        for name in ("port", "superlink_port"):
            value = getattr(self, name)
            if not 1 <= value <= 65535:
                raise SettingsError(f"--{name.replace('_', '-')} must be between 1 and 65535, not {value}")
        if not 10 <= self.session_idle_seconds <= self.session_lifetime_seconds:
            raise SettingsError("--session-idle-timeout must be at least 10 s and at most the session lifetime (12 h)")
        if self.port == self.superlink_port:
            raise SettingsError("--port and --superlink-port must differ")
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            if self.host != "localhost":
                raise SettingsError(
                    f"--host must be an IP address to listen on (e.g. 0.0.0.0), not {self.host!r}"
                ) from None

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def local_url(self) -> str:
        """URL an admin command on this machine uses to reach the API."""
        host = self.host
        if host in ("0.0.0.0", "::", "localhost"):
            host = "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return f"https://{host}:{self.port}"


HOME_SQLITE = "sqlite:central.db (in the home)"


def database_label(home: CentralHome, url: str) -> str:
    """How a home remembers its database (never with a password)."""
    return HOME_SQLITE if url == sqlite_url(home.database) else mask_url(url)


def resolve_database_url(home: CentralHome, given: str | None) -> str:
    """--database-url / $FEDXRAY_CENTRAL_DATABASE_URL, else the SQLite file in the home. A home that was
    started on PostgreSQL refuses to fall back silently to an empty SQLite file (and vice versa)."""
    given = given or os.environ.get(DATABASE_ENV)
    url = normalize_url(given) if given else sqlite_url(home.database)
    remembered = home.read_settings().get("database")
    if remembered and remembered != database_label(home, url):
        hint = "pass the same --database-url as before (with its password)" if remembered != HOME_SQLITE else (
            "drop --database-url to use it"
        )
        raise SettingsError(
            f"This home keeps its records in {remembered}, not {database_label(home, url)}: {hint}, "
            f"or set {DATABASE_ENV}."
        )
    return url

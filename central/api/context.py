"""Everything a request handler may need, built once per service: settings, store, SuperLink, caches."""

from __future__ import annotations

import datetime as dt
import logging
import threading
from dataclasses import dataclass, field

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from central.crud import enrollment as enrollment_crud
from central.dashboard.accounts import SignInLimiter
from central.db.engine import session_factory, transaction
from central.db.models import utcnow
from central.flower.control import NodeState, SuperLinkControl, SuperLinkError
from central.run_lifecycle import RunLifecycle
from central.settings import Settings

log = logging.getLogger("central.api")


@dataclass
class FleetState:
    """What the Fleet proxy knows: keys it must turn away, and when each key last got through."""

    blocked_keys: set[str] = field(default_factory=set)
    last_seen: dict[str, dt.datetime] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def seen(self, key_hash: str) -> None:
        with self.lock:
            self.last_seen[key_hash] = utcnow()

    def take_seen(self) -> dict[str, dt.datetime]:
        with self.lock:
            seen, self.last_seen = self.last_seen, {}
        return seen

    def peek_seen(self) -> dict[str, dt.datetime]:
        with self.lock:
            return dict(self.last_seen)


@dataclass
class SuperLinkStatus:
    """The SuperLink's state as last polled (so /health stays cheap)."""

    up: bool = False
    nodes: dict[int, NodeState] = field(default_factory=dict)
    checked_at: dt.datetime | None = None


class CentralContext:
    """Per-service state shared by the routes."""

    def __init__(self, *, settings: Settings, engine: Engine, control: SuperLinkControl | None,
                 runs: RunLifecycle | None = None) -> None:  # fmt: skip
        self.settings = settings
        self.home = settings.home
        self.engine = engine
        self.sessions: sessionmaker[Session] = session_factory(engine)
        self.control = control
        self.runs = runs  # the one owner of runs' lifecycle (starts, stops, resumes)
        self.sign_in_limiter = SignInLimiter()  # the dashboard's failed sign-ins, per account and address
        self.flower_runs: tuple | None = None  # (monotonic time, Flower's run states, problem): central.run_views
        self.fleet = FleetState()
        self.superlink = SuperLinkStatus()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.ca_pem = self.home.ca_cert.read_text(encoding="ascii")
        self.ca_fingerprint = self.home.ca_fingerprint()
        self.signing_public_pem = self.home.signing_public_key.read_text(encoding="ascii")
        self.refresh_blocked_keys()

    def refresh_blocked_keys(self) -> None:
        """Reload the keys of revoked/departed workstations from the store."""
        with self.sessions() as session:
            blocked = enrollment_crud.blocked_key_hashes(session=session)
        self.fleet.blocked_keys = blocked

    def poll_superlink(self) -> SuperLinkStatus:
        """Ask the SuperLink for its nodes now (and remember the answer)."""
        status = SuperLinkStatus(checked_at=utcnow())
        if self.control is not None:
            try:
                status.nodes = self.control.list_nodes()
                status.up = True
            except SuperLinkError as exc:
                log.warning("SuperLink check failed: %s", exc)
        self.superlink = status
        return status

    def flush_last_seen(self) -> None:
        """Write the Fleet proxy's last-seen times to the store."""
        seen = self.fleet.take_seen()
        if not seen:
            return
        try:
            with transaction(self.sessions) as session:
                enrollment_crud.record_last_seen(session=session, seen=seen)
        except Exception:  # keep them for the next try
            log.exception("could not store last-seen times")
            with self.fleet.lock:
                for key, at in seen.items():
                    self.fleet.last_seen.setdefault(key, at)

    def start_background(self, *, interval: float = 5.0) -> None:
        """Poll the SuperLink and flush last-seen times every `interval` seconds."""

        def loop() -> None:
            while not self._stop.is_set():
                self.poll_superlink()
                self.flush_last_seen()
                self._stop.wait(interval)

        thread = threading.Thread(target=loop, name="central-monitor", daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop_background(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(10)
        self.flush_last_seen()

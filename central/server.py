"""`fedxray-central serve`: set up the home, migrate the store, run the SuperLink and the HTTPS API."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sys
from pathlib import Path

import uvicorn
from sqlalchemy.exc import OperationalError

from central import pki
from central.api.app import create_app
from central.api.context import CentralContext
from central.crud import credentials as credentials_crud
from central.db.engine import make_engine, mask_url, migrate, session_factory, transaction
from central.flower.control import SuperLinkControl, SuperLinkError
from central.flower.supervisor import SuperLinkProcess
from central.home import CentralHome, HomeError, ServeLock, initialize
from central.run_lifecycle import RunLifecycle
from central.runkeeper import RunKeeper
from central.settings import Settings, database_label
from fl.processes import descendants

log = logging.getLogger("central.server")


def configure_logging(level: str = "info") -> None:
    """One log format for the central, uvicorn and SQLAlchemy (to stderr)."""
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s [%(name)s] %(message)s", stream=sys.stderr, force=True
    )
    # httpx logs every SuperLink poll and Fleet call at INFO; keep the log about what matters.
    logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLogger().level))


def prepare_home(home: CentralHome, *, sans: list[str] | None, default_sans: list[str]) -> list[str]:
    """First start: create the CA, certificates, signing key and credentials. Later starts with a
    different --san list re-issue the server certificate from the same CA (enrolled workstations keep
    trusting it)."""
    created = initialize(home, sans=sans or default_sans)
    if sans and "server certificate" not in " ".join(created):
        current = pki.certificate_sans(home.server_cert)
        if sorted(set(current)) != sorted(set(sans)):
            pki.create_server_cert(ca_key_path=home.ca_key, ca_cert_path=home.ca_cert,
                                   key_path=home.server_key, cert_path=home.server_cert, sans=sans)  # fmt: skip
            created.append(f"server certificate re-issued for {', '.join(sans)}")
    return created


def _kill_stale_superlink(home: CentralHome) -> None:
    """A SuperLink left over from a central that was killed (its pid is in the runtime file)."""
    runtime = home.read_runtime() or {}
    pid = runtime.get("superlink_pid")
    if not pid:
        return
    try:
        cmdline = Path(f"/proc/{int(pid)}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return
    if str(home.superlink_database).encode() in cmdline:
        log.warning("stopping a SuperLink left over from an earlier run (pid %s)", pid)
        for child in [int(pid), *descendants(int(pid))]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGTERM)


def serve(settings: Settings, *, sans: list[str] | None, default_sans: list[str], access_log: bool = True) -> int:
    """Run the central until SIGINT/SIGTERM; returns the process exit code."""
    home = settings.home
    os.umask(0o077)  # everything the central writes in its home is for its owner only
    home.root.mkdir(parents=True, exist_ok=True)
    signal.signal(signal.SIGTERM, _raise_stop)
    lock = ServeLock(home)
    lock.acquire()  # raises HomeError when another serve holds it
    superlink: SuperLinkProcess | None = None
    ctx: CentralContext | None = None
    keeper: RunKeeper | None = None
    try:
        for item in prepare_home(home, sans=sans, default_sans=default_sans):
            log.info("created %s", item)
        log.info("CA fingerprint (SHA-256): %s", home.ca_fingerprint())

        engine = make_engine(settings.database_url)
        log.info("database %s: applying migrations", mask_url(settings.database_url))
        migrate(engine)
        stored = home.read_settings()  # remembered once the database has proved usable
        stored.setdefault("database", database_label(home, settings.database_url))
        stored["sans"] = pki.certificate_sans(home.server_cert)
        home.write_settings(stored)
        with transaction(session_factory(engine)) as session:
            credentials_crud.ensure_credential(session=session, role="admin", name="admin",
                                               secret=home.read_credential("admin"))  # fmt: skip
            credentials_crud.ensure_credential(session=session, role="service", name="service",
                                               secret=home.read_credential("service"))  # fmt: skip

        _kill_stale_superlink(home)
        control = SuperLinkControl(address=f"127.0.0.1:{settings.superlink_port}", ca_cert=home.ca_cert)
        lifecycle = RunLifecycle(home=home, sessions=session_factory(engine), control=control)
        keeper = RunKeeper(lifecycle=lifecycle, sessions=session_factory(engine), control=control)

        def superlink_started(pid: int) -> None:
            _write_runtime(home, settings, pid)
            keeper.superlink_started(pid)  # a fresh SuperLink: runs it had are orphaned, the keeper resumes them

        superlink = SuperLinkProcess(
            home=home,
            port=settings.superlink_port,
            on_start=superlink_started,
            extra_env=serverapp_env(home, settings),
        )
        superlink.start()
        ctx = CentralContext(settings=settings, engine=engine, control=control, runs=lifecycle)
        ctx.poll_superlink()
        ctx.start_background()
        keeper.start()
        app = create_app(ctx, superlink_address=superlink.address)

        config = uvicorn.Config(
            app,
            host=settings.host,
            port=settings.port,
            ssl_certfile=str(home.server_cert),
            ssl_keyfile=str(home.server_key),
            log_config=None,
            access_log=access_log,
            timeout_graceful_shutdown=10,
            server_header=False,
            proxy_headers=False,
        )
        server = uvicorn.Server(config)
        log.info("FedXray central listening on https://%s:%d (Fleet API at /v1/fleet/, SuperLink on %s)",
                 settings.host, settings.port, superlink.address)  # fmt: skip
        with contextlib.suppress(KeyboardInterrupt, _Stop):  # uvicorn re-raises the signal it shut down for
            server.run()
        return 0 if server.started else 1
    except (KeyboardInterrupt, _Stop):
        log.info("interrupted during start-up")
        return 0
    except (SuperLinkError, HomeError) as exc:
        log.error("%s", exc)
        return 1
    except OperationalError as exc:
        log.error("Cannot use the database %s: %s", mask_url(settings.database_url), str(exc.orig).strip())
        return 1
    finally:
        if keeper is not None:
            keeper.stop()
        if ctx is not None:
            ctx.stop_background()
        if superlink is not None:
            superlink.stop()
        home.runtime_file.unlink(missing_ok=True)
        lock.release()
        log.info("central stopped")


class _Stop(Exception):
    """SIGTERM arrived: unwind through every `finally` so children are stopped and the lock released."""


def serverapp_env(home: CentralHome, settings: Settings) -> dict[str, str]:
    """What the SuperLink passes on to the ServerApps it starts: where the central's API is, the CA its
    certificate chains to, the file holding the service credential (never the credential itself: the run
    config, which every SuperNode can read, carries none of this), and where to keep the run's model folders."""
    return {
        "FEDXRAY_CENTRAL_HOME": str(home.root),
        "FEDXRAY_CENTRAL_URL": settings.local_url,
        "FEDXRAY_CENTRAL_API": settings.local_url,  # read by fl.recorder
        "FEDXRAY_CENTRAL_CA": str(home.ca_cert),
        "FEDXRAY_SERVICE_TOKEN_FILE": str(home.service_credential),
        "FEDXRAY_RECORD_DIR": str(home.root / "runs"),
    }


def _raise_stop(signum, frame) -> None:
    raise _Stop


def _write_runtime(home: CentralHome, settings: Settings, superlink_pid: int) -> None:
    """Where this service listens, for admin commands (and the SuperLink's pid, to clean up after a crash)."""
    runtime = {
        "pid": os.getpid(),
        "url": settings.local_url,
        "host": settings.host,
        "port": settings.port,
        "superlink_address": f"127.0.0.1:{settings.superlink_port}",
        "superlink_pid": superlink_pid,
    }
    pki.write_public(home.runtime_file, json.dumps(runtime, indent=2).encode("utf-8"))

"""The central's home folder: layout, first-start set-up, the serve lock and the runtime file."""

from __future__ import annotations

import errno
import fcntl
import json
import os
from dataclasses import dataclass
from pathlib import Path

from central import pki
from central.security import new_credential

HOME_ENV = "FEDXRAY_CENTRAL_HOME"


class HomeError(Exception):
    """The home folder is missing, unusable or already in use."""


@dataclass(frozen=True)
class CentralHome:
    """Every path the central keeps in its home."""

    root: Path

    @property
    def pki_dir(self) -> Path:
        return self.root / "pki"

    @property
    def ca_cert(self) -> Path:
        return self.pki_dir / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.pki_dir / "ca.key"

    @property
    def server_cert(self) -> Path:
        return self.pki_dir / "server.crt"

    @property
    def server_key(self) -> Path:
        return self.pki_dir / "server.key"

    @property
    def signing_key(self) -> Path:
        return self.pki_dir / "model-signing.key"

    @property
    def signing_public_key(self) -> Path:
        return self.pki_dir / "model-signing.pub"

    @property
    def admin_credential(self) -> Path:
        return self.root / "admin.credential"

    @property
    def service_credential(self) -> Path:
        return self.root / "service.credential"

    @property
    def database(self) -> Path:
        return self.root / "central.db"

    @property
    def superlink_dir(self) -> Path:
        return self.root / "superlink"

    @property
    def superlink_database(self) -> Path:
        return self.superlink_dir / "state.db"

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    def model_file(self, model_id: int) -> Path:
        """Where a model version's weights live: named by the store's id, never by anything a client sent."""
        return self.models_dir / f"{int(model_id):08d}.bin"

    def artefact_file(self, model_id: int) -> Path:
        """Where a model version's LiteRT artefact lives once the central made it (central.artefacts)."""
        return self.models_dir / f"{int(model_id):08d}.tflite"

    @property
    def settings_file(self) -> Path:
        return self.root / "central.json"

    @property
    def runtime_file(self) -> Path:
        return self.root / "runtime.json"

    @property
    def lock_file(self) -> Path:
        return self.root / "serve.lock"

    def ca_fingerprint(self) -> str:
        """SHA-256 fingerprint of the CA certificate (hex)."""
        return pki.fingerprint(self.ca_cert.read_bytes())

    def read_credential(self, which: str) -> str:
        """The admin or service credential from its 0600 file."""
        path = self.admin_credential if which == "admin" else self.service_credential
        try:
            return path.read_text(encoding="utf-8").strip()
        except FileNotFoundError as exc:
            raise HomeError(f"{path} does not exist: run `fedxray-central serve --home {self.root}` once") from exc
        except PermissionError as exc:
            raise HomeError(f"{path} is not readable by this user: run the command as the central's owner") from exc

    def read_settings(self) -> dict:
        """Settings remembered from the first start (SANs, database kind)."""
        if not self.settings_file.exists():
            return {}
        return json.loads(self.settings_file.read_text(encoding="utf-8"))

    def write_settings(self, settings: dict) -> None:
        pki.write_public(self.settings_file, json.dumps(settings, indent=2).encode("utf-8"))

    def read_runtime(self) -> dict | None:
        """Where the running service listens (written by `serve`), or None."""
        try:
            return json.loads(self.runtime_file.read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError):
            return None


def resolve_home(arg: str | os.PathLike | None) -> CentralHome:
    """The home from --home or $FEDXRAY_CENTRAL_HOME."""
    value = arg or os.environ.get(HOME_ENV)
    if not value:
        raise HomeError(f"No central home given: pass --home DIR or set {HOME_ENV}.")
    return CentralHome(Path(value).expanduser().resolve())


def initialize(home: CentralHome, *, sans: list[str]) -> list[str]:
    """Create whatever the home still lacks (CA, server certificate, signing key, credentials);
    returns a description of each item created."""
    created: list[str] = []
    home.root.mkdir(parents=True, exist_ok=True)
    os.chmod(home.root, 0o700)
    for folder in (home.pki_dir, home.superlink_dir, home.logs_dir, home.models_dir):
        folder.mkdir(mode=0o700, exist_ok=True)
    if not home.ca_cert.exists() or not home.ca_key.exists():
        pki.create_ca(key_path=home.ca_key, cert_path=home.ca_cert)
        created.append(f"certificate authority {home.ca_cert}")
    if not home.server_cert.exists() or not home.server_key.exists():
        pki.create_server_cert(
            ca_key_path=home.ca_key,
            ca_cert_path=home.ca_cert,
            key_path=home.server_key,
            cert_path=home.server_cert,
            sans=sans,
        )
        created.append(f"server certificate {home.server_cert} for {', '.join(sans)}")
    if not home.signing_key.exists():
        pki.create_signing_key(key_path=home.signing_key, public_path=home.signing_public_key)
        created.append(f"model-signing key {home.signing_key}")
    for which, path in (("admin", home.admin_credential), ("service", home.service_credential)):
        if not path.exists():
            pki.write_private(path, (new_credential(which) + "\n").encode("ascii"))
            created.append(f"{which} credential {path} (readable by its owner only)")
    return created


class ServeLock:
    """An exclusive lock on the home held for the life of `serve` (released by the OS if it dies)."""

    def __init__(self, home: CentralHome) -> None:
        self.home = home
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.home.lock_file, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise HomeError(
                    f"Another `fedxray-central serve` (pid {holder}) is already using {self.home.root}; "
                    "stop it first (two services on one home would corrupt it)."
                ) from exc
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> ServeLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

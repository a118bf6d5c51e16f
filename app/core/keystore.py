"""The workstation's secrets in the OS keyring — and a refusal when the only keyring is not a secure one."""

from __future__ import annotations

import secrets

import keyring
import keyring.errors
from keyring.backend import KeyringBackend

from app.core.errors import AppError

SERVICE = "fedxray"

# keyrings.alt's file backends only obscure (Plaintext: base64) or prompt for a password at every use
# (Encrypted); fail/null store nothing. None of them may hold a hospital node's private key.
_INSECURE_MODULES = ("keyrings.alt", "keyring.backends.fail", "keyring.backends.null")
_INSECURE_NAMES = {"PlaintextKeyring", "EncryptedKeyring", "UncryptedFileKeyring", "Keyring"}

NO_KEYRING_HELP = (
    "FedXray keeps this workstation's private key and credential only in the operating system's keyring "
    "and never in a plain file. {problem} "
    "On Linux, run a Secret Service keyring (GNOME Keyring or KWallet) in your desktop session and unlock "
    "it, then try again; on a server without a desktop, ask IT to start one "
    "(e.g. `gnome-keyring-daemon --unlock --components=secrets` inside a D-Bus session). "
    "Nothing was changed."
)


class KeyringUnavailableError(AppError):
    """No secure keyring can hold the workstation's secrets."""


def _describe(backend: KeyringBackend) -> str:
    return f"{type(backend).__module__}.{type(backend).__name__}"


def is_insecure(backend: KeyringBackend) -> bool:
    """True for backends that would not keep a secret safe (file fallbacks, fail, null)."""
    module = type(backend).__module__
    if module.startswith(_INSECURE_MODULES):
        return True
    return module.startswith("keyrings.") and type(backend).__name__ in _INSECURE_NAMES


def secure_backend() -> KeyringBackend:
    """The keyring backend secrets would go to; raises KeyringUnavailableError when it is not secure.

    A chained keyring writes to its first backend that accepts: only its first (highest priority) backend
    is used, so a secret can never fall through to a file fallback.
    """
    current = keyring.get_keyring()
    candidates = list(getattr(current, "backends", None) or [current])
    if type(current).__name__ == "ChainerBackend" and not getattr(current, "backends", None):
        candidates = []
    if not candidates:
        raise KeyringUnavailableError(NO_KEYRING_HELP.format(problem="No keyring is available on this computer."))
    first = candidates[0]
    if is_insecure(first):
        problem = (
            f"The only keyring available here is {_describe(first)}, which does not protect secrets."
            if "fail" not in _describe(first)
            else "No keyring is available on this computer."
        )
        raise KeyringUnavailableError(NO_KEYRING_HELP.format(problem=problem))
    return first


class SecretStore:
    """Named secrets of this workstation in the secure keyring (service `fedxray`)."""

    def __init__(self, backend: KeyringBackend | None = None) -> None:
        self.backend = backend or secure_backend()

    @property
    def name(self) -> str:
        return _describe(self.backend)

    def check(self) -> None:
        """Store, read back and delete a throw-away secret (a locked keyring fails here, not later)."""
        probe_name, value = f"probe-{secrets.token_hex(4)}", secrets.token_hex(16)
        try:
            self.backend.set_password(SERVICE, probe_name, value)
            ok = self.backend.get_password(SERVICE, probe_name) == value
            self.backend.delete_password(SERVICE, probe_name)
        except (keyring.errors.KeyringError, OSError, RuntimeError) as exc:
            problem = f"The keyring ({self.name}) refused to store a secret: {exc or type(exc).__name__}."
            raise KeyringUnavailableError(NO_KEYRING_HELP.format(problem=problem)) from exc
        if not ok:
            raise KeyringUnavailableError(
                NO_KEYRING_HELP.format(problem=f"The keyring ({self.name}) did not return what was stored.")
            )

    def set(self, name: str, value: str) -> None:
        try:
            self.backend.set_password(SERVICE, name, value)
        except (keyring.errors.KeyringError, OSError, RuntimeError) as exc:
            raise KeyringUnavailableError(
                NO_KEYRING_HELP.format(problem=f"The keyring ({self.name}) refused to store a secret: {exc}.")
            ) from exc

    def get(self, name: str) -> str | None:
        try:
            return self.backend.get_password(SERVICE, name)
        except (keyring.errors.KeyringError, OSError, RuntimeError) as exc:
            raise KeyringUnavailableError(
                NO_KEYRING_HELP.format(problem=f"The keyring ({self.name}) could not be read: {exc}.")
            ) from exc

    def delete(self, name: str) -> bool:
        """Remove a secret; False when it was not there."""
        try:
            self.backend.delete_password(SERVICE, name)
        except keyring.errors.PasswordDeleteError:
            return False
        return True

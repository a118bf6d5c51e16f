"""Administrator accounts and dashboard sessions: Argon2id password hashes, sign-in with a rate limit, sessions
that end when idle, a CSRF token per session. No web framework here (central.dashboard.web uses it)."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from central.crud import audit
from central.db.models import AdminAccount, AdminSession, utcnow

NAME_PATTERN = r"^[a-z][a-z0-9._-]{1,63}$"
MIN_PASSWORD = 12
MAX_PASSWORD = 1024
_NAME = re.compile(NAME_PATTERN)
_HASHER = PasswordHasher()  # Argon2id with the library's current recommended parameters (RFC 9106 low-memory)
# Compared against when the account does not exist, so that a wrong name takes as long as a wrong password.
_DUMMY_HASH = _HASHER.hash(secrets.token_urlsafe(16))


class AccountError(ValueError):
    """An account could not be created; the message says why."""


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def check_new_account(name: str, password: str) -> None:
    """Refuse a name or password the central would not accept, saying why."""
    if not _NAME.match(name or ""):
        raise AccountError("An account name is 2-64 characters: lowercase letters, digits, '.', '_' or '-', "
                           "starting with a letter (e.g. 'jsmith').")  # fmt: skip
    if len(password or "") < MIN_PASSWORD:
        raise AccountError(f"The password must have at least {MIN_PASSWORD} characters.")
    if len(password) > MAX_PASSWORD:
        raise AccountError(f"The password must have at most {MAX_PASSWORD} characters.")
    if password.strip().lower() == name.lower():
        raise AccountError("The password must not be the account name.")


def create_account(*, session: Session, name: str, password: str, created_by: str) -> AdminAccount:
    """Create an administrator account (its password stored as an Argon2id hash)."""
    check_new_account(name, password)
    if session.scalar(select(AdminAccount).where(AdminAccount.name == name)) is not None:
        raise AccountError(f"An administrator account called {name!r} already exists.")
    row = AdminAccount(name=name, password_hash=_HASHER.hash(password), created_by=created_by)
    session.add(row)
    session.flush()
    audit.record(session=session, actor=created_by, action="account.create", target=f"account:{name}")
    return row


def list_accounts(*, session: Session) -> list[AdminAccount]:
    return list(session.scalars(select(AdminAccount).order_by(AdminAccount.name)))


def authenticate(*, session: Session, name: str, password: str) -> AdminAccount | None:
    """The account if `password` is its password (and it is not disabled); None otherwise, in similar time."""
    row = session.scalar(select(AdminAccount).where(AdminAccount.name == name))
    try:
        _HASHER.verify(row.password_hash if row is not None else _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return None
    if row is None or row.disabled_at is not None:
        return None
    if _HASHER.check_needs_rehash(row.password_hash):
        row.password_hash = _HASHER.hash(password)
    return row


# ---------------------------------------------------------------- sessions
@dataclass(frozen=True)
class SignedIn:
    """A live dashboard session: the account's name and the CSRF token its forms must carry."""

    session_id: int
    account: str
    csrf_token: str


def open_session(*, session: Session, account: AdminAccount) -> tuple[str, SignedIn]:
    """Start a session for `account`; returns the cookie value (shown once, stored hashed) and the session."""
    token = secrets.token_urlsafe(32)
    row = AdminSession(token_hash=_digest(token), account_id=account.id, csrf_token=secrets.token_urlsafe(32))
    session.add(row)
    account.last_sign_in_at = utcnow()
    session.flush()
    return token, SignedIn(session_id=row.id, account=account.name, csrf_token=row.csrf_token)


def resume_session(*, session: Session, token: str, idle: dt.timedelta, lifetime: dt.timedelta,
                   touch: bool = True) -> SignedIn | None:  # fmt: skip
    """The session this cookie opens, or None (unknown, signed out, idle for longer than `idle`, older than
    `lifetime`, or its account disabled). `touch` records activity (automatic refreshes do not)."""
    if not token or len(token) > 200 or not token.isascii():
        return None
    row = session.scalar(select(AdminSession).where(AdminSession.token_hash == _digest(token)))
    if row is None or row.ended_at is not None:
        return None
    now = utcnow()
    if now - row.last_seen_at > idle or now - row.created_at > lifetime or row.account.disabled_at is not None:
        row.ended_at = now
        audit.record(session=session, actor=f"admin:{row.account.name}", action="session.expire",
                     target=f"session:{row.id}")  # fmt: skip
        return None
    if touch and now - row.last_seen_at > min(idle / 4, dt.timedelta(seconds=15)):
        row.last_seen_at = now
    return SignedIn(session_id=row.id, account=row.account.name, csrf_token=row.csrf_token)


def end_session(*, session: Session, session_id: int) -> None:
    session.execute(update(AdminSession).where(AdminSession.id == session_id, AdminSession.ended_at.is_(None))
                    .values(ended_at=utcnow()))  # fmt: skip


def same_token(a: str | None, b: str | None) -> bool:
    """Constant-time comparison of two tokens (False when either is missing)."""
    return bool(a) and bool(b) and hmac.compare_digest(str(a).encode(), str(b).encode())


# ---------------------------------------------------------------- sign-in attempts
class SignInLimiter:
    """Failed sign-ins are limited per account name and per client address within a sliding window; once over
    the limit, further attempts (even with the right password) are refused until the window has passed."""

    def __init__(self, *, per_account: int = 5, per_address: int = 20, window: float = 600.0) -> None:
        self.per_account, self.per_address, self.window = per_account, per_address, window
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float]:
        q = self._failures.setdefault(key, deque())
        while q and now - q[0] > self.window:
            q.popleft()
        return q

    def retry_after(self, *, name: str, address: str) -> int:
        """Seconds until another attempt is allowed for this name from this address (0: allowed now)."""
        now = time.monotonic()
        with self._lock:
            waits = []
            for key, limit in ((f"name:{name.lower()}", self.per_account), (f"addr:{address}", self.per_address)):
                q = self._recent(key, now)
                if len(q) >= limit:
                    waits.append(int(self.window - (now - q[0])) + 1)
            return max(waits, default=0)

    def failed(self, *, name: str, address: str) -> None:
        now = time.monotonic()
        with self._lock:
            for key in (f"name:{name.lower()}", f"addr:{address}"):
                self._recent(key, now).append(now)

"""Fixtures of the central tests: a real Secret Service and a real PostgreSQL server (tests/support)."""

from tests.support.keyring_session import secret_service  # noqa: F401
from tests.support.postgres import postgres_server_url, postgres_url  # noqa: F401

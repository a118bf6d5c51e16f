"""Tests of the built PyInstaller bundle (dist/fedxray; marker `bundle`), skipped when none is built."""

from __future__ import annotations

from tests.support.keyring_session import secret_service  # noqa: F401 - a real Secret Service, for the keyring test

"""Admin client: how `fedxray-central` commands talk to the running service (HTTPS, admin credential)."""

from __future__ import annotations

import ssl
from typing import Any

import httpx

from central.home import CentralHome, HomeError


class AdminError(Exception):
    """An admin command failed; the message says what to do."""


class AdminClient:
    """Calls the central API of the service running on `home`, as admin."""

    def __init__(self, home: CentralHome, *, timeout: float = 60.0) -> None:
        runtime = home.read_runtime()
        if runtime is None:
            raise AdminError(
                f"The central service is not running on {home.root}. "
                f"Start it with: fedxray-central serve --home {home.root}"
            )
        try:
            credential = home.read_credential("admin")
        except HomeError as exc:
            raise AdminError(str(exc)) from exc
        self.url = runtime["url"]
        self.home = home
        self._client = httpx.Client(
            base_url=self.url,
            verify=ssl.create_default_context(cafile=str(home.ca_cert)),
            headers={"Authorization": f"Bearer {credential}"},
            timeout=timeout,
        )

    def request(self, method: str, path: str, **kwargs) -> Any:
        """Send a request; return the decoded JSON (or raise AdminError with the API's `detail`)."""
        try:
            response = self._client.request(method, path, **kwargs)
        except httpx.ConnectError as exc:
            raise AdminError(
                f"No answer from the central service at {self.url}: is it running? "
                f"Start it with: fedxray-central serve --home {self.home.root}"
            ) from exc
        except httpx.HTTPError as exc:
            raise AdminError(f"The central service at {self.url} did not answer properly: {exc}") from exc
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail")
            except ValueError:
                detail = response.text[:200]
            raise AdminError(f"The central refused ({response.status_code}): {detail}")
        if response.headers.get("content-type", "").startswith("application/json"):
            return response.json()
        return response.text

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> AdminClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

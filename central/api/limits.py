"""Request body size limits, enforced before any handler reads the body (pure ASGI middleware)."""

from __future__ import annotations

import json
import re

from starlette.exceptions import HTTPException

_MODEL_FILE = re.compile(r"^/api/v1/models/[^/]+/file$")


class BodyTooLarge(HTTPException):
    """Raised inside `receive` when a streamed body passes its limit (handlers turn it into a 413)."""

    def __init__(self, limit: int) -> None:
        super().__init__(status_code=413, detail=f"Request body too large (the limit here is {limit} bytes).")


def limit_for(path: str, method: str, *, default: int, fleet: int, model: int) -> int:
    """The body limit of a request: Fleet messages and model uploads are larger than API bodies."""
    if path.startswith("/v1/fleet/"):
        return fleet
    if method == "PUT" and _MODEL_FILE.match(path):
        return model
    return default


class BodyLimitMiddleware:
    """413 for bodies over the limit, whether announced by Content-Length or streamed."""

    def __init__(self, app, *, default: int, fleet: int, model: int) -> None:
        self.app = app
        self.limits = {"default": default, "fleet": fleet, "model": model}

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = limit_for(scope["path"], scope["method"], **self.limits)
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    await _reply(send, 400, "Content-Length is not a number.")
                    return
                if length > limit:
                    await _reply(send, 413, f"Request body too large ({length} bytes; the limit here is {limit}).")
                    return
        received = 0
        response_started = False

        async def limited_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def tracking_send(message):
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge as exc:
            if not response_started:
                await _reply(send, 413, exc.detail)


async def _reply(send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode("utf-8")
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})

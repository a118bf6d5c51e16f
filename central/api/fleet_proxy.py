"""The only way into the SuperLink from the network: `/v1/fleet/<rpc>` forwarded to the loopback SuperLink.

Flower 1.41's Fleet API is protobuf over plain HTTP/1.1 POSTs (flwr/supernode/fleet_http_client.py), so an
HTTP proxy inside the central is enough. Only the Fleet routes Flower defines are forwarded; the Control API
(`/v1/control/*`), the Runtime API and everything else on the SuperLink's port stay unreachable.
"""

from __future__ import annotations

import binascii
import logging
import ssl
from base64 import b64decode

import httpx
from fastapi import APIRouter, HTTPException, Request, Response

from central.api.deps import ContextDep
from central.security import public_key_sha256

log = logging.getLogger("central.fleet")

FLEET_RPCS = frozenset(
    {
        "register-node", "activate-node", "deactivate-node", "unregister-node", "send-node-heartbeat",
        "pull-messages", "push-messages", "get-run", "get-fab", "push-object", "pull-object",
        "confirm-message-received",
    }
)  # fmt: skip
ACTIVATION_RPCS = frozenset({"register-node", "activate-node"})
HOP_BY_HOP = frozenset(
    {
        "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer", "trailers",
        "transfer-encoding", "upgrade", "host", "content-length", "content-encoding", "forwarded",
        "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host",
    }
)  # fmt: skip
PUBLIC_KEY_HEADER = "flwr-public-key"  # flwr.supercore.constant.FLEET_HTTP_PUBLIC_KEY_HEADER

router = APIRouter(include_in_schema=False)


def key_hash_of(request: Request) -> str | None:
    """SHA-256 of the public key a SuperNode presents (None when absent or malformed)."""
    header = request.headers.get(PUBLIC_KEY_HEADER)
    if not header:
        return None
    try:
        return public_key_sha256(b64decode(header, validate=True))
    except (binascii.Error, ValueError, TypeError):
        return None


@router.post("/v1/fleet/{rpc}")
async def forward(rpc: str, request: Request, ctx: ContextDep) -> Response:
    """Forward one Fleet call to the SuperLink and its answer back, untouched."""
    if rpc not in FLEET_RPCS:
        raise HTTPException(404, detail="Not Found")
    key_hash = key_hash_of(request)
    if key_hash is not None and key_hash in ctx.fleet.blocked_keys and rpc not in ACTIVATION_RPCS:
        # A revoked or departed node is cut off here at once, whatever the SuperLink's state. Its activation
        # attempts still reach the SuperLink, which no longer knows the key and says so in Flower's own words.
        raise HTTPException(401, detail="Invalid SuperNode authentication")
    body = await request.body()
    headers = [(k, v) for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP]
    if request.client is not None:
        headers.append(("x-forwarded-for", request.client.host))
    client: httpx.AsyncClient = request.app.state.fleet_client
    try:
        upstream = await client.post(f"/v1/fleet/{rpc}", content=body, headers=headers)
    except httpx.TimeoutException as exc:
        log.warning("Fleet %s: SuperLink timed out", rpc)
        raise HTTPException(504, detail="The SuperLink did not answer in time.") from exc
    except httpx.HTTPError as exc:
        log.warning("Fleet %s: SuperLink unreachable (%s)", rpc, type(exc).__name__)
        raise HTTPException(503, detail="The SuperLink is not available; try again shortly.") from exc
    if upstream.status_code == 200 and key_hash is not None:
        ctx.fleet.seen(key_hash)
    request.app.state.metrics.fleet_requests.labels(rpc=rpc, status=str(upstream.status_code)).inc()
    out_headers = {k: v for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP}
    return Response(content=upstream.content, status_code=upstream.status_code, headers=out_headers)


def make_fleet_client(*, superlink_address: str, ca_cert: str) -> httpx.AsyncClient:
    """HTTP client to the loopback SuperLink (TLS with the central's own CA; no redirects)."""
    return httpx.AsyncClient(
        base_url=f"https://{superlink_address}",
        verify=ssl.create_default_context(cafile=ca_cert),
        timeout=httpx.Timeout(120.0, connect=5.0),
        follow_redirects=False,
        limits=httpx.Limits(max_connections=64, max_keepalive_connections=16),
    )

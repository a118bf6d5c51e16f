"""`/health` (no credential) and `/metrics` (Prometheus text, admin credential)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from central import __version__
from central.api.deps import AdminDep, ContextDep
from central.schemas import HealthPublic

router = APIRouter(tags=["health"])


@router.get("/health", response_model=HealthPublic)
def health(ctx: ContextDep) -> Response:
    """Service status: the database answers and whether the SuperLink is up (503 when the database is down)."""
    try:
        with ctx.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        database = "ok"
    except SQLAlchemyError:
        database = "unreachable"
    superlink = "up" if ctx.superlink.up else "down"
    status = "ok" if database == "ok" and superlink == "up" else "degraded"
    body = HealthPublic(status=status, database=database, superlink=superlink, version=__version__)
    return JSONResponse(body.model_dump(), status_code=200 if database == "ok" else 503)


@router.get("/metrics", response_class=Response)
def metrics(principal: AdminDep, request: Request) -> Response:
    """Prometheus metrics (scrape with the admin credential as bearer token)."""
    return Response(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)

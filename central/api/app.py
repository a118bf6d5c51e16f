"""The FastAPI application of the central: routes, limits, error handling, the Fleet proxy."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline
from starlette.exceptions import HTTPException as StarletteHTTPException

from central import __version__
from central.api import fleet_proxy
from central.api.context import CentralContext
from central.api.limits import BodyLimitMiddleware
from central.api.metrics import MetricsMiddleware, ServiceMetrics
from central.api.routes import admin, admin_runs, enrollment, health, models, runs
from central.dashboard import app as dashboard

log = logging.getLogger("central.api")


def create_app(ctx: CentralContext, *, superlink_address: str | None) -> FastAPI:
    """Build the API around a service context; `superlink_address` enables the Fleet proxy."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if superlink_address is not None:
            app.state.fleet_client = fleet_proxy.make_fleet_client(
                superlink_address=superlink_address, ca_cert=str(ctx.home.ca_cert)
            )
        try:
            yield
        finally:
            if superlink_address is not None:
                await app.state.fleet_client.aclose()

    app = FastAPIOffline(  # /docs and /redoc with their scripts served from here: the central may be offline
        title="FedXray central",
        version=__version__,
        description=(
            "Enrolment, workstation identity, runs, metrics and model versions of a FedXray federation. "
            "Every route except /health and enrolment needs `Authorization: Bearer <credential>`."
        ),
        lifespan=lifespan,
    )
    app.state.central = ctx
    app.state.metrics = ServiceMetrics(ctx)
    for module in (health, enrollment, admin, admin_runs, runs, models):
        app.include_router(module.router)
    if superlink_address is not None:
        app.include_router(fleet_proxy.router)
    dashboard.mount(app)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        # Say what is wrong without echoing what was sent (it may hold a token).
        errors = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", "invalid"), "type": e.get("type", "invalid")}
            for e in exc.errors()
        ]
        return JSONResponse({"detail": errors}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error on %s %s: %s", request.method, request.url.path, type(exc).__name__,
                  exc_info=exc)  # fmt: skip
        return JSONResponse({"detail": "Internal error; the central's log has the details."}, status_code=500)

    app.add_middleware(
        BodyLimitMiddleware,
        default=ctx.settings.max_body_bytes,
        fleet=ctx.settings.max_fleet_body_bytes,
        model=ctx.settings.max_model_bytes,
    )
    app.add_middleware(MetricsMiddleware, metrics_getter=lambda: app.state.metrics)
    return app
